//! `meshwa-bench hardware`: what memory safety costs in software on this machine, and what
//! hardware would buy back (issue 21). It measures, in one bounded run, and writes a report
//! (`docs/hardware.md` by default) with an SVG chart beside it:
//!
//! 1. **Bounds checks against guard regions**: the same guests under wasmtime's default (a 4 GiB
//!    reservation and a 32 MiB guard per memory: compiled code checks nothing, the MMU does), with
//!    the reservation cut to the memory's size and no guard (every access checked in code), and
//!    with signal-based traps off as well, and with guard regions but without the epoch checks
//!    that let a deadline stop a guest (what preemption costs): a C SHA-256 kernel, Rust kernels
//!    that write 1.6 MB, sort 200,000 numbers and fill a hash map with them, and the checkout of
//!    `bench/tax` in one instance; the time of each, and how many memory slots fit in the
//!    address space with each (measured by reserving the pool).
//! 2. **The page-table work of a fresh instance**: per request, minor page faults of the thread
//!    that ran it and time, the same split into instantiation and teardown (the runtime's
//!    `--explain` accounting), and the memory-management system calls of each (`strace`, see
//!    [`crate::syscalls`]), for a small and two large memory images, with copy-on-write images
//!    and memset reset, with 0, 1 and 16 MiB kept resident, and with the pool advised to use
//!    transparent huge pages.
//! 3. **Protection keys**: whether the CPU has `pku`; with it, the same pool with and without
//!    MPK striping, measured; without it, the slot count computed from the pool layout, and said
//!    to be computed.
//! 4. **An offload model**: a real gateway on its own threads under load: its threads' CPU per
//!    request against the invocation's parts (`--explain`), the rest being connections, HTTP
//!    and copies, which an IPU could take over.
//! 5. **Copies at boundaries**: calls between functions with 64 B to 64 KiB payloads (invoke
//!    buffers, wasi:http, typed calls), their time and the bytes they copy (from the payload),
//!    and the part of each call that grows with the payload: what sharing pages between
//!    instances would save.
//!
//! The report ends with what each hardware feature would change, each claim pointing at the
//! row it rests on. It also says how steady the machine was: one request is timed at the start
//! and again at the end of the run.
//!
//! Each figure is the median of several runs of a request in-process (no sockets), on a
//! current-thread runtime, so that one thread does all of a request's work and its page faults
//! can be read from `/proc/thread-self/stat`. Sections 1, 2 and 5 measure every row in
//! [`ROUNDS`] slices interleaved over the run and keep the quickest slice's median: the CPU of a
//! shared VM is taken away in bursts of seconds, which a row measured in one block can fall into.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use meshwa_runtime::{
    AllocatorChoice, EngineSettings, Function, MpkChoice, Runtime, mpk_available,
};

use crate::common::{get, load_function};
use crate::density::{largest_pool, mpk_slot_bytes};
use crate::syscalls::{self, Phase};

#[derive(Args)]
pub struct HardwareArgs {
    /// A small wasi:http component (`guests/hello`).
    #[arg(long)]
    hello: PathBuf,
    /// The SHA-256 kernel as a WASI core module, run CGI-style (`guests/c/sha256sum.c`).
    #[arg(long)]
    sha: PathBuf,
    /// A memory-heavy kernel: `guests/preinit`, served without its snapshot, builds a
    /// 200,000-entry table in every request.
    #[arg(long)]
    table: PathBuf,
    /// The checkout app's manifest (`bench/tax/meshwa.toml`): its gateway's
    /// `/shop/checkout/local` runs the whole checkout logic in one instance.
    #[arg(long)]
    checkout: PathBuf,
    /// A component with a large memory image (`guests/polyglot` Python hello, about 10 MB of
    /// initialized heap).
    #[arg(long)]
    large: PathBuf,
    /// The hop benchmark's guests, for the copies at boundaries.
    #[command(flatten)]
    hop_guests: crate::hops::HopGuests,
    /// Requests per measurement (after one warm-up request).
    #[arg(long, default_value_t = 200)]
    requests: u32,
    /// MiB the SHA-256 kernel hashes per request.
    #[arg(long, default_value_t = 4)]
    sha_mib: u32,
    /// Where compiled code is cached (default: a directory of this run, removed after it).
    #[arg(long)]
    cache_dir: Option<PathBuf>,
    /// Where to write the report; the chart goes beside it (`hardware-bounds.svg`).
    #[arg(long, default_value = "docs/hardware.md")]
    out: PathBuf,
    /// A short run (a few requests, small inputs) that checks every section produces rows.
    #[arg(long)]
    quick: bool,
}

/// Slices each row of sections 1, 2 and 5 is measured in, spread over the run.
const ROUNDS: u32 = 3;

/// Most linear memory of an instance in these measurements (the reservation of the
/// bounds-checked rows), as in `meshwa-bench density`.
const MAX_MEMORY: u64 = 64 << 20;

/// The manifest fields every measured function gets: its memory up to [`MAX_MEMORY`].
const LIMITS: &str = "limits = { max-memory = \"64MiB\", timeout = \"60s\" }";

/// One engine configuration of section 1.
struct Isolation {
    name: &'static str,
    settings: EngineSettings,
}

fn isolations() -> Vec<Isolation> {
    let base = EngineSettings {
        allocator: AllocatorChoice::Pooling,
        mpk: MpkChoice::Disable,
        max_instance_memory: MAX_MEMORY,
        max_instances: 16,
        ..EngineSettings::default()
    };
    vec![
        Isolation {
            name: "guard regions (4 GiB reservation + 32 MiB guard, no checks in code)",
            settings: base.clone(),
        },
        Isolation {
            name: "bounds checks (reservation = 64 MiB, no guard)",
            settings: EngineSettings {
                memory_reservation: Some(MAX_MEMORY),
                memory_guard_size: Some(0),
                ..base.clone()
            },
        },
        Isolation {
            name: "bounds checks, signal-based traps off",
            settings: EngineSettings {
                memory_reservation: Some(MAX_MEMORY),
                memory_guard_size: Some(0),
                signals_based_traps: false,
                ..base.clone()
            },
        },
        Isolation {
            name: NO_EPOCH_CHECKS,
            settings: EngineSettings {
                epoch_interruption: false,
                ..base
            },
        },
    ]
}

/// The isolation of section 1 without the epoch checks compiled into every function entry and
/// loop header, which is how a deadline ends a guest: what preemption costs in software. Never
/// how meshwa serves.
const NO_EPOCH_CHECKS: &str =
    "guard regions, no epoch checks (no deadline could stop a guest: measured, never served)";

/// One engine configuration of section 2.
struct Reset {
    name: &'static str,
    cow: bool,
    keep_resident: usize,
    /// The pool's memories advised `MADV_HUGEPAGE` (see [`advise_huge_pages`]).
    huge_pages: bool,
}

/// The memset rows without and with huge pages, which the report compares.
const MEMSET: &str = "data copied in, memset reset (no copy-on-write)";
const MEMSET_HUGE: &str = "data copied in, memset reset, huge pages";

const RESETS: &[Reset] = &[
    Reset {
        name: "copy-on-write image, keep-resident 0",
        cow: true,
        keep_resident: 0,
        huge_pages: false,
    },
    Reset {
        name: "copy-on-write image, keep-resident 1 MiB (default)",
        cow: true,
        keep_resident: 1 << 20,
        huge_pages: false,
    },
    Reset {
        name: "copy-on-write image, keep-resident 16 MiB",
        cow: true,
        keep_resident: 16 << 20,
        huge_pages: false,
    },
    Reset {
        name: MEMSET,
        cow: false,
        keep_resident: 16 << 20,
        huge_pages: false,
    },
    Reset {
        name: "copy-on-write image, keep-resident 1 MiB, huge pages",
        cow: true,
        keep_resident: 1 << 20,
        huge_pages: true,
    },
    Reset {
        name: MEMSET_HUGE,
        cow: false,
        keep_resident: 16 << 20,
        huge_pages: true,
    },
];

/// The machine the report speaks of.
#[derive(Debug, Clone, PartialEq)]
pub struct Machine {
    pub cpu: String,
    pub cores: usize,
    pub kernel: String,
    pub pku: bool,
    pub thp: String,
    /// `vm.max_map_count`: it bounds pools without guard regions (two mappings per slot).
    pub max_map_count: String,
}

impl Machine {
    fn probe() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let field = |name: &str| {
            cpuinfo
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
                .unwrap_or_else(|| "unknown".to_owned())
        };
        let read = |path: &str| {
            std::fs::read_to_string(path)
                .map(|s| s.trim().to_owned())
                .unwrap_or_else(|_| "unknown".to_owned())
        };
        Machine {
            cpu: field("model name"),
            cores: std::thread::available_parallelism().map_or(1, usize::from),
            kernel: read("/proc/sys/kernel/osrelease"),
            pku: field("flags").split_whitespace().any(|f| f == "pku"),
            thp: read("/sys/kernel/mm/transparent_hugepage/enabled"),
            max_map_count: read("/proc/sys/vm/max_map_count"),
        }
    }
}

/// A row of section 1: one kernel under one isolation.
#[derive(Debug, Clone, PartialEq)]
pub struct BoundsRow {
    pub kernel: String,
    pub isolation: String,
    pub median_ms: f64,
    /// Slots of [`MAX_MEMORY`] the address space holds with this layout (reserved for real).
    pub slots: u32,
}

/// A row of section 2: one image under one reset strategy.
#[derive(Debug, Clone, PartialEq)]
pub struct ResetRow {
    pub image: String,
    pub reset: String,
    pub median_us: f64,
    pub faults_per_request: f64,
    /// Per request, from the runtime's `--explain` accounting (a second pass with it on).
    pub instantiate_us: f64,
    pub teardown_us: f64,
    pub instantiate_faults: f64,
    pub teardown_faults: f64,
    /// Memory-management calls of a third pass under strace, over `traced` requests.
    pub syscalls: syscalls::Counts,
    pub traced: u32,
    /// Transparent huge pages in the pool's memories after a timed slice (`AnonHugePages`, the
    /// most of any slice), MiB.
    pub huge_mib: f64,
}

/// Section 3: protection keys.
#[derive(Debug, Clone, PartialEq)]
pub enum Keys {
    /// Measured: slots that fit and median µs of a small request, without and with striping.
    Measured {
        plain_slots: u32,
        striped_slots: u32,
        plain_us: f64,
        striped_us: f64,
    },
    /// Computed from the pool layout: the CPU has no `pku`.
    Computed {
        plain_slots: u32,
        stripes: u64,
        plain_slot_mib: u64,
        striped_slot_mib: u64,
        striped_slots: u64,
    },
}

/// Everything the report is made of.
#[derive(Debug, Clone, PartialEq)]
pub struct Findings {
    pub machine: Machine,
    pub date: String,
    pub command: String,
    pub bounds: Vec<BoundsRow>,
    pub resets: Vec<ResetRow>,
    pub keys: Keys,
    pub offload: Offload,
    pub copies: Vec<CopyRow>,
    pub steadiness: Steadiness,
}

/// The same compute-bound request (SHA-256 under guard regions) timed at the start and at the
/// end of a run: how far the machine itself moved while the report was measured. A shared
/// VM's CPU is not steady (other tenants of the host take it), and the report says by how much.
#[derive(Debug, Clone, PartialEq)]
pub struct Steadiness {
    pub start_ms: f64,
    pub end_ms: f64,
}

/// How far apart the first and last probe may be before the report calls its run unsteady:
/// steady runs here were 0–4 % apart, and one 27 % apart disagreed with a steady one by up to 2.5×.
const UNSTEADY: f64 = 0.10;

impl Steadiness {
    /// The larger median over the smaller, less one (0.1 = 10 % apart).
    pub fn apart(&self) -> f64 {
        let (low, high) = if self.start_ms < self.end_ms {
            (self.start_ms, self.end_ms)
        } else {
            (self.end_ms, self.start_ms)
        };
        if low > 0.0 { high / low - 1.0 } else { 0.0 }
    }
}

/// A row of section 5: one way of calling another function, one payload size.
#[derive(Debug, Clone, PartialEq)]
pub struct CopyRow {
    pub style: String,
    pub payload: usize,
    /// p50 of one call, measured in the caller, µs.
    pub call_us: f64,
    /// Bytes copied between memories per call, from the payload and the call's copies.
    pub bytes_per_call: f64,
    /// The part of the call that grows with the payload: its p50 less the 64-byte call's.
    pub size_us: f64,
}

/// Section 4: where a loaded server's CPU goes, per request, for the smallest function.
#[derive(Debug, Clone, PartialEq)]
pub struct Offload {
    pub requests: u64,
    pub connections: u32,
    /// CPU of the server's threads per request, µs.
    pub server_cpu_us: f64,
    /// From `--explain`'s accounting (wall-clock per invocation, µs).
    pub guest_us: f64,
    pub lifecycle_us: f64,
    pub host_calls_us: f64,
}

impl Offload {
    /// What is left of the server's CPU per request beside the guest's invocation: accepting and
    /// reading connections, parsing HTTP, copying bodies, scheduling.
    pub fn gateway_us(&self) -> f64 {
        (self.server_cpu_us - self.guest_us - self.lifecycle_us - self.host_calls_us).max(0.0)
    }
}

pub fn run(args: HardwareArgs) -> anyhow::Result<()> {
    // The report's folder, before minutes of measuring rather than after them.
    if let Some(folder) = args.out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(folder)
            .with_context(|| format!("creating {}", folder.display()))?;
    }
    let data = std::env::temp_dir().join(format!("meshwa-bench-hardware-{}", std::process::id()));
    let findings = measure(&args, &data);
    let _ = std::fs::remove_dir_all(&data);
    let findings = findings?;
    let chart = args.out.with_file_name("hardware-bounds.svg");
    std::fs::write(&chart, bounds_chart(&findings.bounds)?)
        .with_context(|| format!("writing {}", chart.display()))?;
    let report = report(&findings, "hardware-bounds.svg");
    std::fs::write(&args.out, &report)
        .with_context(|| format!("writing {}", args.out.display()))?;
    println!("{report}");
    eprintln!("wrote {} and {}", args.out.display(), chart.display());
    Ok(())
}

fn measure(args: &HardwareArgs, data: &Path) -> anyhow::Result<Findings> {
    let requests = if args.quick { 5 } else { args.requests };
    let sha_mib = if args.quick { 1 } else { args.sha_mib };
    let machine = Machine::probe();
    let cache = args.cache_dir.clone().unwrap_or_else(|| data.join("cache"));
    let runtime_in = |settings: EngineSettings, name: String| {
        let dir = data.join(name);
        std::fs::create_dir_all(&dir)?;
        Runtime::with_cache_dir(settings, &dir, &cache).map_err(|e| anyhow::anyhow!("{e}"))
    };
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;

    // The steadiness probe: the first row of section 1, again at the end.
    let probe = |name: &str| -> anyhow::Result<f64> {
        let settings = isolations()
            .into_iter()
            .next()
            .context("no isolation")?
            .settings;
        let runtime = runtime_in(settings, format!("steadiness-{name}"))?;
        let sha = load_function(&runtime, &args.sha, &format!("kind = \"cgi\"\n{LIMITS}"))?;
        let times = timed(&tokio, &sha, &format!("/sha?mib={sha_mib}"), requests)?;
        Ok(median(&times).as_secs_f64() * 1000.0)
    };
    let start_ms = probe("start")?;

    // Every row once per round, the quickest slice kept (see the module's docs).
    let per_round = (requests / ROUNDS).max(2);

    struct Kernel {
        isolation: &'static str,
        kernel: &'static str,
        slots: u32,
        function: std::sync::Arc<Function>,
        request: Request,
        best_ms: f64,
    }
    let mut kernels = Vec::new();
    let mut runtimes = Vec::new();
    for (n, isolation) in isolations().into_iter().enumerate() {
        let runtime = runtime_in(isolation.settings.clone(), format!("bounds-{n}"))
            .with_context(|| format!("engine for {}", isolation.name))?;
        let slots = largest_pool(
            &isolation.settings,
            if args.quick { 1 << 10 } else { 1 << 21 },
        );
        let sha = load_function(&runtime, &args.sha, &format!("kind = \"cgi\"\n{LIMITS}"))?;
        let table = load_table(&runtime, &args.table)?;
        // The same guest with its table in the snapshot: its sort and hash-map kernels then
        // time only themselves.
        let sorter = load_function(&runtime, &args.table, LIMITS)?;
        let checkout = load_checkout(&runtime, &args.checkout, &tokio)?;
        let order = bytes::Bytes::from(serde_json::to_vec(&tax_logic::sample_request(0))?);
        for (kernel, function, request) in [
            (
                "SHA-256 (C, compute)",
                sha,
                Request::Get(format!("/sha?mib={sha_mib}")),
            ),
            (
                "table build (Rust, memory writes)",
                table,
                Request::Get("/".to_owned()),
            ),
            (
                "sort of 200,000 u64 (Rust)",
                sorter.clone(),
                Request::Get("/sort".to_owned()),
            ),
            (
                "hash map of 200,000 u64 (Rust)",
                sorter,
                Request::Get("/hashmap".to_owned()),
            ),
            (
                "checkout (Rust, JSON and key-value reads)",
                checkout,
                Request::Post("/shop/checkout/local".to_owned(), order),
            ),
        ] {
            kernels.push(Kernel {
                isolation: isolation.name,
                kernel,
                slots,
                function,
                request,
                best_ms: f64::INFINITY,
            });
        }
        runtimes.push(runtime);
    }
    for _ in 0..ROUNDS {
        for k in &mut kernels {
            let times = timed_request(&tokio, &k.function, &k.request, per_round)?;
            k.best_ms = k.best_ms.min(median(&times).as_secs_f64() * 1000.0);
        }
    }
    let bounds: Vec<BoundsRow> = kernels
        .iter()
        .map(|k| BoundsRow {
            kernel: k.kernel.to_owned(),
            isolation: k.isolation.to_owned(),
            median_ms: k.best_ms,
            slots: k.slots,
        })
        .collect();
    drop(kernels);
    drop(runtimes);

    let images: [(&str, &Path, &str); 3] = [
        ("small (Rust hello, 0.1 MB)", &args.hello, "http"),
        ("1.6 MB written per request (table)", &args.table, "table"),
        (
            "large (Python hello, about 10 MB image)",
            &args.large,
            "http",
        ),
    ];
    struct Image {
        image: &'static str,
        reset: &'static str,
        /// Loaded in a runtime without and with the `--explain` accounting (which costs time of
        /// its own): the first for the whole request, the second for its split and its calls.
        plain: std::sync::Arc<Function>,
        explained: std::sync::Arc<Function>,
        /// The plain runtime's memory pools, for the huge pages its memories hold.
        pools: Vec<(usize, usize)>,
        best_us: f64,
        faults: u64,
        requests: u64,
        /// The round with the quickest instantiation and teardown, per invocation: µs each.
        split_us: (f64, f64),
        split_faults: (u64, u64),
        invocations: u64,
        huge_mib: f64,
    }
    let mut rows = Vec::new();
    let mut runtimes = Vec::new();
    for (n, reset) in RESETS.iter().enumerate() {
        let settings = EngineSettings {
            allocator: AllocatorChoice::Pooling,
            max_instance_memory: MAX_MEMORY,
            max_instances: 16,
            memory_init_cow: reset.cow,
            memory_keep_resident: reset.keep_resident,
            ..EngineSettings::default()
        };
        let reserved = mappings()?;
        let plain = runtime_in(settings.clone(), format!("reset-{n}"))?;
        let plain_pools = new_pools(&reserved)?;
        let reserved = mappings()?;
        let explained = runtime_in(
            EngineSettings {
                explain: true,
                ..settings
            },
            format!("reset-{n}-explain"),
        )?;
        if reset.huge_pages {
            advise_huge_pages(&plain_pools)?;
            advise_huge_pages(&new_pools(&reserved)?)?;
        }
        for (image, component, kind) in images {
            let load = |runtime: &Runtime| match kind {
                "table" => load_table(runtime, component),
                _ => load_function(runtime, component, LIMITS),
            };
            rows.push(Image {
                image,
                reset: reset.name,
                pools: plain_pools.clone(),
                plain: load(&plain)?,
                explained: load(&explained)?,
                best_us: f64::INFINITY,
                faults: 0,
                requests: 0,
                split_us: (f64::INFINITY, f64::INFINITY),
                split_faults: (0, 0),
                invocations: 0,
                huge_mib: 0.0,
            });
        }
        runtimes.push((plain, explained));
    }
    for _ in 0..ROUNDS {
        for row in &mut rows {
            let before = thread_faults();
            let times = timed(&tokio, &row.plain, "/", per_round)?;
            row.faults += thread_faults().saturating_sub(before);
            // `timed` makes one warm-up request more than it times.
            row.requests += u64::from(per_round + 1);
            row.best_us = row.best_us.min(median(&times).as_secs_f64() * 1e6);
            row.huge_mib = row.huge_mib.max(huge_pages_in(&row.pools) as f64 / 1024.0);

            let before = row.explained.phases().unwrap_or_default();
            timed(&tokio, &row.explained, "/", per_round)?;
            let after = row.explained.phases().unwrap_or_default();
            let invocations = after.invocations.saturating_sub(before.invocations).max(1);
            let per = |later: Duration, earlier: Duration| {
                later.saturating_sub(earlier).as_secs_f64() * 1e6 / invocations as f64
            };
            let split = (
                per(after.instantiate, before.instantiate),
                per(after.teardown, before.teardown),
            );
            if split.0 + split.1 < row.split_us.0 + row.split_us.1 {
                row.split_us = split;
            }
            row.split_faults.0 += after
                .instantiate_faults
                .saturating_sub(before.instantiate_faults);
            row.split_faults.1 += after.teardown_faults.saturating_sub(before.teardown_faults);
            row.invocations += invocations;
        }
    }
    let traced = if args.quick { 3 } else { 20 };
    let mut resets = Vec::new();
    for (n, row) in rows.iter().enumerate() {
        let log = data.join(format!("strace-{n}.log"));
        let tracer = syscalls::Tracer::attach(syscalls::current_thread_id()?, &log)
            .context("counting system calls (section 2)")?;
        // `timed` makes one request more than it times: `traced` in all.
        let traced_run = timed(&tokio, &row.explained, "/", traced - 1);
        let counts = tracer.finish()?;
        traced_run?;
        let invocations = row.invocations.max(1) as f64;
        resets.push(ResetRow {
            image: row.image.to_owned(),
            reset: row.reset.to_owned(),
            median_us: row.best_us,
            faults_per_request: row.faults as f64 / row.requests.max(1) as f64,
            instantiate_us: row.split_us.0,
            teardown_us: row.split_us.1,
            instantiate_faults: row.split_faults.0 as f64 / invocations,
            teardown_faults: row.split_faults.1 as f64 / invocations,
            syscalls: counts,
            traced,
            huge_mib: row.huge_mib,
        });
    }
    drop(rows);
    drop(runtimes);

    let keys = if mpk_available() {
        let base = EngineSettings {
            allocator: AllocatorChoice::Pooling,
            max_instance_memory: MAX_MEMORY,
            max_instances: 16,
            ..EngineSettings::default()
        };
        let mut measured = Vec::new();
        for (n, mpk) in [MpkChoice::Disable, MpkChoice::Enable]
            .into_iter()
            .enumerate()
        {
            let settings = EngineSettings {
                mpk,
                ..base.clone()
            };
            let slots = largest_pool(&settings, if args.quick { 1 << 10 } else { 1 << 21 });
            let runtime = runtime_in(settings, format!("keys-{n}"))?;
            let hello = load_function(&runtime, &args.hello, LIMITS)?;
            let times = timed(&tokio, &hello, "/", requests)?;
            measured.push((slots, median(&times).as_secs_f64() * 1e6));
        }
        Keys::Measured {
            plain_slots: measured[0].0,
            striped_slots: measured[1].0,
            plain_us: measured[0].1,
            striped_us: measured[1].1,
        }
    } else {
        let plain_slots = bounds.first().map_or(0, |row| row.slots);
        let (stripes, plain, striped) = mpk_slot_bytes(MAX_MEMORY, 4 << 30);
        Keys::Computed {
            plain_slots,
            stripes,
            plain_slot_mib: plain >> 20,
            striped_slot_mib: striped >> 20,
            striped_slots: u64::from(plain_slots) * plain / striped.max(1),
        }
    };

    let offload = offload(
        &args.hello,
        &cache,
        &data.join("offload"),
        if args.quick {
            Duration::from_millis(500)
        } else {
            Duration::from_secs(5)
        },
    )?;

    let copies = copies(
        args,
        &cache,
        &data.join("copies"),
        if args.quick { 20 } else { 1000 },
    )?;

    let steadiness = Steadiness {
        start_ms,
        end_ms: probe("end")?,
    };
    Ok(Findings {
        machine,
        date: today(),
        command: command_line(args),
        bounds,
        resets,
        keys,
        offload,
        copies,
        steadiness,
    })
}

/// Payload sizes of section 5.
const COPY_SIZES: [usize; 3] = [64, 4 * 1024, 64 * 1024];

/// Calls between functions with payloads of [`COPY_SIZES`] (the hop benchmark's guests, `n`
/// calls each, timed in the caller), and the bytes they copy between memories. Those are
/// derived from the payload: the host's buffer counters see only a guest's `buffer` and `read`
/// calls, and the copies of a call happen elsewhere (an invoke callee reads its buffer through
/// its request body; typed calls copy in wasmtime's adapters, in guest code).
fn copies(args: &HardwareArgs, cache: &Path, data: &Path, n: u32) -> anyhow::Result<Vec<CopyRow>> {
    let runtime = Runtime::with_cache_dir(EngineSettings::default(), data, cache)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let (hopper, typed, _) = crate::hops::load_hop_app(&runtime, &args.hop_guests)?;
    // On a runtime's worker, as the gateway runs a request.
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    // (guest path, label, caller, crossings of the payload per call)
    let styles = [
        // The caller's buffer is made once; each call, the callee reads it into its memory.
        ("invoke-full", "invoke, host-owned buffer", &hopper, 1.0),
        // Out of the caller into the body stream, out of the stream into the callee.
        ("http", "wasi:http in-process", &hopper, 2.0),
        // Into the callee as the argument, back into the caller as the result (an echo).
        (
            "typed-bytes",
            "typed call (composed), list<u8>",
            &typed,
            2.0,
        ),
    ];
    // Each cell's quickest of ROUNDS interleaved slices, as in sections 1 and 2.
    let calls = (n / ROUNDS).max(2);
    let mut best = vec![f64::INFINITY; styles.len() * COPY_SIZES.len()];
    for _ in 0..ROUNDS {
        for (cell, ((style, _, caller, _), size)) in styles
            .iter()
            .flat_map(|style| COPY_SIZES.iter().map(move |size| (style, *size)))
            .enumerate()
        {
            let path = format!("/hop/{style}/{size}/{calls}");
            let function = (*caller).clone();
            let (p50, _) = tokio.block_on(async move {
                tokio::spawn(async move {
                    let (status, body) = get(&function, &path, "hardware").await?;
                    crate::common::guest_timings(status, &body)
                })
                .await?
            })?;
            best[cell] = best[cell].min(p50);
        }
    }
    let mut rows: Vec<CopyRow> = Vec::new();
    for (s, (_, label, _, crossings)) in styles.iter().enumerate() {
        let base = best[s * COPY_SIZES.len()];
        for (i, size) in COPY_SIZES.iter().enumerate() {
            let p50 = best[s * COPY_SIZES.len() + i];
            rows.push(CopyRow {
                style: (*label).to_owned(),
                payload: *size,
                call_us: p50,
                bytes_per_call: crossings * *size as f64,
                size_us: (p50 - base).max(0.0),
            });
        }
    }
    Ok(rows)
}

/// Connections of the closed-loop load in the offload measurement.
const OFFLOAD_CONNECTIONS: u32 = 16;
/// The name of the measured server's threads, so that their CPU can be told from the load's.
const SERVER_THREADS: &str = "hw-server";

/// A real gateway (in this process, on its own two threads) serving `hello` with `--explain`
/// accounting, under closed-loop load from other threads for `duration`: the server threads' CPU
/// per request, against what the accounting puts in the invocation.
fn offload(hello: &Path, cache: &Path, data: &Path, duration: Duration) -> anyhow::Result<Offload> {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    let settings = EngineSettings {
        explain: true,
        max_instance_memory: MAX_MEMORY,
        ..EngineSettings::default()
    };
    let runtime = Arc::new(
        Runtime::with_cache_dir(settings, data, cache).map_err(|e| anyhow::anyhow!("{e}"))?,
    );
    let function = load_function(&runtime, hello, LIMITS)?;
    let routes = meshwa_gateway::Routes::from_pointee(meshwa_gateway::Router::new(vec![(
        meshwa_manifest::Route::new("/").map_err(anyhow::Error::msg)?,
        function,
    )]));
    let stats = runtime.clone();
    let metrics = Arc::new(meshwa_gateway::Metrics::new(Arc::new(move || {
        stats.stats()
    })));
    let server = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(SERVER_THREADS)
        .enable_all()
        .build()?;
    let listener = server.block_on(meshwa_gateway::bind("127.0.0.1:0".parse()?))?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    server.spawn(meshwa_gateway::serve(
        listener,
        Arc::new(routes),
        metrics,
        meshwa_gateway::GatewayConfig::default(),
        async move {
            let _ = stopped.await;
        },
    ));

    let load = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("hw-load")
        .enable_all()
        .build()?;
    let done = Arc::new(AtomicU64::new(0));
    let drive = |until: Instant, counted: bool| {
        let done = done.clone();
        load.block_on(async move {
            let client =
                hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                    .build_http::<http_body_util::Empty<bytes::Bytes>>();
            let mut tasks = Vec::new();
            for _ in 0..OFFLOAD_CONNECTIONS {
                let (client, done) = (client.clone(), done.clone());
                tasks.push(tokio::spawn(async move {
                    while Instant::now() < until {
                        let uri = format!("http://{addr}/");
                        let Ok(uri) = uri.parse::<http::Uri>() else {
                            break;
                        };
                        let Ok(response) = client.get(uri).await else {
                            break;
                        };
                        let ok = response.status().is_success();
                        let _ = http_body_util::BodyExt::collect(response.into_body()).await;
                        if ok && counted {
                            done.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }));
            }
            for task in tasks {
                let _ = task.await;
            }
        });
    };
    // Warm up, then measure.
    drive(Instant::now() + duration / 5, false);
    let phases_before = phase_sum(&runtime);
    let cpu_before = crate::common::threads_cpu(Some(SERVER_THREADS));
    drive(Instant::now() + duration, true);
    let cpu = crate::common::threads_cpu(Some(SERVER_THREADS)).saturating_sub(cpu_before);
    let phases = phase_sum(&runtime).minus(&phases_before);
    let _ = stop.send(());
    drop(server);

    let requests = done.load(Ordering::Relaxed).max(1);
    let per = |d: Duration| d.as_secs_f64() * 1e6 / phases.invocations.max(1) as f64;
    Ok(Offload {
        requests,
        connections: OFFLOAD_CONNECTIONS,
        server_cpu_us: cpu.as_secs_f64() * 1e6 / requests as f64,
        guest_us: per(phases.guest),
        lifecycle_us: per(phases.lifecycle),
        host_calls_us: per(phases.host_calls),
    })
}

/// The parts of the runtime's phase totals (over every function) that the offload model uses.
#[derive(Default)]
struct Parts {
    invocations: u64,
    guest: Duration,
    lifecycle: Duration,
    host_calls: Duration,
}

impl Parts {
    fn minus(&self, earlier: &Parts) -> Parts {
        Parts {
            invocations: self.invocations.saturating_sub(earlier.invocations),
            guest: self.guest.saturating_sub(earlier.guest),
            lifecycle: self.lifecycle.saturating_sub(earlier.lifecycle),
            host_calls: self.host_calls.saturating_sub(earlier.host_calls),
        }
    }
}

fn phase_sum(runtime: &Runtime) -> Parts {
    let mut sum = Parts::default();
    for (_, t) in runtime.phases() {
        sum.invocations += t.invocations;
        sum.guest += t.guest;
        sum.lifecycle += t.admission + t.instantiate + t.teardown;
        sum.host_calls += t.other_host + t.key_value + t.calls;
    }
    sum
}

/// `guests/preinit` without its snapshot: each request builds its table.
fn load_table(runtime: &Runtime, component: &Path) -> anyhow::Result<std::sync::Arc<Function>> {
    load_function(
        runtime,
        component,
        &format!("{LIMITS}\npre-initialize = false"),
    )
}

/// What a measurement sends.
enum Request {
    Get(String),
    Post(String, bytes::Bytes),
}

/// The checkout app (all its functions), its store filled with the benchmark's dataset; returns
/// its gateway.
fn load_checkout(
    runtime: &Runtime,
    manifest: &Path,
    tokio: &tokio::runtime::Runtime,
) -> anyhow::Result<std::sync::Arc<Function>> {
    let manifest = meshwa_manifest::Manifest::load(manifest)?;
    let functions = runtime.load_app(&manifest, &meshwa_runtime::Secrets::default())?;
    let gateway = functions
        .into_iter()
        .find(|f| f.id().function.as_str() == "gateway")
        .context("the checkout app has no gateway")?;
    let (status, body) = tokio.block_on(crate::common::post(&gateway, "/shop/load"))?;
    anyhow::ensure!(
        status.is_success(),
        "loading the checkout's data: {status} {}",
        String::from_utf8_lossy(&body)
    );
    Ok(gateway)
}

/// `requests` GETs of `path` after one warm-up, each timed.
fn timed(
    tokio: &tokio::runtime::Runtime,
    function: &Function,
    path: &str,
    requests: u32,
) -> anyhow::Result<Vec<Duration>> {
    timed_request(tokio, function, &Request::Get(path.to_owned()), requests)
}

/// `requests` of `request` after one warm-up, each timed.
fn timed_request(
    tokio: &tokio::runtime::Runtime,
    function: &Function,
    request: &Request,
    requests: u32,
) -> anyhow::Result<Vec<Duration>> {
    let mut times = Vec::with_capacity(requests as usize);
    let path = match request {
        Request::Get(path) | Request::Post(path, _) => path.as_str(),
    };
    for n in 0..=requests {
        let started = Instant::now();
        let (status, body) = tokio.block_on(async {
            match request {
                Request::Get(path) => get(function, path, "hardware").await,
                Request::Post(path, body) => {
                    crate::common::post_body(function, path, body.clone()).await
                }
            }
        })?;
        let took = started.elapsed();
        anyhow::ensure!(
            status.is_success(),
            "{path} answered {status}: {}",
            String::from_utf8_lossy(&body)
        );
        if n > 0 {
            times.push(took);
        }
    }
    times.sort();
    Ok(times)
}

fn median(sorted: &[Duration]) -> Duration {
    sorted.get(sorted.len() / 2).copied().unwrap_or_default()
}

/// The address ranges of this process's mappings (`/proc/self/maps`).
fn mappings() -> anyhow::Result<Vec<(usize, usize)>> {
    let maps = std::fs::read_to_string("/proc/self/maps").context("reading /proc/self/maps")?;
    Ok(maps.lines().filter_map(address_range).collect())
}

/// The address range that opens a mapping's line of `/proc/self/maps` or `smaps`
/// (`7f0c3a000000-7f0c3b000000 rw-p ...`); `None` for any other line.
fn address_range(line: &str) -> Option<(usize, usize)> {
    let (start, end) = line.split_whitespace().next()?.split_once('-')?;
    Some((
        usize::from_str_radix(start, 16).ok()?,
        usize::from_str_radix(end, 16).ok()?,
    ))
}

/// The address ranges of 1 GiB or more mapped since `before`: the memory pools of the runtimes
/// made in between. The kernel merges a new reservation with an adjacent old one of the same
/// flags into one mapping, so what was mapped before is cut out of each mapping, not compared
/// whole.
fn new_pools(before: &[(usize, usize)]) -> anyhow::Result<Vec<(usize, usize)>> {
    let pools = mapped_since(&mappings()?, before);
    anyhow::ensure!(!pools.is_empty(), "no memory pool found in /proc/self/maps");
    Ok(pools)
}

/// The parts of `now`'s ranges of 1 GiB or more that no range of `before` covers.
fn mapped_since(now: &[(usize, usize)], before: &[(usize, usize)]) -> Vec<(usize, usize)> {
    let mut fresh = Vec::new();
    for &(start, end) in now {
        let mut at = start;
        let mut old: Vec<&(usize, usize)> = before
            .iter()
            .filter(|&&(s, e)| s < end && start < e)
            .collect();
        old.sort();
        for &(s, e) in old {
            if s > at {
                fresh.push((at, s));
            }
            at = at.max(e);
        }
        if end > at {
            fresh.push((at, end));
        }
    }
    fresh.retain(|&(start, end)| end - start >= 1 << 30);
    fresh
}

/// Advises `MADV_HUGEPAGE` on `pools`. wasmtime 48 has no setting for huge pages, and under the
/// usual `madvise` mode of transparent huge pages its memories never get any; this measures what
/// they would buy. A slot that is later re-mapped (a copy-on-write image mapped over it) loses
/// the advice, as it would if wasmtime gave it.
fn advise_huge_pages(pools: &[(usize, usize)]) -> anyhow::Result<()> {
    for &(start, end) in pools {
        #[allow(unsafe_code)]
        // SAFETY: MADV_HUGEPAGE only marks the range as eligible for transparent huge pages: it
        // does not map, unmap, or change the contents or protection of any page, so no
        // invariant of Rust or of wasmtime about that memory can break. The range is a mapping
        // of this process, read from /proc/self/maps by `new_pools`.
        let advised =
            unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE) };
        anyhow::ensure!(
            advised == 0,
            "madvise(MADV_HUGEPAGE): {}",
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}

/// Memory in transparent huge pages inside `pools`, KiB (`AnonHugePages` of the mappings of
/// `/proc/self/smaps` that lie in them).
fn huge_pages_in(pools: &[(usize, usize)]) -> u64 {
    let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap_or_default();
    let mut inside = false;
    let mut kib = 0;
    for line in smaps.lines() {
        if let Some(field) = line.strip_prefix("AnonHugePages:") {
            if inside {
                kib += field
                    .split_whitespace()
                    .next()
                    .and_then(|n| n.parse::<u64>().ok())
                    .unwrap_or(0);
            }
        } else if let Some((start, end)) = address_range(line) {
            inside = pools.iter().any(|&(s, e)| s <= start && end <= e);
        }
    }
    kib
}

/// Minor page faults of the calling thread so far.
fn thread_faults() -> u64 {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap_or_default();
    crate::common::minor_faults_in(&stat).unwrap_or(0)
}

fn today() -> String {
    std::process::Command::new("date")
        .arg("+%Y-%m-%d")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|| "unknown date".to_owned())
}

fn command_line(args: &HardwareArgs) -> String {
    let mut text = String::from("bench/hardware.sh");
    if args.quick {
        text += " --quick";
    }
    text
}

/// The section 1 chart: median time of each kernel, one bar per isolation, relative to the
/// guard-region layout (1.0).
pub fn bounds_chart(rows: &[BoundsRow]) -> anyhow::Result<String> {
    use plotters::prelude::*;

    let kernels: Vec<&str> = dedup(rows.iter().map(|r| r.kernel.as_str()));
    let isolations: Vec<&str> = dedup(rows.iter().map(|r| r.isolation.as_str()));
    let ratio = |row: &BoundsRow| {
        let base = rows
            .iter()
            .find(|r| r.kernel == row.kernel && r.isolation == isolations[0])
            .map_or(row.median_ms, |r| r.median_ms);
        if base > 0.0 {
            row.median_ms / base
        } else {
            1.0
        }
    };
    // Room above the bars for the legend.
    let top = rows.iter().map(ratio).fold(1.0f64, f64::max) * 1.6;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (900, 400)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| anyhow::anyhow!("{e}"))?;
        let group = isolations.len() + 1;
        let slots = kernels.len() * group;
        // One labelled tick under the middle of each kernel's group of bars.
        let centers: Vec<f64> = (0..kernels.len())
            .map(|k| (k * group) as f64 + 0.5 + isolations.len() as f64 / 2.0)
            .collect();
        let mut chart = ChartBuilder::on(&root)
            .caption(
                "Time relative to guard regions (1.0), median",
                ("sans-serif", 18),
            )
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(48)
            .build_cartesian_2d(0f64..slots as f64, 0f64..top)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(0)
            .y_desc("× guard regions")
            .draw()
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        for (i, isolation) in isolations.iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            let bars = rows
                .iter()
                .filter(|r| r.isolation == *isolation)
                .filter_map(|r| {
                    let group = kernels.iter().position(|k| *k == r.kernel)?;
                    let x = (group * (isolations.len() + 1) + i) as f64 + 0.05;
                    Some(Rectangle::new(
                        [(x, 0.0), (x + 0.9, ratio(r))],
                        color.filled(),
                    ))
                });
            chart
                .draw_series(bars)
                .map_err(|e| anyhow::anyhow!("{e}"))?
                .label(*isolation)
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 10, y + 5)], color.filled())
                });
        }
        // Each kernel's name above its group of bars.
        let names = kernels.iter().zip(&centers).map(|(kernel, center)| {
            let highest = rows
                .iter()
                .filter(|r| r.kernel == *kernel)
                .map(ratio)
                .fold(0.0f64, f64::max);
            // The kernel's name without its parenthesis, to fit above its bars.
            let short = kernel.split(" (").next().unwrap_or(kernel);
            Text::new(
                short.to_owned(),
                (*center, highest + top * 0.03),
                TextStyle::from(("sans-serif", 12).into_font()).pos(
                    plotters::style::text_anchor::Pos::new(
                        plotters::style::text_anchor::HPos::Center,
                        plotters::style::text_anchor::VPos::Bottom,
                    ),
                ),
            )
        });
        chart
            .draw_series(names)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .position(SeriesLabelPosition::UpperRight)
            .draw()
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        root.present().map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    Ok(svg)
}

fn dedup<'a>(items: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    let mut seen: Vec<&str> = Vec::new();
    for item in items {
        if !seen.contains(&item) {
            seen.push(item);
        }
    }
    seen
}

/// The report, as Markdown.
pub fn report(f: &Findings, chart: &str) -> String {
    let mut out = String::new();
    let m = &f.machine;
    let _ = writeln!(
        out,
        "# The hardware report: what memory safety costs in software here\n\n\
         Written by `meshwa-bench hardware` ({}), {}. Re-run it to measure your own machine. \
         Figures are medians of in-process requests on one thread. The machines of this \
         project are shared 2-vCPU VMs, whose CPU is taken by the host's other tenants in \
         bursts, so sections 1, 2 and 5 measure each row in three slices spread over the run \
         and keep the quickest slice's median. Two runs back to back on such a VM agreed \
         within 1–9 % on the median row of each section, single rows up to about 45 % apart \
         (docs/benchmarks.md, \"The hardware report\"): read a difference smaller than \
         that between rows as noise. How steady this one was: the SHA-256 \
         request of section 1 (guard regions) took {:.3} ms at the start of this run and \
         {:.3} ms at its end, {:.0} % apart; compare rows of other runs only within that.{}\n\n\
         | machine | |\n| --- | --- |\n| CPU | {} ({} cores) |\n| kernel | {} |\n\
         | memory protection keys (`pku`) | {} |\n| transparent huge pages | {} |\n\
         | `vm.max_map_count` | {} |\n",
        f.command,
        f.date,
        f.steadiness.start_ms,
        f.steadiness.end_ms,
        100.0 * f.steadiness.apart(),
        if f.steadiness.apart() > UNSTEADY {
            " **This run was not steady**: the machine's speed changed while it ran, so its \
             rows may differ from another run's by more than the noise stated here; re-run it \
             when the machine is quiet before comparing."
        } else {
            ""
        },
        m.cpu,
        m.cores,
        m.kernel,
        if m.pku { "yes" } else { "no" },
        m.thp,
        m.max_map_count
    );

    let _ = writeln!(
        out,
        "## 1. Bounds checks against guard regions\n\n\
         meshwa isolates each instance's linear memory in software. By default wasmtime reserves \
         4 GiB of address space and a 32 MiB guard per memory, so a 32-bit index can never reach \
         past it and compiled code checks nothing: the MMU faults on the guard. Cut the \
         reservation to the memory's own size, without a guard, and every load and store is \
         checked in code; turn signal-based traps off as well and no trap relies on the MMU. \
         What bounds-checking hardware (capabilities such as CHERI) would give back is the \
         difference between the rows, and the density column: the largest pool wasmtime could \
         reserve, two memories per instance. With guard regions, the 128 TiB of user address \
         space binds; without them, each slot takes about two kernel mappings, so a \
         `vm.max_map_count` below about 1,100,000 binds first (Linux's default, 65,530, stops \
         near 32,700; `bench/hardware.sh` raises it when run as root). The last isolation \
         keeps the guard regions and drops the epoch checks wasmtime compiles into every \
         function entry and loop header, which let a deadline end a guest and a long-running \
         guest yield its worker: what that preemption costs in software.\n\n\
         ![time relative to guard regions]({chart})\n\n\
         | kernel | isolation | median ms | × guard regions | 64 MiB memory slots that fit (pool reserved) |\n\
         | --- | --- | ---: | ---: | ---: |"
    );
    for row in &f.bounds {
        let base = guard_row(f, &row.kernel).map_or(row.median_ms, |r| r.median_ms);
        let _ = writeln!(
            out,
            "| {} | {} | {:.3} | {:.2} | {} |",
            row.kernel,
            row.isolation,
            row.median_ms,
            if base > 0.0 {
                row.median_ms / base
            } else {
                1.0
            },
            row.slots
        );
    }

    let traced = f.resets.first().map_or(0, |row| row.traced);
    let _ = writeln!(
        out,
        "\n## 2. The page-table work of a fresh instance\n\n\
         Every request gets a fresh instance: its memory is mapped from the component's image \
         and reset when the request ends. Three passes per row, in-process on one thread:\n\n\
         - *median µs* and *minor faults per request*: the whole request (instantiation, guest, \
         teardown), faults of the thread that ran it (`/proc/thread-self/stat`);\n\
         - *instantiation* and *teardown*: µs and minor faults of each, from the runtime's \
         `--explain` accounting (a second runtime with it on; teardown is dropping the store, \
         which resets the slot);\n\
         - *calls*: the memory-management system calls ({traced_calls}) of {traced} requests \
         under `strace -k -p` attached to that thread, per request, each put under \
         instantiation or teardown by the wasmtime function that made it, the rest under \
         *other* (the guest's `memory.grow`, which makes more of the slot accessible with \
         mprotect; the allocator; calls whose stack could not be read) \
         (`crates/bench/src/syscalls.rs`); `PAGEMAP_SCAN` is the ioctl with which wasmtime \
         finds the pages a request dirtied, to reset only those and keep them resident.\n\n\
         Transparent huge pages are `{thp}` here. wasmtime maps linear memories with 4 KiB \
         pages and has no setting for huge pages; the rows marked *huge pages* advise \
         `MADV_HUGEPAGE` on the pool's reservation (which the `madvise` mode honours, `never` \
         ignores), to measure what they would buy. A slot that wasmtime re-maps (a \
         copy-on-write image mapped over it) loses the advice. The last column is the \
         `AnonHugePages` of the pool's mappings after a slice of the row's requests.\n\n\
         | image | reset | median µs | minor faults per request | instantiation µs (faults) \
         | teardown µs (faults) | calls per request, instantiation | calls per request, \
         teardown | other calls per request | huge pages, MiB |\n\
         | --- | --- | ---: | ---: | ---: | ---: | --- | --- | --- | ---: |",
        traced_calls = syscalls::TRACED.replace(',', ", "),
        thp = m.thp
    );
    for row in &f.resets {
        let _ = writeln!(
            out,
            "| {} | {} | {:.1} | {:.1} | {:.1} ({:.1}) | {:.1} ({:.1}) | {} | {} | {} | {:.0} |",
            row.image,
            row.reset,
            row.median_us,
            row.faults_per_request,
            row.instantiate_us,
            row.instantiate_faults,
            row.teardown_us,
            row.teardown_faults,
            row.syscalls.per_request(Phase::Instantiation, row.traced),
            row.syscalls.per_request(Phase::Teardown, row.traced),
            row.syscalls.per_request(Phase::Other, row.traced),
            row.huge_mib
        );
    }

    let _ = writeln!(out, "\n## 3. Protection keys\n");
    match &f.keys {
        Keys::Measured {
            plain_slots,
            striped_slots,
            plain_us,
            striped_us,
        } => {
            let _ = writeln!(
                out,
                "Measured on this machine (it has `pku`):\n\n\
                 | pool | 64 MiB slots that fit | median µs, small request |\n| --- | ---: | ---: |\n\
                 | without MPK | {plain_slots} | {plain_us:.1} |\n\
                 | MPK striping | {striped_slots} | {striped_us:.1} |"
            );
        }
        Keys::Computed {
            plain_slots,
            stripes,
            plain_slot_mib,
            striped_slot_mib,
            striped_slots,
        } => {
            let _ = writeln!(
                out,
                "**Computed, not measured**: this CPU has no `pku`. With MPK, wasmtime stripes \
                 {stripes} memories across one guard-sized region, each behind its own key, so \
                 a slot takes {striped_slot_mib} MiB of address space instead of \
                 {plain_slot_mib} MiB: about **{striped_slots}** slots of 64 MiB instead of \
                 the {plain_slots} measured in section 1. To measure it, run \
                 `bench/hardware.sh` on a machine whose `/proc/cpuinfo` flags list `pku` \
                 (Intel Xeon Scalable and later, AMD Zen 3 and later): the section then \
                 reserves both pools and times a request in each."
            );
        }
    }

    let o = &f.offload;
    let share = |us: f64| {
        if o.server_cpu_us > 0.0 {
            100.0 * us / o.server_cpu_us
        } else {
            0.0
        }
    };
    let _ = writeln!(
        out,
        "\n## 4. An offload model: where a loaded server's CPU goes\n\n\
         A real gateway on its own two threads serves the small function to {} connections of \
         closed-loop load from other threads ({} requests). The server threads' CPU is read \
         from `/proc/self/task/*/schedstat`; the invocation's parts come from the runtime's `--explain` \
         accounting, which is wall-clock: under load it includes time the thread waited for a \
         core, so those rows are upper bounds and the last one, the rest, a lower bound. The \
         rest is the gateway's own work: accepting and reading connections, parsing HTTP, \
         copying bodies, scheduling: what an IPU or SmartNIC that terminates HTTP would take \
         off the host's cores.\n\n\
         | part, per request | µs | share of the server's CPU |\n| --- | ---: | ---: |\n\
         | guest code | {:.1} | {:.0} % |\n\
         | instance lifecycle (admission, instantiation, teardown) | {:.1} | {:.0} % |\n\
         | host calls of the guest (WASI, streams) | {:.1} | {:.0} % |\n\
         | gateway: connections, HTTP, copies, scheduling (the rest) | {:.1} | {:.0} % |\n\
         | server CPU in all | {:.1} | 100 % |",
        o.connections,
        o.requests,
        o.guest_us,
        share(o.guest_us),
        o.lifecycle_us,
        share(o.lifecycle_us),
        o.host_calls_us,
        share(o.host_calls_us),
        o.gateway_us(),
        share(o.gateway_us()),
        o.server_cpu_us
    );
    let _ = writeln!(
        out,
        "\n## 5. The price of copies at boundaries\n\n\
         One function calls another with a payload, the hop benchmark's guests, timed in the \
         caller (p50 of each call). Bytes copied between memories per call follow from the \
         payload and how each call moves it: once for invoke (the caller's buffer is made \
         once, the callee reads it into its memory), twice for a wasi:http body (into the \
         stream, out of it) and for the typed call's echo (the argument there, the result \
         back). The host cannot count them: they happen in body streams and, for typed calls, \
         in wasmtime's adapters, in guest code. The part of a \
         call that grows with the payload (its p50 less the 64-byte call's) is what sharing \
         pages between instances, by tags or capabilities instead of copies, would save.\n\n\
         | call | payload | p50 µs | bytes copied per call | of which grows with the payload, µs |\n\
         | --- | ---: | ---: | ---: | ---: |"
    );
    for row in &f.copies {
        let _ = writeln!(
            out,
            "| {} | {} | {:.1} | {:.0} | {:.1} ({:.0} %) |",
            row.style,
            size_label(row.payload),
            row.call_us,
            row.bytes_per_call,
            row.size_us,
            if row.call_us > 0.0 {
                100.0 * row.size_us / row.call_us
            } else {
                0.0
            }
        );
    }
    let _ = writeln!(out, "## What hardware would change, from the rows above\n");
    let _ = writeln!(out, "{}", on_paper(f));
    out
}

fn size_label(bytes: usize) -> String {
    match bytes {
        b if b >= 1 << 20 => format!("{} MiB", b >> 20),
        b if b >= 1 << 10 => format!("{} KiB", b >> 10),
        b => format!("{b} B"),
    }
}

/// `kernel`'s row under the first isolation of section 1 (guard regions), which every other
/// row of that kernel is compared with: rows are measured isolation by isolation in order.
fn guard_row<'a>(f: &'a Findings, kernel: &str) -> Option<&'a BoundsRow> {
    f.bounds.iter().find(|r| r.kernel == kernel)
}

/// Section 6: each feature's effect, each resting on a measured (or computed) row.
fn on_paper(f: &Findings) -> String {
    let mut out = String::new();
    let worst = f
        .bounds
        .iter()
        .filter_map(|row| {
            let base = guard_row(f, &row.kernel)?;
            (base.median_ms > 0.0).then(|| (row.median_ms / base.median_ms, row))
        })
        .fold(None::<(f64, &BoundsRow)>, |best, (r, row)| match best {
            Some((b, _)) if b >= r => best,
            _ => Some((r, row)),
        });
    let (guard_slots, checked_slots) = (
        f.bounds.first().map_or(0, |r| r.slots),
        f.bounds.iter().map(|r| r.slots).max().unwrap_or(0),
    );
    if let Some((ratio, row)) = worst {
        let _ = writeln!(
            out,
            "- **Bounds-checking hardware (CHERI capabilities)**: today meshwa chooses between \
             speed and density. Guard regions cost nothing per access but fit {guard_slots} \
             slots; explicit checks fit {checked_slots} and make `{}` {:.2}× slower ({}, \
             section 1). A capability-checked load would give the density of the checked rows \
             at the speed of the guarded ones, and make the 32 MiB guards and most of the \
             reservation unnecessary.",
            row.kernel, ratio, row.isolation
        );
    }
    let epoch_costs: Vec<String> = f
        .bounds
        .iter()
        .filter(|row| row.isolation == NO_EPOCH_CHECKS && row.median_ms > 0.0)
        .filter_map(|row| {
            let checked = guard_row(f, &row.kernel)?;
            Some(format!(
                "`{}` {:.2}×",
                row.kernel,
                checked.median_ms / row.median_ms
            ))
        })
        .collect();
    if !epoch_costs.is_empty() {
        let _ = writeln!(
            out,
            "- **Interrupting a guest without checks in its code**: with the epoch checks that \
             end a guest at its deadline, each kernel takes this many times its time without \
             them (section 1, guard regions in both): {}. An interrupt delivered by the MMU \
             (the engine unmaps a page that each check only loads from; upstream work in \
             wasmtime) would give most of that back, and no setting can today: without the \
             checks nothing stops a guest that never returns.",
            epoch_costs.join(", ")
        );
    }
    match &f.keys {
        Keys::Measured {
            plain_slots,
            striped_slots,
            ..
        } => {
            let _ = writeln!(
                out,
                "- **Memory protection keys (MPK)**: measured here: {striped_slots} slots \
                 instead of {plain_slots} (section 3), at the per-request cost shown there."
            );
        }
        Keys::Computed {
            plain_slots,
            striped_slots,
            ..
        } => {
            let _ = writeln!(
                out,
                "- **Memory protection keys (MPK)**: computed (no `pku` here): about \
                 {striped_slots} slots instead of {plain_slots} (section 3) with checks still \
                 elided; a key switch (`wrpkru`) per call into a guest is its price, not \
                 measured here."
            );
        }
    }
    if let Some(row) = f
        .resets
        .iter()
        .filter(|r| r.reset.contains("keep-resident 0"))
        .max_by(|a, b| a.faults_per_request.total_cmp(&b.faults_per_request))
    {
        let _ = writeln!(
            out,
            "- **Memory tagging (Arm MTE) and page-table work**: a fresh instance of the {} \
             takes {:.1} minor faults and {:.1} page-table system calls at teardown per \
             request with nothing kept resident (section 2): page-table work that isolation by \
             tags inside one mapping, instead of by mappings, would avoid; keeping pages \
             resident and resetting them with memset already removes most of it in software, \
             at the cost of resident memory per slot.",
            row.image,
            row.faults_per_request,
            row.syscalls.in_phase(Phase::Teardown) as f64 / f64::from(row.traced.max(1))
        );
    }
    let row_of = |image: &str, reset: &str| {
        f.resets
            .iter()
            .find(|r| r.image == image && r.reset == reset)
    };
    if let Some((flat, huge)) = f
        .resets
        .iter()
        .filter(|r| r.reset == MEMSET_HUGE)
        .max_by(|a, b| a.huge_mib.total_cmp(&b.huge_mib))
        .and_then(|huge| Some((row_of(&huge.image, MEMSET)?, huge)))
    {
        let _ = writeln!(
            out,
            "- **Huge pages (on today's hardware)**: with the pool advised `MADV_HUGEPAGE` and \
             data copied in, the {} held {:.0} MiB in huge pages and took {:.1} minor faults \
             per request instead of {:.1}, {:.0} µs instead of {:.0} (section 2). Copy-on-write \
             images are file mappings, which get no transparent huge pages unless shared memory \
             allows them (`shmem_enabled`), so the default layout gains nothing; a setting in \
             wasmtime to advise its pool would be the software step, 1 GiB pages the hardware \
             one.",
            huge.image,
            huge.huge_mib,
            huge.faults_per_request,
            flat.faults_per_request,
            huge.median_us,
            flat.median_us
        );
    }
    if let Some(row) = f
        .copies
        .iter()
        .filter(|r| r.payload == COPY_SIZES[COPY_SIZES.len() - 1])
        .max_by(|a, b| a.size_us.total_cmp(&b.size_us))
    {
        let _ = writeln!(
            out,
            "- **Shared pages instead of copies (tags, capabilities)**: at {}, a {} spends \
             {:.1} of its {:.1} µs on what grows with the payload (section 5): handing the \
             callee the caller's pages, safely, by tag or capability, would save that; the \
             cheapest copy today is meshwa's host-owned buffer.",
            size_label(row.payload),
            row.style,
            row.size_us,
            row.call_us
        );
    }
    let o = &f.offload;
    if o.server_cpu_us > 0.0 {
        let _ = writeln!(
            out,
            "- **Offload processors (IPU, SmartNIC)**: for the smallest function, the gateway's \
             own work is at least {:.1} of {:.1} µs of server CPU per request ({:.0} %, section \
             4): an offload of HTTP termination and connection handling would give that back, \
             at least {:.2}× the requests per core; less for functions that do more work. The \
             larger prize is the instance lifecycle of the same table, which no offload \
             touches.",
            o.gateway_us(),
            o.server_cpu_us,
            100.0 * o.gateway_us() / o.server_cpu_us,
            o.server_cpu_us / (o.server_cpu_us - o.gateway_us()).max(0.1)
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use meshwa_test_programs as programs;

    /// The command's short mode on the real guests: every section produces its rows.
    #[test]
    fn a_quick_run_fills_every_section() {
        let dir = tempfile::tempdir().unwrap();
        let args = HardwareArgs {
            hello: programs::HELLO.into(),
            sha: programs::C_SHA256.into(),
            table: programs::PREINIT.into(),
            large: programs::PYTHON_HELLO.into(),
            checkout: Path::new(programs::EXAMPLES_DIR).join("../bench/tax/meshwa.toml"),
            hop_guests: crate::hops::HopGuests {
                hopper: programs::HOPPER.into(),
                sink: programs::SINK.into(),
                typed_hopper: programs::TYPED_HOPPER.into(),
                typed_sink: programs::TYPED_SINK.into(),
            },
            requests: 200,
            sha_mib: 4,
            cache_dir: Some(programs::COMPILE_CACHE_DIR.into()),
            out: dir.path().join("hardware.md"),
            quick: true,
        };
        let findings = measure(&args, &dir.path().join("data")).unwrap();
        assert_eq!(findings.bounds.len(), isolations().len() * 5);
        assert_eq!(findings.resets.len(), RESETS.len() * 3);
        assert!(
            findings
                .bounds
                .iter()
                .all(|r| r.median_ms > 0.0 && r.slots > 0)
        );
        assert!(
            findings
                .resets
                .iter()
                .all(|r| r.median_us > 0.0 && r.instantiate_us > 0.0 && r.teardown_us > 0.0)
        );
        // With nothing kept resident, every reset gives the slot's pages back to the kernel:
        // strace must have seen those calls (in this debug build their stacks end in rustix's
        // wrapper, so they may be counted as "other": see `syscalls`).
        for row in findings
            .resets
            .iter()
            .filter(|r| r.reset.contains("keep-resident 0"))
        {
            assert!(
                row.syscalls.of_kinds(&["madvise", "PAGEMAP_SCAN"]) >= u64::from(row.traced),
                "{row:?}"
            );
        }
        assert!(findings.offload.requests > 1 && findings.offload.server_cpu_us > 0.0);
        assert!(findings.steadiness.start_ms > 0.0 && findings.steadiness.end_ms > 0.0);
        // Under the `madvise` mode, only the advised pools may hold huge pages. Whether they
        // get any is the kernel's best effort (a free 2 MiB block at fault time): the VMs of
        // 2026-12-05 gave the advised pool none in most runs, and even a plain advised heap
        // mapping only sometimes, so the report measures it and the test does not require it.
        if findings.machine.thp.contains("[madvise]") {
            for row in &findings.resets {
                let advised = row.reset.contains("huge pages");
                assert!(advised || row.huge_mib == 0.0, "{row:?}");
            }
        }
        assert_eq!(findings.copies.len(), 3 * COPY_SIZES.len());
        assert!(
            findings
                .copies
                .iter()
                .all(|r| r.call_us > 0.0 && r.bytes_per_call > 0.0)
        );
        match findings.keys {
            Keys::Computed { striped_slots, .. } => assert!(!mpk_available() && striped_slots > 0),
            Keys::Measured { striped_slots, .. } => assert!(mpk_available() && striped_slots > 0),
        }
    }

    fn recorded(pku: bool) -> Findings {
        let keys = if pku {
            Keys::Measured {
                plain_slots: 30_000,
                striped_slots: 400_000,
                plain_us: 12.0,
                striped_us: 12.5,
            }
        } else {
            Keys::Computed {
                plain_slots: 30_000,
                stripes: 15,
                plain_slot_mib: 4_128,
                striped_slot_mib: 275,
                striped_slots: 450_000,
            }
        };
        Findings {
            machine: Machine {
                cpu: "Test CPU".into(),
                cores: 2,
                kernel: "6.1.0".into(),
                pku,
                thp: "always [madvise] never".into(),
                max_map_count: "4194304".into(),
            },
            date: "2026-12-04".into(),
            command: "bench/hardware.sh".into(),
            bounds: vec![
                BoundsRow {
                    kernel: "SHA-256".into(),
                    isolation: "guard regions".into(),
                    median_ms: 10.0,
                    slots: 30_000,
                },
                BoundsRow {
                    kernel: "SHA-256".into(),
                    isolation: "bounds checks".into(),
                    median_ms: 12.5,
                    slots: 900_000,
                },
            ],
            resets: vec![ResetRow {
                image: "small".into(),
                reset: "copy-on-write image, keep-resident 0".into(),
                median_us: 20.0,
                faults_per_request: 7.0,
                instantiate_us: 5.0,
                teardown_us: 3.0,
                instantiate_faults: 1.0,
                teardown_faults: 0.5,
                syscalls: syscalls::Counts(
                    [
                        ((Phase::Instantiation, "mprotect".to_owned()), 20),
                        ((Phase::Teardown, "PAGEMAP_SCAN".to_owned()), 40),
                        ((Phase::Teardown, "madvise".to_owned()), 20),
                    ]
                    .into(),
                ),
                traced: 20,
                huge_mib: 0.0,
            }]
            .into_iter()
            .chain(
                [
                    (MEMSET, 400.0, 3000.0, 0.0),
                    (MEMSET_HUGE, 2.0, 2000.0, 12.0),
                ]
                .map(|(reset, faults, us, huge)| ResetRow {
                    image: "large".into(),
                    reset: reset.into(),
                    median_us: us,
                    faults_per_request: faults,
                    instantiate_us: 1.0,
                    teardown_us: 1.0,
                    instantiate_faults: 0.0,
                    teardown_faults: 0.0,
                    syscalls: syscalls::Counts::default(),
                    traced: 20,
                    huge_mib: huge,
                }),
            )
            .collect(),
            keys,
            offload: Offload {
                requests: 1000,
                connections: 16,
                server_cpu_us: 80.0,
                guest_us: 10.0,
                lifecycle_us: 20.0,
                host_calls_us: 10.0,
            },
            copies: vec![CopyRow {
                style: "typed call".into(),
                payload: 64 * 1024,
                call_us: 240.0,
                bytes_per_call: 131_072.0,
                size_us: 239.0,
            }],
            steadiness: Steadiness {
                start_ms: 10.0,
                end_ms: 12.0,
            },
        }
    }

    #[test]
    fn the_report_states_the_machine_and_every_row() {
        let report = report(&recorded(true), "chart.svg");
        for expected in [
            "Test CPU (2 cores)",
            "took 10.000 ms at the start of this run and 12.000 ms at its end, 20 % apart",
            "**This run was not steady**",
            "| memory protection keys (`pku`) | yes |",
            "| SHA-256 | bounds checks | 12.500 | 1.25 | 900000 |",
            "| small | copy-on-write image, keep-resident 0 | 20.0 | 7.0 | 5.0 (1.0) | 3.0 (0.5) \
             | 1.0 mprotect | 2.0 PAGEMAP_SCAN, 1.0 madvise | none | 0 |",
            "Measured on this machine",
            "1.25× slower",
            "7.0 minor faults and 3.0 page-table system calls at teardown",
            "the large held 12 MiB in huge pages and took 2.0 minor faults per request instead \
             of 400.0, 2000 µs instead of 3000",
            "![time relative to guard regions](chart.svg)",
            "| gateway: connections, HTTP, copies, scheduling (the rest) | 40.0 | 50 % |",
            "at least 2.00× the requests per core",
            "| typed call | 64 KiB | 240.0 | 131072 | 239.0 (100 %) |",
            "at 64 KiB, a typed call spends 239.0 of its 240.0 µs",
        ] {
            assert!(
                report.contains(expected),
                "missing {expected:?} in\n{report}"
            );
        }
    }

    #[test]
    fn only_an_unsteady_run_is_said_to_be_one() {
        let mut findings = recorded(true);
        findings.steadiness = Steadiness {
            start_ms: 10.0,
            end_ms: 10.4,
        };
        let report = report(&findings, "chart.svg");
        assert!(report.contains("4 % apart"), "{report}");
        assert!(!report.contains("not steady"), "{report}");
    }

    #[test]
    fn without_pku_the_slot_count_is_said_to_be_computed() {
        let report = report(&recorded(false), "chart.svg");
        assert!(report.contains("**Computed, not measured**"), "{report}");
        assert!(report.contains("about **450000** slots"), "{report}");
        assert!(!report.contains("Measured on this machine"), "{report}");
    }

    #[test]
    fn address_ranges_are_read_from_mapping_lines_only() {
        assert_eq!(
            address_range("7f0c3a000000-7f0c3b000000 rw-p 00000000 00:00 0 "),
            Some((0x7f0c_3a00_0000, 0x7f0c_3b00_0000))
        );
        for other in [
            "AnonHugePages:      2048 kB",
            "VmFlags: rd wr mr",
            "",
            "zz-10 r--p",
        ] {
            assert_eq!(address_range(other), None, "{other:?}");
        }
    }

    #[test]
    fn a_new_pool_is_found_also_when_the_kernel_merged_it_with_an_old_one() {
        const G: usize = 1 << 30;
        let before = [(0, 4 * G), (10 * G, 10 * G + 4096)];
        // A new reservation right after the first old one, merged with it; one of its own; a
        // small mapping.
        let now = [(0, 12 * G), (20 * G, 22 * G), (30 * G, 30 * G + 4096)];
        assert_eq!(
            mapped_since(&now, &before),
            [(4 * G, 10 * G), (10 * G + 4096, 12 * G), (20 * G, 22 * G)]
        );
        assert!(mapped_since(&before, &before).is_empty());
    }

    #[test]
    fn the_chart_is_an_svg_with_a_bar_per_row() {
        let svg = bounds_chart(&recorded(false).bounds).unwrap();
        assert!(svg.starts_with("<svg"), "{svg}");
        assert!(svg.contains("guard regions") && svg.contains("bounds checks"));
        assert!(svg.matches("<rect").count() >= 2);
    }
}
