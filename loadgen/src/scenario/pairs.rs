//! `pairs`: every client subscribes to a topic of its own and sends to the
//! topics of the next few clients in turn, so every message has exactly one
//! receiver and traffic crosses between all connections.

use std::sync::Arc;

use anyhow::ensure;

use super::{connect_all, drive, plan, summarize, Ctx};
use crate::check::{ByPublisher, Expect, Receiver, Stream};
use crate::client::{Delivery, Subscription, Topic};
use crate::peer::Peer;
use crate::report::{Params, Report};
use crate::stats::Live;

/// How many other clients each client sends to: enough to mix traffic,
/// few enough that checking stays a handful of streams per client.
const PEERS: usize = 8;

/// Runs `pairs`: connects and subscribes every client, then lets them all
/// publish and receive at once.
pub async fn run(ctx: &Ctx) -> anyhow::Result<Report> {
    let args = &ctx.args;
    let clients = args.clients;
    ensure!(clients >= 2, "pairs needs at least two clients");
    let peers_each = (clients - 1).min(PEERS);
    let topics: Vec<_> = (0..clients)
        .map(|i| Topic::new(format!("{}.{i}", ctx.topic)))
        .collect();
    let connected = connect_all(ctx, "client", clients, |i| {
        Some(Subscription::live(&topics[i]))
    })
    .await?;

    let window = args.window as usize;
    let peers = connected
        .conns
        .into_iter()
        .enumerate()
        .map(|(i, conn)| {
            // Client i sends its message k to client i + 1 + k % peers_each,
            // so client j is owed every peers_each-th message of client
            // j - d, starting from message d - 1.
            let targets = (1..=peers_each)
                .map(|d| topics[(i + d) % clients].clone())
                .collect();
            let streams: ByPublisher<_> = (1..=peers_each)
                .map(|d| {
                    let from = ((i + clients - d) % clients) as u32;
                    (from, Stream::new(d as u64 - 1, peers_each as u64))
                })
                .collect();
            let recv = Receiver::new(topics[i].name.clone(), ctx.run, Expect::Streams(streams));
            let mut peer = Peer::publisher(
                i,
                conn,
                window,
                plan(ctx, i, clients, targets, Delivery::All),
            );
            peer.recv = Some(recv);
            peer
        })
        .collect();

    let live = Arc::new(Live::new(ctx.clock, clients)?);
    let owed = |sent: &[u64]| sent.iter().sum::<u64>();
    let driven = drive(ctx, &live, "pairs", peers, owed).await;
    let mut params = Params::new(args, &ctx.topic);
    params.publishers = clients;
    params.peers = Some(peers_each);
    summarize(ctx, &live, driven, params)
}
