//! The control-plane API: JSON over HTTP on the admin listener. `docs/openapi.json` describes
//! it; [`ROUTES`] is the table both the dispatcher and the OpenAPI test use.
//!
//! Every error answers `{"error": KIND, "message": TEXT}` (and `"errors": [...]` for a refused
//! deployment, with every problem found), with a status that says whose fault it is: 400/413/422
//! for a bad upload or app, 401 for a missing or wrong token, 403 for a tenant token on an
//! operator endpoint, 404 for anything the caller may not see, 409 for a conflict, 500 for the
//! host.

use std::collections::BTreeMap;
use std::time::Instant;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use meshwa_manifest::{Manifest, Name};
use meshwa_runtime::{CacheOutcome, RecentWhat};
use serde_json::{Value, json};
use subtle::ConstantTimeEq;

use crate::registry::{ChangeError, Origin, drain, drain_limit};
use crate::{ControlPlane, archive};

/// The OpenAPI document of this API.
pub const OPENAPI: &str = include_str!("../../../docs/openapi.json");

/// Largest response body `invoke` collects from a function.
const MAX_INVOKE_RESPONSE: usize = 64 * 1024 * 1024;
/// Largest JSON body of the calls that take one (tenant creation).
const MAX_JSON_BODY: usize = 64 * 1024;

/// What a route does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Metrics,
    OpenApi,
    WhoAmI,
    ListTenants,
    CreateTenant,
    DeleteTenant,
    ListTokens,
    CreateToken,
    RevokeToken,
    ListApps,
    GetApp,
    DeployApp,
    RemoveApp,
    Invoke,
    Logs,
}

/// Every route: method, path pattern (`{name}` matches one segment), endpoint.
pub const ROUTES: &[(Method, &str, Endpoint)] = &[
    (Method::GET, "/metrics", Endpoint::Metrics),
    (Method::GET, "/v1/openapi.json", Endpoint::OpenApi),
    (Method::GET, "/v1/whoami", Endpoint::WhoAmI),
    (Method::GET, "/v1/tenants", Endpoint::ListTenants),
    (Method::POST, "/v1/tenants", Endpoint::CreateTenant),
    (
        Method::DELETE,
        "/v1/tenants/{tenant}",
        Endpoint::DeleteTenant,
    ),
    (
        Method::GET,
        "/v1/tenants/{tenant}/tokens",
        Endpoint::ListTokens,
    ),
    (
        Method::POST,
        "/v1/tenants/{tenant}/tokens",
        Endpoint::CreateToken,
    ),
    (
        Method::DELETE,
        "/v1/tenants/{tenant}/tokens/{id}",
        Endpoint::RevokeToken,
    ),
    (Method::GET, "/v1/tenants/{tenant}/apps", Endpoint::ListApps),
    (
        Method::GET,
        "/v1/tenants/{tenant}/apps/{app}",
        Endpoint::GetApp,
    ),
    (
        Method::PUT,
        "/v1/tenants/{tenant}/apps/{app}",
        Endpoint::DeployApp,
    ),
    (
        Method::DELETE,
        "/v1/tenants/{tenant}/apps/{app}",
        Endpoint::RemoveApp,
    ),
    (
        Method::POST,
        "/v1/tenants/{tenant}/apps/{app}/functions/{function}/invoke",
        Endpoint::Invoke,
    ),
    (
        Method::GET,
        "/v1/tenants/{tenant}/apps/{app}/logs",
        Endpoint::Logs,
    ),
];

/// An API failure.
#[derive(Debug)]
pub enum ApiError {
    BadRequest(String),
    Unauthorized,
    Forbidden,
    NotFound(String),
    MethodNotAllowed,
    Conflict(String),
    PayloadTooLarge(u64),
    Invalid(Vec<String>),
    Host(String),
}

impl ApiError {
    fn into_response(self) -> Response<Full<Bytes>> {
        let (status, kind, message, errors) = match self {
            ApiError::BadRequest(m) => (StatusCode::BAD_REQUEST, "bad_request", m, None),
            ApiError::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "a valid bearer token is required (Authorization: Bearer <token>)".to_owned(),
                None,
            ),
            ApiError::Forbidden => (
                StatusCode::FORBIDDEN,
                "forbidden",
                "this needs the operator's token".to_owned(),
                None,
            ),
            ApiError::NotFound(m) => (StatusCode::NOT_FOUND, "not_found", m, None),
            ApiError::MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "method not allowed on this path".to_owned(),
                None,
            ),
            ApiError::Conflict(m) => (StatusCode::CONFLICT, "conflict", m, None),
            ApiError::PayloadTooLarge(limit) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("the upload is larger than this server's limit of {limit} bytes"),
                None,
            ),
            ApiError::Invalid(errors) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid",
                format!(
                    "the app was refused: {} problem(s); nothing changed",
                    errors.len()
                ),
                Some(errors),
            ),
            ApiError::Host(m) => {
                tracing::error!(error = %m, "control plane: host error");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "host",
                    "internal error; see the server's log".to_owned(),
                    None,
                )
            }
        };
        let mut body = json!({ "error": kind, "message": message });
        if let Some(errors) = errors {
            body["errors"] = json!(errors);
        }
        let mut response = json_response(status, &body);
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer realm=\"meshwa\""),
            );
        }
        response
    }
}

impl From<crate::StoreError> for ApiError {
    fn from(error: crate::StoreError) -> Self {
        ApiError::Host(error.to_string())
    }
}

fn json_response(status: StatusCode, body: &Value) -> Response<Full<Bytes>> {
    let mut text = body.to_string();
    text.push('\n');
    let mut response = Response::new(Full::new(Bytes::from(text)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    response
}

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Caller {
    Operator,
    Tenant(String),
}

impl Caller {
    /// Whether the caller may see `tenant`'s resources. A tenant that may not is answered 404,
    /// never 403: another tenant's apps must look like apps that do not exist.
    fn check_tenant(&self, tenant: &str) -> Result<(), ApiError> {
        match self {
            Caller::Operator => Ok(()),
            Caller::Tenant(own) if own == tenant => Ok(()),
            Caller::Tenant(_) => Err(ApiError::NotFound(format!("no tenant {tenant}"))),
        }
    }

    fn require_operator(&self) -> Result<(), ApiError> {
        match self {
            Caller::Operator => Ok(()),
            Caller::Tenant(_) => Err(ApiError::Forbidden),
        }
    }
}

/// Matches `path` against a route pattern; returns the `{name}` segments.
fn match_pattern<'a>(pattern: &'a str, path: &'a str) -> Option<BTreeMap<&'a str, &'a str>> {
    let mut params = BTreeMap::new();
    let mut pattern_parts = pattern.split('/');
    let mut path_parts = path.split('/');
    loop {
        match (pattern_parts.next(), path_parts.next()) {
            (None, None) => return Some(params),
            (Some(p), Some(s)) if p.starts_with('{') && p.ends_with('}') && !s.is_empty() => {
                params.insert(&p[1..p.len() - 1], s);
            }
            (Some(p), Some(s)) if p == s => {}
            _ => return None,
        }
    }
}

/// Answers one admin request; never fails (failures become JSON errors).
pub async fn handle(control: &ControlPlane, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = request.uri().path().to_owned();
    let mut path_matched = false;
    for (method, pattern, endpoint) in ROUTES {
        let Some(params) = match_pattern(pattern, &path) else {
            continue;
        };
        path_matched = true;
        if method != request.method() {
            continue;
        }
        let params: BTreeMap<String, String> = params
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        return match route(control, *endpoint, &params, request).await {
            Ok(response) => response,
            Err(error) => error.into_response(),
        };
    }
    if path_matched {
        ApiError::MethodNotAllowed.into_response()
    } else {
        ApiError::NotFound("no such endpoint".to_owned()).into_response()
    }
}

async fn route(
    control: &ControlPlane,
    endpoint: Endpoint,
    params: &BTreeMap<String, String>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let param = |name: &str| params.get(name).map(String::as_str).unwrap_or_default();
    match endpoint {
        Endpoint::Metrics => {
            let mut response = Response::new(Full::new(Bytes::from(control.metrics.encode())));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static(
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                ),
            );
            return Ok(response);
        }
        Endpoint::OpenApi => {
            let mut response = Response::new(Full::new(Bytes::from_static(OPENAPI.as_bytes())));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("application/json"),
            );
            return Ok(response);
        }
        _ => {}
    }
    let caller = authenticate(control, request.headers())?;
    match endpoint {
        // Answered above, before authentication.
        Endpoint::Metrics | Endpoint::OpenApi => {
            Err(ApiError::NotFound("no such endpoint".to_owned()))
        }
        Endpoint::WhoAmI => Ok(json_response(
            StatusCode::OK,
            &match &caller {
                Caller::Operator => json!({ "role": "operator" }),
                Caller::Tenant(tenant) => json!({ "role": "tenant", "tenant": tenant }),
            },
        )),
        Endpoint::ListTenants => {
            caller.require_operator()?;
            let tenants: Vec<Value> = control
                .store
                .tenants()?
                .into_iter()
                .map(|(name, created)| json!({ "name": name, "created": created }))
                .collect();
            Ok(json_response(
                StatusCode::OK,
                &json!({ "tenants": tenants }),
            ))
        }
        Endpoint::CreateTenant => {
            caller.require_operator()?;
            let body = read_json(request).await?;
            let name = body
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| ApiError::BadRequest("expected {\"name\": \"<tenant>\"}".into()))?;
            let name = Name::new(name).map_err(|e| ApiError::Invalid(vec![e.to_string()]))?;
            if !control.store.create_tenant(&name)? {
                return Err(ApiError::Conflict(format!("tenant {name} exists")));
            }
            tracing::info!(tenant = %name, "tenant created");
            Ok(json_response(
                StatusCode::CREATED,
                &json!({ "name": name.as_str() }),
            ))
        }
        Endpoint::DeleteTenant => {
            caller.require_operator()?;
            let tenant = param("tenant");
            if !control.store.tenant_exists(tenant)? {
                return Err(ApiError::NotFound(format!("no tenant {tenant}")));
            }
            let mut removed = Vec::new();
            for app in control.registry.apps().await {
                if app.manifest.tenant.as_str() == tenant
                    && matches!(app.origin, Origin::Deployed { .. })
                {
                    let name = app.manifest.app.to_string();
                    remove_app(control, tenant, &name).await?;
                    removed.push(name);
                }
            }
            control.store.delete_tenant(tenant)?;
            tracing::info!(%tenant, apps = removed.len(), "tenant deleted");
            Ok(json_response(
                StatusCode::OK,
                &json!({ "deleted": tenant, "removed_apps": removed }),
            ))
        }
        Endpoint::ListTokens => {
            let tenant = existing_tenant(control, &caller, param("tenant"))?;
            let tokens: Vec<Value> = control
                .store
                .tokens(&tenant)?
                .into_iter()
                .map(|t| json!({ "id": t.id, "created": t.created }))
                .collect();
            Ok(json_response(StatusCode::OK, &json!({ "tokens": tokens })))
        }
        Endpoint::CreateToken => {
            let tenant = existing_tenant(control, &caller, param("tenant"))?;
            let (record, token) = control.store.issue_token(&tenant)?;
            tracing::info!(%tenant, id = %record.id, "token issued");
            Ok(json_response(
                StatusCode::CREATED,
                &json!({ "tenant": tenant, "id": record.id, "token": token }),
            ))
        }
        Endpoint::RevokeToken => {
            let tenant = existing_tenant(control, &caller, param("tenant"))?;
            let id = param("id");
            if !control.store.revoke_token(&tenant, id)? {
                return Err(ApiError::NotFound(format!("no token {id}")));
            }
            tracing::info!(%tenant, %id, "token revoked");
            Ok(json_response(StatusCode::OK, &json!({ "revoked": id })))
        }
        Endpoint::ListApps => {
            let tenant = param("tenant");
            caller.check_tenant(tenant)?;
            let apps: Vec<Value> = control
                .registry
                .apps()
                .await
                .iter()
                .filter(|app| app.manifest.tenant.as_str() == tenant)
                .map(app_summary)
                .collect();
            Ok(json_response(StatusCode::OK, &json!({ "apps": apps })))
        }
        Endpoint::GetApp => {
            let app = visible_app(control, &caller, param("tenant"), param("app")).await?;
            Ok(json_response(StatusCode::OK, &app_detail(&app)))
        }
        Endpoint::DeployApp => {
            let tenant = existing_tenant(control, &caller, param("tenant"))?;
            deploy(control, &tenant, param("app"), request).await
        }
        Endpoint::RemoveApp => {
            let tenant = param("tenant");
            caller.check_tenant(tenant)?;
            let drained = remove_app(control, tenant, param("app")).await?;
            Ok(json_response(
                StatusCode::OK,
                &json!({ "removed": format!("{tenant}/{}", param("app")), "drained": drained }),
            ))
        }
        Endpoint::Invoke => {
            let app = visible_app(control, &caller, param("tenant"), param("app")).await?;
            invoke(&app, param("function"), request).await
        }
        Endpoint::Logs => {
            let app = visible_app(control, &caller, param("tenant"), param("app")).await?;
            let limit: usize = query_param(request.uri(), "limit")
                .and_then(|v| v.parse().ok())
                .unwrap_or(100)
                .min(meshwa_runtime::RECENT_ENTRIES);
            let only = query_param(request.uri(), "function");
            let mut entries: Vec<Value> = Vec::new();
            for function in &app.functions {
                if only
                    .as_deref()
                    .is_some_and(|f| f != function.id().function.as_str())
                {
                    continue;
                }
                for entry in function.recent_log().latest(limit) {
                    let mut value = json!(entry);
                    value["function"] = json!(function.id().function.as_str());
                    entries.push(value);
                }
            }
            entries.sort_by_key(|e| e["at_ms"].as_u64().unwrap_or(0));
            let skip = entries.len().saturating_sub(limit);
            let entries: Vec<Value> = entries.into_iter().skip(skip).collect();
            Ok(json_response(
                StatusCode::OK,
                &json!({ "entries": entries }),
            ))
        }
    }
}

fn authenticate(control: &ControlPlane, headers: &HeaderMap) -> Result<Caller, ApiError> {
    use sha2::Digest;
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or(ApiError::Unauthorized)?;
    let digest: [u8; 32] = sha2::Sha256::digest(token.as_bytes()).into();
    if bool::from(digest.ct_eq(&control.operator_token_hash)) {
        return Ok(Caller::Operator);
    }
    match control.store.token_tenant(token)? {
        Some(tenant) => Ok(Caller::Tenant(tenant)),
        None => Err(ApiError::Unauthorized),
    }
}

/// `tenant`, if the caller may see it and it exists.
fn existing_tenant(
    control: &ControlPlane,
    caller: &Caller,
    tenant: &str,
) -> Result<String, ApiError> {
    caller.check_tenant(tenant)?;
    if !control.store.tenant_exists(tenant)? {
        return Err(ApiError::NotFound(format!("no tenant {tenant}")));
    }
    Ok(tenant.to_owned())
}

async fn visible_app(
    control: &ControlPlane,
    caller: &Caller,
    tenant: &str,
    app: &str,
) -> Result<crate::ActiveApp, ApiError> {
    caller.check_tenant(tenant)?;
    control
        .registry
        .get(tenant, app)
        .await
        .ok_or_else(|| ApiError::NotFound(format!("no app {tenant}/{app}")))
}

fn origin_json(origin: Origin) -> Value {
    match origin {
        Origin::Static => json!({ "source": "command-line" }),
        Origin::Deployed {
            version,
            deployed_at,
        } => json!({ "source": "deployed", "version": version, "deployed_at": deployed_at }),
    }
}

fn app_summary(app: &crate::ActiveApp) -> Value {
    let functions: Vec<Value> = app
        .manifest
        .functions
        .iter()
        .map(|f| json!({ "name": f.name.as_str(), "route": f.route.as_ref().map(|r| r.as_str()) }))
        .collect();
    let mut value = json!({
        "tenant": app.manifest.tenant.as_str(),
        "app": app.manifest.app.as_str(),
        "functions": functions,
    });
    merge(&mut value, origin_json(app.origin));
    value
}

fn app_detail(app: &crate::ActiveApp) -> Value {
    let functions: Vec<Value> = app
        .manifest
        .functions
        .iter()
        .zip(&app.functions)
        .map(|(spec, function)| {
            json!({
                "name": spec.name.as_str(),
                "route": spec.route.as_ref().map(|r| r.as_str()),
                "callable_by": spec.callable_by.as_ref().map(|c| c.iter().map(|n| n.as_str()).collect::<Vec<_>>()),
                "limits": {
                    "max_memory": spec.limits.max_memory,
                    "timeout_ms": spec.limits.timeout.as_millis() as u64,
                    "max_request_body": spec.limits.max_request_body,
                    "max_outbound_response": spec.limits.max_outbound_response,
                },
                "grants": {
                    "key_value": spec.grants.key_value.iter().map(|n| n.as_str()).collect::<Vec<_>>(),
                    "config": spec.grants.config.iter().map(|n| n.as_str()).collect::<Vec<_>>(),
                    "logging": spec.grants.logging,
                    "outbound": spec.grants.outbound.iter().map(ToString::to_string).collect::<Vec<_>>(),
                },
                "live_instances": function.live_instances(),
                "compiled_at_load": function.cache_outcome() == CacheOutcome::Compiled,
            })
        })
        .collect();
    let mut value = json!({
        "tenant": app.manifest.tenant.as_str(),
        "app": app.manifest.app.as_str(),
        "functions": functions,
        "stores": app.manifest.stores.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
        "config": app.manifest.config.keys().map(|k| k.as_str()).collect::<Vec<_>>(),
        "secrets": app.manifest.secrets.iter().map(|k| k.as_str()).collect::<Vec<_>>(),
    });
    merge(&mut value, origin_json(app.origin));
    value
}

fn merge(target: &mut Value, extra: Value) {
    if let (Value::Object(target), Value::Object(extra)) = (target, extra) {
        target.extend(extra);
    }
}

async fn read_json(request: Request<Incoming>) -> Result<Value, ApiError> {
    let bytes = Limited::new(request.into_body(), MAX_JSON_BODY)
        .collect()
        .await
        .map_err(|_| {
            ApiError::BadRequest(format!(
                "the body must be JSON of at most {MAX_JSON_BODY} bytes"
            ))
        })?
        .to_bytes();
    serde_json::from_slice(&bytes).map_err(|e| ApiError::BadRequest(format!("invalid JSON: {e}")))
}

/// Deploys (or redeploys) `tenant/app` from an uploaded archive; all or nothing.
async fn deploy(
    control: &ControlPlane,
    tenant: &str,
    app: &str,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let started = Instant::now();
    let limit = control.max_upload;
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit) {
        return Err(ApiError::PayloadTooLarge(limit));
    }
    let body = Limited::new(
        request.into_body(),
        usize::try_from(limit).unwrap_or(usize::MAX),
    )
    .collect()
    .await
    .map_err(|e| {
        if e.is::<http_body_util::LengthLimitError>() {
            ApiError::PayloadTooLarge(limit)
        } else {
            ApiError::BadRequest(format!("reading the upload failed: {e}"))
        }
    })?
    .to_bytes();
    let bundle = archive::unpack(&body).map_err(|e| ApiError::BadRequest(e.to_string()))?;

    // Check the manifest against the upload before writing anything: every problem at once.
    let manifest = Manifest::parse(
        &bundle.manifest,
        std::path::Path::new("meshwa.toml"),
        std::path::Path::new(""),
    )
    .map_err(|e| ApiError::Invalid(vec![e.to_string()]))?;
    let mut errors = Vec::new();
    if manifest.tenant.as_str() != tenant {
        errors.push(format!(
            "meshwa.toml is for tenant `{}`, but this is tenant `{tenant}`",
            manifest.tenant
        ));
    }
    if manifest.app.as_str() != app {
        errors.push(format!(
            "meshwa.toml is for app `{}`, but the upload is for app `{app}`",
            manifest.app
        ));
    }
    for function in &manifest.functions {
        let path = function.component.to_string_lossy().replace('\\', "/");
        if !bundle.files.contains_key(path.as_str()) {
            errors.push(format!(
                "function `{}`: component {path} is not in the upload",
                function.name
            ));
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::Invalid(errors));
    }

    let files: Vec<(String, Vec<u8>)> = bundle.files.into_iter().collect();
    let staged = control.store.stage(&files)?;
    let version = staged.version;
    let manifest = match Manifest::load(&staged.dir.join("meshwa.toml")) {
        Ok(manifest) => manifest,
        Err(error) => {
            staged.discard();
            return Err(ApiError::Invalid(vec![error.to_string()]));
        }
    };
    let (manifest, prepared) = match control.registry.prepare_off_thread(manifest).await {
        Ok(ok) => ok,
        Err(errors) => {
            staged.discard();
            return Err(ApiError::Invalid(errors));
        }
    };
    let report: Vec<Value> = manifest
        .functions
        .iter()
        .zip(&prepared.functions)
        .map(|(spec, f)| {
            json!({
                "name": spec.name.as_str(),
                "route": spec.route.as_ref().map(|r| r.as_str()),
                "compiled": f.cache_outcome() == CacheOutcome::Compiled,
            })
        })
        .collect();
    let compiled = prepared
        .functions
        .iter()
        .filter(|f| f.cache_outcome() == CacheOutcome::Compiled)
        .count();

    let deployed_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let origin = Origin::Deployed {
        version,
        deployed_at,
    };
    let store = &control.store;
    let staged_dir = staged.dir.clone();
    let mut replaced_version = None;
    let mut staged = Some(staged);
    let outcome = control
        .registry
        .activate_and_persist(manifest, prepared, origin, || {
            let staged = staged.take().ok_or("staged twice")?;
            replaced_version = store
                .commit(staged, tenant, app)
                .map_err(|e| e.to_string())?;
            Ok(())
        })
        .await;
    match outcome {
        Ok(_previous) => {}
        Err(error) => {
            if let Some(staged) = staged {
                staged.discard();
            } else if staged_dir.exists() {
                let _ = std::fs::remove_dir_all(&staged_dir);
            }
            return Err(change_error(error));
        }
    }
    if let Some(old) = replaced_version {
        control.store.remove_version(tenant, app, old);
    }
    tracing::info!(
        app = %format!("{tenant}/{app}"),
        version,
        compiled,
        elapsed_ms = started.elapsed().as_secs_f64() * 1000.0,
        "app deployed"
    );
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "tenant": tenant,
            "app": app,
            "version": version,
            "replaced": replaced_version,
            "functions": report,
            "compiled": compiled,
            "elapsed_ms": started.elapsed().as_millis() as u64,
        }),
    ))
}

fn change_error(error: ChangeError) -> ApiError {
    match error {
        ChangeError::Invalid(errors) => ApiError::Invalid(errors),
        ChangeError::Static(m) => ApiError::Conflict(format!(
            "app {m} is served from the server's command line; change it there"
        )),
        ChangeError::NotFound(m) => ApiError::NotFound(format!("no app {m}")),
        ChangeError::Host(m) => ApiError::Host(m),
    }
}

/// Unroutes a deployed app, forgets it on disk, and waits for its instances (bounded).
async fn remove_app(control: &ControlPlane, tenant: &str, app: &str) -> Result<bool, ApiError> {
    let removed = control
        .registry
        .remove(tenant, app)
        .await
        .map_err(change_error)?;
    let version = control.store.forget_app(tenant, app)?;
    let limit = drain_limit(&removed);
    let drained = drain(removed, limit).await;
    if let Some(version) = version {
        control.store.remove_version(tenant, app, version);
    }
    tracing::info!(app = %format!("{tenant}/{app}"), drained, "app removed");
    Ok(drained)
}

/// The first value of query parameter `name`, decoded.
fn query_param(uri: &http::Uri, name: &str) -> Option<String> {
    form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes())
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
}

/// Calls one function of an app (public or private) with the request's body.
async fn invoke(
    app: &crate::ActiveApp,
    function: &str,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let target = app
        .functions
        .iter()
        .find(|f| f.id().function.as_str() == function)
        .cloned()
        .ok_or_else(|| ApiError::NotFound(format!("no function {function}")))?;
    let path = query_param(request.uri(), "path").unwrap_or_else(|| "/".to_owned());
    if !path.starts_with('/') {
        return Err(ApiError::BadRequest(
            "`path` must start with '/'".to_owned(),
        ));
    }
    let method = query_param(request.uri(), "method").unwrap_or_else(|| "POST".to_owned());
    let method = Method::from_bytes(method.as_bytes())
        .map_err(|_| ApiError::BadRequest(format!("invalid method {method:?}")))?;
    let content_type = request.headers().get(header::CONTENT_TYPE).cloned();
    let limit = target.limits().max_request_body;
    let body = Limited::new(
        request.into_body(),
        usize::try_from(limit).unwrap_or(usize::MAX),
    )
    .collect()
    .await
    .map_err(|_| ApiError::PayloadTooLarge(limit))?
    .to_bytes();
    let mut forwarded = Request::builder().method(method).uri(format!(
        "http://{function}.{}.internal{path}",
        app.manifest.app
    ));
    if let Some(content_type) = content_type {
        forwarded = forwarded.header(header::CONTENT_TYPE, content_type);
    }
    let forwarded = forwarded
        .body(Full::new(body).map_err(
            |never: std::convert::Infallible| -> meshwa_runtime::BodyError { match never {} },
        ))
        .map_err(|e| ApiError::BadRequest(format!("invalid request: {e}")))?;
    let invocation = meshwa_gateway::next_invocation_id();
    let started = Instant::now();
    let result = target.handle(forwarded, &invocation).await;
    let mut error_kind = None;
    let (status, mut response) = match result {
        Ok(response) => {
            let status = response.status();
            let headers = response.headers().clone();
            let body = Limited::new(response.into_body(), MAX_INVOKE_RESPONSE)
                .collect()
                .await
                .map_err(|e| ApiError::BadRequest(format!("the function's response failed: {e}")))?
                .to_bytes();
            let mut out = Response::new(Full::new(body));
            *out.status_mut() = status;
            if let Some(content_type) = headers.get(header::CONTENT_TYPE) {
                out.headers_mut()
                    .insert(header::CONTENT_TYPE, content_type.clone());
            }
            (status, out)
        }
        Err(error) => {
            let status = meshwa_runtime::status_for(&error);
            error_kind = Some(error.kind().to_owned());
            let body = json!({
                "error": error.kind(),
                "error_id": invocation,
                "message": meshwa_runtime::public_message(&error),
            });
            (status, json_response(status, &body))
        }
    };
    target.recent_log().push(
        &invocation,
        RecentWhat::Invocation {
            status: status.as_u16(),
            duration_us: started.elapsed().as_micros() as u64,
            error: error_kind,
        },
    );
    if let Ok(value) = header::HeaderValue::from_str(&invocation) {
        response.headers_mut().insert("x-meshwa-invocation", value);
    }
    Ok(response)
}
