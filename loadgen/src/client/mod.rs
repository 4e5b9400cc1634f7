//! One connection to the server under test: connect, write commands, read
//! replies and deliveries, in whichever protocol the server speaks.
//!
//! The scenarios only see protocol-neutral operations (subscribe, publish,
//! ping) and protocol-neutral [`Reply`]s; each protocol's encoding and
//! decoding lives in its own module. Reading and writing are separate halves
//! so that a publisher can keep writing while its replies are read
//! concurrently: with a large window, writing everything before reading could
//! deadlock against a server that stops reading while its replies back up.

mod mq;
mod nats;
mod redis;
mod transport;

use std::borrow::Cow;
use std::io;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::ValueEnum;

pub use self::transport::{connector, Endpoint, Servers};
use self::transport::{ReadHalf, WriteHalf};
use crate::payload::Payload;

/// Bytes asked of the socket per read.
const READ_CHUNK: usize = 64 * 1024;

/// Longest frame accepted from the server, so a server that never ends one
/// cannot make loadgen grow without bound.
const MAX_FRAME: usize = 16 * 1024 * 1024;

/// The wire protocols loadgen speaks, so that `mq-actix` can be compared
/// with established brokers under the same load and the same checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Proto {
    /// The mq JSON-lines protocol (docs/PROTOCOL.md)
    Mq,
    /// Redis pub/sub over RESP3; the integer reply to PUBLISH is the ack
    Redis,
    /// NATS core; a PING after each part of the window, answered by PONG,
    /// is the ack
    Nats,
}

impl Proto {
    /// The protocol's name, as typed and as reported.
    pub fn name(self) -> &'static str {
        match self {
            Proto::Mq => "mq",
            Proto::Redis => "redis",
            Proto::Nats => "nats",
        }
    }

    /// Whether every publish gets a reply of its own; otherwise publishes
    /// are acknowledged in batches by [`Writer::sync`].
    pub fn acks_each_publish(self) -> bool {
        !matches!(self, Proto::Nats)
    }
}

/// A topic name with its JSON form computed once, since mq writes it with
/// every message.
#[derive(Debug, Clone)]
pub struct Topic {
    pub name: String,
    json: String,
}

impl Topic {
    /// A topic called `name`, which may hold any character.
    pub fn new(name: String) -> Topic {
        let json = serde_json::Value::from(name.as_str()).to_string();
        Topic { name, json }
    }
}

/// Who receives a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Every subscriber (fanout, pairs, replay).
    All,
    /// One subscriber of the topic (queue): mq's `delivery: "one"`; NATS
    /// decides this on the subscribing side instead.
    One,
}

/// What to subscribe to.
#[derive(Debug, Clone)]
pub struct Subscription {
    pub topic: Topic,
    /// Replay cached messages with an index above this (mq replay only).
    pub last_seen: Option<u64>,
    /// Ask for the cache at all (mq); live-only subscribers say no, so that
    /// old messages on a reused topic are not mistaken for misrouted ones.
    pub replay: bool,
    /// Share the topic's messages with the other workers (NATS queue group).
    pub shared: bool,
}

impl Subscription {
    /// Live messages only, each to every subscriber.
    pub fn live(topic: &Topic) -> Subscription {
        Subscription {
            topic: topic.clone(),
            last_seen: None,
            replay: false,
            shared: false,
        }
    }
}

/// A connected socket, split for concurrent reading and writing.
#[derive(Debug)]
pub struct Conn {
    pub reader: Reader,
    pub writer: Writer,
}

impl Conn {
    /// Connects and greets the server as its protocol requires, waiting up to
    /// `wait` for each answer.
    pub async fn connect(server: &Endpoint, proto: Proto, wait: Duration) -> anyhow::Result<Conn> {
        let (read, write) = server.connect().await?;
        let mut conn = Conn {
            reader: Reader {
                proto,
                half: read,
                buf: Vec::with_capacity(READ_CHUNK),
                start: 0,
                mq_shape: None,
            },
            writer: Writer {
                proto,
                half: write,
                buf: Vec::with_capacity(READ_CHUNK),
                scratch: Vec::new(),
                next_sid: 1,
            },
        };
        match proto {
            Proto::Mq => {}
            Proto::Redis => {
                conn.writer.buf.extend_from_slice(redis::HELLO);
                conn.writer.flush().await?;
                conn.await_reply(wait, false)
                    .await
                    .context("greeting with HELLO 3 (RESP3 needs Redis 6 or later)")?;
            }
            Proto::Nats => {
                conn.await_reply(wait, true)
                    .await
                    .context("waiting for INFO")?;
                conn.writer.buf.extend_from_slice(nats::CONNECT);
                conn.writer.sync();
                conn.writer.flush().await?;
                conn.await_reply(wait, false)
                    .await
                    .context("sending CONNECT")?;
            }
        }
        Ok(conn)
    }

    /// The protocol this connection speaks.
    pub fn proto(&self) -> Proto {
        self.reader.proto
    }

    /// Subscribes and waits up to `wait` for the server to confirm. Returns
    /// how many deliveries arrived before the confirmation; anything after
    /// it stays buffered for the next reader.
    pub async fn subscribe(&mut self, sub: &Subscription, wait: Duration) -> anyhow::Result<u64> {
        self.writer.subscribe(sub);
        self.writer.flush().await.context("writing subscribe")?;
        self.await_reply(wait, false).await
    }

    /// Checks that the server still answers, changing nothing on it; `topic`
    /// is one the connection subscribed to.
    pub async fn ping(&mut self, topic: &Topic, wait: Duration) -> anyhow::Result<u64> {
        self.writer.ping(topic);
        self.writer.flush().await.context("writing ping")?;
        self.await_reply(wait, false).await
    }

    /// Waits for the reply to what was just sent (or, with `notice`, for the
    /// first notice, as NATS greets with INFO), answering the server's pings
    /// meanwhile. Returns how many deliveries came first.
    ///
    /// This is where every connection reads its first reply, before anything
    /// is measured: a server that answers anything but the protocol's reply
    /// (for mq exactly `{"success": true}`), or hangs up, fails the run here
    /// with one line that says so, rather than being measured as if it were
    /// the server asked for.
    async fn await_reply(&mut self, wait: Duration, notice: bool) -> anyhow::Result<u64> {
        let proto = self.proto().name();
        let mut skipped = 0;
        loop {
            let mut pongs = 0;
            while let Some(reply) = self.reader.next_buffered() {
                match reply {
                    Reply::Ack => return Ok(skipped),
                    Reply::Refused(reason) => bail!("the server refused: {reason}"),
                    Reply::Delivery { .. } => skipped += 1,
                    Reply::Ping => pongs += 1,
                    Reply::Notice if notice => return Ok(skipped),
                    Reply::Notice => {}
                    Reply::Garbled(line) => {
                        bail!(
                            "the server does not answer like the {proto} protocol: it sent {line}"
                        )
                    }
                }
            }
            for _ in 0..pongs {
                self.writer.pong();
            }
            self.writer.flush().await?;
            match tokio::time::timeout(wait, self.reader.fill()).await {
                Err(_) => bail!("no reply within {}", humantime::format_duration(wait)),
                Ok(Ok(0)) => bail!("the server closed the connection instead of replying"),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(e).context("reading reply"),
            }
        }
    }
}

/// What the server sent, whatever its protocol.
#[derive(Debug, PartialEq, Eq)]
pub enum Reply<'a> {
    /// A command succeeded: mq `{"success": true}`, a Redis reply, a NATS
    /// PONG.
    Ack,
    /// A command failed, with the server's reason.
    Refused(Cow<'a, str>),
    /// A message of a subscribed topic; only mq numbers them.
    Delivery {
        topic: Cow<'a, str>,
        msg: Cow<'a, str>,
        index: Option<u64>,
    },
    /// The server asks for a PONG (NATS).
    Ping,
    /// Something to ignore: NATS INFO or +OK, Redis push notices.
    Notice,
    /// Something unreadable, shortened for display.
    Garbled(String),
}

/// The reading half, with a buffer of bytes not yet decoded.
#[derive(Debug)]
pub struct Reader {
    proto: Proto,
    half: ReadHalf,
    buf: Vec<u8>,
    /// Where the undecoded bytes start in `buf`.
    start: usize,
    /// The shape of the last mq delivery, to read the next one quickly.
    mq_shape: Option<mq::Shape>,
}

impl Reader {
    /// Decodes the next complete frame already received, if any.
    pub fn next_buffered(&mut self) -> Option<Reply<'_>> {
        let pending = &self.buf[self.start..];
        let (reply, used) = match self.proto {
            Proto::Mq => mq::decode(pending, &mut self.mq_shape),
            Proto::Redis => redis::decode(pending),
            Proto::Nats => nats::decode(pending),
        }?;
        self.start += used;
        Some(reply)
    }

    /// Reads more bytes from the socket; `Ok(0)` means the server closed.
    /// Cancel-safe: nothing is lost if the future is dropped.
    pub async fn fill(&mut self) -> io::Result<usize> {
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        } else if self.start > self.buf.len() / 2 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        if self.buf.len() - self.start > MAX_FRAME {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("server sent a frame longer than {MAX_FRAME} bytes"),
            ));
        }
        self.buf.reserve(READ_CHUNK);
        self.half.read_buf(&mut self.buf).await
    }
}

/// The writing half, with commands encoded but not yet sent.
#[derive(Debug)]
pub struct Writer {
    proto: Proto,
    half: WriteHalf,
    buf: Vec<u8>,
    /// Room to build a message whose length must be written before it.
    scratch: Vec<u8>,
    /// NATS subscription id for the next SUB.
    next_sid: u64,
}

impl Writer {
    /// Queues a subscribe command (and for NATS a PING, since SUB has no
    /// reply of its own).
    pub fn subscribe(&mut self, sub: &Subscription) {
        match self.proto {
            Proto::Mq => mq::subscribe(&mut self.buf, sub),
            Proto::Redis => {
                redis::command(&mut self.buf, &[b"SUBSCRIBE", sub.topic.name.as_bytes()])
            }
            Proto::Nats => {
                nats::subscribe(&mut self.buf, sub, self.next_sid);
                self.next_sid += 1;
                self.sync();
            }
        }
    }

    /// Queues a send of `payload`, padded to `size` bytes.
    pub fn publish(&mut self, topic: &Topic, delivery: Delivery, payload: &Payload, size: usize) {
        match self.proto {
            Proto::Mq => mq::publish(&mut self.buf, topic, delivery, payload, size),
            Proto::Redis | Proto::Nats => {
                self.scratch.clear();
                payload.write(size, &mut self.scratch);
                let name = topic.name.as_bytes();
                if self.proto == Proto::Redis {
                    redis::command(&mut self.buf, &[b"PUBLISH", name, &self.scratch]);
                } else {
                    nats::publish(&mut self.buf, name, &self.scratch);
                }
            }
        }
    }

    /// Queues a command that only asks for a reply; for mq, which has no
    /// such command, a repeated subscribe to `topic`, which the protocol
    /// makes a no-op apart from the reply.
    pub fn ping(&mut self, topic: &Topic) {
        match self.proto {
            Proto::Mq => mq::subscribe(&mut self.buf, &Subscription::live(topic)),
            Proto::Redis => redis::command(&mut self.buf, &[b"PING"]),
            Proto::Nats => self.sync(),
        }
    }

    /// Queues a request whose single reply acknowledges every publish since
    /// the last one (NATS PING); a no-op where publishes are acknowledged one
    /// by one.
    pub fn sync(&mut self) {
        if self.proto == Proto::Nats {
            self.buf.extend_from_slice(b"PING\r\n");
        }
    }

    /// Queues the answer to a server's PING (NATS).
    pub fn pong(&mut self) {
        if self.proto == Proto::Nats {
            self.buf.extend_from_slice(b"PONG\r\n");
        }
    }

    /// Bytes queued and not yet sent.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Sends everything queued.
    pub async fn flush(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            self.half.write_all(&self.buf).await?;
            self.buf.clear();
        }
        Ok(())
    }
}

/// Finds the end of the line starting `buf`: the index of its `\n`.
fn line_end(buf: &[u8]) -> Option<usize> {
    buf.iter().position(|&b| b == b'\n')
}

/// A line without its `\r\n` or `\n`.
fn trim_line(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// A frame that could not be read, shortened for display, with control
/// characters escaped so that it shows on one line of a report or an error.
fn garbled(frame: &[u8]) -> Reply<'static> {
    let mut text = String::with_capacity(frame.len());
    for c in String::from_utf8_lossy(frame).chars() {
        if c.is_control() {
            text.extend(c.escape_default());
        } else {
            text.push(c);
        }
    }
    Reply::Garbled(crate::check::shorten(&text))
}
