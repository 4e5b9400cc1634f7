//! `TopicActor` in-process, no sockets: `send` with `delivery: "all"` to 1,
//! 10, 100 and 1,000 subscribers (messages delivered per second), `delivery:
//! "one"` round-robin over 10, `subscribe` with and without the replay of a
//! full cache, and `unsubscribe`.
//!
//! This is the per-message path that no socket hides: a topic encodes each
//! message's index once and pushes it into every subscriber's `Outbox`, and
//! each subscriber's `Writer` drains its outbox. Here the writers drain into
//! a sink that counts the lines it is given, and every measurement waits
//! until all the lines it caused have been written, so a change that makes
//! delivery slower shows even when enqueueing a `Publish` stays cheap.
//!
//! Everything runs on one thread (one actix `System`, a fresh one per
//! variant), so the numbers are the CPU cost of the actor path, not the
//! parallel throughput of a broker spread over several workers. Messages are
//! sent the way a session sends them: with credit taken from the topic
//! first (waiting for it when there is none), so the publisher is held to
//! the topic's pace.

mod common;

use common::Timing;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use actix::{Arbiter, System};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use mq_actix::config::{DEFAULT_CACHE_SIZE, DEFAULT_MAX_PENDING};
use mq_actix::memory::Memory;
use mq_actix::outbox::{ConnectionId, Outbox};
use mq_actix::protocol::{parse_line, Command, Delivery, DeliveryTemplate, Line};
use mq_actix::topic::{
    Publish, PublishBatch, Subscribe, SubscriberCount, TopicActor, TopicHandle, Unsubscribe,
};
use tokio::io::AsyncWrite;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// How long a measurement may wait for lines that should arrive in
/// microseconds before the benchmark fails instead of hanging.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);

/// Round-robin width of the `delivery: "one"` benchmark.
const ONE_OVER: usize = 10;

/// Deliberate settings: one iteration is one message or command (a few
/// microseconds at most), so two seconds give 30 samples of many thousands
/// of iterations; with criterion's analysis and plots the file takes about
/// a minute.
const TIMING: Timing = Timing {
    warm_up: Duration::from_millis(500),
    measure: Duration::from_secs(2),
    samples: 30,
};

/// Lines written by a set of writers, with a wake-up for whoever waits.
#[derive(Default)]
struct Delivered {
    lines: AtomicU64,
    arrived: Notify,
}

impl Delivered {
    fn lines(&self) -> u64 {
        self.lines.load(Ordering::Relaxed)
    }

    /// Waits until `target` lines in all have been written.
    async fn until(&self, target: u64) {
        let waited = tokio::time::timeout(DELIVERY_TIMEOUT, async {
            while self.lines() < target {
                self.arrived.notified().await;
            }
        })
        .await;
        if waited.is_err() {
            panic!(
                "only {} of {target} lines arrived within {DELIVERY_TIMEOUT:?}",
                self.lines()
            );
        }
    }
}

/// Stands in for a subscriber's socket: accepts everything at once and
/// counts the lines.
struct CountingSink(Arc<Delivered>);

impl CountingSink {
    fn count(&self, buf: &[u8]) {
        let lines = memchr::memchr_iter(b'\n', buf).count() as u64;
        self.0.lines.fetch_add(lines, Ordering::Relaxed);
    }
}

impl AsyncWrite for CountingSink {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.count(buf);
        self.0.arrived.notify_one();
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let mut written = 0;
        for buf in bufs {
            self.count(buf);
            written += buf.len();
        }
        self.0.arrived.notify_one();
        Poll::Ready(Ok(written))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// A connection as the topic sees it: an outbox whose writer runs as a task
/// of the current System, draining into a [`CountingSink`].
fn connection(delivered: &Arc<Delivered>) -> Outbox {
    let (outbox, writer) = Outbox::new(DEFAULT_MAX_PENDING, Memory::new(0));
    actix::spawn(writer.run(CountingSink(delivered.clone()), CancellationToken::new()));
    outbox
}

/// A topic with the default cache size, started on the current System.
fn topic(name: &str) -> TopicHandle {
    TopicActor::new(name.into(), DEFAULT_CACHE_SIZE, Memory::new(0)).start_in(&Arbiter::current())
}

/// The template of a short `send`, as a session would build it.
fn template() -> DeliveryTemplate {
    let line = br#"{"command": "send", "topic": "bench", "msg": "hello", "delivery": "all"}"#;
    let Ok(Line::Command(Command::Send(send))) = parse_line(line) else {
        panic!("the benchmark's send line does not parse");
    };
    DeliveryTemplate::new(&send)
}

/// Hands `publish` to the topic like a session does: with the topic's
/// credit, waiting for it when there is none.
async fn publish(topic: &TopicHandle, publish: Publish) {
    let memory = Memory::new(0);
    let credit = match topic.try_credit(publish.bytes(), &memory) {
        Some(credit) => credit,
        None => topic
            .credit(publish.bytes(), memory)
            .await
            .expect("the topic stopped"),
    };
    topic.addr().do_send(PublishBatch {
        publishes: vec![publish],
        credit,
    });
}

/// A topic with `subscribers` subscribed connections, each with its own
/// writer, all counted by one [`Delivered`].
struct Fanout {
    topic: TopicHandle,
    delivered: Arc<Delivered>,
    template: DeliveryTemplate,
}

impl Fanout {
    async fn start(subscribers: usize) -> Fanout {
        let topic = topic("bench");
        let delivered = Arc::new(Delivered::default());
        for _ in 0..subscribers {
            topic
                .addr()
                .send(Subscribe {
                    outbox: connection(&delivered),
                    last_seen: -1,
                    replay: true,
                })
                .await
                .expect("the topic stopped");
        }
        assert_eq!(
            topic.addr().send(SubscriberCount).await.unwrap(),
            subscribers
        );
        // Each subscriber got its `{"success": true}`.
        delivered.until(subscribers as u64).await;
        Fanout {
            topic,
            delivered,
            template: template(),
        }
    }

    /// Sends `messages` and returns how long until every line each caused
    /// (`per_message` of them) was written.
    async fn run(&self, messages: u64, delivery: Delivery, per_message: u64) -> Duration {
        let target = self.delivered.lines() + messages * per_message;
        let start = Instant::now();
        for _ in 0..messages {
            let message = Publish {
                template: self.template.clone(),
                delivery,
                cache: true,
            };
            publish(&self.topic, message).await;
        }
        self.delivered.until(target).await;
        start.elapsed()
    }
}

fn send_all(c: &mut Criterion) {
    let mut group = c.benchmark_group("send_all");
    TIMING.apply(&mut group);
    for subscribers in [1, 10, 100, 1000] {
        let system = System::new();
        let fanout = system.block_on(Fanout::start(subscribers));
        group.throughput(Throughput::Elements(subscribers as u64));
        group.bench_function(BenchmarkId::from_parameter(subscribers), |b| {
            b.iter_custom(|messages| {
                system.block_on(fanout.run(messages, Delivery::All, subscribers as u64))
            })
        });
    }
    group.finish();
}

fn send_one(c: &mut Criterion) {
    let mut group = c.benchmark_group("send_one");
    TIMING.apply(&mut group);
    group.throughput(Throughput::Elements(1));
    let system = System::new();
    let fanout = system.block_on(Fanout::start(ONE_OVER));
    group.bench_function(BenchmarkId::from_parameter(ONE_OVER), |b| {
        b.iter_custom(|messages| system.block_on(fanout.run(messages, Delivery::One, 1)))
    });
    group.finish();
}

/// Connections that subscribe, one after another (each a new connection,
/// made untimed), to a topic with a full cache.
struct Subscriber {
    topic: TopicHandle,
    delivered: Arc<Delivered>,
}

impl Subscriber {
    async fn start(others: usize) -> Subscriber {
        let topic = topic("bench");
        let template = template();
        for _ in 0..DEFAULT_CACHE_SIZE {
            let message = Publish {
                template: template.clone(),
                delivery: Delivery::All,
                cache: true,
            };
            publish(&topic, message).await;
        }
        // Subscribers that stay, so an unsubscribe has a list to search.
        let idle = Arc::new(Delivered::default());
        for _ in 0..others {
            let subscribe = Subscribe {
                outbox: connection(&idle),
                last_seen: i64::MAX,
                replay: false,
            };
            topic.addr().send(subscribe).await.unwrap();
        }
        Subscriber {
            topic,
            delivered: Arc::new(Delivered::default()),
        }
    }

    /// A new connection's subscribe, and its id for the unsubscribe.
    fn subscribe(&self, replay: bool) -> (Subscribe, ConnectionId) {
        let outbox = connection(&self.delivered);
        let id = outbox.id();
        let subscribe = Subscribe {
            outbox,
            last_seen: -1,
            replay,
        };
        (subscribe, id)
    }

    /// Ends the subscription and the connection's writer.
    async fn leave(&self, subscribe_outbox: Outbox) {
        self.topic
            .addr()
            .send(Unsubscribe {
                connection: subscribe_outbox.id(),
            })
            .await
            .unwrap();
        subscribe_outbox.close();
    }

    /// Times `times` subscribes, each until its reply and replay were
    /// written; unsubscribes after each, untimed.
    async fn subscribes(&mut self, times: u64, replay: bool) -> Duration {
        let lines = 1 + if replay { DEFAULT_CACHE_SIZE as u64 } else { 0 };
        let mut elapsed = Duration::ZERO;
        for _ in 0..times {
            let (subscribe, _) = self.subscribe(replay);
            let outbox = subscribe.outbox.clone();
            let target = self.delivered.lines() + lines;
            let start = Instant::now();
            self.topic.addr().send(subscribe).await.unwrap();
            self.delivered.until(target).await;
            elapsed += start.elapsed();
            self.leave(outbox).await;
        }
        elapsed
    }

    /// Times `times` unsubscribes, each after an untimed subscribe.
    async fn unsubscribes(&mut self, times: u64) -> Duration {
        let mut elapsed = Duration::ZERO;
        for _ in 0..times {
            let (subscribe, connection) = self.subscribe(false);
            let outbox = subscribe.outbox.clone();
            self.topic.addr().send(subscribe).await.unwrap();
            let start = Instant::now();
            self.topic
                .addr()
                .send(Unsubscribe { connection })
                .await
                .unwrap();
            elapsed += start.elapsed();
            outbox.close();
        }
        elapsed
    }
}

fn subscribe(c: &mut Criterion) {
    let mut group = c.benchmark_group("subscribe");
    TIMING.apply(&mut group);
    group.throughput(Throughput::Elements(1));
    for (variant, replay) in [("replay_100", true), ("no_replay", false)] {
        let system = System::new();
        let mut subscriber = system.block_on(Subscriber::start(0));
        group.bench_function(variant, |b| {
            b.iter_custom(|times| system.block_on(subscriber.subscribes(times, replay)))
        });
    }
    group.finish();
}

fn unsubscribe(c: &mut Criterion) {
    let mut group = c.benchmark_group("unsubscribe");
    TIMING.apply(&mut group);
    group.throughput(Throughput::Elements(1));
    for subscribers in [1, 100] {
        let system = System::new();
        let mut subscriber = system.block_on(Subscriber::start(subscribers - 1));
        group.bench_function(BenchmarkId::new("of_subscribers", subscribers), |b| {
            b.iter_custom(|times| system.block_on(subscriber.unsubscribes(times)))
        });
    }
    group.finish();
}

criterion_group!(benches, send_all, send_one, subscribe, unsubscribe);
criterion_main!(benches);
