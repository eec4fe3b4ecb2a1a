//! Typed calls between functions: the load-time checks both linkings share, and composition.
//!
//! A function that imports a WIT interface from another function of its app
//! (`[functions.imports]` in the manifest) is linked to it when the app loads, in one of two ways
//! (`link` in the manifest): **composed** (the default, here) or **host-linked** (`host_link`).
//! Both are checked here the same way: the exporter is a function of the app, the importer may
//! call it (`callable-by`), the importer imports the interface, and the exporter exports it with
//! the same types (`wac-graph`'s type check, the one composition itself relies on).
//!
//! Composed: `wac-graph` (the Bytecode Alliance's composition library) instantiates the
//! exporter's component inside the importer's and plugs the exporter's export into the
//! importer's import, giving one component. Each part keeps its own linear memory; a call
//! crosses between them through a fused adapter that wasmtime compiles, which copies the
//! arguments and results as component-model values: no host code, no HTTP request, no encoding
//! on the path.
//!
//! What composition decides, and why:
//! - **Instance lifetime.** The exporter is instantiated with the importer, for every invocation
//!   of the importer, and torn down with it: a fresh instance per request, as everywhere in
//!   meshwa, and nothing a callee keeps survives to the next request.
//! - **Faults.** A trap in the exporter is a trap of the importer's invocation (one store): the
//!   request fails as the importer's trap (500), and the server goes on serving. There is no way
//!   to catch it in the caller; use `invoke` where a callee's failure must be survivable.
//! - **Limits and grants.** The exporter runs within the importer's invocation: its deadline,
//!   its memory limit (for each part's memory; the tenant's memory quota counts them all), and
//!   its grants, since every part's service imports are served from the importer's store. So
//!   that nothing gains a capability, an importer's grants must be a subset of each of its
//!   composed exporters' ([`link_typed_imports`]).
//!   In-process calls a composed exporter makes (`invoke`, `*.internal`) are made as the
//!   importer, so `callable-by` lists naming the importer let them through.
//! - **One level.** An exporter may not itself have typed imports (no nested compositions yet);
//!   the rule holds for host-linked exporters too, so that links never form a cycle.

use meshwa_manifest::{FunctionId, FunctionSpec, Grants, Linking, Manifest, Name, TypedImport};
use wac_graph::types::Package;
use wac_graph::{CompositionGraph, EncodeOptions, InstantiationArgumentError, NodeId, PackageId};

use crate::error::{LoadError, TypedImportRefused};

/// Checks the rules for `spec`'s typed imports (see the module docs) and returns its component
/// (`bytes`) composed with its composed exporters; host-linked imports stay imports of it, and
/// `host_link` satisfies them.
pub(crate) fn link_typed_imports(
    manifest: &Manifest,
    spec: &FunctionSpec,
    id: &FunctionId,
    bytes: Vec<u8>,
) -> Result<Vec<u8>, LoadError> {
    let refused = |import: &TypedImport, reason: String| {
        LoadError::TypedImport(Box::new(TypedImportRefused {
            function: id.clone(),
            interface: import.interface.to_string(),
            exporter: import.exporter.to_string(),
            reason,
        }))
    };
    let mut exporters: Vec<Exporter<'_>> = Vec::new();
    for import in &spec.imports {
        // The manifest checked that the exporter is a function of this app.
        let Some(exporter) = manifest
            .functions
            .iter()
            .find(|f| f.name == import.exporter)
        else {
            return Err(refused(import, "no such function in this app".to_owned()));
        };
        if !exporter.imports.is_empty() {
            return Err(refused(
                import,
                format!(
                    "`{}` has typed imports of its own; an exporter cannot import in turn (one \
                     level of composition)",
                    exporter.name
                ),
            ));
        }
        if let Some(callers) = &exporter.callable_by
            && !callers.contains(&spec.name)
        {
            return Err(refused(
                import,
                format!(
                    "`{}` is not callable by `{}` (callable-by)",
                    exporter.name, spec.name
                ),
            ));
        }
        if import.link == Linking::Composed
            && let Some(grant) = grant_beyond(&spec.grants, &exporter.grants)
        {
            return Err(refused(
                import,
                format!(
                    "`{}` runs with `{}`'s grants when composed, and `{}` is granted {grant}, \
                     which `{}` is not; grant it to both or to neither",
                    exporter.name, spec.name, spec.name, exporter.name
                ),
            ));
        }
        if exporters.iter().any(|e| *e.name == exporter.name) {
            continue;
        }
        let bytes = std::fs::read(&exporter.component).map_err(|e| {
            refused(
                import,
                format!("cannot read {}: {e}", exporter.component.display()),
            )
        })?;
        if !wasmparser::Parser::is_component(&bytes) {
            return Err(refused(
                import,
                format!("{} is not a component", exporter.component.display()),
            ));
        }
        exporters.push(Exporter {
            name: &exporter.name,
            bytes,
        });
    }
    let refused_by = |e: ComposeError| {
        LoadError::TypedImport(Box::new(TypedImportRefused {
            function: id.clone(),
            interface: e.interface,
            exporter: e.exporter,
            reason: e.reason,
        }))
    };
    let (host, composed): (Vec<TypedImport>, Vec<TypedImport>) = spec
        .imports
        .iter()
        .cloned()
        .partition(|import| import.link == Linking::Host);
    let exporters_of = |imports: &[TypedImport]| -> Vec<Exporter<'_>> {
        exporters
            .iter()
            .filter(|e| imports.iter().any(|i| i.exporter == *e.name))
            .map(|e| Exporter {
                name: e.name,
                bytes: e.bytes.clone(),
            })
            .collect()
    };
    if !host.is_empty() {
        // The same type check as composition's; the graph is then dropped.
        plug(&bytes, &host, exporters_of(&host)).map_err(refused_by)?;
    }
    if composed.is_empty() {
        return Ok(bytes);
    }
    compose(&bytes, &composed, exporters_of(&composed)).map_err(refused_by)
}

/// Something `importer` is granted that `exporter` is not, if any, in the manifest's words.
fn grant_beyond(importer: &Grants, exporter: &Grants) -> Option<String> {
    if let Some(store) = importer
        .key_value
        .iter()
        .find(|s| !exporter.key_value.contains(s))
    {
        return Some(format!("key-value store `{store}`"));
    }
    if let Some(key) = importer
        .config
        .iter()
        .find(|k| !exporter.config.contains(k))
    {
        return Some(format!("config key `{key}`"));
    }
    if importer.logging && !exporter.logging {
        return Some("logging".to_owned());
    }
    if let Some(rule) = importer
        .outbound
        .iter()
        .find(|r| !exporter.outbound.contains(r))
    {
        return Some(format!("outbound origin `{rule}`"));
    }
    None
}

/// Why a composition failed: which import, and what went wrong, in words for the manifest's
/// author.
#[derive(Debug)]
pub(crate) struct ComposeError {
    pub(crate) interface: String,
    pub(crate) exporter: String,
    pub(crate) reason: String,
}

/// The components of an importer's exporters, by function name.
pub(crate) struct Exporter<'a> {
    pub(crate) name: &'a Name,
    pub(crate) bytes: Vec<u8>,
}

/// Composes `importer` (a component's bytes) with its `exporters` so that each of `imports`
/// is satisfied by the named exporter's export of the same interface. Returns the composed
/// component, which exports what the importer exports and imports what it imports besides
/// `imports`.
pub(crate) fn compose(
    importer: &[u8],
    imports: &[TypedImport],
    exporters: Vec<Exporter<'_>>,
) -> Result<Vec<u8>, ComposeError> {
    let (mut graph, socket, socket_instance) = plug(importer, imports, exporters)?;
    let whole = |reason: String| whole_error(imports, reason);
    let exports: Vec<String> = graph.types()[graph[socket].ty()]
        .exports
        .keys()
        .cloned()
        .collect();
    for name in exports {
        let export = graph
            .alias_instance_export(socket_instance, &name)
            .map_err(|e| whole(format!("{e:#}")))?;
        graph
            .export(export, &name)
            .map_err(|e| whole(format!("{e:#}")))?;
    }
    graph
        .encode(EncodeOptions {
            define_components: true,
            validate: true,
            processor: None,
        })
        .map_err(|e| whole(format!("composing the components failed: {e:#}")))
}

/// A failure of the whole composition, reported against its first import.
fn whole_error(imports: &[TypedImport], reason: String) -> ComposeError {
    ComposeError {
        interface: imports
            .first()
            .map(|i| i.interface.to_string())
            .unwrap_or_default(),
        exporter: imports
            .first()
            .map(|i| i.exporter.to_string())
            .unwrap_or_default(),
        reason,
    }
}

/// Builds the graph that plugs each exporter's export into `importer`'s import of each of
/// `imports`: checks that the importer imports the interface and that the exporter exports it
/// with the same types. Returns the graph, the importer's package and its instance.
fn plug(
    importer: &[u8],
    imports: &[TypedImport],
    exporters: Vec<Exporter<'_>>,
) -> Result<(CompositionGraph, PackageId, NodeId), ComposeError> {
    let whole = |reason: String| whole_error(imports, reason);
    let mut graph = CompositionGraph::new();
    let package = Package::from_bytes("meshwa:importer", None, importer, graph.types_mut())
        .map_err(|e| whole(format!("cannot read the importing component: {e:#}")))?;
    let socket = graph
        .register_package(package)
        .map_err(|e| whole(format!("{e:#}")))?;
    let socket_instance = graph.instantiate(socket);

    let mut instances = Vec::with_capacity(exporters.len());
    for (index, exporter) in exporters.into_iter().enumerate() {
        let failed = |reason: String| ComposeError {
            interface: imports
                .iter()
                .find(|i| i.exporter == *exporter.name)
                .map(|i| i.interface.to_string())
                .unwrap_or_default(),
            exporter: exporter.name.to_string(),
            reason,
        };
        let package = Package::from_bytes(
            &format!("meshwa:exporter{index}"),
            None,
            exporter.bytes,
            graph.types_mut(),
        )
        .map_err(|e| failed(format!("cannot read its component: {e:#}")))?;
        let id = graph
            .register_package(package)
            .map_err(|e| failed(format!("{e:#}")))?;
        instances.push((exporter.name, id, graph.instantiate(id)));
    }

    for import in imports {
        let interface = import.interface.as_str();
        let failed = |reason: String| ComposeError {
            interface: interface.to_owned(),
            exporter: import.exporter.to_string(),
            reason,
        };
        if !graph.types()[graph[socket].ty()]
            .imports
            .contains_key(interface)
        {
            return Err(failed(
                "its component does not import this interface (remove it from \
                 [functions.imports], or check the name and version)"
                    .to_owned(),
            ));
        }
        let Some(&(_, package, instance)) = instances
            .iter()
            .find(|(name, _, _)| **name == import.exporter)
        else {
            return Err(failed("the exporter was not loaded".to_owned()));
        };
        if !graph.types()[graph[package].ty()]
            .exports
            .contains_key(interface)
        {
            return Err(failed(format!(
                "`{}` does not export this interface",
                import.exporter
            )));
        }
        let export = graph
            .alias_instance_export(instance, interface)
            .map_err(|e| failed(format!("{e:#}")))?;
        graph
            .set_instantiation_argument(socket_instance, interface, export)
            .map_err(|e| match e {
                InstantiationArgumentError::ArgumentTypeMismatch { source, .. } => failed(format!(
                    "the interface `{}` exports does not match the one imported: {source:#}",
                    import.exporter
                )),
                other => failed(format!("{other:#}")),
            })?;
    }

    Ok((graph, socket, socket_instance))
}
