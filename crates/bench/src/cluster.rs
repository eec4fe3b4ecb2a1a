//! `meshwa-bench cluster`: what a cluster costs, on real `nats-server` processes started here.
//!
//! 1. Key-value get and durable set from inside a guest (wasi:keyvalue, in-process), on the
//!    embedded redb store and on JetStream with 1 and 3 replicas; and, in the same run, the same
//!    operation by a native `async-nats` client on the same bucket (`get` and `put`: one round
//!    trip each, no compare-and-set), the floor a JetStream backend can reach.
//! 2. Deploy convergence: `meshwa deploy` through one of three `meshwa serve --cluster` nodes,
//!    until the new version is served by all three.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use clap::Args;
use http_body_util::Full;
use meshwa_cluster::testing::NatsCluster;
use meshwa_cluster::{Cluster, ClusterSettings};
use meshwa_manifest::Manifest;
use meshwa_runtime::{EngineSettings, Runtime};

use crate::common::{ServerChild, control_call, guest_timings, meshwa_binary, percentile_us, post};

#[derive(Args)]
pub struct ClusterBenchArgs {
    /// The guest that runs the timed key-value loop (`guests/services`).
    #[arg(long)]
    component: PathBuf,
    /// The app deployed for the convergence rows (a directory with a meshwa.toml).
    #[arg(long)]
    app: PathBuf,
    /// Key-value operations measured per cell.
    #[arg(long, default_value_t = 1000)]
    iterations: u32,
    /// Redeploys measured for convergence.
    #[arg(long, default_value_t = 10)]
    deploys: u32,
    /// The `meshwa` binary run as the cluster's nodes (default: the one next to this executable).
    #[arg(long, env = "MESHWA_BIN")]
    meshwa: Option<PathBuf>,
}

pub fn run(args: ClusterBenchArgs) -> anyhow::Result<()> {
    key_value(&args)?;
    println!();
    convergence(&args)
}

/// Where the stores of one row live.
struct Backend {
    label: &'static str,
    /// NATS servers to start (0: the embedded store).
    servers: usize,
}

fn key_value(args: &ClusterBenchArgs) -> anyhow::Result<()> {
    println!(
        "key-value latency, 100-byte values, {} operations per cell, p50 / p99 in µs\n",
        args.iterations
    );
    println!(
        "| backend | get from a guest | native async-nats get | guest / native at p50 | durable set from a guest | native async-nats put | guest / native at p50 |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    for backend in [
        Backend {
            label: "embedded redb",
            servers: 0,
        },
        Backend {
            label: "JetStream, 1 replica",
            servers: 1,
        },
        Backend {
            label: "JetStream, 3 replicas",
            servers: 3,
        },
    ] {
        let row = key_value_row(args, &backend)?;
        let cell = |(p50, p99): (f64, f64)| format!("{p50:.1} / {p99:.1}");
        let ratio = |guest: (f64, f64), native: Option<(f64, f64)>| {
            native.map_or("".to_owned(), |n| format!("{:.1}×", guest.0 / n.0))
        };
        println!(
            "| {} | {} | {} | {} | {} | {} | {} |",
            backend.label,
            cell(row.guest_get),
            row.native_get.map_or("".to_owned(), cell),
            ratio(row.guest_get, row.native_get),
            cell(row.guest_set),
            row.native_put.map_or("".to_owned(), cell),
            ratio(row.guest_set, row.native_put),
        );
    }
    Ok(())
}

struct KeyValueRow {
    guest_get: (f64, f64),
    guest_set: (f64, f64),
    native_get: Option<(f64, f64)>,
    native_put: Option<(f64, f64)>,
}

fn key_value_row(args: &ClusterBenchArgs, backend: &Backend) -> anyhow::Result<KeyValueRow> {
    let nats = (backend.servers > 0).then(|| NatsCluster::start(backend.servers));
    let data = tempfile::tempdir()?;
    let runtime = Runtime::new(EngineSettings::default(), data.path())?;
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let cluster = match &nats {
        None => None,
        Some(nats) => Some(tokio.block_on(async {
            let cluster = Cluster::connect(&ClusterSettings {
                servers: nats.urls(),
                replicas: backend.servers,
            })
            .await?;
            runtime.use_cluster_key_value(Arc::new(cluster.key_value()))?;
            anyhow::Ok(cluster)
        })?),
    };
    let function = crate::common::load_kv_bench(&runtime, &args.component)?;
    let guest = |op: &str| -> anyhow::Result<(f64, f64)> {
        let path = format!("/bench/svc/kvbench/bench?op={op}&n={}", args.iterations);
        let (status, body) = tokio.block_on(post(&function, &path))?;
        guest_timings(status, &body).with_context(|| format!("kvbench {op} on {}", backend.label))
    };
    let guest_get = guest("get")?;
    let guest_set = guest("set")?;
    let (native_get, native_put) = match &cluster {
        None => (None, None),
        Some(cluster) => {
            let (get, put) = tokio.block_on(native_round_trips(cluster, args.iterations))?;
            (Some(get), Some(put))
        }
    };
    Ok(KeyValueRow {
        guest_get,
        guest_set,
        native_get,
        native_put,
    })
}

/// A native client's `get` and `put` on the app's bucket, timed one by one; (p50, p99) in µs.
async fn native_round_trips(
    cluster: &Cluster,
    iterations: u32,
) -> anyhow::Result<((f64, f64), (f64, f64))> {
    let jetstream = async_nats::jetstream::new(cluster.client().clone());
    let bucket = jetstream
        .get_key_value("meshwa_bench_bench")
        .await
        .context("the bench app's bucket")?;
    let value = Bytes::from_static(&[b'v'; 100]);
    bucket.put("native.key", value.clone()).await?;
    let mut gets = Vec::with_capacity(iterations as usize);
    for _ in 0..iterations {
        let started = Instant::now();
        std::hint::black_box(bucket.get("native.key").await?);
        gets.push(started.elapsed());
    }
    let mut puts = Vec::with_capacity(iterations as usize);
    for i in 0..iterations {
        let started = Instant::now();
        bucket
            .put(format!("native.{}", i % 100), value.clone())
            .await?;
        puts.push(started.elapsed());
    }
    gets.sort_unstable();
    puts.sort_unstable();
    let p = |s: &[Duration]| (percentile_us(s, 0.5), percentile_us(s, 0.99));
    Ok((p(&gets), p(&puts)))
}

/// Three nodes on three NATS servers; redeploys through the first until all serve each one.
fn convergence(args: &ClusterBenchArgs) -> anyhow::Result<()> {
    let meshwa = meshwa_binary(args.meshwa.clone())?;
    let operator = "bench-operator-token";
    let nats = NatsCluster::start(3);
    let nodes = nats
        .urls()
        .iter()
        .enumerate()
        .map(|(i, url)| {
            let flags = ["--cluster".into(), url.into()];
            ServerChild::start(&meshwa, operator, &format!("cluster-{i}"), &flags)
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let manifest = Manifest::load(&args.app.join("meshwa.toml"))?;
    let (tenant, app) = (manifest.tenant.to_string(), manifest.app.to_string());
    let (acknowledged, converged) = tokio.block_on(async {
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http::<Full<Bytes>>();
        let (status, _) = control_call(
            &client,
            nodes[0].admin,
            http::Method::POST,
            "/v1/tenants",
            operator,
            Bytes::from(format!(r#"{{"name":"{tenant}"}}"#)),
        )
        .await?;
        anyhow::ensure!(status == 201, "creating the tenant: {status}");
        let version_on = |admin| {
            let client = client.clone();
            let path = format!("/v1/tenants/{tenant}/apps/{app}");
            async move {
                let (status, body) = control_call(
                    &client,
                    admin,
                    http::Method::GET,
                    &path,
                    operator,
                    Bytes::new(),
                )
                .await?;
                if status != 200 {
                    return anyhow::Ok(None);
                }
                let value: serde_json::Value = serde_json::from_slice(&body)?;
                Ok(value["version"].as_u64())
            }
        };
        let (mut acknowledged, mut converged) = (Vec::new(), Vec::new());
        // The first deploy compiles on every node; the measured ones come from the caches.
        for n in 0..=args.deploys {
            let started = Instant::now();
            let output = tokio::process::Command::new(&meshwa)
                .arg("deploy")
                .arg(&args.app)
                .env("MESHWA_SERVER", format!("http://{}", nodes[0].admin))
                .env("MESHWA_TOKEN", operator)
                .env("MESHWA_TENANT", &tenant)
                .output()
                .await?;
            anyhow::ensure!(
                output.status.success(),
                "meshwa deploy failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            let acked = started.elapsed();
            let version = version_on(nodes[0].admin)
                .await?
                .context("the deployed version")?;
            let deadline = Instant::now() + Duration::from_secs(60);
            for node in &nodes {
                while version_on(node.admin).await? != Some(version) {
                    anyhow::ensure!(Instant::now() < deadline, "not converged within 60 s");
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            }
            if n > 0 {
                acknowledged.push(acked);
                converged.push(started.elapsed());
            }
        }
        acknowledged.sort_unstable();
        converged.sort_unstable();
        anyhow::Ok((acknowledged, converged))
    })?;
    let ms = |s: &[Duration], p: f64| percentile_us(s, p) / 1000.0;
    println!(
        "deploy convergence, 3 nodes on 3 NATS servers, {} redeploys of {}/{} (compiled code from each node's cache), ms\n",
        args.deploys, tenant, app
    );
    println!("| | p50 | max |");
    println!("| --- | --- | --- |");
    println!(
        "| `meshwa deploy` through node 1 acknowledged | {:.0} | {:.0} |",
        ms(&acknowledged, 0.5),
        ms(&acknowledged, 1.0)
    );
    println!(
        "| served by all 3 nodes | {:.0} | {:.0} |",
        ms(&converged, 0.5),
        ms(&converged, 1.0)
    );
    Ok(())
}
