//! `meshwa-bench deploy`: time from `meshwa deploy` to the first successful request (cold and
//! warm), and failed requests during back-to-back redeploys under load, against a real
//! `meshwa serve` child (the `meshwa` binary: `--meshwa`, or the one next to `meshwa-bench`).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use clap::Args;
use http_body_util::{BodyExt, Full};

use crate::common::{ServerChild, control_call, meshwa_binary, percentile_us};

#[derive(Args)]
pub struct DeployBenchArgs {
    /// The component to deploy (a wasi:http function; `guests/hello` in the bench script).
    #[arg(long)]
    component: PathBuf,
    /// Cold deploys measured (each of a component the server has never compiled).
    #[arg(long, default_value_t = 5)]
    cold: u32,
    /// Warm deploys measured (of a component compiled before).
    #[arg(long, default_value_t = 20)]
    warm: u32,
    /// Back-to-back redeploys under load.
    #[arg(long, default_value_t = 100)]
    redeploys: u32,
    /// Concurrent clients sending requests during the redeploys.
    #[arg(long, default_value_t = 4)]
    clients: u32,
    /// The `meshwa` binary to run as `meshwa serve` and `meshwa deploy` (default: the `meshwa`
    /// next to this executable).
    #[arg(long, env = "MESHWA_BIN")]
    meshwa: Option<PathBuf>,
}

/// A component made different from every other by a custom section, so the server must
/// compile it: wasm custom sections (id 0) may appear at the end of a component.
fn distinct_component(base: &[u8], tag: &str) -> Vec<u8> {
    let name = b"meshwa-bench";
    let payload = tag.as_bytes();
    let mut section = Vec::new();
    section.push(name.len() as u8);
    section.extend_from_slice(name);
    section.extend_from_slice(payload);
    let mut bytes = base.to_vec();
    bytes.push(0);
    let mut len = section.len();
    loop {
        let byte = (len & 0x7f) as u8;
        len >>= 7;
        if len == 0 {
            bytes.push(byte);
            break;
        }
        bytes.push(byte | 0x80);
    }
    bytes.extend_from_slice(&section);
    bytes
}

pub fn run(args: DeployBenchArgs) -> anyhow::Result<()> {
    let meshwa = meshwa_binary(args.meshwa.clone())?;
    let operator = "bench-operator-token";
    let server = ServerChild::start(&meshwa, operator, "deploy", &[])?;
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let base = std::fs::read(&args.component)
        .with_context(|| format!("cannot read {}", args.component.display()))?;
    let work = server.data.with_extension("apps");
    let result = tokio.block_on(async {
        let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build_http::<Full<Bytes>>();
        let (status, _) = control_call(&client, server.admin, http::Method::POST, "/v1/tenants", operator, Bytes::from_static(br#"{"name":"bench"}"#)).await?;
        anyhow::ensure!(status == 201, "creating the tenant: {status}");

        // `meshwa deploy DIR` as a user runs it, then requests until the first 200.
        let deploy_once = |bytes: Vec<u8>, n: u32| {
            let dir = work.join(format!("app-{n}"));
            let admin = server.admin;
            let gateway = server.gateway;
            let client = client.clone();
            let meshwa = meshwa.clone();
            async move {
                std::fs::create_dir_all(&dir)?;
                std::fs::write(dir.join("f.wasm"), bytes)?;
                std::fs::write(
                    dir.join("meshwa.toml"),
                    "tenant = \"bench\"\napp = \"app\"\n[[functions]]\nname = \"f\"\ncomponent = \"f.wasm\"\nroute = \"/bench/app\"\n",
                )?;
                let started = Instant::now();
                let status = tokio::process::Command::new(&meshwa)
                    .arg("deploy")
                    .arg(&dir)
                    .env("MESHWA_SERVER", format!("http://{admin}"))
                    .env("MESHWA_TOKEN", operator)
                    .env("MESHWA_TENANT", "bench")
                    .stdout(std::process::Stdio::null())
                    .status()
                    .await?;
                anyhow::ensure!(status.success(), "meshwa deploy failed: {status}");
                let deadline = Instant::now() + Duration::from_secs(30);
                loop {
                    let request = http::Request::get(format!("http://{gateway}/bench/app"))
                        .body(Full::new(Bytes::new()))?;
                    if let Ok(response) = client.request(request).await
                        && response.status() == 200
                    {
                        break;
                    }
                    anyhow::ensure!(Instant::now() < deadline, "no successful request within 30 s");
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                anyhow::Ok(started.elapsed())
            }
        };
        let mut cold = Vec::new();
        for n in 0..args.cold {
            cold.push(deploy_once(distinct_component(&base, &format!("cold-{n}")), n).await?);
        }
        let warm_bytes = distinct_component(&base, "warm");
        deploy_once(warm_bytes.clone(), 1000).await?;
        let mut warm = Vec::new();
        for n in 0..args.warm {
            warm.push(deploy_once(warm_bytes.clone(), 2000 + n).await?);
        }

        // Redeploys under load: two versions back and forth through the API.
        let versions: Vec<Bytes> = ["v1", "v2"]
            .iter()
            .map(|tag| {
                let manifest = "tenant = \"bench\"\napp = \"app\"\n[[functions]]\nname = \"f\"\ncomponent = \"f.wasm\"\nroute = \"/bench/app\"\n";
                let files = std::collections::BTreeMap::from([
                    ("meshwa.toml".to_owned(), manifest.as_bytes().to_vec()),
                    ("f.wasm".to_owned(), distinct_component(&base, tag)),
                ]);
                meshwa_control::archive::pack(&files).map(Bytes::from)
            })
            .collect::<Result<_, _>>()?;
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let ok = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let failed = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let mut load = Vec::new();
        for _ in 0..args.clients {
            let (stop, ok, failed, client) = (stop.clone(), ok.clone(), failed.clone(), client.clone());
            let gateway = server.gateway;
            load.push(tokio::spawn(async move {
                use std::sync::atomic::Ordering::Relaxed;
                // Bounded by the redeploy loop, and by ten minutes at most.
                let deadline = Instant::now() + Duration::from_secs(600);
                while !stop.load(Relaxed) && Instant::now() < deadline {
                    let Ok(request) = http::Request::get(format!("http://{gateway}/bench/app")).body(Full::new(Bytes::new())) else {
                        break;
                    };
                    let good = match client.request(request).await {
                        Ok(response) => response.status() == 200 && response.into_body().collect().await.is_ok(),
                        Err(_) => false,
                    };
                    if good { ok.fetch_add(1, Relaxed) } else { failed.fetch_add(1, Relaxed) };
                }
            }));
        }
        let mut redeploy_times = Vec::new();
        for n in 0..args.redeploys {
            let started = Instant::now();
            let (status, body) = control_call(&client, server.admin, http::Method::PUT, "/v1/tenants/bench/apps/app", operator, versions[n as usize % 2].clone()).await?;
            anyhow::ensure!(status == 200, "redeploy {n}: {status} {}", String::from_utf8_lossy(&body));
            redeploy_times.push(started.elapsed());
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for task in load {
            task.await?;
        }
        anyhow::Ok((cold, warm, redeploy_times, ok.load(std::sync::atomic::Ordering::Relaxed), failed.load(std::sync::atomic::Ordering::Relaxed)))
    });
    let _ = std::fs::remove_dir_all(&work);
    let (mut cold, mut warm, mut redeploys, ok, failed) = result?;
    for samples in [&mut cold, &mut warm, &mut redeploys] {
        samples.sort_unstable();
    }
    let ms = |samples: &[Duration], p: f64| percentile_us(samples, p) / 1000.0;
    println!("deploy to first successful request (`meshwa deploy` process included), ms\n");
    println!("| case | runs | p50 | max |");
    println!("| --- | --- | --- | --- |");
    println!(
        "| cold (never compiled) | {} | {:.0} | {:.0} |",
        cold.len(),
        ms(&cold, 0.5),
        ms(&cold, 1.0)
    );
    println!(
        "| warm (compiled before) | {} | {:.0} | {:.0} |",
        warm.len(),
        ms(&warm, 0.5),
        ms(&warm, 1.0)
    );
    println!();
    println!(
        "{} back-to-back redeploys (API, two versions alternating) under {} clients:",
        redeploys.len(),
        args.clients
    );
    println!("| redeploy p50 ms | redeploy p99 ms | requests served | requests failed |");
    println!("| --- | --- | --- | --- |");
    println!(
        "| {:.1} | {:.1} | {ok} | {failed} |",
        ms(&redeploys, 0.5),
        ms(&redeploys, 0.99)
    );
    Ok(())
}
