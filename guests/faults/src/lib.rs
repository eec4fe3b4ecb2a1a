//! A misbehaving function: the last path segment picks the fault, so one component can sit behind
//! several functions with different limits.
//!
//! | segment            | what it does                                               |
//! |--------------------|------------------------------------------------------------|
//! | `ok`               | answers 200 `fine`                                        |
//! | `trap`             | panics (a Wasm trap)                                       |
//! | `loop`             | spins forever in guest code                                |
//! | `sleep`            | blocks in a host call (a 60 s clock wait)                  |
//! | `nap`              | waits 200 ms in a host call, then answers 200 `rested`     |
//! | `oom`              | allocates until the memory limit stops it                  |
//! | `no-response`      | returns without setting a response                         |
//! | `trap-mid-body`    | sends the head and part of the body, then panics           |
//! | `error-code`       | sets an error code instead of a response                   |
//! | `read-all`         | reads the whole body, then answers with its length         |
//! | `recurse`          | recurses without end (stack overflow)                      |
//! | `huge`             | streams an endless body (64 KiB chunks)                    |
//!
//! An event from a trigger arrives at `/`: its subject (`meshwa-subject`) names the mode.

use wasi::exports::http::incoming_handler::Guest;
use wasi::http::types::{ErrorCode, Fields, IncomingRequest, OutgoingResponse, ResponseOutparam};

struct Faults;

impl Guest for Faults {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let path = support::path(&request);
        // The last path segment, or for an event from a trigger (which arrives at `/`), its
        // subject.
        let subject = request
            .headers()
            .get("meshwa-subject")
            .into_iter()
            .next()
            .map(|value| String::from_utf8_lossy(&value).into_owned());
        let mode = match path.rsplit('/').next() {
            Some("") | None => subject.as_deref().unwrap_or(""),
            Some(segment) => segment,
        };
        match mode {
            "ok" => support::respond(out, 200, "text/plain", b"fine"),
            "trap" => panic!("this function traps on purpose"),
            "loop" => {
                let mut x: u64 = 0;
                loop {
                    x = std::hint::black_box(x.wrapping_add(1));
                }
            }
            "nap" => {
                wasi::clocks::monotonic_clock::subscribe_duration(200_000_000).block();
                support::respond(out, 200, "text/plain", b"rested");
            }
            "sleep" => {
                wasi::clocks::monotonic_clock::subscribe_duration(60_000_000_000).block();
                support::respond(out, 200, "text/plain", b"woke up");
            }
            "oom" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    let mut chunk = vec![0u8; 1 << 20];
                    chunk[0] = 1;
                    hoard.push(std::hint::black_box(chunk));
                }
            }
            "no-response" => drop(out),
            "trap-mid-body" => {
                let response = OutgoingResponse::new(Fields::new());
                let body = response.body().expect("body");
                ResponseOutparam::set(out, Ok(response));
                support::write_all(&body, b"partial ");
                panic!("trapping in the middle of the body");
            }
            "huge" => {
                let response = OutgoingResponse::new(Fields::new());
                let body = response.body().expect("body");
                ResponseOutparam::set(out, Ok(response));
                let stream = body.write().expect("stream taken once");
                let chunk = vec![b'x'; 4096];
                // Until the host stops it: the deadline, or a client that went away.
                loop {
                    stream.blocking_write_and_flush(&chunk).expect("write body");
                }
            }
            "error-code" => {
                ResponseOutparam::set(out, Err(ErrorCode::InternalError(Some("nope".into()))))
            }
            "recurse" => {
                let depth = recurse(std::hint::black_box(1));
                support::respond(out, 200, "text/plain", depth.to_string().as_bytes());
            }
            "read-all" => match support::read_body(&request) {
                Ok(body) => {
                    support::respond(out, 200, "text/plain", body.len().to_string().as_bytes())
                }
                Err(e) => panic!("{e}"),
            },
            other => support::respond(
                out,
                404,
                "text/plain",
                format!("no mode {other:?}").as_bytes(),
            ),
        }
    }
}

wasi::http::proxy::export!(Faults);

/// Recurses forever; the frame is kept alive so the compiler cannot turn it into a loop.
#[allow(
    unconditional_recursion,
    reason = "the stack-overflow attack is the point"
)]
fn recurse(n: u64) -> u64 {
    let frame = std::hint::black_box([n; 16]);
    recurse(frame[0] + 1) + frame[15]
}
