//! `fanout`: many subscribers on one topic, a few publishers sending to all
//! of them. Every subscriber is owed every message.

use anyhow::ensure;

use super::{connect_all, drive_one_topic, summarize, Ctx};
use crate::check::Expect;
use crate::client::{Delivery, Subscription, Topic};
use crate::report::{Params, Report};

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

    let expect = || Expect::all_of(publishers as u32);
    let owed = |sent: &[u64]| sent.iter().sum::<u64>() * subscribers as u64;
    let (live, driven) =
        drive_one_topic(ctx, &topic, receiving, sending, Delivery::All, expect, owed).await?;
    summarize(ctx, &live, driven, Params::new(args, &topic.name))
}
