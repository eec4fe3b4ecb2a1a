//! Driving one request's future to completion, without an async runtime.
//!
//! `wasmtime-wasi-io`'s streams and pollables are async, so a guest call is a future (wasmtime
//! runs the guest on a fiber and suspends it whenever a host future is pending). Nothing in this
//! host waits for I/O: request bodies are in memory, response bodies are collected in memory. The
//! one thing that can legitimately be pending is a wait on the clock (`subscribe-duration`), and
//! such a future asks to be polled again (`wake_by_ref`) each time it is not ready.
//!
//! So [`block_on`] polls in a loop and stops in three ways: the future is ready; it is pending
//! and nobody asked to be polled again, which would otherwise spin forever ([`Blocked::Stalled`],
//! a host bug reported as an internal error); or the function's deadline passed while the guest
//! was blocked in a host call ([`Blocked::Deadline`]), where epoch interruption cannot reach it
//! since no guest code runs. A guest spinning in its own code is stopped by the epoch instead:
//! the future then completes with the trap.

use alloc::sync::Arc;
use alloc::task::Wake;
use core::future::Future;
use core::pin::pin;
use core::sync::atomic::{AtomicBool, Ordering};
use core::task::{Context, Poll, Waker};

use crate::platform;

/// Why [`block_on`] gave up on a future.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Blocked {
    /// Pending with no wake-up requested: it would never complete.
    Stalled,
    /// The deadline (monotonic nanoseconds) passed while the future kept waiting.
    Deadline,
}

/// Records that a wake-up was requested since the last poll.
struct WakeFlag(AtomicBool);

impl Wake for WakeFlag {
    fn wake(self: Arc<Self>) {
        self.0.store(true, Ordering::Release);
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.store(true, Ordering::Release);
    }
}

/// Polls `future` until it is ready, it stalls, or the monotonic clock passes `deadline_ns`.
/// The future is dropped before an error is returned (for a guest call, that unwinds its fiber).
pub(crate) fn block_on<F: Future>(future: F, deadline_ns: u64) -> Result<F::Output, Blocked> {
    let flag = Arc::new(WakeFlag(AtomicBool::new(false)));
    let waker = Waker::from(flag.clone());
    let mut context = Context::from_waker(&waker);
    let mut future = pin!(future);
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut context) {
            return Ok(output);
        }
        if !flag.0.swap(false, Ordering::Acquire) {
            return Err(Blocked::Stalled);
        }
        if platform::now_ns().is_some_and(|now| now >= deadline_ns) {
            return Err(Blocked::Deadline);
        }
        core::hint::spin_loop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::future::{pending, poll_fn, ready};

    #[test]
    fn ready_futures_complete() {
        assert_eq!(block_on(ready(7), u64::MAX), Ok(7));
    }

    #[test]
    fn a_future_nobody_wakes_stalls() {
        assert_eq!(block_on(pending::<()>(), u64::MAX), Err(Blocked::Stalled));
    }

    #[test]
    fn a_future_that_yields_completes() {
        let mut polls = 0;
        let future = poll_fn(|cx| {
            polls += 1;
            if polls < 100 {
                cx.waker().wake_by_ref();
                Poll::Pending
            } else {
                Poll::Ready(polls)
            }
        });
        assert_eq!(block_on(future, u64::MAX), Ok(100));
    }

    #[test]
    fn a_waiting_future_stops_at_the_deadline() {
        let future = poll_fn(|cx| {
            cx.waker().wake_by_ref();
            Poll::<()>::Pending
        });
        let deadline = platform::now_ns().unwrap() + 20_000_000;
        assert_eq!(block_on(future, deadline), Err(Blocked::Deadline));
    }
}
