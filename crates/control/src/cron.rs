//! The schedule trigger: functions with a `cron` schedule are invoked at each of its ticks.
//!
//! The trigger follows the registry: a deploy that adds, changes or removes a schedule takes
//! effect within a second (the longest it sleeps without looking). Each tick is an invocation
//! like any other (`Function::deliver`: the tenant's quota, a fresh instance, the function's
//! limits), accounted like an HTTP request (`record_invocation`: metrics, the log line, the
//! function's recent log). The function sees `POST /` with `meshwa-trigger: cron` and
//! `meshwa-tick: <the tick's time, RFC 3339>`.
//!
//! Ticks that pass while the server is down, or while the previous tick's invocation of the same
//! function still runs, are skipped, not replayed: a schedule says when work is due, not how
//! much of it.
//!
//! In a cluster every node runs the trigger, and a tick fires on the node that claims it first
//! ([`TickClaim`]; the cluster's claim is a JetStream publish deduplicated by the tick's
//! identity), so a tick fires once for the whole cluster. Alone, a node fires every tick.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use meshwa_gateway::{Metrics, deliver_recorded, next_invocation_id};
use meshwa_runtime::{Event, Function, Shutdown, Trigger, TriggerError};

use crate::Registry;

/// Header carrying the tick's scheduled time.
pub const TICK_HEADER: &str = "meshwa-tick";

/// The longest the trigger sleeps before it looks at the registry again.
const LOOK_AGAIN: Duration = Duration::from_secs(1);

/// Decides which node fires a tick.
pub trait TickClaim: Send + Sync + 'static {
    /// Whether this node fires `function`'s tick scheduled at `tick`. Across a cluster, exactly
    /// one node's claim of a tick succeeds; a claim that cannot be decided (the cluster is
    /// unreachable) is `false`: a tick is skipped rather than fired twice.
    fn claim<'a>(
        &'a self,
        function: &'a str,
        tick: DateTime<Utc>,
    ) -> Pin<Box<dyn Future<Output = bool> + Send + 'a>>;
}

/// A node alone fires every tick.
pub struct FireEveryTick;

impl TickClaim for FireEveryTick {
    fn claim<'a>(
        &'a self,
        _function: &'a str,
        _tick: DateTime<Utc>,
    ) -> Pin<Box<dyn Future<Output = bool> + Send + 'a>> {
        Box::pin(std::future::ready(true))
    }
}

/// The schedule trigger (see the module docs).
pub struct CronTrigger {
    pub registry: Arc<Registry>,
    pub metrics: Arc<Metrics>,
    pub claim: Arc<dyn TickClaim>,
}

/// One scheduled function, as last seen in the registry.
struct Scheduled {
    function: Arc<Function>,
    schedule: cron::Schedule,
    next: Option<DateTime<Utc>>,
    /// The invocation of its previous tick, while it runs.
    running: Option<tokio::task::JoinHandle<()>>,
}

/// Identifies a schedule: the function and its schedule's text (a redeploy with another
/// schedule starts over).
type Key = (String, String);

impl CronTrigger {
    /// The functions with a schedule now, keeping what is known of those already followed.
    async fn refresh(&self, scheduled: &mut HashMap<Key, Scheduled>, now: DateTime<Utc>) {
        let mut current = HashMap::new();
        for app in self.registry.apps().await {
            for spec in &app.manifest.functions {
                let Some(schedule) = &spec.triggers.cron else {
                    continue;
                };
                let Some(function) = app.function(&spec.name) else {
                    continue;
                };
                let key = (function.id().to_string(), schedule.as_str().to_owned());
                let entry = match scheduled.remove(&key) {
                    // The same function object: keep its next tick; a redeploy's new version
                    // takes over the old one's schedule.
                    Some(mut known) => {
                        known.function = function.clone();
                        known
                    }
                    None => {
                        let Some(parsed) = schedule.parsed() else {
                            continue;
                        };
                        Scheduled {
                            next: parsed.after(&now).next(),
                            function: function.clone(),
                            schedule: parsed,
                            running: None,
                        }
                    }
                };
                current.insert(key, entry);
            }
        }
        *scheduled = current;
    }

    /// Fires `entry`'s tick at `tick` if this node claims it and its previous one is done.
    fn fire(&self, entry: &mut Scheduled, tick: DateTime<Utc>) {
        if entry.running.as_ref().is_some_and(|r| !r.is_finished()) {
            tracing::warn!(function = %entry.function.id(), %tick, "cron: the previous tick still runs; this one is skipped");
            return;
        }
        let function = entry.function.clone();
        let claim = self.claim.clone();
        let metrics = self.metrics.clone();
        entry.running = Some(tokio::spawn(async move {
            let id = function.id().to_string();
            if !claim.claim(&id, tick).await {
                return;
            }
            let event = Event {
                trigger: "cron",
                subject: String::new(),
                attributes: vec![(TICK_HEADER.to_owned(), tick.to_rfc3339())],
                payload: bytes::Bytes::new(),
                invocation: next_invocation_id(),
            };
            deliver_recorded(&metrics, &function, event).await;
        }));
    }
}

impl Trigger for CronTrigger {
    fn kind(&self) -> &'static str {
        "cron"
    }

    fn run(
        self: Box<Self>,
        shutdown: Shutdown,
    ) -> Pin<Box<dyn Future<Output = Result<(), TriggerError>> + Send>> {
        Box::pin(async move {
            let mut shutdown = shutdown;
            let mut scheduled: HashMap<Key, Scheduled> = HashMap::new();
            loop {
                let now = Utc::now();
                self.refresh(&mut scheduled, now).await;
                for entry in scheduled.values_mut() {
                    if let Some(tick) = entry.next.filter(|t| *t <= now) {
                        entry.next = entry.schedule.after(&now).next();
                        self.fire(entry, tick);
                    }
                }
                let until_next = scheduled
                    .values()
                    .filter_map(|e| e.next)
                    .min()
                    .and_then(|next| (next - Utc::now()).to_std().ok())
                    .unwrap_or(LOOK_AGAIN)
                    .min(LOOK_AGAIN);
                tokio::select! {
                    () = tokio::time::sleep(until_next) => {}
                    () = &mut shutdown => break,
                }
            }
            for entry in scheduled.into_values() {
                if let Some(running) = entry.running {
                    let _ = running.await;
                }
            }
            Ok(())
        })
    }
}
