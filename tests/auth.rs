//! The authentication extension (`--users`): `auth`, its replies, the
//! permissions of each user, `--hash-password` and SIGHUP, over real TCP
//! against the real binary.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use argon2::{Argon2, PasswordVerifier};
use common::{delivered, send_line, Client, Rng, Server, BIN};
use mq_actix::security::users::hash_password;
use serde_json::{json, Value};

/// A file under the temporary directory, removed when dropped.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str, contents: &str) -> TempFile {
        let path =
            std::env::temp_dir().join(format!("mq-actix-auth-{}-{name}.toml", std::process::id()));
        std::fs::write(&path, contents).expect("write temp file");
        TempFile(path)
    }

    fn path(&self) -> &str {
        self.0.to_str().expect("UTF-8 temp path")
    }

    fn rewrite(&self, contents: &str) {
        std::fs::write(&self.0, contents).expect("rewrite temp file");
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn user(name: &str, password: &str, permissions: &str) -> String {
    let hash = hash_password(password).expect("hash");
    format!("[[user]]\nname = \"{name}\"\npassword_hash = \"{hash}\"\n{permissions}\n")
}

/// alice may do everything; bob may read `news` live and use `jobs.*`.
fn users() -> String {
    user(
        "alice",
        "wonderland",
        "subscribe = [\"*\"]\npublish = [\"*\"]\nreplay = [\"*\"]",
    ) + &user(
        "bob",
        "builder",
        "subscribe = [\"news\", \"jobs.*\"]\npublish = [\"jobs.*\"]\nreplay = [\"jobs.*\"]",
    )
}

fn auth_line(user: &str, password: &str) -> String {
    json!({"command": "auth", "user": user, "password": password}).to_string()
}

async fn login(server: &Server, user: &str, password: &str) -> Client {
    let mut client = server.client().await;
    client.send(&auth_line(user, password)).await;
    client.expect_ok().await;
    client
}

fn start(file: &TempFile) -> Server {
    Server::start_with(&["--users", file.path()])
}

#[tokio::test]
async fn every_command_waits_for_auth() {
    let file = TempFile::new("required", &users());
    let server = start(&file);
    let mut client = server.client().await;
    for line in [
        r#"{"command": "subscribe", "topic": "news"}"#.to_owned(),
        r#"{"command": "unsubscribe", "topic": "news"}"#.to_owned(),
        send_line("news", "hi", "all"),
    ] {
        client.send(&line).await;
        client.expect_error("Authentication required").await;
    }
    // Lines that are no command keep their own reasons.
    client.send("hello").await;
    client.expect_error("Could not parse json").await;
    client.send(r#"{"command": "auth", "user": "bob"}"#).await;
    client.expect_error("Malformed json message").await;

    client.send(&auth_line("bob", "wrong")).await;
    client.expect_error("Authentication failed").await;
    client.send(&auth_line("bob", "builder")).await;
    client.expect_ok().await;
    client.subscribe("news").await;
}

#[tokio::test]
async fn commands_pipelined_after_auth_run_as_its_user() {
    let file = TempFile::new("pipelined", &users());
    let server = start(&file);
    let mut client = server.client().await;
    let lines = [
        auth_line("bob", "builder"),
        r#"{"command": "subscribe", "topic": "jobs.1"}"#.to_owned(),
        auth_line("bob", "nope"),
        r#"{"command": "subscribe", "topic": "jobs.2"}"#.to_owned(),
    ];
    client
        .send_raw(format!("{}\n", lines.join("\n")).as_bytes())
        .await;
    client.expect_ok().await;
    client.expect_ok().await;
    // A failed `auth` leaves the connection logged in as it was.
    client.expect_error("Authentication failed").await;
    client.expect_ok().await;
}

#[tokio::test]
async fn repeated_failures_close_the_connection() {
    let file = TempFile::new("failures", &users());
    let server = start(&file);
    let mut client = server.client().await;
    client.send(&auth_line("alice", "guess 1")).await;
    client.expect_error("Authentication failed").await;
    client.send(&auth_line("nobody", "guess 2")).await;
    client.expect_error("Authentication failed").await;
    client.send(&auth_line("alice", "guess 3")).await;
    client.expect_error("Authentication failed").await;
    client.expect_closed().await;

    let mut alice = login(&server, "alice", "wonderland").await;
    alice.publish("news", "others are unaffected", "all").await;
}

#[tokio::test]
async fn each_permission_is_refused_and_allowed() {
    let file = TempFile::new("permissions", &users());
    let server = start(&file);
    let mut bob = login(&server, "bob", "builder").await;

    bob.send(&send_line("news", "not mine to send", "all"))
        .await;
    bob.expect_error("Permission denied").await;
    bob.publish("jobs.7", "mine", "one").await;

    for topic in ["secret", "jobs", "xjobs.1", "new"] {
        bob.send(&json!({"command": "subscribe", "topic": topic}).to_string())
            .await;
        bob.expect_error("Permission denied").await;
    }
    // The prefix pattern `jobs.*`, with its replay: the job sent above.
    bob.subscribe("jobs.7").await;
    bob.expect(delivered("jobs.7", "mine", "one", 0)).await;
    bob.subscribe("news").await;
    bob.send(r#"{"command": "unsubscribe", "topic": "secret"}"#)
        .await;
    bob.expect_ok().await;
}

#[tokio::test]
async fn a_user_without_replay_gets_live_messages_only() {
    let file = TempFile::new("replay", &users());
    let server = start(&file);
    let mut alice = login(&server, "alice", "wonderland").await;
    alice.publish("news", "old 0", "all").await;
    alice.publish("news", "old 1", "all").await;

    let mut bob = login(&server, "bob", "builder").await;
    bob.subscribe("news").await;
    bob.expect_nothing().await;
    alice.publish("news", "fresh", "all").await;
    bob.expect(delivered("news", "fresh", "all", 2)).await;

    // alice may replay: she gets all three.
    let mut reader = login(&server, "alice", "wonderland").await;
    reader.subscribe("news").await;
    for (index, msg) in ["old 0", "old 1", "fresh"].into_iter().enumerate() {
        reader
            .expect(delivered("news", msg, "all", index as u64))
            .await;
    }
}

/// Subscribing to several topics is several `subscribe` lines; each is
/// judged, and answered, by itself.
#[tokio::test]
async fn several_subscriptions_are_judged_topic_by_topic() {
    let file = TempFile::new("several", &users());
    let server = start(&file);
    let mut bob = login(&server, "bob", "builder").await;
    let lines: Vec<String> = ["news", "secret", "jobs.1"]
        .iter()
        .map(|topic| json!({"command": "subscribe", "topic": topic}).to_string())
        .collect();
    bob.send_raw(format!("{}\n", lines.join("\n")).as_bytes())
        .await;
    bob.expect_ok().await;
    bob.expect_error("Permission denied").await;
    bob.expect_ok().await;

    let mut alice = login(&server, "alice", "wonderland").await;
    alice.publish("secret", "hidden", "all").await;
    alice.publish("news", "n", "all").await;
    alice.publish("jobs.1", "j", "all").await;
    bob.expect_unordered(vec![
        delivered("news", "n", "all", 0),
        delivered("jobs.1", "j", "all", 0),
    ])
    .await;
    bob.expect_nothing().await;
}

#[tokio::test]
async fn without_users_auth_is_no_command() {
    let server = Server::start();
    let mut client = server.client().await;
    client.send(&auth_line("alice", "wonderland")).await;
    client.expect_error("Malformed json message").await;
    client.subscribe("open").await;
}

#[tokio::test]
async fn hash_password_prints_a_hash_the_broker_accepts() {
    let mut child = Command::new(BIN)
        .arg("--hash-password")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start mq-actix --hash-password");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"s3cret pass\r\n")
        .expect("write the password");
    let output = child.wait_with_output().expect("wait");
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8(output.stdout).expect("UTF-8");
    let hash = stdout.strip_suffix('\n').expect("one line");
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    assert!(Argon2::default()
        .verify_password(b"s3cret pass", hash)
        .is_ok());
    assert!(Argon2::default()
        .verify_password(b"s3cret pass\r", hash)
        .is_err());

    let file = TempFile::new(
        "hashed",
        &format!("[[user]]\nname = \"eve\"\npassword_hash = \"{hash}\"\npublish = [\"*\"]\n"),
    );
    let server = start(&file);
    let mut eve = login(&server, "eve", "s3cret pass").await;
    eve.publish("t", "m", "all").await;
}

#[tokio::test]
async fn sighup_rereads_the_users_file_and_keeps_connections() {
    let file = TempFile::new("reload", &users());
    let server = start(&file);
    let mut alice = login(&server, "alice", "wonderland").await;

    file.rewrite(&user("carol", "c4rol", "publish = [\"*\"]"));
    server.signal("HUP");
    // The reload happens in the broker's own time: try until carol is in.
    let mut carol = None;
    for _ in 0..40 {
        let mut client = server.client().await;
        client.send(&auth_line("carol", "c4rol")).await;
        if client.recv().await == json!({"success": true}) {
            carol = Some(client);
            break;
        }
    }
    let mut carol = carol.expect("carol was never added");
    carol.publish("t", "new user", "all").await;

    // alice's connection stays, with what she could do; she cannot log in
    // again.
    alice.subscribe("t").await;
    alice.expect(delivered("t", "new user", "all", 0)).await;
    carol.publish("t", "to alice", "all").await;
    alice.expect(delivered("t", "to alice", "all", 1)).await;
    let mut again = server.client().await;
    again.send(&auth_line("alice", "wonderland")).await;
    again.expect_error("Authentication failed").await;
}

#[tokio::test]
async fn the_users_file_and_the_per_ip_limit_can_come_from_the_environment() {
    let file = TempFile::new("environment", &users());
    let mut child = Command::new(BIN)
        .arg("0")
        .env("MQ_ACTIX_USERS", file.path())
        .env("MQ_ACTIX_MAX_CONNECTIONS_PER_IP", "1")
        .stdout(Stdio::piped())
        .spawn()
        .expect("start mq-actix");
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().expect("stdout")),
        &mut line,
    )
    .expect("the listening line");
    let addr = line
        .split_whitespace()
        .find_map(|word| word.parse().ok())
        .unwrap_or_else(|| panic!("no address in {line:?}"));
    let mut first = Client::connect(addr).await;
    first
        .send(r#"{"command": "subscribe", "topic": "t"}"#)
        .await;
    first.expect_error("Authentication required").await;
    let mut second = Client::connect(addr).await;
    second.expect_error("Too many connections").await;
    let _ = child.kill();
    let _ = child.wait();
}

#[tokio::test]
async fn a_bad_users_file_stops_the_start_with_one_line() {
    let missing = Path::new("/nonexistent/users.toml");
    let file = TempFile::new("bad", "[[user]]\nname = \"x\"\npassword_hash = \"plain\"\n");
    for path in [missing.to_str().expect("path"), file.path()] {
        let output = Command::new(BIN)
            .args(["0", "--users", path])
            .output()
            .expect("run mq-actix");
        assert_eq!(output.status.code(), Some(1), "{output:?}");
        let stderr = String::from_utf8(output.stderr).expect("UTF-8");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.starts_with("mq-actix: "), "{stderr}");
        assert!(stderr.contains(path), "{stderr}");
        assert!(!stderr.contains("plain\""), "{stderr}");
    }
}

/// Mangled `auth` lines: each gets one of the protocol's replies, the
/// connection survives all but the allowed number of failed logins, and the
/// broker keeps serving.
#[tokio::test]
async fn fuzzed_auth_lines_get_their_reasons() {
    let file = TempFile::new("fuzz", &users());
    let server = start(&file);
    let allowed: Vec<Value> = [
        "Could not decode input as UTF-8",
        "Could not parse json",
        "Malformed json message",
        "Authentication required",
        "Authentication failed",
    ]
    .iter()
    .map(|reason| json!({"success": false, "reason": reason}))
    .collect();
    let seeds = [
        r#"{"command": "auth", "user": "bob", "password": "builder"}"#,
        r#"{"command": "auth", "user": ["bob"], "password": {"p": 1}}"#,
        r#"{"command": "auth", "user": "bob", "password": "builder", "topic": "x"}"#,
        r#"{"command": "auth", "password": "\u0000\ud800"}"#,
    ];
    let mut rng = Rng::new(14);
    let mut client = server.client().await;
    let mut failures = 0;
    for _ in 0..300 {
        let mut line = rng.pick(&seeds).as_bytes().to_vec();
        for _ in 0..=rng.below(3) {
            let at = rng.below(line.len());
            match rng.below(3) {
                0 => line[at] = rng.next_u64() as u8,
                1 => {
                    line.remove(at);
                }
                _ => line.insert(at, *rng.pick(b"{}[]\",:\\ 0e-tnu")),
            }
        }
        line.retain(|&byte| byte != b'\n');
        line.push(b'\n');
        client.send_raw(&line).await;
        let trimmed = String::from_utf8_lossy(&line).trim().to_owned();
        if trimmed.is_empty() || trimmed == "quit" {
            client = server.client().await;
            continue;
        }
        let reply = client.recv().await;
        if reply == json!({"success": true}) {
            // Still bob's own password: log out by reconnecting.
            client = server.client().await;
            failures = 0;
            continue;
        }
        assert!(allowed.contains(&reply), "{reply} for {trimmed:?}");
        if reply == allowed[4] {
            failures += 1;
            if failures == 3 {
                client.expect_closed().await;
                client = server.client().await;
                failures = 0;
            }
        }
    }
    let mut alice = login(&server, "alice", "wonderland").await;
    alice.publish("after", "still serving", "all").await;
}
