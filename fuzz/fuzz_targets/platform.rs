//! The host side of `meshwa:platform` under fuzz-generated guest programs: each input is a
//! script of buffer and invoke calls that the `platform-script` guest runs against a real
//! runtime (the format is in `guests/platform-script/src/lib.rs`). The harness, shared with the
//! runtime's tests, checks that no script makes a failure the host's and that no instance
//! outlives its chain. Needs the guests built (`bench/fuzz.sh` builds them).
#![no_main]

#[path = "../../crates/runtime/tests/all/platform_harness.rs"]
mod platform_harness;

use std::path::Path;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use platform_harness::PlatformHarness;

/// Where `crates/test-programs` builds the guests.
const GUESTS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../target/guests/wasm32-wasip2/release"
);

struct Fixture {
    executor: tokio::runtime::Runtime,
    harness: PlatformHarness,
}

/// One runtime for the whole run: loading the apps takes far longer than a script.
fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let executor = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let guests = Path::new(GUESTS);
        let cache = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/fuzz-compile-cache");
        let harness = executor.block_on(async {
            PlatformHarness::new(
                &guests.join("platform_script.wasm"),
                &guests.join("echo.wasm"),
                &cache,
            )
        });
        Fixture { executor, harness }
    })
}

fuzz_target!(|script: &[u8]| {
    let fixture = fixture();
    let _ = fixture.executor.block_on(fixture.harness.run(script));
});
