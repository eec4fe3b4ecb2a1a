//! The host side: precompiling components into a bundle for the kernel (feature `compile`).
//!
//! The kernel has no compiler. The bundler compiles each function's component here, with
//! [`engine_config`] and Cranelift, into x86_64 code or Pulley bytecode ([`Execution`]), and
//! checks its imports with the same rules [`Server::new`](crate::Server::new) applies at boot,
//! so an unservable function fails the build rather than the boot.

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

use wasmtime::Engine;
use wasmtime::component::Component;

use crate::bundle::{Bundle, BundledFunction};
use crate::engine::{Execution, engine_config};
use crate::wasi;

/// A function to bundle: its manifest entry and its component (WebAssembly component bytes).
#[derive(Clone)]
pub struct BundleFunction {
    pub tenant: String,
    pub app: String,
    pub name: String,
    /// A prefix route such as `/acme/hello`.
    pub route: String,
    pub max_memory: u64,
    pub timeout_ms: u64,
    pub max_request_body: u64,
    /// The component, as built (`.wasm`), not precompiled.
    pub component: Vec<u8>,
}

/// A function that cannot be bundled.
#[derive(Debug, Clone)]
pub struct CompileError {
    /// `tenant/app/name`.
    pub function: String,
    pub error: String,
}

impl fmt::Display for CompileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.function, self.error)
    }
}

impl std::error::Error for CompileError {}

/// Compiles every function's component for the kernel's engine and encodes the bundle.
pub fn compile_bundle(
    functions: Vec<BundleFunction>,
    execution: Execution,
) -> Result<Vec<u8>, CompileError> {
    let engine_for = |execution| {
        Engine::new(&engine_config(execution)).map_err(|error| CompileError {
            function: "(engine)".to_string(),
            error: alloc::format!("{error:#}"),
        })
    };
    // Imports are checked on a loaded component, which only Pulley code is on this machine
    // (native code is for the kernel's triple, so it is precompiled without being loaded).
    let checking = engine_for(Execution::Pulley)?;
    let engine = engine_for(execution)?;
    // Functions built from the same component are compiled once.
    let mut compiled: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    let mut bundle = Bundle {
        execution,
        ..Bundle::default()
    };
    for function in functions {
        let id = alloc::format!("{}/{}/{}", function.tenant, function.app, function.name);
        let fail = |error: String| CompileError {
            function: id.clone(),
            error,
        };
        let code = match compiled
            .iter()
            .find(|(wasm, _)| *wasm == function.component)
        {
            Some((_, code)) => code.clone(),
            None => {
                let component = Component::new(&checking, &function.component)
                    .map_err(|error| fail(alloc::format!("{error:#}")))?;
                check_imports(&checking, &component).map_err(fail)?;
                let code = match execution {
                    Execution::Pulley => component.serialize(),
                    Execution::Native => engine.precompile_component(&function.component),
                }
                .map_err(|error| fail(alloc::format!("{error:#}")))?;
                compiled.push((function.component, code.clone()));
                code
            }
        };
        bundle.functions.push(BundledFunction {
            tenant: function.tenant,
            app: function.app,
            name: function.name,
            route: function.route,
            max_memory: function.max_memory,
            timeout_ms: function.timeout_ms,
            max_request_body: function.max_request_body,
            code,
        });
    }
    Ok(bundle.encode())
}

fn check_imports(engine: &Engine, component: &Component) -> Result<(), String> {
    let unoffered = wasi::unoffered_imports(engine, component);
    if unoffered.is_empty() {
        return Ok(());
    }
    let list: Vec<String> = unoffered
        .iter()
        .map(|(import, reason)| alloc::format!("`{import}` ({reason})"))
        .collect();
    Err(alloc::format!(
        "imports what the unikernel's host does not offer: {}",
        list.join("; ")
    ))
}
