//! What the binary reports about itself: log lines on stderr and, when asked, traces exported with
//! OTLP.
//!
//! - **Logs**: `RUST_LOG` (default `info`), written by a background thread so a request never
//!   waits on stderr, and not lossy (under a flood the writer applies back-pressure).
//! - **Traces** (`meshwa serve --otlp-endpoint URL`): the runtime's invocation spans (target
//!   `meshwa::span`, see `meshwa_runtime::SPAN_TARGET`) go through `tracing-opentelemetry` to
//!   OpenTelemetry's SDK, which batches them on a thread of its own and sends them as OTLP
//!   (HTTP, protobuf) to the operator's collector; W3C trace context is the propagator. Only the
//!   operator's collector receives spans. Without the flag no exporter layer exists, the spans'
//!   target is filtered out of the logs, and every span callsite stays disabled (free).

use anyhow::Context;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use tracing_subscriber::Layer as _;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

/// Where and how much to export (`meshwa serve`'s flags).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct TraceArgs {
    /// Export a span per invocation (in-process calls as child spans) with OTLP over HTTP to this
    /// URL, e.g. `http://127.0.0.1:4318/v1/traces`. Off when not given.
    #[arg(long, env = "MESHWA_OTLP_ENDPOINT", value_name = "URL")]
    pub otlp_endpoint: Option<String>,
    /// Share of new traces exported, from 0 to 1. A request whose `traceparent` says whether
    /// its trace is sampled is followed in that.
    #[arg(long, default_value_t = 1.0, value_parser = parse_ratio)]
    pub trace_sample: f64,
}

fn parse_ratio(text: &str) -> Result<f64, String> {
    let ratio: f64 = text.parse().map_err(|e| format!("{e}"))?;
    if (0.0..=1.0).contains(&ratio) {
        Ok(ratio)
    } else {
        Err("must be between 0 and 1".into())
    }
}

/// Keeps logging and trace export running; [`Telemetry::shutdown`] sends the spans not sent yet.
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
    _log_writer: tracing_appender::non_blocking::WorkerGuard,
}

impl Telemetry {
    /// Sends the spans still batched (bounded by the SDK's export timeout).
    pub fn shutdown(self) {
        if let Some(provider) = &self.provider
            && let Err(error) = provider.shutdown()
        {
            eprintln!("meshwa: flushing traces failed: {error}");
        }
    }
}

/// Installs the log output, and the trace exporter if `traces` names an endpoint. Call before
/// any async runtime starts (the exporter's HTTP client is a blocking one on the SDK's thread).
pub fn init(traces: Option<&TraceArgs>) -> anyhow::Result<Telemetry> {
    let (writer, log_writer) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .finish(std::io::stderr());
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"))
        // Spans are for the exporter, never log lines.
        .add_directive(
            format!("{}=off", meshwa_runtime::SPAN_TARGET)
                .parse()
                .context("the span target's filter")?,
        );
    let logs = tracing_subscriber::fmt::layer()
        .with_writer(writer)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_filter(filter);

    let provider = match traces.and_then(|t| t.otlp_endpoint.as_ref().map(|url| (t, url))) {
        None => None,
        Some((traces, endpoint)) => {
            meshwa_runtime::sample_new_traces(traces.trace_sample);
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_endpoint(endpoint.clone())
                .build()
                .with_context(|| format!("cannot export traces to {endpoint}"))?;
            opentelemetry::global::set_text_map_propagator(
                opentelemetry_sdk::propagation::TraceContextPropagator::new(),
            );
            Some(
                SdkTracerProvider::builder()
                    .with_batch_exporter(exporter)
                    // New traces are sampled by the runtime before their span exists (see
                    // `meshwa_runtime::sample_new_traces`); a remote parent's flag is followed.
                    .with_sampler(Sampler::ParentBased(Box::new(Sampler::AlwaysOn)))
                    .with_resource(
                        opentelemetry_sdk::Resource::builder()
                            .with_service_name("meshwa")
                            .build(),
                    )
                    .build(),
            )
        }
    };
    let spans = provider.as_ref().map(|provider| {
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("meshwa"))
            .with_location(false)
            .with_threads(false)
            .with_tracked_inactivity(false)
            .with_level(false)
            .with_target(false)
            .with_filter(
                tracing_subscriber::filter::Targets::new()
                    .with_target(meshwa_runtime::SPAN_TARGET, tracing::Level::INFO),
            )
    });
    tracing_subscriber::registry()
        .with(logs)
        .with(spans)
        .try_init()
        .context("cannot install the log output")?;
    Ok(Telemetry {
        provider,
        _log_writer: log_writer,
    })
}
