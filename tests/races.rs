//! Races: subscribing and unsubscribing while a publisher streams, and
//! subscribers competing for `one` messages. Replay and live delivery meet
//! with no gap and no duplicate.

mod common;

use std::collections::BTreeMap;

use common::{delivered, index_of, send_line, Client, Merged, Server, WAIT};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::timeout;

const TOTAL: u64 = 2000;

/// Sends held back until [`Stream::finish`], so that every subscriber that
/// joins before it has live messages still to come.
const HELD_BACK: u64 = 100;

/// A publisher streaming `TOTAL` sends, one per write, while the test
/// watches how many the server has acknowledged (and so queued on the topic,
/// ahead of any later subscribe).
struct Stream {
    task: JoinHandle<()>,
    acked: watch::Receiver<u64>,
    go: watch::Sender<bool>,
}

impl Stream {
    fn start(publisher: Client, topic: &'static str, delivery: &'static str) -> Stream {
        let (acked_tx, acked) = watch::channel(0);
        let (go, mut go_rx) = watch::channel(false);
        let (mut reader, mut writer) = publisher.into_halves();
        let task = tokio::spawn(async move {
            let writing = async {
                for i in 0..TOTAL {
                    if i == TOTAL - HELD_BACK {
                        go_rx.wait_for(|&go| go).await.expect("the test");
                    }
                    let line = format!("{}\n", send_line(topic, &format!("m{i}"), delivery));
                    writer.write_all(line.as_bytes()).await.expect("write");
                    if i % 20 == 0 {
                        tokio::task::yield_now().await;
                    }
                }
            };
            let reading = async {
                for n in 1..=TOTAL {
                    let mut line = String::new();
                    let read = timeout(WAIT, reader.read_line(&mut line)).await;
                    read.expect("timed out waiting for a reply").expect("read");
                    let reply = line.strip_suffix("\r\n").expect("a line ending in \\r\\n");
                    let reply: Value = serde_json::from_str(reply).expect("JSON");
                    assert_eq!(reply, json!({"success": true}));
                    acked_tx.send_replace(n);
                }
            };
            tokio::join!(writing, reading);
        });
        Stream { task, acked, go }
    }

    /// Waits until the server has acknowledged at least `count` sends.
    async fn acked(&mut self, count: u64) {
        self.acked
            .wait_for(|&n| n >= count)
            .await
            .expect("the publisher");
    }

    /// Lets the held-back sends go, and waits for all the replies.
    async fn finish(self) {
        self.go.send_replace(true);
        self.task.await.expect("the publisher");
    }
}

/// Reads deliveries until the last index sent, checking they come in index
/// order with no gap and no duplicate; returns the first index received.
async fn read_through_the_last(sub: &mut Client, topic: &str) -> u64 {
    let first = sub.recv().await;
    let start = index_of(&first);
    assert_eq!(first, delivered(topic, &format!("m{start}"), "all", start));
    for index in start + 1..TOTAL {
        sub.expect(delivered(topic, &format!("m{index}"), "all", index))
            .await;
    }
    sub.expect_nothing().await;
    start
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_joining_a_stream_see_every_message_once_in_order() {
    let server = Server::start_with(&["10000"]);
    let mut stream = Stream::start(server.client().await, "t", "all");
    let mut readers = Vec::new();
    for at in [1, 500, 1000, 1500] {
        stream.acked(at).await;
        let mut sub = server.client().await;
        sub.subscribe("t").await;
        // Everything is still cached, so the replay starts at 0.
        readers.push(tokio::spawn(async move {
            assert_eq!(read_through_the_last(&mut sub, "t").await, 0);
        }));
    }
    stream.finish().await;
    for reader in readers {
        reader.await.expect("a subscriber");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_without_replay_joining_a_stream_miss_nothing_after_joining() {
    let server = Server::start_with(&["10000"]);
    let mut stream = Stream::start(server.client().await, "t", "all");
    let mut readers = Vec::new();
    for at in [1, 700, 1400] {
        stream.acked(at).await;
        let mut sub = server.client().await;
        sub.send(r#"{"command": "subscribe", "topic": "t", "cache": false}"#)
            .await;
        sub.expect_ok().await;
        readers.push(tokio::spawn(async move {
            read_through_the_last(&mut sub, "t").await
        }));
    }
    stream.finish().await;
    for (reader, at) in readers.into_iter().zip([1, 700, 1400]) {
        let start = reader.await.expect("a subscriber");
        assert!(start >= at, "{start} was sent before it joined");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_with_last_seen_joining_a_stream_gets_the_rest_exactly() {
    let server = Server::start_with(&["10000"]);
    let mut stream = Stream::start(server.client().await, "t", "all");
    stream.acked(1000).await;
    let mut sub = server.client().await;
    sub.send(r#"{"command": "subscribe", "topic": "t", "last_seen": 499}"#)
        .await;
    sub.expect_ok().await;
    let reading = tokio::spawn(async move { read_through_the_last(&mut sub, "t").await });
    stream.finish().await;
    assert_eq!(reading.await.expect("the subscriber"), 500);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsubscribe_racing_a_stream_ends_the_deliveries_at_its_reply() {
    let server = Server::start_with(&["10000"]);
    let mut sub = server.client().await;
    sub.subscribe("t").await;
    let mut stream = Stream::start(server.client().await, "t", "all");
    stream.acked(1000).await;
    sub.send(r#"{"command": "unsubscribe", "topic": "t"}"#)
        .await;
    let mut next = 0;
    loop {
        let line = sub.recv().await;
        if line == json!({"success": true}) {
            break;
        }
        assert_eq!(line, delivered("t", &format!("m{next}"), "all", next));
        next += 1;
    }
    stream.finish().await;
    sub.expect_nothing().await;
    assert!(
        (1000..=TOTAL - HELD_BACK).contains(&next),
        "{next} delivered"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_racing_for_cached_one_messages_each_get_a_share_once() {
    let server = Server::start_with(&["10000"]);
    let mut publisher = server.client().await;
    let mut pipeline = String::new();
    for i in 0..500 {
        pipeline += &send_line("jobs", &format!("m{i}"), "one");
        pipeline += "\n";
    }
    publisher.send_raw(pipeline.as_bytes()).await;
    for _ in 0..500 {
        publisher.expect_ok().await;
    }
    // Three subscribe at once: each message is replayed to exactly one.
    let mut subs = Vec::new();
    for _ in 0..3 {
        subs.push(server.client().await);
    }
    for sub in &mut subs {
        sub.send(r#"{"command": "subscribe", "topic": "jobs"}"#)
            .await;
    }
    let mut owner = BTreeMap::new();
    let mut last_of = [None; 3];
    let mut merged = Merged::new(subs);
    let mut replies = 0;
    while owner.len() < 500 || replies < 3 {
        let (who, line) = merged.next().await;
        if line == json!({"success": true}) {
            replies += 1;
            continue;
        }
        let index = index_of(&line);
        assert_eq!(line, delivered("jobs", &format!("m{index}"), "one", index));
        assert!(owner.insert(index, who).is_none(), "{index} twice");
        assert!(last_of[who] < Some(index), "out of order for {who}");
        last_of[who] = Some(index);
    }
    merged.expect_nothing().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_messages_streamed_while_subscribers_join_are_each_delivered_once() {
    let server = Server::start_with(&["10000"]);
    let mut stream = Stream::start(server.client().await, "jobs", "one");
    // The first joins late: what came before waits in the cache for it.
    let mut subs = Vec::new();
    for at in [300, 800, 1400] {
        stream.acked(at).await;
        let mut sub = server.client().await;
        sub.subscribe("jobs").await;
        subs.push(sub);
    }
    stream.finish().await;
    let mut owner = BTreeMap::new();
    let mut merged = Merged::new(subs);
    while (owner.len() as u64) < TOTAL {
        let (who, line) = merged.next().await;
        let index = index_of(&line);
        assert_eq!(line, delivered("jobs", &format!("m{index}"), "one", index));
        assert!(owner.insert(index, who).is_none(), "{index} twice");
    }
    merged.expect_nothing().await;
    // The first took the 300 or more that waited, and the turns went on
    // over all three once they had joined.
    assert!((0..300).all(|i| owner[&i] == 0));
    for who in 0..3 {
        let got = owner.values().filter(|&&w| w == who).count();
        assert!(got >= HELD_BACK as usize / 3, "subscriber {who} got {got}");
    }
}
