//! `meshwa-bench fresh-instance`: the per-request cost of the runtime itself (admission, new
//! store, instantiate from the pre-instantiated component, call `wasi:http/incoming-handler`,
//! read the response, drop), with no HTTP or sockets in the way, under several allocator
//! settings.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use meshwa_runtime::{
    AllocatorChoice, EngineSettings, Function, MpkChoice, PagemapScanChoice, Runtime, mpk_available,
};

use crate::common::{get, load, percentile_us};

#[derive(Args)]
pub struct FreshInstanceArgs {
    /// The component to instantiate (a wasi:http/proxy component; the `hello` guest by default
    /// in bench scripts).
    #[arg(long)]
    component: PathBuf,
    /// Invocations measured per setting and thread count (after a warm-up of a tenth as many).
    #[arg(long, default_value_t = 20_000)]
    iterations: u32,
    /// Threads for the parallel run (at least 1).
    #[arg(long, default_value_t = 2, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    threads: usize,
    /// Only the settings whose name contains this text (e.g. `on-demand`, `1 MiB`).
    #[arg(long)]
    only: Option<String>,
}

/// One engine configuration to measure.
struct Setting {
    name: &'static str,
    allocator: AllocatorChoice,
    keep_resident: usize,
    pagemap_scan: PagemapScanChoice,
    /// Off in every row but the one that measures it, so that rows compare alike on machines
    /// with and without `pku`.
    mpk: MpkChoice,
}

const SETTINGS: &[Setting] = &[
    Setting {
        name: "on-demand",
        allocator: AllocatorChoice::OnDemand,
        keep_resident: 0,
        pagemap_scan: PagemapScanChoice::Disable,
        mpk: MpkChoice::Disable,
    },
    Setting {
        name: "pooling, keep-resident 0",
        allocator: AllocatorChoice::Pooling,
        keep_resident: 0,
        pagemap_scan: PagemapScanChoice::Disable,
        mpk: MpkChoice::Disable,
    },
    Setting {
        name: "pooling, keep-resident 1 MiB",
        allocator: AllocatorChoice::Pooling,
        keep_resident: 1 << 20,
        pagemap_scan: PagemapScanChoice::Disable,
        mpk: MpkChoice::Disable,
    },
    Setting {
        name: "pooling, keep-resident 4 MiB",
        allocator: AllocatorChoice::Pooling,
        keep_resident: 4 << 20,
        pagemap_scan: PagemapScanChoice::Disable,
        mpk: MpkChoice::Disable,
    },
    Setting {
        name: "pooling, keep-resident 1 MiB, pagemap-scan (default)",
        allocator: AllocatorChoice::Pooling,
        keep_resident: 1 << 20,
        pagemap_scan: PagemapScanChoice::Enable,
        mpk: MpkChoice::Disable,
    },
    Setting {
        name: "pooling, keep-resident 16 MiB, pagemap-scan",
        allocator: AllocatorChoice::Pooling,
        keep_resident: 16 << 20,
        pagemap_scan: PagemapScanChoice::Enable,
        mpk: MpkChoice::Disable,
    },
    // The pool striped over protection keys, for density (docs/benchmarks.md, "Density"): what
    // `--mpk enable` gives, and `--mpk auto` where the pool does not fit without it.
    Setting {
        name: "pooling, keep-resident 1 MiB, pagemap-scan, MPK",
        allocator: AllocatorChoice::Pooling,
        keep_resident: 1 << 20,
        pagemap_scan: PagemapScanChoice::Enable,
        mpk: MpkChoice::Enable,
    },
];

pub fn run(args: FreshInstanceArgs) -> anyhow::Result<()> {
    let data = std::env::temp_dir().join(format!("meshwa-bench-{}", std::process::id()));
    let result = run_in(&args, &data);
    let _ = std::fs::remove_dir_all(&data);
    result
}

fn run_in(args: &FreshInstanceArgs, data: &std::path::Path) -> anyhow::Result<()> {
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
        if setting.mpk == MpkChoice::Enable && !mpk_available() {
            println!(
                "| {} | - | not measured: no `pku` here | | | | |",
                setting.name
            );
            continue;
        }
        let settings = EngineSettings {
            allocator: setting.allocator,
            memory_keep_resident: setting.keep_resident,
            pagemap_scan: setting.pagemap_scan,
            mpk: setting.mpk,
            max_instances: 1000,
            ..EngineSettings::default()
        };
        let runtime = Runtime::new(settings, data)?;
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
    Ok(())
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

async fn invoke(function: &Function) -> anyhow::Result<()> {
    let (status, _) = get(function, "/bench", "bench").await?;
    anyhow::ensure!(status == 200, "status {status}");
    Ok(())
}
