//! `conns`: open many idle subscribed connections and hold them, so the
//! server's memory per connection can be read, then check that every one of
//! them still answers.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::{blank_report, connect_all, Ctx, CONNECTING_AT_ONCE};
use crate::check::{Kind, Violations};
use crate::client::{Conn, Subscription, Topic};
use crate::report::{ConnsFigures, Latency, Params, Report};
use crate::stats::empty_histogram;

/// Runs `conns`: connects and subscribes, holds, then pings every
/// connection.
pub async fn run(ctx: &Ctx) -> anyhow::Result<Report> {
    let args = &ctx.args;
    let topic = Topic::new(ctx.topic.clone());
    let started = Instant::now();
    let rss_before = args.server_pid.map(resident_bytes).transpose()?;
    let connected = connect_all(ctx, "idle", args.clients, |_| {
        Some(Subscription::live(&topic))
    })
    .await?;
    let mut setup = empty_histogram()?;
    for &ns in &connected.setup_ns {
        setup.saturating_record(ns);
    }

    ctx.progress.phase(format!(
        "holding {} connections for {}",
        connected.conns.len(),
        humantime::format_duration(args.hold)
    ));
    tokio::time::sleep(args.hold).await;
    let rss_holding = args.server_pid.map(resident_bytes).transpose()?;

    ctx.progress
        .phase("checking that every connection still answers");
    let (answered, correctness) = ping_all(connected.conns, &topic, args.timeout).await;

    let mut params = Params::new(args, &topic.name);
    params.publishers = 0;
    params.duration_s = None;
    let mut report = blank_report(ctx, params);
    let connections = connected.setup_ns.len() as u64;
    report.elapsed_s = started.elapsed().as_secs_f64();
    report.latency = Latency::of("subscribe", &setup);
    report.violations = correctness.total();
    report.correctness = correctness;
    report.conns = Some(ConnsFigures {
        connections,
        connect_rate: connections as f64 / connected.elapsed.as_secs_f64().max(1e-9),
        hold_s: args.hold.as_secs_f64(),
        answered,
        server_rss_before: rss_before,
        server_rss_holding: rss_holding,
        bytes_per_connection: match (rss_before, rss_holding) {
            (Some(before), Some(holding)) if connections > 0 => {
                Some((holding as f64 - before as f64) / connections as f64)
            }
            _ => None,
        },
    });
    Ok(report)
}

/// Asks every connection for a reply, [`CONNECTING_AT_ONCE`] at a time;
/// returns how many answered and what went wrong with the others.
async fn ping_all(conns: Vec<Conn>, topic: &Topic, wait: Duration) -> (u64, Violations) {
    let gate = Arc::new(Semaphore::new(CONNECTING_AT_ONCE));
    let mut tasks = JoinSet::new();
    for (i, mut conn) in conns.into_iter().enumerate() {
        let (gate, topic) = (gate.clone(), topic.clone());
        tasks.spawn(async move {
            let _permit = gate.acquire_owned().await;
            (i, conn.ping(&topic, wait).await)
        });
    }
    let mut answered = 0;
    let mut violations = Violations::default();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok((_, Ok(early))) => {
                answered += 1;
                violations.add(Kind::Misrouted, early, || {
                    format!("{early} deliveries reached an idle connection")
                });
            }
            Ok((i, Err(e))) => violations.add(Kind::Unresponsive, 1, || {
                format!("connection {i} did not answer after the hold: {e:#}")
            }),
            Err(e) => violations.add(Kind::Unresponsive, 1, || format!("a ping task failed: {e}")),
        }
    }
    (answered, violations)
}

/// The resident memory of process `pid`, from /proc (Linux only).
fn resident_bytes(pid: u32) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path)
        .with_context(|| format!("reading the memory of --server-pid {pid}"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next()?.parse::<u64>().ok())
        .map(|kib| kib * 1024)
        .with_context(|| format!("no VmRSS line in {path}"))
}
