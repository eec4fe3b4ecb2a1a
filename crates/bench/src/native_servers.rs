//! Native servers the benchmarks compare against, run as processes of their own:
//! - `meshwa-bench native-hello`: answers like the `hello` guest, the ceiling that
//!   `bench/http.sh` compares against. It uses the same hyper and tokio as the gateway.
//! - `meshwa-bench json-echo`: the microservice of the `hops` baseline; parses a JSON document
//!   with a payload string and answers its length as JSON.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use clap::Args;
use http_body_util::{BodyExt, Full};

#[derive(Args)]
pub struct ListenArgs {
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
}

/// The document the `hops` baseline posts to `json-echo`.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct JsonRequest {
    pub id: u64,
    pub payload: String,
}

/// `json-echo`'s answer.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct JsonAnswer {
    pub id: u64,
    pub len: usize,
}

pub fn native_hello(args: ListenArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(args.listen).await?;
        println!(
            "native-hello listening on http://{}",
            listener.local_addr()?
        );
        let builder =
            hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
        loop {
            let (stream, _) = listener.accept().await?;
            let _ = stream.set_nodelay(true);
            let builder = builder.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(|request: http::Request<_>| async move {
                    let body = format!(
                        "hello from meshwa: {} (request 1 of this instance)\n",
                        request.uri().path()
                    );
                    Ok::<_, Infallible>(
                        http::Response::builder()
                            .header("content-type", "text/plain")
                            .body(Full::new(Bytes::from(body)))
                            .unwrap_or_default(),
                    )
                });
                let _ = builder
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    })
}

pub fn json_echo(args: ListenArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(args.listen).await?;
        println!("json-echo listening on http://{}", listener.local_addr()?);
        loop {
            let (stream, _) = listener.accept().await?;
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    |request: http::Request<hyper::body::Incoming>| async move {
                        let body = request.into_body().collect().await?.to_bytes();
                        let answer = match serde_json::from_slice::<JsonRequest>(&body) {
                            Ok(document) => serde_json::to_vec(&JsonAnswer {
                                id: document.id,
                                len: document.payload.len(),
                            })
                            .unwrap_or_default(),
                            Err(_) => b"{}".to_vec(),
                        };
                        Ok::<_, hyper::Error>(http::Response::new(Full::new(Bytes::from(answer))))
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    })
}

/// A stand-in for an OpenTelemetry collector: takes every OTLP/HTTP export (any request), reads
/// its body and answers 200 with an empty body, which the exporter reads as "all accepted". It
/// counts the bytes it received, printed on each 10th export to stderr.
pub fn otlp_sink(args: ListenArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let received = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let exports = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(args.listen).await?;
        println!("otlp-sink listening on http://{}", listener.local_addr()?);
        loop {
            let (stream, _) = listener.accept().await?;
            let (received, exports) = (received.clone(), exports.clone());
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    move |request: http::Request<hyper::body::Incoming>| {
                        let (received, exports) = (received.clone(), exports.clone());
                        async move {
                            use std::sync::atomic::Ordering::Relaxed;
                            let body = request.into_body().collect().await?.to_bytes();
                            let total =
                                received.fetch_add(body.len() as u64, Relaxed) + body.len() as u64;
                            let n = exports.fetch_add(1, Relaxed) + 1;
                            if n % 10 == 0 {
                                eprintln!("otlp-sink: {n} exports, {total} bytes");
                            }
                            Ok::<_, hyper::Error>(http::Response::new(Full::new(Bytes::new())))
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    })
}
