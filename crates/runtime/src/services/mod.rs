//! Host services linked into functions: `wasi:keyvalue`, `wasi:config`, `wasi:logging` (plus
//! stdout/stderr) and outbound `wasi:http`, each granted per function in the manifest.
//!
//! Lifecycle, as in Spin's factors: everything a function's grants mean is resolved **once, at
//! load** into a [`FunctionServices`] (store identities and quotas, config values, secrets to
//! hide, origin rules), and the component's imports are checked against the grants then
//! ([`check_imports`]). Each instance only clones an `Arc` to it, so a fresh instance per request
//! costs nothing more for having services.
//!
//! Every service is one module that owns its part: the entry in [`SERVICES`] (which imports it
//! provides, the grant that allows them, how it is linked) and the resolution of a function's
//! grants into what its instances use (a field of [`FunctionServices`]). Adding a service is a
//! new module, a line in [`SERVICES`], and its field here.
//!
//! Granting is linking: the linker offers every service, but a component that imports a service
//! interface its function was not granted is refused at load with an error that names the import
//! and the grant to add. Inside a granted interface the grant still decides: `open` of a store
//! that was not granted is `access-denied`, `get` of a config key that was not granted finds
//! nothing, a request to an origin that was not granted is denied.

pub(crate) mod config;
pub(crate) mod egress;
pub(crate) mod keyvalue;
pub(crate) mod logging;
pub(crate) mod messaging;
pub(crate) mod outbound;
pub(crate) mod recent;
mod secrets;
pub(crate) mod spin;

use std::sync::Arc;
use std::time::Duration;

use meshwa_manifest::{FunctionId, FunctionSpec, Grants, Manifest, OutboundRule};
use wasmtime::Engine;
use wasmtime::component::{Component, Linker};
use wasmtime_wasi_config::WasiConfigVariables;

use crate::LoadError;
use crate::state::InstanceState;
use keyvalue::KeyValueGrant;
use logging::GuestLog;
pub use secrets::{Secrets, SecretsError};

/// A host service that a function must be granted.
pub(crate) struct HostService {
    /// The imports it provides: every interface whose name starts with this.
    pub(crate) prefix: &'static str,
    /// What to write in a `meshwa.toml` to grant it (named when an import is refused).
    pub(crate) grant: &'static str,
    /// What to write in a `spin.toml` instead, if a Spin app can grant it at all.
    pub(crate) spin_grant: Option<&'static str>,
    /// Whether a function's grants include it.
    pub(crate) granted: fn(&Grants) -> bool,
    pub(crate) add_to_linker: fn(&mut Linker<InstanceState>) -> wasmtime::Result<()>,
}

/// Every service that needs a grant. (WASI itself, outbound `wasi:http` and `meshwa:platform`
/// are linked for every function: their policy is inside, see `state` and `outbound`.)
pub(crate) const SERVICES: &[HostService] = &[
    keyvalue::SERVICE,
    config::SERVICE,
    logging::SERVICE,
    spin::KEY_VALUE,
    spin::VARIABLES,
    messaging::SERVICE,
];

/// What one function may use, resolved at load and shared by all its instances.
pub(crate) struct FunctionServices {
    pub(crate) id: FunctionId,
    pub(crate) key_value: Option<KeyValueGrant>,
    /// The subjects it may publish to, and the bus (`grants.publish`).
    pub(crate) publish: Option<messaging::PublishGrant>,
    pub(crate) config: WasiConfigVariables,
    pub(crate) log: Arc<GuestLog>,
    pub(crate) recent: Arc<recent::RecentLog>,
    pub(crate) outbound: Vec<OutboundRule>,
    /// Where outbound connections may go (the runtime's, shared by every function).
    pub(crate) egress: Arc<egress::Egress>,
    pub(crate) timeout: Duration,
    pub(crate) max_outbound_response: u64,
    /// The function's environment variables (`env` in the manifest), copied into each instance.
    pub(crate) env: Vec<(String, String)>,
    /// Bytes its instances copied into and out of host buffers.
    pub(crate) buffers: crate::platform::BufferMeter,
    /// For a function of a Spin app: its variables, headers and `*.spin.internal` calls.
    pub(crate) spin: Option<spin::SpinServices>,
}

/// What a service's resolution may look at: the function, its app, the operator's secrets.
pub(crate) struct Resolving<'a> {
    pub(crate) manifest: &'a Manifest,
    pub(crate) spec: &'a FunctionSpec,
    pub(crate) id: &'a FunctionId,
    pub(crate) secrets: &'a Secrets,
}

impl FunctionServices {
    /// Resolves `spec`'s grants within `manifest`'s app. `stores`: the backend of each of the
    /// app's stores.
    pub(crate) fn resolve(
        manifest: &Manifest,
        spec: &FunctionSpec,
        secrets: &Secrets,
        stores: &[keyvalue::StoreBackend],
        bus: Option<&Arc<dyn messaging::MessageBus>>,
        egress: Arc<egress::Egress>,
    ) -> Result<FunctionServices, LoadError> {
        let id = manifest.function_id(spec);
        let resolving = Resolving {
            manifest,
            spec,
            id: &id,
            secrets,
        };
        let recent = Arc::new(recent::RecentLog::default());
        Ok(FunctionServices {
            key_value: keyvalue::resolve(&resolving, stores),
            publish: messaging::resolve(&resolving, bus)?,
            config: config::resolve(&resolving)?,
            log: Arc::new(logging::resolve(&resolving, recent.clone())?),
            recent,
            outbound: spec.grants.outbound.clone(),
            egress,
            timeout: spec.limits.timeout,
            max_outbound_response: spec.limits.max_outbound_response,
            env: spec.env.clone(),
            buffers: Default::default(),
            spin: spin::resolve(&resolving)?,
            id,
        })
    }
}

/// Refuses a component that imports a service interface its function was not granted. Runs once
/// per load, never per call.
pub(crate) fn check_imports(
    engine: &Engine,
    component: &Component,
    spec: &FunctionSpec,
    id: &FunctionId,
) -> Result<(), LoadError> {
    for (import, _) in component.component_type().imports(engine) {
        if import.contains("@0.2.0-rc-") {
            return Err(LoadError::PreReleaseWasi {
                function: id.clone(),
                import: import.to_owned(),
            });
        }
        let ungranted = SERVICES
            .iter()
            .find(|s| import.starts_with(s.prefix) && !(s.granted)(&spec.grants));
        if let Some(service) = ungranted {
            let grant = match (&spec.spin, service.spin_grant) {
                (None, _) => format!(
                    "add `{}` under [functions.grants] in its manifest",
                    service.grant
                ),
                (Some(_), Some(spin)) => {
                    format!("add `{spin}` under [component.{}] in spin.toml", spec.name)
                }
                (Some(_), None) => "a Spin app's manifest cannot grant it".to_owned(),
            };
            return Err(LoadError::NotGranted {
                function: id.clone(),
                import: import.to_owned(),
                grant,
            });
        }
    }
    Ok(())
}

/// Adds every service to the linker (see [`check_imports`] for who may use which).
pub(crate) fn add_to_linker(linker: &mut Linker<InstanceState>) -> wasmtime::Result<()> {
    SERVICES
        .iter()
        .try_for_each(|service| (service.add_to_linker)(linker))
}
