//! The load generator, and the check that deployments answer the same bytes.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::CONTENT_TYPE;
use hyper::{Request, StatusCode, Uri};
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::task::JoinSet;

use crate::http::{self, HttpClient};

/// A request that has not answered by then counts as an error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

pub enum Mode {
    /// Open loop: requests start on a fixed schedule whatever the answers do, and latency runs
    /// from the scheduled start, so a stalled server is not hidden (no coordinated omission).
    Rate(f64),
    /// Closed loop: this many connections, each sending its next request on the last answer.
    Max { concurrency: usize },
}

pub struct LoadConfig {
    pub url: Uri,
    pub mode: Mode,
    pub duration: Duration,
    pub warmup: Duration,
    /// How many different requests to cycle over.
    pub distinct: u32,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub mode: &'static str,
    pub requests: usize,
    pub errors: usize,
    pub seconds: f64,
    pub throughput: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// The first error, to say what went wrong.
    pub first_error: Option<String>,
}

/// Results of finished requests.
#[derive(Default)]
struct Samples {
    latencies_us: Vec<u64>,
    errors: usize,
    first_error: Option<String>,
}

impl Samples {
    fn record(&mut self, outcome: Result<(), String>, latency: Duration) {
        match outcome {
            Ok(()) => self.latencies_us.push(latency.as_micros() as u64),
            Err(e) => {
                self.errors += 1;
                self.first_error.get_or_insert(e);
            }
        }
    }

    fn merge(&mut self, other: Samples) {
        self.latencies_us.extend(other.latencies_us);
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }

    fn report(mut self, mode: &'static str, elapsed: Duration) -> Report {
        self.latencies_us.sort_unstable();
        let percentile = |q: f64| -> f64 {
            let n = self.latencies_us.len();
            if n == 0 {
                return 0.0;
            }
            let rank = ((q * n as f64).ceil() as usize).clamp(1, n);
            self.latencies_us[rank - 1] as f64 / 1000.0
        };
        let seconds = elapsed.as_secs_f64();
        Report {
            mode,
            requests: self.latencies_us.len() + self.errors,
            errors: self.errors,
            seconds,
            throughput: self.latencies_us.len() as f64 / seconds,
            p50_ms: percentile(0.50),
            p90_ms: percentile(0.90),
            p99_ms: percentile(0.99),
            max_ms: percentile(1.0),
            first_error: self.first_error,
        }
    }
}

/// What every request body is: `sample_request(i)` for `i` in `0..distinct`.
fn bodies(distinct: u32) -> Arc<Vec<Bytes>> {
    let bodies = (0..distinct.max(1))
        .map(|i| {
            Bytes::from(
                serde_json::to_vec(&tax_logic::sample_request(i)).expect("requests serialize"),
            )
        })
        .collect();
    Arc::new(bodies)
}

/// POSTs `body` and reads the whole answer, which must be a 200.
async fn post(client: &HttpClient, url: &Uri, body: Bytes) -> Result<Bytes, String> {
    let request = Request::post(url.clone())
        .header(CONTENT_TYPE, "application/json")
        .body(Full::new(body))
        .map_err(|e| e.to_string())?;
    let exchange = async {
        let response = client
            .request(request)
            .await
            .map_err(|e| format!("request: {e}"))?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("response: {e}"))?
            .to_bytes();
        if status != StatusCode::OK {
            return Err(format!(
                "status {status}: {}",
                String::from_utf8_lossy(&body[..body.len().min(300)])
            ));
        }
        Ok(body)
    };
    tokio::time::timeout(REQUEST_TIMEOUT, exchange)
        .await
        .map_err(|_| "timed out".to_string())?
}

pub async fn run(config: LoadConfig) -> anyhow::Result<Report> {
    let client = http::client();
    let bodies = bodies(config.distinct);
    let url = Arc::new(config.url);

    // Opens the connections and warms the servers' caches; not measured.
    if !config.warmup.is_zero() {
        let concurrency = match config.mode {
            Mode::Max { concurrency } => concurrency,
            Mode::Rate(_) => 4,
        };
        let warmup = closed_loop(&client, &url, &bodies, concurrency, config.warmup).await;
        if let Some(e) = warmup.first_error {
            bail!("warm-up failed: {e}");
        }
    }

    let started = Instant::now();
    let (mode, samples) = match config.mode {
        Mode::Rate(rate) => (
            "rate",
            open_loop(&client, &url, &bodies, rate, config.duration).await?,
        ),
        Mode::Max { concurrency } => (
            "max",
            closed_loop(&client, &url, &bodies, concurrency, config.duration).await,
        ),
    };
    Ok(samples.report(mode, started.elapsed()))
}

async fn closed_loop(
    client: &HttpClient,
    url: &Arc<Uri>,
    bodies: &Arc<Vec<Bytes>>,
    concurrency: usize,
    duration: Duration,
) -> Samples {
    let deadline = Instant::now() + duration;
    let next = Arc::new(AtomicU32::new(0));
    let mut workers = JoinSet::new();
    for _ in 0..concurrency.max(1) {
        let (client, url, bodies, next) = (
            client.clone(),
            Arc::clone(url),
            Arc::clone(bodies),
            Arc::clone(&next),
        );
        workers.spawn(async move {
            let mut samples = Samples::default();
            while Instant::now() < deadline {
                let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                let started = Instant::now();
                let outcome = post(&client, &url, bodies[i % bodies.len()].clone())
                    .await
                    .map(drop);
                samples.record(outcome, started.elapsed());
            }
            samples
        });
    }
    let mut samples = Samples::default();
    while let Some(worker) = workers.join_next().await {
        match worker {
            Ok(worker) => samples.merge(worker),
            Err(e) => samples.record(Err(format!("worker: {e}")), Duration::ZERO),
        }
    }
    samples
}

async fn open_loop(
    client: &HttpClient,
    url: &Arc<Uri>,
    bodies: &Arc<Vec<Bytes>>,
    rate: f64,
    duration: Duration,
) -> anyhow::Result<Samples> {
    if !(rate > 0.0 && rate.is_finite()) {
        bail!("the rate must be positive");
    }
    let total = (rate * duration.as_secs_f64()).round() as u64;
    let interval = Duration::from_secs_f64(1.0 / rate);

    // The schedule is kept by a thread of its own: tokio's timers tick by the millisecond,
    // a thread's sleep is precise to tens of microseconds.
    let (schedule, mut due) = tokio::sync::mpsc::unbounded_channel::<(usize, Instant)>();
    let ticker = std::thread::Builder::new()
        .name("schedule".into())
        .spawn(move || {
            let start = Instant::now() + Duration::from_millis(5);
            for i in 0..total {
                let at = start + interval.mul_f64(i as f64);
                if let Some(wait) = at.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
                if schedule.send((i as usize, at)).is_err() {
                    break;
                }
            }
        })?;

    let mut in_flight = JoinSet::new();
    let mut samples = Samples::default();
    while let Some((i, scheduled)) = due.recv().await {
        let (client, url, body) = (
            client.clone(),
            Arc::clone(url),
            bodies[i % bodies.len()].clone(),
        );
        in_flight.spawn(async move {
            let outcome = post(&client, &url, body).await.map(drop);
            (outcome, scheduled.elapsed())
        });
        while let Some(done) = in_flight.try_join_next() {
            record(&mut samples, done);
        }
    }
    while let Some(done) = in_flight.join_next().await {
        record(&mut samples, done);
    }
    ticker
        .join()
        .map_err(|_| anyhow::anyhow!("the schedule thread panicked"))?;
    Ok(samples)
}

fn record(
    samples: &mut Samples,
    done: Result<(Result<(), String>, Duration), tokio::task::JoinError>,
) {
    match done {
        Ok((outcome, latency)) => samples.record(outcome, latency),
        Err(e) => samples.record(Err(format!("request task: {e}")), Duration::ZERO),
    }
}

/// Prints `I SHA256` of the answers to `sample_request(I)`, for `I` in `0..count`, one at a
/// time; fails on any answer but a 200.
pub async fn verify(url: Uri, count: u32) -> anyhow::Result<()> {
    let client = http::client();
    for i in 0..count {
        let body = Bytes::from(serde_json::to_vec(&tax_logic::sample_request(i))?);
        let answer = post(&client, &url, body)
            .await
            .map_err(anyhow::Error::msg)
            .with_context(|| format!("request {i}"))?;
        println!("{i} {:x}", Sha256::digest(&answer));
    }
    Ok(())
}
