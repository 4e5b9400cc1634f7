//! The cache: replay on subscribe, `cache: false` on either side, eviction,
//! a cache of 0, `last_seen`, and `one` messages waiting for a subscriber.

mod common;

use common::{delivered, Client, Server};
use serde_json::json;

/// Publishes "m0", "m1", ... with `delivery: "all"`.
async fn publish_all(publisher: &mut Client, topic: &str, count: u64) {
    for i in 0..count {
        publisher.publish(topic, &format!("m{i}"), "all").await;
    }
}

/// Subscribes to `topic` with the extra keys in `options`.
async fn subscribe_with(client: &mut Client, topic: &str, options: serde_json::Value) {
    let mut line = json!({"command": "subscribe", "topic": topic});
    for (key, value) in options.as_object().expect("options") {
        line[key] = value.clone();
    }
    client.send(&line.to_string()).await;
    client.expect_ok().await;
}

#[tokio::test]
async fn a_subscriber_gets_the_reply_then_the_cache_in_order_then_live() {
    let server = Server::start();
    let mut publisher = server.client().await;
    publish_all(&mut publisher, "t", 3).await;
    let mut sub = server.client().await;
    sub.subscribe("t").await;
    for i in 0..3 {
        sub.expect(delivered("t", &format!("m{i}"), "all", i)).await;
    }
    publisher.publish("t", "m3", "all").await;
    sub.expect(delivered("t", "m3", "all", 3)).await;
    sub.expect_nothing().await;
    // A later subscriber gets all four from the cache.
    let mut late = server.client().await;
    late.subscribe("t").await;
    for i in 0..4 {
        late.expect(delivered("t", &format!("m{i}"), "all", i))
            .await;
    }
    late.expect_nothing().await;
}

#[tokio::test]
async fn subscribe_with_cache_false_replays_nothing() {
    let server = Server::start();
    let mut publisher = server.client().await;
    publish_all(&mut publisher, "t", 3).await;
    publisher.publish("t", "waiting", "one").await;
    let mut sub = server.client().await;
    subscribe_with(&mut sub, "t", json!({"cache": false})).await;
    sub.expect_nothing().await;
    // Nor did it take the waiting `one` message: the next subscriber does.
    let mut next = server.client().await;
    subscribe_with(&mut next, "t", json!({"last_seen": 2})).await;
    next.expect(delivered("t", "waiting", "one", 3)).await;
    next.expect_nothing().await;
}

#[tokio::test]
async fn a_send_with_cache_false_is_delivered_but_not_cached() {
    let server = Server::start();
    let mut sub = server.client().await;
    let mut publisher = server.client().await;
    sub.subscribe("t").await;
    publisher.publish("t", "kept", "all").await;
    publisher
        .send(r#"{"command": "send", "topic": "t", "msg": "fleeting", "delivery": "all", "cache": false}"#)
        .await;
    publisher.expect_ok().await;
    publisher
        .send(r#"{"command": "send", "topic": "t", "msg": "kept too", "delivery": "all", "cache": true}"#)
        .await;
    publisher.expect_ok().await;
    sub.expect(delivered("t", "kept", "all", 0)).await;
    sub.expect(json!({"command": "send", "topic": "t", "msg": "fleeting", "delivery": "all", "cache": false, "index": 1}))
        .await;
    sub.expect(json!({"command": "send", "topic": "t", "msg": "kept too", "delivery": "all", "cache": true, "index": 2}))
        .await;
    let mut late = server.client().await;
    late.subscribe("t").await;
    late.expect(delivered("t", "kept", "all", 0)).await;
    late.expect(json!({"command": "send", "topic": "t", "msg": "kept too", "delivery": "all", "cache": true, "index": 2}))
        .await;
    late.expect_nothing().await;
}

#[tokio::test]
async fn the_cache_keeps_the_newest_cache_size_messages() {
    let server = Server::start_with(&["2"]);
    let mut publisher = server.client().await;
    publish_all(&mut publisher, "t", 5).await;
    let mut sub = server.client().await;
    sub.subscribe("t").await;
    sub.expect(delivered("t", "m3", "all", 3)).await;
    sub.expect(delivered("t", "m4", "all", 4)).await;
    sub.expect_nothing().await;
    // Uncached sends do not evict anything.
    publisher
        .send(
            r#"{"command": "send", "topic": "t", "msg": "m5", "delivery": "all", "cache": false}"#,
        )
        .await;
    publisher.expect_ok().await;
    sub.expect(json!({"command": "send", "topic": "t", "msg": "m5", "delivery": "all", "cache": false, "index": 5}))
        .await;
    let mut late = server.client().await;
    late.subscribe("t").await;
    late.expect(delivered("t", "m3", "all", 3)).await;
    late.expect(delivered("t", "m4", "all", 4)).await;
    late.expect_nothing().await;
    // Each topic has a cache of its own.
    publish_all(&mut publisher, "u", 1).await;
    late.subscribe("u").await;
    late.expect(delivered("u", "m0", "all", 0)).await;
}

#[tokio::test]
async fn waiting_one_messages_take_cache_room_too() {
    let server = Server::start_with(&["2"]);
    let mut publisher = server.client().await;
    publisher.publish("t", "a", "one").await;
    publisher.publish("t", "b", "all").await;
    publisher.publish("t", "c", "one").await;
    let mut sub = server.client().await;
    sub.subscribe("t").await;
    sub.expect(delivered("t", "b", "all", 1)).await;
    sub.expect(delivered("t", "c", "one", 2)).await;
    sub.expect_nothing().await;
}

#[tokio::test]
async fn a_cache_size_of_zero_caches_nothing() {
    let server = Server::start_with(&["0"]);
    let mut publisher = server.client().await;
    publish_all(&mut publisher, "t", 3).await;
    publisher.publish("t", "lost", "one").await;
    let mut sub = server.client().await;
    sub.subscribe("t").await;
    sub.expect_nothing().await;
    // The counter went on all the same, and live delivery works.
    publisher.publish("t", "live", "all").await;
    sub.expect(delivered("t", "live", "all", 4)).await;
    sub.expect_nothing().await;
}

#[tokio::test]
async fn last_seen_replays_only_newer_messages() {
    let server = Server::start();
    let mut publisher = server.client().await;
    publish_all(&mut publisher, "t", 5).await;
    for (last_seen, first) in [
        (json!(-1), 0),
        (json!(-2), 0),
        (json!(-1000), 0),
        (json!(i64::MIN), 0),
        (json!(0), 1),
        (json!(2), 3),
        (json!(3), 4),
        (json!(4), 5),
        (json!(5), 5),
        (json!(1000), 5),
        (json!(i64::MAX), 5),
    ] {
        let mut sub = server.client().await;
        subscribe_with(&mut sub, "t", json!({"last_seen": last_seen})).await;
        for i in first..5 {
            sub.expect(delivered("t", &format!("m{i}"), "all", i)).await;
        }
        sub.expect_nothing().await;
    }
}

#[tokio::test]
async fn last_seen_only_filters_the_replay_not_live_messages() {
    let server = Server::start();
    let mut publisher = server.client().await;
    publish_all(&mut publisher, "t", 2).await;
    let mut sub = server.client().await;
    subscribe_with(&mut sub, "t", json!({"last_seen": 100})).await;
    sub.expect_nothing().await;
    publisher.publish("t", "m2", "all").await;
    sub.expect(delivered("t", "m2", "all", 2)).await;
}

#[tokio::test]
async fn last_seen_and_eviction_together() {
    let server = Server::start_with(&["3"]);
    let mut publisher = server.client().await;
    publish_all(&mut publisher, "t", 6).await;
    // Only 3, 4 and 5 are still cached of the 1 and later asked for.
    let mut sub = server.client().await;
    subscribe_with(&mut sub, "t", json!({"last_seen": 0})).await;
    for i in 3..6 {
        sub.expect(delivered("t", &format!("m{i}"), "all", i)).await;
    }
    sub.expect_nothing().await;
    let mut other = server.client().await;
    subscribe_with(&mut other, "t", json!({"last_seen": 4})).await;
    other.expect(delivered("t", "m5", "all", 5)).await;
    other.expect_nothing().await;
}

#[tokio::test]
async fn a_one_message_with_no_subscriber_waits_for_the_next_subscriber() {
    let server = Server::start();
    let mut publisher = server.client().await;
    publisher.publish("jobs", "job 0", "one").await;
    publisher.publish("jobs", "job 1", "one").await;
    let mut first = server.client().await;
    first.subscribe("jobs").await;
    first.expect(delivered("jobs", "job 0", "one", 0)).await;
    first.expect(delivered("jobs", "job 1", "one", 1)).await;
    first.expect_nothing().await;
}

#[tokio::test]
async fn replayed_one_messages_are_consumed_exactly_once() {
    let server = Server::start();
    let mut publisher = server.client().await;
    publisher.publish("jobs", "job 0", "one").await;
    publisher.publish("jobs", "news", "all").await;
    publisher.publish("jobs", "job 2", "one").await;
    let mut first = server.client().await;
    first.subscribe("jobs").await;
    first.expect(delivered("jobs", "job 0", "one", 0)).await;
    first.expect(delivered("jobs", "news", "all", 1)).await;
    first.expect(delivered("jobs", "job 2", "one", 2)).await;
    first.expect_nothing().await;
    // The `all` message stays cached; the `one` messages are gone.
    let mut second = server.client().await;
    second.subscribe("jobs").await;
    second.expect(delivered("jobs", "news", "all", 1)).await;
    second.expect_nothing().await;
    // Nor does the first get them again by subscribing anew.
    first
        .send(r#"{"command": "unsubscribe", "topic": "jobs"}"#)
        .await;
    first.expect_ok().await;
    first.subscribe("jobs").await;
    first.expect(delivered("jobs", "news", "all", 1)).await;
    first.expect_nothing().await;
}

#[tokio::test]
async fn a_one_message_below_last_seen_is_not_consumed() {
    let server = Server::start();
    let mut publisher = server.client().await;
    publisher.publish("jobs", "job 0", "one").await;
    publisher.publish("jobs", "job 1", "one").await;
    let mut first = server.client().await;
    subscribe_with(&mut first, "jobs", json!({"last_seen": 0})).await;
    first.expect(delivered("jobs", "job 1", "one", 1)).await;
    first.expect_nothing().await;
    let mut second = server.client().await;
    second.subscribe("jobs").await;
    second.expect(delivered("jobs", "job 0", "one", 0)).await;
    second.expect_nothing().await;
}

#[tokio::test]
async fn a_one_message_with_cache_false_and_no_subscriber_is_dropped() {
    let server = Server::start();
    let mut publisher = server.client().await;
    publisher
        .send(r#"{"command": "send", "topic": "jobs", "msg": "nobody", "delivery": "one", "cache": false}"#)
        .await;
    publisher.expect_ok().await;
    publisher.publish("jobs", "kept", "one").await;
    let mut sub = server.client().await;
    sub.subscribe("jobs").await;
    sub.expect(delivered("jobs", "kept", "one", 1)).await;
    sub.expect_nothing().await;
}

#[tokio::test]
async fn a_one_message_taken_by_a_subscriber_is_not_cached() {
    let server = Server::start();
    let mut sub = server.client().await;
    let mut publisher = server.client().await;
    sub.subscribe("jobs").await;
    publisher.publish("jobs", "taken", "one").await;
    sub.expect(delivered("jobs", "taken", "one", 0)).await;
    let mut late = server.client().await;
    late.subscribe("jobs").await;
    late.expect_nothing().await;
}

#[tokio::test]
async fn a_last_seen_of_minus_zero_is_zero() {
    let server = Server::start();
    let mut publisher = server.client().await;
    publish_all(&mut publisher, "t", 3).await;
    let mut sub = server.client().await;
    sub.send(r#"{"command": "subscribe", "topic": "t", "last_seen": -0}"#)
        .await;
    sub.expect_ok().await;
    sub.expect(delivered("t", "m1", "all", 1)).await;
    sub.expect(delivered("t", "m2", "all", 2)).await;
    sub.expect_nothing().await;
}
