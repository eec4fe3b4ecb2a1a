//! Streams the request body back as it arrives, one chunk at a time, without buffering it all:
//! proves that bodies stream both ways. Answers with the request's method in a header.

use wasi::exports::http::incoming_handler::Guest;
use wasi::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};
use wasi::io::streams::StreamError;

struct Echo;

impl Guest for Echo {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let method = format!("{:?}", request.method());
        let headers = Fields::from_list(&[("x-echo-method".to_string(), method.into_bytes())])
            .expect("valid header");
        let response = OutgoingResponse::new(headers);
        let outgoing = response.body().expect("body");
        ResponseOutparam::set(out, Ok(response));

        let incoming = request.consume().expect("body");
        let input = incoming.stream().expect("stream");
        let output = outgoing.write().expect("stream");
        loop {
            match input.blocking_read(16 * 1024) {
                // blocking-write-and-flush takes at most 4096 bytes per call.
                Ok(chunk) => {
                    for piece in chunk.chunks(4096) {
                        output.blocking_write_and_flush(piece).expect("write");
                    }
                }
                Err(StreamError::Closed) => break,
                // The host ended the body (for example: it exceeded the size limit).
                Err(StreamError::LastOperationFailed(e)) => {
                    panic!("reading body: {}", e.to_debug_string())
                }
            }
        }
        drop(output);
        OutgoingBody::finish(outgoing, None).expect("finish");
    }
}

wasi::http::proxy::export!(Echo);
