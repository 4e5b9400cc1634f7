//! `--max-connections-per-ip`: one address cannot take every slot, over
//! real TCP against the real binary (and the counter, in-process).

mod common;

use std::net::IpAddr;

use common::{Client, Server};
use mq_actix::config::{Config, Limits};
use mq_actix::testing::BackgroundServer;

const HOME: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 1));
const NEIGHBOUR: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 2));

#[tokio::test]
async fn one_address_is_refused_past_its_limit_while_another_gets_in() {
    let server = Server::start_with(&["--max-connections-per-ip", "2"]);
    let mut first = Client::connect_from(HOME, server.addr()).await;
    first.subscribe("t").await;
    let mut second = Client::connect_from(HOME, server.addr()).await;
    second.subscribe("t").await;

    let mut third = Client::connect_from(HOME, server.addr()).await;
    third.expect_error("Too many connections").await;
    third.expect_closed().await;

    let mut neighbour = Client::connect_from(NEIGHBOUR, server.addr()).await;
    neighbour.publish("t", "from next door", "all").await;
    first
        .expect(common::delivered("t", "from next door", "all", 0))
        .await;

    // A slot that is given back can be taken again.
    first.send("quit").await;
    first.expect_closed().await;
    let mut again = None;
    for _ in 0..200 {
        let mut client = Client::connect_from(HOME, server.addr()).await;
        client
            .send(r#"{"command": "subscribe", "topic": "t"}"#)
            .await;
        if client.recv().await == serde_json::json!({"success": true}) {
            again = Some(client);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(again.is_some(), "a freed slot was never given back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_counted() {
    let config = Config {
        limits: Limits {
            max_connections_per_ip: 1,
            ..Limits::default()
        },
        ..Config::default()
    };
    let server = BackgroundServer::start(config).expect("server");
    let mut kept = Client::connect(server.addr()).await;
    kept.subscribe("t").await;
    for refused in 1..=3 {
        let mut client = Client::connect(server.addr()).await;
        client.expect_error("Too many connections").await;
        client.expect_closed().await;
        assert_eq!(server.stats().connections_refused_per_ip(), refused);
    }
    kept.publish("u", "still served", "all").await;
}
