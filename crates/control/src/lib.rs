//! The control plane of meshwa: tenants deploy, list, inspect and remove apps at runtime.
//!
//! - [`Registry`] owns the set of apps being served and is the one place that changes it
//!   (atomic swaps of the gateway's route table and the runtime's directory).
//! - [`ControlStore`] keeps tenants, hashed tokens and deployed apps under the data directory,
//!   so apps survive a restart and half-written deployments never load.
//! - [`ControlPlane`] ties both to authentication and serves the JSON API (`api`) on the admin
//!   listener ([`serve_admin`]), next to `GET /metrics`. The API is described by
//!   `docs/openapi.json`, served at `GET /v1/openapi.json` and checked against the routes by a test.
//!
//! Authentication: the operator's token (from a file or the environment, or generated into the
//! data directory) manages tenants; each tenant has its own bearer tokens, stored as SHA-256
//! hashes and revocable, which reach only that tenant's apps. A missing or wrong token is 401;
//! another tenant's app is 404, exactly like an app that does not exist.
//!
//! - The operator's token comes from `--operator-token-file`, `--operator-token` /
//!   `MESHWA_OPERATOR_TOKEN`, or `DATA_DIR/operator.token` (generated on first start, mode
//!   0600); it is compared as a SHA-256 digest in constant time.
//! - Tenant tokens are `mwt_` and 64 random hex digits; only their SHA-256 is stored, with a
//!   public id to list and revoke them. A tenant token on an operator endpoint is 403.
//! - `GET /metrics` needs the operator's token or the scrape token (`--metrics-token-file`):
//!   it names every tenant, app and function, and with `--explain` their timings.
//! - Apps given on the command line are listed, but the API refuses to change them (409).
//! - Deploys, and stored apps at restore, are checked against the operator's policy
//!   ([`meshwa_manifest::Policy`], in [`Registry`]); a tenant's tokens are counted against it.
//! - At start, [`ControlPlane::restore`] loads every recorded app from its stored upload (from
//!   the compile cache: nothing is recompiled). An app that no longer loads is logged and
//!   skipped, and stays recorded.

pub mod api;
pub mod archive;
pub mod cron;
mod registry;
mod replication;
mod store;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use meshwa_gateway::Metrics;
use meshwa_manifest::Manifest;
use tokio::net::TcpListener;

pub use registry::{ActiveApp, ChangeError, Origin, PrepareError, Registry, drain, drain_limit};
pub use replication::Replication;
pub use store::{AppRecord, ControlStore, StoreError, TokenRecord};

/// Default largest upload (an app's archive): generous for interpreter-based components
/// (Python, JavaScript: 10–20 MB each), bounded for hostile ones.
pub const DEFAULT_MAX_UPLOAD: u64 = 128 * 1024 * 1024;

/// Deploys that read, unpack, stage and compile at once. A deploy holds its upload in memory
/// and compiles on the blocking pool; more at once would only compete for the same cores, so
/// the rest wait before their upload is read (their bytes wait in the kernel's buffers).
pub const MAX_CONCURRENT_DEPLOYS: usize = 2;

/// The control plane: registry, persistent store, authentication.
pub struct ControlPlane {
    registry: Arc<Registry>,
    store: Arc<ControlStore>,
    /// Deploys in progress at once; more wait before their upload is read.
    deploys: Arc<tokio::sync::Semaphore>,
    operator_token_hash: [u8; 32],
    metrics_token_hash: Option<[u8; 32]>,
    max_upload: u64,
    metrics: Arc<Metrics>,
    /// Who follows logs (`meshwa logs -f`), bounded per tenant.
    followers: Arc<api::Followers>,
    /// The cluster deployments are published to, if the node is in one.
    replication: Option<Arc<dyn Replication>>,
}

/// What the operator decides for the control plane.
pub struct ControlSettings {
    /// Manages tenants, and may do everything a tenant may.
    pub operator_token: String,
    /// May read `GET /metrics` and nothing else (for a scraper), besides the operator's token.
    pub metrics_token: Option<String>,
    /// Largest app upload.
    pub max_upload: u64,
}

impl ControlPlane {
    /// Opens the control plane's store under `data_dir`.
    pub fn open(
        data_dir: &Path,
        registry: Arc<Registry>,
        settings: ControlSettings,
        metrics: Arc<Metrics>,
    ) -> Result<ControlPlane, StoreError> {
        use sha2::Digest;
        let digest = |token: &str| -> [u8; 32] { sha2::Sha256::digest(token.as_bytes()).into() };
        Ok(ControlPlane {
            registry,
            store: Arc::new(ControlStore::open(data_dir)?),
            deploys: Arc::new(tokio::sync::Semaphore::new(MAX_CONCURRENT_DEPLOYS)),
            followers: Arc::default(),
            operator_token_hash: digest(&settings.operator_token),
            metrics_token_hash: settings.metrics_token.as_deref().map(digest),
            max_upload: settings.max_upload,
            metrics,
            replication: None,
        })
    }

    /// Publishes deploys and removals to `replication` (a cluster) before serving them.
    pub fn with_replication(mut self, replication: Arc<dyn Replication>) -> ControlPlane {
        self.replication = Some(replication);
        self
    }

    /// Makes this node serve `record`, another node's deploy (or this one's, seen back from the
    /// cluster), from `archive`: unpacked, checked, prepared and activated like a deploy, without
    /// publishing it again. Returns `Ok(false)` if the node already serves that version.
    pub async fn apply_deploy(
        &self,
        record: &AppRecord,
        archive: Vec<u8>,
    ) -> Result<bool, Vec<String>> {
        api::apply_deploy(self, record, archive).await
    }

    /// Makes this node stop serving `tenant/app`, removed through another node. Returns
    /// `Ok(false)` if it did not serve it as a deployed app.
    pub async fn apply_removal(&self, tenant: &str, app: &str) -> Result<bool, String> {
        api::apply_removal(self, tenant, app).await
    }

    /// Mirrors the cluster's record of `tenant` (created at `created`) into this node's store.
    pub fn apply_tenant(&self, tenant: &str, created: u64) -> Result<(), StoreError> {
        self.store.insert_tenant(tenant, created)
    }

    /// Mirrors the removal of `tenant`: its record and tokens. (Its apps' removals and its
    /// key-value data are the cluster's already.)
    pub fn apply_tenant_removal(&self, tenant: &str) -> Result<(), StoreError> {
        self.store.delete_tenant(tenant).map(|_| ())
    }

    /// Mirrors a token of the cluster's into this node's store.
    pub fn apply_token(&self, hash: &str, record: &TokenRecord) -> Result<(), StoreError> {
        self.store.insert_tenant(&record.tenant, record.created)?;
        self.store.put_token(hash, record)
    }

    /// Mirrors a revocation: the token with this hash no longer opens anything here.
    pub fn apply_token_revocation(&self, hash: &str) -> Result<bool, StoreError> {
        self.store.remove_token(hash)
    }

    /// The hashes of the tokens this node accepts.
    pub fn token_hashes(&self) -> Result<Vec<String>, StoreError> {
        Ok(self
            .store
            .token_records()?
            .into_iter()
            .map(|(hash, _)| hash)
            .collect())
    }

    /// The deployed apps this node serves, with their versions.
    pub async fn deployed(&self) -> Vec<(String, String, u64)> {
        self.registry
            .apps()
            .await
            .into_iter()
            .filter_map(|app| match app.origin {
                Origin::Deployed { version, .. } => Some((
                    app.manifest.tenant.to_string(),
                    app.manifest.app.to_string(),
                    version,
                )),
                Origin::Static => None,
            })
            .collect()
    }

    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    pub fn store(&self) -> &ControlStore {
        &self.store
    }

    /// Loads every deployed app from the store (at start). An app that no longer loads (a
    /// secret was removed, say) is logged and skipped, not fatal: the others must come up, and
    /// its record stays so that it returns once fixed. Returns (loaded, failed).
    pub async fn restore(&self) -> Result<(usize, usize), StoreError> {
        let (mut loaded, mut failed) = (0, 0);
        for record in self.store.apps()? {
            let dir = self
                .store
                .app_dir(&record.tenant, &record.app, record.version);
            let manifest = meshwa_manifest::Name::new(&record.tenant)
                .map_err(|e| meshwa_manifest::ManifestError::Syntax {
                    path: dir.clone(),
                    message: e.to_string(),
                })
                .and_then(|tenant| Manifest::load_dir(&dir, &tenant));
            let outcome = match manifest {
                Err(error) => Err(vec![error.to_string()]),
                Ok(manifest) => match self.registry.prepare_off_thread(manifest).await {
                    Ok((manifest, prepared)) => {
                        let origin = Origin::Deployed {
                            version: record.version,
                            deployed_at: record.deployed_at,
                            upload_bytes: store::tree_bytes(&dir),
                        };
                        self.registry
                            .activate(manifest, prepared, origin)
                            .await
                            .map(|_| ())
                            .map_err(|e| vec![e.to_string()])
                    }
                    Err(error) => Err(error.messages()),
                },
            };
            match outcome {
                Ok(()) => loaded += 1,
                Err(errors) => {
                    failed += 1;
                    tracing::error!(
                        app = %format!("{}/{}", record.tenant, record.app),
                        version = record.version,
                        errors = %errors.join("; "),
                        "a deployed app could not be restored; it stays recorded and is skipped"
                    );
                }
            }
        }
        Ok((loaded, failed))
    }
}

/// The operator token: `explicit` if given (a flag or the environment), else the one in
/// `DATA_DIR/operator.token`, generated (mode 0600) on first start. Returns the token and, if it
/// came from the data directory, the file's path (for the log).
pub fn operator_token(
    data_dir: &Path,
    explicit: Option<String>,
) -> Result<(String, Option<PathBuf>), StoreError> {
    if let Some(token) = explicit {
        return Ok((token.trim().to_owned(), None));
    }
    let path = data_dir.join("operator.token");
    match std::fs::read_to_string(&path) {
        Ok(token) if !token.trim().is_empty() => return Ok((token.trim().to_owned(), Some(path))),
        Ok(_) => {}
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => return Err(StoreError::Io { path, source }),
    }
    let token = format!("mwo_{}", store::random_hex(32)?);
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)
            .map_err(|source| StoreError::Io {
                path: path.clone(),
                source,
            })?;
        file.write_all(token.as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(|source| StoreError::Io {
                path: path.clone(),
                source,
            })?;
    }
    Ok((token, Some(path)))
}

/// Serves the admin listener: `GET /metrics` and the control-plane API, until `shutdown`, with
/// the gateway's serving loop (`config`: the same slowloris cut-off and shutdown grace).
pub async fn serve_admin(
    listener: TcpListener,
    control: Arc<ControlPlane>,
    config: meshwa_gateway::GatewayConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), meshwa_gateway::GatewayError> {
    let local = listener
        .local_addr()
        .map_err(meshwa_gateway::GatewayError::LocalAddr)?;
    tracing::info!(%local, "admin listening (control plane API, GET /metrics)");
    let handler = move |request| {
        let control = control.clone();
        async move { api::handle(&control, request).await }
    };
    meshwa_gateway::serve_http("admin", listener, config, handler, shutdown).await
}
