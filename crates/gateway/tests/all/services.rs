//! Host services through the real server: key-value, config, outbound HTTP, and grants checked at
//! load. Guest: `guests/services` (the Rust SDK). Logging and durability across `kill -9` are in
//! the CLI's tests, where the server is a child process with a log.

use std::path::{Path, PathBuf};

use crate::common::{client, get, send, start_full};
use meshwa_runtime::{EngineSettings, Runtime, Secrets};
use meshwa_test_programs as programs;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// An app of `tenant` with the services guest as `svc` at `/<tenant>/svc`, granted `grants`
/// (TOML lines for `[functions.grants]`), with `extra` app-level TOML at the end.
fn app(dir: &Path, tenant: &str, grants: &str, extra: &str) -> PathBuf {
    let text = format!(
        r#"tenant = "{tenant}"
app = "book"
secrets = ["api-key"]

[[functions]]
name = "svc"
component = "{}"
route = "/{tenant}/svc"
limits = {{ max-outbound-response = "1KiB", timeout = "5s" }}
[functions.grants]
{grants}

[key-value.entries]
max-key-size = "32B"
max-value-size = "64B"
max-total-size = "400B"

[key-value.hidden]

[config]
title = "Guests of {tenant}"
colour = "green"
{extra}
"#,
        programs::SERVICES
    );
    let path = dir.join(format!("{tenant}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

const ALL_GRANTS: &str = r#"key-value = ["entries"]
config = ["title", "api-key"]
logging = true"#;

fn secrets(tenants: &[&str]) -> Secrets {
    let text: String = tenants
        .iter()
        .map(|t| format!("[{t}.book]\napi-key = \"key-of-{t}\"\n"))
        .collect();
    Secrets::parse(&text, Path::new("secrets.toml")).unwrap()
}

fn settings() -> EngineSettings {
    EngineSettings {
        max_instances: 16,
        ..EngineSettings::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
pub(crate) async fn key_value_operations_through_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = app(dir.path(), "acme", ALL_GRANTS, "");
    let server = start_full(&[manifest], settings(), &secrets(&["acme"])).await;
    let c = client();
    let at = |p: &str| format!("/acme/svc/{p}");

    assert_eq!(get(server.addr, &at("kv/entries/a")).await.status, 404);
    let put = send(&c, server.addr, "PUT", &at("kv/entries/a"), b"first").await;
    assert_eq!((put.status, put.body.as_str()), (200, "ok"));
    let got = get(server.addr, &at("kv/entries/a")).await;
    assert_eq!((got.status, got.body.as_str()), (200, "first"));
    assert_eq!(get(server.addr, &at("exists/entries/a")).await.body, "true");

    for (by, expected) in [(5, "5"), (3, "8")] {
        let incr = send(
            &c,
            server.addr,
            "POST",
            &at(&format!("incr/entries/n?by={by}")),
            b"",
        )
        .await;
        assert_eq!((incr.status, incr.body.as_str()), (200, expected));
    }
    let batch = send(&c, server.addr, "PUT", &at("batch/entries"), b"b=2\nc=3").await;
    assert_eq!(batch.status, 200, "{}", batch.body);
    let many = get(server.addr, &at("batch/entries?keys=a,b,zz")).await;
    assert_eq!(many.body, "a=first\nb=2\nzz!");
    assert_eq!(
        get(server.addr, &at("keys/entries")).await.body,
        "a\nb\nc\nn"
    );

    let del = send(&c, server.addr, "DELETE", &at("kv/entries/a"), b"").await;
    assert_eq!(del.status, 200);
    assert_eq!(
        get(server.addr, &at("exists/entries/a")).await.body,
        "false"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_never_see_each_others_stores() {
    let dir = tempfile::tempdir().unwrap();
    let acme = app(dir.path(), "acme", ALL_GRANTS, "");
    let globex = app(dir.path(), "globex", ALL_GRANTS, "");
    let server = start_full(&[acme, globex], settings(), &secrets(&["acme", "globex"])).await;
    let c = client();

    let put = send(
        &c,
        server.addr,
        "PUT",
        "/acme/svc/kv/entries/secret-plan",
        b"acme only",
    )
    .await;
    assert_eq!(put.status, 200);
    // Same app name, same store name, other tenant: a different store.
    assert_eq!(
        get(server.addr, "/globex/svc/kv/entries/secret-plan")
            .await
            .status,
        404
    );
    assert_eq!(get(server.addr, "/globex/svc/keys/entries").await.body, "");
    assert_eq!(
        get(server.addr, "/acme/svc/keys/entries").await.body,
        "secret-plan"
    );

    // A store of the app that was not granted, and one that does not exist.
    let denied = get(server.addr, "/acme/svc/kv/hidden/x").await;
    assert_eq!(denied.status, 422);
    assert!(
        denied.body.contains("access-denied") || denied.body.contains("AccessDenied"),
        "{}",
        denied.body
    );
    let missing = get(server.addr, "/acme/svc/kv/nope/x").await;
    assert!(
        missing.body.contains("no-such-store") || missing.body.contains("NoSuchStore"),
        "{}",
        missing.body
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quotas_are_error_values() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = app(dir.path(), "acme", ALL_GRANTS, "");
    let server = start_full(&[manifest], settings(), &secrets(&["acme"])).await;
    let c = client();

    let big = send(
        &c,
        server.addr,
        "PUT",
        "/acme/svc/kv/entries/k",
        &[b'x'; 65],
    )
    .await;
    assert_eq!(big.status, 422);
    assert!(
        big.body.contains("max-value-size of 64 bytes"),
        "{}",
        big.body
    );
    let long_key = format!("/acme/svc/kv/entries/{}", "k".repeat(33));
    let long = send(&c, server.addr, "PUT", &long_key, b"v").await;
    assert!(
        long.body.contains("max-key-size of 32 bytes"),
        "{}",
        long.body
    );

    // 400 bytes in all: six entries of 2 + 64 bytes fit, the seventh does not.
    for i in 0..6 {
        let ok = send(
            &c,
            server.addr,
            "PUT",
            &format!("/acme/svc/kv/entries/k{i}"),
            &[b'x'; 64],
        )
        .await;
        assert_eq!(ok.status, 200, "{}", ok.body);
    }
    let full = send(
        &c,
        server.addr,
        "PUT",
        "/acme/svc/kv/entries/k6",
        &[b'x'; 64],
    )
    .await;
    assert!(
        full.body.contains("max-total-size of 400 bytes"),
        "{}",
        full.body
    );
    // The function is fine afterwards: an error value, not a trap.
    assert_eq!(
        get(server.addr, "/acme/svc/kv/entries/k0").await.status,
        200
    );
}

/// Bytes this process holds now (`VmRSS`) or has held at most (`VmHWM`), from /proc.
fn resident(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

/// The app of `acme` with one more store, `large` (values up to 512 KiB, 1 MiB in all), granted
/// too; `limits` is added to the function's limits (TOML, starting with a comma).
fn app_with_large_store(dir: &Path, limits: &str) -> PathBuf {
    let large = "[key-value.large]\nmax-value-size = \"512KiB\"\nmax-total-size = \"1MiB\"\n";
    let grants = ALL_GRANTS.replace(r#"["entries"]"#, r#"["entries", "large"]"#);
    let manifest = app(dir, "acme", &grants, large);
    let text = std::fs::read_to_string(&manifest).unwrap();
    let text = text.replace(r#"timeout = "5s""#, &format!(r#"timeout = "5s"{limits}"#));
    std::fs::write(&manifest, text).unwrap();
    manifest
}

/// `get-many` takes a list of keys and gives their values back. A few kilobytes of keys, all the
/// same, would ask for one large value thousands of times over (here 8,192 × 512 KiB = 4 GiB):
/// the host refuses as soon as the values add up to more than the function may hold (its
/// `max-memory`), before copying them, and tells the function why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_read_cannot_make_the_host_copy_more_than_the_function_may_hold() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = app_with_large_store(dir.path(), "");
    let server = start_full(&[manifest], settings(), &secrets(&["acme"])).await;
    let c = client();
    let value = vec![b'x'; 512 * 1024];
    let put = send(&c, server.addr, "PUT", "/acme/svc/kv/large/big", &value).await;
    assert_eq!(put.status, 200, "{}", put.body);

    // What fits in the function's memory (64 MiB by default) is served.
    let fits = get(server.addr, "/acme/svc/batch-repeat/large?key=big&times=8").await;
    assert_eq!(
        (fits.status, fits.body.as_str()),
        (200, "8 values, 4194304 bytes")
    );

    // Resets the process's peak resident size, so that VmHWM shows what the flood cost.
    std::fs::write("/proc/self/clear_refs", "5").unwrap();
    let before = resident("VmRSS:");
    let flood = get(
        server.addr,
        "/acme/svc/batch-repeat/large?key=big&times=8192",
    )
    .await;
    let grown = resident("VmHWM:").saturating_sub(before);
    // One other test runs in this process meanwhile, with at most 16 instances of 64 MiB: 4 GiB
    // of copies would show far above this.
    assert!(grown < 1536 << 20, "the process grew by {grown} bytes");
    assert_eq!(flood.status, 422, "{}", flood.body);
    assert!(
        flood.body.contains("get-many") && flood.body.contains("max-memory"),
        "{}",
        flood.body
    );

    // Nothing else was harmed: the function and the store still serve.
    let again = get(server.addr, "/acme/svc/kv/large/big").await;
    assert_eq!((again.status, again.body.len()), (200, value.len()));
}

/// A guest's lists are copied into the host before a host function runs, and with the canonical
/// ABI a guest can make every entry point at the same bytes: 15 entries of one 8 MiB value ask
/// the host to take 120 MiB from a guest holding 8. The host takes at most the function's
/// `max-memory` (here 16 MiB) in one call: beyond it the call ends the instance before anything
/// is copied further, and the server goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_host_call_cannot_make_the_host_take_more_than_the_function_may_hold() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = app_with_large_store(dir.path(), r#", max-memory = "16MiB""#);
    let server = start_full(&[manifest], settings(), &secrets(&["acme"])).await;
    let c = client();

    // Within the limit, aliases are only bytes: 15 entries of the same 64 KiB are stored.
    let fits = send(
        &c,
        server.addr,
        "PUT",
        "/acme/svc/batch-alias/large?kib=64&times=15",
        b"",
    )
    .await;
    assert_eq!((fits.status, fits.body.as_str()), (200, "ok"));

    let flood = send(
        &c,
        server.addr,
        "PUT",
        "/acme/svc/batch-alias/large?kib=8192&times=15",
        b"",
    )
    .await;
    // The guest broke the ABI's contract (not an error value): its instance ends, as a trap.
    // Before the bound, the host took all 120 MiB and the store refused the value (422).
    assert_eq!(flood.status, 500, "{}", flood.body);
    assert!(flood.body.contains(r#""error":"trap""#), "{}", flood.body);

    let again = get(server.addr, "/acme/svc/kv/large/k14").await;
    assert_eq!((again.status, again.body.len()), (200, 64 * 1024));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_serves_granted_values_and_secrets_only() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = app(dir.path(), "acme", ALL_GRANTS, "");
    let server = start_full(&[manifest], settings(), &secrets(&["acme"])).await;

    let title = get(server.addr, "/acme/svc/config/title").await;
    assert_eq!((title.status, title.body.as_str()), (200, "Guests of acme"));
    let key = get(server.addr, "/acme/svc/config/api-key").await;
    assert_eq!(key.body, "key-of-acme");
    // `colour` is in [config] but not granted to this function.
    assert_eq!(
        get(server.addr, "/acme/svc/config/colour").await.status,
        404
    );
    let all = get(server.addr, "/acme/svc/config").await;
    assert_eq!(all.body, "api-key=key-of-acme\ntitle=Guests of acme");
}

/// A loopback HTTP server that answers `/small` with "hello" and anything else with 4 KiB
/// (chunked, no length declared, so the limit must cut the stream). Returns its port.
async fn origin() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut head = vec![0; 4096];
                let n = socket.read(&mut head).await.unwrap_or(0);
                let head = String::from_utf8_lossy(&head[..n]).into_owned();
                let response = if head.starts_with("GET /small") {
                    "HTTP/1.1 200 OK\r\ncontent-length: 5\r\nconnection: close\r\n\r\nhello"
                        .to_owned()
                } else {
                    let chunk = "x".repeat(4096);
                    format!(
                        "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n1000\r\n{chunk}\r\n0\r\n\r\n"
                    )
                };
                let _ = socket.write_all(response.as_bytes()).await;
            });
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_http_only_to_granted_origins_and_within_limits() {
    let granted = origin().await;
    let other = origin().await;
    let dir = tempfile::tempdir().unwrap();
    let grants = format!(
        "{ALL_GRANTS}\noutbound = [\"http://127.0.0.1:{granted}\", \"http://localhost:{other}\"]"
    );
    let manifest = app(dir.path(), "acme", &grants, "");
    let server = start_full(&[manifest], settings(), &secrets(&["acme"])).await;
    let fetch =
        |port: u16, path: &str| format!("/acme/svc/fetch?url=http://127.0.0.1:{port}{path}");

    // A tenant granting itself a loopback origin does not reach it: the address is checked
    // when connecting, and the operator's policy does not name it (issue 16, item 1).
    let prohibited = get(server.addr, &fetch(granted, "/small")).await;
    assert_eq!(prohibited.status, 502, "{}", prohibited.body);
    assert!(
        prohibited.body.to_lowercase().contains("prohibited"),
        "{}",
        prohibited.body
    );
    // The operator names the address for this tenant; other loopback ports stay closed, also
    // behind a granted name that resolves to loopback.
    let policy = format!("[tenants.acme]\nprivate-outbound = [\"http://127.0.0.1:{granted}\"]\n");
    server.runtime.set_policy(std::sync::Arc::new(
        meshwa_manifest::Policy::parse(&policy).unwrap(),
    ));

    let ok = get(server.addr, &fetch(granted, "/small")).await;
    assert_eq!((ok.status, ok.body.as_str()), (200, "200 hello"));
    let denied = get(server.addr, &fetch(other, "/small")).await;
    assert_eq!(denied.status, 502);
    // The standard code (the origin is in the server's log: the code has no room for it).
    assert_eq!(denied.body, "error: ErrorCode::HttpRequestDenied");
    let localhost = get(
        server.addr,
        &format!("/acme/svc/fetch?url=http://localhost:{granted}/small"),
    )
    .await;
    assert!(
        localhost.body.contains("HttpRequestDenied"),
        "{}",
        localhost.body
    );
    let rebound = get(
        server.addr,
        &format!("/acme/svc/fetch?url=http://localhost:{other}/small"),
    )
    .await;
    assert_eq!(rebound.status, 502, "{}", rebound.body);
    assert!(
        rebound.body.to_lowercase().contains("prohibited"),
        "{}",
        rebound.body
    );
    // 4 KiB streamed against a 1 KiB limit.
    let big = get(server.addr, &fetch(granted, "/big")).await;
    assert_eq!(big.status, 502, "{}", big.body);
    assert!(
        big.body.contains("body size exceeds limit: 1024 bytes"),
        "{}",
        big.body
    );
}

#[test]
fn a_component_importing_an_ungranted_service_is_refused_at_load() {
    let dir = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let runtime = Runtime::new(settings(), data.path()).unwrap();
    let load = |grants: &str| {
        let manifest =
            meshwa_manifest::Manifest::load(&app(dir.path(), "acme", grants, "")).unwrap();
        runtime
            .load_app(&manifest, &secrets(&["acme"]))
            .err()
            .map(|e| e.to_string())
    };
    let e = load("").expect("no grants: refused");
    assert!(
        e.contains("acme/book/svc")
            && e.contains("wasi:keyvalue/")
            && e.contains("key-value = [\"<store>\"]"),
        "{e}"
    );
    let e = load("key-value = [\"entries\"]\nlogging = true").expect("no config grant: refused");
    assert!(
        e.contains("`wasi:config/store@0.2.0-rc.1`") && e.contains("config = "),
        "{e}"
    );
    let e =
        load("key-value = [\"entries\"]\nconfig = [\"title\"]").expect("no logging grant: refused");
    assert!(e.contains("`wasi:logging/logging@0.1.0-draft`"), "{e}");
    let id = meshwa_manifest::FunctionId {
        tenant: meshwa_manifest::Name::new("acme").unwrap(),
        app: meshwa_manifest::Name::new("book").unwrap(),
        function: meshwa_manifest::Name::new("svc").unwrap(),
    };
    // Refused loads registered nothing.
    assert!(runtime.directory().get(&id).is_none());
    assert_eq!(load(ALL_GRANTS), None);
    assert!(runtime.directory().get(&id).is_some());
}

#[test]
fn a_missing_secret_is_refused_at_load_without_values() {
    let dir = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let runtime = Runtime::new(settings(), data.path()).unwrap();
    let manifest =
        meshwa_manifest::Manifest::load(&app(dir.path(), "acme", ALL_GRANTS, "")).unwrap();
    let e = runtime
        .load_app(&manifest, &secrets(&["globex"]))
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("app acme/book: secret `api-key` has no value"),
        "{e}"
    );
    assert!(!e.contains("key-of-globex"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
pub(crate) async fn the_guestbook_example_keeps_state_and_reads_config() {
    let examples = Path::new(programs::EXAMPLES_DIR);
    let secrets = Secrets::load(&examples.join("secrets.toml")).unwrap();
    let manifest = programs::example_manifest("umbrella-guestbook");
    let server = start_full(&[manifest], settings(), &secrets).await;
    let c = client();

    let first = get(server.addr, "/umbrella/guestbook").await;
    assert_eq!(first.status, 200);
    assert!(
        first.body.starts_with("The Umbrella guestbook\n"),
        "{}",
        first.body
    );
    assert!(first.body.contains("visit #1, 0 entries"), "{}", first.body);

    let signed = send(
        &c,
        server.addr,
        "POST",
        "/umbrella/guestbook",
        b"name=Ada&message=Hello+there%21",
    )
    .await;
    assert_eq!(
        (signed.status, signed.body.as_str()),
        (201, "thank you, entry #1\n")
    );
    let bad = send(
        &c,
        server.addr,
        "POST",
        "/umbrella/guestbook",
        b"name=&message=x",
    )
    .await;
    assert_eq!(bad.status, 400);

    let second = get(server.addr, "/umbrella/guestbook").await;
    assert!(
        second.body.contains("visit #2, 1 entries"),
        "{}",
        second.body
    );
    assert!(second.body.contains("Ada: Hello there!"), "{}", second.body);

    let refused = send(&c, server.addr, "DELETE", "/umbrella/guestbook", b"").await;
    assert_eq!(refused.status, 401);
    let request = http::Request::delete(format!("http://{}/umbrella/guestbook", server.addr))
        .header("authorization", "Bearer change-me")
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    let cleared = c.request(request).await.unwrap();
    assert_eq!(cleared.status(), 200);
    assert!(
        get(server.addr, "/umbrella/guestbook")
            .await
            .body
            .contains("0 entries")
    );
}

/// The server keeps values it has read in memory (`--kv-cache`); a write through one function
/// must be what a read through another function sees right after, however reads and writes
/// interleave: several clients, each writing its own key again and again through `w` and
/// reading it back through `r`, while the others read it too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_never_returns_a_value_older_than_an_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("cache.toml");
    std::fs::write(
        &manifest,
        format!(
            "tenant = \"t\"\napp = \"cache\"\n\
             [[functions]]\nname = \"w\"\ncomponent = \"{0}\"\nroute = \"/t/w\"\n\
             [functions.grants]\n{1}\n\
             [[functions]]\nname = \"r\"\ncomponent = \"{0}\"\nroute = \"/t/r\"\n\
             [functions.grants]\n{1}\n\
             [key-value.entries]\n[config]\nx = \"1\"\n",
            programs::SERVICES,
            // The guest imports every service it exercises, so each needs its grant.
            "key-value = [\"entries\"]\nconfig = [\"x\"]\nlogging = true"
        ),
    )
    .unwrap();
    // (The guest reads its operation after two path segments, as behind `/<tenant>/svc`.)
    let server = start_full(&[manifest], settings(), &Secrets::default()).await;
    let clients: Vec<_> = (0..4)
        .map(|client_no| {
            let addr = server.addr;
            tokio::spawn(async move {
                let c = client();
                for round in 0..25 {
                    let value = format!("client {client_no} round {round}");
                    let key = format!("kv/entries/k{client_no}");
                    let put = send(&c, addr, "PUT", &format!("/t/w/{key}"), value.as_bytes()).await;
                    assert_eq!(put.status, 200, "{}", put.body);
                    let got = get(addr, &format!("/t/r/{key}")).await;
                    assert_eq!(got.body, value, "a stale read after an acknowledged write");
                    // Another client's key, to have reads fill the cache while others write.
                    let other = format!("/t/r/kv/entries/k{}", (client_no + 1) % 4);
                    let _ = get(addr, &other).await;
                }
            })
        })
        .collect();
    for client in clients {
        client.await.unwrap();
    }
}

#[test]
pub(crate) fn a_publishing_function_needs_its_grant_and_a_message_bus() {
    let dir = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let runtime = Runtime::new(settings(), data.path()).unwrap();
    let load = |grants: &str| {
        let path = dir.path().join("pub.toml");
        std::fs::write(
            &path,
            format!(
                "tenant = \"acme\"\napp = \"news\"\n[[functions]]\nname = \"pub\"\ncomponent = \"{}\"\nroute = \"/acme/pub\"\n[functions.grants]\n{grants}\n",
                programs::PUBLISHER
            ),
        )
        .unwrap();
        let manifest = meshwa_manifest::Manifest::load(&path).unwrap();
        runtime
            .load_app(&manifest, &Secrets::default())
            .err()
            .map(|e| e.to_string())
    };
    // Granting is linking: the import without a grant is refused, naming the grant.
    let e = load("").expect("no grant: refused");
    assert!(
        e.contains("meshwa:platform/messaging") && e.contains("publish = [\"<subject>\"]"),
        "{e}"
    );
    // With the grant, a server alone has no bus to publish on.
    let e = load("publish = [\"orders.>\"]").expect("no bus: refused");
    assert!(
        e.contains("acme/news/pub: `grants.publish` needs a message bus"),
        "{e}"
    );
}
