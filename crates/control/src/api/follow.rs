//! `GET /v1/tenants/{tenant}/apps/{app}/logs?follow=true`: an app's log entries as they happen,
//! as server-sent events (`text/event-stream`), for `meshwa logs -f`.
//!
//! The stream starts with the latest `limit` entries (as without `follow`), then sends every new
//! entry of the app's functions (or of `function=F`) as `event: entry` with a [`LogEntry`] as
//! data. A follower that falls [`meshwa_runtime::FOLLOW_BACKLOG`] entries behind gets
//! `event: lagged` with how many it missed; a comment every [`KEEP_ALIVE`] keeps proxies from
//! closing an idle stream. A redeploy is followed: within a [`TICK`] the new version's functions
//! are watched (what they log before that is in `meshwa logs`, not in the stream); when the app
//! is removed the stream ends with `event: end`.
//!
//! Each follower holds a task and a connection: at most [`MAX_PER_TENANT`] per tenant and
//! [`MAX_FOLLOWERS`] in all, more are refused with 429. The task ends within a second of the
//! client going away.

use std::collections::HashMap;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Response, header};
use hyper::body::{Body, Frame};
use meshwa_api::LogEntry;
use meshwa_runtime::{Function, RecentEntry};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, mpsc};

use super::{AdminBody, ApiError, Call};
use crate::Registry;

/// Followers at once over all tenants.
pub const MAX_FOLLOWERS: usize = 64;
/// Followers at once of one tenant.
pub const MAX_PER_TENANT: usize = 8;
/// How often an idle stream sends a comment.
pub const KEEP_ALIVE: Duration = Duration::from_secs(10);
/// How often the follower checks that its client is still there and its app still served.
pub const TICK: Duration = Duration::from_secs(1);

/// Who is following, per tenant.
#[derive(Default)]
pub(crate) struct Followers {
    per_tenant: Mutex<HashMap<String, usize>>,
}

/// One follower's place; gives it back when dropped.
struct Place {
    followers: Arc<Followers>,
    tenant: String,
}

impl Followers {
    fn enter(self: &Arc<Self>, tenant: &str) -> Result<Place, ApiError> {
        let mut counts = self.per_tenant.lock().unwrap_or_else(|p| p.into_inner());
        let total: usize = counts.values().sum();
        let own = counts.get(tenant).copied().unwrap_or(0);
        if total >= MAX_FOLLOWERS || own >= MAX_PER_TENANT {
            return Err(ApiError::TooManyRequests(format!(
                "too many log followers (at most {MAX_PER_TENANT} per tenant, {MAX_FOLLOWERS} in all); stop one first"
            )));
        }
        counts.insert(tenant.to_owned(), own + 1);
        Ok(Place {
            followers: self.clone(),
            tenant: tenant.to_owned(),
        })
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        let mut counts = self
            .followers
            .per_tenant
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(count) = counts.get_mut(&self.tenant) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.tenant);
            }
        }
    }
}

/// The body of a follow stream: what the follower's task sends.
pub struct FollowBody {
    events: mpsc::Receiver<Bytes>,
}

impl Body for FollowBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.events
            .poll_recv(cx)
            .map(|event| event.map(|bytes| Ok(Frame::data(bytes))))
    }
}

/// Starts following the call's app; see the module docs.
pub(super) async fn follow(
    call: Call<'_>,
    latest: Vec<LogEntry>,
    only: Option<String>,
) -> Result<Response<AdminBody>, ApiError> {
    let app = call.visible_app().await?;
    let tenant = call.param("tenant").to_owned();
    let place = call.control.followers.enter(&tenant)?;
    let watched = watch(&app.functions, only.as_deref());
    let (sender, events) = mpsc::channel(64);
    let follower = Follower {
        registry: call.control.registry.clone(),
        tenant,
        app: call.param("app").to_owned(),
        only,
        watched,
        sender,
        _place: place,
    };
    tokio::spawn(follower.run(latest));
    let mut response = Response::new(AdminBody::Right(FollowBody { events }));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-cache"),
    );
    Ok(response)
}

/// A function followed: weakly, so that a follower never holds up the drain of a removed or
/// replaced version.
struct Watch {
    function: Weak<Function>,
    name: String,
    entries: broadcast::Receiver<RecentEntry>,
}

type Watched = Vec<Watch>;

fn watch(functions: &[Arc<Function>], only: Option<&str>) -> Watched {
    functions
        .iter()
        .filter(|f| only.is_none_or(|name| f.id().function.as_str() == name))
        .map(|f| Watch {
            function: Arc::downgrade(f),
            name: f.id().function.to_string(),
            entries: f.recent_log().subscribe(),
        })
        .collect()
}

struct Follower {
    registry: Arc<Registry>,
    tenant: String,
    app: String,
    only: Option<String>,
    watched: Watched,
    sender: mpsc::Sender<Bytes>,
    _place: Place,
}

impl Follower {
    async fn run(mut self, latest: Vec<LogEntry>) {
        for entry in &latest {
            if !self.send(entry_event(entry)).await {
                return;
            }
        }
        let mut tick = tokio::time::interval(TICK);
        let mut idle = Duration::ZERO;
        loop {
            tokio::select! {
                (index, received) = next_entry(&mut self.watched) => {
                    idle = Duration::ZERO;
                    let event = match received {
                        Ok(entry) => {
                            entry_event(&super::apps::log_entry(&self.watched[index].name, entry))
                        }
                        Err(RecvError::Lagged(missed)) => {
                            Bytes::from(format!("event: lagged\ndata: {{\"missed\":{missed}}}\n\n"))
                        }
                        // The function is gone (a redeploy or removal); the tick finds out which.
                        Err(RecvError::Closed) => {
                            self.watched.remove(index);
                            continue;
                        }
                    };
                    if !self.send(event).await {
                        return;
                    }
                }
                _ = tick.tick() => {
                    if self.sender.is_closed() {
                        return;
                    }
                    match self.registry.get(&self.tenant, &self.app).await {
                        None => {
                            let _ = self
                                .send(Bytes::from_static(b"event: end\ndata: {\"reason\":\"the app was removed\"}\n\n"))
                                .await;
                            return;
                        }
                        Some(app) => self.follow_redeploy(&app.functions),
                    }
                    idle += TICK;
                    if idle >= KEEP_ALIVE {
                        idle = Duration::ZERO;
                        if !self.send(Bytes::from_static(b": keep-alive\n\n")).await {
                            return;
                        }
                    }
                }
            }
        }
    }

    /// Watches the served version's functions if they are not the ones watched.
    fn follow_redeploy(&mut self, current: &[Arc<Function>]) {
        let wanted = watch(current, self.only.as_deref());
        let same = wanted.len() == self.watched.len()
            && wanted
                .iter()
                .zip(&self.watched)
                .all(|(a, b)| Weak::ptr_eq(&a.function, &b.function));
        if !same {
            self.watched = wanted;
        }
    }

    /// Sends an event; false once the client is gone.
    async fn send(&self, event: Bytes) -> bool {
        self.sender.send(event).await.is_ok()
    }
}

/// The next entry of any watched function, with its index; pending forever if none is watched.
async fn next_entry(watched: &mut Watched) -> (usize, Result<RecentEntry, RecvError>) {
    if watched.is_empty() {
        return std::future::pending().await;
    }
    let receivers = watched
        .iter_mut()
        .enumerate()
        .map(|(index, watch)| Box::pin(async move { (index, watch.entries.recv().await) }));
    // Receiving is cancel-safe: an entry not taken here stays for the next call.
    futures::future::select_all(receivers).await.0
}

fn entry_event(entry: &LogEntry) -> Bytes {
    // LogEntry serializes to JSON on one line (no raw newlines: strings are escaped).
    let json = serde_json::to_string(entry).unwrap_or_else(|_| "{}".to_owned());
    Bytes::from(format!("event: entry\ndata: {json}\n\n"))
}
