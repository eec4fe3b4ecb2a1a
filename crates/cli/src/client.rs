//! The control-plane client: `meshwa deploy`, `ls`, `rm`, `invoke`, `logs`, `traces`, `tenant`,
//! `token`.
//!
//! Where the server and token come from, first found wins: flags (`--server`, `--token`,
//! `--tenant`), the environment (`MESHWA_SERVER`, `MESHWA_TOKEN`, `MESHWA_TENANT`), then the
//! config file (`$MESHWA_CONFIG`, else `~/.config/meshwa/client.toml`, keys `server`, `token`,
//! `tenant`). The server defaults to `http://127.0.0.1:3001`; a tenant token's tenant is asked
//! from the server when not given.
//!
//! Exit codes a script can rely on: 0 done; 1 refused or failed (the message says why); 2 usage
//! error; 3 missing or wrong token (401, 403); 4 not found (404); 5 server unreachable.
//!
//! Every JSON answer is read as its `meshwa-api` type; `--json` prints the server's answer as it
//! came.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use clap::{Args, Subcommand};
use http_body_util::BodyExt;
use hyper::body::{Body, Frame};
use meshwa_api::{
    AppList, AppRemoved, CreateTenant, DeployResult, ErrorBody, IssuedToken, LogEntry, LogEvent,
    LogList, TenantCreated, TenantDeleted, TenantList, TokenList, TokenRevoked, Trace, TraceList,
    WhoAmI,
};
use meshwa_manifest::Manifest;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Where to find the control plane, shared by every client command.
#[derive(Args, Clone, Default)]
pub struct Connection {
    /// Control-plane address.
    #[arg(long, env = "MESHWA_SERVER", global = true)]
    server: Option<String>,
    /// Bearer token (a tenant's, or the operator's).
    #[arg(long, env = "MESHWA_TOKEN", global = true, hide_env_values = true)]
    token: Option<String>,
    /// Tenant to act for (default: the token's own tenant).
    #[arg(long, env = "MESHWA_TENANT", global = true)]
    tenant: Option<String>,
    /// Print the server's JSON answer instead of a summary.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Args)]
pub struct DeployArgs {
    /// Directory with the app's meshwa.toml, or a Spin app's spin.toml (component paths in it
    /// are relative to it).
    #[arg(default_value = ".")]
    dir: PathBuf,
}

#[derive(Args)]
pub struct RmArgs {
    /// The app to remove.
    app: String,
}

#[derive(Args)]
pub struct InvokeArgs {
    /// `APP/FUNCTION` (private functions too).
    target: String,
    /// Path (and query) the function sees.
    #[arg(long, default_value = "/")]
    path: String,
    /// HTTP method the function sees.
    #[arg(long, short = 'X', default_value = "POST")]
    method: String,
    /// Request body; `@FILE` reads a file, `@-` standard input.
    #[arg(long, short = 'd')]
    data: Option<String>,
}

#[derive(Args)]
pub struct LogsArgs {
    /// The app, or `APP/FUNCTION` for one function.
    target: String,
    /// Most entries shown (with --follow: before the new ones).
    #[arg(long, default_value_t = 50)]
    limit: usize,
    /// Keep printing entries as they happen, until interrupted or the app is removed.
    #[arg(long, short = 'f')]
    follow: bool,
}

#[derive(Args)]
pub struct TracesArgs {
    /// The app, or `APP/FUNCTION` for the chains one function started.
    target: String,
    /// Most chains shown (the server keeps 32 per function).
    #[arg(long, default_value_t = 5)]
    limit: usize,
    /// Only the chain with this invocation id.
    #[arg(long)]
    invocation: Option<String>,
}

#[derive(Subcommand)]
pub enum TenantCommand {
    /// Create a tenant (operator).
    Create { name: String },
    /// List tenants (operator).
    Ls,
    /// Delete a tenant, its tokens and its deployed apps (operator).
    Rm { name: String },
}

#[derive(Subcommand)]
pub enum TokenCommand {
    /// Issue a token for the tenant (shown once).
    Create,
    /// List the tenant's tokens (ids only).
    Ls,
    /// Revoke one of the tenant's tokens.
    Revoke { id: String },
}

/// A failure with the exit code it maps to.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ClientError {
    pub code: u8,
    pub message: String,
}

fn fail(code: u8, message: impl Into<String>) -> anyhow::Error {
    ClientError {
        code,
        message: message.into(),
    }
    .into()
}

#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    server: Option<String>,
    token: Option<String>,
    tenant: Option<String>,
}

/// A successful JSON answer: its body as a type, and as the server sent it (for `--json`).
struct Answer<T> {
    body: T,
    text: Bytes,
}

/// A resolved connection to the control plane.
struct Client {
    server: String,
    token: Option<String>,
    tenant: Option<String>,
    json: bool,
    http: hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        http_body_util::combinators::UnsyncBoxBody<Bytes, std::io::Error>,
    >,
}

impl Client {
    fn new(connection: Connection) -> anyhow::Result<Client> {
        let config = match std::env::var_os("MESHWA_CONFIG")
            .map(PathBuf::from)
            .or_else(|| {
                std::env::var_os("HOME")
                    .map(|h| PathBuf::from(h).join(".config/meshwa/client.toml"))
            }) {
            Some(path) if path.is_file() => {
                let text = std::fs::read_to_string(&path)
                    .with_context(|| format!("cannot read {}", path.display()))?;
                toml::from_str::<ConfigFile>(&text)
                    .map_err(|e| fail(2, format!("{}: {}", path.display(), e.to_string().trim())))?
            }
            _ => ConfigFile::default(),
        };
        let server = connection
            .server
            .or(config.server)
            .unwrap_or_else(|| "http://127.0.0.1:3001".to_owned());
        let server = server.trim_end_matches('/').to_owned();
        if !server.starts_with("http://") {
            return Err(fail(
                2,
                format!(
                    "server {server:?}: only http:// addresses are supported (put a TLS proxy in front for remote use)"
                ),
            ));
        }
        Ok(Client {
            server,
            token: connection.token.or(config.token),
            tenant: connection.tenant.or(config.tenant),
            json: connection.json,
            http: hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http(),
        })
    }

    /// Sends a request; returns status and parsed JSON body (or the raw body as a JSON string).
    async fn send(
        &self,
        method: http::Method,
        path: &str,
        body: http_body_util::combinators::UnsyncBoxBody<Bytes, std::io::Error>,
        content_type: Option<&str>,
    ) -> anyhow::Result<(http::StatusCode, http::HeaderMap, Bytes)> {
        let mut request = http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.server));
        if let Some(token) = &self.token {
            request = request.header(http::header::AUTHORIZATION, format!("Bearer {token}"));
        }
        if let Some(content_type) = content_type {
            request = request.header(http::header::CONTENT_TYPE, content_type);
        }
        let request = request.body(body).context("building the request")?;
        let response = self.http.request(request).await.map_err(|e| {
            fail(
                5,
                format!("cannot reach the control plane at {}: {e}", self.server),
            )
        })?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| fail(5, format!("the control plane's answer broke off: {e}")))?
            .to_bytes();
        Ok((status, headers, body))
    }

    /// A call without a body whose answer is `T`; an error status becomes an error with its
    /// exit code.
    async fn call<T: DeserializeOwned>(
        &self,
        method: http::Method,
        path: &str,
    ) -> anyhow::Result<Answer<T>> {
        let (status, _, body) = self.send(method, path, full(Bytes::new()), None).await?;
        answer(status, body)
    }

    /// [`Client::call`] with a JSON body.
    async fn call_with<T: DeserializeOwned>(
        &self,
        method: http::Method,
        path: &str,
        body: &impl Serialize,
    ) -> anyhow::Result<Answer<T>> {
        let bytes = serde_json::to_vec(body).context("encoding the request")?;
        let (status, _, body) = self
            .send(
                method,
                path,
                full(Bytes::from(bytes)),
                Some("application/json"),
            )
            .await?;
        answer(status, body)
    }

    /// Prints the answer: the server's JSON with `--json`, else the summary (if any).
    fn print<T>(&self, answer: &Answer<T>, summary: impl FnOnce(&T) -> String) {
        if self.json {
            println!("{}", String::from_utf8_lossy(&answer.text).trim_end());
        } else {
            let text = summary(&answer.body);
            if !text.is_empty() {
                println!("{text}");
            }
        }
    }

    /// Reads the server-sent events of `path` (a log stream) and prints each entry as it comes:
    /// `line` of it, or its JSON with `--json`. Ends when the server ends the stream.
    async fn follow(&self, path: &str, line: fn(&LogEntry) -> String) -> anyhow::Result<()> {
        let mut request = http::Request::builder()
            .method(http::Method::GET)
            .uri(format!("{}{path}", self.server))
            .header(http::header::ACCEPT, "text/event-stream");
        if let Some(token) = &self.token {
            request = request.header(http::header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let request = request
            .body(full(Bytes::new()))
            .context("building the request")?;
        let response = self.http.request(request).await.map_err(|e| {
            fail(
                5,
                format!("cannot reach the control plane at {}: {e}", self.server),
            )
        })?;
        let status = response.status();
        let mut body = response.into_body();
        if !status.is_success() {
            let text = body
                .collect()
                .await
                .map_err(|e| fail(5, format!("the control plane's answer broke off: {e}")))?
                .to_bytes();
            return Err(refusal(status, &text));
        }
        let mut pending = String::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| fail(5, format!("the log stream broke off: {e}")))?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            pending.push_str(&String::from_utf8_lossy(&data));
            while let Some(end) = pending.find("\n\n") {
                let event: String = pending.drain(..end + 2).collect();
                match server_sent_event(&event) {
                    Some(("entry", data)) => {
                        if self.json {
                            println!("{data}");
                        } else {
                            let entry: LogEntry = serde_json::from_str(data).map_err(|e| {
                                fail(1, format!("a log entry this client cannot read: {e}"))
                            })?;
                            println!("{}", line(&entry));
                        }
                    }
                    Some(("lagged", data)) => eprintln!("(fell behind; missed: {data})"),
                    Some(("end", data)) => {
                        eprintln!("(the stream ended: {data})");
                        return Ok(());
                    }
                    _ => {}
                }
            }
        }
        Ok(())
    }

    /// The tenant to act for: given, or the token's own.
    async fn tenant(&self) -> anyhow::Result<String> {
        if let Some(tenant) = &self.tenant {
            return Ok(tenant.clone());
        }
        let me: Answer<WhoAmI> = self.call(http::Method::GET, "/v1/whoami").await?;
        match me.body {
            WhoAmI::Tenant { tenant } => Ok(tenant),
            WhoAmI::Operator => Err(fail(
                2,
                "this is the operator's token: say which tenant with --tenant",
            )),
        }
    }
}

/// The `event:` name and `data:` of one server-sent event; `None` for a comment.
fn server_sent_event(text: &str) -> Option<(&str, &str)> {
    let mut event = "message";
    let mut data = None;
    for line in text.lines() {
        if let Some(name) = line.strip_prefix("event: ") {
            event = name;
        } else if let Some(value) = line.strip_prefix("data: ") {
            data = Some(value);
        }
    }
    data.map(|data| (event, data))
}

fn full(bytes: Bytes) -> http_body_util::combinators::UnsyncBoxBody<Bytes, std::io::Error> {
    http_body_util::Full::new(bytes)
        .map_err(|never: std::convert::Infallible| match never {})
        .boxed_unsync()
}

/// Reads a JSON answer as `T`; an error status becomes [`refusal`].
fn answer<T: DeserializeOwned>(status: http::StatusCode, text: Bytes) -> anyhow::Result<Answer<T>> {
    if !status.is_success() {
        return Err(refusal(status, &text));
    }
    let body = serde_json::from_slice(&text).map_err(|e| {
        fail(
            1,
            format!("the control plane's answer is not what this client expects: {e}"),
        )
    })?;
    Ok(Answer { body, text })
}

/// An error status as an error with its exit code and the server's message (and every problem
/// it lists).
fn refusal(status: http::StatusCode, body: &[u8]) -> anyhow::Error {
    let (mut message, errors) = match serde_json::from_slice::<ErrorBody>(body) {
        Ok(error) => (error.message, error.errors),
        // Not the control plane's error (a proxy's, say): the status says enough.
        Err(_) => (format!("the control plane answered {status}"), Vec::new()),
    };
    for error in errors {
        message += &format!("\n  - {error}");
    }
    let code = match status.as_u16() {
        401 | 403 => 3,
        404 => 4,
        _ => 1,
    };
    fail(code, message)
}

/// A request body that reports its progress as it is sent.
struct ProgressBody {
    data: Bytes,
    sent: usize,
    bar: indicatif::ProgressBar,
}

impl Body for ProgressBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        const CHUNK: usize = 256 * 1024;
        if self.sent >= self.data.len() {
            self.bar.finish_and_clear();
            return Poll::Ready(None);
        }
        let end = (self.sent + CHUNK).min(self.data.len());
        let chunk = self.data.slice(self.sent..end);
        self.sent = end;
        self.bar.set_position(end as u64);
        Poll::Ready(Some(Ok(Frame::data(chunk))))
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        hyper::body::SizeHint::with_exact((self.data.len() - self.sent) as u64)
    }
}

/// Reads `dir/meshwa.toml`, checks it, and packs it with its components and its stores' preload
/// files, their paths rewritten to `components/<file>` and `data/<file>` inside the archive.
fn package(dir: &Path) -> anyhow::Result<(Manifest, Vec<u8>)> {
    let path = dir.join("meshwa.toml");
    let manifest = Manifest::load(&path).map_err(|e| fail(1, e.to_string()))?;
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let mut table: toml::Table = toml::from_str(&text).map_err(|e| fail(1, e.to_string()))?;
    let mut files = BTreeMap::new();
    let mut names: BTreeMap<PathBuf, String> = BTreeMap::new();
    if let Some(toml::Value::Array(functions)) = table.get_mut("functions") {
        for (raw, spec) in functions.iter_mut().zip(&manifest.functions) {
            let name = match names.get(&spec.component) {
                Some(name) => name.clone(),
                None => {
                    let stem = spec
                        .component
                        .file_name()
                        .and_then(|n| n.to_str())
                        .unwrap_or("component.wasm");
                    let mut name = format!("components/{stem}");
                    let mut n = 2;
                    while files.contains_key(&name) {
                        name = format!("components/{n}-{stem}");
                        n += 1;
                    }
                    let bytes = std::fs::read(&spec.component)
                        .with_context(|| format!("cannot read {}", spec.component.display()))?;
                    files.insert(name.clone(), bytes);
                    names.insert(spec.component.clone(), name.clone());
                    name
                }
            };
            if let toml::Value::Table(raw) = raw {
                raw.insert("component".to_owned(), toml::Value::String(name));
            }
        }
    }
    // Preload files travel too, as `data/<file>`, never over a component or the manifest.
    if let Some(toml::Value::Table(stores)) = table.get_mut("key-value") {
        for spec in &manifest.stores {
            let Some(preload) = &spec.preload else {
                continue;
            };
            let stem = preload
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("preload.json");
            let mut name = format!("data/{stem}");
            let mut n = 2;
            while files.contains_key(&name) {
                name = format!("data/{n}-{stem}");
                n += 1;
            }
            let bytes = std::fs::read(preload)
                .with_context(|| format!("cannot read {}", preload.display()))?;
            files.insert(name.clone(), bytes);
            if let Some(toml::Value::Table(store)) = stores.get_mut(spec.name.as_str()) {
                store.insert("preload".to_owned(), toml::Value::String(name));
            }
        }
    }
    let rewritten = toml::to_string(&table).context("rewriting the manifest")?;
    files.insert("meshwa.toml".to_owned(), rewritten.into_bytes());
    let archive = meshwa_control::archive::pack(&files).context("packing the app")?;
    Ok((manifest, archive))
}

/// Packs a Spin app's directory for `tenant`: `spin.toml` unchanged, with every component file
/// at its path relative to the directory (so the paths in `spin.toml` still name them).
fn package_spin(dir: &Path, tenant: &str) -> anyhow::Result<(Manifest, Vec<u8>)> {
    let path = dir.join(meshwa_manifest::SPIN_MANIFEST);
    let tenant = meshwa_manifest::Name::new(tenant).map_err(|e| fail(2, e.to_string()))?;
    let manifest = Manifest::load_spin(&path, Some(&tenant)).map_err(|e| fail(1, e.to_string()))?;
    let text = std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut files = BTreeMap::from([(meshwa_manifest::SPIN_MANIFEST.to_owned(), text)]);
    for spec in &manifest.functions {
        let relative = spec
            .component
            .strip_prefix(dir)
            .ok()
            .filter(|p| {
                p.components()
                    .all(|c| matches!(c, std::path::Component::Normal(_)))
            })
            .ok_or_else(|| {
                fail(
                    1,
                    format!(
                        "{}: component `{}`: its source {} is outside the app's directory;                          deploying sends the directory, so the component must be in it",
                        path.display(),
                        spec.name,
                        spec.component.display()
                    ),
                )
            })?;
        let name = relative.to_string_lossy().replace('\\', "/");
        if let std::collections::btree_map::Entry::Vacant(entry) = files.entry(name) {
            let bytes = std::fs::read(&spec.component)
                .with_context(|| format!("cannot read {}", spec.component.display()))?;
            entry.insert(bytes);
        }
    }
    let archive = meshwa_control::archive::pack(&files).context("packing the app")?;
    Ok((manifest, archive))
}

pub async fn deploy(connection: Connection, args: DeployArgs) -> anyhow::Result<()> {
    let client = Client::new(connection)?;
    // A Spin app names no tenant: it goes to --tenant, or the token's own.
    let is_spin = !args.dir.join(meshwa_manifest::MESHWA_MANIFEST).exists()
        && args.dir.join(meshwa_manifest::SPIN_MANIFEST).is_file();
    let (manifest, archive) = if is_spin {
        let tenant = client.tenant().await?;
        package_spin(&args.dir, &tenant)?
    } else {
        package(&args.dir)?
    };
    let (tenant, app) = (manifest.tenant.to_string(), manifest.app.to_string());
    let bar = indicatif::ProgressBar::new(archive.len() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("uploading {bytes}/{total_bytes} {wide_bar}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let body = ProgressBody {
        data: Bytes::from(archive),
        sent: 0,
        bar: bar.clone(),
    }
    .boxed_unsync();
    let spinner = indicatif::ProgressBar::new_spinner();
    spinner.set_message(format!("deploying {tenant}/{app}: compiling and checking"));
    let path = format!("/v1/tenants/{tenant}/apps/{app}");
    let request = client.send(http::Method::PUT, &path, body, Some("application/x-tar"));
    let spin = async {
        // The spinner starts once the upload is through.
        loop {
            if bar.is_finished() {
                spinner.enable_steady_tick(Duration::from_millis(100));
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        std::future::pending::<()>().await
    };
    let (status, _, body) = tokio::select! {
        answer = request => answer?,
        () = spin => unreachable!("the spinner future never ends"),
    };
    spinner.finish_and_clear();
    let deployed: Answer<DeployResult> = answer(status, body)?;
    client.print(&deployed, |d| {
        let mut lines = vec![format!(
            "deployed {tenant}/{app} version {} in {} ms ({} compiled)",
            d.version, d.elapsed_ms, d.compiled
        )];
        for f in &d.functions {
            lines.push(format!(
                "  {:<24} {}",
                f.name,
                f.route.as_deref().unwrap_or("(private)")
            ));
        }
        lines.join("\n")
    });
    Ok(())
}

/// `meshwa nodes`: `GET /v1/cluster`, one line per node and app.
pub async fn nodes(connection: Connection) -> anyhow::Result<()> {
    let client = Client::new(connection)?;
    let view: Answer<meshwa_api::ClusterView> =
        client.call(http::Method::GET, "/v1/cluster").await?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    client.print(&view, |view| {
        let mut lines = vec![format!(
            "{:<32} {:<10} {:<32} VERSION",
            "NODE", "SEEN", "APP"
        )];
        for node in &view.nodes {
            let seen = format!("{}s ago", now.saturating_sub(node.updated_at));
            if node.apps.is_empty() {
                lines.push(format!("{:<32} {:<10} -", node.node, seen));
            }
            for app in &node.apps {
                lines.push(format!(
                    "{:<32} {:<10} {:<32} {}",
                    node.node,
                    seen,
                    format!("{}/{}", app.tenant, app.app),
                    app.version
                ));
            }
        }
        lines.join("\n")
    });
    Ok(())
}

pub async fn ls(connection: Connection) -> anyhow::Result<()> {
    let client = Client::new(connection)?;
    let tenant = client.tenant().await?;
    let apps: Answer<AppList> = client
        .call(http::Method::GET, &format!("/v1/tenants/{tenant}/apps"))
        .await?;
    client.print(&apps, |list| {
        let mut lines = vec![format!(
            "{:<24} {:<10} {:<14} FUNCTIONS",
            "APP", "VERSION", "SOURCE"
        )];
        for app in &list.apps {
            let functions: Vec<String> = app
                .functions
                .iter()
                .map(|f| format!("{} {}", f.name, f.route.as_deref().unwrap_or("(private)")))
                .collect();
            lines.push(format!(
                "{:<24} {:<10} {:<14} {}",
                app.app,
                app.source
                    .version()
                    .map_or("-".to_owned(), |v| v.to_string()),
                app.source.name(),
                functions.join(", ")
            ));
        }
        lines.join("\n")
    });
    Ok(())
}

pub async fn rm(connection: Connection, args: RmArgs) -> anyhow::Result<()> {
    let client = Client::new(connection)?;
    let tenant = client.tenant().await?;
    let removed: Answer<AppRemoved> = client
        .call(
            http::Method::DELETE,
            &format!("/v1/tenants/{tenant}/apps/{}", args.app),
        )
        .await?;
    client.print(&removed, |r| {
        let drained = if r.drained {
            ""
        } else {
            " (some requests were still running at the drain limit)"
        };
        format!("removed {tenant}/{}{drained}", args.app)
    });
    Ok(())
}

pub async fn invoke(connection: Connection, args: InvokeArgs) -> anyhow::Result<()> {
    let client = Client::new(connection)?;
    let tenant = client.tenant().await?;
    let (app, function) = args
        .target
        .split_once('/')
        .ok_or_else(|| fail(2, "give the function as APP/FUNCTION"))?;
    let body = match args.data.as_deref() {
        None => Bytes::new(),
        Some("@-") => {
            let mut data = Vec::new();
            std::io::Read::read_to_end(&mut std::io::stdin(), &mut data)
                .context("reading standard input")?;
            Bytes::from(data)
        }
        Some(text) => match text.strip_prefix('@') {
            Some(file) => {
                Bytes::from(std::fs::read(file).with_context(|| format!("cannot read {file}"))?)
            }
            None => Bytes::from(text.to_owned()),
        },
    };
    let query: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("method", &args.method)
        .append_pair("path", &args.path)
        .finish();
    let path = format!("/v1/tenants/{tenant}/apps/{app}/functions/{function}/invoke?{query}");
    let (status, headers, body) = client
        .send(http::Method::POST, &path, full(body), None)
        .await?;
    let invocation = headers
        .get("x-meshwa-invocation")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    if status.is_client_error() && headers.get("x-meshwa-invocation").is_none() {
        // The control plane refused the call itself (token, unknown app or function).
        return Err(refusal(status, &body));
    }
    use std::io::Write;
    let mut out = std::io::stdout();
    out.write_all(&body).context("writing the answer")?;
    out.flush().ok();
    if !status.is_success() {
        return Err(fail(
            1,
            format!("{function} answered {status} (invocation {invocation})"),
        ));
    }
    Ok(())
}

pub async fn logs(connection: Connection, args: LogsArgs) -> anyhow::Result<()> {
    let client = Client::new(connection)?;
    let tenant = client.tenant().await?;
    let (app, function) = match args.target.split_once('/') {
        Some((app, function)) => (app, Some(function)),
        None => (args.target.as_str(), None),
    };
    let mut query = form_urlencoded::Serializer::new(String::new());
    query.append_pair("limit", &args.limit.to_string());
    if let Some(function) = function {
        query.append_pair("function", function);
    }
    if args.follow {
        query.append_pair("follow", "true");
    }
    let path = format!("/v1/tenants/{tenant}/apps/{app}/logs?{}", query.finish());
    if args.follow {
        return client.follow(&path, log_line).await;
    }
    let logs: Answer<LogList> = client.call(http::Method::GET, &path).await?;
    client.print(&logs, |list| {
        let lines: Vec<String> = list.entries.iter().map(log_line).collect();
        lines.join("\n")
    });
    Ok(())
}

pub async fn traces(connection: Connection, args: TracesArgs) -> anyhow::Result<()> {
    let client = Client::new(connection)?;
    let tenant = client.tenant().await?;
    let (app, function) = match args.target.split_once('/') {
        Some((app, function)) => (app, Some(function)),
        None => (args.target.as_str(), None),
    };
    let mut query = form_urlencoded::Serializer::new(String::new());
    query.append_pair("limit", &args.limit.to_string());
    if let Some(function) = function {
        query.append_pair("function", function);
    }
    if let Some(invocation) = &args.invocation {
        query.append_pair("invocation", invocation);
    }
    let path = format!("/v1/tenants/{tenant}/apps/{app}/traces?{}", query.finish());
    let traces: Answer<TraceList> = client.call(http::Method::GET, &path).await?;
    client.print(&traces, |list| {
        let chains: Vec<String> = list.traces.iter().map(waterfall).collect();
        chains.join("\n\n")
    });
    Ok(())
}

/// Width of the bars of `meshwa traces`, in characters.
const WATERFALL_WIDTH: u64 = 40;

/// One chain as `meshwa traces` prints it: a line for the chain, then a line per span with its
/// caller's indentation and a bar placed and sized on the chain's time.
fn waterfall(trace: &Trace) -> String {
    let end = trace
        .spans
        .iter()
        .map(|s| s.start_us + s.duration_us)
        .max()
        .unwrap_or(0)
        .max(1);
    let mut depth: BTreeMap<u32, usize> = BTreeMap::new();
    let mut lines = vec![format!(
        "{} {} from {} ({} spans{})",
        trace.at_ms,
        trace.invocation,
        trace.function,
        trace.spans.len(),
        if trace.dropped_spans > 0 {
            format!(", {} not kept", trace.dropped_spans)
        } else {
            String::new()
        }
    )];
    for span in &trace.spans {
        let level = span.parent.and_then(|p| depth.get(&p)).map_or(0, |d| d + 1);
        depth.insert(span.span, level);
        let name = format!("{}{}/{}", "  ".repeat(level + 1), span.app, span.function);
        let offset = (span.start_us * WATERFALL_WIDTH / end) as usize;
        let length = ((span.duration_us * WATERFALL_WIDTH).div_ceil(end) as usize).max(1);
        let outcome = match (&span.error, span.status) {
            (Some(kind), _) => format!("error={kind}"),
            (None, Some(status)) => format!("status={status}"),
            (None, None) => String::new(),
        };
        lines.push(format!(
            "{name:<32} {:>width$}{} {:>9.3} ms {outcome}",
            "",
            "#".repeat(length),
            span.duration_us as f64 / 1000.0,
            width = offset,
        ));
    }
    lines.join("\n")
}

/// One log entry as `meshwa logs` prints it.
fn log_line(e: &LogEntry) -> String {
    let head = format!("{} {} {}", e.at_ms, e.function, e.invocation);
    match &e.event {
        LogEvent::Invocation {
            status,
            duration_us,
            error,
        } => format!(
            "{head} status={status} duration_us={duration_us}{}",
            error
                .as_deref()
                .map(|k| format!(" error={k}"))
                .unwrap_or_default()
        ),
        LogEvent::Log { stream, message } => format!("{head} [{stream}] {message}"),
    }
}

pub async fn tenant(connection: Connection, command: TenantCommand) -> anyhow::Result<()> {
    let client = Client::new(connection)?;
    match command {
        TenantCommand::Create { name } => {
            let created: Answer<TenantCreated> = client
                .call_with(
                    http::Method::POST,
                    "/v1/tenants",
                    &CreateTenant { name: name.clone() },
                )
                .await?;
            client.print(&created, |t| format!("created tenant {}", t.name));
        }
        TenantCommand::Ls => {
            let tenants: Answer<TenantList> = client.call(http::Method::GET, "/v1/tenants").await?;
            client.print(&tenants, |list| {
                let names: Vec<&str> = list.tenants.iter().map(|t| t.name.as_str()).collect();
                names.join("\n")
            });
        }
        TenantCommand::Rm { name } => {
            let deleted: Answer<TenantDeleted> = client
                .call(http::Method::DELETE, &format!("/v1/tenants/{name}"))
                .await?;
            client.print(&deleted, |d| format!("deleted tenant {}", d.deleted));
        }
    }
    Ok(())
}

pub async fn token(connection: Connection, command: TokenCommand) -> anyhow::Result<()> {
    let client = Client::new(connection)?;
    let tenant = client.tenant().await?;
    match command {
        TokenCommand::Create => {
            let issued: Answer<IssuedToken> = client
                .call(http::Method::POST, &format!("/v1/tenants/{tenant}/tokens"))
                .await?;
            // The token alone on stdout, so that `TOKEN=$(meshwa token create)` works.
            client.print(&issued, |t| t.token.clone());
        }
        TokenCommand::Ls => {
            let tokens: Answer<TokenList> = client
                .call(http::Method::GET, &format!("/v1/tenants/{tenant}/tokens"))
                .await?;
            client.print(&tokens, |list| {
                let lines: Vec<String> = list
                    .tokens
                    .iter()
                    .map(|t| format!("{} created {}", t.id, t.created))
                    .collect();
                lines.join("\n")
            });
        }
        TokenCommand::Revoke { id } => {
            let revoked: Answer<TokenRevoked> = client
                .call(
                    http::Method::DELETE,
                    &format!("/v1/tenants/{tenant}/tokens/{id}"),
                )
                .await?;
            client.print(&revoked, |r| format!("revoked {}", r.revoked));
        }
    }
    Ok(())
}
