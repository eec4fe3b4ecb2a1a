//! The apps being served, and the one place that changes them.
//!
//! Every change (an app from the command line at start, a deploy, a redeploy, a removal) goes
//! through [`Registry::activate`] or [`Registry::remove`], one at a time (an async mutex), and
//! ends by swapping the gateway's whole route table and the runtime's directory entries of that
//! app. Compiling happens before, outside the lock ([`Registry::prepare`]), so a slow compile of
//! one tenant's app does not hold up another's deploy, and a failed one changes nothing.
//!
//! Zero downtime: a request takes the route table current when it arrives and keeps its function
//! (an `Arc`) until it ends, so requests in flight finish on the old version while new ones get
//! the new version; no request sees neither. Removing an app unroutes it at once, then
//! [`drain`] waits for its running instances to finish.
//!
//! The operator's [`Policy`] is checked here, under the same lock, for every app that is not
//! the operator's own (deploys, and stored apps restored at start): its limits, grants and
//! routes, and its tenant's counts of apps and stores with it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use meshwa_gateway::{Router, Routes};
use meshwa_manifest::{Manifest, Policy, TenantUsage, check_route_collisions};
use meshwa_runtime::{Fault, Function, LoadError, PreparedApp, Runtime, Secrets};

use crate::store::StoreError;

/// Where an app came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// A manifest given to `meshwa serve` on the command line: the operator's, read-only for the
    /// API.
    Static,
    /// Deployed through the control plane; `upload_bytes` is what its files take on disk.
    Deployed {
        version: u64,
        deployed_at: u64,
        upload_bytes: u64,
    },
}

impl Origin {
    /// What the app's files take on disk under the data directory (none for the operator's own).
    pub fn upload_bytes(self) -> u64 {
        match self {
            Origin::Static => 0,
            Origin::Deployed { upload_bytes, .. } => upload_bytes,
        }
    }
}

/// An app being served.
#[derive(Clone)]
pub struct ActiveApp {
    pub manifest: Arc<Manifest>,
    /// In manifest order.
    pub functions: Vec<Arc<Function>>,
    pub origin: Origin,
}

impl ActiveApp {
    /// The function of this app named `name`.
    pub fn function(&self, name: &meshwa_manifest::Name) -> Option<&Arc<Function>> {
        self.functions.iter().find(|f| &f.id().function == name)
    }

    /// What the app counts against its tenant's policy; the operator's own apps count nothing.
    fn usage(&self) -> Option<TenantUsage> {
        match self.origin {
            Origin::Static => None,
            Origin::Deployed { upload_bytes, .. } => {
                Some(TenantUsage::of_app(&self.manifest, upload_bytes))
            }
        }
    }
}

/// Why a change was refused. Nothing changed.
#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    /// The app is invalid or conflicts with other apps: every problem found.
    #[error("{}", .0.join("; "))]
    Invalid(Vec<String>),
    /// The app comes from the server's command line and cannot be changed through the API.
    #[error("app {0} is served from the server's command line; change it there")]
    Static(String),
    #[error("no app {0}")]
    NotFound(String),
    /// The host could not record the change (disk): nothing changed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A preload could not be written into its store (the host's disk).
    #[error(transparent)]
    Preload(LoadError),
}

/// Why an app could not be prepared (compiled, checked, linked). Nothing changed. The runtime's
/// errors are kept whole so that whose fault it was reaches the status code.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    /// Every problem found, function by function (at least one).
    #[error("{}", lines(.0))]
    Load(Vec<LoadError>),
    /// The compile task ended without an answer (a panic in the compiler).
    #[error("compile task failed: {0}")]
    Task(String),
}

impl PrepareError {
    /// The host's if any problem is the host's (the app could not be judged), else the client's.
    pub fn fault(&self) -> Fault {
        match self {
            PrepareError::Load(errors) if errors.iter().all(|e| e.fault() == Fault::Client) => {
                Fault::Client
            }
            PrepareError::Load(_) | PrepareError::Task(_) => Fault::Host,
        }
    }

    /// One message per problem.
    pub fn messages(&self) -> Vec<String> {
        match self {
            PrepareError::Load(errors) => errors.iter().map(ToString::to_string).collect(),
            PrepareError::Task(_) => vec![self.to_string()],
        }
    }
}

fn lines(errors: &[LoadError]) -> String {
    let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
    lines.join("\n")
}

type AppKey = (String, String);

/// The apps being served.
pub struct Registry {
    runtime: Arc<Runtime>,
    routes: Arc<Routes>,
    secrets: Secrets,
    /// The operator's walls for deployed apps (command-line apps are the operator's own).
    policy: Arc<Policy>,
    apps: tokio::sync::Mutex<BTreeMap<AppKey, ActiveApp>>,
}

impl Registry {
    /// A registry with the default policy ([`Policy::default`]).
    pub fn new(runtime: Arc<Runtime>, secrets: Secrets) -> Registry {
        Registry {
            runtime,
            routes: Arc::new(Routes::from_pointee(Router::default())),
            secrets,
            policy: Arc::default(),
            apps: tokio::sync::Mutex::new(BTreeMap::new()),
        }
    }

    /// Sets the operator's policy, for deploys here and for outbound connections in the
    /// runtime (one policy for both, so they never disagree). Set it before apps are restored.
    pub fn with_policy(mut self, policy: Arc<Policy>) -> Registry {
        self.runtime.set_policy(policy.clone());
        self.policy = policy;
        self
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The route table the gateway serves.
    pub fn routes(&self) -> Arc<Routes> {
        self.routes.clone()
    }

    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.runtime
    }

    /// Compiles and links every function of `manifest` (blocking: seconds for a cold compile)
    /// without making anything reachable. On error, every problem found.
    pub fn prepare(&self, manifest: &Manifest) -> Result<PreparedApp, PrepareError> {
        self.runtime
            .prepare_app(manifest, &self.secrets)
            .map_err(PrepareError::Load)
    }

    /// [`Registry::prepare`] on a blocking thread, so that a compile does not stall the
    /// requests sharing this thread. Hands the manifest back with the prepared app.
    pub async fn prepare_off_thread(
        self: &Arc<Self>,
        manifest: Manifest,
    ) -> Result<(Manifest, PreparedApp), PrepareError> {
        let registry = self.clone();
        tokio::task::spawn_blocking(move || registry.prepare(&manifest).map(|p| (manifest, p)))
            .await
            .unwrap_or_else(|e| Err(PrepareError::Task(e.to_string())))
    }

    /// Makes a prepared app current: checks its routes against every other app, then swaps it
    /// in (replacing its previous version, if any). Returns the version it replaced.
    pub async fn activate(
        &self,
        manifest: Manifest,
        prepared: PreparedApp,
        origin: Origin,
    ) -> Result<Option<ActiveApp>, ChangeError> {
        self.activate_and_persist(manifest, prepared, origin, || Ok(()))
            .await
    }

    /// [`Registry::activate`], with `persist` run once every check has passed and before the
    /// swap: if it fails, nothing changes. (A deploy records itself on disk there, so that what
    /// is served and what a restart would load never differ.)
    pub async fn activate_and_persist(
        &self,
        manifest: Manifest,
        prepared: PreparedApp,
        origin: Origin,
        persist: impl FnOnce() -> Result<(), StoreError>,
    ) -> Result<Option<ActiveApp>, ChangeError> {
        let key = (manifest.tenant.to_string(), manifest.app.to_string());
        let mut apps = self.apps.lock().await;
        if let Some(existing) = apps.get(&key)
            && existing.origin == Origin::Static
            && origin != Origin::Static
        {
            return Err(ChangeError::Static(format!("{}/{}", key.0, key.1)));
        }
        let mut all: Vec<Manifest> = apps
            .iter()
            .filter(|(k, _)| **k != key)
            .map(|(_, app)| (*app.manifest).clone())
            .collect();
        all.push(manifest.clone());
        if origin != Origin::Static {
            let problems = self.policy_problems(&apps, &key, &manifest, origin);
            if !problems.is_empty() {
                return Err(ChangeError::Invalid(problems));
            }
        }
        if let Err(collision) = check_route_collisions(&all) {
            return Err(ChangeError::Invalid(vec![format!(
                "route collision: {collision}"
            )]));
        }
        // Preload files go into empty stores once every check has passed, before the app is
        // recorded: a failure here changes nothing but data no version has seen yet.
        if let Err(error) = self.runtime.preload(&prepared) {
            return Err(ChangeError::Preload(error));
        }
        persist()?;
        self.runtime.activate_app(&prepared);
        let app = ActiveApp {
            manifest: Arc::new(manifest),
            functions: prepared.functions,
            origin,
        };
        let previous = apps.insert(key, app);
        self.publish_routes(&apps);
        Ok(previous)
    }

    /// What the policy refuses in deploying `manifest` as `key` next to `apps`: its own limits,
    /// grants and routes, and what its tenant would have over all its apps with it (apps,
    /// stores, disk).
    fn policy_problems(
        &self,
        apps: &BTreeMap<AppKey, ActiveApp>,
        key: &AppKey,
        manifest: &Manifest,
        origin: Origin,
    ) -> Vec<String> {
        let others: TenantUsage = apps
            .iter()
            .filter(|(k, _)| k.0 == key.0 && *k != key)
            .filter_map(|(_, app)| app.usage())
            .sum();
        let mut problems = self.policy.check_app(manifest);
        let this = TenantUsage::of_app(manifest, origin.upload_bytes());
        problems.extend(self.policy.check_usage(&key.0, others + this));
        problems
    }

    /// Unroutes a deployed `tenant/app` and makes it unreachable for in-process calls. Its
    /// running instances finish; [`drain`] waits for them. Command-line apps are refused.
    pub async fn remove(&self, tenant: &str, app: &str) -> Result<ActiveApp, ChangeError> {
        let key = (tenant.to_owned(), app.to_owned());
        let mut apps = self.apps.lock().await;
        match apps.get(&key) {
            None => return Err(ChangeError::NotFound(format!("{tenant}/{app}"))),
            Some(found) if found.origin == Origin::Static => {
                return Err(ChangeError::Static(format!("{tenant}/{app}")));
            }
            Some(_) => {}
        }
        let removed = apps
            .remove(&key)
            .ok_or_else(|| ChangeError::NotFound(format!("{tenant}/{app}")))?;
        self.runtime
            .deactivate_app(&removed.manifest.tenant, &removed.manifest.app);
        self.publish_routes(&apps);
        Ok(removed)
    }

    /// The apps being served, by `(tenant, app)`.
    pub async fn apps(&self) -> Vec<ActiveApp> {
        self.apps.lock().await.values().cloned().collect()
    }

    pub async fn get(&self, tenant: &str, app: &str) -> Option<ActiveApp> {
        self.apps
            .lock()
            .await
            .get(&(tenant.to_owned(), app.to_owned()))
            .cloned()
    }

    /// Builds the route table from every app and swaps it in.
    fn publish_routes(&self, apps: &BTreeMap<AppKey, ActiveApp>) {
        let mut routes = Vec::new();
        for app in apps.values() {
            for (spec, function) in app.manifest.functions.iter().zip(&app.functions) {
                if let Some(route) = &spec.route {
                    routes.push((route.clone(), function.clone()));
                }
            }
        }
        self.routes.store(Arc::new(Router::new(routes)));
    }
}

/// Waits until none of `app`'s functions has a request in flight or an instance alive, at most
/// `limit` (its longest timeout is the natural bound). Returns whether it drained.
pub async fn drain(app: ActiveApp, limit: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        // Ours is the only reference left once no router, request or call holds the function.
        let busy = app
            .functions
            .iter()
            .any(|f| Arc::strong_count(f) > 1 || f.live_instances() > 0);
        if !busy {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The longest timeout among an app's functions: how long draining it can take.
pub fn drain_limit(app: &ActiveApp) -> Duration {
    app.manifest
        .functions
        .iter()
        .map(|f| f.limits.timeout)
        .max()
        .unwrap_or_default()
        + Duration::from_secs(1)
}
