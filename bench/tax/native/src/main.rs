//! Native deployments of the checkout application, and the tools to load and compare them.
//! See bench/tax/README.md.

mod deploy;
mod http;
mod load;
mod store;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use hyper::Uri;
use tax_logic::Service;

use crate::deploy::{Downstream, Role};
use crate::load::{LoadConfig, Mode};
use crate::store::Store;

#[derive(Parser)]
#[command(
    version,
    about = "The checkout application natively: a monolith or six services, and a load generator"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The whole checkout in one process: POST /checkout answers the receipt's HTML.
    Monolith(ServerArgs),
    /// One service per process: auth, cart, pricing, inventory, render (POST /, JSON in and
    /// out) or gateway (POST /checkout, calls the others over HTTP).
    Service {
        /// auth, cart, pricing, inventory, render or gateway.
        name: String,
        #[command(flatten)]
        server: ServerArgs,
        /// Where the gateway finds a service, e.g. `--next auth=http://127.0.0.1:9001/`; one for
        /// each service.
        #[arg(long = "next", value_name = "NAME=URL")]
        next: Vec<String>,
    },
    /// Loads the dataset into Redis.
    Preload {
        #[arg(long)]
        redis: String,
    },
    /// Sends checkouts at a fixed rate (open loop) or as fast as answered (--max), prints a
    /// JSON report on stdout; exits non-zero if any answer was not a 200.
    Load(LoadArgs),
    /// Prints the SHA-256 of the answers to the first COUNT sample requests.
    Verify {
        #[arg(long)]
        url: Uri,
        #[arg(long, default_value_t = 32)]
        count: u32,
    },
    /// Prints the dataset as `key=value` lines (values are one-line JSON, or hex with --hex),
    /// e.g. for `wasmtime serve -S keyvalue-in-memory-data=...` (which needs --hex: its option
    /// parser ends a value at a comma).
    Dataset {
        #[arg(long)]
        hex: bool,
    },
    /// Times the whole checkout in-process (in-memory store, no HTTP): the logic's own cost.
    LogicCost {
        #[arg(long, default_value_t = 5_000)]
        iterations: u32,
    },
}

#[derive(Args)]
struct ServerArgs {
    #[arg(long)]
    listen: SocketAddr,
    /// The store, e.g. redis://127.0.0.1:6379/.
    #[arg(long, conflicts_with = "memory_kv")]
    redis: Option<String>,
    /// An in-process store holding the dataset, instead of Redis.
    #[arg(long)]
    memory_kv: bool,
    /// Exits after this many seconds, so that a forgotten server stops by itself.
    #[arg(long, value_name = "SECONDS")]
    exit_after: Option<u64>,
}

impl ServerArgs {
    fn store(&self) -> anyhow::Result<Store> {
        match (&self.redis, self.memory_kv) {
            (Some(url), _) => Store::redis(url),
            (None, true) => Ok(Store::memory()),
            (None, false) => bail!("a store is needed: --redis URL or --memory-kv"),
        }
    }
}

#[derive(Args)]
struct LoadArgs {
    /// e.g. http://127.0.0.1:8080/checkout
    #[arg(long)]
    url: Uri,
    /// Requests per second, open loop.
    #[arg(long, required_unless_present = "max", conflicts_with = "max")]
    rate: Option<f64>,
    /// Closed loop, as fast as the server answers.
    #[arg(long)]
    max: bool,
    /// Seconds measured.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Connections of --max.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Seconds of unmeasured load first.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// How many different requests to cycle over.
    #[arg(long, default_value_t = 256)]
    distinct: u32,
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Monolith(server) => {
            let role = Role::Monolith(server.store()?);
            run_server(&server, role)
        }
        Command::Service { name, server, next } => {
            let role = if name == "gateway" {
                Role::Gateway(Downstream::new(&next)?)
            } else {
                let service = Service::from_name(&name).with_context(|| {
                    format!("no service {name}: auth, cart, pricing, inventory, render or gateway")
                })?;
                Role::Service(service, server.store()?)
            };
            run_server(&server, role)
        }
        Command::Preload { redis } => {
            let records = store::preload(&redis)?;
            eprintln!("preloaded {records} records");
            Ok(())
        }
        Command::Load(args) => {
            let config = LoadConfig {
                url: args.url,
                mode: match args.rate {
                    Some(rate) => Mode::Rate(rate),
                    None => Mode::Max {
                        concurrency: args.concurrency,
                    },
                },
                duration: Duration::try_from_secs_f64(args.duration).context("--duration")?,
                warmup: Duration::try_from_secs_f64(args.warmup).context("--warmup")?,
                distinct: args.distinct,
            };
            // One thread is plenty to drive these servers, and leaves them the other core.
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let report = runtime.block_on(load::run(config))?;
            eprintln!(
                "{} requests, {} errors, {:.0} req/s, p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
                report.requests,
                report.errors,
                report.throughput,
                report.p50_ms,
                report.p90_ms,
                report.p99_ms,
                report.max_ms
            );
            println!("{}", serde_json::to_string(&report)?);
            if let Some(e) = &report.first_error {
                bail!("{} requests failed, the first: {e}", report.errors);
            }
            Ok(())
        }
        Command::Verify { url, count } => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(load::verify(url, count))
        }
        Command::Dataset { hex } => {
            use std::io::Write;
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            for (key, value) in tax_logic::dataset() {
                anyhow::ensure!(
                    !key.contains('=') && !value.contains(&b'\n'),
                    "record {key} cannot be written as one key=value line"
                );
                out.write_all(key.as_bytes())?;
                out.write_all(b"=")?;
                if hex {
                    for byte in &value {
                        write!(out, "{byte:02x}")?;
                    }
                } else {
                    out.write_all(&value)?;
                }
                out.write_all(b"\n")?;
            }
            out.flush()?;
            Ok(())
        }
        Command::LogicCost { iterations } => {
            logic_cost(iterations);
            Ok(())
        }
    }
}

fn run_server(server: &ServerArgs, role: Role) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let serving = deploy::serve(server.listen, role);
        match server.exit_after {
            Some(seconds) => tokio::select! {
                result = serving => result,
                () = tokio::time::sleep(Duration::from_secs(seconds)) => {
                    eprintln!("exiting after {seconds} s (--exit-after)");
                    Ok(())
                }
            },
            None => serving.await,
        }
    })?;
    // Blocking threads may still hold a Redis round trip: do not wait for them.
    runtime.shutdown_background();
    Ok(())
}

fn logic_cost(iterations: u32) {
    let kv = tax_logic::MemoryKv::with_dataset();
    let bodies: Vec<Vec<u8>> = (0..256)
        .map(|i| serde_json::to_vec(&tax_logic::sample_request(i)).expect("requests serialize"))
        .collect();
    let mut html_bytes = 0;
    let mut run = |i: usize| match tax_logic::checkout_monolith_json(&bodies[i % bodies.len()], &kv)
    {
        Ok(html) => html_bytes += html.len(),
        Err(e) => panic!("sample request {i} failed: {e}"),
    };
    (0..bodies.len()).for_each(&mut run);
    let started = Instant::now();
    (0..iterations as usize).for_each(&mut run);
    let elapsed = started.elapsed();
    let request_bytes: usize = bodies.iter().map(Vec::len).sum::<usize>() / bodies.len();
    println!(
        "{:.1} µs per checkout in-process ({iterations} iterations; requests {request_bytes} B, receipts {} B on average)",
        elapsed.as_secs_f64() * 1e6 / f64::from(iterations.max(1)),
        html_bytes / (bodies.len() + iterations as usize)
    );
}
