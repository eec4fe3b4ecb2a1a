//! Typed errors of the runtime. Each says whose fault it is, so the gateway can pick the status.

use std::path::PathBuf;

use meshwa_manifest::FunctionId;
pub use meshwa_rules::{Fault, InvokeError};

/// Why the engine could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("cannot create the WebAssembly engine: {0}")]
    Engine(String),
    #[error("cannot use data directory {}: {source}", path.display())]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Why a function could not be loaded. Raised at load/deploy time, never per request.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{function}: cannot read component {}: {source}", path.display())]
    Read {
        function: FunctionId,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{function}: {} is not a valid WebAssembly component: {reason}", path.display())]
    InvalidComponent {
        function: FunctionId,
        path: PathBuf,
        reason: String,
    },
    /// The component imports something the host does not provide to it.
    #[error("{function}: cannot link component {}: {reason}", path.display())]
    Link {
        function: FunctionId,
        path: PathBuf,
        reason: String,
    },
    /// A CGI function's component does not export `wasi:cli/run` (has no `main`).
    #[error("{function}: {} is not a command-line program (kind = \"cgi\"): {reason}", path.display())]
    NotCommand {
        function: FunctionId,
        path: PathBuf,
        reason: String,
    },
    /// The component does not export `wasi:http/incoming-handler`.
    #[error("{function}: component {} is not an HTTP function: {reason}", path.display())]
    NotHttpHandler {
        function: FunctionId,
        path: PathBuf,
        reason: String,
    },
    /// The component imports a service its function was not granted.
    #[error(
        "{function}: the component imports `{import}`, which the function is not granted; {grant}"
    )]
    NotGranted {
        function: FunctionId,
        import: String,
        /// What to write, and where.
        grant: String,
    },
    /// The component was built against a pre-release WASI (`0.2.0-rc-...`, as spin-sdk 2.x and
    /// other 2023 toolchains emit), which meshwa does not link.
    #[error(
        "{function}: the component imports `{import}`, a pre-release of WASI 0.2 that meshwa does not provide; rebuild it with a toolchain for WASI 0.2.0 or later (spin-sdk 3 or later, cargo-component 0.5 or later, wit-bindgen 0.17 or later)"
    )]
    PreReleaseWasi {
        function: FunctionId,
        import: String,
    },
    /// The app declares a secret the server's secrets file does not supply.
    #[error(
        "app {app}: secret `{name}` has no value in the server's secrets file{}",
        file.as_ref().map(|p| format!(" ({})", p.display())).unwrap_or_else(|| " (none was given: --secrets-file)".to_owned())
    )]
    MissingSecret {
        app: String,
        name: String,
        file: Option<PathBuf>,
    },
    /// The function asks for messages (`subscribe`, `grants.publish`), which travel only
    /// between the nodes of a cluster: this server has no message bus.
    #[error(
        "{function}: `{key}` needs a message bus, which only a cluster has (meshwa serve --cluster)"
    )]
    NoMessageBus { function: String, key: &'static str },
    /// The key-value backend cannot be opened.
    #[error("cannot open the key-value store: {0}")]
    KeyValue(String),
    /// A store's preload file is missing, not JSON or over the store's quota (the app's
    /// fault), or could not be read (the host's).
    #[error("app {app}: {source}")]
    Preload {
        app: String,
        source: meshwa_kv::preload::PreloadError,
    },
    /// A preload could not be written into its store (the host's fault).
    #[error("app {app}: cannot preload key-value store {store}: {reason}")]
    PreloadWrite {
        app: String,
        store: String,
        reason: String,
    },
    /// A typed import (`[functions.imports]`) cannot be linked to its exporter.
    #[error(transparent)]
    TypedImport(Box<TypedImportRefused>),
    #[error(
        "{function}: limits.max-memory of {requested} bytes exceeds this server's per-instance ceiling of {ceiling} bytes"
    )]
    MemoryAboveCeiling {
        function: FunctionId,
        requested: u64,
        ceiling: u64,
    },
}

/// Why a typed import (`[functions.imports]`) cannot be linked: names the importing function, the
/// interface and the exporting function.
#[derive(Debug, thiserror::Error)]
#[error("{function}: cannot import `{interface}` from `{exporter}`: {reason}")]
pub struct TypedImportRefused {
    pub function: FunctionId,
    pub interface: String,
    pub exporter: String,
    pub reason: String,
}

impl LoadError {
    /// Load errors are the fault of whoever supplied the component or manifest, except when
    /// the host's own storage fails.
    pub fn fault(&self) -> Fault {
        match self {
            LoadError::KeyValue(_) | LoadError::PreloadWrite { .. } => Fault::Host,
            LoadError::Preload { source, .. } if !source.is_suppliers_fault() => Fault::Host,
            _ => Fault::Client,
        }
    }
}
