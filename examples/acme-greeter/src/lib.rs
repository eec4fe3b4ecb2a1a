//! `GET /acme/hello?name=Ada` answers `{"greeting":"Hello, Ada!","tenant":"acme"}`.
//!
//! A plain `wasi:http/proxy` component: it uses only the standard `wasi` bindings, so it runs on
//! any wasi:http host, meshwa included.

use wasi::exports::http::incoming_handler::Guest;
use wasi::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

struct Greeter;

impl Guest for Greeter {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let path_with_query = request.path_with_query().unwrap_or_default();
        let name = query_param(&path_with_query, "name").unwrap_or_else(|| "world".to_string());
        let body = format!(
            "{{\"greeting\":\"Hello, {}!\",\"tenant\":\"acme\"}}\n",
            json_escape(&name)
        );
        let headers =
            Fields::from_list(&[("content-type".to_string(), b"application/json".to_vec())])
                .expect("valid header");
        let response = OutgoingResponse::new(headers);
        let outgoing = response.body().expect("body is taken once");
        ResponseOutparam::set(out, Ok(response));
        let stream = outgoing.write().expect("stream is taken once");
        stream
            .blocking_write_and_flush(body.as_bytes())
            .expect("write body");
        drop(stream);
        OutgoingBody::finish(outgoing, None).expect("finish body");
    }
}

/// The value of `key` in the query string, percent-decoded, at most 100 characters.
fn query_param(path_with_query: &str, key: &str) -> Option<String> {
    let query = path_with_query.split_once('?')?.1;
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == key).then(|| percent_decode(v).chars().take(100).collect())
    })
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = |b: u8| (b as char).to_digit(16);
                match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                    (Some(high), Some(low)) => {
                        out.push((high * 16 + low) as u8);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn json_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

wasi::http::proxy::export!(Greeter);
