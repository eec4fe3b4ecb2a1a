//! Messages between functions across the cluster: the bus functions publish to, and the trigger
//! that hands each message to one subscribing function.
//!
//! A tenant's subject `orders.created` is the NATS subject `meshwa.msg.<tenant>.orders.created`;
//! the runtime has already prefixed the tenant, so no function can reach another tenant's
//! subjects. Every node subscribes each function with `subscribe` in the queue group
//! `meshwa.<tenant>.<app>.<function>`: NATS delivers each message to one member of the group, so
//! one node invokes the function once per message, whichever node it was published through.
//! Delivery is at most once (core NATS, no acknowledgements): a message published while no node
//! subscribes, or held by a node that dies before invoking the function, is lost; a function that
//! must not lose work writes it to a key-value store.
//!
//! The trigger follows the registry (within a second, like schedules): a deploy that adds, moves
//! or removes a subscription subscribes or unsubscribes; a redeploy that keeps it hands later
//! messages to the new version. Each message is an invocation like a request's (`deliver`,
//! `record_invocation`): `POST /` with `meshwa-trigger: message`, `meshwa-subject: <subject>`
//! (without the tenant), the message's headers, and its body. At most
//! [`IN_FLIGHT_PER_FUNCTION`] messages of one function are invoked at once on a node; more wait
//! in the subscription (NATS drops messages for a subscriber that falls far behind).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use futures::StreamExt as _;
use meshwa_control::Registry;
use meshwa_gateway::{Metrics, deliver_recorded, next_invocation_id};
use meshwa_runtime::{Event, Function, MessageBus, Shutdown, Trigger, TriggerError};

/// NATS subjects of tenants' messages start with this.
const PREFIX: &str = "meshwa.msg.";
/// Messages of one function invoked at once on one node.
pub const IN_FLIGHT_PER_FUNCTION: usize = 64;
/// The longest the trigger goes without looking at the registry.
const LOOK_AGAIN: Duration = Duration::from_secs(1);

/// The cluster's [`MessageBus`].
pub struct NatsBus {
    client: async_nats::Client,
}

impl NatsBus {
    pub fn new(cluster: &crate::Cluster) -> NatsBus {
        NatsBus {
            client: cluster.client.clone(),
        }
    }
}

impl MessageBus for NatsBus {
    fn publish(
        &self,
        subject: String,
        headers: Vec<(String, String)>,
        body: Bytes,
    ) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> {
        let client = self.client.clone();
        Box::pin(async move {
            let mut map = async_nats::HeaderMap::new();
            for (name, value) in &headers {
                map.append(name.as_str(), value.as_str());
            }
            client
                .publish_with_headers(format!("{PREFIX}{subject}"), map, body)
                .await
                .map_err(|e| e.to_string())?;
            // Returns once the server has the message, not when a subscriber does.
            client.flush().await.map_err(|e| e.to_string())
        })
    }
}

/// The message trigger (see the module docs).
pub struct MessageTrigger {
    pub client: async_nats::Client,
    pub registry: Arc<Registry>,
    pub metrics: Arc<Metrics>,
}

/// One subscription: the function it invokes (swapped on redeploy) and its task.
struct Subscription {
    function: Arc<ArcSwap<Function>>,
    task: tokio::task::JoinHandle<()>,
}

impl MessageTrigger {
    /// `(function id, NATS subject) → function` for every function with `subscribe` now.
    async fn wanted(&self) -> HashMap<(String, String), Arc<Function>> {
        let mut wanted = HashMap::new();
        for app in self.registry.apps().await {
            for spec in &app.manifest.functions {
                let Some(subject) = &spec.triggers.subscribe else {
                    continue;
                };
                let Some(function) = app.function(&spec.name) else {
                    continue;
                };
                let subject = format!("{PREFIX}{}.{subject}", app.manifest.tenant);
                wanted.insert((function.id().to_string(), subject), function.clone());
            }
        }
        wanted
    }

    async fn subscribe(
        &self,
        id: &str,
        subject: &str,
        function: Arc<Function>,
    ) -> Result<Subscription, async_nats::SubscribeError> {
        let group = format!("meshwa.{}", id.replace('/', "."));
        let mut messages = self
            .client
            .queue_subscribe(subject.to_owned(), group)
            .await?;
        let function = Arc::new(ArcSwap::from(function));
        let current = function.clone();
        let metrics = self.metrics.clone();
        // `meshwa.msg.<tenant>.`: what the function's subjects are relative to.
        let tenant_prefix = subject.splitn(4, '.').take(3).collect::<Vec<_>>().join(".") + ".";
        let task = tokio::spawn(async move {
            let slots = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT_PER_FUNCTION));
            while let Some(message) = messages.next().await {
                let Ok(slot) = slots.clone().acquire_owned().await else {
                    break;
                };
                let function = current.load_full();
                let metrics = metrics.clone();
                let subject = message
                    .subject
                    .as_str()
                    .strip_prefix(&tenant_prefix)
                    .unwrap_or(message.subject.as_str())
                    .to_owned();
                tokio::spawn(async move {
                    deliver(&function, &metrics, subject, message).await;
                    drop(slot);
                });
            }
        });
        Ok(Subscription { function, task })
    }
}

/// Invokes `function` with one message, accounted like a request.
async fn deliver(
    function: &Function,
    metrics: &Metrics,
    subject: String,
    message: async_nats::Message,
) {
    let attributes = message
        .headers
        .iter()
        .flat_map(|headers| headers.iter())
        .flat_map(|(name, values)| {
            values
                .iter()
                .map(move |value| (name.to_string(), value.as_str().to_owned()))
        })
        // What only the host sets: its own headers, and the request's framing (the event's
        // request has its own host and length).
        .filter(|(name, _)| {
            let name = name.to_ascii_lowercase();
            !name.starts_with("meshwa-")
                && !name.starts_with("nats-")
                && !matches!(
                    name.as_str(),
                    "host"
                        | "content-length"
                        | "transfer-encoding"
                        | "connection"
                        | "keep-alive"
                        | "te"
                        | "trailer"
                        | "upgrade"
                        | "proxy-connection"
                )
        })
        .collect();
    let event = Event {
        trigger: "message",
        subject,
        attributes,
        payload: message.payload,
        invocation: next_invocation_id(),
    };
    deliver_recorded(metrics, function, event).await;
}

impl Trigger for MessageTrigger {
    fn kind(&self) -> &'static str {
        "message"
    }

    fn run(
        self: Box<Self>,
        shutdown: Shutdown,
    ) -> Pin<Box<dyn Future<Output = Result<(), TriggerError>> + Send>> {
        Box::pin(async move {
            let mut shutdown = shutdown;
            let mut subscriptions: HashMap<(String, String), Subscription> = HashMap::new();
            loop {
                let mut wanted = self.wanted().await;
                subscriptions.retain(|key, subscription| match wanted.remove(key) {
                    Some(function) => {
                        subscription.function.store(function);
                        true
                    }
                    None => {
                        subscription.task.abort();
                        false
                    }
                });
                for ((id, subject), function) in wanted {
                    match self.subscribe(&id, &subject, function).await {
                        Ok(subscription) => {
                            subscriptions.insert((id, subject), subscription);
                        }
                        Err(error) => {
                            tracing::error!(function = %id, %subject, %error, "messages: cannot subscribe; trying again");
                        }
                    }
                }
                tokio::select! {
                    () = tokio::time::sleep(LOOK_AGAIN) => {}
                    () = &mut shutdown => break,
                }
            }
            for subscription in subscriptions.into_values() {
                subscription.task.abort();
            }
            Ok(())
        })
    }
}
