//! HTTP/1.1 plumbing shared by the servers, the gateway's client and the load generator.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tax_logic::ServiceError;
use tokio::net::TcpListener;

pub type Body = Full<Bytes>;
pub type HttpClient = Client<HttpConnector, Body>;

/// Request bodies above this are refused: a checkout is a few KiB.
const MAX_REQUEST_BODY: usize = 1024 * 1024;

/// A keep-alive client that pools connections per host, as a service mesh's sidecar-less client
/// would.
pub fn client() -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(1024)
        .build(connector)
}

/// Serves HTTP/1.1 with keep-alive on `listen`, every connection on its own task, forever.
pub async fn serve<H, F>(listen: SocketAddr, handler: H) -> anyhow::Result<()>
where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    let listener = TcpListener::bind(listen).await?;
    eprintln!("listening on http://{}", listener.local_addr()?);
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Typically out of file descriptors: back off instead of spinning.
                eprintln!("accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // Small responses must leave at once, not wait for Nagle.
        let _ = stream.set_nodelay(true);
        let handler = handler.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let response = handler(req);
                async move { Ok::<_, Infallible>(response.await) }
            });
            // A client closing its connection mid-request is no error of ours.
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// The body of a request, refused above [`MAX_REQUEST_BODY`].
pub async fn read_body(req: Request<Incoming>) -> Result<Bytes, ServiceError> {
    Limited::new(req.into_body(), MAX_REQUEST_BODY)
        .collect()
        .await
        .map(|collected| collected.to_bytes())
        .map_err(|e| ServiceError::bad_request(format!("cannot read the request body: {e}")))
}

pub fn respond(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Body> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

pub fn html(body: String) -> Response<Body> {
    respond(StatusCode::OK, "text/html; charset=utf-8", body)
}

pub fn json(body: Vec<u8>) -> Response<Body> {
    respond(StatusCode::OK, "application/json", body)
}

pub fn error(err: &ServiceError) -> Response<Body> {
    let status =
        StatusCode::from_u16(err.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    respond(status, "application/json", err.to_json())
}

pub fn plain(status: StatusCode, text: &'static str) -> Response<Body> {
    respond(status, "text/plain; charset=utf-8", text)
}
