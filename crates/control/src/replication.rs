//! Deployments shared with the other nodes of a cluster.
//!
//! A node alone records its deployments in its own data directory ([`crate::ControlStore`]).
//! In a cluster, the cluster's record is the truth: a deploy or removal sent to any node is
//! published through [`Replication`] once every check has passed and before the node swaps it in,
//! and is acknowledged to the client only once the cluster has stored it durably. Every node
//! (the deploying one too) then converges to the cluster's record through
//! [`crate::ControlPlane::apply_deploy`] and [`crate::ControlPlane::apply_removal`], compiling
//! from its own cache. The implementation (NATS JetStream) lives in `meshwa-cluster`: this crate
//! knows only the seam.

use crate::{AppRecord, StoreError};

/// Where deployments are published for the other nodes. Calls may block on the network; they
/// run on the deploying request's task, under the registry's lock.
pub trait Replication: Send + Sync + 'static {
    /// A deployment version no node has used and none will use again.
    fn next_version(&self) -> Result<u64, StoreError>;

    /// Records, durably in the cluster, that `record` is its app's current deployment, uploaded
    /// as `archive` (the tar archive as received). The deploy's commit point.
    fn publish_deploy(&self, record: &AppRecord, archive: &[u8]) -> Result<(), StoreError>;

    /// Records, durably in the cluster, that `tenant/app` is no longer deployed.
    fn publish_removal(&self, tenant: &str, app: &str) -> Result<(), StoreError>;
}
