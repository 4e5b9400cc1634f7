//! `SessionActor`: one TCP connection, from its first line to its close.
//!
//! It reads lines through [`LineCodec`], answers bad ones itself and carries
//! out commands by messaging the topic actors, whose addresses its worker
//! thread keeps after the first lookup (`directory`). Everything it owes the client goes through its
//! [`Outbox`], written by a separate task, so topics deliver without going
//! through this actor at all.
//!
//! Replies keep command order because the session never has two commands in
//! flight at once where order could be observed: a `send` is answered as soon
//! as it is queued in its topic's mailbox (which already fixes its place
//! relative to every later command on that topic), while `subscribe`,
//! `unsubscribe` and topic lookups make the session wait (`ctx.wait`), which
//! also stops it reading further lines until they are done.
//!
//! Consecutive `send`s read in one go are handed to each topic as one
//! [`PublishBatch`] and answered together once queued: one mailbox message
//! and one batch of lines per read instead of one per line. Any other line
//! first waits for the sends before it, so nothing overtakes them.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use actix::prelude::*;
use bytes::{Bytes, BytesMut};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use tokio_util::codec::FramedRead;

use crate::codec::{Framed, LineCodec};
use crate::config::Limits;
use crate::directory;
use crate::outbox::{Outbox, Writer, WriterError};
use crate::protocol::{self, Command, Delivery, DeliveryTemplate, Line, ProtocolError, OK};
use crate::registry::{Lookup, Registry};
use crate::shutdown::Shutdown;
use crate::stats::Stats;
use crate::topic::{self, Publish, PublishBatch, TopicActor};

/// Identifies a connection to the topics it subscribes to. Taken from a
/// process-wide counter, so two connections never share one.
pub type SessionId = u64;

static NEXT_SESSION: AtomicU64 = AtomicU64::new(0);

/// What a command asks of its topic, owned so it can wait for a lookup.
enum Action {
    Publish(Publish),
    Subscribe { last_seen: i64, replay: bool },
    Unsubscribe,
}

/// Tells a session that its writer stopped, so the connection is over.
#[derive(Message)]
#[rtype(result = "()")]
struct WriterStopped(WriterError);

/// One client connection.
pub struct SessionActor {
    id: SessionId,
    peer: SocketAddr,
    registry: Addr<Registry>,
    outbox: Outbox,
    writer: Option<(Writer, OwnedWriteHalf)>,
    /// The topics this connection subscribes to.
    subscriptions: HashMap<Box<str>, Addr<TopicActor>>,
    stats: Arc<Stats>,
    shutdown: Shutdown,
    /// The read side; cancelled when the broker drains for shutdown.
    reading: Option<SpawnHandle>,
    sends: PendingSends,
    closing: bool,
}

/// `send`s read but not yet handed to their topics, grouped by topic.
#[derive(Default)]
struct PendingSends {
    batches: Vec<(Addr<TopicActor>, Vec<Publish>)>,
    /// For each send in reading order, the batch it went into.
    order: Vec<usize>,
    /// A handover is scheduled for the end of the current read.
    scheduled: bool,
}

impl PendingSends {
    fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    fn push(&mut self, topic: &Addr<TopicActor>, publish: Publish) {
        let batch = match self.batches.iter().position(|(t, _)| t == topic) {
            Some(batch) => batch,
            None => {
                self.batches.push((topic.clone(), Vec::new()));
                self.batches.len() - 1
            }
        };
        self.batches[batch].1.push(publish);
        self.order.push(batch);
    }
}

/// A handover of pending sends in progress, possibly waiting for room in a
/// topic's mailbox, and what to do once all are queued.
struct Handover {
    batches: VecDeque<(Addr<TopicActor>, PublishBatch)>,
    order: Vec<usize>,
    /// Whether each batch, in order, reached its topic.
    queued: Vec<bool>,
    then: Then,
}

/// What comes after the pending sends: whatever must not overtake them.
enum Then {
    Nothing,
    /// A line that is not a send on a known topic, handled as usual.
    Line(BytesMut),
    Reply(Bytes),
    Stop,
}

impl SessionActor {
    /// Starts the session for `stream` on the current thread's arbiter.
    pub fn start(
        stream: TcpStream,
        peer: SocketAddr,
        registry: Addr<Registry>,
        limits: &Limits,
        stats: Arc<Stats>,
        shutdown: Shutdown,
    ) -> Addr<SessionActor> {
        let (read, write) = stream.into_split();
        let (outbox, writer) = Outbox::new(limits.max_pending);
        let max_line = limits.max_line;
        SessionActor::create(move |ctx| {
            let reading = ctx.add_stream(FramedRead::with_capacity(
                read,
                LineCodec::new(max_line),
                READ_BUFFER,
            ));
            SessionActor {
                id: NEXT_SESSION.fetch_add(1, Ordering::Relaxed),
                peer,
                registry,
                outbox,
                writer: Some((writer, write)),
                subscriptions: HashMap::new(),
                stats,
                shutdown,
                reading: Some(reading),
                sends: PendingSends::default(),
                closing: false,
            }
        })
    }

    /// Shutdown has begun: read no more commands, and close once every
    /// topic has handed out what this connection is owed.
    fn drain(&mut self, ctx: &mut Context<Self>) {
        if let Some(reading) = self.reading.take() {
            ctx.cancel_future(reading);
        }
        self.after_sends(Then::Nothing, ctx);
        ctx.spawn(
            self.shutdown
                .closing()
                .into_actor(self)
                .map(|(), _, ctx| ctx.stop()),
        );
    }

    /// Queues a send on a known topic for the end of this read; anything
    /// else waits for the queued sends first.
    fn handle_frame(&mut self, frame: Framed, ctx: &mut Context<Self>) {
        let line = match frame {
            Framed::TooLong => {
                return self.after_sends(Then::Reply(ProtocolError::LineTooLong.reply()), ctx)
            }
            Framed::Line(line) => line,
        };
        if let Ok(Line::Command(Command::Send(send))) = protocol::parse_line(&line) {
            let sends = &mut self.sends;
            if directory::with(&send.topic, |topic| sends.push(topic, publish_of(&send))).is_some()
            {
                if !self.sends.scheduled {
                    // Spawned futures run once the stream has yielded what it
                    // has read: the sends go out together at the end of it.
                    self.sends.scheduled = true;
                    ctx.spawn(actix::fut::ready(()).map(|(), session: &mut Self, ctx| {
                        session.after_sends(Then::Nothing, ctx)
                    }));
                }
                return;
            }
        }
        self.after_sends(Then::Line(line), ctx);
    }

    /// Hands the pending sends to their topics, answers them, then does `then`.
    fn after_sends(&mut self, then: Then, ctx: &mut Context<Self>) {
        let sends = std::mem::take(&mut self.sends);
        if sends.is_empty() {
            return self.then(then, ctx);
        }
        let handover = Handover {
            queued: Vec::with_capacity(sends.batches.len()),
            batches: sends
                .batches
                .into_iter()
                .map(|(topic, batch)| (topic, PublishBatch(batch)))
                .collect(),
            order: sends.order,
            then,
        };
        self.hand_over(handover, ctx);
    }

    fn hand_over(&mut self, mut handover: Handover, ctx: &mut Context<Self>) {
        while let Some((topic, batch)) = handover.batches.pop_front() {
            match topic.try_send(batch) {
                Ok(()) => handover.queued.push(true),
                Err(SendError::Full(batch)) => {
                    // The topic is behind: stop reading this client until it
                    // has room, which is what slows a flooding publisher down.
                    ctx.wait(
                        topic
                            .send(batch)
                            .into_actor(self)
                            .map(move |sent, session, ctx| {
                                handover.queued.push(sent.is_ok());
                                session.hand_over(handover, ctx);
                            }),
                    );
                    return;
                }
                Err(SendError::Closed(_)) => handover.queued.push(false),
            }
        }
        for batch in &handover.order {
            self.outbox.reply(reply_for(handover.queued[*batch]));
        }
        self.then(handover.then, ctx);
    }

    fn then(&mut self, then: Then, ctx: &mut Context<Self>) {
        match then {
            Then::Nothing => {}
            Then::Line(line) => self.handle_line(&line, ctx),
            Then::Reply(reply) => self.outbox.reply(reply),
            Then::Stop => ctx.stop(),
        }
    }

    fn handle_line(&mut self, line: &[u8], ctx: &mut Context<Self>) {
        match protocol::parse_line(line) {
            Err(error) => self.outbox.reply(error.reply()),
            Ok(Line::Empty) => {}
            Ok(Line::Quit) => {
                self.closing = true;
                ctx.stop();
            }
            Ok(Line::Command(command)) => self.execute(command, ctx),
        }
    }

    fn execute(&mut self, command: Command<'_>, ctx: &mut Context<Self>) {
        let action = match &command {
            Command::Send(send) => Action::Publish(publish_of(send)),
            Command::Subscribe(sub) => Action::Subscribe {
                last_seen: sub.last_seen,
                replay: sub.cache,
            },
            Command::Unsubscribe { .. } => Action::Unsubscribe,
        };
        let name = command.topic();
        if let Action::Unsubscribe = action {
            return self.unsubscribe(name, ctx);
        }
        if let Some(topic) = directory::with(name, Addr::clone) {
            return self.carry_out(name, topic, action, ctx);
        }
        let name: Box<str> = name.into();
        ctx.wait(
            self.registry
                .send(Lookup {
                    name: name.clone(),
                    worker: Arbiter::current(),
                })
                .into_actor(self)
                .map(move |found, session, ctx| match found {
                    Ok(topic) => {
                        directory::insert(name.clone(), topic.clone());
                        session.carry_out(&name, topic, action, ctx);
                    }
                    Err(_) => session.outbox.reply(ProtocolError::Internal.reply()),
                }),
        );
    }

    /// Always answered with success; only a subscription needs its topic told.
    fn unsubscribe(&mut self, name: &str, ctx: &mut Context<Self>) {
        let Some(topic) = self.subscriptions.remove(name) else {
            return self.outbox.reply(Bytes::from_static(OK));
        };
        let sent = topic.send(topic::Unsubscribe { session: self.id });
        ctx.wait(
            sent.into_actor(self)
                .map(|sent, session, _| session.outbox.reply(reply_for(sent.is_ok()))),
        );
    }

    /// Runs a `send` or `subscribe` against its topic.
    fn carry_out(
        &mut self,
        name: &str,
        topic: Addr<TopicActor>,
        action: Action,
        ctx: &mut Context<Self>,
    ) {
        match action {
            Action::Publish(publish) => match topic.try_send(publish) {
                Ok(()) => self.outbox.reply(Bytes::from_static(OK)),
                Err(SendError::Full(publish)) => {
                    // The topic is behind: stop reading this client until it
                    // has room, which is what slows a flooding publisher down.
                    let sent = topic.send(publish);
                    ctx.wait(
                        sent.into_actor(self)
                            .map(|sent, session, _| session.outbox.reply(reply_for(sent.is_ok()))),
                    );
                }
                Err(SendError::Closed(_)) => self.outbox.reply(ProtocolError::Internal.reply()),
            },
            Action::Subscribe { last_seen, replay } => {
                let subscribe = topic::Subscribe {
                    session: self.id,
                    outbox: self.outbox.clone(),
                    last_seen,
                    replay,
                };
                let sent = topic.send(subscribe);
                self.subscriptions.insert(name.into(), topic);
                ctx.wait(sent.into_actor(self).map(|sent, session, _| {
                    if sent.is_err() {
                        session.outbox.reply(ProtocolError::Internal.reply());
                    }
                }));
            }
            Action::Unsubscribe => self.unsubscribe(name, ctx),
        }
    }
}

/// The reply to a command that did (or, never expected, did not) reach its
/// topic.
fn reply_for(reached: bool) -> Bytes {
    if reached {
        Bytes::from_static(OK)
    } else {
        ProtocolError::Internal.reply()
    }
}

/// The message a `send` becomes, encoded once for all its subscribers.
fn publish_of(send: &protocol::Send<'_>) -> Publish {
    Publish {
        template: DeliveryTemplate::new(send),
        one: send.delivery == Delivery::One,
        cache: send.cache.unwrap_or(true),
    }
}

/// Initial read buffer per connection; it grows for longer lines. Kept small
/// because an idle connection should cost little memory.
const READ_BUFFER: usize = 512;

impl Actor for SessionActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        tracing::debug!(peer = %self.peer, session = self.id, "connected");
        let Some((writer, sink)) = self.writer.take() else {
            return;
        };
        let session = ctx.address().downgrade();
        let stats = self.stats.clone();
        stats.writer_started();
        actix::spawn(async move {
            let result = writer.run(sink).await;
            stats.writer_stopped();
            if let (Err(error), Some(session)) = (result, session.upgrade()) {
                session.do_send(WriterStopped(error));
            }
        });
        ctx.spawn(
            self.shutdown
                .draining()
                .into_actor(self)
                .map(|(), session, ctx| session.drain(ctx)),
        );
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        // Cut off before the end of a read: those sends were received, so
        // they are delivered, though their replies can no longer be sent.
        for (topic, batch) in std::mem::take(&mut self.sends).batches {
            topic.do_send(PublishBatch(batch));
        }
        for topic in self.subscriptions.values() {
            topic.do_send(topic::Unsubscribe { session: self.id });
        }
        self.outbox.close();
        self.stats.session_stopped();
        tracing::debug!(peer = %self.peer, session = self.id, "disconnected");
    }
}

impl StreamHandler<io::Result<Framed>> for SessionActor {
    fn handle(&mut self, frame: io::Result<Framed>, ctx: &mut Self::Context) {
        if self.closing {
            return;
        }
        match frame {
            Ok(frame) => self.handle_frame(frame, ctx),
            Err(error) => {
                tracing::debug!(peer = %self.peer, %error, "read failed");
                self.after_sends(Then::Stop, ctx);
            }
        }
    }

    /// The client closed its side: what it sent before still counts.
    fn finished(&mut self, ctx: &mut Self::Context) {
        self.after_sends(Then::Stop, ctx);
    }
}

impl Handler<WriterStopped> for SessionActor {
    type Result = ();

    fn handle(&mut self, WriterStopped(error): WriterStopped, ctx: &mut Self::Context) {
        match error {
            WriterError::SlowConsumer { pending } => {
                self.stats.slow_consumer();
                tracing::warn!(
                    peer = %self.peer,
                    topics = self.subscriptions.len(),
                    pending_bytes = pending,
                    "slow consumer disconnected: it owed more than the --max-pending budget"
                );
            }
            WriterError::Io(error) => {
                tracing::debug!(peer = %self.peer, %error, "write failed");
            }
        }
        ctx.stop();
    }
}
