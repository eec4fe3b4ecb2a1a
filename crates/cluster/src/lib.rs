//! meshwa nodes on a NATS JetStream cluster.
//!
//! Without `--cluster`, a meshwa node keeps everything in files under its data directory and
//! needs no other service. With it, nodes share what must be shared through JetStream, the
//! replicated log of a NATS cluster, and never through replication written here:
//!
//! - key-value state ([`kv::JetStreamBackend`], behind the same `KeyValueBackend` as the embedded
//!   redb): a replicated bucket per app holds its cluster-wide stores; a write returns when
//!   a majority of the bucket's replicas has written it; every write is a
//!   compare-and-set, so concurrent writers on several nodes never lose an update.
//!
//! This crate is the only one that speaks NATS; the runtime, gateway and control plane know the
//! traits it implements, not the cluster.

pub mod control;
pub mod kv;
pub mod messages;
#[cfg(feature = "testing")]
pub mod testing;
pub mod ticks;

use std::time::Duration;

/// How a node joins the cluster.
#[derive(Debug, Clone)]
pub struct ClusterSettings {
    /// NATS servers to connect to (`nats://host:port`); the client fails over between them and
    /// reconnects on its own.
    pub servers: Vec<String>,
    /// Replicas of each bucket the node creates (JetStream's `num_replicas`): 3 survives the loss
    /// of one server without losing an acknowledged write. At most the number of servers.
    pub replicas: usize,
}

/// Why joining or using the cluster failed: the host's fault (the operator's configuration or
/// the cluster's state), never a guest's.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("cannot connect to the NATS cluster at {servers}: {reason}")]
    Connect { servers: String, reason: String },
    #[error("JetStream refused to set up {what}: {reason}")]
    Setup { what: String, reason: String },
}

/// This node's connection to the cluster. Cheap to clone.
#[derive(Clone)]
pub struct Cluster {
    client: async_nats::Client,
    jetstream: async_nats::jetstream::Context,
    replicas: usize,
}

/// How long one JetStream request may take before it fails. A write waits for a majority of
/// replicas; a leader election after a server's loss takes a few seconds.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

impl Cluster {
    /// Connects to `settings.servers`. Must run on the tokio runtime that will keep driving the
    /// connection (the server's).
    pub async fn connect(settings: &ClusterSettings) -> Result<Cluster, ClusterError> {
        let servers = settings.servers.join(",");
        let connect_error = |reason: String| ClusterError::Connect {
            servers: servers.clone(),
            reason,
        };
        let addresses = settings
            .servers
            .iter()
            .map(|s| s.parse::<async_nats::ServerAddr>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| connect_error(e.to_string()))?;
        if addresses.is_empty() {
            return Err(connect_error("no server given".to_owned()));
        }
        if settings.replicas == 0 {
            return Err(connect_error("replicas must be at least 1".to_owned()));
        }
        let client = async_nats::ConnectOptions::new()
            .name("meshwa")
            .connection_timeout(Duration::from_secs(5))
            .request_timeout(Some(REQUEST_TIMEOUT))
            .connect(addresses)
            .await
            .map_err(|e| connect_error(e.to_string()))?;
        let mut jetstream = async_nats::jetstream::new(client.clone());
        jetstream.set_timeout(REQUEST_TIMEOUT);
        Ok(Cluster {
            client,
            jetstream,
            replicas: settings.replicas,
        })
    }

    /// The cluster-wide key-value backend (each app's bucket is created at its first use).
    /// Must be called on the runtime that drives the connection.
    pub fn key_value(&self) -> kv::JetStreamBackend {
        kv::JetStreamBackend::new(&self.jetstream, self.replicas)
    }

    /// The NATS client, for what this crate does not wrap (benchmarks compare against it).
    pub fn client(&self) -> &async_nats::Client {
        &self.client
    }
}

/// Opens the key-value bucket `name`, creating it with `replicas` if no node has: JetStream's
/// key-value conventions (ADR-8), but with direct gets off, so that reads are answered by the
/// stream's leader and see every acknowledged write (a direct get may be answered by a lagging
/// replica).
pub(crate) async fn key_value_bucket(
    jetstream: &async_nats::jetstream::Context,
    name: &str,
    replicas: usize,
    description: String,
) -> Result<async_nats::jetstream::kv::Store, async_nats::Error> {
    use async_nats::jetstream::stream;
    let config = stream::Config {
        name: format!("KV_{name}"),
        description: Some(description),
        subjects: vec![format!("$KV.{name}.>")],
        max_messages_per_subject: 1,
        discard: stream::DiscardPolicy::New,
        allow_rollup: true,
        deny_delete: true,
        allow_direct: false,
        num_replicas: replicas,
        storage: stream::StorageType::File,
        duplicate_window: Duration::from_secs(120),
        ..Default::default()
    };
    until_ready(|| async {
        jetstream.get_or_create_stream(config.clone()).await?;
        Ok(jetstream.get_key_value(name).await?)
    })
    .await
}

/// Runs `open` until it succeeds, each attempt at most [`OPEN_ATTEMPT`], for at most
/// [`OPEN_DEADLINE`]. Nodes that open the same new stream at once race: the loser is told it
/// exists while its replicas may still be electing a leader, and a request to a stream without
/// one goes unanswered until it times out, so an attempt is cut short and made again.
async fn until_ready<T, F, Fut>(mut open: F) -> Result<T, async_nats::Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, async_nats::Error>>,
{
    let deadline = tokio::time::Instant::now() + OPEN_DEADLINE;
    loop {
        let error: async_nats::Error = match tokio::time::timeout(OPEN_ATTEMPT, open()).await {
            Ok(Ok(opened)) => return Ok(opened),
            Ok(Err(error)) => error,
            Err(_) => format!("no answer within {OPEN_ATTEMPT:?}").into(),
        };
        if tokio::time::Instant::now() + OPEN_RETRY > deadline {
            return Err(error);
        }
        tokio::time::sleep(OPEN_RETRY).await;
    }
}

/// How long one attempt to open a stream may take (a new R3 stream elects its leader in well
/// under a second on loopback).
const OPEN_ATTEMPT: Duration = Duration::from_secs(2);
/// How long opening a stream may take in all.
const OPEN_DEADLINE: Duration = Duration::from_secs(20);
/// Pause between two attempts.
const OPEN_RETRY: Duration = Duration::from_millis(100);

/// Opens the object store `name`, creating it with `replicas` if no node has (ADR-20's layout,
/// direct gets off as for [`key_value_bucket`]).
pub(crate) async fn object_store(
    jetstream: &async_nats::jetstream::Context,
    name: &str,
    replicas: usize,
    description: String,
) -> Result<async_nats::jetstream::object_store::ObjectStore, async_nats::Error> {
    use async_nats::jetstream::stream;
    let config = stream::Config {
        name: format!("OBJ_{name}"),
        description: Some(description),
        subjects: vec![format!("$O.{name}.C.>"), format!("$O.{name}.M.>")],
        discard: stream::DiscardPolicy::New,
        allow_rollup: true,
        allow_direct: false,
        num_replicas: replicas,
        storage: stream::StorageType::File,
        ..Default::default()
    };
    until_ready(|| async {
        jetstream.get_or_create_stream(config.clone()).await?;
        Ok(jetstream.get_object_store(name).await?)
    })
    .await
}

/// Runs `future` to completion on `handle` (the runtime driving the connection) for a caller
/// that cannot await: the synchronous `KeyValueBackend` and `Replication` traits. On a worker of
/// a multi-threaded runtime the wait is announced with `block_in_place`, so the worker's other
/// tasks move to another thread instead of waiting behind it. `Err` if called from a
/// single-threaded runtime, which cannot hand its work over (and, if it drives the connection,
/// would wait forever).
pub(crate) fn block_on<T, E>(
    handle: &tokio::runtime::Handle,
    future: impl std::future::Future<Output = Result<T, E>>,
) -> Result<Result<T, E>, SingleThreaded> {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current().map(|h| h.runtime_flavor()) {
        Err(_) => Ok(handle.block_on(future)),
        Ok(RuntimeFlavor::CurrentThread) => Err(SingleThreaded),
        Ok(_) => Ok(tokio::task::block_in_place(|| handle.block_on(future))),
    }
}

/// [`block_on`] was called from a single-threaded runtime.
pub(crate) struct SingleThreaded;
