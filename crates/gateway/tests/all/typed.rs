//! Typed calls between functions (`[functions.imports]`): a function imports a WIT interface
//! that another function of its app exports, and meshwa composes the two when the app loads.
//! Through a real server: values arrive intact, a trapping exporter fails only its request, and
//! every import that cannot be linked is refused at load, naming both functions and the interface.

use std::path::{Path, PathBuf};

use crate::common::{get, start};
use meshwa_manifest::Manifest;
use meshwa_runtime::{EngineSettings, Runtime, Secrets};
use meshwa_test_programs as programs;

/// An app whose `hopper` imports `test:typed/sink` from its function `exporter`. `extra` is
/// appended to hopper's entry (before its imports table).
fn app(dir: &Path, exporter: &str, extra: &str) -> PathBuf {
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
name = "front"
component = "{caller}"
route = "/typed-front"

[[functions]]
name = "hopper"
component = "{hopper}"
route = "/typed"
{extra}
[functions.imports]
"test:typed/sink" = "{exporter}"
"test:typed/tally" = "counter"
"#,
        sink = programs::TYPED_SINK,
        impostor = programs::TYPED_IMPOSTOR,
        hello = programs::HELLO,
        caller = programs::CALLER,
        hopper = programs::TYPED_HOPPER,
    );
    let path = dir.join("typed.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
pub(crate) async fn typed_calls_carry_every_kind_of_value_intact() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&[app(dir.path(), "sink", "")]).await;
    let answer = get(server.addr, "/typed/values").await;
    assert_eq!(
        (answer.status, answer.body.as_str()),
        (200, "intact"),
        "{}",
        answer.body
    );
    let answer = get(server.addr, "/typed/bytes?size=5000").await;
    assert_eq!(answer.body, "5000 abcdefghijklmnop");
    assert_eq!(get(server.addr, "/typed/check/full").await.body, "ok 3");
    assert_eq!(
        get(server.addr, "/typed/check/empty").await.body,
        "err empty payload"
    );
    // A second exporter: three components, three memories, one instance.
    assert_eq!(get(server.addr, "/typed/tally").await.body, "6");
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
