//! Memory protection keys and the host threads that tear instances down.
//!
//! With MPK (`--mpk auto` on a CPU with `pku`), wasmtime colours each pooled linear memory with
//! a protection key, and a thread may touch that memory only while its PKRU register allows the
//! key. wasmtime switches PKRU as guest code is entered and left (every call into the host
//! allows all keys), and its fibers put back whatever the thread had before a guest ran. It does
//! not make the thread that *drops* a store able to write that store's memory, although
//! dropping it resets the memory (a memset of the pages kept resident). A thread's PKRU starts
//! as Linux's default, which denies every key but 0, so a server worker made before the engine
//! (as `meshwa serve`'s are) died of SIGSEGV at the first teardown: every request crashed the
//! server on the first machine with `pku` it ran on (`tests/all/protection_keys.rs`).
//!
//! So before the host resets or reads a pooled memory outside guest code (dropping a store,
//! snapshotting a pre-initialized one) it calls [`allow_host_all_keys`], which sets the state
//! wasmtime itself gives host code during a host call. Host code is trusted with every memory
//! already; the keys keep *guests* in their own stripe, and guest code runs only after
//! wasmtime restricted PKRU again.

use std::sync::atomic::{AtomicBool, Ordering};

/// Whether an engine of this process stripes its pool with protection keys: then the CPU and
/// kernel have them, and writing PKRU is valid.
static IN_USE: AtomicBool = AtomicBool::new(false);

/// An engine with MPK was built (see `engine::build_engine`).
pub(crate) fn note_in_use() {
    IN_USE.store(true, Ordering::Release);
}

/// Lets this thread read and write memory of every protection key, where MPK is in use (a
/// no-op elsewhere). About as cheap as a function call: one register write.
pub(crate) fn allow_host_all_keys() {
    #[cfg(target_arch = "x86_64")]
    if IN_USE.load(Ordering::Acquire) {
        // Written by hand: wasmtime's own switch (`mpk::allow`) is not public, and no maintained
        // crate wraps `wrpkru` (glibc's `pkey_set` is one key at a time and not in `libc`).
        #[allow(unsafe_code)]
        // SAFETY: `IN_USE` is set only after wasmtime built a pool with protection keys, which
        // it does only where the CPU and the kernel support them (`pku` and `ospke`), so
        // `wrpkru` exists. It reads eax (the new PKRU), requires ecx = edx = 0, and changes no
        // other register and no memory; writing 0 grants every key read and write, the value
        // wasmtime itself sets for host code. Not `nomem`: memory accesses must not be moved
        // across a change of what memory this thread may access.
        unsafe {
            std::arch::asm!(
                "wrpkru",
                in("eax") 0u32,
                in("ecx") 0u32,
                in("edx") 0u32,
                options(nostack, preserves_flags),
            );
        }
    }
}
