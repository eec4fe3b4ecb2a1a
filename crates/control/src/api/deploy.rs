//! `PUT /v1/tenants/{tenant}/apps/{app}`: deploys (or redeploys) an app from an uploaded tar
//! archive, all or nothing. The steps, each its own function:
//!
//! 1. [`receive_upload`]: once one of [`crate::MAX_CONCURRENT_DEPLOYS`] deploy slots is free,
//!    the body streams to a file beside a fresh staging directory, at most `--max-upload`
//!    bytes (a larger declared length is refused before the body is read);
//! 2. [`unpack_and_check`], on the blocking pool: the archive is unpacked as a stream into the
//!    staging directory (not yet referred to by anything), then its manifest is checked against
//!    the URL, the upload and the operator's policy, every problem at once;
//! 3. [`prepare`]: compile, check and link every function, off the async threads;
//! 4. [`activate`]: check routes and the tenant's counts and disk, record the deployment on
//!    disk, swap it in.
//!
//! Memory stays bounded by a body frame and a copy buffer per deploy, whatever the upload's
//! size. A failure before the swap drops the [`Staged`] copy, which deletes it, so nothing
//! changed; its status says whose fault it was (422 for the app, 5xx for the host: see
//! [`ApiError`]).

use std::path::Path;
use std::time::Instant;

use http::{Request, header};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use meshwa_api::{DeployResult, DeployedFunction};
use meshwa_manifest::{Manifest, ManifestError, Name, Policy};
use meshwa_runtime::{CacheOutcome, Fault, PreparedApp};
use tokio::io::AsyncWriteExt;

use super::{ApiError, Call, Reply, ok};
use crate::ControlPlane;
use crate::archive::{self, ManifestKind, UnpackError, Unpacked};
use crate::registry::Origin;
use crate::store::{AppRecord, Staged, StoreError};

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
    let staged = {
        let store = control.store.clone();
        let replication = control.replication.clone();
        tokio::task::spawn_blocking(move || match replication {
            Some(cluster) => store.begin_stage_as(cluster.next_version()?),
            None => store.begin_stage(),
        })
        .await
        .map_err(|e| ApiError::Host(format!("the staging task failed: {e}")))??
    };
    receive_upload(control.max_upload, call.request, &staged.upload_path()).await?;
    let (staged, upload) = unpack_off_thread(control, staged, &tenant, &app).await?;
    let version = staged.version;
    let (manifest, prepared) = prepare(control, &staged.dir, &tenant).await?;
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
    let deployed_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let publish = control
        .replication
        .is_some()
        .then_some(upload.archive.as_slice());
    let replaced = activate(
        control,
        staged,
        upload.bytes,
        deployed_at,
        manifest,
        prepared,
        publish,
    )
    .await?;
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

/// Writes the request's body to `path`, at most `limit` bytes.
async fn receive_upload(
    limit: u64,
    request: Request<Incoming>,
    path: &Path,
) -> Result<(), ApiError> {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit) {
        return Err(ApiError::PayloadTooLarge(limit));
    }
    let disk = |source| {
        ApiError::Store(StoreError::Io {
            path: path.to_path_buf(),
            source,
        })
    };
    let mut file = tokio::fs::File::create(path).await.map_err(disk)?;
    let mut body = request.into_body();
    let mut received = 0u64;
    while let Some(frame) = body.frame().await {
        let frame =
            frame.map_err(|e| ApiError::BadRequest(format!("reading the upload failed: {e}")))?;
        if let Ok(data) = frame.into_data() {
            received += data.len() as u64;
            if received > limit {
                return Err(ApiError::PayloadTooLarge(limit));
            }
            file.write_all(&data).await.map_err(disk)?;
        }
    }
    file.flush().await.map_err(disk)
}

/// Unpacks the received upload into `staged`'s directory and checks it ([`check_upload`]);
/// returns the bytes its files take. Blocking.
/// An upload unpacked into its staging directory.
struct Upload {
    /// Bytes of the files unpacked (what the policy's disk quota counts).
    bytes: u64,
    /// The archive as received, kept only to publish it to a cluster.
    archive: Vec<u8>,
}

/// [`unpack_and_check`] on the blocking pool; the archive is kept if the node is in a cluster.
async fn unpack_off_thread(
    control: &ControlPlane,
    staged: Staged,
    tenant: &str,
    app: &str,
) -> Result<(Staged, Upload), ApiError> {
    let registry = control.registry.clone();
    let keep_archive = control.replication.is_some();
    let (tenant, app) = (tenant.to_owned(), app.to_owned());
    tokio::task::spawn_blocking(move || {
        let archive = if keep_archive {
            std::fs::read(staged.upload_path())
                .map_err(|e| ApiError::Host(format!("cannot read the upload back: {e}")))?
        } else {
            Vec::new()
        };
        let bytes = unpack_and_check(&staged, &tenant, &app, registry.policy())?;
        Ok::<_, ApiError>((staged, Upload { bytes, archive }))
    })
    .await
    .map_err(|e| ApiError::Host(format!("the staging task failed: {e}")))?
}

fn unpack_and_check(
    staged: &Staged,
    tenant: &str,
    app: &str,
    policy: &Policy,
) -> Result<u64, ApiError> {
    let upload = staged.upload_path();
    let file = std::fs::File::open(&upload)
        .map_err(|e| ApiError::Host(format!("cannot read the upload back: {e}")))?;
    let unpacked = archive::unpack(std::io::BufReader::new(file), |name, contents| {
        staged.write(name, contents)
    })
    .map_err(|error| match error {
        UnpackError::Archive(error) => ApiError::BadRequest(error.to_string()),
        UnpackError::Write(error) => ApiError::from(error),
    })?;
    // Unpacked, the upload is not needed any more.
    let _ = std::fs::remove_file(&upload);
    check_upload(&unpacked, tenant, app, policy)?;
    staged.sync()?;
    Ok(unpacked.bytes())
}

/// Checks the upload's manifest against the URL, the upload's files and the operator's policy
/// before anything is written or compiled: every problem at once. (The registry checks the
/// policy again when it swaps the app in, with the tenant's other apps counted.)
fn check_upload(
    bundle: &Unpacked,
    tenant: &str,
    app: &str,
    policy: &Policy,
) -> Result<(), ApiError> {
    let file = bundle.kind.file_name();
    let manifest = match bundle.kind {
        ManifestKind::Meshwa => Manifest::parse(&bundle.manifest, Path::new(file), Path::new("")),
        // A Spin app names no tenant: it is deployed into this one.
        ManifestKind::Spin => Name::new(tenant)
            .map_err(|e| ManifestError::Syntax {
                path: file.into(),
                message: e.to_string(),
            })
            .and_then(|tenant| {
                Manifest::parse_spin(
                    &bundle.manifest,
                    Path::new(file),
                    Path::new(""),
                    Some(&tenant),
                )
            }),
    }
    .map_err(|e| ApiError::Invalid(vec![e.to_string()]))?;
    let mut errors = Vec::new();
    if manifest.tenant.as_str() != tenant {
        errors.push(format!(
            "{file} is for tenant `{}`, but this is tenant `{tenant}`",
            manifest.tenant
        ));
    }
    if manifest.app.as_str() != app {
        errors.push(format!(
            "{file} is for app `{}`, but the upload is for app `{app}`",
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
    for store in &manifest.stores {
        if let Some(file) = &store.preload {
            // The manifest keeps preload paths inside the app: plain parts, as archived.
            let path: Vec<_> = file
                .components()
                .filter_map(|c| match c {
                    std::path::Component::Normal(part) => Some(part.to_string_lossy()),
                    _ => None,
                })
                .collect();
            let path = path.join("/");
            if !bundle.files.contains_key(path.as_str()) {
                errors.push(format!(
                    "key-value store {}: preload file {path} is not in the upload",
                    store.name
                ));
            }
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
async fn prepare(
    control: &ControlPlane,
    dir: &Path,
    tenant: &str,
) -> Result<(Manifest, PreparedApp), ApiError> {
    let tenant = Name::new(tenant).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    // What the tenant reads names its files as in its upload, never where the server keeps them.
    let staged = format!("{}/", dir.display());
    let relative = |message: String| message.replace(&staged, "");
    let manifest = Manifest::load_dir(dir, &tenant).map_err(|error| match error {
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
/// its version directory); on failure, changes nothing (dropping `staged` deletes it). Returns
/// the version it replaced.
/// Swaps the prepared app in, recording it first: in the cluster (if `publish` holds the
/// archive; the commit point), then on this node's disk. Returns the version it replaced here.
async fn activate(
    control: &ControlPlane,
    staged: Staged,
    upload_bytes: u64,
    deployed_at: u64,
    manifest: Manifest,
    prepared: PreparedApp,
    publish: Option<&[u8]>,
) -> Result<Option<u64>, ApiError> {
    let origin = Origin::Deployed {
        version: staged.version,
        deployed_at,
        upload_bytes,
    };
    let (tenant, app) = (manifest.tenant.to_string(), manifest.app.to_string());
    let record = AppRecord {
        tenant: tenant.clone(),
        app: app.clone(),
        version: staged.version,
        deployed_at,
    };
    let mut replaced = None;
    control
        .registry
        .activate_and_persist(manifest, prepared, origin, || {
            if let (Some(cluster), Some(archive)) = (&control.replication, publish) {
                cluster.publish_deploy(&record, archive)?;
            }
            replaced = control.store.commit_at(staged, &record)?;
            Ok(())
        })
        .await?;
    Ok(replaced)
}

/// [`crate::ControlPlane::apply_deploy`]: the deploy's steps from staging on, without publishing.
pub(crate) async fn apply_deploy(
    control: &ControlPlane,
    record: &AppRecord,
    archive: Vec<u8>,
) -> Result<bool, Vec<String>> {
    let (tenant, app) = (record.tenant.as_str(), record.app.as_str());
    if control
        .deployed()
        .await
        .iter()
        .any(|(t, a, v)| t == tenant && a == app && *v == record.version)
    {
        return Ok(false);
    }
    let failed = |e: ApiError| match e {
        ApiError::Invalid(problems) => problems,
        other => vec![other.to_string()],
    };
    let name = Name::new(tenant).map_err(|e| vec![e.to_string()])?;
    // The tenant's own record may come after its app's (they are different keys).
    control
        .store
        .create_tenant(&name)
        .map_err(|e| vec![e.to_string()])?;
    let staged = {
        let store = control.store.clone();
        let version = record.version;
        tokio::task::spawn_blocking(move || {
            let staged = store.begin_stage_as(version)?;
            std::fs::write(staged.upload_path(), &archive).map_err(|source| StoreError::Io {
                path: staged.upload_path(),
                source,
            })?;
            Ok::<_, StoreError>(staged)
        })
        .await
        .map_err(|e| vec![format!("the staging task failed: {e}")])?
        .map_err(|e| vec![e.to_string()])?
    };
    let (staged, upload) = unpack_off_thread(control, staged, tenant, app)
        .await
        .map_err(failed)?;
    let (manifest, prepared) = prepare(control, &staged.dir, tenant)
        .await
        .map_err(failed)?;
    let replaced = activate(
        control,
        staged,
        upload.bytes,
        record.deployed_at,
        manifest,
        prepared,
        None,
    )
    .await
    .map_err(failed)?;
    if let Some(old) = replaced {
        control.store.remove_version(tenant, app, old);
    }
    tracing::info!(app = %format!("{tenant}/{app}"), version = record.version, "app deployed through the cluster");
    Ok(true)
}
