//! One connection to the server under test: connect, write commands, read
//! replies and deliveries.
//!
//! Reading and writing are separate halves so that a publisher can keep
//! writing while its replies are read concurrently: with a large window,
//! writing everything before reading could deadlock against a server that
//! stops reading while its replies back up.

use std::borrow::Cow;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{bail, Context};
use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

use crate::payload::Payload;

/// Bytes asked of the socket per read.
const READ_CHUNK: usize = 64 * 1024;

/// Longest line accepted from the server, so a server that never sends a
/// newline cannot make loadgen grow without bound.
const MAX_LINE: usize = 16 * 1024 * 1024;

/// A topic name with its JSON form computed once, since it is written with
/// every message.
#[derive(Debug, Clone)]
pub struct Topic {
    pub name: String,
    json: String,
}

impl Topic {
    pub fn new(name: String) -> anyhow::Result<Topic> {
        let json = serde_json::to_string(&name)?;
        Ok(Topic { name, json })
    }
}

/// The `delivery` mode of a send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Every subscriber gets it (fanout, pairs, replay).
    All,
    /// One subscriber gets it, round-robin (queue).
    One,
}

/// What to subscribe to and whether to ask for cached messages.
#[derive(Debug, Clone)]
pub struct Subscription {
    pub topic: Topic,
    /// Replay cached messages with an index above this (replay only).
    pub last_seen: Option<u64>,
    /// Ask for the cache at all; live-only subscribers say no, so that old
    /// messages on a reused topic are not mistaken for misrouted ones.
    pub replay: bool,
}

/// A connected socket, split for concurrent reading and writing.
#[derive(Debug)]
pub struct Conn {
    pub reader: Reader,
    pub writer: Writer,
}

impl Conn {
    /// Connects with Nagle off: loadgen batches its own writes, and Nagle
    /// would add delay to every partial batch.
    pub async fn connect(addr: SocketAddr) -> io::Result<Conn> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (read, write) = stream.into_split();
        Ok(Conn {
            reader: Reader {
                half: read,
                buf: Vec::with_capacity(READ_CHUNK),
                start: 0,
            },
            writer: Writer {
                half: write,
                buf: Vec::with_capacity(READ_CHUNK),
            },
        })
    }

    /// Subscribes and waits up to `wait` for the reply. Returns how many
    /// deliveries arrived before it; anything after it stays buffered for the
    /// next reader.
    pub async fn subscribe(&mut self, sub: &Subscription, wait: Duration) -> anyhow::Result<u64> {
        self.writer.subscribe(sub);
        self.writer.flush().await.context("writing subscribe")?;
        self.await_reply(wait).await
    }

    /// Checks that the server still answers: subscribes again to a topic it
    /// already has, which the protocol makes a no-op apart from the reply.
    pub async fn ping(&mut self, topic: &Topic, wait: Duration) -> anyhow::Result<u64> {
        let again = Subscription {
            topic: topic.clone(),
            last_seen: None,
            replay: false,
        };
        self.subscribe(&again, wait).await
    }

    async fn await_reply(&mut self, wait: Duration) -> anyhow::Result<u64> {
        let mut skipped = 0;
        loop {
            while let Some(reply) = self.reader.next_buffered() {
                match reply {
                    Reply::Ack => return Ok(skipped),
                    Reply::Refused(reason) => bail!("server refused: {reason}"),
                    Reply::Delivery { .. } => skipped += 1,
                    Reply::Garbled(line) => bail!("unreadable reply: {line}"),
                }
            }
            match tokio::time::timeout(wait, self.reader.fill()).await {
                Err(_) => bail!("no reply within {}", humantime::format_duration(wait)),
                Ok(Ok(0)) => bail!("server closed the connection"),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(e).context("reading reply"),
            }
        }
    }
}

/// What the server sent: a reply to a command, or a delivery.
#[derive(Debug, PartialEq, Eq)]
pub enum Reply<'a> {
    /// `{"success": true}`.
    Ack,
    /// `{"success": false, "reason": ...}`.
    Refused(Cow<'a, str>),
    /// A message of a subscribed topic.
    Delivery {
        topic: Cow<'a, str>,
        msg: Cow<'a, str>,
        index: Option<u64>,
    },
    /// A line that is neither, shortened for display.
    Garbled(String),
}

/// The reading half, with a buffer of bytes not yet decoded.
#[derive(Debug)]
pub struct Reader {
    half: OwnedReadHalf,
    buf: Vec<u8>,
    /// Where the undecoded bytes start in `buf`.
    start: usize,
}

impl Reader {
    /// Decodes the next complete line already received, if any.
    pub fn next_buffered(&mut self) -> Option<Reply<'_>> {
        loop {
            let pending = &self.buf[self.start..];
            let end = pending.iter().position(|&b| b == b'\n')?;
            let line = &pending[..end];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let from = self.start;
            self.start += end + 1;
            if !line.is_empty() {
                let line = &self.buf[from..from + line.len()];
                return Some(decode(line));
            }
        }
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
        if self.buf.len() - self.start > MAX_LINE {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("server sent a line longer than {MAX_LINE} bytes"),
            ));
        }
        self.buf.reserve(READ_CHUNK);
        self.half.read_buf(&mut self.buf).await
    }
}

/// The writing half, with commands encoded but not yet sent.
#[derive(Debug)]
pub struct Writer {
    half: OwnedWriteHalf,
    buf: Vec<u8>,
}

impl Writer {
    /// Queues a subscribe command.
    pub fn subscribe(&mut self, sub: &Subscription) {
        self.buf
            .extend_from_slice(br#"{"command":"subscribe","topic":"#);
        self.buf.extend_from_slice(sub.topic.json.as_bytes());
        if let Some(last_seen) = sub.last_seen {
            self.buf.extend_from_slice(br#","last_seen":"#);
            self.buf.extend_from_slice(last_seen.to_string().as_bytes());
        }
        if !sub.replay {
            self.buf.extend_from_slice(br#","cache":false"#);
        }
        self.buf.extend_from_slice(b"}\n");
    }

    /// Queues a send of `payload`, padded to `size` bytes.
    pub fn publish(&mut self, topic: &Topic, delivery: Delivery, payload: &Payload, size: usize) {
        self.buf.extend_from_slice(br#"{"command":"send","topic":"#);
        self.buf.extend_from_slice(topic.json.as_bytes());
        self.buf.extend_from_slice(br#","msg":""#);
        payload.write(size, &mut self.buf);
        self.buf.extend_from_slice(match delivery {
            Delivery::All => br#"","delivery":"all"}"#.as_slice(),
            Delivery::One => br#"","delivery":"one"}"#.as_slice(),
        });
        self.buf.push(b'\n');
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

/// The fields loadgen reads from a server line; the rest (`command`,
/// `delivery`, `cache`) are ignored.
#[derive(Deserialize)]
struct Line<S> {
    success: Option<bool>,
    reason: Option<S>,
    topic: Option<S>,
    msg: Option<S>,
    index: Option<u64>,
}

/// Decodes one line: borrowing from the buffer when no string in it has an
/// escape (every message loadgen sends), copying otherwise.
fn decode(line: &[u8]) -> Reply<'_> {
    match serde_json::from_slice::<Line<&str>>(line) {
        Ok(l) => classify(
            l.success,
            l.reason,
            l.topic,
            l.msg,
            l.index,
            Cow::Borrowed,
            line,
        ),
        Err(_) => match serde_json::from_slice::<Line<String>>(line) {
            Ok(l) => classify(
                l.success,
                l.reason,
                l.topic,
                l.msg,
                l.index,
                Cow::Owned,
                line,
            ),
            Err(_) => garbled(line),
        },
    }
}

/// Tells a reply from a delivery by the `success` key.
fn classify<'a, S>(
    success: Option<bool>,
    reason: Option<S>,
    topic: Option<S>,
    msg: Option<S>,
    index: Option<u64>,
    cow: impl Fn(S) -> Cow<'a, str>,
    line: &[u8],
) -> Reply<'a> {
    match (success, topic, msg, index) {
        (Some(true), ..) => Reply::Ack,
        (Some(false), ..) => Reply::Refused(reason.map_or(Cow::Borrowed(""), cow)),
        (None, Some(topic), Some(msg), Some(index)) => Reply::Delivery {
            topic: cow(topic),
            msg: cow(msg),
            index: Some(index),
        },
        _ => garbled(line),
    }
}

fn garbled(line: &[u8]) -> Reply<'static> {
    Reply::Garbled(crate::check::shorten(&String::from_utf8_lossy(line)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_replies_and_deliveries() {
        assert_eq!(decode(br#"{"success": true}"#), Reply::Ack);
        assert_eq!(
            decode(br#"{"success": false, "reason": "Malformed json message"}"#),
            Reply::Refused("Malformed json message".into())
        );
        let line =
            br#"{"command": "send", "topic": "a\"b", "msg": "m", "delivery": "all", "index": 7}"#;
        assert_eq!(
            decode(line),
            Reply::Delivery {
                topic: "a\"b".into(),
                msg: "m".into(),
                index: Some(7)
            }
        );
        for bad in [
            &b"nope"[..],
            br#"{"topic": "t", "msg": "m"}"#,
            br#"{"topic":"t","msg":"m","index":-1}"#,
        ] {
            assert!(matches!(decode(bad), Reply::Garbled(_)), "{bad:?}");
        }
    }

    #[test]
    fn borrows_plain_strings() {
        let line = br#"{"topic": "t", "msg": "m", "index": 0}"#;
        assert!(matches!(
            decode(line),
            Reply::Delivery {
                topic: Cow::Borrowed(_),
                ..
            }
        ));
    }
}
