//! Prometheus metrics, served in text format at `/metrics` on the admin listener.
//!
//! Built on `prometheus-client` (the Prometheus project's Rust client), not a hand-written
//! exporter. Per-request series are labelled by tenant, app and function; names are validated
//! (`[a-z0-9-]`), so label cardinality is bounded by what is deployed, never by clients (an
//! unmatched path is counted without its path).

use std::sync::Arc;

use meshwa_manifest::FunctionId;
use meshwa_runtime::{PhaseTotals, RuntimeStats};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    tenant: String,
    app: String,
    function: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    tenant: String,
    app: String,
    function: String,
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FunctionLabels {
    tenant: String,
    app: String,
    function: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CacheLabels {
    outcome: String,
}

/// Where a snapshot of the runtime comes from at scrape time.
pub type StatsSource = Arc<dyn Fn() -> RuntimeStats + Send + Sync>;

/// Where each function's time went (`meshwa serve --explain`), read at scrape time.
pub type PhaseSource = Arc<dyn Fn() -> Vec<(FunctionId, PhaseTotals)> + Send + Sync>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabels {
    tenant: String,
    app: String,
    function: String,
    phase: &'static str,
}

/// Exports the runtime's per-function phase totals as counters. They are kept by the runtime
/// (atomics on each function, no allocation per invocation) and only read here, so this is a
/// collector rather than a family the request path updates.
struct PhaseCollector(PhaseSource);

impl std::fmt::Debug for PhaseCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PhaseCollector")
    }
}

impl Collector for PhaseCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let phases = (self.0)();
        let labels = |id: &FunctionId, phase: &'static str| PhaseLabels {
            tenant: id.tenant.to_string(),
            app: id.app.to_string(),
            function: id.function.to_string(),
            phase,
        };
        let mut family = encoder.encode_descriptor(
            "phase_seconds",
            "Time invocations spent in each step of the instance lifecycle, by function \
             (with --explain)",
            None,
            MetricType::Counter,
        )?;
        for (id, totals) in &phases {
            for (phase, time) in [
                ("admission", totals.admission),
                ("instantiate", totals.instantiate),
                ("guest", totals.guest),
                ("key_value", totals.key_value),
                ("calls", totals.calls),
                ("other_host", totals.other_host),
                ("teardown", totals.teardown),
            ] {
                ConstCounter::new(time.as_secs_f64())
                    .encode(family.encode_family(&labels(id, phase))?)?;
            }
        }
        let mut family = encoder.encode_descriptor(
            "phase_events",
            "Invocations accounted for (phase \"invocations\"), key-value calls, calls into the \
             host, and minor page faults while instantiating and tearing down, by function (with --explain)",
            None,
            MetricType::Counter,
        )?;
        for (id, totals) in &phases {
            for (phase, count) in [
                ("invocations", totals.invocations),
                ("key_value_calls", totals.key_value_calls),
                ("host_calls", totals.host_calls),
                ("instantiate_faults", totals.instantiate_faults),
                ("teardown_faults", totals.teardown_faults),
            ] {
                ConstCounter::new(count).encode(family.encode_family(&labels(id, phase))?)?;
            }
        }
        Ok(())
    }
}

pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    errors: Family<ErrorLabels, Counter>,
    duration: Family<FunctionLabels, Histogram>,
    unrouted: Counter,
    live_instances: Gauge,
    instance_slots: Gauge,
    pooling: Gauge,
    mpk: Gauge,
    functions_loaded: Family<CacheLabels, Gauge>,
    stats: StatsSource,
}

impl Metrics {
    pub fn new(stats: StatsSource) -> Metrics {
        let mut registry = Registry::with_prefix("meshwa");
        let requests = Family::<RequestLabels, Counter>::default();
        let errors = Family::<ErrorLabels, Counter>::default();
        let duration = Family::<FunctionLabels, Histogram>::new_with_constructor(|| {
            // 50 µs to about 1.6 s.
            Histogram::new(exponential_buckets(0.000_05, 2.0, 16))
        });
        let unrouted = Counter::default();
        let (live_instances, instance_slots, pooling, mpk) = (
            Gauge::default(),
            Gauge::default(),
            Gauge::default(),
            Gauge::default(),
        );
        let functions_loaded = Family::<CacheLabels, Gauge>::default();
        registry.register(
            "requests",
            "Requests answered, by function and status",
            requests.clone(),
        );
        registry.register(
            "errors",
            "Failed invocations, by function and kind",
            errors.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Time to the response head, by function",
            duration.clone(),
        );
        registry.register(
            "unrouted_requests",
            "Requests no route matched",
            unrouted.clone(),
        );
        registry.register(
            "live_instances",
            "Instances alive now",
            live_instances.clone(),
        );
        registry.register(
            "instance_slots",
            "Instance slots (pool size)",
            instance_slots.clone(),
        );
        registry.register(
            "pooling_allocator",
            "1 if the pooling allocator runs",
            pooling.clone(),
        );
        registry.register(
            "mpk_enabled",
            "1 if memory protection keys are in use",
            mpk.clone(),
        );
        registry.register(
            "functions_loaded",
            "Functions loaded, by where their machine code came from (cache hit or compiled)",
            functions_loaded.clone(),
        );
        Metrics {
            registry,
            requests,
            errors,
            duration,
            unrouted,
            live_instances,
            instance_slots,
            pooling,
            mpk,
            functions_loaded,
            stats,
        }
    }

    pub(crate) fn answered(&self, id: &FunctionId, status: u16, seconds: f64) {
        self.requests
            .get_or_create(&RequestLabels {
                tenant: id.tenant.to_string(),
                app: id.app.to_string(),
                function: id.function.to_string(),
                status,
            })
            .inc();
        self.duration
            .get_or_create(&FunctionLabels {
                tenant: id.tenant.to_string(),
                app: id.app.to_string(),
                function: id.function.to_string(),
            })
            .observe(seconds);
    }

    pub(crate) fn failed(&self, id: &FunctionId, kind: &str) {
        self.errors
            .get_or_create(&ErrorLabels {
                tenant: id.tenant.to_string(),
                app: id.app.to_string(),
                function: id.function.to_string(),
                kind: kind.to_owned(),
            })
            .inc();
    }

    pub(crate) fn unrouted(&self) {
        self.unrouted.inc();
    }

    /// Also exports where each function's time went, read from `source` at scrape time.
    pub fn with_phases(mut self, source: PhaseSource) -> Metrics {
        self.registry
            .register_collector(Box::new(PhaseCollector(source)));
        self
    }

    /// The metrics in Prometheus text format.
    pub fn encode(&self) -> String {
        let stats = (self.stats)();
        let as_i64 = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        self.live_instances.set(as_i64(stats.live_instances));
        self.instance_slots.set(as_i64(stats.instance_slots));
        self.pooling.set(i64::from(stats.pooling));
        self.mpk.set(i64::from(stats.mpk));
        self.functions_loaded
            .get_or_create(&CacheLabels {
                outcome: "hit".into(),
            })
            .set(as_i64(stats.loaded_from_cache));
        self.functions_loaded
            .get_or_create(&CacheLabels {
                outcome: "compiled".into(),
            })
            .set(as_i64(stats.loaded_compiled));
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}
