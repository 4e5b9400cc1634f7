//! `SessionActor`: one TCP connection, from its first line to its close.
//!
//! It reads lines through [`LineCodec`], answers bad ones itself and carries
//! out commands by messaging the topic actors, whose addresses it keeps after
//! the first lookup. Everything it owes the client goes through its
//! [`Outbox`], written by a separate task, so topics deliver without going
//! through this actor at all.
//!
//! Replies keep command order because the session never has two commands in
//! flight at once where order could be observed: a `send` is answered as soon
//! as it is queued in its topic's mailbox (which already fixes its place
//! relative to every later command on that topic), while `subscribe`,
//! `unsubscribe` and topic lookups make the session wait (`ctx.wait`), which
//! also stops it reading further lines until they are done.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use actix::prelude::*;
use bytes::Bytes;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use tokio_util::codec::FramedRead;

use crate::codec::{Framed, LineCodec};
use crate::config::Limits;
use crate::outbox::{Outbox, Writer, WriterError};
use crate::protocol::{self, Command, Delivery, DeliveryTemplate, Line, ProtocolError, OK};
use crate::registry::{Lookup, Registry};
use crate::shutdown::Shutdown;
use crate::stats::Stats;
use crate::topic::{self, Publish, TopicActor};

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

struct Link {
    topic: Addr<TopicActor>,
    subscribed: bool,
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
    topics: HashMap<Box<str>, Link>,
    stats: Arc<Stats>,
    shutdown: Shutdown,
    /// The read side; cancelled when the broker drains for shutdown.
    reading: Option<SpawnHandle>,
    closing: bool,
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
                topics: HashMap::new(),
                stats,
                shutdown,
                reading: Some(reading),
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
        ctx.spawn(
            self.shutdown
                .closing()
                .into_actor(self)
                .map(|(), _, ctx| ctx.stop()),
        );
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
            Command::Send(send) => Action::Publish(Publish {
                template: DeliveryTemplate::new(send),
                one: send.delivery == Delivery::One,
                cache: send.cache.unwrap_or(true),
            }),
            Command::Subscribe(sub) => Action::Subscribe {
                last_seen: sub.last_seen,
                replay: sub.cache,
            },
            Command::Unsubscribe { .. } => Action::Unsubscribe,
        };
        let name = command.topic();
        if self.topics.contains_key(name) {
            self.carry_out(name, action, ctx);
            return;
        }
        if let Action::Unsubscribe = action {
            // Never named here, so certainly not subscribed.
            self.outbox.reply(Bytes::from_static(OK));
            return;
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
                        session.topics.insert(
                            name.clone(),
                            Link {
                                topic,
                                subscribed: false,
                            },
                        );
                        session.carry_out(&name, action, ctx);
                    }
                    Err(_) => session.outbox.reply(ProtocolError::Internal.reply()),
                }),
        );
    }

    /// Runs `action` against a topic this session already has the address of.
    fn carry_out(&mut self, name: &str, action: Action, ctx: &mut Context<Self>) {
        let Some(link) = self.topics.get_mut(name) else {
            self.outbox.reply(ProtocolError::Internal.reply());
            return;
        };
        match action {
            Action::Publish(publish) => match link.topic.try_send(publish) {
                Ok(()) => self.outbox.reply(Bytes::from_static(OK)),
                Err(SendError::Full(publish)) => {
                    // The topic is behind: stop reading this client until it
                    // has room, which is what slows a flooding publisher down.
                    let sent = link.topic.send(publish);
                    ctx.wait(sent.into_actor(self).map(|sent, session, _| {
                        session.outbox.reply(match sent {
                            Ok(()) => Bytes::from_static(OK),
                            Err(_) => ProtocolError::Internal.reply(),
                        })
                    }));
                }
                Err(SendError::Closed(_)) => self.outbox.reply(ProtocolError::Internal.reply()),
            },
            Action::Subscribe { last_seen, replay } => {
                link.subscribed = true;
                let subscribe = topic::Subscribe {
                    session: self.id,
                    outbox: self.outbox.clone(),
                    last_seen,
                    replay,
                };
                let sent = link.topic.send(subscribe);
                ctx.wait(sent.into_actor(self).map(|sent, session, _| {
                    if sent.is_err() {
                        session.outbox.reply(ProtocolError::Internal.reply());
                    }
                }));
            }
            Action::Unsubscribe if !link.subscribed => self.outbox.reply(Bytes::from_static(OK)),
            Action::Unsubscribe => {
                link.subscribed = false;
                let sent = link.topic.send(topic::Unsubscribe { session: self.id });
                ctx.wait(sent.into_actor(self).map(|sent, session, _| {
                    session.outbox.reply(match sent {
                        Ok(()) => Bytes::from_static(OK),
                        Err(_) => ProtocolError::Internal.reply(),
                    })
                }));
            }
        }
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
        for link in self.topics.values().filter(|link| link.subscribed) {
            link.topic.do_send(topic::Unsubscribe { session: self.id });
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
            Ok(Framed::Line(line)) => self.handle_line(&line, ctx),
            Ok(Framed::TooLong) => self.outbox.reply(ProtocolError::LineTooLong.reply()),
            Err(error) => {
                tracing::debug!(peer = %self.peer, %error, "read failed");
                ctx.stop();
            }
        }
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
                    topics = self.topics.values().filter(|l| l.subscribed).count(),
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
