//! `spin.toml` (Spin's application manifest, version 2) read as a meshwa app.
//!
//! A Spin app arrives with its own manifest, and moving it to meshwa should not cost a rewrite.
//! Its parts map onto meshwa's model one to one:
//!
//! | Spin | meshwa |
//! | --- | --- |
//! | `[application] name` | the app's name (the tenant is given from outside: see below) |
//! | `[component.<id>]` | a function named `<id>`, its `source` the component file |
//! | `[[trigger.http]] route = "/a/..."` | route `/a` (a prefix); `"/a"` is route `/a` too, and `{ private = true }` no route |
//! | `executor = { type = "wagi" }` | `kind = "cgi"` |
//! | `key_value_stores = ["default"]` | a store of that name, declared with default quotas and granted |
//! | `allowed_outbound_hosts` | `grants.outbound`; `http://*.spin.internal` and `http://<id>.spin.internal` allow in-process calls to the app's components |
//! | `environment` | `env` |
//! | `[variables]` and `[component.<id>.variables]` | Spin variables: templates resolved at parse (defaults) or at load (`required` ones from the operator's secrets file, named with `-` for `_`) |
//!
//! What meshwa cannot honour is refused with the key and line, never ignored: triggers other than
//! HTTP, a component used by two triggers, route parameters (`/users/:id`), sources that are URLs
//! or registry references, `files`, `sqlite_databases`, `ai_models`, `dependencies`, outbound
//! hosts of other schemes (`redis://`, `postgres://`, ...) or `http://self`. Keys that only
//! matter to Spin's own tooling (`build`, `tool`, `description`, `authors`, `version`,
//! `exclude_files`) are accepted and not used.
//!
//! The tenant: a `spin.toml` names none. The control plane deploys a Spin app into the tenant of
//! the request; `meshwa serve spin.toml` serves it as the tenant named in
//! `[application.tool.meshwa] tenant` (Spin's table for other tools' settings), or as
//! [`DEFAULT_SPIN_TENANT`].

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use serde::de::IgnoredAny;
use toml::Spanned;

use crate::{
    DEFAULT_STORE_QUOTA, FunctionKind, FunctionSpec, Grants, Limits, Manifest, ManifestError, Name,
    OutboundRule, Route, StoreName, StoreSpec,
};

/// The tenant of a Spin app served from the command line that names none.
pub const DEFAULT_SPIN_TENANT: &str = "local";

/// Most variables an app or a component may declare.
const MAX_VARIABLES: usize = 256;
/// Largest variable value or template.
const MAX_VARIABLE_BYTES: usize = 64 * 1024;

/// What a function that came from a Spin app needs beyond meshwa's own model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpinFunction {
    /// The trigger's route as written (`/a/...`), for Spin's request headers; `None` for a
    /// private component.
    pub raw_route: Option<String>,
    /// The app's base path (`[application.trigger.http] base`, `/` by default).
    pub base: String,
    /// Its component variables (`spin_sdk::variables::get`), by name.
    pub variables: Vec<(String, Vec<TemplatePart>)>,
    /// Which components of the app it may call at `http://<id>.spin.internal`.
    pub internal_calls: InternalCalls,
}

impl SpinFunction {
    /// The route without its trailing `/...`: the part Spin strips to make `spin-path-info`.
    pub fn component_route(&self) -> &str {
        match &self.raw_route {
            Some(route) => route
                .strip_suffix("/...")
                .or_else(|| route.strip_suffix("..."))
                .unwrap_or(route),
            None => "",
        }
    }
}

/// The components a Spin component may call in-process (`allowed_outbound_hosts`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum InternalCalls {
    #[default]
    None,
    /// `http://*.spin.internal`.
    Any,
    /// `http://<id>.spin.internal` for each of these.
    Only(Vec<Name>),
}

impl InternalCalls {
    pub fn allows(&self, component: &str) -> bool {
        match self {
            InternalCalls::None => false,
            InternalCalls::Any => true,
            InternalCalls::Only(names) => names.iter().any(|n| n.as_str() == component),
        }
    }
}

/// A piece of a Spin variable's template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplatePart {
    Literal(String),
    /// An application variable without a default: its value comes from the operator's secrets
    /// file under this name (the variable's name with `-` for `_`).
    Secret(Name),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSpin {
    spin_manifest_version: Spanned<toml::Value>,
    application: RawApplication,
    #[serde(default)]
    variables: BTreeMap<String, Spanned<RawVariable>>,
    #[serde(default)]
    /// By trigger type; only `http` is read (into [`RawTrigger`]s), any other is refused.
    trigger: BTreeMap<String, Spanned<toml::Value>>,
    #[serde(default)]
    component: BTreeMap<String, Spanned<RawComponent>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApplication {
    name: Spanned<String>,
    #[serde(default)]
    trigger: Option<RawAppTriggers>,
    #[serde(default)]
    tool: Option<RawTools>,
    // Spin's own tooling only.
    #[serde(default, rename = "version")]
    _version: Option<IgnoredAny>,
    #[serde(default, rename = "description")]
    _description: Option<IgnoredAny>,
    #[serde(default, rename = "authors")]
    _authors: Option<IgnoredAny>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAppTriggers {
    #[serde(default)]
    http: Option<RawAppHttp>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAppHttp {
    base: Option<Spanned<String>>,
}

#[derive(Deserialize)]
struct RawTools {
    #[serde(default)]
    meshwa: Option<RawMeshwaTool>,
    // Other tools' tables are theirs.
    #[serde(flatten)]
    _others: BTreeMap<String, IgnoredAny>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMeshwaTool {
    tenant: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVariable {
    default: Option<String>,
    #[serde(default)]
    required: bool,
    /// Spin hides a secret's value from its logs; meshwa's secrets never reach a log either,
    /// and a default is plain configuration, so the flag changes nothing here.
    #[serde(default, rename = "secret")]
    _secret: bool,
    #[serde(default, rename = "description")]
    _description: Option<IgnoredAny>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTrigger {
    #[serde(default, rename = "id")]
    _id: Option<IgnoredAny>,
    // Read from a `toml::Value` (see `RawSpin::trigger`), so without spans: errors point at the
    // trigger table.
    route: Option<toml::Value>,
    component: Option<toml::Value>,
    executor: Option<RawExecutor>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExecutor {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    argv: Option<toml::Value>,
    #[serde(default)]
    entrypoint: Option<toml::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawComponent {
    source: Spanned<toml::Value>,
    #[serde(default, rename = "description")]
    _description: Option<IgnoredAny>,
    #[serde(default)]
    allowed_outbound_hosts: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    allowed_http_hosts: Option<Spanned<toml::Value>>,
    #[serde(default)]
    key_value_stores: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    environment: Option<Spanned<BTreeMap<String, Spanned<String>>>>,
    #[serde(default)]
    variables: Option<Spanned<BTreeMap<String, Spanned<String>>>>,
    #[serde(default)]
    files: Option<Spanned<Vec<toml::Value>>>,
    #[serde(default, rename = "exclude_files")]
    _exclude_files: Option<IgnoredAny>,
    #[serde(default)]
    sqlite_databases: Option<Spanned<Vec<toml::Value>>>,
    #[serde(default)]
    ai_models: Option<Spanned<Vec<toml::Value>>>,
    #[serde(default)]
    dependencies: Option<Spanned<BTreeMap<String, toml::Value>>>,
    #[serde(default, rename = "dependencies_inherit_configuration")]
    _dependencies_inherit_configuration: Option<IgnoredAny>,
    #[serde(default, rename = "build")]
    _build: Option<IgnoredAny>,
    #[serde(default, rename = "tool")]
    _tool: Option<IgnoredAny>,
}

/// Where a component is triggered.
struct TriggerOf {
    route: Option<(Route, String)>,
    kind: FunctionKind,
}

/// Parses a `spin.toml`. `tenant` is the tenant the app is deployed into; `None` takes it from
/// `[application.tool.meshwa] tenant` or [`DEFAULT_SPIN_TENANT`], and `Some` refuses a manifest
/// whose tool table names another.
pub(crate) fn parse(
    text: &str,
    source: &Path,
    base: &Path,
    tenant: Option<&Name>,
) -> Result<Manifest, ManifestError> {
    let raw: RawSpin = crate::raw::from_toml(text, source)?;
    let invalid = crate::raw::invalid_in(text, source);

    let version = &raw.spin_manifest_version;
    if version.get_ref().as_integer() != Some(2) {
        return Err(invalid(
            "spin_manifest_version",
            version.span(),
            format!(
                "meshwa reads Spin manifests of version 2 (this is {}); `spin doctor` upgrades \
                 older ones",
                version.get_ref()
            ),
        ));
    }

    let app_name = &raw.application.name;
    let app = Name::new(app_name.get_ref()).map_err(|e| {
        invalid(
            "application.name",
            app_name.span(),
            format!("{e} (meshwa uses the Spin app's name as its app name)"),
        )
    })?;
    let named = raw
        .application
        .tool
        .as_ref()
        .and_then(|t| t.meshwa.as_ref())
        .and_then(|m| m.tenant.as_ref());
    let tenant = match (tenant, named) {
        (Some(given), Some(named)) if named.get_ref() != given.as_str() => {
            return Err(invalid(
                "application.tool.meshwa.tenant",
                named.span(),
                format!(
                    "this app is for tenant `{}`, but this is tenant `{given}`",
                    named.get_ref()
                ),
            ));
        }
        (Some(given), _) => given.clone(),
        (None, Some(named)) => Name::new(named.get_ref()).map_err(|e| {
            invalid(
                "application.tool.meshwa.tenant",
                named.span(),
                e.to_string(),
            )
        })?,
        (None, None) => Name::new(DEFAULT_SPIN_TENANT)
            .map_err(|e| invalid("application.name", app_name.span(), e.to_string()))?,
    };
    let base_path = match raw
        .application
        .trigger
        .as_ref()
        .and_then(|t| t.http.as_ref())
        .and_then(|h| h.base.as_ref())
    {
        Some(base_text) => {
            let route = Route::new(base_text.get_ref())
                .map_err(|m| invalid("application.trigger.http.base", base_text.span(), m))?;
            route.as_str().to_owned()
        }
        None => "/".to_owned(),
    };

    // Application variables: a default is the value; without one, the operator supplies it.
    if raw.variables.len() > MAX_VARIABLES {
        return Err(invalid(
            "variables",
            0..0,
            format!("an app may declare at most {MAX_VARIABLES} variables"),
        ));
    }
    let mut app_variables: BTreeMap<String, TemplatePart> = BTreeMap::new();
    let mut secrets = Vec::new();
    for (name, variable) in &raw.variables {
        let key = format!("variables.{name}");
        check_variable_name(name).map_err(|m| invalid(&key, variable.span(), m))?;
        let value = variable.get_ref();
        let part = match (&value.default, value.required) {
            (Some(_), true) => {
                return Err(invalid(
                    &key,
                    variable.span(),
                    "a variable is either required or has a default, not both".to_owned(),
                ));
            }
            (Some(default), false) => TemplatePart::Literal(default.clone()),
            (None, true) => {
                let secret = secret_name(name).map_err(|m| invalid(&key, variable.span(), m))?;
                secrets.push(secret.clone());
                TemplatePart::Secret(secret)
            }
            (None, false) => {
                return Err(invalid(
                    &key,
                    variable.span(),
                    "give the variable a `default` or mark it `required = true`".to_owned(),
                ));
            }
        };
        app_variables.insert(name.clone(), part);
    }

    // Which trigger (route, executor) each component has.
    let mut triggered: BTreeMap<String, TriggerOf> = BTreeMap::new();
    let mut routes_seen: BTreeMap<Route, String> = BTreeMap::new();
    for (kind, triggers) in &raw.trigger {
        if kind != "http" {
            return Err(invalid(
                &format!("trigger.{kind}"),
                triggers.span(),
                format!(
                    "meshwa serves HTTP triggers only; a `{kind}` trigger has no meshwa \
                     counterpart yet"
                ),
            ));
        }
        let http: Vec<RawTrigger> =
            triggers
                .get_ref()
                .clone()
                .try_into()
                .map_err(|e: toml::de::Error| {
                    invalid("trigger.http", triggers.span(), e.message().to_owned())
                })?;
        for trigger in &http {
            let (component, trigger_of) =
                parse_trigger(trigger, triggers.span(), &base_path, &invalid)?;
            if let Some((route, _)) = &trigger_of.route
                && let Some(other) = routes_seen.insert(route.clone(), component.clone())
            {
                return Err(invalid(
                    "trigger.http.route",
                    triggers.span(),
                    format!(
                        "components `{other}` and `{component}` would both serve route {route} \
                         (meshwa routes are path prefixes: `/a` and `/a/...` are one route)"
                    ),
                ));
            }
            if triggered.insert(component.clone(), trigger_of).is_some() {
                return Err(invalid(
                    "trigger.http.component",
                    triggers.span(),
                    format!(
                        "component `{component}` has two triggers; a meshwa function has one \
                         route"
                    ),
                ));
            }
        }
    }
    for component in triggered.keys() {
        if !raw.component.contains_key(component) {
            return Err(invalid(
                "trigger.http.component",
                0..0,
                format!("`{component}` is not a component of this app ([component.{component}])"),
            ));
        }
    }

    let mut stores: Vec<StoreSpec> = Vec::new();
    let mut functions = Vec::with_capacity(raw.component.len());
    for (id, component) in &raw.component {
        let span = component.span();
        let at = |key: &str| format!("component.{id}.{key}");
        let name = Name::new(id)
            .map_err(|e| invalid(&format!("component.{id}"), span.clone(), e.to_string()))?;
        let component = component.get_ref();
        let refuse = |key: &str, what: &str| {
            Err(invalid(
                &at(key),
                span.clone(),
                format!("meshwa does not provide {what} yet (see docs/compatibility.md)"),
            ))
        };
        if component
            .files
            .as_ref()
            .is_some_and(|f| !f.get_ref().is_empty())
        {
            return refuse(
                "files",
                "files to components (a function carries what it needs, or keeps it in a key-value store)",
            );
        }
        if component
            .sqlite_databases
            .as_ref()
            .is_some_and(|f| !f.get_ref().is_empty())
        {
            return refuse("sqlite_databases", "SQLite databases");
        }
        if component
            .ai_models
            .as_ref()
            .is_some_and(|f| !f.get_ref().is_empty())
        {
            return refuse("ai_models", "AI models");
        }
        if component
            .dependencies
            .as_ref()
            .is_some_and(|f| !f.get_ref().is_empty())
        {
            return refuse(
                "dependencies",
                "component dependencies (meshwa's typed imports link functions instead)",
            );
        }
        if let Some(hosts) = &component.allowed_http_hosts {
            return Err(invalid(
                &at("allowed_http_hosts"),
                hosts.span(),
                "`allowed_http_hosts` is Spin 1's; write `allowed_outbound_hosts` \
                 (\"https://host\") as Spin 2 does"
                    .to_owned(),
            ));
        }

        let source = match component.source.get_ref() {
            toml::Value::String(path) if !path.trim().is_empty() => base.join(path),
            _ => {
                return Err(invalid(
                    &at("source"),
                    component.source.span(),
                    "meshwa takes a component's `source` as a path to a .wasm file in the app's \
                     directory (not a URL or a registry reference)"
                        .to_owned(),
                ));
            }
        };

        let mut grants = Grants::default();
        if let Some(labels) = &component.key_value_stores {
            for label in labels.get_ref() {
                let store = StoreName::new(label)
                    .map_err(|e| invalid(&at("key_value_stores"), labels.span(), e.to_string()))?;
                if !stores.iter().any(|s| s.name == store) {
                    stores.push(StoreSpec {
                        name: store.clone(),
                        quota: DEFAULT_STORE_QUOTA,
                        preload: None,
                        node_local: false,
                    });
                }
                grants.key_value.push(store);
            }
        }
        let mut internal_calls = InternalCalls::None;
        if let Some(hosts) = &component.allowed_outbound_hosts {
            for host in hosts.get_ref() {
                let bad = |m: String| invalid(&at("allowed_outbound_hosts"), hosts.span(), m);
                match outbound_host(host).map_err(bad)? {
                    Outbound::Internal(None) => internal_calls = InternalCalls::Any,
                    Outbound::Internal(Some(target)) => {
                        if let InternalCalls::None = internal_calls {
                            internal_calls = InternalCalls::Only(Vec::new());
                        }
                        if let InternalCalls::Only(names) = &mut internal_calls {
                            names.push(target);
                        }
                    }
                    Outbound::Origins(rules) => grants.outbound.extend(rules),
                }
            }
        }

        let env = match &component.environment {
            Some(table) => crate::raw::parse_env(table, &|key, span, message| {
                invalid(&at(key), span, message)
            })?,
            None => Vec::new(),
        };

        let mut variables = Vec::new();
        if let Some(table) = &component.variables {
            if table.get_ref().len() > MAX_VARIABLES {
                return Err(invalid(
                    &at("variables"),
                    table.span(),
                    format!("a component may declare at most {MAX_VARIABLES} variables"),
                ));
            }
            for (variable, template) in table.get_ref() {
                let key = at(&format!("variables.{variable}"));
                check_variable_name(variable).map_err(|m| invalid(&key, template.span(), m))?;
                let parts = parse_template(template.get_ref(), &app_variables)
                    .map_err(|m| invalid(&key, template.span(), m))?;
                variables.push((variable.clone(), parts));
            }
        }

        let trigger = triggered.remove(id);
        let (route, raw_route, kind) = match trigger {
            Some(TriggerOf { route, kind }) => match route {
                Some((route, raw)) => (Some(route), Some(raw), kind),
                None => (None, None, kind),
            },
            None => (None, None, FunctionKind::Http),
        };
        functions.push(FunctionSpec {
            name,
            component: source,
            route,
            limits: Limits::default(),
            callable_by: None,
            grants,
            kind,
            imports: Vec::new(),
            env,
            pre_initialize: true,
            spin: Some(SpinFunction {
                raw_route,
                base: base_path.clone(),
                variables,
                internal_calls,
            }),
            triggers: Default::default(),
        });
    }
    for function in &functions {
        let Some(spin) = &function.spin else { continue };
        if let InternalCalls::Only(targets) = &spin.internal_calls
            && let Some(missing) = targets
                .iter()
                .find(|t| !functions.iter().any(|f| &f.name == *t))
        {
            return Err(invalid(
                &format!("component.{}.allowed_outbound_hosts", function.name),
                0..0,
                format!("`{missing}.spin.internal`: `{missing}` is not a component of this app"),
            ));
        }
    }

    Ok(Manifest {
        source: source.to_path_buf(),
        tenant,
        app,
        functions,
        tenant_max_instances: None,
        tenant_max_memory: None,
        stores,
        config: BTreeMap::new(),
        secrets,
    })
}

type Invalid<'a> = dyn Fn(&str, std::ops::Range<usize>, String) -> ManifestError + 'a;

/// `(component, where it is triggered)` of one `[[trigger.http]]`.
fn parse_trigger(
    trigger: &RawTrigger,
    span: std::ops::Range<usize>,
    base: &str,
    invalid: &Invalid<'_>,
) -> Result<(String, TriggerOf), ManifestError> {
    let component = match &trigger.component {
        Some(toml::Value::String(name)) => name.clone(),
        Some(_) => {
            return Err(invalid(
                "trigger.http.component",
                span,
                "name the component (`component = \"<id>\"`) and describe it under \
                 [component.<id>]; meshwa does not read inline components"
                    .to_owned(),
            ));
        }
        None => {
            return Err(invalid(
                "trigger.http.component",
                span,
                "every HTTP trigger names its component".to_owned(),
            ));
        }
    };
    let kind = match &trigger.executor {
        None => FunctionKind::Http,
        Some(e) => match e.kind.as_str() {
            "spin" | "http" => FunctionKind::Http,
            "wagi" if e.argv.is_none() && e.entrypoint.is_none() => FunctionKind::Cgi,
            "wagi" => {
                return Err(invalid(
                    "trigger.http.executor",
                    span.clone(),
                    "a Wagi executor's `argv` and `entrypoint` are not supported: meshwa \
                         runs a CGI function's `_start` (or `wasi:cli/run`) with no arguments"
                        .to_owned(),
                ));
            }
            other => {
                return Err(invalid(
                    "trigger.http.executor",
                    span.clone(),
                    format!("unknown executor type {other:?} (Spin has `spin` and `wagi`)"),
                ));
            }
        },
    };
    let route = match trigger.route.as_ref() {
        None => {
            return Err(invalid(
                "trigger.http.route",
                span,
                format!("the trigger of `{component}` has no route"),
            ));
        }
        Some(route) => match route {
            toml::Value::String(text) => Some(
                spin_route(text, base)
                    .map_err(|m| invalid("trigger.http.route", span.clone(), m))?,
            ),
            toml::Value::Table(table)
                if table.len() == 1
                    && table.get("private") == Some(&toml::Value::Boolean(true)) =>
            {
                None
            }
            _ => {
                return Err(invalid(
                    "trigger.http.route",
                    span,
                    "a route is a path (\"/a/...\") or `{ private = true }`".to_owned(),
                ));
            }
        },
    };
    Ok((component, TriggerOf { route, kind }))
}

/// A Spin route as a meshwa prefix route, with the route as written (base included).
fn spin_route(text: &str, base: &str) -> Result<(Route, String), String> {
    if text.split('/').any(|segment| segment.starts_with(':')) {
        return Err(format!(
            "route {text:?} has a parameter segment; meshwa routes are path prefixes (route \
             the prefix here and match parameters in the component, as spin-sdk's router does)"
        ));
    }
    let full = if base == "/" {
        text.to_owned()
    } else {
        format!("{base}{text}")
    };
    let prefix = full
        .strip_suffix("/...")
        .or_else(|| full.strip_suffix("..."))
        .unwrap_or(&full);
    let prefix = if prefix.is_empty() { "/" } else { prefix };
    let route = Route::new(prefix)?;
    Ok((route, full))
}

enum Outbound {
    /// `http://*.spin.internal` (`None`) or `http://<id>.spin.internal`.
    Internal(Option<Name>),
    Origins(Vec<OutboundRule>),
}

/// One entry of `allowed_outbound_hosts`.
fn outbound_host(text: &str) -> Result<Outbound, String> {
    if text.contains("{{") {
        return Err(format!(
            "{text:?}: variables in outbound hosts are not supported by meshwa; write the host"
        ));
    }
    let (scheme, rest) = text
        .split_once("://")
        .ok_or_else(|| format!("{text:?} has no scheme (\"https://host\")"))?;
    let host = rest.split([':', '/']).next().unwrap_or_default();
    if let Some(component) = host.strip_suffix(".spin.internal") {
        if component == "*" {
            return Ok(Outbound::Internal(None));
        }
        let name = Name::new(component).map_err(|e| format!("{text:?}: {e}"))?;
        return Ok(Outbound::Internal(Some(name)));
    }
    if host == "self" {
        return Err(format!(
            "{text:?}: requests to the app itself by relative URL are not supported by meshwa; \
             call a component at http://<id>.spin.internal"
        ));
    }
    let schemes: &[&str] = match scheme {
        "http" => &["http"],
        "https" => &["https"],
        "*" => &["http", "https"],
        other => {
            return Err(format!(
                "{text:?}: meshwa has outbound HTTP only, not {other}://"
            ));
        }
    };
    schemes
        .iter()
        .map(|scheme| OutboundRule::parse(&format!("{scheme}://{rest}")))
        .collect::<Result<Vec<_>, _>>()
        .map(Outbound::Origins)
}

/// Spin's rule for variable names: a lowercase letter, then lowercase letters, digits and `_`.
fn check_variable_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && name.len() <= 63;
    if valid {
        Ok(())
    } else {
        Err(format!(
            "{:?} is not a Spin variable name (a lowercase letter, then a-z, 0-9 and '_')",
            name.chars().take(80).collect::<String>()
        ))
    }
}

/// The name a required variable has in the operator's secrets file.
fn secret_name(variable: &str) -> Result<Name, String> {
    Name::new(&variable.replace('_', "-")).map_err(|e| e.to_string())
}

/// `"Hello, {{ name }}!"` → literal and variable parts, each variable one of the app's.
fn parse_template(
    template: &str,
    app_variables: &BTreeMap<String, TemplatePart>,
) -> Result<Vec<TemplatePart>, String> {
    if template.len() > MAX_VARIABLE_BYTES {
        return Err(format!("longer than {MAX_VARIABLE_BYTES} bytes"));
    }
    let mut parts = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find("{{") {
        let literal = &rest[..open];
        if !literal.is_empty() {
            parts.push(TemplatePart::Literal(literal.to_owned()));
        }
        let after = &rest[open + 2..];
        let close = after
            .find("}}")
            .ok_or_else(|| format!("{template:?}: `{{{{` without `}}}}`"))?;
        let variable = after[..close].trim();
        let value = app_variables.get(variable).ok_or_else(|| {
            format!("{template:?} uses `{variable}`, which is not in [variables]")
        })?;
        parts.push(value.clone());
        rest = &after[close + 2..];
    }
    if !rest.is_empty() {
        parts.push(TemplatePart::Literal(rest.to_owned()));
    }
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_text(text: &str) -> Result<Manifest, ManifestError> {
        parse(text, Path::new("spin.toml"), Path::new("/app"), None)
    }

    const APP: &str = r#"
spin_manifest_version = 2

[application]
name = "shop"
version = "0.1.0"
authors = ["someone"]

[application.tool.meshwa]
tenant = "acme"

[application.tool.spin-test]
anything = "goes"

[variables]
greeting = { default = "hello" }
api_key = { required = true, secret = true }

[[trigger.http]]
route = "/shop/..."
component = "front"

[[trigger.http]]
route = "/exact"
component = "cgi"
executor = { type = "wagi" }

[[trigger.http]]
route = { private = true }
component = "back"

[component.front]
source = "target/front.wasm"
allowed_outbound_hosts = ["http://*.spin.internal", "https://api.example.com", "*://cdn.example.com:8080"]
key_value_stores = ["default"]
environment = { MODE = "test" }
[component.front.variables]
message = "{{ greeting }}, world"
key = "k-{{api_key}}"
[component.front.build]
command = "cargo build"

[component.cgi]
source = "cgi.wasm"

[component.back]
source = "back.wasm"
allowed_outbound_hosts = ["http://front.spin.internal"]
key_value_stores = ["default", "other"]
"#;

    #[test]
    fn a_spin_app_maps_onto_meshwa_functions() {
        let m = parse_text(APP).expect("parses");
        assert_eq!(m.tenant.as_str(), "acme");
        assert_eq!(m.app.as_str(), "shop");
        let names: Vec<_> = m.functions.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["back", "cgi", "front"]);
        let front = &m.functions[2];
        assert_eq!(front.component, Path::new("/app/target/front.wasm"));
        assert_eq!(front.route.as_ref().map(Route::as_str), Some("/shop"));
        assert_eq!(front.kind, FunctionKind::Http);
        assert_eq!(front.env, [("MODE".to_owned(), "test".to_owned())]);
        assert_eq!(front.grants.key_value.len(), 1);
        let origins: Vec<_> = front
            .grants
            .outbound
            .iter()
            .map(|r| r.to_string())
            .collect();
        assert_eq!(
            origins,
            [
                "https://api.example.com",
                "http://cdn.example.com:8080",
                "https://cdn.example.com:8080"
            ]
        );
        let spin = front.spin.as_ref().expect("a Spin function");
        assert_eq!(spin.raw_route.as_deref(), Some("/shop/..."));
        assert_eq!(spin.component_route(), "/shop");
        assert_eq!(spin.internal_calls, InternalCalls::Any);
        let secret = Name::new("api-key").expect("a name");
        assert_eq!(
            spin.variables,
            [
                (
                    "key".to_owned(),
                    vec![
                        TemplatePart::Literal("k-".to_owned()),
                        TemplatePart::Secret(secret.clone())
                    ]
                ),
                (
                    "message".to_owned(),
                    vec![
                        TemplatePart::Literal("hello".to_owned()),
                        TemplatePart::Literal(", world".to_owned())
                    ]
                ),
            ]
        );
        assert_eq!(m.secrets, [secret]);

        let cgi = &m.functions[1];
        assert_eq!(cgi.kind, FunctionKind::Cgi);
        assert_eq!(cgi.route.as_ref().map(Route::as_str), Some("/exact"));
        let back = &m.functions[0];
        assert_eq!(back.route, None);
        assert!(
            back.spin
                .as_ref()
                .is_some_and(|s| s.internal_calls.allows("front"))
        );
        assert!(
            !back
                .spin
                .as_ref()
                .is_some_and(|s| s.internal_calls.allows("cgi"))
        );
        let stores: Vec<_> = m.stores.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(stores, ["default", "other"]);
    }

    #[test]
    fn the_tenant_comes_from_the_deploy_or_the_tool_table() {
        let given = Name::new("acme").expect("a name");
        let other = Name::new("globex").expect("a name");
        let at = |tenant| parse(APP, Path::new("spin.toml"), Path::new("/app"), tenant);
        assert_eq!(at(Some(&given)).expect("same tenant").tenant, given);
        let refused = at(Some(&other)).expect_err("another tenant").to_string();
        assert!(refused.contains("for tenant `acme`"), "{refused}");
        let untagged = APP.replace("[application.tool.meshwa]\ntenant = \"acme\"\n", "");
        let m = parse_text(&untagged).expect("parses");
        assert_eq!(m.tenant.as_str(), DEFAULT_SPIN_TENANT);
        let m = parse(
            &untagged,
            Path::new("spin.toml"),
            Path::new("/app"),
            Some(&other),
        );
        assert_eq!(m.expect("parses").tenant, other);
    }

    #[test]
    fn what_meshwa_cannot_honour_is_refused_by_name() {
        let minimal = |component: &str, extra: &str| {
            format!(
                "spin_manifest_version = 2\n[application]\nname = \"a\"\n{extra}\n\
                 [[trigger.http]]\nroute = \"/a/...\"\ncomponent = \"c\"\n\
                 [component.c]\nsource = \"c.wasm\"\n{component}\n"
            )
        };
        for (component, extra, expected) in [
            ("files = [\"static/**\"]", "", "component.c.files"),
            ("sqlite_databases = [\"default\"]", "", "SQLite"),
            ("ai_models = [\"llama2-chat\"]", "", "AI models"),
            (
                "allowed_outbound_hosts = [\"redis://cache:6379\"]",
                "",
                "not redis://",
            ),
            (
                "allowed_outbound_hosts = [\"http://self\"]",
                "",
                "relative URL",
            ),
            (
                "allowed_outbound_hosts = [\"https://{{ host }}\"]",
                "",
                "variables in outbound",
            ),
            ("allowed_http_hosts = [\"example.com\"]", "", "Spin 1"),
            (
                "source = { url = \"https://x/c.wasm\", digest = \"sha256:00\" }",
                "",
                "not a URL",
            ),
            (
                "[component.c.variables]\nx = \"{{ nope }}\"",
                "",
                "not in [variables]",
            ),
            ("unknown_key = 1", "", "unknown field"),
            (
                "",
                "[[trigger.redis]]\nchannel = \"x\"\ncomponent = \"c\"",
                "HTTP triggers only",
            ),
            (
                "",
                "[variables]\nv = { required = true, default = \"x\" }",
                "not both",
            ),
        ] {
            // A replaced `source` must not be declared twice.
            let text = if component.starts_with("source") {
                minimal("", "").replace("source = \"c.wasm\"", component)
            } else {
                minimal(component, extra)
            };
            let error = parse_text(&text).expect_err(component).to_string();
            assert!(error.contains(expected), "{component} {extra}: {error}");
        }
        let params = minimal("", "").replace("/a/...", "/users/:id");
        let error = parse_text(&params).expect_err("params").to_string();
        assert!(error.contains("parameter segment"), "{error}");
        let v1 =
            minimal("", "").replace("spin_manifest_version = 2", "spin_manifest_version = \"1\"");
        let error = parse_text(&v1).expect_err("v1").to_string();
        assert!(error.contains("version 2"), "{error}");
        let twice = format!(
            "{}[[trigger.http]]\nroute = \"/b\"\ncomponent = \"c\"\n",
            minimal("", "")
        );
        let error = parse_text(&twice).expect_err("two triggers").to_string();
        assert!(error.contains("two triggers"), "{error}");
    }

    #[test]
    fn a_base_path_prefixes_every_route() {
        let text = "spin_manifest_version = 2\n[application]\nname = \"a\"\n\
                    [application.trigger.http]\nbase = \"/api\"\n\
                    [[trigger.http]]\nroute = \"/...\"\ncomponent = \"c\"\n\
                    [component.c]\nsource = \"c.wasm\"\n";
        let m = parse_text(text).expect("parses");
        let c = &m.functions[0];
        assert_eq!(c.route.as_ref().map(Route::as_str), Some("/api"));
        let spin = c.spin.as_ref().expect("spin");
        assert_eq!(spin.base, "/api");
        assert_eq!(spin.raw_route.as_deref(), Some("/api/..."));
        assert_eq!(spin.component_route(), "/api");
    }
}
