//! The HTTP front door of meshwa.
//!
//! Accepts HTTP/1.1 and HTTP/2 (cleartext, prior knowledge) on one listener, routes each request
//! by longest path prefix to a function, runs it in a fresh instance through
//! [`meshwa_runtime::Function::handle`], and turns every failure into a status that says whose
//! fault it was, with an error id that also appears in the log. Shutdown stops accepting, lets
//! in-flight requests finish within a grace period, then returns.
//!
//! The gateway is the HTTP trigger ([`HttpTrigger`], run by `meshwa serve` through
//! [`meshwa_runtime::run_triggers`]). It knows nothing of flags, signals or deployments: it takes
//! a listener, the [`Routes`], the [`Metrics`], a [`GatewayConfig`] and a shutdown future.
//!
//! - **Accept:** a connection beyond `max_connections`, or beyond `max_connections_per_client`
//!   from its address, is closed at once; then `TCP_NODELAY` and hyper-util's `auto` builder
//!   (HTTP/1.1, or HTTP/2 with prior knowledge, pinged when idle), with `header_read_timeout`
//!   against slow clients. An accept error (out of file descriptors, say) is logged and
//!   followed by a 10 ms back-off; the listener keeps going.
//! - **Invocation id:** 13 hex digits of the process start time in microseconds, a dash, a hex
//!   counter ([`next_invocation_id`]): unique within the process and across restarts. A failed
//!   request reports it as its error id.
//! - **Route:** each request takes the current [`Router`] (`load_full`) and keeps it, and so its
//!   function, to the end. No match: 404 `not_found`, counted without its path.
//! - **Account** ([`record_invocation`], also used by the control plane's `invoke`): metrics, the
//!   function's recent log, and one line with target `meshwa::invocation`: `ok` (tenant, app,
//!   function, status, `duration_us` to the response head) or `failed` (the same plus
//!   `error_id`, `kind`, `fault`, the error); an unmatched request logs `no route` with its path cut
//!   at 200 characters. Request bodies never reach the log. A response whose body was still
//!   streaming from the guest when its head went out is accounted when the body ends: `ok`
//!   with `body = "complete"` (or `"unfinished"` if the client left first), or `cut` with the
//!   guest's error when it failed after sending the head.
//! - **Statuses and error bodies** come from the runtime ([`status_for`], `error_response`),
//!   because in-process calls answer failures with the same responses.
//! - **Shutdown:** the listener is dropped, every connection is told to shut down gracefully
//!   (hyper-util's `GracefulShutdown`), and whatever is left after `shutdown_grace` is closed.

mod metrics;
mod router;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use meshwa_runtime::{
    BodyEnd, Function, InvokeError, RecentWhat, ResponseBody, Shutdown, Trigger, TriggerError,
    error_response, public_message,
};
pub use meshwa_runtime::{ERROR_ID_HEADER, status_for};
use tokio::net::TcpListener;

pub use metrics::{Metrics, PhaseSource, StatsSource};
pub use router::Router;

/// The live route table: swapped whole when apps are deployed or removed. A request takes the
/// table current when it arrives and keeps its function to the end, so in-flight requests finish
/// on the version they started on while new ones see the new one.
pub type Routes = arc_swap::ArcSwap<Router>;

/// Why the gateway stopped with an error. Accept errors on single connections are logged and
/// survived; only failures of the listener itself end up here.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("cannot bind {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot read the listener's address: {0}")]
    LocalAddr(std::io::Error),
}

/// How the gateway behaves at the edges.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// How long in-flight requests may take to finish after shutdown begins.
    pub shutdown_grace: Duration,
    /// How long a client may take to send a request's head; a slow (slowloris) client is
    /// disconnected after it, instead of holding its connection open forever. Also the
    /// interval and timeout of HTTP/2 keep-alive pings, which end connections to dead peers.
    pub header_read_timeout: Duration,
    /// Most connections open at once on the listener; more are closed as soon as accepted.
    pub max_connections: usize,
    /// Most connections open at once from one client address, so that one client cannot take
    /// every connection (and file descriptor) by itself.
    pub max_connections_per_client: usize,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            shutdown_grace: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(10),
            max_connections: 4096,
            max_connections_per_client: 256,
        }
    }
}

/// The connections open on one listener, in total and per client address.
struct Connections {
    total: usize,
    per_client: HashMap<IpAddr, usize>,
}

/// One open connection, counted until it is dropped.
struct Counted {
    connections: Arc<Mutex<Connections>>,
    client: IpAddr,
}

impl Connections {
    /// Counts a connection from `client` if both caps allow it.
    fn admit(
        connections: &Arc<Mutex<Connections>>,
        client: IpAddr,
        config: &GatewayConfig,
    ) -> Option<Counted> {
        let mut open = connections.lock().unwrap_or_else(|e| e.into_inner());
        let from_client = open.per_client.get(&client).copied().unwrap_or(0);
        if open.total >= config.max_connections || from_client >= config.max_connections_per_client
        {
            return None;
        }
        open.total += 1;
        open.per_client.insert(client, from_client + 1);
        Some(Counted {
            connections: connections.clone(),
            client,
        })
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        let mut open = self.connections.lock().unwrap_or_else(|e| e.into_inner());
        open.total = open.total.saturating_sub(1);
        if let Some(count) = open.per_client.get_mut(&self.client) {
            *count -= 1;
            if *count == 0 {
                open.per_client.remove(&self.client);
            }
        }
    }
}

/// Binds `addr` (use port 0 in tests and read [`TcpListener::local_addr`] back).
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, GatewayError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| GatewayError::Bind { addr, source })
}

/// Serves the routes on `listener` until `shutdown` resolves, then drains in-flight requests for
/// at most `config.shutdown_grace`.
pub async fn serve(
    listener: TcpListener,
    routes: Arc<Routes>,
    metrics: Arc<Metrics>,
    config: GatewayConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), GatewayError> {
    let local = listener.local_addr().map_err(GatewayError::LocalAddr)?;
    tracing::info!(%local, routes = routes.load().routes().count(), "gateway listening");
    let handler = move |request| {
        let (router, metrics) = (routes.load_full(), metrics.clone());
        async move { dispatch(&router, &metrics, request).await }
    };
    serve_http("gateway", listener, config, handler, shutdown).await
}

/// The HTTP serving loop every listener of meshwa shares (the gateway's, the admin API's): HTTP/1.1
/// and HTTP/2, connections capped in total and per client address, a client that does not send
/// its first byte or finish its request head within
/// `config.header_read_timeout` is disconnected (slowloris), a failed accept (out of file
/// descriptors) backs off instead of ending the loop, and when `shutdown` resolves the listener
/// closes and in-flight requests get `config.shutdown_grace` to finish. `name` names the listener
/// in logs.
pub async fn serve_http<H, F, B>(
    name: &'static str,
    listener: TcpListener,
    config: GatewayConfig,
    handler: H,
    shutdown: impl Future<Output = ()>,
) -> Result<(), GatewayError>
where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<B>> + Send + 'static,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_read_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(config.header_read_timeout))
        .keep_alive_timeout(config.header_read_timeout);
    let graceful = GracefulShutdown::new();
    let connections = Arc::new(Mutex::new(Connections {
        total: 0,
        per_client: HashMap::new(),
    }));
    let mut shutdown = std::pin::pin!(shutdown);
    let mut accept_failures: u64 = 0;

    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => {
                    accept_failures = 0;
                    pair
                }
                Err(error) => {
                    // Out of file descriptors and the like: back off briefly, keep serving, and
                    // say so once a second at most (it can last, at 100 retries a second).
                    if accept_failures.is_multiple_of(100) {
                        tracing::warn!(listener = name, %error, failed_before = accept_failures, "accept failed; retrying every 10 ms");
                    }
                    accept_failures += 1;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Some(counted) = Connections::admit(&connections, peer.ip(), &config) else {
            tracing::debug!(listener = name, %peer, "connection refused: too many open connections");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let handler = handler.clone();
        let (builder, watcher) = (builder.clone(), graceful.watcher());
        let first_byte_timeout = config.header_read_timeout;
        tokio::spawn(async move {
            let _counted = counted;
            // hyper's header timeout starts at a request's first byte: a client that connects
            // and sends nothing would hold its socket (and a task) for as long as it likes.
            let mut first = [0u8; 1];
            match tokio::time::timeout(first_byte_timeout, stream.peek(&mut first)).await {
                Ok(Ok(read)) if read > 0 => {}
                // Silent past the timeout, closed, or failed: drop the connection.
                _ => return,
            }
            let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
                // Who sent it, for functions that are told (Spin's `spin-client-addr`).
                request
                    .extensions_mut()
                    .insert(meshwa_runtime::ClientAddr(peer));
                let answer = handler(request);
                async move { Ok::<_, Infallible>(answer.await) }
            });
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            if let Err(error) = watcher.watch(connection.into_owned()).await {
                tracing::debug!(listener = name, %peer, error = %error, "connection ended with an error");
            }
        });
    }

    drop(listener);
    tracing::info!(listener = name, grace = ?config.shutdown_grace, "shutting down: draining in-flight requests");
    match tokio::time::timeout(config.shutdown_grace, graceful.shutdown()).await {
        Ok(()) => tracing::info!(listener = name, "all connections drained"),
        Err(_) => tracing::warn!(
            listener = name,
            "grace period over; closing the remaining connections"
        ),
    }
    Ok(())
}

/// The gateway as a [`Trigger`]: HTTP requests on its listener start invocations of the routed
/// functions, and their responses stream back to the clients. The server runs it next to any
/// other trigger with [`meshwa_runtime::run_triggers`].
pub struct HttpTrigger {
    pub listener: TcpListener,
    pub routes: Arc<Routes>,
    pub metrics: Arc<Metrics>,
    pub config: GatewayConfig,
}

impl Trigger for HttpTrigger {
    fn kind(&self) -> &'static str {
        "http"
    }

    fn run(
        self: Box<Self>,
        shutdown: Shutdown,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<(), TriggerError>> + Send>> {
        let HttpTrigger {
            listener,
            routes,
            metrics,
            config,
        } = *self;
        Box::pin(async move {
            serve(listener, routes, metrics, config, shutdown)
                .await
                .map_err(|error| TriggerError {
                    kind: "http",
                    source: Box::new(error),
                })
        })
    }
}

/// Accounts for one finished invocation of `function`, however it was started (the gateway,
/// the control plane's `invoke`): its metrics, its one structured log line (with the error id
/// on failure) and its entry in the function's recent log. Returns the status it answered.
pub fn record_invocation(
    metrics: &Metrics,
    function: &Function,
    invocation: &str,
    started: Instant,
    result: Result<StatusCode, &InvokeError>,
) -> StatusCode {
    let id = function.id();
    let elapsed = started.elapsed();
    let duration_us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
    let status = match result {
        Ok(status) => {
            tracing::info!(
                target: "meshwa::invocation",
                invocation = %invocation,
                tenant = %id.tenant,
                app = %id.app,
                function = %id.function,
                status = status.as_u16(),
                duration_us,
                "ok"
            );
            status
        }
        Err(error) => {
            let status = status_for(error);
            metrics.failed(id, error.kind());
            tracing::warn!(
                target: "meshwa::invocation",
                invocation = %invocation,
                error_id = %invocation,
                tenant = %id.tenant,
                app = %id.app,
                function = %id.function,
                status = status.as_u16(),
                duration_us,
                kind = error.kind(),
                fault = ?error.fault(),
                error = %error,
                "failed"
            );
            status
        }
    };
    metrics.answered(id, status.as_u16(), elapsed.as_secs_f64());
    function.recent_log().push(
        invocation,
        RecentWhat::Invocation {
            status: status.as_u16(),
            duration_us,
            error: result.err().map(|error| error.kind().to_owned()),
        },
    );
    status
}

/// Runs one invocation for a trigger that is not HTTP (a schedule, a message:
/// `Function::deliver`) and accounts for it like a request ([`record_invocation`]). Returns the
/// status it answered.
pub async fn deliver_recorded(
    metrics: &Metrics,
    function: &Function,
    event: meshwa_runtime::Event,
) -> StatusCode {
    let invocation = event.invocation.clone();
    let started = Instant::now();
    match function.deliver(event).await {
        Ok(outcome) => {
            let status =
                StatusCode::from_u16(outcome.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            record_invocation(metrics, function, &invocation, started, Ok(status))
        }
        Err(error) => record_invocation(metrics, function, &invocation, started, Err(&error)),
    }
}

/// What is known of a streamed response when its head goes out, kept until its body ends.
struct Head {
    metrics: Arc<Metrics>,
    function: Arc<Function>,
    invocation: String,
    status: StatusCode,
    /// To the response head, as for every other invocation.
    duration: Duration,
    end: BodyEnd,
}

impl Head {
    /// Accounts for the invocation: `ok` if the body ended complete, `cut` if it ended with an
    /// error, `unfinished` if it was dropped before its end (the client went away).
    fn record(self, ended: BodyEnded) {
        let id = self.function.id();
        let duration_us = u64::try_from(self.duration.as_micros()).unwrap_or(u64::MAX);
        let failure = match (&ended, self.end.get()) {
            (BodyEnded::Complete | BodyEnded::Dropped, _) => None,
            (BodyEnded::Error, Some(Err(error))) => Some((error.kind(), Some(error))),
            // The body failed on its own (wasi-http's stream), with no guest error to name.
            (BodyEnded::Error, _) => Some(("guest_error", None)),
        };
        match failure {
            None => tracing::info!(
                target: "meshwa::invocation",
                invocation = %self.invocation,
                tenant = %id.tenant,
                app = %id.app,
                function = %id.function,
                status = self.status.as_u16(),
                duration_us,
                body = if matches!(ended, BodyEnded::Dropped) { "unfinished" } else { "complete" },
                "ok"
            ),
            Some((kind, error)) => {
                self.metrics.failed(id, kind);
                tracing::warn!(
                    target: "meshwa::invocation",
                    invocation = %self.invocation,
                    error_id = %self.invocation,
                    tenant = %id.tenant,
                    app = %id.app,
                    function = %id.function,
                    status = self.status.as_u16(),
                    duration_us,
                    kind,
                    fault = ?error.map(InvokeError::fault),
                    error = %error.map(ToString::to_string).unwrap_or_default(),
                    "cut: the function failed after sending the response head"
                );
            }
        }
        self.metrics
            .answered(id, self.status.as_u16(), self.duration.as_secs_f64());
        self.function.recent_log().push(
            &self.invocation,
            RecentWhat::Invocation {
                status: self.status.as_u16(),
                duration_us,
                error: failure.map(|(kind, _)| kind.to_owned()),
            },
        );
    }
}

/// How a streamed body ended, as the gateway saw it.
enum BodyEnded {
    Complete,
    Error,
    Dropped,
}

/// A streamed response body that accounts for its invocation when it ends.
struct AccountedBody {
    inner: ResponseBody,
    head: Option<Head>,
}

impl hyper::body::Body for AccountedBody {
    type Data = bytes::Bytes;
    type Error = <ResponseBody as hyper::body::Body>::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        let polled = std::pin::Pin::new(&mut self.inner).poll_frame(cx);
        let ended = match &polled {
            std::task::Poll::Ready(None) => Some(BodyEnded::Complete),
            std::task::Poll::Ready(Some(Err(_))) => Some(BodyEnded::Error),
            _ => None,
        };
        if let Some(ended) = ended
            && let Some(head) = self.head.take()
        {
            head.record(ended);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for AccountedBody {
    fn drop(&mut self) {
        if let Some(head) = self.head.take() {
            head.record(BodyEnded::Dropped);
        }
    }
}

/// Routes and runs one request; never fails (failures become responses).
pub async fn dispatch(
    router: &Router,
    metrics: &Arc<Metrics>,
    request: Request<Incoming>,
) -> Response<ResponseBody> {
    let started = Instant::now();
    let invocation = next_invocation_id();
    let path = request.uri().path().to_owned();
    let Some(function) = router.lookup(&path) else {
        metrics.unrouted();
        tracing::info!(
            target: "meshwa::invocation",
            invocation = %invocation,
            status = 404,
            path = %truncate(&path, 200),
            "no route"
        );
        return error_response(
            StatusCode::NOT_FOUND,
            "not_found",
            "no function is routed at this path",
            &invocation,
        );
    };
    match function.handle(request, &invocation).await {
        Ok(mut response) => {
            let Some(end) = response.extensions_mut().remove::<BodyEnd>() else {
                // The body was complete with the head: the outcome is known now.
                record_invocation(
                    metrics,
                    function,
                    &invocation,
                    started,
                    Ok(response.status()),
                );
                return response;
            };
            // The guest is still producing the body: account once it has ended, so that a
            // body cut by a failing guest is logged as cut, not as the 200 its head said.
            let head = Head {
                metrics: metrics.clone(),
                function: function.clone(),
                invocation,
                status: response.status(),
                duration: started.elapsed(),
                end,
            };
            response.map(|inner| {
                AccountedBody {
                    inner,
                    head: Some(head),
                }
                .boxed_unsync()
            })
        }
        Err(error) => {
            let status = record_invocation(metrics, function, &invocation, started, Err(&error));
            error_response(status, error.kind(), &public_message(&error), &invocation)
        }
    }
}

/// A process-unique, restart-unique id: the process start time in microseconds and a counter.
pub fn next_invocation_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    static EPOCH: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let epoch = *EPOCH.get_or_init(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(0)
    });
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{:013x}-{n:x}", epoch & 0x1f_ffff_ffff_ffff)
}

fn truncate(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((i, _)) => &text[..i],
        None => text,
    }
}
