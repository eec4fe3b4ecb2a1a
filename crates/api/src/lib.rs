//! The bodies of meshwa's control-plane API, shared by the server (`meshwa-control`), the
//! `meshwa` CLI and any other client. `docs/openapi.json` describes the API; a test of
//! `meshwa-control` checks it against these types (feature `schema` derives their JSON Schemas).
//!
//! The contract:
//! - Every JSON body of the API, request or response, is one of these types: the server
//!   serializes exactly them, a client deserializes them. Unknown fields are ignored when
//!   deserializing, so a field added later (always an optional one) breaks no older client.
//! - Every failure of the control plane itself answers [`ErrorBody`], with a status that says
//!   whose fault it is ([`ErrorKind::status`]). A failed invocation of a function answers
//!   [`InvocationErrorBody`]. A function's own answer is its bytes, never wrapped.
//! - Names (tenants, apps, functions) are plain strings here; the server validates them.
//! - No dependency but serde (and schemars with `schema`): a client needs neither wasmtime nor
//!   the runtime.

use serde::{Deserialize, Serialize};

/// Who the bearer token belongs to (`GET /v1/whoami`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(tag = "role", rename_all = "snake_case")]
pub enum WhoAmI {
    /// The operator's token: manages tenants, may act on any tenant.
    Operator,
    /// One of `tenant`'s tokens: reaches only that tenant's resources.
    Tenant { tenant: String },
}

/// `POST /v1/tenants`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct CreateTenant {
    pub name: String,
}

/// Answer of `POST /v1/tenants` (201).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct TenantCreated {
    pub name: String,
}

/// Answer of `GET /v1/tenants`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct TenantList {
    pub tenants: Vec<Tenant>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Tenant {
    pub name: String,
    /// Creation time, Unix seconds.
    pub created: u64,
}

/// Answer of `DELETE /v1/tenants/{tenant}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct TenantDeleted {
    pub deleted: String,
    /// The apps removed with it.
    pub removed_apps: Vec<String>,
}

/// Answer of `GET /v1/tenants/{tenant}/tokens`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct TokenList {
    pub tokens: Vec<Token>,
}

/// A tenant token as stored: its public id, never the token itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Token {
    pub id: String,
    /// Creation time, Unix seconds.
    pub created: u64,
}

/// Answer of `POST /v1/tenants/{tenant}/tokens` (201): `token` is shown this once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct IssuedToken {
    pub tenant: String,
    pub id: String,
    pub token: String,
}

/// Answer of `DELETE /v1/tenants/{tenant}/tokens/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct TokenRevoked {
    pub revoked: String,
}

/// Answer of `GET /v1/tenants/{tenant}/apps`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct AppList {
    pub apps: Vec<App>,
}

/// Where an app being served came from; flattened into [`App`] and [`AppDetail`] as `source`
/// (and, for a deployed app, `version` and `deployed_at`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(tag = "source", rename_all = "kebab-case")]
pub enum Source {
    /// A manifest on the server's command line: read-only through the API.
    CommandLine,
    /// Deployed through the API. `version` is unique across apps and never reused;
    /// `deployed_at` is in Unix seconds.
    Deployed { version: u64, deployed_at: u64 },
}

impl Source {
    /// As in the body's `source`: `command-line` or `deployed`.
    pub fn name(&self) -> &'static str {
        match self {
            Source::CommandLine => "command-line",
            Source::Deployed { .. } => "deployed",
        }
    }

    /// The deployment version, if deployed.
    pub fn version(&self) -> Option<u64> {
        match self {
            Source::CommandLine => None,
            Source::Deployed { version, .. } => Some(*version),
        }
    }
}

/// An app being served, in summary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct App {
    pub tenant: String,
    pub app: String,
    /// In manifest order.
    pub functions: Vec<FunctionSummary>,
    #[serde(flatten)]
    pub source: Source,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct FunctionSummary {
    pub name: String,
    /// The public route, or `None` for a private function.
    pub route: Option<String>,
}

/// Answer of `GET /v1/tenants/{tenant}/apps/{app}`: an app in full, with the names (never the
/// values) of its stores, config and secrets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct AppDetail {
    pub tenant: String,
    pub app: String,
    /// In manifest order.
    pub functions: Vec<FunctionDetail>,
    pub stores: Vec<String>,
    pub config: Vec<String>,
    pub secrets: Vec<String>,
    #[serde(flatten)]
    pub source: Source,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct FunctionDetail {
    pub name: String,
    pub route: Option<String>,
    /// Functions of the same app allowed to call this one; `None`: any of them.
    pub callable_by: Option<Vec<String>>,
    pub limits: Limits,
    pub grants: Grants,
    /// Instances running right now.
    pub live_instances: u64,
    /// Compiled when the app was loaded (else its machine code came from the cache).
    pub compiled_at_load: bool,
}

/// A function's limits, in bytes and milliseconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Limits {
    pub max_memory: u64,
    pub timeout_ms: u64,
    pub max_request_body: u64,
    pub max_outbound_response: u64,
}

/// What a function may use besides its own memory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Grants {
    pub key_value: Vec<String>,
    pub config: Vec<String>,
    pub logging: bool,
    /// Origins, as written in the manifest.
    pub outbound: Vec<String>,
}

/// Answer of `PUT /v1/tenants/{tenant}/apps/{app}` (the request body is a tar archive).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct DeployResult {
    pub tenant: String,
    pub app: String,
    pub version: u64,
    /// The version this deployment replaced; `None` for a first deployment.
    pub replaced: Option<u64>,
    /// In manifest order.
    pub functions: Vec<DeployedFunction>,
    /// How many functions were compiled (not found in the cache).
    pub compiled: u64,
    pub elapsed_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct DeployedFunction {
    pub name: String,
    pub route: Option<String>,
    /// Compiled by this deployment (else it came from the cache).
    pub compiled: bool,
}

/// Answer of `DELETE /v1/tenants/{tenant}/apps/{app}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct AppRemoved {
    /// `tenant/app`.
    pub removed: String,
    /// Every running instance finished before the wait ran out.
    pub drained: bool,
}

/// Answer of `GET /v1/tenants/{tenant}/apps/{app}/logs`, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct LogList {
    pub entries: Vec<LogEntry>,
}

/// One entry of a function's recent history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct LogEntry {
    /// Milliseconds since the Unix epoch.
    pub at_ms: u64,
    pub invocation: String,
    pub function: String,
    #[serde(flatten)]
    pub event: LogEvent,
}

/// What a [`LogEntry`] records, by `kind`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LogEvent {
    /// An invocation answered; `error` is the error kind if it failed.
    Invocation {
        status: u16,
        duration_us: u64,
        error: Option<String>,
    },
    /// A line the guest logged (`stdout`, `stderr` or `wasi:logging`); secrets redacted.
    Log { stream: String, message: String },
}

/// Answer of `GET /v1/tenants/{tenant}/apps/{app}/traffic`: each function's invocations (from
/// outside and in-process) over the last ten minutes, per interval, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct TrafficReport {
    /// The width of one interval, in seconds.
    pub interval_s: u64,
    pub functions: Vec<FunctionTraffic>,
}

/// One function's part of a [`TrafficReport`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct FunctionTraffic {
    pub function: String,
    /// Instances of it alive now.
    pub live_instances: u64,
    pub points: Vec<TrafficPoint>,
}

/// One interval of a function's traffic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct TrafficPoint {
    /// When the interval started, in milliseconds since the Unix epoch.
    pub start_ms: u64,
    pub requests: u32,
    /// Invocations that failed or answered a 5xx status.
    pub errors: u32,
    /// Latency percentiles to the response head, in microseconds (within 12.5 %); absent
    /// without requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p50_us: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p90_us: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p99_us: Option<u64>,
}

/// Answer of `GET /v1/tenants/{tenant}/apps/{app}/traces`: recent call chains started by the
/// app's functions, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct TraceList {
    pub traces: Vec<Trace>,
}

/// One call chain: the invocation that came from outside and every in-process call it made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Trace {
    /// The chain's invocation id, as in logs and `x-meshwa-invocation`.
    pub invocation: String,
    /// The function the chain started in.
    pub function: String,
    /// When it started, in milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// In order of start; the first is the chain's own.
    pub spans: Vec<TraceSpan>,
    /// Spans not kept (a chain keeps at most 128).
    pub dropped_spans: u32,
}

/// One invocation of a [`Trace`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct TraceSpan {
    /// Its number in the chain (the first is 0).
    pub span: u32,
    /// The span of its caller; absent for the chain's first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<u32>,
    pub app: String,
    pub function: String,
    /// When it started, in microseconds from the chain's start.
    pub start_us: u64,
    /// To its response head.
    pub duration_us: u64,
    /// The status it answered; absent if it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// The kind of its failure (as in logs); absent if it answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Answer of `GET /v1/cluster` (operator): what each node of the cluster serves, as it last
/// said.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ClusterView {
    pub nodes: Vec<ClusterNode>,
}

/// One node of a cluster and the deployed apps it serves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ClusterNode {
    /// The node's name (`meshwa serve --node-name`).
    pub node: String,
    /// When the node last said what it serves, Unix seconds: after every change it applies, and
    /// every 10 s while it runs, so an old time means a node that is gone.
    pub updated_at: u64,
    /// The deployed apps it serves (not its command-line apps).
    pub apps: Vec<ServedApp>,
}

/// A deployed app and the version a node serves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ServedApp {
    pub tenant: String,
    pub app: String,
    pub version: u64,
}

/// Answer of `GET /v1/pool` (operator): the server's instance pool now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct PoolStatus {
    /// Instance slots: how many instances may be alive at once.
    pub instance_slots: u64,
    pub live_instances: u64,
    /// Instances come from wasmtime's pooling allocator.
    pub pooling: bool,
    /// Memory protection keys pack the pool's slots.
    pub mpk: bool,
}

/// The body of every failure of the control plane itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ErrorBody {
    pub error: ErrorKind,
    /// For humans.
    pub message: String,
    /// Every problem found; only with [`ErrorKind::Invalid`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
}

/// The stable kind of an [`ErrorBody`]; each has one status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    BadRequest,
    Unauthorized,
    Forbidden,
    NotFound,
    MethodNotAllowed,
    Conflict,
    PayloadTooLarge,
    /// The app was refused; nothing changed.
    Invalid,
    /// Too many at once (log followers); try again later.
    TooManyRequests,
    /// The server failed; the details are in its log.
    Host,
    /// The server is out of a resource (file descriptors) for now; nothing changed.
    Unavailable,
    /// The server's disk is full; nothing changed.
    InsufficientStorage,
}

impl ErrorKind {
    /// The HTTP status that goes with the kind: 4xx for the client's fault, 5xx for the host's.
    pub fn status(self) -> u16 {
        match self {
            ErrorKind::BadRequest => 400,
            ErrorKind::Unauthorized => 401,
            ErrorKind::Forbidden => 403,
            ErrorKind::NotFound => 404,
            ErrorKind::MethodNotAllowed => 405,
            ErrorKind::Conflict => 409,
            ErrorKind::PayloadTooLarge => 413,
            ErrorKind::Invalid => 422,
            ErrorKind::TooManyRequests => 429,
            ErrorKind::Host => 500,
            ErrorKind::Unavailable => 503,
            ErrorKind::InsufficientStorage => 507,
        }
    }
}

/// The body of an invocation that failed in the runtime (`invoke`): trap, timeout, memory...
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct InvocationErrorBody {
    /// The runtime's error kind (`trap`, `timeout`, ...).
    pub error: String,
    /// The invocation id, also in the server's log and the `x-meshwa-invocation` header.
    pub error_id: String,
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_source_is_flattened_into_the_app() {
        let app = App {
            tenant: "acme".into(),
            app: "shop".into(),
            functions: vec![FunctionSummary {
                name: "f".into(),
                route: None,
            }],
            source: Source::Deployed {
                version: 3,
                deployed_at: 9,
            },
        };
        let value = serde_json::to_value(&app).unwrap();
        assert_eq!(
            value,
            json!({ "tenant": "acme", "app": "shop", "functions": [{ "name": "f", "route": null }],
                    "source": "deployed", "version": 3, "deployed_at": 9 })
        );
        assert_eq!(serde_json::from_value::<App>(value).unwrap(), app);
        let static_app =
            json!({ "tenant": "a", "app": "b", "functions": [], "source": "command-line" });
        assert_eq!(
            serde_json::from_value::<App>(static_app).unwrap().source,
            Source::CommandLine
        );
        for source in [Source::CommandLine, app.source] {
            let value = serde_json::to_value(App {
                source,
                ..app.clone()
            })
            .unwrap();
            assert_eq!(value["source"], source.name());
        }
    }

    #[test]
    fn errors_omit_an_empty_list_and_ignore_unknown_fields() {
        let body = ErrorBody {
            error: ErrorKind::NotFound,
            message: "no app".into(),
            errors: Vec::new(),
        };
        assert_eq!(
            serde_json::to_value(&body).unwrap(),
            json!({ "error": "not_found", "message": "no app" })
        );
        let newer = json!({ "error": "invalid", "message": "m", "errors": ["a"], "hint": "x" });
        let parsed: ErrorBody = serde_json::from_value(newer).unwrap();
        assert_eq!((parsed.error.status(), parsed.errors.len()), (422, 1));
    }

    #[test]
    fn log_entries_carry_their_kind() {
        let entry = LogEntry {
            at_ms: 1,
            invocation: "i".into(),
            function: "f".into(),
            event: LogEvent::Invocation {
                status: 500,
                duration_us: 7,
                error: None,
            },
        };
        let value = serde_json::to_value(&entry).unwrap();
        assert_eq!(value["kind"], "invocation");
        assert_eq!(value["error"], serde_json::Value::Null);
        assert_eq!(serde_json::from_value::<LogEntry>(value).unwrap(), entry);
        let who: WhoAmI =
            serde_json::from_value(json!({ "role": "tenant", "tenant": "acme" })).unwrap();
        assert_eq!(
            who,
            WhoAmI::Tenant {
                tenant: "acme".into()
            }
        );
    }
}
