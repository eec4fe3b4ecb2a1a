//! `meshwa serve`: load apps, bind, serve until SIGINT/SIGTERM, drain, exit 0.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use meshwa_control::{ControlPlane, ControlSettings, Origin, Registry};
use meshwa_gateway::{GatewayConfig, Metrics};
use meshwa_manifest::{
    Manifest, ManifestError, Policy, check_route_collisions, parse_duration, parse_size,
};
use meshwa_runtime::{
    AllocatorChoice, CacheOutcome, EngineSettings, MpkChoice, PagemapScanChoice, Runtime, Secrets,
    default_tenant_cpu_lanes,
};

/// How long a node joining a cluster waits to serve the recorded deployments before it listens
/// anyway (each is compiled, or loaded from the cache).
const CLUSTER_CATCH_UP: Duration = Duration::from_secs(120);

#[derive(Args)]
pub struct ServeArgs {
    /// Apps to serve from the start: paths to meshwa.toml files, one per tenant app, or to Spin
    /// apps' spin.toml files (served as the tenant `[application.tool.meshwa] tenant` names, or
    /// `local`). They are the operator's (read-only for the control plane); tenants deploy
    /// theirs through it.
    #[arg(value_name = "MANIFEST")]
    manifests: Vec<PathBuf>,

    /// Address for function traffic (HTTP/1.1 and HTTP/2). Port 0 picks a free port.
    #[arg(long, env = "MESHWA_LISTEN", default_value = "127.0.0.1:3000")]
    listen: SocketAddr,

    /// Address for the control plane API and `GET /metrics`. Port 0 picks a free port.
    #[arg(long, env = "MESHWA_ADMIN_LISTEN", default_value = "127.0.0.1:3001")]
    admin_listen: SocketAddr,

    /// Where compiled code and key-value state are kept.
    #[arg(long, env = "MESHWA_DATA_DIR", default_value = ".meshwa")]
    data_dir: PathBuf,

    /// Where compiled machine code is cached [default: DATA_DIR/cache]. Servers (and test runs)
    /// may share one: entries are keyed by tenant, the component's bytes and the engine's
    /// settings.
    #[arg(long, env = "MESHWA_CACHE_DIR")]
    cache_dir: Option<PathBuf>,

    /// Bytes of request bodies the server holds together before their requests are admitted
    /// (CGI functions read their body whole first); beyond it, 503 `overloaded`.
    #[arg(long, default_value = "1GiB", value_parser = parse_size)]
    max_buffered_bodies: u64,

    /// Largest size of the compile cache; the least recently used entries are deleted first.
    #[arg(long, default_value = "4GiB", value_parser = parse_size)]
    compile_cache_max_size: u64,

    /// File holding the operator's token for the control plane. Without it (and without
    /// MESHWA_OPERATOR_TOKEN), the token is DATA_DIR/operator.token, generated on first start.
    #[arg(
        long,
        env = "MESHWA_OPERATOR_TOKEN_FILE",
        conflicts_with = "operator_token"
    )]
    operator_token_file: Option<PathBuf>,

    /// The operator's token itself (prefer the file: the environment is visible to the
    /// server's user in /proc).
    #[arg(long, env = "MESHWA_OPERATOR_TOKEN", hide_env_values = true)]
    operator_token: Option<String>,

    /// File holding a token that may read `GET /metrics` and nothing else, for a scraper
    /// (the operator's token reads it too; no other token does).
    #[arg(long, env = "MESHWA_METRICS_TOKEN_FILE")]
    metrics_token_file: Option<PathBuf>,

    /// The operator's policy (TOML): ceilings for what tenants deploy, the outbound origins
    /// they may grant, the private addresses their functions may reach, and the route prefixes
    /// each owns. Without it, safe defaults (see docs/security.md).
    #[arg(long, env = "MESHWA_POLICY")]
    policy: Option<PathBuf>,

    /// Largest app upload the control plane accepts.
    #[arg(long, default_value = "128MiB", value_parser = parse_size)]
    max_upload: u64,

    /// Values of the apps' secrets: a TOML file of `[<tenant>.<app>]` tables of
    /// `name = "value"`. Keep it readable by the server's user only.
    #[arg(long, env = "MESHWA_SECRETS_FILE")]
    secrets_file: Option<PathBuf>,

    /// Instance allocator: `auto` uses the pooling allocator if its address space can be
    /// reserved and falls back to on-demand allocation otherwise.
    #[arg(long, value_enum, default_value_t = Allocator::Auto)]
    allocator: Allocator,

    /// Memory protection keys (MPK) to pack more pooled sandboxes into the address space: `auto`
    /// uses them only when the pool does not fit without them and the CPU (`pku`) and kernel
    /// offer them (they cost every host call a key switch). The choice is logged.
    #[arg(long, value_enum, default_value_t = Mpk::Auto)]
    mpk: Mpk,

    /// Reset pool slots with Linux's PAGEMAP_SCAN (6.7+), only the pages the last instance
    /// dirtied: `auto` where the kernel offers it and swap cannot reach the server's memory (no
    /// swap active, or `memory.swap.max` 0 for its cgroup), since that reset misses pages that
    /// are swapped out; `enable` wherever the kernel offers it (keep the server out of swap by
    /// other means). The choice is logged.
    #[arg(long, value_enum, default_value_t = PagemapScan::Auto)]
    pagemap_scan: PagemapScan,

    /// Most instances live at once (the pool's size); more requests wait for a slot.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    max_instances: u32,

    /// Most instances one tenant may hold at once (default: half of --max-instances), so that no
    /// tenant can starve the others; a manifest's `tenant-limits.max-instances` can only lower it.
    #[arg(long, env = "MESHWA_TENANT_MAX_INSTANCES", value_parser = clap::value_parser!(u32).range(1..))]
    tenant_max_instances: Option<u32>,

    /// Most linear memory all live instances of one tenant may hold together (default: no quota
    /// beyond its instance slots × max-memory); a manifest's `tenant-limits.max-memory` can only
    /// lower it. A growth beyond it ends that request with 429.
    #[arg(long, env = "MESHWA_TENANT_MAX_MEMORY", value_parser = parse_size)]
    tenant_max_memory: Option<u64>,

    /// Most requests of one tenant waiting for an instance slot; more get 429 at once.
    #[arg(long, default_value_t = 100)]
    tenant_max_queue: u32,

    /// Address space reserved for each linear memory (default: 4 GiB, which spares guest code
    /// its bounds checks). Lowering it (for example to --max-instance-memory) fits many more
    /// instances into the pool without MPK, paid for with bounds checks; see
    /// docs/benchmarks.md, "Density".
    #[arg(long, value_parser = parse_size)]
    memory_reservation: Option<u64>,

    /// Bytes of each pooled linear memory that stay mapped between instances and are reset by
    /// memset instead of being released (a fresh instance then takes no page faults there): the
    /// first bytes, or with --pagemap-scan the pages the last instance dirtied (in at most 32
    /// runs of pages). More suits functions that touch more memory per request; see
    /// docs/benchmarks.md.
    #[arg(long, default_value = "1MiB", value_parser = parse_size)]
    memory_keep_resident: u64,

    /// Ceiling on any one instance's linear memory; functions asking for more are refused.
    #[arg(long, default_value = "256MiB", value_parser = parse_size)]
    max_instance_memory: u64,

    /// Memory for values read from the key-value stores, answered again without a read
    /// transaction; 0 turns the cache off. A write drops its keys first, so a read never
    /// returns a value older than an acknowledged write.
    #[arg(long, default_value = "64MiB", value_parser = parse_size)]
    kv_cache: u64,

    /// Join a meshwa cluster on these NATS servers (JetStream on), comma-separated:
    /// key-value stores become cluster-wide (but those marked `node-local`), kept in
    /// replicated JetStream buckets. Without it the node keeps everything under DATA_DIR.
    #[arg(
        long,
        env = "MESHWA_CLUSTER",
        value_name = "nats://HOST:PORT[,...]",
        value_delimiter = ','
    )]
    cluster: Vec<String>,

    /// This node's name in the cluster (`GET /v1/cluster`): letters, digits, '-' and '_'
    /// [default: the host's name and a hash of DATA_DIR's path].
    #[arg(long, env = "MESHWA_NODE_NAME", requires = "cluster")]
    node_name: Option<String>,

    /// Replicas of each JetStream bucket this node creates: 3 keeps every acknowledged write
    /// through the loss of one NATS server [default: 3, or fewer if fewer servers are given].
    #[arg(long, requires = "cluster")]
    cluster_replicas: Option<usize>,

    /// Account for where each invocation's time goes (admission, instantiation, guest code,
    /// key-value calls, waiting for callees, other host work, teardown, page faults) and export
    /// it per function as `meshwa_phase_*` on /metrics. For finding costs, not for production:
    /// every host call reads the clock twice.
    #[arg(long)]
    explain: bool,

    /// Name guests' compiled functions for Linux `perf` in /tmp/perf-PID.map, so that
    /// `perf report` on this server shows the guest functions that ran. For profiling: the file
    /// grows with every module loaded, is left behind, and names tenants' functions for anyone
    /// who can read /tmp.
    #[arg(long)]
    perf_map: bool,

    /// Scheduler ticks between two polls for network events on a worker thread. A guest runs
    /// at most 1 ms per tick before it yields, so with CPU-bound guests on every worker, new
    /// requests and connections are noticed after at most this many milliseconds; tokio's
    /// default of 61 lets a spinning tenant delay everybody's requests by tens of milliseconds.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=61))]
    io_poll_interval: u32,

    /// Most worker threads one tenant's guest code may occupy at once while another tenant is
    /// busy too (default: all workers but one, so a CPU-bound tenant always leaves one free for
    /// the others; 0: no cap). A tenant alone on the server uses every worker.
    #[arg(long, env = "MESHWA_TENANT_CPU_LANES")]
    tenant_cpu_lanes: Option<u32>,

    /// Threads that run requests (default: one per core).
    #[arg(long, env = "MESHWA_WORKER_THREADS", value_parser = clap::value_parser!(u16).range(1..))]
    worker_threads: Option<u16>,

    /// Most connections open at once on each listener; more are closed as soon as accepted.
    /// Keep it under the process's file-descriptor limit (`ulimit -n`).
    #[arg(long, default_value_t = 4096, value_parser = clap::value_parser!(u32).range(1..))]
    max_connections: u32,

    /// Most connections open at once from one client address, on each listener.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..))]
    max_connections_per_client: u32,

    /// How long a client may take to send a request's head before it is disconnected, on both
    /// listeners.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    header_read_timeout: Duration,

    /// How long in-flight requests may run after SIGINT/SIGTERM before the server exits.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    shutdown_grace: Duration,

    #[command(flatten)]
    pub traces: crate::telemetry::TraceArgs,
}

#[derive(Clone, Copy, ValueEnum)]
enum Allocator {
    Auto,
    Pooling,
    OnDemand,
}

#[derive(Clone, Copy, ValueEnum)]
enum Mpk {
    Auto,
    Enable,
    Disable,
}

#[derive(Clone, Copy, ValueEnum)]
enum PagemapScan {
    Auto,
    Enable,
    Disable,
}

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = args.worker_threads {
        builder.worker_threads(usize::from(threads));
    }
    let runtime = builder
        .enable_all()
        .event_interval(args.io_poll_interval)
        .thread_name("meshwa-worker")
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(serve(args))
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let started = Instant::now();

    // Validate every manifest before touching the engine: the cheapest errors first.
    let mut manifests = Vec::with_capacity(args.manifests.len());
    for path in &args.manifests {
        manifests.push(Manifest::load(path)?);
    }
    check_route_collisions(&manifests).map_err(ManifestError::from)?;
    let secrets = match &args.secrets_file {
        Some(path) => Secrets::load(path)?,
        None => Secrets::default(),
    };
    let mut apps = std::collections::BTreeSet::new();
    for m in &manifests {
        if !apps.insert((m.tenant.clone(), m.app.clone())) {
            bail!(
                "{}: app {}/{} is loaded twice",
                m.source.display(),
                m.tenant,
                m.app
            );
        }
    }

    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("cannot create data directory {}", args.data_dir.display()))?;
    let settings = EngineSettings {
        allocator: match args.allocator {
            Allocator::Auto => AllocatorChoice::Auto,
            Allocator::Pooling => AllocatorChoice::Pooling,
            Allocator::OnDemand => AllocatorChoice::OnDemand,
        },
        mpk: match args.mpk {
            Mpk::Auto => MpkChoice::Auto,
            Mpk::Enable => MpkChoice::Enable,
            Mpk::Disable => MpkChoice::Disable,
        },
        pagemap_scan: match args.pagemap_scan {
            PagemapScan::Auto => PagemapScanChoice::Auto,
            PagemapScan::Enable => PagemapScanChoice::Enable,
            PagemapScan::Disable => PagemapScanChoice::Disable,
        },
        max_instances: args.max_instances,
        tenant_max_instances: args.tenant_max_instances,
        tenant_max_queue: args.tenant_max_queue,
        tenant_max_memory: args.tenant_max_memory,
        max_instance_memory: args.max_instance_memory,
        key_value_cache: args.kv_cache,
        explain: args.explain,
        perf_map: args.perf_map,
        compile_cache_max_size: args.compile_cache_max_size,
        max_buffered_bodies: args.max_buffered_bodies,
        memory_reservation: args.memory_reservation,
        memory_keep_resident: usize::try_from(args.memory_keep_resident).unwrap_or(usize::MAX),
        tenant_cpu_lanes: args
            .tenant_cpu_lanes
            .unwrap_or_else(|| default_tenant_cpu_lanes(args.worker_threads.map(usize::from))),
        ..EngineSettings::default()
    };
    let cache_dir = args
        .cache_dir
        .clone()
        .unwrap_or_else(|| args.data_dir.join("cache"));
    private_dir(&args.data_dir)?;
    let runtime = Arc::new(Runtime::with_cache_dir(
        settings,
        &args.data_dir,
        &cache_dir,
    )?);

    let cluster = if args.cluster.is_empty() {
        None
    } else {
        let cluster = meshwa_cluster::Cluster::connect(&meshwa_cluster::ClusterSettings {
            servers: args.cluster.clone(),
            replicas: args
                .cluster_replicas
                .unwrap_or_else(|| args.cluster.len().min(3)),
        })
        .await?;
        runtime.use_cluster_key_value(Arc::new(cluster.key_value()))?;
        if runtime
            .use_message_bus(Arc::new(meshwa_cluster::messages::NatsBus::new(&cluster)))
            .is_err()
        {
            bail!("the message bus was set twice");
        }
        tracing::info!(servers = %args.cluster.join(","), "joined the cluster: key-value stores, deployments, schedules and messages are cluster-wide");
        Some(cluster)
    };

    // The command line's apps first: any error stops the server before it listens.
    let policy = match &args.policy {
        Some(path) => Policy::load(path)?,
        None => Policy::default(),
    };
    let registry = Arc::new(Registry::new(runtime.clone(), secrets).with_policy(Arc::new(policy)));
    for manifest in manifests {
        let prepared = registry.prepare(&manifest)?;
        registry
            .activate(manifest, prepared, Origin::Static)
            .await?;
    }
    let explicit_token =
        match (&args.operator_token_file, args.operator_token.clone()) {
            (Some(path), _) => Some(std::fs::read_to_string(path).with_context(|| {
                format!("cannot read the operator token file {}", path.display())
            })?),
            (None, token) => token,
        };
    let (operator_token, token_file) =
        meshwa_control::operator_token(&args.data_dir, explicit_token)?;
    if operator_token.is_empty() {
        bail!("the operator token is empty");
    }
    if let Some(path) = token_file {
        tracing::info!(path = %path.display(), "control plane: the operator token is in this file");
    }
    let stats_runtime = runtime.clone();
    let phases_runtime = runtime.clone();
    let metrics = Arc::new(
        Metrics::new(Arc::new(move || stats_runtime.stats()))
            .with_phases(Arc::new(move || phases_runtime.phases())),
    );
    let metrics_token = match &args.metrics_token_file {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the metrics token file {}", path.display()))?
                .trim()
                .to_owned(),
        ),
        None => None,
    };
    if metrics_token.as_deref() == Some("") {
        bail!("the metrics token is empty");
    }
    let control = ControlPlane::open(
        &args.data_dir,
        registry.clone(),
        ControlSettings {
            operator_token,
            metrics_token,
            max_upload: args.max_upload,
        },
        metrics.clone(),
    )?;
    let tick_claim: Arc<dyn meshwa_control::cron::TickClaim> = match &cluster {
        None => Arc::new(meshwa_control::cron::FireEveryTick),
        Some(cluster) => Arc::new(meshwa_cluster::ticks::ClusterTicks::open(cluster).await?),
    };
    let (control, cluster_control) = match &cluster {
        None => (control, None),
        Some(cluster) => {
            let node = args
                .node_name
                .clone()
                .unwrap_or_else(|| default_node_name(&args.data_dir));
            let shared = Arc::new(
                meshwa_cluster::control::ClusterControl::open(cluster, &node, args.max_upload)
                    .await?,
            );
            (control.with_replication(shared.clone()), Some(shared))
        }
    };
    let control = Arc::new(control);
    let (restored, not_restored) = control.restore().await?;
    // In a cluster: serve what the cluster has deployed before listening, then follow it.
    let follower = match cluster_control {
        None => None,
        Some(shared) => {
            let (caught_up, caught) = tokio::sync::oneshot::channel();
            let follower =
                tokio::spawn(shared.follow(control.clone(), caught_up, std::future::pending()));
            match tokio::time::timeout(CLUSTER_CATCH_UP, caught).await {
                Ok(_) => tracing::info!("cluster: serving every recorded deployment"),
                Err(_) => tracing::warn!(
                    "cluster: not caught up with the recorded deployments after {CLUSTER_CATCH_UP:?}; listening, still following"
                ),
            }
            Some(follower)
        }
    };
    let (mut compiled, mut cached) = (0, 0);
    let apps = registry.apps().await;
    for function in apps.iter().flat_map(|app| &app.functions) {
        match function.cache_outcome() {
            CacheOutcome::Compiled => compiled += 1,
            CacheOutcome::Hit => cached += 1,
        }
    }

    let listener = meshwa_gateway::bind(args.listen).await?;
    let local = listener
        .local_addr()
        .context("cannot read the bound address")?;
    let admin_listener = meshwa_gateway::bind(args.admin_listen).await?;
    let admin_local = admin_listener
        .local_addr()
        .context("cannot read the bound admin address")?;
    // No function may connect back to the server's own listeners unless the policy names them.
    runtime.set_own_listeners(vec![local, admin_local]);
    let config = GatewayConfig {
        shutdown_grace: args.shutdown_grace,
        header_read_timeout: args.header_read_timeout,
        max_connections: args.max_connections as usize,
        max_connections_per_client: args.max_connections_per_client as usize,
    };
    // The admin listener serves until the gateway has drained, then it is aborted.
    let admin = tokio::spawn(meshwa_control::serve_admin(
        admin_listener,
        control,
        config.clone(),
        std::future::pending(),
    ));
    tracing::info!(
        apps = apps.len(),
        restored,
        not_restored,
        functions = compiled + cached,
        compiled,
        from_cache = cached,
        startup_ms = started.elapsed().as_secs_f64() * 1000.0,
        "startup complete"
    );
    // The lines on stdout: scripts and tests read the bound addresses from them.
    println!("meshwa listening on http://{local}");
    println!("meshwa admin on http://{admin_local}");

    // Every trigger runs until the signal: the gateway (HTTP) and the schedules.
    let schedules = meshwa_control::cron::CronTrigger {
        registry: registry.clone(),
        metrics: metrics.clone(),
        claim: tick_claim,
    };
    let gateway = meshwa_gateway::HttpTrigger {
        listener,
        routes: registry.routes(),
        metrics: metrics.clone(),
        config,
    };
    let mut triggers: Vec<Box<dyn meshwa_runtime::Trigger>> =
        vec![Box::new(gateway), Box::new(schedules)];
    if let Some(cluster) = &cluster {
        triggers.push(Box::new(meshwa_cluster::messages::MessageTrigger {
            client: cluster.client().clone(),
            registry: registry.clone(),
            metrics: metrics.clone(),
        }));
    }
    meshwa_runtime::run_triggers(triggers, Box::pin(shutdown_signal())).await?;
    if let Some(follower) = follower {
        follower.abort();
    }
    admin.abort();
    tracing::info!("stopped");
    Ok(())
}

/// Creates the data directory if needed and makes it the server user's alone (0700): it holds
/// tenants' key-value data, uploads and token hashes, whatever mode each file gets.
fn private_dir(dir: &std::path::Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the data directory {}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("cannot make the data directory {} private", dir.display()))
}

/// Resolves on the first SIGINT or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers; stop the server with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = int.recv() => tracing::info!("SIGINT received"),
    }
}

/// `<host name>-<8 hex digits of the data directory's path>`: stable across restarts, different
/// for two nodes of one host (each has its own data directory), and only what a node name may
/// hold.
fn default_node_name(data_dir: &std::path::Path) -> String {
    use std::hash::{Hash, Hasher};
    let path = std::fs::canonicalize(data_dir).unwrap_or_else(|_| data_dir.to_path_buf());
    // SipHash with fixed keys: the same path gives the same name at every start.
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    path.hash(&mut hasher);
    let host =
        std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_else(|_| "node".to_owned());
    let host: String = host
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(48)
        .collect();
    format!("{host}-{:08x}", hasher.finish() as u32)
}
