//! End to end over loopback against an in-process broker
//! (`BackgroundServer`, default config): pipelined `send` + ack on one
//! connection, one-at-a-time round trips of `send`, `subscribe` (with and
//! without the replay of a full cache) and `unsubscribe`, and fan-out from one
//! publisher to 100 subscriber connections (messages delivered per second).
//!
//! These are the numbers a client sees, with everything in between: framing,
//! parsing, the session and topic actors, the outbox writers and the kernel's
//! loopback. A slowdown that the `protocol` and `topic` benches do not show
//! (a lost batching of writes, an extra wait in the session) shows here.
//!
//! The clients run on one tokio thread of the benchmark process, the broker
//! on its own threads, all on the same cores, so absolute numbers depend on
//! the machine: compare runs on one machine. Every read is bounded by a
//! timeout, and every reply is checked by its size, so a broker that answers
//! with an error or drops a line fails the benchmark instead of flattering it.

mod common;

use common::Timing;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use mq_actix::config::{Config, DEFAULT_CACHE_SIZE};
use mq_actix::protocol::OK;
use mq_actix::testing::BackgroundServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::runtime::Runtime;

/// Longest wait for any expected line before the benchmark fails.
const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Subscriber connections of the fan-out benchmark.
const FAN_OUT: usize = 100;

/// Lines written per `write_all` when pipelining.
const CHUNK_LINES: u64 = 64;

/// Deliberate settings: an iteration is one command (tens of microseconds
/// for a round trip), so three seconds still give 20 samples of thousands of
/// commands each; the second of warm-up lets the connection, the topic
/// lookups and the kernel's buffers settle. With criterion's analysis and
/// plots the file takes about a minute.
const TIMING: Timing = Timing {
    warm_up: Duration::from_secs(1),
    measure: Duration::from_secs(3),
    samples: 20,
};

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

fn server() -> BackgroundServer {
    BackgroundServer::start(Config::default()).expect("the broker starts")
}

fn send_line(topic: &str, msg: &str) -> String {
    format!(r#"{{"command": "send", "topic": "{topic}", "msg": "{msg}", "delivery": "all"}}"#)
        + "\n"
}

fn subscribe_line(topic: &str, cache: bool) -> String {
    format!(r#"{{"command": "subscribe", "topic": "{topic}", "cache": {cache}}}"#) + "\n"
}

fn unsubscribe_line(topic: &str) -> String {
    format!(r#"{{"command": "unsubscribe", "topic": "{topic}"}}"#) + "\n"
}

/// The reading side of a connection: counts lines, keeps no data.
struct Reader {
    read: OwnedReadHalf,
    buf: Vec<u8>,
}

impl Reader {
    /// Reads exactly `lines` lines and returns their total size in bytes;
    /// panics if more arrive in the same read, or if they take too long.
    async fn lines(&mut self, lines: u64) -> u64 {
        let read = tokio::time::timeout(READ_TIMEOUT, async {
            let (mut seen, mut bytes) = (0, 0);
            while seen < lines {
                let n = self.read.read(&mut self.buf).await.expect("read");
                assert!(n > 0, "the broker closed the connection");
                seen += memchr::memchr_iter(b'\n', &self.buf[..n]).count() as u64;
                bytes += n as u64;
            }
            assert_eq!(seen, lines, "more lines arrived than expected");
            bytes
        })
        .await;
        read.unwrap_or_else(|_| panic!("{lines} lines did not arrive within {READ_TIMEOUT:?}"))
    }

    /// Reads `acks` replies that must all be `{"success": true}`.
    async fn acks(&mut self, acks: u64) {
        let bytes = self.lines(acks).await;
        assert_eq!(bytes, acks * OK.len() as u64, "a reply was not a success");
    }
}

struct Client {
    reader: Reader,
    write: OwnedWriteHalf,
}

impl Client {
    async fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).await.expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        let (read, write) = stream.into_split();
        Client {
            reader: Reader {
                read,
                buf: vec![0; 64 * 1024],
            },
            write,
        }
    }

    async fn write(&mut self, bytes: &[u8]) {
        self.write.write_all(bytes).await.expect("write");
    }

    /// Sends one command and waits for its `{"success": true}`.
    async fn command(&mut self, line: &str) {
        self.write(line.as_bytes()).await;
        self.reader.acks(1).await;
    }
}

/// Writes `count` copies of `line` in chunks.
async fn write_repeated(write: &mut OwnedWriteHalf, line: &str, count: u64) {
    let chunk = line.repeat(CHUNK_LINES as usize);
    for _ in 0..count / CHUNK_LINES {
        write.write_all(chunk.as_bytes()).await.expect("write");
    }
    let rest = (count % CHUNK_LINES) as usize;
    write
        .write_all(&chunk.as_bytes()[..rest * line.len()])
        .await
        .expect("write");
}

/// `count` sends written back to back while their acks are read.
async fn pipelined(client: &mut Client, line: &str, count: u64) -> Duration {
    let start = Instant::now();
    let Client { reader, write } = client;
    tokio::join!(write_repeated(write, line, count), reader.acks(count));
    start.elapsed()
}

/// `count` commands, each waiting for its reply before the next.
async fn round_trips(client: &mut Client, line: &str, count: u64) -> Duration {
    let start = Instant::now();
    for _ in 0..count {
        client.command(line).await;
    }
    start.elapsed()
}

fn tcp_send(c: &mut Criterion) {
    let rt = runtime();
    let server = server();
    let mut group = c.benchmark_group("tcp_send");
    TIMING.apply(&mut group);
    group.throughput(Throughput::Elements(1));
    let mut client = rt.block_on(Client::connect(server.addr()));
    let short = send_line("send", "hello");
    let long = send_line("send", &"x".repeat(1024));
    rt.block_on(client.command(&short));
    group.bench_function("pipelined_short", |b| {
        b.iter_custom(|n| rt.block_on(pipelined(&mut client, &short, n)))
    });
    group.bench_function("pipelined_1KiB", |b| {
        b.iter_custom(|n| rt.block_on(pipelined(&mut client, &long, n)))
    });
    group.bench_function("round_trip_short", |b| {
        b.iter_custom(|n| rt.block_on(round_trips(&mut client, &short, n)))
    });
    group.finish();
}

/// `count` subscribes to `topic`, each timed until its reply and its replay
/// of `replayed` messages arrived, each followed by an untimed unsubscribe.
async fn subscribes(client: &mut Client, topic: &str, replayed: u64, count: u64) -> Duration {
    let subscribe = subscribe_line(topic, true);
    let unsubscribe = unsubscribe_line(topic);
    let mut elapsed = Duration::ZERO;
    for _ in 0..count {
        let start = Instant::now();
        client.write(subscribe.as_bytes()).await;
        client.reader.lines(1 + replayed).await;
        elapsed += start.elapsed();
        client.command(&unsubscribe).await;
    }
    elapsed
}

fn tcp_subscribe(c: &mut Criterion) {
    let rt = runtime();
    let server = server();
    let mut group = c.benchmark_group("tcp_subscribe");
    TIMING.apply(&mut group);
    group.throughput(Throughput::Elements(1));
    let mut client = rt.block_on(Client::connect(server.addr()));
    rt.block_on(async {
        let fill = send_line("full", "hello");
        for _ in 0..DEFAULT_CACHE_SIZE {
            client.command(&fill).await;
        }
    });
    for (variant, topic, replayed) in [
        ("replay_100", "full", DEFAULT_CACHE_SIZE as u64),
        ("no_replay", "empty", 0),
    ] {
        group.bench_function(variant, |b| {
            b.iter_custom(|n| rt.block_on(subscribes(&mut client, topic, replayed, n)))
        });
    }
    group.finish();
}

/// `count` unsubscribes, each after an untimed subscribe.
async fn unsubscribes(client: &mut Client, count: u64) -> Duration {
    let subscribe = subscribe_line("unsubscribe", false);
    let unsubscribe = unsubscribe_line("unsubscribe");
    let mut elapsed = Duration::ZERO;
    for _ in 0..count {
        client.command(&subscribe).await;
        let start = Instant::now();
        client.command(&unsubscribe).await;
        elapsed += start.elapsed();
    }
    elapsed
}

fn tcp_unsubscribe(c: &mut Criterion) {
    let rt = runtime();
    let server = server();
    let mut group = c.benchmark_group("tcp_unsubscribe");
    TIMING.apply(&mut group);
    group.throughput(Throughput::Elements(1));
    let mut client = rt.block_on(Client::connect(server.addr()));
    group.bench_function("round_trip", |b| {
        b.iter_custom(|n| rt.block_on(unsubscribes(&mut client, n)))
    });
    group.finish();
}

/// One publisher and its subscribers' readers, which are handed to a task
/// each for the length of a measurement.
struct FanOut {
    publisher: Client,
    subscribers: Vec<Reader>,
    /// Kept open: closing them would end the subscribers' sessions.
    _subscriber_writes: Vec<OwnedWriteHalf>,
    line: String,
}

impl FanOut {
    async fn start(addr: SocketAddr, subscribers: usize) -> FanOut {
        let mut readers = Vec::with_capacity(subscribers);
        let mut writes = Vec::with_capacity(subscribers);
        for _ in 0..subscribers {
            let mut client = Client::connect(addr).await;
            client.command(&subscribe_line("fan_out", false)).await;
            readers.push(client.reader);
            writes.push(client.write);
        }
        FanOut {
            publisher: Client::connect(addr).await,
            subscribers: readers,
            _subscriber_writes: writes,
            line: send_line("fan_out", "hello"),
        }
    }

    /// Publishes `count` messages and waits until every subscriber has
    /// received all of them and the publisher all its acks.
    async fn run(&mut self, count: u64) -> Duration {
        let start = Instant::now();
        let tasks: Vec<_> = self
            .subscribers
            .drain(..)
            .map(|mut reader| {
                tokio::spawn(async move {
                    reader.lines(count).await;
                    reader
                })
            })
            .collect();
        pipelined(&mut self.publisher, &self.line, count).await;
        for task in tasks {
            self.subscribers
                .push(task.await.expect("a subscriber's reader panicked"));
        }
        start.elapsed()
    }
}

fn tcp_fan_out(c: &mut Criterion) {
    let rt = runtime();
    let server = server();
    let mut group = c.benchmark_group("tcp_fan_out");
    TIMING.apply(&mut group);
    group.throughput(Throughput::Elements(FAN_OUT as u64));
    let mut fan_out = rt.block_on(FanOut::start(server.addr(), FAN_OUT));
    group.bench_function(BenchmarkId::from_parameter(FAN_OUT), |b| {
        b.iter_custom(|n| rt.block_on(fan_out.run(n)))
    });
    group.finish();
}

criterion_group!(
    benches,
    tcp_send,
    tcp_subscribe,
    tcp_unsubscribe,
    tcp_fan_out
);
criterion_main!(benches);
