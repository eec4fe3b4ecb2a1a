//! Two text tools in one component, chosen by the route it is called on:
//!
//! - `POST /globex/stats` with a text body answers `{"bytes":…,"lines":…,"words":…}`;
//! - `POST /globex/upper` streams the body back upper-cased, chunk by chunk, so it handles bodies
//!   far larger than its memory.

use wasi::exports::http::incoming_handler::Guest;
use wasi::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};
use wasi::io::streams::StreamError;

struct TextKit;

const CHUNK: u64 = 16 * 1024;

impl Guest for TextKit {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let path = request.path_with_query().unwrap_or_default();
        let path = path
            .split('?')
            .next()
            .unwrap_or_default()
            .trim_end_matches('/');
        let upper = path.ends_with("/upper");
        let content_type: &[u8] = if upper {
            b"text/plain"
        } else {
            b"application/json"
        };
        let headers = Fields::from_list(&[("content-type".to_string(), content_type.to_vec())])
            .expect("valid header");
        let response = OutgoingResponse::new(headers);
        let outgoing = response.body().expect("body is taken once");
        ResponseOutparam::set(out, Ok(response));

        let incoming = request.consume().expect("body is consumed once");
        let input = incoming.stream().expect("stream is taken once");
        let output = outgoing.write().expect("stream is taken once");
        let (mut bytes, mut lines, mut words, mut in_word) = (0u64, 0u64, 0u64, false);
        loop {
            let chunk = match input.blocking_read(CHUNK) {
                Ok(chunk) => chunk,
                Err(StreamError::Closed) => break,
                Err(StreamError::LastOperationFailed(e)) => {
                    panic!("reading the request body failed: {}", e.to_debug_string())
                }
            };
            if upper {
                let shouted = chunk.to_ascii_uppercase();
                // blocking-write-and-flush takes at most 4096 bytes per call.
                for piece in shouted.chunks(4096) {
                    output.blocking_write_and_flush(piece).expect("write body");
                }
                continue;
            }
            bytes += chunk.len() as u64;
            for &b in &chunk {
                if b == b'\n' {
                    lines += 1;
                }
                let space = b.is_ascii_whitespace();
                if !space && !in_word {
                    words += 1;
                }
                in_word = !space;
            }
        }
        if !upper {
            let json = format!("{{\"bytes\":{bytes},\"lines\":{lines},\"words\":{words}}}\n");
            output
                .blocking_write_and_flush(json.as_bytes())
                .expect("write body");
        }
        drop(output);
        OutgoingBody::finish(outgoing, None).expect("finish body");
    }
}

wasi::http::proxy::export!(TextKit);
