//! `meshwa bench`: measurements that ship with the product.
//!
//! - `fresh-instance`: the per-request cost of the runtime itself (admission, new store,
//!   instantiate from the pre-instantiated component, call `wasi:http/incoming-handler`, read the
//!   response, drop), with no HTTP or sockets in the way, under several allocator settings.
//! - `native-hello`: a native hyper server that answers like the `hello` guest, the ceiling that
//!   `bench/http.sh` compares against. It uses the same hyper and tokio as the gateway.
//! - `hops`: per-hop cost of function-to-function calls against native HTTP + JSON.
//! - `deploy`: time from `meshwa deploy` to the first successful request (cold and warm), and
//!   failed requests during back-to-back redeploys under load, against a `meshwa serve` child.
//! - `attacks`: a good tenant's latency alone and while another tenant runs each attack.
//! - `kv`: key-value get and durable set from inside a guest against a native client of a local
//!   `redis-server` (started and stopped by the bench).
//! - `density`: live instances one process can hold, with their RSS and mappings (`density`).

mod density;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use clap::{Args, Subcommand};
use http_body_util::{BodyExt, Full};
use meshwa_manifest::Manifest;
use meshwa_runtime::{AllocatorChoice, BodyError, EngineSettings, Function, Runtime, Secrets};

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Per-request cost of a fresh instance (instantiate + call + drop), p50/p99, 1 and N threads.
    FreshInstance(FreshInstanceArgs),
    /// A native hyper hello server: the ceiling for HTTP throughput comparisons.
    NativeHello(NativeHelloArgs),
    /// Per-hop cost of a call between two functions (invoke, wasi:http) against two native
    /// processes talking HTTP/1.1 + JSON over loopback, for several payload sizes.
    Hops(HopsArgs),
    /// A native microservice for the `hops` baseline: parses a JSON document with a payload
    /// string, answers its length as JSON.
    JsonEcho(NativeHelloArgs),
    /// A good tenant's p50/p99 alone and while another tenant attacks (loop, memory, trap,
    /// endless response, flood), over real HTTP on loopback.
    Attacks(AttacksArgs),
    /// Time from `meshwa deploy` to the first successful request, cold and warm, and requests
    /// failed during back-to-back redeploys under load.
    Deploy(DeployBenchArgs),
    /// Cost of legacy code and heavy runtimes: a C kernel natively vs as a meshwa CGI function,
    /// and fresh-instance latency of the Python and JavaScript hello functions vs the Rust one.
    Languages(LanguagesArgs),
    /// Key-value get and durable set latency from inside a guest (wasi:keyvalue on the embedded
    /// store) against a native Redis client over loopback (`appendfsync always`).
    Kv(KvArgs),
    /// How many instances one process can hold live at once (pool slots that fit the address
    /// space, with and without MPK), and the RSS and kernel mappings each live instance costs.
    Density(density::DensityArgs),
}

#[derive(Args)]
pub struct LanguagesArgs {
    /// The Rust hello function (`guests/hello`).
    #[arg(long)]
    rust: PathBuf,
    /// The Python hello function (`guests/polyglot/python-hello`).
    #[arg(long)]
    python: PathBuf,
    /// The JavaScript hello function (`guests/polyglot/js-hello`).
    #[arg(long)]
    js: PathBuf,
    /// The SHA-256 kernel as a WASI core module (`guests/c/sha256sum.c`).
    #[arg(long)]
    sha_wasm: PathBuf,
    /// The same kernel compiled natively.
    #[arg(long)]
    sha_native: PathBuf,
    /// MiB hashed per run of the kernel.
    #[arg(long, default_value_t = 64)]
    mib: u32,
    /// Runs of the kernel per side (the median counts).
    #[arg(long, default_value_t = 7)]
    runs: u32,
    /// Requests measured per hello function.
    #[arg(long, default_value_t = 300)]
    iterations: u32,
}

#[derive(Args)]
pub struct AttacksArgs {
    /// The well-behaved function (`guests/hello`).
    #[arg(long)]
    good: PathBuf,
    /// The attacker's component (`guests/faults`).
    #[arg(long)]
    faults: PathBuf,
    /// Good requests measured per row.
    #[arg(long, default_value_t = 2000)]
    requests: u32,
    /// Concurrent attacker connections.
    #[arg(long, default_value_t = 4)]
    attackers: u32,
    /// As `meshwa serve --io-poll-interval`.
    #[arg(long, default_value_t = 1)]
    io_poll_interval: u32,
    /// As `meshwa serve --tenant-cpu-lanes` (default: the server's 2 workers but one; 0 for
    /// no cap).
    #[arg(long, default_value_t = 1)]
    tenant_cpu_lanes: u32,
}

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
}

#[derive(Args)]
pub struct KvArgs {
    /// The guest that runs the timed loop (`guests/services`).
    #[arg(long)]
    component: PathBuf,
    /// Operations measured per cell.
    #[arg(long, default_value_t = 2000)]
    iterations: u32,
    /// The Redis server binary for the baseline.
    #[arg(long, default_value = "redis-server")]
    redis_server: PathBuf,
}

#[derive(Args)]
pub struct HopsArgs {
    /// The caller component (`guests/hopper`).
    #[arg(long)]
    hopper: PathBuf,
    /// The callee component (`guests/sink`).
    #[arg(long)]
    sink: PathBuf,
    /// Calls measured per style and size.
    #[arg(long, default_value_t = 2000)]
    iterations: u32,
}

#[derive(Args)]
pub struct FreshInstanceArgs {
    /// The component to instantiate (a wasi:http/proxy component; the `hello` guest by default
    /// in bench scripts).
    #[arg(long)]
    component: PathBuf,
    /// Invocations measured per setting and thread count (after a warm-up of a tenth as many).
    #[arg(long, default_value_t = 20_000)]
    iterations: u32,
    /// Threads for the parallel run.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Only the settings whose name contains this text (e.g. `on-demand`, `1 MiB`).
    #[arg(long)]
    only: Option<String>,
}

#[derive(Args)]
pub struct NativeHelloArgs {
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
}

pub fn run(command: BenchCommand) -> anyhow::Result<()> {
    match command {
        BenchCommand::FreshInstance(args) => fresh_instance(args),
        BenchCommand::NativeHello(args) => native_hello(args),
        BenchCommand::Hops(args) => hops(args),
        BenchCommand::JsonEcho(args) => json_echo(args),
        BenchCommand::Kv(args) => kv(args),
        BenchCommand::Deploy(args) => deploy_bench(args),
        BenchCommand::Attacks(args) => attacks(args),
        BenchCommand::Languages(args) => languages(args),
        BenchCommand::Density(args) => density::density(args),
    }
}

/// One engine configuration to measure.
struct Setting {
    name: &'static str,
    allocator: AllocatorChoice,
    keep_resident: usize,
    pagemap_scan: bool,
}

const SETTINGS: &[Setting] = &[
    Setting {
        name: "on-demand",
        allocator: AllocatorChoice::OnDemand,
        keep_resident: 0,
        pagemap_scan: false,
    },
    Setting {
        name: "pooling, keep-resident 0",
        allocator: AllocatorChoice::Pooling,
        keep_resident: 0,
        pagemap_scan: false,
    },
    Setting {
        name: "pooling, keep-resident 1 MiB",
        allocator: AllocatorChoice::Pooling,
        keep_resident: 1 << 20,
        pagemap_scan: false,
    },
    Setting {
        name: "pooling, keep-resident 4 MiB",
        allocator: AllocatorChoice::Pooling,
        keep_resident: 4 << 20,
        pagemap_scan: false,
    },
    Setting {
        name: "pooling, keep-resident 1 MiB, pagemap-scan (default)",
        allocator: AllocatorChoice::Pooling,
        keep_resident: 1 << 20,
        pagemap_scan: true,
    },
    Setting {
        name: "pooling, keep-resident 16 MiB, pagemap-scan",
        allocator: AllocatorChoice::Pooling,
        keep_resident: 16 << 20,
        pagemap_scan: true,
    },
];

fn fresh_instance(args: FreshInstanceArgs) -> anyhow::Result<()> {
    let data = std::env::temp_dir().join(format!("meshwa-bench-{}", std::process::id()));
    println!(
        "fresh instance per request: instantiate + call wasi:http handler + read response + drop"
    );
    println!("component: {}", args.component.display());
    println!(
        "iterations: {} per row; {} threads in the parallel rows\n",
        args.iterations, args.threads
    );
    println!("| setting | threads | p50 µs | p90 µs | p99 µs | p99.9 µs | invocations/s |");
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    let chosen = SETTINGS.iter().filter(|s| {
        args.only
            .as_deref()
            .is_none_or(|only| s.name.contains(only))
    });
    for setting in chosen {
        let settings = EngineSettings {
            allocator: setting.allocator,
            memory_keep_resident: setting.keep_resident,
            pagemap_scan: setting.pagemap_scan,
            max_instances: 1000,
            ..EngineSettings::default()
        };
        let runtime = Runtime::new(settings, &data)?;
        let function = load(&runtime, &args.component)?;
        for threads in [1, args.threads] {
            let (mut latencies, elapsed) = measure(&function, threads, args.iterations)?;
            latencies.sort_unstable();
            let pct = |p: f64| percentile_us(&latencies, p);
            println!(
                "| {} | {threads} | {:.1} | {:.1} | {:.1} | {:.1} | {:.0} |",
                setting.name,
                pct(0.50),
                pct(0.90),
                pct(0.99),
                pct(0.999),
                latencies.len() as f64 / elapsed.as_secs_f64()
            );
        }
    }
    let _ = std::fs::remove_dir_all(&data);
    Ok(())
}

fn load(runtime: &Runtime, component: &Path) -> anyhow::Result<Arc<Function>> {
    load_kind(runtime, component, "http")
}

/// Loads `component` as the only function of a bench app, of `kind` (`http` or `cgi`).
fn load_kind(runtime: &Runtime, component: &Path, kind: &str) -> anyhow::Result<Arc<Function>> {
    load_with(
        runtime,
        component,
        kind,
        "max-memory = \"128MiB\", timeout = \"60s\"",
    )
}

/// Loads `component` as the only function of a bench app, of `kind`, with `limits` (the inside
/// of the manifest's `limits = { ... }`).
fn load_with(
    runtime: &Runtime,
    component: &Path,
    kind: &str,
    limits: &str,
) -> anyhow::Result<Arc<Function>> {
    let text = format!(
        "tenant = \"bench\"\napp = \"bench\"\n[[functions]]\nname = \"f\"\nkind = \"{kind}\"\ncomponent = {:?}\nlimits = {{ {limits} }}\n",
        component.display().to_string()
    );
    let manifest = Manifest::parse(&text, Path::new("bench"), Path::new("."))?;
    let mut functions = runtime.load_app(&manifest, &Secrets::default())?;
    Ok(functions.remove(0))
}

/// Runs `iterations` invocations on each of `threads` threads (one sequential loop per thread)
/// and returns every latency and the wall time of the measured part.
fn measure(
    function: &Arc<Function>,
    threads: usize,
    iterations: u32,
) -> anyhow::Result<(Vec<Duration>, Duration)> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let warmup = (iterations / 10).max(100);
        let started = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..threads {
            let function = function.clone();
            tasks.spawn(async move {
                let mut latencies = Vec::with_capacity(iterations as usize);
                for i in 0..warmup + iterations {
                    let t = Instant::now();
                    invoke(&function).await?;
                    if i >= warmup {
                        latencies.push(t.elapsed());
                    }
                }
                anyhow::Ok(latencies)
            });
        }
        let mut all = Vec::new();
        while let Some(result) = tasks.join_next().await {
            all.extend(result??);
        }
        Ok((all, started.elapsed()))
    })
}

/// One invocation as the bench counts it: a GET of `path` in a fresh instance, body read whole.
async fn get(
    function: &Function,
    path: &str,
    invocation: &str,
) -> anyhow::Result<(http::StatusCode, Bytes)> {
    request(function, http::Method::GET, path, invocation).await
}

async fn post(function: &Function, path: &str) -> anyhow::Result<(http::StatusCode, Bytes)> {
    request(function, http::Method::POST, path, "bench").await
}

async fn request(
    function: &Function,
    method: http::Method,
    path: &str,
    invocation: &str,
) -> anyhow::Result<(http::StatusCode, Bytes)> {
    let request = http::Request::builder()
        .method(method)
        .uri(format!("http://localhost{path}"))
        .body(Full::new(Bytes::new()).map_err(|never: Infallible| -> BodyError { match never {} }))
        .context("request")?;
    let response = function
        .handle(request, invocation)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .to_bytes();
    Ok((status, body))
}

async fn invoke(function: &Function) -> anyhow::Result<()> {
    let (status, _) = get(function, "/bench", "bench").await?;
    anyhow::ensure!(status == 200, "status {status}");
    Ok(())
}

/// The `p` quantile (0..=1) of sorted durations, in µs.
fn percentile_us(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len().saturating_sub(1)) as f64 * p).round() as usize;
    sorted.get(i).map_or(f64::NAN, |d| d.as_secs_f64() * 1e6)
}

fn native_hello(args: NativeHelloArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(args.listen).await?;
        println!(
            "native-hello listening on http://{}",
            listener.local_addr()?
        );
        let builder =
            hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
        loop {
            let (stream, _) = listener.accept().await?;
            let _ = stream.set_nodelay(true);
            let builder = builder.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(|request: http::Request<_>| async move {
                    let body = format!(
                        "hello from meshwa: {} (request 1 of this instance)\n",
                        request.uri().path()
                    );
                    Ok::<_, Infallible>(
                        http::Response::builder()
                            .header("content-type", "text/plain")
                            .body(Full::new(Bytes::from(body)))
                            .unwrap_or_default(),
                    )
                });
                let _ = builder
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    })
}

const HOP_SIZES: [(usize, &str); 4] = [
    (64, "64 B"),
    (4 * 1024, "4 KiB"),
    (64 * 1024, "64 KiB"),
    (1024 * 1024, "1 MiB"),
];

fn hops(args: HopsArgs) -> anyhow::Result<()> {
    let data = std::env::temp_dir().join(format!("meshwa-hops-{}", std::process::id()));
    let runtime = Runtime::new(EngineSettings::default(), &data)?;
    let manifest = format!(
        "tenant = \"bench\"\napp = \"bench\"\n\
         [[functions]]\nname = \"hopper\"\ncomponent = {:?}\nroute = \"/\"\nlimits = {{ timeout = \"600s\" }}\n\
         [[functions]]\nname = \"sink\"\ncomponent = {:?}\nlimits = {{ max-request-body = \"8MiB\" }}\n",
        args.hopper.display().to_string(),
        args.sink.display().to_string()
    );
    let manifest = Manifest::parse(&manifest, Path::new("hops"), Path::new("."))?;
    let mut hopper = None;
    let functions = runtime.load_app(&manifest, &Secrets::default())?;
    for (spec, function) in manifest.functions.iter().zip(functions) {
        if spec.route.is_some() {
            hopper = Some(function);
        }
    }
    let hopper = hopper.context("the hopper function")?;

    // The baseline's server: another native process, as microservices are deployed.
    let mut server = std::process::Command::new(std::env::current_exe()?)
        .args(["bench", "json-echo", "--listen", "127.0.0.1:0"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .context("start the json-echo server")?;
    let result = (|| {
        let stdout = server.stdout.take().context("server stdout")?;
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line)?;
        let addr: SocketAddr = line
            .trim()
            .rsplit("http://")
            .next()
            .unwrap_or_default()
            .parse()
            .context("json-echo address")?;

        let tokio = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?;
        println!(
            "per-hop cost, {} calls per cell, p50 / p99 in µs\n",
            args.iterations
        );
        println!(
            "| payload | (a) invoke, callee reads all | (b) invoke, callee reads 64 B | (c) wasi:http in-process | (d) native HTTP/1.1 + JSON | d/a | d/c |"
        );
        println!("| --- | --- | --- | --- | --- | --- | --- |");
        for (size, label) in HOP_SIZES {
            let mut cells = Vec::new();
            for style in ["invoke-full", "invoke-head", "http"] {
                let path = format!("/hop/{style}/{size}/{}", args.iterations);
                // On the runtime's worker, as the gateway runs a request (not on this thread).
                let hopper = hopper.clone();
                let (p50, p99) = tokio.block_on(async move {
                    tokio::spawn(async move { hop_in_guest(&hopper, &path).await }).await?
                })?;
                cells.push((p50, p99));
            }
            let baseline = tokio.block_on(hop_native(addr, size, args.iterations))?;
            let fmt = |(p50, p99): (f64, f64)| format!("{p50:.1} / {p99:.1}");
            println!(
                "| {label} | {} | {} | {} | {} | {:.0}× | {:.0}× |",
                fmt(cells[0]),
                fmt(cells[1]),
                fmt(cells[2]),
                fmt(baseline),
                baseline.0 / cells[0].0,
                baseline.0 / cells[2].0,
            );
        }
        anyhow::Ok(())
    })();
    let _ = server.kill();
    let _ = server.wait();
    let _ = std::fs::remove_dir_all(&data);
    result
}

/// Runs the hopper's loop; returns its (p50, p99) in µs.
async fn hop_in_guest(hopper: &Function, path: &str) -> anyhow::Result<(f64, f64)> {
    let (status, body) = get(hopper, path, "hops").await?;
    let text = String::from_utf8_lossy(&body);
    anyhow::ensure!(status == 200, "hopper answered {status}: {text}");
    let mut numbers = text.split_whitespace().map(|n| n.parse::<f64>());
    match (numbers.next(), numbers.next()) {
        (Some(Ok(p50)), Some(Ok(p99))) => Ok((p50 / 1000.0, p99 / 1000.0)),
        _ => anyhow::bail!("unexpected hopper answer {text:?}"),
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct JsonRequest {
    id: u64,
    payload: String,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct JsonAnswer {
    id: u64,
    len: usize,
}

/// The baseline: a keep-alive HTTP/1.1 client posting a JSON document to another process and
/// parsing its JSON answer; returns (p50, p99) in µs.
async fn hop_native(addr: SocketAddr, size: usize, iterations: u32) -> anyhow::Result<(f64, f64)> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    let payload: String = (0..size).map(|i| (b'a' + (i % 26) as u8) as char).collect();
    let mut times = Vec::with_capacity(iterations as usize);
    for i in 0..u64::from(iterations) + 50 {
        let started = Instant::now();
        let document = serde_json::to_vec(&JsonRequest {
            id: i,
            payload: payload.clone(),
        })?;
        let request = http::Request::post(format!("http://{addr}/"))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(document)))?;
        sender.ready().await?;
        let response = sender.send_request(request).await?;
        let body = response.into_body().collect().await?.to_bytes();
        let answer: JsonAnswer = serde_json::from_slice(&body)?;
        anyhow::ensure!(answer.id == i && answer.len == size, "wrong answer");
        if i >= 50 {
            times.push(started.elapsed());
        }
    }
    times.sort_unstable();
    Ok((percentile_us(&times, 0.5), percentile_us(&times, 0.99)))
}

fn json_echo(args: NativeHelloArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(args.listen).await?;
        println!("json-echo listening on http://{}", listener.local_addr()?);
        loop {
            let (stream, _) = listener.accept().await?;
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    |request: http::Request<hyper::body::Incoming>| async move {
                        let body = request.into_body().collect().await?.to_bytes();
                        let answer = match serde_json::from_slice::<JsonRequest>(&body) {
                            Ok(document) => serde_json::to_vec(&JsonAnswer {
                                id: document.id,
                                len: document.payload.len(),
                            })
                            .unwrap_or_default(),
                            Err(_) => b"{}".to_vec(),
                        };
                        Ok::<_, hyper::Error>(http::Response::new(Full::new(Bytes::from(answer))))
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    })
}

/// A `redis-server` child on a free loopback port, killed on drop.
struct RedisServer {
    child: std::process::Child,
    port: u16,
    dir: PathBuf,
}

impl RedisServer {
    /// Starts Redis with every write fsynced before it is acknowledged, as durable as meshwa's
    /// store, and waits (bounded) until it answers.
    fn start(binary: &Path) -> anyhow::Result<RedisServer> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let dir = std::env::temp_dir().join(format!("meshwa-bench-redis-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let child = std::process::Command::new(binary)
            .args([
                "--bind",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--save",
                "",
            ])
            .args(["--appendonly", "yes", "--appendfsync", "always"])
            .arg("--dir")
            .arg(&dir)
            .stdout(std::process::Stdio::null())
            .spawn()
            .with_context(|| {
                format!(
                    "cannot start {} (on Debian: apt-get install redis-server)",
                    binary.display()
                )
            })?;
        let server = RedisServer { child, port, dir };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(mut connection) = server.connect()
                && redis::cmd("PING").query::<String>(&mut connection).is_ok()
            {
                return Ok(server);
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "redis-server did not answer within 10 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn connect(&self) -> redis::RedisResult<redis::Connection> {
        redis::Client::open(format!("redis://127.0.0.1:{}/", self.port))?.get_connection()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Times `iterations` Redis round trips of `op` from one connection; (p50, p99) in µs.
fn redis_round_trips(redis: &RedisServer, op: &str, iterations: u32) -> anyhow::Result<(f64, f64)> {
    let mut connection = redis.connect()?;
    let value = [b'v'; 100];
    redis::cmd("SET")
        .arg("bench-key")
        .arg(&value[..])
        .exec(&mut connection)?;
    let mut samples = Vec::with_capacity(iterations as usize);
    for i in 0..iterations {
        let started = Instant::now();
        if op == "set" {
            redis::cmd("SET")
                .arg(format!("bench-{}", i % 100))
                .arg(&value[..])
                .exec(&mut connection)?;
        } else {
            let got: Vec<u8> = redis::cmd("GET").arg("bench-key").query(&mut connection)?;
            std::hint::black_box(got);
        }
        samples.push(started.elapsed());
    }
    samples.sort_unstable();
    Ok((percentile_us(&samples, 0.5), percentile_us(&samples, 0.99)))
}

fn kv(args: KvArgs) -> anyhow::Result<()> {
    let data = std::env::temp_dir().join(format!("meshwa-kv-{}", std::process::id()));
    let redis = RedisServer::start(&args.redis_server)?;
    let result = (|| {
        let runtime = Runtime::new(EngineSettings::default(), &data)?;
        let manifest = format!(
            "tenant = \"bench\"\napp = \"bench\"\n\
             [[functions]]\nname = \"svc\"\ncomponent = {:?}\nroute = \"/bench/svc\"\nlimits = {{ timeout = \"600s\" }}\n\
             grants = {{ key-value = [\"bench\"], config = [\"unused\"], logging = true }}\n\
             [key-value.bench]\n[config]\nunused = \"\"\n",
            args.component.display().to_string()
        );
        let manifest = Manifest::parse(&manifest, Path::new("kv"), Path::new("."))?;
        let function = runtime
            .load_app(&manifest, &Secrets::default())?
            .pop()
            .context("the bench function")?;
        let tokio = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?;
        println!(
            "key-value latency, 100-byte values, {} operations per cell, p50 / p99 in µs\n",
            args.iterations
        );
        println!(
            "| operation | meshwa, wasi:keyvalue from a guest (redb) | native client → redis-server, loopback | redis / meshwa at p50 |"
        );
        println!("| --- | --- | --- | --- |");
        for (op, label) in [
            ("get", "get"),
            (
                "set",
                "durable set (fsync per write; redis `appendfsync always`)",
            ),
        ] {
            let path = format!("/bench/svc/kvbench/bench?op={op}&n={}", args.iterations);
            let (status, body) = tokio.block_on(post(&function, &path))?;
            let text = String::from_utf8_lossy(&body);
            anyhow::ensure!(status == 200, "guest answered {status}: {text}");
            let mut numbers = text.split_whitespace().map(|n| n.parse::<f64>());
            let guest = match (numbers.next(), numbers.next()) {
                (Some(Ok(p50)), Some(Ok(p99))) => (p50 / 1000.0, p99 / 1000.0),
                _ => anyhow::bail!("unexpected guest answer {text:?}"),
            };
            let native = redis_round_trips(&redis, op, args.iterations)?;
            println!(
                "| {label} | {:.1} / {:.1} | {:.1} / {:.1} | {:.1}× |",
                guest.0,
                guest.1,
                native.0,
                native.1,
                native.0 / guest.0
            );
        }
        anyhow::Ok(())
    })();
    drop(redis);
    let _ = std::fs::remove_dir_all(&data);
    result
}

/// A `meshwa serve` child with a fresh data directory, killed on drop.
struct ServerChild {
    child: std::process::Child,
    gateway: SocketAddr,
    admin: SocketAddr,
    data: PathBuf,
}

impl ServerChild {
    fn start(operator_token: &str) -> anyhow::Result<ServerChild> {
        use std::io::BufRead;
        let data = std::env::temp_dir().join(format!("meshwa-bench-deploy-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&data);
        let mut child = std::process::Command::new(std::env::current_exe()?)
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--admin-listen",
                "127.0.0.1:0",
            ])
            .args(["--operator-token", operator_token, "--data-dir"])
            .arg(&data)
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::piped())
            .spawn()
            .context("start meshwa serve")?;
        let stdout = child.stdout.take().context("server stdout")?;
        let mut lines = std::io::BufReader::new(stdout).lines();
        let mut address = |prefix: &str| -> anyhow::Result<SocketAddr> {
            let line = lines.next().context("the server ended")??;
            line.strip_prefix(prefix)
                .context("unexpected server output")?
                .parse()
                .context("server address")
        };
        let gateway = address("meshwa listening on http://")?;
        let admin = address("meshwa admin on http://")?;
        Ok(ServerChild {
            child,
            gateway,
            admin,
            data,
        })
    }
}

impl Drop for ServerChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.data);
    }
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

/// One JSON call to the control plane.
async fn control_call(
    client: &hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        Full<Bytes>,
    >,
    admin: SocketAddr,
    method: http::Method,
    path: &str,
    token: &str,
    body: Bytes,
) -> anyhow::Result<(http::StatusCode, Bytes)> {
    let request = http::Request::builder()
        .method(method)
        .uri(format!("http://{admin}{path}"))
        .header("authorization", format!("Bearer {token}"))
        .body(Full::new(body))?;
    let response = client.request(request).await?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((status, body))
}

fn deploy_bench(args: DeployBenchArgs) -> anyhow::Result<()> {
    let operator = "bench-operator-token";
    let server = ServerChild::start(operator)?;
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
            async move {
                std::fs::create_dir_all(&dir)?;
                std::fs::write(dir.join("f.wasm"), bytes)?;
                std::fs::write(
                    dir.join("meshwa.toml"),
                    "tenant = \"bench\"\napp = \"app\"\n[[functions]]\nname = \"f\"\ncomponent = \"f.wasm\"\nroute = \"/bench/app\"\n",
                )?;
                let started = Instant::now();
                let status = tokio::process::Command::new(std::env::current_exe()?)
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

/// The attacks of `meshwa bench attacks`: a row name and the attacker's path.
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
];

fn attacks(args: AttacksArgs) -> anyhow::Result<()> {
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
             [[functions]]\nname = \"huge\"\ncomponent = {f:?}\nroute = \"/evil/huge\"\nlimits = {{ timeout = \"200ms\" }}\n",
            f = args.faults.display().to_string()
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
            if !path.is_empty() {
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
            if path.is_empty() {
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

fn languages(args: LanguagesArgs) -> anyhow::Result<()> {
    // A fresh compile cache: the load column shows the compile time of each component.
    let data = std::env::temp_dir().join(format!("meshwa-bench-languages-{}", std::process::id()));
    let result = languages_in(&args, &data);
    let _ = std::fs::remove_dir_all(&data);
    result
}

fn languages_in(args: &LanguagesArgs, data: &Path) -> anyhow::Result<()> {
    let runtime = Runtime::new(
        EngineSettings {
            max_instances: 64,
            ..EngineSettings::default()
        },
        data,
    )?;
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;

    // The C kernel: the same source, natively and in the sandbox. Each side's digest must match.
    let sha = load_kind(&runtime, &args.sha_wasm, "cgi")?;
    let query = format!("mib={}", args.mib);
    let mut native = Vec::new();
    let mut native_out = String::new();
    for _ in 0..args.runs {
        let started = Instant::now();
        let out = std::process::Command::new(&args.sha_native)
            .env_clear()
            .env("QUERY_STRING", &query)
            .stdin(std::process::Stdio::null())
            .output()
            .with_context(|| format!("cannot run {}", args.sha_native.display()))?;
        native.push(started.elapsed());
        anyhow::ensure!(out.status.success(), "native kernel failed: {}", out.status);
        native_out = String::from_utf8_lossy(&out.stdout).into_owned();
    }
    let mut sandboxed = Vec::new();
    let mut sandboxed_out = Bytes::new();
    for _ in 0..args.runs {
        let started = Instant::now();
        let (status, body) = tokio.block_on(get(&sha, &format!("/sha?{query}"), "bench"))?;
        sandboxed.push(started.elapsed());
        anyhow::ensure!(status == 200, "sandboxed kernel answered {status}");
        sandboxed_out = body;
    }
    let native_digest = native_out
        .split("\n\n")
        .nth(1)
        .context("native output has no CGI body")?;
    anyhow::ensure!(
        native_digest.as_bytes() == sandboxed_out.as_ref(),
        "digests differ: native {native_digest:?}, meshwa {:?}",
        String::from_utf8_lossy(&sandboxed_out)
    );
    native.sort_unstable();
    sandboxed.sort_unstable();
    let median = |v: &[Duration]| v[v.len() / 2].as_secs_f64() * 1000.0;
    println!(
        "SHA-256 of {} MiB (guests/c/sha256sum.c, clang-16 -O2), median of {} runs",
        args.mib, args.runs
    );
    println!("| run as | median ms | min ms | MiB/s | ratio |");
    println!("| --- | --- | --- | --- | --- |");
    for (name, times) in [
        ("native process (exec included)", &native),
        ("meshwa CGI function (fresh instance included)", &sandboxed),
    ] {
        println!(
            "| {name} | {:.1} | {:.1} | {:.0} | {:.2}x |",
            median(times),
            times[0].as_secs_f64() * 1000.0,
            f64::from(args.mib) / (median(times) / 1000.0),
            median(times) / median(&native)
        );
    }

    // Fresh-instance latency of hello functions in three languages.
    println!(
        "\nhello functions: a fresh instance per request, in-process (no socket), {} requests after the first",
        args.iterations
    );
    println!(
        "| function | component MiB | load (compile) ms | first request ms | p50 µs | p99 µs |"
    );
    println!("| --- | --- | --- | --- | --- | --- |");
    for (name, path) in [
        ("Rust (guests/hello)", &args.rust),
        ("Python (componentize-py)", &args.python),
        ("JavaScript (componentize-js)", &args.js),
    ] {
        let size = std::fs::metadata(path)
            .with_context(|| format!("{}", path.display()))?
            .len();
        let loaded = Instant::now();
        let function = load(&runtime, path)?;
        let load_ms = loaded.elapsed().as_secs_f64() * 1000.0;
        let first = Instant::now();
        let (status, _) = tokio.block_on(get(&function, "/hello", "bench"))?;
        anyhow::ensure!(status == 200, "{name}: status {status}");
        let first_ms = first.elapsed().as_secs_f64() * 1000.0;
        let mut latencies = Vec::with_capacity(args.iterations as usize);
        for _ in 0..args.iterations {
            let t = Instant::now();
            let (status, _) = tokio.block_on(get(&function, "/hello", "bench"))?;
            anyhow::ensure!(status == 200, "{name}: status {status}");
            latencies.push(t.elapsed());
        }
        latencies.sort_unstable();
        println!(
            "| {name} | {:.1} | {load_ms:.0} | {first_ms:.1} | {:.0} | {:.0} |",
            size as f64 / (1024.0 * 1024.0),
            percentile_us(&latencies, 0.5),
            percentile_us(&latencies, 0.99)
        );
    }
    Ok(())
}
