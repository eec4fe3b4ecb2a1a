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
//! - **Head sampling before the span**: whether a new trace (a request without `traceparent`) is
//!   kept is decided here, with [`sample_new_traces`]'s ratio, before any span exists: an
//!   unsampled `tracing` span costs nearly what a sampled one does (the registry's slot,
//!   tracing-opentelemetry's span data, every attribute formatted), because the SDK's sampler is
//!   asked only when the span is built. An unsampled invocation has the disabled span, and so do
//!   its in-process callees (they are not new roots). A remote parent's own sampled flag is
//!   followed by the exporter (`ParentBased`).
//! - **Off by default, free when off**: the spans have the target [`TARGET`], which nothing but
//!   the exporter's layer listens to (the log output filters it out). With no exporter, each
//!   span macro is a disabled callsite: one cached check, no allocation, no header parsing.

use std::sync::atomic::{AtomicU64, Ordering};

use opentelemetry_http::{HeaderExtractor, HeaderInjector};
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::FunctionId;

/// The `tracing` target of invocation spans and their events: what an exporter layer selects,
/// and what log output leaves out.
pub const TARGET: &str = "meshwa::span";

/// Which new traces get spans: those whose random draw is below this; `u64::MAX` keeps all.
static NEW_TRACE_THRESHOLD: AtomicU64 = AtomicU64::new(u64::MAX);

/// Sets the share of new traces (requests without a `traceparent`) that get spans, from 0 (none)
/// to 1 (all, the default); out-of-range ratios are clamped. The binary sets it with its exporter.
pub fn sample_new_traces(ratio: f64) {
    let threshold = if ratio >= 1.0 {
        u64::MAX
    } else if ratio > 0.0 {
        // Exact enough: the draw is uniform over u64, so the share kept is the ratio ± 2^-53.
        (ratio * u64::MAX as f64) as u64
    } else {
        0
    };
    NEW_TRACE_THRESHOLD.store(threshold, Ordering::Relaxed);
}

/// Whether a new trace is kept.
fn sampled_new_trace() -> bool {
    match NEW_TRACE_THRESHOLD.load(Ordering::Relaxed) {
        u64::MAX => true,
        0 => false,
        threshold => fastrand::u64(..) < threshold,
    }
}

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

/// The span of one invocation of `id` (`invocation` is its chain's id), under `parent`: the
/// disabled span if nothing listens, or its trace is not sampled.
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
        // Not `span!(parent: caller)`: a disabled parent would make the callee a new root.
        Parent::Local(caller) if caller.is_disabled() => Span::none(),
        Parent::Local(caller) => span!(parent: caller,),
        Parent::Root if !enabled() || !sampled_new_trace() => Span::none(),
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

#[cfg(test)]
mod tests {
    use super::*;

    /// One test for the process-wide ratio, so no other test sees it change.
    #[test]
    fn the_ratio_of_new_traces_kept_is_the_one_set() {
        sample_new_traces(0.0);
        assert!((0..10_000).all(|_| !sampled_new_trace()));
        sample_new_traces(0.25);
        let kept = (0..10_000).filter(|_| sampled_new_trace()).count();
        // Binomial(10,000, 0.25): standard deviation 43; eight of them either side.
        assert!((2_150..=2_850).contains(&kept), "kept {kept} of 10,000");
        sample_new_traces(7.0);
        assert!((0..10_000).all(|_| sampled_new_trace()));
        sample_new_traces(1.0);
    }
}
