//! Calls another function with a plain outgoing `wasi:http` request and relays the answer: the
//! guest side of in-process chaining tests. No meshwa SDK involved.
//!
//! `…/call/<host>/<path>` sends the request body to `http://<host>/<path>` (POST) and answers with
//! the upstream's status and body; a request that fails answers 502 with `error: <code>`.
//! `…/cycle/<host>` calls `http://<host>/cycle/<host>`, i.e. itself, forever: the host must end
//! the chain. `…/burst/<n>/<host>/<path>` starts `n` such requests (empty bodies) before waiting
//! for any, and answers one line per request: its status or `error: <code>` (fan-out limits).

use wasi::exports::http::incoming_handler::Guest;
use wasi::http::outgoing_handler;
use wasi::http::types::{
    ErrorCode, Fields, IncomingRequest, Method, OutgoingBody, OutgoingRequest, ResponseOutparam,
    Scheme,
};

struct Caller;

impl Guest for Caller {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let path = request.path_with_query().unwrap_or_default();
        let body = support::read_body(&request).unwrap_or_default();
        if let Some((_, rest)) = path.split_once("/burst/") {
            let answer = burst(rest);
            support::respond(out, 200, "text/plain", answer.as_bytes());
            return;
        }
        let target = if let Some((_, rest)) = path.split_once("/call/") {
            let (host, upstream_path) = rest.split_once('/').unwrap_or((rest, ""));
            Some((host.to_string(), format!("/{upstream_path}")))
        } else if let Some((_, host)) = path.split_once("/cycle/") {
            Some((host.to_string(), format!("/cycle/{host}")))
        } else {
            None
        };
        let Some((host, upstream_path)) = target else {
            support::respond(
                out,
                400,
                "text/plain",
                b"use /call/<host>/<path>, /cycle/<host> or /burst/<n>/<host>/<path>",
            );
            return;
        };
        match forward(&host, &upstream_path, &body) {
            Ok((status, answer)) => support::respond(out, status, "text/plain", &answer),
            Err(code) => support::respond(
                out,
                502,
                "text/plain",
                format!("error: {code:?}").as_bytes(),
            ),
        }
    }
}

/// `<n>/<host>/<path>`: starts `n` requests to `http://<host>/<path>` before waiting for any,
/// then answers one line per request, in order: its status, or `error: <code>`.
fn burst(rest: &str) -> String {
    let mut parts = rest.splitn(3, '/');
    let n: usize = parts.next().and_then(|n| n.parse().ok()).unwrap_or(0);
    let host = parts.next().unwrap_or_default();
    let path = format!("/{}", parts.next().unwrap_or_default());
    let started: Vec<_> = (0..n).map(|_| start(host, &path, b"")).collect();
    let mut lines = String::new();
    for pending in started {
        let outcome = pending.and_then(finish);
        match outcome {
            Ok((status, _)) => lines += &format!("{status}\n"),
            Err(code) => lines += &format!("error: {code:?}\n"),
        }
    }
    lines
}

fn forward(host: &str, path: &str, body: &[u8]) -> Result<(u16, Vec<u8>), ErrorCode> {
    finish(start(host, path, body)?)
}

/// Sends a request and its body; the answer comes later.
fn start(
    host: &str,
    path: &str,
    body: &[u8],
) -> Result<outgoing_handler::FutureIncomingResponse, ErrorCode> {
    let request = OutgoingRequest::new(Fields::new());
    let internal = |_| ErrorCode::InternalError(Some("building the request".into()));
    request.set_method(&Method::Post).map_err(internal)?;
    request.set_scheme(Some(&Scheme::Http)).map_err(internal)?;
    request.set_authority(Some(host)).map_err(internal)?;
    request.set_path_with_query(Some(path)).map_err(internal)?;
    let outgoing = request.body().map_err(internal)?;
    let pending = outgoing_handler::handle(request, None)?;
    support::write_all(&outgoing, body);
    OutgoingBody::finish(outgoing, None)?;
    Ok(pending)
}

/// Waits for a request's answer and reads it whole.
fn finish(pending: outgoing_handler::FutureIncomingResponse) -> Result<(u16, Vec<u8>), ErrorCode> {
    let response = loop {
        match pending.get() {
            Some(result) => break result.map_err(|()| ErrorCode::InternalError(None))??,
            None => pending.subscribe().block(),
        }
    };
    let status = response.status();
    let incoming = response
        .consume()
        .map_err(|()| ErrorCode::InternalError(None))?;
    let stream = incoming
        .stream()
        .map_err(|()| ErrorCode::InternalError(None))?;
    let mut answer = Vec::new();
    loop {
        match stream.blocking_read(64 * 1024) {
            Ok(chunk) => answer.extend_from_slice(&chunk),
            Err(wasi::io::streams::StreamError::Closed) => break,
            Err(_) => return Err(ErrorCode::HttpResponseIncomplete),
        }
    }
    Ok((status, answer))
}

wasi::http::proxy::export!(Caller);
