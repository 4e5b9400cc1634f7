//! `queue`: workers sharing one topic, publishers sending `delivery: one`.
//! Every message must reach exactly one worker; how evenly they are shared
//! shows the fairness of the round-robin.

use std::sync::{Arc, Mutex, PoisonError};

use anyhow::ensure;

use super::{connect_all, drive_one_topic, summarize, Ctx};
use crate::check::{ByPublisher, Expect, Ledger};
use crate::client::{Delivery, Subscription, Topic};
use crate::report::{Params, QueueFigures, Report};

/// Runs `queue`: subscribes the workers, publishes, then checks exactly-once
/// over all workers together and reports each one's share.
pub async fn run(ctx: &Ctx) -> anyhow::Result<Report> {
    let args = &ctx.args;
    let (workers, publishers) = (args.clients, args.publishers);
    ensure!(workers > 0, "queue needs at least one worker");
    ensure!(publishers > 0, "queue needs at least one publisher");
    let topic = Topic::new(ctx.topic.clone());
    // NATS shares a queue group's messages out on the subscribing side.
    let worker = Subscription {
        shared: true,
        ..Subscription::live(&topic)
    };
    let receiving = connect_all(ctx, "worker", workers, |_| Some(worker.clone())).await?;
    let sending = connect_all(ctx, "publisher", publishers, |_| None).await?;

    let ledger = Arc::new(Mutex::new(Ledger::new(publishers)));
    let expect = || Expect::Share {
        ledger: ledger.clone(),
        last_seq: ByPublisher::default(),
    };
    let owed = |sent: &[u64]| sent.iter().sum::<u64>();
    let (live, driven) =
        drive_one_topic(ctx, &topic, receiving, sending, Delivery::One, expect, owed).await?;

    let per_worker: Vec<u64> = driven
        .outcomes
        .iter()
        .filter_map(|o| o.recv.as_ref().map(|r| r.fresh))
        .collect();
    let published = driven.published.clone();
    let mut report = summarize(ctx, &live, driven, Params::new(args, &topic.name))?;
    let overall = ledger
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .tally(&published);
    report.violations += overall.total();
    report.correctness.merge(overall);

    let even = per_worker.iter().sum::<u64>() as f64 / per_worker.len().max(1) as f64;
    let share = |n: u64| if even > 0.0 { n as f64 / even } else { 0.0 };
    report.queue = Some(QueueFigures {
        min_share: share(per_worker.iter().copied().min().unwrap_or(0)),
        max_share: share(per_worker.iter().copied().max().unwrap_or(0)),
        per_worker,
    });
    Ok(report)
}
