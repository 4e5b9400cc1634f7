//! Framing: line ends, white space, empty lines, `quit`, the line limit,
//! trailing bytes, and replies in command order.

mod common;

use common::{delivered, send_line, Server};
use serde_json::json;

/// An `unsubscribe` (always answered `{"success": true}`) exactly `len`
/// bytes long, padded through its topic name.
fn unsubscribe_of_len(len: usize) -> String {
    let line = format!(
        r#"{{"command": "unsubscribe", "topic": "{}"}}"#,
        "a".repeat(len - 39)
    );
    assert_eq!(line.len(), len, "{line}");
    line
}

#[tokio::test]
async fn lf_and_crlf_line_ends_are_both_accepted() {
    let server = Server::start();
    let mut client = server.client().await;
    client
        .send_raw(b"{\"command\": \"subscribe\", \"topic\": \"a\"}\n")
        .await;
    client.expect_ok().await;
    client
        .send_raw(b"{\"command\": \"subscribe\", \"topic\": \"b\"}\r\n")
        .await;
    client.expect_ok().await;
    client.send_raw(b"hello\r\n").await;
    client.expect_error("Could not parse json").await;
    client.send_raw(b"hello\n").await;
    client.expect_error("Could not parse json").await;
    client.expect_nothing().await;
}

#[tokio::test]
async fn every_line_the_server_sends_ends_in_crlf() {
    // `recv_line` fails unless the line ends in exactly "\r\n"; none of
    // them has a stray "\r" inside either.
    let server = Server::start();
    let mut client = server.client().await;
    client
        .send(r#"{"command": "subscribe", "topic": "t"}"#)
        .await;
    client.send(&send_line("t", "m", "all")).await;
    client.send_raw(b"\xff\n").await;
    client.send("nope").await;
    client.send("[]").await;
    for _ in 0..6 {
        let line = client.recv_line().await;
        assert!(!line.contains('\r'), "{line:?}");
    }
    client.expect_nothing().await;
}

#[tokio::test]
async fn white_space_around_a_line_is_ignored() {
    let server = Server::start();
    let mut client = server.client().await;
    client
        .send_raw(b"   \t{\"command\": \"subscribe\", \"topic\": \"a\"}\t  \r\n")
        .await;
    client.expect_ok().await;
    client
        .send_raw(b"\t{\"command\": \"unsubscribe\", \"topic\": \"a\"} \n")
        .await;
    client.expect_ok().await;
    client.send_raw(b"  hello  \r\n").await;
    client.expect_error("Could not parse json").await;
    client.send_raw(b" \t quit \t \r\n").await;
    client.expect_closed().await;
}

#[tokio::test]
async fn empty_lines_get_no_reply() {
    let server = Server::start();
    let mut client = server.client().await;
    client.send_raw(b"\n\r\n   \n\t\t\r\n \t \r\n").await;
    client.expect_nothing().await;
    client
        .send_raw(b"\n\n{\"command\": \"subscribe\", \"topic\": \"a\"}\n\n\r\n")
        .await;
    client.expect_ok().await;
    client.expect_nothing().await;
}

#[tokio::test]
async fn quit_closes_the_connection_without_a_reply() {
    let server = Server::start();
    let mut client = server.client().await;
    client.send("quit").await;
    client.expect_closed().await;

    let mut client = server.client().await;
    client.send_raw(b"quit\r\n").await;
    client.expect_closed().await;
}

#[tokio::test]
async fn quit_flushes_everything_owed_then_closes() {
    let server = Server::start_with(&["1000"]);
    let mut client = server.client().await;
    let mut pipeline = String::new();
    for i in 0..50 {
        pipeline += &send_line("t", &format!("m{i}"), "all");
        pipeline += "\n";
    }
    pipeline += "{\"command\": \"subscribe\", \"topic\": \"t\"}\n";
    pipeline += "hello\n";
    pipeline += "quit\n";
    // After `quit` nothing more is answered.
    pipeline += "{\"command\": \"subscribe\", \"topic\": \"u\"}\n";
    client.send_raw(pipeline.as_bytes()).await;
    for _ in 0..50 {
        client.expect_ok().await;
    }
    client.expect_ok().await;
    for i in 0..50 {
        client
            .expect(delivered("t", &format!("m{i}"), "all", i))
            .await;
    }
    client.expect_error("Could not parse json").await;
    client.expect_closed().await;
}

#[tokio::test]
async fn quit_must_be_the_whole_line() {
    let server = Server::start();
    let mut client = server.client().await;
    client.send("quit now").await;
    client.expect_error("Could not parse json").await;
    client.send("QUIT").await;
    client.expect_error("Could not parse json").await;
    client.send("\"quit\"").await;
    client.expect_error("Malformed json message").await;
    client.send("quitquit").await;
    client.expect_error("Could not parse json").await;
    client.expect_nothing().await;
}

#[tokio::test]
async fn a_line_over_the_limit_is_answered_and_the_connection_goes_on() {
    let server = Server::start_with(&["--max-line", "64"]);
    let mut client = server.client().await;
    // At the limit (line ending not counted), with either line end.
    client.send(&unsubscribe_of_len(64)).await;
    client.expect_ok().await;
    client
        .send_raw(format!("{}\r\n", unsubscribe_of_len(64)).as_bytes())
        .await;
    client.expect_ok().await;
    // One byte over, then a valid line in the same write.
    client
        .send_raw(format!("{}\n{}\n", unsubscribe_of_len(65), unsubscribe_of_len(40)).as_bytes())
        .await;
    client.expect_error("Line too long").await;
    client.expect_ok().await;
    // Far over: still exactly one reply, then the next line.
    let huge = "x".repeat(300_000);
    client
        .send_raw(format!("{huge}\n{huge}\r\nhello\n").as_bytes())
        .await;
    client.expect_error("Line too long").await;
    client.expect_error("Line too long").await;
    client.expect_error("Could not parse json").await;
    client.expect_nothing().await;
}

#[tokio::test]
async fn an_over_long_line_in_many_writes_gets_one_reply() {
    let server = Server::start_with(&["--max-line", "64"]);
    let mut client = server.client().await;
    for _ in 0..20 {
        client.send_raw(&[b'y'; 50]).await;
    }
    client.send_raw(b"\n").await;
    client.expect_error("Line too long").await;
    client.expect_nothing().await;
    client.send(&unsubscribe_of_len(50)).await;
    client.expect_ok().await;
}

#[tokio::test]
async fn the_default_line_limit_is_one_mebibyte() {
    let server = Server::start();
    let mut sub = server.client().await;
    let mut client = server.client().await;
    sub.subscribe("big").await;
    // A send of exactly 1 MiB is accepted and delivered whole.
    let base = send_line("big", "", "all").len();
    let msg = "m".repeat(1024 * 1024 - base);
    let line = send_line("big", &msg, "all");
    assert_eq!(line.len(), 1024 * 1024);
    client.send_raw(format!("{line}\r\n").as_bytes()).await;
    client.expect_ok().await;
    sub.expect(delivered("big", &msg, "all", 0)).await;
    // One byte more is too long, and is not carried out.
    let msg = "m".repeat(1024 * 1024 - base + 1);
    client.send(&send_line("big", &msg, "all")).await;
    client.expect_error("Line too long").await;
    sub.expect_nothing().await;
}

#[tokio::test]
async fn bytes_after_the_last_newline_are_ignored() {
    let server = Server::start();
    let mut sub = server.client().await;
    sub.subscribe("t").await;
    let mut client = server.client().await;
    // A complete command, then a whole `send` without its `\n`, then EOF.
    client
        .send_raw(
            format!(
                "{{\"command\": \"subscribe\", \"topic\": \"u\"}}\n{}",
                send_line("t", "never", "all")
            )
            .as_bytes(),
        )
        .await;
    client.expect_ok().await;
    client.close_write().await;
    client.expect_closed().await;
    sub.expect_nothing().await;
    // The topic's counter did not move either.
    let mut publisher = server.client().await;
    publisher.publish("t", "first", "all").await;
    sub.expect(delivered("t", "first", "all", 0)).await;
}

#[tokio::test]
async fn replies_come_in_command_order() {
    let server = Server::start();
    let mut client = server.client().await;
    let lines = [
        (
            r#"{"command": "subscribe", "topic": "a"}"#,
            json!({"success": true}),
        ),
        (
            "oops",
            json!({"success": false, "reason": "Could not parse json"}),
        ),
        (
            r#"{"command": "unsubscribe", "topic": "b"}"#,
            json!({"success": true}),
        ),
        (
            "[1]",
            json!({"success": false, "reason": "Malformed json message"}),
        ),
        (
            r#"{"command": "send", "topic": "b", "msg": "x", "delivery": "all"}"#,
            json!({"success": true}),
        ),
        (
            r#"{"command": "subscribe", "topic": "c", "cache": false}"#,
            json!({"success": true}),
        ),
        (
            "{\"topic\": \"\u{e9}\"}",
            json!({"success": false, "reason": "Malformed json message"}),
        ),
        (
            r#"{"command": "unsubscribe", "topic": "a"}"#,
            json!({"success": true}),
        ),
    ];
    let mut pipeline = Vec::new();
    let mut want = Vec::new();
    for round in 0..40 {
        for (line, reply) in &lines {
            pipeline.extend_from_slice(line.as_bytes());
            pipeline.extend_from_slice(if round % 2 == 0 { b"\n" } else { b"\r\n" });
            want.push(reply.clone());
        }
        pipeline.extend_from_slice(b"\xc3\x28\n");
        want.push(json!({"success": false, "reason": "Could not decode input as UTF-8"}));
    }
    client.send_raw(&pipeline).await;
    for (i, reply) in want.into_iter().enumerate() {
        assert_eq!(client.recv().await, reply, "reply {i}");
    }
    client.expect_nothing().await;
}
