//! `wasi:config`: a function reads the values of the keys it was granted (`grants.config`), from
//! the app's `[config]` or, for a secret, from the operator's secrets file. Anything else is not
//! found, as if it did not exist.

use wasmtime::component::Linker;
use wasmtime_wasi_config::{WasiConfig, WasiConfigVariables};

use super::{HostService, Resolving};
use crate::LoadError;
use crate::state::InstanceState;

pub(crate) const SERVICE: HostService = HostService {
    prefix: "wasi:config/",
    grant: "config = [\"<key>\"]",
    spin_grant: None,
    granted: |grants| !grants.config.is_empty(),
    add_to_linker,
};

/// The granted keys and their values.
pub(crate) fn resolve(resolving: &Resolving<'_>) -> Result<WasiConfigVariables, LoadError> {
    let manifest = resolving.manifest;
    let mut config = WasiConfigVariables::new();
    for key in &resolving.spec.grants.config {
        let value = match manifest.config.get(key) {
            Some(value) => value.as_str(),
            None => resolving.secrets.value(manifest, key)?,
        };
        config.insert(key.as_str(), value);
    }
    Ok(config)
}

fn add_to_linker(linker: &mut Linker<InstanceState>) -> wasmtime::Result<()> {
    wasmtime_wasi_config::add_to_linker(linker, |state| WasiConfig::new(&state.services().config))
}
