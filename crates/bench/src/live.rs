//! Instances held live at once, and what they cost the process: the measurement behind
//! `meshwa-bench density` (how many fit) and the memory per live instance of `meshwa-bench
//! languages` (what a Python or JavaScript instance costs against a Rust one).
//!
//! Each instance is a request made in-process to a function that answers its head and then
//! waits for a request body that never comes, so it stays alive exactly as a slow in-flight
//! request holds it. RSS, PSS and mappings are read from `/proc/self` before and while they are
//! held.

use std::path::Path;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use hyper::body::{Body, Frame};
use meshwa_runtime::{BodyError, EngineSettings, Function, Runtime};

/// What a number of instances held live at once cost the process.
pub(crate) struct Held {
    /// Instances held (the runtime counted them live).
    pub live: u32,
    /// Growth of the process's resident set while they were held.
    pub rss_bytes: u64,
    /// Growth of its proportional set: shared image pages divided among their mappers.
    pub pss_bytes: u64,
    /// Growth of its kernel mappings (`/proc/self/maps` lines).
    pub mappings: u64,
    /// Time to make one of them, from the request to its answered head.
    pub make_micros: f64,
}

impl Held {
    /// `total` per live instance.
    pub(crate) fn per_instance(&self, total: u64) -> f64 {
        total as f64 / f64::from(self.live.max(1))
    }
}

/// Holds `target` instances of `component` live at once, under a runtime of `settings` (its
/// pool sized to `target`, its data in `data`, compiled code cached in `cache`) with
/// `max_memory` per instance (as a manifest writes it), and measures what they cost. The
/// function must answer its head before reading a request body (`guests/echo`, or the Python
/// and JavaScript hello functions on a POST).
pub(crate) fn hold(
    settings: &EngineSettings,
    target: u32,
    component: &Path,
    max_memory: &str,
    data: &Path,
    cache: &Path,
) -> anyhow::Result<Held> {
    if target == 0 {
        return Ok(Held {
            live: 0,
            rss_bytes: 0,
            pss_bytes: 0,
            mappings: 0,
            make_micros: 0.0,
        });
    }
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    tokio.block_on(async {
        let runtime = Runtime::with_cache_dir(
            EngineSettings {
                max_instances: target,
                tenant_max_instances: Some(target),
                ..settings.clone()
            },
            data,
            cache,
        )?;
        // A long timeout: the instances must outlive the measurement.
        let function = crate::common::load_with(
            &runtime,
            component,
            "http",
            &format!("max-memory = {max_memory:?}, timeout = \"600s\""),
        )?;
        // One request first: the code is loaded and the first-use costs are not counted.
        drop(start(&function).await?);
        let (memory_before, maps_before) = (memory_now()?, mappings()?);
        let started = Instant::now();
        let mut held = Vec::with_capacity(target as usize);
        for _ in 0..target {
            held.push(start(&function).await?);
        }
        let make_micros = started.elapsed().as_secs_f64() * 1e6 / f64::from(target);
        let live = runtime.stats().live_instances;
        anyhow::ensure!(
            live == u64::from(target),
            "expected {target} live instances, the runtime counts {live}"
        );
        let (memory_after, maps_after) = (memory_now()?, mappings()?);
        drop(held);
        let after_drop = runtime.stats().live_instances;
        anyhow::ensure!(
            after_drop == 0,
            "{after_drop} instances outlived their requests"
        );
        Ok(Held {
            live: target,
            rss_bytes: memory_after.0.saturating_sub(memory_before.0),
            pss_bytes: memory_after.1.saturating_sub(memory_before.1),
            mappings: maps_after.saturating_sub(maps_before),
            make_micros,
        })
    })
}

/// Starts one request whose body never arrives; the instance lives as long as the response.
async fn start(
    function: &Function,
) -> anyhow::Result<http::Response<meshwa_runtime::ResponseBody>> {
    let request = http::Request::post("http://localhost/hold")
        .body(NeverBody)
        .map_err(|e| anyhow::anyhow!("request: {e}"))?;
    let response = function
        .handle(request, "density")
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    anyhow::ensure!(
        response.status() == 200,
        "the holder answered {}",
        response.status()
    );
    Ok(response)
}

/// A request body whose bytes never come: a client that sent its head and went quiet.
struct NeverBody;

impl Body for NeverBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        Poll::Pending
    }
}

/// Resident and proportional set size of this process (`/proc/self/smaps_rollup`), in bytes.
/// RSS counts a page of the shared memory image once per instance that maps it; PSS divides it
/// among them, which is what the instances cost the machine.
fn memory_now() -> anyhow::Result<(u64, u64)> {
    let rollup = std::fs::read_to_string("/proc/self/smaps_rollup")?;
    let field = |name: &str| {
        rollup
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| {
                rest.trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
            .map(|kib| kib * 1024)
            .ok_or_else(|| anyhow::anyhow!("no {name} in /proc/self/smaps_rollup"))
    };
    Ok((field("Rss:")?, field("Pss:")?))
}

fn mappings() -> anyhow::Result<u64> {
    Ok(std::fs::read_to_string("/proc/self/maps")?.lines().count() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The memory per live instance of `meshwa-bench languages`, in small: a few Rust and
    /// Python instances held at once are all live, grow the process, and are all gone after.
    #[test]
    fn instances_are_held_live_and_measured() {
        let data = tempfile::tempdir().unwrap();
        let cache = Path::new(meshwa_test_programs::COMPILE_CACHE_DIR);
        let settings = EngineSettings::default();
        for component in [
            meshwa_test_programs::ECHO,
            meshwa_test_programs::PYTHON_HELLO,
        ] {
            let held = hold(
                &settings,
                3,
                Path::new(component),
                "64MiB",
                data.path(),
                cache,
            )
            .unwrap_or_else(|e| panic!("{component}: {e:#}"));
            assert_eq!(held.live, 3, "{component}");
            assert!(
                held.rss_bytes > 0,
                "{component}: no resident memory counted"
            );
            assert!(
                held.pss_bytes > 0,
                "{component}: no proportional memory counted"
            );
            assert!(held.make_micros > 0.0, "{component}");
        }
    }
}
