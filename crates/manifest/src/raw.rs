//! The manifest as written, with source spans, and its conversion into validated types.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use toml::Spanned;

use crate::units::{parse_duration, parse_size};
use crate::{
    DEFAULT_STORE_QUOTA, FunctionKind, FunctionSpec, Grants, Interface, Limits, Linking,
    MAX_ENV_BYTES, MAX_ENV_VARS, Manifest, ManifestError, Name, OutboundRule, Route, Schedule,
    StoreName, StoreQuota, StoreSpec, Subject, Triggers, TypedImport,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    tenant: Spanned<String>,
    app: Spanned<String>,
    #[serde(default)]
    functions: Vec<RawFunction>,
    #[serde(default, rename = "tenant-limits")]
    tenant_limits: Option<RawTenantLimits>,
    #[serde(default, rename = "key-value")]
    key_value: BTreeMap<String, Spanned<RawStore>>,
    #[serde(default)]
    config: BTreeMap<String, Spanned<String>>,
    #[serde(default)]
    secrets: Option<Spanned<Vec<String>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawStore {
    max_key_size: Option<Spanned<String>>,
    max_value_size: Option<Spanned<String>>,
    max_total_size: Option<Spanned<String>>,
    preload: Option<Spanned<String>>,
    #[serde(default)]
    node_local: bool,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawGrants {
    key_value: Option<Spanned<Vec<String>>>,
    config: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    logging: bool,
    outbound: Option<Spanned<Vec<String>>>,
    publish: Option<Spanned<Vec<String>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawTenantLimits {
    max_instances: Option<Spanned<u32>>,
    max_memory: Option<Spanned<String>>,
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
    #[serde(default)]
    grants: RawGrants,
    #[serde(default)]
    kind: FunctionKind,
    /// WIT interface → the function of this app that exports it.
    #[serde(default)]
    imports: Option<Spanned<BTreeMap<String, RawImport>>>,
    /// Environment variables: name → value.
    #[serde(default)]
    env: Option<Spanned<BTreeMap<String, Spanned<String>>>>,
    /// Whether to snapshot the component's `wizer-initialize` at load (default: yes).
    #[serde(default = "yes", rename = "pre-initialize")]
    pre_initialize: bool,
    /// A schedule that triggers the function.
    cron: Option<Spanned<String>>,
    /// A message subject (of the tenant's) that triggers the function.
    subscribe: Option<Spanned<String>>,
}

fn yes() -> bool {
    true
}

/// One entry of `[functions.imports]`: the exporter's name (composed), or a table
/// `{ function = "...", link = "composed" | "host" }`.
struct RawImport {
    function: String,
    link: Linking,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawImportTable {
    function: String,
    #[serde(default)]
    link: Linking,
}

impl<'de> Deserialize<'de> for RawImport {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = RawImport;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(
                    "the exporting function's name, or { function = \"...\", link = \"composed\" \
                     or \"host\" }",
                )
            }

            fn visit_str<E: serde::de::Error>(self, name: &str) -> Result<RawImport, E> {
                Ok(RawImport {
                    function: name.to_owned(),
                    link: Linking::default(),
                })
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<RawImport, A::Error> {
                // Through the derived table, so unknown keys and bad values keep serde's words.
                let table =
                    RawImportTable::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                Ok(RawImport {
                    function: table.function,
                    link: table.link,
                })
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawLimits {
    max_memory: Option<Spanned<String>>,
    timeout: Option<Spanned<String>>,
    max_request_body: Option<Spanned<String>>,
    max_outbound_response: Option<Spanned<String>>,
}

/// Most stores, config entries or outbound grants an app may declare: generous for honest apps,
/// bounded for hostile ones.
const MAX_ENTRIES: usize = 256;
/// Largest plain config value.
const MAX_CONFIG_VALUE: usize = 64 * 1024;

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

/// Reads `text` as TOML into `T`: syntax, unknown keys, missing keys and wrong types are
/// errors that name `source`.
pub(crate) fn from_toml<T: serde::de::DeserializeOwned>(
    text: &str,
    source: &Path,
) -> Result<T, ManifestError> {
    toml::from_str(text).map_err(|e| ManifestError::Syntax {
        path: source.to_path_buf(),
        message: e.to_string().trim_end().to_owned(),
    })
}

/// The error for a value of `text` (read from `source`) that parsed but is not acceptable: the
/// file, the line of its span, its key and why.
pub(crate) fn invalid_in<'a>(
    text: &'a str,
    source: &'a Path,
) -> impl Fn(&str, std::ops::Range<usize>, String) -> ManifestError + 'a {
    let lines = Lines { text };
    move |key, span, message| ManifestError::Invalid {
        path: source.to_path_buf(),
        line: lines.line_of(span.start),
        key: key.to_owned(),
        message,
    }
}

pub(crate) fn parse(text: &str, source: &Path, base: &Path) -> Result<Manifest, ManifestError> {
    let raw: RawManifest = from_toml(text, source)?;
    let lines = Lines { text };
    let invalid = invalid_in(text, source);
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

    let stores = parse_stores(&raw.key_value, base, &invalid)?;
    let mut config = BTreeMap::new();
    for (key, value) in &raw.config {
        let name = Name::new(key).map_err(|e| invalid("config", value.span(), e.to_string()))?;
        if value.get_ref().len() > MAX_CONFIG_VALUE {
            return Err(invalid(
                &format!("config.{key}"),
                value.span(),
                format!("config values are at most {MAX_CONFIG_VALUE} bytes"),
            ));
        }
        config.insert(name, value.get_ref().clone());
    }
    let mut secrets = Vec::new();
    if let Some(list) = &raw.secrets {
        for secret in list.get_ref() {
            let name =
                Name::new(secret).map_err(|e| invalid("secrets", list.span(), e.to_string()))?;
            if config.contains_key(&name) {
                return Err(invalid(
                    "secrets",
                    list.span(),
                    format!("`{name}` is both a plain config value and a secret"),
                ));
            }
            if secrets.contains(&name) {
                return Err(invalid(
                    "secrets",
                    list.span(),
                    format!("`{name}` is listed twice"),
                ));
            }
            secrets.push(name);
        }
    }
    if config.len() + secrets.len() > MAX_ENTRIES {
        return Err(invalid(
            "config",
            raw.secrets.as_ref().map_or(0..0, |s| s.span()),
            format!("an app may declare at most {MAX_ENTRIES} config values and secrets"),
        ));
    }

    // Checked after the loop, when every function name is known.
    let mut callers_to_check: Vec<(String, std::ops::Range<usize>)> = Vec::new();
    let mut functions = Vec::with_capacity(raw.functions.len());
    let mut names_seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut exporters_to_check = Vec::new();
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
            Some(text) if raw_fn.kind == FunctionKind::Exports => {
                return Err(invalid(
                    "route",
                    text.span(),
                    format!(
                        "function `{fn_name}` only exports interfaces (kind = \"exports\"): it is \
                         never invoked on its own, so it has no route"
                    ),
                ));
            }
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
            if limits.timeout.is_zero() || limits.timeout > crate::MAX_TIMEOUT {
                return Err(invalid(
                    "limits.timeout",
                    v.span(),
                    format!(
                        "must be more than zero and at most {}",
                        humantime::format_duration(crate::MAX_TIMEOUT)
                    ),
                ));
            }
        }
        if let Some(v) = &raw_fn.limits.max_request_body {
            limits.max_request_body = parse_size(v.get_ref())
                .map_err(|m| invalid("limits.max-request-body", v.span(), m))?;
        }
        if let Some(v) = &raw_fn.limits.max_outbound_response {
            limits.max_outbound_response = parse_size(v.get_ref())
                .map_err(|m| invalid("limits.max-outbound-response", v.span(), m))?;
        }

        let grants = parse_grants(&raw_fn.grants, &stores, &config, &secrets, &invalid)?;

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

        let mut imports = Vec::new();
        if let Some(table) = &raw_fn.imports {
            if table.get_ref().len() > MAX_ENTRIES {
                return Err(invalid(
                    "imports",
                    table.span(),
                    format!("more than {MAX_ENTRIES} imports"),
                ));
            }
            for (
                interface,
                RawImport {
                    function: exporter,
                    link,
                },
            ) in table.get_ref()
            {
                let interface =
                    Interface::new(interface).map_err(|m| invalid("imports", table.span(), m))?;
                let exporter = Name::new(exporter).map_err(|e| {
                    invalid(
                        "imports",
                        table.span(),
                        format!(
                            "`{interface}` = \"{exporter}\": {e} (an import is linked to a function \
                             of this app, by its name)"
                        ),
                    )
                })?;
                if exporter == fn_name {
                    return Err(invalid(
                        "imports",
                        table.span(),
                        format!("`{interface}`: a function cannot import from itself"),
                    ));
                }
                exporters_to_check.push((exporter.to_string(), table.span()));
                imports.push(TypedImport {
                    interface,
                    exporter,
                    link: *link,
                });
            }
        }

        let env = match &raw_fn.env {
            Some(table) => parse_env(table, &invalid)?,
            None => Vec::new(),
        };

        let mut triggers = Triggers::default();
        if let Some(text) = &raw_fn.cron {
            triggers.cron =
                Some(Schedule::new(text.get_ref()).map_err(|m| invalid("cron", text.span(), m))?);
        }
        if let Some(text) = &raw_fn.subscribe {
            triggers.subscribe = Some(
                Subject::new(text.get_ref(), true)
                    .map_err(|m| invalid("subscribe", text.span(), m))?,
            );
        }
        if raw_fn.kind == FunctionKind::Exports
            && let Some(span) = raw_fn
                .cron
                .as_ref()
                .or(raw_fn.subscribe.as_ref())
                .map(|s| s.span())
        {
            return Err(invalid(
                "cron",
                span,
                "a function of kind \"exports\" is never invoked on its own, so nothing can trigger it".to_owned(),
            ));
        }

        functions.push(FunctionSpec {
            name: fn_name,
            component,
            route,
            limits,
            callable_by,
            grants,
            kind: raw_fn.kind,
            imports,
            env,
            pre_initialize: raw_fn.pre_initialize,
            spin: None,
            triggers,
        });
    }

    for (exporter, span) in exporters_to_check {
        if !names_seen.contains_key(&exporter) {
            return Err(invalid(
                "imports",
                span,
                format!("`{exporter}` is not a function of this app"),
            ));
        }
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

    let tenant_max_memory = match raw
        .tenant_limits
        .as_ref()
        .and_then(|l| l.max_memory.as_ref())
    {
        Some(v) => {
            let bytes = parse_size(v.get_ref())
                .map_err(|m| invalid("tenant-limits.max-memory", v.span(), m))?;
            if bytes < 64 * 1024 {
                return Err(invalid(
                    "tenant-limits.max-memory",
                    v.span(),
                    "must be at least 64KiB (one WebAssembly page)".to_owned(),
                ));
            }
            Some(bytes)
        }
        None => None,
    };
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
        tenant_max_memory,
        stores,
        config,
        secrets,
    })
}

type Invalid<'a> = dyn Fn(&str, std::ops::Range<usize>, String) -> ManifestError + 'a;

/// A function's environment: names a C program's `getenv` can see (no `=`, no NUL), values
/// without NUL, bounded in count and bytes (they are copied into every instance).
pub(crate) fn parse_env(
    table: &Spanned<BTreeMap<String, Spanned<String>>>,
    invalid: &Invalid<'_>,
) -> Result<Vec<(String, String)>, ManifestError> {
    if table.get_ref().len() > MAX_ENV_VARS {
        return Err(invalid(
            "env",
            table.span(),
            format!("a function may have at most {MAX_ENV_VARS} environment variables"),
        ));
    }
    let mut env = Vec::with_capacity(table.get_ref().len());
    let mut bytes = 0;
    for (name, value) in table.get_ref() {
        if name.is_empty() || name.contains(['=', '\0']) {
            return Err(invalid(
                "env",
                value.span(),
                format!(
                    "{:?} is not an environment variable name: names are not empty and hold no '=' or NUL",
                    name.chars().take(80).collect::<String>()
                ),
            ));
        }
        if value.get_ref().contains('\0') {
            return Err(invalid(
                &format!("env.{name}"),
                value.span(),
                "environment variable values hold no NUL".to_owned(),
            ));
        }
        bytes += name.len() + value.get_ref().len();
        if bytes > MAX_ENV_BYTES {
            return Err(invalid(
                "env",
                value.span(),
                format!(
                    "a function's environment variables are at most {MAX_ENV_BYTES} bytes of names and values together"
                ),
            ));
        }
        env.push((name.clone(), value.get_ref().clone()));
    }
    Ok(env)
}

/// A preload file's path: relative, inside the app's directory (no `..`, no root).
fn preload_path(
    text: &Spanned<String>,
    key: &str,
    base: &Path,
    invalid: &Invalid<'_>,
) -> Result<std::path::PathBuf, ManifestError> {
    let path = Path::new(text.get_ref());
    let inside = !text.get_ref().trim().is_empty()
        && path.components().all(|c| {
            matches!(
                c,
                std::path::Component::Normal(_) | std::path::Component::CurDir
            )
        });
    if !inside {
        return Err(invalid(
            key,
            text.span(),
            format!(
                "{:?} is not a path inside the app's directory (relative, without '..')",
                text.get_ref()
            ),
        ));
    }
    Ok(base.join(path))
}

fn parse_stores(
    raw: &BTreeMap<String, Spanned<RawStore>>,
    base: &Path,
    invalid: &Invalid<'_>,
) -> Result<Vec<StoreSpec>, ManifestError> {
    let mut stores = Vec::with_capacity(raw.len());
    for (name, store) in raw {
        let span = store.span();
        let store = store.get_ref();
        let name =
            StoreName::new(name).map_err(|e| invalid("key-value", span.clone(), e.to_string()))?;
        if stores.len() == MAX_ENTRIES {
            return Err(invalid(
                "key-value",
                span,
                format!("an app may declare at most {MAX_ENTRIES} stores"),
            ));
        }
        let mut quota: StoreQuota = DEFAULT_STORE_QUOTA;
        for (field, key, target) in [
            (&store.max_key_size, "max-key-size", &mut quota.max_key_size),
            (
                &store.max_value_size,
                "max-value-size",
                &mut quota.max_value_size,
            ),
            (
                &store.max_total_size,
                "max-total-size",
                &mut quota.max_total_size,
            ),
        ] {
            if let Some(v) = field {
                let full_key = format!("key-value.{name}.{key}");
                *target = parse_size(v.get_ref()).map_err(|m| invalid(&full_key, v.span(), m))?;
                if *target == 0 {
                    return Err(invalid(
                        &full_key,
                        v.span(),
                        "must be more than zero".to_owned(),
                    ));
                }
            }
        }
        let preload = match &store.preload {
            Some(text) => Some(preload_path(
                text,
                &format!("key-value.{name}.preload"),
                base,
                invalid,
            )?),
            None => None,
        };
        stores.push(StoreSpec {
            name,
            quota,
            preload,
            node_local: store.node_local,
        });
    }
    Ok(stores)
}

fn parse_grants(
    raw: &RawGrants,
    stores: &[StoreSpec],
    config: &BTreeMap<Name, String>,
    secrets: &[Name],
    invalid: &Invalid<'_>,
) -> Result<Grants, ManifestError> {
    let mut grants = Grants {
        logging: raw.logging,
        ..Grants::default()
    };
    if let Some(list) = &raw.key_value {
        for store in list.get_ref() {
            let name = StoreName::new(store)
                .map_err(|e| invalid("grants.key-value", list.span(), e.to_string()))?;
            if !stores.iter().any(|s| s.name == name) {
                return Err(invalid(
                    "grants.key-value",
                    list.span(),
                    format!(
                        "`{name}` is not a store of this app (declare it under [key-value.{name}])"
                    ),
                ));
            }
            grants.key_value.push(name);
        }
    }
    if let Some(list) = &raw.config {
        for key in list.get_ref() {
            let name =
                Name::new(key).map_err(|e| invalid("grants.config", list.span(), e.to_string()))?;
            if !config.contains_key(&name) && !secrets.contains(&name) {
                return Err(invalid(
                    "grants.config",
                    list.span(),
                    format!("`{name}` is neither in [config] nor in secrets"),
                ));
            }
            grants.config.push(name);
        }
    }
    if let Some(list) = &raw.publish {
        if list.get_ref().len() > MAX_ENTRIES {
            return Err(invalid(
                "grants.publish",
                list.span(),
                format!("a function may be granted at most {MAX_ENTRIES} subjects"),
            ));
        }
        for subject in list.get_ref() {
            grants.publish.push(
                Subject::new(subject, true)
                    .map_err(|m| invalid("grants.publish", list.span(), m))?,
            );
        }
    }
    if let Some(list) = &raw.outbound {
        if list.get_ref().len() > MAX_ENTRIES {
            return Err(invalid(
                "grants.outbound",
                list.span(),
                format!("a function may be granted at most {MAX_ENTRIES} origins"),
            ));
        }
        for origin in list.get_ref() {
            grants.outbound.push(
                OutboundRule::parse(origin)
                    .map_err(|m| invalid("grants.outbound", list.span(), m))?,
            );
        }
    }
    Ok(grants)
}
