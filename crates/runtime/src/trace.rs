//! Spans of invocations, for distributed traces (OpenTelemetry through `tracing`).
//!
//! - **One span per invocation**, named `tenant/app/function`, with the tenant, app, function
//!   and invocation id as attributes, the answer's status or the failure's kind recorded when it
//!   is known, and an `instantiated` event. It lives as long as the instance (a streamed body
//!   included): `Instance::run` runs inside it.
//! - **In-process calls are child spans**, whatever their kind (`*.internal` wasi:http, invoke,
//!   host-linked typed calls): a callee's [`CallContext`](crate::calls::CallContext) carries its
//!   caller's span as the parent, explicitly, so it does not matter which task polls the callee.
//!   A composed typed call runs inside the caller's instance with no host code on its path, so it
//!   has no span of its own: its time is the caller's.
//! - **W3C trace context**: a `traceparent` arriving with a request is continued (the invocation
//!   becomes a child of the caller's span), and outbound HTTP requests carry the invocation's.
//!   Extraction and injection use the global propagator, which the binary sets when it exports
//!   traces; the runtime needs only the OpenTelemetry API.
//! - **Off by default, free when off**: the spans have the target [`TARGET`], which nothing but
//!   the exporter's layer listens to (the log output filters it out). With no exporter, each
//!   span macro is a disabled callsite: one cached check, no allocation, no header parsing.

use opentelemetry_http::{HeaderExtractor, HeaderInjector};
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::FunctionId;

/// The `tracing` target of invocation spans and their events: what an exporter layer selects,
/// and what log output leaves out.
pub const TARGET: &str = "meshwa::span";

/// Where an invocation's span hangs in its trace.
#[derive(Clone, Default)]
pub(crate) enum Parent {
    /// It starts a trace.
    #[default]
    Root,
    /// It continues a trace from outside (a `traceparent` header).
    Remote(opentelemetry::Context),
    /// It is an in-process call of the invocation with this span.
    Local(Span),
}

/// Whether anything listens to invocation spans (an exporter is installed and not filtered out).
pub(crate) fn enabled() -> bool {
    tracing::enabled!(target: TARGET, tracing::Level::INFO)
}

/// The parent a request's `traceparent` (and `tracestate`) names, if spans are wanted and the
/// header is valid; otherwise a new trace.
pub(crate) fn remote_parent(headers: &http::HeaderMap) -> Parent {
    if !enabled() || !headers.contains_key("traceparent") {
        return Parent::Root;
    }
    let context = opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.extract(&HeaderExtractor(headers))
    });
    use opentelemetry::trace::TraceContextExt;
    if context.span().span_context().is_valid() {
        Parent::Remote(context)
    } else {
        Parent::Root
    }
}

/// The span of one invocation of `id` (`invocation` is its chain's id), under `parent`.
pub(crate) fn invocation_span(id: &FunctionId, invocation: &str, parent: &Parent) -> Span {
    macro_rules! span {
        ($($parent:tt)*) => {
            tracing::info_span!(
                target: TARGET,
                $($parent)*
                "invocation",
                otel.name = %id,
                otel.kind = "server",
                otel.status_code = tracing::field::Empty,
                "meshwa.tenant" = %id.tenant,
                "meshwa.app" = %id.app,
                "meshwa.function" = %id.function,
                "meshwa.invocation" = invocation,
                "http.response.status_code" = tracing::field::Empty,
                "error.type" = tracing::field::Empty,
            )
        };
    }
    match parent {
        Parent::Local(caller) => span!(parent: caller,),
        Parent::Root => span!(parent: None,),
        Parent::Remote(context) => {
            let span = span!(parent: None,);
            if !span.is_disabled() {
                // Only fails once the span has started, which it has not.
                let _ = span.set_parent(context.clone());
            }
            span
        }
    }
}

/// Records how an invocation ended on its span.
pub(crate) fn record_outcome(span: &Span, outcome: Result<u16, &str>) {
    if span.is_disabled() {
        return;
    }
    match outcome {
        Ok(status) => {
            span.record("http.response.status_code", status);
        }
        Err(kind) => {
            span.record("error.type", kind);
            span.record("otel.status_code", "ERROR");
        }
    }
}

/// Adds the invocation's trace context (`traceparent`) to an outbound request's headers.
pub(crate) fn inject(span: &Span, headers: &mut http::HeaderMap) {
    if span.is_disabled() {
        return;
    }
    let context = span.context();
    opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.inject_context(&context, &mut HeaderInjector(headers));
    });
}
