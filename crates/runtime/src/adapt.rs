//! Core modules accepted as they are: a WASI preview1 core module (what wasi-libc, older
//! toolchains and `clang --target=wasm32-wasi` produce) becomes a component at load time,
//! wrapped with the preview1 adapter that wasmtime publishes for its own version. The result is
//! cached with the compiled code (see `cache`), so this runs once per module and engine.
//!
//! Which adapter follows from the function's kind: an HTTP function is a reactor (it exports the
//! `wasi:http` handler that its embedded WIT world, e.g. from wit-bindgen's C bindings,
//! describes); a CGI function is a command (`_start`, i.e. `main`).

use meshwa_manifest::FunctionKind;
use wasi_preview1_component_adapter_provider::{
    WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME, WASI_SNAPSHOT_PREVIEW1_COMMAND_ADAPTER,
    WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
};

/// What a function's file is, and so what loading it takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceFormat {
    /// A component: used as it is.
    Component,
    /// A core module, wrapped with the preview1 reactor adapter.
    CoreReactor,
    /// A core module, wrapped with the preview1 command adapter.
    CoreCommand,
}

impl SourceFormat {
    /// Tells a component from a core module by its header; anything else is refused.
    pub(crate) fn detect(bytes: &[u8], kind: FunctionKind) -> Result<SourceFormat, String> {
        if wasmparser::Parser::is_component(bytes) {
            Ok(SourceFormat::Component)
        } else if wasmparser::Parser::is_core_wasm(bytes) {
            match kind {
                FunctionKind::Http => Ok(SourceFormat::CoreReactor),
                FunctionKind::Cgi => Ok(SourceFormat::CoreCommand),
                FunctionKind::Exports => Err(
                    "a core module cannot export interfaces to other functions (kind = \"exports\"): \
                     build a component"
                        .to_owned(),
                ),
            }
        } else {
            Err("not a WebAssembly component or core module (bad header)".to_owned())
        }
    }

    /// Distinguishes cache entries: the same module adapted two ways is two components.
    pub(crate) fn cache_tag(self) -> &'static str {
        match self {
            SourceFormat::Component => "component",
            SourceFormat::CoreReactor => "preview1-reactor",
            SourceFormat::CoreCommand => "preview1-command",
        }
    }
}

/// The component for `bytes` in `format` (a copy for a core module, after wrapping it).
pub(crate) fn to_component(bytes: &[u8], format: SourceFormat) -> Result<Vec<u8>, String> {
    let adapter = match format {
        SourceFormat::Component => return Ok(bytes.to_vec()),
        SourceFormat::CoreReactor => WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
        SourceFormat::CoreCommand => WASI_SNAPSHOT_PREVIEW1_COMMAND_ADAPTER,
    };
    wit_component::ComponentEncoder::default()
        .validate(true)
        .module(bytes)
        .and_then(|encoder| encoder.adapter(WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME, adapter))
        .and_then(|mut encoder| encoder.encode())
        .map_err(|e| format!("cannot turn the core module into a component: {e:#}"))
}
