//! `--data-dir`: topics survive a graceful stop and a kill -9, an index is
//! never handed out twice, a consumed `one` message never comes back, and
//! bad state on disk stops the server with a one-line error.
//!
//! Every test runs the real binary on a directory of its own. The crash
//! tests run a few seeds per `--fsync` mode; `MQ_ACTIX_CRASH_SEEDS=N` runs N.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::Arc;

use common::{
    connect_small, delivered, index_of, send_line, Client, Rng, Server, TempDir, BIN, WAIT,
};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::watch;

const MODES: [&str; 3] = ["always", "batch", "never"];

/// A message text that JSON must escape, different for every index.
fn text(topic: &str, k: u64) -> String {
    format!(
        "{topic} #{k} \"quoted\" back\\slash é {}",
        "x".repeat((k % 13) as usize)
    )
}

fn send_uncached(topic: &str, msg: &str, delivery: &str) -> String {
    json!({"command": "send", "topic": topic, "msg": msg, "delivery": delivery, "cache": false})
        .to_string()
}

#[tokio::test]
async fn a_restart_after_sigterm_resumes_every_topic_as_if_never_stopped() {
    for mode in MODES {
        let dir = TempDir::new("restart");
        let args = ["3", "--fsync", mode];
        let server = Server::start_with_dir(&dir, &args);
        let mut publisher = server.client().await;
        for k in 0..5 {
            publisher.publish("news", &text("news", k), "all").await;
        }
        publisher
            .send(&send_uncached("news", &text("news", 5), "all"))
            .await;
        publisher.expect_ok().await;
        for k in 0..3 {
            publisher.publish("jobs", &text("jobs", k), "one").await;
        }
        publisher
            .send(&send_uncached("jobs", &text("jobs", 3), "one"))
            .await;
        publisher.expect_ok().await;
        for k in 0..4 {
            publisher
                .send(&send_uncached("counter", &text("counter", k), "all"))
                .await;
            publisher.expect_ok().await;
        }
        // A replay consumes jobs 1 and 2; job 0 stays cached.
        let mut consumer = server.client().await;
        consumer
            .send(&json!({"command": "subscribe", "topic": "jobs", "last_seen": 0}).to_string())
            .await;
        consumer.expect_ok().await;
        for k in 1..3 {
            consumer
                .expect(delivered("jobs", &text("jobs", k), "one", k))
                .await;
        }
        drop(consumer);
        drop(publisher);
        server.stop().await;

        let server = Server::start_with_dir(&dir, &args);
        let mut subscriber = server.client().await;
        subscriber.subscribe("news").await;
        for k in 2..5 {
            subscriber
                .expect(delivered("news", &text("news", k), "all", k))
                .await;
        }
        subscriber.subscribe("jobs").await;
        subscriber
            .expect(delivered("jobs", &text("jobs", 0), "one", 0))
            .await;
        subscriber.subscribe("counter").await;
        subscriber.expect_nothing().await;
        let mut publisher = server.client().await;
        publisher.publish("news", "after", "all").await;
        subscriber
            .expect(delivered("news", "after", "all", 6))
            .await;
        publisher.publish("jobs", "after", "one").await;
        subscriber
            .expect(delivered("jobs", "after", "one", 4))
            .await;
        publisher.publish("counter", "after", "all").await;
        subscriber
            .expect(delivered("counter", "after", "all", 4))
            .await;
        // The replayed job 0 was consumed: a later subscriber gets nothing.
        let mut late = server.client().await;
        late.subscribe("jobs").await;
        late.expect_nothing().await;
    }
}

/// A topic idle long enough retires its actor and cuts its index lease back
/// to its counter with a synced commit, whatever `--fsync` says: even a
/// kill -9 after that resumes it with no gap.
#[tokio::test]
async fn a_dormant_topic_resumes_with_no_gap_even_after_a_kill_9() {
    let dir = TempDir::new("dormant");
    // No cache: a topic with cached messages never retires.
    let args = ["0", "--fsync", "never"];
    let server = Server::start_with_dir(&dir, &args);
    let mut subscriber = server.client().await;
    subscriber.subscribe("quiet").await;
    let mut publisher = server.client().await;
    for k in 0..3 {
        publisher.publish("quiet", &text("quiet", k), "all").await;
        subscriber
            .expect(delivered("quiet", &text("quiet", k), "all", k))
            .await;
    }
    drop((subscriber, publisher));
    tokio::time::sleep(3 * mq_actix::config::DORMANT_AFTER).await;
    server.crash().await;

    let server = Server::start_with_dir(&dir, &args);
    let mut subscriber = server.client().await;
    subscriber.subscribe("quiet").await;
    let mut publisher = server.client().await;
    publisher.publish("quiet", "restarted", "all").await;
    subscriber
        .expect(delivered("quiet", "restarted", "all", 3))
        .await;
}

#[tokio::test]
async fn fsync_without_a_data_dir_is_a_usage_error() {
    let output = Command::new(BIN)
        .args(["0", "--fsync", "batch"])
        .output()
        .expect("run mq-actix");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--data-dir"), "{stderr}");
}

#[tokio::test]
async fn a_second_server_on_the_same_dir_exits_with_a_clear_error() {
    let dir = TempDir::new("lock");
    let server = Server::start_with_dir(&dir, &[]);
    let second = Command::new(BIN)
        .args(["0", "--data-dir", dir.arg()])
        .output()
        .expect("run a second mq-actix");
    assert_eq!(second.status.code(), Some(1));
    assert_one_line_error(&second.stderr, "in use by another mq-actix");
    assert!(
        second.stdout.is_empty(),
        "the second server must not listen"
    );
    // The first one is unharmed.
    let mut subscriber = server.client().await;
    subscriber.subscribe("t").await;
    let mut publisher = server.client().await;
    publisher.publish("t", "still here", "all").await;
    subscriber
        .expect(delivered("t", "still here", "all", 0))
        .await;
}

#[tokio::test]
async fn a_file_cut_short_at_any_byte_stops_the_start_with_one_line() {
    let dir = TempDir::new("truncate");
    fill(&dir).await;
    let file = dir.path().join("mq-actix.redb");
    let original = std::fs::read(&file).expect("read the store");
    let mut rng = Rng::new(11);
    for _ in 0..4 {
        let cut = rng.below(original.len());
        std::fs::write(&file, &original[..cut]).expect("truncate the store");
        let stderr = refused_start(&dir);
        assert_one_line_error(&stderr, "mq-actix.redb");
    }
}

#[tokio::test]
async fn a_flipped_byte_in_a_stored_message_stops_every_later_start() {
    let dir = TempDir::new("flip");
    fill(&dir).await;
    let file = dir.path().join("mq-actix.redb");
    let mut bytes = std::fs::read(&file).expect("read the store");
    let needle = "fill #7 ";
    let at = bytes
        .windows(needle.len())
        .position(|w| w == needle.as_bytes())
        .expect("the message is stored verbatim");
    bytes[at + needle.len() / 2] ^= 0x20;
    std::fs::write(&file, &bytes).expect("damage the store");
    let stderr = refused_start(&dir);
    assert_one_line_error(&stderr, "damaged");
    // Whatever redb repaired meanwhile, nothing starts on it silently.
    let stderr = refused_start(&dir);
    assert_one_line_error(&stderr, "mq-actix.redb");
}

/// A store with a few topics and cached messages, stopped gracefully.
async fn fill(dir: &TempDir) {
    let server = Server::start_with_dir(dir, &["20"]);
    let mut publisher = server.client().await;
    for k in 0..20 {
        publisher.publish("fill", &text("fill", k), "all").await;
        publisher.publish("queue", &text("queue", k), "one").await;
    }
    drop(publisher);
    server.stop().await;
}

/// Starts the server on `dir`, which must refuse; its stderr.
fn refused_start(dir: &TempDir) -> Vec<u8> {
    let mut child = Command::new(BIN)
        .args(["0", "--data-dir", dir.arg()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start mq-actix");
    let mut first = String::new();
    let stdout = child.stdout.take().expect("stdout is piped");
    std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut first)
        .expect("read stdout");
    if !first.is_empty() {
        let _ = child.kill();
        panic!("the server started on a damaged store: {first}");
    }
    let output = child.wait_with_output().expect("wait for mq-actix");
    assert_eq!(output.status.code(), Some(1), "exit status");
    output.stderr
}

/// Exactly one `mq-actix: ...` line mentioning `what`, and no panic.
fn assert_one_line_error(stderr: &[u8], what: &str) {
    let stderr = String::from_utf8_lossy(stderr);
    assert!(!stderr.contains("panicked"), "a panic: {stderr}");
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|line| line.starts_with("mq-actix:"))
        .collect();
    assert_eq!(errors.len(), 1, "one error line: {stderr}");
    assert!(errors[0].contains(what), "{what:?} in {:?}", errors[0]);
}

// ---------------------------------------------------------------------------
// Crashes

const CRASH_CACHE: u64 = 50;
const FEEDS: [&str; 2] = ["feed-0", "feed-1"];
const QUEUE: &str = "queue";
/// Sends a publisher writes before reading their acknowledgements.
const WINDOW: usize = 16;

#[tokio::test]
async fn a_kill_9_with_fsync_always_loses_nothing_acknowledged() {
    crash_runs("always").await;
}

#[tokio::test]
async fn a_kill_9_with_fsync_batch_never_reuses_an_index() {
    crash_runs("batch").await;
}

#[tokio::test]
async fn a_kill_9_with_fsync_never_never_reuses_an_index() {
    crash_runs("never").await;
}

async fn crash_runs(mode: &str) {
    let seeds: u64 = std::env::var("MQ_ACTIX_CRASH_SEEDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(3);
    let mut checked = 0;
    for seed in 1..=seeds {
        checked += crash_once(mode, seed).await;
    }
    eprintln!("--fsync {mode}: {seeds} kills, {checked} replayed messages checked");
}

/// What the clients saw before the crash.
#[derive(Default)]
struct Seen {
    /// Per topic, how many sends were acknowledged (indexes 0.. in order:
    /// one publisher per topic on a fresh directory).
    acked: BTreeMap<String, u64>,
    /// Per topic, the highest index any client received.
    highest: BTreeMap<String, u64>,
    /// `one` messages the consumers received, by index.
    consumed: HashSet<u64>,
}

/// One publisher floods every topic while subscribers and a consumer read;
/// the server is killed once a seeded number of sends were acknowledged,
/// then restarted and checked. Returns how many replayed messages it checked.
async fn crash_once(mode: &str, seed: u64) -> u64 {
    let mut rng = Rng::new(seed);
    let dir = TempDir::new("crash");
    let cache = CRASH_CACHE.to_string();
    let args = [cache.as_str(), "--fsync", mode];
    let server = Server::start_with_dir(&dir, &args);
    let addr = server.addr();
    let (acks, mut total) = watch::channel(0u64);
    let acks = Arc::new(acks);

    let mut readers = Vec::new();
    for feed in FEEDS {
        let mut client = server.client().await;
        client.subscribe(feed).await;
        readers.push(tokio::spawn(read_feed(client, feed)));
    }
    let consumer = tokio::spawn(consume(addr, rng.next_u64()));
    let mut publishers = Vec::new();
    for (topic, delivery) in [(FEEDS[0], "all"), (FEEDS[1], "all"), (QUEUE, "one")] {
        let client = server.client().await;
        publishers.push(tokio::spawn(flood(client, topic, delivery, acks.clone())));
    }

    let kill_after = 1000 + rng.below(30_000) as u64;
    total
        .wait_for(|&n| n >= kill_after)
        .await
        .expect("the publishers run until the kill");
    server.crash().await;

    let mut seen = Seen::default();
    for (topic, publisher) in [FEEDS[0], FEEDS[1], QUEUE].into_iter().zip(publishers) {
        let acked = publisher.await.expect("publisher task");
        seen.acked.insert(topic.to_owned(), acked);
    }
    for (feed, reader) in FEEDS.into_iter().zip(readers) {
        let highest = reader.await.expect("reader task");
        seen.highest.insert(feed.to_owned(), highest);
    }
    let (consumed, highest) = consumer.await.expect("consumer task");
    seen.consumed = consumed;
    seen.highest.insert(QUEUE.to_owned(), highest);

    let server = Server::start_with_dir(&dir, &args);
    let mut checked = 0;
    for feed in FEEDS {
        checked += check_after_crash(&server, feed, "all", mode, &seen).await;
    }
    checked += check_after_crash(&server, QUEUE, "one", mode, &seen).await;
    server.stop().await;
    checked
}

/// Publishes `text(topic, k)` for k = 0, 1, ... in windows until the server
/// goes away; returns how many were acknowledged.
async fn flood(client: Client, topic: &str, delivery: &str, acks: Arc<watch::Sender<u64>>) -> u64 {
    let (mut reader, mut writer) = client.into_halves();
    let mut acked = 0u64;
    let mut line = String::new();
    loop {
        let mut window = String::new();
        for k in acked..acked + WINDOW as u64 {
            window.push_str(&send_line(topic, &text(topic, k), delivery));
            window.push('\n');
        }
        if writer.write_all(window.as_bytes()).await.is_err() {
            return acked;
        }
        for _ in 0..WINDOW {
            line.clear();
            match reader.read_line(&mut line).await {
                Ok(n) if n > 0 && line.trim_end() == r#"{"success": true}"# => {
                    acked += 1;
                    acks.send_modify(|total| *total += 1);
                }
                _ => return acked,
            }
        }
    }
}

/// Reads a feed until the server goes away, checking every line; the
/// highest index it saw.
async fn read_feed(client: Client, feed: &'static str) -> u64 {
    let (mut reader, _writer) = client.into_halves();
    let mut highest = 0;
    let mut line = String::new();
    loop {
        line.clear();
        match reader.read_line(&mut line).await {
            Ok(n) if n > 0 && line.ends_with("\r\n") => {
                let got: Value = serde_json::from_str(&line).expect("a JSON line");
                let k = index_of(&got);
                assert_eq!(got, delivered(feed, &text(feed, k), "all", k));
                highest = highest.max(k);
            }
            _ => return highest,
        }
    }
}

/// Subscribes to the queue, takes a few messages, leaves, comes back, for a
/// seeded number of rounds or until the server goes away: some messages are
/// delivered live, some wait in the cache and are consumed by the next
/// replay, and once it stops they pile up in the cache. What it received,
/// and the highest index.
async fn consume(addr: SocketAddr, seed: u64) -> (HashSet<u64>, u64) {
    let mut rng = Rng::new(seed);
    let mut consumed = HashSet::new();
    let mut highest = 0;
    for _ in 0..3 + rng.below(30) {
        let Ok(stream) = TcpStream::connect(addr).await else {
            return (consumed, highest);
        };
        let (read, mut write) = stream.into_split();
        let mut reader = BufReader::new(read);
        let subscribe = format!("{}\n", json!({"command": "subscribe", "topic": QUEUE}));
        if write.write_all(subscribe.as_bytes()).await.is_err() {
            return (consumed, highest);
        }
        let mut line = String::new();
        match reader.read_line(&mut line).await {
            Ok(n) if n > 0 => assert_eq!(line, "{\"success\": true}\r\n"),
            _ => return (consumed, highest),
        }
        for _ in 0..5 + rng.below(40) {
            line.clear();
            match reader.read_line(&mut line).await {
                Ok(n) if n > 0 && line.ends_with("\r\n") => {
                    let got: Value = serde_json::from_str(&line).expect("a JSON line");
                    let k = index_of(&got);
                    assert_eq!(got, delivered(QUEUE, &text(QUEUE, k), "one", k));
                    assert!(consumed.insert(k), "queue message {k} delivered twice");
                    highest = highest.max(k);
                }
                _ => return (consumed, highest),
            }
        }
    }
    (consumed, highest)
}

/// After the restart: a new subscriber's replay of `topic`, up to a marker
/// sent after it, holds only exact messages, and the marker's index is
/// above everything any client saw. Returns how many replayed lines.
async fn check_after_crash(
    server: &Server,
    topic: &str,
    delivery: &str,
    mode: &str,
    seen: &Seen,
) -> u64 {
    let acked = seen.acked[topic];
    let mut subscriber = server.client().await;
    subscriber.subscribe(topic).await;
    let mut publisher = server.client().await;
    publisher.publish(topic, "marker", delivery).await;
    let mut replayed = Vec::new();
    let marker = loop {
        let got = tokio::time::timeout(WAIT, subscriber.recv())
            .await
            .expect("the marker arrives");
        let k = index_of(&got);
        if got["msg"] == "marker" {
            break k;
        }
        assert_eq!(got, delivered(topic, &text(topic, k), delivery, k));
        replayed.push(k);
    };
    let highest = seen.highest[topic];
    assert!(
        marker > highest && marker >= acked,
        "{topic}: index {marker} handed out again (clients saw up to {highest}, {acked} acknowledged)"
    );
    assert!(
        replayed.windows(2).all(|w| w[0] < w[1]),
        "{topic}: replay out of order: {replayed:?}"
    );
    if delivery == "one" {
        for k in &replayed {
            assert!(
                !seen.consumed.contains(k),
                "consumed queue message {k} came back"
            );
        }
        return replayed.len() as u64;
    }
    // The cache holds the newest committed messages, with no hole.
    let newest = replayed.last().copied();
    if let Some(newest) = newest {
        let expected: Vec<u64> = (newest.saturating_sub(CRASH_CACHE - 1)..=newest).collect();
        assert_eq!(replayed, expected, "{topic}: the cache has a hole");
    }
    if mode == "always" && acked > 0 {
        // Everything acknowledged and still within the cache came back.
        assert!(
            newest.is_some_and(|newest| newest + 1 >= acked),
            "{topic}: acknowledged up to {} but replayed up to {newest:?}",
            acked - 1
        );
    }
    replayed.len() as u64
}

/// A stop while a `one` subscriber reads nothing: the messages its
/// connection never received whole go back to the topic's cache, and are on
/// disk before the broker exits. So every acknowledged `one` message reaches
/// exactly one of: the stalled subscriber (what its kernel had taken), or a
/// subscriber after the restart.
#[tokio::test]
async fn a_one_message_a_stopping_broker_could_not_write_is_kept_for_the_restart() {
    const SENDS: u64 = 2_000;
    let dir = TempDir::new("stop-stalled");
    let args = ["100000", "--fsync", "always", "--shutdown-timeout", "1"];
    let mut server = Server::start_with_dir(&dir, &args);
    let mut stalled = connect_small(server.addr(), 8 * 1024).await;
    stalled
        .write_all(b"{\"command\": \"subscribe\", \"topic\": \"jobs\"}\n")
        .await
        .expect("subscribe");
    let mut publisher = server.client().await;
    // Known to be a subscriber before the first send.
    publisher.publish("other", "sync", "all").await;
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let text = "j".repeat(1_000);
    let lines: String = (0..SENDS)
        .map(|_| send_line("jobs", &text, "one") + "\n")
        .collect();
    publisher.send_raw(lines.as_bytes()).await;
    let mut acked = 0;
    while acked < SENDS {
        match publisher
            .try_recv_within(std::time::Duration::from_secs(10))
            .await
        {
            Some(reply) if reply == json!({"success": true}) => acked += 1,
            other => panic!("after {acked} acknowledgements: {other:?}"),
        }
    }
    server.signal("TERM");
    let status = server.exit_status(WAIT).await;
    assert!(
        matches!(status.code(), Some(0 | 3)),
        "the stop ended with {status}"
    );

    // What the stalled subscriber's kernel took, up to the last whole line.
    let mut received = Vec::new();
    let _ = tokio::time::timeout(
        WAIT,
        tokio::io::AsyncReadExt::read_to_end(&mut stalled, &mut received),
    )
    .await
    .expect("the stalled subscriber's connection ends");
    let whole = received
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |end| end + 1);
    let mut before: HashSet<u64> = HashSet::new();
    for line in received[..whole]
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
    {
        let value: Value = serde_json::from_slice(line).expect("a JSON line");
        if let Some(index) = value.get("index").and_then(Value::as_u64) {
            assert!(before.insert(index), "index {index} delivered twice");
        }
    }

    let server = Server::start_with_dir(&dir, &args);
    let mut late = server.client().await;
    late.subscribe("jobs").await;
    let mut after: HashSet<u64> = HashSet::new();
    while let Some(value) = late
        .try_recv_within(std::time::Duration::from_secs(1))
        .await
    {
        let index = index_of(&value);
        assert!(after.insert(index), "index {index} replayed twice");
        assert!(
            !before.contains(&index),
            "index {index} reached the stalled subscriber and came back"
        );
    }
    for index in 0..SENDS {
        assert!(
            before.contains(&index) || after.contains(&index),
            "acknowledged index {index} is lost ({} before the stop, {} after)",
            before.len(),
            after.len()
        );
    }
    eprintln!(
        "stop with a stalled one subscriber: {} received before the stop, {} replayed after",
        before.len(),
        after.len()
    );
}
