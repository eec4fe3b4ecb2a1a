//! Tick claims on a real 3-server JetStream cluster: one winner per tick, whoever races.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use chrono::{TimeZone, Utc};
use meshwa_cluster::testing::NatsCluster;
use meshwa_cluster::ticks::ClusterTicks;
use meshwa_cluster::{Cluster, ClusterSettings};

#[test]
fn each_tick_is_won_by_exactly_one_of_many_concurrent_claimers() {
    let nats = NatsCluster::start(3);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // Three nodes, each on its own server, four claimers each.
    let claimers: Vec<Arc<ClusterTicks>> = runtime.block_on(async {
        let mut claimers = Vec::new();
        for url in nats.urls() {
            let cluster = Cluster::connect(&ClusterSettings {
                servers: vec![url],
                replicas: 3,
            })
            .await
            .unwrap();
            claimers.push(Arc::new(ClusterTicks::open(&cluster).await.unwrap()));
        }
        claimers
    });
    const TICKS: i64 = 40;
    let wins = runtime.block_on(async {
        let mut tasks = tokio::task::JoinSet::new();
        for claimer in &claimers {
            for _ in 0..4 {
                let claimer = claimer.clone();
                tasks.spawn(async move {
                    let mut won = 0;
                    for tick in 0..TICKS {
                        let at = Utc.timestamp_opt(1_700_000_000 + tick, 0).unwrap();
                        if claimer.claim_tick("acme/app/report", at).await.unwrap() {
                            won += 1;
                        }
                    }
                    won
                });
            }
        }
        let mut wins = 0;
        while let Some(won) = tasks.join_next().await {
            wins += won.unwrap();
        }
        wins
    });
    assert_eq!(wins, TICKS, "12 claimers of {TICKS} ticks");
    // Another function's ticks at the same instants are its own.
    let other = runtime.block_on(claimers[0].claim_tick(
        "acme/app/other",
        Utc.timestamp_opt(1_700_000_000, 0).unwrap(),
    ));
    assert!(other.unwrap());
}
