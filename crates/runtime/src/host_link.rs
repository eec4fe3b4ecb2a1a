//! Typed calls between functions, host-linked (`link = "host"` in `[functions.imports]`).
//!
//! The importer's import of the interface is satisfied by host functions, one per function of
//! the interface, defined with dynamic component-model values (`Val`). Each call runs the
//! exporter as an in-process call does (`Function::call_export`): a fresh instance of its own,
//! from its own pre-instantiated component, through the one lifecycle of `instance` (a pool
//! slot, the caller's tenant quota, the chain's deadline and depth), calls the matching export
//! with the arguments and hands its results back. The guest code is the same as for a composed
//! import: only the manifest's `link` differs.
//!
//! What that decides, and why (composition's choices are in `compose`):
//! - **Instance lifetime.** One fresh instance of the exporter per call, torn down when the call
//!   returns: nothing survives from one call to the next, even within one request.
//! - **Limits and grants.** The exporter runs as itself: its own memory limit and timeout (within
//!   the chain's deadline), its own grants, and in-process calls it makes are made as the
//!   exporter (its `callable-by` entries, not the importer's). So no grant rule ties the
//!   importer's grants to the exporter's, unlike composition.
//! - **Faults.** A typed call has no error channel of its own: its WIT signature is the only
//!   contract. So a failed callee (trap, timeout, out of memory, no slot) fails the caller's
//!   invocation the way a panic unwinds through a library call: the caller's guest is stopped at
//!   the call, and its request fails with the callee's error (a trap is 500 `trap`, a timeout 504,
//!   and so on), naming the callee and the function in the log. The callee's instance and the
//!   caller's are torn down as any failed invocation's; the server goes on serving. A WIT
//!   interface that wants recoverable errors says so in its types (`result<T, E>`), which
//!   arrive as values.
//! - **Resources.** Interfaces that use resource types (or futures, streams, error contexts) are
//!   refused at load: a handle lives in one store's table and means nothing in another's, and
//!   the callee's store is gone when the call returns.
//! - **One level.** As for composition, an exporter may not itself have typed imports.

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, OnceLock};

use meshwa_manifest::{FunctionId, Interface, Name, TypedImport};
use wasmtime::component::types::{ComponentItem, Type};
use wasmtime::component::{Component, ComponentExportIndex, Linker, Val};

use crate::calls::CallContext;
use crate::error::{LoadError, TypedImportRefused};
use crate::explain::Waiting;
use crate::state::InstanceState;
use crate::{Function, InvokeError};

/// One host-linked import of a function: the interface's functions, defined in the importer's
/// linker, and the exporter they call, connected once the whole app is prepared.
pub(crate) struct HostLink {
    interface: Interface,
    exporter: Name,
    /// The interface's functions, in the order their host functions index them.
    functions: Vec<String>,
    target: OnceLock<Linked>,
}

/// The exporter of a [`HostLink`] and where each of the interface's functions is in it.
struct Linked {
    function: Arc<Function>,
    exports: Vec<ComponentExportIndex>,
}

/// Why a host-linked call failed: the callee's error, which becomes the caller's.
#[derive(Debug, thiserror::Error)]
#[error("typed call of `{interface}#{function}` in `{callee}` failed: {error}")]
pub(crate) struct TypedCallFailed {
    callee: FunctionId,
    interface: String,
    function: String,
    error: InvokeError,
}

impl TypedCallFailed {
    /// How the caller's invocation fails: with the callee's error, its detail naming the callee.
    pub(crate) fn caller_error(&self) -> InvokeError {
        let within = |detail: &str| {
            format!(
                "in `{}` (typed call of `{}#{}`): {detail}",
                self.callee, self.interface, self.function
            )
        };
        match &self.error {
            InvokeError::Trap(detail) => InvokeError::Trap(within(detail)),
            InvokeError::OutOfMemory { limit, detail } => InvokeError::OutOfMemory {
                limit: *limit,
                detail: within(detail),
            },
            InvokeError::Host(detail) => InvokeError::Host(within(detail)),
            other => other.clone(),
        }
    }
}

/// Defines `import`'s host functions in `linker` (the importer's own copy of the runtime's
/// linker), after checking the interface as the importer's `component` imports it.
pub(crate) fn define(
    linker: &mut Linker<InstanceState>,
    component: &Component,
    import: &TypedImport,
    id: &FunctionId,
) -> Result<Arc<HostLink>, LoadError> {
    let refused = |reason: String| {
        LoadError::TypedImport(Box::new(TypedImportRefused {
            function: id.clone(),
            interface: import.interface.to_string(),
            exporter: import.exporter.to_string(),
            reason,
        }))
    };
    let engine = component.engine();
    let ty = component.component_type();
    let Some(imported) = ty.get_import(engine, import.interface.as_str()) else {
        return Err(refused(
            "its component does not import this interface (remove it from [functions.imports], \
             or check the name and version)"
                .to_owned(),
        ));
    };
    let ComponentItem::ComponentInstance(instance) = imported.ty else {
        return Err(refused(
            "its component imports it, but not as an interface".to_owned(),
        ));
    };
    let mut functions = Vec::new();
    for (name, item) in instance.exports(engine) {
        match item.ty {
            ComponentItem::ComponentFunc(func) => {
                let handles = func
                    .params()
                    .map(|(_, ty)| ty)
                    .chain(func.results())
                    .any(|ty| uses_handles(&ty));
                if handles {
                    return Err(refused(format!(
                        "`{name}` passes a resource, future, stream or error-context, which \
                         cannot cross between two instances' stores; host-linked interfaces \
                         carry plain values only (compose it instead)"
                    )));
                }
                functions.push(name.to_owned());
            }
            ComponentItem::Resource(_) => {
                return Err(refused(format!(
                    "it defines the resource type `{name}`; host-linked interfaces carry plain \
                     values only (compose it instead)"
                )));
            }
            ComponentItem::Type(_) => {}
            _ => {
                return Err(refused(format!(
                    "`{name}` is neither a function nor a type"
                )));
            }
        }
    }
    let link = Arc::new(HostLink {
        interface: import.interface.clone(),
        exporter: import.exporter.clone(),
        functions,
        target: OnceLock::new(),
    });
    let mut root = linker
        .instance(import.interface.as_str())
        .map_err(|e| refused(format!("{e:#}")))?;
    for (index, name) in link.functions.iter().enumerate() {
        let link = link.clone();
        root.func_new_async(name, move |store, _ty, params, results| {
            let state = store.data();
            let caller = state.call_context().clone();
            let meter = state.calls_meter().cloned();
            let link = link.clone();
            Box::new(async move { link.call(index, &caller, meter, params, results).await })
        })
        .map_err(|e| refused(format!("{e:#}")))?;
    }
    Ok(link)
}

/// Whether a value of `ty` holds a handle that only means something in its own store.
fn uses_handles(ty: &Type) -> bool {
    match ty {
        Type::Own(_) | Type::Borrow(_) | Type::Future(_) | Type::Stream(_) | Type::ErrorContext => {
            true
        }
        Type::List(list) => uses_handles(&list.ty()),
        Type::FixedLengthList(list) => uses_handles(&list.ty()),
        Type::Map(map) => uses_handles(&map.key()) || uses_handles(&map.value()),
        Type::Record(record) => record.fields().any(|field| uses_handles(&field.ty)),
        Type::Tuple(tuple) => tuple.types().any(|ty| uses_handles(&ty)),
        Type::Variant(variant) => variant
            .cases()
            .any(|case| case.ty.as_ref().is_some_and(uses_handles)),
        Type::Option(option) => uses_handles(&option.ty()),
        Type::Result(result) => {
            result.ok().is_some_and(|ty| uses_handles(&ty))
                || result.err().is_some_and(|ty| uses_handles(&ty))
        }
        _ => false,
    }
}

impl HostLink {
    /// Connects the link to its exporter among the app's `functions` (called once the whole
    /// app is prepared); finds each of the interface's functions among the exporter's exports.
    pub(crate) fn connect(&self, functions: &[Arc<Function>]) -> Result<(), String> {
        let Some(exporter) = functions.iter().find(|f| f.id().function == self.exporter) else {
            return Err("no such function in this app".to_owned());
        };
        let component = exporter.component();
        let interface = component
            .get_export_index(None, self.interface.as_str())
            .ok_or_else(|| format!("`{}` does not export this interface", self.exporter))?;
        let exports = self
            .functions
            .iter()
            .map(|name| {
                component
                    .get_export_index(Some(&interface), name)
                    .ok_or_else(|| format!("`{}` does not export `{name}`", self.exporter))
            })
            .collect::<Result<Vec<_>, _>>()?;
        // Connected once per prepared app; a second call would be a bug, and changes nothing.
        let _ = self.target.set(Linked {
            function: exporter.clone(),
            exports,
        });
        Ok(())
    }

    pub(crate) fn interface(&self) -> &Interface {
        &self.interface
    }

    pub(crate) fn exporter(&self) -> &Name {
        &self.exporter
    }

    /// Runs the interface's function number `index` in a fresh instance of the exporter.
    async fn call(
        &self,
        index: usize,
        caller: &CallContext,
        meter: Option<Arc<AtomicU64>>,
        params: &[Val],
        results: &mut [Val],
    ) -> wasmtime::Result<()> {
        let failed = |callee: FunctionId, error: InvokeError| TypedCallFailed {
            callee,
            interface: self.interface.to_string(),
            function: self.functions.get(index).cloned().unwrap_or_default(),
            error,
        };
        let (Some(linked), Some(&export)) = (
            self.target.get(),
            self.target.get().and_then(|l| l.exports.get(index)),
        ) else {
            let callee = FunctionId {
                function: self.exporter.clone(),
                ..caller.caller.clone()
            };
            return Err(wasmtime::Error::new(failed(
                callee,
                InvokeError::Host("the typed import was not connected to its exporter".into()),
            )));
        };
        let target = &linked.function;
        let Ok(callee) = caller.typed_callee(target.id()) else {
            return Err(wasmtime::Error::new(failed(
                target.id().clone(),
                InvokeError::Trap(format!(
                    "call chain deeper than {} calls",
                    crate::MAX_CALL_DEPTH
                )),
            )));
        };
        let waiting = Waiting::start(meter.as_ref());
        let outcome = target
            .call_export(callee, export, params.to_vec(), results.len())
            .await;
        waiting.end();
        match outcome {
            Ok(values) => {
                for (slot, value) in results.iter_mut().zip(values) {
                    *slot = value;
                }
                Ok(())
            }
            Err(error) => {
                caller.log_callee_failure(target.id(), &error);
                Err(wasmtime::Error::new(failed(target.id().clone(), error)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use meshwa_manifest::{FunctionId, Interface, Linking, Name, TypedImport};
    use wasmtime::component::{Component, Linker};

    use crate::error::LoadError;

    /// Defines the host-linked import `test:res/api` of a component that imports it as `wat`
    /// describes; answers why it was refused, if it was.
    fn define(imported: &str) -> Result<(), String> {
        define_in("", imported)
    }

    /// [`define`], with `before` in the component before the import.
    fn define_in(before: &str, imported: &str) -> Result<(), String> {
        let engine = wasmtime::Engine::default();
        let text = format!("(component {before} (import \"test:res/api\" (instance {imported})))");
        let bytes = wat::parse_str(&text).unwrap();
        let component = Component::new(&engine, bytes).unwrap();
        let mut linker = Linker::new(&engine);
        let import = TypedImport {
            interface: Interface::new("test:res/api").unwrap(),
            exporter: Name::new("lib").unwrap(),
            link: Linking::Host,
        };
        let id = FunctionId {
            tenant: Name::new("t").unwrap(),
            app: Name::new("a").unwrap(),
            function: Name::new("f").unwrap(),
        };
        match super::define(&mut linker, &component, &import, &id) {
            Ok(_) => Ok(()),
            Err(LoadError::TypedImport(refused)) => Err(refused.to_string()),
            Err(other) => panic!("{other}"),
        }
    }

    #[test]
    fn interfaces_with_resources_are_refused() {
        let plain = r#"(type $r (record (field "n" u32) (field "s" string)))
            (export "r" (type $r' (eq $r)))
            (export "f" (func (param "x" (list $r')) (result (option string))))"#;
        assert_eq!(define(plain), Ok(()));

        let resource = r#"(export "thing" (type (sub resource)))"#;
        let refused = define(resource).unwrap_err();
        assert!(
            refused.contains("t/a/f")
                && refused.contains("`test:res/api`")
                && refused.contains("the resource type `thing`"),
            "{refused}"
        );

        let handle = r#"(export "thing" (type $t (sub resource)))
            (type $own (own $t))
            (type $l (list $own))
            (export "make" (func (result $l)))"#;
        let refused = define(handle).unwrap_err();
        assert!(refused.contains("the resource type `thing`"), "{refused}");
    }

    #[test]
    fn handles_of_other_interfaces_are_found_inside_values() {
        // The resource comes from another interface; a function passes a borrow of it inside a
        // record inside a list inside an option.
        let types = r#"(import "test:res/types" (instance $types
                (export "thing" (type (sub resource)))))
            (alias export $types "thing" (type $thing))"#;
        let api = r#"(alias outer 1 $thing (type $t))
            (type $b (borrow $t))
            (type $r (record (field "h" $b)))
            (export "r" (type $r' (eq $r)))
            (type $l (list $r'))
            (type $o (option $l))
            (export "use" (func (param "o" $o)))"#;
        let refused = define_in(types, api).unwrap_err();
        assert!(refused.contains("`use` passes a resource"), "{refused}");
    }
}
