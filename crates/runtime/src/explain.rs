//! Where an invocation's time goes (`meshwa serve --explain`): a per-function account of each
//! step of the instance lifecycle, for finding what a boundary between functions costs.
//!
//! Each invocation carries a [`HopClock`] in its store. It notes when admission ended, when the
//! instance was made, and when the run ended; wasmtime's call hook splits the run into time in
//! guest code and time in the host, and the host's share is split further into key-value
//! calls, waiting for in-process callees (`invoke`, `*.internal` requests), and the rest (buffers,
//! WASI, streams, epoch yields). Teardown (dropping the store, which resets the instance's
//! memory) is timed after the store is gone. Minor page faults are counted for the
//! instantiation and the teardown, both of which run on one thread without yielding (the
//! guest's own run may hop between worker threads, so its faults are not per-thread exact;
//! count them process-wide instead). Each function sums its invocations into a
//! [`PhaseMeter`]; [`Function::phases`](crate::Function::phases) reads it.
//!
//! Off by default: without `--explain` no store gets a clock or a call hook, so the cost is
//! one branch per invocation. With it, each host call pays two clock reads (~50 ns) and each
//! invocation four reads of `/proc/thread-self/stat`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use wasmtime::CallHook;

/// One function's invocations, summed (durations as totals: divide by `invocations`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PhaseTotals {
    /// Invocations that ended (their instance was torn down).
    pub invocations: u64,
    /// Waiting for a slot of the pool (and of the tenant's quota).
    pub admission: Duration,
    /// Making the store and instantiating the component, start functions included.
    pub instantiate: Duration,
    /// Running guest code.
    pub guest: Duration,
    /// In key-value host calls.
    pub key_value: Duration,
    /// Key-value host calls made.
    pub key_value_calls: u64,
    /// Waiting for in-process callees to answer (their own invocations are counted under them).
    pub calls: Duration,
    /// The rest of the run in the host: buffers, WASI, streams, yields at epoch ticks.
    pub other_host: Duration,
    /// Calls from guest code into the host (imports and libcalls such as `memory.grow`).
    pub host_calls: u64,
    /// Dropping the store: releasing the instance and resetting its memory.
    pub teardown: Duration,
    /// Minor page faults while instantiating.
    pub instantiate_faults: u64,
    /// Minor page faults while tearing down.
    pub teardown_faults: u64,
}

/// The live sums behind [`PhaseTotals`], in nanoseconds.
#[derive(Debug, Default)]
pub(crate) struct PhaseMeter {
    invocations: AtomicU64,
    admission: AtomicU64,
    instantiate: AtomicU64,
    guest: AtomicU64,
    key_value: AtomicU64,
    key_value_calls: AtomicU64,
    calls: AtomicU64,
    other_host: AtomicU64,
    host_calls: AtomicU64,
    teardown: AtomicU64,
    instantiate_faults: AtomicU64,
    teardown_faults: AtomicU64,
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

impl PhaseMeter {
    pub(crate) fn snapshot(&self) -> PhaseTotals {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let duration = |counter: &AtomicU64| Duration::from_nanos(load(counter));
        PhaseTotals {
            invocations: load(&self.invocations),
            admission: duration(&self.admission),
            instantiate: duration(&self.instantiate),
            guest: duration(&self.guest),
            key_value: duration(&self.key_value),
            key_value_calls: load(&self.key_value_calls),
            calls: duration(&self.calls),
            other_host: duration(&self.other_host),
            host_calls: load(&self.host_calls),
            teardown: duration(&self.teardown),
            instantiate_faults: load(&self.instantiate_faults),
            teardown_faults: load(&self.teardown_faults),
        }
    }

    /// Adds one finished invocation: `clock` from its store, `teardown` and its faults measured
    /// around dropping the store.
    pub(crate) fn record(&self, clock: &HopClock, teardown: Duration, teardown_faults: u64) {
        let add = |counter: &AtomicU64, value: u64| {
            counter.fetch_add(value, Ordering::Relaxed);
        };
        let run = clock
            .ran_until
            .unwrap_or_else(Instant::now)
            .saturating_duration_since(clock.instantiated.unwrap_or(clock.admitted));
        let calls = Duration::from_nanos(clock.calls.load(Ordering::Relaxed));
        let other_host = run
            .saturating_sub(clock.guest)
            .saturating_sub(clock.key_value)
            .saturating_sub(calls);
        add(&self.invocations, 1);
        add(
            &self.admission,
            nanos(clock.admitted.saturating_duration_since(clock.started)),
        );
        if let Some(instantiated) = clock.instantiated {
            add(
                &self.instantiate,
                nanos(instantiated.saturating_duration_since(clock.admitted)),
            );
        }
        add(&self.guest, nanos(clock.guest));
        add(&self.key_value, nanos(clock.key_value));
        add(&self.key_value_calls, clock.key_value_calls);
        add(&self.calls, nanos(calls));
        add(&self.other_host, nanos(other_host));
        add(&self.host_calls, clock.host_calls);
        add(&self.teardown, nanos(teardown));
        add(&self.instantiate_faults, clock.instantiate_faults);
        add(&self.teardown_faults, teardown_faults);
    }
}

/// One invocation's clock, kept in its store.
#[derive(Debug)]
pub(crate) struct HopClock {
    started: Instant,
    admitted: Instant,
    instantiated: Option<Instant>,
    ran_until: Option<Instant>,
    /// Since when guest code runs, while it does.
    in_guest_since: Option<Instant>,
    guest: Duration,
    key_value: Duration,
    key_value_calls: u64,
    host_calls: u64,
    /// Nanoseconds waiting for callees; shared with the `wasi:http` hooks, whose in-process
    /// calls run as futures outside any host call of this store.
    calls: Arc<AtomicU64>,
    faults_at_admission: u64,
    instantiate_faults: u64,
}

impl HopClock {
    /// A clock for an invocation that arrived at `started` and was admitted now.
    pub(crate) fn admitted(started: Instant) -> HopClock {
        HopClock {
            started,
            admitted: Instant::now(),
            instantiated: None,
            ran_until: None,
            in_guest_since: None,
            guest: Duration::ZERO,
            key_value: Duration::ZERO,
            key_value_calls: 0,
            host_calls: 0,
            calls: Arc::new(AtomicU64::new(0)),
            faults_at_admission: thread_minor_faults(),
            instantiate_faults: 0,
        }
    }

    /// Where the waiting time of in-process calls is added up.
    pub(crate) fn calls_meter(&self) -> Arc<AtomicU64> {
        self.calls.clone()
    }

    /// The instance exists: what came before was instantiation, guest start functions included.
    pub(crate) fn instantiated(&mut self) {
        let now = Instant::now();
        self.instantiate_faults = thread_minor_faults().saturating_sub(self.faults_at_admission);
        self.instantiated = Some(now);
        self.guest = Duration::ZERO;
        self.host_calls = 0;
        if self.in_guest_since.is_some() {
            self.in_guest_since = Some(now);
        }
    }

    /// The guest's run is over (its export returned, trapped or timed out).
    pub(crate) fn ran(&mut self) {
        let now = Instant::now();
        if let Some(since) = self.in_guest_since.take() {
            self.guest += now.saturating_duration_since(since);
        }
        self.ran_until = Some(now);
    }

    /// wasmtime's call hook: guest code starts or stops running.
    pub(crate) fn transition(&mut self, hook: CallHook) {
        let now = Instant::now();
        if hook.entering_host() {
            if matches!(hook, CallHook::CallingHost) {
                self.host_calls += 1;
            }
            if let Some(since) = self.in_guest_since.take() {
                self.guest += now.saturating_duration_since(since);
            }
        } else {
            self.in_guest_since = Some(now);
        }
    }

    /// A key-value host call that began at `started` has ended.
    pub(crate) fn key_value_call(&mut self, started: Instant) {
        self.key_value += started.elapsed();
        self.key_value_calls += 1;
    }
}

/// A caller waiting for its callees, from [`Waiting::start`] to [`Waiting::end`]: added to the
/// invocation's calls meter, with `--explain` (without it, nothing is read or added).
pub(crate) struct Waiting(Option<(Arc<AtomicU64>, Instant)>);

impl Waiting {
    pub(crate) fn start(meter: Option<&Arc<AtomicU64>>) -> Waiting {
        Waiting(meter.map(|meter| (meter.clone(), Instant::now())))
    }

    pub(crate) fn end(self) {
        if let Some((meter, started)) = self.0 {
            meter.fetch_add(nanos(started.elapsed()), Ordering::Relaxed);
        }
    }
}

/// Minor page faults of the calling thread so far (0 where `/proc` cannot tell).
///
/// Read from `/proc/thread-self/stat` through a file kept open per thread (one `pread` per
/// reading): the standard library has no `getrusage`, and calling it through `libc` would be
/// this crate's second `unsafe` block for a diagnostic.
pub(crate) fn thread_minor_faults() -> u64 {
    use std::cell::RefCell;
    use std::fs::File;
    use std::os::unix::fs::FileExt;

    thread_local! {
        static STAT: RefCell<Option<File>> = RefCell::new(File::open("/proc/thread-self/stat").ok());
    }
    STAT.with(|stat| {
        let stat = stat.borrow();
        let Some(file) = stat.as_ref() else {
            return 0;
        };
        let mut buffer = [0u8; 1024];
        let Ok(read) = file.read_at(&mut buffer, 0) else {
            return 0;
        };
        parse_minor_faults(&buffer[..read]).unwrap_or(0)
    })
}

/// Field 10 (`minflt`) of a `/proc/.../stat` line. The command name (field 2) is in
/// parentheses and may itself contain spaces and parentheses, so fields are counted from the
/// last `)`.
fn parse_minor_faults(stat: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(stat).ok()?;
    let after_name = &text[text.rfind(')')? + 1..];
    // Fields 3 (state) to 9 (flags) come first.
    after_name.split_whitespace().nth(7)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_minor_faults_after_the_command_name() {
        let line = b"1234 (tokio (x) 1) S 1 1234 1234 0 -1 4194560 5321 0 12 0 7 3 0 0 20 0";
        assert_eq!(parse_minor_faults(line), Some(5321));
        assert_eq!(parse_minor_faults(b"garbage"), None);
    }

    #[test]
    fn this_threads_faults_grow_when_it_touches_new_memory() {
        let before = thread_minor_faults();
        // 16 MiB of fresh pages, each touched once.
        let mut pages = vec![0u8; 16 << 20];
        for page in pages.chunks_mut(4096) {
            page[0] = 1;
        }
        std::hint::black_box(&pages);
        assert!(thread_minor_faults() > before + 1000);
    }

    #[test]
    fn guest_host_and_waiting_add_up_to_the_run() {
        let meter = PhaseMeter::default();
        let mut clock = HopClock::admitted(Instant::now());
        clock.instantiated();
        clock.transition(CallHook::CallingWasm);
        std::thread::sleep(Duration::from_millis(5));
        clock.transition(CallHook::CallingHost);
        let waiting = Waiting::start(Some(&clock.calls_meter()));
        std::thread::sleep(Duration::from_millis(5));
        waiting.end();
        clock.transition(CallHook::ReturningFromHost);
        clock.transition(CallHook::ReturningFromWasm);
        clock.ran();
        meter.record(&clock, Duration::from_micros(7), 0);
        let totals = meter.snapshot();
        assert_eq!(totals.invocations, 1);
        assert!(totals.guest >= Duration::from_millis(5));
        assert!(totals.calls >= Duration::from_millis(5));
        assert!(totals.guest < Duration::from_millis(10));
        assert_eq!(totals.teardown, Duration::from_micros(7));
    }
}
