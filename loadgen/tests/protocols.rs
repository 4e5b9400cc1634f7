//! `--proto redis` and `--proto nats` against fake servers of each dialect:
//! without an index from the server, the per-publisher sequence in each
//! message still catches every fault.

mod support;

use support::{loadgen, Dialect, FakeServer, Fault};

const FANOUT: &[&str] = &[
    "fanout",
    "--clients",
    "3",
    "--publishers",
    "2",
    "--messages",
    "300",
];

fn run(dialect: Dialect, fault: Fault, args: &[&str]) -> support::Run {
    let server = FakeServer::speaking(dialect, fault, 10);
    let proto = match dialect {
        Dialect::Mq => "mq",
        Dialect::Nats => "nats",
        Dialect::Redis => "redis",
    };
    let mut all = vec!["--proto", proto];
    all.extend_from_slice(args);
    loadgen(server.addr(), &all)
}

#[test]
fn every_fault_is_caught_over_nats() {
    every_fault_is_caught(Dialect::Nats);
}

#[test]
fn every_fault_is_caught_over_redis() {
    every_fault_is_caught(Dialect::Redis);
}

fn every_fault_is_caught(dialect: Dialect) {
    {
        let clean = run(dialect, Fault::None, FANOUT);
        assert!(clean.succeeded(), "{dialect:?}: {}", clean.explain());
        assert_eq!(
            clean.num("/deliveries"),
            900.0,
            "{dialect:?}: {}",
            clean.explain()
        );
        assert_eq!(
            clean.num("/acked"),
            300.0,
            "{dialect:?}: {}",
            clean.explain()
        );
        assert!(clean.num("/loadgen_cpu_s_per_delivery") > 0.0);
        for (fault, kind) in [
            (Fault::Drop, "missing"),
            (Fault::Duplicate, "duplicate"),
            (Fault::Reorder, "out_of_order"),
        ] {
            let broken = run(dialect, fault, FANOUT);
            assert!(
                !broken.succeeded(),
                "{dialect:?} {fault:?}: {}",
                broken.explain()
            );
            let pointer = format!("/correctness/{kind}");
            assert_eq!(
                broken.num(&pointer),
                1.0,
                "{dialect:?} {fault:?}: {}",
                broken.explain()
            );
            assert_eq!(
                broken.num("/violations"),
                1.0,
                "{dialect:?} {fault:?}: {}",
                broken.explain()
            );
        }
    }
}

#[test]
fn pairs_and_conns_run_over_both() {
    for dialect in [Dialect::Nats, Dialect::Redis] {
        let pairs = run(
            dialect,
            Fault::None,
            &["pairs", "--clients", "4", "--messages", "400"],
        );
        assert!(pairs.succeeded(), "{dialect:?}: {}", pairs.explain());
        assert_eq!(pairs.num("/deliveries"), 400.0);
        let conns = run(
            dialect,
            Fault::None,
            &["conns", "--clients", "20", "--hold", "0.1"],
        );
        assert!(conns.succeeded(), "{dialect:?}: {}", conns.explain());
        assert_eq!(conns.num("/conns/answered"), 20.0);
    }
}

#[test]
fn a_nats_queue_group_shares_each_message_once() {
    let args = [
        "queue",
        "--clients",
        "3",
        "--messages",
        "300",
        "--window",
        "7",
    ];
    let clean = run(Dialect::Nats, Fault::None, &args);
    assert!(clean.succeeded(), "{}", clean.explain());
    assert_eq!(clean.num("/deliveries"), 300.0);
    let broken = run(Dialect::Nats, Fault::Duplicate, &args);
    assert_eq!(
        broken.num("/correctness/duplicate"),
        1.0,
        "{}",
        broken.explain()
    );
}

#[test]
fn loads_a_protocol_cannot_express_are_refused() {
    for (proto, scenario) in [("nats", "replay"), ("redis", "replay"), ("redis", "queue")] {
        let server = FakeServer::start(Fault::None);
        let run = loadgen(server.addr(), &["--proto", proto, scenario]);
        assert!(!run.succeeded());
        let stderr = String::from_utf8_lossy(&run.output.stderr);
        assert!(
            stderr.contains("cannot be run over"),
            "{proto} {scenario}: {stderr}"
        );
    }
}
