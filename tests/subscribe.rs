//! `subscribe` and `unsubscribe`: no duplicates from subscribing twice,
//! `unsubscribe` always answered, and nothing after its reply.

mod common;

use common::{delivered, Server};

const UNSUBSCRIBE_T: &str = r#"{"command": "unsubscribe", "topic": "t"}"#;

#[tokio::test]
async fn subscribing_twice_does_not_duplicate_deliveries() {
    let server = Server::start();
    let mut sub = server.client().await;
    let mut publisher = server.client().await;
    sub.subscribe("t").await;
    sub.subscribe("t").await;
    sub.send(r#"{"command": "subscribe", "topic": "t", "cache": false}"#)
        .await;
    sub.expect_ok().await;
    publisher.publish("t", "once", "all").await;
    publisher.publish("t", "one", "one").await;
    sub.expect(delivered("t", "once", "all", 0)).await;
    sub.expect(delivered("t", "one", "one", 1)).await;
    sub.expect_nothing().await;
}

#[tokio::test]
async fn subscribing_again_does_not_replay_what_was_already_sent() {
    let server = Server::start();
    let mut sub = server.client().await;
    let mut publisher = server.client().await;
    publisher.publish("t", "old", "all").await;
    sub.subscribe("t").await;
    sub.expect(delivered("t", "old", "all", 0)).await;
    publisher.publish("t", "live", "all").await;
    sub.expect(delivered("t", "live", "all", 1)).await;
    // Both are cached, and this connection has had both.
    sub.subscribe("t").await;
    sub.send(r#"{"command": "subscribe", "topic": "t", "last_seen": -1}"#)
        .await;
    sub.expect_ok().await;
    sub.expect_nothing().await;
    publisher.publish("t", "next", "all").await;
    sub.expect(delivered("t", "next", "all", 2)).await;
    sub.expect_nothing().await;
}

#[tokio::test]
async fn unsubscribe_when_not_subscribed_is_ok() {
    let server = Server::start();
    let mut client = server.client().await;
    // A topic never named before.
    client.send(UNSUBSCRIBE_T).await;
    client.expect_ok().await;
    // A topic that exists, that this client never subscribed to.
    let mut other = server.client().await;
    other.subscribe("u").await;
    client
        .send(r#"{"command": "unsubscribe", "topic": "u"}"#)
        .await;
    client.expect_ok().await;
    // Twice in a row.
    client.subscribe("t").await;
    client.send(UNSUBSCRIBE_T).await;
    client.expect_ok().await;
    client.send(UNSUBSCRIBE_T).await;
    client.expect_ok().await;
    // The other subscriber was not touched.
    let mut publisher = server.client().await;
    publisher.publish("u", "still", "all").await;
    other.expect(delivered("u", "still", "all", 0)).await;
}

#[tokio::test]
async fn nothing_arrives_after_the_unsubscribe_reply() {
    let server = Server::start();
    let mut sub = server.client().await;
    let mut publisher = server.client().await;
    sub.subscribe("t").await;
    publisher.publish("t", "before", "all").await;
    sub.expect(delivered("t", "before", "all", 0)).await;
    sub.send(UNSUBSCRIBE_T).await;
    sub.expect_ok().await;
    publisher.publish("t", "after", "all").await;
    publisher.publish("t", "after one", "one").await;
    sub.expect_nothing().await;
}

#[tokio::test]
async fn unsubscribing_one_topic_keeps_the_others() {
    let server = Server::start();
    let mut sub = server.client().await;
    let mut publisher = server.client().await;
    sub.subscribe("t").await;
    sub.subscribe("u").await;
    sub.send(UNSUBSCRIBE_T).await;
    sub.expect_ok().await;
    publisher.publish("t", "gone", "all").await;
    publisher.publish("u", "kept", "all").await;
    sub.expect(delivered("u", "kept", "all", 0)).await;
    sub.expect_nothing().await;
}

#[tokio::test]
async fn subscribing_after_an_unsubscribe_is_a_fresh_subscription() {
    let server = Server::start();
    let mut sub = server.client().await;
    let mut publisher = server.client().await;
    sub.subscribe("t").await;
    publisher.publish("t", "first", "all").await;
    sub.expect(delivered("t", "first", "all", 0)).await;
    sub.send(UNSUBSCRIBE_T).await;
    sub.expect_ok().await;
    publisher.publish("t", "missed", "all").await;
    // The replay covers every cached message again, then live ones follow.
    sub.subscribe("t").await;
    sub.expect(delivered("t", "first", "all", 0)).await;
    sub.expect(delivered("t", "missed", "all", 1)).await;
    publisher.publish("t", "live", "all").await;
    sub.expect(delivered("t", "live", "all", 2)).await;
    sub.expect_nothing().await;
}

#[tokio::test]
async fn subscribe_with_cache_false_gets_only_live_messages() {
    let server = Server::start();
    let mut sub = server.client().await;
    let mut publisher = server.client().await;
    publisher.publish("t", "old", "all").await;
    sub.send(r#"{"command": "subscribe", "topic": "t", "cache": false}"#)
        .await;
    sub.expect_ok().await;
    sub.expect_nothing().await;
    publisher.publish("t", "new", "all").await;
    sub.expect(delivered("t", "new", "all", 1)).await;
}

#[tokio::test]
async fn one_connection_subscribes_to_many_topics() {
    let server = Server::start();
    let mut sub = server.client().await;
    let mut publisher = server.client().await;
    let topics: Vec<String> = (0..50).map(|i| format!("topic {i}")).collect();
    for topic in &topics {
        sub.subscribe(topic).await;
    }
    for topic in topics.iter().rev() {
        publisher.publish(topic, topic, "all").await;
    }
    // Topics are not ordered with each other.
    sub.expect_unordered(topics.iter().map(|t| delivered(t, t, "all", 0)).collect())
        .await;
    sub.expect_nothing().await;
}

#[tokio::test]
async fn subscribing_again_with_an_earlier_last_seen_replays_only_the_rest() {
    let server = Server::start();
    let mut sub = server.client().await;
    let mut publisher = server.client().await;
    for i in 0..4 {
        publisher.publish("t", &format!("m{i}"), "all").await;
    }
    sub.send(r#"{"command": "subscribe", "topic": "t", "last_seen": 1}"#)
        .await;
    sub.expect_ok().await;
    sub.expect(delivered("t", "m2", "all", 2)).await;
    sub.expect(delivered("t", "m3", "all", 3)).await;
    // Asking again for everything brings only what it has not been sent.
    sub.subscribe("t").await;
    sub.expect(delivered("t", "m0", "all", 0)).await;
    sub.expect(delivered("t", "m1", "all", 1)).await;
    sub.expect_nothing().await;
    publisher.publish("t", "m4", "all").await;
    sub.expect(delivered("t", "m4", "all", 4)).await;
    sub.expect_nothing().await;
}
