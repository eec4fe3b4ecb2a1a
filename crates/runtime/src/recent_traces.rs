//! The recent call chains of a function, each with the span of every invocation in it: what a
//! tenant sees of its own traces (`GET .../traces`, the dashboard's waterfall) without the
//! operator's collector.
//!
//! Policy, and why:
//! - **Always on, and cheap**: one allocation per chain from outside, one uncontended lock per
//!   invocation (its chain's), and a chain is not kept rather than waited for when another
//!   thread is keeping one of the same function's at that moment. Exported traces (`trace`) are sampled and go to the operator; these are the
//!   tenant's own, and a developer looking at a slow request needs that request, not a sample.
//! - **Kept by the chain's first function**: [`TRACES_KEPT`] chains per function, newest last;
//!   a chain records at most [`MAX_SPANS`] spans (a fan-out beyond is counted, not kept), so a
//!   function's history is bounded whatever its callees do.
//! - A span lasts until its function's response head (as `duration_us` in the logs); a callee
//!   that ends after its chain's first function is still added, to the chain already kept.
//! - A chain never leaves its tenant: in-process calls resolve only within the caller's tenant.
//! - Kept across redeploys, like the traffic history ([`RecentTraces::take_over`]).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use meshwa_manifest::FunctionId;

/// Chains kept per function.
pub const TRACES_KEPT: usize = 32;
/// Spans kept per chain.
pub const MAX_SPANS: usize = 128;

/// One invocation in a chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpanRecord {
    /// Its number in the chain, in order of start: the chain's first function is 0.
    pub span: u32,
    /// The span of the invocation that called it.
    pub parent: Option<u32>,
    pub function: Arc<FunctionId>,
    /// When it started, from the chain's start.
    pub start_us: u64,
    pub duration_us: u64,
    /// The answer's status, or the error kind of a failure.
    pub outcome: Result<u16, &'static str>,
}

/// One chain, as kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainTrace {
    /// The chain's invocation id (as in logs and `x-meshwa-invocation`).
    pub invocation: String,
    /// When it started, in milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// Ordered by `span`.
    pub spans: Vec<SpanRecord>,
    /// Spans not kept beyond [`MAX_SPANS`].
    pub dropped_spans: u32,
}

/// Where the spans of one chain are collected while it runs; shared by all its invocations.
///
/// Cheap to start, as every request starts one: no wall-clock read (the start's wall time is
/// derived when a chain is read), and no allocation for its spans until the first one ends.
pub(crate) struct ChainRecorder {
    invocation: Arc<str>,
    started: Instant,
    next_span: AtomicU32,
    spans: Mutex<Vec<SpanRecord>>,
    dropped: AtomicU32,
}

impl ChainRecorder {
    pub(crate) fn new(invocation: Arc<str>) -> Arc<ChainRecorder> {
        Arc::new(ChainRecorder {
            invocation,
            started: Instant::now(),
            next_span: AtomicU32::new(0),
            spans: Mutex::default(),
            dropped: AtomicU32::new(0),
        })
    }

    /// The next span's number.
    pub(crate) fn next_span(&self) -> u32 {
        self.next_span.fetch_add(1, Ordering::Relaxed)
    }

    /// Adds a finished span that started at `started`.
    pub(crate) fn finish(
        &self,
        span: u32,
        parent: Option<u32>,
        function: &Arc<FunctionId>,
        started: Instant,
        outcome: Result<u16, &'static str>,
    ) {
        let micros = |d: std::time::Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let record = SpanRecord {
            span,
            parent,
            function: function.clone(),
            start_us: micros(started.saturating_duration_since(self.started)),
            duration_us: micros(started.elapsed()),
            outcome,
        };
        // A poisoned lock means a panic between two pushes: the records are intact.
        let mut spans = self.spans.lock().unwrap_or_else(|p| p.into_inner());
        if spans.len() < MAX_SPANS {
            spans.push(record);
        } else {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn snapshot(&self) -> ChainTrace {
        let mut spans = self.spans.lock().unwrap_or_else(|p| p.into_inner()).clone();
        spans.sort_by_key(|s| s.span);
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let ago_ms = self.started.elapsed().as_millis() as u64;
        ChainTrace {
            invocation: self.invocation.to_string(),
            at_ms: now_ms.saturating_sub(ago_ms),
            spans,
            dropped_spans: self.dropped.load(Ordering::Relaxed),
        }
    }
}

/// The chains a function started, newest last.
#[derive(Default)]
pub struct RecentTraces {
    chains: Mutex<VecDeque<Arc<ChainRecorder>>>,
}

impl RecentTraces {
    /// Keeps `chain`, unless another thread is keeping one of this function's chains at this
    /// very moment: then this one is dropped rather than waited for, so that a busy function's
    /// worker threads never queue on this lock (a chain a moment later shows the same path).
    pub(crate) fn keep(&self, chain: Arc<ChainRecorder>) {
        let mut chains = match self.chains.try_lock() {
            Ok(chains) => chains,
            Err(std::sync::TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return,
        };
        if chains.len() == TRACES_KEPT {
            chains.pop_front();
        }
        chains.push_back(chain);
    }

    /// The newest `limit` chains, oldest first.
    pub fn latest(&self, limit: usize) -> Vec<ChainTrace> {
        let chains: Vec<_> = {
            let chains = self.chains.lock().unwrap_or_else(|p| p.into_inner());
            let skip = chains.len().saturating_sub(limit);
            chains.iter().skip(skip).cloned().collect()
        };
        chains.iter().map(|chain| chain.snapshot()).collect()
    }

    /// The chain with id `invocation`, if this function kept it.
    pub fn find(&self, invocation: &str) -> Option<ChainTrace> {
        let chains = self.chains.lock().unwrap_or_else(|p| p.into_inner());
        let chain = chains
            .iter()
            .rev()
            .find(|chain| &*chain.invocation == invocation)?
            .clone();
        drop(chains);
        Some(chain.snapshot())
    }

    /// Takes the chains of `older` (the same function in the app's previous version) over.
    pub(crate) fn take_over(&self, older: &RecentTraces) {
        let taken = std::mem::take(&mut *older.chains.lock().unwrap_or_else(|p| p.into_inner()));
        let mut own = self.chains.lock().unwrap_or_else(|p| p.into_inner());
        if own.is_empty() {
            *own = taken;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(function: &str) -> Arc<FunctionId> {
        let name = |n: &str| meshwa_manifest::Name::new(n).unwrap();
        Arc::new(FunctionId {
            tenant: name("acme"),
            app: name("shop"),
            function: name(function),
        })
    }

    #[test]
    fn a_chain_keeps_its_spans_in_order_bounded_and_the_function_its_newest_chains() {
        let chain = ChainRecorder::new("inv-1".into());
        let (root, child) = (chain.next_span(), chain.next_span());
        let started = Instant::now();
        chain.finish(child, Some(root), &id("price"), started, Ok(200));
        chain.finish(root, None, &id("checkout"), started, Err("guest_trap"));
        for _ in 0..MAX_SPANS {
            let span = chain.next_span();
            chain.finish(span, Some(root), &id("price"), started, Ok(200));
        }

        let traces = RecentTraces::default();
        traces.keep(chain);
        let kept = traces.find("inv-1").unwrap();
        assert_eq!(kept.spans.len(), MAX_SPANS);
        assert_eq!(kept.dropped_spans, 2);
        assert_eq!(kept.spans[0].function, id("checkout"));
        assert_eq!(kept.spans[0].outcome, Err("guest_trap"));
        assert_eq!(kept.spans[1].parent, Some(0));

        for n in 0..TRACES_KEPT {
            traces.keep(ChainRecorder::new(format!("later-{n}").into()));
        }
        assert!(traces.find("inv-1").is_none(), "the oldest chain made room");
        let latest = traces.latest(2);
        let ids: Vec<_> = latest.iter().map(|c| c.invocation.as_str()).collect();
        assert_eq!(
            ids,
            [
                format!("later-{}", TRACES_KEPT - 2),
                format!("later-{}", TRACES_KEPT - 1)
            ]
        );
    }
}
