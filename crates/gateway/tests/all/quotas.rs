//! Per-tenant quotas and fair admission, through a real server: a tenant flooding the server
//! fills only its own share of the pool, gets 429 quickly beyond its queue, and never starves
//! another tenant. A table-growth bomb is refused by the instance limiter.

use std::time::{Duration, Instant};

use crate::common::{client, get, manifest, send, start, start_with_settings};
use meshwa_runtime::EngineSettings;
use meshwa_test_programs as programs;

/// Tenant `good`'s app in `dir`: `hello` at `/good`.
fn good_tenant(dir: &std::path::Path) -> std::path::PathBuf {
    let good = dir.join("good.toml");
    std::fs::write(
        &good,
        format!(
            "tenant = \"good\"\napp = \"a\"\n[[functions]]\nname = \"hello\"\ncomponent = \"{}\"\nroute = \"/good\"\n",
            programs::HELLO
        ),
    )
    .unwrap();
    good
}

/// 20 requests of tenant `good`, each answered correctly within 500 ms.
async fn good_tenant_is_served_at_once(addr: std::net::SocketAddr) {
    for i in 0..20 {
        let started = Instant::now();
        let answer = get(addr, &format!("/good/{i}")).await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        assert!(
            started.elapsed() < Duration::from_millis(500),
            "good request {i} waited {:?}",
            started.elapsed()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_tenant_cannot_starve_another() {
    let dir = tempfile::tempdir().unwrap();
    let flood = dir.path().join("flood.toml");
    std::fs::write(
        &flood,
        format!(
            "tenant = \"flood\"\napp = \"a\"\n[tenant-limits]\nmax-instances = 2\n\
             [[functions]]\nname = \"slow\"\ncomponent = \"{}\"\nroute = \"/flood\"\nlimits = {{ timeout = \"1500ms\" }}\n",
            programs::FAULTS
        ),
    )
    .unwrap();
    let good = good_tenant(dir.path());
    let settings = EngineSettings {
        max_instances: 8,
        tenant_max_queue: 3,
        ..EngineSettings::default()
    };
    let server = start_with_settings(&[flood, good], settings).await;

    // 12 slow requests at once: 2 run, 3 wait, 7 are refused at once.
    let mut flood_tasks = tokio::task::JoinSet::new();
    for _ in 0..12 {
        let addr = server.addr;
        flood_tasks.spawn(async move {
            let started = Instant::now();
            let answer = get(addr, "/flood/sleep").await;
            (answer.status, started.elapsed())
        });
    }
    tokio::time::sleep(Duration::from_millis(200)).await;

    // Meanwhile the other tenant is served at once, every time.
    good_tenant_is_served_at_once(server.addr).await;

    let mut statuses = Vec::new();
    while let Some(result) = flood_tasks.join_next().await {
        let (status, elapsed) = result.unwrap();
        if status == 429 {
            assert!(
                elapsed < Duration::from_millis(500),
                "a refusal must be quick"
            );
        }
        statuses.push(status);
    }
    statuses.sort_unstable();
    let refused = statuses.iter().filter(|s| **s == 429).count();
    let timed_out = statuses.iter().filter(|s| **s == 504 || **s == 503).count();
    assert_eq!(refused, 7, "{statuses:?}");
    assert_eq!(timed_out, 5, "{statuses:?}");
}

/// A tenant's instances together cannot hold more linear memory than its quota: the request
/// whose growth would cross it ends with 429 `tenant_memory`, the tenant's other instance keeps
/// running, other tenants are untouched, and the account is released as instances end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_cannot_hold_more_memory_than_its_quota() {
    let dir = tempfile::tempdir().unwrap();
    let greedy = dir.path().join("greedy.toml");
    std::fs::write(
        &greedy,
        format!(
            "tenant = \"greedy\"\napp = \"a\"\n[tenant-limits]\nmax-memory = \"4MiB\"\n\
             [[functions]]\nname = \"f\"\ncomponent = \"{}\"\nroute = \"/greedy\"\n\
             limits = {{ max-memory = \"64MiB\", timeout = \"1500ms\" }}\n",
            programs::FAULTS
        ),
    )
    .unwrap();
    let good = dir.path().join("good.toml");
    std::fs::write(
        &good,
        format!(
            "tenant = \"good\"\napp = \"a\"\n[[functions]]\nname = \"oom\"\ncomponent = \"{}\"\nroute = \"/good\"\n\
             limits = {{ max-memory = \"16MiB\" }}\n",
            programs::FAULTS
        ),
    )
    .unwrap();
    let server = start_with_settings(&[greedy, good], EngineSettings::default()).await;

    // One instance holds its memory (it sleeps until its deadline) while another grows.
    let addr = server.addr;
    let sleeper = tokio::spawn(async move { get(addr, "/greedy/sleep").await.status });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let greedy = get(server.addr, "/greedy/oom").await;
    assert_eq!(greedy.status, 429, "{}", greedy.body);
    assert!(
        greedy.body.contains("\"error\":\"tenant_memory\""),
        "{}",
        greedy.body
    );
    assert!(
        greedy.body.contains("memory quota of 4194304 bytes"),
        "{}",
        greedy.body
    );

    // The other tenant's instances may grow up to their own limit (16 MiB, beyond the greedy
    // tenant's quota): a different account.
    let other = get(server.addr, "/good/oom").await;
    assert_eq!(other.status, 503, "{}", other.body);
    assert!(
        other.body.contains("\"error\":\"out_of_memory\""),
        "{}",
        other.body
    );
    assert_eq!(get(server.addr, "/good/ok").await.status, 200);

    assert_eq!(
        sleeper.await.unwrap(),
        504,
        "the sleeping instance ran to its deadline"
    );
    // Every instance released its share: many more requests fit in the quota, one by one.
    for _ in 0..20 {
        let answer = get(server.addr, "/greedy/ok").await;
        assert_eq!(answer.status, 200, "{}", answer.body);
    }
}

/// A WASI command (core module, adapted at load) that grows a table by 10,000 elements at a
/// time until the host refuses, up to 10 million elements (about 80 MB of host memory if nothing
/// stopped it), then answers CGI-style `refused` or `grew`.
const TABLE_BOMB: &str = r#"
(module
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (table $t 0 funcref)
  (data (i32.const 64) "Content-Type: text/plain\n\n")
  (data (i32.const 128) "refused\n")
  (data (i32.const 160) "grew\n")
  (func (export "_start")
    (local $rounds i32)
    (local $refused i32)
    (block $done
      (loop $grow
        (if (i32.eq (table.grow $t (ref.null func) (i32.const 10000)) (i32.const -1))
          (then (local.set $refused (i32.const 1)) (br $done)))
        (local.set $rounds (i32.add (local.get $rounds) (i32.const 1)))
        (br_if $grow (i32.lt_u (local.get $rounds) (i32.const 1000)))))
    ;; One write per iovec (the preview1 adapter writes one iovec per call): the header, then
    ;; "refused\n" or "grew\n".
    (i32.store (i32.const 0) (i32.const 64))
    (i32.store (i32.const 4) (i32.const 26))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 32)))
    (if (local.get $refused)
      (then (i32.store (i32.const 0) (i32.const 128)) (i32.store (i32.const 4) (i32.const 8)))
      (else (i32.store (i32.const 0) (i32.const 160)) (i32.store (i32.const 4) (i32.const 5))))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 32)))))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_growth_bomb_is_refused_and_harms_no_one() {
    let dir = tempfile::tempdir().unwrap();
    let bomb = dir.path().join("table-bomb.wasm");
    std::fs::write(&bomb, wat::parse_str(TABLE_BOMB).unwrap()).unwrap();
    let attacker = dir.path().join("attacker.toml");
    std::fs::write(
        &attacker,
        format!(
            "tenant = \"bomber\"\napp = \"tables\"\n[[functions]]\nname = \"bomb\"\nkind = \"cgi\"\ncomponent = {:?}\nroute = \"/bomb\"\n",
            bomb.display().to_string()
        ),
    )
    .unwrap();
    let good = manifest(
        dir.path(),
        "alice",
        &[("hello", programs::HELLO, "/alice", "")],
    );
    let server = start(&[attacker, good]).await;
    let addr = server.addr;

    let good_traffic = tokio::spawn(async move {
        let c = client();
        for i in 0..200 {
            let path = format!("/alice/{i}");
            let answer = send(&c, addr, "GET", &path, b"").await;
            assert_eq!(
                (answer.status, answer.body),
                (
                    200,
                    format!("hello from meshwa: {path} (request 1 of this instance)\n")
                )
            );
        }
    });
    let bombs: Vec<_> = (0..8)
        .map(|_| tokio::spawn(async move { get(addr, "/bomb").await }))
        .collect();
    for bomb in bombs {
        let answer = bomb.await.unwrap();
        // The limiter refuses the growth past MAX_TABLE_ELEMENTS: table.grow answers -1, as the
        // core specification says, and the program carries on.
        assert_eq!((answer.status, answer.body.as_str()), (200, "refused\n"));
    }
    good_traffic.await.expect("every good request succeeded");
}

/// A tenant's in-process fan-out takes slots of its own quota, never waiting for one: beyond
/// its quota the calls fail at once (429 `tenant_quota` for the caller), the pool keeps room,
/// and another tenant is served as if alone (issue 16, item 2).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_process_fan_out_stays_within_the_callers_tenant_quota() {
    let dir = tempfile::tempdir().unwrap();
    let flood = dir.path().join("flood.toml");
    std::fs::write(
        &flood,
        format!(
            "tenant = \"flood\"\napp = \"a\"\n\
             [[functions]]\nname = \"fan\"\ncomponent = \"{}\"\nroute = \"/flood\"\nlimits = {{ timeout = \"6s\" }}\n\
             [[functions]]\nname = \"slow\"\ncomponent = \"{}\"\nlimits = {{ timeout = \"1500ms\" }}\n",
            programs::CALLER,
            programs::FAULTS
        ),
    )
    .unwrap();
    let good = good_tenant(dir.path());
    // A pool of 8; each tenant may hold 4 instances.
    let settings = EngineSettings {
        max_instances: 8,
        ..EngineSettings::default()
    };
    let server = start_with_settings(&[flood, good], settings).await;

    // Two requests each start 12 calls to a callee that holds its instance until its deadline
    // (1.5 s). A fan request that waits for its own admission until the other's callees are done
    // (up to 1.5 s, within its deadline) then runs its own for 1.5 s: its 6 s deadline leaves
    // room for that on a loaded machine (3 s did not, once).
    let mut fans = tokio::task::JoinSet::new();
    for _ in 0..2 {
        let addr = server.addr;
        fans.spawn(async move { get(addr, "/flood/burst/12/slow.a.internal/sleep").await });
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    good_tenant_is_served_at_once(server.addr).await;
    // 4 slots for the tenant: a fan request holds one, so at most 3 of its callees run at once
    // (when the other fan request waits for a slot, it may get all 3 later); the rest are
    // refused at once.
    while let Some(answer) = fans.join_next().await {
        let answer = answer.unwrap();
        assert_eq!(answer.status, 200, "{}", answer.body);
        let (mut admitted, mut refused) = (0, 0);
        for line in answer.body.lines() {
            match line {
                "429" => refused += 1,
                "504" => admitted += 1,
                other => panic!("unexpected outcome {other:?}: {}", answer.body),
            }
        }
        assert!(admitted <= 3, "{admitted} callees ran, {refused} refused");
        assert_eq!(admitted + refused, 12);
    }
}
