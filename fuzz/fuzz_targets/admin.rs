//! The control-plane API on any request: each input is the raw bytes of an HTTP/1.1 request
//! (method, path, query, headers, body; `$OPERATOR` and `$TENANT` stand for valid tokens),
//! served by a real control plane over an in-memory connection. The harness, shared with the
//! control plane's tests, checks that the host never fails (500) and that no answer reaches a
//! caller it should not. Needs the guests built (`bench/fuzz.sh` builds them).
#![no_main]

#[path = "../../crates/control/tests/harness/admin.rs"]
mod admin_harness;

use std::path::Path;
use std::sync::OnceLock;

use admin_harness::AdminHarness;
use libfuzzer_sys::fuzz_target;

struct Fixture {
    executor: tokio::runtime::Runtime,
    harness: AdminHarness,
}

/// One control plane for the whole run: a deploy at start takes far longer than a request.
fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let executor = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let hello = root.join("target/guests/wasm32-wasip2/release/hello.wasm");
        let cache = root.join("target/fuzz-compile-cache");
        let harness = executor.block_on(AdminHarness::new(&hello, &cache));
        Fixture { executor, harness }
    })
}

fuzz_target!(|request: &[u8]| {
    let fixture = fixture();
    let _ = fixture.executor.block_on(fixture.harness.run(request));
});
