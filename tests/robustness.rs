//! The broker under hostile clients: slow consumers, floods, connection
//! limits, churn, exhausted file descriptors and shutdown signals.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{delivered, send_line, Client, Server, WAIT};
use mq_actix::config::{Config, Limits};
use mq_actix::testing::BackgroundServer;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::time::timeout;

/// Starts a server command whose process these tests signal or limit
/// themselves, and waits for its listening line.
fn spawn_listening(command: &mut Command) -> (std::process::Child, std::net::SocketAddr) {
    let mut child = command
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start mq-actix");
    let stdout = child.stdout.take().expect("stdout");
    let mut first = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut first).expect("line");
    let addr = first
        .split_whitespace()
        .find_map(|w| w.parse().ok())
        .expect("address");
    (child, addr)
}

/// Reads deliveries until `count` have arrived, checking they are exactly
/// indices 0..count in order.
async fn read_all_in_order(client: &mut Client, topic: &str, msg: &str, count: u64) {
    for index in 0..count {
        client.expect(delivered(topic, msg, "all", index)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_subscriber_is_cut_off_and_the_rest_get_everything() {
    const BUDGET: usize = 16 << 20;
    const MESSAGES: u64 = 40_000;
    let server = Server::start_with(&["--max-pending", &BUDGET.to_string()]);
    let msg = "x".repeat(1000);

    let mut stalled = server.client().await;
    stalled.subscribe("flood").await;
    let mut healthy = server.client().await;
    healthy.subscribe("flood").await;

    let (addr, line) = (server.addr(), send_line("flood", &msg, "all"));
    let publisher = tokio::spawn(async move {
        let publisher = Client::connect(addr).await;
        let (mut acks, mut writer) = publisher.into_halves();
        let reader = tokio::spawn(async move {
            let mut line = String::new();
            for _ in 0..MESSAGES {
                line.clear();
                acks.read_line(&mut line).await.expect("read ack");
                assert_eq!(line, "{\"success\": true}\r\n");
            }
        });
        let mut batch = String::new();
        for _ in 0..100 {
            batch.push_str(&line);
            batch.push('\n');
        }
        for _ in 0..MESSAGES / 100 {
            writer.write_all(batch.as_bytes()).await.expect("publish");
        }
        reader.await.expect("all acks");
    });

    read_all_in_order(&mut healthy, "flood", &msg, MESSAGES).await;
    timeout(WAIT, publisher)
        .await
        .expect("publisher done")
        .expect("publisher ok");

    // The stalled client finds what the kernel buffered, then the close.
    let (mut stalled_reader, _writer) = stalled.into_halves();
    let mut received = 0usize;
    let mut chunk = vec![0u8; 1 << 16];
    loop {
        match timeout(WAIT, stalled_reader.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => received += n,
            Err(_) => panic!("the stalled subscriber was never disconnected"),
        }
    }
    let total = MESSAGES as usize * (msg.len() + 80);
    assert!(received < total, "the stalled subscriber got everything");

    let peak = server.peak_rss_kib();
    eprintln!("slow consumer: server peak RSS {peak} KiB, stalled client received {received} bytes of ~{total}");
    assert!(
        peak < 200 * 1024,
        "server memory grew to {peak} KiB with a {BUDGET}-byte budget"
    );

    let mut fresh = server.client().await;
    fresh.subscribe("after").await;
}

#[tokio::test]
async fn connections_over_the_limit_are_refused_with_a_reason() {
    let server = Server::start_with(&["--max-connections", "2"]);
    let mut first = server.client().await;
    first.subscribe("a").await;
    let mut second = server.client().await;
    second.subscribe("a").await;

    let mut third = server.client().await;
    third.expect_error("Too many connections").await;
    third.expect_closed().await;

    drop(first);
    let mut again = None;
    for _ in 0..200 {
        let mut client = server.client().await;
        client
            .send(r#"{"command": "subscribe", "topic": "a"}"#)
            .await;
        if client.recv().await == serde_json::json!({"success": true}) {
            again = Some(client);
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(again.is_some(), "a freed slot was never reused");
    second.publish("b", "still served", "all").await;
}

/// Every way a client can go away, many times over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_connections_come_and_go_without_leaking() {
    const CONNECTIONS: usize = 10_000;
    const AT_ONCE: usize = 500;
    let server = BackgroundServer::start(Config::default()).expect("server");
    let addr = server.addr();

    for batch in 0..CONNECTIONS / AT_ONCE {
        let mut tasks = Vec::with_capacity(AT_ONCE);
        for i in 0..AT_ONCE {
            tasks.push(tokio::spawn(async move {
                let mut stream = TcpStream::connect(addr).await.expect("connect");
                let topic = format!("churn{}", i % 7);
                let subscribe = format!("{{\"command\": \"subscribe\", \"topic\": \"{topic}\"}}\n");
                stream
                    .write_all(subscribe.as_bytes())
                    .await
                    .expect("subscribe");
                let mut reply = [0u8; 19];
                stream.read_exact(&mut reply).await.expect("reply");
                match (batch + i) % 5 {
                    // Vanishes mid-line.
                    0 => stream
                        .write_all(b"{\"command\": \"se")
                        .await
                        .expect("write"),
                    // Resets the connection.
                    1 => socket2::SockRef::from(&stream)
                        .set_linger(Some(Duration::ZERO))
                        .expect("linger"),
                    // Half-closes and waits for the server to close.
                    2 => {
                        stream.shutdown().await.expect("half-close");
                        let mut rest = Vec::new();
                        let _ = timeout(WAIT, stream.read_to_end(&mut rest)).await;
                    }
                    // Says quit.
                    3 => stream.write_all(b"quit\n").await.expect("quit"),
                    // Just goes.
                    _ => {}
                }
            }));
        }
        for task in tasks {
            task.await.expect("client task");
        }
    }

    let mut settled = false;
    for _ in 0..500 {
        let subscribers: usize = server
            .topic_subscribers()
            .await
            .iter()
            .map(|(_, n)| n)
            .sum();
        if server.stats().live_sessions() == 0
            && server.stats().open_writers() == 0
            && subscribers == 0
        {
            settled = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        settled,
        "left behind: {} sessions, {} writers, subscribers {:?}",
        server.stats().live_sessions(),
        server.stats().open_writers(),
        server.topic_subscribers().await
    );
    assert_eq!(server.stats().total_sessions(), CONNECTIONS as u64);
    eprintln!(
        "churn: test process (clients and server) peak RSS {} KiB",
        common::proc_status_kib(std::process::id(), "VmHWM:")
    );
}

#[tokio::test]
async fn out_of_file_descriptors_the_listener_waits_and_recovers() {
    // A hard limit of 48 open files leaves the server room for ~30 clients.
    let (mut child, addr) = spawn_listening(Command::new("prlimit").args([
        "--nofile=48:48",
        env!("CARGO_BIN_EXE_mq-actix"),
        "0",
    ]));

    let mut crowd = Vec::new();
    for _ in 0..80 {
        crowd.push(TcpStream::connect(addr).await.expect("connect (backlog)"));
    }
    drop(crowd);

    let mut served = false;
    for _ in 0..100 {
        if let Ok(Ok(mut client)) = timeout(Duration::from_secs(2), TcpStream::connect(addr)).await
        {
            let _ = client
                .write_all(b"{\"command\": \"subscribe\", \"topic\": \"t\"}\n")
                .await;
            let mut reply = String::new();
            let mut reader = BufReader::new(client);
            if let Ok(Ok(n)) = timeout(Duration::from_secs(2), reader.read_line(&mut reply)).await {
                if n > 0 && reply == "{\"success\": true}\r\n" {
                    served = true;
                    break;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        served,
        "the listener did not recover after running out of files"
    );
}

#[tokio::test]
async fn sigterm_flushes_everything_acknowledged_then_exits_zero() {
    const MESSAGES: u64 = 5_000;
    let (mut child, addr) = spawn_listening(Command::new(env!("CARGO_BIN_EXE_mq-actix")).arg("0"));

    let mut subscriber = Client::connect(addr).await;
    subscriber.subscribe("last words").await;
    let mut publisher = Client::connect(addr).await;
    let mut batch = String::new();
    for _ in 0..MESSAGES {
        batch.push_str(&send_line("last words", "m", "all"));
        batch.push('\n');
    }
    publisher.send_raw(batch.as_bytes()).await;
    for _ in 0..MESSAGES {
        publisher.expect_ok().await;
    }

    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());

    for index in 0..MESSAGES {
        let got: Value = subscriber.recv().await;
        assert_eq!(got, delivered("last words", "m", "all", index));
    }
    subscriber.expect_closed().await;
    publisher.expect_closed().await;

    let mut status = None;
    for _ in 0..200 {
        if let Some(s) = child.try_wait().expect("wait") {
            status = Some(s);
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let status = status.unwrap_or_else(|| {
        let _ = child.kill();
        panic!("mq-actix did not exit after SIGTERM")
    });
    assert!(status.success(), "exit status {status}");
}

/// The cut-off is counted, not only logged, so an operator can see it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_off_slow_consumer_is_counted() {
    let config = Config {
        limits: Limits {
            max_pending: 256 * 1024,
            ..Limits::default()
        },
        ..Config::default()
    };
    let server = BackgroundServer::start(config).expect("server");
    let mut stalled = Client::connect(server.addr()).await;
    stalled.subscribe("counted").await;
    let mut publisher = Client::connect(server.addr()).await;
    let line = send_line("counted", &"y".repeat(1000), "all");
    for _ in 0..5_000 {
        if server.stats().slow_consumers() > 0 {
            break;
        }
        publisher.send(&line).await;
        publisher.expect_ok().await;
    }
    assert_eq!(server.stats().slow_consumers(), 1);
    let (mut reader, _writer) = stalled.into_halves();
    let mut chunk = vec![0u8; 1 << 16];
    while let Ok(Ok(n)) = timeout(WAIT, reader.read(&mut chunk)).await {
        if n == 0 {
            return;
        }
    }
    panic!("the slow consumer's connection was not closed");
}
