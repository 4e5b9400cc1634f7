//! The sending side of a publisher: paced writes under a bounded window of
//! unacknowledged messages.
//!
//! Closed loop sends as fast as replies free the window, which finds the
//! server's maximum throughput. Open loop sends on a fixed schedule and
//! stamps each message with its *scheduled* time, so a server that stalls is
//! charged for every message that should have gone out meanwhile (coordinated
//! omission). The window applies in both, so an overloaded server cannot make
//! loadgen buffer without bound; in open loop the wait still counts in the
//! latency.
//!
//! Where the protocol does not answer each publish (NATS), the writer asks
//! for an answer after each [`SYNCS_PER_WINDOW`]th of the window, and that
//! answer acknowledges the batch before it.

use std::collections::VecDeque;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{watch, Notify, Semaphore, TryAcquireError};
use tokio::time::Instant;

use crate::client::{Delivery, Proto, Topic, Writer};
use crate::payload::Payload;
use crate::phase::Phase;
use crate::stats::Live;

/// Bytes buffered before a write is forced, so that one large batch does not
/// hold back the first messages in it.
const FLUSH_AT: usize = 64 * 1024;

/// Batches per window where publishes are acknowledged in batches: more
/// keeps the pipe fuller, fewer costs fewer round trips.
const SYNCS_PER_WINDOW: usize = 4;

/// How a publisher paces its sends.
#[derive(Debug, Clone, Copy)]
pub enum Pace {
    /// As fast as the window allows.
    Closed,
    /// This many messages per second, each stamped with its scheduled time.
    Open { per_second: f64 },
}

/// Everything one publisher needs to know to send.
#[derive(Debug, Clone)]
pub struct SendPlan {
    /// Publisher number, carried in every message.
    pub publisher: u32,
    /// The run's tag, carried in every message.
    pub run: u32,
    /// Topics sent to in turn: message `seq` goes to `targets[seq % len]`.
    pub targets: Arc<[Topic]>,
    pub delivery: Delivery,
    /// Most messages to send.
    pub quota: Option<u64>,
    /// When to stop sending.
    pub until: Option<Instant>,
    pub pace: Pace,
    /// Message size in bytes.
    pub size: usize,
}

/// Shared by the writing and reading halves of one connection: the window's
/// permits, what was sent, whether sending is over, and the server's pings
/// that the writer must answer.
#[derive(Debug)]
pub struct Window {
    permits: Semaphore,
    /// Publishes per batch, where the protocol acknowledges in batches.
    batch: Option<u64>,
    /// Size of each batch awaiting its acknowledgement, oldest first.
    batches: Mutex<VecDeque<u64>>,
    /// Messages written so far.
    pub sent: AtomicU64,
    /// Set once the writer has stopped for good.
    pub done: AtomicBool,
    /// Wakes the reader when the writer stops, so it can tell whether every
    /// reply is in.
    pub stopped: Notify,
    /// Pings from the server not yet answered.
    pongs_owed: AtomicU64,
    /// Wakes a connection that only receives to answer them.
    pub pong_wanted: Notify,
}

impl Window {
    /// A window of `size` unacknowledged messages over `proto`.
    pub fn new(size: usize, proto: Proto) -> Window {
        Window {
            permits: Semaphore::new(size),
            batch: (!proto.acks_each_publish()).then_some((size / SYNCS_PER_WINDOW).max(1) as u64),
            batches: Mutex::new(VecDeque::new()),
            sent: AtomicU64::new(0),
            done: AtomicBool::new(false),
            stopped: Notify::new(),
            pongs_owed: AtomicU64::new(0),
            pong_wanted: Notify::new(),
        }
    }

    /// How many publishes a reply acknowledges: one each, or a whole batch
    /// for a successful batch reply.
    pub fn acknowledged_by(&self, success: bool) -> u64 {
        match self.batch {
            None => 1,
            Some(_) if success => self.lock_batches().pop_front().unwrap_or(0),
            Some(_) => 0,
        }
    }

    /// Frees room for `n` more messages after their acknowledgement.
    pub fn release(&self, n: u64) {
        self.permits.add_permits(n as usize);
    }

    /// Stops the writer: the reader has given up on this connection.
    pub fn close(&self) {
        self.permits.close();
    }

    /// Notes a ping from the server, for the writer to answer.
    pub fn owe_pong(&self) {
        self.pongs_owed.fetch_add(1, Ordering::Relaxed);
        self.pong_wanted.notify_one();
    }

    /// Queues the answers to the server's pings.
    pub fn answer_pings(&self, writer: &mut Writer) {
        for _ in 0..self.pongs_owed.swap(0, Ordering::Relaxed) {
            writer.pong();
        }
    }

    /// Asks for the acknowledgement of the `unsynced` publishes written since
    /// the last request, where acknowledgements come in batches.
    fn sync(&self, writer: &mut Writer, unsynced: &mut u64) {
        if self.batch.is_some() && *unsynced > 0 {
            self.lock_batches().push_back(*unsynced);
            writer.sync();
            *unsynced = 0;
        }
    }

    fn lock_batches(&self) -> std::sync::MutexGuard<'_, VecDeque<u64>> {
        self.batches.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn finish(&self) {
        self.done.store(true, Ordering::Release);
        self.stopped.notify_one();
    }
}

/// Sends until the plan's quota or deadline, the phase leaving
/// [`Phase::Run`], or the window being closed; then counts itself stopped and
/// marks the window done.
pub async fn send(
    writer: &mut Writer,
    plan: &SendPlan,
    window: &Window,
    live: &Live,
    mut phase: watch::Receiver<Phase>,
) -> io::Result<()> {
    let result = send_until_stopped(writer, plan, window, live, &mut phase).await;
    live.writers_stopped.fetch_add(1, Ordering::Release);
    window.finish();
    result
}

async fn send_until_stopped(
    writer: &mut Writer,
    plan: &SendPlan,
    window: &Window,
    live: &Live,
    phase: &mut watch::Receiver<Phase>,
) -> io::Result<()> {
    let start = Instant::now();
    let far_future = start + Duration::from_secs(365 * 24 * 3600);
    let deadline = tokio::time::sleep_until(plan.until.unwrap_or(far_future));
    tokio::pin!(deadline);
    let stopping = phase.wait_for(|p| *p != Phase::Run);
    tokio::pin!(stopping);
    let mut unflushed = 0;
    let mut unsynced = 0;
    let mut seq = 0u64;
    loop {
        if plan.quota.is_some_and(|quota| seq >= quota) {
            break;
        }
        let scheduled = match plan.pace {
            Pace::Closed => None,
            Pace::Open { per_second } => {
                Some(start + Duration::from_secs_f64(seq as f64 / per_second))
            }
        };
        if let Some(at) = scheduled.filter(|&at| at > Instant::now()) {
            window.sync(writer, &mut unsynced);
            flush(writer, window, live, plan.publisher, &mut unflushed).await?;
            tokio::select! {
                _ = tokio::time::sleep_until(at) => {}
                _ = &mut stopping => break,
                _ = &mut deadline => break,
            }
        }
        match window.permits.try_acquire() {
            Ok(permit) => permit.forget(),
            Err(TryAcquireError::Closed) => break,
            Err(TryAcquireError::NoPermits) => {
                window.sync(writer, &mut unsynced);
                flush(writer, window, live, plan.publisher, &mut unflushed).await?;
                tokio::select! {
                    permit = window.permits.acquire() => match permit {
                        Ok(permit) => permit.forget(),
                        Err(_) => break,
                    },
                    _ = &mut stopping => break,
                    _ = &mut deadline => break,
                }
            }
        }
        let now = Instant::now();
        if plan.until.is_some_and(|until| now >= until) {
            break;
        }
        let payload = Payload {
            run: plan.run,
            publisher: plan.publisher,
            seq,
            stamp_ns: live.clock.ns_at(scheduled.unwrap_or(now)),
        };
        let target = &plan.targets[(seq % plan.targets.len() as u64) as usize];
        writer.publish(target, plan.delivery, &payload, plan.size);
        seq += 1;
        unflushed += 1;
        unsynced += 1;
        window.sent.store(seq, Ordering::Release);
        if window.batch.is_some_and(|batch| unsynced >= batch) {
            window.sync(writer, &mut unsynced);
        }
        if writer.buffered() >= FLUSH_AT {
            flush(writer, window, live, plan.publisher, &mut unflushed).await?;
        }
    }
    window.sync(writer, &mut unsynced);
    flush(writer, window, live, plan.publisher, &mut unflushed).await
}

/// Sends what is queued, with any answers owed to the server's pings. The
/// messages count as sent before the write, so that a write blocked by a
/// stalled server still shows as outstanding, and the publisher's count is
/// known even if it never stops.
async fn flush(
    writer: &mut Writer,
    window: &Window,
    live: &Live,
    publisher: u32,
    unflushed: &mut u64,
) -> io::Result<()> {
    window.answer_pings(writer);
    live.sent.fetch_add(*unflushed, Ordering::Relaxed);
    *unflushed = 0;
    if let Some(slot) = live.sent_by_publisher.get(publisher as usize) {
        slot.store(window.sent.load(Ordering::Acquire), Ordering::Relaxed);
    }
    writer.flush().await
}
