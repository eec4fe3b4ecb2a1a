//! The engine settings both sides share, and deadline arithmetic.
//!
//! A precompiled component loads only into an engine whose compilation-relevant settings match
//! the ones it was compiled with (wasmtime checks the target, the tunables and the wasm features
//! recorded in the artifact, `engine/serialization.rs`). The bundler compiles with
//! [`engine_config`] plus Cranelift, the kernel loads with [`engine_config`] alone: one function,
//! so the two cannot drift.
//!
//! Why these settings (wasmtime 48.0.8):
//!
//! - **Target `pulley64`.** The kernel has no compiler, and its first execution mode is Pulley,
//!   wasmtime's portable interpreter. Without an explicit target, wasmtime picks Pulley only
//!   where Cranelift has no backend for the host (`build.rs`: `default_target_pulley =
//!   !has_host_compiler_backend`); the kernel is x86_64, so a kernel engine left alone would
//!   expect native x86_64 code. `Config::target` is available without a compiler; loading checks
//!   that a Pulley target has the host's pointer width and endianness
//!   (`Engine::_check_compatible_with_native_host`).
//! - **No signals, no guard pages, no reservation, no CoW.** Pulley checks bounds explicitly and
//!   never uses signal-based traps (`Tunables::default_for_target` already turns those and the
//!   guard off for Pulley). But an explicit target also switches off the host-specific tuning
//!   `Config::validate` applies otherwise (`if self.target.is_none()`), which is what would set a
//!   zero reservation and no copy-on-write images on a platform without virtual memory. The kernel
//!   build has no virtual memory (`has_virtual_memory` is false without `std` or
//!   `custom-virtual-memory`), so its memories are `MallocMemory`, which refuses a guard, an
//!   ahead-of-time reservation, or CoW. The 64-bit defaults (4 GiB reservation, 32 MiB guard,
//!   CoW on) must be undone by hand, and identically on both sides since they are checked.
//! - **Epoch interruption.** The kernel's timer interrupt advances the epoch every [`TICK_MS`];
//!   each request's store gets a deadline of [`deadline_ticks`] ticks. Fuel would cost more per
//!   instruction and needs no timer, but a deadline is a wall-clock notion.
//! - **Stacks.** Pulley runs wasm on its own stack (`max_wasm_stack`, heap-allocated per store);
//!   host calls run on a fiber stack (`async_stack_size`) because the wasi:io host is async. The
//!   defaults (512 KiB and 2 MiB) are kept.

use wasmtime::Config;

/// How often the embedder advances the engine's epoch, in milliseconds.
///
/// The embedder calls [`wasmtime::Engine::increment_epoch`] once per tick: the kernel from its
/// 100 Hz timer interrupt, tests from a thread. A function's deadline is a whole number of ticks
/// ([`deadline_ticks`]), so a function may run up to one tick longer than its `timeout_ms`, never
/// shorter. Guest code checks the epoch at function entries and loop heads.
pub const TICK_MS: u64 = 10;

/// The target precompiled code is for: 64-bit little-endian Pulley bytecode.
pub const TARGET: &str = "pulley64";

/// The engine configuration of the bundler (plus Cranelift) and the kernel.
pub fn engine_config() -> Config {
    let mut config = Config::new();
    #[allow(
        clippy::expect_used,
        reason = "a constant triple; a test checks it parses, no input reaches this"
    )]
    config
        .target(TARGET)
        .expect("wasmtime knows the pulley64 target");
    config
        .signals_based_traps(false)
        .memory_reservation(0)
        .memory_guard_size(0)
        .guard_before_linear_memory(false)
        .memory_reservation_for_growth(1 << 20)
        .memory_init_cow(false)
        .epoch_interruption(true)
        .wasm_component_model(true);
    config
}

/// The epoch deadline for a timeout: whole ticks, rounded up, plus one because the first tick
/// may come at once (the store's count starts at the current epoch, not at a tick boundary).
pub fn deadline_ticks(timeout_ms: u64) -> u64 {
    timeout_ms.div_ceil(TICK_MS).saturating_add(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_engine_config_is_valid() {
        wasmtime::Engine::new(&engine_config()).unwrap();
    }

    #[test]
    fn deadlines_round_up_to_whole_ticks() {
        assert_eq!(deadline_ticks(0), 1);
        assert_eq!(deadline_ticks(1), 2);
        assert_eq!(deadline_ticks(10), 2);
        assert_eq!(deadline_ticks(2000), 201);
        assert_eq!(deadline_ticks(u64::MAX), u64::MAX.div_ceil(TICK_MS) + 1);
    }
}
