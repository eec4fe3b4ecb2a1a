//! The `meshwa` binary as an operator runs it: child processes, real signals, real HTTP.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use meshwa_test_programs as programs;

mod cluster;
mod dashboard;
mod exhaustion;
mod swap;
mod traces;
mod triggers;

const BIN: &str = env!("CARGO_BIN_EXE_meshwa");

/// A `meshwa serve` child process; killed if the test ends early.
struct Served {
    child: Child,
    addr: SocketAddr,
    admin: SocketAddr,
    stderr: std::sync::mpsc::Receiver<String>,
    seen: std::cell::RefCell<Vec<String>>,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Served {
    /// All stderr lines printed so far.
    fn log(&self) -> String {
        let mut seen = self.seen.borrow_mut();
        seen.extend(self.stderr.try_iter());
        seen.join("\n")
    }

    /// The log once it contains `needle` (log lines are written by a background thread, so they
    /// may trail the HTTP answer by a moment); the log so far after 10 s without it.
    fn log_with(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let log = self.log();
            if log.contains(needle) || Instant::now() > deadline {
                return log;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn serve(data_dir: &Path, manifests: &[PathBuf]) -> Served {
    serve_with(data_dir, manifests, &[])
}

/// `meshwa serve` with extra flags, compiling into the compile cache all tests share.
fn serve_with(data_dir: &Path, manifests: &[PathBuf], extra: &[&str]) -> Served {
    let mut command = Command::new(BIN);
    command.env("MESHWA_CACHE_DIR", programs::COMPILE_CACHE_DIR);
    spawn_serve(command, data_dir, manifests, extra)
}

/// `meshwa serve` as `command` (environment set by the caller), with extra flags.
fn spawn_serve(
    mut command: Command,
    data_dir: &Path,
    manifests: &[PathBuf],
    extra: &[&str],
) -> Served {
    let mut child = command
        .arg("serve")
        .args(manifests)
        .args(extra)
        .args([
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(data_dir)
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    // A server that did not print its addresses: say why, from its exit status and its log.
    // (Killed first, in case it is still running: then its stderr ends and can be read whole.)
    let mut failed_to_start = |which: &str, line: &str| -> ! {
        let _ = child.kill();
        let status = child.wait();
        let log: Vec<String> = rx.iter().collect();
        let tail = &log[log.len().saturating_sub(40)..];
        panic!(
            "unexpected {which} line {line:?} from meshwa serve ({status:?}); its stderr ends:\n{}",
            tail.join("\n")
        )
    };
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let Some(addr) = line
        .trim()
        .strip_prefix("meshwa listening on http://")
        .and_then(|a| a.parse().ok())
    else {
        failed_to_start("first", &line)
    };
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let Some(admin) = line
        .trim()
        .strip_prefix("meshwa admin on http://")
        .and_then(|a| a.parse().ok())
    else {
        failed_to_start("second", &line)
    };
    Served {
        child,
        addr,
        admin,
        stderr: rx,
        seen: Default::default(),
    }
}

/// A minimal HTTP/1.1 exchange over a real socket; returns (status, body).
fn http(addr: SocketAddr, method: &str, path: &str, body: &[u8]) -> (u16, String) {
    http_with(addr, method, path, "", body)
}

/// [`http`] with extra header lines (each ending in `\r\n`).
fn http_with(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &str,
    body: &[u8],
) -> (u16, String) {
    try_http_with(addr, method, path, headers, body)
        .unwrap_or_else(|| panic!("{method} {path}: no answer from {addr}"))
}

fn write_manifest(dir: &Path, file: &str, text: &str) -> PathBuf {
    let path = dir.join(file);
    std::fs::write(&path, text).unwrap();
    path
}

fn hello_manifest(dir: &Path, tenant: &str, route: &str) -> PathBuf {
    write_manifest(
        dir,
        &format!("{tenant}.toml"),
        &format!(
            "tenant = \"{tenant}\"\napp = \"app\"\n[[functions]]\nname = \"hello\"\ncomponent = \"{}\"\nroute = \"{route}\"\n",
            programs::HELLO
        ),
    )
}

/// Tenant `t`, app `a`: the `faults` guest as function `f` at `/f`.
fn faults_manifest(dir: &Path) -> PathBuf {
    write_manifest(
        dir,
        "f.toml",
        &format!(
            "tenant = \"t\"\napp = \"a\"\n[[functions]]\nname = \"f\"\ncomponent = \"{}\"\nroute = \"/f\"\n",
            programs::FAULTS
        ),
    )
}

/// Runs `meshwa serve` expecting it to refuse to start; returns its stderr.
fn refused(manifests: &[PathBuf]) -> String {
    let data = tempfile::tempdir().unwrap();
    let output = Command::new(BIN)
        .arg("serve")
        .args(manifests)
        .args([
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(data.path())
        .output()
        .unwrap();
    assert!(!output.status.success(), "server should refuse to start");
    assert!(output.stdout.is_empty(), "must not start listening");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn perf_map_names_the_guest_functions_that_ran() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = hello_manifest(dir.path(), "t", "/hello");
    let served = serve_with(&dir.path().join("data"), &[manifest], &["--perf-map"]);
    assert_eq!(http(served.addr, "GET", "/hello", b"").0, 200);
    // wasmtime writes the map where perf looks for it, named after the process.
    let map = PathBuf::from(format!("/tmp/perf-{}.map", served.child.id()));
    let text = std::fs::read_to_string(&map).unwrap_or_default();
    drop(served);
    let _ = std::fs::remove_file(&map);
    // Lines are "START SIZE NAME"; the guest's own functions are named after its module.
    let guest_functions = text
        .lines()
        .filter(|line| {
            line.split(' ')
                .nth(2)
                .is_some_and(|name| name.starts_with("wasm["))
        })
        .count();
    assert!(
        guest_functions > 0,
        "no guest function in {}:\n{text}",
        map.display()
    );
}

#[test]
fn second_start_uses_the_compile_cache() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let apps = [
        programs::example_manifest("acme-greeter"),
        programs::example_manifest("globex-textkit"),
    ];

    // The default cache (DATA_DIR/cache), not the one the other tests share.
    let serve = |data: &Path| spawn_serve(Command::new(BIN), data, &apps, &[]);
    let first = serve(&data);
    assert_eq!(http(first.addr, "GET", "/acme/hello?name=x", b"").0, 200);
    drop(first);
    let second = serve(&data);
    assert_eq!(http(second.addr, "GET", "/acme/hello?name=x", b"").0, 200);
    let log = second.log_with("startup complete");
    assert!(log.contains("compiled=0 from_cache=3"), "{log}");
    assert!(!log.contains("cache=Compiled"), "{log}");
    assert!(log.contains("startup_ms="), "{log}");
    // Tenants' data, uploads and token hashes: the server user's alone (issue 16, item 9).
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&data).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700, "data directory mode {mode:o}");
}

#[test]
fn sigterm_lets_in_flight_requests_finish_then_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = write_manifest(
        dir.path(),
        "echo.toml",
        &format!(
            "tenant = \"t\"\napp = \"a\"\n[[functions]]\nname = \"echo\"\ncomponent = \"{}\"\nroute = \"/echo\"\n",
            programs::ECHO
        ),
    );
    let mut served = serve(&dir.path().join("data"), &[manifest]);

    // Start a request whose body arrives slowly, then signal while it is in flight.
    let mut stream = TcpStream::connect(served.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    write!(
        stream,
        "POST /echo HTTP/1.1\r\nhost: t\r\ncontent-length: 10\r\n\r\nhello"
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let pid = served.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    std::thread::sleep(Duration::from_millis(300));
    stream.write_all(b"world").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    // Chunked: both halves echoed, then the final empty chunk.
    assert!(
        response.contains("\r\n5\r\nhello\r\n5\r\nworld\r\n0\r\n\r\n"),
        "{response:?}"
    );

    // New connections are refused once draining began; the process exits 0 by itself.
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = served.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "server did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");
    assert!(TcpStream::connect(served.addr).is_err());
    let log = served.log_with("stopped");
    assert!(
        log.contains("SIGTERM received") && log.contains("stopped"),
        "{log}"
    );
}

#[test]
fn every_invocation_logs_one_line_with_its_error_id() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = faults_manifest(dir.path());
    let served = serve(&dir.path().join("data"), &[manifest]);
    let (status, body) = http(served.addr, "GET", "/f/trap", b"");
    assert_eq!(status, 500);
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    let error_id = body["error_id"].as_str().unwrap().to_owned();
    let (status, _) = http(served.addr, "GET", "/f/ok", b"secret-body");
    assert_eq!(status, 200);
    served.log_with(&error_id);
    let log = served.log_with("status=200");
    let failed: Vec<&str> = log.lines().filter(|l| l.contains(&error_id)).collect();
    assert!(!failed.is_empty(), "{log}");
    assert!(
        failed.iter().any(|l| l.contains("status=500")
            && l.contains("tenant=t")
            && l.contains("function=f")
            && l.contains("kind=\"trap\"")),
        "{log}"
    );
    assert!(
        log.lines()
            .any(|l| l.contains("status=200") && l.contains("duration_us=")),
        "{log}"
    );
    assert!(!log.contains("secret-body"), "bodies never reach the log");
}

#[test]
fn manifest_errors_are_refused_with_file_line_and_reason() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let component = programs::HELLO;

    let unknown = write_manifest(
        d,
        "unknown.toml",
        &format!(
            "tenant = \"a\"\napp = \"b\"\n[[functions]]\nname = \"f\"\ncomponent = \"{component}\"\nrouet = \"/x\"\n"
        ),
    );
    let e = refused(&[unknown]);
    assert!(
        e.contains("unknown.toml") && e.contains("rouet") && e.contains("line 6"),
        "{e}"
    );

    let bad_name = write_manifest(d, "name.toml", "tenant = \"Big_Corp\"\napp = \"b\"\n");
    let e = refused(&[bad_name]);
    assert!(
        e.contains("name.toml:1: `tenant`") && e.contains("Big_Corp"),
        "{e}"
    );

    let missing = write_manifest(
        d,
        "missing.toml",
        "tenant = \"a\"\napp = \"b\"\n[[functions]]\nname = \"f\"\ncomponent = \"nope.wasm\"\nroute = \"/x\"\n",
    );
    let e = refused(&[missing]);
    assert!(
        e.contains("missing.toml") && e.contains("nope.wasm") && e.contains("does not exist"),
        "{e}"
    );

    let dup = write_manifest(
        d,
        "dup.toml",
        &format!(
            "tenant = \"a\"\napp = \"b\"\n[[functions]]\nname = \"f\"\ncomponent = \"{component}\"\nroute = \"/x\"\n[[functions]]\nname = \"g\"\ncomponent = \"{component}\"\nroute = \"/x\"\n"
        ),
    );
    let e = refused(&[dup]);
    assert!(
        e.contains("dup.toml:10: `route`") && e.contains("already the route of function `f`"),
        "{e}"
    );

    let e = refused(&[
        hello_manifest(d, "one", "/shared"),
        hello_manifest(d, "two", "/shared/deeper"),
    ]);
    assert!(
        e.contains("route collision")
            && e.contains("/shared/deeper of two/app/hello")
            && e.contains("one.toml"),
        "{e}"
    );

    let e = refused(&[d.join("absent.toml")]);
    assert!(e.contains("absent.toml: cannot read manifest"), "{e}");
}

#[test]
fn broken_components_are_refused_at_load_with_the_function_named() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let garbage = d.join("garbage.wasm");
    std::fs::write(&garbage, b"this is not wasm").unwrap();
    let truncated = d.join("truncated.wasm");
    let bytes = std::fs::read(programs::HELLO).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    // A valid component that does not export wasi:http/incoming-handler.
    let not_http = d.join("empty-component.wasm");
    std::fs::write(&not_http, b"\0asm\x0d\0\x01\0").unwrap();

    for (file, expect) in [
        (&garbage, "is not a valid WebAssembly component"),
        (&truncated, "is not a valid WebAssembly component"),
        (&not_http, "is not an HTTP function"),
    ] {
        let manifest = write_manifest(
            d,
            "m.toml",
            &format!(
                "tenant = \"a\"\napp = \"b\"\n[[functions]]\nname = \"broken\"\ncomponent = \"{}\"\nroute = \"/x\"\n",
                file.display()
            ),
        );
        let e = refused(&[manifest]);
        assert!(e.contains("a/b/broken") && e.contains(expect), "{e}");
    }
}

/// `/metrics` on the admin listener parses as Prometheus text and its counters move as requests
/// are served.
#[test]
fn metrics_parse_and_move() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = faults_manifest(dir.path());
    // A scraper holds a token that reads `/metrics` and nothing else.
    let token_file = dir.path().join("metrics.token");
    std::fs::write(&token_file, "scrape-me\n").unwrap();
    let served = serve_with(
        &dir.path().join("data"),
        &[manifest],
        &["--metrics-token-file", token_file.to_str().unwrap()],
    );
    assert_eq!(http(served.admin, "GET", "/metrics", b"").0, 401);
    let scrape = || {
        let auth = "authorization: Bearer scrape-me\r\n";
        let (status, body) = http_with(served.admin, "GET", "/metrics", auth, b"");
        assert_eq!(status, 200);
        let lines = body.lines().map(|l| Ok(l.to_owned()));
        prometheus_parse::Scrape::parse(lines).expect("valid Prometheus text")
    };
    let value = |scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]| -> f64 {
        scrape
            .samples
            .iter()
            .filter(|s| s.metric == name)
            .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .map(|s| match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                _ => 0.0,
            })
            .sum()
    };
    let before = scrape();
    assert_eq!(value(&before, "meshwa_instance_slots", &[]), 1000.0);
    assert_eq!(
        value(
            &before,
            "meshwa_functions_loaded",
            &[("outcome", "compiled")]
        ) + value(&before, "meshwa_functions_loaded", &[("outcome", "hit")]),
        1.0
    );

    for _ in 0..3 {
        assert_eq!(http(served.addr, "GET", "/f/ok", b"").0, 200);
    }
    assert_eq!(http(served.addr, "GET", "/f/trap", b"").0, 500);
    assert_eq!(http(served.addr, "GET", "/nowhere", b"").0, 404);

    let after = scrape();
    let ok = [("tenant", "t"), ("function", "f"), ("status", "200")];
    assert_eq!(
        value(&after, "meshwa_requests_total", &ok) - value(&before, "meshwa_requests_total", &ok),
        3.0
    );
    let trap = [("function", "f"), ("kind", "trap")];
    assert_eq!(value(&after, "meshwa_errors_total", &trap), 1.0);
    assert_eq!(value(&after, "meshwa_unrouted_requests_total", &[]), 1.0);
    assert_eq!(value(&after, "meshwa_live_instances", &[]), 0.0);
    assert!(
        after
            .samples
            .iter()
            .any(|s| s.metric.starts_with("meshwa_request_duration_seconds"))
    );
    assert_eq!(http(served.admin, "GET", "/nope", b"").0, 404);
}

/// Tenant `t`, app `book`: the services guest as `svc` at `/svc`, granted a store, config (a
/// secret among it) and logging. Returns the manifest and a secrets file for it.
fn services_app(dir: &Path) -> (PathBuf, PathBuf) {
    let manifest = write_manifest(
        dir,
        "svc.toml",
        &format!(
            r#"tenant = "t"
app = "book"
secrets = ["api-key"]

[[functions]]
name = "svc"
component = "{}"
route = "/t/svc"
[functions.grants]
key-value = ["entries"]
config = ["api-key"]
logging = true

[key-value.entries]
"#,
            programs::SERVICES
        ),
    );
    let secrets = write_manifest(
        dir,
        "secrets.toml",
        "[t.book]\napi-key = \"hunter2-secret\"\n",
    );
    (manifest, secrets)
}

/// Writers keep setting keys while the server is killed with SIGKILL; after a restart, every key
/// whose write was acknowledged is there.
#[test]
fn acknowledged_writes_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (manifest, secrets) = services_app(dir.path());
    let flags = ["--secrets-file", secrets.to_str().unwrap()];
    let served = serve_with(&data, std::slice::from_ref(&manifest), &flags);
    let addr = served.addr;

    let (writers, acknowledged) = spawn_writers(addr, 4, 500, "");
    let deadline = Instant::now() + Duration::from_secs(30);
    while acknowledged.lock().unwrap().len() < 100 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    drop(served); // SIGKILL, mid-write
    for writer in writers {
        writer.join().unwrap();
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(
        acknowledged.len() >= 100,
        "only {} writes acknowledged",
        acknowledged.len()
    );

    let restarted = serve_with(&data, &[manifest], &flags);
    for key in &acknowledged {
        let (status, body) = http(
            restarted.addr,
            "GET",
            &format!("/t/svc/kv/entries/{key}"),
            b"",
        );
        assert_eq!(
            (status, body.as_str()),
            (200, key.as_str()),
            "acknowledged key {key} lost"
        );
    }
}

/// Crash loop (issue 22): cycles of start, concurrent key-value writers and a deploy and
/// redeploys in flight, then SIGKILL at a pseudo-random moment; each restart must start cleanly,
/// hold every write acknowledged in every cycle so far, serve the deployed app at a version no
/// older than the last acknowledged deploy, and leave no half-written deployment on disk.
/// 10 cycles here; `bench/crash-loop.sh` runs this test with `MESHWA_CRASH_CYCLES=100`.
#[test]
fn crash_loop_loses_no_acknowledged_write_and_loads_no_half_deploy() {
    let cycles: u64 = std::env::var("MESHWA_CRASH_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (manifest, secrets) = services_app(dir.path());
    let flags = [
        "--secrets-file",
        secrets.to_str().unwrap(),
        "--operator-token",
        "op-token",
    ];
    let start = || serve_with(&data, std::slice::from_ref(&manifest), &flags);
    let mut served = start();
    let auth = acme_with_a_token(served.admin);
    let upload = |version: u64| {
        let manifest = format!(
            "tenant = \"acme\"\napp = \"churn\"\n[[functions]]\nname = \"f\"\ncomponent = \"f.wasm\"\nroute = \"/acme/churn\"\n[config]\nround = \"{version}\"\n"
        );
        let files = std::collections::BTreeMap::from([
            ("meshwa.toml".to_owned(), manifest.into_bytes()),
            ("f.wasm".to_owned(), std::fs::read(programs::HELLO).unwrap()),
        ]);
        meshwa_control::archive::pack(&files).unwrap()
    };
    let mut acknowledged: Vec<String> = Vec::new();
    let mut last_deploy: Option<u64> = None;
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;

    for cycle in 0..cycles {
        let addr = served.addr;
        let admin = served.admin;
        let (writers, writes) = spawn_writers(addr, 3, 2000, &format!("c{cycle}-"));
        let deploys = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let deployer = {
            let (deploys, auth, archives) = (
                deploys.clone(),
                auth.clone(),
                [upload(cycle * 2), upload(cycle * 2 + 1)],
            );
            std::thread::spawn(move || {
                for _ in 0..20 {
                    for archive in &archives {
                        let Some((200, body)) = try_http_with(
                            admin,
                            "PUT",
                            "/v1/tenants/acme/apps/churn",
                            &auth,
                            archive,
                        ) else {
                            return;
                        };
                        let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
                        deploys
                            .lock()
                            .unwrap()
                            .push(answer["version"].as_u64().unwrap());
                    }
                }
            })
        };
        // SIGKILL after 100-600 ms, a different moment each cycle.
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(Duration::from_millis(100 + seed % 500));
        drop(served);
        for writer in writers {
            writer.join().unwrap();
        }
        deployer.join().unwrap();
        acknowledged.extend(writes.lock().unwrap().drain(..));
        if let Some(version) = deploys.lock().unwrap().iter().max() {
            last_deploy = Some(*version);
        }

        served = start();
        let log = served.log_with("startup complete");
        assert!(log.contains("startup complete"), "cycle {cycle}: {log}");
        for key in &acknowledged {
            let (status, body) = http(served.addr, "GET", &format!("/t/svc/kv/entries/{key}"), b"");
            assert_eq!(
                (status, body.as_str()),
                (200, key.as_str()),
                "cycle {cycle}: acknowledged key {key} lost"
            );
        }
        if let Some(acked) = last_deploy {
            let (status, body) = http_with(
                served.admin,
                "GET",
                "/v1/tenants/acme/apps/churn",
                &auth,
                b"",
            );
            assert_eq!(
                status, 200,
                "cycle {cycle}: the deployed app is gone: {body}"
            );
            let app: serde_json::Value = serde_json::from_str(&body).unwrap();
            let served_version = app["version"].as_u64().unwrap();
            assert!(
                served_version >= acked,
                "cycle {cycle}: serves version {served_version}, older than the acknowledged {acked}"
            );
            assert_eq!(http(served.addr, "GET", "/acme/churn", b"").0, 200);
        }
        // No staging leftovers, and one version directory per recorded app.
        let apps = data.join("apps");
        let staged: Vec<_> = std::fs::read_dir(&apps)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(".staging"))
            .map(|e| e.file_name())
            .collect();
        assert!(staged.is_empty(), "cycle {cycle}: left behind: {staged:?}");
        if let Ok(versions) = std::fs::read_dir(apps.join("acme/churn")) {
            assert!(
                versions.count() <= 1,
                "cycle {cycle}: more than one version on disk"
            );
        }
    }
    assert!(
        acknowledged.len() as u64 >= cycles * 10,
        "only {} writes acknowledged over {cycles} cycles",
        acknowledged.len()
    );
    eprintln!(
        "{cycles} cycles: {} acknowledged writes, none lost; last acknowledged deploy {last_deploy:?}",
        acknowledged.len()
    );
}

/// Like `http_with`, but `None` when the server is gone.
fn try_http_with(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &str,
    body: &[u8],
) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(addr).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .ok()?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nhost: test\r\ncontent-length: {}\r\nconnection: close\r\n{headers}\r\n",
        body.len()
    )
    .ok()?;
    stream.write_all(body).ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.get(9..12)?.parse().ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    Some((
        status,
        if chunked {
            dechunk(body)?
        } else {
            body.to_owned()
        },
    ))
}

/// The body of a chunked HTTP/1.1 message.
fn dechunk(mut rest: &str) -> Option<String> {
    let mut body = String::new();
    loop {
        let (size, after) = rest.split_once("\r\n")?;
        let size = usize::from_str_radix(size.split(';').next()?.trim(), 16).ok()?;
        if size == 0 {
            return Some(body);
        }
        body.push_str(after.get(..size)?);
        rest = after.get(size + 2..)?;
    }
}

/// Acknowledged key-value writes: the keys `writers` threads `PUT` (key = value =
/// `{prefix}w{writer}-{i}`) into the `services_app`'s store, each stopping at its first failure
/// (the server killed) or after `max` writes.
fn spawn_writers(
    addr: SocketAddr,
    writers: usize,
    max: usize,
    prefix: &str,
) -> (
    Vec<std::thread::JoinHandle<()>>,
    std::sync::Arc<std::sync::Mutex<Vec<String>>>,
) {
    let acknowledged = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let handles = (0..writers)
        .map(|writer| {
            let (acknowledged, prefix) = (acknowledged.clone(), prefix.to_owned());
            std::thread::spawn(move || {
                for i in 0..max {
                    let key = format!("{prefix}w{writer}-{i}");
                    let path = format!("/t/svc/kv/entries/{key}");
                    let Some((200, _)) = try_http(addr, "PUT", &path, key.as_bytes()) else {
                        return;
                    };
                    acknowledged.lock().unwrap().push(key);
                }
            })
        })
        .collect();
    (handles, acknowledged)
}

/// Like `http`, but `None` when the server is gone.
fn try_http(addr: SocketAddr, method: &str, path: &str, body: &[u8]) -> Option<(u16, String)> {
    try_http_with(addr, method, path, "", body)
}

#[test]
fn guest_logs_carry_the_function_hide_secrets_and_are_rate_limited() {
    let dir = tempfile::tempdir().unwrap();
    let (manifest, secrets) = services_app(dir.path());
    let served = serve_with(
        &dir.path().join("data"),
        &[manifest],
        &["--secrets-file", secrets.to_str().unwrap()],
    );
    // The guest reads the secret and logs it three ways.
    let (status, secret) = http(served.addr, "GET", "/t/svc/config/api-key", b"");
    assert_eq!((status, secret.as_str()), (200, "hunter2-secret"));
    let (status, _) = http(
        served.addr,
        "POST",
        "/t/svc/log",
        b"my key is hunter2-secret",
    );
    assert_eq!(status, 200);
    let log = served.log_with("via stderr");
    for stream in ["wasi:logging", "stdout", "stderr"] {
        assert!(
            log.lines()
                .any(|l| l.contains("tenant=t app=book function=svc invocation=")
                    && l.contains(&format!("stream=\"{stream}\""))
                    && l.contains("my key is [redacted]")),
            "no {stream} line: {log}"
        );
    }

    // A guest cannot forge another tenant's log line: control characters are escaped, so
    // its text stays inside one line that names its own function (issue 16, item 9).
    let forged = b"ok\ntenant=victim app=x function=y invocation=z stream=\"stdout\" forged-line\r";
    let (status, _) = http(served.addr, "POST", "/t/svc/log", forged);
    assert_eq!(status, 200);
    let log = served.log_with("forged-line");
    let lines: Vec<&str> = log.lines().filter(|l| l.contains("forged-line")).collect();
    assert!(!lines.is_empty(), "the guest's line was not logged: {log}");
    for line in &lines {
        assert!(
            line.contains("tenant=t app=book function=svc")
                && !line.trim_start().starts_with("tenant=victim"),
            "a guest forged a log line: {line}"
        );
    }
    assert!(
        lines.iter().any(|l| l.contains("ok\\ntenant=victim")),
        "wasi:logging's line is not escaped: {lines:?}"
    );

    // 1000 lines at once: the burst gets through, the rest is dropped and counted. The
    // bucket refills while the flood runs (slowly, on a loaded CI machine), so the bound
    // allows what the rate adds over the flood's own duration.
    let flood_started = Instant::now();
    let (status, _) = http(served.addr, "POST", "/t/svc/flood?n=1000", b"");
    let refilled = meshwa_runtime::LOG_LINES_PER_SECOND * flood_started.elapsed().as_secs_f64();
    assert_eq!(status, 200);
    std::thread::sleep(Duration::from_millis(100));
    let (status, _) = http(served.addr, "POST", "/t/svc/log", b"after the flood");
    assert_eq!(status, 200);
    let log = served.log_with("guest log lines dropped");
    let flood_lines = log.lines().filter(|l| l.contains("flood line")).count();
    assert!(
        (100..=(meshwa_runtime::LOG_BURST + refilled) as usize + 10).contains(&flood_lines),
        "{flood_lines} flood lines logged, {refilled:.0} tokens refilled during the flood"
    );
    assert!(log.contains("guest log lines dropped"), "{log}");
    assert!(
        !log.contains("hunter2-secret"),
        "a secret reached the log: {log}"
    );
}

#[test]
fn a_missing_secrets_value_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let (manifest, _) = services_app(dir.path());
    let stderr = refused(&[manifest]);
    assert!(
        stderr.contains("app t/book: secret `api-key` has no value in the server's secrets file"),
        "{stderr}"
    );
}

/// Runs a client command of the binary against `admin`; returns exit code, stdout, stderr.
/// The operator (token `op-token`) creates tenant `acme` and a token for it; returns that
/// token's `authorization` header line.
fn acme_with_a_token(admin: SocketAddr) -> String {
    let (code, _, err) = client(admin, "op-token", &["tenant", "create", "acme"]);
    assert_eq!(code, 0, "{err}");
    let (code, token, err) = client(admin, "op-token", &["token", "create", "--tenant", "acme"]);
    assert_eq!(code, 0, "{err}");
    format!("authorization: Bearer {}\r\n", token.trim())
}

fn client(admin: SocketAddr, token: &str, args: &[&str]) -> (i32, String, String) {
    let output = Command::new(BIN)
        .args(args)
        .env("MESHWA_SERVER", format!("http://{admin}"))
        .env("MESHWA_TOKEN", token)
        .env("MESHWA_CONFIG", "/nonexistent")
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// The operator creates a tenant, the tenant deploys, lists, invokes and removes an app with the
/// CLI; a restart restores the deployed app from the data directory without compiling, and one
/// under a stricter operator policy does not.
#[test]
fn deploy_list_remove_through_the_cli_and_restart_restores_without_compiling() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let flags = ["--operator-token", "op-token"];
    let served = serve_with(&data, &[], &flags);

    let (code, out, err) = client(served.admin, "op-token", &["tenant", "create", "acme"]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, token, err) = client(
        served.admin,
        "op-token",
        &["token", "create", "--tenant", "acme"],
    );
    assert_eq!(code, 0, "{err}");
    let token = token.trim().to_owned();
    assert!(token.starts_with("mwt_"), "{token}");

    let app_dir = Path::new(programs::EXAMPLES_DIR).join("acme-greeter");
    let (code, out, err) = client(served.admin, &token, &["deploy", app_dir.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("deployed acme/greeter version"), "{out}");
    assert_eq!(http(served.addr, "GET", "/acme/hello?name=Ada", b"").0, 200);
    let (code, out, _) = client(served.admin, &token, &["ls"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("greeter") && out.contains("/acme/hello"),
        "{out}"
    );
    let (code, out, err) = client(
        served.admin,
        &token,
        &[
            "invoke",
            "greeter/hello",
            "-X",
            "GET",
            "--path",
            "/acme/hello?name=Bo",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("Hello, Bo!"), "{out}");
    let (code, out, _) = client(served.admin, &token, &["logs", "greeter"]);
    assert_eq!(code, 0);
    assert!(out.contains("status=200"), "{out}");
    // `logs -f` prints new entries as they happen (after the 0 latest asked for).
    let mut follower = Command::new(BIN)
        .args(["logs", "greeter", "-f", "--limit", "0"])
        .env("MESHWA_SERVER", format!("http://{}", served.admin))
        .env("MESHWA_TOKEN", &token)
        .env("MESHWA_CONFIG", "/nonexistent")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let (lines, printed) = std::sync::mpsc::channel();
    let stdout = follower.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines.send(line);
        }
    });
    let mut followed = String::new();
    for _ in 0..50 {
        assert_eq!(http(served.addr, "GET", "/acme/hello?name=Cy", b"").0, 200);
        if let Ok(line) = printed.recv_timeout(Duration::from_millis(200)) {
            followed = line;
            break;
        }
    }
    let _ = follower.kill();
    let _ = follower.wait();
    assert!(
        followed.contains("hello") && followed.contains("status=200"),
        "{followed:?}"
    );

    // Exit codes scripts can rely on.
    assert_eq!(client(served.admin, "wrong", &["ls"]).0, 3);
    assert_eq!(client(served.admin, &token, &["rm", "nope"]).0, 4);
    assert_eq!(
        client(served.admin, &token, &["tenant", "ls"]).0,
        3,
        "operator only"
    );
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    assert_eq!(client(closed, &token, &["ls"]).0, 5);
    let broken = dir.path().join("broken");
    std::fs::create_dir_all(&broken).unwrap();
    std::fs::write(broken.join("meshwa.toml"), "tenant = \"acme\"\napp = \"greeter\"\n[[functions]]\nname = \"f\"\ncomponent = \"f.wasm\"\n").unwrap();
    std::fs::write(broken.join("f.wasm"), b"not wasm").unwrap();
    let (code, _, err) = client(served.admin, &token, &["deploy", broken.to_str().unwrap()]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("not a valid WebAssembly component"), "{err}");
    assert_eq!(
        http(served.addr, "GET", "/acme/hello", b"").0,
        200,
        "the refused deploy changed nothing"
    );

    drop(served);
    let restarted = serve_with(&data, &[], &flags);
    let log = restarted.log_with("startup complete");
    assert!(
        log.contains("restored=1") && log.contains("compiled=0 from_cache=1"),
        "{log}"
    );
    assert_eq!(http(restarted.addr, "GET", "/acme/hello", b"").0, 200);

    // A stricter operator policy at the next start: the stored app (timeout 2s) is over it, so
    // it is not served, and stays recorded for when the policy allows it again.
    drop(restarted);
    let policy = dir.path().join("policy.toml");
    std::fs::write(&policy, "[defaults]\nmax-timeout = \"1s\"\n").unwrap();
    let strict_flags = [flags[0], flags[1], "--policy", policy.to_str().unwrap()];
    let strict = serve_with(&data, &[], &strict_flags);
    let log = strict.log_with("startup complete");
    assert!(
        log.contains("not_restored=1") && log.contains("(policy max-timeout)"),
        "{log}"
    );
    assert_eq!(http(strict.addr, "GET", "/acme/hello", b"").0, 404);
    drop(strict);
    let restarted = serve_with(&data, &[], &flags);
    assert_eq!(http(restarted.addr, "GET", "/acme/hello", b"").0, 200);
    let (code, _, err) = client(restarted.admin, &token, &["rm", "greeter"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(http(restarted.addr, "GET", "/acme/hello", b"").0, 404);
    let (_, out, _) = client(restarted.admin, &token, &["ls"]);
    assert!(!out.contains("greeter"), "{out}");
}

/// The peak resident memory of process `pid` so far, in bytes (Linux: VmHWM).
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find(|line| line.starts_with("VmHWM:"))
        .unwrap();
    let kib: u64 = line
        .trim_start_matches("VmHWM:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .unwrap();
    kib * 1024
}

/// An upload streams to disk: deploying an app with 192 MiB of files raises the server's peak
/// memory by far less than the upload (it used to hold it about three times over), and the
/// files are served from the data directory (issue 16, item 7).
#[test]
fn a_large_upload_is_streamed_to_disk_not_held_in_memory() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let served = serve_with(
        &data,
        &[],
        &["--operator-token", "op-token", "--max-upload", "256MiB"],
    );
    let (code, out, err) = client(served.admin, "op-token", &["tenant", "create", "acme"]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, token, err) = client(
        served.admin,
        "op-token",
        &["token", "create", "--tenant", "acme"],
    );
    assert_eq!(code, 0, "{err}");
    let manifest = "tenant = \"acme\"\napp = \"big\"\n[[functions]]\nname = \"f\"\ncomponent = \"f.wasm\"\nroute = \"/acme/big\"\n";
    const BLOB: usize = 192 * 1024 * 1024;
    let files = std::collections::BTreeMap::from([
        ("meshwa.toml".to_owned(), manifest.as_bytes().to_vec()),
        ("f.wasm".to_owned(), std::fs::read(programs::HELLO).unwrap()),
        ("assets/blob.bin".to_owned(), vec![42u8; BLOB]),
    ]);
    let archive = meshwa_control::archive::pack(&files).unwrap();
    drop(files);

    let before = peak_rss(served.child.id());
    let (status, body) = http_with(
        served.admin,
        "PUT",
        "/v1/tenants/acme/apps/big",
        &format!("authorization: Bearer {}\r\n", token.trim()),
        &archive,
    );
    assert_eq!(status, 200, "{body}");
    let grown = peak_rss(served.child.id()).saturating_sub(before);
    eprintln!("peak memory grew by {} KiB", grown >> 10);
    assert!(
        grown < 64 * 1024 * 1024,
        "the peak memory grew by {} MiB for a {} MiB upload",
        grown >> 20,
        archive.len() >> 20
    );
    assert_eq!(http(served.addr, "GET", "/acme/big", b"").0, 200);
    let version_dirs: Vec<PathBuf> = std::fs::read_dir(data.join("apps/acme/big"))
        .unwrap()
        .flatten()
        .map(|entry| entry.path())
        .collect();
    assert_eq!(version_dirs.len(), 1, "{version_dirs:?}");
    let blob = version_dirs[0].join("assets/blob.bin");
    assert_eq!(std::fs::metadata(&blob).unwrap().len(), BLOB as u64);
}

/// The client reads every answer as its meshwa-api type: summaries for people, the server's JSON
/// with `--json`, and the server's own message (and every problem) on a refusal.
#[test]
fn client_commands_read_typed_answers() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let served = serve_with(&data, &[], &["--operator-token", "op-token"]);
    let admin = served.admin;

    let (code, out, err) = client(admin, "op-token", &["tenant", "create", "acme"]);
    assert_eq!((code, out.trim()), (0, "created tenant acme"), "{err}");
    let (code, _, err) = client(admin, "op-token", &["tenant", "create", "Not_A_Name"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("the app was refused") || err.contains("Not_A_Name"),
        "{err}"
    );
    let (code, out, _) = client(admin, "op-token", &["tenant", "ls"]);
    assert_eq!((code, out.trim()), (0, "acme"));
    let (code, out, _) = client(admin, "op-token", &["--json", "tenant", "ls"]);
    assert_eq!(code, 0);
    let tenants: meshwa_api::TenantList = serde_json::from_str(&out).unwrap();
    assert_eq!(tenants.tenants[0].name, "acme");

    let (code, token, _) = client(admin, "op-token", &["token", "create", "--tenant", "acme"]);
    assert_eq!(code, 0);
    let token = token.trim();
    let (code, out, _) = client(admin, token, &["--json", "token", "ls"]);
    assert_eq!(code, 0);
    let tokens: meshwa_api::TokenList = serde_json::from_str(&out).unwrap();
    assert_eq!(tokens.tokens.len(), 1);
    let (code, out, _) = client(admin, token, &["token", "ls"]);
    assert!(code == 0 && out.starts_with(&tokens.tokens[0].id), "{out}");
    let (code, out, _) = client(admin, token, &["--json", "ls"]);
    assert_eq!(code, 0);
    let apps: meshwa_api::AppList = serde_json::from_str(&out).unwrap();
    assert!(apps.apps.is_empty());

    // Refusals carry the server's message and exit code.
    let (code, _, err) = client(admin, token, &["rm", "nope"]);
    assert_eq!(code, 4);
    assert!(err.contains("no app acme/nope"), "{err}");
    let (code, _, err) = client(admin, "op-token", &["ls"]);
    assert_eq!(code, 2, "the operator must name a tenant: {err}");

    let id = tokens.tokens[0].id.clone();
    let (code, out, _) = client(
        admin,
        "op-token",
        &["token", "revoke", &id, "--tenant", "acme"],
    );
    assert_eq!((code, out.trim()), (0, format!("revoked {id}").as_str()));
    assert_eq!(
        client(admin, token, &["ls"]).0,
        3,
        "the revoked token is refused"
    );
    let (code, out, _) = client(admin, "op-token", &["tenant", "rm", "acme"]);
    assert_eq!((code, out.trim()), (0, "deleted tenant acme"));
}

/// A Spin app: `meshwa serve spin.toml` serves it as the tenant its tool table names, and
/// `meshwa deploy` of its directory sends `spin.toml` unchanged with the components it names,
/// into the deploying tenant; a restart restores the deployed app.
#[test]
fn spin_apps_are_served_and_deployed_from_their_spin_toml() {
    let dir = tempfile::tempdir().unwrap();
    let spin_toml = Path::new(programs::EXAMPLES_DIR).join("../guests/spin-front/spin.toml");
    let data = dir.path().join("served");
    let served = serve(&data, &[spin_toml]);
    let (status, body) = http(served.addr, "GET", "/spin/chain", b"");
    assert_eq!(
        (status, body.as_str()),
        (
            200,
            "front > middle/spin-middle/hop > back says hello, says the back"
        )
    );
    drop(served);

    // A Spin app directory, its component inside it, under the tenant's route prefix.
    let app = dir.path().join("app");
    std::fs::create_dir_all(app.join("target")).unwrap();
    std::fs::copy(programs::SPIN_BACK, app.join("target/back.wasm")).unwrap();
    std::fs::write(
        app.join("spin.toml"),
        "spin_manifest_version = 2\n[application]\nname = \"spun\"\n\
         [variables]\nwho = { default = \"acme\" }\n\
         [[trigger.http]]\nroute = \"/acme/back/...\"\ncomponent = \"back\"\n\
         [component.back]\nsource = \"target/back.wasm\"\n\
         [component.back.variables]\ngreeting = \"hi from {{ who }}\"\n",
    )
    .unwrap();
    let data = dir.path().join("data");
    let flags = ["--operator-token", "op-token"];
    let served = serve_with(&data, &[], &flags);
    let token = acme_with_a_token(served.admin);
    let token = token
        .trim()
        .trim_start_matches("authorization: Bearer ")
        .to_owned();
    let (code, out, err) = client(served.admin, &token, &["deploy", app.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("deployed acme/spun version"), "{out}");
    let (status, body) = http(served.addr, "GET", "/acme/back/x", b"");
    assert_eq!((status, body.as_str()), (200, "back says hi from acme"));

    // A component outside the directory cannot travel with it: refused before uploading.
    let outside = dir.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(
        outside.join("spin.toml"),
        format!(
            "spin_manifest_version = 2\n[application]\nname = \"spun\"\n\
             [[trigger.http]]\nroute = \"/acme/back\"\ncomponent = \"back\"\n\
             [component.back]\nsource = \"{}\"\n",
            programs::SPIN_BACK
        ),
    )
    .unwrap();
    let (code, _, err) = client(served.admin, &token, &["deploy", outside.to_str().unwrap()]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("outside the app's directory"), "{err}");

    drop(served);
    let restarted = serve_with(&data, &[], &flags);
    let log = restarted.log_with("startup complete");
    assert!(log.contains("restored=1"), "{log}");
    let (status, body) = http(restarted.addr, "GET", "/acme/back/y", b"");
    assert_eq!((status, body.as_str()), (200, "back says hi from acme"));
}
