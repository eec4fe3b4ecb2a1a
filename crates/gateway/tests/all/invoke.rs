//! Typed in-process calls (`meshwa:platform/invoke`) with host-owned buffers, through a real
//! server: each error variant, hand-over semantics and the depth limit.

use std::path::{Path, PathBuf};

use crate::common::{get, start};
use meshwa_test_programs as programs;

fn apps(dir: &Path) -> Vec<PathBuf> {
    let text = r#"
tenant = "t"
app = "inv"

[[functions]]
name = "invoker"
component = "INVOKER"
route = "/inv"
limits = { timeout = "10s" }

[[functions]]
name = "echo"
component = "ECHO"

[[functions]]
name = "faults"
component = "FAULTS"
limits = { timeout = "300ms", max-memory = "8MiB" }

[[functions]]
name = "vault"
component = "ECHO"
callable-by = ["echo"]

[[functions]]
name = "napper"
component = "FAULTS"
limits = { timeout = "5s" }
"#
    .replace("INVOKER", programs::INVOKER)
    .replace("ECHO", programs::ECHO)
    .replace("FAULTS", programs::FAULTS);
    let t = dir.join("t.toml");
    std::fs::write(&t, text).unwrap();
    let u = dir.join("u.toml");
    std::fs::write(
        &u,
        format!(
            "tenant = \"u\"\napp = \"inv\"\n[[functions]]\nname = \"secret\"\ncomponent = \"{}\"\n",
            programs::ECHO
        ),
    )
    .unwrap();
    vec![t, u]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
pub(crate) async fn invoke_hands_a_buffer_to_a_callee_and_gets_a_buffer_back() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&apps(dir.path())).await;
    let answer = get(server.addr, "/inv/call/echo/x?size=5000").await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let alphabet = "abcdefghijklmnopqrstuvwxyz";
    let head: String = alphabet.repeat(3).chars().take(64).collect();
    assert_eq!(answer.body, format!("200 5000: {head}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_failure_is_a_typed_error_for_the_caller() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&apps(dir.path())).await;
    let cases = [
        ("/inv/call/faults/trap", "error: InvokeError::Trapped("),
        ("/inv/call/faults/loop", "error: InvokeError::TimedOut"),
        ("/inv/call/faults/oom", "error: InvokeError::LimitExceeded("),
        ("/inv/call/nobody/", "error: InvokeError::NotFound"),
        ("/inv/call/secret/", "error: InvokeError::NotFound"),
        ("/inv/call/vault/", "error: InvokeError::NotAllowed"),
    ];
    for (path, expected) in cases {
        let answer = get(server.addr, path).await;
        assert_eq!(answer.status, 502, "{path}: {}", answer.body);
        assert!(answer.body.starts_with(expected), "{path}: {}", answer.body);
    }
    // The caller survived every one of them.
    assert_eq!(get(server.addr, "/inv/call/echo/").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cycle_of_invokes_ends_with_depth_exceeded() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&apps(dir.path())).await;
    let answer = get(server.addr, "/inv/recurse").await;
    assert_eq!(
        (answer.status, answer.body.as_str()),
        (508, "error: InvokeError::DepthExceeded")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_buffer_moved_into_a_call_is_gone_for_the_caller() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&apps(dir.path())).await;
    let answer = get(server.addr, "/inv/moved").await;
    assert_eq!(
        answer.status, 500,
        "the stale handle must trap: {}",
        answer.body
    );
    let body: serde_json::Value = serde_json::from_str(&answer.body).unwrap();
    assert_eq!(body["error"], "trap");
}

/// `invoke_all` makes its calls at once: two callees that each wait 200 ms answer together in
/// well under the 400 ms they would take one after the other; each keeps its own outcome.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_made_together_overlap_and_keep_their_own_outcomes() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&apps(dir.path())).await;
    // Once, so that nothing below pays for a first instance.
    assert_eq!(get(server.addr, "/inv/call/napper/nap").await.status, 200);

    let started = std::time::Instant::now();
    let together = get(server.addr, "/inv/fanout/napper/nap").await;
    let elapsed = started.elapsed();
    assert_eq!(together.body, "200 rested\n200 rested");
    assert!(
        elapsed < std::time::Duration::from_millis(350),
        "two 200 ms calls made together took {elapsed:?}"
    );

    // Outcomes stay apart: a trapping pair and a refused pair.
    let trapped = get(server.addr, "/inv/fanout/faults/trap").await;
    assert!(
        trapped
            .body
            .lines()
            .all(|line| line.starts_with("error: InvokeError::Trapped(")),
        "{}",
        trapped.body
    );
    let refused = get(server.addr, "/inv/fanout/vault/x").await;
    assert_eq!(
        refused.body,
        "error: InvokeError::NotAllowed\nerror: InvokeError::NotAllowed"
    );
}

/// Calls made at once cannot hold more instances than the tenant may: every callee takes a slot
/// of the tenant's quota, at once or not at all. With a quota of two instances (the caller's and
/// one more) one call runs and the other is refused at once with `limit-exceeded`; with a quota
/// of three both run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_made_together_stay_within_the_tenants_quota() {
    let dir = tempfile::tempdir().unwrap();
    let manifests: Vec<_> = [("two", 2), ("three", 3)]
        .into_iter()
        .map(|(tenant, quota)| {
            let path = dir.path().join(format!("{tenant}.toml"));
            std::fs::write(
                &path,
                format!(
                    "tenant = \"{tenant}\"\napp = \"inv\"\n[tenant-limits]\nmax-instances = {quota}\n\
                     [[functions]]\nname = \"invoker\"\ncomponent = \"{}\"\nroute = \"/{tenant}\"\n\
                     limits = {{ timeout = \"1s\" }}\n\
                     [[functions]]\nname = \"napper\"\ncomponent = \"{}\"\n",
                    programs::INVOKER,
                    programs::FAULTS
                ),
            )
            .unwrap();
            path
        })
        .collect();
    let server = start(&manifests).await;
    let short = get(server.addr, "/two/fanout/napper/nap").await;
    assert_eq!(short.status, 200, "{}", short.body);
    let mut outcomes: Vec<&str> = short.body.lines().collect();
    outcomes.sort();
    assert_eq!(
        outcomes,
        [
            "200 rested",
            "error: InvokeError::LimitExceeded(\"tenant two is at its quota of 2 live instances\")"
        ],
        "{}",
        short.body
    );
    let enough = get(server.addr, "/three/fanout/napper/nap").await;
    assert_eq!(enough.body, "200 rested\n200 rested");
}

/// With `explain`, each function accounts for where its invocations' time went: a caller that
/// waits for a callee napping 200 ms shows that wait under calls, the callee shows it as host
/// time (its nap is a host call), and both count their instantiation, guest code and teardown.
/// The totals reach `/metrics` as `meshwa_phase_*` counters.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_accounts_for_each_step_of_every_hop() {
    let dir = tempfile::tempdir().unwrap();
    let server = crate::common::start_with_settings(
        &apps(dir.path()),
        meshwa_runtime::EngineSettings {
            explain: true,
            ..meshwa_runtime::EngineSettings::default()
        },
    )
    .await;
    let answer = get(server.addr, "/inv/call/napper/nap").await;
    assert_eq!(answer.status, 200, "{}", answer.body);

    let phases = server.runtime.phases();
    let of = |name: &str| {
        phases
            .iter()
            .find(|(id, _)| id.function.as_str() == name)
            .map(|(_, totals)| *totals)
            .unwrap()
    };
    let (caller, callee) = (of("invoker"), of("napper"));
    let nap = std::time::Duration::from_millis(200);
    assert_eq!((caller.invocations, callee.invocations), (1, 1));
    assert!(caller.calls >= nap, "{caller:?}");
    assert!(caller.guest < nap && caller.other_host < nap, "{caller:?}");
    assert!(callee.other_host >= nap, "{callee:?}");
    assert_eq!(callee.calls, std::time::Duration::ZERO);
    for totals in [caller, callee] {
        assert!(!totals.instantiate.is_zero(), "{totals:?}");
        assert!(!totals.guest.is_zero(), "{totals:?}");
        assert!(!totals.teardown.is_zero(), "{totals:?}");
    }
    // Functions that did not run are listed with nothing accounted.
    assert_eq!(of("echo").invocations, 0);

    let (stats, source) = (server.runtime.clone(), server.runtime.clone());
    let metrics = meshwa_gateway::Metrics::new(std::sync::Arc::new(move || stats.stats()))
        .with_phases(std::sync::Arc::new(move || source.phases()));
    let text = metrics.encode();
    assert!(
        text.contains(
            "meshwa_phase_events_total{tenant=\"t\",app=\"inv\",function=\"napper\",phase=\"invocations\"} 1"
        ),
        "{text}"
    );
    assert!(
        text.contains("function=\"invoker\",phase=\"calls\"} 0.2"),
        "{text}"
    );
}

/// Without `explain` (the default) nothing is accounted and nothing is exported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_explain_nothing_is_accounted() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&apps(dir.path())).await;
    assert_eq!(get(server.addr, "/inv/call/echo/x").await.status, 200);
    assert!(server.runtime.phases().is_empty());
}

/// The bytes the host holds in buffers count against the instance's `max-memory` (and its
/// tenant's quota): a loop of buffer constructors ends its own request as out of memory, and
/// nothing stays charged after it (issue 16, item 3).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_buffers_count_against_the_instances_memory() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&apps(dir.path())).await;
    // 32 MiB of buffers fit the default 64 MiB; 100 MiB do not.
    let held = get(server.addr, "/inv/hoard?size=1048576&count=32").await;
    assert_eq!((held.status, held.body.as_str()), (200, "held 32"));
    let hoard = get(server.addr, "/inv/hoard?size=1048576&count=100").await;
    assert_eq!(hoard.status, 503, "{}", hoard.body);
    assert!(hoard.body.contains("out_of_memory"), "{}", hoard.body);
    for _ in 0..3 {
        let again = get(server.addr, "/inv/hoard?size=1048576&count=32").await;
        assert_eq!((again.status, again.body.as_str()), (200, "held 32"));
    }
}

/// The guest behind the `platform` fuzz target (`guests/platform-script`) through the server:
/// a script's calls are answered, and a script that forges a buffer handle traps its own
/// instance (500) while the next request is served. (The runtime's tests run its fuzz corpus.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
pub(crate) async fn a_scripted_guest_that_forges_a_handle_traps_alone() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("script.toml");
    std::fs::write(
        &manifest,
        format!(
            "tenant = \"t\"\napp = \"s\"\n[[functions]]\nname = \"script\"\n\
             component = \"{}\"\nroute = \"/script\"\n\
             [[functions]]\nname = \"echo\"\ncomponent = \"{}\"\n",
            programs::PLATFORM_SCRIPT,
            programs::ECHO
        ),
    )
    .unwrap();
    let server = start(&[manifest]).await;
    let client = crate::common::client();
    // new buffer "hi", then call echo with it (target 1, slot 0, no headers).
    let call = [0, 2, 0, 0, b'h', b'i', 5, 1, 0, 0];
    let answer = crate::common::send(&client, server.addr, "POST", "/script", &call).await;
    assert_eq!((answer.status, answer.body.as_str()), (200, "new 2\n200 2"));
    // new buffer "x", then its length through a made-up handle.
    let forged = [0, 1, 0, 0, b'x', 7, 0xef, 0xbe, 0xad, 0xde, 0];
    let answer = crate::common::send(&client, server.addr, "POST", "/script", &forged).await;
    assert_eq!(answer.status, 500, "{}", answer.body);
    let answer = crate::common::send(&client, server.addr, "POST", "/script", &call).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
}
