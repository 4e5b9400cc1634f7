//! Configuring the broker: environment variables, sizes with units, host
//! names for `--bind`, JSON logs, shell completions and the man page.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{delivered, Client, BIN, WAIT};

/// Whether the broker reads `variable`: every `MQ_ACTIX_*` variable and
/// `RUST_LOG`, so that none leaks in from the environment the tests run in.
fn read_by_the_broker(variable: &str) -> bool {
    variable.starts_with("MQ_ACTIX_") || variable == "RUST_LOG"
}

/// The broker with `args` and the environment variables `env` (and no
/// others of its own), its output piped.
fn spawn(args: &[&str], env: &[(&str, &str)]) -> Child {
    let mut command = Command::new(BIN);
    for (variable, _) in std::env::vars_os() {
        if variable.to_str().is_some_and(read_by_the_broker) {
            command.env_remove(variable);
        }
    }
    command
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start mq-actix")
}

/// A broker that runs until dropped, and the first line it printed.
struct Running {
    child: Child,
    line: String,
}

impl Running {
    fn start(args: &[&str], env: &[(&str, &str)]) -> Running {
        let mut child = spawn(args, env);
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read stdout");
        assert!(line.starts_with("mq-actix listening on "), "{line:?}");
        Running { child, line }
    }

    /// The address in the listening line.
    fn addr(&self) -> SocketAddr {
        self.line
            .split_whitespace()
            .find_map(|word| word.parse().ok())
            .unwrap_or_else(|| panic!("no address in {:?}", self.line))
    }

    /// Stops it and returns what it wrote on stderr.
    fn stop(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let mut stderr = String::new();
        if let Some(mut pipe) = self.child.stderr.take() {
            pipe.read_to_string(&mut stderr).expect("read stderr");
        }
        stderr
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
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

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

#[tokio::test]
async fn environment_variables_set_the_port_and_the_cache_size() {
    let port = free_port();
    let broker = Running::start(
        &[],
        &[
            ("MQ_ACTIX_PORT", &port.to_string()),
            ("MQ_ACTIX_CACHE_SIZE", "2"),
        ],
    );
    assert_eq!(
        broker.line,
        format!("mq-actix listening on 127.0.0.1:{port} (cache size 2)\n")
    );
    let mut publisher = Client::connect(broker.addr()).await;
    for msg in ["a", "b", "c"] {
        publisher.publish("t", msg, "all").await;
    }
    let mut subscriber = Client::connect(broker.addr()).await;
    subscriber.subscribe("t").await;
    subscriber.expect(delivered("t", "b", "all", 1)).await;
    subscriber.expect(delivered("t", "c", "all", 2)).await;
    subscriber.expect_nothing().await;
}

#[test]
fn the_command_line_wins_over_the_environment() {
    let broker = Running::start(&["0", "7"], &[("MQ_ACTIX_CACHE_SIZE", "2")]);
    assert!(
        broker.line.ends_with(" (cache size 7)\n"),
        "{:?}",
        broker.line
    );
}

#[tokio::test]
async fn sizes_take_units_on_the_command_line_and_in_the_environment() {
    for (args, env) in [
        (
            &["0", "--max-line", "1KiB", "--max-pending", "64MiB"][..],
            &[][..],
        ),
        (&["0", "--max-line", "1k", "--max-pending", "1GiB"], &[]),
        (
            &["0"],
            &[
                ("MQ_ACTIX_MAX_LINE", "1K"),
                ("MQ_ACTIX_MAX_PENDING", "512k"),
            ],
        ),
        (&["0", "--max-line", "1024"], &[]),
    ] {
        let broker = Running::start(args, env);
        let mut client = Client::connect(broker.addr()).await;
        client.send(&"x".repeat(1024)).await;
        client.expect_error("Could not parse json").await;
        client.send(&"x".repeat(1025)).await;
        client.expect_error("Line too long").await;
    }
}

#[test]
fn a_bad_size_is_a_clear_error_and_exit_status_2() {
    for (args, env, flag) in [
        (&["0", "--max-line", "12XB"][..], &[][..], "--max-line"),
        (&["0", "--max-pending", "lots"], &[], "--max-pending"),
        (
            &["0"],
            &[("MQ_ACTIX_MAX_PENDING", "-5MiB")],
            "--max-pending",
        ),
    ] {
        let output = wait_for_exit(spawn(args, env));
        assert_eq!(
            output.status.code(),
            Some(2),
            "{args:?} {env:?}: {output:?}"
        );
        assert!(output.stdout.is_empty(), "{output:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.starts_with("error: invalid value '")
                && stderr.contains(&format!("' for '{flag} <SIZE>'"))
                && stderr.contains("64MiB"),
            "{stderr}"
        );
    }
}

#[tokio::test]
async fn bind_accepts_a_host_name() {
    for env in [&[][..], &[("MQ_ACTIX_BIND", "localhost")]] {
        let args: &[&str] = if env.is_empty() {
            &["0", "--bind", "localhost"]
        } else {
            &["0"]
        };
        let broker = Running::start(args, env);
        assert!(broker.addr().ip().is_loopback(), "{:?}", broker.line);
        let mut client = Client::connect(broker.addr()).await;
        client.subscribe("t").await;
        let stderr = broker.stop();
        assert!(!stderr.contains("no authentication"), "{stderr}");
    }
}

#[test]
fn completions_are_printed_for_each_shell() {
    for (shell, marker) in [
        ("bash", "complete -F _mq__actix"),
        ("zsh", "#compdef mq-actix"),
        ("fish", "complete -c mq-actix"),
    ] {
        let output = wait_for_exit(spawn(&["--completions", shell], &[]));
        assert!(output.status.success(), "{shell}: {output:?}");
        assert!(output.stderr.is_empty(), "{output:?}");
        let script = String::from_utf8(output.stdout).expect("UTF-8");
        assert!(script.contains(marker), "{shell} lacks {marker}: {script}");
        assert!(script.contains("max-pending"), "{shell}: {script}");
    }
}

#[test]
fn man_prints_a_man_page() {
    let output = wait_for_exit(spawn(&["--man"], &[]));
    assert!(output.status.success(), "{output:?}");
    let page = String::from_utf8(output.stdout).expect("UTF-8");
    for word in [
        ".TH mq-actix 1",
        ".SH NAME",
        ".SH OPTIONS",
        "max\\-line",
        "MQ_ACTIX_PORT",
    ] {
        assert!(page.contains(word), "the man page lacks {word}: {page}");
    }
}

#[test]
fn help_shows_the_environment_variables() {
    let output = wait_for_exit(spawn(&["--help"], &[]));
    assert!(output.status.success(), "{output:?}");
    let help = String::from_utf8(output.stdout).expect("UTF-8");
    for variable in [
        "MQ_ACTIX_PORT",
        "MQ_ACTIX_CACHE_SIZE",
        "MQ_ACTIX_BIND",
        "MQ_ACTIX_MAX_LINE",
        "MQ_ACTIX_MAX_PENDING",
        "MQ_ACTIX_MAX_CONNECTIONS",
        "MQ_ACTIX_MAX_MEMORY",
        "MQ_ACTIX_LINE_TIMEOUT",
        "MQ_ACTIX_WORKERS",
        "MQ_ACTIX_SHUTDOWN_TIMEOUT",
        "MQ_ACTIX_LOG_FORMAT",
        "MQ_ACTIX_METRICS",
    ] {
        assert!(
            help.contains(&format!("[env: {variable}=")),
            "{variable}: {help}"
        );
    }
}

#[test]
fn log_format_json_writes_one_json_object_per_line() {
    for (args, env) in [
        (
            &["0", "--log-format", "json"][..],
            &[("RUST_LOG", "debug")][..],
        ),
        (
            &["0"],
            &[("RUST_LOG", "debug"), ("MQ_ACTIX_LOG_FORMAT", "json")],
        ),
    ] {
        let broker = Running::start(args, env);
        let stderr = broker.stop();
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        assert!(!lines.is_empty(), "no log line at debug level");
        for line in lines {
            let value: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|error| panic!("not JSON ({error}): {line:?}"));
            assert!(value["level"].is_string(), "{line}");
            assert!(value["fields"].is_object(), "{line}");
        }
    }
}

#[test]
fn a_bad_log_format_is_refused() {
    let output = wait_for_exit(spawn(&["0", "--log-format", "xml"], &[]));
    assert_eq!(output.status.code(), Some(2), "{output:?}");
}
