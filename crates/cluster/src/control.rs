//! The shared control plane: deployments recorded in the cluster, followed by every node.
//!
//! - The bucket `meshwa-control` (key-value, replicated) holds `app.<tenant>.<app>`: the app's
//!   current deployment (`AppRecord` as JSON). Writing it is a deploy's commit point: the
//!   deploying node answers its client only once JetStream has acknowledged it, that is once a
//!   majority of replicas has written it (see `kv` for what that survives). A removal deletes the key. Versions are the sequence
//!   numbers JetStream gives a write of the key `version`: unique and increasing cluster-wide.
//! - The object store `meshwa-apps` holds each current deployment's archive as uploaded,
//!   `<tenant>/<app>/v<version>`, written before the record that points to it.
//! - Every node follows the bucket ([`ClusterControl::follow`]): at start (and after each
//!   reconnection) it first drops the deployed apps the cluster no longer has, then replays each
//!   app's current record, then applies changes as they come, one at a time, through
//!   `ControlPlane::apply_deploy`/`apply_removal`: the same checks, compile cache and swap as a
//!   deploy on the node itself. A node that started or reconnected late thus catches up; a
//!   version it already serves is skipped, so the deploying node does not load its deploy twice.
//!
//! - Each node says what it serves in `node.<name>` (`meshwa_api::ClusterNode`): after it
//!   catches up, after every change it applies, and every [`HEARTBEAT`] (so an old time there
//!   means a node that is gone). `GET /v1/cluster` reads them.
//!
//! Concurrent deploys of one app on two nodes both succeed; the later record in the bucket wins
//! on every node. An app whose record a node cannot apply (its archive is gone because a newer
//! deploy replaced it, or it fails this node's checks) is logged and skipped there, as at a
//! restore.
//!
//! Tenants and tokens are records of the same bucket: `tenant.<name>` (its creation time) and
//! `token.<sha-256 of the token>` (the `TokenRecord`; never the token). The node that takes a
//! change publishes it after its own store took it; every node mirrors the records into its
//! store, which answers every token check locally. A revocation is a deletion of the record: at
//! catch-up, a node also drops every token the bucket does not hold, so one that was down while
//! a token was revoked does not keep accepting it.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::kv::{self as js_kv, Operation};
use async_nats::jetstream::object_store::ObjectStore;
use bytes::Bytes;
use futures::{StreamExt as _, TryStreamExt as _};
use meshwa_control::{AppRecord, ControlPlane, Replication, StoreError, TokenRecord};
use tokio::io::AsyncReadExt as _;
use tokio::runtime::Handle;

use crate::{Cluster, ClusterError};

/// The bucket of deployment records.
pub const CONTROL_BUCKET: &str = "meshwa-control";
/// The object store of deployed archives.
pub const ARCHIVES: &str = "meshwa-apps";

/// How long a node waits before following the bucket again after losing it.
const RETRY: Duration = Duration::from_secs(1);
/// How often a node says what it serves when nothing changes.
pub const HEARTBEAT: Duration = Duration::from_secs(10);

/// This node's side of the shared control plane (see the module docs).
pub struct ClusterControl {
    /// This node's name, in `node.<name>`.
    node: String,
    records: js_kv::Store,
    archives: ObjectStore,
    /// Largest archive a node fetches (the deploying node's upload limit).
    max_archive: u64,
    handle: Handle,
}

fn app_key(tenant: &str, app: &str) -> String {
    format!("app.{tenant}.{app}")
}

fn tenant_key(tenant: &str) -> String {
    format!("tenant.{tenant}")
}

fn token_key(hash: &str) -> String {
    format!("token.{hash}")
}

fn archive_name(tenant: &str, app: &str, version: u64) -> String {
    format!("{tenant}/{app}/v{version}")
}

fn store_error(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Db(format!("cluster: {what}: {e}"))
}

impl ClusterControl {
    /// Opens (or creates) the cluster's control bucket and archive store, for the node `node`
    /// (letters, digits, `-` and `_`, at most 64). Must run on the runtime that drives the
    /// connection.
    pub async fn open(
        cluster: &Cluster,
        node: &str,
        max_archive: u64,
    ) -> Result<ClusterControl, ClusterError> {
        if node.is_empty()
            || node.len() > 64
            || !node
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(ClusterError::Setup {
                what: format!("the node name {node:?}"),
                reason: "a node name is 1 to 64 letters, digits, '-' and '_'".to_owned(),
            });
        }
        let setup = |what: &str, e: async_nats::Error| ClusterError::Setup {
            what: what.to_owned(),
            reason: e.to_string(),
        };
        let records = crate::key_value_bucket(
            &cluster.jetstream,
            CONTROL_BUCKET,
            cluster.replicas,
            "meshwa: deployments".to_owned(),
        )
        .await
        .map_err(|e| setup(CONTROL_BUCKET, e))?;
        let archives = crate::object_store(
            &cluster.jetstream,
            ARCHIVES,
            cluster.replicas,
            "meshwa: deployed archives".to_owned(),
        )
        .await
        .map_err(|e| setup(ARCHIVES, e))?;
        Ok(ClusterControl {
            node: node.to_owned(),
            records,
            archives,
            max_archive,
            handle: Handle::current(),
        })
    }

    /// Runs `future` for a synchronous caller (the registry's persist step, a blocking task).
    fn wait<T>(
        &self,
        future: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        crate::block_on(&self.handle, future).unwrap_or_else(|crate::SingleThreaded| {
            Err(StoreError::Db(
                "cluster: called from a single-threaded runtime".to_owned(),
            ))
        })
    }

    /// The current record of `tenant/app`, if the cluster has one.
    async fn record(&self, tenant: &str, app: &str) -> Result<Option<AppRecord>, StoreError> {
        let value = self
            .records
            .get(app_key(tenant, app))
            .await
            .map_err(|e| store_error("reading a deployment record", e))?;
        value
            .map(|bytes| serde_json::from_slice(&bytes))
            .transpose()
            .map_err(|e| store_error("a damaged deployment record", e))
    }

    /// Keeps `control` serving what the cluster has deployed until `shutdown` resolves.
    /// `caught_up` is sent once the node serves every deployment recorded when it began.
    pub async fn follow(
        self: Arc<Self>,
        control: Arc<ControlPlane>,
        caught_up: tokio::sync::oneshot::Sender<()>,
        shutdown: impl Future<Output = ()>,
    ) {
        let mut caught_up = Some(caught_up);
        let following = async {
            loop {
                if let Err(error) = self.follow_once(&control, &mut caught_up).await {
                    tracing::error!(%error, "cluster: lost the deployment records; following them again");
                }
                tokio::time::sleep(RETRY).await;
            }
        };
        let heartbeat = async {
            loop {
                tokio::time::sleep(HEARTBEAT).await;
                self.say_what_is_served(&control).await;
            }
        };
        tokio::select! {
            () = following => {}
            () = heartbeat => {}
            () = shutdown => {}
        }
    }

    /// Catches up with the bucket, then applies its changes until the watch ends.
    async fn follow_once(
        &self,
        control: &ControlPlane,
        caught_up: &mut Option<tokio::sync::oneshot::Sender<()>>,
    ) -> Result<(), StoreError> {
        let recorded: BTreeSet<String> = self
            .records
            .keys()
            .await
            .map_err(|e| store_error("listing deployments", e))?
            .try_collect::<Vec<String>>()
            .await
            .map_err(|e| store_error("listing deployments", e))?
            .into_iter()
            .filter(|key| key != "version")
            .collect();
        for (tenant, app, _) in control.deployed().await {
            if !recorded.contains(&app_key(&tenant, &app)) {
                self.remove_here(control, &tenant, &app).await;
            }
        }
        for hash in control.token_hashes()? {
            if !recorded.contains(&token_key(&hash)) {
                control.apply_token_revocation(&hash)?;
            }
        }
        if recorded.is_empty() {
            self.caught_up(control, caught_up).await;
        }
        // Every record (nats-server 2.9 takes one filter per consumer): apps, tenants, tokens.
        let mut changes = self
            .records
            .watch_with_history(">")
            .await
            .map_err(|e| store_error("following deployments", e))?;
        while let Some(change) = changes.next().await {
            let change = change.map_err(|e| store_error("following deployments", e))?;
            // No record pending behind this one: the replay of what was recorded is done.
            let replayed = change.delta == 0;
            let put = change.operation == Operation::Put;
            let mut parts = change.key.splitn(3, '.');
            match (parts.next(), parts.next(), parts.next()) {
                (Some("app"), Some(_), Some(_)) if put => {
                    self.deploy_here(control, &change.value).await;
                }
                (Some("app"), Some(tenant), Some(app)) => {
                    self.remove_here(control, tenant, app).await;
                }
                (Some("tenant"), Some(tenant), None) => {
                    let applied = if put {
                        let created = std::str::from_utf8(&change.value)
                            .ok()
                            .and_then(|s| s.parse().ok())
                            .unwrap_or(0);
                        control.apply_tenant(tenant, created)
                    } else {
                        control.apply_tenant_removal(tenant)
                    };
                    if let Err(error) = applied {
                        tracing::error!(%tenant, %error, "cluster: cannot mirror a tenant here");
                    }
                }
                (Some("token"), Some(hash), None) => {
                    let applied = if put {
                        serde_json::from_slice::<TokenRecord>(&change.value)
                            .map_err(|e| store_error("a damaged token record", e))
                            .and_then(|record| control.apply_token(hash, &record))
                    } else {
                        control.apply_token_revocation(hash).map(|_| ())
                    };
                    if let Err(error) = applied {
                        tracing::error!(%error, "cluster: cannot mirror a token here");
                    }
                }
                _ => {}
            }
            // (Live changes have no pending ones behind them either: `delta` is 0 for them too.)
            if caught_up.is_some() {
                if replayed {
                    self.caught_up(control, caught_up).await;
                }
            } else if change.key.starts_with("app.") {
                self.say_what_is_served(control).await;
            }
        }
        Ok(())
    }

    /// Says so, the first time this node serves every recorded deployment.
    async fn caught_up(
        &self,
        control: &ControlPlane,
        caught_up: &mut Option<tokio::sync::oneshot::Sender<()>>,
    ) {
        if let Some(sender) = caught_up.take() {
            self.say_what_is_served(control).await;
            let _ = sender.send(());
        }
    }

    /// Writes `node.<name>`: the deployed apps this node serves now.
    async fn say_what_is_served(&self, control: &ControlPlane) {
        let apps = control
            .deployed()
            .await
            .into_iter()
            .map(|(tenant, app, version)| meshwa_api::ServedApp {
                tenant,
                app,
                version,
            })
            .collect();
        let status = meshwa_api::ClusterNode {
            node: self.node.clone(),
            updated_at: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            apps,
        };
        let written = match serde_json::to_vec(&status) {
            Ok(json) => self
                .records
                .put(format!("node.{}", self.node), json.into())
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        if let Err(error) = written {
            tracing::warn!(%error, "cluster: cannot say what this node serves");
        }
    }

    async fn deploy_here(&self, control: &ControlPlane, value: &Bytes) {
        let record: AppRecord = match serde_json::from_slice(value) {
            Ok(record) => record,
            Err(error) => {
                tracing::error!(%error, "cluster: a damaged deployment record; skipped");
                return;
            }
        };
        let app = format!("{}/{}", record.tenant, record.app);
        if control
            .deployed()
            .await
            .iter()
            .any(|(t, a, v)| *t == record.tenant && *a == record.app && *v == record.version)
        {
            return;
        }
        let archive = match self.fetch(&record).await {
            Ok(archive) => archive,
            Err(error) => {
                tracing::error!(%app, version = record.version, %error, "cluster: cannot fetch a deployment's archive; skipped");
                return;
            }
        };
        if let Err(problems) = control.apply_deploy(&record, archive).await {
            tracing::error!(%app, version = record.version, problems = %problems.join("; "), "cluster: a deployment does not load on this node; skipped");
        }
    }

    async fn remove_here(&self, control: &ControlPlane, tenant: &str, app: &str) {
        match control.apply_removal(tenant, app).await {
            Ok(true) => {
                tracing::info!(app = %format!("{tenant}/{app}"), "app removed through the cluster")
            }
            Ok(false) => {}
            Err(error) => {
                tracing::error!(app = %format!("{tenant}/{app}"), %error, "cluster: cannot remove an app here")
            }
        }
    }

    async fn fetch(&self, record: &AppRecord) -> Result<Vec<u8>, StoreError> {
        let name = archive_name(&record.tenant, &record.app, record.version);
        let object = self
            .archives
            .get(&name)
            .await
            .map_err(|e| store_error(&format!("archive {name}"), e))?;
        let mut archive = Vec::new();
        object
            .take(self.max_archive + 1)
            .read_to_end(&mut archive)
            .await
            .map_err(|e| store_error(&format!("archive {name}"), e))?;
        if archive.len() as u64 > self.max_archive {
            return Err(store_error(
                &format!("archive {name}"),
                format!(
                    "larger than this node's upload limit of {} bytes",
                    self.max_archive
                ),
            ));
        }
        Ok(archive)
    }
}

impl Replication for ClusterControl {
    fn next_version(&self) -> Result<u64, StoreError> {
        self.wait(async {
            self.records
                .put("version", Bytes::new())
                .await
                .map_err(|e| store_error("drawing a version", e))
        })
    }

    fn publish_deploy(&self, record: &AppRecord, archive: &[u8]) -> Result<(), StoreError> {
        self.wait(async {
            let (tenant, app) = (record.tenant.as_str(), record.app.as_str());
            let previous = self.record(tenant, app).await?;
            let name = archive_name(tenant, app, record.version);
            self.archives
                .put(name.as_str(), &mut &archive[..])
                .await
                .map_err(|e| store_error(&format!("storing archive {name}"), e))?;
            let json = serde_json::to_vec(record).map_err(|e| store_error("a record", e))?;
            self.records
                .put(app_key(tenant, app), json.into())
                .await
                .map_err(|e| store_error("recording a deployment", e))?;
            // The replaced archive is no longer current; a node still fetching it skips it and
            // applies the record that replaced it.
            if let Some(previous) = previous.filter(|p| p.version != record.version) {
                let old = archive_name(tenant, app, previous.version);
                if let Err(error) = self.archives.delete(&old).await {
                    tracing::warn!(archive = %old, %error, "cluster: a replaced archive was not deleted");
                }
            }
            Ok(())
        })
    }

    fn publish_removal(&self, tenant: &str, app: &str) -> Result<(), StoreError> {
        self.wait(async {
            let previous = self.record(tenant, app).await?;
            self.records
                .delete(app_key(tenant, app))
                .await
                .map_err(|e| store_error("recording a removal", e))?;
            if let Some(previous) = previous {
                let old = archive_name(tenant, app, previous.version);
                if let Err(error) = self.archives.delete(&old).await {
                    tracing::warn!(archive = %old, %error, "cluster: a removed app's archive was not deleted");
                }
            }
            Ok(())
        })
    }

    fn publish_tenant(&self, tenant: &str, created: u64) -> Result<(), StoreError> {
        self.wait(async {
            self.records
                .put(tenant_key(tenant), Bytes::from(created.to_string()))
                .await
                .map(|_| ())
                .map_err(|e| store_error("recording a tenant", e))
        })
    }

    fn publish_tenant_removal(&self, tenant: &str) -> Result<(), StoreError> {
        self.wait(async {
            self.records
                .delete(tenant_key(tenant))
                .await
                .map_err(|e| store_error("recording a tenant's removal", e))?;
            // Its tokens: every node drops them with the tenant, and the records go too, so
            // that a tenant created again under the name does not get them back.
            let prefix = "token.";
            let keys: Vec<String> = self
                .records
                .keys()
                .await
                .map_err(|e| store_error("listing tokens", e))?
                .try_collect()
                .await
                .map_err(|e| store_error("listing tokens", e))?;
            for key in keys.iter().filter(|k| k.starts_with(prefix)) {
                let Some(value) = self
                    .records
                    .get(key.as_str())
                    .await
                    .map_err(|e| store_error("reading a token", e))?
                else {
                    continue;
                };
                if serde_json::from_slice::<TokenRecord>(&value).is_ok_and(|r| r.tenant == tenant) {
                    self.records
                        .delete(key.as_str())
                        .await
                        .map_err(|e| store_error("revoking a token", e))?;
                }
            }
            Ok(())
        })
    }

    fn publish_token(&self, hash: &str, record: &TokenRecord) -> Result<(), StoreError> {
        self.wait(async {
            let json = serde_json::to_vec(record).map_err(|e| store_error("a token", e))?;
            self.records
                .put(token_key(hash), json.into())
                .await
                .map(|_| ())
                .map_err(|e| store_error("recording a token", e))
        })
    }

    fn publish_token_revocation(&self, hash: &str) -> Result<(), StoreError> {
        self.wait(async {
            self.records
                .delete(token_key(hash))
                .await
                .map_err(|e| store_error("revoking a token", e))
        })
    }

    fn nodes(&self) -> Result<Vec<meshwa_api::ClusterNode>, StoreError> {
        self.wait(async {
            let keys: Vec<String> = self
                .records
                .keys()
                .await
                .map_err(|e| store_error("listing nodes", e))?
                .try_collect()
                .await
                .map_err(|e| store_error("listing nodes", e))?;
            let mut nodes = Vec::new();
            for key in keys.iter().filter(|k| k.starts_with("node.")) {
                let Some(value) = self
                    .records
                    .get(key.as_str())
                    .await
                    .map_err(|e| store_error("reading a node", e))?
                else {
                    continue;
                };
                match serde_json::from_slice::<meshwa_api::ClusterNode>(&value) {
                    Ok(node) => nodes.push(node),
                    Err(error) => tracing::warn!(%key, %error, "cluster: a damaged node record"),
                }
            }
            nodes.sort_by(|a, b| a.node.cmp(&b.node));
            Ok(nodes)
        })
    }
}
