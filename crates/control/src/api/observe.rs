//! What the dashboard draws: an app's traffic over the last minutes, its recent call chains
//! with their spans, and (for the operator) the instance pool. The data is kept by the runtime
//! (`meshwa_runtime::Traffic`, `RecentTraces`); these handlers only select what the caller may
//! see and shape it.

use meshwa_api::{
    ClusterView, FunctionTraffic, PoolStatus, Trace, TraceList, TraceSpan, TrafficReport,
};
use meshwa_runtime::ChainTrace;

use super::{ApiError, Call, Reply, ok};

/// Most chains one call answers, unless `?limit=` says fewer.
const DEFAULT_TRACE_LIMIT: usize = 20;

/// `GET /v1/tenants/{tenant}/apps/{app}/traffic`.
pub(super) async fn traffic(call: Call<'_>) -> Reply {
    let app = call.visible_app().await?;
    let functions = app
        .functions
        .iter()
        .map(|function| FunctionTraffic {
            function: function.id().function.to_string(),
            live_instances: function.live_instances(),
            points: function
                .traffic()
                .points()
                .into_iter()
                .map(|point| meshwa_api::TrafficPoint {
                    start_ms: point.start_ms,
                    requests: point.requests,
                    errors: point.errors,
                    p50_us: point.p50_us,
                    p90_us: point.p90_us,
                    p99_us: point.p99_us,
                })
                .collect(),
        })
        .collect();
    ok(&TrafficReport {
        interval_s: meshwa_runtime::TRAFFIC_INTERVAL.as_secs(),
        functions,
    })
}

/// `GET /v1/tenants/{tenant}/apps/{app}/traces[?function=F][&invocation=ID][&limit=N]`: the
/// latest chains started by the app's functions (or one), oldest first; with `invocation`,
/// only that chain.
pub(super) async fn traces(call: Call<'_>) -> Reply {
    let app = call.visible_app().await?;
    let limit = match call.query("limit") {
        None => DEFAULT_TRACE_LIMIT,
        Some(text) => text
            .parse::<usize>()
            .map_err(|_| ApiError::BadRequest(format!("limit must be a number, not {text:?}")))?,
    }
    .min(meshwa_runtime::TRACES_KEPT);
    let only = call.query("function");
    let invocation = call.query("invocation");
    let mut traces = Vec::new();
    for function in &app.functions {
        let name = function.id().function.as_str();
        if only.as_deref().is_some_and(|f| f != name) {
            continue;
        }
        let kept = function.recent_traces();
        match &invocation {
            Some(id) => traces.extend(kept.find(id).map(|chain| trace(name, chain))),
            None => traces.extend(
                kept.latest(limit)
                    .into_iter()
                    .map(|chain| trace(name, chain)),
            ),
        }
    }
    traces.sort_by_key(|t| t.at_ms);
    let skip = traces.len().saturating_sub(limit);
    traces.drain(..skip);
    ok(&TraceList { traces })
}

/// `GET /v1/cluster` (operator): what each node of the cluster serves, as it last said.
pub(super) async fn cluster(call: Call<'_>) -> Reply {
    call.caller.require_operator()?;
    let Some(cluster) = call.control.replication.clone() else {
        return Err(ApiError::NotFound(
            "this server is not in a cluster (meshwa serve --cluster)".to_owned(),
        ));
    };
    let nodes = tokio::task::spawn_blocking(move || cluster.nodes())
        .await
        .map_err(|e| ApiError::Host(format!("the cluster task failed: {e}")))??;
    ok(&ClusterView { nodes })
}

/// `GET /v1/pool` (operator): instance slots and their use.
pub(super) async fn pool(call: Call<'_>) -> Reply {
    call.caller.require_operator()?;
    let stats = call.control.registry.runtime().stats();
    ok(&PoolStatus {
        instance_slots: stats.instance_slots,
        live_instances: stats.live_instances,
        pooling: stats.pooling,
        mpk: stats.mpk,
    })
}

fn trace(function: &str, chain: ChainTrace) -> Trace {
    Trace {
        invocation: chain.invocation,
        function: function.to_owned(),
        at_ms: chain.at_ms,
        spans: chain
            .spans
            .into_iter()
            .map(|span| TraceSpan {
                span: span.span,
                parent: span.parent,
                app: span.function.app.to_string(),
                function: span.function.function.to_string(),
                start_us: span.start_us,
                duration_us: span.duration_us,
                status: span.outcome.ok(),
                error: span.outcome.err().map(str::to_owned),
            })
            .collect(),
        dropped_spans: chain.dropped_spans,
    }
}
