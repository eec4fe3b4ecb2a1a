//! The wasmtime engine: allocator choice (with probe and fallback), code generation settings and
//! the epoch ticker that drives deadlines.
//!
//! - **Base:** component model, epoch interruption, copy-on-write memory images, parallel
//!   compilation, and the operator's `memory_reservation` if one was set.
//! - **Pool** (unless `OnDemand`), sized from `max_instances` (n): n component instances and
//!   stacks; 64 core instances, 2 memories and 4 tables per instance slot (a component may use
//!   up to 64, 8 and 32 of them: see the constants below); memories of at most
//!   `max_instance_memory`. Up to `memory_keep_resident` bytes (1 MiB) of each memory and
//!   64 KiB of each table stay resident between instances and are reset with memset or a copy
//!   of the image, not released with madvise: without Linux's `PAGEMAP_SCAN` (6.7+) the first
//!   bytes of the memory; with it, the pages the instance dirtied, found from the start of the
//!   memory up to that budget or to wasmtime's limit of 32 runs of dirty pages, whichever comes
//!   first (a guest that dirties pages all over its image, as CPython does, keeps few).
//! - **`PAGEMAP_SCAN` only where swap cannot reach the pool.** That reset finds the dirty pages
//!   that are *present*: a page the kernel swapped out while its instance lived is neither reset
//!   nor released, and the next instance in the slot reads it back (the CLI test
//!   `swap::memory_swapped_out_during_a_request_does_not_reach_the_next_one` swaps one out and
//!   found 252 KiB of the last request's memory in the next one). So under `Auto` the engine uses
//!   it only when no swap is active (`/proc/swaps`) or the process's cgroup forbids it swap
//!   (`memory.swap.max` of 0 in the cgroup or an ancestor, systemd's `MemorySwapMax=0`); without
//!   it every slot is reset with memset and madvise, which reach swapped pages too. Swap switched
//!   on later cannot change an engine: a thread looks every [`SWAP_WATCH_PERIOD`] and logs an
//!   error that says to restart. The fix belongs in wasmtime (scan for swapped pages too).
//! - **Probe and fallback:** creating the pooling engine reserves the whole pool, so creating it is
//!   the probe. Under `Auto` a failure is logged and an on-demand engine is built; under `Pooling`
//!   it is fatal. The `engine ready` log line names the allocator, MPK and the slot count. A warning
//!   names the `sysctl` to run when `vm.max_map_count` is too low for `max_instances` (a live
//!   instance takes about 4 mappings, an idle pool none).
//! - **MPK** applies to the pool only. It buys density and costs time: with it, wasmtime switches
//!   the thread's protection keys on every call between guest and host (two `wrpkru` and a call
//!   into the allocator), which made the composed checkout 10 % slower (docs/benchmarks.md,
//!   "What MPK costs per request"). So `Auto` first tries the pool without MPK and takes MPK only
//!   when that pool cannot be reserved (`max_instances` beyond about 10,900 with the default
//!   reservation) and the CPU and kernel offer it; `Enable` always takes it or refuses to start;
//!   the on-demand engine reports `mpk = false`. wasmtime divides an MPK pool's memories into
//!   stripes, one per key (at most [`MPK_STRIPES_AT_MOST`]), and gives each new store the next
//!   stripe in turn, full or not. So the pool gets room for one more component of the largest
//!   kind in every stripe, and an instantiation that finds its stripe full tries the next (see
//!   `instance`): every admitted request then finds a slot.
//! - **Epoch:** the thread `meshwa-epoch` advances the epoch every [`EPOCH_TICK`] (1 ms), holding
//!   only a weak reference to the engine. A guest yields at every tick and is ended at its
//!   deadline (see `instance`), so deadlines are precise to about a millisecond and a spinning
//!   guest cannot keep a worker from other tenants. The price is a check compiled into every
//!   function entry and loop header: about a fifth of the checkout logic's time in wasm
//!   (`meshwa-bench logic-cost`, docs/benchmarks.md). Nothing cheaper stops a guest in wasmtime
//!   48 (fuel costs more; an MMU-based check is upstream work in progress), so the server always
//!   compiles the checks; only benchmarks build an engine without them.
//! - **Why 4 GiB of address space per memory by default:** compiled code then skips bounds
//!   checks, but only about 11,000 instances fit without MPK (`meshwa-bench density`). A smaller
//!   `--memory-reservation` trades bounds checks for density; MPK gives the density without the
//!   checks, at the price of a key switch per host call.

use std::path::Path;
use std::time::Duration;

use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::EngineError;

/// How often the engine's epoch advances. Deadlines are checked, and long-running guests yield to
/// other tasks, once per tick: 1 ms keeps timeouts precise and scheduling fair at negligible cost.
pub const EPOCH_TICK: Duration = Duration::from_millis(1);

/// Which instance allocator to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AllocatorChoice {
    /// Pooling if its address-space reservation succeeds, on-demand otherwise.
    #[default]
    Auto,
    /// Pooling or fail.
    Pooling,
    /// Allocate every instance with mmap on demand.
    OnDemand,
}

/// Whether to use memory protection keys (MPK) to stripe pooled memories.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MpkChoice {
    /// Use MPK only where the pool does not fit in the address space without it and the CPU
    /// and kernel offer it: MPK buys density, and costs every host call a switch of keys.
    #[default]
    Auto,
    /// Use MPK, or refuse to build the engine where it is unavailable.
    Enable,
    /// Never use MPK.
    Disable,
}

/// Whether pool slots are reset with Linux's `PAGEMAP_SCAN` (6.7+), which resets only the pages
/// an instance dirtied, instead of the first kept-resident bytes (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PagemapScanChoice {
    /// Where the kernel offers it and swap cannot reach this process's memory.
    #[default]
    Auto,
    /// Wherever the kernel offers it, swap or not: for an operator who keeps the server's memory
    /// out of swap by other means, and for benchmarks.
    Enable,
    /// Never.
    Disable,
}

/// How often the engine looks whether swap has become able to reach a pool it resets with
/// `PAGEMAP_SCAN`.
pub const SWAP_WATCH_PERIOD: Duration = Duration::from_secs(10);

/// Engine settings chosen by the operator (server flags), not by tenants.
#[derive(Debug, Clone)]
pub struct EngineSettings {
    pub allocator: AllocatorChoice,
    pub mpk: MpkChoice,
    /// How many instances may be live at once (the pool's size, and the admission limit).
    pub max_instances: u32,
    /// Most instances one tenant may hold at once (requests from outside; see `admission`).
    /// `None`: half the pool, so no single tenant can starve the others.
    pub tenant_max_instances: Option<u32>,
    /// Most requests of one tenant waiting for a slot; more are refused at once with 429.
    pub tenant_max_queue: u32,
    /// Most linear memory all live instances of one tenant may hold together (`None`: no quota
    /// beyond slots × `max-memory`); a manifest's `tenant-limits.max-memory` can only lower it.
    pub tenant_max_memory: Option<u64>,
    /// Most worker threads one tenant's guest code may occupy at once while another tenant is
    /// busy too (see `cpu_share`); 0 for no cap.
    pub tenant_cpu_lanes: u32,
    /// Address space reserved for each linear memory (`None`: wasmtime's default, 4 GiB on
    /// 64-bit hosts, which lets compiled code skip bounds checks). A smaller reservation fits
    /// more pool slots into the address space, paid for with explicit bounds checks in guest
    /// code; memory protection keys get most of that density without the checks.
    pub memory_reservation: Option<u64>,
    /// Guard region after each linear memory (`None`: wasmtime's default, 32 MiB on 64-bit
    /// hosts). With a reservation below 4 GiB and no guard, every access is checked explicitly.
    pub memory_guard_size: Option<u64>,
    /// Whether compiled code may rely on signals for traps (an access into a guard region
    /// faults and becomes a trap). `false` makes every check explicit code: what a host without
    /// signal handling pays, measured by `meshwa-bench hardware`.
    pub signals_based_traps: bool,
    /// Whether compiled code checks the epoch at every function entry and loop header, which is
    /// how a deadline ends a guest and how a long-running guest yields its worker. Always `true`
    /// in the server: without it nothing stops a guest that never returns. Only benchmarks turn
    /// it off, to measure what the checks cost (`meshwa-bench logic-cost`, `hardware`).
    pub epoch_interruption: bool,
    /// Initialize linear memories by mapping copy-on-write images (`false`: copy the data in,
    /// and clear with memset), as `meshwa-bench hardware` compares.
    pub memory_init_cow: bool,
    /// Per-instance linear-memory ceiling; a function asking for more is refused at load.
    pub max_instance_memory: u64,
    /// Bytes of each pooled linear memory kept resident (reset with memset instead of madvise)
    /// between instances: cheaper reuse for small guests at the cost of RSS.
    pub memory_keep_resident: usize,
    /// Bytes of key-value data kept in memory for reads (see `meshwa_kv::CachedBackend`); 0 for
    /// none.
    pub key_value_cache: u64,
    /// Reset only the pages an instance dirtied, found with Linux's `PAGEMAP_SCAN` (6.7+), instead
    /// of clearing the whole kept-resident region (see [`PagemapScanChoice`]).
    pub pagemap_scan: PagemapScanChoice,
    /// Account for where each invocation's time goes (see `explain`); off by default.
    pub explain: bool,
    /// Name guests' compiled functions for `perf` in `/tmp/perf-PID.map`, so that a profile of
    /// the server shows which guest function ran; off by default (the file grows with every
    /// module loaded).
    pub perf_map: bool,
    /// Largest size of the compile cache's directory; the least recently used entries go first
    /// (see `cache`).
    pub compile_cache_max_size: u64,
    /// Bytes of request bodies held together before admission (CGI bodies, see `admission`).
    pub max_buffered_bodies: u64,
}

impl Default for EngineSettings {
    fn default() -> Self {
        EngineSettings {
            allocator: AllocatorChoice::Auto,
            mpk: MpkChoice::Auto,
            max_instances: 1000,
            tenant_max_instances: None,
            tenant_max_queue: 100,
            tenant_max_memory: None,
            tenant_cpu_lanes: default_tenant_cpu_lanes(None),
            memory_reservation: None,
            memory_guard_size: None,
            signals_based_traps: true,
            epoch_interruption: true,
            memory_init_cow: true,
            max_instance_memory: 256 * 1024 * 1024,
            memory_keep_resident: 1024 * 1024,
            key_value_cache: 64 * 1024 * 1024,
            pagemap_scan: PagemapScanChoice::Auto,
            explain: false,
            perf_map: false,
            compile_cache_max_size: 4 * 1024 * 1024 * 1024,
            max_buffered_bodies: 1024 * 1024 * 1024,
        }
    }
}

/// All workers but one (at least one): with `workers` threads (default: one per core, as tokio
/// has it), a CPU-bound tenant leaves a worker free for the others.
pub fn default_tenant_cpu_lanes(workers: Option<usize>) -> u32 {
    let workers = workers.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    });
    u32::try_from(workers.saturating_sub(1).max(1)).unwrap_or(u32::MAX)
}

/// What the engine ended up with, for logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineFacts {
    pub pooling: bool,
    pub mpk: bool,
    /// Whether pool slots are reset with `PAGEMAP_SCAN`.
    pub pagemap_scan: bool,
}

/// Core wasm instances a component may hold. A Rust `wasm32-wasip2` component has a handful (the
/// program plus the shims wit-component adds); adapted preview1 modules a few more; a function
/// composed with its exporters (typed calls) the sum of its parts.
const CORE_INSTANCES_PER_COMPONENT: u32 = 64;

/// Linear memories (and tables) a component may hold: one per part of a composed function (see
/// `compose`), so a function may import from up to seven others. Only a ceiling: the pool's
/// totals stay two memories and four tables per instance slot, so a composed function with more
/// simply uses more of them (and the pool refuses with "overloaded" before it runs out).
const MEMORIES_PER_COMPONENT: u32 = 8;
const TABLES_PER_COMPONENT: u32 = 32;

fn base_config(settings: &EngineSettings) -> Config {
    let mut config = Config::new();
    if let Some(bytes) = settings.memory_reservation {
        config.memory_reservation(bytes);
    }
    if let Some(bytes) = settings.memory_guard_size {
        config.memory_guard_size(bytes);
    }
    config.signals_based_traps(settings.signals_based_traps);
    config.wasm_component_model(true);
    config.epoch_interruption(settings.epoch_interruption);
    config.memory_init_cow(settings.memory_init_cow);
    config.parallel_compilation(true);
    if settings.perf_map {
        config.profiler(wasmtime::ProfilingStrategy::PerfMap);
    }
    config
}

fn pooling_config(
    settings: &EngineSettings,
    mpk: bool,
    pagemap_scan: bool,
) -> PoolingAllocationConfig {
    let n = settings.max_instances.max(1);
    let mut pool = PoolingAllocationConfig::new();
    pool.total_component_instances(n)
        .total_core_instances(n.saturating_mul(CORE_INSTANCES_PER_COMPONENT))
        .max_core_instances_per_component(CORE_INSTANCES_PER_COMPONENT)
        .total_memories(total_memories(n, mpk))
        .max_memories_per_component(MEMORIES_PER_COMPONENT)
        .total_tables(n.saturating_mul(4))
        .max_tables_per_component(TABLES_PER_COMPONENT)
        .total_stacks(n)
        .max_memory_size(usize::try_from(settings.max_instance_memory).unwrap_or(usize::MAX))
        .linear_memory_keep_resident(settings.memory_keep_resident)
        .table_keep_resident(64 * 1024)
        .memory_protection_keys(if mpk { Enabled::Yes } else { Enabled::No })
        .pagemap_scan(if pagemap_scan {
            Enabled::Yes
        } else {
            Enabled::No
        });
    pool
}

/// Stripes wasmtime makes of an MPK pool at most: x86 has 16 protection keys, and key 0 is every
/// thread's own.
pub(crate) const MPK_STRIPES_AT_MOST: u32 = 15;

/// Memories of a pool of `n` slots: two per slot; with MPK also room for a component of the
/// largest kind in every stripe, so that the stripes (each `total / stripes` memories) together
/// always have one with room while fewer than `n` instances live (see `instance`).
fn total_memories(n: u32, mpk: bool) -> u32 {
    let per_slot = n.saturating_mul(2);
    if mpk {
        per_slot.saturating_add(MPK_STRIPES_AT_MOST * MEMORIES_PER_COMPONENT)
    } else {
        per_slot
    }
}

/// Kernel mappings one live instance takes: 4.0 measured by `meshwa-bench density` (its memory
/// image, its anonymous memory, its stack and their neighbours); an idle pool takes none.
const MAPPINGS_PER_INSTANCE: u64 = 4;

/// Warns when `vm.max_map_count` is too low for `max_instances` live instances: the kernel
/// would refuse the mappings of instances beyond it, and those requests would fail. Raising it
/// needs root, so the server only says what to run.
fn check_map_count(max_instances: u32) {
    let Some(limit) = std::fs::read_to_string("/proc/sys/vm/max_map_count")
        .ok()
        .and_then(|text| text.trim().parse::<u64>().ok())
    else {
        return;
    };
    // The process's own mappings (code, heap, threads) besides the instances.
    let needed = u64::from(max_instances) * MAPPINGS_PER_INSTANCE + 10_000;
    if needed > limit {
        tracing::warn!(
            max_instances,
            vm_max_map_count = limit,
            needed,
            "vm.max_map_count is too low for this many live instances; as root run: \
             sysctl -w vm.max_map_count={needed}"
        );
    }
}

/// Whether the pool is to be reset with `PAGEMAP_SCAN`; logs why not where the operator did not
/// turn it off.
fn decide_pagemap_scan(choice: PagemapScanChoice) -> bool {
    let why_not = match choice {
        PagemapScanChoice::Disable => return false,
        _ if !PoolingAllocationConfig::is_pagemap_scan_available() => {
            "the kernel does not offer it (Linux 6.7+)"
        }
        PagemapScanChoice::Auto if swap_can_reach_this_process() => {
            "swap is active and may hold this process's memory, which that reset would miss"
        }
        _ => return true,
    };
    tracing::info!(
        why_not,
        "instance slots are reset in full, without PAGEMAP_SCAN"
    );
    false
}

/// Can the kernel swap out this process's memory? Yes when any swap is active (`/proc/swaps`)
/// unless this process's cgroup (v2) or one of its ancestors has `memory.swap.max` set to 0.
/// What cannot be read counts as yes: this answer decides whether a request's memory is certain
/// to be reset.
pub fn swap_can_reach_this_process() -> bool {
    let read = |path: &Path| std::fs::read_to_string(path).ok();
    swap_reachable(
        read(Path::new("/proc/swaps")).as_deref(),
        read(Path::new("/proc/self/cgroup")).as_deref(),
        read,
    )
}

/// [`swap_can_reach_this_process`] on given file contents: `swaps` of `/proc/swaps`, `cgroup` of
/// `/proc/self/cgroup`, and `read` for the cgroup's files.
fn swap_reachable(
    swaps: Option<&str>,
    cgroup: Option<&str>,
    read: impl Fn(&Path) -> Option<String>,
) -> bool {
    let Some(swaps) = swaps else {
        return true;
    };
    // A header line, then one line per active swap area.
    if swaps.lines().skip(1).all(|line| line.trim().is_empty()) {
        return false;
    }
    // cgroup v2 has one line, `0::/path`; v1 (or none) leaves swap to the kernel.
    let Some(path) = cgroup.and_then(|text| text.lines().find_map(|l| l.strip_prefix("0::")))
    else {
        return true;
    };
    let root = Path::new("/sys/fs/cgroup");
    let mut dir = root.join(path.trim().trim_start_matches('/'));
    // From the process's cgroup up to the root: a limit anywhere above applies too.
    while dir.starts_with(root) {
        if read(&dir.join("memory.swap.max")).is_some_and(|max| max.trim() == "0") {
            return false;
        }
        if !dir.pop() {
            break;
        }
    }
    true
}

/// While the engine lives and resets its pool with `PAGEMAP_SCAN` because swap could not reach
/// it at start, looks every [`SWAP_WATCH_PERIOD`] whether it now can, and logs an error when it
/// starts to (again after it stopped): an engine's reset cannot change, a restart can.
pub(crate) fn spawn_swap_watch(engine: &Engine) -> std::io::Result<()> {
    const STEP: Duration = Duration::from_secs(1);
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("meshwa-swap-watch".into())
        .spawn(move || {
            let mut reported = false;
            let mut waited = Duration::ZERO;
            // Wakes every second to stop soon after the engine is gone.
            while weak.upgrade().is_some() {
                std::thread::sleep(STEP);
                waited += STEP;
                if waited < SWAP_WATCH_PERIOD {
                    continue;
                }
                waited = Duration::ZERO;
                let reachable = swap_can_reach_this_process();
                if reachable && !reported {
                    tracing::error!(
                        "swap was switched on after the server started, and this server resets \
                         instance memory with PAGEMAP_SCAN, which misses swapped-out pages: a \
                         request may see memory of an earlier one; restart the server (it then \
                         resets every page) or set memory.swap.max=0 for its cgroup"
                    );
                }
                reported = reachable;
            }
        })?;
    Ok(())
}

/// Is MPK usable here (CPU `pku` and kernel support)?
pub fn mpk_available() -> bool {
    PoolingAllocationConfig::are_memory_protection_keys_available()
}

/// Builds the engine, probing the pooling allocator and falling back as `settings` allow.
pub fn build_engine(settings: &EngineSettings) -> Result<(Engine, EngineFacts), EngineError> {
    let engine_error = |e: wasmtime::Error| EngineError::Engine(format!("{e:#}"));
    // The pools to try, in order: MPK costs every host call a switch of the thread's keys, so
    // `Auto` takes it only for a pool that does not fit in the address space without it.
    let attempts: &[bool] = match settings.mpk {
        MpkChoice::Disable => &[false],
        MpkChoice::Auto if mpk_available() => &[false, true],
        MpkChoice::Auto => &[false],
        MpkChoice::Enable => {
            if !mpk_available() {
                return Err(EngineError::Engine(
                    "memory protection keys were required but this CPU or kernel does not offer them"
                        .into(),
                ));
            }
            &[true]
        }
    };
    if settings.allocator != AllocatorChoice::OnDemand {
        let pagemap_scan = decide_pagemap_scan(settings.pagemap_scan);
        let mut last_error = None;
        for &mpk in attempts {
            let mut config = base_config(settings);
            config.allocation_strategy(InstanceAllocationStrategy::Pooling(pooling_config(
                settings,
                mpk,
                pagemap_scan,
            )));
            // Creating the engine reserves the whole pool: this is the probe.
            match Engine::new(&config) {
                Ok(engine) => {
                    if mpk {
                        crate::pkeys::note_in_use();
                    }
                    check_map_count(settings.max_instances);
                    tracing::info!(
                        allocator = "pooling",
                        mpk,
                        pagemap_scan,
                        slots = settings.max_instances,
                        max_instance_memory = settings.max_instance_memory,
                        "engine ready"
                    );
                    if pagemap_scan
                        && settings.pagemap_scan == PagemapScanChoice::Enable
                        && swap_can_reach_this_process()
                    {
                        tracing::warn!(
                            "PAGEMAP_SCAN resets were required while swap may hold this \
                             process's memory: a page swapped out during a request is not reset \
                             for the next"
                        );
                    }
                    let facts = EngineFacts {
                        pooling: true,
                        mpk,
                        pagemap_scan,
                    };
                    return Ok((engine, facts));
                }
                Err(error) => {
                    tracing::info!(
                        mpk,
                        slots = settings.max_instances,
                        error = %format!("{error:#}"),
                        "the pool cannot be reserved this way"
                    );
                    last_error = Some(error);
                }
            }
        }
        if let Some(error) = last_error {
            if settings.allocator == AllocatorChoice::Pooling {
                return Err(engine_error(error));
            }
            tracing::warn!(
                error = %format!("{error:#}"),
                "cannot reserve the pooling allocator; falling back to on-demand allocation"
            );
        }
    }
    let mut config = base_config(settings);
    config.allocation_strategy(InstanceAllocationStrategy::OnDemand);
    let engine = Engine::new(&config).map_err(engine_error)?;
    tracing::info!(allocator = "on-demand", mpk = false, "engine ready");
    Ok((
        engine,
        EngineFacts {
            pooling: false,
            mpk: false,
            pagemap_scan: false,
        },
    ))
}

/// Advances the engine's epoch every [`EPOCH_TICK`] until the engine is dropped.
pub(crate) fn spawn_epoch_ticker(engine: &Engine) -> std::io::Result<()> {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("meshwa-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::swap_reachable;

    const NO_SWAP: &str = "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n";
    const SWAP: &str = "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n\
                        /swapfile                               file\t\t524284\t\t0\t\t-2\n";

    /// A cgroup tree where `limited` (if any) has `memory.swap.max` 0 and every other cgroup
    /// "max".
    fn tree(limited: Option<&'static str>) -> impl Fn(&Path) -> Option<String> {
        move |path: &Path| {
            let dir = path.parent()?.to_str()?;
            (path.file_name()? == "memory.swap.max" && dir != "/sys/fs/cgroup").then(|| {
                if Some(dir) == limited {
                    "0\n".to_string()
                } else {
                    "max\n".to_string()
                }
            })
        }
    }

    #[test]
    fn without_swap_areas_swap_cannot_reach_the_process() {
        assert!(!swap_reachable(Some(NO_SWAP), Some("0::/a\n"), tree(None)));
        assert!(!swap_reachable(Some(NO_SWAP), None, tree(None)));
    }

    #[test]
    fn with_a_swap_area_swap_reaches_the_process_unless_its_cgroup_forbids_it() {
        let cgroup = Some("0::/system.slice/meshwa.service\n");
        assert!(swap_reachable(Some(SWAP), cgroup, tree(None)));
        // The process's own cgroup, or any ancestor of it, with `memory.swap.max` 0.
        for limited in [
            "/sys/fs/cgroup/system.slice/meshwa.service",
            "/sys/fs/cgroup/system.slice",
        ] {
            assert!(!swap_reachable(Some(SWAP), cgroup, tree(Some(limited))));
        }
        // A sibling's limit is not this process's.
        let sibling = "/sys/fs/cgroup/system.slice/other.service";
        assert!(swap_reachable(Some(SWAP), cgroup, tree(Some(sibling))));
    }

    #[test]
    fn what_cannot_be_read_counts_as_swap_that_reaches() {
        // No /proc/swaps; a cgroup v1 process (no `0::` line); no cgroup file.
        assert!(swap_reachable(
            None,
            Some("0::/a\n"),
            tree(Some("/sys/fs/cgroup/a"))
        ));
        assert!(swap_reachable(
            Some(SWAP),
            Some("4:memory:/a\n"),
            tree(None)
        ));
        assert!(swap_reachable(Some(SWAP), None, tree(None)));
    }
}
