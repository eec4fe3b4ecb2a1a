//! Components written for `wasmtime serve` run unchanged (issue 17, items 3 and 4): a wstd
//! component (`guests/wstd-compat`) reads the manifest's environment variables and the default
//! (`""`) store, preloaded from a file; sees a denied outbound request as wasi:http's standard
//! code; answers CONNECT; and the host logs what it does as it did it (a cut body as cut, stderr
//! lines whole).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use http_body_util::BodyExt;
use meshwa_manifest::{FunctionId, Manifest, Name};
use meshwa_runtime::{RecentEntry, RecentWhat, Secrets};

use crate::common::{client, get, send, start};
use meshwa_test_programs as programs;

/// The app: one wstd function at `/compat` with an environment, the default store preloaded
/// from `seed.json`, and no outbound grant.
fn app(dir: &Path, seed: &str) -> PathBuf {
    std::fs::write(dir.join("seed.json"), seed).unwrap();
    let manifest = format!(
        r#"
tenant = "compat"
app = "serve"

[[functions]]
name = "wstd"
component = "{}"
route = "/compat"
env = {{ GREETING = "hello from the manifest", EMPTY = "" }}
grants = {{ key-value = [""] }}

[key-value.""]
preload = "seed.json"
max-total-size = "4KiB"
"#,
        programs::WSTD_COMPAT
    );
    let path = dir.join("meshwa.toml");
    std::fs::write(&path, manifest).unwrap();
    path
}

fn function_id() -> FunctionId {
    FunctionId {
        tenant: Name::new("compat").unwrap(),
        app: Name::new("serve").unwrap(),
        function: Name::new("wstd").unwrap(),
    }
}

/// The recent log of the app's function, oldest first.
fn recent(server: &crate::common::Server) -> Vec<RecentEntry> {
    let function = server.runtime.directory().get(&function_id()).unwrap();
    function.recent_log().latest(usize::MAX)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
pub(crate) async fn a_wasmtime_serve_component_finds_its_environment_store_and_error_codes() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&[app(dir.path(), r#"{"seeded": "from the file"}"#)]).await;

    let env = get(server.addr, "/compat/env/GREETING").await;
    assert_eq!(
        (env.status, env.body.as_str()),
        (200, "hello from the manifest")
    );
    let empty = get(server.addr, "/compat/env/EMPTY").await;
    assert_eq!((empty.status, empty.body.as_str()), (200, ""));
    // Nothing else: the host's own environment stays out.
    for name in ["PATH", "HOME", "MESHWA_LISTEN"] {
        let unset = get(server.addr, &format!("/compat/env/{name}")).await;
        assert_eq!(
            (unset.status, unset.body.as_str()),
            (404, "unset"),
            "{name}"
        );
    }

    // `open("")` is the default store, preloaded at load.
    let seeded = get(server.addr, "/compat/kv/seeded").await;
    assert_eq!(
        (seeded.status, seeded.body.as_str()),
        (200, "from the file")
    );

    // A request to an origin the function was not granted: the standard code, no socket.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let denied = get(
        server.addr,
        &format!("/compat/fetch?http://127.0.0.1:{port}/x"),
    )
    .await;
    assert_eq!(
        (denied.status, denied.body.as_str()),
        (502, "error: ErrorCode::HttpRequestDenied")
    );
    assert!(
        listener.accept().is_err(),
        "a denied request opened a socket"
    );
}

/// The preload goes only into an empty store: loading the app again (a redeploy, a restart)
/// leaves what the function wrote since.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redeploy_does_not_overwrite_a_preloaded_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = app(dir.path(), r#"{"seeded": "from the file", "other": "x"}"#);
    let server = start(std::slice::from_ref(&path)).await;
    let changed = send(
        &client(),
        server.addr,
        "PUT",
        "/compat/kv/seeded",
        b"changed",
    )
    .await;
    assert_eq!((changed.status, changed.body.as_str()), (200, "stored"));

    // The same app again, with a preload file that says otherwise.
    std::fs::write(dir.path().join("seed.json"), r#"{"seeded": "new file"}"#).unwrap();
    let manifest = Manifest::load(&path).unwrap();
    let prepared = server
        .runtime
        .prepare_app(&manifest, &Secrets::default())
        .unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(
        server.runtime.preload(&prepared).unwrap(),
        0,
        "store not empty"
    );
    server.runtime.activate_app(&prepared);
    let seeded = get(server.addr, "/compat/kv/seeded").await;
    assert_eq!((seeded.status, seeded.body.as_str()), (200, "changed"));
    let other = get(server.addr, "/compat/kv/other").await;
    assert_eq!((other.status, other.body.as_str()), (200, "x"));
}

/// A preload file that is missing, not JSON of strings or over the store's quota is refused
/// when the app is prepared, with a message naming the file and the problem.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_preload_files_are_refused_before_anything_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let path = app(dir.path(), "{}");
    let server = start(std::slice::from_ref(&path)).await;
    let big = format!(r#"{{"big": "{}"}}"#, "x".repeat(5000));
    for (seed, says) in [
        (
            "[\"a list\"]",
            "is not a JSON object of string keys and string values",
        ),
        (
            "{\"n\": 1}",
            "is not a JSON object of string keys and string values",
        ),
        (
            "{\"broken\": ",
            "is not a JSON object of string keys and string values",
        ),
        (big.as_str(), "does not fit the store's quota"),
    ] {
        std::fs::write(dir.path().join("seed.json"), seed).unwrap();
        let manifest = Manifest::load(&path).unwrap();
        let errors = match server.runtime.prepare_app(&manifest, &Secrets::default()) {
            Ok(_) => panic!("{seed}: accepted"),
            Err(errors) => errors,
        };
        let message = errors[0].to_string();
        assert!(message.contains(says), "{seed}: {message}");
        assert!(message.contains("seed.json"), "{message}");
        assert_eq!(errors[0].fault(), meshwa_runtime::Fault::Client);
    }
    std::fs::remove_file(dir.path().join("seed.json")).unwrap();
    let missing = Manifest::load(&path).unwrap_err().to_string();
    assert!(missing.contains("preload file"), "{missing}");
    assert!(missing.contains("does not exist"), "{missing}");
}

/// A 2xx answer to CONNECT goes out without `content-length` (hyper refuses one there, and
/// closed the connection instead), and so do 204 and 304 answers without one of their own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_answered_200_reaches_the_client() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&[app(dir.path(), "{}")]).await;
    let addr = server.addr;
    let head = tokio::task::spawn_blocking(move || {
        let mut socket = std::net::TcpStream::connect(addr).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        socket
            .write_all(b"CONNECT /compat/tunnel HTTP/1.1\r\nhost: example.com:443\r\n\r\n")
            .unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            match socket.read(&mut byte) {
                Ok(1) => head.push(byte[0]),
                _ => break,
            }
        }
        String::from_utf8_lossy(&head).to_lowercase()
    })
    .await
    .unwrap();
    assert!(head.starts_with("http/1.1 200"), "{head:?}");
    assert!(!head.contains("content-length"), "{head:?}");
}

/// A guest that fails after sending its head: the client's body ends in an error, and the
/// invocation is accounted as cut (with the guest's error kind), not as an `ok` 200.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_cut_by_its_guest_is_logged_as_cut() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&[app(dir.path(), "{}")]).await;
    let request = http::Request::get(format!("http://{}/compat/cut", server.addr))
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    let response = client().request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert!(first.starts_with(b"the beginning, "), "{first:?}");
    assert!(
        body.collect().await.is_err(),
        "a cut body must not look complete"
    );
    let entry = wait_for(&server, |entries| {
        entries.iter().rev().find_map(|e| match &e.what {
            RecentWhat::Invocation { status, error, .. } => Some((*status, error.clone())),
            _ => None,
        })
    })
    .await;
    assert_eq!(entry, (200, Some("trap".to_owned())));

    // A body streamed to its end is accounted as the ok it is.
    let whole = get(server.addr, "/compat/env/GREETING").await;
    assert_eq!(whole.status, 200);
    let last = wait_for(&server, |entries| match &entries.last()?.what {
        RecentWhat::Invocation { status, error, .. } => Some((*status, error.clone())),
        _ => None,
    })
    .await;
    assert_eq!(last, (200, None));
}

/// Writes to stderr, each through a stream handle of its own, are joined into lines at the
/// newlines; an empty line stays; what is left unterminated is logged when the instance ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stderr_writes_are_joined_into_lines() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&[app(dir.path(), "{}")]).await;
    let answer = get(server.addr, "/compat/stderr").await;
    assert_eq!((answer.status, answer.body.as_str()), (200, "written"));
    let lines = wait_for(&server, |entries| {
        let lines: Vec<String> = entries
            .iter()
            .filter_map(|e| match &e.what {
                RecentWhat::Log { stream, message } if stream == "stderr" => Some(message.clone()),
                _ => None,
            })
            .collect();
        (lines.len() >= 4).then_some(lines)
    })
    .await;
    assert_eq!(
        lines,
        [
            "part one, part two",
            "",
            "after an empty line",
            "unterminated"
        ]
    );
}

/// Polls the function's recent log until `found` finds something (at most 5 s).
async fn wait_for<T>(
    server: &crate::common::Server,
    found: impl Fn(&[RecentEntry]) -> Option<T>,
) -> T {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(value) = found(&recent(server)) {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not in the recent log: {:#?}",
            recent(server)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
