//! The command line: `mq-actix [PORT] [CACHE_SIZE]` and its flags, the
//! listening line on stdout, `--help`, `--version`, and a port in use.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{BIN, WAIT};

/// The broker with `args`, its output piped, logging at its default level.
fn spawn(args: &[&str]) -> Child {
    Command::new(BIN)
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start mq-actix")
}

/// Waits (boundedly) for a broker that is expected to exit by itself.
fn wait_for_exit(mut child: Child) -> Output {
    let deadline = Instant::now() + WAIT;
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("mq-actix did not exit");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("output")
}

/// Its first line on stdout; kills it afterwards.
fn listening_line(args: &[&str]) -> String {
    let mut child = spawn(args);
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("read stdout");
    let _ = child.kill();
    let _ = child.wait();
    line
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

#[test]
fn it_prints_where_it_listens_and_its_cache_size() {
    let line = listening_line(&["0"]);
    let rest = line
        .strip_prefix("mq-actix listening on 127.0.0.1:")
        .unwrap_or_else(|| panic!("{line:?}"));
    let (port, rest) = rest.split_once(' ').expect("port then cache size");
    assert_ne!(port.parse::<u16>().expect("a port"), 0);
    assert_eq!(rest, "(cache size 100)\n");

    let line = listening_line(&["0", "7"]);
    assert!(line.ends_with(" (cache size 7)\n"), "{line:?}");
}

#[test]
fn it_listens_on_the_port_it_is_given_and_answers_there() {
    let port = free_port();
    let mut child = spawn(&[&port.to_string(), "0"]);
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("read stdout");
    assert_eq!(
        line,
        format!("mq-actix listening on 127.0.0.1:{port} (cache size 0)\n")
    );
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    std::io::Write::write_all(&mut stream, b"hello\r\n").expect("write");
    stream.set_read_timeout(Some(WAIT)).expect("timeout");
    let mut reply = [0u8; 64];
    let n = stream.read(&mut reply).expect("read");
    assert_eq!(
        &reply[..n],
        b"{\"success\": false, \"reason\": \"Could not parse json\"}\r\n"
    );
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn help_describes_the_command_line_and_exits_zero() {
    for flag in ["--help", "-h"] {
        let output = wait_for_exit(spawn(&[flag]));
        assert!(output.status.success(), "{flag}: {:?}", output.status);
        let help = String::from_utf8(output.stdout).expect("UTF-8");
        assert!(help.contains("Usage: mq-actix"), "{help}");
        for word in ["[PORT]", "[CACHE_SIZE]", "--max-line", "--bind"] {
            assert!(help.contains(word), "{flag} lacks {word}: {help}");
        }
    }
}

#[test]
fn version_prints_the_version_and_exits_zero() {
    for flag in ["--version", "-V"] {
        let output = wait_for_exit(spawn(&[flag]));
        assert!(output.status.success(), "{flag}: {:?}", output.status);
        assert_eq!(
            String::from_utf8(output.stdout).expect("UTF-8"),
            format!("mq-actix {}\n", env!("CARGO_PKG_VERSION"))
        );
    }
}

/// Runs the broker on a port another socket holds.
fn start_on_a_taken_port(extra: &[&str]) -> (u16, Output) {
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port();
    let mut args = vec![port.to_string()];
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let output = wait_for_exit(spawn(&args));
    drop(taken);
    (port, output)
}

fn assert_one_line_error_and_exit_1(port: u16, output: &Output) {
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert!(output.stdout.is_empty(), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "stderr: {stderr:?}");
    assert!(lines[0].contains(&port.to_string()), "{stderr:?}");
}

#[test]
fn a_port_in_use_is_a_one_line_error_and_exit_code_1() {
    // Flags that need no more open files than any system allows, so only
    // the error itself is on stderr.
    let (port, output) = start_on_a_taken_port(&["100", "--max-connections", "1000"]);
    assert_one_line_error_and_exit_1(port, &output);
}

#[test]
fn a_port_in_use_with_the_bare_command_line_is_a_one_line_error() {
    let (port, output) = start_on_a_taken_port(&[]);
    assert_one_line_error_and_exit_1(port, &output);
}

#[test]
fn bad_arguments_are_refused() {
    for args in [
        &["not-a-port"][..],
        &["70000"],
        &["0", "-1"],
        &["--no-such-flag"],
    ] {
        let output = wait_for_exit(spawn(args));
        assert!(!output.status.success(), "{args:?} was accepted");
        assert!(output.stdout.is_empty(), "{args:?}: {output:?}");
        assert!(!output.stderr.is_empty(), "{args:?} said nothing");
    }
}
