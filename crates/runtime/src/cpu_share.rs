//! CPU share: on how many worker threads one tenant's guest code may run at once.
//!
//! Policy, and why:
//! - Every guest yields at least once per epoch tick (1 ms), so no instance keeps a worker for
//!   long. But when a tenant has CPU-bound instances on *every* worker, another tenant's request
//!   waits for a slice to end, often two, before any worker is free to run it: its latency grows
//!   by milliseconds although nothing is overloaded.
//! - So while more than one tenant is busy, one tenant's guest code runs on at most `lanes`
//!   workers at once (the operator's `--tenant-cpu-lanes`; by default all workers but one). A
//!   worker stays free for everybody else, and a request of another tenant starts at once.
//! - "Busy" means: ran guest code within the last [`CONTENTION_WINDOW`]. A tenant alone on the
//!   server uses every worker, because the cap would cost throughput and protect no one.
//! - A lane is held only while the instance's future is being polled, that is while its guest
//!   code (or a host call made from it, or the teardown of the instance) occupies a thread; an
//!   instance waiting on I/O or on a callee holds none. The wait is inside the instance's
//!   deadline.
//! - A lane is never reserved for a waiting instance: a waiter leaves its waker, and whoever
//!   gives a lane back wakes every waiter of the tenant, which then try again. A reserving queue
//!   (tokio's fair semaphore, used before) deadlocked: an in-process `wasi:http` callee is polled
//!   on a task of its own until its head, then inside its caller's poll; a lane it had queued for
//!   on that task was granted to a waiter nobody polled any more, and every instance of the
//!   tenant, its caller first, waited for it until their deadlines (found by `bench/soak.sh`).
//!   Waking all costs a futile poll per waiter and release, bounded by the tenant's instances.
//! - A function called in-process by another of the same tenant runs inside the caller's poll,
//!   on the caller's lane: asking for a second lane there could wait on itself.
//!
//! Written by hand because the policy is per poll of a future, which no scheduler crate offers.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use std::sync::Mutex;
use std::task::Waker;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How long after a tenant last ran guest code it still counts as busy.
pub(crate) const CONTENTION_WINDOW: Duration = Duration::from_secs(1);

const NO_TENANT: u32 = u32::MAX;

/// Which tenants ran guest code lately, shared by all tenants of one runtime.
pub(crate) struct CpuShare {
    lanes: u32,
    epoch: Instant,
    next_id: AtomicU32,
    /// The tenant that polled last.
    last_tenant: AtomicU32,
    /// Milliseconds since `epoch` until which two tenants count as busy: renewed each time the
    /// polling tenant changes.
    contended_until: AtomicU64,
}

impl CpuShare {
    /// `lanes`: the most workers one tenant may occupy while others are busy; 0 for no cap.
    pub(crate) fn new(lanes: u32) -> Arc<Self> {
        Arc::new(CpuShare {
            lanes,
            epoch: Instant::now(),
            next_id: AtomicU32::new(0),
            last_tenant: AtomicU32::new(NO_TENANT),
            contended_until: AtomicU64::new(0),
        })
    }

    /// A new tenant's lanes.
    pub(crate) fn tenant(self: &Arc<Self>) -> Arc<TenantCpu> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) % NO_TENANT;
        Arc::new(TenantCpu {
            id,
            lanes: (self.lanes > 0).then(|| Arc::new(Semaphore::new(self.lanes as usize))),
            waiters: Mutex::new(Vec::new()),
            share: self.clone(),
        })
    }

    /// Notes that `tenant` is about to run; answers whether another tenant ran lately.
    fn note(&self, tenant: u32) -> bool {
        let now = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        // Read first: the common case (the same tenant again) writes nothing shared.
        if self.last_tenant.load(Ordering::Relaxed) != tenant {
            let previous = self.last_tenant.swap(tenant, Ordering::Relaxed);
            if previous != tenant && previous != NO_TENANT {
                let until = now.saturating_add(CONTENTION_WINDOW.as_millis() as u64);
                self.contended_until.fetch_max(until, Ordering::Relaxed);
            }
        }
        now < self.contended_until.load(Ordering::Relaxed)
    }
}

/// One tenant's lanes.
pub(crate) struct TenantCpu {
    id: u32,
    /// `None`: no cap.
    lanes: Option<Arc<Semaphore>>,
    /// Wakers of instances that found no lane free (see the module docs).
    waiters: Mutex<Vec<Waker>>,
    share: Arc<CpuShare>,
}

impl TenantCpu {
    /// A free lane, or `None` after leaving `cx`'s waker to be woken when one is given back.
    fn take_lane(&self, lanes: &Arc<Semaphore>, cx: &Context<'_>) -> Option<OwnedSemaphorePermit> {
        if let Ok(permit) = lanes.clone().try_acquire_owned() {
            return Some(permit);
        }
        self.waiters
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(cx.waker().clone());
        // A lane given back between the first try and the waker being left woke nobody.
        lanes.clone().try_acquire_owned().ok()
    }

    /// After a lane was given back: every waiter tries again.
    fn wake_waiters(&self) {
        let waiters = std::mem::take(
            &mut *self
                .waiters
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        for waker in waiters {
            waker.wake();
        }
    }

    /// `future` (an instance's life), polled only while it holds one of the tenant's lanes.
    pub(crate) fn metered<F: Future + Unpin>(self: &Arc<Self>, future: F) -> Metered<F> {
        Metered {
            inner: future,
            cpu: self.clone(),
        }
    }
}

thread_local! {
    /// The tenant whose lane this thread holds during a poll (`NO_TENANT` if none).
    static RUNNING: Cell<u32> = const { Cell::new(NO_TENANT) };
}

/// Restores `RUNNING` when a poll ends, also if it panics.
struct Running(u32);

impl Running {
    fn enter(tenant: u32) -> Self {
        Running(RUNNING.with(|running| running.replace(tenant)))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        RUNNING.with(|running| running.set(self.0));
    }
}

/// A future that runs only on one of its tenant's lanes (see the module docs).
pub(crate) struct Metered<F> {
    inner: F,
    cpu: Arc<TenantCpu>,
}

impl<F: Future + Unpin> Future for Metered<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = &mut *self;
        let id = this.cpu.id;
        let Some(lanes) = &this.cpu.lanes else {
            // No cap: nothing to note or take on this hot path.
            return Pin::new(&mut this.inner).poll(cx);
        };
        if RUNNING.with(Cell::get) == id {
            // Called in-process from an instance of the same tenant, inside its poll.
            return Pin::new(&mut this.inner).poll(cx);
        }
        let contended = this.cpu.share.note(id);
        let mut lane = None;
        if contended {
            match this.cpu.take_lane(lanes, cx) {
                Some(permit) => lane = Some(permit),
                None => return Poll::Pending,
            }
        }
        let _running = Running::enter(id);
        let result = Pin::new(&mut this.inner).poll(cx);
        if let Some(lane) = lane {
            drop(lane);
            this.cpu.wake_waiters();
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Polls `future` once with a waker that does nothing.
    fn poll_once<F: Future + Unpin>(future: &mut F) -> Poll<F::Output> {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        Pin::new(future).poll(&mut cx)
    }

    /// A future that records, when polled, how many lanes of `lanes` were free.
    fn probe(lanes: Arc<Semaphore>, seen: Arc<AtomicU32>) -> impl Future<Output = ()> + Unpin {
        std::future::poll_fn(move |_| {
            seen.store(lanes.available_permits() as u32, Ordering::Relaxed);
            Poll::Ready(())
        })
    }

    #[test]
    fn a_tenant_alone_runs_without_a_lane() {
        let share = CpuShare::new(1);
        let alice = share.tenant();
        let lanes = alice.lanes.clone().unwrap();
        let seen = Arc::new(AtomicU32::new(99));
        let mut run = alice.metered(probe(lanes, seen.clone()));
        assert!(poll_once(&mut run).is_ready());
        assert_eq!(seen.load(Ordering::Relaxed), 1, "no lane was taken");
    }

    #[test]
    fn while_two_tenants_are_busy_each_waits_for_its_own_lanes() {
        let share = CpuShare::new(1);
        let (alice, bob) = (share.tenant(), share.tenant());
        assert!(poll_once(&mut alice.metered(std::future::ready(()))).is_ready());
        // Bob's poll makes the server contended: his future runs holding his only lane.
        let lanes = bob.lanes.clone().unwrap();
        let seen = Arc::new(AtomicU32::new(99));
        assert!(poll_once(&mut bob.metered(probe(lanes.clone(), seen.clone()))).is_ready());
        assert_eq!(seen.load(Ordering::Relaxed), 0, "the lane was held");
        assert_eq!(
            lanes.available_permits(),
            1,
            "and given back after the poll"
        );

        // With Bob's lane taken elsewhere, his next instance waits; Alice's does not.
        let taken = lanes.clone().try_acquire_owned().unwrap();
        let mut blocked = bob.metered(std::future::ready(()));
        assert!(poll_once(&mut blocked).is_pending());
        assert!(poll_once(&mut alice.metered(std::future::ready(()))).is_ready());
        drop(taken);
        assert!(
            poll_once(&mut blocked).is_ready(),
            "granted when the lane came back"
        );
    }

    #[test]
    fn a_call_inside_a_poll_runs_on_the_callers_lane() {
        let share = CpuShare::new(1);
        let (alice, bob) = (share.tenant(), share.tenant());
        assert!(poll_once(&mut alice.metered(std::future::ready(()))).is_ready());
        let inner_bob = bob.clone();
        let mut outer = bob.metered(Box::pin(async move {
            // Bob's only lane is held by this very poll: the nested call must not wait for it.
            inner_bob.metered(std::future::ready(7)).await
        }));
        assert_eq!(poll_once(&mut outer), Poll::Ready(7));
    }

    /// Found by the soak (`bench/soak.sh`): a callee's instance first polled on its own (an
    /// in-process `wasi:http` call runs on a task of its own until its head) queues for a lane
    /// while the lane is busy; its body is then polled inside its caller's poll, on the
    /// caller's lane. The queued request must not stay behind: granted to a future nobody
    /// polls from there, the tenant's only lane was lost until that instance ended, and every
    /// other instance of the tenant waited for it, up to their deadlines.
    #[test]
    fn a_lane_asked_for_outside_and_then_run_inside_a_callers_poll_is_not_kept() {
        let share = CpuShare::new(1);
        let (alice, bob) = (share.tenant(), share.tenant());
        assert!(poll_once(&mut alice.metered(std::future::ready(()))).is_ready());
        let lanes = bob.lanes.clone().unwrap();

        // Bob's callee, polled on its own while his lane is taken, queues for it.
        let taken = lanes.clone().try_acquire_owned().unwrap();
        let callee = Arc::new(std::sync::Mutex::new(bob.metered(Box::pin(async {
            tokio::task::yield_now().await;
            tokio::task::yield_now().await;
        }))));
        assert!(poll_once(&mut *callee.lock().unwrap()).is_pending());
        drop(taken);

        // Now a caller of Bob's polls it inside its own poll, on its own lane.
        let inner = callee.clone();
        let mut caller = bob.metered(Box::pin(std::future::poll_fn(move |cx| {
            Pin::new(&mut *inner.lock().unwrap()).poll(cx)
        })));
        let _ = poll_once(&mut caller);
        drop(caller);
        assert_eq!(
            lanes.available_permits(),
            1,
            "no lane may be left to the callee's stale request"
        );
    }

    #[test]
    fn no_cap_means_no_lanes() {
        let share = CpuShare::new(0);
        let (alice, bob) = (share.tenant(), share.tenant());
        assert!(alice.lanes.is_none());
        assert!(poll_once(&mut alice.metered(std::future::ready(()))).is_ready());
        assert!(poll_once(&mut bob.metered(std::future::ready(()))).is_ready());
    }
}
