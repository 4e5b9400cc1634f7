//! `send`: the delivered line, the topic's counter, `delivery: "all"`, a
//! sender that also subscribes, and arbitrary topic names and messages.

mod common;

use common::{delivered, index_of, send_line, Server};
use serde_json::{json, Value};

#[tokio::test]
async fn the_delivered_line_is_the_send_with_its_index() {
    let server = Server::start();
    let mut sub = server.client().await;
    let mut publisher = server.client().await;
    sub.subscribe("foo").await;
    publisher.publish("foo", "hello", "all").await;
    sub.expect(
        json!({"command": "send", "topic": "foo", "msg": "hello", "delivery": "all", "index": 0}),
    )
    .await;
    publisher.publish("foo", "job", "one").await;
    sub.expect(
        json!({"command": "send", "topic": "foo", "msg": "job", "delivery": "one", "index": 1}),
    )
    .await;
    sub.expect_nothing().await;
}

#[tokio::test]
async fn the_cache_key_is_carried_along_when_the_sender_gave_it() {
    let server = Server::start();
    let mut sub = server.client().await;
    let mut publisher = server.client().await;
    sub.subscribe("foo").await;
    for (i, cache) in [Some(true), Some(false), None].into_iter().enumerate() {
        for delivery in ["all", "one"] {
            let mut line =
                json!({"command": "send", "topic": "foo", "msg": "m", "delivery": delivery});
            if let Some(cache) = cache {
                line["cache"] = json!(cache);
            }
            publisher.send(&line.to_string()).await;
            publisher.expect_ok().await;
            line["index"] = json!(i * 2 + usize::from(delivery == "one"));
            let got = sub.recv().await;
            assert_eq!(got, line);
            assert_eq!(got.get("cache").is_some(), cache.is_some());
        }
    }
    sub.expect_nothing().await;
}

#[tokio::test]
async fn the_index_counts_every_send_even_with_no_subscriber() {
    let server = Server::start();
    let mut publisher = server.client().await;
    publisher.publish("t", "a", "all").await;
    publisher.publish("t", "b", "one").await;
    publisher
        .send(r#"{"command": "send", "topic": "t", "msg": "c", "delivery": "all", "cache": false}"#)
        .await;
    publisher.expect_ok().await;
    publisher
        .send(r#"{"command": "send", "topic": "t", "msg": "d", "delivery": "one", "cache": false}"#)
        .await;
    publisher.expect_ok().await;
    let mut sub = server.client().await;
    sub.send(r#"{"command": "subscribe", "topic": "t", "cache": false}"#)
        .await;
    sub.expect_ok().await;
    publisher.publish("t", "e", "all").await;
    sub.expect(delivered("t", "e", "all", 4)).await;
}

#[tokio::test]
async fn each_topic_counts_on_its_own() {
    let server = Server::start();
    let mut sub = server.client().await;
    let mut publisher = server.client().await;
    sub.subscribe("a").await;
    sub.subscribe("b").await;
    publisher.publish("a", "1", "all").await;
    publisher.publish("a", "2", "all").await;
    publisher.publish("b", "3", "all").await;
    publisher.publish("a", "4", "all").await;
    // Order holds within a topic only.
    sub.expect_unordered(vec![
        delivered("a", "1", "all", 0),
        delivered("a", "2", "all", 1),
        delivered("b", "3", "all", 0),
        delivered("a", "4", "all", 2),
    ])
    .await;
    sub.expect_nothing().await;
}

#[tokio::test]
async fn all_reaches_every_subscriber_once_and_no_one_else() {
    let server = Server::start();
    let mut subs = Vec::new();
    for _ in 0..4 {
        let mut sub = server.client().await;
        sub.subscribe("news").await;
        subs.push(sub);
    }
    let mut elsewhere = server.client().await;
    elsewhere.subscribe("sport").await;
    let mut publisher = server.client().await;
    publisher.publish("news", "extra", "all").await;
    for sub in &mut subs {
        sub.expect(delivered("news", "extra", "all", 0)).await;
        sub.expect_nothing().await;
    }
    elsewhere.expect_nothing().await;
    publisher.expect_nothing().await;
}

#[tokio::test]
async fn a_sender_that_subscribes_gets_its_reply_and_its_copy() {
    let server = Server::start();
    let mut client = server.client().await;
    client.subscribe("me").await;
    client.send(&send_line("me", "to myself", "all")).await;
    client
        .expect_unordered(vec![
            json!({"success": true}),
            delivered("me", "to myself", "all", 0),
        ])
        .await;
    // As the only subscriber it is also the one that gets a `one`.
    client.send(&send_line("me", "one for me", "one")).await;
    client
        .expect_unordered(vec![
            json!({"success": true}),
            delivered("me", "one for me", "one", 1),
        ])
        .await;
    client.expect_nothing().await;
}

#[tokio::test]
async fn a_subscriber_receives_in_index_order_from_many_publishers() {
    let server = Server::start();
    let mut sub = server.client().await;
    sub.subscribe("t").await;
    let mut publishers = Vec::new();
    for p in 0..3 {
        let mut publisher = server.client().await;
        let mut pipeline = String::new();
        for i in 0..200 {
            pipeline += &send_line("t", &format!("{p}:{i}"), "all");
            pipeline += "\n";
        }
        publisher.send_raw(pipeline.as_bytes()).await;
        publishers.push(publisher);
    }
    let mut next_of = [0; 3];
    for index in 0..600 {
        let line = sub.recv().await;
        assert_eq!(index_of(&line), index);
        let msg = line["msg"].as_str().expect("msg");
        let (p, i) = msg.split_once(':').expect("p:i");
        let p: usize = p.parse().expect("publisher");
        // Each publisher's sends keep their order.
        assert_eq!(i, next_of[p].to_string(), "{msg}");
        next_of[p] += 1;
    }
    for publisher in &mut publishers {
        for _ in 0..200 {
            publisher.expect_ok().await;
        }
    }
    sub.expect_nothing().await;
}

/// Topic names and messages: quotes, backslashes, control characters,
/// Unicode in every plane, escapes, the empty string, a long string.
fn awkward_strings() -> Vec<String> {
    vec![
        String::new(),
        " ".to_owned(),
        "say \"hi\"".to_owned(),
        "back\\slash \\\\ \\n".to_owned(),
        "new\nline, tab\t, return\r, nul\u{0}, bell\u{7}, del\u{7f}".to_owned(),
        "caf\u{e9} \u{65e5}\u{672c}\u{8a9e} \u{1F600} \u{10FFFF} \u{FEFF}".to_owned(),
        "{\"command\": \"send\"}".to_owned(),
        "quit".to_owned(),
        "\u{2028}\u{2029}".to_owned(),
        "x".repeat(100_000),
        "\u{e9}".repeat(20_000),
    ]
}

#[tokio::test]
async fn topic_names_and_messages_are_arbitrary_strings() {
    let server = Server::start();
    let mut sub = server.client().await;
    let mut publisher = server.client().await;
    let strings = awkward_strings();
    for topic in &strings {
        sub.subscribe(topic).await;
    }
    for topic in &strings {
        for msg in &strings {
            publisher.publish(topic, msg, "all").await;
        }
    }
    // Each topic's messages come in order; topics may interleave.
    let mut next_of = vec![0; strings.len()];
    for _ in 0..strings.len() * strings.len() {
        let got = sub.recv().await;
        let topic = got["topic"].as_str().expect("a topic");
        let t = strings
            .iter()
            .position(|s| s == topic)
            .expect("a known topic");
        let index = next_of[t];
        let msg = &strings[index];
        assert_eq!(
            got,
            delivered(topic, msg, "all", index as u64),
            "topic {topic:.40?}, msg {msg:.40?}"
        );
        next_of[t] += 1;
    }
    sub.expect_nothing().await;
}

#[tokio::test]
async fn escaped_and_literal_spellings_are_the_same_string() {
    let server = Server::start();
    let mut sub = server.client().await;
    let mut publisher = server.client().await;
    sub.send(r#"{"command": "subscribe", "topic": "caf\u00e9 \"q\" \ud83d\ude00"}"#)
        .await;
    sub.expect_ok().await;
    publisher
        .send(r#"{"command": "send", "topic": "café \u0022q\u0022 😀", "msg": "\u0041\/B", "delivery": "all"}"#)
        .await;
    publisher.expect_ok().await;
    sub.expect(delivered("café \"q\" 😀", "A/B", "all", 0))
        .await;
}

#[tokio::test]
async fn topics_are_distinct_by_every_character() {
    let server = Server::start();
    let mut sub = server.client().await;
    let mut publisher = server.client().await;
    sub.subscribe("foo").await;
    for other in ["Foo", "foo ", " foo", "fo", "foo\u{0}", "fo\u{f6}", "FOO"] {
        publisher.publish(other, "not for foo", "all").await;
    }
    sub.expect_nothing().await;
    publisher.publish("foo", "for foo", "all").await;
    let got: Value = sub.recv().await;
    assert_eq!(got, delivered("foo", "for foo", "all", 0));
}

/// Sends are handed to their topics in batches per read; nothing that comes
/// after them in the same read may overtake them, and a subscriber sees each
/// topic's messages in the order they were sent.
#[tokio::test]
async fn pipelined_sends_mixed_with_other_commands_keep_their_order() {
    let server = Server::start();
    let mut a_sub = server.client().await;
    a_sub.subscribe("a").await;
    let mut b_sub = server.client().await;
    b_sub.subscribe("b").await;

    let mut client = server.client().await;
    let mut lines = Vec::new();
    let mut replies = Vec::new();
    for round in 0..20 {
        for i in 0..5 {
            lines.push(send_line("a", &format!("a{round}.{i}"), "all"));
            replies.push(json!({"success": true}));
            lines.push(send_line("b", &format!("b{round}.{i}"), "all"));
            replies.push(json!({"success": true}));
        }
        lines.push("not json".to_owned());
        replies.push(json!({"success": false, "reason": "Could not parse json"}));
        lines.push(json!({"command": "subscribe", "topic": format!("x{round}")}).to_string());
        replies.push(json!({"success": true}));
    }
    lines.push(send_line("a", "last", "all"));
    replies.push(json!({"success": true}));
    lines.push("quit".to_owned());
    client.send(&lines.join("\n")).await;

    for want in replies {
        assert_eq!(client.recv().await, want);
    }
    client.expect_closed().await;

    let mut index = 0;
    for round in 0..20 {
        for i in 0..5 {
            a_sub
                .expect(delivered("a", &format!("a{round}.{i}"), "all", index))
                .await;
            b_sub
                .expect(delivered("b", &format!("b{round}.{i}"), "all", index))
                .await;
            index += 1;
        }
    }
    a_sub.expect(delivered("a", "last", "all", index)).await;
    a_sub.expect_nothing().await;
    b_sub.expect_nothing().await;
}
