//! `meshwa-unikernel-bundler --out BUNDLE [--execution native|pulley] MANIFEST...`: the
//! unikernel's `-initrd`. Native x86_64 code by default; Pulley bytecode for the interpreter.
//!
//! Reads each meshwa.toml with meshwa's manifest crate (the same strict rules, names, limits and
//! route-collision check as `meshwa serve`), refuses what the unikernel does not offer yet with a
//! message naming the function and the manifest key, and precompiles every component on this
//! machine for the kernel's engine settings (`meshwa_unikernel_runtime::engine_config`): the
//! kernel has no compiler, it only loads precompiled code.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use meshwa_manifest::{FunctionKind, Manifest, check_route_collisions};
use meshwa_unikernel_runtime::{BundleFunction, Execution, compile_bundle};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("meshwa-unikernel-bundler: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let mut out = None;
    let mut execution = Execution::Native;
    let mut paths = Vec::new();
    while let Some(arg) = args.next() {
        if arg == "--out" {
            out = Some(PathBuf::from(args.next().context("--out needs a path")?));
        } else if arg == "--execution" {
            execution = match args.next().as_deref() {
                Some("native") => Execution::Native,
                Some("pulley") => Execution::Pulley,
                other => bail!("--execution native|pulley, not {other:?}"),
            };
        } else {
            paths.push(PathBuf::from(arg));
        }
    }
    let Some(out) = out else {
        bail!(
            "usage: meshwa-unikernel-bundler --out BUNDLE [--execution native|pulley] MANIFEST..."
        );
    };
    if paths.is_empty() {
        bail!("no manifest given");
    }
    let manifests = paths
        .iter()
        .map(|path| Manifest::load(path).with_context(|| format!("{}", path.display())))
        .collect::<anyhow::Result<Vec<_>>>()?;
    check_route_collisions(&manifests)?;

    let mut functions = Vec::new();
    for manifest in &manifests {
        for function in &manifest.functions {
            let id = manifest.function_id(function);
            supported(manifest, function).with_context(|| {
                format!(
                    "{id} ({}) cannot run in the unikernel",
                    manifest.source.display()
                )
            })?;
            let route = function.route.as_ref().with_context(|| {
                format!("{id} has no route: in-process calls between functions are not offered in the unikernel yet")
            })?;
            let component = std::fs::read(&function.component)
                .with_context(|| format!("{id}: cannot read {}", function.component.display()))?;
            functions.push(BundleFunction {
                tenant: manifest.tenant.to_string(),
                app: manifest.app.to_string(),
                name: function.name.to_string(),
                route: route.as_str().to_owned(),
                max_memory: function.limits.max_memory,
                timeout_ms: u64::try_from(function.limits.timeout.as_millis()).unwrap_or(u64::MAX),
                max_request_body: function.limits.max_request_body,
                component,
            });
        }
    }
    let count = functions.len();
    let bundle = compile_bundle(functions, execution).context("precompiling the components")?;
    std::fs::write(&out, &bundle).with_context(|| format!("cannot write {}", out.display()))?;
    println!(
        "wrote {} ({count} functions, {execution:?} code, {} KiB)",
        out.display(),
        bundle.len() / 1024
    );
    Ok(())
}

/// What the unikernel's host offers today: `wasi:http` handlers with a route, their limits, and
/// nothing granted beyond their own sandbox. Everything else is refused here, by manifest key,
/// rather than failing at boot or per request.
fn supported(manifest: &Manifest, function: &meshwa_manifest::FunctionSpec) -> anyhow::Result<()> {
    if function.kind != FunctionKind::Http {
        bail!(
            "kind = {:?}: only wasi:http handlers are served",
            function.kind
        );
    }
    if function.spin.is_some() {
        bail!("Spin apps are not served by the unikernel");
    }
    let grants = &function.grants;
    let refused = [
        (!grants.key_value.is_empty(), "grants.key-value"),
        (!grants.config.is_empty(), "grants.config"),
        (grants.logging, "grants.logging"),
        (!grants.outbound.is_empty(), "grants.outbound"),
        (!grants.publish.is_empty(), "grants.publish"),
        (!function.imports.is_empty(), "imports (typed calls)"),
        (function.callable_by.is_some(), "callable-by"),
        (!function.env.is_empty(), "env"),
        (function.triggers.cron.is_some(), "cron"),
        (function.triggers.subscribe.is_some(), "subscribe"),
        (!manifest.stores.is_empty(), "key-value stores"),
    ];
    if let Some((_, key)) = refused.iter().find(|(present, _)| *present) {
        bail!("`{key}` is not offered by the unikernel's host yet (see docs/unikernel.md)");
    }
    Ok(())
}
