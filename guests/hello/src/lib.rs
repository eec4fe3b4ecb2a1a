//! The smallest useful HTTP function: answers `hello from meshwa` and the path it was called on.
//! Used by the fresh-instance benchmark and the basic serving tests. It also counts the requests
//! its instance has served: on meshwa that is always 1, since every request gets a fresh instance.

use std::sync::atomic::{AtomicU32, Ordering};

use wasi::exports::http::incoming_handler::Guest;
use wasi::http::types::{IncomingRequest, ResponseOutparam};

struct Hello;

static REQUESTS_SEEN: AtomicU32 = AtomicU32::new(0);

impl Guest for Hello {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let seen = REQUESTS_SEEN.fetch_add(1, Ordering::Relaxed) + 1;
        let body = format!(
            "hello from meshwa: {} (request {seen} of this instance)\n",
            support::path(&request)
        );
        support::respond(out, 200, "text/plain", body.as_bytes());
    }
}

wasi::http::proxy::export!(Hello);
