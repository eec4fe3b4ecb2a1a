//! meshwa as a unikernel (issue 23): build the image and the bundle, boot them under QEMU, and the
//! smoke test that does both without a human.
//!
//! - `cargo xtask unikernel [--execution native|pulley] [MANIFEST...]` builds the kernel
//!   (`unikernel/kernel`, for `x86_64-unknown-none`) and a bundle of the manifests' functions,
//!   precompiled on this machine for the kernel's engine (`unikernel/bundler`): native x86_64
//!   code unless `--execution pulley`; default manifests: acme-greeter and globex-textkit.
//! - `cargo xtask unikernel-run [--port N] [--execution E] [MANIFEST...]` builds them and boots
//!   the VM with the console on this terminal (type `shutdown` to stop it cleanly).
//! - `cargo xtask unikernel-test [--execution E]` is the smoke test; `cargo xtask test` runs it
//!   for both execution modes.
//!
//! QEMU runs without KVM (these machines have none): every guest instruction is emulated, so
//! timings are TCG's, not the hardware's (docs/unikernel.md compares under the same emulation).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::cargo;

const TARGET: &str = "x86_64-unknown-none";
/// The port the kernel listens on inside the VM (its command line can change it).
const GUEST_PORT: u16 = 8080;
const DEFAULT_MANIFESTS: [&str; 2] = [
    "examples/acme-greeter/meshwa.toml",
    "examples/globex-textkit/meshwa.toml",
];

/// The CPU the VM emulates: QEMU's baseline plus RDRAND (wasi:random) and SSE up to 4.2, which
/// native code is compiled to use (`meshwa_unikernel_runtime::NATIVE_FEATURES`).
pub const CPU: &str =
    "qemu64,apic,fsgsbase,fxsr,rdrand,rdtscp,xsave,xsaveopt,+ssse3,+sse4.1,+sse4.2";

/// What `build` produces.
pub struct Image {
    pub kernel: PathBuf,
    pub bundle: PathBuf,
}

/// Builds the kernel and the bundle of `manifests` (paths relative to the repository root or
/// absolute). The example components must be built already (`build_examples`).
pub fn build(root: &Path, manifests: &[PathBuf], execution: &str) -> anyhow::Result<Image> {
    let target_dir = root.join("target/unikernel");
    let workspace = root.join("unikernel");
    // Run from `unikernel/` so its `.cargo/config.toml` (the kernel's code model) applies.
    let status = cargo(&workspace)
        .args([
            "build",
            "--release",
            "--package",
            "meshwa-unikernel",
            "--target",
            TARGET,
        ])
        .env("CARGO_TARGET_DIR", &target_dir)
        .status()
        .context("cannot run cargo")?;
    if !status.success() {
        bail!("building the unikernel failed");
    }
    let kernel = target_dir.join(TARGET).join("release/meshwa-unikernel");

    let bundle = target_dir.join("bundle.bin");
    let status = cargo(&workspace)
        .args([
            "run",
            "--release",
            "--package",
            "meshwa-unikernel-bundler",
            "--",
        ])
        .arg("--out")
        .arg(&bundle)
        .args(["--execution", execution])
        .args(manifests.iter().map(|manifest| root.join(manifest)))
        .env("CARGO_TARGET_DIR", &target_dir)
        .status()
        .context("cannot run cargo")?;
    if !status.success() {
        bail!("building the bundle failed");
    }
    Ok(Image { kernel, bundle })
}

/// Splits `[--execution native|pulley] [MANIFEST...]`: the execution mode (native unless
/// said), and the manifests named, or the default two.
pub fn parse_build_args(args: &[String]) -> anyhow::Result<(String, Vec<PathBuf>)> {
    let mut execution = "native".to_owned();
    let mut named = Vec::new();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        if arg == "--execution" {
            execution = args
                .next()
                .context("--execution needs native or pulley")?
                .clone();
        } else {
            named.push(PathBuf::from(arg));
        }
    }
    Ok((execution, manifests_or_default(named)))
}

fn manifests_or_default(named: Vec<PathBuf>) -> Vec<PathBuf> {
    if named.is_empty() {
        DEFAULT_MANIFESTS.iter().map(PathBuf::from).collect()
    } else {
        named
    }
}

/// QEMU for `image`: no KVM, 512 MiB, virtio-net with the guest's port forwarded to
/// `127.0.0.1:host_port`, the console on stdin/stdout.
pub fn qemu(image: &Image, host_port: u16, append: &str) -> Command {
    let mut command = Command::new("qemu-system-x86_64");
    command
        .args(["-machine", "pc", "-m", "512M", "-no-reboot", "-nographic"])
        .args(["-cpu", CPU])
        .arg("-kernel")
        .arg(&image.kernel)
        .arg("-initrd")
        .arg(&image.bundle)
        .args(["-append", append])
        .arg("-netdev")
        .arg(format!(
            "user,id=net0,hostfwd=tcp:127.0.0.1:{host_port}-:{GUEST_PORT}"
        ))
        // Modern virtio only (the driver speaks virtio 1.0); no iPXE option ROM to load.
        .args([
            "-device",
            "virtio-net-pci,netdev=net0,disable-legacy=on,romfile=",
        ])
        .args(["-serial", "stdio", "-monitor", "none", "-display", "none"]);
    command
}

/// `cargo xtask unikernel-run`: boot in the foreground, console on this terminal.
pub fn run(root: &Path, args: &[String]) -> anyhow::Result<()> {
    let mut port = 8080u16;
    let mut rest = Vec::new();
    let mut args_iter = args.iter();
    while let Some(arg) = args_iter.next() {
        if arg == "--port" {
            let value = args_iter.next().context("--port needs a number")?;
            port = value
                .parse()
                .with_context(|| format!("bad --port {value}"))?;
        } else {
            rest.push(arg.clone());
        }
    }
    let (execution, manifests) = parse_build_args(&rest)?;
    let image = build(root, &manifests, &execution)?;
    println!(
        "meshwa unikernel: booting {} (bundle {}); it answers on http://127.0.0.1:{port}/ — type `shutdown` to stop it",
        image.kernel.display(),
        image.bundle.display()
    );
    let status = qemu(&image, port, "log=requests")
        .status()
        .context("cannot run qemu-system-x86_64 (Debian package qemu-system-x86; `cargo xtask setup` installs it)")?;
    if !status.success() {
        bail!("qemu exited with {status}");
    }
    Ok(())
}

/// The unikernel's tests: the engine side on Linux against the real components (release: the
/// same build of wasmtime and Cranelift the bundler uses), then the smoke test.
pub fn test(root: &Path) -> anyhow::Result<()> {
    let status = cargo(&root.join("unikernel"))
        .args([
            "test",
            "--release",
            "--package",
            "meshwa-unikernel-runtime",
            "--features",
            "compile",
        ])
        .env("CARGO_TARGET_DIR", root.join("target/unikernel"))
        .status()
        .context("cannot run cargo")?;
    if !status.success() {
        bail!("tests of the unikernel's runtime failed");
    }
    // Both ways of running code: native (the default) and the interpreter.
    smoke_test(root, "native")?;
    smoke_test(root, "pulley")
}

/// The smoke test: two example tenants and the faulty one in one image, booted without KVM;
/// both examples answer, a trap and a runaway loop in the faulty tenant are answered 500 and 504
/// while the others keep answering, and the VM shuts down cleanly from its console.
pub fn smoke_test(root: &Path, execution: &str) -> anyhow::Result<()> {
    if Command::new("qemu-system-x86_64")
        .arg("--version")
        .output()
        .is_err()
    {
        bail!("qemu-system-x86_64 is not installed (`cargo xtask setup` installs qemu-system-x86)");
    }
    let mut manifests = manifests_or_default(Vec::new());
    manifests.push(PathBuf::from("unikernel/tests/faulty.toml"));
    let image = build(root, &manifests, execution)?;
    let port = free_port()?;
    let console = root.join("target/unikernel/smoke-console.log");
    let log = std::fs::File::create(&console)
        .with_context(|| format!("cannot create {}", console.display()))?;
    let started = Instant::now();
    let mut vm = Vm(qemu(&image, port, "log=requests")
        .stdin(Stdio::piped())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("cannot start qemu-system-x86_64")?);
    let result = smoke_checks(&mut vm, port, started);
    if result.is_ok() {
        println!(
            "unikernel smoke ({execution}): passed in {:.2?}",
            started.elapsed()
        );
    }
    if result.is_err() {
        let _ = vm.0.kill();
        let _ = vm.0.wait();
        let text = std::fs::read_to_string(&console).unwrap_or_default();
        eprintln!("--- the VM's console ({}):\n{text}", console.display());
    }
    result
}

/// Kills QEMU if the test ends early (a panic or an error on the way).
struct Vm(Child);

impl Drop for Vm {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn smoke_checks(vm: &mut Vm, port: u16, started: Instant) -> anyhow::Result<()> {
    // Boot: SeaBIOS, the kernel, loading the bundle, the network. Bounded.
    let deadline = started + Duration::from_secs(120);
    let (status, body) = loop {
        // Short tries: QEMU accepts a connection before the guest listens and holds it while it
        // retries the SYN into the VM with back-off, which would hide when the guest is ready.
        let short = Duration::from_millis(500);
        if let Ok(answer) = http_within(port, "GET", "/acme/hello?name=Ada", b"", short) {
            break answer;
        }
        if Instant::now() > deadline {
            bail!("no answer from the VM within 120 s");
        }
        if let Some(exit) = vm.0.try_wait()? {
            bail!("the VM stopped during boot: {exit}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    println!(
        "unikernel smoke: first answer {:.2?} after QEMU started",
        started.elapsed()
    );
    expect(status, &body, 200, "\"greeting\":\"Hello, Ada!\"")?;

    let (status, body) = http(port, "POST", "/globex/upper", b"shout, please")?;
    expect(status, &body, 200, "SHOUT, PLEASE")?;

    let (status, body) = http(port, "GET", "/faulty/trap", b"")?;
    expect(status, &body, 500, "\"error\":\"trap\"")?;
    let (status, body) = http(port, "GET", "/acme/hello", b"")?;
    expect(status, &body, 200, "Hello, world!")?;

    let before_loop = Instant::now();
    let (status, body) = http(port, "GET", "/faulty/loop", b"")?;
    expect(status, &body, 504, "\"error\":\"timeout\"")?;
    println!(
        "unikernel smoke: a runaway loop was stopped after {:.2?}",
        before_loop.elapsed()
    );
    let (status, body) = http(port, "POST", "/globex/stats", b"one two\nthree")?;
    expect(status, &body, 200, "\"words\":3")?;

    let (status, body) = http(port, "GET", "/nowhere", b"")?;
    expect(status, &body, 404, "")?;

    // A body larger than the kernel buffers is refused from its head, before it is sent; the
    // function limit below that is the function's (acme: 64 KiB).
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    stream.write_all(b"POST /acme/hello HTTP/1.1\r\ncontent-length: 100000000\r\n\r\n")?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer)?;
    let answer = String::from_utf8_lossy(&answer);
    if !answer.starts_with("HTTP/1.1 413 ") || !answer.contains("\"error\":\"payload_too_large\"") {
        bail!("expected 413 payload_too_large for a 100 MB body, got {answer}");
    }
    // Two lengths (a smuggling attempt) are refused, not reconciled.
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    stream.write_all(
        b"POST /acme/hello HTTP/1.1\r\ncontent-length: 1\r\ncontent-length: 5\r\n\r\nx",
    )?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer)?;
    let answer = String::from_utf8_lossy(&answer);
    if !answer.starts_with("HTTP/1.1 400 ") {
        bail!("expected 400 for two content-lengths, got {answer}");
    }
    let (status, body) = http(port, "POST", "/acme/hello", &[b'x'; 70_000])?;
    expect(status, &body, 413, "payload_too_large")?;

    // A clean stop from the console: the VM powers itself off and QEMU exits 0.
    let stdin =
        vm.0.stdin
            .as_mut()
            .context("the VM's console is not piped")?;
    stdin.write_all(b"shutdown\n")?;
    stdin.flush()?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(exit) = vm.0.try_wait()? {
            if !exit.success() {
                bail!("the VM exited with {exit} after `shutdown`");
            }
            break;
        }
        if Instant::now() > deadline {
            bail!("the VM did not power off within 30 s of `shutdown`");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

fn expect(status: u16, body: &str, want_status: u16, want_in_body: &str) -> anyhow::Result<()> {
    if status != want_status || !body.contains(want_in_body) {
        bail!("expected {want_status} with {want_in_body:?}, got {status}: {body}");
    }
    Ok(())
}

fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("no free loopback port")?;
    Ok(listener.local_addr()?.port())
}

/// One HTTP/1.1 request on a fresh connection; the status and the body as text.
pub fn http(port: u16, method: &str, path: &str, body: &[u8]) -> anyhow::Result<(u16, String)> {
    http_within(port, method, path, body, Duration::from_secs(30))
}

fn http_within(
    port: u16,
    method: &str,
    path: &str,
    body: &[u8],
    timeout: Duration,
) -> anyhow::Result<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer)?;
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .with_context(|| format!("not an HTTP response: {text:?}"))?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}
