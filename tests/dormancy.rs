//! Dormant topics: a topic with no subscriber and nothing cached retires its
//! actor after `DORMANT_AFTER`, and the next command that names it starts
//! one again from the same counter, so an index is never handed out twice.
//! Over real TCP against the in-process server, whose registry tells which
//! topics have an actor.

mod common;

use std::time::Duration;

use common::{delivered, Client, Rng, WAIT};
use mq_actix::config::{Config, DORMANT_AFTER};
use mq_actix::testing::BackgroundServer;
use serde_json::{json, Value};
use tokio::time::{sleep, Instant};

fn uncached(topic: &str, msg: &str) -> String {
    json!({"command": "send", "topic": topic, "msg": msg, "delivery": "all", "cache": false})
        .to_string()
}

/// What a subscriber receives for an `uncached` send.
fn delivered_uncached(topic: &str, msg: &str, index: u64) -> Value {
    json!({"command": "send", "topic": topic, "msg": msg, "delivery": "all", "cache": false, "index": index})
}

async fn has_actor(server: &BackgroundServer, topic: &str) -> bool {
    let topics = server.topic_subscribers().await;
    topics.iter().any(|(name, _)| &**name == topic)
}

async fn wait_until_dormant(server: &BackgroundServer, topic: &str) {
    let deadline = Instant::now() + 3 * DORMANT_AFTER + WAIT;
    while has_actor(server, topic).await {
        assert!(Instant::now() < deadline, "{topic} never went dormant");
        sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_dormant_topic_continues_its_numbering() {
    let server = BackgroundServer::start(Config::default()).expect("server");
    let mut subscriber = Client::connect(server.addr()).await;
    let mut publisher = Client::connect(server.addr()).await;
    subscriber.subscribe("numbered").await;
    for i in 0..3 {
        publisher.send(&uncached("numbered", "before")).await;
        publisher.expect_ok().await;
        subscriber
            .expect(delivered_uncached("numbered", "before", i))
            .await;
    }
    subscriber
        .send(r#"{"command": "unsubscribe", "topic": "numbered"}"#)
        .await;
    subscriber.expect_ok().await;

    wait_until_dormant(&server, "numbered").await;

    subscriber.subscribe("numbered").await;
    publisher.send(&uncached("numbered", "after")).await;
    publisher.expect_ok().await;
    subscriber
        .expect(delivered_uncached("numbered", "after", 3))
        .await;
}

/// A cached message is the topic's state: the topic keeps its actor.
#[tokio::test]
async fn a_topic_with_a_cached_message_stays() {
    let server = BackgroundServer::start(Config::default()).expect("server");
    let mut publisher = Client::connect(server.addr()).await;
    publisher.publish("kept", "cached", "all").await;
    sleep(3 * DORMANT_AFTER).await;
    assert!(
        has_actor(&server, "kept").await,
        "a topic with a cache retired"
    );
    let mut subscriber = Client::connect(server.addr()).await;
    subscriber.subscribe("kept").await;
    subscriber
        .expect(delivered("kept", "cached", "all", 0))
        .await;
}

/// Sends arrive while topics retire and come back, at seeded moments around
/// `DORMANT_AFTER`: each topic's next index is still the number of sends it
/// was given, never a number handed out before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_racing_retirement_never_reuse_an_index() {
    const TOPICS: usize = 100;
    const ROUNDS: u64 = 4;
    let server = BackgroundServer::start(Config::default()).expect("server");
    let mut publisher = Client::connect(server.addr()).await;
    let mut rng = Rng::new(0x5eed_d0e5);
    let pause = u64::try_from(DORMANT_AFTER.as_millis()).expect("millis");
    for round in 0..ROUNDS {
        for topic in 0..TOPICS {
            publisher
                .send(&uncached(&format!("racing-{topic}"), "x"))
                .await;
            publisher.expect_ok().await;
            if rng.below(10) == 0 {
                // Some topics are named again at a moment of their own.
                sleep(Duration::from_millis(rng.next_u64() % 50)).await;
            }
        }
        let jitter = rng.next_u64() % (2 * pause);
        eprintln!("round {round}: pausing {} ms", pause / 2 + jitter);
        sleep(Duration::from_millis(pause / 2 + jitter)).await;
    }
    let mut subscriber = Client::connect(server.addr()).await;
    for topic in 0..TOPICS {
        let name = format!("racing-{topic}");
        subscriber.subscribe(&name).await;
        publisher.send(&uncached(&name, "last")).await;
        publisher.expect_ok().await;
        subscriber
            .expect(delivered_uncached(&name, "last", ROUNDS))
            .await;
    }
}
