//! The control-plane API: JSON over HTTP on the admin listener. `docs/openapi.json` describes
//! it; [`ROUTES`] is the table both the dispatcher and the OpenAPI test use.
//!
//! The contract:
//! - Every JSON body is a type of `meshwa-api`: the handlers serialize only those, and the
//!   OpenAPI test checks `docs/openapi.json` against their schemas. A function's own answer
//!   (`invoke`) passes through as bytes.
//! - Every error answers [`meshwa_api::ErrorBody`] (`{"error": KIND, "message": TEXT}`, and
//!   `"errors": [...]` for a refused deployment, with every problem found), with a status that
//!   says whose fault it is: 400/413/422 for a bad upload or app, 401 for a missing or wrong
//!   token, 403 for a tenant token on an operator endpoint, 404 for anything the caller may not
//!   see, 405 for a known path with another method, 409 for a conflict, 500 for the host (a
//!   store that cannot be written, a key-value file that cannot be opened...). See [`ApiError`].
//! - One handler per endpoint; all but `GET /metrics` (the operator's or the scrape token) and
//!   `GET /v1/openapi.json` (open) take a [`Call`], which only [`Call::authenticate`] makes.

mod apps;
mod dashboard;
mod deploy;
mod error;
mod follow;
mod invoke;
mod observe;
mod tenants;

use std::collections::BTreeMap;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use serde::Serialize;
use serde::de::DeserializeOwned;
use subtle::ConstantTimeEq;

pub(crate) use apps::apply_removal;
pub(crate) use deploy::apply_deploy;
pub use error::ApiError;
pub use follow::FollowBody;
pub(crate) use follow::Followers;

/// The body of an admin answer: JSON (or text) whole, or a log stream that follows.
pub type AdminBody = http_body_util::Either<Full<Bytes>, FollowBody>;

use crate::ControlPlane;

/// The OpenAPI document of this API.
pub const OPENAPI: &str = include_str!("../../../../docs/openapi.json");

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
    ListAllApps,
    Pool,
    Cluster,
    Traffic,
    Traces,
    Dashboard,
    DashboardAsset,
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
    (Method::GET, "/v1/apps", Endpoint::ListAllApps),
    (Method::GET, "/v1/pool", Endpoint::Pool),
    (Method::GET, "/v1/cluster", Endpoint::Cluster),
    (
        Method::GET,
        "/v1/tenants/{tenant}/apps/{app}/traffic",
        Endpoint::Traffic,
    ),
    (
        Method::GET,
        "/v1/tenants/{tenant}/apps/{app}/traces",
        Endpoint::Traces,
    ),
    (Method::GET, "/dashboard", Endpoint::Dashboard),
    (Method::GET, "/dashboard/{asset}", Endpoint::DashboardAsset),
];

/// What a handler answers.
type Reply = Result<Response<Full<Bytes>>, ApiError>;

/// Answers one admin request; never fails (failures become JSON errors).
pub async fn handle(control: &ControlPlane, request: Request<Incoming>) -> Response<AdminBody> {
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
        return match dispatch(control, *endpoint, params, request).await {
            Ok(response) => response,
            Err(error) => error.into_response().map(AdminBody::Left),
        };
    }
    let error = if path_matched {
        ApiError::MethodNotAllowed
    } else {
        ApiError::NotFound("no such endpoint".to_owned())
    };
    error.into_response().map(AdminBody::Left)
}

/// Runs the endpoint's handler.
async fn dispatch(
    control: &ControlPlane,
    endpoint: Endpoint,
    params: BTreeMap<String, String>,
    request: Request<Incoming>,
) -> Result<Response<AdminBody>, ApiError> {
    let headers = request.headers().clone();
    let asset = params.get("asset").cloned().unwrap_or_default();
    let call = move || Call::authenticate(control, params, request);
    let reply = match endpoint {
        // The operator's or the scrape token: it names every tenant's functions.
        Endpoint::Metrics => {
            authenticate_scraper(control, &headers)?;
            Ok(metrics(control))
        }
        // Open without a token: API tooling, and the dashboard's page (which asks for one).
        Endpoint::OpenApi => Ok(openapi()),
        Endpoint::Dashboard => dashboard::page(),
        Endpoint::DashboardAsset => dashboard::file(&asset),
        Endpoint::WhoAmI => tenants::who_am_i(call()?).await,
        Endpoint::ListTenants => tenants::list_tenants(call()?).await,
        Endpoint::CreateTenant => tenants::create_tenant(call()?).await,
        Endpoint::DeleteTenant => tenants::delete_tenant(call()?).await,
        Endpoint::ListTokens => tenants::list_tokens(call()?).await,
        Endpoint::CreateToken => tenants::create_token(call()?).await,
        Endpoint::RevokeToken => tenants::revoke_token(call()?).await,
        Endpoint::ListApps => apps::list_apps(call()?).await,
        Endpoint::GetApp => apps::get_app(call()?).await,
        Endpoint::DeployApp => deploy::deploy_app(call()?).await,
        Endpoint::RemoveApp => apps::remove_app(call()?).await,
        Endpoint::Invoke => invoke::invoke(call()?).await,
        Endpoint::ListAllApps => apps::list_all_apps(call()?).await,
        Endpoint::Pool => observe::pool(call()?).await,
        Endpoint::Cluster => observe::cluster(call()?).await,
        Endpoint::Traffic => observe::traffic(call()?).await,
        Endpoint::Traces => observe::traces(call()?).await,
        // Whole, or a stream that follows.
        Endpoint::Logs => return apps::logs(call()?).await,
    };
    reply.map(|response| response.map(AdminBody::Left))
}

fn metrics(control: &ControlPlane) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(control.metrics.encode())));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        ),
    );
    response
}

fn openapi() -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(OPENAPI.as_bytes())));
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

/// One authenticated request to an endpoint: what every handler but the open ones takes.
struct Call<'a> {
    control: &'a ControlPlane,
    caller: Caller,
    /// The route's `{name}` segments.
    params: BTreeMap<String, String>,
    request: Request<Incoming>,
}

impl<'a> Call<'a> {
    fn authenticate(
        control: &'a ControlPlane,
        params: BTreeMap<String, String>,
        request: Request<Incoming>,
    ) -> Result<Call<'a>, ApiError> {
        let caller = authenticate(control, request.headers())?;
        Ok(Call {
            control,
            caller,
            params,
            request,
        })
    }

    /// A `{name}` segment of the route ("" if the route has none: never, by construction).
    fn param(&self, name: &str) -> &str {
        self.params
            .get(name)
            .map(String::as_str)
            .unwrap_or_default()
    }

    /// The `{tenant}` of the route, if the caller may see it and it exists.
    fn existing_tenant(&self) -> Result<String, ApiError> {
        let tenant = self.param("tenant");
        self.caller.check_tenant(tenant)?;
        if !self.control.store.tenant_exists(tenant)? {
            return Err(ApiError::NotFound(format!("no tenant {tenant}")));
        }
        Ok(tenant.to_owned())
    }

    /// The `{tenant}/{app}` of the route, if the caller may see it and it is served.
    async fn visible_app(&self) -> Result<crate::ActiveApp, ApiError> {
        let (tenant, app) = (self.param("tenant"), self.param("app"));
        self.caller.check_tenant(tenant)?;
        self.control
            .registry
            .get(tenant, app)
            .await
            .ok_or_else(|| ApiError::NotFound(format!("no app {tenant}/{app}")))
    }

    /// The first value of query parameter `name`, decoded.
    fn query(&self, name: &str) -> Option<String> {
        let query = self.request.uri().query().unwrap_or_default();
        form_urlencoded::parse(query.as_bytes())
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.into_owned())
    }

    /// The request's body as JSON of type `T` (at most [`MAX_JSON_BODY`] bytes).
    async fn json<T: DeserializeOwned>(self, expected: &str) -> Result<T, ApiError> {
        let bytes = Limited::new(self.request.into_body(), MAX_JSON_BODY)
            .collect()
            .await
            .map_err(|_| {
                ApiError::BadRequest(format!(
                    "the body must be JSON of at most {MAX_JSON_BODY} bytes"
                ))
            })?
            .to_bytes();
        serde_json::from_slice(&bytes).map_err(|e| {
            if e.is_data() {
                ApiError::BadRequest(format!("expected {expected}: {e}"))
            } else {
                ApiError::BadRequest(format!("invalid JSON: {e}"))
            }
        })
    }
}

fn authenticate(control: &ControlPlane, headers: &HeaderMap) -> Result<Caller, ApiError> {
    use sha2::Digest;
    let token = bearer(headers).ok_or(ApiError::Unauthorized)?;
    let digest: [u8; 32] = sha2::Sha256::digest(token.as_bytes()).into();
    if bool::from(digest.ct_eq(&control.operator_token_hash)) {
        return Ok(Caller::Operator);
    }
    match control.store.token_tenant(token)? {
        Some(tenant) => Ok(Caller::Tenant(tenant)),
        None => Err(ApiError::Unauthorized),
    }
}

/// Lets the operator or the holder of the scrape token read `/metrics`; a tenant token is 403.
fn authenticate_scraper(control: &ControlPlane, headers: &HeaderMap) -> Result<(), ApiError> {
    use sha2::Digest;
    if let Some(expected) = &control.metrics_token_hash
        && let Some(token) = bearer(headers)
    {
        let digest: [u8; 32] = sha2::Sha256::digest(token.as_bytes()).into();
        if bool::from(digest.ct_eq(expected)) {
            return Ok(());
        }
    }
    authenticate(control, headers)?.require_operator()
}

/// The bearer token of a request, if it has a non-empty one.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
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

/// `body` as a JSON answer with `status`.
fn json_response(status: StatusCode, body: &impl Serialize) -> Response<Full<Bytes>> {
    let (status, text) = match serde_json::to_string(body) {
        Ok(mut text) => {
            text.push('\n');
            (status, text)
        }
        // Not reached with meshwa-api's types (no maps with non-string keys, no custom
        // serializers); still an answer rather than a panic.
        Err(error) => {
            tracing::error!(%error, "control plane: cannot serialize an answer");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "{\"error\":\"host\",\"message\":\"internal error; see the server's log\"}\n"
                    .to_owned(),
            )
        }
    };
    let mut response = Response::new(Full::new(Bytes::from(text)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    response
}

/// A 200 answer.
fn ok(body: &impl Serialize) -> Reply {
    Ok(json_response(StatusCode::OK, body))
}

/// A 201 answer.
fn created(body: &impl Serialize) -> Reply {
    Ok(json_response(StatusCode::CREATED, body))
}
