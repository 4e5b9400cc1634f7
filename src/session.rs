//! `SessionActor`: one TCP connection, from its first line to its close.
//!
//! Each line is parsed once ([`protocol::parse_line`]) and carried out by
//! messaging the topic actors, whose handles its worker thread keeps
//! (`directory`); a topic not known yet is looked up in the `Registry`
//! first, and then goes the same way. Everything it owes the client goes
//! through its [`Outbox`], written by a separate task, so topics deliver
//! without going through this actor at all.
//!
//! Replies keep command order because the session never has two commands in
//! flight at once where order could be observed: a `send` is answered as soon
//! as it is handed to its topic's mailbox (which already fixes its place
//! relative to every later command on that topic), while `subscribe`,
//! `unsubscribe` and topic lookups make the session wait (`ctx.wait`), which
//! also stops it reading further lines until they are done.
//!
//! Consecutive `send`s read in one go are handed to each topic as one
//! [`PublishBatch`] and answered together: one mailbox message and one batch
//! of lines per read instead of one per line. A batch is handed over only
//! once its topic has credit for it; until then the session reads nothing
//! more, which is what slows a publisher to its topic's pace. Any other line
//! first waits for the sends before it, so nothing overtakes them.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use actix::prelude::*;
use bytes::Bytes;
use futures_util::future::join_all;
use tokio_util::task::task_tracker::TaskTrackerToken;

use crate::codec::Framed;
use crate::config::{Limits, AUTH_FAILURE_DELAY, LOGGED_USER_NAME_CHARS, MAX_AUTH_FAILURES};
use crate::directory;
use crate::memory::Memory;
use crate::metrics;
use crate::outbox::{Outbox, Writer, WriterError};
use crate::protocol::{self, Command, Delivery, DeliveryTemplate, Line, ProtocolError, OK};
use crate::reader::Lines;
use crate::registry::{Lookup, Registry};
use crate::security::limits::PerIp;
use crate::security::tls::{Connection, Sink};
use crate::security::users::{Authenticator, User};
use crate::shutdown::Shutdown;
use crate::stats::{Admitted, Stats};
use crate::topic::{self, Publish, PublishBatch, TopicActor, TopicHandle, WeakTopic};

/// Tells a session that its writer stopped, so the connection is over.
#[derive(Message)]
#[rtype(result = "()")]
struct WriterStopped(WriterError);

/// What a running broker lends every session: one `Arc` of it each, not a
/// copy of every handle (a copy of an actix address alone allocates).
pub struct Shared {
    pub registry: Addr<Registry>,
    pub limits: Arc<Limits>,
    pub stats: Arc<Stats>,
    pub memory: Arc<Memory>,
    pub shutdown: Shutdown,
    /// `--users`; `None`: no authentication, every command allowed.
    pub users: Option<Arc<Authenticator>>,
    /// `--max-connections-per-ip`, which the acceptors check.
    pub per_ip: Arc<PerIp>,
}

/// What a connection may do.
enum Access {
    /// Authentication is off: everything.
    Open,
    /// `--users` is on and the client has not authenticated yet.
    Required,
    /// Authenticated, by password or client certificate.
    As(Arc<User>),
}

impl Access {
    /// Refuses a command the connection may not run.
    fn check(&self, command: &Command<'_>) -> Result<(), ProtocolError> {
        let user = match self {
            Access::Open => return Ok(()),
            Access::Required => return Err(ProtocolError::AuthenticationRequired),
            Access::As(user) => user,
        };
        let allowed = match command {
            Command::Send(send) => user.permissions.publish.allows(&send.topic),
            Command::Subscribe(sub) => user.permissions.subscribe.allows(&sub.topic),
            // Leaving a topic needs no permission.
            Command::Unsubscribe { .. } => true,
        };
        allowed.then_some(()).ok_or(ProtocolError::PermissionDenied)
    }

    /// Whether a subscription to `topic` may replay its cached history.
    fn may_replay(&self, topic: &str) -> bool {
        match self {
            Access::As(user) => user.permissions.replay.allows(topic),
            Access::Open | Access::Required => true,
        }
    }
}

/// One client connection.
pub struct SessionActor {
    peer: SocketAddr,
    shared: Arc<Shared>,
    outbox: Outbox,
    /// The topics this connection subscribes to.
    subscriptions: HashMap<Box<str>, Addr<TopicActor>>,
    /// The read side; cancelled when the broker drains for shutdown.
    reading: Option<SpawnHandle>,
    sends: PendingSends,
    /// Bytes of lines read and not yet counted in the metrics, which are
    /// told once per read rather than once per line.
    received: u64,
    closing: bool,
    access: Access,
    /// `auth` commands that failed; at [`MAX_AUTH_FAILURES`] the connection
    /// is closed.
    auth_failures: u32,
    /// Keeps shutdown waiting until this session is gone.
    _tracked: TaskTrackerToken,
}

/// `send`s read but not yet handed to their topics, grouped by topic.
#[derive(Default)]
struct PendingSends {
    batches: Vec<(TopicHandle, Vec<Publish>)>,
    /// For each send in reading order, the batch it went into.
    order: Vec<usize>,
    /// A handover is scheduled for the end of the current read.
    scheduled: bool,
    /// How many of them are `delivery: "all"` and `"one"`, for the metrics.
    all: u64,
    one: u64,
}

impl PendingSends {
    fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    fn push(&mut self, topic: &TopicHandle, publish: Publish) {
        let batch = match self.batches.iter().position(|(t, _)| t.same(topic)) {
            Some(batch) => batch,
            None => {
                self.batches.push((topic.clone(), Vec::new()));
                self.batches.len() - 1
            }
        };
        self.add(batch, publish);
    }

    /// Like `push`, for a topic as the directory knows it: gives the send
    /// back if the topic has retired.
    fn push_known(&mut self, topic: &WeakTopic, publish: Publish) -> Result<(), Publish> {
        let batch = match self.batches.iter().position(|(t, _)| topic.is(t)) {
            Some(batch) => batch,
            None => {
                let Some(topic) = topic.upgrade() else {
                    return Err(publish);
                };
                self.batches.push((topic, Vec::new()));
                self.batches.len() - 1
            }
        };
        self.add(batch, publish);
        Ok(())
    }

    fn add(&mut self, batch: usize, publish: Publish) {
        match publish.delivery {
            Delivery::All => self.all += 1,
            Delivery::One => self.one += 1,
        }
        self.batches[batch].1.push(publish);
        self.order.push(batch);
    }
}

/// A handover of pending sends in progress, possibly waiting for a topic's
/// credit, and what to do once all are handed over.
struct Handover {
    batches: VecDeque<(TopicHandle, Vec<Publish>)>,
    order: Vec<usize>,
    /// Whether each batch, in order, reached its topic.
    reached: Vec<bool>,
    /// What each batch, in order, is answered if it did not.
    refusals: Vec<ProtocolError>,
    /// `--fsync always`: the batches (by position) still to be committed.
    commits: Vec<(usize, tokio::sync::oneshot::Receiver<()>)>,
    then: Then,
}

impl Handover {
    fn deliver(&mut self, topic: &TopicHandle, publishes: Vec<Publish>, credit: topic::Credit) {
        let reached = deliver(topic, publishes, credit);
        if reached && topic.acks_after_commit() {
            let (done, committed) = tokio::sync::oneshot::channel();
            topic.addr().do_send(topic::WhenCommitted(done));
            self.commits.push((self.reached.len(), committed));
        }
        self.reached.push(reached);
        self.refusals.push(topic.refusal());
    }
}

/// What comes after the pending sends: whatever must not overtake them.
enum Then {
    Nothing,
    Subscribe {
        topic: Box<str>,
        last_seen: i64,
        replay: bool,
    },
    Unsubscribe(Box<str>),
    Auth {
        user: String,
        password: String,
    },
    Reply(Bytes),
    Quit,
    Stop,
}

impl SessionActor {
    /// Starts the session for `connection` on the current thread's arbiter.
    /// A client certificate whose common name is a user's logs in as that
    /// user.
    pub fn start(
        connection: Connection,
        peer: SocketAddr,
        admitted: Admitted,
        shared: Arc<Shared>,
    ) -> Addr<SessionActor> {
        let access = match &shared.users {
            None => Access::Open,
            Some(users) => match connection.client_name().and_then(|name| users.user(&name)) {
                Some(user) => {
                    tracing::debug!(%peer, user = %user.name, "authenticated by certificate");
                    Access::As(user)
                }
                None => Access::Required,
            },
        };
        let (read, write) = connection.split();
        let (outbox, writer) = Outbox::new(shared.limits.max_pending, shared.memory.clone());
        let lines = Lines::new(
            read,
            shared.limits.max_line,
            shared.limits.line_timeout,
            shared.memory.clone(),
        );
        SessionActor::create(move |ctx| {
            spawn_writer(writer, write, admitted, ctx.address().downgrade(), &shared);
            SessionActor {
                peer,
                outbox,
                subscriptions: HashMap::new(),
                reading: Some(ctx.add_stream(lines)),
                sends: PendingSends::default(),
                received: 0,
                closing: false,
                access,
                auth_failures: 0,
                _tracked: shared.shutdown.track(),
                shared,
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
            self.shared
                .shutdown
                .closing()
                .into_actor(self)
                .map(|(), _, ctx| ctx.stop()),
        );
    }

    /// Carries out one line; only a `send` may wait in the pending sends.
    fn handle_frame(&mut self, frame: Framed, ctx: &mut Context<Self>) {
        let line = match frame {
            Framed::TooLong => {
                metrics::get().parse_error(ProtocolError::LineTooLong);
                return self.after_sends(Then::Reply(ProtocolError::LineTooLong.reply()), ctx);
            }
            Framed::Line(line) => line,
        };
        self.received += line.len() as u64;
        let then = match protocol::parse_line(&line) {
            Err(error) => {
                metrics::get().parse_error(error);
                Then::Reply(error.reply())
            }
            Ok(Line::Empty) => return,
            Ok(Line::Quit) => Then::Quit,
            // Without --users, `auth` is no command, as in the core protocol.
            Ok(Line::Auth(_)) if self.shared.users.is_none() => {
                Then::Reply(ProtocolError::Malformed.reply())
            }
            Ok(Line::Auth(auth)) => Then::Auth {
                user: auth.user.into_owned(),
                password: auth.password.0.into_owned(),
            },
            Ok(Line::Command(command)) => match self.access.check(&command) {
                Err(refused) => Then::Reply(refused.reply()),
                Ok(()) => match command {
                    Command::Send(send) => return self.send(&send, ctx),
                    Command::Subscribe(sub) => Then::Subscribe {
                        replay: sub.cache && self.access.may_replay(&sub.topic),
                        topic: sub.topic.into(),
                        last_seen: sub.last_seen,
                    },
                    Command::Unsubscribe { topic } => Then::Unsubscribe(topic.into()),
                },
            },
        };
        self.after_sends(then, ctx);
    }

    /// Adds a `send` to the pending sends, once its topic is known.
    fn send(&mut self, send: &protocol::Send<'_>, ctx: &mut Context<Self>) {
        if !self.shared.memory.admits_send() {
            return self.after_sends(Then::Reply(ProtocolError::OutOfMemory.reply()), ctx);
        }
        let mut publish = Some(Publish {
            template: DeliveryTemplate::new(send),
            delivery: send.delivery,
            cache: send.cache.unwrap_or(true),
        });
        let sends = &mut self.sends;
        directory::with(&send.topic, |topic| {
            if let Some(known) = publish.take() {
                publish = sends.push_known(topic, known).err();
            }
        });
        match publish {
            None => self.schedule_handover(ctx),
            Some(publish) => self.look_up(&send.topic, ctx, move |session, topic, ctx| {
                session.sends.push(topic, publish);
                session.schedule_handover(ctx);
            }),
        }
    }

    /// Runs `then` with the handle of topic `name`, asking the registry (and
    /// reading nothing meanwhile) if this worker does not know it yet.
    fn look_up(
        &mut self,
        name: &str,
        ctx: &mut Context<Self>,
        then: impl FnOnce(&mut Self, &TopicHandle, &mut Context<Self>) + 'static,
    ) {
        if let Some(topic) = directory::with(name, WeakTopic::upgrade).flatten() {
            return then(self, &topic, ctx);
        }
        let lookup = Lookup {
            name: name.into(),
            worker: Arbiter::current(),
        };
        ctx.wait(self.shared.registry.send(lookup).into_actor(self).map(
            move |found, session, ctx| match found {
                Ok((name, topic)) => {
                    directory::insert(name, topic.downgrade());
                    then(session, &topic, ctx);
                }
                Err(_) => session.outbox.reply(ProtocolError::Internal.reply()),
            },
        ));
    }

    /// Hands the pending sends over at the end of the current read.
    fn schedule_handover(&mut self, ctx: &mut Context<Self>) {
        if !self.sends.scheduled {
            // Spawned futures run once the stream has yielded what it has
            // read: the sends go out together at the end of it.
            self.sends.scheduled = true;
            ctx.spawn(
                actix::fut::ready(())
                    .map(|(), session: &mut Self, ctx| session.after_sends(Then::Nothing, ctx)),
            );
        }
    }

    /// Hands the pending sends to their topics, answers them, then does `then`.
    fn after_sends(&mut self, then: Then, ctx: &mut Context<Self>) {
        let sends = std::mem::take(&mut self.sends);
        self.count_reads(&sends);
        if sends.is_empty() {
            return self.then(then, ctx);
        }
        let handover = Handover {
            reached: Vec::with_capacity(sends.batches.len()),
            refusals: Vec::with_capacity(sends.batches.len()),
            commits: Vec::new(),
            batches: sends.batches.into(),
            order: sends.order,
            then,
        };
        self.hand_over(handover, ctx);
    }

    /// Tells the metrics what was read since last time, before any of it
    /// is answered: whoever sees a reply also sees it counted.
    fn count_reads(&mut self, sends: &PendingSends) {
        let metrics = metrics::get();
        if self.received > 0 {
            metrics.received(std::mem::take(&mut self.received));
        }
        if sends.all > 0 {
            metrics.messages_in(Delivery::All, sends.all);
        }
        if sends.one > 0 {
            metrics.messages_in(Delivery::One, sends.one);
        }
    }

    fn hand_over(&mut self, mut handover: Handover, ctx: &mut Context<Self>) {
        while let Some((topic, publishes)) = handover.batches.pop_front() {
            let bytes = publishes.iter().map(Publish::bytes).sum();
            if let Some(credit) = topic.try_credit(bytes, &self.shared.memory) {
                handover.deliver(&topic, publishes, credit);
                continue;
            }
            // The topic is full: read nothing more from this client until
            // it has room, which is what slows a flooding publisher down.
            let credit = topic.credit(bytes, self.shared.memory.clone());
            ctx.wait(credit.into_actor(self).map(move |credit, session, ctx| {
                match credit {
                    Some(credit) => handover.deliver(&topic, publishes, credit),
                    None => {
                        handover.reached.push(false);
                        handover.refusals.push(ProtocolError::Internal);
                    }
                }
                session.hand_over(handover, ctx);
            }));
            return;
        }
        if !handover.commits.is_empty() {
            // `--fsync always`: the sends are acknowledged once on disk;
            // `--cluster`: once Redis took them.
            let commits = join_all(
                std::mem::take(&mut handover.commits)
                    .into_iter()
                    .map(|(batch, committed)| async move { (batch, committed.await.is_ok()) }),
            );
            ctx.wait(commits.into_actor(self).map(move |commits, session, ctx| {
                for (batch, committed) in commits {
                    handover.reached[batch] &= committed;
                }
                session.hand_over(handover, ctx);
            }));
            return;
        }
        for &batch in &handover.order {
            self.outbox.reply(match handover.reached[batch] {
                true => Bytes::from_static(OK),
                false => handover.refusals[batch].reply(),
            });
        }
        self.then(handover.then, ctx);
    }

    fn then(&mut self, then: Then, ctx: &mut Context<Self>) {
        match then {
            Then::Nothing => {}
            Then::Subscribe {
                topic,
                last_seen,
                replay,
            } => {
                let name = topic.clone();
                self.look_up(&name, ctx, move |session, handle, ctx| {
                    session.subscribe(topic, handle, last_seen, replay, ctx)
                })
            }
            Then::Unsubscribe(topic) => self.unsubscribe(&topic, ctx),
            Then::Auth { user, password } => self.authenticate(user, password, ctx),
            Then::Reply(reply) => self.outbox.reply(reply),
            Then::Quit => {
                self.closing = true;
                ctx.stop();
            }
            Then::Stop => ctx.stop(),
        }
    }

    /// The topic queues the reply and the replay itself, so that no live
    /// message overtakes them; the session waits until it has.
    fn subscribe(
        &mut self,
        name: Box<str>,
        topic: &TopicHandle,
        last_seen: i64,
        replay: bool,
        ctx: &mut Context<Self>,
    ) {
        let subscribe = topic::Subscribe {
            outbox: self.outbox.clone(),
            last_seen,
            replay,
        };
        let sent = topic.addr().send(subscribe);
        let new = self
            .subscriptions
            .insert(name.clone(), topic.addr().clone())
            .is_none();
        if new {
            metrics::get().subscriptions(1);
        }
        ctx.wait(
            sent.into_actor(self)
                .map(move |sent, session, _| match sent {
                    Err(_) => session.outbox.reply(ProtocolError::Internal.reply()),
                    // `--cluster` without Redis: the topic refused it (and said so).
                    Ok(false) if new => {
                        session.subscriptions.remove(&name);
                        metrics::get().subscriptions(-1);
                    }
                    Ok(_) => {}
                }),
        );
    }

    /// Checks a password off this thread, reading nothing meanwhile, so the
    /// lines after `auth` run as the user it logs in (or not). A failure is
    /// answered only after [`AUTH_FAILURE_DELAY`]; the last one allowed
    /// also closes the connection. A success replaces the user the
    /// connection had; a failure leaves it as it was.
    fn authenticate(&mut self, name: String, password: String, ctx: &mut Context<Self>) {
        let Some(users) = self.shared.users.clone() else {
            return self.outbox.reply(ProtocolError::Malformed.reply());
        };
        let checked = async move {
            let user = users.verify(&name, password).await;
            if user.is_none() {
                tokio::time::sleep(AUTH_FAILURE_DELAY).await;
            }
            (name, user)
        };
        ctx.wait(
            checked
                .into_actor(self)
                .map(|(name, user), session, ctx| match user {
                    Some(user) => {
                        tracing::debug!(peer = %session.peer, user = %user.name, "authenticated");
                        session.access = Access::As(user);
                        session.outbox.reply(Bytes::from_static(OK));
                    }
                    None => {
                        session.auth_failures += 1;
                        // The client chose the name: escaped and cut short.
                        let name: String = name.chars().take(LOGGED_USER_NAME_CHARS).collect();
                        tracing::info!(
                            peer = %session.peer,
                            user = ?name,
                            failures = session.auth_failures,
                            "authentication failed"
                        );
                        session
                            .outbox
                            .reply(ProtocolError::AuthenticationFailed.reply());
                        if session.auth_failures >= MAX_AUTH_FAILURES {
                            session.closing = true;
                            ctx.stop();
                        }
                    }
                }),
        );
    }

    /// Always answered with success; only a subscription needs its topic told.
    fn unsubscribe(&mut self, name: &str, ctx: &mut Context<Self>) {
        let Some(topic) = self.subscriptions.remove(name) else {
            return self.outbox.reply(Bytes::from_static(OK));
        };
        metrics::get().subscriptions(-1);
        let sent = topic.send(topic::Unsubscribe {
            connection: self.outbox.id(),
        });
        ctx.wait(
            sent.into_actor(self)
                .map(|sent, session, _| session.outbox.reply(reply_for(sent.is_ok()))),
        );
    }
}

/// Starts the task that writes what a connection owes its client; it holds
/// the connection's admission, which lasts as long as its socket. What
/// follows the writer is a `map`, not an `async` block around it, which
/// would keep a second copy of the writer's state: every idle connection
/// holds this task for its life.
fn spawn_writer(
    writer: Writer,
    sink: Sink,
    admitted: Admitted,
    session: actix::WeakAddr<SessionActor>,
    shared: &Shared,
) {
    let stats = shared.stats.clone();
    let shutdown = shared.shutdown.clone();
    stats.writer_started();
    let run = writer.run(sink, shutdown.abandoning());
    let done = futures_util::FutureExt::map(run, move |result| {
        stats.writer_stopped();
        drop(admitted);
        match (result, session.upgrade()) {
            (Err(WriterError::Abandoned { lines }), _) => shutdown.report_abandoned(lines),
            (Err(error), Some(session)) => session.do_send(WriterStopped(error)),
            _ => {}
        }
    });
    actix::spawn(shared.shutdown.track_future(done));
}

/// Hands a batch of sends to its topic; says whether the topic is there.
fn deliver(topic: &TopicHandle, publishes: Vec<Publish>, credit: topic::Credit) -> bool {
    topic.addr().do_send(PublishBatch { publishes, credit });
    topic.addr().connected()
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

impl Actor for SessionActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        tracing::debug!(peer = %self.peer, connection = self.outbox.id(), "connected");
        ctx.spawn(
            self.shared
                .shutdown
                .draining()
                .into_actor(self)
                .map(|(), session, ctx| session.drain(ctx)),
        );
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        // Cut off before the end of a read: those sends were received, so
        // they are delivered, though their replies can no longer be sent.
        // The session cannot wait for credit any more, so they overdraw it.
        let sends = std::mem::take(&mut self.sends);
        self.count_reads(&sends);
        for (topic, publishes) in sends.batches {
            let bytes = publishes.iter().map(Publish::bytes).sum();
            deliver(
                &topic,
                publishes,
                topic.overdraft(bytes, &self.shared.memory),
            );
        }
        for topic in self.subscriptions.values() {
            topic.do_send(topic::Unsubscribe {
                connection: self.outbox.id(),
            });
        }
        metrics::get().subscriptions(-(self.subscriptions.len() as isize));
        self.outbox.close();
        tracing::debug!(peer = %self.peer, connection = self.outbox.id(), "disconnected");
    }
}

impl StreamHandler<io::Result<Framed>> for SessionActor {
    fn handle(&mut self, frame: io::Result<Framed>, ctx: &mut Self::Context) {
        if self.closing {
            return;
        }
        match frame {
            Ok(frame) => self.handle_frame(frame, ctx),
            Err(error) if error.kind() == io::ErrorKind::TimedOut => {
                tracing::warn!(peer = %self.peer, %error, "closing the connection");
                self.after_sends(Then::Stop, ctx);
            }
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
                self.shared.stats.slow_consumer();
                tracing::warn!(
                    peer = %self.peer,
                    topics = self.subscriptions.len(),
                    pending_bytes = pending,
                    "slow consumer disconnected: it owed more than its budget"
                );
            }
            WriterError::Io(error) => {
                tracing::debug!(peer = %self.peer, %error, "write failed");
            }
            WriterError::Abandoned { .. } => {}
        }
        ctx.stop();
    }
}
