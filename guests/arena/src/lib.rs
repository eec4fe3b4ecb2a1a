//! `meshwa_sdk::alloc::RequestArena` with 256 KiB of reserved memory, under test.
//!
//! `GET /?bytes=N` allocates about N bytes in many small blocks (strings) interleaved with one
//! large vector that keeps moving as it grows, checks that every block still holds what was
//! written to it, and answers `grew=<bool> intact=<bool> blocks=<n>`: whether linear memory grew
//! during the request. A request that fits in the reserved memory must not grow it; a larger one
//! must grow it and still find every block intact; one beyond the function's `max-memory` ends as
//! out of memory.

use wasi::exports::http::incoming_handler::Guest;
use wasi::http::types::{IncomingRequest, ResponseOutparam};

#[global_allocator]
static ALLOCATOR: meshwa_sdk::alloc::RequestArena<{ 256 << 10 }> =
    meshwa_sdk::alloc::RequestArena::new();

/// The size of a WebAssembly page.
const PAGE: usize = 64 * 1024;

struct Arena;

impl Guest for Arena {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        // Before the request's first allocation: the instance's memory as it started.
        let pages_before = core::arch::wasm32::memory_size(0);
        let query = request.path_with_query().unwrap_or_default();
        let Some(bytes) = query
            .split_once("bytes=")
            .and_then(|(_, n)| n.split('&').next()?.parse::<usize>().ok())
        else {
            support::respond(out, 400, "text/plain", b"usage: /?bytes=N\n");
            return;
        };
        let (intact, blocks) = allocate(bytes);
        let pages_after = core::arch::wasm32::memory_size(0);
        let body = format!(
            "grew={} intact={intact} blocks={blocks} memory={} KiB\n",
            pages_after > pages_before,
            pages_after * PAGE / 1024
        );
        support::respond(out, 200, "text/plain", body.as_bytes());
    }
}

/// Allocates about `bytes` in small blocks and one moving large one; whether every block still
/// holds what was written to it, and how many there were.
fn allocate(bytes: usize) -> (bool, u64) {
    let mut small: Vec<String> = Vec::new();
    let mut large: Vec<u64> = Vec::new();
    let mut allocated = 0;
    let mut block = 0u64;
    while allocated < bytes {
        let text = format!("block {block}");
        allocated += text.len() + core::mem::size_of::<String>() + core::mem::size_of::<u64>();
        small.push(text);
        large.push(value_of(block));
        block += 1;
    }
    let intact = small
        .iter()
        .zip(&large)
        .enumerate()
        .all(|(i, (text, value))| {
            let i = i as u64;
            *text == format!("block {i}") && *value == value_of(i)
        });
    (intact, block)
}

/// What block `i` of the large vector holds: distinct for every block (an odd multiplier), so a
/// block overwritten by another shows.
fn value_of(i: u64) -> u64 {
    i.wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

wasi::http::proxy::export!(Arena);
