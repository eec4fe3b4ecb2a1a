//! `meshwa-bench logic-cost`: the checkout logic of `bench/tax` run in a loop inside one sandbox
//! (`guests/tax-logic-cost`, a CGI command: its dataset in its own memory, no host call in the
//! loop but the clock), on meshwa's engine as the server builds it and on the same engine
//! without epoch checks. With the native `logic-cost` of `bench/tax` (same loop, same crate,
//! LLVM's native code) this splits the sandbox's cost of the logic into the code Cranelift makes
//! and the checks that let a deadline stop a guest. The engine without the checks is for this
//! measurement only: nothing could stop a guest that never returns.
//!
//! Each engine runs the loop `rounds` times, alternating, and keeps its quickest round: the CPU
//! of a shared VM is taken away in bursts that one round can fall into.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use meshwa_runtime::{EngineSettings, Runtime};

use crate::common::{get, load_kind};

#[derive(Args)]
pub struct LogicCostArgs {
    /// The loop as a command component (`guests/tax-logic-cost`).
    #[arg(long)]
    component: PathBuf,
    /// Checkouts per round.
    #[arg(long, default_value_t = 2000)]
    iterations: u32,
    /// Rounds per engine, alternating.
    #[arg(long, default_value_t = 3)]
    rounds: u32,
}

pub fn run(args: LogicCostArgs) -> anyhow::Result<()> {
    let data = tempfile::tempdir()?;
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let engine = |epoch_interruption: bool, name: &str| -> anyhow::Result<_> {
        let runtime = Runtime::new(
            EngineSettings {
                epoch_interruption,
                max_instances: 4,
                ..EngineSettings::default()
            },
            &data.path().join(name),
        )?;
        let function = load_kind(&runtime, &args.component, "cgi")?;
        Ok((runtime, function))
    };
    let engines = [engine(true, "checked")?, engine(false, "unchecked")?];
    let mut best = [f64::INFINITY; 2];
    let path = format!("/?iterations={}", args.iterations.max(1));
    for _ in 0..args.rounds.max(1) {
        for ((_, function), best) in engines.iter().zip(best.iter_mut()) {
            let (status, body) = tokio.block_on(get(function, &path, "logic-cost"))?;
            let text = String::from_utf8_lossy(&body);
            anyhow::ensure!(status.is_success(), "the loop answered {status}: {text}");
            let micros: f64 = text
                .split_whitespace()
                .next()
                .and_then(|figure| figure.parse().ok())
                .with_context(|| format!("the loop answered {text:?}"))?;
            *best = best.min(micros);
        }
    }
    println!(
        "{:.1} µs per checkout in the sandbox, {:.1} µs without epoch checks ({} iterations, \
         quickest of {} rounds)",
        best[0],
        best[1],
        args.iterations.max(1),
        args.rounds.max(1)
    );
    Ok(())
}
