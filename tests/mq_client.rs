//! The `mq` client binary against the real broker: publishing, subscribing,
//! its flags, and how it reports a broker that is not there or not one.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::{Child, ChildStdout, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{Server, WAIT};
use serde_json::{json, Value};

/// The `mq` client binary.
const MQ: &str = env!("CARGO_BIN_EXE_mq");

/// `mq` with `args`, talking to `server` (given by `--addr`).
fn mq(server: &Server, args: &[&str]) -> Command {
    let mut command = Command::new(MQ);
    command
        .arg("--addr")
        .arg(server.addr().to_string())
        .args(args)
        .env_remove("MQ_ADDR")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// Runs `command` to its end (boundedly), feeding it `stdin`.
fn run(mut command: Command, stdin: &[u8]) -> Output {
    let mut child = command.stdin(Stdio::piped()).spawn().expect("start mq");
    let mut input = child.stdin.take().expect("stdin is piped");
    let stdin = stdin.to_vec();
    let feeder = std::thread::spawn(move || {
        let _ = input.write_all(&stdin);
    });
    let output = wait_for_exit(child);
    let _ = feeder.join();
    output
}

fn wait_for_exit(mut child: Child) -> Output {
    let deadline = Instant::now() + WAIT;
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("mq did not exit: {:?}", child.wait_with_output());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child.wait_with_output().expect("output")
}

fn stdout_of(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).expect("UTF-8 stdout")
}

fn stderr_of(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).expect("UTF-8 stderr")
}

/// `mq pub TOPIC MSG` succeeds, silently.
fn publish(server: &Server, topic: &str, msg: &str) {
    let output = run(mq(server, &["pub", topic, msg]), b"");
    assert!(output.status.success(), "{output:?}");
    assert_eq!(stdout_of(&output), "");
    assert_eq!(stderr_of(&output), "");
}

/// A running `mq sub`, its stdout read line by line on a thread so that a
/// test can wait for each line with a deadline.
struct Subscriber {
    child: Option<Child>,
    lines: mpsc::Receiver<String>,
}

impl Subscriber {
    fn start(server: &Server, args: &[&str]) -> Subscriber {
        let mut child = mq(server, &[&["sub"], args].concat())
            .spawn()
            .expect("start mq sub");
        let stdout: ChildStdout = child.stdout.take().expect("stdout is piped");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Subscriber {
            child: Some(child),
            lines,
        }
    }

    /// The next line it prints.
    fn line(&self) -> String {
        self.lines
            .recv_timeout(WAIT)
            .expect("mq sub printed no line in time")
    }

    /// It exits by itself with status 0 and prints nothing more.
    fn finishes(mut self) {
        let child = self.child.take().expect("still running");
        let output = wait_for_exit(child);
        assert!(output.status.success(), "{output:?}");
        assert_eq!(stderr_of(&output), "");
        assert!(
            self.lines.recv_timeout(WAIT).is_err(),
            "printed more than expected"
        );
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[test]
fn a_published_message_reaches_a_subscriber() {
    let server = Server::start();
    // The first message is cached, so its replay shows the subscription is
    // in place before the second is sent live.
    publish(&server, "greetings", "hello");
    let sub = Subscriber::start(&server, &["greetings", "--count", "2"]);
    assert_eq!(sub.line(), "hello");
    publish(&server, "greetings", "héllo \"wörld\" \\ {}");
    assert_eq!(sub.line(), "héllo \"wörld\" \\ {}");
    sub.finishes();
}

#[test]
fn sub_with_several_topics_prints_each_topics_messages() {
    let server = Server::start();
    publish(&server, "a", "from a");
    publish(&server, "b", "from b");
    let sub = Subscriber::start(&server, &["a", "b", "--count", "2"]);
    let mut got = [sub.line(), sub.line()];
    got.sort();
    assert_eq!(got, ["from a", "from b"]);
    sub.finishes();
}

#[test]
fn pub_dash_sends_each_line_of_stdin() {
    let server = Server::start();
    let output = run(
        mq(&server, &["pub", "lines", "-"]),
        b"first\nsecond\r\n\nlast without newline",
    );
    assert!(output.status.success(), "{output:?}");
    assert_eq!(stderr_of(&output), "");
    let sub = Subscriber::start(&server, &["lines", "--count", "4"]);
    for want in ["first", "second", "", "last without newline"] {
        assert_eq!(sub.line(), want);
    }
    sub.finishes();
}

#[test]
fn pub_dash_pipelines_many_lines() {
    let server = Server::start_with(&["5"]);
    let input: String = (0..5000).map(|i| format!("message {i}\n")).collect();
    let output = run(mq(&server, &["pub", "many", "-"]), input.as_bytes());
    assert!(output.status.success(), "{output:?}");
    let sub = Subscriber::start(&server, &["many", "--json", "--count", "1"]);
    let first: Value = serde_json::from_str(&sub.line()).expect("JSON");
    assert_eq!(first["index"], 4995, "every line was sent, in order");
    assert_eq!(first["msg"], "message 4995");
    sub.finishes();
}

#[test]
fn pub_dash_reports_each_refused_line_with_its_number_and_fails() {
    let server = Server::start_with(&["100", "--max-line", "100"]);
    let long = "x".repeat(200);
    let input = format!("ok 1\n{long}\nok 3\n\u{0}\n");
    let mut input = input.into_bytes();
    input.extend_from_slice(b"\xff not UTF-8\nok 6\n");
    let output = run(mq(&server, &["pub", "t", "-"]), &input);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let stderr = stderr_of(&output);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(
        lines,
        [
            "mq: stdin line 2: the broker refused it: Line too long",
            "mq: stdin line 5: not UTF-8, not sent",
            "mq: 2 line(s) of stdin were not published",
        ],
        "{stderr}"
    );
    let sub = Subscriber::start(&server, &["t", "--count", "4"]);
    for want in ["ok 1", "ok 3", "\u{0}", "ok 6"] {
        assert_eq!(sub.line(), want);
    }
    sub.finishes();
}

#[test]
fn json_prints_the_delivered_object_and_shows_one_and_no_cache() {
    let server = Server::start();
    publish(&server, "jobs", "lost");
    let output = run(mq(&server, &["pub", "jobs", "not kept", "--no-cache"]), b"");
    assert!(output.status.success(), "{output:?}");
    let output = run(mq(&server, &["pub", "jobs", "job 7", "--one"]), b"");
    assert!(output.status.success(), "{output:?}");

    let sub = Subscriber::start(&server, &["jobs", "--json", "--count", "2"]);
    let first: Value = serde_json::from_str(&sub.line()).expect("a JSON line");
    assert_eq!(
        first,
        json!({"command": "send", "topic": "jobs", "msg": "lost", "delivery": "all", "index": 0})
    );
    let second: Value = serde_json::from_str(&sub.line()).expect("a JSON line");
    assert_eq!(
        second,
        json!({"command": "send", "topic": "jobs", "msg": "job 7", "delivery": "one", "index": 2})
    );
    sub.finishes();
}

#[test]
fn count_stops_after_that_many_messages() {
    let server = Server::start();
    for i in 0..5 {
        publish(&server, "five", &format!("m{i}"));
    }
    let sub = Subscriber::start(&server, &["five", "--count", "3"]);
    for want in ["m0", "m1", "m2"] {
        assert_eq!(sub.line(), want);
    }
    sub.finishes();
}

#[test]
fn last_seen_replays_only_what_came_after() {
    let server = Server::start();
    for i in 0..5 {
        publish(&server, "replay", &format!("m{i}"));
    }
    let sub = Subscriber::start(&server, &["replay", "--last-seen", "2", "--count", "2"]);
    assert_eq!(sub.line(), "m3");
    assert_eq!(sub.line(), "m4");
    sub.finishes();

    let sub = Subscriber::start(&server, &["replay", "--last-seen", "-1", "--count", "1"]);
    assert_eq!(sub.line(), "m0");
    sub.finishes();
}

#[test]
fn no_cache_skips_the_replay() {
    let server = Server::start();
    publish(&server, "live", "old");
    let sub = Subscriber::start(&server, &["live", "--no-cache", "--count", "1"]);
    // Nothing says when the subscription is in place, so keep publishing
    // (boundedly) until it prints.
    let deadline = Instant::now() + WAIT;
    let line = loop {
        assert!(Instant::now() < deadline, "mq sub printed nothing");
        publish(&server, "live", "new");
        if let Ok(line) = sub.lines.recv_timeout(Duration::from_millis(50)) {
            break line;
        }
    };
    assert_eq!(line, "new");
    sub.finishes();
}

#[test]
fn a_refused_subscribe_is_an_error_and_exit_status_1() {
    let server = Server::start_with(&["100", "--max-line", "100"]);
    let long = "t".repeat(200);
    let output = wait_for_exit(mq(&server, &["sub", "fine", &long]).spawn().expect("mq"));
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert_eq!(stdout_of(&output), "");
    let stderr = stderr_of(&output);
    assert!(
        stderr.starts_with("mq: cannot subscribe to \"ttt")
            && stderr.ends_with(": Line too long\n"),
        "{stderr}"
    );
}

#[test]
fn a_refused_publish_is_an_error_and_exit_status_1() {
    let server = Server::start_with(&["100", "--max-line", "100"]);
    let output = run(mq(&server, &["pub", "t", &"m".repeat(200)]), b"");
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert_eq!(
        stderr_of(&output),
        "mq: the broker refused the message: Line too long\n"
    );
}

/// A port nobody listens on: bound, then released.
fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

#[test]
fn a_refused_connection_is_one_clear_line_and_exit_status_3() {
    let port = closed_port();
    for args in [&["pub", "t", "m"][..], &["sub", "t"]] {
        let output = wait_for_exit(
            Command::new(MQ)
                .args(args)
                .env("MQ_ADDR", format!("127.0.0.1:{port}"))
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("start mq"),
        );
        assert_eq!(output.status.code(), Some(3), "{args:?}: {output:?}");
        assert_eq!(
            stderr_of(&output),
            format!("mq: cannot connect to 127.0.0.1:{port}: Connection refused\n")
        );
        assert_eq!(stdout_of(&output), "");
    }
}

/// A server that is not an mq broker: it answers the first line with
/// `answer` and then waits for the client to go.
fn impostor(answer: &'static [u8]) -> (String, std::thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let thread = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().expect("accept");
        stream.set_read_timeout(Some(WAIT)).expect("timeout");
        let mut reader = BufReader::new(stream.try_clone().expect("clone"));
        let mut line = String::new();
        let _ = reader.read_line(&mut line);
        let _ = stream.write_all(answer);
        let _ = reader.read_to_end(&mut Vec::new());
    });
    (addr, thread)
}

#[test]
fn a_server_that_is_not_a_broker_is_a_protocol_error_and_exit_status_4() {
    let cases: [(&[&str], &'static [u8], &str); 2] = [
        (
            &["pub", "t", "m"],
            b"HTTP/1.1 400 Bad Request\r\n\r\n",
            "HTTP/1.1 400 Bad Request",
        ),
        (
            &["sub", "t"],
            b"{\"success\": true}\r\n{\"surprise\": 1}\r\n",
            "{\"surprise\": 1}",
        ),
    ];
    for (args, answer, shown) in cases {
        let (addr, thread) = impostor(answer);
        let output = wait_for_exit(
            Command::new(MQ)
                .args(["--addr", &addr])
                .args(args)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("start mq"),
        );
        assert_eq!(output.status.code(), Some(4), "{args:?}: {output:?}");
        let stderr = stderr_of(&output);
        assert!(
            stderr.starts_with(&format!("mq: protocol error: {addr} sent a line")),
            "{stderr}"
        );
        assert!(stderr.contains(shown), "{stderr}");
        thread.join().expect("impostor");
    }
}

#[test]
fn help_lists_the_exit_statuses() {
    for args in [&["--help"][..], &["sub", "--help"], &["pub", "--help"]] {
        let output = wait_for_exit(
            Command::new(MQ)
                .args(args)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("start mq"),
        );
        assert!(output.status.success(), "{output:?}");
        let help = stdout_of(&output);
        for word in ["Exit status:", "MQ_ADDR", "127.0.0.1:7000"] {
            assert!(help.contains(word), "{args:?} lacks {word}: {help}");
        }
    }
}

#[test]
fn bad_arguments_exit_with_status_2() {
    for args in [
        &["sub"][..],
        &["sub", "t", "--count", "0"],
        &["pub", "t"],
        &["nonsense"],
    ] {
        let output = wait_for_exit(
            Command::new(MQ)
                .args(args)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("start mq"),
        );
        assert_eq!(output.status.code(), Some(2), "{args:?}: {output:?}");
    }
}
