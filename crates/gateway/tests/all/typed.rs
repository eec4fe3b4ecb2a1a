//! Typed calls between functions (`[functions.imports]`): a function imports a WIT interface
//! that another function of its app exports, and meshwa links the two when the app loads,
//! composed (the default) or host-linked (`link = "host"`), with the same guest code for both.
//! Through a real server: values arrive intact, a trapping exporter fails only its request, and
//! every import that cannot be linked is refused at load, naming both functions and the interface.
//! Host-linked, the exporter runs as itself (its own grants and identity), which composition
//! cannot do.

use std::path::{Path, PathBuf};

use crate::common::{get, start};
use meshwa_manifest::Manifest;
use meshwa_runtime::{EngineSettings, Runtime, Secrets};
use meshwa_test_programs as programs;

/// An app whose `hopper` imports `test:typed/sink` from its function `exporter`. `extra` is
/// appended to hopper's entry (before its imports table).
fn app(dir: &Path, exporter: &str, extra: &str) -> PathBuf {
    app_linked(dir, exporter, extra, Link::Composed)
}

/// How `app_linked` writes hopper's imports.
#[derive(Clone, Copy, Debug)]
enum Link {
    /// The short form, `"iface" = "exporter"`.
    Composed,
    /// `"iface" = { function = "exporter", link = "host" }`.
    Host,
    /// `test:typed/sink` host-linked, `test:typed/tally` composed: one function, both ways.
    Mixed,
}

/// [`app`], with hopper's imports linked as `link` says.
fn app_linked(dir: &Path, exporter: &str, extra: &str, link: Link) -> PathBuf {
    let short = |function: &str| format!("\"{function}\"");
    let host = |function: &str| format!("{{ function = \"{function}\", link = \"host\" }}");
    let (sink_entry, tally_entry) = match link {
        Link::Composed => (short(exporter), short("counter")),
        Link::Host => (host(exporter), host("counter")),
        Link::Mixed => (host(exporter), short("counter")),
    };
    let text = format!(
        r#"
tenant = "t"
app = "typed"

[key-value.notes]

[[functions]]
name = "sink"
component = "{sink}"
kind = "exports"

[[functions]]
name = "counter"
component = "{sink}"
kind = "exports"

[[functions]]
name = "impostor"
component = "{impostor}"
kind = "exports"

[[functions]]
name = "plain"
component = "{hello}"

[[functions]]
name = "guarded"
component = "{hello}"
callable-by = ["sink"]

[[functions]]
name = "front"
component = "{caller}"
route = "/typed-front"

[[functions]]
name = "hopper"
component = "{hopper}"
route = "/typed"
{extra}
[functions.imports]
"test:typed/sink" = {sink_entry}
"test:typed/tally" = {tally_entry}
"#,
        sink = programs::TYPED_SINK,
        impostor = programs::TYPED_IMPOSTOR,
        hello = programs::HELLO,
        caller = programs::CALLER,
        hopper = programs::TYPED_HOPPER,
    );
    let path = dir.join(format!("typed-{link:?}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
pub(crate) async fn typed_calls_carry_every_kind_of_value_intact() {
    values_arrive_intact(Link::Composed).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_linked_typed_calls_carry_every_kind_of_value_intact() {
    values_arrive_intact(Link::Host).await;
    values_arrive_intact(Link::Mixed).await;
}

/// The same guest code, the same answers, whichever way the import is linked.
async fn values_arrive_intact(link: Link) {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&[app_linked(dir.path(), "sink", "", link)]).await;
    let answer = get(server.addr, "/typed/values").await;
    assert_eq!(
        (answer.status, answer.body.as_str()),
        (200, "intact"),
        "{}",
        answer.body
    );
    let answer = get(server.addr, "/typed/bytes?size=5000").await;
    assert_eq!(answer.body, "5000 abcdefghijklmnop");
    let answer = get(server.addr, "/typed/bytes?size=0").await;
    assert_eq!(answer.body, "0 ");
    assert_eq!(get(server.addr, "/typed/check/full").await.body, "ok 3");
    assert_eq!(
        get(server.addr, "/typed/check/empty").await.body,
        "err empty payload"
    );
    // A second exporter (composed: three components, three memories, one instance;
    // host-linked: an instance of its own per call).
    assert_eq!(get(server.addr, "/typed/tally").await.body, "6");
}

/// Host-linked, a callee's trap stops its caller at the call, as a panic would a library call:
/// the request fails with the callee's error (500 `trap`), both instances are torn down, and the
/// next request gets fresh ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trapping_host_linked_exporter_fails_its_caller_and_the_server_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&[app_linked(dir.path(), "sink", "", Link::Host)]).await;
    for _ in 0..3 {
        let crashed = get(server.addr, "/typed/crash").await;
        assert_eq!(crashed.status, 500, "{}", crashed.body);
        let body: serde_json::Value = serde_json::from_str(&crashed.body).unwrap();
        assert_eq!(body["error"], "trap");
        assert_eq!(get(server.addr, "/typed/values").await.body, "intact");
    }
    let functions = server.runtime.directory().functions();
    assert!(
        functions.iter().all(|f| f.live_instances() == 0),
        "instances left alive"
    );
}

/// Composed, the exporter's code runs in its importer's store: its in-process calls are made as
/// the importer (and refused by a callee that only lets the exporter in). Host-linked, it runs
/// as itself: the same call is made as the exporter, and the importer may hold grants the
/// exporter lacks, which composition refuses at load.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_linked_exporter_runs_as_itself_with_its_own_grants() {
    let dir = tempfile::tempdir().unwrap();
    let composed = start(&[app_linked(dir.path(), "sink", "", Link::Composed)]).await;
    assert_eq!(
        get(composed.addr, "/typed/call-out/guarded").await.body,
        "err InvokeError::NotAllowed"
    );
    drop(composed);
    let grant = "[functions.grants]\nkey-value = [\"notes\"]\n";
    let host = start(&[app_linked(dir.path(), "sink", grant, Link::Host)]).await;
    assert_eq!(
        get(host.addr, "/typed/call-out/guarded").await.body,
        "ok 200"
    );
    assert_eq!(get(host.addr, "/typed/values").await.body, "intact");
}

/// The exporter runs inside the importer's invocation: its trap is the request's trap (500), and
/// the next request gets fresh instances of both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trapping_exporter_fails_its_request_and_the_server_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&[app(dir.path(), "sink", "")]).await;
    let crashed = get(server.addr, "/typed/crash").await;
    assert_eq!(crashed.status, 500, "{}", crashed.body);
    let body: serde_json::Value = serde_json::from_str(&crashed.body).unwrap();
    assert_eq!(body["error"], "trap");
    assert_eq!(get(server.addr, "/typed/values").await.body, "intact");
}

/// A function of kind "exports" runs only inside its importers: it has no route, and an
/// in-process call finds nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_function_that_only_exports_cannot_be_called() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&[app(dir.path(), "sink", "")]).await;
    let answer = get(server.addr, "/typed-front/call/sink.typed.internal/").await;
    assert_eq!(
        (answer.status, answer.body.as_str()),
        (502, "error: ErrorCode::DestinationNotFound")
    );
}

/// Loads `manifest` and returns why it was refused.
fn refusal(manifest: &Path) -> String {
    let manifest = match Manifest::load(manifest) {
        Ok(manifest) => manifest,
        Err(error) => return error.to_string(),
    };
    let data = tempfile::tempdir().unwrap();
    let runtime = Runtime::with_cache_dir(
        EngineSettings::default(),
        data.path(),
        Path::new(programs::COMPILE_CACHE_DIR),
    )
    .unwrap();
    match runtime.load_app(&manifest, &Secrets::default()) {
        Ok(_) => panic!("{} was loaded", manifest.app),
        Err(error) => {
            assert_eq!(error.fault(), meshwa_runtime::Fault::Client, "{error}");
            error.to_string()
        }
    }
}

#[test]
pub(crate) fn typed_imports_that_cannot_be_linked_are_refused_at_load() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        // No such function in the app.
        (
            "ghost",
            "",
            vec!["`imports`", "`ghost` is not a function of this app"],
        ),
        // Another app's function: imports link within the app only.
        (
            "shop/sink",
            "",
            vec!["`imports`", "linked to a function of this app"],
        ),
        // The exporter does not export the interface.
        (
            "plain",
            "",
            vec![
                "t/typed/hopper",
                "`test:typed/sink`",
                "`plain`",
                "does not export this interface",
            ],
        ),
        // It exports an interface of that name with other types.
        (
            "impostor",
            "",
            vec![
                "t/typed/hopper",
                "`test:typed/sink`",
                "`impostor`",
                "does not match the one imported",
            ],
        ),
        // Composed, the exporter would run with the importer's grants, which it does not have.
        (
            "sink",
            "[functions.grants]\nkey-value = [\"notes\"]\n",
            vec![
                "t/typed/hopper",
                "`test:typed/sink`",
                "`sink`",
                "key-value store `notes`",
            ],
        ),
    ];
    for (exporter, extra, expected) in cases {
        let message = refusal(&app(dir.path(), exporter, extra));
        for part in expected {
            assert!(
                message.contains(part),
                "{exporter}: {part:?} not in {message}"
            );
        }
    }
}

#[test]
fn host_linked_imports_that_cannot_be_linked_are_refused_at_load() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "ghost",
            vec!["`imports`", "`ghost` is not a function of this app"],
        ),
        (
            "plain",
            vec![
                "t/typed/hopper",
                "`test:typed/sink`",
                "`plain`",
                "does not export this interface",
            ],
        ),
        (
            "impostor",
            vec![
                "t/typed/hopper",
                "`test:typed/sink`",
                "`impostor`",
                "does not match the one imported",
            ],
        ),
    ];
    for (exporter, expected) in cases {
        let message = refusal(&app_linked(dir.path(), exporter, "", Link::Host));
        for part in expected {
            assert!(
                message.contains(part),
                "{exporter}: {part:?} not in {message}"
            );
        }
    }
    // `callable-by` binds typed imports of both kinds.
    let path = app_linked(dir.path(), "sink", "", Link::Host);
    let text = std::fs::read_to_string(&path).unwrap().replace(
        "name = \"sink\"\ncomponent",
        "name = \"sink\"\ncallable-by = [\"front\"]\ncomponent",
    );
    std::fs::write(&path, text).unwrap();
    let message = refusal(&path);
    assert!(
        message.contains("`sink` is not callable by `hopper`"),
        "{message}"
    );
}
