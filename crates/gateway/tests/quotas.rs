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
