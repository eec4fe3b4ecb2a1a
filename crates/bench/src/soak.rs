//! `meshwa-bench soak`: a long run of mixed traffic against a real `meshwa serve` child, looking
//! for leaks. The server serves the example apps given as manifests; the soak deploys two apps of
//! its own through the control plane (a `hello` function it redeploys every `--deploy-every`, and
//! the `faults` guest). It first measures the peak (the same mix in a closed loop, 32 connections,
//! 10 s), then sends the mix open-loop at `--load` of that peak for `--seconds`:
//!
//! - good requests, each with the status and a piece of the body it must answer: every example's
//!   README request (the five-function `initech` chain included), guestbook writes and reads (the
//!   guestbook is cleared at every sample, so reading it does not get heavier with time), the
//!   redeployed `hello`;
//! - one request in 50 a faulty one: a guest that traps, one that runs out of memory, a path no
//!   function serves; each must get its error status, and is not counted as failed.
//!
//! Every `--sample-every` it samples the server: resident memory and open descriptors (from
//! `/proc`; the part in the instance pool's slots apart), live instances
//! (`meshwa_live_instances` on `/metrics`) and the window's latency. The verdict compares the
//! median of the first third of the samples (after the first, a warm-up) with that of the last
//! third: resident memory outside the pool and descriptors may not grow by more than 5 %
//! (descriptors: and 2), p50 latency by more than half; every good request must succeed,
//! every deploy too, and once the traffic stops no instance may stay live. The exit status says
//! whether the verdict held.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use clap::Args;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;

use crate::common::{ServerChild, control_call, meshwa_binary, percentile_us};

#[derive(Args)]
pub struct SoakArgs {
    /// How long to send traffic at the soak's rate, in seconds (after the peak is measured).
    #[arg(long, default_value_t = 1800)]
    seconds: u64,
    /// Share of the measured peak to send.
    #[arg(long, default_value_t = 0.8)]
    load: f64,
    /// Seconds between samples.
    #[arg(long, default_value_t = 10)]
    sample_every: u64,
    /// Seconds between redeploys of the soak's own app.
    #[arg(long, default_value_t = 60)]
    deploy_every: u64,
    /// The example apps' manifests, served from the command line (`examples/*/meshwa.toml`).
    #[arg(long = "manifest", required = true)]
    manifests: Vec<PathBuf>,
    /// The examples' secrets file.
    #[arg(long)]
    secrets_file: PathBuf,
    /// The `hello` guest component, deployed and redeployed through the control plane.
    #[arg(long)]
    hello: PathBuf,
    /// The `faults` guest component, for the faulty requests.
    #[arg(long)]
    faults: PathBuf,
    /// A flag for `meshwa serve` (repeatable), e.g. `--server-flag=--memory-keep-resident=0`.
    #[arg(long = "server-flag", allow_hyphen_values = true)]
    server_flags: Vec<String>,
    /// The `meshwa` binary (default: the one next to this executable).
    #[arg(long, env = "MESHWA_BIN")]
    meshwa: Option<PathBuf>,
}

/// One request of the mix and what it must answer.
struct Probe {
    method: http::Method,
    path: &'static str,
    headers: &'static [(&'static str, &'static str)],
    body: &'static str,
    status: u16,
    /// A piece the answer's body must contain.
    contains: &'static str,
}

const fn probe(
    method: http::Method,
    path: &'static str,
    body: &'static str,
    status: u16,
    contains: &'static str,
) -> Probe {
    Probe {
        method,
        path,
        headers: &[],
        body,
        status,
        contains,
    }
}

/// The good requests, in the order they are sent (round robin).
fn good_mix() -> Vec<Probe> {
    use http::Method;
    vec![
        probe(Method::GET, "/acme/hello?name=Ada", "", 200, "Hello, Ada!"),
        probe(
            Method::POST,
            "/globex/stats",
            "one two\nthree\n",
            200,
            "\"words\":3",
        ),
        probe(Method::POST, "/globex/upper", "hello\n", 200, "HELLO"),
        probe(
            Method::POST,
            "/initech/orders",
            "sku,qty,unit_price_cents\nwidget-1,2,150\nbolt-9,10,25\nbad sku!,1,1\n",
            200,
            "5.95",
        ),
        Probe {
            headers: &[("content-type", "application/x-www-form-urlencoded")],
            ..probe(
                Method::POST,
                "/umbrella/guestbook",
                "name=Soak&message=still+here",
                201,
                "thank you",
            )
        },
        probe(Method::GET, "/umbrella/guestbook", "", 200, "guestbook"),
        probe(Method::GET, "/soak/churn", "", 200, "hello from meshwa"),
    ]
}

/// The faulty requests, one in [`FAULTY_EVERY`].
fn faulty_mix() -> Vec<Probe> {
    use http::Method;
    vec![
        probe(Method::GET, "/soak/faults/trap", "", 500, "trap"),
        probe(Method::GET, "/soak/faults/oom", "", 503, "out_of_memory"),
        probe(Method::GET, "/soak/nowhere", "", 404, "not_found"),
    ]
}

const FAULTY_EVERY: u64 = 50;

/// Requests in flight at most.
const MAX_IN_FLIGHT: usize = 128;

/// Connections of the closed loop that measures the peak.
const PEAK_CONNECTIONS: u64 = 32;

type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// Sends `probe`; whether it got what it must.
async fn send(client: &HttpClient, gateway: SocketAddr, probe: &Probe) -> Result<(), String> {
    let mut request = http::Request::builder()
        .method(probe.method.clone())
        .uri(format!("http://{gateway}{}", probe.path));
    for (name, value) in probe.headers {
        request = request.header(*name, *value);
    }
    let request = request
        .body(Full::new(Bytes::from_static(probe.body.as_bytes())))
        .map_err(|e| e.to_string())?;
    let response = client.request(request).await.map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    let body = String::from_utf8_lossy(&body);
    if status == probe.status && body.contains(probe.contains) {
        Ok(())
    } else {
        Err(format!(
            "{} {}: {status} {}",
            probe.method,
            probe.path,
            body.chars().take(200).collect::<String>()
        ))
    }
}

/// What the traffic counted since the last sample.
#[derive(Default)]
struct Window {
    latencies: Vec<Duration>,
    good_failed: u64,
    faulty: u64,
    faulty_wrong: u64,
    first_failure: Option<String>,
}

struct Sample {
    at: Duration,
    rss_kib: u64,
    /// Of it, in the instance pool's reservations (see [`pool_rss_kib`]).
    pool_kib: u64,
    fds: u64,
    live_instances: u64,
    requests: usize,
    p50_ms: f64,
    p99_ms: f64,
    good_failed: u64,
    faulty: u64,
}

fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS in /proc/PID/status")
}

/// Resident memory in the instance pool: the mappings of a gigabyte or more, which only the
/// pooling allocator's reservations are. The pool keeps the first `--memory-keep-resident` bytes
/// of every slot an instance used resident, so this part grows as traffic reaches more slots (new
/// functions, redeploys) up to slots × that size: warm slots, by design. What is left is where a
/// leak would show.
fn pool_rss_kib(pid: u32) -> anyhow::Result<u64> {
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps"))?;
    let mut in_pool = false;
    let mut total = 0;
    for line in smaps.lines() {
        let mut fields = line.split_whitespace();
        let first = fields.next().unwrap_or_default();
        if let Some((start, end)) = first.split_once('-')
            && let (Ok(start), Ok(end)) =
                (u64::from_str_radix(start, 16), u64::from_str_radix(end, 16))
        {
            in_pool = end - start >= 1 << 30;
        } else if first == "Rss:" && in_pool {
            total += fields
                .next()
                .and_then(|kib| kib.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    Ok(total)
}

fn open_fds(pid: u32) -> anyhow::Result<u64> {
    Ok(std::fs::read_dir(format!("/proc/{pid}/fd"))?.count() as u64)
}

async fn live_instances(
    client: &HttpClient,
    admin: SocketAddr,
    token: &str,
) -> anyhow::Result<u64> {
    let (status, body) = control_call(
        client,
        admin,
        http::Method::GET,
        "/metrics",
        token,
        Bytes::new(),
    )
    .await?;
    anyhow::ensure!(status == 200, "/metrics: {status}");
    let text = String::from_utf8_lossy(&body);
    text.lines()
        .find_map(|line| line.strip_prefix("meshwa_live_instances "))
        .and_then(|value| value.trim().parse::<f64>().ok())
        .map(|value| value as u64)
        .context("no meshwa_live_instances on /metrics")
}

/// The upload of app `soak/{app}` with one function `{function}` from `component` (at most
/// 16 MiB of memory and 2 s: the faulty requests stay cheap), tagged so that each version differs.
fn upload(app: &str, function: &str, component: &[u8], tag: u64) -> anyhow::Result<Bytes> {
    let manifest = format!(
        "tenant = \"soak\"\napp = \"{app}\"\n[[functions]]\nname = \"{function}\"\ncomponent = \"f.wasm\"\nroute = \"/soak/{app}\"\nlimits = {{ max-memory = \"16MiB\", timeout = \"2s\" }}\n[config]\nversion = \"{tag}\"\n"
    );
    let files = std::collections::BTreeMap::from([
        ("meshwa.toml".to_owned(), manifest.into_bytes()),
        ("f.wasm".to_owned(), component.to_vec()),
    ]);
    Ok(Bytes::from(meshwa_control::archive::pack(&files)?))
}

/// The `n`th request of the mix: a faulty one every [`FAULTY_EVERY`], else the next good one.
fn nth<'m>(good: &'m [Probe], faulty: &'m [Probe], n: u64) -> (&'m Probe, bool) {
    if n % FAULTY_EVERY == FAULTY_EVERY - 1 {
        (&faulty[(n / FAULTY_EVERY) as usize % faulty.len()], true)
    } else {
        (&good[n as usize % good.len()], false)
    }
}

/// Sends the mix (faulty requests included) from [`PEAK_CONNECTIONS`] connections in a closed
/// loop for 10 s: requests per second.
async fn peak(client: &HttpClient, gateway: SocketAddr) -> anyhow::Result<f64> {
    let (good, faulty) = (Arc::new(good_mix()), Arc::new(faulty_mix()));
    let done = Arc::new(AtomicU64::new(0));
    let until = Instant::now() + Duration::from_secs(10);
    let mut tasks = Vec::new();
    for lane in 0..PEAK_CONNECTIONS {
        let (client, good, faulty, done) =
            (client.clone(), good.clone(), faulty.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = lane;
            while Instant::now() < until {
                send(&client, gateway, nth(&good, &faulty, n).0).await?;
                done.fetch_add(1, Relaxed);
                n += PEAK_CONNECTIONS;
            }
            Ok::<_, String>(())
        }));
    }
    for task in tasks {
        task.await?
            .map_err(|e| anyhow::anyhow!("a request failed at peak: {e}"))?;
    }
    Ok(done.load(Relaxed) as f64 / 10.0)
}

pub fn run(args: SoakArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.load > 0.0 && args.load <= 1.0,
        "--load must be in (0, 1]"
    );
    anyhow::ensure!(
        args.sample_every > 0 && args.deploy_every > 0,
        "intervals must be positive"
    );
    let meshwa = meshwa_binary(args.meshwa.clone())?;
    let operator = "soak-operator-token";
    let mut extra: Vec<std::ffi::OsString> = args.manifests.iter().map(Into::into).collect();
    extra.push("--secrets-file".into());
    extra.push(args.secrets_file.clone().into());
    extra.extend(args.server_flags.iter().map(Into::into));
    let server = ServerChild::start(&meshwa, operator, "soak", &extra)?;
    let pid = server.child.id();
    let hello = std::fs::read(&args.hello)
        .with_context(|| format!("cannot read {}", args.hello.display()))?;
    let faults = std::fs::read(&args.faults)
        .with_context(|| format!("cannot read {}", args.faults.display()))?;
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    tokio.block_on(async {
        // The server closes a keep-alive connection idle for its header timeout (10 s). A client
        // that reuses one at that moment sees "connection closed before message completed"; as
        // any well-behaved client, this one retires idle connections before the server does.
        let client: HttpClient = Client::builder(hyper_util::rt::TokioExecutor::new())
            .pool_timer(hyper_util::rt::TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(4))
            .build_http();
        let (gateway, admin) = (server.gateway, server.admin);
        let call = |method: http::Method, path: String, body: Bytes| {
            let client = client.clone();
            async move { control_call(&client, admin, method, &path, operator, body).await }
        };
        let (status, body) = call(http::Method::POST, "/v1/tenants".into(), Bytes::from_static(br#"{"name":"soak"}"#)).await?;
        anyhow::ensure!(status == 201, "creating the tenant: {status} {}", String::from_utf8_lossy(&body));
        for (app, function, component) in [("churn", "hello", &hello), ("faults", "faults", &faults)] {
            let (status, body) = call(http::Method::PUT, format!("/v1/tenants/soak/apps/{app}"), upload(app, function, component, 0)?).await?;
            anyhow::ensure!(status == 200, "deploying soak/{app}: {status} {}", String::from_utf8_lossy(&body));
        }

        let peak = peak(&client, gateway).await?;
        let rate = (peak * args.load).max(1.0);
        println!("peak {peak:.0} req/s (closed loop, {PEAK_CONNECTIONS} connections, 10 s); soaking at {rate:.0} req/s ({:.0} %) for {} s\n", args.load * 100.0, args.seconds);
        println!("| t (s) | RSS (MiB) | of it pool slots | fds | live instances | requests | p50 ms | p99 ms | good failed | faulty |");
        println!("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");

        let window = Arc::new(Mutex::new(Window::default()));
        let good = Arc::new(good_mix());
        let faulty = Arc::new(faulty_mix());
        let started = Instant::now();
        let until = started + Duration::from_secs(args.seconds);
        let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut samples_at = tokio::time::interval_at(
            tokio::time::Instant::now() + Duration::from_secs(args.sample_every),
            Duration::from_secs(args.sample_every),
        );
        let mut deploys_at = tokio::time::interval_at(
            tokio::time::Instant::now() + Duration::from_secs(args.deploy_every),
            Duration::from_secs(args.deploy_every),
        );
        // At most this many requests in flight, each on a connection of its own (HTTP/1.1): past
        // it the sender waits (and sends less). Below the server's 256 connections per client,
        // beyond which it closes new ones at once.
        let in_flight = Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT));
        let mut samples: Vec<Sample> = Vec::new();
        let mut sent = 0u64;
        let mut deploys = 0u64;
        while Instant::now() < until {
            tokio::select! {
                _ = ticks.tick() => {
                    let permit = in_flight.clone().acquire_owned().await?;
                    let (client, window, good, faulty) = (client.clone(), window.clone(), good.clone(), faulty.clone());
                    let n = sent;
                    sent += 1;
                    tokio::spawn(async move {
                        let _permit = permit;
                        let (probe, is_faulty) = nth(&good, &faulty, n);
                        let begun = Instant::now();
                        let outcome = send(&client, gateway, probe).await;
                        let elapsed = begun.elapsed();
                        let mut window = window.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                        match (is_faulty, outcome) {
                            (false, Ok(())) => window.latencies.push(elapsed),
                            (false, Err(e)) => {
                                window.good_failed += 1;
                                window.first_failure.get_or_insert(e);
                            }
                            (true, Ok(())) => window.faulty += 1,
                            (true, Err(e)) => {
                                window.faulty += 1;
                                window.faulty_wrong += 1;
                                window.first_failure.get_or_insert(e);
                            }
                        }
                    });
                }
                _ = deploys_at.tick() => {
                    deploys += 1;
                    let (status, body) = call(http::Method::PUT, "/v1/tenants/soak/apps/churn".into(), upload("churn", "hello", &hello, deploys)?).await?;
                    anyhow::ensure!(status == 200, "redeploy {deploys}: {status} {}", String::from_utf8_lossy(&body));
                }
                _ = samples_at.tick() => {
                    // Keep the guestbook from growing without end: reading it lists every entry,
                    // so a growing book would make the load itself heavier with time.
                    let request = http::Request::delete(format!("http://{gateway}/umbrella/guestbook"))
                        .header("authorization", "Bearer change-me")
                        .body(Full::new(Bytes::new()))?;
                    let response = client.request(request).await?;
                    anyhow::ensure!(response.status() == 200, "clearing the guestbook: {}", response.status());
                    response.into_body().collect().await?;
                    let mut taken = std::mem::take(&mut *window.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
                    taken.latencies.sort_unstable();
                    if let Some(failure) = &taken.first_failure {
                        eprintln!("soak: a request did not get its answer: {failure}");
                    }
                    let sample = Sample {
                        at: started.elapsed(),
                        rss_kib: rss_kib(pid)?,
                        pool_kib: pool_rss_kib(pid)?,
                        fds: open_fds(pid)?,
                        live_instances: live_instances(&client, admin, operator).await?,
                        requests: taken.latencies.len(),
                        p50_ms: percentile_us(&taken.latencies, 0.5) / 1000.0,
                        p99_ms: percentile_us(&taken.latencies, 0.99) / 1000.0,
                        good_failed: taken.good_failed,
                        faulty: taken.faulty,
                    };
                    anyhow::ensure!(taken.faulty_wrong == 0, "a faulty request got the wrong answer: {:?}", taken.first_failure);
                    println!(
                        "| {:.0} | {:.1} | {:.1} | {} | {} | {} | {:.2} | {:.2} | {} | {} |",
                        sample.at.as_secs_f64(), sample.rss_kib as f64 / 1024.0,
                        sample.pool_kib as f64 / 1024.0, sample.fds,
                        sample.live_instances, sample.requests, sample.p50_ms, sample.p99_ms,
                        sample.good_failed, sample.faulty
                    );
                    samples.push(sample);
                }
            }
        }
        // Traffic stops: every request finishes, then no instance may stay live.
        let _all = in_flight.acquire_many(MAX_IN_FLIGHT as u32).await?;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let idle_instances = live_instances(&client, admin, operator).await?;
        let last_failed = window.lock().unwrap_or_else(std::sync::PoisonError::into_inner).good_failed;
        verdict(&samples, idle_instances, last_failed, sent, deploys)
    })
}

/// The median of `values`.
fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

fn verdict(
    samples: &[Sample],
    idle_instances: u64,
    unsampled_failed: u64,
    sent: u64,
    deploys: u64,
) -> anyhow::Result<()> {
    anyhow::ensure!(
        samples.len() >= 4,
        "too few samples ({}) for a verdict: soak longer",
        samples.len()
    );
    // The first sample is the warm-up; then thirds.
    let body = &samples[1..];
    let third = (body.len() / 3).max(1);
    let (first, last) = (&body[..third], &body[body.len() - third..]);
    let of = |part: &[Sample], field: fn(&Sample) -> f64| median(part.iter().map(field).collect());
    let failed: u64 = samples.iter().map(|s| s.good_failed).sum::<u64>() + unsampled_failed;
    let outside = |s: &Sample| s.rss_kib.saturating_sub(s.pool_kib) as f64 / 1024.0;
    let rss = (of(first, outside), of(last, outside));
    let pool = (
        of(first, |s| s.pool_kib as f64) / 1024.0,
        of(last, |s| s.pool_kib as f64) / 1024.0,
    );
    let fds = (of(first, |s| s.fds as f64), of(last, |s| s.fds as f64));
    let p50 = (of(first, |s| s.p50_ms), of(last, |s| s.p50_ms));
    let checks = [
        ("RSS outside the pool (MiB)", rss, rss.1 <= rss.0 * 1.05),
        ("open descriptors", fds, fds.1 <= fds.0 * 1.05 + 2.0),
        ("p50 latency (ms)", p50, p50.1 <= p50.0 * 1.5),
    ];
    println!(
        "\n{sent} requests sent, {deploys} redeploys; medians of the first and last third of the samples:\n"
    );
    println!("| measure | first third | last third | change | verdict |");
    println!("| --- | ---: | ---: | ---: | --- |");
    for (name, (a, b), held) in checks {
        let change = if a > 0.0 { (b / a - 1.0) * 100.0 } else { 0.0 };
        println!(
            "| {name} | {a:.2} | {b:.2} | {change:+.1} % | {} |",
            if held { "flat" } else { "DRIFTS UP" }
        );
    }
    let pool_change = if pool.0 > 0.0 {
        (pool.1 / pool.0 - 1.0) * 100.0
    } else {
        0.0
    };
    println!(
        "| RSS in pool slots (MiB) | {:.2} | {:.2} | {pool_change:+.1} % | warm slots, bounded (not judged) |",
        pool.0, pool.1
    );
    println!(
        "| good requests failed | | {failed} | | {} |",
        if failed == 0 { "none" } else { "FAILED" }
    );
    println!(
        "| live instances after the traffic | | {idle_instances} | | {} |",
        if idle_instances == 0 {
            "none"
        } else {
            "LEAKED"
        }
    );
    let drifted: Vec<&str> = checks
        .iter()
        .filter(|(_, _, held)| !held)
        .map(|(name, _, _)| *name)
        .collect();
    anyhow::ensure!(drifted.is_empty(), "drifted upward: {}", drifted.join(", "));
    anyhow::ensure!(failed == 0, "{failed} good requests failed");
    anyhow::ensure!(
        idle_instances == 0,
        "{idle_instances} instances still live after the traffic"
    );
    Ok(())
}
