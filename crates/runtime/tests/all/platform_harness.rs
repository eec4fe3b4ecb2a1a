//! Runs scripts of the `platform-script` guest (a hostile guest whose `meshwa:platform` calls are
//! data) against a real runtime and checks what must hold whatever the script does. Shared by
//! the `platform` fuzz target (`fuzz/fuzz_targets/platform.rs` includes this file) and the
//! runtime's tests, which run every script of `fuzz/corpus/platform` through it.
//!
//! What must hold after every script: the invocation ends with an answer or a typed failure
//! that is the guest's or the client's fault, never the host's, and so does every call it made;
//! and no instance is left alive, neither of the script's function nor of any callee it
//! reached, however the chain ended.

// Harness code: a failed check is a finding, reported by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use meshwa_manifest::Manifest;
use meshwa_runtime::{
    EngineSettings, Event, Fault, Function, InvokeError, Outcome, Runtime, Secrets,
};

/// The app a script runs in: itself (`script`, so a buffer can carry a nested script), a callee
/// that answers its body (`echo`), and another app's private function (`other/script`).
const MANIFEST: &str = r#"
tenant = "fuzz"
app = "fuzz"

[[functions]]
name = "script"
component = "SCRIPT"
route = "/script"
limits = { max-memory = "16MiB", timeout = "1s" }

[[functions]]
name = "echo"
component = "ECHO"
limits = { max-memory = "16MiB", timeout = "1s" }
"#;

const OTHER_MANIFEST: &str = r#"
tenant = "fuzz"
app = "other"

[[functions]]
name = "script"
component = "SCRIPT"
limits = { max-memory = "16MiB", timeout = "1s" }
"#;

/// A runtime with the script's apps loaded.
pub struct PlatformHarness {
    runtime: Runtime,
    script: Arc<Function>,
    functions: Vec<Arc<Function>>,
    _data: tempfile::TempDir,
}

impl PlatformHarness {
    /// Loads the apps from the built `platform-script` and `echo` components; compiled code is
    /// cached in `cache_dir`.
    pub fn new(script: &Path, echo: &Path, cache_dir: &Path) -> PlatformHarness {
        for component in [script, echo] {
            assert!(
                component.is_file(),
                "{} is missing: build the guests first (cargo build -p meshwa-test-programs)",
                component.display()
            );
        }
        let data = tempfile::tempdir().unwrap();
        let runtime = Runtime::with_cache_dir(
            EngineSettings {
                max_instances: 32,
                tenant_max_instances: Some(16),
                ..EngineSettings::default()
            },
            data.path(),
            cache_dir,
        )
        .unwrap();
        let mut functions = Vec::new();
        for text in [MANIFEST, OTHER_MANIFEST] {
            let text = text
                .replace("SCRIPT", &script.display().to_string())
                .replace("ECHO", &echo.display().to_string());
            let manifest =
                Manifest::parse(&text, Path::new("meshwa.toml"), Path::new("/")).unwrap();
            functions.extend(runtime.load_app(&manifest, &Secrets::default()).unwrap());
        }
        PlatformHarness {
            script: functions[0].clone(),
            runtime,
            functions,
            _data: data,
        }
    }

    /// Runs `script` as one invocation and checks the invariants; returns its outcome.
    pub async fn run(&self, script: &[u8]) -> Result<Outcome, InvokeError> {
        let outcome = self
            .script
            .deliver(Event {
                trigger: "fuzz",
                subject: String::new(),
                attributes: Vec::new(),
                payload: Bytes::copy_from_slice(script),
                invocation: "fuzz".to_owned(),
            })
            .await;
        match &outcome {
            Err(error) => assert_ne!(
                error.fault(),
                Fault::Host,
                "a guest's script is never the host's fault: {error:?}"
            ),
            // Callees' failures reach the script as error values: none may be the host's
            // (`InvokeError::Host` and `Overloaded`, which the tenant's quota, half the pool,
            // rules out).
            Ok(answer) => {
                let text = String::from_utf8_lossy(&answer.body);
                for host_failure in ["internal error", "no instance slot became free"] {
                    assert!(
                        !text.contains(host_failure),
                        "a callee failed for the host: {text}"
                    );
                }
            }
        }
        self.assert_nothing_live().await;
        outcome
    }

    /// Every instance of the chain is gone once its invocation has answered (callees end with
    /// their caller; a few milliseconds of teardown are allowed).
    async fn assert_nothing_live(&self) {
        let started = Instant::now();
        loop {
            let live: u64 = self.functions.iter().map(|f| f.live_instances()).sum();
            let slots = self.runtime.stats().live_instances;
            if live == 0 && slots == 0 {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(2),
                "{live} instances ({slots} pool slots) still live after the script answered"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}
