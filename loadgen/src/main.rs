//! `loadgen`: drives any server that speaks the mq protocol
//! (`docs/PROTOCOL.md` in this repository) and checks everything that comes
//! back, so that `mq-actix` and the servers it replaces are measured with one
//! yardstick.
//!
//! Map of the crate:
//! - `cli`: the command line;
//! - `scenario`: the loads (fanout, pairs, queue, replay, conns) and the
//!   driver they share;
//! - `peer`: one connection's part in a run; `publish`: its sending side;
//!   `phase`: where the run stands, which both watch;
//! - `client`: the protocol on one connection, over plain TCP or TLS;
//! - `payload`: what travels inside each message; `ascii`: the byte-level
//!   helpers that decoding it and the lines around it rely on;
//! - `check`: correctness bookkeeping;
//! - `stats`: shared clock, counters and latency histograms;
//! - `progress` and `report`: what a person sees; `limits`: the OS's.

mod ascii;
mod check;
mod cli;
mod client;
mod limits;
mod payload;
mod peer;
mod phase;
mod progress;
mod publish;
mod report;
mod scenario;
mod stats;
#[cfg(test)]
mod testing;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Args, Scenario};
use crate::progress::Progress;

fn main() -> ExitCode {
    let args = Args::parse();
    if let Err(usage) = args.check() {
        usage.exit();
    }
    match run(args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("loadgen: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the scenario and reports; `Ok(false)` when the run found anything
/// wrong.
fn run(args: Args) -> anyhow::Result<bool> {
    let connections = match args.scenario {
        Scenario::Fanout | Scenario::Queue => args.clients + args.publishers,
        Scenario::Pairs | Scenario::Conns => args.clients,
        Scenario::Replay => args.clients + 2,
    };
    limits::raise_open_files(connections as u64)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let json = args.json.clone();
    let progress = Progress::new(args.quiet);
    let report = runtime.block_on(scenario::run(args, progress))?;
    print!("{}", report.table());
    if let Some(path) = json {
        report.append_json(&path)?;
    }
    Ok(report.is_clean())
}
