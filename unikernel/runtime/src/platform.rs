//! What the embedder plugs in: a clock, a source of randomness, a sink for the functions' log
//! lines, and (on bare metal) the thread-local storage wasmtime needs.
//!
//! A hosted build has an operating system to ask for these; the kernel has none, so it hands
//! this crate plain functions once at boot (its TSC-based clock, RDRAND, its serial console).
//! On Linux (`std`) the clocks fall back to `std::time` when no hook is set, so that tests only
//! set what they want to observe.
//!
//! Randomness has no fallback on purpose: `wasi:random/random` promises cryptographic quality,
//! and a guest asking for it without a source set traps with a message saying so, instead of
//! silently getting predictable bytes. `wasi:random/insecure*` (hash-map seeds) use the same
//! source when there is one and a clock-seeded generator otherwise.

use core::sync::atomic::{AtomicU64, Ordering};

use spin::RwLock;

/// A hook the embedder may set.
type Hook<F> = RwLock<Option<F>>;

/// Monotonic nanoseconds since an arbitrary start (the kernel: since boot).
static CLOCK: Hook<fn() -> u64> = RwLock::new(None);
/// Nanoseconds since the Unix epoch.
static WALL_CLOCK: Hook<fn() -> u64> = RwLock::new(None);
/// Fills a buffer with cryptographically secure random bytes.
static RANDOM: Hook<fn(&mut [u8])> = RwLock::new(None);
/// Receives the functions' stdout/stderr lines and the host's failure log lines.
static LOG_SINK: Hook<fn(&str)> = RwLock::new(None);

/// Sets the monotonic clock (nanoseconds since an arbitrary start, never going back). It serves
/// `wasi:clocks/monotonic-clock`, waits on it (`subscribe-duration`), and the deadline of a
/// function blocked in a host call. Without one on bare metal, waits end at once.
pub fn set_clock(now_ns: fn() -> u64) {
    *CLOCK.write() = Some(now_ns);
}

/// Sets the wall clock (nanoseconds since the Unix epoch) for `wasi:clocks/wall-clock`. Without
/// one on bare metal, the wall clock reads the monotonic clock (1970 plus the uptime).
pub fn set_wall_clock(now_ns: fn() -> u64) {
    *WALL_CLOCK.write() = Some(now_ns);
}

/// Sets the source of `wasi:random/random` (cryptographic quality: the kernel uses RDRAND).
pub fn set_random(fill: fn(&mut [u8])) {
    *RANDOM.write() = Some(fill);
}

/// Sets where log lines go: each line a function writes to stdout or stderr (prefixed with the
/// function's id), and one line per failed request with its error id and the full error (the
/// client is told only the public message). Without a sink, lines are dropped.
pub fn set_log_sink(sink: fn(&str)) {
    *LOG_SINK.write() = Some(sink);
}

/// The monotonic clock, if there is one.
pub(crate) fn now_ns() -> Option<u64> {
    if let Some(clock) = *CLOCK.read() {
        return Some(clock());
    }
    hosted::now_ns()
}

/// The wall clock in nanoseconds since the Unix epoch.
pub(crate) fn wall_ns() -> u64 {
    if let Some(clock) = *WALL_CLOCK.read() {
        return clock();
    }
    hosted::wall_ns().or_else(now_ns).unwrap_or(0)
}

/// Cryptographically secure random bytes, or `None` when the embedder set no source.
pub(crate) fn secure_random(buffer: &mut [u8]) -> Option<()> {
    let fill = (*RANDOM.read())?;
    fill(buffer);
    Some(())
}

/// Random bytes of no particular quality: the secure source if there is one, else SplitMix64
/// over a counter mixed with the clock.
pub(crate) fn insecure_random(buffer: &mut [u8]) {
    if secure_random(buffer).is_some() {
        return;
    }
    static STATE: AtomicU64 = AtomicU64::new(0x853c_49e6_748f_ea9b);
    for chunk in buffer.chunks_mut(8) {
        let seed =
            STATE.fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed) ^ now_ns().unwrap_or(0);
        let bytes = splitmix64(seed).to_le_bytes();
        chunk.copy_from_slice(&bytes[..chunk.len()]);
    }
}

fn splitmix64(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Sends one line to the embedder's log sink, if any.
pub(crate) fn log(line: &str) {
    if let Some(sink) = *LOG_SINK.read() {
        sink(line);
    }
}

#[cfg(feature = "std")]
mod hosted {
    use std::sync::OnceLock;
    use std::time::{Instant, SystemTime, UNIX_EPOCH};

    pub(super) fn now_ns() -> Option<u64> {
        static START: OnceLock<Instant> = OnceLock::new();
        let elapsed = START.get_or_init(Instant::now).elapsed();
        Some(u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX))
    }

    pub(super) fn wall_ns() -> Option<u64> {
        let since = SystemTime::now().duration_since(UNIX_EPOCH).ok()?;
        u64::try_from(since.as_nanos()).ok()
    }
}

#[cfg(not(feature = "std"))]
mod hosted {
    pub(super) fn now_ns() -> Option<u64> {
        None
    }

    pub(super) fn wall_ns() -> Option<u64> {
        None
    }
}

/// wasmtime's thread-local storage on bare metal.
///
/// A `no_std` wasmtime keeps the state of the wasm activations running on the current thread
/// (the chain it unwinds a trap through, the current component-model task) in two pointer-sized
/// slots it reads and writes through `wasmtime_tls_get`/`wasmtime_tls_set`, which the embedder
/// must define. The kernel has one CPU and no threads: there is exactly one thread of execution
/// that enters wasmtime, so one static per slot *is* that thread's storage. Interrupt handlers
/// do not enter wasmtime (the timer only calls `Engine::increment_epoch`, an atomic add on the
/// engine that reads no TLS), and wasmtime itself saves and restores the slots when it switches
/// to and from a fiber's stack. Atomics make the statics `Sync` without any `unsafe`; `Relaxed`
/// suffices with a single CPU. A kernel that ran wasmtime on a second CPU would need one pair of
/// slots per CPU instead.
///
/// Only for `target_os = "none"`: a hosted build without `std` would run wasmtime on real
/// threads, where a single static is wrong, so there the missing symbols fail the link instead.
#[cfg(target_os = "none")]
mod tls {
    use core::ptr;
    use core::sync::atomic::{AtomicPtr, Ordering};

    static SLOTS: [AtomicPtr<u8>; 2] = [
        AtomicPtr::new(ptr::null_mut()),
        AtomicPtr::new(ptr::null_mut()),
    ];

    #[allow(
        unsafe_code,
        reason = "wasmtime links against this exact unmangled symbol; the body is safe code"
    )]
    #[unsafe(no_mangle)]
    extern "C" fn wasmtime_tls_get(slot: usize) -> *mut u8 {
        SLOTS
            .get(slot)
            .map_or(ptr::null_mut(), |value| value.load(Ordering::Relaxed))
    }

    #[allow(
        unsafe_code,
        reason = "wasmtime links against this exact unmangled symbol; the body is safe code"
    )]
    #[unsafe(no_mangle)]
    extern "C" fn wasmtime_tls_set(slot: usize, value: *mut u8) {
        if let Some(stored) = SLOTS.get(slot) {
            stored.store(value, Ordering::Relaxed);
        }
    }
}
