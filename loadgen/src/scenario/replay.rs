//! `replay`: publish N messages, then let subscribers ask for the cache with
//! `last_seen`. Each subscriber is owed exactly the cached suffix above its
//! `last_seen`, with the indices the messages were given when published.

use std::sync::Arc;

use anyhow::{bail, ensure};

use super::{connect_all, drive, plan, summarize, Ctx};
use crate::check::{ByPublisher, Expect, Receiver, Stream};
use crate::client::{Delivery, Subscription, Topic};
use crate::peer::Peer;
use crate::report::{Latency, Params, ReplayFigures, Report};
use crate::stats::{empty_histogram, Live};

/// Runs `replay` in two phases: publishing (watched by a probe that learns
/// the indices), then the subscribers asking for the cache.
pub async fn run(ctx: &Ctx) -> anyhow::Result<Report> {
    let args = &ctx.args;
    let subscribers = args.clients;
    let messages = args.messages.unwrap_or(args.cache_size);
    ensure!(messages > 0, "replay needs at least one message");
    let topic = Topic::new(ctx.topic.clone());
    let params = || {
        let mut params = Params::new(args, &topic.name);
        params.publishers = 1;
        params.messages = Some(messages);
        params.cache_size = Some(args.cache_size);
        params
    };

    // First publish, with a live subscriber that learns which indices the
    // server gave the messages.
    let probe = connect_all(ctx, "probe", 1, |_| Some(Subscription::live(&topic))).await?;
    let sending = connect_all(ctx, "publisher", 1, |_| None).await?;
    let mut send_plan = plan(ctx, 0, 1, vec![topic.clone()], Delivery::All);
    send_plan.quota = Some(messages);
    let mut peers = Vec::new();
    for conn in probe.conns {
        let check = Receiver::new(topic.name.clone(), ctx.run, Expect::all_of(1));
        peers.push(Peer::receiver(0, conn, check));
    }
    for conn in sending.conns {
        peers.push(Peer::publisher(
            1,
            conn,
            args.window as usize,
            send_plan.clone(),
        ));
    }
    let live = Arc::new(Live::new(ctx.clock, 1)?);
    let driven = drive(ctx, &live, "replay: publishing", peers, |sent| {
        sent.iter().sum()
    })
    .await;
    let indices = driven
        .outcomes
        .iter()
        .find_map(|o| o.recv.as_ref().map(|r| (r.first_index, r.last_index)));
    let published = driven.published.sent.first().copied().unwrap_or(0);
    let publishing = summarize(ctx, &live, driven, params())?;
    let Some((Some(first), Some(last))) = indices.filter(|_| publishing.is_clean()) else {
        return Ok(publishing);
    };
    if last - first + 1 != published {
        bail!(
            "topic {:?} carried other messages while loadgen published; give replay a topic of its own",
            topic.name
        );
    }

    // Then subscribe, each subscriber asking from a different point, from the
    // whole run down to almost nothing.
    let receiving = connect_all(ctx, "subscriber", subscribers, |_| None).await?;
    let cached_from = (last + 1).saturating_sub(args.cache_size).max(first);
    let mut owed_total = 0;
    let peers = receiving
        .conns
        .into_iter()
        .enumerate()
        .map(|(s, conn)| {
            let asks_from = first + s as u64 * published / subscribers as u64;
            let gets_from = asks_from.max(cached_from);
            let owed = (last + 1).saturating_sub(gets_from);
            owed_total += owed;
            let streams = ByPublisher::from_iter([(0, Stream::new(gets_from - first, 1))]);
            let check = Receiver::new(topic.name.clone(), ctx.run, Expect::Streams(streams))
                .with_index_base(first);
            let mut peer = Peer::receiver(s, conn, check);
            peer.subscribe_first = Some(Subscription {
                topic: topic.clone(),
                last_seen: asks_from.checked_sub(1),
                replay: true,
                shared: false,
            });
            peer.complete_after = Some(owed);
            peer
        })
        .collect();
    let live = Arc::new(Live::new(ctx.clock, 1)?);
    live.already_published(0, published);
    let driven = drive(ctx, &live, "replay", peers, |_| owed_total).await;

    let mut completion = empty_histogram()?;
    let (mut began, mut ended) = (u64::MAX, 0);
    for outcome in &driven.outcomes {
        began = began.min(outcome.started_ns);
        if let Some(done) = outcome.completed_ns {
            ended = ended.max(done);
            completion.saturating_record(done.saturating_sub(outcome.started_ns));
        }
    }
    let mut report = summarize(ctx, &live, driven, params())?;
    let secs = ended.saturating_sub(began) as f64 / 1e9;
    report.replay = Some(ReplayFigures {
        published,
        replay_rate: if secs > 0.0 {
            report.deliveries as f64 / secs
        } else {
            0.0
        },
    });
    report.delivery_rate = report.replay.as_ref().map_or(0.0, |r| r.replay_rate);
    report.latency = Latency::of("replay_complete", &completion);
    report.published = publishing.published;
    report.acked = publishing.acked;
    report.publish_rate = publishing.publish_rate;
    report.elapsed_s += publishing.elapsed_s;
    Ok(report)
}
