//! Triggers: what starts an invocation from outside, and what becomes of its result.
//!
//! A trigger owns both ends of an invocation; the runtime owns everything in between (admission
//! against the tenant's quota, a fresh instance, limits and deadline, teardown). The gateway is
//! the HTTP trigger: a request starts an invocation through [`Function::handle`], and the
//! response streams back to the client. A trigger that has no HTTP request to give (a timer, a
//! message consumer, a test) hands the runtime an [`Event`] through [`Function::deliver`] and
//! gets the whole [`Outcome`] back, to acknowledge, retry or log as it sees fit.
//!
//! How an event reaches the guest is the runtime's business, decided in one place
//! ([`Event::into_request`]): today every function exports a `wasi:http` handler or a command
//! (`cgi`), so an event arrives as a `POST /` to the host `<function>.<app>.internal` whose body
//! is the payload, with the headers `meshwa-trigger` (the trigger's kind) and `meshwa-subject`,
//! and the event's attributes as further headers. A function kind with an event export of its own would change this module
//! only, not the triggers.
//!
//! The server starts every trigger the same way ([`Trigger::run`]) and stops them together.

use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};

use crate::{Function, InvokeError};

/// Header naming the kind of trigger that started an event's invocation.
pub const TRIGGER_HEADER: &str = "meshwa-trigger";
/// Header carrying an event's subject.
pub const SUBJECT_HEADER: &str = "meshwa-subject";

/// Resolves when the server stops: a trigger stops starting invocations then.
pub type Shutdown = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A source of invocations that the server starts and stops (see the module docs).
pub trait Trigger: Send + Sync + 'static {
    /// The trigger's kind, in logs and in the `meshwa-trigger` header (`http`, `cron`, ...).
    fn kind(&self) -> &'static str;

    /// Starts invocations until `shutdown` resolves, then returns once those it started have
    /// been answered or abandoned.
    fn run(
        self: Box<Self>,
        shutdown: Shutdown,
    ) -> Pin<Box<dyn Future<Output = Result<(), TriggerError>> + Send>>;
}

/// Why a trigger stopped other than by shutdown: always the host's fault (a listener that
/// failed, a broker that went away), never a guest's.
#[derive(Debug, thiserror::Error)]
#[error("the {kind} trigger failed: {source}")]
pub struct TriggerError {
    pub kind: &'static str,
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

/// One invocation's input from a trigger that is not HTTP.
#[derive(Debug, Clone)]
pub struct Event {
    /// The trigger's kind (see [`Trigger::kind`]).
    pub trigger: &'static str,
    /// What the event is about: a message subject, a schedule's name. May be empty.
    pub subject: String,
    /// Further named values (a message's headers). Names and values must be valid HTTP header
    /// names and values; an invalid one fails the delivery as the trigger's fault.
    pub attributes: Vec<(String, String)>,
    pub payload: Bytes,
    /// Names the invocation in logs.
    pub invocation: String,
}

/// What became of an [`Event`]: the function's answer, whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

/// The largest answer [`Function::deliver`] collects.
pub const MAX_OUTCOME_BODY: usize = crate::MAX_INVOKE_RESPONSE;

impl Event {
    /// The request a function that exports an HTTP handler or a command receives.
    fn into_request(self, host: &str) -> Result<http::Request<Full<Bytes>>, InvokeError> {
        let mut request = http::Request::builder()
            .method(http::Method::POST)
            .uri("/")
            .header(http::header::HOST, host)
            .header(TRIGGER_HEADER, self.trigger)
            .header(http::header::CONTENT_LENGTH, self.payload.len());
        if !self.subject.is_empty() {
            request = request.header(SUBJECT_HEADER, self.subject);
        }
        for (name, value) in self.attributes {
            request = request.header(name, value);
        }
        request
            .body(Full::new(self.payload))
            .map_err(|e| InvokeError::BadRequest(format!("an event attribute is invalid: {e}")))
    }
}

impl Function {
    /// Runs one invocation for a trigger that is not HTTP: `event` goes in, the function's whole
    /// answer comes back. Admitted like a request from outside (against the tenant's quota),
    /// in a fresh instance, within the function's limits and deadline.
    pub async fn deliver(&self, event: Event) -> Result<Outcome, InvokeError> {
        let invocation = event.invocation.clone();
        let id = self.id();
        let host = format!("{}.{}.{}", id.function, id.app, crate::INTERNAL_DOMAIN);
        let response = self.handle(event.into_request(&host)?, &invocation).await?;
        let (parts, body) = response.into_parts();
        let body = Limited::new(body, MAX_OUTCOME_BODY)
            .collect()
            .await
            .map_err(|e| match e.downcast::<http_body_util::LengthLimitError>() {
                Ok(_) => InvokeError::GuestError(format!(
                    "the answer is larger than {MAX_OUTCOME_BODY} bytes"
                )),
                // The body ends with an error when the guest failed while writing it.
                Err(e) => InvokeError::GuestError(format!("the answer was cut: {e}")),
            })?
            .to_bytes();
        Ok(Outcome {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body,
        })
    }
}

/// Runs `triggers` until `shutdown` resolves. If one fails, the others are stopped too and its
/// error is returned once all have returned.
pub async fn run_triggers(
    triggers: Vec<Box<dyn Trigger>>,
    shutdown: Shutdown,
) -> Result<(), TriggerError> {
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut running = tokio::task::JoinSet::new();
    for trigger in triggers {
        let mut stopped = stopped.clone();
        let shutdown: Shutdown = Box::pin(async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        });
        running.spawn(trigger.run(shutdown));
    }
    let mut shutdown = shutdown;
    let mut first_error = None;
    loop {
        tokio::select! {
            () = &mut shutdown, if !*stop.borrow() => {
                let _ = stop.send(true);
            }
            joined = running.join_next() => {
                let Some(joined) = joined else { break };
                let error = match joined {
                    Ok(Ok(())) => continue,
                    Ok(Err(error)) => error,
                    Err(join) => TriggerError {
                        kind: "unknown",
                        source: format!("the trigger's task ended abnormally: {join}").into(),
                    },
                };
                tracing::error!(%error, "a trigger stopped; stopping the others");
                let _ = stop.send(true);
                first_error.get_or_insert(error);
            }
        }
    }
    first_error.map_or(Ok(()), Err)
}
