//! `meshwa-bench density`: how many instances one process can hold live at once, and what each
//! costs in resident memory and kernel mappings.
//!
//! Two numbers per setting:
//! - **slots that fit**: the largest pool the allocator can reserve, found by building engines
//!   of growing size (a binary search) until the reservation fails. What binds it is the address
//!   space (each memory slot is its reservation plus a guard) or `vm.max_map_count`.
//! - **held live**: that many requests (up to `--instances`) made in-process to a function that
//!   answers its head and then waits for a request body that never comes (`guests/echo`), so
//!   every instance stays alive, exactly as slow in-flight requests hold them. RSS, PSS and
//!   mappings are read from `/proc/self` before and while they are held.

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use clap::Args;
use hyper::body::{Body, Frame};
use meshwa_manifest::parse_size;
use meshwa_runtime::{
    AllocatorChoice, BodyError, EngineSettings, Function, MpkChoice, Runtime, build_engine,
    mpk_available,
};

#[derive(Args)]
pub struct DensityArgs {
    /// A function that answers its head, then reads its request body (`guests/echo`): each
    /// request then holds its instance, because the body never comes.
    #[arg(long)]
    component: PathBuf,
    /// Most linear memory of one instance (`--max-instance-memory` of `meshwa serve`); the pool
    /// reserves a slot of at least this size for every memory.
    #[arg(long, default_value = "64MiB", value_parser = parse_size)]
    max_memory: u64,
    /// Most live instances to hold per setting.
    #[arg(long, default_value_t = 100_000)]
    instances: u32,
}

/// Protection keys wasmtime can use for striping (16 on x86, key 0 is the default key).
const MPK_STRIPES_MAX: u64 = 15;
/// wasmtime's default guard after each linear memory on 64-bit hosts.
const GUARD_BYTES: u64 = 32 << 20;
/// wasmtime's default reservation for each linear memory on 64-bit hosts.
const DEFAULT_RESERVATION: u64 = 4 << 30;

pub fn run(args: DensityArgs) -> anyhow::Result<()> {
    let data = std::env::temp_dir().join(format!("meshwa-bench-density-{}", std::process::id()));
    let result = density_in(&args, &data);
    let _ = std::fs::remove_dir_all(&data);
    result
}

struct Row {
    name: String,
    settings: EngineSettings,
    /// The reservation per memory slot, for the MPK estimate.
    reservation: u64,
}

fn density_in(args: &DensityArgs, data: &Path) -> anyhow::Result<()> {
    let map_count = std::fs::read_to_string("/proc/sys/vm/max_map_count")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unknown".into());
    println!(
        "live instances of {} in one process; max memory per instance {} MiB; \
         vm.max_map_count = {map_count}; MPK available: {}\n",
        args.component.display(),
        args.max_memory >> 20,
        mpk_available()
    );
    let base = EngineSettings {
        allocator: AllocatorChoice::Pooling,
        mpk: MpkChoice::Disable,
        max_instance_memory: args.max_memory,
        ..EngineSettings::default()
    };
    let mut rows = vec![
        Row {
            name: "no MPK, 4 GiB reservation (default: no bounds checks)".into(),
            settings: base.clone(),
            reservation: DEFAULT_RESERVATION,
        },
        Row {
            name: format!(
                "no MPK, reservation = max memory ({} MiB: bounds checks)",
                args.max_memory >> 20
            ),
            settings: EngineSettings {
                memory_reservation: Some(args.max_memory),
                ..base.clone()
            },
            reservation: args.max_memory,
        },
    ];
    if mpk_available() {
        rows.push(Row {
            name: "MPK, 4 GiB reservation".into(),
            settings: EngineSettings {
                mpk: MpkChoice::Enable,
                ..base.clone()
            },
            reservation: DEFAULT_RESERVATION,
        });
    }

    println!(
        "| setting | pool slots that fit | held live | RSS per live instance | PSS per live instance | mappings per live instance | µs per instance made |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    let mut default_fit = None;
    for row in &rows {
        let fit = largest_pool(&row.settings, 1 << 21);
        if row.reservation == DEFAULT_RESERVATION && row.settings.mpk == MpkChoice::Disable {
            default_fit = Some(fit);
        }
        let target = fit.min(args.instances);
        let held = hold(row, target, &args.component, data)?;
        println!(
            "| {} | {fit} | {} | {:.1} KiB | {:.1} KiB | {:.1} | {:.1} |",
            row.name,
            held.live,
            held.rss_bytes as f64 / 1024.0 / f64::from(held.live.max(1)),
            held.pss_bytes as f64 / 1024.0 / f64::from(held.live.max(1)),
            held.mappings as f64 / f64::from(held.live.max(1)),
            held.make_micros
        );
    }
    if !mpk_available()
        && let Some(fit) = default_fit
    {
        let (stripes, plain, striped) = mpk_slot_bytes(args.max_memory, DEFAULT_RESERVATION);
        let estimate = u64::from(fit) * plain / striped;
        println!(
            "| MPK, 4 GiB reservation: not available here, computed | ≈ {estimate} ({stripes} stripes: a memory slot of {} MiB instead of {} MiB) | - | - | - | - | - |",
            striped >> 20,
            plain >> 20
        );
    }
    Ok(())
}

/// The bytes one memory slot takes without and with MPK striping, as wasmtime 48 lays out its
/// pool (`memory_pool.rs`, `calculate`): without keys a slot is its reservation plus a guard;
/// with them, neighbouring slots of other keys serve as the guard, so the slot shrinks by the
/// number of stripes, but never below the memory's maximum size.
pub(crate) fn mpk_slot_bytes(max_memory: u64, reservation: u64) -> (u64, u64, u64) {
    let faulting = reservation.max(max_memory) + GUARD_BYTES;
    let stripes = faulting.div_ceil(max_memory.max(1)).min(MPK_STRIPES_MAX);
    let striped = (faulting / stripes).max(max_memory);
    (stripes, faulting, striped)
}

/// The largest `max_instances` whose pool can be reserved (0 if none).
pub(crate) fn largest_pool(settings: &EngineSettings, ceiling: u32) -> u32 {
    let fits = |n: u32| {
        build_engine(&EngineSettings {
            max_instances: n,
            ..settings.clone()
        })
        .is_ok()
    };
    if fits(ceiling) {
        return ceiling;
    }
    let (mut fits_at, mut fails_at) = (0u32, ceiling);
    while fails_at - fits_at > 1 {
        let mid = fits_at + (fails_at - fits_at) / 2;
        if fits(mid) {
            fits_at = mid;
        } else {
            fails_at = mid;
        }
    }
    fits_at
}

struct Held {
    live: u32,
    rss_bytes: u64,
    pss_bytes: u64,
    mappings: u64,
    make_micros: f64,
}

/// Holds `target` instances live at once and measures what they cost.
fn hold(row: &Row, target: u32, component: &Path, data: &Path) -> anyhow::Result<Held> {
    if target == 0 {
        return Ok(Held {
            live: 0,
            rss_bytes: 0,
            pss_bytes: 0,
            mappings: 0,
            make_micros: 0.0,
        });
    }
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    tokio.block_on(async {
        let runtime = Runtime::new(
            EngineSettings {
                max_instances: target,
                tenant_max_instances: Some(target),
                ..row.settings.clone()
            },
            data,
        )?;
        // A long timeout: the instances must outlive the measurement.
        let function = crate::common::load_with(
            &runtime,
            component,
            "http",
            "max-memory = \"16MiB\", timeout = \"600s\"",
        )?;
        // One request first: the code is loaded and the first-use costs are not counted.
        drop(start(&function).await?);
        let (memory_before, maps_before) = (memory_now()?, mappings()?);
        let started = Instant::now();
        let mut held = Vec::with_capacity(target as usize);
        for _ in 0..target {
            held.push(start(&function).await?);
        }
        let make_micros = started.elapsed().as_secs_f64() * 1e6 / f64::from(target);
        let live = runtime.stats().live_instances;
        anyhow::ensure!(
            live == u64::from(target),
            "expected {target} live instances, the runtime counts {live}"
        );
        let (memory_after, maps_after) = (memory_now()?, mappings()?);
        drop(held);
        let after_drop = runtime.stats().live_instances;
        anyhow::ensure!(
            after_drop == 0,
            "{after_drop} instances outlived their requests"
        );
        Ok(Held {
            live: target,
            rss_bytes: memory_after.0.saturating_sub(memory_before.0),
            pss_bytes: memory_after.1.saturating_sub(memory_before.1),
            mappings: maps_after.saturating_sub(maps_before),
            make_micros,
        })
    })
}

/// Starts one request whose body never arrives; the instance lives as long as the response.
async fn start(
    function: &Function,
) -> anyhow::Result<http::Response<meshwa_runtime::ResponseBody>> {
    let request = http::Request::post("http://localhost/hold")
        .body(NeverBody)
        .map_err(|e| anyhow::anyhow!("request: {e}"))?;
    let response = function
        .handle(request, "density")
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    anyhow::ensure!(
        response.status() == 200,
        "the holder answered {}",
        response.status()
    );
    Ok(response)
}

/// A request body whose bytes never come: a client that sent its head and went quiet.
struct NeverBody;

impl Body for NeverBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        Poll::Pending
    }
}

/// Resident and proportional set size of this process (`/proc/self/smaps_rollup`), in bytes.
/// RSS counts a page of the shared memory image once per instance that maps it; PSS divides it
/// among them, which is what the instances cost the machine.
fn memory_now() -> anyhow::Result<(u64, u64)> {
    let rollup = std::fs::read_to_string("/proc/self/smaps_rollup")?;
    let field = |name: &str| {
        rollup
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| {
                rest.trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
            .map(|kib| kib * 1024)
            .ok_or_else(|| anyhow::anyhow!("no {name} in /proc/self/smaps_rollup"))
    };
    Ok((field("Rss:")?, field("Pss:")?))
}

fn mappings() -> anyhow::Result<u64> {
    Ok(std::fs::read_to_string("/proc/self/maps")?.lines().count() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mpk_slots_follow_wasmtime_layout() {
        // 64 MiB memories: 15 stripes (the key limit), each slot a fifteenth of 4 GiB + guard.
        let (stripes, plain, striped) = mpk_slot_bytes(64 << 20, DEFAULT_RESERVATION);
        assert_eq!((stripes, plain), (15, (4 << 30) + (32 << 20)));
        assert_eq!(striped, plain / 15);
        // 1 GiB memories: 5 stripes, and a slot can never be smaller than the memory.
        let (stripes, _, striped) = mpk_slot_bytes(1 << 30, DEFAULT_RESERVATION);
        assert_eq!(stripes, 5);
        assert!(striped >= 1 << 30);
    }
}
