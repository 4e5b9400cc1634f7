//! The wire protocol as pure functions, no actors and no sockets: how many
//! lines per second `parse_line` decodes and validates for each command and
//! for each kind of bad input, how many deliveries per second
//! `DeliveryTemplate` encodes, and how many lines per second `LineCodec`
//! frames.
//!
//! Every line a client sends goes through the parser on a session's thread,
//! and every `send` is encoded once, so a slowdown here caps the whole broker.
//! Each input is checked once before it is measured, so a benchmark can never
//! silently time the wrong path (e.g. a `send` that has become `Malformed`).

mod common;

use common::Timing;
use std::hint::black_box;
use std::time::Duration;

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, Throughput};
use mq_actix::codec::{Framed, LineCodec};
use mq_actix::protocol::{parse_line, Command, DeliveryTemplate, Line, ProtocolError};
use tokio_util::codec::Decoder;

/// The message size the issue asks for besides a short one.
const KIB: usize = 1024;

/// Short, deliberate settings: each variant is a pure function of at most a
/// few microseconds, so 1.5 s gives millions of iterations and tight
/// intervals. Criterion's analysis and plots add seconds per variant on top,
/// which is why the measuring is kept short: the whole `cargo bench` (three
/// files) must stay well under 10 minutes on 2 busy cores.
const TIMING: Timing = Timing {
    warm_up: Duration::from_millis(300),
    measure: Duration::from_millis(1500),
    samples: 50,
};

fn send_line(msg: &str) -> String {
    format!(r#"{{"command": "send", "topic": "foo", "msg": "{msg}", "delivery": "all"}}"#)
}

/// A 1 KiB message that is mostly plain text.
fn msg_1k() -> String {
    "x".repeat(KIB)
}

/// A 1 KiB message (as delivered) full of escapes, which the parser must
/// unescape into an owned string instead of borrowing.
fn msg_1k_escaped() -> String {
    // `\"` and `\u00e9` are 8 bytes on the wire and 3 after unescaping.
    r#"ab\"\u00e9"#.repeat(KIB / 10)
}

/// Parses `line`, asserting first that it is a command of the `expected` kind.
fn bench_command(
    group: &mut BenchmarkGroup<'_, criterion::measurement::WallTime>,
    variant: &str,
    line: &str,
    expected: fn(&Command<'_>) -> bool,
) {
    match parse_line(line.as_bytes()) {
        Ok(Line::Command(command)) if expected(&command) => {}
        other => panic!("{variant}: {line:?} parsed as {other:?}"),
    }
    group.bench_function(variant, |b| {
        b.iter(|| parse_line(black_box(line.as_bytes())).is_ok())
    });
}

fn parse_subscribe(c: &mut Criterion) {
    let mut group = c.benchmark_group("parse_subscribe");
    TIMING.apply(&mut group);
    group.throughput(Throughput::Elements(1));
    let is_subscribe = |c: &Command<'_>| matches!(c, Command::Subscribe(_));
    bench_command(
        &mut group,
        "plain",
        r#"{"command": "subscribe", "topic": "foo"}"#,
        is_subscribe,
    );
    bench_command(
        &mut group,
        "last_seen_cache",
        r#"{"command": "subscribe", "topic": "foo", "last_seen": 41, "cache": true}"#,
        is_subscribe,
    );
    group.finish();
}

fn parse_unsubscribe(c: &mut Criterion) {
    let mut group = c.benchmark_group("parse_unsubscribe");
    TIMING.apply(&mut group);
    group.throughput(Throughput::Elements(1));
    bench_command(
        &mut group,
        "plain",
        r#"{"command": "unsubscribe", "topic": "foo"}"#,
        |c| matches!(c, Command::Unsubscribe { .. }),
    );
    group.finish();
}

fn parse_send(c: &mut Criterion) {
    let mut group = c.benchmark_group("parse_send");
    TIMING.apply(&mut group);
    group.throughput(Throughput::Elements(1));
    let is_send = |c: &Command<'_>| matches!(c, Command::Send(_));
    bench_command(&mut group, "short", &send_line("hello"), is_send);
    bench_command(&mut group, "1KiB", &send_line(&msg_1k()), is_send);
    bench_command(
        &mut group,
        "1KiB_escaped",
        &send_line(&msg_1k_escaped()),
        is_send,
    );
    group.finish();
}

fn parse_invalid(c: &mut Criterion) {
    let mut group = c.benchmark_group("parse_invalid");
    TIMING.apply(&mut group);
    group.throughput(Throughput::Elements(1));
    let cases: [(&str, &[u8], ProtocolError); 4] = [
        (
            "not_utf8",
            b"{\"command\": \"send\", \"topic\": \"f\xffo\", \"msg\": \"hi\", \"delivery\": \"all\"}",
            ProtocolError::NotUtf8,
        ),
        (
            "not_json",
            br#"{"command": "send", "topic": "foo", "msg": "hi", "delivery": "all""#,
            ProtocolError::NotJson,
        ),
        (
            "malformed_type",
            br#"{"command": "send", "topic": "foo", "msg": 5, "delivery": "all"}"#,
            ProtocolError::Malformed,
        ),
        (
            "malformed_keys",
            br#"{"command": "send", "topic": "foo", "msg": "hi", "delivery": "all", "extra": 1}"#,
            ProtocolError::Malformed,
        ),
    ];
    for (variant, line, expected) in cases {
        assert_eq!(parse_line(line), Err(expected), "{variant}");
        group.bench_function(variant, |b| b.iter(|| parse_line(black_box(line)).is_err()));
    }
    group.finish();
}

/// The whole cost of a delivery: the session encodes the template once per
/// `send`, the topic appends the index.
fn encode_delivery(c: &mut Criterion) {
    let mut group = c.benchmark_group("encode_delivery");
    TIMING.apply(&mut group);
    group.throughput(Throughput::Elements(1));
    for (variant, msg) in [
        ("short", "hello".to_owned()),
        ("1KiB", msg_1k()),
        ("1KiB_escaped", msg_1k_escaped()),
    ] {
        let line = send_line(&msg);
        let Ok(Line::Command(Command::Send(send))) = parse_line(line.as_bytes()) else {
            panic!("{variant}: not a send");
        };
        let delivered = DeliveryTemplate::new(&send).into_line(7);
        assert!(delivered.ends_with(b", \"index\": 7}\r\n"), "{variant}");
        group.bench_function(variant, |b| {
            b.iter(|| DeliveryTemplate::new(black_box(&send)).into_line(black_box(7)))
        });
    }
    group.finish();
}

/// Framing of a buffer holding many lines, as one socket read delivers them.
fn frame(c: &mut Criterion) {
    const LINES: usize = 100;
    let mut group = c.benchmark_group("frame");
    TIMING.apply(&mut group);
    group.throughput(Throughput::Elements(1));
    group.throughput(Throughput::Elements(LINES as u64));
    for (variant, line) in [
        ("short", send_line("hello")),
        ("1KiB", send_line(&msg_1k())),
    ] {
        let input = format!("{line}\r\n").repeat(LINES);
        let mut codec = LineCodec::new(mq_actix::config::DEFAULT_MAX_LINE);
        let mut buf = BytesMut::from(input.as_bytes());
        let mut framed = 0;
        while let Some(Framed::Line(_)) = codec.decode(&mut buf).unwrap() {
            framed += 1;
        }
        assert_eq!(framed, LINES, "{variant}");
        group.bench_function(variant, |b| {
            b.iter_batched_ref(
                || BytesMut::from(input.as_bytes()),
                |buf| {
                    let mut codec = LineCodec::new(mq_actix::config::DEFAULT_MAX_LINE);
                    while let Ok(Some(line)) = codec.decode(buf) {
                        black_box(line);
                    }
                },
                criterion::BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

criterion_group!(
    benches,
    parse_subscribe,
    parse_unsubscribe,
    parse_send,
    parse_invalid,
    encode_delivery,
    frame
);
criterion_main!(benches);
