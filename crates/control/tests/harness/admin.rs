//! Sends raw HTTP/1.1 requests to the control-plane API of a real control plane (a real store in
//! a temporary directory, a real runtime) and checks who may get what. Shared by the `admin`
//! fuzz target (`fuzz/fuzz_targets/admin.rs` includes this file) and the control plane's tests,
//! which run every request of `fuzz/corpus/admin` through it.
//!
//! A request is any bytes; `$OPERATOR` and `$TENANT` in them become the operator's token and a
//! token of the tenant `acme` (which has the app `hello` deployed), so that a fuzzer can reach
//! past authentication. What must hold for every request that gets an answer:
//! - no 500: the host is healthy, so a failure is the request's fault;
//! - without a valid token, nothing but the open pages (`/v1/openapi.json`, `/dashboard...`)
//!   answers 2xx;
//! - with only the tenant's token, no operator endpoint and no other tenant's resource answers 2xx.

// Harness code: a failed check is a finding, reported by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use meshwa_control::{ControlPlane, ControlSettings, Registry, archive};
use meshwa_gateway::Metrics;
use meshwa_runtime::{EngineSettings, Runtime, Secrets};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const OPERATOR: &str = "mwo_fuzz-operator-token";
const TENANT: &str = "acme";
/// Headers parsed by the harness's own look at a request: more than hyper takes (100), so that
/// whatever hyper answers, the harness has read as hyper did.
const MAX_HEADERS: usize = 128;

/// A control plane, and the tenant token requests may use.
pub struct AdminHarness {
    control: Arc<ControlPlane>,
    tenant_token: Mutex<String>,
    /// The app `hello` of `acme` as an upload, to deploy again if a request removed it.
    hello_archive: Vec<u8>,
    _data: tempfile::TempDir,
}

/// What a request got.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub head: String,
}

impl AdminHarness {
    /// A control plane with `acme` and its app `hello` (the component at `hello`, compiled code
    /// cached in `cache_dir`).
    pub async fn new(hello: &Path, cache_dir: &Path) -> AdminHarness {
        let component = std::fs::read(hello).unwrap_or_else(|e| {
            panic!(
                "{}: {e}; build the guests first (cargo build -p meshwa-test-programs)",
                hello.display()
            )
        });
        let data = tempfile::tempdir().unwrap();
        let runtime = Arc::new(
            Runtime::with_cache_dir(
                EngineSettings {
                    max_instances: 16,
                    ..EngineSettings::default()
                },
                data.path(),
                cache_dir,
            )
            .unwrap(),
        );
        let registry = Arc::new(Registry::new(runtime.clone(), Secrets::default()));
        let stats = runtime.clone();
        let metrics = Arc::new(Metrics::new(Arc::new(move || stats.stats())));
        let control = Arc::new(
            ControlPlane::open(
                data.path(),
                registry,
                ControlSettings {
                    operator_token: OPERATOR.to_owned(),
                    metrics_token: None,
                    max_upload: 1024 * 1024,
                },
                metrics,
            )
            .unwrap(),
        );
        let manifest = format!(
            "tenant = \"{TENANT}\"\napp = \"hello\"\n[[functions]]\nname = \"hello\"\n\
             component = \"hello.wasm\"\nroute = \"/acme/hello\"\n"
        );
        let files = BTreeMap::from([
            ("meshwa.toml".to_owned(), manifest.into_bytes()),
            ("hello.wasm".to_owned(), component),
        ]);
        let harness = AdminHarness {
            control,
            tenant_token: Mutex::new(String::new()),
            hello_archive: archive::pack(&files).unwrap(),
            _data: data,
        };
        harness.restore_tenant().await;
        harness
    }

    /// Sends `request` (after putting the tokens in) and checks the rules above; returns the
    /// answer, if one came.
    pub async fn run(&self, request: &[u8]) -> Option<Answer> {
        self.restore_tenant().await;
        let tenant_token = self.tenant_token.lock().unwrap().clone();
        let request = replace(
            &replace(request, b"$OPERATOR", OPERATOR.as_bytes()),
            b"$TENANT",
            tenant_token.as_bytes(),
        );
        let answer = self.send(&request).await?;
        check(&request, &answer, &tenant_token);
        Some(answer)
    }

    /// Brings back `acme`, a token of it and its app if a request removed them (the fuzzer may
    /// delete the tenant or revoke the token), so that later requests still reach them.
    async fn restore_tenant(&self) {
        let store = self.control.store();
        if !store.tenant_exists(TENANT).unwrap() {
            let created = self
                .call(b"POST", "/v1/tenants", OPERATOR, br#"{"name": "acme"}"#)
                .await;
            assert_eq!(created.status, 201, "{}", created.head);
        }
        let token = self.tenant_token.lock().unwrap().clone();
        if token.is_empty() || store.token_tenant(&token).unwrap().as_deref() != Some(TENANT) {
            let (_, token) = store.issue_token(TENANT, usize::MAX).unwrap().unwrap();
            *self.tenant_token.lock().unwrap() = token;
        }
        let deployed = store.apps().unwrap();
        if !deployed
            .iter()
            .any(|a| a.tenant == TENANT && a.app == "hello")
        {
            let answer = self
                .call(
                    b"PUT",
                    "/v1/tenants/acme/apps/hello",
                    OPERATOR,
                    &self.hello_archive,
                )
                .await;
            assert!(
                answer.status == 200 || answer.status == 201,
                "{}",
                answer.head
            );
        }
    }

    async fn call(&self, method: &[u8], path: &str, token: &str, body: &[u8]) -> Answer {
        let mut request = method.to_vec();
        request.extend(
            format!(
                " {path} HTTP/1.1\r\nhost: admin\r\nauthorization: Bearer {token}\r\n\
                 content-length: {}\r\n\r\n",
                body.len()
            )
            .as_bytes(),
        );
        request.extend(body);
        self.send(&request).await.expect("an answer")
    }

    /// Serves one connection over an in-memory pipe: writes `request`, closes the writing side,
    /// and reads until the answer's head is complete (a followed log never ends).
    async fn send(&self, request: &[u8]) -> Option<Answer> {
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        let control = self.control.clone();
        let service = hyper::service::service_fn(move |request| {
            let control = control.clone();
            async move { Ok::<_, Infallible>(meshwa_control::api::handle(&control, request).await) }
        });
        let serving = hyper::server::conn::http1::Builder::new()
            .keep_alive(false)
            // The client closes its writing side once the request is out; the answer must still
            // come (with `false`, hyper would close at that end of input).
            .half_close(true)
            // As the gateway serves it.
            .timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(Duration::from_secs(1))
            .serve_connection(hyper_util::rt::TokioIo::new(server), service);
        let talking = async move {
            // The server may close before reading everything: what it answered still counts.
            let _ = client.write_all(request).await;
            let _ = client.shutdown().await;
            let mut received = Vec::new();
            let mut chunk = [0u8; 4096];
            while !received.windows(4).any(|w| w == b"\r\n\r\n") {
                match client.read(&mut chunk).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => received.extend_from_slice(&chunk[..n]),
                }
            }
            received
        };
        let received = tokio::time::timeout(Duration::from_secs(10), async {
            let mut serving = Box::pin(serving);
            let mut talking = Box::pin(talking);
            tokio::select! {
                received = &mut talking => received,
                _ = &mut serving => {
                    // A finished connection still holds its end of the pipe: dropping it is
                    // what tells the client there is nothing more to read. (Without, a request
                    // hyper refuses with no answer, a head cut short or an HTTP/2 preface, left
                    // the client waiting forever.)
                    drop(serving);
                    talking.await
                }
            }
        })
        .await
        .expect("an answer (or a closed connection) within 10 s");
        let end = received.windows(4).position(|w| w == b"\r\n\r\n")?;
        let head = String::from_utf8_lossy(&received[..end]).into_owned();
        let status = head.split(' ').nth(1)?.parse().ok()?;
        Some(Answer { status, head })
    }
}

/// `haystack` with every `from` replaced by `to`.
fn replace(haystack: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(haystack.len());
    let mut rest = haystack;
    while !rest.is_empty() {
        if rest.starts_with(from) {
            out.extend_from_slice(to);
            rest = &rest[from.len()..];
        } else {
            out.push(rest[0]);
            rest = &rest[1..];
        }
    }
    out
}

/// The rules of the module's docs, for a request as the server parsed it.
fn check(request: &[u8], answer: &Answer, tenant_token: &str) {
    assert_ne!(
        answer.status,
        500,
        "the host failed on {:?}: {}",
        String::from_utf8_lossy(request),
        answer.head
    );
    if !(200..300).contains(&answer.status) {
        return;
    }
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut headers);
    let Ok(httparse::Status::Complete(_)) = parsed.parse(request) else {
        return;
    };
    let (Some(method), Some(target)) = (parsed.method, parsed.path) else {
        return;
    };
    // The path as the server routes it (a request may name an absolute URI).
    let Ok(uri) = target.parse::<http::Uri>() else {
        return;
    };
    let path = uri.path();
    let open =
        path == "/v1/openapi.json" || path == "/dashboard" || path.starts_with("/dashboard/");
    if open {
        return;
    }
    let tokens: Vec<String> = parsed
        .headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("authorization"))
        .map(|h| String::from_utf8_lossy(h.value).into_owned())
        .collect();
    let as_operator = tokens.iter().any(|t| t.contains(OPERATOR));
    let as_tenant = !tenant_token.is_empty() && tokens.iter().any(|t| t.contains(tenant_token));
    let shown = || format!("{method} {target} with {tokens:?}: {}", answer.head);
    assert!(
        as_operator || as_tenant,
        "answered without a valid token: {}",
        shown()
    );
    if as_operator {
        return;
    }
    // (`GET /v1/apps` answers a tenant too, with its own apps only.)
    let operator_only = ["/v1/tenants", "/v1/pool", "/metrics"];
    assert!(
        !operator_only.contains(&path.trim_end_matches('/')),
        "a tenant's token reached an operator endpoint: {}",
        shown()
    );
    if let Some(rest) = path.strip_prefix("/v1/tenants/") {
        let tenant = rest.split('/').next().unwrap_or_default();
        assert_eq!(
            tenant,
            TENANT,
            "a tenant's token reached another tenant: {}",
            shown()
        );
    }
}
