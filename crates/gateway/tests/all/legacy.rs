//! Legacy and memory-unsafe code through the real server: C and C++ functions built with
//! Debian's clang (core modules, adapted at load), plain C programs served CGI-style, and C
//! functions with real memory-safety bugs next to another tenant's traffic.

use std::path::{Path, PathBuf};

use crate::common::{Answer, client, get, send, start, start_full};
use meshwa_manifest::Manifest;
use meshwa_runtime::{CacheOutcome, EngineSettings, LoadError, Runtime, Secrets};
use meshwa_test_programs as programs;

/// One function of kind `kind` at `route`, in its own app of `tenant`.
fn single(dir: &Path, tenant: &str, component: &str, route: &str, kind: &str) -> PathBuf {
    let text = format!(
        r#"tenant = "{tenant}"
app = "legacy"

[[functions]]
name = "prog"
kind = "{kind}"
component = "{component}"
route = "{route}"
limits = {{ max-memory = "16MiB", timeout = "5s", max-request-body = "64KiB" }}
"#
    );
    let path = dir.join(format!("{tenant}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
pub(crate) async fn c_and_cpp_examples_answer_with_services() {
    let server = start_full(
        &[
            programs::example_manifest("hooli-notes"),
            programs::example_manifest("hooli-wordfreq"),
        ],
        EngineSettings::default(),
        &Secrets::default(),
    )
    .await;
    let c = client();

    let empty = get(server.addr, "/hooli/notes/count").await;
    assert_eq!((empty.status, empty.body.as_str()), (200, "0\n"));
    for (i, note) in ["remember the milk", "call Ada"].iter().enumerate() {
        let added = send(&c, server.addr, "POST", "/hooli/notes", note.as_bytes()).await;
        assert_eq!(added.status, 201, "{}", added.body);
        assert_eq!(added.body, format!("note {}\n", i + 1));
    }
    let listed = get(server.addr, "/hooli/notes").await;
    assert_eq!(listed.status, 200);
    assert_eq!(
        listed.body,
        "Hooli's note board (C)\n1: remember the milk\n2: call Ada\n"
    );
    assert_eq!(listed.headers["content-type"], "text/plain; charset=utf-8");
    let too_long = send(&c, server.addr, "POST", "/hooli/notes", &[b'x'; 600]).await;
    assert_eq!(too_long.status, 400);

    let text = b"The cat saw the other cat. The end; the CAT won't mind.";
    let words = send(&c, server.addr, "POST", "/hooli/wordfreq?top=3", text).await;
    assert_eq!(words.status, 200, "{}", words.body);
    assert_eq!(words.body, "4 the\n3 cat\n1 end\n");
    let wrong = get(server.addr, "/hooli/wordfreq").await;
    assert_eq!(wrong.status, 405);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
pub(crate) async fn core_modules_are_adapted_once_and_cached() {
    let dir = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let manifest =
        Manifest::load(&single(dir.path(), "acme", programs::C_CGI, "/cgi", "cgi")).unwrap();
    for expected in [CacheOutcome::Compiled, CacheOutcome::Hit] {
        let runtime = Runtime::new(EngineSettings::default(), data.path()).unwrap();
        let functions = runtime.load_app(&manifest, &Secrets::default()).unwrap();
        assert_eq!(functions[0].cache_outcome(), expected);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wrong_kind_of_program_is_refused_at_load_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let runtime = Runtime::new(EngineSettings::default(), data.path()).unwrap();
    let load = |path: PathBuf| {
        runtime
            .load_app(&Manifest::load(&path).unwrap(), &Secrets::default())
            .err()
            .expect("refused")
    };

    // An HTTP component declared as a CGI program.
    let error = load(single(dir.path(), "a", programs::HELLO, "/a", "cgi"));
    assert!(matches!(error, LoadError::NotCommand { .. }), "{error}");
    // A plain C program (main) declared as an HTTP function.
    let error = load(single(dir.path(), "b", programs::C_CGI, "/b", "http"));
    assert!(matches!(error, LoadError::NotHttpHandler { .. }), "{error}");
    // Not WebAssembly at all, and a core module cut in half.
    let junk = dir.path().join("junk.wasm");
    std::fs::write(&junk, b"#!/bin/sh\necho hello\n").unwrap();
    let error = load(single(dir.path(), "c", junk.to_str().unwrap(), "/c", "cgi"));
    assert!(
        error
            .to_string()
            .contains("not a WebAssembly component or core module"),
        "{error}"
    );
    let bytes = std::fs::read(programs::C_CGI).unwrap();
    let truncated = dir.path().join("truncated.wasm");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let error = load(single(
        dir.path(),
        "d",
        truncated.to_str().unwrap(),
        "/d",
        "cgi",
    ));
    assert!(
        matches!(error, LoadError::InvalidComponent { .. }),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_c_program_serves_cgi_style() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&[single(
        dir.path(),
        "acme",
        programs::C_CGI,
        "/tools/wc",
        "cgi",
    )])
    .await;
    let c = client();

    let request = http::Request::post(format!("http://{}/tools/wc/extra/path?x=1", server.addr))
        .header("content-type", "text/plain")
        .body(http_body_util::Full::new(bytes::Bytes::from_static(
            b"hello world\nbye\n",
        )))
        .unwrap();
    let response = c.request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/plain");
    assert_eq!(response.headers()["x-program"], "prog");
    let body = http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap()
        .to_bytes();
    assert_eq!(
        String::from_utf8_lossy(&body),
        "2 3 16\nmethod=POST script=/tools/wc path_info=/extra/path query=x=1 length=16 type=text/plain\n"
    );

    let status = get(server.addr, "/tools/wc?mode=status").await;
    assert_eq!(
        (status.status, status.body.as_str()),
        (404, "nothing here\n")
    );
    assert_eq!(status.headers["x-cgi"], "yes");

    let big = get(server.addr, "/tools/wc?mode=big").await;
    assert_eq!(big.status, 200);
    assert_eq!(big.body.len(), 4096 * 1024);

    let bad = get(server.addr, "/tools/wc?mode=bad").await;
    assert_eq!(bad.status, 502, "{}", bad.body);
    assert!(bad.body.contains("bad_cgi_output"), "{}", bad.body);

    let exited = get(server.addr, "/tools/wc?mode=exit3").await;
    assert_eq!(exited.status, 500, "{}", exited.body);

    let too_big = send(&c, server.addr, "POST", "/tools/wc", &vec![b'a'; 65 * 1024]).await;
    assert_eq!(too_big.status, 413);
}

/// What each bug of `guests/c/unsafe.c` does in the sandbox, as docs/languages.md states it.
struct Bug {
    path: &'static str,
    status: u16,
    /// Part of the body: what the function printed, or the error kind.
    says: &'static str,
}

const BUGS: &[Bug] = &[
    // 300 bytes into a 16-byte stack buffer overwrite the caller's frame in linear memory,
    // pointers included; the next use of one is out of bounds.
    Bug {
        path: "/unsafe/stack-overflow",
        status: 500,
        says: r#""error":"trap""#,
    },
    // 64 KiB past a heap block run off the end of the instance's memory.
    Bug {
        path: "/unsafe/heap-overflow",
        status: 500,
        says: r#""error":"trap""#,
    },
    // Undetected: the dangling write lands in another block of the same instance.
    Bug {
        path: "/unsafe/use-after-free",
        status: 200,
        says: "second owner's block now reads dangling write\nstate: clean",
    },
    // Outside the linear memory: the bounds check traps.
    Bug {
        path: "/unsafe/wild-write",
        status: 500,
        says: r#""error":"trap""#,
    },
    // Address 0 is ordinary linear memory in WebAssembly: no fault, nothing outside touched.
    Bug {
        path: "/unsafe/null-deref",
        status: 200,
        says: "wrote through NULL and read back 42\nstate: clean",
    },
    // Corrupted globals, answered normally: only this instance saw them.
    Bug {
        path: "/unsafe/corrupt",
        status: 200,
        says: "state: corrupted (marker=overwritten, requests=1000)",
    },
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
pub(crate) async fn memory_unsafe_c_is_contained_while_another_tenant_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let evil = single(dir.path(), "evil", programs::C_UNSAFE, "/unsafe", "http");
    let victim = single(dir.path(), "victim", programs::HELLO, "/victim", "http");
    let server = start(&[evil, victim]).await;
    let addr = server.addr;

    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut good = Vec::new();
    for worker in 0..4 {
        let done = done.clone();
        good.push(tokio::spawn(async move {
            let c = client();
            let mut served = 0u32;
            // Bounded: the attack below ends in seconds; the cap only guards against a hang.
            while !done.load(std::sync::atomic::Ordering::Relaxed) && served < 100_000 {
                let path = format!("/victim/w{worker}/{served}");
                let answer = send(&c, addr, "GET", &path, b"").await;
                assert_eq!(answer.status, 200, "good request {path}: {}", answer.body);
                assert_eq!(
                    answer.body,
                    format!("hello from meshwa: {path} (request 1 of this instance)\n")
                );
                served += 1;
            }
            served
        }));
    }

    let c = client();
    for round in 0..5 {
        for bug in BUGS {
            let answer: Answer = send(&c, addr, "POST", bug.path, &[b'Z'; 300]).await;
            assert_eq!(
                answer.status, bug.status,
                "round {round}, {}: {}",
                bug.path, answer.body
            );
            assert!(
                answer.body.contains(bug.says),
                "round {round}, {}: {}",
                bug.path,
                answer.body
            );
            // Whatever the bug did, the next request starts from a clean instance.
            let next = get(addr, "/unsafe/ok").await;
            assert_eq!(
                (next.status, next.body.as_str()),
                (200, "ok\nstate: clean (marker=pristine, requests=1)\n"),
                "after {}",
                bug.path
            );
        }
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut total = 0;
    for worker in good {
        total += worker.await.expect("every good request succeeded");
    }
    assert!(total > 0, "the good tenant was served during the attack");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
pub(crate) async fn python_and_javascript_functions_answer() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("polyglot.toml");
    std::fs::write(
        &manifest,
        format!(
            r#"tenant = "poly"
app = "hello"

[[functions]]
name = "py"
component = "{}"
route = "/py"
limits = {{ max-memory = "64MiB", timeout = "10s" }}

[[functions]]
name = "js"
component = "{}"
route = "/js"
limits = {{ max-memory = "64MiB", timeout = "10s" }}
"#,
            programs::PYTHON_HELLO,
            programs::JS_HELLO
        ),
    )
    .unwrap();
    let server = start(&[manifest]).await;
    for (path, expected) in [
        ("/py", "hello from python\n"),
        ("/py/greet?name=Ada", "hello, Ada, from python\n"),
        ("/js", "hello from javascript\n"),
        (
            "/js/greet?x=1&name=Bob%20Lee",
            "hello, Bob Lee, from javascript\n",
        ),
    ] {
        // Twice: the second request gets a fresh instance too.
        for _ in 0..2 {
            let answer = get(server.addr, path).await;
            assert_eq!(
                (answer.status, answer.body.as_str()),
                (200, expected),
                "{path}"
            );
            assert_eq!(answer.headers["content-type"], "text/plain");
        }
    }
    // Both interpreters were initialized when their components were built, and every request
    // starts from that snapshot: its random generators must still give each request its own
    // numbers. (Python's string hash seed is the one thing shared: drawn at build time, the
    // same for every request of a build; docs/languages.md.)
    let mut seen = std::collections::HashSet::new();
    for path in ["/py/random", "/py/random", "/js/random", "/js/random"] {
        let answer = get(server.addr, path).await;
        assert_eq!(answer.status, 200, "{path}");
        let fields: Vec<&str> = answer.body.split_whitespace().collect();
        assert_eq!(fields[0], "random", "{path}: {}", answer.body);
        // `random <Math.random() or random.random()> ... <urandom or crypto bytes>`
        for value in [fields[1], fields[fields.len() - 1]] {
            assert!(
                seen.insert(value.to_owned()),
                "{path}: {value} again, in {}",
                answer.body
            );
        }
    }
    // A POST is echoed, streamed back in pieces: more than one read and write of each guest.
    let body: String = (0..8_000).map(|i| format!("{i:07}\n")).collect();
    assert!(body.len() > 3 * 16 * 1024);
    let client = client();
    for path in ["/py/echo", "/js/echo"] {
        let answer = send(&client, server.addr, "POST", path, body.as_bytes()).await;
        assert_eq!(answer.status, 200, "{path}: {}", answer.body);
        assert!(
            answer.body == body,
            "{path}: the echo differs from the body sent"
        );
    }
}

/// The Python and JavaScript example app (`examples/wonka-orders`): Python parses the order,
/// calls its JavaScript sibling in-process for a quote (which reads the preloaded price list),
/// and keeps the order in a store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
pub(crate) async fn the_python_and_javascript_example_app_prices_and_keeps_orders() {
    let server = start(&[programs::example_manifest("wonka-orders")]).await;
    let client = client();
    let order = |body: &'static str| {
        send(
            &client,
            server.addr,
            "POST",
            "/wonka/orders",
            body.as_bytes(),
        )
    };
    let json = |answer: &Answer| -> serde_json::Value {
        serde_json::from_str(&answer.body).unwrap_or_else(|e| panic!("{e}: {}", answer.body))
    };

    let first = order(r#"{"customer": "ada", "items": [{"sku": "fudge", "qty": 2}, {"sku": "gobstopper", "qty": 1}]}"#).await;
    assert_eq!(first.status, 201, "{}", first.body);
    assert_eq!(first.headers["content-type"], "application/json");
    let first = json(&first);
    assert_eq!(first["order"], 1);
    assert_eq!(first["total_cents"], 575);
    assert_eq!(first["lines"][0]["unit_cents"], 250);
    let second = order(r#"{"customer": "ada", "items": [{"sku": "wonkabar", "qty": 3}]}"#).await;
    assert_eq!(
        (second.status, json(&second)["order"].clone()),
        (201, 2.into())
    );

    let history = get(server.addr, "/wonka/orders?customer=ada").await;
    assert_eq!(history.status, 200, "{}", history.body);
    let history = json(&history);
    assert_eq!(history["orders"], 2);
    assert_eq!(history["last"]["total_cents"], 360);

    // Bad input: a clear JSON error from whichever function found it.
    let not_json = order("{not json").await;
    assert_eq!(not_json.status, 400, "{}", not_json.body);
    assert!(
        json(&not_json)["error"]
            .as_str()
            .unwrap()
            .contains("not JSON")
    );
    let unknown = order(r#"{"customer": "bo", "items": [{"sku": "snozzberry", "qty": 1}]}"#).await;
    assert_eq!(unknown.status, 422, "{}", unknown.body);
    assert!(
        json(&unknown)["error"]
            .as_str()
            .unwrap()
            .contains("snozzberry")
    );
    let bad_qty = order(r#"{"customer": "bo", "items": [{"sku": "fudge", "qty": 0}]}"#).await;
    assert_eq!(bad_qty.status, 400, "{}", bad_qty.body);
    // Nothing was recorded for the refused orders.
    let bo = get(server.addr, "/wonka/orders?customer=bo").await;
    assert_eq!(json(&bo)["orders"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
pub(crate) async fn a_c_function_calls_other_functions_in_process() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("calls.toml");
    std::fs::write(
        &manifest,
        format!(
            r#"tenant = "acme"
app = "mixed"

[[functions]]
name = "caller"
component = "{}"
route = "/c"

[[functions]]
name = "hello"
component = "{}"

[[functions]]
name = "wc"
kind = "cgi"
component = "{}"
"#,
            programs::C_CALLER,
            programs::HELLO,
            programs::C_CGI
        ),
    )
    .unwrap();
    let server = start(&[manifest]).await;
    let called = get(server.addr, "/c/call?fn=hello").await;
    assert_eq!(
        (called.status, called.body.as_str()),
        (
            200,
            "status 200: hello from meshwa: /from-c (request 1 of this instance)\n"
        )
    );
    // A CGI program is a function like any other: reachable in-process, private here (so its
    // SCRIPT_NAME is empty and PATH_INFO the whole path).
    let counted = send(
        &client(),
        server.addr,
        "POST",
        "/c/call?fn=wc",
        b"one two\n",
    )
    .await;
    assert_eq!(counted.status, 200, "{}", counted.body);
    assert!(
        counted.body.starts_with(
            "status 200: 1 2 8\nmethod=POST script= path_info=/from-c query= length=8"
        ),
        "{}",
        counted.body
    );
    let missing = get(server.addr, "/c/call?fn=nobody").await;
    assert_eq!(
        (missing.status, missing.body.as_str()),
        (502, "error: not-found\n")
    );
}

/// A CGI body is read whole before admission, so its bytes are charged while held: to the
/// server's budget for bodies not yet admitted (past it, 503) and to the tenant's memory quota
/// (past it, 429); they are given back when the program is gone (issue 16, item 4).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cgi_bodies_held_before_admission_are_charged() {
    let dir = tempfile::tempdir().unwrap();
    // acme's memory quota is 3 MiB; globex has none.
    let manifest = dir.path().join("acme.toml");
    std::fs::write(
        &manifest,
        format!(
            "tenant = \"acme\"\napp = \"legacy\"\n[tenant-limits]\nmax-memory = \"3MiB\"\n\
             [[functions]]\nname = \"prog\"\nkind = \"cgi\"\ncomponent = \"{}\"\nroute = \"/tools/wc\"\n",
            programs::C_CGI
        ),
    )
    .unwrap();
    let unbounded = single(dir.path(), "globex", programs::C_CGI, "/globex/wc", "cgi")
        .to_string_lossy()
        .into_owned();
    let text = std::fs::read_to_string(&unbounded).unwrap().replace(
        "max-request-body = \"64KiB\"",
        "max-request-body = \"16MiB\"",
    );
    std::fs::write(&unbounded, text).unwrap();
    let settings = EngineSettings {
        max_buffered_bodies: 8 * 1024 * 1024,
        ..EngineSettings::default()
    };
    let server = start_full(&[manifest, unbounded.into()], settings, &Secrets::default()).await;
    let c = client();
    let over_server = post_refused_early(server.addr, "/globex/wc", 10 << 20).await;
    assert_eq!(over_server.0, 503, "{}", over_server.1);
    assert!(over_server.1.contains("overloaded"), "{}", over_server.1);
    let over_tenant = post_refused_early(server.addr, "/tools/wc", 4 << 20).await;
    assert_eq!(over_tenant.0, 429, "{}", over_tenant.1);
    assert!(over_tenant.1.contains("tenant_memory"), "{}", over_tenant.1);
    let small = vec![b'x'; 1000];
    let post = || send(&c, server.addr, "POST", "/tools/wc", &small);
    // Nothing stays charged: small bodies pass, again and again.
    for _ in 0..3 {
        let ok = post().await;
        assert_eq!(ok.status, 200, "{}", ok.body);
        assert!(ok.body.starts_with("0 1 1000\n"), "{}", ok.body);
    }
}

/// POSTs `len` bytes over a plain socket and reads the answer, also when the server answers and
/// closes before it has read the whole body (as it does when it refuses a body part-way): a
/// client such as hyper's then reports only its failed write.
async fn post_refused_early(addr: std::net::SocketAddr, path: &str, len: usize) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: test\r\ncontent-length: {len}\r\nconnection: close\r\n\r\n"
    );
    let writing = tokio::spawn(async move {
        // Fails once the server has closed: expected, the answer is already on its way.
        let _ = writer.write_all(head.as_bytes()).await;
        let _ = writer.write_all(&vec![b'x'; len]).await;
    });
    let mut answer = Vec::new();
    let mut chunk = [0u8; 4096];
    // Until the server closes (or resets) the connection.
    while let Ok(n) = reader.read(&mut chunk).await {
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&chunk[..n]);
    }
    writing.abort();
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, text)
}
