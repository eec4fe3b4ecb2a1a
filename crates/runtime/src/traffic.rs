//! A function's traffic over the last minutes, for the dashboard: per [`INTERVAL`], how many
//! invocations (from outside and in-process), how many failed, and their latency distribution.
//!
//! Policy, and why:
//! - **Ten minutes, in memory.** [`INTERVALS`] intervals of ten seconds: what a page needs to
//!   draw "the last minutes" without a time-series database. Prometheus (`/metrics`) stays the
//!   long-term record.
//! - **Latency as a log-linear histogram**: four buckets per power of two of microseconds, so
//!   each bucket is at most 25 % wide and a percentile (reported as its bucket's midpoint) is
//!   within 12.5 % of the true one, plenty for a plot; 108 counters cover 1 µs to 134 s
//!   (longer is counted in the last bucket).
//! - **Nothing until first use, and no lock**: the ten minutes (about 26 KiB) are allocated at a
//!   function's first invocation, so a deployed function nobody calls costs a pointer. Recording
//!   is two or three atomic additions: a mutex here, shared by every worker thread calling a
//!   busy function, measurably slowed in-process invocations on two threads. The interval being
//!   reused is cleared under a lock, once per interval; a count racing that boundary may land
//!   in the neighbouring interval, which a plot does not show.
//! - **Kept across redeploys**: a new version of an app takes its functions' history over
//!   ([`Traffic::take_over`]), so a deploy does not blank the plots.
//! - The clock is the wall clock, so that intervals line up with log entries' times; a clock
//!   stepped backwards only makes some intervals look empty.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The width of one interval.
pub const INTERVAL: Duration = Duration::from_secs(10);
/// Intervals kept: ten minutes.
pub const INTERVALS: usize = 60;

/// Latency buckets: 0–7 µs one each, then four per power of two up to 2^27 µs.
const BUCKETS: usize = 108;

struct Interval {
    /// Which interval this is (intervals since the Unix epoch); older ones are reused.
    number: AtomicU64,
    requests: AtomicU32,
    errors: AtomicU32,
    latency: [AtomicU32; BUCKETS],
}

impl Interval {
    fn empty() -> Interval {
        Interval {
            number: AtomicU64::new(0),
            requests: AtomicU32::new(0),
            errors: AtomicU32::new(0),
            latency: std::array::from_fn(|_| AtomicU32::new(0)),
        }
    }
}

/// One function's recent traffic.
#[derive(Default)]
pub struct Traffic {
    intervals: OnceLock<Box<[Interval; INTERVALS]>>,
    /// Held while an interval is cleared for reuse.
    clearing: Mutex<()>,
}

/// One interval of [`Traffic::points`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrafficPoint {
    /// When the interval started, in milliseconds since the Unix epoch.
    pub start_ms: u64,
    pub requests: u32,
    /// Invocations that failed or answered a 5xx status.
    pub errors: u32,
    /// Latency percentiles in microseconds (to the response head); `None` without requests.
    pub p50_us: Option<u64>,
    pub p90_us: Option<u64>,
    pub p99_us: Option<u64>,
}

impl Traffic {
    /// Counts one invocation that took `duration`.
    pub(crate) fn record(&self, duration: Duration, failed: bool) {
        self.record_at(SystemTime::now(), duration, failed);
    }

    fn record_at(&self, now: SystemTime, duration: Duration, failed: bool) {
        let number = interval_number(now);
        let micros = u64::try_from(duration.as_micros()).unwrap_or(u64::MAX);
        let intervals = self
            .intervals
            .get_or_init(|| Box::new(std::array::from_fn(|_| Interval::empty())));
        let slot = &intervals[(number % INTERVALS as u64) as usize];
        if slot.number.load(Ordering::Acquire) != number {
            // A poisoned lock guards nothing but this clearing, which a panic cannot tear.
            let _clearing = self.clearing.lock().unwrap_or_else(|p| p.into_inner());
            if slot.number.load(Ordering::Acquire) != number {
                slot.requests.store(0, Ordering::Relaxed);
                slot.errors.store(0, Ordering::Relaxed);
                for bucket in &slot.latency {
                    bucket.store(0, Ordering::Relaxed);
                }
                slot.number.store(number, Ordering::Release);
            }
        }
        slot.requests.fetch_add(1, Ordering::Relaxed);
        if failed {
            slot.errors.fetch_add(1, Ordering::Relaxed);
        }
        slot.latency[bucket(micros)].fetch_add(1, Ordering::Relaxed);
    }

    /// The last [`INTERVALS`] intervals, oldest first, ending with the current (partial) one;
    /// intervals without invocations are there with zero requests.
    pub fn points(&self) -> Vec<TrafficPoint> {
        self.points_at(SystemTime::now())
    }

    fn points_at(&self, now: SystemTime) -> Vec<TrafficPoint> {
        let current = interval_number(now);
        let intervals = self.intervals.get();
        let first = current.saturating_sub(INTERVALS as u64 - 1);
        (first..=current)
            .map(|number| {
                let kept = intervals
                    .map(|all| &all[(number % INTERVALS as u64) as usize])
                    .filter(|slot| slot.number.load(Ordering::Acquire) == number);
                let start_ms = number * INTERVAL.as_millis() as u64;
                let Some(slot) = kept else {
                    return TrafficPoint {
                        start_ms,
                        requests: 0,
                        errors: 0,
                        p50_us: None,
                        p90_us: None,
                        p99_us: None,
                    };
                };
                let latency: [u32; BUCKETS] =
                    std::array::from_fn(|i| slot.latency[i].load(Ordering::Relaxed));
                TrafficPoint {
                    start_ms,
                    requests: slot.requests.load(Ordering::Relaxed),
                    errors: slot.errors.load(Ordering::Relaxed),
                    p50_us: percentile(&latency, 0.50),
                    p90_us: percentile(&latency, 0.90),
                    p99_us: percentile(&latency, 0.99),
                }
            })
            .collect()
    }

    /// Takes the history of `older` (the same function in the app's previous version) over,
    /// if this one has none yet.
    pub(crate) fn take_over(&self, older: &Traffic) {
        let Some(history) = older.intervals.get() else {
            return;
        };
        let copy: Box<[Interval; INTERVALS]> = Box::new(std::array::from_fn(|i| {
            let from = &history[i];
            let to = Interval::empty();
            to.number
                .store(from.number.load(Ordering::Acquire), Ordering::Relaxed);
            to.requests
                .store(from.requests.load(Ordering::Relaxed), Ordering::Relaxed);
            to.errors
                .store(from.errors.load(Ordering::Relaxed), Ordering::Relaxed);
            for (to, from) in to.latency.iter().zip(&from.latency) {
                to.store(from.load(Ordering::Relaxed), Ordering::Relaxed);
            }
            to
        }));
        // Set only if this version has recorded nothing yet (it is not reachable before).
        let _ = self.intervals.set(copy);
    }
}

fn interval_number(now: SystemTime) -> u64 {
    let since_epoch = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    since_epoch.as_secs() / INTERVAL.as_secs()
}

/// The latency bucket of `micros`.
fn bucket(micros: u64) -> usize {
    if micros < 8 {
        return micros as usize;
    }
    let power = 63 - u64::from(micros.leading_zeros());
    let quarter = (micros >> (power - 2)) & 3;
    ((4 * power + quarter) as usize).min(BUCKETS - 1)
}

/// The midpoint of bucket `index`, in microseconds.
fn midpoint(index: usize) -> u64 {
    if index < 8 {
        return index as u64;
    }
    let (power, quarter) = (index as u64 / 4, index as u64 % 4);
    let width = 1 << (power - 2);
    (1 << power) + quarter * width + width / 2
}

/// The `quantile` of the latencies counted in `buckets`, or `None` if there are none.
fn percentile(buckets: &[u32; BUCKETS], quantile: f64) -> Option<u64> {
    let total: u64 = buckets.iter().map(|&n| u64::from(n)).sum();
    if total == 0 {
        return None;
    }
    let rank = ((quantile * total as f64).ceil() as u64).max(1);
    let mut seen = 0;
    for (index, &count) in buckets.iter().enumerate() {
        seen += u64::from(count);
        if seen >= rank {
            return Some(midpoint(index));
        }
    }
    Some(midpoint(BUCKETS - 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_latency_falls_in_a_bucket_whose_midpoint_is_within_an_eighth() {
        for micros in (1..100_000).chain([1 << 20, 123_456_789, 134_000_000]) {
            let index = bucket(micros);
            let middle = midpoint(index) as f64;
            let error = (middle - micros as f64).abs() / micros as f64;
            assert!(error <= 0.125, "{micros} µs: bucket {index} says {middle}");
            assert!(
                index == 0 || bucket(micros - 1) <= index,
                "monotonic at {micros}"
            );
        }
        assert_eq!(bucket(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn percentiles_errors_and_empty_intervals_are_reported_per_interval() {
        let traffic = Traffic::default();
        let start = UNIX_EPOCH + Duration::from_secs(1_000_000);
        for i in 1..=100u64 {
            traffic.record_at(start, Duration::from_micros(i * 100), i > 95);
        }
        traffic.record_at(start + 2 * INTERVAL, Duration::from_millis(3), false);

        let points = traffic.points_at(start + 2 * INTERVAL);
        assert_eq!(points.len(), INTERVALS);
        let [.., busy, idle, current] = points.as_slice() else {
            unreachable!()
        };
        assert_eq!((busy.requests, busy.errors), (100, 5));
        assert_eq!(busy.start_ms, 1_000_000_000);
        let near = |got: Option<u64>, want: u64| {
            let got = got.unwrap() as f64;
            assert!(
                (got - want as f64).abs() <= want as f64 * 0.125,
                "{got} vs {want}"
            );
        };
        near(busy.p50_us, 5_000);
        near(busy.p90_us, 9_000);
        near(busy.p99_us, 9_900);
        assert_eq!((idle.requests, idle.p50_us), (0, None));
        assert_eq!(current.requests, 1);
        near(current.p99_us, 3_000);

        // Ten minutes later the old intervals have aged out, even where their slot is reused.
        let later = start + INTERVAL * (INTERVALS as u32 + 2);
        traffic.record_at(later, Duration::from_millis(1), false);
        let points = traffic.points_at(later);
        assert_eq!(points.iter().map(|p| p.requests).sum::<u32>(), 1);

        let newer = Traffic::default();
        newer.take_over(&traffic);
        assert_eq!(newer.points_at(later).last().unwrap().requests, 1);
    }
}
