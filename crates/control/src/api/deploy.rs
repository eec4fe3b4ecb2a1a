//! `PUT /v1/tenants/{tenant}/apps/{app}`: deploys (or redeploys) an app from an uploaded tar
//! archive, all or nothing. The steps, each its own function:
//!
//! 1. [`read_upload`]: at most `--max-upload` bytes (a larger declared length is refused before
//!    the body is read), once one of [`crate::MAX_CONCURRENT_DEPLOYS`] deploy slots is free;
//! 2. [`check_upload`]: the manifest against the URL, the upload and the operator's policy,
//!    every problem at once;
//! 3. stage the files on disk (not yet referred to by anything); 2 and 3 on the blocking pool;
//! 4. [`prepare`]: compile, check and link every function, off the async threads;
//! 5. [`activate`]: check routes, record the deployment on disk, swap it in.
//!
//! A failure before the swap discards the staged copy, so nothing changed; its status says
//! whose fault it was (422 for the app, 5xx for the host: see [`ApiError`]).

use std::path::Path;
use std::time::Instant;

use bytes::Bytes;
use http::{Request, header};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use meshwa_api::{DeployResult, DeployedFunction};
use meshwa_manifest::{Manifest, ManifestError, Policy};
use meshwa_runtime::{CacheOutcome, Fault, PreparedApp};

use super::{ApiError, Call, Reply, ok};
use crate::registry::Origin;
use crate::store::Staged;
use crate::{ControlPlane, archive};

pub(super) async fn deploy_app(call: Call<'_>) -> Reply {
    let started = Instant::now();
    let tenant = call.existing_tenant()?;
    let app = call.param("app").to_owned();
    let control = call.control;

    // One of the few deploys at once; a waiting deploy holds no memory yet.
    let _deploying = control
        .deploys
        .acquire()
        .await
        .map_err(|_| ApiError::Host("the control plane is shutting down".to_owned()))?;
    let upload = read_upload(control.max_upload, call.request).await?;
    // Unpacking and the fsyncs of staging block: not on the request workers.
    let (store, registry) = (control.store.clone(), control.registry.clone());
    let (for_tenant, for_app) = (tenant.clone(), app.clone());
    let staged = tokio::task::spawn_blocking(move || {
        let bundle = archive::unpack(&upload).map_err(|e| ApiError::BadRequest(e.to_string()))?;
        drop(upload);
        check_upload(&bundle, &for_tenant, &for_app, registry.policy())?;
        let files: Vec<(String, Vec<u8>)> = bundle.files.into_iter().collect();
        Ok::<_, ApiError>(store.stage(&files)?)
    })
    .await
    .map_err(|e| ApiError::Host(format!("the staging task failed: {e}")))??;
    let version = staged.version;
    let (manifest, prepared) = match prepare(control, &staged.dir).await {
        Ok(ready) => ready,
        Err(error) => {
            staged.discard();
            return Err(error);
        }
    };
    let functions: Vec<DeployedFunction> = manifest
        .functions
        .iter()
        .zip(&prepared.functions)
        .map(|(spec, f)| DeployedFunction {
            name: spec.name.to_string(),
            route: spec.route.as_ref().map(|r| r.as_str().to_owned()),
            compiled: f.cache_outcome() == CacheOutcome::Compiled,
        })
        .collect();
    let replaced = activate(control, &tenant, &app, staged, manifest, prepared).await?;
    if let Some(old) = replaced {
        control.store.remove_version(&tenant, &app, old);
    }

    let compiled = functions.iter().filter(|f| f.compiled).count() as u64;
    tracing::info!(
        app = %format!("{tenant}/{app}"),
        version,
        compiled,
        elapsed_ms = started.elapsed().as_secs_f64() * 1000.0,
        "app deployed"
    );
    ok(&DeployResult {
        tenant,
        app,
        version,
        replaced,
        functions,
        compiled,
        elapsed_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    })
}

/// The upload's bytes, at most `limit`.
async fn read_upload(limit: u64, request: Request<Incoming>) -> Result<Bytes, ApiError> {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit) {
        return Err(ApiError::PayloadTooLarge(limit));
    }
    Ok(Limited::new(
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
    .to_bytes())
}

/// Checks the upload's manifest against the URL, the upload's files and the operator's policy
/// before anything is written or compiled: every problem at once. (The registry checks the
/// policy again when it swaps the app in, with the tenant's other apps counted.)
fn check_upload(
    bundle: &archive::Bundle,
    tenant: &str,
    app: &str,
    policy: &Policy,
) -> Result<(), ApiError> {
    let manifest = Manifest::parse(&bundle.manifest, Path::new("meshwa.toml"), Path::new(""))
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
    errors.extend(policy.check_app(&manifest));
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ApiError::Invalid(errors))
    }
}

/// Loads the staged manifest (its component paths now resolve to the staged files) and
/// prepares every function.
async fn prepare(control: &ControlPlane, dir: &Path) -> Result<(Manifest, PreparedApp), ApiError> {
    // What the tenant reads names its files as in its upload, never where the server keeps them.
    let staged = format!("{}/", dir.display());
    let relative = |message: String| message.replace(&staged, "");
    let manifest = Manifest::load(&dir.join("meshwa.toml")).map_err(|error| match error {
        // The upload was written a moment ago: failing to read it back is the host's fault.
        ManifestError::Read { .. } => ApiError::Host(error.to_string()),
        _ => ApiError::Invalid(vec![relative(error.to_string())]),
    })?;
    match control.registry.prepare_off_thread(manifest).await {
        Ok(prepared) => Ok(prepared),
        Err(error) if error.fault() == Fault::Client => Err(ApiError::Invalid(
            error.messages().into_iter().map(relative).collect(),
        )),
        Err(error) => Err(error.into()),
    }
}

/// Makes the prepared app current, recording it on disk first (the staged directory becomes
/// its version directory); on failure, removes the staged copy and changes nothing. Returns the
/// version it replaced.
async fn activate(
    control: &ControlPlane,
    tenant: &str,
    app: &str,
    staged: Staged,
    manifest: Manifest,
    prepared: PreparedApp,
) -> Result<Option<u64>, ApiError> {
    let deployed_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let origin = Origin::Deployed {
        version: staged.version,
        deployed_at,
    };
    let store = &control.store;
    let staged_dir = staged.dir.clone();
    let mut replaced = None;
    let mut staged = Some(staged);
    let outcome = control
        .registry
        .activate_and_persist(manifest, prepared, origin, || {
            let staged = staged.take().ok_or("staged twice")?;
            replaced = store
                .commit(staged, tenant, app)
                .map_err(|e| e.to_string())?;
            Ok(())
        })
        .await;
    if let Err(error) = outcome {
        if let Some(staged) = staged {
            staged.discard();
        } else if staged_dir.exists() {
            let _ = std::fs::remove_dir_all(&staged_dir);
        }
        return Err(error.into());
    }
    Ok(replaced)
}
