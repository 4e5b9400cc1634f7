//! loadgen's checks can fail: against a fake server that breaks one promise
//! it must report the fault and exit non-zero, and against the same server
//! without the fault it must pass.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use support::{loadgen, FakeServer, Fault};

/// A small fanout: 3 subscribers, 2 publishers, 300 messages.
const FANOUT: &[&str] = &[
    "fanout",
    "--clients",
    "3",
    "--publishers",
    "2",
    "--messages",
    "300",
];

#[test]
fn a_correct_server_passes_fanout() {
    let server = FakeServer::start(Fault::None);
    let run = loadgen(server.addr(), FANOUT);
    assert!(run.succeeded(), "{}", run.explain());
    assert_eq!(run.num("/violations"), 0.0, "{}", run.explain());
    assert_eq!(run.num("/published"), 300.0);
    assert_eq!(run.num("/acked"), 300.0);
    assert_eq!(run.num("/deliveries"), 900.0);
    assert_eq!(run.num("/owed"), 900.0);
    assert!(run.num("/delivery_rate") > 0.0);
    assert!(run.num("/latency/p50_us") > 0.0);
}

#[test]
fn a_dropped_delivery_is_reported() {
    let server = FakeServer::start(Fault::Drop);
    let run = loadgen(server.addr(), FANOUT);
    assert!(!run.succeeded(), "{}", run.explain());
    assert_eq!(run.num("/correctness/missing"), 1.0, "{}", run.explain());
    assert_eq!(run.num("/violations"), 1.0, "{}", run.explain());
    let stdout = String::from_utf8_lossy(&run.output.stdout);
    assert!(
        stdout.contains("FAILED") && stdout.contains("never arrived"),
        "{stdout}"
    );
}

#[test]
fn a_duplicated_delivery_is_reported() {
    let server = FakeServer::start(Fault::Duplicate);
    let run = loadgen(server.addr(), FANOUT);
    assert!(!run.succeeded(), "{}", run.explain());
    assert_eq!(run.num("/correctness/duplicate"), 1.0, "{}", run.explain());
    assert_eq!(run.num("/violations"), 1.0, "{}", run.explain());
}

#[test]
fn reordered_deliveries_are_reported() {
    let server = FakeServer::start(Fault::Reorder);
    let run = loadgen(server.addr(), FANOUT);
    assert!(!run.succeeded(), "{}", run.explain());
    assert_eq!(
        run.num("/correctness/out_of_order"),
        1.0,
        "{}",
        run.explain()
    );
    assert_eq!(run.num("/violations"), 1.0, "{}", run.explain());
}

#[test]
fn a_misrouted_delivery_is_reported() {
    // In pairs every client has its own topic, so any other connection is the
    // wrong one, and the message is missing where it belonged.
    let server = FakeServer::start(Fault::Misroute);
    let run = loadgen(
        server.addr(),
        &[
            "pairs",
            "--clients",
            "4",
            "--messages",
            "400",
            "--timeout",
            "2",
        ],
    );
    assert!(!run.succeeded(), "{}", run.explain());
    assert_eq!(run.num("/correctness/misrouted"), 1.0, "{}", run.explain());
    assert_eq!(run.num("/correctness/missing"), 1.0, "{}", run.explain());
}

#[test]
fn a_queue_message_delivered_twice_is_reported() {
    let args = [
        "queue",
        "--clients",
        "3",
        "--messages",
        "300",
        "--timeout",
        "2",
    ];
    let server = FakeServer::start(Fault::None);
    let run = loadgen(server.addr(), &args);
    assert!(run.succeeded(), "{}", run.explain());
    assert_eq!(run.num("/deliveries"), 300.0);
    assert_eq!(run.num("/queue/min_share"), 1.0, "{}", run.explain());

    let server = FakeServer::start(Fault::Duplicate);
    let run = loadgen(server.addr(), &args);
    assert!(!run.succeeded(), "{}", run.explain());
    assert_eq!(run.num("/correctness/duplicate"), 1.0, "{}", run.explain());
}

#[test]
fn a_queue_message_lost_is_reported() {
    let server = FakeServer::start(Fault::Drop);
    let run = loadgen(
        server.addr(),
        &["queue", "--clients", "3", "--messages", "300"],
    );
    assert!(!run.succeeded(), "{}", run.explain());
    assert_eq!(run.num("/correctness/missing"), 1.0, "{}", run.explain());
}

#[test]
fn pairs_catch_a_drop_and_pass_without_it() {
    let args = [
        "pairs",
        "--clients",
        "4",
        "--messages",
        "400",
        "--timeout",
        "2",
    ];
    let server = FakeServer::start(Fault::None);
    let run = loadgen(server.addr(), &args);
    assert!(run.succeeded(), "{}", run.explain());
    assert_eq!(run.num("/deliveries"), 400.0, "{}", run.explain());

    let server = FakeServer::start(Fault::Drop);
    let run = loadgen(server.addr(), &args);
    assert!(!run.succeeded(), "{}", run.explain());
    assert_eq!(run.num("/correctness/missing"), 1.0, "{}", run.explain());
}

#[test]
fn replay_checks_each_suffix() {
    let args = [
        "replay",
        "--clients",
        "4",
        "--messages",
        "50",
        "--timeout",
        "2",
    ];
    let server = FakeServer::start(Fault::None);
    let run = loadgen(server.addr(), &args);
    assert!(run.succeeded(), "{}", run.explain());
    // Subscribers ask from messages 0, 12, 25 and 37 of 50.
    assert_eq!(
        run.num("/deliveries"),
        (50 + 38 + 25 + 13) as f64,
        "{}",
        run.explain()
    );
    assert!(run.num("/replay/replay_rate") > 0.0);

    // The first 50 deliveries go to the probe that watches the publishing;
    // break the replay itself.
    for (fault, kind) in [
        (Fault::Drop, "missing"),
        (Fault::Duplicate, "duplicate"),
        (Fault::Reorder, "out_of_order"),
    ] {
        let server = FakeServer::start_at(fault, 60);
        let run = loadgen(server.addr(), &args);
        assert!(!run.succeeded(), "{}", run.explain());
        assert_eq!(
            run.num(&format!("/correctness/{kind}")),
            1.0,
            "{}",
            run.explain()
        );
    }
}

#[test]
fn replay_owes_only_what_the_cache_holds() {
    let server = FakeServer::start(Fault::None);
    let run = loadgen(
        server.addr(),
        &["replay", "--clients", "2", "--messages", "150"],
    );
    assert!(run.succeeded(), "{}", run.explain());
    // Both ask from before the cached 100 (messages 0 and 75 of 150).
    assert_eq!(
        run.num("/deliveries"),
        (100 + 75) as f64,
        "{}",
        run.explain()
    );
}

#[test]
fn idle_connections_are_held_and_pinged() {
    let server = FakeServer::start(Fault::None);
    let run = loadgen(
        server.addr(),
        &["conns", "--clients", "50", "--hold", "0.2"],
    );
    assert!(run.succeeded(), "{}", run.explain());
    assert_eq!(run.num("/conns/answered"), 50.0);
    assert!(run.num("/conns/connect_rate") > 0.0);
}

#[test]
fn a_server_that_never_delivers_is_given_up_on() {
    let server = FakeServer::start(Fault::AckOnly);
    let run = loadgen(
        server.addr(),
        &[
            "fanout",
            "--clients",
            "2",
            "--messages",
            "100",
            "--timeout",
            "1",
        ],
    );
    assert!(!run.succeeded(), "{}", run.explain());
    assert_eq!(run.num("/correctness/missing"), 200.0, "{}", run.explain());
    assert!(run.took < Duration::from_secs(10), "took {:?}", run.took);
}

#[test]
fn a_stalled_server_cannot_hang_it() {
    for args in [
        &[
            "fanout",
            "--clients",
            "2",
            "--messages",
            "1000000",
            "--timeout",
            "1",
        ][..],
        &[
            "fanout",
            "--clients",
            "2",
            "--duration",
            "60",
            "--timeout",
            "1",
        ],
        &["pairs", "--clients", "3", "--timeout", "1"],
    ] {
        let server = FakeServer::start(Fault::Stall);
        let run = loadgen(server.addr(), args);
        assert!(!run.succeeded(), "{}", run.explain());
        assert!(run.num("/correctness/unacked") > 0.0, "{}", run.explain());
        let stdout = String::from_utf8_lossy(&run.output.stdout);
        assert!(stdout.contains("no reply from the server"), "{stdout}");
        assert!(run.took < Duration::from_secs(10), "took {:?}", run.took);
    }
}

#[test]
fn an_open_loop_run_keeps_its_rate() {
    let server = FakeServer::start(Fault::None);
    let run = loadgen(
        server.addr(),
        &[
            "fanout",
            "--clients",
            "2",
            "--rate",
            "500",
            "--duration",
            "1s",
        ],
    );
    assert!(run.succeeded(), "{}", run.explain());
    // Never more than the rate; fewer only if a busy machine starves the
    // publisher near the deadline.
    let published = run.num("/published");
    assert!((250.0..=550.0).contains(&published), "{}", run.explain());
    assert_eq!(run.report["params"]["load"], "open");
}

#[test]
fn no_server_is_a_clear_failure() {
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port");
    let run = loadgen(addr, &["--clients", "2", "--duration", "1"]);
    assert!(!run.succeeded());
    let stderr = String::from_utf8_lossy(&run.output.stderr);
    assert!(stderr.contains("cannot connect"), "{stderr}");
}

/// A server that answers every line it reads with `reply`, or, when `reply`
/// is empty, hangs up on the first line: anything but the mq protocol.
fn answering(reply: &'static [u8]) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("local addr");
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut writer = stream.try_clone().expect("clone the stream");
                let mut reader = BufReader::new(stream);
                let mut line = Vec::new();
                while reader.read_until(b'\n', &mut line).is_ok_and(|n| n > 0) {
                    if reply.is_empty() || writer.write_all(reply).is_err() {
                        break;
                    }
                    line.clear();
                }
            });
        }
    });
    addr
}

#[test]
fn a_server_that_does_not_answer_like_the_protocol_is_not_measured() {
    for (reply, expected) in [
        (
            &b"{\"ok\": true}\r\n"[..],
            r#"the server does not answer like the mq protocol: it sent {"ok": true}"#,
        ),
        (
            b"{\"success\": true, \"index\": 0}\r\n",
            r#"the server does not answer like the mq protocol: it sent {"success": true, "index": 0}"#,
        ),
        (
            b"+OK\r\n",
            "the server does not answer like the mq protocol: it sent +OK",
        ),
        (
            b"\x1b[2J\xff\rgarbage\n",
            "the server does not answer like the mq protocol: it sent \\u{1b}[2J\u{fffd}\\rgarbage",
        ),
        (b"", "the server closed the connection instead of replying"),
    ] {
        let run = loadgen(
            answering(reply),
            &[
                "fanout",
                "--clients",
                "2",
                "--messages",
                "10",
                "--timeout",
                "2",
            ],
        );
        assert_eq!(run.output.status.code(), Some(1), "{}", run.explain());
        assert!(run.report.is_null(), "it measured: {}", run.explain());
        let stderr = String::from_utf8_lossy(&run.output.stderr);
        let mut lines = stderr.lines();
        let line = lines.next().unwrap_or_default();
        assert!(
            line.starts_with("loadgen: opening 2 subscriber connections: subscribing to ")
                && line.ends_with(expected),
            "{expected:?} not at the end of {line:?}"
        );
        assert_eq!(lines.next(), None, "more than one line: {stderr}");
    }
}
