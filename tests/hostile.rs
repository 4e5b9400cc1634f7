//! Input crafted to break parsers: each line gets its protocol error (or is
//! accepted where the protocol says so) and nothing else happens: the
//! connection stays usable and other clients never notice.

mod common;

use common::{delivered, send_line, Client, Server};
use serde_json::json;

/// After the hostile line, the same connection still works and so does a
/// bystander's.
async fn still_fine(server: &Server, client: &mut Client) {
    client.publish("bystander", "after", "all").await;
    let mut other = server.client().await;
    other.subscribe("elsewhere").await;
}

#[tokio::test]
async fn deeply_nested_json_is_malformed() {
    let server = Server::start();
    let mut client = server.client().await;
    let depth = 100_000;
    let arrays = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
    client.send(&arrays).await;
    client.expect_error("Malformed json message").await;

    let objects = format!("{}1{}", r#"{"a":"#.repeat(depth), "}".repeat(depth));
    client.send(&objects).await;
    client.expect_error("Malformed json message").await;

    let inside_a_command = format!(
        r#"{{"command": "subscribe", "topic": "t", "last_seen": {}{}}}"#,
        "[".repeat(depth),
        "]".repeat(depth)
    );
    client.send(&inside_a_command).await;
    client.expect_error("Malformed json message").await;

    client.send(&"[".repeat(depth)).await;
    client.expect_error("Could not parse json").await;
    still_fine(&server, &mut client).await;
}

#[tokio::test]
async fn huge_numbers_are_not_integers() {
    let server = Server::start();
    let mut client = server.client().await;
    for number in [
        "1e400",
        "-1e400",
        "123456789012345678901234567890",
        "9223372036854775808",
        "-9223372036854775809",
        &"9".repeat(10_000),
    ] {
        client
            .send(&format!(
                r#"{{"command": "subscribe", "topic": "n", "last_seen": {number}}}"#
            ))
            .await;
        client.expect_error("Malformed json message").await;
    }
    client
        .send(r#"{"command": "subscribe", "topic": "n", "last_seen": -9223372036854775808}"#)
        .await;
    client.expect_ok().await;
    still_fine(&server, &mut client).await;
}

#[tokio::test]
async fn duplicate_keys_keep_the_last_value() {
    let server = Server::start();
    let mut sub = server.client().await;
    sub.send(r#"{"command": "subscribe", "topic": "first", "topic": "second"}"#)
        .await;
    sub.expect_ok().await;
    let mut publisher = server.client().await;
    publisher
        .send(r#"{"command": "send", "topic": "second", "msg": "a", "msg": "b", "delivery": "one", "delivery": "all"}"#)
        .await;
    publisher.expect_ok().await;
    sub.expect(delivered("second", "b", "all", 0)).await;
    publisher.publish("first", "not subscribed", "all").await;
    sub.expect_nothing().await;

    // The last value decides validity too.
    publisher
        .send(r#"{"command": "send", "topic": "second", "msg": "m", "delivery": "all", "delivery": "some"}"#)
        .await;
    publisher.expect_error("Malformed json message").await;
}

#[tokio::test]
async fn nul_bytes() {
    let server = Server::start();
    let mut client = server.client().await;
    client.send_raw(b"\0\n").await;
    client.expect_error("Could not parse json").await;
    client
        .send_raw(b"{\"command\": \"subscribe\", \"topic\": \"a\0b\"}\n")
        .await;
    client.expect_error("Could not parse json").await;

    // Escaped, a NUL is an ordinary character of a topic or a message.
    let mut sub = server.client().await;
    sub.subscribe("a\u{0}b").await;
    client.publish("a\u{0}b", "x\u{0}y", "all").await;
    sub.expect(delivered("a\u{0}b", "x\u{0}y", "all", 0)).await;
    still_fine(&server, &mut client).await;
}

#[tokio::test]
async fn invalid_utf8_in_all_its_forms() {
    let server = Server::start();
    let mut client = server.client().await;
    for bytes in [
        &b"\xc0\xaf"[..],                                // overlong '/'
        b"\xe0\x80\xaf",                                 // overlong, 3 bytes
        b"\xed\xa0\x80",                                 // a surrogate
        b"\xf4\x90\x80\x80",                             // beyond U+10FFFF
        b"{\"command\": \"send\", \"topic\": \"\xff\"}", // inside a string
        b"\xe2\x82",                                     // truncated
    ] {
        let mut line = bytes.to_vec();
        line.push(b'\n');
        client.send_raw(&line).await;
        client.expect_error("Could not decode input as UTF-8").await;
    }
    still_fine(&server, &mut client).await;
}

#[tokio::test]
async fn a_topic_name_as_long_as_a_line_allows() {
    let server = Server::start();
    let limit = 1024 * 1024;
    let mut sub = server.client().await;
    let overhead = json!({"command": "send", "topic": "", "msg": "m", "delivery": "all"})
        .to_string()
        .len();
    let topic = "t".repeat(limit - overhead);
    sub.subscribe(&topic).await;
    let mut publisher = server.client().await;
    let line = send_line(&topic, "m", "all");
    assert_eq!(line.len(), limit);
    publisher.send(&line).await;
    publisher.expect_ok().await;
    sub.expect(delivered(&topic, "m", "all", 0)).await;

    let too_long = "t".repeat(limit);
    publisher.send(&send_line(&too_long, "m", "all")).await;
    publisher.expect_error("Line too long").await;
    still_fine(&server, &mut publisher).await;
}
