//! Per-tenant quotas and fair admission, through a real server: a tenant flooding the server
//! fills only its own share of the pool, gets 429 quickly beyond its queue, and never starves
//! another tenant.

mod common;

use std::time::{Duration, Instant};

use common::{get, start_with_settings};
use meshwa_runtime::EngineSettings;
use meshwa_test_programs as programs;

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
    let good = dir.path().join("good.toml");
    std::fs::write(
        &good,
        format!(
            "tenant = \"good\"\napp = \"a\"\n[[functions]]\nname = \"hello\"\ncomponent = \"{}\"\nroute = \"/good\"\n",
            programs::HELLO
        ),
    )
    .unwrap();
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
    for i in 0..20 {
        let started = Instant::now();
        let answer = get(server.addr, &format!("/good/{i}")).await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        assert!(
            started.elapsed() < Duration::from_millis(500),
            "good request {i} waited"
        );
    }

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
