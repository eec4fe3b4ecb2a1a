//! The callee of the per-hop benchmark: `…/full` reads the whole request body, `…/head` only its
//! first 64 bytes; both answer `ok <bytes read>`.

use wasi::exports::http::incoming_handler::Guest;
use wasi::http::types::{IncomingRequest, ResponseOutparam};
use wasi::io::streams::StreamError;

struct Sink;

impl Guest for Sink {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let head_only = support::path(&request).ends_with("/head");
        let incoming = request.consume().expect("body");
        let stream = incoming.stream().expect("stream");
        let mut read = 0usize;
        loop {
            let want = if head_only {
                64 - read as u64
            } else {
                64 * 1024
            };
            if want == 0 {
                break;
            }
            match stream.blocking_read(want) {
                Ok(chunk) => read += std::hint::black_box(chunk).len(),
                Err(StreamError::Closed) => break,
                Err(e) => panic!("reading the body: {e:?}"),
            }
        }
        support::respond(out, 200, "text/plain", format!("ok {read}").as_bytes());
    }
}

wasi::http::proxy::export!(Sink);
