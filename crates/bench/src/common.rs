//! What the benchmarks share: loading a component as a bench function, in-process requests to
//! it, percentiles, finding the `meshwa` binary, and a `meshwa serve` child with calls to its
//! control plane.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use meshwa_manifest::Manifest;
use meshwa_runtime::{BodyError, Function, Runtime, Secrets};

/// Loads `component` as the only function (`http`) of a bench app.
pub fn load(runtime: &Runtime, component: &Path) -> anyhow::Result<Arc<Function>> {
    load_kind(runtime, component, "http")
}

/// Loads `component` as the only function of a bench app, of `kind` (`http` or `cgi`).
pub fn load_kind(runtime: &Runtime, component: &Path, kind: &str) -> anyhow::Result<Arc<Function>> {
    load_with(
        runtime,
        component,
        kind,
        "max-memory = \"128MiB\", timeout = \"60s\"",
    )
}

/// Loads `component` as the only function of a bench app, of `kind`, with `limits` (the inside
/// of the manifest's `limits = { ... }`).
pub fn load_with(
    runtime: &Runtime,
    component: &Path,
    kind: &str,
    limits: &str,
) -> anyhow::Result<Arc<Function>> {
    load_function(
        runtime,
        component,
        &format!("kind = \"{kind}\"\nlimits = {{ {limits} }}"),
    )
}

/// Loads `component` as the only function of a bench app, with `fields` (TOML lines of its
/// `[[functions]]` table besides its name and component).
pub fn load_function(
    runtime: &Runtime,
    component: &Path,
    fields: &str,
) -> anyhow::Result<Arc<Function>> {
    let text = format!(
        "tenant = \"bench\"\napp = \"bench\"\n[[functions]]\nname = \"f\"\ncomponent = {:?}\n{fields}\n",
        component.display().to_string()
    );
    let manifest = Manifest::parse(&text, Path::new("bench"), Path::new("."))?;
    let functions = runtime
        .load_app(&manifest, &Secrets::default())
        .with_context(|| format!("loading {}", component.display()))?;
    functions
        .into_iter()
        .next()
        .context("the bench app has no function")
}

/// One invocation as the bench counts it: a GET of `path` in a fresh instance, body read whole.
pub async fn get(
    function: &Function,
    path: &str,
    invocation: &str,
) -> anyhow::Result<(http::StatusCode, Bytes)> {
    request(function, http::Method::GET, path, invocation).await
}

/// A POST of `path` with an empty body, body of the answer read whole.
pub async fn post(function: &Function, path: &str) -> anyhow::Result<(http::StatusCode, Bytes)> {
    request(function, http::Method::POST, path, "bench").await
}

/// A POST of `path` with `body`, body of the answer read whole.
pub async fn post_body(
    function: &Function,
    path: &str,
    body: Bytes,
) -> anyhow::Result<(http::StatusCode, Bytes)> {
    request_with(function, http::Method::POST, path, "bench", body).await
}

async fn request(
    function: &Function,
    method: http::Method,
    path: &str,
    invocation: &str,
) -> anyhow::Result<(http::StatusCode, Bytes)> {
    request_with(function, method, path, invocation, Bytes::new()).await
}

async fn request_with(
    function: &Function,
    method: http::Method,
    path: &str,
    invocation: &str,
    body: Bytes,
) -> anyhow::Result<(http::StatusCode, Bytes)> {
    let request = http::Request::builder()
        .method(method)
        .uri(format!("http://localhost{path}"))
        .body(Full::new(body).map_err(|never: Infallible| -> BodyError { match never {} }))
        .context("request")?;
    let response = function
        .handle(request, invocation)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .to_bytes();
    Ok((status, body))
}

/// Minor page faults (field 10) in the text of a `/proc/.../stat` file.
pub fn minor_faults_in(stat: &str) -> Option<u64> {
    // The command name (field 2) may hold spaces: count from the last `)`; the state is field 3.
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().nth(7))
        .and_then(|field| field.parse().ok())
}

/// CPU time of this process's threads (`/proc/self/task/*/schedstat`, in nanoseconds: `stat`'s
/// 10 ms ticks are too coarse for short runs), or of those named `only`.
pub fn threads_cpu(only: Option<&str>) -> Duration {
    let mut ns = 0u64;
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Duration::ZERO;
    };
    for task in tasks.flatten() {
        if let Some(name) = only {
            let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
            if comm.trim() != name {
                continue;
            }
        }
        // A thread that ended since the listing has no file any more: it is not counted.
        if let Ok(text) = std::fs::read_to_string(task.path().join("schedstat")) {
            ns += text
                .split_whitespace()
                .next()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    Duration::from_nanos(ns)
}

/// The `p` quantile (0..=1) of sorted durations, in µs (NaN if there are none).
pub fn percentile_us(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len().saturating_sub(1)) as f64 * p).round() as usize;
    sorted.get(i).map_or(f64::NAN, |d| d.as_secs_f64() * 1e6)
}

/// A guest's own timing answer, `"<p50 ns> <p99 ns>"` (the timed loops of `guests/hopper` and
/// `guests/services`), as (p50, p99) in µs.
pub fn guest_timings(status: http::StatusCode, body: &[u8]) -> anyhow::Result<(f64, f64)> {
    let text = String::from_utf8_lossy(body);
    anyhow::ensure!(status == 200, "guest answered {status}: {text}");
    let mut numbers = text.split_whitespace().map(|n| n.parse::<f64>());
    match (numbers.next(), numbers.next()) {
        (Some(Ok(p50)), Some(Ok(p99))) => Ok((p50 / 1000.0, p99 / 1000.0)),
        _ => anyhow::bail!("unexpected guest answer {text:?}"),
    }
}

/// The `meshwa` binary that benchmarks run as a child process: `flag` if given, else the
/// `meshwa` next to this executable (both are built into the same target directory).
pub fn meshwa_binary(flag: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    if let Some(path) = flag {
        anyhow::ensure!(path.is_file(), "--meshwa {}: no such file", path.display());
        return Ok(path);
    }
    let me = std::env::current_exe().context("the path of meshwa-bench")?;
    let path = me.with_file_name(format!("meshwa{}", std::env::consts::EXE_SUFFIX));
    anyhow::ensure!(
        path.is_file(),
        "no meshwa next to meshwa-bench ({}): build both (`cargo build --release -p meshwa -p meshwa-bench`) or pass --meshwa PATH",
        path.display()
    );
    Ok(path)
}

/// A `meshwa serve` child with a fresh data directory, killed on drop.
pub struct ServerChild {
    pub child: std::process::Child,
    pub gateway: SocketAddr,
    pub admin: SocketAddr,
    pub data: PathBuf,
}

impl ServerChild {
    /// Starts `meshwa serve` with `extra` arguments (manifests, flags) on a fresh data directory
    /// named after `bench`.
    pub fn start(
        meshwa: &Path,
        operator_token: &str,
        bench: &str,
        extra: &[std::ffi::OsString],
    ) -> anyhow::Result<ServerChild> {
        use std::io::BufRead;
        let data =
            std::env::temp_dir().join(format!("meshwa-bench-{bench}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&data);
        let mut child = std::process::Command::new(meshwa)
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--admin-listen",
                "127.0.0.1:0",
            ])
            .args(extra)
            .args(["--operator-token", operator_token, "--data-dir"])
            .arg(&data)
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::piped())
            .spawn()
            .with_context(|| format!("start {} serve", meshwa.display()))?;
        let stdout = child.stdout.take().context("server stdout")?;
        // From here on, `server` kills the child on every error path.
        let mut server = ServerChild {
            child,
            gateway: SocketAddr::from(([127, 0, 0, 1], 0)),
            admin: SocketAddr::from(([127, 0, 0, 1], 0)),
            data,
        };
        let mut lines = std::io::BufReader::new(stdout).lines();
        let mut address = |prefix: &str| -> anyhow::Result<SocketAddr> {
            let line = lines.next().context("the server ended")??;
            line.strip_prefix(prefix)
                .with_context(|| format!("unexpected server output {line:?}"))?
                .parse()
                .context("server address")
        };
        server.gateway = address("meshwa listening on http://")?;
        server.admin = address("meshwa admin on http://")?;
        Ok(server)
    }
}

impl Drop for ServerChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.data);
    }
}

/// One JSON call to the control plane.
pub async fn control_call(
    client: &hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        Full<Bytes>,
    >,
    admin: SocketAddr,
    method: http::Method,
    path: &str,
    token: &str,
    body: Bytes,
) -> anyhow::Result<(http::StatusCode, Bytes)> {
    let request = http::Request::builder()
        .method(method)
        .uri(format!("http://{admin}{path}"))
        .header("authorization", format!("Bearer {token}"))
        .body(Full::new(body))?;
    let response = client.request(request).await?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((status, body))
}

/// The services guest (`component`) as tenant `bench`'s app `bench`, granted the store `bench`,
/// for its `kvbench` loop (`meshwa-bench kv` and `cluster`).
pub fn load_kv_bench(runtime: &Runtime, component: &Path) -> anyhow::Result<Arc<Function>> {
    let manifest = format!(
        "tenant = \"bench\"\napp = \"bench\"\n\
         [[functions]]\nname = \"svc\"\ncomponent = {:?}\nroute = \"/bench/svc\"\nlimits = {{ timeout = \"600s\" }}\n\
         grants = {{ key-value = [\"bench\"], config = [\"unused\"], logging = true }}\n\
         [key-value.bench]\n[config]\nunused = \"\"\n",
        component.display().to_string()
    );
    let manifest = meshwa_manifest::Manifest::parse(&manifest, Path::new("kv"), Path::new("."))?;
    runtime
        .load_app(&manifest, &meshwa_runtime::Secrets::default())?
        .pop()
        .context("the bench function")
}
