//! Looks for what an earlier request left in this instance's memory: the probe of the promise
//! that every request starts from a pristine instance.
//!
//! Every request first counts the bytes of a 256 KiB static buffer (zero in the component's
//! image) that are not zero, then fills the whole buffer with `0xA5`. A `GET` answers at once
//! with `residue=<count>`. A `POST` sends its head right after the fill, then reads the request
//! body to its end before it answers: a test holds the instance alive there, with its memory
//! dirty, to do to the memory what the host's kernel might (swap it out) before the instance
//! ends and its slot is reset.

use std::cell::UnsafeCell;

use wasi::exports::http::incoming_handler::Guest;
use wasi::http::types::{
    Fields, IncomingRequest, Method, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

const PROBE_BYTES: usize = 256 * 1024;
const MARK: u8 = 0xA5;

/// A buffer in the zero-initialized part of linear memory, written only through raw pointers.
struct Probe(UnsafeCell<[u8; PROBE_BYTES]>);

// SAFETY: a component instance runs on one thread.
unsafe impl Sync for Probe {}

static PROBE: Probe = Probe(UnsafeCell::new([0; PROBE_BYTES]));

/// Counts the non-zero bytes, then marks every byte. Volatile, so that the compiler cannot
/// assume the buffer still holds its initial zeros.
fn count_then_mark() -> usize {
    let base = PROBE.0.get().cast::<u8>();
    let mut found = 0;
    for i in 0..PROBE_BYTES {
        // SAFETY: `i` is within the buffer, which only this function touches.
        unsafe {
            if base.add(i).read_volatile() != 0 {
                found += 1;
            }
            base.add(i).write_volatile(MARK);
        }
    }
    found
}

struct Residue;

impl Guest for Residue {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let found = count_then_mark();
        let response = OutgoingResponse::new(Fields::new());
        let body = response.body().expect("body");
        ResponseOutparam::set(out, Ok(response));
        if matches!(request.method(), Method::Post) {
            let incoming = request.consume().expect("body");
            let input = incoming.stream().expect("stream");
            while input.blocking_read(16 * 1024).is_ok() {}
        }
        let output = body.write().expect("stream");
        output
            .blocking_write_and_flush(format!("residue={found}\n").as_bytes())
            .expect("write");
        drop(output);
        OutgoingBody::finish(body, None).expect("finish");
    }
}

wasi::http::proxy::export!(Residue);
