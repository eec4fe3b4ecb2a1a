//! Spin's host interfaces (`fermyon:spin/key-value@2.0.0`, `fermyon:spin/variables@2.0.0`) and
//! Spin's request headers, for components built with spin-sdk that came from a `spin.toml`.
//!
//! Both interfaces run on what meshwa already has, under the same grants:
//! - key-value: a Spin store label is a store of the app (`key_value_stores` in `spin.toml`
//!   declares and grants it), served by the same backend, quotas and read cache as
//!   `wasi:keyvalue`; `open` of a store of the app that was not granted is `access-denied`, of any
//!   other label `no-such-store`, as in Spin.
//! - variables: a component reads its own `[component.<id>.variables]`, resolved once at load
//!   (defaults from `[variables]`, required ones from the operator's secrets file); any other name
//!   is `undefined`.
//!
//! The headers ([`set_headers`]) are the ones Spin's HTTP trigger adds, so that code written
//! against them (spin-sdk's router, `spin-path-info` readers) finds what it expects.

use std::collections::HashMap;

use meshwa_manifest::{InternalCalls, SpinFunction, TemplatePart};
use wasmtime::component::{HasSelf, Linker, Resource};

use super::keyvalue::{Bucket, OpenRefused, blocking};
use super::{HostService, Resolving};
use crate::LoadError;
use crate::state::InstanceState;

pub(crate) mod bindings {
    wasmtime::component::bindgen!({
        path: "wit/spin",
        world: "fermyon:spin/meshwa-host",
        // As for wasi:keyvalue: reads answer from memory or the page cache, writes wait for the
        // disk.
        imports: {
            "fermyon:spin/key-value.[method]store.get": trappable,
            "fermyon:spin/key-value.[method]store.exists": trappable,
            "fermyon:spin/key-value.[static]store.open": trappable,
            "fermyon:spin/variables.get": trappable,
            default: async | trappable,
        },
        with: {
            "fermyon:spin/key-value.store": super::SpinStore,
        },
        require_store_data_send: true,
    });
}

use bindings::fermyon::spin::{key_value, variables};

/// An open Spin store: a [`Bucket`] under Spin's resource type.
pub struct SpinStore(Bucket);

impl AsRef<Bucket> for SpinStore {
    fn as_ref(&self) -> &Bucket {
        &self.0
    }
}

/// What a Spin function's instances need beyond meshwa's services, resolved at load.
pub(crate) struct SpinServices {
    variables: HashMap<String, String>,
    internal_calls: InternalCalls,
    /// The route without `/...` (what `spin-path-info` is relative to).
    component_route: String,
    /// The headers that are the same on every request, made once.
    fixed_headers: Vec<(http::HeaderName, http::HeaderValue)>,
    /// Most bytes of keys one `get-keys` gathers: the function's memory limit, since its
    /// instance could not hold more (so a store cannot make the host hold more for it).
    max_key_bytes: u64,
}

impl SpinServices {
    /// Whether the function may call `component` at `http://<component>.spin.internal`.
    pub(crate) fn may_call(&self, component: &str) -> bool {
        self.internal_calls.allows(component)
    }
}

/// Resolves a Spin function's variables (reading required ones from the operator's secrets).
pub(crate) fn resolve(resolving: &Resolving<'_>) -> Result<Option<SpinServices>, LoadError> {
    let Some(spin) = &resolving.spec.spin else {
        return Ok(None);
    };
    let SpinFunction {
        raw_route,
        base,
        variables,
        internal_calls,
    } = spin;
    let mut values = HashMap::with_capacity(variables.len());
    for (name, template) in variables {
        let mut value = String::new();
        for part in template {
            match part {
                TemplatePart::Literal(text) => value += text,
                TemplatePart::Secret(secret) => {
                    value += resolving.secrets.value(resolving.manifest, secret)?
                }
            }
        }
        values.insert(name.clone(), value);
    }
    // The trigger's route as written (`/a/...`); empty for a private component.
    let raw_route = raw_route.as_deref().unwrap_or_default();
    let fixed_headers = [
        ("spin-matched-route", raw_route),
        ("spin-raw-component-route", raw_route),
        ("spin-component-route", spin.component_route()),
        ("spin-base-path", base.as_str()),
    ]
    .into_iter()
    .filter_map(|(name, value)| {
        // Routes are checked ASCII paths, so every value is a valid header value.
        let value = http::HeaderValue::from_str(value).ok()?;
        Some((http::HeaderName::from_static(name), value))
    })
    .collect();
    Ok(Some(SpinServices {
        variables: values,
        internal_calls: internal_calls.clone(),
        component_route: spin.component_route().to_owned(),
        fixed_headers,
        max_key_bytes: resolving.spec.limits.max_memory,
    }))
}

/// Adds Spin's request headers to a request for a Spin function, replacing any the client sent
/// (they are the host's word, as in Spin). `client` is the peer's address, when known.
pub(crate) fn set_headers(
    spin: &SpinServices,
    request: &mut http::Request<impl Sized>,
    client: Option<std::net::SocketAddr>,
) {
    let uri = request.uri();
    let path_info = uri
        .path()
        .strip_prefix(spin.component_route.as_str())
        .unwrap_or(uri.path());
    // A gateway request names its host in `Host`; an in-process call in its URL.
    let host = uri
        .authority()
        .map(|a| a.as_str())
        .or_else(|| {
            let host = request.headers().get(http::header::HOST)?;
            host.to_str().ok()
        })
        .unwrap_or("localhost");
    let path_and_query = uri.path_and_query().map_or("/", |p| p.as_str());
    let full_url = format!("http://{host}{path_and_query}");
    let client = client.map(|addr| addr.to_string()).unwrap_or_default();
    // Values that are not representable (a host with control characters) are left out, not
    // taken from the client.
    let per_request = [
        ("spin-full-url", http::HeaderValue::from_str(&full_url)),
        ("spin-path-info", http::HeaderValue::from_str(path_info)),
        ("spin-client-addr", http::HeaderValue::from_str(&client)),
    ];
    let headers = request.headers_mut();
    for (name, value) in &spin.fixed_headers {
        headers.insert(name.clone(), value.clone());
    }
    for (name, value) in per_request {
        match value {
            Ok(value) => headers.insert(name, value),
            Err(_) => headers.remove(name),
        };
    }
}

type SpinResult<T> = wasmtime::Result<Result<T, key_value::Error>>;

impl InstanceState {
    fn spin_outcome<T>(
        &mut self,
        started: Option<std::time::Instant>,
        result: Result<T, meshwa_kv::KvError>,
    ) -> Result<T, key_value::Error> {
        self.key_value_call_ended(started);
        result.map_err(|error| key_value::Error::Other(self.kv_failure(error)))
    }
}

impl key_value::Host for InstanceState {}

impl key_value::HostStore for InstanceState {
    fn open(&mut self, label: String) -> SpinResult<Resource<SpinStore>> {
        Ok(match self.open_bucket(&label) {
            Ok(bucket) => Ok(self.table().push(SpinStore(bucket))?),
            Err(OpenRefused::AccessDenied) => Err(key_value::Error::AccessDenied),
            Err(OpenRefused::NoSuchStore) => Err(key_value::Error::NoSuchStore),
        })
    }

    fn get(&mut self, store: Resource<SpinStore>, key: String) -> SpinResult<Option<Vec<u8>>> {
        let started = self.host_call_started();
        let value = self.read_bucket(&store, |backend, store| backend.get(store, &key))?;
        Ok(self.spin_outcome(started, value))
    }

    async fn set(
        &mut self,
        store: Resource<SpinStore>,
        key: String,
        value: Vec<u8>,
    ) -> SpinResult<()> {
        let started = self.host_call_started();
        let (backend, store, quota) = self.bucket(&store)?;
        let result = blocking(move || backend.set_many(&store, &[(key, value)], &quota)).await;
        Ok(self.spin_outcome(started, result))
    }

    async fn delete(&mut self, store: Resource<SpinStore>, key: String) -> SpinResult<()> {
        let started = self.host_call_started();
        let (backend, store, _) = self.bucket(&store)?;
        let result = blocking(move || backend.delete_many(&store, &[key])).await;
        Ok(self.spin_outcome(started, result))
    }

    fn exists(&mut self, store: Resource<SpinStore>, key: String) -> SpinResult<bool> {
        let started = self.host_call_started();
        let found = self.read_bucket(&store, |backend, store| backend.exists(store, &key))?;
        Ok(self.spin_outcome(started, found))
    }

    /// Every key at once, as Spin's interface has it: gathered page by page, up to the
    /// function's memory limit (more could not reach the guest anyway).
    async fn get_keys(&mut self, store: Resource<SpinStore>) -> SpinResult<Vec<String>> {
        let started = self.host_call_started();
        let (backend, store, _) = self.bucket(&store)?;
        let limit = self
            .services()
            .spin
            .as_ref()
            .map_or(u64::MAX, |spin| spin.max_key_bytes);
        let (mut keys, mut bytes) = (Vec::new(), 0u64);
        let mut cursor = Some(0);
        while let Some(at) = cursor {
            let page = match backend.list_keys(&store, at) {
                Ok(page) => page,
                Err(error) => return Ok(self.spin_outcome(started, Err(error))),
            };
            bytes += page.keys.iter().map(|k| k.len() as u64 + 8).sum::<u64>();
            if bytes > limit {
                self.key_value_call_ended(started);
                return Ok(Err(key_value::Error::Other(format!(
                    "the store's keys take more than the function's {limit} bytes of memory"
                ))));
            }
            keys.extend(page.keys);
            cursor = page.cursor;
        }
        Ok(self.spin_outcome(started, Ok(keys)))
    }

    async fn drop(&mut self, store: Resource<SpinStore>) -> wasmtime::Result<()> {
        self.table().delete(store)?;
        Ok(())
    }
}

impl variables::Host for InstanceState {
    fn get(&mut self, name: String) -> wasmtime::Result<Result<String, variables::Error>> {
        let value = self
            .services()
            .spin
            .as_ref()
            .and_then(|spin| spin.variables.get(&name).cloned());
        Ok(value.ok_or(variables::Error::Undefined(name)))
    }
}

/// `fermyon:spin/key-value`: granted with the stores (`key_value_stores` in `spin.toml`).
pub(crate) const KEY_VALUE: HostService = HostService {
    prefix: "fermyon:spin/key-value",
    grant: "key-value = [\"<store>\"]",
    spin_grant: Some("key_value_stores = [\"<label>\"]"),
    granted: |grants| !grants.key_value.is_empty(),
    add_to_linker: |linker| key_value::add_to_linker::<_, HasSelf<InstanceState>>(linker, |s| s),
};

/// `fermyon:spin/variables`: needs no grant; a function reads only its own variables.
pub(crate) const VARIABLES: HostService = HostService {
    prefix: "fermyon:spin/variables",
    grant: "",
    spin_grant: None,
    granted: |_| true,
    add_to_linker: add_variables,
};

fn add_variables(linker: &mut Linker<InstanceState>) -> wasmtime::Result<()> {
    variables::add_to_linker::<_, HasSelf<InstanceState>>(linker, |s| s)
}
