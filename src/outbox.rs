//! What a connection owes its client: replies and deliveries queued for its
//! socket, and the task that writes them.
//!
//! Topics push deliveries straight into a subscriber's [`Outbox`] (a channel
//! plus a byte count), so a delivery costs no actor message. The writer drains
//! everything queued in one go and writes it with one `writev`, so lines are
//! flushed when nothing more is queued, not one syscall per line.
//!
//! The byte count is the per-connection budget: a client that stops reading
//! is cut off once it owes more than the budget, instead of growing the
//! server without bound (a "slow consumer", as NATS calls it).

use std::io::{self, IoSlice};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use actix::{Message, Recipient};
use bytes::Bytes;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, Notify};

/// Lines per `writev`; Linux refuses more than 1024 slices in one call.
const BATCH: usize = 1024;

/// One item on its way to a client.
#[derive(Debug)]
pub enum Outgoing {
    Line(Bytes),
    /// A `delivery: "one"` message, which goes back to its topic if this
    /// connection goes away before it is written.
    Handoff(Handoff),
    /// Everything queued before this is written, then the socket is closed.
    Close,
}

impl Outgoing {
    fn bytes(&self) -> &[u8] {
        match self {
            Outgoing::Line(line) => line,
            Outgoing::Handoff(handoff) => &handoff.line,
            Outgoing::Close => &[],
        }
    }
}

/// Asks a topic to route a `delivery: "one"` message again because the
/// subscriber it was given to left before receiving it.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Redeliver {
    pub index: u64,
    pub line: Bytes,
    pub cache: bool,
}

/// A `delivery: "one"` message in flight. Dropping it unwritten (the
/// connection closed with it still queued) sends it back to its topic, so a
/// message is never lost to a subscriber that left.
#[derive(Debug)]
pub struct Handoff {
    index: u64,
    line: Bytes,
    cache: bool,
    topic: Option<Recipient<Redeliver>>,
}

impl Handoff {
    pub fn new(index: u64, line: Bytes, cache: bool, topic: Recipient<Redeliver>) -> Self {
        Handoff {
            index,
            line,
            cache,
            topic: Some(topic),
        }
    }

    /// Takes the message back without redelivering it (the topic itself
    /// decides where it goes next).
    pub fn into_parts(mut self) -> (u64, Bytes, bool) {
        self.topic = None;
        (self.index, std::mem::take(&mut self.line), self.cache)
    }

    fn delivered(mut self) {
        self.topic = None;
    }
}

impl Drop for Handoff {
    fn drop(&mut self) {
        if let Some(topic) = self.topic.take() {
            topic.do_send(Redeliver {
                index: self.index,
                line: std::mem::take(&mut self.line),
                cache: self.cache,
            });
        }
    }
}

/// The sending side of a connection's queue; cheap to clone, one per topic
/// the connection subscribes to.
#[derive(Debug, Clone)]
pub struct Outbox {
    tx: mpsc::UnboundedSender<Outgoing>,
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    pending: AtomicUsize,
    budget: usize,
    over_budget: AtomicBool,
    kick: Notify,
}

/// Why a connection's writer stopped.
#[derive(Debug)]
pub enum WriterError {
    /// The client owed more than the budget: it is not reading.
    SlowConsumer {
        pending: usize,
    },
    Io(io::Error),
}

impl Outbox {
    /// A queue whose client may owe at most `budget` bytes.
    pub fn new(budget: usize) -> (Outbox, Writer) {
        let (tx, rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            pending: AtomicUsize::new(0),
            budget,
            over_budget: AtomicBool::new(false),
            kick: Notify::new(),
        });
        let writer = Writer {
            rx,
            shared: shared.clone(),
        };
        (Outbox { tx, shared }, writer)
    }

    /// Queues `item`, or gives it back if the connection is gone or over its
    /// budget (in which case its writer is told to cut it off).
    pub fn push(&self, item: Outgoing) -> Result<(), Outgoing> {
        let len = item.bytes().len();
        let pending = self.shared.pending.fetch_add(len, Ordering::Relaxed) + len;
        if pending > self.shared.budget && !matches!(item, Outgoing::Close) {
            self.shared.pending.fetch_sub(len, Ordering::Relaxed);
            if !self.shared.over_budget.swap(true, Ordering::Relaxed) {
                self.shared.kick.notify_one();
            }
            return Err(item);
        }
        self.tx.send(item).map_err(|e| {
            self.shared.pending.fetch_sub(len, Ordering::Relaxed);
            e.0
        })
    }

    /// Queues a reply; a reply to a connection that is gone has nowhere to go.
    pub fn reply(&self, line: Bytes) {
        let _ = self.push(Outgoing::Line(line));
    }

    /// Flushes what is queued, then closes the socket.
    pub fn close(&self) {
        let _ = self.push(Outgoing::Close);
    }

    /// Bytes queued but not yet written to the socket.
    pub fn pending_bytes(&self) -> usize {
        self.shared.pending.load(Ordering::Relaxed)
    }

    /// Whether this is the queue of the same connection as `other`.
    pub fn same_as(&self, other: &Outbox) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }
}

/// The receiving side: owns the socket's write half.
#[derive(Debug)]
pub struct Writer {
    rx: mpsc::UnboundedReceiver<Outgoing>,
    shared: Arc<Shared>,
}

impl Writer {
    /// Writes until [`Outgoing::Close`], a write error, or the budget is
    /// exceeded. Whatever is still queued when it returns is dropped, which
    /// hands `delivery: "one"` messages back to their topics.
    pub async fn run<W: AsyncWrite + Unpin>(mut self, mut sink: W) -> Result<(), WriterError> {
        let mut batch = Vec::with_capacity(16);
        loop {
            tokio::select! {
                biased;
                () = self.shared.kick.notified() => {
                    return Err(WriterError::SlowConsumer {
                        pending: self.shared.pending.load(Ordering::Relaxed),
                    });
                }
                received = self.rx.recv_many(&mut batch, BATCH) => {
                    if received == 0 {
                        return sink.shutdown().await.map_err(WriterError::Io);
                    }
                }
            }
            let close = batch
                .iter()
                .position(|item| matches!(item, Outgoing::Close));
            if let Some(close) = close {
                batch.truncate(close);
            }
            let written = write_batch(&mut sink, &batch)
                .await
                .map_err(WriterError::Io)?;
            self.shared.pending.fetch_sub(written, Ordering::Relaxed);
            for item in batch.drain(..) {
                if let Outgoing::Handoff(handoff) = item {
                    handoff.delivered();
                }
            }
            if close.is_some() {
                return sink.shutdown().await.map_err(WriterError::Io);
            }
        }
    }
}

async fn write_batch<W: AsyncWrite + Unpin>(sink: &mut W, batch: &[Outgoing]) -> io::Result<usize> {
    let mut slices: Vec<IoSlice<'_>> = batch
        .iter()
        .map(|item| IoSlice::new(item.bytes()))
        .collect();
    let total = slices.iter().map(|s| s.len()).sum();
    let mut rest = &mut slices[..];
    while !rest.is_empty() {
        let n = sink.write_vectored(rest).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        IoSlice::advance_slices(&mut rest, n);
    }
    Ok(total)
}
