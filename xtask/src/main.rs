//! `cargo xtask`: developer tasks that need more than one cargo invocation.
//!
//! - `cargo xtask build-examples`: builds the example apps (and guest test programs) for
//!   `wasm32-wasip2` into `target/guests`, where the example manifests point.
//! - `cargo xtask serve [ARGS...]`: builds them, then runs `meshwa serve` (release) on every
//!   `examples/*/meshwa.toml` with the demo secrets of `examples/secrets.toml`, passing ARGS
//!   through (e.g. `--listen 0.0.0.0:3000`).
//! - `cargo xtask setup`: installs what a fresh machine lacks to build the guests and run the
//!   tests: Debian's clang toolchain for C/C++, and Chromium for the dashboard's browser test
//!   (with apt-get, as root or through sudo).
//! - `cargo xtask test [ARGS...]`: `setup`, then `cargo test --workspace ARGS`; without ARGS
//!   also the unit tests of the tax benchmark's logic (`bench/tax`, a workspace of its own) and
//!   the unikernel's tests and smoke test (`unikernel/`, another workspace).
//! - `cargo xtask c-bindings`: regenerates the C bindings of `sdk/c/generated` from `wit/`.
//! - `cargo xtask cluster`: builds the examples and `meshwa` (release), starts three NATS
//!   JetStream servers and three `meshwa serve --cluster` nodes on loopback, deploys the examples
//!   through the first node and prints where to send requests (see `cluster`).
//! - `cargo xtask unikernel [MANIFEST...]`, `unikernel-run [--port N] [MANIFEST...]`,
//!   `unikernel-test`: meshwa as a unikernel under QEMU (see `unikernel`).

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{Context, bail};

mod c_bindings;
mod cluster;
mod setup;
mod unikernel;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("xtask: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let task = args.next().unwrap_or_default();
    let rest: Vec<String> = args.collect();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("xtask lives one level below the repository root")?
        .to_path_buf();
    match task.as_str() {
        "setup" => setup::run(),
        "test" => {
            setup::run()?;
            let status = cargo(&root)
                .args(["test", "--workspace"])
                .args(&rest)
                .status()
                .context("cannot run cargo")?;
            if !status.success() {
                bail!("tests failed");
            }
            // The tax benchmark's business logic is a workspace of its own (`bench/tax`); its
            // unit tests are part of the full run.
            if rest.is_empty() {
                let status = cargo(&root)
                    .args(["test", "--manifest-path", "bench/tax/Cargo.toml"])
                    .args(["--package", "tax-logic"])
                    .env("CARGO_TARGET_DIR", root.join("target/tax"))
                    .status()
                    .context("cannot run cargo")?;
                if !status.success() {
                    bail!("tests of bench/tax failed");
                }
                // The unikernel (a workspace of its own): its engine's tests against the example
                // components, then the smoke test that boots it.
                build_examples(&root)?;
                unikernel::test(&root)?;
            }
            Ok(())
        }
        "build-examples" => {
            setup::run()?;
            build_examples(&root)
        }
        "serve" => {
            setup::run()?;
            build_examples(&root)?;
            let mut command = cargo(&root);
            command.args(["run", "--release", "--package", "meshwa", "--", "serve"]);
            command.args(example_manifests(&root)?);
            // The examples' demo secrets, unless the caller brings their own.
            if !rest.iter().any(|arg| arg.starts_with("--secrets-file")) {
                command
                    .arg("--secrets-file")
                    .arg(root.join("examples/secrets.toml"));
            }
            command.args(&rest);
            // Replace nothing: run in the foreground so Ctrl-C reaches the server.
            let status = command.status().context("cannot run cargo")?;
            if !status.success() {
                bail!("meshwa serve exited with {status}");
            }
            Ok(())
        }
        "cluster" => {
            setup::run()?;
            build_examples(&root)?;
            let status = cargo(&root)
                .args(["build", "--release", "--package", "meshwa"])
                .status()
                .context("cannot run cargo")?;
            if !status.success() {
                bail!("building meshwa failed");
            }
            cluster::run(&root)
        }
        "unikernel" => {
            setup::run()?;
            build_examples(&root)?;
            let (execution, manifests) = unikernel::parse_build_args(&rest)?;
            let image = unikernel::build(&root, &manifests, &execution)?;
            println!(
                "kernel {}\nbundle {}\nboot them with `cargo xtask unikernel-run`",
                image.kernel.display(),
                image.bundle.display()
            );
            Ok(())
        }
        "unikernel-run" => {
            setup::run()?;
            build_examples(&root)?;
            unikernel::run(&root, &rest)
        }
        "unikernel-test" => {
            setup::run()?;
            build_examples(&root)?;
            let (execution, _) = unikernel::parse_build_args(&rest)?;
            unikernel::smoke_test(&root, &execution)
        }
        "c-bindings" => {
            let dir = root.join(c_bindings::DIR);
            c_bindings::write(&root, &dir)?;
            println!("wrote the C bindings to {}", dir.display());
            Ok(())
        }
        _ => bail!(
            "usage: cargo xtask setup | test [cargo test args] | build-examples | serve [meshwa serve flags] | cluster | unikernel [--execution native|pulley] [MANIFEST...] | unikernel-run [--port N] [--execution E] [MANIFEST...] | unikernel-test [--execution E] | c-bindings"
        ),
    }
}

/// `cargo`, run in `dir`.
fn cargo(dir: &Path) -> Command {
    let mut command = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    command.current_dir(dir);
    command
}

/// The test-programs crate's build script compiles `guests/` and `examples/` to wasm.
fn build_examples(root: &Path) -> anyhow::Result<()> {
    let status = cargo(root)
        .args(["build", "--package", "meshwa-test-programs"])
        .status()
        .context("cannot run cargo")?;
    if !status.success() {
        bail!("building the example components failed");
    }
    Ok(())
}

fn example_manifests(root: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut manifests: Vec<PathBuf> = std::fs::read_dir(root.join("examples"))?
        .flatten()
        .map(|entry| entry.path().join("meshwa.toml"))
        .filter(|path| path.is_file())
        .collect();
    manifests.sort();
    Ok(manifests)
}
