//! Deployments, tenants and tokens shared with the other nodes of a cluster.
//!
//! A node alone records its deployments in its own data directory ([`crate::ControlStore`]).
//! In a cluster, the cluster's record is the truth: a deploy or removal sent to any node is
//! published through [`Replication`] once every check has passed and before the node swaps it in,
//! and is acknowledged to the client only once the cluster has stored it durably. Every node
//! (the deploying one too) then converges to the cluster's record through
//! [`crate::ControlPlane::apply_deploy`] and [`crate::ControlPlane::apply_removal`], compiling
//! from its own cache. Tenants and token hashes are published the same way after the node's own
//! store took them, and every node mirrors them into its store ([`crate::ControlStore`] answers
//! every token check locally); a revocation reaches every node the same way. The
//! implementation (NATS JetStream) lives in `meshwa-cluster`: this crate knows only the seam.

use crate::{AppRecord, StoreError, TokenRecord};

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

    /// Records that `tenant` exists, created at `created` (Unix seconds).
    fn publish_tenant(&self, tenant: &str, created: u64) -> Result<(), StoreError>;

    /// Records that `tenant` no longer exists (its tokens go with it on every node).
    fn publish_tenant_removal(&self, tenant: &str) -> Result<(), StoreError>;

    /// Records a token: its hash (never the token) and record.
    fn publish_token(&self, hash: &str, record: &TokenRecord) -> Result<(), StoreError>;

    /// Records that the token with this hash is revoked.
    fn publish_token_revocation(&self, hash: &str) -> Result<(), StoreError>;

    /// Every node of the cluster and what it serves, as each last said (`GET /v1/cluster`).
    fn nodes(&self) -> Result<Vec<meshwa_api::ClusterNode>, StoreError>;
}
