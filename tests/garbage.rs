//! Garbage: random bytes and random strings (seeded, so a failure repeats),
//! lines over the limit, a line dribbled byte by byte, and clients vanishing
//! mid-line. Every non-empty line gets exactly one error reply, and the
//! server goes on serving everyone, the sender of the garbage included.

mod common;

use common::{delivered, send_line, Client, Rng, Server};
use serde::de::IgnoredAny;
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

const NOT_UTF8: &str = "Could not decode input as UTF-8";
const NOT_JSON: &str = "Could not parse json";
const MALFORMED: &str = "Malformed json message";
const TOO_LONG: &str = "Line too long";

/// White space the shared contract and a JSON parser agree on: other
/// Unicode white space at a line's ends is left out of random input, so
/// that the expected reply does not depend on a choice the contract leaves open.
fn is_plain_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r')
}

/// Makes a random line unambiguous: no `quit`, no Unicode white space
/// besides space, tab and `\r`, nothing that might be a valid command.
fn sanitize(mut line: Vec<u8>) -> Vec<u8> {
    if let Ok(text) = std::str::from_utf8(&line) {
        let tricky = text
            .chars()
            .any(|c| c.is_whitespace() && !is_plain_space(c));
        let trimmed = text.trim_matches(is_plain_space);
        let object = serde_json::from_str::<Value>(trimmed).is_ok_and(|v| v.is_object());
        if tricky || trimmed == "quit" || object {
            line.insert(0, 0xff);
        }
    }
    line
}

/// The reply one line (without its `\n`) gets, if any.
fn reply_to(line: &[u8], max_line: usize) -> Option<Value> {
    let content = line.strip_suffix(b"\r").unwrap_or(line);
    let reason = if content.len() > max_line {
        TOO_LONG
    } else {
        match std::str::from_utf8(line) {
            Err(_) => NOT_UTF8,
            Ok(text) => {
                let text = text.trim_matches(is_plain_space);
                if text.is_empty() {
                    return None;
                }
                // Random input nests far less than serde_json's default
                // depth limit, so a failure here means "not JSON".
                if serde_json::from_str::<IgnoredAny>(text).is_ok() {
                    MALFORMED
                } else {
                    NOT_JSON
                }
            }
        }
    };
    Some(json!({"success": false, "reason": reason}))
}

/// Random bytes, `\n` included, as sanitized lines.
fn random_byte_lines(rng: &mut Rng, len: usize) -> Vec<Vec<u8>> {
    rng.bytes(len)
        .split(|&b| b == b'\n')
        .map(|line| sanitize(line.to_vec()))
        .collect()
}

/// Random text that looks a little like the protocol: JSON punctuation,
/// keywords, numbers, escapes and Unicode; at least `len` bytes, no `\n`.
fn random_text(rng: &mut Rng, len: usize) -> Vec<u8> {
    const TOKENS: &[&str] = &[
        "{",
        "}",
        "[",
        "]",
        ":",
        ",",
        "\"",
        "\\",
        "\\\"",
        "\\u00e9",
        "\\n",
        "\"command\"",
        "\"subscribe\"",
        "\"unsubscribe\"",
        "\"send\"",
        "\"topic\"",
        "\"msg\"",
        "\"delivery\"",
        "\"all\"",
        "\"one\"",
        "\"last_seen\"",
        "\"cache\"",
        "true",
        "false",
        "null",
        "0",
        "7",
        "-",
        ".",
        "e",
        "1e400",
        " ",
        "  ",
        "\t",
        "\r",
        "a",
        "quit",
        "hello",
        "é",
        "日本",
        "😀",
        "\u{0}",
        "\u{7f}",
        "\u{fffd}",
    ];
    let mut text = String::new();
    while text.len() < len {
        text += *rng.pick(TOKENS);
    }
    sanitize(text.into_bytes())
}

/// Lines of [`random_text`] up to `max` long, about `total` bytes in all.
fn random_text_lines(rng: &mut Rng, total: usize, max: usize) -> Vec<Vec<u8>> {
    let mut lines = Vec::new();
    let mut used = 0;
    while used < total {
        let len = 1 + rng.below(max.min(total - used));
        let line = random_text(rng, len);
        used += line.len() + 1;
        lines.push(line);
    }
    lines
}

/// Sends `lines` in one write and checks each reply; then checks that the
/// same client and another one are still served.
async fn garbage_then_still_served(
    server: &Server,
    client: &mut Client,
    lines: &[Vec<u8>],
    max_line: usize,
    what: &str,
) {
    let mut bytes = Vec::new();
    for line in lines {
        bytes.extend_from_slice(line);
        bytes.push(b'\n');
    }
    client.send_raw(&bytes).await;
    for (i, line) in lines.iter().enumerate() {
        if let Some(want) = reply_to(line, max_line) {
            let got = client.recv().await;
            assert_eq!(
                got,
                want,
                "{what}, line {i}: {:?}",
                String::from_utf8_lossy(&line[..line.len().min(80)])
            );
        }
    }
    still_served(server, client).await;
}

/// The client gets a correct reply to a valid command (so no extra reply
/// was owed before it), and a fresh pair of clients can talk.
async fn still_served(server: &Server, client: &mut Client) {
    client
        .send(r#"{"command": "unsubscribe", "topic": "garbage"}"#)
        .await;
    client.expect_ok().await;
    let mut sub = server.client().await;
    let mut publisher = server.client().await;
    // Short enough for a server with `--max-line 64`.
    sub.send(r#"{"command": "subscribe", "topic": "c", "cache": false}"#)
        .await;
    sub.expect_ok().await;
    publisher.send(&send_line("c", "ok", "all")).await;
    publisher.expect_ok().await;
    let got = sub.recv().await;
    assert_eq!(got["msg"], "ok");
}

#[tokio::test]
async fn random_bytes_get_one_error_reply_per_line() {
    let server = Server::start();
    let mut client = server.client().await;
    let mut rng = Rng::new(0x5eed_0001);
    for round in 0..6 {
        let len = if round == 0 {
            64 * 1024
        } else {
            1 + rng.below(64 * 1024)
        };
        let lines = random_byte_lines(&mut rng, len);
        let what = format!("random bytes, round {round}");
        garbage_then_still_served(&server, &mut client, &lines, 1 << 20, &what).await;
    }
    // 64 KiB without a single `\n` is one line.
    let mut line: Vec<u8> = rng
        .bytes(64 * 1024)
        .into_iter()
        .filter(|&b| b != b'\n')
        .collect();
    line[0] = 0xff;
    garbage_then_still_served(&server, &mut client, &[line], 1 << 20, "one long line").await;
}

#[tokio::test]
async fn random_text_gets_one_error_reply_per_line() {
    let server = Server::start();
    let mut client = server.client().await;
    let mut rng = Rng::new(0x5eed_0002);
    for round in 0..6 {
        let max = [16, 200, 4096, 64 * 1024][round % 4];
        let lines = random_text_lines(&mut rng, 64 * 1024, max);
        let what = format!("random text, round {round}");
        garbage_then_still_served(&server, &mut client, &lines, 1 << 20, &what).await;
    }
}

#[tokio::test]
async fn random_lines_around_the_line_limit() {
    let server = Server::start_with(&["--max-line", "64"]);
    let mut client = server.client().await;
    let mut rng = Rng::new(0x5eed_0003);
    let valid = br#"{"command": "unsubscribe", "topic": "a"}"#.to_vec();
    for round in 0..4 {
        let mut lines = Vec::new();
        for _ in 0..200 {
            // Well under or well over 64, so a `\r` at the end never decides.
            let len = match rng.below(4) {
                0 => rng.below(60),
                1 => 70 + rng.below(200),
                2 => 70 + rng.below(64 * 1024),
                _ => 0,
            };
            let line = if len == 0 {
                valid.clone()
            } else if rng.below(2) == 0 {
                let bytes: Vec<u8> = rng.bytes(len).into_iter().filter(|&b| b != b'\n').collect();
                sanitize(bytes)
            } else {
                random_text(&mut rng, len)
            };
            lines.push(line);
        }
        let mut bytes = Vec::new();
        for line in &lines {
            bytes.extend_from_slice(line);
            bytes.push(b'\n');
        }
        client.send_raw(&bytes).await;
        for (i, line) in lines.iter().enumerate() {
            let want = if *line == valid {
                Some(json!({"success": true}))
            } else {
                reply_to(line, 64)
            };
            if let Some(want) = want {
                assert_eq!(
                    client.recv().await,
                    want,
                    "round {round}, line {i} ({} bytes)",
                    line.len()
                );
            }
        }
        still_served(&server, &mut client).await;
    }
}

#[tokio::test]
async fn a_line_dribbled_byte_by_byte_is_one_line() {
    let server = Server::start_with(&["--max-line", "64"]);
    let mut sub = server.client().await;
    let mut publisher = server.client().await;
    async fn dribble(client: &mut Client, bytes: &[u8]) {
        for byte in bytes {
            client.send_raw(&[*byte]).await;
            tokio::task::yield_now().await;
        }
    }
    dribble(
        &mut sub,
        b"{\"command\": \"subscribe\", \"topic\": \"t\"}\r\n",
    )
    .await;
    sub.expect_ok().await;
    dribble(
        &mut publisher,
        format!("{}\n", send_line("t", "é 😀", "all")).as_bytes(),
    )
    .await;
    publisher.expect_ok().await;
    sub.expect(delivered("t", "é 😀", "all", 0)).await;
    // A multi-byte character split across writes is still UTF-8.
    dribble(&mut publisher, "\"日本\"\n".as_bytes()).await;
    publisher.expect_error(MALFORMED).await;
    dribble(&mut publisher, b"not json\n").await;
    publisher.expect_error(NOT_JSON).await;
    dribble(&mut publisher, &[b'x'; 200]).await;
    dribble(&mut publisher, b"\n").await;
    publisher.expect_error(TOO_LONG).await;
    publisher.expect_nothing().await;
    sub.expect_nothing().await;
    still_served(&server, &mut publisher).await;
}

/// Vanishes with half a `send` written: with a plain close, or a reset.
async fn vanish_mid_line(server: &Server, reset: bool, partial: &[u8]) {
    let stream = TcpStream::connect(server.addr()).await.expect("connect");
    if reset {
        stream.set_zero_linger().expect("linger");
    }
    let (_, mut write) = stream.into_split();
    write.write_all(partial).await.expect("write");
    write.flush().await.expect("flush");
    drop(write);
}

#[tokio::test]
async fn clients_vanishing_mid_line_do_not_disturb_anyone() {
    let server = Server::start();
    let mut sub = server.client().await;
    sub.subscribe("t").await;
    let line = send_line("t", "never", "all");
    let half = &line.as_bytes()[..line.len() - 1];
    vanish_mid_line(&server, false, half).await;
    vanish_mid_line(&server, true, half).await;
    // Even after a whole line: without its `\n` it is not a line.
    vanish_mid_line(&server, false, line.as_bytes()).await;
    vanish_mid_line(&server, true, line.as_bytes()).await;
    // And in the middle of a line far over the limit.
    let mut long = b"{\"command\": \"send\", \"topic\": \"t\", \"msg\": \"".to_vec();
    long.resize(3 << 20, b'x');
    vanish_mid_line(&server, false, &long).await;
    vanish_mid_line(&server, true, &long).await;
    // None of those sends happened: the next one is index 0.
    let mut publisher = server.client().await;
    publisher.publish("t", "first", "all").await;
    sub.expect(delivered("t", "first", "all", 0)).await;
    sub.expect_nothing().await;
    still_served(&server, &mut sub).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_from_several_clients_while_others_talk() {
    let server = Server::start_with(&["1000"]);
    let mut sub = server.client().await;
    sub.subscribe("t").await;
    let mut tasks = Vec::new();
    for seed in 0..4u64 {
        let mut client = server.client().await;
        tasks.push(tokio::spawn(async move {
            let mut rng = Rng::new(0x5eed_0100 + seed);
            let mut lines = random_byte_lines(&mut rng, 32 * 1024);
            lines.extend(random_text_lines(&mut rng, 32 * 1024, 1000));
            let mut bytes = Vec::new();
            for line in &lines {
                bytes.extend_from_slice(line);
                bytes.push(b'\n');
            }
            client.send_raw(&bytes).await;
            for line in &lines {
                if let Some(want) = reply_to(line, 1 << 20) {
                    assert_eq!(client.recv().await, want);
                }
            }
            client
        }));
    }
    let mut publisher = server.client().await;
    for i in 0..200 {
        publisher.publish("t", &format!("m{i}"), "all").await;
        sub.expect(delivered("t", &format!("m{i}"), "all", i)).await;
    }
    for task in tasks {
        let mut client = task.await.expect("a garbage client");
        client.subscribe("t").await;
        for i in 0..200 {
            client
                .expect(delivered("t", &format!("m{i}"), "all", i))
                .await;
        }
    }
    sub.expect_nothing().await;
}
