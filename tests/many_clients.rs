//! Many clients at once: a thousand exchanging messages, and ten thousand
//! connections open together, each still answering.

mod common;

use std::future::Future;
use std::net::SocketAddr;
use std::time::Instant;

use common::{delivered, send_line, Client, Server};
use serde_json::json;
use tokio::task::JoinSet;

/// Runs `work` for each of `items`, at most `concurrency` at a time, and
/// returns the results in the order of `items`.
async fn bounded<T, R, F>(items: Vec<T>, concurrency: usize, work: impl Fn(T) -> F) -> Vec<R>
where
    T: Send + 'static,
    R: Send + 'static,
    F: Future<Output = R> + Send + 'static,
{
    let mut results: Vec<Option<R>> = (0..items.len()).map(|_| None).collect();
    let mut running = JoinSet::new();
    for (i, item) in items.into_iter().enumerate() {
        if running.len() >= concurrency {
            let (done, result) = running
                .join_next()
                .await
                .expect("a task")
                .expect("no panic");
            results[done] = Some(result);
        }
        let task = work(item);
        running.spawn(async move { (i, task.await) });
    }
    while let Some(joined) = running.join_next().await {
        let (done, result) = joined.expect("no panic");
        results[done] = Some(result);
    }
    results
        .into_iter()
        .map(|r| r.expect("every task ran"))
        .collect()
}

async fn connect_all(addr: SocketAddr, n: usize) -> Vec<Client> {
    bounded(vec![addr; n], 200, Client::connect).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_clients_exchange_a_hundred_messages_each() {
    const CLIENTS: usize = 1000;
    const MESSAGES: u64 = 100;
    let started = Instant::now();
    let server = Server::start();
    let clients = connect_all(server.addr(), CLIENTS).await;
    let clients: Vec<(usize, Client)> = clients.into_iter().enumerate().collect();
    let clients = bounded(clients, 200, |(i, mut client)| async move {
        client.subscribe(&format!("inbox {i}")).await;
        (i, client)
    })
    .await;

    // Each writes its hundred messages to the next one's topic in one go,
    // then reads its replies and the hundred messages from the one before.
    let clients = bounded(clients, CLIENTS, |(i, mut client)| async move {
        let to = format!("inbox {}", (i + 1) % CLIENTS);
        let mut pipeline = String::new();
        for k in 0..MESSAGES {
            pipeline += &send_line(&to, &format!("{i} to {to} #{k}"), "all");
            pipeline += "\n";
        }
        client.send_raw(pipeline.as_bytes()).await;
        let from = (i + CLIENTS - 1) % CLIENTS;
        let inbox = format!("inbox {i}");
        let (mut replies, mut next) = (0, 0);
        while replies < MESSAGES || next < MESSAGES {
            let line = client.recv().await;
            if line == json!({"success": true}) {
                replies += 1;
            } else {
                let msg = format!("{from} to {inbox} #{next}");
                assert_eq!(line, delivered(&inbox, &msg, "all", next));
                next += 1;
            }
        }
        (i, client)
    })
    .await;

    // Nothing else was owed to anyone: the next line each gets is the
    // reply to one more command.
    bounded(clients, 200, |(i, mut client)| async move {
        client
            .send(&json!({"command": "unsubscribe", "topic": format!("inbox {i}")}).to_string())
            .await;
        client.expect_ok().await;
    })
    .await;
    eprintln!("1,000 clients x 100 messages: {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_connections_open_at_once_all_answer() {
    const CLIENTS: usize = 10_000;
    // This process holds every connection, so it needs the files for them.
    let limit = rlimit::increase_nofile_limit(u64::MAX).expect("raise RLIMIT_NOFILE");
    assert!(
        limit >= CLIENTS as u64 + 1000,
        "RLIMIT_NOFILE is only {limit}"
    );
    let started = Instant::now();
    let server = Server::start();
    let clients = connect_all(server.addr(), CLIENTS).await;
    let clients = bounded(clients, 500, |mut client| async move {
        client.subscribe("everyone").await;
        client
    })
    .await;

    // One send reaches every one of them.
    let mut publisher = server.client().await;
    publisher.publish("everyone", "hello, all", "all").await;
    bounded(clients, 1000, |mut client| async move {
        client
            .expect(delivered("everyone", "hello, all", "all", 0))
            .await;
    })
    .await;
    eprintln!("10,000 connections: {:?}", started.elapsed());
}
