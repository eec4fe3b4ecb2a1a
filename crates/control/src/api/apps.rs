//! Listing, inspecting and removing apps, and their recent logs.

use meshwa_api::{
    App, AppDetail, AppList, AppRemoved, FunctionDetail, FunctionSummary, Grants, Limits, LogEntry,
    LogEvent, LogList, Source,
};
use meshwa_manifest::Name;
use meshwa_runtime::{CacheOutcome, RecentEntry, RecentWhat};

use http::Response;

use super::{AdminBody, ApiError, Call, Reply, ok};
use crate::ControlPlane;
use crate::registry::{ActiveApp, Origin, drain, drain_limit};

/// Most log entries one call answers, unless `?limit=` says fewer.
const DEFAULT_LOG_LIMIT: usize = 100;

/// `GET /v1/tenants/{tenant}/apps`.
pub(super) async fn list_apps(call: Call<'_>) -> Reply {
    let tenant = call.param("tenant");
    call.caller.check_tenant(tenant)?;
    let apps = call
        .control
        .registry
        .apps()
        .await
        .iter()
        .filter(|app| app.manifest.tenant.as_str() == tenant)
        .map(summary)
        .collect();
    ok(&AppList { apps })
}

/// `GET /v1/apps`: every app the caller may see (the operator: every tenant's, command-line
/// apps included), by tenant and name.
pub(super) async fn list_all_apps(call: Call<'_>) -> Reply {
    let mut apps: Vec<App> = call
        .control
        .registry
        .apps()
        .await
        .iter()
        .filter(|app| {
            call.caller
                .check_tenant(app.manifest.tenant.as_str())
                .is_ok()
        })
        .map(summary)
        .collect();
    apps.sort_by(|a, b| (&a.tenant, &a.app).cmp(&(&b.tenant, &b.app)));
    ok(&AppList { apps })
}

/// `GET /v1/tenants/{tenant}/apps/{app}`.
pub(super) async fn get_app(call: Call<'_>) -> Reply {
    ok(&detail(&call.visible_app().await?))
}

/// `DELETE /v1/tenants/{tenant}/apps/{app}`.
pub(super) async fn remove_app(call: Call<'_>) -> Reply {
    let (tenant, app) = (call.param("tenant"), call.param("app"));
    call.caller.check_tenant(tenant)?;
    let drained = remove(call.control, tenant, app).await?;
    ok(&AppRemoved {
        removed: format!("{tenant}/{app}"),
        drained,
    })
}

/// `GET /v1/tenants/{tenant}/apps/{app}/logs[?function=F][&limit=N][&follow=true]`: the latest
/// entries of every function (or one), oldest first; with `follow`, then every new one as it
/// happens (see `follow`).
pub(super) async fn logs(call: Call<'_>) -> Result<Response<AdminBody>, ApiError> {
    let app = call.visible_app().await?;
    let limit = call
        .query("limit")
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_LOG_LIMIT)
        .min(meshwa_runtime::RECENT_ENTRIES);
    let only = call.query("function");
    let mut entries = Vec::new();
    for function in &app.functions {
        let name = function.id().function.as_str();
        if only.as_deref().is_some_and(|f| f != name) {
            continue;
        }
        entries.extend(
            function
                .recent_log()
                .latest(limit)
                .into_iter()
                .map(|entry| log_entry(name, entry)),
        );
    }
    entries.sort_by_key(|e| e.at_ms);
    let skip = entries.len().saturating_sub(limit);
    entries.drain(..skip);
    match call.query("follow").as_deref() {
        None | Some("false") => ok(&LogList { entries }).map(|r| r.map(AdminBody::Left)),
        Some("true") => super::follow::follow(call, entries, only).await,
        Some(other) => Err(ApiError::BadRequest(format!(
            "follow must be true or false, not {other:?}"
        ))),
    }
}

/// Unroutes a deployed app, forgets it on disk, and waits for its instances (bounded). Returns
/// whether they all finished. In a cluster, the removal is published first (the other nodes
/// follow it; this one too, finding the app gone).
pub(super) async fn remove(
    control: &ControlPlane,
    tenant: &str,
    app: &str,
) -> Result<bool, ApiError> {
    if let Some(cluster) = &control.replication {
        // Only a deployed app is removed: the registry says which (command-line apps are 409).
        match control.registry.get(tenant, app).await {
            None => return Err(ApiError::NotFound(format!("no app {tenant}/{app}"))),
            Some(found) if found.origin == Origin::Static => {}
            Some(_) => {
                let cluster = cluster.clone();
                let (t, a) = (tenant.to_owned(), app.to_owned());
                tokio::task::spawn_blocking(move || cluster.publish_removal(&t, &a))
                    .await
                    .map_err(|e| ApiError::Host(format!("the removal task failed: {e}")))??;
                // This node's follower may have removed it already, on seeing the removal.
                return match remove_here(control, tenant, app).await {
                    Err(ApiError::NotFound(_)) => Ok(true),
                    outcome => outcome,
                };
            }
        }
    }
    remove_here(control, tenant, app).await
}

/// [`crate::ControlPlane::apply_removal`].
pub(crate) async fn apply_removal(
    control: &ControlPlane,
    tenant: &str,
    app: &str,
) -> Result<bool, String> {
    match control.registry.get(tenant, app).await {
        Some(found) if found.origin != Origin::Static => remove_here(control, tenant, app)
            .await
            .map(|_| true)
            .map_err(|e| e.to_string()),
        _ => Ok(false),
    }
}

/// Removes the app from this node only.
async fn remove_here(control: &ControlPlane, tenant: &str, app: &str) -> Result<bool, ApiError> {
    let removed = control.registry.remove(tenant, app).await?;
    let version = control.store.forget_app(tenant, app)?;
    let limit = drain_limit(&removed);
    let drained = drain(removed, limit).await;
    if let Some(version) = version {
        control.store.remove_version(tenant, app, version);
    }
    tracing::info!(app = %format!("{tenant}/{app}"), drained, "app removed");
    Ok(drained)
}

pub(super) fn log_entry(function: &str, entry: RecentEntry) -> LogEntry {
    LogEntry {
        at_ms: entry.at_ms,
        invocation: entry.invocation,
        function: function.to_owned(),
        event: match entry.what {
            RecentWhat::Invocation {
                status,
                duration_us,
                error,
            } => LogEvent::Invocation {
                status,
                duration_us,
                error,
            },
            RecentWhat::Log { stream, message } => LogEvent::Log { stream, message },
        },
    }
}

fn source(origin: Origin) -> Source {
    match origin {
        Origin::Static => Source::CommandLine,
        Origin::Deployed {
            version,
            deployed_at,
            ..
        } => Source::Deployed {
            version,
            deployed_at,
        },
    }
}

fn names<'a>(items: impl IntoIterator<Item = &'a Name>) -> Vec<String> {
    items.into_iter().map(Name::to_string).collect()
}

fn summary(app: &ActiveApp) -> App {
    App {
        tenant: app.manifest.tenant.to_string(),
        app: app.manifest.app.to_string(),
        functions: app
            .manifest
            .functions
            .iter()
            .map(|f| FunctionSummary {
                name: f.name.to_string(),
                route: f.route.as_ref().map(|r| r.as_str().to_owned()),
            })
            .collect(),
        source: source(app.origin),
    }
}

fn detail(app: &ActiveApp) -> AppDetail {
    let manifest = &app.manifest;
    let functions = manifest
        .functions
        .iter()
        .zip(&app.functions)
        .map(|(spec, function)| FunctionDetail {
            name: spec.name.to_string(),
            route: spec.route.as_ref().map(|r| r.as_str().to_owned()),
            callable_by: spec.callable_by.as_ref().map(names),
            limits: Limits {
                max_memory: spec.limits.max_memory,
                timeout_ms: u64::try_from(spec.limits.timeout.as_millis()).unwrap_or(u64::MAX),
                max_request_body: spec.limits.max_request_body,
                max_outbound_response: spec.limits.max_outbound_response,
            },
            grants: Grants {
                // As the manifest's keys: the default store is "".
                key_value: spec
                    .grants
                    .key_value
                    .iter()
                    .map(|s| s.as_str().to_owned())
                    .collect(),
                config: names(&spec.grants.config),
                logging: spec.grants.logging,
                outbound: spec
                    .grants
                    .outbound
                    .iter()
                    .map(ToString::to_string)
                    .collect(),
            },
            live_instances: function.live_instances(),
            compiled_at_load: function.cache_outcome() == CacheOutcome::Compiled,
        })
        .collect();
    AppDetail {
        tenant: manifest.tenant.to_string(),
        app: manifest.app.to_string(),
        functions,
        stores: manifest
            .stores
            .iter()
            .map(|s| s.name.as_str().to_owned())
            .collect(),
        config: names(manifest.config.keys()),
        secrets: names(&manifest.secrets),
        source: source(app.origin),
    }
}
