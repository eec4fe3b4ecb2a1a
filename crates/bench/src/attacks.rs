//! `meshwa-bench attacks`: a good tenant's latency alone and while another tenant runs each
//! attack (loop, memory, trap, endless response, stack overflow, blocked host calls, in-process
//! fan-out, host buffers, idle sockets), over real HTTP on loopback, served in-process by the
//! gateway as `meshwa serve` would.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Args;
use http_body_util::{BodyExt, Full};
use meshwa_manifest::Manifest;
use meshwa_runtime::{EngineSettings, Runtime, Secrets};

use crate::common::percentile_us;

#[derive(Args)]
pub struct AttacksArgs {
    /// The well-behaved function (`guests/hello`).
    #[arg(long)]
    good: PathBuf,
    /// The attacker's component (`guests/faults`).
    #[arg(long)]
    faults: PathBuf,
    /// The attacker's fan-out component (`guests/caller`): 16 in-process calls per request.
    #[arg(long)]
    caller: PathBuf,
    /// The attacker's buffer component (`guests/invoker`): host buffers beyond its memory.
    #[arg(long)]
    invoker: PathBuf,
    /// Good requests measured per row.
    #[arg(long, default_value_t = 2000)]
    requests: u32,
    /// Concurrent attacker connections.
    #[arg(long, default_value_t = 4)]
    attackers: u32,
    /// As `meshwa serve --io-poll-interval` (at least 1).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    io_poll_interval: u32,
    /// As `meshwa serve --tenant-cpu-lanes` (default: the server's 2 workers but one; 0 for
    /// no cap).
    #[arg(long, default_value_t = 1)]
    tenant_cpu_lanes: u32,
}

/// The attacks of `meshwa-bench attacks`: a row name and the attacker's path.
const ATTACKS: &[(&str, &str)] = &[
    ("infinite loop (deadline 200 ms)", "/evil/loop/loop"),
    ("memory growth to the limit", "/evil/oom/oom"),
    ("trap", "/evil/trap/trap"),
    ("endless response (deadline 200 ms)", "/evil/huge/huge"),
    ("stack overflow", "/evil/trap/recurse"),
    (
        "slow requests blocked in a host call (deadline 200 ms)",
        "/evil/loop/sleep",
    ),
    (
        "in-process fan-out: 16 calls per request, each blocked 200 ms",
        "/evil/fan/burst/16/slow.a.internal/sleep",
    ),
    (
        "host buffers: 64 MiB per request against 32 MiB",
        "/evil/hoard/hoard?size=1048576&count=64",
    ),
    (IDLE_SOCKETS, ""),
    (SOCKET_FLOOD, ""),
];

/// Attacks that send no request: each attacker holds sockets open and sends nothing, 60 each
/// (all 4 attackers: within the default cap of 256 per client address) or 100 each (beyond it:
/// the server closes the excess at once and the attackers keep reconnecting).
const IDLE_SOCKETS: &str = "idle sockets: 60 per attacker, sending nothing";
const SOCKET_FLOOD: &str =
    "socket flood: 100 per attacker, past the cap of 256 per client, reconnecting";

pub fn run(args: AttacksArgs) -> anyhow::Result<()> {
    let data = std::env::temp_dir().join(format!("meshwa-attacks-{}", std::process::id()));
    // The same scheduler settings as `meshwa serve` (see its --io-poll-interval).
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .event_interval(args.io_poll_interval)
        .enable_all()
        .build()?;
    // The good client and the attackers run on threads of their own, as they would in other
    // processes: the good client's latency must not include reading the attackers' answers.
    let clients = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let attack_clients = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let served = tokio.block_on(async {
        let runtime = Arc::new(Runtime::new(
            EngineSettings {
                max_instances: 64,
                tenant_cpu_lanes: args.tenant_cpu_lanes,
                ..EngineSettings::default()
            },
            &data,
        )?);
        let evil = format!(
            "tenant = \"evil\"\napp = \"a\"\n\
             [[functions]]\nname = \"loop\"\ncomponent = {f:?}\nroute = \"/evil/loop\"\nlimits = {{ timeout = \"200ms\" }}\n\
             [[functions]]\nname = \"oom\"\ncomponent = {f:?}\nroute = \"/evil/oom\"\nlimits = {{ max-memory = \"32MiB\" }}\n\
             [[functions]]\nname = \"trap\"\ncomponent = {f:?}\nroute = \"/evil/trap\"\n\
             [[functions]]\nname = \"huge\"\ncomponent = {f:?}\nroute = \"/evil/huge\"\nlimits = {{ timeout = \"200ms\" }}\n\
             [[functions]]\nname = \"fan\"\ncomponent = {c:?}\nroute = \"/evil/fan\"\nlimits = {{ timeout = \"1s\" }}\n\
             [[functions]]\nname = \"slow\"\ncomponent = {f:?}\nlimits = {{ timeout = \"200ms\" }}\n\
             [[functions]]\nname = \"hoard\"\ncomponent = {i:?}\nroute = \"/evil/hoard\"\nlimits = {{ max-memory = \"32MiB\" }}\n",
            f = args.faults.display().to_string(),
            c = args.caller.display().to_string(),
            i = args.invoker.display().to_string(),
        );
        let good = format!(
            "tenant = \"good\"\napp = \"a\"\n[[functions]]\nname = \"hello\"\ncomponent = {:?}\nroute = \"/good\"\n",
            args.good.display().to_string()
        );
        let mut routes = Vec::new();
        for text in [evil, good] {
            let manifest = Manifest::parse(&text, Path::new("attacks"), Path::new("."))?;
            let functions = runtime.load_app(&manifest, &Secrets::default())?;
            for (spec, function) in manifest.functions.iter().zip(functions) {
                if let Some(route) = &spec.route {
                    routes.push((route.clone(), function));
                }
            }
        }
        let listener = meshwa_gateway::bind("127.0.0.1:0".parse()?).await?;
        let addr = listener.local_addr()?;
        let stats = runtime.clone();
        let metrics = Arc::new(meshwa_gateway::Metrics::new(Arc::new(move || stats.stats())));
        let (stop_server, server_stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(meshwa_gateway::serve(
            listener,
            Arc::new(meshwa_gateway::Routes::from_pointee(meshwa_gateway::Router::new(routes))),
            metrics,
            meshwa_gateway::GatewayConfig::default(),
            async move {
                let _ = server_stopped.await;
            },
        ));
        anyhow::Ok((addr, server, stop_server))
    });
    let (addr, server, stop_server) = match served {
        Ok(served) => served,
        Err(error) => {
            let _ = std::fs::remove_dir_all(&data);
            return Err(error);
        }
    };
    let result = clients.block_on(async {
        let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build_http::<Full<Bytes>>();
        // Its own connection pool: the good client never reuses an attacker's connection.
        let attack_client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http::<Full<Bytes>>();

        println!(
            "good tenant's latency over HTTP/1.1 keep-alive, {} sequential requests per row, {} attacker connections; µs\n",
            args.requests, args.attackers
        );
        println!("| attack | good p50 | good p99 | p99 / alone | good failed | attacker answers |");
        println!("| --- | --- | --- | --- | --- | --- |");
        let mut alone_p99 = f64::NAN;
        for (name, path) in std::iter::once(&("none (alone)", "")).chain(ATTACKS) {
            let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let mut attackers = Vec::new();
            let held = match *name {
                IDLE_SOCKETS => 60,
                SOCKET_FLOOD => 100,
                _ => 0,
            };
            if held > 0 {
                for _ in 0..args.attackers {
                    attackers.push(attack_clients.spawn(idle_sockets(addr, held, stop.clone())));
                }
            }
            for _ in 0..(if path.is_empty() { 0 } else { args.attackers }) {
                let (stop, client, path) = (stop.clone(), attack_client.clone(), path.to_string());
                attackers.push(attack_clients.spawn(async move {
                    let mut statuses = std::collections::BTreeMap::<u16, u32>::new();
                    // Bounded: stops when the row ends, or after ten minutes.
                    let deadline = Instant::now() + Duration::from_secs(600);
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) && Instant::now() < deadline {
                        let Ok(request) = http::Request::get(format!("http://{addr}{path}")).body(Full::new(Bytes::new())) else {
                            break;
                        };
                        let status = match client.request(request).await {
                            Ok(response) => {
                                let status = response.status().as_u16();
                                let _ = response.into_body().collect().await;
                                status
                            }
                            Err(_) => 0,
                        };
                        *statuses.entry(status).or_default() += 1;
                    }
                    statuses
                }));
            }
            if !attackers.is_empty() {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let mut samples = Vec::with_capacity(args.requests as usize);
            let mut failed = 0u32;
            for i in 0..args.requests {
                let started = Instant::now();
                let request = http::Request::get(format!("http://{addr}/good/{i}")).body(Full::new(Bytes::new()))?;
                let good = match client.request(request).await {
                    Ok(response) if response.status() == 200 => response
                        .into_body()
                        .collect()
                        .await
                        .map(|b| b.to_bytes().starts_with(b"hello from meshwa"))
                        .unwrap_or(false),
                    _ => false,
                };
                samples.push(started.elapsed());
                if !good {
                    failed += 1;
                }
            }
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            let mut answers = std::collections::BTreeMap::<u16, u32>::new();
            for attacker in attackers {
                for (status, n) in attacker.await? {
                    *answers.entry(status).or_default() += n;
                }
            }
            samples.sort_unstable();
            let (p50, p99) = (percentile_us(&samples, 0.5), percentile_us(&samples, 0.99));
            if attackers_were_none(name) {
                alone_p99 = p99;
            }
            let answers: Vec<String> = answers.iter().map(|(s, n)| format!("{n}×{s}")).collect();
            println!(
                "| {name} | {p50:.0} | {p99:.0} | {:.2}× | {failed} | {} |",
                p99 / alone_p99,
                if answers.is_empty() { "-".to_owned() } else { answers.join(" ") }
            );
        }
        anyhow::Ok(())
    });
    let _ = stop_server.send(());
    let _ = tokio.block_on(server);
    let _ = std::fs::remove_dir_all(&data);
    result
}

/// The first row: the good tenant alone.
fn attackers_were_none(name: &str) -> bool {
    name == "none (alone)"
}

/// Holds `held` connections to `addr` that send nothing, opening a new one whenever the server
/// closes one, until `stop`. Answers how many it opened (as "status 0") and how many the server
/// closed ("status 1").
async fn idle_sockets(
    addr: std::net::SocketAddr,
    held: usize,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> std::collections::BTreeMap<u16, u32> {
    use tokio::io::AsyncReadExt;
    let mut counts = std::collections::BTreeMap::<u16, u32>::new();
    let mut open = tokio::task::JoinSet::new();
    // Bounded: stops when the row ends, or after ten minutes.
    let deadline = Instant::now() + Duration::from_secs(600);
    while !stop.load(std::sync::atomic::Ordering::Relaxed) && Instant::now() < deadline {
        while open.len() < held {
            let Ok(mut socket) = tokio::net::TcpStream::connect(addr).await else {
                break;
            };
            *counts.entry(0).or_default() += 1;
            open.spawn(async move {
                let mut byte = [0u8; 1];
                // Ends when the server closes the connection (or the row ends: aborted).
                let _ = socket.read(&mut byte).await;
            });
        }
        if tokio::time::timeout(Duration::from_millis(50), open.join_next())
            .await
            .is_ok_and(|joined| joined.is_some())
        {
            *counts.entry(1).or_default() += 1;
        }
    }
    open.abort_all();
    counts
}
