//! `fanout`: many subscribers on one topic, a few publishers sending to all
//! of them. Every subscriber is owed every message.

use std::sync::Arc;

use anyhow::ensure;

use super::{connect_all, drive, plan, summarize, Ctx};
use crate::check::{Expect, Receiver};
use crate::client::{Delivery, Subscription, Topic};
use crate::peer::Peer;
use crate::report::{Params, Report};
use crate::stats::Live;

/// Runs `fanout`: subscribes everyone before the first message, so that
/// every subscriber is owed every message.
pub async fn run(ctx: &Ctx) -> anyhow::Result<Report> {
    let args = &ctx.args;
    let (subscribers, publishers) = (args.clients, args.publishers);
    ensure!(publishers > 0, "fanout needs at least one publisher");
    let topic = Topic::new(ctx.topic.clone());
    let receiving = connect_all(ctx, "subscriber", subscribers, |_| {
        Some(Subscription::live(&topic))
    })
    .await?;
    let sending = connect_all(ctx, "publisher", publishers, |_| None).await?;

    let window = args.window as usize;
    let receivers = receiving.conns.into_iter().enumerate().map(|(i, conn)| {
        let expect = Expect::all_of(publishers as u32);
        Peer::receiver(i, conn, Receiver::new(topic.name.clone(), ctx.run, expect))
    });
    let senders = sending.conns.into_iter().enumerate().map(|(p, conn)| {
        let plan = plan(ctx, p, publishers, vec![topic.clone()], Delivery::All);
        Peer::publisher(subscribers + p, conn, window, plan)
    });
    let peers = receivers.chain(senders).collect();

    let live = Arc::new(Live::new(ctx.clock, publishers)?);
    let owed = |sent: &[u64]| sent.iter().sum::<u64>() * subscribers as u64;
    let driven = drive(ctx, &live, "fanout", peers, owed).await;
    summarize(ctx, &live, driven, Params::new(args, &topic.name))
}
