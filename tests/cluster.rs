//! `--cluster`: several brokers, real child processes, share their topics
//! through a real Redis (standalone, and a Redis Cluster of three masters:
//! every scenario runs on both). Across nodes the single-server rules hold:
//! dense indexes in one order everywhere, replay then live with no gap and
//! no duplicate, `one` messages round robin over every subscriber of every
//! node and consumed once.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::redis::{Kind, Redis};
use common::{index_of, send_line, Client, Merged, Server, BIN};
use serde_json::{json, Value};

/// `n` brokers sharing `redis`, each with `args` (cache size first).
fn nodes(redis: &Redis, n: usize, args: &[&str]) -> Vec<Server> {
    let urls = redis.urls();
    (0..n)
        .map(|_| {
            let mut all = args.to_vec();
            all.extend(["--cluster", &urls]);
            Server::start_with(&all)
        })
        .collect()
}

/// Sends every line at once, then reads one acknowledgement per line.
async fn flood(client: &mut Client, lines: &[String]) {
    let mut batch = String::new();
    for line in lines {
        batch.push_str(line);
        batch.push('\n');
    }
    client.send_raw(batch.as_bytes()).await;
    for _ in lines {
        client.expect_ok().await;
    }
}

fn sends(topic: &str, prefix: &str, n: usize, delivery: &str) -> Vec<String> {
    (0..n)
        .map(|k| send_line(topic, &format!("{prefix}{k}"), delivery))
        .collect()
}

/// The next `n` deliveries of a subscriber.
async fn take(client: &mut Client, n: usize) -> Vec<Value> {
    let mut got = Vec::with_capacity(n);
    for _ in 0..n {
        got.push(client.recv().await);
    }
    got
}

fn indexes(delivered: &[Value]) -> Vec<u64> {
    delivered.iter().map(index_of).collect()
}

async fn subscribe(server: &Server, topic: &str, last_seen: Option<i64>) -> Client {
    let mut client = server.client().await;
    let mut command = json!({"command": "subscribe", "topic": topic});
    if let Some(last_seen) = last_seen {
        command["last_seen"] = json!(last_seen);
    }
    client.send(&command.to_string()).await;
    client.expect_ok().await;
    client
}

/// Declares one test per Redis kind for an `async fn scenario(Kind)`.
macro_rules! on_both {
    ($($scenario:ident),* $(,)?) => {
        mod standalone {
            $(
                #[tokio::test]
                async fn $scenario() {
                    super::$scenario(super::Kind::Standalone).await;
                }
            )*
        }
        mod redis_cluster {
            $(
                #[tokio::test]
                async fn $scenario() {
                    super::$scenario(super::Kind::Cluster).await;
                }
            )*
        }
    };
}

on_both!(
    every_node_delivers_every_message_in_one_dense_order,
    a_node_replays_what_another_node_cached,
    subscribing_while_another_node_publishes_misses_nothing_and_repeats_nothing,
    one_goes_round_robin_over_every_subscriber_of_every_node,
    one_waits_in_the_cache_until_a_subscriber_on_any_node,
    a_replayed_one_is_consumed_once_when_two_nodes_replay_at_once,
    a_node_killed_mid_flood_loses_nothing_it_acknowledged_elsewhere,
    while_redis_is_stopped_sends_are_refused_then_everything_recovers,
    a_dead_node_gets_no_one_messages_within_ten_seconds,
    a_node_whose_connection_breaks_catches_up_from_the_cache,
    a_node_stopped_gracefully_leaves_the_one_rotation_at_once,
    after_a_redis_restart_the_nodes_reconnect_and_carry_on,
);

async fn every_node_delivers_every_message_in_one_dense_order(kind: Kind) {
    let redis = Redis::start(kind);
    let servers = nodes(&redis, 2, &["10"]);
    let mut on_a = subscribe(&servers[0], "news", None).await;
    let mut on_b = subscribe(&servers[1], "news", None).await;
    let mut also_b = subscribe(&servers[1], "news", None).await;
    let (mut pub_a, mut pub_b) = (servers[0].client().await, servers[1].client().await);
    let from_a = sends("news", "a", 150, "all");
    let from_b = sends("news", "b", 150, "all");
    tokio::join!(flood(&mut pub_a, &from_a), flood(&mut pub_b, &from_b));
    let a = take(&mut on_a, 300).await;
    let b = take(&mut on_b, 300).await;
    assert_eq!(indexes(&a), (0..300).collect::<Vec<_>>(), "dense, in order");
    assert_eq!(a, b, "both nodes deliver the same message at each index");
    assert_eq!(take(&mut also_b, 300).await, a);
    for prefix in ["a", "b"] {
        let mine: Vec<&str> = a
            .iter()
            .filter_map(|d| d["msg"].as_str())
            .filter(|m| m.starts_with(prefix))
            .collect();
        let sent: Vec<String> = (0..150).map(|k| format!("{prefix}{k}")).collect();
        assert_eq!(mine, sent, "each publisher's messages once, in its order");
    }
    on_a.expect_nothing().await;
    on_b.expect_nothing().await;
}

async fn a_node_replays_what_another_node_cached(kind: Kind) {
    let redis = Redis::start(kind);
    let servers = nodes(&redis, 2, &["5"]);
    let mut publisher = servers[0].client().await;
    flood(&mut publisher, &sends("log", "m", 8, "all")).await;
    publisher
        .send(&json!({"command": "send", "topic": "log", "msg": "skip", "delivery": "all", "cache": false}).to_string())
        .await;
    publisher.expect_ok().await;
    let mut all = subscribe(&servers[1], "log", None).await;
    let replay = take(&mut all, 5).await;
    assert_eq!(
        indexes(&replay),
        vec![3, 4, 5, 6, 7],
        "the last 5, oldest first"
    );
    assert_eq!(
        replay[0],
        json!({"command": "send", "topic": "log", "msg": "m3", "delivery": "all", "index": 3})
    );
    all.expect_nothing().await;
    let mut after = subscribe(&servers[1], "log", Some(5)).await;
    assert_eq!(indexes(&take(&mut after, 2).await), vec![6, 7]);
    after.expect_nothing().await;
    // And live from there on, numbered after the uncached one.
    publisher.publish("log", "live", "all").await;
    assert_eq!(index_of(&all.recv().await), 9);
    assert_eq!(index_of(&after.recv().await), 9);
}

async fn subscribing_while_another_node_publishes_misses_nothing_and_repeats_nothing(kind: Kind) {
    const TOTAL: usize = 3000;
    let redis = Redis::start(kind);
    let servers = nodes(&redis, 2, &["100000"]);
    let mut publisher = servers[0].client().await;
    let lines = sends("race", "r", TOTAL, "all");
    let flooding = tokio::spawn(async move {
        for chunk in lines.chunks(100) {
            flood(&mut publisher, chunk).await;
        }
    });
    let mut subscribers = Vec::new();
    for k in 0..6 {
        tokio::time::sleep(Duration::from_millis(15 * k)).await;
        let last_seen = if k % 2 == 0 { None } else { Some(k as i64 * 7) };
        let server = &servers[(k as usize) % 2];
        subscribers.push((subscribe(server, "race", last_seen).await, last_seen));
    }
    flooding.await.expect("the publisher");
    for (mut sub, last_seen) in subscribers {
        let first = last_seen.map_or(0, |seen| seen as u64 + 1);
        let want: Vec<u64> = (first..TOTAL as u64).collect();
        let got = take(&mut sub, want.len()).await;
        assert_eq!(
            indexes(&got),
            want,
            "replay then live, no gap, no duplicate"
        );
        sub.expect_nothing().await;
    }
}

async fn one_goes_round_robin_over_every_subscriber_of_every_node(kind: Kind) {
    const SENT: usize = 900;
    let redis = Redis::start(kind);
    let servers = nodes(&redis, 3, &["10"]);
    let mut clients = Vec::new();
    for server in &servers {
        for _ in 0..3 {
            clients.push(subscribe(server, "jobs", None).await);
        }
    }
    let mut merged = Merged::new(clients);
    let mut publisher = servers[0].client().await;
    flood(&mut publisher, &sends("jobs", "j", SENT, "one")).await;
    let mut shares = [0usize; 9];
    let mut seen = BTreeSet::new();
    for _ in 0..SENT {
        let (who, delivered) = merged.next().await;
        assert_eq!(delivered["delivery"], "one");
        assert!(
            seen.insert(index_of(&delivered)),
            "delivered twice: {delivered}"
        );
        shares[who] += 1;
    }
    merged.expect_nothing().await;
    assert_eq!(seen, (0..SENT as u64).collect(), "every message, once");
    let fair = SENT / 9;
    for share in shares {
        assert!(
            share.abs_diff(fair) <= fair / 10,
            "shares {shares:?} are not within 10% of {fair}"
        );
    }
}

async fn one_waits_in_the_cache_until_a_subscriber_on_any_node(kind: Kind) {
    let redis = Redis::start(kind);
    let servers = nodes(&redis, 3, &["10"]);
    let mut publisher = servers[0].client().await;
    flood(&mut publisher, &sends("jobs", "w", 3, "one")).await;
    publisher
        .send(&json!({"command": "send", "topic": "jobs", "msg": "lost", "delivery": "one", "cache": false}).to_string())
        .await;
    publisher.expect_ok().await;
    let mut first = subscribe(&servers[1], "jobs", None).await;
    let replay = take(&mut first, 3).await;
    assert_eq!(indexes(&replay), vec![0, 1, 2]);
    assert_eq!(replay[2]["msg"], "w2");
    first.expect_nothing().await;
    let mut second = subscribe(&servers[2], "jobs", None).await;
    second.expect_nothing().await;
    // Live ones now go to the two subscribers in turn.
    publisher.publish("jobs", "live 1", "one").await;
    publisher.publish("jobs", "live 2", "one").await;
    let mut merged = Merged::new(vec![first, second]);
    let (a, b) = (merged.next().await, merged.next().await);
    assert_ne!(a.0, b.0, "one each");
    assert_eq!(
        BTreeSet::from([index_of(&a.1), index_of(&b.1)]),
        BTreeSet::from([4, 5])
    );
}

async fn a_replayed_one_is_consumed_once_when_two_nodes_replay_at_once(kind: Kind) {
    const SENT: usize = 60;
    let redis = Redis::start(kind);
    let servers = nodes(&redis, 2, &["100"]);
    let mut publisher = servers[0].client().await;
    flood(&mut publisher, &sends("jobs", "c", SENT, "one")).await;
    let (mut a, mut b) = (servers[0].client().await, servers[1].client().await);
    let line = json!({"command": "subscribe", "topic": "jobs"}).to_string();
    tokio::join!(a.send(&line), b.send(&line));
    let mut merged = Merged::new(vec![a, b]);
    let mut seen = BTreeSet::new();
    let mut oks = 0;
    for (_, line) in merged.until_quiet().await {
        if line == json!({"success": true}) {
            oks += 1;
            continue;
        }
        assert!(seen.insert(index_of(&line)), "replayed twice: {line}");
    }
    assert_eq!(oks, 2);
    assert_eq!(seen, (0..SENT as u64).collect(), "every waiting one, once");
}

async fn a_node_killed_mid_flood_loses_nothing_it_acknowledged_elsewhere(kind: Kind) {
    let redis = Redis::start(kind);
    let mut servers = nodes(&redis, 2, &["10"]);
    let mut subscriber = subscribe(&servers[1], "flood", None).await;
    let publisher = servers[0].client().await;
    let victim = servers.remove(0);
    // Publishes in chunks until the connection breaks; counts the acks.
    let flooding = tokio::spawn(async move {
        let (mut reader, mut writer) = publisher.into_halves();
        let mut acked = 0u64;
        for chunk in sends("flood", "f", 50_000, "all").chunks(50) {
            let batch: String = chunk.iter().map(|l| format!("{l}\n")).collect();
            if tokio::io::AsyncWriteExt::write_all(&mut writer, batch.as_bytes())
                .await
                .is_err()
            {
                return acked;
            }
            for _ in chunk {
                let mut line = String::new();
                match tokio::io::AsyncBufReadExt::read_line(&mut reader, &mut line).await {
                    Ok(n) if n > 0 => {
                        assert_eq!(line, "{\"success\": true}\r\n");
                        acked += 1;
                    }
                    _ => return acked,
                }
            }
        }
        acked
    });
    tokio::time::sleep(Duration::from_millis(700)).await;
    victim.crash().await;
    let acked = flooding.await.expect("the publisher");
    assert!(acked > 0, "the flood was acknowledged before the kill");
    let mut next = 0;
    while let Ok(delivered) = tokio::time::timeout(Duration::from_secs(1), subscriber.recv()).await
    {
        assert_eq!(index_of(&delivered), next, "in order, without a gap");
        next += 1;
    }
    assert!(next >= acked, "{acked} acknowledged, only {next} delivered");
}

async fn while_redis_is_stopped_sends_are_refused_then_everything_recovers(kind: Kind) {
    let redis = Redis::start(kind);
    let servers = nodes(&redis, 2, &["10"]);
    let mut subscriber = subscribe(&servers[1], "news", None).await;
    let mut publisher = servers[0].client().await;
    publisher.publish("news", "before", "all").await;
    assert_eq!(subscriber.recv().await["msg"], "before");
    redis.signal("STOP");
    publisher.send(&send_line("news", "during", "all")).await;
    publisher.expect_error("Cluster unavailable").await;
    // Fails fast while the outage lasts.
    let started = Instant::now();
    publisher.send(&send_line("news", "during 2", "all")).await;
    publisher.expect_error("Cluster unavailable").await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "refused promptly"
    );
    let mut late = servers[1].client().await;
    late.send(&json!({"command": "subscribe", "topic": "news"}).to_string())
        .await;
    late.expect_error("Cluster unavailable").await;
    redis.signal("CONT");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        publisher.send(&send_line("news", "after", "all")).await;
        if publisher.recv().await == json!({"success": true}) {
            break;
        }
        assert!(Instant::now() < deadline, "never recovered");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The subscriber hears the topic again, in order; a refused send that
    // Redis carried out once it woke up may come first (see
    // docs/CLUSTER.md), an acknowledged one always comes.
    let mut last = 0;
    loop {
        let delivered = subscriber.recv().await;
        let index = index_of(&delivered);
        assert!(index > last, "in order");
        last = index;
        if delivered["msg"] == "after" {
            break;
        }
    }
    // The refused subscribe did not take effect; a new one does.
    late.expect_nothing().await;
    late.send(&json!({"command": "subscribe", "topic": "news", "last_seen": last}).to_string())
        .await;
    late.expect_ok().await;
    publisher.publish("news", "later", "all").await;
    assert_eq!(late.recv().await["msg"], "later");
    assert_eq!(subscriber.recv().await["msg"], "later");
}

async fn a_dead_node_gets_no_one_messages_within_ten_seconds(kind: Kind) {
    let redis = Redis::start(kind);
    let mut servers = nodes(&redis, 2, &["10"]);
    let mut survivor = subscribe(&servers[0], "jobs", None).await;
    let _doomed = subscribe(&servers[1], "jobs", None).await;
    let mut publisher = servers[0].client().await;
    servers.remove(1).crash().await;
    let killed = Instant::now();
    // Until the dead node's share expires, some go its way and are lost
    // with it; then every one reaches the survivor.
    let mut in_a_row = 0;
    while in_a_row < 20 {
        assert!(
            killed.elapsed() < Duration::from_secs(10),
            "a dead node still got one messages 10 s after its death"
        );
        publisher.send(&send_line("jobs", "j", "one")).await;
        publisher.expect_ok().await;
        match tokio::time::timeout(Duration::from_millis(300), survivor.recv()).await {
            Ok(delivered) => {
                assert_eq!(delivered["delivery"], "one");
                in_a_row += 1;
            }
            Err(_) => in_a_row = 0,
        }
    }
}

async fn a_node_whose_connection_breaks_catches_up_from_the_cache(kind: Kind) {
    const SENT: usize = 1500;
    let redis = Redis::start(kind);
    let servers = nodes(&redis, 2, &["100000"]);
    let mut subscriber = subscribe(&servers[1], "blips", None).await;
    let mut publisher = servers[0].client().await;
    let publishing = tokio::spawn(async move {
        let mut acked = 0;
        for chunk in sends("blips", "b", SENT, "all").chunks(10) {
            let batch: String = chunk.iter().map(|l| format!("{l}\n")).collect();
            publisher.send_raw(batch.as_bytes()).await;
            for _ in chunk {
                let reply = publisher.recv().await;
                if reply == json!({"success": true}) {
                    acked += 1;
                } else {
                    assert_eq!(reply["reason"], "Cluster unavailable");
                }
            }
        }
        acked
    });
    for _ in 0..8 {
        tokio::time::sleep(Duration::from_millis(80)).await;
        redis.kill_subscribers();
    }
    let acked = publishing.await.expect("the publisher");
    let mut next = 0;
    while let Ok(delivered) = tokio::time::timeout(Duration::from_secs(3), subscriber.recv()).await
    {
        assert_eq!(index_of(&delivered), next, "in order, no gap, no duplicate");
        next += 1;
    }
    assert!(next >= acked, "{acked} acknowledged, only {next} delivered");
}

async fn a_node_stopped_gracefully_leaves_the_one_rotation_at_once(kind: Kind) {
    let redis = Redis::start(kind);
    let mut servers = nodes(&redis, 2, &["10"]);
    let mut staying = subscribe(&servers[0], "jobs", None).await;
    let _leaving = subscribe(&servers[1], "jobs", None).await;
    let mut publisher = servers[0].client().await;
    servers.remove(1).stop().await;
    // No wait for an expiry: every one goes to the node that stayed.
    flood(&mut publisher, &sends("jobs", "j", 20, "one")).await;
    let got = take(&mut staying, 20).await;
    assert_eq!(indexes(&got), (0..20).collect::<Vec<_>>());
}

async fn after_a_redis_restart_the_nodes_reconnect_and_carry_on(kind: Kind) {
    let mut redis = Redis::start(kind);
    let servers = nodes(&redis, 2, &["10"]);
    let mut subscriber = subscribe(&servers[1], "news", None).await;
    let mut publisher = servers[0].client().await;
    flood(&mut publisher, &sends("news", "before", 3, "all")).await;
    assert_eq!(indexes(&take(&mut subscriber, 3).await), vec![0, 1, 2]);
    redis.shut_down();
    publisher.send(&send_line("news", "down", "all")).await;
    publisher.expect_error("Cluster unavailable").await;
    redis.start_again();
    // Sends are refused until a retry reaches Redis, then taken: the
    // scripts are loaded again, the counter resumed from Redis' file.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        publisher.send(&send_line("news", "after", "all")).await;
        if publisher.recv().await == json!({"success": true}) {
            break;
        }
        assert!(Instant::now() < deadline, "never recovered");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The subscriber on the other node is listening again.
    let delivered = subscriber.recv().await;
    assert_eq!(delivered["msg"], "after");
    assert_eq!(
        index_of(&delivered),
        3,
        "numbering goes on where it stopped"
    );
    let mut late = subscribe(&servers[0], "news", Some(1)).await;
    assert_eq!(indexes(&take(&mut late, 2).await), vec![2, 3]);
}

#[test]
fn cluster_and_data_dir_together_are_a_usage_error() {
    let out = std::process::Command::new(BIN)
        .args([
            "0",
            "--cluster",
            "redis://127.0.0.1:1",
            "--data-dir",
            "/tmp/x",
        ])
        .output()
        .expect("run mq-actix");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--data-dir"), "{stderr}");
}

#[test]
fn an_unreachable_redis_at_start_stops_the_broker_with_one_line() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let out = std::process::Command::new(BIN)
        .args(["0", "--cluster", &format!("redis://127.0.0.1:{port}")])
        .output()
        .expect("run mq-actix");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot connect to Redis"), "{stderr}");
}
