//! Claims of schedule ticks, so that a tick fires on one node of the cluster.
//!
//! Every node computes the same ticks from a function's schedule (UTC instants) and, at each,
//! publishes a claim to the stream `meshwa-ticks` with the tick's identity as JetStream's message
//! id (`Nats-Msg-Id`: function and instant). JetStream keeps one message per id within its
//! duplicate window and acknowledges the others as duplicates, so exactly one claim wins; the
//! clustered stream checks ids against the claims in flight too (unlike the per-key condition of
//! `kv`), which `tests/ticks.rs` checks with concurrent claimers. Nodes' clocks may differ by
//! less than the window (10 minutes) without a tick firing twice.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::{self, stream};
use chrono::{DateTime, Utc};
use meshwa_control::cron::TickClaim;

use crate::{Cluster, ClusterError};

/// The stream of claims.
pub const TICKS: &str = "meshwa-ticks";
/// How long a claim is remembered: clocks of nodes may differ by less than this.
const DUPLICATE_WINDOW: Duration = Duration::from_secs(600);

/// The cluster's [`TickClaim`].
pub struct ClusterTicks {
    jetstream: jetstream::Context,
}

impl ClusterTicks {
    /// Opens (or creates) the stream of claims.
    pub async fn open(cluster: &Cluster) -> Result<ClusterTicks, ClusterError> {
        cluster
            .jetstream
            .get_or_create_stream(stream::Config {
                name: TICKS.to_owned(),
                description: Some("meshwa: which node fires each schedule tick".to_owned()),
                subjects: vec!["meshwa.ticks.>".to_owned()],
                num_replicas: cluster.replicas,
                storage: stream::StorageType::File,
                duplicate_window: DUPLICATE_WINDOW,
                // Claims matter only within the duplicate window.
                max_age: DUPLICATE_WINDOW * 2,
                ..Default::default()
            })
            .await
            .map_err(|e| ClusterError::Setup {
                what: TICKS.to_owned(),
                reason: e.to_string(),
            })?;
        Ok(ClusterTicks {
            jetstream: cluster.jetstream.clone(),
        })
    }

    /// Whether this node's claim of `function`'s tick at `tick` won.
    pub async fn claim_tick(&self, function: &str, tick: DateTime<Utc>) -> Result<bool, String> {
        let mut headers = HeaderMap::new();
        headers.insert(
            async_nats::header::NATS_MESSAGE_ID,
            format!("{function}@{}", tick.timestamp_millis()).as_str(),
        );
        let subject = format!("meshwa.ticks.{}", function.replace('/', "."));
        let ack = self
            .jetstream
            .publish_with_headers(subject, headers, bytes::Bytes::new())
            .await
            .map_err(|e| e.to_string())?
            .await
            .map_err(|e| e.to_string())?;
        Ok(!ack.duplicate)
    }
}

impl TickClaim for ClusterTicks {
    fn claim<'a>(
        &'a self,
        function: &'a str,
        tick: DateTime<Utc>,
    ) -> Pin<Box<dyn Future<Output = bool> + Send + 'a>> {
        Box::pin(async move {
            match self.claim_tick(function, tick).await {
                Ok(won) => won,
                Err(error) => {
                    tracing::error!(%function, %tick, %error, "cron: cannot claim a tick in the cluster; skipped");
                    false
                }
            }
        })
    }
}
