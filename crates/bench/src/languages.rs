//! `meshwa-bench languages`: the cost of legacy code and heavy runtimes. A C kernel (SHA-256)
//! natively as a process against the same source as a meshwa CGI function (the digests must
//! match); fresh-instance latency of the Python and JavaScript hello functions against the Rust
//! one.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use clap::Args;
use meshwa_runtime::{EngineSettings, Runtime};

use crate::common::{get, load, load_kind, percentile_us};

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
    /// Runs of the kernel per side (the median counts; at least 1).
    #[arg(long, default_value_t = 7, value_parser = clap::value_parser!(u32).range(1..))]
    runs: u32,
    /// Requests measured per hello function.
    #[arg(long, default_value_t = 300)]
    iterations: u32,
}

pub fn run(args: LanguagesArgs) -> anyhow::Result<()> {
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
    // In ms; the middle sample (the upper one of an even count).
    let median = |v: &[Duration]| percentile_us(v, 0.5) / 1000.0;
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
            percentile_us(times, 0.0) / 1000.0,
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
