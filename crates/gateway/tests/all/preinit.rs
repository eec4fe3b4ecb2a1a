//! Pre-initialized images (issue 18, item 2): a component's `wizer-initialize` runs once at load
//! and requests start from its snapshot; each request still gets a fresh instance of it; an
//! initialization that reaches for randomness is not snapshotted; `pre-initialize = false`
//! turns it off; a restart takes the snapshot from the cache.

use std::path::{Path, PathBuf};

use meshwa_manifest::{FunctionId, Manifest, Name};
use meshwa_runtime::{EngineSettings, PreInitialization, Runtime, Secrets};

use crate::common::{get, start};
use meshwa_test_programs as programs;

fn app(dir: &Path) -> PathBuf {
    let text = format!(
        r#"
tenant = "acme"
app = "preinit"

[[functions]]
name = "table"
component = "{preinit}"
route = "/acme/table"

[[functions]]
name = "table-off"
component = "{preinit}"
route = "/acme/table-off"
pre-initialize = false

[[functions]]
name = "random"
component = "{random}"
route = "/acme/random"
"#,
        preinit = programs::PREINIT,
        random = programs::PREINIT_RANDOM,
    );
    let path = dir.join("meshwa.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn id(function: &str) -> FunctionId {
    FunctionId {
        tenant: Name::new("acme").unwrap(),
        app: Name::new("preinit").unwrap(),
        function: Name::new(function).unwrap(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
pub(crate) async fn a_pre_initialized_function_starts_every_request_from_its_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&[app(dir.path())]).await;
    let status = |function: &str| {
        server
            .runtime
            .directory()
            .get(&id(function))
            .unwrap()
            .pre_initialization()
            .clone()
    };
    assert!(
        matches!(status("table"), PreInitialization::Snapshot { .. }),
        "{:?}",
        status("table")
    );
    assert_eq!(status("table-off"), PreInitialization::Off);

    // From the snapshot: the table is there before the request, and the request's own state
    // (its counter) never reaches the next one.
    let mut entry = None;
    for _ in 0..3 {
        let answer = get(server.addr, "/acme/table").await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        assert!(
            answer
                .body
                .starts_with("counter=1 pre-initialized=true entries=200000 "),
            "{}",
            answer.body
        );
        let this = answer.body.rsplit_once("entry=").unwrap().1.to_owned();
        assert_eq!(entry.get_or_insert(this.clone()), &this);
    }
    // Turned off: the same component builds the table itself, to the same result.
    let off = get(server.addr, "/acme/table-off").await;
    assert_eq!(
        off.body,
        format!(
            "counter=1 pre-initialized=false entries=200000 entry={}",
            entry.unwrap()
        )
    );

    // An initialization that draws randomness is not snapshotted: every request draws its own.
    match status("random") {
        PreInitialization::Refused(reason) => {
            assert!(reason.contains("wasi:random"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    let first = get(server.addr, "/acme/random").await;
    let second = get(server.addr, "/acme/random").await;
    assert_eq!((first.status, second.status), (200, 200));
    assert_ne!(first.body, second.body, "two requests drew the same seed");
}

/// A restart (a new runtime on the same cache) serves the snapshot it took before, without
/// running the initialization again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
pub(crate) async fn a_restart_reuses_the_cached_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = Manifest::load(&app(dir.path())).unwrap();
    let cache = dir.path().join("cache");
    let load = |data: &str| {
        let runtime =
            Runtime::with_cache_dir(EngineSettings::default(), &dir.path().join(data), &cache)
                .unwrap();
        let functions = runtime.load_app(&manifest, &Secrets::default()).unwrap();
        functions
            .iter()
            .find(|f| f.id() == &id("table"))
            .unwrap()
            .pre_initialization()
            .clone()
    };
    assert_eq!(load("first"), PreInitialization::Snapshot { cached: false });
    assert_eq!(load("second"), PreInitialization::Snapshot { cached: true });
}
