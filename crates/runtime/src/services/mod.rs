//! Host services linked into functions: `wasi:keyvalue`, `wasi:config`, `wasi:logging` (plus
//! stdout/stderr) and outbound `wasi:http`, each granted per function in the manifest.
//!
//! Lifecycle, as in Spin's factors: everything a function's grants mean is resolved **once, at
//! load** into a [`FunctionServices`] (store identities and quotas, config values, secrets to
//! hide, origin rules), and the component's imports are checked against the grants then
//! ([`check_imports`]). Each instance only clones an `Arc` to it, so a fresh instance per request
//! costs nothing more for having services.
//!
//! Granting is linking: the linker offers every service, but a component that imports a service
//! interface its function was not granted is refused at load with an error that names the import
//! and the grant to add. Inside a granted interface the grant still decides: `open` of a store
//! that was not granted is `access-denied`, `get` of a config key that was not granted finds
//! nothing, a request to an origin that was not granted is denied.

pub(crate) mod keyvalue;
pub(crate) mod logging;
pub(crate) mod outbound;
pub(crate) mod recent;
mod secrets;

use std::sync::Arc;
use std::time::Duration;

use meshwa_kv::{KeyValueBackend, StoreId};
use meshwa_manifest::{FunctionId, FunctionSpec, Manifest, OutboundRule};
use wasmtime::Engine;
use wasmtime::component::Component;
use wasmtime_wasi_config::WasiConfigVariables;

use crate::LoadError;
use keyvalue::{GrantedStore, KeyValueGrant};
use logging::GuestLog;
pub use secrets::{Secrets, SecretsError};

/// What one function may use, resolved at load and shared by all its instances.
pub(crate) struct FunctionServices {
    pub(crate) id: FunctionId,
    pub(crate) key_value: Option<KeyValueGrant>,
    pub(crate) config: WasiConfigVariables,
    pub(crate) log: Arc<GuestLog>,
    pub(crate) recent: Arc<recent::RecentLog>,
    pub(crate) outbound: Vec<OutboundRule>,
    pub(crate) timeout: Duration,
    pub(crate) max_outbound_response: u64,
}

impl FunctionServices {
    /// Resolves `spec`'s grants within `manifest`'s app. `backend` is the key-value backend, if
    /// the app declares stores.
    pub(crate) fn resolve(
        manifest: &Manifest,
        spec: &FunctionSpec,
        secrets: &Secrets,
        backend: Option<Arc<dyn KeyValueBackend>>,
    ) -> Result<FunctionServices, LoadError> {
        let id = manifest.function_id(spec);
        let key_value = match backend {
            Some(backend) if !spec.grants.key_value.is_empty() => {
                let granted = manifest
                    .stores
                    .iter()
                    .filter(|store| spec.grants.key_value.contains(&store.name))
                    .map(|store| GrantedStore {
                        id: StoreId {
                            tenant: manifest.tenant.clone(),
                            app: manifest.app.clone(),
                            store: store.name.clone(),
                        },
                        quota: store.quota,
                    })
                    .collect();
                Some(KeyValueGrant {
                    backend,
                    granted,
                    declared: manifest.stores.iter().map(|s| s.name.clone()).collect(),
                })
            }
            _ => None,
        };

        let mut config = WasiConfigVariables::new();
        for key in &spec.grants.config {
            let value = match manifest.config.get(key) {
                Some(value) => value.as_str(),
                None => secrets.value(manifest, key)?,
            };
            config.insert(key.as_str(), value);
        }
        // Every secret of the app is hidden in the function's log lines, granted or not: a
        // sibling may have handed it over.
        let mut hidden = Vec::with_capacity(manifest.secrets.len());
        for name in &manifest.secrets {
            hidden.push(secrets.value(manifest, name)?.to_owned());
        }

        let recent = Arc::new(recent::RecentLog::default());
        Ok(FunctionServices {
            log: Arc::new(GuestLog::new(&id, hidden, recent.clone())),
            recent,
            id,
            key_value,
            config,
            outbound: spec.grants.outbound.clone(),
            timeout: spec.limits.timeout,
            max_outbound_response: spec.limits.max_outbound_response,
        })
    }
}

/// A service interface that needs a grant: its name prefix, the grant to write in the manifest,
/// and whether a function's grants include it.
struct GrantedInterface {
    prefix: &'static str,
    grant: &'static str,
    granted: fn(&meshwa_manifest::Grants) -> bool,
}

const GRANTED_INTERFACES: &[GrantedInterface] = &[
    GrantedInterface {
        prefix: "wasi:keyvalue/",
        grant: "key-value = [\"<store>\"]",
        granted: |g| !g.key_value.is_empty(),
    },
    GrantedInterface {
        prefix: "wasi:config/",
        grant: "config = [\"<key>\"]",
        granted: |g| !g.config.is_empty(),
    },
    GrantedInterface {
        prefix: "wasi:logging/",
        grant: "logging = true",
        granted: |g| g.logging,
    },
];

/// Refuses a component that imports a service interface its function was not granted. Runs once
/// per load, never per call.
pub(crate) fn check_imports(
    engine: &Engine,
    component: &Component,
    spec: &FunctionSpec,
    id: &FunctionId,
) -> Result<(), LoadError> {
    for (import, _) in component.component_type().imports(engine) {
        let ungranted = GRANTED_INTERFACES
            .iter()
            .find(|i| import.starts_with(i.prefix) && !(i.granted)(&spec.grants));
        if let Some(interface) = ungranted {
            return Err(LoadError::NotGranted {
                function: id.clone(),
                import: import.to_owned(),
                grant: interface.grant,
            });
        }
    }
    Ok(())
}

/// Adds every service interface to the linker (see [`check_imports`] for who may use which).
pub(crate) fn add_to_linker(
    linker: &mut wasmtime::component::Linker<crate::state::InstanceState>,
) -> wasmtime::Result<()> {
    keyvalue::add_to_linker(linker)?;
    logging::bindings::wasi::logging::logging::add_to_linker::<_, wasmtime::component::HasSelf<_>>(
        linker,
        |state| state,
    )?;
    wasmtime_wasi_config::add_to_linker(linker, |state| {
        wasmtime_wasi_config::WasiConfig::new(&state.services().config)
    })
}
