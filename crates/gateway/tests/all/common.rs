//! Shared by the gateway's integration tests: a real server on a loopback port, a real client.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use meshwa_gateway::{GatewayConfig, Metrics, Router};
use meshwa_manifest::{Manifest, check_route_collisions};
use meshwa_runtime::{EngineSettings, Runtime, Secrets};
use tokio::sync::oneshot;

/// A running gateway; stops when dropped.
pub struct Server {
    pub addr: SocketAddr,
    _stop: oneshot::Sender<()>,
    /// Owns the functions' directory: in-process calls resolve against it.
    pub runtime: Arc<Runtime>,
    _data: tempfile::TempDir,
}

pub async fn start(manifests: &[PathBuf]) -> Server {
    start_with(manifests, 64).await
}

pub async fn start_with(manifests: &[PathBuf], max_instances: u32) -> Server {
    start_with_settings(
        manifests,
        EngineSettings {
            max_instances,
            ..EngineSettings::default()
        },
    )
    .await
}

pub async fn start_with_settings(manifests: &[PathBuf], settings: EngineSettings) -> Server {
    start_full(manifests, settings, &Secrets::default()).await
}

pub async fn start_full(
    manifests: &[PathBuf],
    settings: EngineSettings,
    secrets: &Secrets,
) -> Server {
    let config = GatewayConfig {
        header_read_timeout: std::time::Duration::from_millis(500),
        ..GatewayConfig::default()
    };
    start_configured(manifests, settings, secrets, config).await
}

/// [`start_full`] with the gateway's own settings.
pub async fn start_configured(
    manifests: &[PathBuf],
    settings: EngineSettings,
    secrets: &Secrets,
    config: GatewayConfig,
) -> Server {
    let data = tempfile::tempdir().unwrap();
    let manifests: Vec<Manifest> = manifests
        .iter()
        .map(|p| Manifest::load(p).unwrap())
        .collect();
    check_route_collisions(&manifests).unwrap();
    let runtime = Arc::new(
        Runtime::with_cache_dir(
            settings,
            data.path(),
            Path::new(meshwa_test_programs::COMPILE_CACHE_DIR),
        )
        .unwrap(),
    );
    let stats_runtime = runtime.clone();
    let metrics = Arc::new(Metrics::new(Arc::new(move || stats_runtime.stats())));
    let mut routes = Vec::new();
    for m in &manifests {
        let functions = runtime.load_app(m, secrets).unwrap();
        for (spec, f) in m.functions.iter().zip(functions) {
            if let Some(route) = &spec.route {
                routes.push((route.clone(), f));
            }
        }
    }
    let listener = meshwa_gateway::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(meshwa_gateway::serve(
        listener,
        Arc::new(meshwa_gateway::Routes::from_pointee(Router::new(routes))),
        metrics,
        config,
        async move {
            let _ = stopped.await;
        },
    ));
    Server {
        addr,
        _stop: stop,
        runtime,
        _data: data,
    }
}

/// Writes a manifest for one tenant's test app into `dir` and returns its path.
pub fn manifest(dir: &Path, tenant: &str, functions: &[(&str, &str, &str, &str)]) -> PathBuf {
    let mut text = format!("tenant = \"{tenant}\"\napp = \"tests\"\n");
    for (name, component, route, limits) in functions {
        text += &format!(
            "[[functions]]\nname = \"{name}\"\ncomponent = \"{component}\"\nroute = \"{route}\"\nlimits = {{ {limits} }}\n"
        );
    }
    let path = dir.join(format!("{tenant}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

pub fn client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

pub struct Answer {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: String,
}

pub async fn send(
    client: &Client<HttpConnector, Full<Bytes>>,
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &[u8],
) -> Answer {
    let request = http::Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"))
        .body(Full::new(Bytes::copy_from_slice(body)))
        .unwrap();
    let response = client.request(request).await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    Answer {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

pub async fn get(addr: SocketAddr, path: &str) -> Answer {
    send(&client(), addr, "GET", path, b"").await
}
