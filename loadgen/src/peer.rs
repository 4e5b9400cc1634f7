//! One connection's part in the measured phase of a run: it publishes,
//! receives, or both (pairs), and reports what it saw.
//!
//! The writer and the reader of a connection run as two futures of one task,
//! so they share the window without locks; the many connections of a run are
//! separate tasks spread over the runtime's threads.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::check::{shorten, Kind, Receiver, Violations};
use crate::client::{Conn, Reader, Reply, Subscription, Writer};
use crate::phase::Phase;
use crate::publish::{self, SendPlan, Window};
use crate::stats::Live;

/// One connection and its roles in a run.
#[derive(Debug)]
pub struct Peer {
    /// Position among the run's peers; also spreads latency recording over
    /// the histogram shards.
    pub id: usize,
    pub conn: Conn,
    /// Window of unacknowledged sends, when it publishes.
    pub window: usize,
    pub send: Option<SendPlan>,
    pub recv: Option<Receiver>,
    /// Subscribe at the start of the phase, with the clock running (replay).
    pub subscribe_first: Option<Subscription>,
    /// Owed deliveries after which its completion time is noted (replay).
    pub complete_after: Option<u64>,
}

impl Peer {
    /// A connection that only receives.
    pub fn receiver(id: usize, conn: Conn, recv: Receiver) -> Peer {
        Peer {
            id,
            conn,
            window: 0,
            send: None,
            recv: Some(recv),
            subscribe_first: None,
            complete_after: None,
        }
    }

    /// A connection that only publishes.
    pub fn publisher(id: usize, conn: Conn, window: usize, plan: SendPlan) -> Peer {
        Peer {
            id,
            conn,
            window,
            send: Some(plan),
            recv: None,
            subscribe_first: None,
            complete_after: None,
        }
    }
}

/// What a peer did and saw.
#[derive(Debug)]
pub struct Outcome {
    pub id: usize,
    pub sent: u64,
    pub acked: u64,
    /// Its receiving checks, to be finished once send counts are final.
    pub recv: Option<Receiver>,
    /// Violations outside the receiving checks: refusals, replies to
    /// nothing, deliveries to a connection that subscribed to nothing.
    pub violations: Violations,
    /// Why the connection failed, if it did.
    pub error: Option<String>,
    /// When the phase started for it, and when it had every delivery in
    /// `complete_after` (nanoseconds on the run's clock).
    pub started_ns: u64,
    pub completed_ns: Option<u64>,
}

/// Runs one peer until the phase says [`Phase::Stop`] (or, for a pure
/// publisher, until every reply is in), waiting at most `wait` for a
/// `subscribe_first` reply.
pub async fn run(
    peer: Peer,
    live: Arc<Live>,
    phase: watch::Receiver<Phase>,
    wait: Duration,
) -> Outcome {
    let Peer {
        id,
        mut conn,
        window,
        send,
        recv,
        subscribe_first,
        complete_after,
    } = peer;
    let mut state = ReadState {
        id,
        recv,
        violations: Violations::default(),
        error: None,
        acked: 0,
        complete_after,
        completed_ns: None,
        samples: Vec::new(),
    };
    let started_ns = live.clock.now_ns();
    if let Some(sub) = &subscribe_first {
        match conn.subscribe(sub, wait).await {
            Ok(early) => state.violations.add(Kind::Misrouted, early, || {
                format!("{early} deliveries arrived before the reply to subscribe")
            }),
            Err(e) => state.error = Some(format!("{e:#}")),
        }
    }
    let window = Window::new(window, conn.proto());
    let mut send_error = None;
    if state.error.is_none() {
        let Conn { reader, writer } = &mut conn;
        let sending = async {
            let result = match &send {
                Some(plan) => publish::send(writer, plan, &window, &live, phase.clone()).await,
                None => answer_pings(writer, &window, phase.clone()).await,
            };
            if let Err(e) = result {
                send_error = Some(format!("writing: {e}"));
            }
        };
        let publisher = send.as_ref().map(|plan| plan.publisher as usize);
        let receiving = read(reader, &mut state, publisher, &window, &live, phase.clone());
        tokio::join!(sending, receiving);
    }
    let sent = window.sent.load(Ordering::Acquire);
    if send.is_some() {
        let unacked = sent.saturating_sub(state.acked);
        state.violations.add(Kind::Unacked, unacked, || {
            format!("{unacked} send(s) of peer {id} never got a reply")
        });
    }
    Outcome {
        id,
        sent,
        acked: state.acked,
        recv: state.recv,
        violations: state.violations,
        error: state.error.or(send_error),
        started_ns,
        completed_ns: state.completed_ns,
    }
}

/// The reading side's bookkeeping.
struct ReadState {
    id: usize,
    recv: Option<Receiver>,
    violations: Violations,
    error: Option<String>,
    acked: u64,
    complete_after: Option<u64>,
    completed_ns: Option<u64>,
    /// Latencies of the current batch, recorded together under one lock.
    samples: Vec<u64>,
}

impl ReadState {
    /// Violations seen so far, for the live count.
    fn violation_total(&self) -> u64 {
        self.violations.total() + self.recv.as_ref().map_or(0, |r| r.violations.total())
    }
}

/// Reads replies and deliveries until the phase stops, the connection ends,
/// or (for a pure publisher) every reply is in.
async fn read(
    reader: &mut Reader,
    state: &mut ReadState,
    publisher: Option<usize>,
    window: &Window,
    live: &Live,
    mut phase: watch::Receiver<Phase>,
) {
    let publishes = publisher.is_some();
    let mut publishing = publishes;
    let mut now_ns = live.clock.now_ns();
    loop {
        let before = state.violation_total();
        let (acks, fresh) = handle_buffered(reader, state, publishes, window, now_ns);
        if acks > 0 {
            window.release(acks);
            state.acked += acks;
            live.acked.fetch_add(acks, Ordering::Relaxed);
            if let Some(slot) = publisher.and_then(|p| live.acked_by_publisher.get(p)) {
                slot.fetch_add(acks, Ordering::Relaxed);
            }
            live.last_ack_ns.fetch_max(now_ns, Ordering::Relaxed);
        }
        if fresh > 0 {
            live.fresh.fetch_add(fresh, Ordering::Relaxed);
            live.last_delivery_ns.fetch_max(now_ns, Ordering::Relaxed);
            live.latencies.record(state.id, &state.samples);
            state.samples.clear();
            let have = state.recv.as_ref().map_or(0, |r| r.fresh);
            if state.completed_ns.is_none() && state.complete_after.is_some_and(|n| have >= n) {
                state.completed_ns = Some(now_ns);
            }
        }
        // Shared by every connection: written only when there is news, as
        // a write makes every other core fetch the line again.
        let new_violations = state.violation_total() - before;
        if new_violations > 0 {
            live.violations.fetch_add(new_violations, Ordering::Relaxed);
        }
        if publishing && window.done.load(Ordering::Acquire) {
            let sent = window.sent.load(Ordering::Acquire);
            if state.acked >= sent {
                publishing = false;
                live.publishers_done.fetch_add(1, Ordering::Release);
                if state.recv.is_none() {
                    break;
                }
            }
        }
        tokio::select! {
            biased;
            _ = phase.wait_for(|p| *p == Phase::Stop) => break,
            read = reader.fill() => match read {
                Ok(0) => {
                    state.error = Some("server closed the connection".into());
                    break;
                }
                Ok(_) => now_ns = live.clock.now_ns(),
                Err(e) => {
                    state.error = Some(format!("reading: {e}"));
                    break;
                }
            },
            _ = window.stopped.notified(), if publishing => {}
        }
    }
    window.close();
    if publishing {
        live.publishers_done.fetch_add(1, Ordering::Release);
    }
}

/// Answers the server's pings on a connection that does not publish, until
/// the phase stops.
async fn answer_pings(
    writer: &mut Writer,
    window: &Window,
    mut phase: watch::Receiver<Phase>,
) -> std::io::Result<()> {
    loop {
        let stopping = tokio::select! {
            _ = phase.wait_for(|p| *p == Phase::Stop) => true,
            _ = window.pong_wanted.notified() => false,
        };
        if stopping {
            return Ok(());
        }
        window.answer_pings(writer);
        writer.flush().await?;
    }
}

/// Handles every complete frame already read; returns the publishes
/// acknowledged and the owed deliveries among them.
fn handle_buffered(
    reader: &mut Reader,
    state: &mut ReadState,
    publishes: bool,
    window: &Window,
    now_ns: u64,
) -> (u64, u64) {
    let (mut acks, mut fresh) = (0, 0);
    while let Some(reply) = reader.next_buffered() {
        match reply {
            Reply::Ack if publishes => acks += window.acknowledged_by(true),
            Reply::Ack => {
                state.violations.add(Kind::Corrupt, 1, || {
                    "a reply arrived on a connection with no command outstanding".into()
                });
            }
            Reply::Refused(reason) => {
                if publishes {
                    acks += window.acknowledged_by(false);
                }
                state
                    .violations
                    .add(Kind::Refused, 1, || format!("the server refused: {reason}"));
            }
            Reply::Ping => window.owe_pong(),
            Reply::Notice => {}
            Reply::Delivery { topic, msg, index } => match &mut state.recv {
                Some(recv) => {
                    if let Some(payload) = recv.on_delivery(&topic, &msg, index) {
                        fresh += 1;
                        state.samples.push(now_ns.saturating_sub(payload.stamp_ns));
                    }
                }
                None => state.violations.add(Kind::Misrouted, 1, || {
                    format!(
                        "a delivery on {topic:?} reached a connection subscribed to nothing: {}",
                        shorten(&msg)
                    )
                }),
            },
            Reply::Garbled(line) => state.violations.add(Kind::Corrupt, 1, || {
                format!("unreadable line from the server: {line}")
            }),
        }
    }
    (acks, fresh)
}
