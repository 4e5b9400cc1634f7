//! What a connection owes its client: replies and deliveries queued for its
//! socket, and the task that writes them.
//!
//! Topics push deliveries straight into a subscriber's [`Outbox`] (a queue
//! plus a byte count), so a delivery costs no actor message. The writer drains
//! everything queued in one go and writes it with one `writev`, so lines are
//! flushed when nothing more is queued, not one syscall per line.
//!
//! The byte count is the per-connection budget: a client that stops reading
//! is cut off once it owes more than the budget, instead of growing the
//! server without bound (a "slow consumer", as NATS calls it).

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use actix::{Message, Recipient};
use bytes::Bytes;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::Notify;

/// Slices per `writev`; Linux refuses more than 1024 in one call.
const MAX_SLICES: usize = 1024;

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
    shared: Arc<Shared>,
}

/// A plain queue behind a per-connection lock rather than a channel: an idle
/// connection's queue then holds no memory at all (a channel keeps a block
/// of slots allocated), and the writer takes everything queued in one swap.
#[derive(Debug)]
struct Shared {
    queue: Mutex<Queue>,
    /// Wakes the writer when the queue stops being empty.
    wake: Notify,
    /// Interrupts the writer, even in the middle of a write the client is
    /// not reading, when the client goes over its budget.
    kick: Notify,
    budget: usize,
}

/// How far behind a client is: what topics look at to pace publishers.
#[derive(Debug, Clone, Copy)]
pub struct Backlog {
    /// Bytes queued or being written.
    pub pending: usize,
    /// When a write to the socket last succeeded (or the queue was created).
    pub last_write: Instant,
}

#[derive(Debug)]
struct Queue {
    items: VecDeque<Outgoing>,
    /// Bytes queued or being written.
    pending: usize,
    last_write: Instant,
    /// The writer has stopped: nothing more is accepted.
    closed: bool,
    /// A push found the client over its budget.
    over_budget: bool,
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

impl Queue {
    fn backlog(&self) -> Backlog {
        Backlog {
            pending: self.pending,
            last_write: self.last_write,
        }
    }
}

impl Outbox {
    /// A queue whose client may owe at most `budget` bytes.
    pub fn new(budget: usize) -> (Outbox, Writer) {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue {
                items: VecDeque::new(),
                pending: 0,
                last_write: Instant::now(),
                closed: false,
                over_budget: false,
            }),
            wake: Notify::new(),
            kick: Notify::new(),
            budget,
        });
        let writer = Writer {
            shared: shared.clone(),
        };
        (Outbox { shared }, writer)
    }

    /// Queues `item` and says what the client now owes, or gives the item
    /// back if the connection is gone or over its budget (in which case its
    /// writer is told to cut it off).
    pub fn push(&self, item: Outgoing) -> Result<Backlog, Outgoing> {
        let len = item.bytes().len();
        let mut queue = self.shared.lock();
        if queue.closed || queue.over_budget {
            return Err(item);
        }
        if queue.pending + len > self.shared.budget && !matches!(item, Outgoing::Close) {
            queue.over_budget = true;
            drop(queue);
            self.shared.wake.notify_one();
            self.shared.kick.notify_one();
            return Err(item);
        }
        let was_empty = queue.items.is_empty();
        queue.pending += len;
        let backlog = queue.backlog();
        queue.items.push_back(item);
        drop(queue);
        if was_empty {
            self.shared.wake.notify_one();
        }
        Ok(backlog)
    }

    /// Queues a reply; a reply to a connection that is gone has nowhere to go.
    pub fn reply(&self, line: Bytes) {
        let _ = self.push(Outgoing::Line(line));
    }

    /// Flushes what is queued, then closes the socket.
    pub fn close(&self) {
        let _ = self.push(Outgoing::Close);
    }

    /// What the client owes and when its socket last took some of it.
    pub fn backlog(&self) -> Backlog {
        self.shared.lock().backlog()
    }
}

impl Shared {
    /// The queue is only ever held for a push or a swap, and nothing in it
    /// can panic while held, so a poisoned lock still holds a sound queue.
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The receiving side: drains the queue into the socket.
#[derive(Debug)]
pub struct Writer {
    shared: Arc<Shared>,
}

impl Writer {
    /// Writes until [`Outgoing::Close`], a write error, or the budget is
    /// exceeded. Whatever is still queued when it returns is dropped, which
    /// hands `delivery: "one"` messages back to their topics.
    pub async fn run<W: AsyncWrite + Unpin>(self, mut sink: W) -> Result<(), WriterError> {
        let result = self.write_all(&mut sink).await;
        let left = {
            let mut queue = self.shared.lock();
            queue.closed = true;
            std::mem::take(&mut queue.items)
        };
        drop(left);
        match result {
            Ok(()) => sink.shutdown().await.map_err(WriterError::Io),
            Err(error) => Err(error),
        }
    }

    async fn write_all<W: AsyncWrite + Unpin>(&self, sink: &mut W) -> Result<(), WriterError> {
        loop {
            let mut batch = loop {
                {
                    let mut queue = self.shared.lock();
                    if queue.over_budget {
                        return Err(WriterError::SlowConsumer {
                            pending: queue.pending,
                        });
                    }
                    if !queue.items.is_empty() {
                        break std::mem::take(&mut queue.items);
                    }
                }
                self.shared.wake.notified().await;
                // Let the rest of this thread's ready work run first: more
                // lines join the queue and go out in the same `writev`.
                tokio::task::yield_now().await;
            };
            let close = batch
                .iter()
                .position(|item| matches!(item, Outgoing::Close));
            if let Some(close) = close {
                batch.truncate(close);
            }
            tokio::select! {
                biased;
                () = self.shared.kick.notified() => {
                    return Err(WriterError::SlowConsumer {
                        pending: self.shared.lock().pending,
                    });
                }
                written = self.write_batch(sink, batch.make_contiguous()) => {
                    written.map_err(WriterError::Io)?;
                }
            }
            for item in batch {
                if let Outgoing::Handoff(handoff) = item {
                    handoff.delivered();
                }
            }
            if close.is_some() {
                return Ok(());
            }
        }
    }

    /// Writes every line with as few `writev` calls as the kernel allows,
    /// settling the backlog after each call: topics pace publishers by it,
    /// so it must show progress as soon as the socket takes any bytes.
    async fn write_batch<W: AsyncWrite + Unpin>(
        &self,
        sink: &mut W,
        batch: &[Outgoing],
    ) -> io::Result<()> {
        for chunk in batch.chunks(MAX_SLICES) {
            let mut slices: Vec<IoSlice<'_>> = chunk
                .iter()
                .map(|item| IoSlice::new(item.bytes()))
                .collect();
            let mut rest = &mut slices[..];
            while !rest.is_empty() {
                let n = sink.write_vectored(rest).await?;
                if n == 0 {
                    return Err(io::ErrorKind::WriteZero.into());
                }
                let mut queue = self.shared.lock();
                queue.pending -= n;
                queue.last_write = Instant::now();
                drop(queue);
                IoSlice::advance_slices(&mut rest, n);
            }
        }
        Ok(())
    }
}
