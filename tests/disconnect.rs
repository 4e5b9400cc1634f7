//! Disconnects: a closed connection leaves all its topics, and nothing else
//! changes (counters and caches stay); what was owed is still written when
//! the client only half-closes.

mod common;

use common::{delivered, send_line, Server};
use serde_json::json;

#[tokio::test]
async fn a_closed_connection_leaves_its_topics_but_they_keep_counters_and_caches() {
    let server = Server::start();
    let mut publisher = server.client().await;
    let mut leaver = server.client().await;
    leaver.subscribe("a").await;
    leaver.subscribe("b").await;
    publisher.publish("a", "a0", "all").await;
    publisher.publish("b", "b0", "all").await;
    leaver
        .expect_unordered(vec![
            delivered("a", "a0", "all", 0),
            delivered("b", "b0", "all", 0),
        ])
        .await;
    leaver.send("quit").await;
    leaver.expect_closed().await;

    // With its only subscriber gone, a `one` message waits in the cache.
    publisher.publish("a", "a1", "one").await;
    publisher.publish("b", "b1", "all").await;
    let mut next = server.client().await;
    next.subscribe("a").await;
    next.expect(delivered("a", "a0", "all", 0)).await;
    next.expect(delivered("a", "a1", "one", 1)).await;
    next.subscribe("b").await;
    next.expect(delivered("b", "b0", "all", 0)).await;
    next.expect(delivered("b", "b1", "all", 1)).await;
    publisher.publish("a", "a2", "all").await;
    next.expect(delivered("a", "a2", "all", 2)).await;
    next.expect_nothing().await;
}

#[tokio::test]
async fn one_messages_skip_a_subscriber_that_closed() {
    let server = Server::start();
    let mut stayer = server.client().await;
    let mut leaver = server.client().await;
    let mut publisher = server.client().await;
    stayer.subscribe("jobs").await;
    leaver.subscribe("jobs").await;
    // Half-closing and waiting for the server's close makes sure the
    // server has seen the disconnect.
    leaver.close_write().await;
    leaver.expect_closed().await;
    for i in 0..6 {
        publisher.publish("jobs", &format!("job {i}"), "one").await;
        stayer
            .expect(delivered("jobs", &format!("job {i}"), "one", i))
            .await;
    }
    stayer.expect_nothing().await;
}

#[tokio::test]
async fn a_half_closed_client_still_gets_everything_it_is_owed() {
    let server = Server::start_with(&["500"]);
    let mut publisher = server.client().await;
    for i in 0..300 {
        publisher.publish("t", &format!("m{i}"), "all").await;
    }
    let mut client = server.client().await;
    let mut pipeline = String::new();
    pipeline += "{\"command\": \"subscribe\", \"topic\": \"t\"}\n";
    for i in 0..100 {
        pipeline += &send_line("u", &format!("n{i}"), "all");
        pipeline += "\n";
    }
    pipeline += "not json\n";
    client.send_raw(pipeline.as_bytes()).await;
    client.close_write().await;
    let lines = client.recv_until_closed().await;
    let mut want = vec![json!({"success": true})];
    want.extend((0..300).map(|i| delivered("t", &format!("m{i}"), "all", i)));
    want.extend((0..100).map(|_| json!({"success": true})));
    want.push(json!({"success": false, "reason": "Could not parse json"}));
    assert_eq!(lines.len(), want.len());
    for (i, (got, want)) in lines.iter().zip(&want).enumerate() {
        assert_eq!(got, want, "line {i}");
    }
    // And its sends were carried out.
    let mut sub = server.client().await;
    sub.subscribe("u").await;
    for i in 0..100 {
        sub.expect(delivered("u", &format!("n{i}"), "all", i)).await;
    }
}

#[tokio::test]
async fn a_client_dropped_with_unread_messages_does_not_disturb_the_others() {
    let server = Server::start();
    let mut stayer = server.client().await;
    let mut dropper = server.client().await;
    let mut publisher = server.client().await;
    stayer.subscribe("t").await;
    dropper.subscribe("t").await;
    let mut pipeline = String::new();
    for i in 0..500 {
        pipeline += &send_line("t", &format!("m{i}"), "all");
        pipeline += "\n";
    }
    publisher.send_raw(pipeline.as_bytes()).await;
    // Gone with deliveries unread: the kernel resets the connection.
    dropper.recv().await;
    drop(dropper);
    for i in 0..500 {
        publisher.expect_ok().await;
        stayer
            .expect(delivered("t", &format!("m{i}"), "all", i))
            .await;
    }
    publisher.publish("t", "after", "all").await;
    stayer.expect(delivered("t", "after", "all", 500)).await;
    stayer.expect_nothing().await;
}
