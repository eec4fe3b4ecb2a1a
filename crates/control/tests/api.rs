//! The control-plane API against a real server on loopback ports: tokens, tenant isolation,
//! all-or-nothing deploys, redeploys under load, and the OpenAPI document.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use meshwa_control::{ControlPlane, ControlSettings, Registry, archive, serve_admin};
use meshwa_gateway::{GatewayConfig, Metrics};
use meshwa_runtime::{EngineSettings, Runtime, Secrets};
use meshwa_test_programs as programs;
use serde_json::{Value, json};

/// The harness of the `admin` fuzz target, whose corpus runs here.
#[path = "harness/admin.rs"]
mod admin_harness;

const OPERATOR: &str = "operator-secret";
/// The scrape token: `/metrics` only.
const SCRAPER: &str = "scraper-secret";

struct Server {
    admin: SocketAddr,
    gateway: SocketAddr,
    _data: tempfile::TempDir,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn start() -> Server {
    start_with_limit(meshwa_control::DEFAULT_MAX_UPLOAD).await
}

async fn start_with_limit(max_upload: u64) -> Server {
    start_with(max_upload, meshwa_manifest::Policy::default()).await
}

async fn start_with(max_upload: u64, policy: meshwa_manifest::Policy) -> Server {
    let data = tempfile::tempdir().unwrap();
    let settings = EngineSettings {
        max_instances: 32,
        ..EngineSettings::default()
    };
    let runtime = Arc::new(
        Runtime::with_cache_dir(
            settings,
            data.path(),
            std::path::Path::new(meshwa_test_programs::COMPILE_CACHE_DIR),
        )
        .unwrap(),
    );
    let registry =
        Arc::new(Registry::new(runtime.clone(), Secrets::default()).with_policy(Arc::new(policy)));
    let stats = runtime.clone();
    let metrics = Arc::new(Metrics::new(Arc::new(move || stats.stats())));
    let control = Arc::new(
        ControlPlane::open(
            data.path(),
            registry.clone(),
            ControlSettings {
                operator_token: OPERATOR.to_owned(),
                metrics_token: Some(SCRAPER.to_owned()),
                max_upload,
            },
            metrics.clone(),
        )
        .unwrap(),
    );
    let admin_listener = meshwa_gateway::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let listener = meshwa_gateway::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let (admin, gateway) = (
        admin_listener.local_addr().unwrap(),
        listener.local_addr().unwrap(),
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    // A short header timeout, as the gateway's tests use, so that slow clients are cut quickly.
    let config = GatewayConfig {
        header_read_timeout: std::time::Duration::from_millis(500),
        ..GatewayConfig::default()
    };
    tokio::spawn(serve_admin(
        admin_listener,
        control,
        config,
        std::future::pending(),
    ));
    tokio::spawn(meshwa_gateway::serve(
        listener,
        registry.routes(),
        metrics,
        GatewayConfig::default(),
        async move {
            let _ = stopped.await;
        },
    ));
    Server {
        admin,
        gateway,
        _data: data,
        _stop: stop,
    }
}

fn client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

/// One request; returns status, headers and body.
async fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Vec<u8>,
) -> (u16, http::HeaderMap, Bytes) {
    let mut request = http::Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"));
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let response = client()
        .request(request.body(Full::new(Bytes::from(body))).unwrap())
        .await
        .unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, headers, body)
}

async fn json_call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let body = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
    let (status, _, bytes) = call(addr, method, path, token, body).await;
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// Creates a tenant and returns a token of it.
async fn tenant(server: &Server, name: &str) -> String {
    let (status, _) = json_call(
        server.admin,
        "POST",
        "/v1/tenants",
        Some(OPERATOR),
        Some(json!({ "name": name })),
    )
    .await;
    assert_eq!(status, 201);
    let (status, token) = json_call(
        server.admin,
        "POST",
        &format!("/v1/tenants/{name}/tokens"),
        Some(OPERATOR),
        None,
    )
    .await;
    assert_eq!(status, 201);
    token["token"].as_str().unwrap().to_owned()
}

/// An archive of one app: `functions` are (name, component file, route) and the extra manifest
/// text goes at the end.
fn app_archive(
    tenant: &str,
    app: &str,
    functions: &[(&str, &str, Option<&str>)],
    extra: &str,
) -> Vec<u8> {
    let mut manifest = format!("tenant = \"{tenant}\"\napp = \"{app}\"\n");
    let mut files = BTreeMap::new();
    for (name, component, route) in functions {
        manifest +=
            &format!("[[functions]]\nname = \"{name}\"\ncomponent = \"components/{name}.wasm\"\n");
        if let Some(route) = route {
            manifest += &format!("route = \"{route}\"\n");
        }
        let bytes = std::fs::read(component).unwrap_or_else(|_| component.as_bytes().to_vec());
        files.insert(format!("components/{name}.wasm"), bytes);
    }
    manifest += extra;
    files.insert("meshwa.toml".to_owned(), manifest.into_bytes());
    archive::pack(&files).unwrap()
}

async fn deploy(
    server: &Server,
    token: &str,
    tenant: &str,
    app: &str,
    archive: Vec<u8>,
) -> (u16, Value) {
    let (status, _, body) = call(
        server.admin,
        "PUT",
        &format!("/v1/tenants/{tenant}/apps/{app}"),
        Some(token),
        archive,
    )
    .await;
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

async fn get_text(addr: SocketAddr, path: &str) -> (u16, String) {
    let (status, _, body) = call(addr, "GET", path, None, Vec::new()).await;
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_token_failure_is_refused() {
    let server = start().await;
    let acme = tenant(&server, "acme").await;
    let a = server.admin;

    let (status, headers, _) = call(a, "GET", "/v1/tenants/acme/apps", None, Vec::new()).await;
    assert_eq!(status, 401);
    assert_eq!(headers["www-authenticate"], "Bearer realm=\"meshwa\"");
    assert_eq!(
        json_call(a, "GET", "/v1/tenants/acme/apps", Some("mwt_wrong"), None)
            .await
            .0,
        401
    );
    assert_eq!(
        json_call(a, "GET", "/v1/tenants/acme/apps", Some(""), None)
            .await
            .0,
        401
    );
    let (status, _, _) = {
        let request = http::Request::get(format!("http://{a}/v1/whoami"))
            .header("authorization", format!("Basic {acme}"))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let response = client().request(request).await.unwrap();
        (response.status().as_u16(), (), ())
    };
    assert_eq!(status, 401, "only bearer tokens count");

    // The tenant's token works for the tenant, not for operator endpoints.
    let (status, me) = json_call(a, "GET", "/v1/whoami", Some(&acme), None).await;
    assert_eq!(
        (status, me),
        (200, json!({ "role": "tenant", "tenant": "acme" }))
    );
    assert_eq!(
        json_call(a, "GET", "/v1/tenants", Some(&acme), None)
            .await
            .0,
        403
    );
    assert_eq!(
        json_call(
            a,
            "POST",
            "/v1/tenants",
            Some(&acme),
            Some(json!({ "name": "evil" }))
        )
        .await
        .0,
        403
    );

    // Revoked tokens stop working at once; other tokens of the tenant keep working.
    let (_, second) = json_call(a, "POST", "/v1/tenants/acme/tokens", Some(&acme), None).await;
    let second_token = second["token"].as_str().unwrap().to_owned();
    let (_, list) = json_call(a, "GET", "/v1/tenants/acme/tokens", Some(&acme), None).await;
    assert_eq!(list["tokens"].as_array().unwrap().len(), 2);
    assert!(!list.to_string().contains(&acme), "tokens are never listed");
    let id = second["id"].as_str().unwrap();
    assert_eq!(
        json_call(
            a,
            "DELETE",
            &format!("/v1/tenants/acme/tokens/{id}"),
            Some(&acme),
            None
        )
        .await
        .0,
        200
    );
    assert_eq!(
        json_call(a, "GET", "/v1/whoami", Some(&second_token), None)
            .await
            .0,
        401
    );
    assert_eq!(
        json_call(a, "GET", "/v1/whoami", Some(&acme), None).await.0,
        200
    );

    // Unknown endpoints and methods.
    assert_eq!(
        json_call(a, "GET", "/v1/nope", Some(OPERATOR), None)
            .await
            .0,
        404
    );
    assert_eq!(
        json_call(a, "PATCH", "/v1/tenants", Some(OPERATOR), None)
            .await
            .0,
        405
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_see_only_their_own_apps() {
    let server = start().await;
    let acme = tenant(&server, "acme").await;
    let globex = tenant(&server, "globex").await;
    let a = server.admin;
    let (status, body) = deploy(
        &server,
        &globex,
        "globex",
        "shop",
        app_archive(
            "globex",
            "shop",
            &[("hi", programs::HELLO, Some("/globex/hi"))],
            "",
        ),
    )
    .await;
    assert_eq!(status, 200, "{body}");

    // Every way acme could reach globex's app looks exactly like a missing app.
    for (method, path) in [
        ("GET", "/v1/tenants/globex/apps"),
        ("GET", "/v1/tenants/globex/apps/shop"),
        ("DELETE", "/v1/tenants/globex/apps/shop"),
        ("GET", "/v1/tenants/globex/apps/shop/logs"),
        ("POST", "/v1/tenants/globex/apps/shop/functions/hi/invoke"),
        ("GET", "/v1/tenants/globex/tokens"),
        ("POST", "/v1/tenants/globex/tokens"),
    ] {
        let (status, body) = json_call(a, method, path, Some(&acme), None).await;
        assert_eq!(status, 404, "{method} {path}: {body}");
    }
    let (status, _) = deploy(
        &server,
        &acme,
        "globex",
        "shop",
        app_archive(
            "globex",
            "shop",
            &[("hi", programs::ECHO, Some("/globex/hi"))],
            "",
        ),
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = deploy(
        &server,
        &acme,
        "acme",
        "shop",
        app_archive(
            "globex",
            "shop",
            &[("hi", programs::ECHO, Some("/acme/hi"))],
            "",
        ),
    )
    .await;
    assert_eq!(status, 422, "a manifest for another tenant is refused");
    // globex's app is untouched.
    let (status, text) = get_text(server.gateway, "/globex/hi").await;
    assert_eq!(status, 200);
    assert!(text.starts_with("hello from meshwa"), "{text}");
    let (_, apps) = json_call(a, "GET", "/v1/tenants/acme/apps", Some(&acme), None).await;
    assert_eq!(apps, json!({ "apps": [] }));
    // The operator sees both.
    let (status, apps) = json_call(a, "GET", "/v1/tenants/globex/apps", Some(OPERATOR), None).await;
    assert_eq!(status, 200);
    assert_eq!(apps["apps"][0]["app"], "shop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_deployment_changes_nothing_and_reports_every_problem() {
    let server = start_with_limit(4 * 1024 * 1024).await;
    let acme = tenant(&server, "acme").await;
    let globex = tenant(&server, "globex").await;
    let good = app_archive(
        "acme",
        "shop",
        &[("hi", programs::HELLO, Some("/acme/hi"))],
        "",
    );
    assert_eq!(deploy(&server, &acme, "acme", "shop", good).await.0, 200);

    // Two broken components and an ungranted import: three problems, one answer.
    let bad = app_archive(
        "acme",
        "shop",
        &[
            ("hi", "not a component", Some("/acme/hi")),
            ("other", "also not a component", Some("/acme/other")),
            ("svc", programs::SERVICES, Some("/acme/svc")),
        ],
        "",
    );
    let (status, body) = deploy(&server, &acme, "acme", "shop", bad).await;
    assert_eq!(status, 422, "{body}");
    let errors: Vec<String> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(errors.len(), 3, "{errors:?}");
    assert!(
        errors[0].contains("acme/shop/hi")
            && errors[0].contains("components/hi.wasm is not a valid WebAssembly component"),
        "{errors:?}"
    );
    // Files are named as in the upload, never where the server keeps them.
    assert!(
        errors
            .iter()
            .all(|e| !e.contains(".staging") && !e.contains("/tmp")),
        "{errors:?}"
    );
    assert!(errors[1].contains("acme/shop/other"), "{errors:?}");
    assert!(
        errors[2].contains("acme/shop/svc") && errors[2].contains("not granted"),
        "{errors:?}"
    );

    // A manifest error, a missing component and a wrong app name, at once.
    let mut files = BTreeMap::new();
    files.insert("meshwa.toml".to_owned(), b"tenant = \"acme\"\napp = \"other\"\n[[functions]]\nname = \"f\"\ncomponent = \"missing.wasm\"\n".to_vec());
    let (status, body) = deploy(
        &server,
        &acme,
        "acme",
        "shop",
        archive::pack(&files).unwrap(),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["errors"].as_array().unwrap().len(), 2, "{body}");

    // A route under another tenant's: outside globex's own routes.
    let taken = app_archive(
        "globex",
        "x",
        &[("hi", programs::HELLO, Some("/acme/hi/more"))],
        "",
    );
    let (status, body) = deploy(&server, &globex, "globex", "x", taken).await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["errors"][0]
            .as_str()
            .unwrap()
            .contains("route /acme/hi/more is outside tenant `globex`'s routes (/globex"),
        "{body}"
    );

    // Not an archive; too large.
    let (status, body) = deploy(&server, &acme, "acme", "shop", b"garbage".to_vec()).await;
    assert_eq!(status, 400, "{body}");
    // Too large is refused from the declared length, before the body is read. (Over a raw
    // socket: a client still writing the body when the refusal arrives may see a broken pipe
    // instead of the answer, which is the point of refusing early.)
    let status = declared_upload_status(server.admin, &acme, 5 * 1024 * 1024).await;
    assert_eq!(status, 413);

    // The first version still serves, and the app is still version 1.
    let (status, text) = get_text(server.gateway, "/acme/hi").await;
    assert!(
        status == 200 && text.starts_with("hello from meshwa"),
        "{status} {text}"
    );
    assert_eq!(get_text(server.gateway, "/acme/other").await.0, 404);
    let (_, detail) = json_call(
        server.admin,
        "GET",
        "/v1/tenants/acme/apps/shop",
        Some(&acme),
        None,
    )
    .await;
    assert_eq!(detail["version"], 1, "{detail}");
}

/// Sends only the head of an upload declaring `len` bytes and returns the status of the answer.
async fn declared_upload_status(addr: SocketAddr, token: &str, len: usize) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "PUT /v1/tenants/acme/apps/shop HTTP/1.1\r\nhost: test\r\nauthorization: Bearer {token}\r\ncontent-length: {len}\r\n\r\n"
    );
    socket.write_all(head.as_bytes()).await.unwrap();
    let mut answer = vec![0; 1024];
    let n = tokio::time::timeout(Duration::from_secs(10), socket.read(&mut answer))
        .await
        .expect("an answer before the body is sent")
        .unwrap();
    let text = String::from_utf8_lossy(&answer[..n]);
    text.get(9..12)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not HTTP: {text}"))
}

/// Clients keep sending requests while the app is redeployed back and forth; not one fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redeploys_under_load_fail_no_request() {
    let server = start().await;
    let acme = tenant(&server, "acme").await;
    let v1 = app_archive(
        "acme",
        "shop",
        &[("f", programs::HELLO, Some("/acme/f"))],
        "",
    );
    let v2 = app_archive(
        "acme",
        "shop",
        &[("f", programs::ECHO, Some("/acme/f"))],
        "",
    );
    assert_eq!(
        deploy(&server, &acme, "acme", "shop", v1.clone()).await.0,
        200
    );

    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let seen = Arc::new(std::sync::Mutex::new(BTreeSet::new()));
    let mut clients = Vec::new();
    for _ in 0..4 {
        let (stop, ok, failed, seen) = (stop.clone(), ok.clone(), failed.clone(), seen.clone());
        let gateway = server.gateway;
        clients.push(tokio::spawn(async move {
            let client = client();
            // Bounded: the redeploys below take a few seconds; the loop ends when told or after 60 s.
            let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
            while !stop.load(Ordering::Relaxed) && tokio::time::Instant::now() < deadline {
                let request = http::Request::post(format!("http://{gateway}/acme/f"))
                    .body(Full::new(Bytes::from_static(b"ping")))
                    .unwrap();
                match client.request(request).await {
                    Ok(response) if response.status() == 200 => {
                        let body = response.into_body().collect().await.unwrap().to_bytes();
                        let version = if &body[..] == b"ping" { "v2" } else { "v1" };
                        seen.lock().unwrap().insert(version);
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    for round in 0..20 {
        let archive = if round % 2 == 0 {
            v2.clone()
        } else {
            v1.clone()
        };
        let (status, body) = deploy(&server, &acme, "acme", "shop", archive).await;
        assert_eq!(status, 200, "{body}");
    }
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.await.unwrap();
    }
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "requests failed during redeploys"
    );
    assert!(ok.load(Ordering::Relaxed) > 20);
    assert_eq!(seen.lock().unwrap().len(), 2, "both versions served");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invoke_reaches_private_functions_and_logs_record_it() {
    let server = start().await;
    let acme = tenant(&server, "acme").await;
    let archive = app_archive("acme", "shop", &[("echo", programs::ECHO, None)], "");
    assert_eq!(deploy(&server, &acme, "acme", "shop", archive).await.0, 200);
    assert_eq!(
        get_text(server.gateway, "/acme").await.0,
        404,
        "private: no route"
    );

    let (status, headers, body) = call(
        server.admin,
        "POST",
        "/v1/tenants/acme/apps/shop/functions/echo/invoke?path=%2Fx%3Fy%3D1",
        Some(&acme),
        b"hello there".to_vec(),
    )
    .await;
    assert_eq!((status, &body[..]), (200, &b"hello there"[..]));
    let invocation = headers["x-meshwa-invocation"].to_str().unwrap().to_owned();
    let (status, logs) = json_call(
        server.admin,
        "GET",
        "/v1/tenants/acme/apps/shop/logs?function=echo",
        Some(&acme),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let entries = logs["entries"].as_array().unwrap();
    assert!(
        entries
            .iter()
            .any(|e| e["invocation"] == invocation.as_str()
                && e["kind"] == "invocation"
                && e["status"] == 200),
        "{logs}"
    );
    assert_eq!(
        json_call(
            server.admin,
            "POST",
            "/v1/tenants/acme/apps/shop/functions/nope/invoke",
            Some(&acme),
            None
        )
        .await
        .0,
        404
    );

    // Removing drains and unroutes; the app is gone for the API too.
    let (status, removed) = json_call(
        server.admin,
        "DELETE",
        "/v1/tenants/acme/apps/shop",
        Some(&acme),
        None,
    )
    .await;
    assert_eq!((status, removed["drained"].as_bool()), (200, Some(true)));
    assert_eq!(
        json_call(
            server.admin,
            "GET",
            "/v1/tenants/acme/apps/shop",
            Some(&acme),
            None
        )
        .await
        .0,
        404
    );
}

#[tokio::test]
async fn the_openapi_document_matches_the_routes() {
    let document: Value = serde_json::from_str(meshwa_control::api::OPENAPI).expect("valid JSON");
    assert!(
        document["openapi"]
            .as_str()
            .unwrap_or_default()
            .starts_with("3."),
        "an OpenAPI 3 document"
    );
    let mut documented = BTreeSet::new();
    for (path, item) in document["paths"].as_object().expect("paths") {
        for method in item.as_object().unwrap().keys() {
            if ["get", "put", "post", "delete", "patch", "head", "options"]
                .contains(&method.as_str())
            {
                documented.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    let served: BTreeSet<(String, String)> = meshwa_control::api::ROUTES
        .iter()
        .map(|(method, path, _)| (method.to_string(), (*path).to_owned()))
        .collect();
    assert_eq!(
        documented, served,
        "docs/openapi.json and api::ROUTES differ"
    );

    // And the server serves the same document.
    let server = start().await;
    let (status, body) = get_text(server.admin, "/v1/openapi.json").await;
    assert_eq!(status, 200);
    assert_eq!(body, meshwa_control::api::OPENAPI);
}

#[test]
fn half_written_deployments_are_never_loaded() {
    let data = tempfile::tempdir().unwrap();
    let apps = data.path().join("apps");
    std::fs::create_dir_all(apps.join(".staging-7")).unwrap();
    std::fs::write(apps.join(".staging-7.tar"), b"an upload cut off by a crash").unwrap();
    std::fs::create_dir_all(apps.join("acme/shop/v3")).unwrap();
    std::fs::write(
        apps.join("acme/shop/v3/meshwa.toml"),
        "tenant = \"acme\"\napp = \"shop\"\n",
    )
    .unwrap();
    let store = meshwa_control::ControlStore::open(data.path()).unwrap();
    assert!(store.apps().unwrap().is_empty());
    assert!(!apps.join(".staging-7").exists());
    assert!(!apps.join(".staging-7.tar").exists());
    assert!(
        !apps.join("acme/shop/v3").exists(),
        "an unrecorded version is removed"
    );

    // A stage that fails half-way (here: a file where a directory must go) leaves nothing
    // on disk, without waiting for a restart (issue 16, item 7).
    let files = [
        ("meshwa.toml".to_owned(), b"x".to_vec()),
        ("meshwa.toml/inside.wasm".to_owned(), b"y".to_vec()),
    ];
    assert!(store.stage(&files).is_err());
    let left: Vec<_> = std::fs::read_dir(&apps)
        .unwrap()
        .flatten()
        .filter(|entry| entry.file_name().to_string_lossy().starts_with(".staging"))
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

/// Whose fault a failed deploy is reaches the status: the host failing to open the key-value
/// file (a host fault, `LoadError::KeyValue`) answers 500 and hides the details; a bad component
/// (the client's) answers 422 with every problem. Neither changes anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_failure_during_deploy_answers_5xx_and_a_bad_app_422() {
    let server = start().await;
    let acme = tenant(&server, "acme").await;
    // The runtime opens DATA_DIR/kv.redb when the first app with a store loads; a directory in
    // its place makes that fail, as a full or read-only disk would.
    let kv = server._data.path().join("kv.redb");
    std::fs::create_dir(&kv).unwrap();
    let with_store = app_archive(
        "acme",
        "shop",
        &[("hi", programs::HELLO, Some("/acme/hi"))],
        "[key-value.entries]\n",
    );
    let (status, body) = deploy(&server, &acme, "acme", "shop", with_store.clone()).await;
    assert_eq!(status, 500, "{body}");
    let error: meshwa_api::ErrorBody = serde_json::from_value(body.clone()).unwrap();
    assert_eq!(error.error, meshwa_api::ErrorKind::Host, "{body}");
    assert!(
        error.errors.is_empty() && !error.message.contains("kv.redb"),
        "the host's details stay in its log: {body}"
    );
    assert_eq!(get_text(server.gateway, "/acme/hi").await.0, 404);
    let (_, apps) = json_call(
        server.admin,
        "GET",
        "/v1/tenants/acme/apps",
        Some(&acme),
        None,
    )
    .await;
    assert_eq!(apps, json!({ "apps": [] }), "nothing was deployed");

    // The client's fault on the same server is still 422.
    let broken = app_archive(
        "acme",
        "shop",
        &[("hi", "not a component", Some("/acme/hi"))],
        "",
    );
    let (status, body) = deploy(&server, &acme, "acme", "shop", broken).await;
    assert_eq!(status, 422, "{body}");
    let error: meshwa_api::ErrorBody = serde_json::from_value(body.clone()).unwrap();
    assert_eq!(error.error, meshwa_api::ErrorKind::Invalid);
    assert!(
        error.errors.len() == 1 && error.errors[0].contains("not a valid WebAssembly component"),
        "{body}"
    );

    // Once the host is fixed, the same upload deploys.
    std::fs::remove_dir(&kv).unwrap();
    let (status, body) = deploy(&server, &acme, "acme", "shop", with_store).await;
    assert_eq!(status, 200, "{body}");
    let result: meshwa_api::DeployResult = serde_json::from_value(body).unwrap();
    assert_eq!((result.tenant.as_str(), result.replaced), ("acme", None));
    assert_eq!(get_text(server.gateway, "/acme/hi").await.0, 200);
}

/// Every answer of the API parses as its `meshwa-api` type (the server serializes them; this
/// guards the other direction, which the CLI relies on).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_parses_as_its_api_type() {
    use meshwa_api as api;
    let server = start().await;
    let a = server.admin;
    let acme = tenant(&server, "acme").await;
    let archive = app_archive(
        "acme",
        "shop",
        &[
            ("hi", programs::HELLO, Some("/acme/hi")),
            ("echo", programs::ECHO, None),
        ],
        "",
    );
    let (status, body) = deploy(&server, &acme, "acme", "shop", archive).await;
    assert_eq!(status, 200, "{body}");
    let deployed: api::DeployResult = serde_json::from_value(body).unwrap();
    assert_eq!(deployed.functions.len(), 2);
    assert_eq!(deployed.functions[1].route, None);

    async fn get<T: serde::de::DeserializeOwned>(a: SocketAddr, path: &str, token: &str) -> T {
        let (status, body) = json_call(a, "GET", path, Some(token), None).await;
        assert_eq!(status, 200, "{path}: {body}");
        serde_json::from_value(body).unwrap_or_else(|e| panic!("{path}: {e}"))
    }
    let me: api::WhoAmI = get(a, "/v1/whoami", &acme).await;
    assert_eq!(
        me,
        api::WhoAmI::Tenant {
            tenant: "acme".into()
        }
    );
    let me: api::WhoAmI = get(a, "/v1/whoami", OPERATOR).await;
    assert_eq!(me, api::WhoAmI::Operator);
    let tenants: api::TenantList = get(a, "/v1/tenants", OPERATOR).await;
    assert_eq!(tenants.tenants[0].name, "acme");
    let tokens: api::TokenList = get(a, "/v1/tenants/acme/tokens", &acme).await;
    assert_eq!(tokens.tokens.len(), 1);
    let apps: api::AppList = get(a, "/v1/tenants/acme/apps", &acme).await;
    assert_eq!(
        apps.apps[0].source.version(),
        Some(deployed.version),
        "{apps:?}"
    );
    let detail: api::AppDetail = get(a, "/v1/tenants/acme/apps/shop", &acme).await;
    assert_eq!(detail.functions[0].name, "hi");
    assert!(detail.functions[0].callable_by.is_none());

    // An invocation, then its log entry.
    let (status, _, _) = call(
        a,
        "POST",
        "/v1/tenants/acme/apps/shop/functions/echo/invoke",
        Some(&acme),
        b"x".to_vec(),
    )
    .await;
    assert_eq!(status, 200);
    let logs: api::LogList = get(a, "/v1/tenants/acme/apps/shop/logs", &acme).await;
    assert!(
        logs.entries.iter().any(|e| e.function == "echo"
            && matches!(e.event, api::LogEvent::Invocation { status: 200, .. })),
        "{logs:?}"
    );

    // Writes, and an error.
    let (status, body) = json_call(
        a,
        "POST",
        "/v1/tenants",
        Some(OPERATOR),
        Some(
            serde_json::to_value(api::CreateTenant {
                name: "globex".into(),
            })
            .unwrap(),
        ),
    )
    .await;
    assert_eq!(status, 201);
    let created: api::TenantCreated = serde_json::from_value(body).unwrap();
    assert_eq!(created.name, "globex");
    let (status, body) =
        json_call(a, "POST", "/v1/tenants/globex/tokens", Some(OPERATOR), None).await;
    assert_eq!(status, 201);
    let issued: api::IssuedToken = serde_json::from_value(body).unwrap();
    let (status, body) = json_call(
        a,
        "DELETE",
        &format!("/v1/tenants/globex/tokens/{}", issued.id),
        Some(OPERATOR),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let revoked: api::TokenRevoked = serde_json::from_value(body).unwrap();
    assert_eq!(revoked.revoked, issued.id);
    let (status, body) =
        json_call(a, "DELETE", "/v1/tenants/acme/apps/shop", Some(&acme), None).await;
    assert_eq!(status, 200);
    let removed: api::AppRemoved = serde_json::from_value(body).unwrap();
    assert_eq!(removed.removed, "acme/shop");
    let (status, body) = json_call(a, "DELETE", "/v1/tenants/acme", Some(OPERATOR), None).await;
    assert_eq!(status, 200);
    let deleted: api::TenantDeleted = serde_json::from_value(body).unwrap();
    assert_eq!(deleted.deleted, "acme");
    let (status, body) =
        json_call(a, "GET", "/v1/tenants/acme/apps/shop", Some(OPERATOR), None).await;
    let error: api::ErrorBody = serde_json::from_value(body).unwrap();
    assert_eq!(error.error.status(), status);
    let (status, body) = json_call(a, "PATCH", "/v1/whoami", Some(OPERATOR), None).await;
    let error: api::ErrorBody = serde_json::from_value(body).unwrap();
    assert_eq!(
        (error.error, status),
        (api::ErrorKind::MethodNotAllowed, 405)
    );
}

/// A JSON body's structure, as far as the OpenAPI test compares it: property names, whether
/// each is always present, and nesting. (Types of scalars, enums and descriptions are not.)
#[derive(Debug, PartialEq)]
enum Shape {
    Scalar,
    Array(Box<Shape>),
    /// Property → (required, shape).
    Object(BTreeMap<String, (bool, Shape)>),
}

/// Follows local `$ref`s (`#/$defs/..`, `#/components/..`) within `root`.
fn resolve<'a>(root: &'a Value, mut schema: &'a Value) -> &'a Value {
    while let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
        schema = root
            .pointer(reference.trim_start_matches('#'))
            .unwrap_or_else(|| panic!("dangling $ref {reference}"));
    }
    schema
}

fn list<'a>(schema: &'a Value, key: &str) -> Vec<&'a Value> {
    schema
        .get(key)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .collect()
}

/// The `oneOf`/`anyOf` alternatives of `schema` but `null` (an `Option`'s).
fn alternatives<'a>(root: &'a Value, schema: &'a Value) -> Vec<&'a Value> {
    let mut found = list(schema, "oneOf");
    found.extend(list(schema, "anyOf"));
    found
        .into_iter()
        .filter(|s| resolve(root, s).get("type") != Some(&json!("null")))
        .collect()
}

fn shape(root: &Value, schema: &Value) -> Shape {
    let schema = resolve(root, schema);
    let types: Vec<&str> = match schema.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    let (all_of, one_of) = (list(schema, "allOf"), alternatives(root, schema));
    if schema.get("properties").is_none() && !types.contains(&"object") {
        // A wrapper: `allOf: [X]` to describe a reference, `anyOf: [X, null]` for an Option.
        match (all_of.as_slice(), one_of.as_slice()) {
            ([only], []) | ([], [only]) => return shape(root, only),
            _ => {}
        }
    }
    if types.contains(&"array") {
        return Shape::Array(Box::new(shape(
            root,
            schema.get("items").unwrap_or(&Value::Null),
        )));
    }
    if schema.get("properties").is_some()
        || types.contains(&"object")
        || !all_of.is_empty()
        // Not an enum whose variants are documented one by one (a `oneOf` of strings).
        || one_of.iter().any(|s| shape(root, s) != Shape::Scalar)
    {
        let (properties, required) = object(root, schema);
        return Shape::Object(
            properties
                .into_iter()
                .map(|(name, shape)| (name.clone(), (required.contains(&name), shape)))
                .collect(),
        );
    }
    Shape::Scalar
}

/// An object's properties and the ones always present. The variants of a `oneOf` (a tagged
/// enum, or the document's "these only when kind is X") contribute their properties; those every
/// variant requires are required.
fn object(root: &Value, schema: &Value) -> (BTreeMap<String, Shape>, BTreeSet<String>) {
    let schema = resolve(root, schema);
    let mut properties: BTreeMap<String, Shape> = schema
        .get("properties")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .map(|(name, s)| (name.clone(), shape(root, s)))
        .collect();
    let mut required: BTreeSet<String> = list(schema, "required")
        .into_iter()
        .filter_map(Value::as_str)
        .map(str::to_owned)
        .collect();
    for part in list(schema, "allOf") {
        let (p, r) = object(root, part);
        properties.extend(p);
        required.extend(r);
    }
    let mut always: Option<BTreeSet<String>> = None;
    for variant in alternatives(root, schema) {
        let (p, r) = object(root, variant);
        properties.extend(p);
        always = Some(match always {
            None => r,
            Some(a) => a.intersection(&r).cloned().collect(),
        });
    }
    required.extend(always.unwrap_or_default());
    (properties, required)
}

/// How `documented` differs from the shape of the type whose schema is `rust`, if it does.
fn difference(what: String, documented: Shape, rust: &Value) -> Option<String> {
    let typed = shape(rust, rust);
    (documented != typed).then(|| {
        format!("{what}:\n  docs/openapi.json: {documented:?}\n  meshwa-api:        {typed:?}")
    })
}

/// A response body's JSON Schema, as the server writes it.
fn written<T: schemars::JsonSchema>() -> Value {
    schemars::generate::SchemaSettings::draft2020_12()
        .for_serialize()
        .into_generator()
        .into_root_schema_for::<T>()
        .to_value()
}

/// A request body's JSON Schema, as the server reads it.
fn read<T: schemars::JsonSchema>() -> Value {
    schemars::generate::SchemaSettings::draft2020_12()
        .for_deserialize()
        .into_generator()
        .into_root_schema_for::<T>()
        .to_value()
}

/// `docs/openapi.json` is written by hand: its descriptions, examples and conditions ("present
/// only when `source` is `deployed`") say more than schemas derived from the types could, and
/// regenerating them would lose that or move it all into attributes. So it is checked, not
/// generated: every JSON body it describes (component schemas, inline request and response
/// schemas) must have the property names, nesting and required fields of its `meshwa-api`
/// type, and every body must be covered. When this fails, edit docs/openapi.json (or the type)
/// until both say the same.
#[test]
fn the_openapi_document_matches_the_api_types() {
    use meshwa_api as api;
    let document: Value = serde_json::from_str(meshwa_control::api::OPENAPI).expect("valid JSON");
    let components: BTreeMap<&str, Value> = BTreeMap::from([
        ("WhoAmI", written::<api::WhoAmI>()),
        ("Tenant", written::<api::Tenant>()),
        ("Token", written::<api::Token>()),
        ("IssuedToken", written::<api::IssuedToken>()),
        ("App", written::<api::App>()),
        ("AppDetail", written::<api::AppDetail>()),
        ("DeployResult", written::<api::DeployResult>()),
        ("LogEntry", written::<api::LogEntry>()),
        ("Error", written::<api::ErrorBody>()),
        ("InvocationError", written::<api::InvocationErrorBody>()),
        ("PoolStatus", written::<api::PoolStatus>()),
        ("TrafficReport", written::<api::TrafficReport>()),
        ("Trace", written::<api::Trace>()),
        ("ClusterNode", written::<api::ClusterNode>()),
        ("ServedApp", written::<api::ServedApp>()),
    ]);
    // Bodies the document describes inline: (operationId, "request" or status) → type.
    let inline: BTreeMap<(&str, &str), Value> = BTreeMap::from([
        (("createTenant", "request"), read::<api::CreateTenant>()),
        (("createTenant", "201"), written::<api::TenantCreated>()),
        (("listTenants", "200"), written::<api::TenantList>()),
        (("deleteTenant", "200"), written::<api::TenantDeleted>()),
        (("listTokens", "200"), written::<api::TokenList>()),
        (("revokeToken", "200"), written::<api::TokenRevoked>()),
        (("listApps", "200"), written::<api::AppList>()),
        (("removeApp", "200"), written::<api::AppRemoved>()),
        (("getLogs", "200"), written::<api::LogList>()),
        (("listAllApps", "200"), written::<api::AppList>()),
        (("getTraces", "200"), written::<api::TraceList>()),
        (("getCluster", "200"), written::<api::ClusterView>()),
    ]);
    let mut problems = Vec::new();
    let schemas = document["components"]["schemas"]
        .as_object()
        .expect("components.schemas");
    for (name, schema) in schemas {
        match components.get(name.as_str()) {
            Some(rust) => problems.extend(difference(
                format!("schema {name}"),
                shape(&document, schema),
                rust,
            )),
            None if shape(&document, schema) == Shape::Scalar => {} // Name: a string.
            None => problems.push(format!(
                "schema {name}: no meshwa-api type is checked for it"
            )),
        }
    }
    for name in components.keys() {
        if !schemas.contains_key(*name) {
            problems.push(format!("schema {name}: missing from docs/openapi.json"));
        }
    }

    let mut seen = BTreeSet::new();
    for (path, item) in document["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().expect("a path item") {
            let Some(id) = operation["operationId"].as_str() else {
                continue;
            };
            let mut bodies = vec![("request".to_owned(), &operation["requestBody"])];
            for (status, response) in operation["responses"].as_object().into_iter().flatten() {
                bodies.push((status.clone(), resolve(&document, response)));
            }
            for (key, body) in bodies {
                let Some(schema) = body["content"]["application/json"].get("schema") else {
                    continue;
                };
                // A reference to a component (checked above), or several of them.
                let refs = schema.get("$ref").is_some()
                    || list(schema, "oneOf")
                        .iter()
                        .all(|s| s.get("$ref").is_some())
                        && schema.get("oneOf").is_some();
                // Free-form (the OpenAPI document itself).
                let free = schema.get("properties").is_none() && schema.get("items").is_none();
                if refs || free {
                    continue;
                }
                match inline.get(&(id, key.as_str())) {
                    Some(rust) => {
                        seen.insert((id.to_owned(), key.clone()));
                        problems.extend(difference(
                            format!("{} {path} ({id}) {key}", method.to_uppercase()),
                            shape(&document, schema),
                            rust,
                        ));
                    }
                    None => problems.push(format!(
                        "{} {path} ({id}) {key}: an inline body no meshwa-api type is checked for",
                        method.to_uppercase()
                    )),
                }
            }
        }
    }
    for (id, key) in inline.keys() {
        if !seen.contains(&((*id).to_owned(), (*key).to_owned())) {
            problems.push(format!(
                "{id} {key}: no such inline body in docs/openapi.json"
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "docs/openapi.json and the meshwa-api types differ (edit one until both agree):\n{}",
        problems.join("\n")
    );
}

/// The admin listener cuts off clients that never finish their request head, or never send a
/// byte (slowloris), as the gateway does, and keeps answering everybody else meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_listener_cuts_off_slow_clients() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let server = start().await;
    let mut slow = Vec::new();
    for i in 0..20 {
        let mut stream = tokio::net::TcpStream::connect(server.admin).await.unwrap();
        // Half of them send half a head, the other half nothing at all.
        if i % 2 == 0 {
            stream
                .write_all(b"GET /v1/tenants HTTP/1.1\r\nHost: x\r\nAuthorization: Bear")
                .await
                .unwrap();
        }
        slow.push(stream);
    }
    let (status, _, _) = call(server.admin, "GET", "/metrics", Some(OPERATOR), Vec::new()).await;
    assert_eq!(status, 200);
    for mut stream in slow {
        let mut buf = Vec::new();
        let read = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            stream.read_to_end(&mut buf),
        )
        .await;
        assert!(read.is_ok(), "a slow admin client was not disconnected");
    }
}

/// The operator's policy bounds what a tenant deploys, how many apps and tokens it has, and
/// who reads `/metrics`; every refusal names the limit (issue 16: items 1, 4, 5 and 8).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_policy_bounds_what_tenants_deploy() {
    let policy = meshwa_manifest::Policy::parse(
        r#"
[defaults]
max-timeout = "60s"
max-apps = 1
max-tokens = 2
outbound = ["https://*:*"]
"#,
    )
    .unwrap();
    let server = start_with(meshwa_control::DEFAULT_MAX_UPLOAD, policy).await;
    let acme = tenant(&server, "acme").await;
    let refused = |extra: &str, route: &str| {
        app_archive(
            "acme",
            "shop",
            &[("hi", programs::HELLO, Some(route))],
            extra,
        )
    };
    let error_text = |body: &Value| body["errors"].to_string();

    // Route squatting: `/` (or another tenant's prefix) is outside acme's routes.
    let (status, body) = deploy(&server, &acme, "acme", "shop", refused("", "/")).await;
    assert_eq!(status, 422, "{body}");
    assert!(
        error_text(&body)
            .contains("route / is outside tenant `acme`'s routes (/acme; policy routes)"),
        "{body}"
    );
    let (status, _) = get_text(server.gateway, "/acme/hi").await;
    assert_eq!(status, 404, "nothing was served");

    // Limits without ceilings: an absurd timeout, then one over the operator's ceiling.
    let absurd = "limits = { timeout = \"9000000000000000000s\" }\n";
    let (status, body) = deploy(&server, &acme, "acme", "shop", refused(absurd, "/acme/hi")).await;
    assert_eq!(status, 422, "{body}");
    assert!(error_text(&body).contains("at most 1h"), "{body}");
    let long = "limits = { timeout = \"2m\" }\n";
    let (status, body) = deploy(&server, &acme, "acme", "shop", refused(long, "/acme/hi")).await;
    assert_eq!(status, 422, "{body}");
    assert!(
        error_text(&body).contains("limits.timeout = 2m is over the operator's ceiling of 1m"),
        "{body}"
    );

    // A grant of the network the policy does not let tenants grant.
    let grant = "[functions.grants]\noutbound = [\"http://127.0.0.1:*\"]\n";
    let (status, body) = deploy(&server, &acme, "acme", "shop", refused(grant, "/acme/hi")).await;
    assert_eq!(status, 422, "{body}");
    assert!(
        error_text(&body).contains("grants.outbound http://127.0.0.1:* is not an origin the operator lets tenant `acme` grant"),
        "{body}"
    );

    // One app is allowed, a second is not; a redeploy of the first is.
    let ok = || refused("", "/acme/hi");
    assert_eq!(deploy(&server, &acme, "acme", "shop", ok()).await.0, 200);
    assert_eq!(deploy(&server, &acme, "acme", "shop", ok()).await.0, 200);
    let second = app_archive(
        "acme",
        "blog",
        &[("b", programs::HELLO, Some("/acme/b"))],
        "",
    );
    let (status, body) = deploy(&server, &acme, "acme", "blog", second).await;
    assert_eq!(status, 422, "{body}");
    assert!(
        error_text(&body).contains(
            "tenant `acme` would have 2 apps, more than the 1 the operator allows (policy max-apps)"
        ),
        "{body}"
    );
    let (status, text) = get_text(server.gateway, "/acme/hi").await;
    assert_eq!(status, 200, "{text}");

    // Tokens: `tenant` issued one; of eight asked for at once, one more, and no more (the
    // count is checked where the token is written, so concurrent requests cannot all pass).
    let path = "/v1/tenants/acme/tokens";
    let mut asked = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let admin = server.admin;
        asked.spawn(async move { json_call(admin, "POST", path, Some(OPERATOR), None).await });
    }
    let answers = asked.join_all().await;
    let issued = answers.iter().filter(|(status, _)| *status == 201).count();
    assert_eq!(issued, 1, "{answers:?}");
    let (status, body) = json_call(server.admin, "POST", path, Some(&acme), None).await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("policy max-tokens"),
        "{body}"
    );
    let (_, listed) = json_call(server.admin, "GET", path, Some(OPERATOR), None).await;
    assert_eq!(
        listed["tokens"].as_array().map(Vec::len),
        Some(2),
        "{listed}"
    );

    // `/metrics` names every tenant's functions: the operator and the scraper only.
    let scrape =
        |token: Option<&'static str>| call(server.admin, "GET", "/metrics", token, Vec::new());
    assert_eq!(scrape(None).await.0, 401);
    let (status, _, _) = call(server.admin, "GET", "/metrics", Some(&acme), Vec::new()).await;
    assert_eq!(status, 403);
    assert_eq!(scrape(Some("wrong")).await.0, 401);
    let (status, _, body) = scrape(Some(SCRAPER)).await;
    assert_eq!(status, 200);
    assert!(String::from_utf8_lossy(&body).contains("meshwa_instance_slots"));
    assert_eq!(scrape(Some(OPERATOR)).await.0, 200);
    // The scrape token opens nothing else.
    let (status, _) = json_call(server.admin, "GET", "/v1/tenants", Some(SCRAPER), None).await;
    assert_eq!(status, 401);
}

/// Opens `path` as an event stream; returns its status and, if 200, the body to read.
async fn open_stream(addr: SocketAddr, path: &str, token: &str) -> (u16, hyper::body::Incoming) {
    let request = http::Request::builder()
        .uri(format!("http://{addr}{path}"))
        .header("authorization", format!("Bearer {token}"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = client().request(request).await.unwrap();
    (response.status().as_u16(), response.into_body())
}

/// Reads events from `body` until one contains `needle`; returns it, or panics after `limit`.
async fn event_with(body: &mut hyper::body::Incoming, needle: &str, limit: Duration) -> String {
    let mut seen = String::new();
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(event) = seen.split("\n\n").find(|event| event.contains(needle)) {
            return event.to_owned();
        }
        let frame = tokio::time::timeout_at(deadline, body.frame())
            .await
            .unwrap_or_else(|_| panic!("no event with {needle:?} within {limit:?}; got:\n{seen}"));
        let frame = frame.expect("the stream ended").unwrap();
        if let Ok(data) = frame.into_data() {
            seen.push_str(&String::from_utf8_lossy(&data));
        }
    }
}

/// `logs?follow=true` streams an app's entries as they happen: an invocation arrives within a
/// second, a redeploy is followed, a removal ends the stream; another tenant cannot follow, and
/// followers are bounded per tenant (issue 20, item 2).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_follow_an_app_as_it_runs() {
    let server = start().await;
    let acme = tenant(&server, "acme").await;
    let globex = tenant(&server, "globex").await;
    let app = || {
        app_archive(
            "acme",
            "shop",
            &[("hi", programs::HELLO, Some("/acme/hi"))],
            "",
        )
    };
    assert_eq!(deploy(&server, &acme, "acme", "shop", app()).await.0, 200);
    let follow = "/v1/tenants/acme/apps/shop/logs?follow=true";

    let (status, mut stream) = open_stream(server.admin, follow, &acme).await;
    assert_eq!(status, 200);
    // Let the follower subscribe before the request it should see.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let asked = tokio::time::Instant::now();
    let (status, _, _) = call(server.gateway, "GET", "/acme/hi", None, Vec::new()).await;
    assert_eq!(status, 200);
    let invocation = "\"kind\":\"invocation\"";
    let event = event_with(&mut stream, invocation, Duration::from_secs(1)).await;
    assert!(
        asked.elapsed() < Duration::from_secs(1),
        "{:?}",
        asked.elapsed()
    );
    let data = event.split_once("data: ").unwrap().1;
    let entry: meshwa_api::LogEntry = serde_json::from_str(data).unwrap();
    assert_eq!(entry.function, "hi");
    assert!(event.starts_with("event: entry"), "{event}");

    // A redeploy: the new version's invocations arrive on the same stream.
    assert_eq!(deploy(&server, &acme, "acme", "shop", app()).await.0, 200);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(get_text(server.gateway, "/acme/hi").await.0, 200);
    event_with(&mut stream, invocation, Duration::from_secs(3)).await;

    // Another tenant's token sees no such app; a bad `follow` is a bad request.
    assert_eq!(open_stream(server.admin, follow, &globex).await.0, 404);
    let bad = "/v1/tenants/acme/apps/shop/logs?follow=yes";
    assert_eq!(open_stream(server.admin, bad, &acme).await.0, 400);

    // Eight followers per tenant at most (this one counts).
    let mut others = Vec::new();
    for _ in 0..7 {
        let (status, body) = open_stream(server.admin, follow, &acme).await;
        assert_eq!(status, 200);
        others.push(body);
    }
    assert_eq!(open_stream(server.admin, follow, &acme).await.0, 429);
    drop(others);

    // Removing the app ends the stream.
    let (status, _, _) = call(
        server.admin,
        "DELETE",
        "/v1/tenants/acme/apps/shop",
        Some(&acme),
        Vec::new(),
    )
    .await;
    assert_eq!(status, 200);
    event_with(&mut stream, "event: end", Duration::from_secs(3)).await;

    // The followers that went away gave their places back (within a tick of noticing).
    assert_eq!(deploy(&server, &acme, "acme", "shop", app()).await.0, 200);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let (status, _) = open_stream(server.admin, follow, &acme).await;
        if status == 200 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "places not given back: {status}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A tenant's disk is bounded over all its apps: their uploaded files plus what each of their
/// stores may grow to (policy max-disk); a refused deploy leaves nothing on disk, and a redeploy
/// replaces its app's share rather than adding to it (issue 16, item 4).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenants_disk_is_bounded_over_its_uploads_and_stores() {
    let hello = std::fs::read(programs::HELLO).unwrap();
    let max_disk = hello.len() + 1024 * 1024;
    let policy =
        meshwa_manifest::Policy::parse(&format!("[tenants.acme]\nmax-disk = \"{max_disk}\"\n"))
            .unwrap();
    let server = start_with(meshwa_control::DEFAULT_MAX_UPLOAD, policy).await;
    let acme = tenant(&server, "acme").await;
    let app = |name: &str, store: &str, padding: usize| {
        let mut manifest = format!(
            "tenant = \"acme\"\napp = \"{name}\"\n[[functions]]\nname = \"f\"\ncomponent = \"f.wasm\"\nroute = \"/acme/{name}\"\n"
        );
        if !store.is_empty() {
            manifest += &format!("[key-value.data]\nmax-total-size = \"{store}\"\n");
        }
        let mut files = BTreeMap::from([
            ("meshwa.toml".to_owned(), manifest.into_bytes()),
            ("f.wasm".to_owned(), hello.clone()),
        ]);
        if padding > 0 {
            files.insert("assets/padding.bin".to_owned(), vec![7; padding]);
        }
        archive::pack(&files).unwrap()
    };

    // Hello and a store of 512 KiB fit; another hello with 600 KiB of files does not.
    let (status, body) = deploy(&server, &acme, "acme", "one", app("one", "512KiB", 0)).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = deploy(&server, &acme, "acme", "two", app("two", "", 600 * 1024)).await;
    assert_eq!(status, 422, "{body}");
    let errors = body["errors"].to_string();
    assert!(
        errors.contains("tenant `acme` would take") && errors.contains("(policy max-disk)"),
        "{body}"
    );
    let apps_dir = server._data.path().join("apps");
    let staged: Vec<_> = std::fs::read_dir(&apps_dir)
        .unwrap()
        .flatten()
        .map(|entry| entry.file_name())
        .filter(|name| name.to_string_lossy().starts_with(".staging"))
        .collect();
    assert!(staged.is_empty(), "left behind: {staged:?}");
    assert!(!apps_dir.join("acme/two").exists());
    assert_eq!(get_text(server.gateway, "/acme/two").await.0, 404);

    // Without the padding it fits; redeploying the first app replaces its share.
    let (status, body) = deploy(&server, &acme, "acme", "two", app("two", "", 0)).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = deploy(&server, &acme, "acme", "one", app("one", "512KiB", 0)).await;
    assert_eq!(status, 200, "{body}");
    // Growing its store's quota past the ceiling does not.
    let (status, body) = deploy(&server, &acme, "acme", "one", app("one", "1000KiB", 0)).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(get_text(server.gateway, "/acme/one").await.0, 200);
}

/// A deleted tenant's key-value data goes with it: a tenant created later under the same name
/// (another customer, perhaps) starts empty (issue 16, item 9).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recreated_tenant_does_not_read_the_old_tenants_data() {
    let server = start().await;
    let app = || {
        app_archive(
            "acme",
            "book",
            &[("svc", programs::SERVICES, Some("/acme/svc"))],
            "[functions.grants]\nkey-value = [\"entries\"]\nconfig = [\"title\"]\nlogging = true\n\
             [key-value.entries]\n[config]\ntitle = \"t\"\n",
        )
    };
    let put = |addr: SocketAddr| {
        call(
            addr,
            "PUT",
            "/acme/svc/kv/entries/secret",
            None,
            b"old tenant's".to_vec(),
        )
    };
    let acme = tenant(&server, "acme").await;
    assert_eq!(deploy(&server, &acme, "acme", "book", app()).await.0, 200);
    assert_eq!(put(server.gateway).await.0, 200);
    let (status, text) = get_text(server.gateway, "/acme/svc/kv/entries/secret").await;
    assert_eq!((status, text.as_str()), (200, "old tenant's"));

    let (status, _) = json_call(
        server.admin,
        "DELETE",
        "/v1/tenants/acme",
        Some(OPERATOR),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let acme = tenant(&server, "acme").await;
    assert_eq!(deploy(&server, &acme, "acme", "book", app()).await.0, 200);
    let (status, text) = get_text(server.gateway, "/acme/svc/kv/entries/secret").await;
    assert_eq!(status, 404, "the old tenant's value: {text}");
}

/// A deploy carries its default store's preload file: checked with the rest of the upload
/// (missing, not JSON, over the quota: 422 naming the file, nothing changed), written into the
/// empty store, and never over what the app wrote since (issue 17, item 3).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deploy_preloads_the_default_store_once() {
    let server = start().await;
    let acme = tenant(&server, "acme").await;
    let with_seed = |seed: Option<&str>| {
        let mut files = BTreeMap::new();
        files.insert(
            "meshwa.toml".to_owned(),
            "tenant = \"acme\"\napp = \"compat\"\n[[functions]]\nname = \"wstd\"\n\
             component = \"components/wstd.wasm\"\nroute = \"/acme/compat\"\n\
             grants = { key-value = [\"\"] }\n[key-value.\"\"]\npreload = \"data/seed.json\"\n\
             max-total-size = \"1KiB\"\n"
                .as_bytes()
                .to_vec(),
        );
        files.insert(
            "components/wstd.wasm".to_owned(),
            std::fs::read(programs::WSTD_COMPAT).unwrap(),
        );
        if let Some(seed) = seed {
            files.insert("data/seed.json".to_owned(), seed.as_bytes().to_vec());
        }
        archive::pack(&files).unwrap()
    };
    let refused = |seed: Option<&str>, says: &'static str| {
        let archive = with_seed(seed);
        let server = &server;
        let acme = &acme;
        async move {
            let (status, body) = deploy(server, acme, "acme", "compat", archive).await;
            assert_eq!(status, 422, "{body}");
            let errors = body["errors"].to_string();
            assert!(errors.contains(says), "{errors}");
            assert!(errors.contains("data/seed.json"), "{errors}");
            assert!(
                !errors.contains("/tmp"),
                "staging paths stay private: {errors}"
            );
        }
    };
    refused(None, "is not in the upload").await;
    refused(Some("not json"), "is not a JSON object").await;
    let big = format!(r#"{{"k": "{}"}}"#, "x".repeat(2000));
    refused(Some(&big), "does not fit the store's quota").await;
    assert_eq!(get_text(server.gateway, "/acme/compat/kv/k").await.0, 404);

    let seeded = with_seed(Some(r#"{"k": "seeded"}"#));
    let (status, body) = deploy(&server, &acme, "acme", "compat", seeded).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        get_text(server.gateway, "/acme/compat/kv/k").await,
        (200, "seeded".to_owned())
    );
    let (status, _, _) = call(
        server.gateway,
        "PUT",
        "/acme/compat/kv/k",
        None,
        b"written by the app".to_vec(),
    )
    .await;
    assert_eq!(status, 200);
    let again = with_seed(Some(r#"{"k": "seeded again"}"#));
    let (status, body) = deploy(&server, &acme, "acme", "compat", again).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        get_text(server.gateway, "/acme/compat/kv/k").await,
        (200, "written by the app".to_owned())
    );
}

/// The dashboard's data (issue 20): a chain's spans and each function's traffic, for the
/// tenant's own apps only; kept across a redeploy; the pool for the operator only; and the
/// dashboard's page served open, with a policy that runs only its own script.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traces_and_traffic_show_a_tenant_its_own_chains_only() {
    use meshwa_api as api;
    let server = start().await;
    let a = server.admin;
    let acme = tenant(&server, "acme").await;
    let globex = tenant(&server, "globex").await;
    let archive = || {
        app_archive(
            "acme",
            "shop",
            &[
                ("front", programs::CALLER, Some("/acme/front")),
                ("echo", programs::ECHO, None),
            ],
            "",
        )
    };
    assert_eq!(
        deploy(&server, &acme, "acme", "shop", archive()).await.0,
        200
    );

    let (status, headers, body) = call(
        a,
        "POST",
        "/v1/tenants/acme/apps/shop/functions/front/invoke?path=%2Facme%2Ffront%2Fcall%2Fecho.shop.internal%2Fx",
        Some(&acme),
        b"through the chain".to_vec(),
    )
    .await;
    assert_eq!((status, &body[..]), (200, &b"through the chain"[..]));
    let invocation = headers["x-meshwa-invocation"].to_str().unwrap().to_owned();

    async fn get<T: serde::de::DeserializeOwned>(a: SocketAddr, path: &str, token: &str) -> T {
        let (status, body) = json_call(a, "GET", path, Some(token), None).await;
        assert_eq!(status, 200, "{path}: {body}");
        serde_json::from_value(body).unwrap_or_else(|e| panic!("{path}: {e}"))
    }
    let path = format!("/v1/tenants/acme/apps/shop/traces?invocation={invocation}");
    let traces: api::TraceList = get(a, &path, &acme).await;
    let [trace] = traces.traces.as_slice() else {
        panic!("one chain: {traces:?}")
    };
    assert_eq!(trace.function, "front");
    let [front, echo] = trace.spans.as_slice() else {
        panic!("two spans: {trace:?}")
    };
    assert_eq!(
        (
            front.span,
            front.parent,
            front.function.as_str(),
            front.status
        ),
        (0, None, "front", Some(200))
    );
    assert_eq!(
        (echo.span, echo.parent, echo.function.as_str(), echo.status),
        (1, Some(0), "echo", Some(200))
    );
    assert!(
        echo.start_us + echo.duration_us <= front.start_us + front.duration_us,
        "the callee runs within its caller: {trace:?}"
    );

    // A request through the gateway is a chain too; the traffic counts both functions.
    let gateway_chain = "/acme/front/call/echo.shop.internal/y";
    let (status, _, _) = call(server.gateway, "POST", gateway_chain, None, b"y".to_vec()).await;
    assert_eq!(status, 200);
    let traffic: api::TrafficReport = get(a, "/v1/tenants/acme/apps/shop/traffic", &acme).await;
    assert_eq!(traffic.interval_s, 10);
    let count = |name: &str| -> u32 {
        let function = traffic.functions.iter().find(|f| f.function == name);
        let points = &function
            .unwrap_or_else(|| panic!("{name}: {traffic:?}"))
            .points;
        assert_eq!(points.len(), 60);
        points.iter().map(|p| p.requests).sum()
    };
    assert_eq!((count("front"), count("echo")), (2, 2), "{traffic:?}");
    let last = traffic.functions[0].points.iter().rfind(|p| p.requests > 0);
    assert!(last.is_some_and(|p| p.p50_us.is_some() && p.errors == 0));

    // Kept across a redeploy.
    assert_eq!(
        deploy(&server, &acme, "acme", "shop", archive()).await.0,
        200
    );
    let traces: api::TraceList = get(a, &path, &acme).await;
    assert_eq!(traces.traces.len(), 1, "the chain outlives the redeploy");
    let traces: api::TraceList = get(a, "/v1/tenants/acme/apps/shop/traces", &acme).await;
    assert_eq!(traces.traces.len(), 2, "{traces:?}");
    assert_eq!(traces.traces[0].invocation, invocation, "oldest first");
    let traffic: api::TrafficReport = get(a, "/v1/tenants/acme/apps/shop/traffic", &acme).await;
    let front = traffic.functions.iter().find(|f| f.function == "front");
    let kept: u32 = front.unwrap().points.iter().map(|p| p.requests).sum();
    assert_eq!(kept, 2);

    // Another tenant sees none of it; the operator sees every app and the pool.
    for path in [
        "/v1/tenants/acme/apps/shop/traces",
        "/v1/tenants/acme/apps/shop/traffic",
    ] {
        let (status, body) = json_call(a, "GET", path, Some(&globex), None).await;
        assert_eq!(status, 404, "{path}: {body}");
    }
    let apps: api::AppList = get(a, "/v1/apps", &globex).await;
    assert!(apps.apps.is_empty(), "{apps:?}");
    let apps: api::AppList = get(a, "/v1/apps", &acme).await;
    assert_eq!(apps.apps.len(), 1);
    let apps: api::AppList = get(a, "/v1/apps", OPERATOR).await;
    assert_eq!(apps.apps[0].app, "shop");
    let pool: api::PoolStatus = get(a, "/v1/pool", OPERATOR).await;
    assert_eq!(pool.instance_slots, 32);
    assert_eq!(
        json_call(a, "GET", "/v1/pool", Some(&acme), None).await.0,
        403
    );
    let (status, _) = json_call(a, "GET", &format!("{path}&limit=x"), Some(&acme), None).await;
    assert_eq!(status, 400);

    // The page is open and holds no data; its policy runs only its own script.
    let (status, headers, body) = call(a, "GET", "/dashboard", None, Vec::new()).await;
    assert_eq!(status, 200);
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let policy = headers["content-security-policy"].to_str().unwrap();
    assert!(policy.contains("script-src 'self'") && policy.contains("default-src 'none'"));
    assert!(String::from_utf8_lossy(&body).contains("/dashboard/app.js"));
    assert_eq!(
        call(a, "GET", "/dashboard/app.js", None, Vec::new())
            .await
            .0,
        200
    );
    assert_eq!(
        call(a, "GET", "/dashboard/style.css", None, Vec::new())
            .await
            .0,
        200
    );
    assert_eq!(
        call(a, "GET", "/dashboard/../v1/pool", None, Vec::new())
            .await
            .0,
        404
    );
    assert_eq!(
        call(a, "GET", "/dashboard/secrets.toml", None, Vec::new())
            .await
            .0,
        404
    );
}

/// Every request the `admin` fuzz target was seeded with or ever kept (`fuzz/corpus/admin`), sent
/// through its harness, which checks who may get what on each answer.
#[tokio::test]
async fn every_request_of_the_fuzz_corpus_keeps_the_access_rules() {
    let corpus = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/admin");
    let mut files: Vec<_> = std::fs::read_dir(&corpus)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    files.sort();
    assert!(files.len() >= 30, "the seeds are in {}", corpus.display());
    let harness = admin_harness::AdminHarness::new(
        std::path::Path::new(programs::HELLO),
        std::path::Path::new(programs::COMPILE_CACHE_DIR),
    )
    .await;
    let mut statuses = BTreeMap::new();
    for file in files {
        let answer = harness.run(&std::fs::read(&file).unwrap()).await;
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        statuses.insert(name, answer.map(|a| a.status));
    }
    // The tokens reach the server (else the rules would check nothing), and the seeds get what
    // the API promises.
    let expected = [
        ("whoami-tenant", 200),
        ("whoami-wrong", 401),
        ("tenants-operator", 200),
        ("tenants-tenant", 403),
        ("apps-other-tenant", 404),
        ("pool-tenant", 403),
        ("invoke", 200),
        ("logs-follow", 200),
        ("dashboard-traversal", 404),
        ("method-not-allowed", 405),
    ];
    for (seed, status) in expected {
        assert_eq!(statuses[seed], Some(status), "{seed}: {statuses:?}");
    }
}
