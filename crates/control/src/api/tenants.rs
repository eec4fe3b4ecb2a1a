//! Who am I, tenants (operator only) and tenants' tokens.

use meshwa_api::{
    CreateTenant, IssuedToken, Tenant, TenantCreated, TenantDeleted, TenantList, Token, TokenList,
    TokenRevoked, WhoAmI,
};
use meshwa_manifest::Name;

use super::{ApiError, Call, Caller, Reply, created, ok};
use crate::registry::Origin;

/// `GET /v1/whoami`.
pub(super) async fn who_am_i(call: Call<'_>) -> Reply {
    ok(&match call.caller {
        Caller::Operator => WhoAmI::Operator,
        Caller::Tenant(tenant) => WhoAmI::Tenant { tenant },
    })
}

/// `GET /v1/tenants`.
pub(super) async fn list_tenants(call: Call<'_>) -> Reply {
    call.caller.require_operator()?;
    let tenants = call
        .control
        .store
        .tenants()?
        .into_iter()
        .map(|(name, created)| Tenant { name, created })
        .collect();
    ok(&TenantList { tenants })
}

/// `POST /v1/tenants`.
pub(super) async fn create_tenant(call: Call<'_>) -> Reply {
    call.caller.require_operator()?;
    let control = call.control;
    let body: CreateTenant = call.json("{\"name\": \"<tenant>\"}").await?;
    let name = Name::new(&body.name).map_err(|e| ApiError::Invalid(vec![e.to_string()]))?;
    if !control.store.create_tenant(&name)? {
        return Err(ApiError::Conflict(format!("tenant {name} exists")));
    }
    if let Some(cluster) = control.replication.clone() {
        let created = control
            .store
            .tenants()?
            .into_iter()
            .find(|(t, _)| t == name.as_str())
            .map_or(0, |(_, created)| created);
        let tenant = name.to_string();
        let published =
            tokio::task::spawn_blocking(move || cluster.publish_tenant(&tenant, created)).await;
        if let Err(error) = flatten(published) {
            // Not in the cluster, so not here either.
            control.store.delete_tenant(name.as_str())?;
            return Err(error);
        }
    }
    tracing::info!(tenant = %name, "tenant created");
    created(&TenantCreated {
        name: name.to_string(),
    })
}

/// `DELETE /v1/tenants/{tenant}`: removes its deployed apps (draining them), then the tenant,
/// its tokens and its key-value data.
pub(super) async fn delete_tenant(call: Call<'_>) -> Reply {
    call.caller.require_operator()?;
    let (control, tenant) = (call.control, call.param("tenant"));
    if !control.store.tenant_exists(tenant)? {
        return Err(ApiError::NotFound(format!("no tenant {tenant}")));
    }
    let mut removed_apps = Vec::new();
    let mut operators_apps = Vec::new();
    for app in control.registry.apps().await {
        if app.manifest.tenant.as_str() != tenant {
            continue;
        }
        let name = app.manifest.app.to_string();
        if matches!(app.origin, Origin::Deployed { .. }) {
            super::apps::remove(control, tenant, &name).await?;
            removed_apps.push(name);
        } else {
            operators_apps.push(name);
        }
    }
    if let Some(cluster) = control.replication.clone() {
        let name = tenant.to_owned();
        flatten(tokio::task::spawn_blocking(move || cluster.publish_tenant_removal(&name)).await)?;
    }
    control.store.delete_tenant(tenant)?;
    // Its key-value data goes with it, so that a tenant created under the same name later
    // starts empty (the operator's own apps of that name keep theirs).
    let keep: Vec<&str> = operators_apps.iter().map(String::as_str).collect();
    let stores = control
        .registry
        .runtime()
        .drop_tenant_data(tenant, &keep)
        .map_err(|e| ApiError::Host(e.to_string()))?;
    tracing::info!(%tenant, stores, "tenant's key-value data deleted");
    tracing::info!(%tenant, apps = removed_apps.len(), "tenant deleted");
    ok(&TenantDeleted {
        deleted: tenant.to_owned(),
        removed_apps,
    })
}

/// `GET /v1/tenants/{tenant}/tokens`: ids only, never the tokens.
pub(super) async fn list_tokens(call: Call<'_>) -> Reply {
    let tenant = call.existing_tenant()?;
    let tokens = call
        .control
        .store
        .tokens(&tenant)?
        .into_iter()
        .map(|t| Token {
            id: t.id,
            created: t.created,
        })
        .collect();
    ok(&TokenList { tokens })
}

/// `POST /v1/tenants/{tenant}/tokens`: the token is in this answer only.
pub(super) async fn create_token(call: Call<'_>) -> Reply {
    let tenant = call.existing_tenant()?;
    let max_tokens = call.control.registry.policy().tenant(&tenant).max_tokens;
    let Some((record, token)) = call
        .control
        .store
        .issue_token(&tenant, max_tokens as usize)?
    else {
        return Err(ApiError::Conflict(format!(
            "tenant `{tenant}` has {max_tokens} tokens, the most the operator allows (policy max-tokens); revoke one first"
        )));
    };
    if let Some(cluster) = call.control.replication.clone() {
        let hash = crate::store::token_hash(&token);
        let published = {
            let (hash, record) = (hash.clone(), record.clone());
            tokio::task::spawn_blocking(move || cluster.publish_token(&hash, &record)).await
        };
        if let Err(error) = flatten(published) {
            // Not in the cluster, so not valid here either.
            call.control.store.remove_token(&hash)?;
            return Err(error);
        }
    }
    tracing::info!(%tenant, id = %record.id, "token issued");
    created(&IssuedToken {
        tenant,
        id: record.id,
        token,
    })
}

/// `DELETE /v1/tenants/{tenant}/tokens/{id}`.
pub(super) async fn revoke_token(call: Call<'_>) -> Reply {
    let tenant = call.existing_tenant()?;
    let id = call.param("id");
    let hash = call
        .control
        .store
        .token_records()?
        .into_iter()
        .find(|(_, r)| r.tenant == tenant && r.id == id)
        .map(|(hash, _)| hash);
    let Some(hash) = hash else {
        return Err(ApiError::NotFound(format!("no token {id}")));
    };
    if let Some(cluster) = call.control.replication.clone() {
        // Revoked in the cluster first: every node drops it (this one's follower may be first).
        flatten(
            tokio::task::spawn_blocking(move || cluster.publish_token_revocation(&hash)).await,
        )?;
    }
    call.control.store.revoke_token(&tenant, id)?;
    tracing::info!(%tenant, %id, "token revoked");
    ok(&TokenRevoked {
        revoked: id.to_owned(),
    })
}

/// A blocking publication's outcome as the API's.
fn flatten(
    outcome: Result<Result<(), crate::StoreError>, tokio::task::JoinError>,
) -> Result<(), ApiError> {
    match outcome {
        Ok(result) => Ok(result?),
        Err(e) => Err(ApiError::Host(format!("the publishing task failed: {e}"))),
    }
}
