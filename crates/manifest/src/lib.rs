//! `meshwa.toml`: one tenant's app, parsed strictly.
//!
//! A manifest names a tenant and an app and lists the app's functions. Parsing is strict in the way
//! Firecracker's config is: an unknown key, a malformed name, a size or duration that does not parse,
//! a component file that does not exist or two functions on one route are all errors, and every error
//! names the manifest file and, where there is one, the line. Nothing here touches wasmtime: this
//! crate is pure validation so that it can run at deploy time, in tests and in tools alike.
//!
//! A Spin app's `spin.toml` is read into the same model (module `spin`, [`Manifest::load_spin`]):
//! what meshwa adds for it (Spin routes for its headers, variables, `*.spin.internal` calls) is
//! a function's [`SpinFunction`].
//!
//! ```toml
//! tenant = "acme"
//! app = "greeter"
//! secrets = ["api-key"]            # config values the server supplies from its secrets file
//!
//! [[functions]]
//! name = "hello"
//! component = "hello.wasm"         # relative to this file
//! route = "/acme/hello"            # path prefix; omit for a function with no public route
//! limits = { max-memory = "16MiB", timeout = "2s", max-request-body = "1MiB", max-outbound-response = "16MiB" }
//! env = { GREETING_STYLE = "short" } # environment variables (wasi:cli/environment); never secrets
//! pre-initialize = false           # default true: snapshot `wizer-initialize` at load, if exported
//!
//! [[functions]]
//! name = "render"                  # no route: private, reachable only in-process
//! component = "render.wasm"
//! callable-by = ["hello"]          # optional: which functions of this app may call it
//!
//! [functions.grants]               # what this function may use; nothing is granted by default
//! key-value = ["visits", ""]       # stores of this app (`""`: the default store)
//! config = ["greeting", "api-key"] # keys of `[config]` or `secrets`
//! logging = true                   # wasi:logging
//! outbound = ["https://api.example.com", "http://127.0.0.1:*"]  # origins for wasi:http
//!
//! [functions.imports]              # typed calls: WIT interfaces other functions of this app export
//! "acme:greeting/words" = "hello"  # interface = the function exporting it (composed at load)
//! "acme:greeting/names" = { function = "hello", link = "host" }  # or host-linked: a fresh
//!                                  # instance of the exporter per call, with its own grants
//!
//! [tenant-limits]
//! max-instances = 20               # optional: most live instances of this tenant at once
//! max-memory = "512MiB"            # optional: most linear memory they may hold together
//!
//! [key-value.visits]               # a durable store of this app (all quotas optional)
//! max-key-size = "256B"
//! max-value-size = "1MiB"
//! max-total-size = "64MiB"
//!
//! [key-value.""]                   # the default store: what `open("")` opens
//! preload = "data/seed.json"       # a JSON object of strings, written at activation into the
//!                                  # store only while it is empty (never over live data)
//!
//! [config]                         # plain values, readable by functions granted them
//! greeting = "Hello"
//! ```

mod interfaces;
mod names;
mod outbound;
mod policy;
mod raw;
mod routes;
mod spin;
mod triggers;
mod units;

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use interfaces::{Interface, Linking, RESERVED_NAMESPACES, TypedImport};
pub use names::{Name, NameError, StoreName};
pub use outbound::OutboundRule;
pub use policy::{MAX_TIMEOUT, Policy, PolicyError, TenantPolicy, TenantUsage};
pub use routes::{Route, RouteError, check_route_collisions};
pub use spin::{DEFAULT_SPIN_TENANT, InternalCalls, SpinFunction, TemplatePart};
pub use triggers::{MAX_SUBJECT, Schedule, Subject, Triggers};
/// The conventions' human-readable sizes and durations, for flags as well as manifests.
pub use units::{parse_duration, parse_size};

/// Default per-instance linear-memory ceiling when a function sets none.
pub const DEFAULT_MAX_MEMORY: u64 = 64 * 1024 * 1024;
/// Default wall-clock budget of one invocation when a function sets none.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default request body ceiling when a function sets none.
pub const DEFAULT_MAX_REQUEST_BODY: u64 = 16 * 1024 * 1024;
/// Default largest outbound HTTP response body a function may receive.
pub const DEFAULT_MAX_OUTBOUND_RESPONSE: u64 = 16 * 1024 * 1024;
/// Default quotas of a key-value store.
pub const DEFAULT_STORE_QUOTA: StoreQuota = StoreQuota {
    max_key_size: 256,
    max_value_size: 1024 * 1024,
    max_total_size: 64 * 1024 * 1024,
};
/// Most environment variables one function may have.
pub const MAX_ENV_VARS: usize = 128;
/// Most bytes of environment variables (names and values together) one function may have: they
/// are copied into every instance.
pub const MAX_ENV_BYTES: usize = 32 * 1024;

/// A manifest larger than this is refused before it is parsed: no honest app needs more, and a
/// hostile one must not make the parser allocate without bound.
pub const MAX_MANIFEST_BYTES: u64 = 1024 * 1024;

/// One tenant's app, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    /// The file this manifest was read from (for error messages).
    pub source: PathBuf,
    pub tenant: Name,
    pub app: Name,
    pub functions: Vec<FunctionSpec>,
    /// Most instances the tenant may hold at once (`tenant-limits.max-instances`), if set. With
    /// several apps of one tenant, the smallest applies; the server's ceiling always does.
    pub tenant_max_instances: Option<u32>,
    /// Most linear memory the tenant's live instances may hold together
    /// (`tenant-limits.max-memory`), if set; the smallest of the tenant's apps applies.
    pub tenant_max_memory: Option<u64>,
    /// The app's durable key-value stores (`[key-value.<name>]`).
    pub stores: Vec<StoreSpec>,
    /// Plain config values (`[config]`).
    pub config: std::collections::BTreeMap<Name, String>,
    /// Names of config values the server supplies from its secrets file (`secrets`).
    pub secrets: Vec<Name>,
}

/// A key-value store of an app. The same name in two apps (or two tenants) is two stores.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreSpec {
    pub name: StoreName,
    pub quota: StoreQuota,
    /// A JSON file (an object of string keys and string values) written into the store when
    /// the app is activated, if the store is empty then. Resolved against the manifest's
    /// directory, and always inside it.
    pub preload: Option<PathBuf>,
    /// Kept on each node (in its embedded redb) even when the node is in a cluster, where stores
    /// are otherwise cluster-wide. For caches and scratch data that need no other node's view:
    /// a request may land on any node, so the function must not rely on finding there what an
    /// earlier request wrote. Without a cluster, every store is node-local.
    pub node_local: bool,
}

/// Limits of one key-value store; a write beyond them is refused with an error value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreQuota {
    /// Longest key, in bytes.
    pub max_key_size: u64,
    /// Largest value, in bytes.
    pub max_value_size: u64,
    /// Most bytes of keys and values the store may hold in all.
    pub max_total_size: u64,
}

/// What one function may use beyond its own sandbox. Granting is linking: a component that
/// imports a service it was not granted is refused when it is loaded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grants {
    /// Key-value stores of the app this function may open.
    pub key_value: Vec<StoreName>,
    /// Config keys (plain or secret) this function may read.
    pub config: Vec<Name>,
    /// Whether the function may import `wasi:logging`.
    pub logging: bool,
    /// Origins this function may send HTTP requests to. Calls to sibling functions
    /// (`*.internal`) need no grant.
    pub outbound: Vec<OutboundRule>,
    /// Subjects (patterns) of the tenant's this function may publish messages to.
    pub publish: Vec<Subject>,
}

/// One function of an app.
#[derive(Debug, Clone, PartialEq)]
pub struct FunctionSpec {
    pub name: Name,
    /// Absolute (or manifest-relative resolved) path to the component file.
    pub component: PathBuf,
    /// Public HTTP route (path prefix), if any. A function without one is private: only
    /// functions of the same app can call it, in-process.
    pub route: Option<Route>,
    pub limits: Limits,
    /// If set, only these functions of the same app may call this one in-process; if not, any
    /// function of the app may.
    pub callable_by: Option<Vec<Name>>,
    pub grants: Grants,
    pub kind: FunctionKind,
    /// WIT interfaces this function imports from other functions of its app (typed calls).
    pub imports: Vec<TypedImport>,
    /// Environment variables its instances see through `wasi:cli/environment`, by name. Plain
    /// configuration only: a manifest is not a place for secrets (those come from the
    /// operator's secrets file, through `wasi:config`).
    pub env: Vec<(String, String)>,
    /// Whether a component that offers an initialization function (`wizer-initialize`) is
    /// pre-initialized at load: the function runs once and fresh instances start from the
    /// snapshot of its state (`pre-initialize = false` turns it off).
    pub pre_initialize: bool,
    /// For a function of a Spin app (`spin.toml`): its Spin route, variables and in-process
    /// calls, which meshwa's own manifest has no words for.
    pub spin: Option<SpinFunction>,
    /// What starts it besides HTTP requests and in-process calls.
    pub triggers: Triggers,
}

/// How the host runs a function's code.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FunctionKind {
    /// A `wasi:http` handler (a component exporting `wasi:http/incoming-handler`, or a core
    /// module built against it).
    #[default]
    Http,
    /// A command-line program run CGI-style: the request body on stdin, CGI variables in the
    /// environment, headers and body expected on stdout (a component exporting `wasi:cli/run`,
    /// or a WASI preview1 command module with `_start`).
    Cgi,
    /// A component that only exports WIT interfaces for the typed imports of other functions
    /// of its app (`[functions.imports]`): composed into them or run for each host-linked call,
    /// never invoked on its own, so it has no route and cannot be called in-process.
    Exports,
}

/// Per-invocation limits of a function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Ceiling on the instance's linear memory, in bytes.
    pub max_memory: u64,
    /// Wall-clock budget of one invocation, guest code and host calls alike.
    pub timeout: Duration,
    /// Largest request body the function accepts, in bytes.
    pub max_request_body: u64,
    /// Largest response body the function may receive from an outbound HTTP request.
    pub max_outbound_response: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_memory: DEFAULT_MAX_MEMORY,
            timeout: DEFAULT_TIMEOUT,
            max_request_body: DEFAULT_MAX_REQUEST_BODY,
            max_outbound_response: DEFAULT_MAX_OUTBOUND_RESPONSE,
        }
    }
}

/// `tenant/app/function`: the identity of a function everywhere in meshwa.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FunctionId {
    pub tenant: Name,
    pub app: Name,
    pub function: Name,
}

impl fmt::Display for FunctionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.tenant, self.app, self.function)
    }
}

impl Manifest {
    /// The identity of one of this manifest's functions.
    pub fn function_id(&self, function: &FunctionSpec) -> FunctionId {
        FunctionId {
            tenant: self.tenant.clone(),
            app: self.app.clone(),
            function: function.name.clone(),
        }
    }

    /// Reads and validates the manifest at `path`: a `meshwa.toml`, or a Spin app's `spin.toml`
    /// (by its file name; served as the tenant its `[application.tool.meshwa]` table names, see
    /// [`Manifest::load_spin`]). Component paths are resolved relative to the manifest's
    /// directory and must name existing files.
    pub fn load(path: &Path) -> Result<Manifest, ManifestError> {
        if path.file_name() == Some(std::ffi::OsStr::new(SPIN_MANIFEST)) {
            return Self::load_spin(path, None);
        }
        Self::load_with(path, |text, base| Self::parse(text, path, base))
    }

    /// Reads the manifest of the app directory `dir` deployed into `tenant`: its `meshwa.toml`,
    /// or, if it has none, a Spin app's `spin.toml`.
    pub fn load_dir(dir: &Path, tenant: &Name) -> Result<Manifest, ManifestError> {
        let meshwa = dir.join(MESHWA_MANIFEST);
        let spin = dir.join(SPIN_MANIFEST);
        if !meshwa.exists() && spin.is_file() {
            return Self::load_spin(&spin, Some(tenant));
        }
        Self::load(&meshwa)
    }

    /// Reads a Spin app's `spin.toml` as a meshwa app of `tenant` (`None`: the tenant its
    /// `[application.tool.meshwa]` table names, else [`DEFAULT_SPIN_TENANT`]).
    pub fn load_spin(path: &Path, tenant: Option<&Name>) -> Result<Manifest, ManifestError> {
        Self::load_with(path, |text, base| {
            Self::parse_spin(text, path, base, tenant)
        })
    }

    fn load_with(
        path: &Path,
        parse: impl FnOnce(&str, &Path) -> Result<Manifest, ManifestError>,
    ) -> Result<Manifest, ManifestError> {
        let read_error = |source| ManifestError::Read {
            path: path.to_path_buf(),
            source,
        };
        let len = std::fs::metadata(path).map_err(read_error)?.len();
        if len > MAX_MANIFEST_BYTES {
            return Err(ManifestError::TooLarge {
                path: path.to_path_buf(),
                len,
            });
        }
        let text = std::fs::read_to_string(path).map_err(read_error)?;
        let base = path.parent().unwrap_or(Path::new("."));
        let manifest = parse(&text, base)?;
        for function in &manifest.functions {
            if !function.component.is_file() {
                return Err(ManifestError::MissingComponent {
                    path: path.to_path_buf(),
                    function: function.name.to_string(),
                    component: function.component.clone(),
                });
            }
        }
        for store in &manifest.stores {
            if let Some(file) = &store.preload
                && !file.is_file()
            {
                return Err(ManifestError::MissingPreload {
                    path: path.to_path_buf(),
                    store: store.name.to_string(),
                    file: file.clone(),
                });
            }
        }
        Ok(manifest)
    }

    /// Parses and validates manifest text. `source` names the text in errors; relative component
    /// paths are resolved against `base`. Does not touch the file system.
    pub fn parse(text: &str, source: &Path, base: &Path) -> Result<Manifest, ManifestError> {
        raw::parse(text, source, base)
    }

    /// Parses a Spin app's manifest text (see the `spin` module for what maps to what).
    pub fn parse_spin(
        text: &str,
        source: &Path,
        base: &Path,
        tenant: Option<&Name>,
    ) -> Result<Manifest, ManifestError> {
        spin::parse(text, source, base, tenant)
    }
}

/// The file name of a Spin app's manifest.
pub const SPIN_MANIFEST: &str = "spin.toml";
/// The file name of meshwa's own manifest.
pub const MESHWA_MANIFEST: &str = "meshwa.toml";

/// Why a manifest was refused. Every variant is the fault of whoever wrote the manifest.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("{}: cannot read manifest: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: manifest is {len} bytes, more than the {MAX_MANIFEST_BYTES} allowed", path.display())]
    TooLarge { path: PathBuf, len: u64 },
    /// TOML syntax, an unknown key, a missing key or a value of the wrong type.
    #[error("{}: {message}", path.display())]
    Syntax { path: PathBuf, message: String },
    /// A value that parsed but is not acceptable.
    #[error("{}:{line}: `{key}`: {message}", path.display())]
    Invalid {
        path: PathBuf,
        line: usize,
        key: String,
        message: String,
    },
    #[error("{}: function `{function}`: component file {} does not exist", path.display(), component.display())]
    MissingComponent {
        path: PathBuf,
        function: String,
        component: PathBuf,
    },
    #[error("{}: key-value store {store}: preload file {} does not exist", path.display(), file.display())]
    MissingPreload {
        path: PathBuf,
        store: String,
        file: PathBuf,
    },
    /// Two functions claim the same route, or one tenant's route lies under another tenant's.
    #[error("route collision: {0}")]
    RouteCollision(#[from] RouteError),
}

#[cfg(test)]
mod tests;
