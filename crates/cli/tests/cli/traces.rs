//! Traces (issue 20, item 1): spans exported with OTLP to a test receiver on loopback.

use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message as _;

use super::*;

/// An OTLP/HTTP (protobuf) receiver on a loopback port: every span it is sent, kept. Stops when
/// dropped.
struct Receiver {
    addr: SocketAddr,
    spans: Arc<Mutex<Vec<Span>>>,
    stop: Arc<AtomicBool>,
}

impl Receiver {
    fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let spans = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (kept, stopped) = (spans.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stopped.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let kept = kept.clone();
                        std::thread::spawn(move || serve_exports(stream, &kept));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Receiver { addr, spans, stop }
    }

    fn endpoint(&self) -> String {
        format!("http://{}/v1/traces", self.addr)
    }

    /// The spans of `trace_id` once there are `count` of them (10 s at most).
    fn trace(&self, trace_id: &[u8], count: usize) -> Vec<Span> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let spans: Vec<Span> = self
                .spans
                .lock()
                .unwrap()
                .iter()
                .filter(|s| s.trace_id == trace_id)
                .cloned()
                .collect();
            if spans.len() >= count || Instant::now() > deadline {
                return spans;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Answers OTLP export requests on one connection (keep-alive) until it closes.
fn serve_exports(stream: TcpStream, kept: &Mutex<Vec<Span>>) {
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut reader = BufReader::new(stream);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut length = 0;
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 {
                return;
            }
            if header == "\r\n" {
                break;
            }
            if let Some(value) = header.to_ascii_lowercase().strip_prefix("content-length:") {
                length = value.trim().parse().unwrap();
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
        let request = ExportTraceServiceRequest::decode(body.as_slice()).unwrap();
        for resource in request.resource_spans {
            for scope in resource.scope_spans {
                kept.lock().unwrap().extend(scope.spans);
            }
        }
        reader
            .get_mut()
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n")
            .unwrap();
    }
}

fn attribute(span: &Span, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref()?.value.as_ref())
        .map(|value| match value {
            Value::StringValue(s) => s.clone(),
            Value::IntValue(i) => i.to_string(),
            other => format!("{other:?}"),
        })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub(super) const ORDER: &[u8] = b"sku,qty,unit_price_cents\nwidget-1,2,150\nbolt-9,10,25\n";

/// The five-function `initech` chain: one trace, the public function's span the child of the
/// caller's `traceparent`, the four in-process calls (invoke and `*.internal` wasi:http) its
/// children; without a `traceparent`, a new trace with the same shape.
#[test]
fn a_chain_of_five_functions_is_one_trace_continuing_the_callers() {
    let receiver = Receiver::start();
    let dir = tempfile::tempdir().unwrap();
    let mut command = Command::new(BIN);
    command
        .env("MESHWA_CACHE_DIR", programs::COMPILE_CACHE_DIR)
        // Send batches every 100 ms instead of every 5 s.
        .env("OTEL_BSP_SCHEDULE_DELAY", "100");
    let served = spawn_serve(
        command,
        &dir.path().join("data"),
        &[programs::example_manifest("initech-orders")],
        &["--otlp-endpoint", &receiver.endpoint()],
    );

    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller = "00f067aa0ba902b7";
    let (status, body) = http_with(
        served.addr,
        "POST",
        "/initech/orders",
        &format!("traceparent: 00-{trace_id}-{caller}-01\r\n"),
        ORDER,
    );
    assert_eq!(status, 200, "{body}");
    let trace_bytes: Vec<u8> = (0..16)
        .map(|i| u8::from_str_radix(&trace_id[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    let spans = receiver.trace(&trace_bytes, 5);
    let names: Vec<&str> = spans.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(spans.len(), 5, "{names:?}\n{}", served.log());

    let ingest = spans
        .iter()
        .find(|s| s.name == "initech/orders/ingest")
        .unwrap_or_else(|| panic!("no span of ingest in {names:?}"));
    assert_eq!(
        hex(&ingest.parent_span_id),
        caller,
        "continues the caller's trace"
    );
    assert_eq!(
        attribute(ingest, "meshwa.tenant").as_deref(),
        Some("initech")
    );
    assert_eq!(
        attribute(ingest, "http.response.status_code").as_deref(),
        Some("200")
    );
    for callee in ["parse", "validate", "price", "render"] {
        let name = format!("initech/orders/{callee}");
        let span = spans
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no span of {callee} in {names:?}"));
        assert_eq!(
            span.parent_span_id, ingest.span_id,
            "{callee} is a child of ingest"
        );
        assert!(
            span.start_time_unix_nano >= ingest.start_time_unix_nano
                && span.end_time_unix_nano <= ingest.end_time_unix_nano,
            "{callee} runs within ingest"
        );
    }
    for span in &spans {
        assert!(
            span.events.iter().any(|e| e.name == "instantiated"),
            "{} has no instantiation event",
            span.name
        );
        assert_eq!(
            attribute(span, "meshwa.invocation"),
            attribute(ingest, "meshwa.invocation"),
            "one invocation id for the whole chain"
        );
    }

    // Without a traceparent: a trace of its own, with the same shape.
    let (status, _) = http(served.addr, "POST", "/initech/orders", ORDER);
    assert_eq!(status, 200);
    let deadline = Instant::now() + Duration::from_secs(10);
    let root = loop {
        let root = receiver
            .spans
            .lock()
            .unwrap()
            .iter()
            .find(|s| s.name == "initech/orders/ingest" && s.parent_span_id.is_empty())
            .cloned();
        if root.is_some() || Instant::now() > deadline {
            break root.expect("no root span for a request without traceparent");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_ne!(root.trace_id, trace_bytes);
    assert_eq!(receiver.trace(&root.trace_id, 5).len(), 5);
}

/// `--trace-sample 0`: requests without a `traceparent` export nothing, not even their
/// in-process callees as traces of their own; a caller's sampled `traceparent` is still followed,
/// with every span of its chain.
#[test]
fn an_unsampled_trace_exports_no_span_and_a_sampled_caller_is_followed() {
    let receiver = Receiver::start();
    let dir = tempfile::tempdir().unwrap();
    let mut command = Command::new(BIN);
    command
        .env("MESHWA_CACHE_DIR", programs::COMPILE_CACHE_DIR)
        .env("OTEL_BSP_SCHEDULE_DELAY", "100");
    let served = spawn_serve(
        command,
        &dir.path().join("data"),
        &[programs::example_manifest("initech-orders")],
        &[
            "--otlp-endpoint",
            &receiver.endpoint(),
            "--trace-sample",
            "0",
        ],
    );
    for _ in 0..10 {
        let (status, body) = http(served.addr, "POST", "/initech/orders", ORDER);
        assert_eq!(status, 200, "{body}");
    }
    let trace_id = "0af7651916cd43dd8448eb211c80319c";
    let (status, body) = http_with(
        served.addr,
        "POST",
        "/initech/orders",
        &format!("traceparent: 00-{trace_id}-b7ad6b7169203331-01\r\n"),
        ORDER,
    );
    assert_eq!(status, 200, "{body}");
    let trace_bytes: Vec<u8> = (0..16)
        .map(|i| u8::from_str_radix(&trace_id[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    assert_eq!(receiver.trace(&trace_bytes, 5).len(), 5);
    // Batches leave every 100 ms in the order spans ended: give stragglers three more.
    std::thread::sleep(Duration::from_millis(300));
    let names: Vec<String> = receiver
        .spans
        .lock()
        .unwrap()
        .iter()
        .filter(|s| s.trace_id != trace_bytes)
        .map(|s| s.name.clone())
        .collect();
    assert!(names.is_empty(), "unsampled requests exported {names:?}");
}
