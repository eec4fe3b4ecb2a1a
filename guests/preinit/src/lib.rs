//! A function with start-up work: a 200,000-entry table built before it can answer. With
//! `meshwa_sdk::pre_initialize!`, meshwa builds it once at load and every fresh instance starts
//! with it; without a snapshot (`pre-initialize = false`), each request builds it itself.
//!
//! `GET /…` answers `counter=<requests this instance saw> pre-initialized=<whether the
//! initialization function ran before this request> entries=<table length> entry=<one entry>`.
//! Two memory-heavy kernels work on the table (`meshwa-bench hardware` times them):
//! `GET /…/sort` sorts a copy of it, `GET /…/hashmap` puts every entry in a hash map and looks
//! each up; both answer a checksum.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use meshwa_sdk::{Request, Response};

static TABLE: OnceLock<Vec<u64>> = OnceLock::new();
/// Set by the initialization function only.
static PRE_INITIALIZED: AtomicBool = AtomicBool::new(false);
/// Requests this instance has served: a fresh instance per request keeps it at 1.
static COUNTER: AtomicU32 = AtomicU32::new(0);

/// The start-up work: a xorshift sequence, deterministic (no randomness at initialization).
fn build_table() -> Vec<u64> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..200_000u64)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x ^ i
        })
        .collect()
}

fn init() {
    TABLE.get_or_init(build_table);
    PRE_INITIALIZED.store(true, Ordering::Relaxed);
}

fn handle(request: Request) -> Response {
    let counter = COUNTER.fetch_add(1, Ordering::Relaxed) + 1;
    let pre_initialized = PRE_INITIALIZED.load(Ordering::Relaxed);
    let table = TABLE.get_or_init(build_table);
    if request.path.ends_with("/sort") {
        let mut sorted = table.clone();
        sorted.sort_unstable();
        let checksum = sorted
            .iter()
            .step_by(1000)
            .fold(0u64, |a, b| a.wrapping_add(*b));
        return Response::new(200, format!("{checksum:x}"));
    }
    if request.path.ends_with("/hashmap") {
        let map: std::collections::HashMap<u64, usize> =
            table.iter().enumerate().map(|(i, v)| (*v, i)).collect();
        let found = table.iter().filter(|v| map.contains_key(v)).count();
        return Response::new(200, format!("{found}"));
    }
    Response::new(
        200,
        format!(
            "counter={counter} pre-initialized={pre_initialized} entries={} entry={:x}",
            table.len(),
            table[12_345]
        ),
    )
}

meshwa_sdk::http_handler!(handle);
meshwa_sdk::pre_initialize!(init);
