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

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Notify, Semaphore, TryAcquireError};
use tokio::time::Instant;

use crate::client::{Delivery, Topic, Writer};
use crate::payload::Payload;
use crate::peer::Phase;
use crate::stats::Live;

/// Bytes buffered before a write is forced, so that one large batch does not
/// hold back the first messages in it.
const FLUSH_AT: usize = 64 * 1024;

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

/// Shared by the writing and reading halves of one publisher: the window's
/// permits, what was sent and replied to, and whether sending is over.
#[derive(Debug)]
pub struct Window {
    permits: Semaphore,
    /// Messages written so far.
    pub sent: AtomicU64,
    /// Set once the writer has stopped for good.
    pub done: AtomicBool,
    /// Wakes the reader when the writer stops, so it can tell whether every
    /// reply is in.
    pub stopped: Notify,
}

impl Window {
    /// A window of `size` unacknowledged messages.
    pub fn new(size: usize) -> Window {
        Window {
            permits: Semaphore::new(size),
            sent: AtomicU64::new(0),
            done: AtomicBool::new(false),
            stopped: Notify::new(),
        }
    }

    /// Frees room for `n` more messages after `n` replies.
    pub fn release(&self, n: usize) {
        self.permits.add_permits(n);
    }

    /// Stops the writer: the reader has given up on this connection.
    pub fn close(&self) {
        self.permits.close();
    }

    fn finish(&self) {
        self.done.store(true, Ordering::Release);
        self.stopped.notify_one();
    }
}

/// Sends until the plan's quota or deadline, the phase leaving
/// [`Phase::Run`], or the window being closed; then publishes its final
/// count and marks the window done.
pub async fn send(
    writer: &mut Writer,
    plan: &SendPlan,
    window: &Window,
    live: &Live,
    mut phase: watch::Receiver<Phase>,
) -> io::Result<()> {
    let result = send_until_stopped(writer, plan, window, live, &mut phase).await;
    if let Some(slot) = live.sent_by_publisher.get(plan.publisher as usize) {
        slot.store(window.sent.load(Ordering::Acquire), Ordering::Relaxed);
    }
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
            flush(writer, &mut unflushed, live).await?;
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
                flush(writer, &mut unflushed, live).await?;
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
        window.sent.store(seq, Ordering::Release);
        if writer.buffered() >= FLUSH_AT {
            flush(writer, &mut unflushed, live).await?;
        }
    }
    flush(writer, &mut unflushed, live).await
}

async fn flush(writer: &mut Writer, unflushed: &mut u64, live: &Live) -> io::Result<()> {
    writer.flush().await?;
    live.sent.fetch_add(*unflushed, Ordering::Relaxed);
    *unflushed = 0;
    Ok(())
}
