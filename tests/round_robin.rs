//! `delivery: "one"`: round-robin over the subscribers in subscription order,
//! and nothing lost when one of them leaves mid-stream.

mod common;

use std::collections::BTreeMap;

use common::{delivered, index_of, send_line, Client, Merged, Server};

/// Subscribes `n` fresh clients to `topic`, in order.
async fn subscribers(server: &Server, topic: &str, n: usize) -> Vec<Client> {
    let mut clients = Vec::new();
    for _ in 0..n {
        let mut client = server.client().await;
        client.subscribe(topic).await;
        clients.push(client);
    }
    clients
}

/// `count` `one` sends to `topic` in one write, messages "m0", "m1", ...
fn one_sends(topic: &str, count: u64) -> Vec<u8> {
    let mut pipeline = String::new();
    for i in 0..count {
        pipeline += &send_line(topic, &format!("m{i}"), "one");
        pipeline += "\n";
    }
    pipeline.into_bytes()
}

/// Reads all the deliveries of a mid-stream test from the subscribers that
/// stayed and checks that, with what the leaver got, every message went to
/// exactly one subscriber. Returns how many each of the stayers received.
async fn each_message_exactly_once(
    stayers: Vec<Client>,
    leaver_got: &[u64],
    total: u64,
) -> Vec<usize> {
    let mut owner: BTreeMap<u64, usize> = BTreeMap::new();
    for &index in leaver_got {
        assert!(owner.insert(index, usize::MAX).is_none(), "{index} twice");
    }
    let mut counts = vec![0; stayers.len()];
    let mut merged = Merged::new(stayers);
    while (owner.len() as u64) < total {
        let (who, line) = merged.next().await;
        let index = index_of(&line);
        assert_eq!(line, delivered("jobs", &format!("m{index}"), "one", index));
        if let Some(before) = owner.insert(index, who) {
            panic!("message {index} delivered to {before} and to {who}");
        }
        counts[who] += 1;
    }
    assert_eq!(
        owner.keys().copied().collect::<Vec<_>>(),
        (0..total).collect::<Vec<_>>()
    );
    merged.expect_nothing().await;
    counts
}

#[tokio::test]
async fn one_goes_round_robin_in_subscription_order() {
    let server = Server::start();
    let mut subs = subscribers(&server, "jobs", 3).await;
    let mut publisher = server.client().await;
    publisher.send_raw(&one_sends("jobs", 9)).await;
    for _ in 0..9 {
        publisher.expect_ok().await;
    }
    for (who, sub) in subs.iter_mut().enumerate() {
        for round in 0..3 {
            let index = (round * 3 + who) as u64;
            sub.expect(delivered("jobs", &format!("m{index}"), "one", index))
                .await;
        }
        sub.expect_nothing().await;
    }
}

#[tokio::test]
async fn a_single_subscriber_gets_every_one_message() {
    let server = Server::start();
    let mut subs = subscribers(&server, "jobs", 1).await;
    let mut publisher = server.client().await;
    publisher.send_raw(&one_sends("jobs", 20)).await;
    for i in 0..20 {
        publisher.expect_ok().await;
        subs[0]
            .expect(delivered("jobs", &format!("m{i}"), "one", i))
            .await;
    }
    subs[0].expect_nothing().await;
}

#[tokio::test]
async fn after_an_unsubscribe_the_turn_goes_on_with_the_others() {
    let server = Server::start();
    let mut subs = subscribers(&server, "jobs", 3).await;
    let mut publisher = server.client().await;
    publisher.publish("jobs", "m0", "one").await;
    publisher.publish("jobs", "m1", "one").await;
    subs[0].expect(delivered("jobs", "m0", "one", 0)).await;
    subs[1].expect(delivered("jobs", "m1", "one", 1)).await;
    subs[1]
        .send(r#"{"command": "unsubscribe", "topic": "jobs"}"#)
        .await;
    subs[1].expect_ok().await;
    // The third was next and stays next; then the first, and so on.
    for i in 2..8u64 {
        publisher.publish("jobs", &format!("m{i}"), "one").await;
        let to = if i % 2 == 0 { 2 } else { 0 };
        subs[to]
            .expect(delivered("jobs", &format!("m{i}"), "one", i))
            .await;
    }
    for sub in &mut subs {
        sub.expect_nothing().await;
    }
}

#[tokio::test]
async fn one_messages_of_an_all_topic_do_not_disturb_all_messages() {
    let server = Server::start();
    let mut subs = subscribers(&server, "jobs", 2).await;
    let mut publisher = server.client().await;
    publisher.publish("jobs", "m0", "one").await;
    publisher.publish("jobs", "m1", "all").await;
    publisher.publish("jobs", "m2", "one").await;
    subs[0].expect(delivered("jobs", "m0", "one", 0)).await;
    subs[0].expect(delivered("jobs", "m1", "all", 1)).await;
    subs[1].expect(delivered("jobs", "m1", "all", 1)).await;
    subs[1].expect(delivered("jobs", "m2", "one", 2)).await;
    subs[0].expect_nothing().await;
    subs[1].expect_nothing().await;
}

/// The stream the mid-stream tests share: three subscribers, `TOTAL`
/// pipelined `one` sends, the middle subscriber reading a few and then
/// leaving by `leave` while the rest are still on their way.
const TOTAL: u64 = 900;

async fn middle_subscriber_leaves_mid_stream(how: Leave) {
    let server = Server::start();
    let mut subs = subscribers(&server, "jobs", 3).await;
    let mut publisher = server.client().await;
    // The publisher keeps writing, a few sends at a time, while the middle
    // subscriber leaves.
    let publishing = tokio::spawn(async move {
        for chunk in one_sends("jobs", TOTAL).chunks(2000) {
            publisher.send_raw(chunk).await;
            tokio::task::yield_now().await;
        }
        for _ in 0..TOTAL {
            publisher.expect_ok().await;
        }
    });
    let mut leaver = subs.remove(1);
    let mut leaver_got = Vec::new();
    for _ in 0..20 {
        leaver_got.push(index_of(&leaver.recv().await));
    }
    match how {
        Leave::Close => leaver.close_write().await,
        Leave::Quit => leaver.send("quit").await,
        Leave::Unsubscribe => {
            leaver
                .send(r#"{"command": "unsubscribe", "topic": "jobs"}"#)
                .await
        }
    }
    // What it is still sent before it is gone is its own.
    match how {
        Leave::Close | Leave::Quit => {
            for line in leaver.recv_until_closed().await {
                leaver_got.push(index_of(&line));
            }
        }
        Leave::Unsubscribe => loop {
            let line = leaver.recv().await;
            if line == serde_json::json!({"success": true}) {
                break;
            }
            leaver_got.push(index_of(&line));
        },
    }
    publishing.await.expect("the publisher");
    let counts = each_message_exactly_once(subs, &leaver_got, TOTAL).await;
    // The stayers kept taking turns: each got at least its share of what
    // the leaver did not.
    let stayed = TOTAL as usize - leaver_got.len();
    assert!(
        counts.iter().all(|&n| n >= stayed / 2 - 1),
        "unfair split {counts:?} of {stayed}"
    );
    if let Leave::Unsubscribe = how {
        leaver.expect_nothing().await;
    }
}

enum Leave {
    Close,
    Quit,
    Unsubscribe,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_closing_mid_stream_loses_nothing_for_the_others() {
    middle_subscriber_leaves_mid_stream(Leave::Close).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_quitting_mid_stream_loses_nothing_for_the_others() {
    middle_subscriber_leaves_mid_stream(Leave::Quit).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_unsubscribing_mid_stream_loses_nothing_for_the_others() {
    middle_subscriber_leaves_mid_stream(Leave::Unsubscribe).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_vanishing_mid_stream_does_not_stop_the_others() {
    // Dropped with unread messages (a reset): what was already written to
    // its socket is gone with it, but nothing is duplicated, the others go
    // on receiving, and everything sent once it is gone reaches them.
    let server = Server::start();
    let mut subs = subscribers(&server, "jobs", 3).await;
    let mut publisher = server.client().await;
    publisher.send_raw(&one_sends("jobs", 300)).await;
    let leaver = subs.remove(1);
    drop(leaver);
    for _ in 0..300 {
        publisher.expect_ok().await;
    }
    let mut merged = Merged::new(subs);
    let mut seen = BTreeMap::new();
    let mut check = |who: usize, line: serde_json::Value| {
        let index = index_of(&line);
        assert_eq!(line, delivered("jobs", &format!("m{index}"), "one", index));
        assert!(seen.insert(index, who).is_none(), "{line} twice");
    };
    // The stayers' own turns at the least, and perhaps some of the leaver's.
    for _ in 0..200 {
        let (who, line) = merged.next().await;
        check(who, line);
    }
    for (who, line) in merged.until_quiet().await {
        check(who, line);
    }
    // Both stayers still receive what comes next.
    publisher.publish("jobs", "after", "all").await;
    let mut got_after = [false; 2];
    while got_after != [true; 2] {
        let (who, line) = merged.next().await;
        if line == delivered("jobs", "after", "all", 300) {
            assert!(!got_after[who], "twice to {who}");
            got_after[who] = true;
        } else {
            check(who, line);
        }
    }
    let mut other = server.client().await;
    other.subscribe("elsewhere").await;
}
