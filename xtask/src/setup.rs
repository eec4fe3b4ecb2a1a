//! What a fresh machine lacks to build meshwa's guests and run its tests, installed once.
//!
//! Debian's clang toolchain builds the C and C++ functions (the versions measured to work on
//! these machines; see docs/languages.md); Debian's Chromium (with a font, so that screenshots
//! are legible) is the browser the dashboard's test drives; Debian's `nats-server` (2.9, with
//! JetStream) is the cluster the cluster tests start; Debian's QEMU boots the unikernel in its
//! smoke test. Installing needs root: run as root, or with sudo.
//!
//! First of all, the Rust toolchain of `rust-toolchain.toml` with its targets: rustup installs a
//! toolchain on first use, but not always its targets (a toolchain already present, or put there
//! by an older rustup, lacks them), and without `wasm32-wasip2` no guest builds.

use std::process::Command;

use anyhow::{Context, bail};

/// Debian packages the C and C++ guests are built with, the dashboard's test runs in, the cluster
/// tests start, the unikernel boots in and the hardware report counts system calls with.
pub const DEBIAN_PACKAGES: &[&str] = &[
    "clang-16",
    "lld-16",
    "wasi-libc",
    "libclang-rt-16-dev-wasm32",
    "libc++-16-dev-wasm32",
    "libc++abi-16-dev-wasm32",
    "make",
    "chromium",
    "fonts-liberation",
    "nats-server",
    "qemu-system-x86",
    "strace",
];

pub fn run() -> anyhow::Result<()> {
    rust_toolchain()?;
    let missing: Vec<&str> = DEBIAN_PACKAGES
        .iter()
        .copied()
        .filter(|package| !installed(package))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("xtask: installing {}", missing.join(" "));
    apt_get(&["update", "-qq"])?;
    let mut install = vec!["install", "-y", "-qq", "--no-install-recommends"];
    install.extend(&missing);
    apt_get(&install)
}

/// Installs the toolchain `rust-toolchain.toml` names with its components and targets, or what
/// of them is missing (rustup reads the file; nothing is downloaded when all is there).
fn rust_toolchain() -> anyhow::Result<()> {
    let status = Command::new("rustup")
        .args(["toolchain", "install", "--no-self-update"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        // Set by rustup's cargo for the processes it starts; it would make rustup install the
        // toolchain by name, without the file's targets.
        .env_remove("RUSTUP_TOOLCHAIN")
        .status()
        .context("cannot run rustup (install it from https://rustup.rs)")?;
    if !status.success() {
        bail!("rustup could not install the toolchain and targets of rust-toolchain.toml");
    }
    Ok(())
}

fn installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .output()
        .is_ok_and(|out| out.status.success() && out.stdout.ends_with(b"install ok installed"))
}

fn apt_get(args: &[&str]) -> anyhow::Result<()> {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| out.stdout.trim_ascii() == b"0");
    let mut command = if root {
        Command::new("apt-get")
    } else {
        let mut sudo = Command::new("sudo");
        sudo.arg("apt-get");
        sudo
    };
    let status = command
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .context("cannot run apt-get (is this Debian?)")?;
    if !status.success() {
        bail!(
            "apt-get {} failed; install these packages by hand: {}",
            args.join(" "),
            DEBIAN_PACKAGES.join(" ")
        );
    }
    Ok(())
}
