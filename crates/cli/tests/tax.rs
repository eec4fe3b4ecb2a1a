//! The infrastructure-tax harness (`bench/tax/run.sh`) is part of the product: a short smoke run
//! of the real command, with its real processes, checks that every deployment it measures here
//! ((a) native monolith, (b) native services, (c) meshwa with invoke, (d) meshwa with wasi:http)
//! answers byte-identical receipts and gets through each measurement. Timings are not judged
//! here (they belong in docs/benchmarks.md). The smoke run leaves out Redis and `wasmtime serve`
//! (deployment e), which the full run installs and measures.

use std::path::Path;
use std::process::Command;

#[test]
fn the_tax_harness_runs_every_deployment_and_they_agree() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .and_then(Path::parent)
        .expect("crates/cli lives two levels below the root");
    let mut command = Command::new("bash");
    command
        .arg(root.join("bench/tax/run.sh"))
        .env("SMOKE", "1")
        .env("MESHWA_BIN", env!("CARGO_BIN_EXE_meshwa"));
    // The outer cargo's settings must not leak into the builds the script runs.
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy().into_owned();
        let outer_cargo =
            key.starts_with("CARGO_") && key != "CARGO_HOME" && key != "CARGO_NET_OFFLINE";
        if outer_cargo || key.starts_with("RUSTC_") || key == "RUSTFLAGS" {
            command.env_remove(&key);
        }
    }
    let output = command.output().expect("run bench/tax/run.sh");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "bench/tax/run.sh failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    assert!(
        stderr.contains("all 4 deployments answer the same"),
        "{stderr}"
    );
    for row in [
        "| (a) monolith, in-process KV |",
        "| (b) 6 services, in-process KV |",
        "| (c) meshwa, invoke + buffers |",
        "| (d) meshwa, in-process wasi:http |",
    ] {
        assert!(stdout.contains(row), "no row {row} in:\n{stdout}");
    }
}
