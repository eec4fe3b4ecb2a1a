//! Triggers other than HTTP, through the real server: schedules.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::{Served, http, programs, serve, write_manifest};

/// The services guest at `/t/svc`, run every second by a schedule; it counts its events in the
/// store `events` (`node-local` if asked).
pub(super) fn scheduled_manifest(dir: &Path, node_local: bool) -> PathBuf {
    write_manifest(
        dir,
        "scheduled.toml",
        &format!(
            r#"tenant = "t"
app = "clock"

[[functions]]
name = "svc"
component = "{}"
route = "/t/svc"
cron = "* * * * * *"
[functions.grants]
key-value = ["events"]
config = ["greeting"]
logging = true

[config]
greeting = "hi"

[key-value.events]
node-local = {node_local}
"#,
            programs::SERVICES
        ),
    )
}

/// The number of `kind` events counted so far.
pub(super) fn events(served: &Served, kind: &str) -> u64 {
    match http(served.addr, "GET", &format!("/t/svc/kv/events/{kind}"), b"") {
        (200, count) => count.parse().unwrap(),
        (404, _) => 0,
        other => panic!("reading the count: {other:?}"),
    }
}

/// Polls `count` for at most 15 s until it is at least `at_least`.
pub(super) fn wait_for(count: impl Fn() -> u64, at_least: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let now = count();
        if now >= at_least || Instant::now() > deadline {
            return now;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_scheduled_function_runs_at_each_tick_and_is_accounted_like_a_request() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = scheduled_manifest(dir.path(), true);
    let served = serve(&dir.path().join("data"), &[manifest]);
    let counted = wait_for(|| events(&served, "cron"), 3);
    assert!(counted >= 3, "{counted} ticks after 15 s");
    // Each tick arrived with its own scheduled time (RFC 3339, UTC).
    let (status, log) = http(served.addr, "GET", "/t/svc/kv/events/cron-log", b"");
    assert_eq!(status, 200);
    let ticks: Vec<&str> = log.lines().map(|l| l.trim()).collect();
    assert!(ticks.len() >= 3, "{log}");
    assert!(
        ticks
            .iter()
            .all(|t| t.ends_with(":00") || t.contains("+00:00")),
        "{log}"
    );
    let mut distinct = ticks.clone();
    distinct.dedup();
    assert_eq!(distinct.len(), ticks.len(), "a tick fired twice: {log}");
    // The invocation is logged like an HTTP request's.
    let log = served.log_with("function=svc status=200");
    assert!(log.contains("function=svc status=200"), "{log}");
}

#[test]
fn messages_are_refused_on_a_server_without_a_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = write_manifest(
        dir.path(),
        "m.toml",
        &format!(
            "tenant = \"t\"\napp = \"a\"\n[[functions]]\nname = \"f\"\ncomponent = \"{}\"\nsubscribe = \"orders.created\"\n",
            programs::HELLO
        ),
    );
    let stderr = super::refused(&[manifest]);
    assert!(
        stderr.contains("t/a/f: `subscribe` needs a message bus"),
        "{stderr}"
    );
}
