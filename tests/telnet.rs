//! The README's telnet session, line for line, over TCP with the `\r\n`
//! line ends telnet sends.

mod common;

use common::Server;
use serde_json::Value;

/// The session in README.md's "Or with telnet", without the shell
/// prompt and telnet's own closing message.
const SESSION: &str = r#"{"command": "subscribe", "topic": "foo"}
{"success": true}
{"command": "send", "topic": "foo", "msg": "hi", "delivery": "all"}
{"command": "send", "topic": "foo", "msg": "hi", "delivery": "all", "index": 0}
{"success": true}
hello
{"success": false, "reason": "Could not parse json"}
quit
Connection closed by foreign host."#;

fn json(line: &str) -> Value {
    serde_json::from_str(line).expect("a JSON line")
}

#[test]
fn the_readme_shows_this_session() {
    let readme = include_str!("../README.md");
    assert!(
        readme.contains("## Or with telnet"),
        "README.md lost its telnet section"
    );
    assert!(
        readme.contains(&format!("$ telnet localhost 7777\n{SESSION}\n")),
        "the telnet session in README.md changed: update tests/telnet.rs"
    );
}

#[tokio::test]
async fn the_readme_telnet_session_works_as_written() {
    let server = Server::start();
    let mut telnet = server.client().await;
    let lines: Vec<&str> = SESSION.lines().collect();

    telnet
        .send_raw(format!("{}\r\n", lines[0]).as_bytes())
        .await;
    telnet.expect(json(lines[1])).await;

    // The subscriber sends to itself: its copy and its reply in either order.
    telnet
        .send_raw(format!("{}\r\n", lines[2]).as_bytes())
        .await;
    telnet
        .expect_unordered(vec![json(lines[3]), json(lines[4])])
        .await;

    telnet
        .send_raw(format!("{}\r\n", lines[5]).as_bytes())
        .await;
    telnet.expect(json(lines[6])).await;

    assert_eq!(lines[7], "quit");
    telnet.send_raw(b"quit\r\n").await;
    assert_eq!(lines[8], "Connection closed by foreign host.");
    telnet.expect_closed().await;
}
