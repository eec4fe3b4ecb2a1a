//! `meshwa-bench languages`: the cost of legacy code and heavy runtimes. A C kernel (SHA-256)
//! natively as a process against the same source as a meshwa CGI function (the digests must
//! match); fresh-instance latency of the Python and JavaScript hello functions against the Rust
//! one, then where each one's time goes (the `--explain` account, page faults and CPU per
//! request) beside what its component asks of instantiation (`layout`), and what one live
//! instance of each costs in memory (`live`).

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
    /// The Rust function that answers its head, then echoes the request body (`guests/echo`):
    /// the Rust side of the memory per live instance (Python and JavaScript hello echo a POST).
    #[arg(long)]
    rust_echo: PathBuf,
    /// Instances of each language held live at once for the memory per live instance.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    live: u32,
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
    /// The pool's `--memory-keep-resident` in bytes (the server's default when not given).
    #[arg(long)]
    keep_resident: Option<usize>,
    /// Name the guests' functions for `perf` (/tmp/perf-PID.map), to profile this run.
    #[arg(long)]
    perf_map: bool,
}

pub fn run(args: LanguagesArgs) -> anyhow::Result<()> {
    // A fresh compile cache: the load column shows the compile time of each component.
    let data = std::env::temp_dir().join(format!("meshwa-bench-languages-{}", std::process::id()));
    let result = languages_in(&args, &data);
    let _ = std::fs::remove_dir_all(&data);
    result
}

fn settings(args: &LanguagesArgs, explain: bool) -> EngineSettings {
    let defaults = EngineSettings::default();
    EngineSettings {
        max_instances: 64,
        memory_keep_resident: args.keep_resident.unwrap_or(defaults.memory_keep_resident),
        explain,
        perf_map: args.perf_map,
        ..defaults
    }
}

fn languages_in(args: &LanguagesArgs, data: &Path) -> anyhow::Result<()> {
    let runtime = Runtime::new(settings(args, false), data)?;
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
    let hellos = [
        ("Rust (guests/hello)", &args.rust),
        ("Python (componentize-py)", &args.python),
        ("JavaScript (componentize-js)", &args.js),
    ];
    for (name, path) in hellos {
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
    drop(runtime);
    // The compile cache is warm now: the second runtime loads from it.
    breakdown(args, &hellos, data, &tokio)?;
    memory_per_live_instance(args, data)
}

/// What one live instance of each language costs the process in memory: `--live` requests held
/// at once, each waiting for a body that never comes (see `live`). Each language gets a runtime
/// of its own, with a pool of exactly that many slots and 64 MiB per instance.
fn memory_per_live_instance(args: &LanguagesArgs, data: &Path) -> anyhow::Result<()> {
    println!(
        "\nmemory per live instance: {} instances of each held at once (requests whose body never comes)",
        args.live
    );
    println!(
        "| function | held live | RSS KiB per instance | PSS KiB per instance | \
         mappings per instance | µs per instance made |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: |");
    for (name, path) in [
        ("Rust (guests/echo)", &args.rust_echo),
        ("Python (componentize-py)", &args.python),
        ("JavaScript (componentize-js)", &args.js),
    ] {
        let held = crate::live::hold(
            &settings(args, false),
            args.live,
            path,
            "64MiB",
            data,
            &data.join("cache"),
        )
        .with_context(|| format!("holding {name} instances"))?;
        println!(
            "| {name} | {} | {:.0} | {:.0} | {:.1} | {:.0} |",
            held.live,
            held.per_instance(held.rss_bytes) / 1024.0,
            held.per_instance(held.pss_bytes) / 1024.0,
            held.per_instance(held.mappings),
            held.make_micros
        );
    }
    Ok(())
}

/// Where a fresh instance's time goes, per hello function: the runtime's `--explain` account
/// (a runtime of its own, since the accounting itself costs a little), the process's page faults
/// and CPU over the same requests, and what the component's layout asks of instantiation.
fn breakdown(
    args: &LanguagesArgs,
    hellos: &[(&str, &PathBuf)],
    data: &Path,
    tokio: &tokio::runtime::Runtime,
) -> anyhow::Result<()> {
    let runtime = Runtime::new(settings(args, true), data)?;
    println!(
        "\nwhere a fresh instance's time goes (--explain on), per request, mean of {} requests after the first",
        args.iterations
    );
    println!(
        "| function | instantiate µs | guest µs | host µs (calls) | teardown µs | \
         faults instantiate | faults teardown | faults per request (process) | CPU µs per request |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    let mut layouts = Vec::new();
    for &(name, path) in hellos {
        let function = load(&runtime, path)?;
        let (status, _) = tokio.block_on(get(&function, "/hello", "bench"))?;
        anyhow::ensure!(status == 200, "{name}: status {status}");
        let before = function.phases().context("explain is on")?;
        let process_before = ProcessCounters::read()?;
        for _ in 0..args.iterations {
            let (status, _) = tokio.block_on(get(&function, "/hello", "bench"))?;
            anyhow::ensure!(status == 200, "{name}: status {status}");
        }
        let process = ProcessCounters::read()?.since(process_before);
        let after = function.phases().context("explain is on")?;
        let n = after.invocations.saturating_sub(before.invocations).max(1);
        let per = |a: Duration, b: Duration| a.saturating_sub(b).as_secs_f64() * 1e6 / n as f64;
        let count = |a: u64, b: u64| a.saturating_sub(b) as f64 / n as f64;
        println!(
            "| {name} | {:.1} | {:.1} | {:.1} ({:.0}) | {:.1} | {:.1} | {:.1} | {:.1} | {:.0} |",
            per(after.instantiate, before.instantiate),
            per(after.guest, before.guest),
            per(
                after.other_host + after.key_value + after.calls,
                before.other_host + before.key_value + before.calls
            ),
            count(after.host_calls, before.host_calls),
            per(after.teardown, before.teardown),
            count(after.instantiate_faults, before.instantiate_faults),
            count(after.teardown_faults, before.teardown_faults),
            process.minor_faults as f64 / n as f64,
            process.cpu.as_secs_f64() * 1e6 / n as f64,
        );
        let bytes = std::fs::read(path).with_context(|| format!("{}", path.display()))?;
        layouts.push((name, crate::layout::read(&bytes)?));
    }
    let mib = |bytes: u64| bytes as f64 / (1024.0 * 1024.0);
    println!("\nwhat instantiating each component has to do (read from its binary)");
    println!(
        "| function | core modules | core instances | memory image data MiB (segments) | \
         image extent MiB | copy-on-write image | table entries written per instance |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | --- | ---: |");
    for (name, layout) in layouts {
        println!(
            "| {name} | {} | {} | {:.1} ({}) | {:.1} | {} | {} |",
            layout.core_modules,
            layout.core_instances,
            mib(layout.image_data_bytes),
            layout.image_segments,
            mib(layout.image_extent_bytes),
            if layout.copy_on_write {
                "yes"
            } else {
                "no: copied in"
            },
            layout.table_entries_per_instance
        );
    }
    Ok(())
}

/// The whole process's minor page faults (`/proc/self/stat` field 10) and the CPU time of its
/// threads (`/proc/self/task/*/schedstat`, in nanoseconds: `stat`'s 10 ms ticks are too coarse
/// for a few hundred requests of a small function).
#[derive(Clone, Copy)]
struct ProcessCounters {
    minor_faults: u64,
    cpu: Duration,
}

impl ProcessCounters {
    fn read() -> anyhow::Result<ProcessCounters> {
        let stat = std::fs::read_to_string("/proc/self/stat").context("/proc/self/stat")?;
        let minor_faults =
            crate::common::minor_faults_in(&stat).context("no minor faults in /proc/self/stat")?;
        Ok(ProcessCounters {
            minor_faults,
            cpu: crate::common::threads_cpu(None),
        })
    }

    fn since(self, earlier: ProcessCounters) -> ProcessCounters {
        ProcessCounters {
            minor_faults: self.minor_faults.saturating_sub(earlier.minor_faults),
            cpu: self.cpu.saturating_sub(earlier.cpu),
        }
    }
}
