//! `meshwa-bench density`: how many instances one process can hold live at once, and what each
//! costs in resident memory and kernel mappings.
//!
//! Two numbers per setting:
//! - **slots that fit**: the largest pool the allocator can reserve, found by building engines
//!   of growing size (a binary search) until the reservation fails. What binds it is the address
//!   space (each memory slot is its reservation plus a guard) or `vm.max_map_count`.
//! - **held live**: that many requests (up to `--instances`) made in-process to a function that
//!   answers its head and then waits for a request body that never comes (`guests/echo`), so
//!   every instance stays alive, exactly as slow in-flight requests hold them (`live`).

use std::path::{Path, PathBuf};

use clap::Args;
use meshwa_manifest::parse_size;
use meshwa_runtime::{AllocatorChoice, EngineSettings, MpkChoice, build_engine, mpk_available};

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
        let held = crate::live::hold(
            &row.settings,
            target,
            &args.component,
            "16MiB",
            data,
            &data.join("cache"),
        )?;
        println!(
            "| {} | {fit} | {} | {:.1} KiB | {:.1} KiB | {:.1} | {:.1} |",
            row.name,
            held.live,
            held.per_instance(held.rss_bytes) / 1024.0,
            held.per_instance(held.pss_bytes) / 1024.0,
            held.per_instance(held.mappings),
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
