//! Every scenario, small, against the real `mq-actix` running in-process on
//! an ephemeral port: the figures add up and nothing is violated.

mod support;

use mq_actix::config::Config;
use mq_actix::testing::BackgroundServer;
use support::{loadgen, loadgen_at, FakeServer, Fault, Run};

fn broker() -> BackgroundServer {
    BackgroundServer::start(Config::default()).expect("start mq-actix")
}

fn assert_clean(run: &Run) {
    assert!(run.succeeded(), "{}", run.explain());
    assert_eq!(run.num("/violations"), 0.0, "{}", run.explain());
    assert_eq!(run.num("/connection_errors"), 0.0, "{}", run.explain());
}

#[test]
fn fanout_delivers_everything_to_everyone() {
    let server = broker();
    // The server runs in this process.
    let pid = std::process::id().to_string();
    let run = loadgen(
        server.addr(),
        &[
            "fanout",
            "--clients",
            "20",
            "--publishers",
            "2",
            "--messages",
            "2000",
            "--server-pid",
            &pid,
        ],
    );
    assert_clean(&run);
    assert_eq!(run.num("/published"), 2000.0);
    assert_eq!(run.num("/acked"), 2000.0);
    assert_eq!(run.num("/deliveries"), 40_000.0);
    assert_eq!(run.num("/owed"), 40_000.0);
    assert!(run.num("/publish_rate") > 0.0 && run.num("/delivery_rate") > 0.0);
    assert_eq!(run.num("/latency/samples"), 40_000.0);
    assert!(run.num("/latency/p50_us") > 0.0);
    assert!(run.num("/latency/p50_us") <= run.num("/latency/max_us"));
    assert_eq!(run.report["scenario"], "fanout");
    assert!(run.report["timestamp"].is_string());
    assert!(run.num("/loadgen_cpu_s_per_delivery") > 0.0);
    assert!(run.num("/server_cpu_s") >= 0.0);
    assert!(run.report["server_cpu_s_per_delivery"].is_number());
}

#[test]
fn the_bare_form_is_a_fanout_on_the_named_topic_and_can_be_repeated() {
    let server = broker();
    for _ in 0..2 {
        // The second run finds the first run's messages cached on the topic;
        // its subscribers must not be handed them.
        let run = loadgen(
            server.addr(),
            &["--clients", "5", "--topic", "foo", "--duration", "0.5"],
        );
        assert_clean(&run);
        assert_eq!(run.report["params"]["topic"], "foo");
        assert!(run.num("/deliveries") > 0.0);
        assert_eq!(run.num("/deliveries"), 5.0 * run.num("/published"));
    }
}

#[test]
fn fanout_at_a_fixed_rate() {
    let server = broker();
    let run = loadgen(
        server.addr(),
        &[
            "fanout",
            "--clients",
            "5",
            "--rate",
            "2000",
            "--duration",
            "1",
        ],
    );
    assert_clean(&run);
    // Never more than the rate; fewer only if a busy machine starves the
    // publisher near the deadline.
    let published = run.num("/published");
    assert!((1000.0..=2100.0).contains(&published), "{}", run.explain());
    assert_eq!(run.report["params"]["load"], "open");
}

#[test]
fn pairs_deliver_each_message_to_its_one_receiver() {
    let server = broker();
    let run = loadgen(
        server.addr(),
        &["pairs", "--clients", "12", "--messages", "3000"],
    );
    assert_clean(&run);
    assert_eq!(run.num("/published"), 3000.0);
    assert_eq!(run.num("/deliveries"), 3000.0);
}

#[test]
fn queue_shares_evenly_and_exactly_once() {
    let server = broker();
    let run = loadgen(
        server.addr(),
        &[
            "queue",
            "--clients",
            "4",
            "--publishers",
            "2",
            "--messages",
            "2000",
        ],
    );
    assert_clean(&run);
    assert_eq!(run.num("/deliveries"), 2000.0);
    let shares: Vec<_> = run.report["queue"]["per_worker"]
        .as_array()
        .expect("per-worker counts")
        .iter()
        .filter_map(|n| n.as_u64())
        .collect();
    assert_eq!(shares, [500, 500, 500, 500], "{}", run.explain());
}

#[test]
fn replay_hands_each_subscriber_its_suffix() {
    let server = broker();
    let run = loadgen(
        server.addr(),
        &["replay", "--clients", "5", "--messages", "100"],
    );
    assert_clean(&run);
    // Subscribers ask from messages 0, 20, 40, 60 and 80.
    assert_eq!(run.num("/deliveries"), (100 + 80 + 60 + 40 + 20) as f64);
    assert!(run.num("/replay/replay_rate") > 0.0);

    // More than the cache holds: everyone asking from before it gets the
    // last 100.
    let run = loadgen(
        server.addr(),
        &["replay", "--clients", "3", "--messages", "300"],
    );
    assert_clean(&run);
    assert_eq!(run.num("/deliveries"), (100 + 100 + 100) as f64);
}

#[test]
fn idle_connections_all_answer_after_the_hold() {
    let server = broker();
    let run = loadgen(
        server.addr(),
        &["conns", "--clients", "300", "--hold", "0.5"],
    );
    assert_clean(&run);
    assert_eq!(run.num("/conns/connections"), 300.0);
    assert_eq!(run.num("/conns/answered"), 300.0);
}

#[test]
fn one_broker_named_twice_passes_every_check() {
    // A list of servers is meant for the nodes of one broker; one broker
    // named twice takes both halves of the connections, and nothing that
    // is owed may change.
    let server = broker();
    let twice = format!("{0},{0}", server.addr());
    let fanout = loadgen_at(
        &twice,
        &[
            "fanout",
            "--clients",
            "5",
            "--publishers",
            "2",
            "--messages",
            "1000",
        ],
    );
    assert_clean(&fanout);
    assert_eq!(fanout.num("/deliveries"), 5000.0);
    assert_eq!(fanout.report["server"], twice.as_str());
    let pairs = loadgen_at(&twice, &["pairs", "--clients", "5", "--messages", "1000"]);
    assert_clean(&pairs);
    assert_eq!(pairs.num("/deliveries"), 1000.0);
}

/// Not a check but a measurement, run by hand: what loadgen can send to a
/// server that only acknowledges, next to what `mq-actix` accepts.
/// `cargo test --release -p loadgen --test broker -- --ignored --nocapture`
#[test]
#[ignore]
fn loadgen_outruns_the_broker() {
    let args = [
        "fanout",
        "--clients",
        "0",
        "--publishers",
        "4",
        "--duration",
        "3",
    ];
    let sink = FakeServer::start(Fault::AckOnly);
    let to_sink = loadgen(sink.addr(), &args);
    assert_clean(&to_sink);
    let server = broker();
    let to_broker = loadgen(server.addr(), &args);
    assert_clean(&to_broker);
    println!(
        "publishes/s: {:.0} to an ack-only server, {:.0} to mq-actix",
        to_sink.num("/publish_rate"),
        to_broker.num("/publish_rate")
    );
    assert!(to_sink.num("/publish_rate") > to_broker.num("/publish_rate"));
}
