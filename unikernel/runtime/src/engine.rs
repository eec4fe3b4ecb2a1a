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
//! - **An explicit target.** The kernel has no compiler. [`Execution::Native`] is x86_64 code
//!   for the kernel's own triple (`x86_64-unknown-none`: an artifact loads only into an engine
//!   whose host triple it names); [`Execution::Pulley`] is bytecode for wasmtime's portable
//!   interpreter. Without a target, wasmtime picks Pulley only where Cranelift has no backend for
//!   the host (`build.rs`: `default_target_pulley`); `Config::target` is available without a
//!   compiler.
//! - **No signals, no guard pages, no reservation, no CoW.** The kernel build has no virtual
//!   memory (`has_virtual_memory` is false without `std` or `custom-virtual-memory`), so its
//!   memories are `MallocMemory`, which refuses a guard, a reservation or copy-on-write, and it
//!   has no signal handlers: bounds are checked explicitly and traps are raised by a call into
//!   wasmtime, which unwinds by itself. An explicit target also switches off the host-specific
//!   tuning `Config::validate` applies otherwise, so the 64-bit defaults (4 GiB reservation,
//!   32 MiB guard, CoW on) are undone by hand, identically on both sides since they are checked.
//! - **Native code's float ABI.** `x86_64-unknown-none` is a soft-float target and Cranelift's
//!   code is hard-float: they may not exchange floats in registers, which wasmtime only does in
//!   float libcalls, which code compiled with SSE 4.1 (`NATIVE_FEATURES`) does not make. wasmtime
//!   then checks the features against the CPU when the code is loaded (the kernel answers
//!   `detect_host_feature` from CPUID). Code is published without changing page protections: the
//!   kernel's address space is executable throughout.
//! - **Epoch interruption.** The kernel's timer interrupt advances the epoch every [`TICK_MS`];
//!   each request's store gets a deadline of [`deadline_ticks`] ticks. Fuel would cost more per
//!   instruction and needs no timer, but a deadline is a wall-clock notion.
//! - **Stacks.** Host calls run on a fiber stack (`async_stack_size`) because the wasi:io host
//!   is async; Pulley runs wasm on its own stack (`max_wasm_stack`). The defaults (2 MiB and
//!   512 KiB) are kept.

use alloc::sync::Arc;

use wasmtime::{Config, CustomCodeMemory};

/// How often the embedder advances the engine's epoch, in milliseconds.
///
/// The embedder calls [`wasmtime::Engine::increment_epoch`] once per tick: the kernel from its
/// 100 Hz timer interrupt, tests from a thread. A function's deadline is a whole number of ticks
/// ([`deadline_ticks`]), so a function may run up to one tick longer than its `timeout_ms`, never
/// shorter. Guest code checks the epoch at function entries and loop heads.
pub const TICK_MS: u64 = 10;

/// What precompiled code is for: the interpreter, or the kernel's own CPU.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Execution {
    /// Pulley bytecode (`pulley64`), run by wasmtime's interpreter: every memory access checked
    /// by the interpreter, nothing asked of the platform.
    #[default]
    Pulley,
    /// x86_64 machine code from Cranelift, run directly: explicit bounds checks (no guard pages,
    /// no signal-based traps), traps raised through wasmtime's own unwinder.
    Native,
}

impl Execution {
    /// The target triple code is compiled for.
    pub fn target(self) -> &'static str {
        match self {
            Execution::Pulley => "pulley64",
            // The kernel's own triple: a compiled artifact loads only into an engine whose host
            // triple is the one it was compiled for.
            Execution::Native => "x86_64-unknown-none",
        }
    }
}

/// x86 features native code is compiled with, and checked for when it is loaded. SSE 4.1 makes
/// wasm's float rounding instructions native; without it Cranelift calls float libcalls, whose
/// ABI (floats in SSE registers) the soft-float `x86_64-unknown-none` kernel does not share.
/// QEMU's `-cpu qemu64` needs `+ssse3,+sse4.1,+sse4.2` for these (xtask's `qemu` adds them).
pub const NATIVE_FEATURES: [&str; 4] = ["has_sse3", "has_ssse3", "has_sse41", "has_sse42"];

/// The engine configuration of the bundler (plus Cranelift) and the kernel.
pub fn engine_config(execution: Execution) -> Config {
    let mut config = Config::new();
    #[allow(
        clippy::expect_used,
        reason = "constant triples; a test checks they parse, no input reaches this"
    )]
    config
        .target(execution.target())
        .expect("wasmtime knows the target");
    config
        .signals_based_traps(false)
        .memory_reservation(0)
        .memory_guard_size(0)
        .guard_before_linear_memory(false)
        .memory_reservation_for_growth(1 << 20)
        .memory_init_cow(false)
        .epoch_interruption(true)
        .wasm_component_model(true);
    if execution == Execution::Native {
        #[allow(
            unsafe_code,
            reason = "two wasmtime settings whose soundness is the platform's to promise"
        )]
        // SAFETY: `x86_float_abi_ok`: native code is compiled with SSE 4.1 and 4.2
        // (`NATIVE_FEATURES`), so no float libcall crosses between Cranelift's hard-float code
        // and the soft-float kernel (wasmtime's documented condition (b)); the only other place
        // floats cross is the component model's host calls, which pass them in memory (`ValRaw`
        // arrays), not registers. `cranelift_flag_enable`: the features are checked against the
        // CPU when the code is loaded (`detect_host_feature` in the kernel, CPUID).
        unsafe {
            config.x86_float_abi_ok(true);
            #[cfg(feature = "compile")]
            for feature in NATIVE_FEATURES {
                config.cranelift_flag_enable(feature);
            }
        }
        // Without virtual memory wasmtime cannot flip code pages to executable; the kernel's
        // address space is executable everywhere, so publishing is nothing to do.
        config.with_custom_code_memory(Some(Arc::new(IdentityMapped)));
    }
    config
}

/// Code memory on an identity-mapped, executable address space: nothing to change on publish.
/// (There is no W^X in the unikernel: see docs/unikernel.md.)
struct IdentityMapped;

impl CustomCodeMemory for IdentityMapped {
    fn required_alignment(&self) -> usize {
        1
    }

    fn publish_executable(&self, _ptr: *const u8, _len: usize) -> wasmtime::Result<()> {
        Ok(())
    }

    fn unpublish_executable(&self, _ptr: *const u8, _len: usize) -> wasmtime::Result<()> {
        Ok(())
    }
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
        wasmtime::Engine::new(&engine_config(Execution::Pulley)).unwrap();
        wasmtime::Engine::new(&engine_config(Execution::Native)).unwrap();
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
