//! Replies: each error string, and for each command its missing, extra and
//! wrong-typed keys. A rejected command is not carried out.

mod common;

use common::{delivered, Client, Server};
use serde_json::{json, Map, Value};

const MALFORMED: &str = "Malformed json message";
const NOT_JSON: &str = "Could not parse json";
const NOT_UTF8: &str = "Could not decode input as UTF-8";

/// Sends each line and checks that each gets `want`, naming the line that
/// did not.
async fn each_gets(client: &mut Client, lines: &[String], want: &Value) {
    for line in lines {
        client.send(line).await;
        assert_eq!(&client.recv().await, want, "reply to {line}");
    }
}

fn error(reason: &str) -> Value {
    json!({"success": false, "reason": reason})
}

fn ok() -> Value {
    json!({"success": true})
}

/// Values of every JSON type but the one a key wants.
fn not_a_string() -> Vec<Value> {
    vec![
        json!(1),
        json!(-1.5),
        json!(true),
        json!(null),
        json!([]),
        json!(["foo"]),
        json!({}),
        json!({"topic": "foo"}),
    ]
}

fn not_an_integer() -> Vec<&'static str> {
    vec![
        "\"1\"",
        "1.5",
        "2.0",
        "-1.0",
        "1e2",
        "1E2",
        "-1e0",
        "true",
        "false",
        "null",
        "[]",
        "[1]",
        "{}",
        "9223372036854775808",
        "-9223372036854775809",
        "18446744073709551616",
    ]
}

fn not_a_boolean() -> Vec<Value> {
    vec![
        json!(1),
        json!(0),
        json!("true"),
        json!("false"),
        json!(null),
        json!([]),
        json!([true]),
        json!({}),
    ]
}

/// Every way to break `base` by its keys: each required key missing, each
/// key of a wrong type, and unknown keys (including other commands' keys).
fn broken_variants(base: &Value, required: &[&str], extra: &[(&str, Value)]) -> Vec<String> {
    let object = base.as_object().expect("an object");
    let mut lines = Vec::new();
    for key in required {
        let mut without = object.clone();
        without.remove(*key);
        lines.push(Value::Object(without).to_string());
    }
    for key in object.keys() {
        for bad in not_a_string() {
            let mut changed = object.clone();
            changed.insert(key.clone(), bad);
            lines.push(Value::Object(changed).to_string());
        }
    }
    for (key, value) in extra {
        let mut with = object.clone();
        with.insert((*key).to_owned(), value.clone());
        lines.push(Value::Object(with).to_string());
    }
    lines
}

fn with(base: &Value, key: &str, raw: &str) -> String {
    let mut object: Map<String, Value> = base.as_object().expect("an object").clone();
    object.remove(key);
    let head = Value::Object(object).to_string();
    format!("{}, \"{key}\": {raw}}}", &head[..head.len() - 1])
}

#[tokio::test]
async fn each_error_string() {
    let server = Server::start();
    let mut client = server.client().await;
    client.send_raw(b"\xff\xfe\n").await;
    client.expect_error(NOT_UTF8).await;
    client.send("hello").await;
    client.expect_error(NOT_JSON).await;
    client.send("[1, 2, 3]").await;
    client.expect_error(MALFORMED).await;
    client
        .send(r#"{"command": "subscribe", "topic": "t"}"#)
        .await;
    client.expect_ok().await;
    // None of them closed the connection.
    client
        .send(r#"{"command": "unsubscribe", "topic": "t"}"#)
        .await;
    client.expect_ok().await;
}

#[tokio::test]
async fn invalid_utf8_anywhere_in_the_line() {
    let server = Server::start();
    let mut client = server.client().await;
    for line in [
        &b"\xff"[..],
        b"\xc3\x28",
        b"\xc0\xaf",
        b"\xed\xa0\x80",
        b"\xe2\x82",
        b"hello \xf0\x28\x8c\x28",
        b"{\"command\": \"subscribe\", \"topic\": \"\xff\"}",
        b"{\"command\": \"send\", \"topic\": \"t\", \"msg\": \"caf\xe9\", \"delivery\": \"all\"}",
        b"\xef\xbb\xbf\xff",
    ] {
        let mut bytes = line.to_vec();
        bytes.push(b'\n');
        client.send_raw(&bytes).await;
        assert_eq!(
            client.recv().await,
            error(NOT_UTF8),
            "reply to {}",
            String::from_utf8_lossy(line)
        );
    }
    client.expect_nothing().await;
}

#[tokio::test]
async fn text_that_is_not_json() {
    let server = Server::start();
    let mut client = server.client().await;
    let lines: Vec<String> = [
        "hello",
        "{",
        "}",
        "{\"command\": \"subscribe\", \"topic\": \"a\"",
        "{\"command\": \"subscribe\", \"topic\": \"a\"} {}",
        "{\"command\": \"subscribe\", \"topic\": \"a\"} x",
        "{\"command\": \"unsubscribe\", \"topic\": \"a\",}",
        "{'command': 'subscribe', 'topic': 'a'}",
        "{command: \"subscribe\", topic: \"a\"}",
        "\"unterminated",
        "NaN",
        "01",
        "{\"command\": \"subscribe\", \"topic\": \"a\", \"last_seen\": 01}",
        "{\"command\": \"subscribe\", \"topic\": \"a\", \"last_seen\": +1}",
        "{\"command\": \"subscribe\", \"topic\": \"a\", \"last_seen\": .5}",
        "{\"command\": \"subscribe\", \"topic\": \"a\\x\"}",
        "{\"command\": \"subscribe\", \"topic\": \"tab\there\"}",
        "[1, 2",
        "tru",
        "nul",
        "{} {}",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    each_gets(&mut client, &lines, &error(NOT_JSON)).await;
    client.expect_nothing().await;
}

#[tokio::test]
async fn json_that_is_not_an_object_is_malformed() {
    let server = Server::start();
    let mut client = server.client().await;
    let lines: Vec<String> = [
        "[]",
        "[1, 2]",
        "42",
        "-1.5e3",
        "\"subscribe\"",
        "null",
        "true",
        "false",
        "{}",
        "[{\"command\": \"subscribe\", \"topic\": \"a\"}]",
        "\"{\\\"command\\\": \\\"subscribe\\\", \\\"topic\\\": \\\"a\\\"}\"",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    each_gets(&mut client, &lines, &error(MALFORMED)).await;
    // Deep nesting is still just valid JSON that is not a command.
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    client.send(&deep).await;
    client.expect_error(MALFORMED).await;
    client.expect_nothing().await;
}

#[tokio::test]
async fn unknown_commands_are_malformed() {
    let server = Server::start();
    let mut client = server.client().await;
    let mut lines = Vec::new();
    for command in [
        json!("publish"),
        json!("Subscribe"),
        json!("SEND"),
        json!(" subscribe"),
        json!("subscribe "),
        json!(""),
        json!("quit"),
        json!(1),
        json!(null),
        json!(true),
        json!(["subscribe"]),
        json!({"command": "subscribe"}),
    ] {
        lines.push(json!({"command": command, "topic": "a"}).to_string());
    }
    lines.push(json!({"topic": "a"}).to_string());
    lines.push(json!({"Command": "subscribe", "topic": "a"}).to_string());
    lines.push(json!({"command ": "subscribe", "topic": "a"}).to_string());
    each_gets(&mut client, &lines, &error(MALFORMED)).await;
    client.expect_nothing().await;
}

#[tokio::test]
async fn subscribe_keys() {
    let server = Server::start();
    let mut client = server.client().await;
    let mut publisher = server.client().await;
    let base = json!({"command": "subscribe", "topic": "a"});
    let mut lines = broken_variants(
        &base,
        &["command", "topic"],
        &[
            ("extra", json!(1)),
            ("msg", json!("m")),
            ("delivery", json!("all")),
            ("index", json!(0)),
            ("Topic", json!("a")),
            ("last_seen ", json!(0)),
            ("", json!("")),
        ],
    );
    for raw in not_an_integer() {
        lines.push(with(&base, "last_seen", raw));
    }
    for bad in not_a_boolean() {
        lines.push(with(&base, "cache", &bad.to_string()));
    }
    each_gets(&mut client, &lines, &error(MALFORMED)).await;
    // None of them subscribed.
    publisher.publish("a", "live", "all").await;
    client.expect_nothing().await;

    // Every valid form, with the integer edges.
    let mut valid = vec![
        json!({"command": "subscribe", "topic": "v"}).to_string(),
        json!({"topic": "v", "command": "subscribe"}).to_string(),
        json!({"command": "subscribe", "topic": "v", "cache": true}).to_string(),
        json!({"command": "subscribe", "topic": "v", "cache": false}).to_string(),
        json!({"command": "subscribe", "topic": "v", "last_seen": 7, "cache": false}).to_string(),
        r#"{ "command" : "subscribe" , "topic" : "v" }"#.to_owned(),
        r#"{"command":"subscribe","topic":"v"}"#.to_owned(),
        r#"{"comm\u0061nd": "subscribe", "topic": "v"}"#.to_owned(),
    ];
    for raw in [
        "0",
        "-1",
        "-0",
        "5",
        "9223372036854775807",
        "-9223372036854775808",
    ] {
        valid.push(with(
            &json!({"command": "subscribe", "topic": "v"}),
            "last_seen",
            raw,
        ));
    }
    each_gets(&mut client, &valid, &ok()).await;
    client.expect_nothing().await;
}

#[tokio::test]
async fn unsubscribe_keys() {
    let server = Server::start();
    let mut client = server.client().await;
    let mut publisher = server.client().await;
    client.subscribe("a").await;
    let base = json!({"command": "unsubscribe", "topic": "a"});
    let lines = broken_variants(
        &base,
        &["command", "topic"],
        &[
            ("extra", json!(1)),
            ("last_seen", json!(1)),
            ("cache", json!(true)),
            ("cache", json!(false)),
            ("msg", json!("m")),
            ("delivery", json!("all")),
        ],
    );
    each_gets(&mut client, &lines, &error(MALFORMED)).await;
    // None of them unsubscribed.
    publisher.publish("a", "still here", "all").await;
    client.expect(delivered("a", "still here", "all", 0)).await;

    client
        .send(r#"{"topic": "a", "command": "unsubscribe"}"#)
        .await;
    client.expect_ok().await;
    publisher.publish("a", "gone", "all").await;
    client.expect_nothing().await;
}

#[tokio::test]
async fn send_keys() {
    let server = Server::start();
    let mut sub = server.client().await;
    let mut client = server.client().await;
    sub.subscribe("a").await;
    let base = json!({"command": "send", "topic": "a", "msg": "m", "delivery": "all"});
    let mut lines = broken_variants(
        &base,
        &["command", "topic", "msg", "delivery"],
        &[
            ("extra", json!(1)),
            ("last_seen", json!(1)),
            ("index", json!(0)),
            ("Cache", json!(true)),
        ],
    );
    for delivery in ["ALL", "One", "", "any", "some", " all", "all "] {
        lines.push(with(&base, "delivery", &json!(delivery).to_string()));
    }
    for bad in not_a_boolean() {
        lines.push(with(&base, "cache", &bad.to_string()));
    }
    each_gets(&mut client, &lines, &error(MALFORMED)).await;
    // None was carried out: nothing delivered, and the counter did not move.
    sub.expect_nothing().await;
    for line in [
        base.to_string(),
        json!({"delivery": "all", "msg": "m", "topic": "a", "command": "send"}).to_string(),
        json!({"command": "send", "topic": "a", "msg": "m", "delivery": "all", "cache": true})
            .to_string(),
        json!({"command": "send", "topic": "a", "msg": "m", "delivery": "all", "cache": false})
            .to_string(),
    ] {
        client.send(&line).await;
        assert_eq!(client.recv().await, ok(), "reply to {line}");
    }
    sub.expect(delivered("a", "m", "all", 0)).await;
    sub.expect(delivered("a", "m", "all", 1)).await;
    sub.expect(json!({"command": "send", "topic": "a", "msg": "m", "delivery": "all", "cache": true, "index": 2}))
        .await;
    sub.expect(json!({"command": "send", "topic": "a", "msg": "m", "delivery": "all", "cache": false, "index": 3}))
        .await;
    sub.expect_nothing().await;
}

#[tokio::test]
async fn a_delivered_line_sent_back_is_not_a_command() {
    let server = Server::start();
    let mut client = server.client().await;
    client
        .send(r#"{"command": "send", "topic": "a", "msg": "m", "delivery": "all", "index": 0}"#)
        .await;
    client.expect_error(MALFORMED).await;
}

#[tokio::test]
async fn a_key_given_twice_counts_with_its_last_value() {
    let server = Server::start();
    let mut client = server.client().await;
    let mut publisher = server.client().await;
    // The command and the topic both change their minds.
    client
        .send(r#"{"command": "send", "topic": "x", "command": "subscribe", "topic": "y"}"#)
        .await;
    client.expect_ok().await;
    publisher.publish("x", "to x", "all").await;
    publisher.publish("y", "to y", "all").await;
    client.expect(delivered("y", "to y", "all", 0)).await;
    client.expect_nothing().await;
    // An invalid value last makes it malformed.
    for line in [
        r#"{"command": "unsubscribe", "topic": "q", "topic": 5}"#,
        r#"{"command": "subscribe", "topic": "q", "cache": false, "cache": 1}"#,
        r#"{"command": "subscribe", "topic": "q", "last_seen": 2, "last_seen": 1.5}"#,
        r#"{"command": "unsubscribe", "topic": "q", "command": "publish"}"#,
    ] {
        client.send(line).await;
        assert_eq!(client.recv().await, error(MALFORMED), "reply to {line}");
    }
}

#[tokio::test]
async fn a_wrong_typed_value_overridden_by_a_valid_one_counts_as_valid() {
    let server = Server::start();
    let mut client = server.client().await;
    for line in [
        r#"{"command": "unsubscribe", "topic": 5, "topic": "q"}"#,
        r#"{"command": "subscribe", "topic": "q", "cache": 1, "cache": false}"#,
        r#"{"command": "subscribe", "topic": "q", "last_seen": 1.5, "last_seen": 2}"#,
        r#"{"command": null, "command": "unsubscribe", "topic": "q"}"#,
    ] {
        client.send(line).await;
        assert_eq!(client.recv().await, ok(), "reply to {line}");
    }
}
