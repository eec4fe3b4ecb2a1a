//! The manifest as written, with source spans, and its conversion into validated types.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use toml::Spanned;

use crate::units::{parse_duration, parse_size};
use crate::{FunctionSpec, Limits, Manifest, ManifestError, Name, Route};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    tenant: Spanned<String>,
    app: Spanned<String>,
    #[serde(default)]
    functions: Vec<RawFunction>,
    #[serde(default, rename = "tenant-limits")]
    tenant_limits: Option<RawTenantLimits>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawTenantLimits {
    max_instances: Option<Spanned<u32>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFunction {
    name: Spanned<String>,
    component: Spanned<String>,
    route: Option<Spanned<String>>,
    #[serde(default)]
    limits: RawLimits,
    #[serde(default, rename = "callable-by")]
    callable_by: Option<Spanned<Vec<String>>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawLimits {
    max_memory: Option<Spanned<String>>,
    timeout: Option<Spanned<String>>,
    max_request_body: Option<Spanned<String>>,
}

/// Most functions one app may declare; a hostile manifest must not make the host load thousands.
const MAX_FUNCTIONS: usize = 256;

/// Turns byte offsets into 1-based line numbers for error messages.
struct Lines<'a> {
    text: &'a str,
}

impl Lines<'_> {
    fn line_of(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        self.text.as_bytes()[..end]
            .iter()
            .filter(|b| **b == b'\n')
            .count()
            + 1
    }
}

pub(crate) fn parse(text: &str, source: &Path, base: &Path) -> Result<Manifest, ManifestError> {
    let raw: RawManifest = toml::from_str(text).map_err(|e| ManifestError::Syntax {
        path: source.to_path_buf(),
        message: e.to_string().trim_end().to_owned(),
    })?;
    let lines = Lines { text };
    let invalid =
        |key: &str, span: std::ops::Range<usize>, message: String| ManifestError::Invalid {
            path: source.to_path_buf(),
            line: lines.line_of(span.start),
            key: key.to_owned(),
            message,
        };
    let name = |key: &str, value: &Spanned<String>| {
        Name::new(value.get_ref()).map_err(|e| invalid(key, value.span(), e.to_string()))
    };

    let tenant = name("tenant", &raw.tenant)?;
    let app = name("app", &raw.app)?;
    if raw.functions.len() > MAX_FUNCTIONS {
        return Err(invalid(
            "functions",
            raw.functions[MAX_FUNCTIONS].name.span(),
            format!("an app may declare at most {MAX_FUNCTIONS} functions"),
        ));
    }

    // Checked after the loop, when every function name is known.
    let mut callers_to_check: Vec<(String, std::ops::Range<usize>)> = Vec::new();
    let mut functions = Vec::with_capacity(raw.functions.len());
    let mut names_seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut routes_seen: BTreeMap<Route, (String, usize)> = BTreeMap::new();
    for raw_fn in raw.functions {
        let fn_name = name("name", &raw_fn.name)?;
        let line = lines.line_of(raw_fn.name.span().start);
        if let Some(first) = names_seen.insert(fn_name.to_string(), line) {
            return Err(invalid(
                "name",
                raw_fn.name.span(),
                format!("function `{fn_name}` is already declared on line {first}"),
            ));
        }

        let component_text = raw_fn.component.get_ref();
        if component_text.trim().is_empty() {
            return Err(invalid(
                "component",
                raw_fn.component.span(),
                "component path is empty".to_owned(),
            ));
        }
        let component = base.join(component_text);

        let route = match &raw_fn.route {
            Some(text) => {
                let route =
                    Route::new(text.get_ref()).map_err(|m| invalid("route", text.span(), m))?;
                let line = lines.line_of(text.span().start);
                if let Some((other, first)) =
                    routes_seen.insert(route.clone(), (fn_name.to_string(), line))
                {
                    return Err(invalid(
                        "route",
                        text.span(),
                        format!(
                            "route {route} of function `{fn_name}` is already the route of function `{other}` (line {first})"
                        ),
                    ));
                }
                Some(route)
            }
            None => None,
        };

        let mut limits = Limits::default();
        if let Some(v) = &raw_fn.limits.max_memory {
            limits.max_memory =
                parse_size(v.get_ref()).map_err(|m| invalid("limits.max-memory", v.span(), m))?;
            if limits.max_memory < 64 * 1024 {
                return Err(invalid(
                    "limits.max-memory",
                    v.span(),
                    "must be at least 64KiB (one WebAssembly page)".to_owned(),
                ));
            }
        }
        if let Some(v) = &raw_fn.limits.timeout {
            limits.timeout =
                parse_duration(v.get_ref()).map_err(|m| invalid("limits.timeout", v.span(), m))?;
            if limits.timeout.is_zero() {
                return Err(invalid(
                    "limits.timeout",
                    v.span(),
                    "must be more than zero".to_owned(),
                ));
            }
        }
        if let Some(v) = &raw_fn.limits.max_request_body {
            limits.max_request_body = parse_size(v.get_ref())
                .map_err(|m| invalid("limits.max-request-body", v.span(), m))?;
        }

        let callable_by = match &raw_fn.callable_by {
            Some(list) => {
                let mut names = Vec::with_capacity(list.get_ref().len());
                for caller in list.get_ref() {
                    let caller = Name::new(caller)
                        .map_err(|e| invalid("callable-by", list.span(), e.to_string()))?;
                    callers_to_check.push((caller.to_string(), list.span()));
                    names.push(caller);
                }
                Some(names)
            }
            None => None,
        };

        functions.push(FunctionSpec {
            name: fn_name,
            component,
            route,
            limits,
            callable_by,
        });
    }

    for (caller, span) in callers_to_check {
        if !names_seen.contains_key(&caller) {
            return Err(invalid(
                "callable-by",
                span,
                format!("`{caller}` is not a function of this app"),
            ));
        }
    }

    let tenant_max_instances = match raw.tenant_limits.and_then(|l| l.max_instances) {
        Some(n) if *n.get_ref() == 0 => {
            return Err(invalid(
                "tenant-limits.max-instances",
                n.span(),
                "must be at least 1".to_owned(),
            ));
        }
        other => other.map(|n| n.into_inner()),
    };

    Ok(Manifest {
        source: source.to_path_buf(),
        tenant,
        app,
        functions,
        tenant_max_instances,
    })
}
