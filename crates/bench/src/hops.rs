//! `meshwa-bench hops`: per-hop cost of function-to-function calls (invoke, wasi:http, typed
//! calls through a WIT interface, composed and host-linked) against two native processes talking
//! HTTP/1.1 + JSON over loopback (`meshwa-bench json-echo` as the callee), for several payload
//! sizes.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use bytes::Bytes;
use clap::Args;
use http_body_util::{BodyExt, Full};
use meshwa_manifest::Manifest;
use meshwa_runtime::{EngineSettings, Function, Runtime, Secrets};

use crate::common::{get, guest_timings, percentile_us};
use crate::native_servers::{JsonAnswer, JsonRequest};

#[derive(Args)]
pub struct HopsArgs {
    #[command(flatten)]
    guests: HopGuests,
    /// Calls measured per style and size.
    #[arg(long, default_value_t = 2000)]
    iterations: u32,
}

/// The hop benchmark's guests (also measured by `meshwa-bench hardware`).
#[derive(Args)]
pub struct HopGuests {
    /// The caller component (`guests/hopper`).
    #[arg(long)]
    pub hopper: PathBuf,
    /// The callee component (`guests/sink`).
    #[arg(long)]
    pub sink: PathBuf,
    /// The typed caller component (`guests/typed-hopper`), linked to `--typed-sink` twice:
    /// composed, and host-linked (the same component).
    #[arg(long)]
    pub typed_hopper: PathBuf,
    /// The typed callee component (`guests/typed-sink`), exporting `test:typed/sink`.
    #[arg(long)]
    pub typed_sink: PathBuf,
}

const HOP_SIZES: [(usize, &str); 4] = [
    (64, "64 B"),
    (4 * 1024, "4 KiB"),
    (64 * 1024, "64 KiB"),
    (1024 * 1024, "1 MiB"),
];

pub fn run(args: HopsArgs) -> anyhow::Result<()> {
    let data = std::env::temp_dir().join(format!("meshwa-hops-{}", std::process::id()));
    let result = run_in(&args, &data);
    let _ = std::fs::remove_dir_all(&data);
    result
}

/// The hop benchmark's app in `runtime`: `hopper` calling `sink` (invoke and wasi:http), and
/// `typed-hopper` linked to `typed-sink`, composed and host-linked (the same component twice).
/// Returns (hopper, typed composed, typed host-linked).
pub(crate) fn load_hop_app(
    runtime: &Runtime,
    guests: &HopGuests,
) -> anyhow::Result<(Arc<Function>, Arc<Function>, Arc<Function>)> {
    let manifest = format!(
        "tenant = \"bench\"\napp = \"bench\"\n\
         [[functions]]\nname = \"hopper\"\ncomponent = {:?}\nroute = \"/\"\nlimits = {{ timeout = \"600s\" }}\n\
         [[functions]]\nname = \"sink\"\ncomponent = {:?}\nlimits = {{ max-request-body = \"8MiB\" }}\n\
         [[functions]]\nname = \"typed-sink\"\ncomponent = {:?}\nkind = \"exports\"\n\
         [[functions]]\nname = \"typed-hopper\"\ncomponent = {:?}\nroute = \"/typed\"\n\
         limits = {{ timeout = \"600s\", max-memory = \"256MiB\" }}\n\
         [functions.imports]\n\"test:typed/sink\" = \"typed-sink\"\n\"test:typed/tally\" = \"typed-sink\"\n\
         [[functions]]\nname = \"typed-hopper-host\"\ncomponent = {:?}\nroute = \"/typed-host\"\n\
         limits = {{ timeout = \"600s\", max-memory = \"256MiB\" }}\n\
         [functions.imports]\n\"test:typed/sink\" = {{ function = \"typed-sink\", link = \"host\" }}\n\
         \"test:typed/tally\" = {{ function = \"typed-sink\", link = \"host\" }}\n",
        guests.hopper.display().to_string(),
        guests.sink.display().to_string(),
        guests.typed_sink.display().to_string(),
        guests.typed_hopper.display().to_string(),
        guests.typed_hopper.display().to_string(),
    );
    let manifest = Manifest::parse(&manifest, Path::new("hops"), Path::new("."))?;
    let functions = runtime.load_app(&manifest, &Secrets::default())?;
    let named = |name: &str| {
        functions
            .iter()
            .find(|f| f.id().function.as_str() == name)
            .cloned()
            .with_context(|| format!("the {name} function"))
    };
    Ok((
        named("hopper")?,
        named("typed-hopper")?,
        named("typed-hopper-host")?,
    ))
}

fn run_in(args: &HopsArgs, data: &Path) -> anyhow::Result<()> {
    let runtime = Runtime::new(EngineSettings::default(), data)?;
    let (hopper, typed_hopper, typed_hopper_host) = load_hop_app(&runtime, &args.guests)?;

    // The baseline's server: another native process, as microservices are deployed.
    let mut server = std::process::Command::new(std::env::current_exe()?)
        .args(["json-echo", "--listen", "127.0.0.1:0"])
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
            .with_context(|| format!("json-echo address in {line:?}"))?;

        let tokio = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?;
        println!(
            "per-hop cost, {} calls per cell, p50 / p99 in µs\n",
            args.iterations
        );
        println!(
            "| payload | (a) invoke, callee reads all | (b) invoke, callee reads 64 B | (c) wasi:http in-process | (e) typed composed, list<u8> | (f) typed composed, record | (e') typed host-linked, list<u8> | (f') typed host-linked, record | (d) native HTTP/1.1 + JSON | d/a | d/c | d/e | d/f | d/e' | d/f' |"
        );
        println!(
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
        );
        for (size, label) in HOP_SIZES {
            let mut cells = Vec::new();
            for (style, linked) in [
                ("invoke-full", &hopper),
                ("invoke-head", &hopper),
                ("http", &hopper),
                ("typed-bytes", &typed_hopper),
                ("typed-record", &typed_hopper),
                ("typed-bytes", &typed_hopper_host),
                ("typed-record", &typed_hopper_host),
            ] {
                let path = format!("/hop/{style}/{size}/{}", args.iterations);
                // On the runtime's worker, as the gateway runs a request (not on this thread).
                let hopper = linked.clone();
                let (p50, p99) = tokio.block_on(async move {
                    tokio::spawn(async move { hop_in_guest(&hopper, &path).await }).await?
                })?;
                cells.push((p50, p99));
            }
            let baseline = tokio.block_on(hop_native(addr, size, args.iterations))?;
            let fmt = |(p50, p99): (f64, f64)| format!("{p50:.1} / {p99:.1}");
            let [a, b, c, e, f, e_host, f_host] = cells[..] else {
                anyhow::bail!("seven styles measured, {} cells", cells.len());
            };
            println!(
                "| {label} | {} | {} | {} | {} | {} | {} | {} | {} | {:.0}× | {:.0}× | {:.0}× | {:.0}× | {:.0}× | {:.0}× |",
                fmt(a),
                fmt(b),
                fmt(c),
                fmt(e),
                fmt(f),
                fmt(e_host),
                fmt(f_host),
                fmt(baseline),
                baseline.0 / a.0,
                baseline.0 / c.0,
                baseline.0 / e.0,
                baseline.0 / f.0,
                baseline.0 / e_host.0,
                baseline.0 / f_host.0,
            );
        }
        anyhow::Ok(())
    })();
    let _ = server.kill();
    let _ = server.wait();
    result
}

/// Runs the hopper's loop; returns its (p50, p99) in µs.
async fn hop_in_guest(hopper: &Function, path: &str) -> anyhow::Result<(f64, f64)> {
    let (status, body) = get(hopper, path, "hops").await?;
    guest_timings(status, &body).context("the hopper")
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
