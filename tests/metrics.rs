//! `--metrics`: the real binary's `/metrics`, `/healthz` and `/topics`,
//! scraped over HTTP while real clients use it. Counters must move by
//! exactly what the clients did, every series must be there at 0 from the
//! start, and `/healthz` must turn 503 while the broker drains.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{connect_small, delivered, get, send_line, Client, Server, BIN, WAIT};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Every series `/metrics` exports, with each of its labels.
const SERIES: [&str; 21] = [
    "mq_connections",
    "mq_connections_accepted_total",
    "mq_connections_refused_total{reason=\"max_connections\"}",
    "mq_connections_refused_total{reason=\"max_connections_per_ip\"}",
    "mq_connections_refused_total{reason=\"setup_failed\"}",
    "mq_subscriptions",
    "mq_topics",
    "mq_messages_in_total{delivery=\"all\"}",
    "mq_messages_in_total{delivery=\"one\"}",
    "mq_messages_out_total{delivery=\"all\"}",
    "mq_messages_out_total{delivery=\"one\"}",
    "mq_received_bytes_total",
    "mq_sent_bytes_total",
    "mq_replayed_messages_total",
    "mq_slow_consumers_total",
    "mq_outbox_pending_bytes",
    "mq_parse_errors_total{reason=\"not_utf8\"}",
    "mq_parse_errors_total{reason=\"not_json\"}",
    "mq_parse_errors_total{reason=\"malformed\"}",
    "mq_parse_errors_total{reason=\"line_too_long\"}",
    "mq_memory_used_bytes",
];

/// The reply line every successful command gets, with its line ending.
const OK_LINE: usize = "{\"success\": true}\r\n".len();

/// Every sample of one scrape, by series (name and labels as written).
struct Scrape(HashMap<String, f64>);

impl Scrape {
    fn get(&self, series: &str) -> f64 {
        *self
            .0
            .get(series)
            .unwrap_or_else(|| panic!("no {series} in the scrape"))
    }
}

async fn scrape(server: &Server) -> Scrape {
    let (status, body) = get(server.metrics_addr(), "/metrics").await;
    assert_eq!(status, 200, "{body}");
    let samples = body
        .lines()
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| {
            let (series, value) = line
                .rsplit_once(' ')
                .unwrap_or_else(|| panic!("not a sample: {line:?}"));
            let value = value
                .parse()
                .unwrap_or_else(|_| panic!("not a number: {line:?}"));
            (series.to_owned(), value)
        })
        .collect();
    Scrape(samples)
}

/// `series` once it reached `want`: what is counted after a write to a
/// socket, or on a topic's thread, may be seen by a client a moment before
/// it is counted. Gives up (returning what it saw) after [`WAIT`].
async fn settled(server: &Server, series: &str, want: f64) -> f64 {
    let deadline = Instant::now() + WAIT;
    loop {
        let value = scrape(server).await.get(series);
        if value >= want || Instant::now() >= deadline {
            return value;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn start() -> Server {
    Server::start_with(&["--metrics", "127.0.0.1:0"])
}

/// Reads one delivered line, checks it, and says how many bytes it took.
async fn receive(client: &mut Client, want: Value) -> usize {
    let line = client.recv_line().await;
    let got: Value = serde_json::from_str(&line).expect("a JSON line");
    assert_eq!(got, want);
    line.len() + "\r\n".len()
}

#[tokio::test]
async fn every_series_is_exported_at_zero_from_the_start() {
    let server = Server::start_with(&["--metrics", "127.0.0.1:0", "--max-memory", "64MiB"]);
    let scrape = scrape(&server).await;
    for series in SERIES {
        assert_eq!(scrape.get(series), 0.0, "{series}");
    }
    assert_eq!(
        scrape.get("mq_memory_limit_bytes"),
        (64 * 1024 * 1024) as f64
    );
    let mut exported: Vec<&str> = scrape.0.keys().map(String::as_str).collect();
    exported.retain(|series| !SERIES.contains(series) && *series != "mq_memory_limit_bytes");
    assert!(exported.is_empty(), "undocumented series: {exported:?}");
}

#[tokio::test]
async fn counters_move_by_exactly_what_the_clients_did() {
    const SENDS: u64 = 25;
    let server = start();
    let mut sent_bytes = 0;
    let mut subscriber = server.client().await;
    subscriber.subscribe("news").await;
    sent_bytes += OK_LINE;
    let before = scrape(&server).await;
    assert_eq!(before.get("mq_connections"), 1.0);
    assert_eq!(before.get("mq_connections_accepted_total"), 1.0);
    assert_eq!(before.get("mq_subscriptions"), 1.0);
    assert_eq!(before.get("mq_topics"), 1.0);

    let mut publisher = server.client().await;
    let lines: Vec<String> = (0..SENDS)
        .map(|i| send_line("news", &format!("message {i}"), "all"))
        .collect();
    for line in &lines {
        publisher.send(line).await;
    }
    for _ in &lines {
        publisher.expect_ok().await;
        sent_bytes += OK_LINE;
    }
    let after = scrape(&server).await;
    let moved = |series: &str| after.get(series) - before.get(series);
    assert_eq!(
        moved("mq_messages_in_total{delivery=\"all\"}"),
        SENDS as f64
    );
    assert_eq!(moved("mq_messages_in_total{delivery=\"one\"}"), 0.0);
    let line_bytes: usize = lines.iter().map(String::len).sum();
    assert_eq!(moved("mq_received_bytes_total"), line_bytes as f64);
    assert_eq!(after.get("mq_connections"), 2.0);
    assert_eq!(after.get("mq_connections_accepted_total"), 2.0);
    for i in 0..SENDS {
        let want = delivered("news", &format!("message {i}"), "all", i);
        sent_bytes += receive(&mut subscriber, want).await;
    }
    let out_all = "mq_messages_out_total{delivery=\"all\"}";
    assert_eq!(settled(&server, out_all, SENDS as f64).await, SENDS as f64);

    for i in SENDS..SENDS + 3 {
        publisher.publish("news", &format!("job {i}"), "one").await;
        sent_bytes += OK_LINE;
        let want = delivered("news", &format!("job {i}"), "one", i);
        sent_bytes += receive(&mut subscriber, want).await;
    }
    let in_one = "mq_messages_in_total{delivery=\"one\"}";
    assert_eq!(scrape(&server).await.get(in_one), 3.0);
    let out_one = "mq_messages_out_total{delivery=\"one\"}";
    assert_eq!(settled(&server, out_one, 3.0).await, 3.0);

    // A late subscriber is replayed the cached `all` messages (the `one`
    // messages were consumed by their delivery).
    let mut late = server.client().await;
    late.subscribe("news").await;
    sent_bytes += OK_LINE;
    assert_eq!(scrape(&server).await.get("mq_subscriptions"), 2.0);
    for i in 0..SENDS {
        let want = delivered("news", &format!("message {i}"), "all", i);
        sent_bytes += receive(&mut late, want).await;
    }
    let replayed = "mq_replayed_messages_total";
    assert_eq!(settled(&server, replayed, SENDS as f64).await, SENDS as f64);
    late.send(&json!({"command": "unsubscribe", "topic": "news"}).to_string())
        .await;
    late.expect_ok().await;
    sent_bytes += OK_LINE;
    let last = scrape(&server).await;
    assert_eq!(last.get("mq_subscriptions"), 1.0);
    assert_eq!(last.get(out_all), SENDS as f64, "replays are not live");
    let sent = settled(&server, "mq_sent_bytes_total", sent_bytes as f64).await;
    assert_eq!(sent, sent_bytes as f64);
}

#[tokio::test]
async fn parse_errors_are_counted_by_reason() {
    let server = Server::start_with(&["--metrics", "127.0.0.1:0", "--max-line", "64"]);
    let mut client = server.client().await;
    client.send("not json").await;
    client.expect_error("Could not parse json").await;
    client.send("{}").await;
    client.expect_error("Malformed json message").await;
    client.send_raw(b"\xff\xfe\n").await;
    client.expect_error("Could not decode input as UTF-8").await;
    client.send(&"x".repeat(100)).await;
    client.expect_error("Line too long").await;
    let scrape = scrape(&server).await;
    for reason in ["not_utf8", "not_json", "malformed", "line_too_long"] {
        let series = format!("mq_parse_errors_total{{reason=\"{reason}\"}}");
        assert_eq!(scrape.get(&series), 1.0, "{series}");
    }
    // What was read of the lines that fit; not the discarded long one.
    let read = "not json".len() + "{}".len() + 2;
    assert_eq!(scrape.get("mq_received_bytes_total"), read as f64);
    assert_eq!(scrape.get("mq_messages_in_total{delivery=\"all\"}"), 0.0);
}

#[tokio::test]
async fn a_connection_over_the_limit_is_counted_as_refused() {
    let server = Server::start_with(&["--metrics", "127.0.0.1:0", "--max-connections", "1"]);
    let mut admitted = server.client().await;
    admitted.subscribe("a").await;
    let mut refused = server.client().await;
    refused.expect_error("Too many connections").await;
    refused.expect_closed().await;
    let scrape = scrape(&server).await;
    let series = "mq_connections_refused_total{reason=\"max_connections\"}";
    assert_eq!(scrape.get(series), 1.0);
    assert_eq!(scrape.get("mq_connections_accepted_total"), 1.0);
    assert_eq!(scrape.get("mq_connections"), 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_consumer_cut_off_is_counted() {
    let server = Server::start_with(&["--metrics", "127.0.0.1:0", "--max-pending", "256k"]);
    let mut stalled = server.client().await;
    stalled.subscribe("counted").await;
    let mut publisher = server.client().await;
    let line = send_line("counted", &"y".repeat(1000), "all");
    let mut cut_off = 0.0;
    for _ in 0..50 {
        for _ in 0..100 {
            publisher.send(&line).await;
            publisher.expect_ok().await;
        }
        let scrape = scrape(&server).await;
        cut_off = scrape.get("mq_slow_consumers_total");
        if cut_off > 0.0 {
            break;
        }
    }
    assert_eq!(cut_off, 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_turns_503_while_the_broker_drains() {
    let mut server = Server::start_logging(
        &["--metrics", "127.0.0.1:0", "--shutdown-timeout", "60"],
        Stdio::null(),
    );
    let metrics = server.metrics_addr();
    assert_eq!(
        get(metrics, "/healthz").await,
        (200, json!({"status": "accepting"}).to_string())
    );

    // A subscriber that reads nothing keeps the drain going: it is owed
    // what the broker acknowledged, and shutdown waits to write it.
    let mut stalled = connect_small(server.addr(), 4 * 1024).await;
    let subscribe = json!({"command": "subscribe", "topic": "owed"}).to_string() + "\n";
    stalled
        .write_all(subscribe.as_bytes())
        .await
        .expect("write");
    let mut reply = Vec::new();
    while !reply.ends_with(b"\n") {
        let mut byte = [0u8; 1];
        stalled
            .read_exact(&mut byte)
            .await
            .expect("the subscribe reply");
        reply.push(byte[0]);
    }
    let mut publisher = server.client().await;
    let owed: String = (0..2_000)
        .map(|_| send_line("owed", &"o".repeat(1000), "all") + "\n")
        .collect();
    publisher.send_raw(owed.as_bytes()).await;
    for _ in 0..2_000 {
        publisher.expect_ok().await;
    }

    // Nearly all of it waits in the subscriber's outbox, which the memory
    // budget counts too.
    let pending = settled(&server, "mq_outbox_pending_bytes", 1e6).await;
    assert!(pending >= 1e6, "{pending} bytes pending");
    let now = scrape(&server).await;
    assert!(now.get("mq_memory_used_bytes") >= now.get("mq_outbox_pending_bytes"));

    server.signal("TERM");
    let deadline = Instant::now() + WAIT;
    let (status, body) = loop {
        let (status, body) = get(metrics, "/healthz").await;
        if status != 200 || Instant::now() >= deadline {
            break (status, body);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(status, 503, "{body}");
    assert_eq!(body, json!({"status": "draining"}).to_string());

    // Once the subscriber goes, nothing is owed and the broker exits.
    drop(stalled);
    let status = server.exit_status(WAIT).await;
    assert!(status.success(), "exit status {status}");
}

#[tokio::test]
async fn topics_lists_the_largest_first_up_to_the_limit() {
    let server = start();
    let mut subscriber = server.client().await;
    subscriber.subscribe("middle").await;
    subscriber.subscribe("empty").await;
    let mut publisher = server.client().await;
    for (topic, size, count) in [("small", 10, 1), ("middle", 100, 2), ("big", 300, 3)] {
        for _ in 0..count {
            publisher.publish(topic, &"m".repeat(size), "all").await;
        }
    }
    let (status, body) = get(server.metrics_addr(), "/topics?limit=2").await;
    assert_eq!(status, 200, "{body}");
    let listed: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(listed["count"], 4);
    let topics = listed["topics"].as_array().expect("a list of topics");
    let summary: Vec<Value> = topics
        .iter()
        .map(|t| json!([t["name"], t["next_index"], t["cached"], t["subscribers"]]))
        .collect();
    assert_eq!(
        summary,
        vec![json!(["big", 3, 3, 0]), json!(["middle", 2, 2, 1])]
    );

    let (_, body) = get(server.metrics_addr(), "/topics").await;
    let all: Value = serde_json::from_str(&body).expect("JSON");
    let topics = all["topics"].as_array().expect("a list of topics");
    let names: Vec<&str> = topics.iter().filter_map(|t| t["name"].as_str()).collect();
    assert_eq!(names, ["big", "middle", "small", "empty"]);
    let sizes: Vec<u64> = topics
        .iter()
        .filter_map(|t| t["cached_bytes"].as_u64())
        .collect();
    assert!(sizes.windows(2).all(|w| w[0] > w[1]), "{sizes:?}");
    assert_eq!(sizes.last(), Some(&0));

    let (status, _) = get(server.metrics_addr(), "/topics?limit=lots").await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn the_environment_turns_it_on_and_a_bad_address_stops_the_start() {
    let mut child = Command::new(BIN)
        .arg("0")
        .env("MQ_ACTIX_METRICS", "127.0.0.1:0")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start mq-actix");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("the listening line");
    let metrics: SocketAddr = line
        .split_once("metrics on http://")
        .and_then(|(_, rest)| rest.split('/').next())
        .and_then(|addr| addr.parse().ok())
        .unwrap_or_else(|| panic!("no metrics address in {line:?}"));
    let health = get(metrics, "/healthz").await;
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(health.0, 200);

    let refused = Command::new(BIN)
        .args(["0", "--metrics", "not-an-address"])
        .stdout(Stdio::null())
        .output()
        .expect("run mq-actix");
    assert_eq!(refused.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("--metrics not-an-address"), "{stderr}");
}
