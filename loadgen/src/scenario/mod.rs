//! The loads loadgen puts on a server, and what they share: opening many
//! connections, driving the measured phase to a bounded end, and turning what
//! the peers saw into a report.

mod conns;
mod fanout;
mod pairs;
mod queue;
mod replay;

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{anyhow, ensure, Context};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_rustls::TlsConnector;

use crate::check::{Expect, Published, Receiver, Violations};
use crate::cli::{Args, HostPort, Scenario};
use crate::client::{self, Conn, Delivery, Endpoint, Servers, Subscription, Topic};
use crate::limits::explain_connect_error;
use crate::peer::{self, Outcome, Peer};
use crate::phase::Phase;
use crate::progress::Progress;
use crate::publish::{Pace, SendPlan};
use crate::report::{self, Latency, Params, Report};
use crate::stats::{self, Clock, Live};

/// Connections being opened at once: enough to open thousands in seconds,
/// few enough not to overflow the server's accept backlog.
const CONNECTING_AT_ONCE: usize = 100;

/// How often the driver looks at the counters.
const TICK: Duration = Duration::from_millis(20);

/// How long receivers keep listening after everything owed has arrived, to
/// catch duplicates and strays that come after the last owed message.
const LINGER: Duration = Duration::from_millis(200);

/// How long after the end of publishing a run is abandoned whatever its
/// progress, so a server that trickles cannot keep loadgen forever.
const GRACE: Duration = Duration::from_secs(30);

/// Errors kept word for word in a report.
const ERRORS_KEPT: usize = 5;

/// What every scenario needs.
#[derive(Debug)]
pub struct Ctx {
    pub args: Args,
    /// `--addr`, which each role's connections take in turn.
    pub servers: Servers,
    /// Random tag of this run, carried in every message.
    pub run: u32,
    /// `--topic`, or a fresh name.
    pub topic: String,
    pub clock: Clock,
    pub progress: Progress,
}

/// Runs the scenario the arguments ask for, clearing the progress line at
/// the end.
pub async fn run(args: Args, progress: Progress) -> anyhow::Result<Report> {
    ensure!(
        args.scenario.supports(args.proto),
        "{} cannot be run over {}: {}",
        args.scenario.name(),
        args.proto.name(),
        match args.scenario {
            Scenario::Queue => "Redis pub/sub has no delivery to one of many subscribers",
            _ => "only mq keeps messages to replay",
        }
    );
    let connector = args.tls_ca.as_deref().map(client::connector).transpose()?;
    let mut endpoints = Vec::with_capacity(args.addr.len());
    for server in &args.addr {
        endpoints.push(endpoint(&args, server, connector.as_ref()).await?);
    }
    let servers = Servers::new(endpoints)?;
    let run = random_tag();
    let topic = args
        .topic
        .clone()
        .unwrap_or_else(|| format!("loadgen-{run:08x}"));
    let ctx = Ctx {
        args,
        servers,
        run,
        topic,
        clock: Clock::start(),
        progress,
    };
    let report = match ctx.args.scenario {
        Scenario::Fanout => fanout::run(&ctx).await,
        Scenario::Pairs => pairs::run(&ctx).await,
        Scenario::Queue => queue::run(&ctx).await,
        Scenario::Replay => replay::run(&ctx).await,
        Scenario::Conns => conns::run(&ctx).await,
    };
    ctx.progress.finish();
    report
}

/// Resolves `server` once, before any connection, so that a name that does
/// not resolve (or cannot name a TLS server) stops the run at once rather
/// than failing thousands of connections one by one.
async fn endpoint(
    args: &Args,
    server: &HostPort,
    connector: Option<&TlsConnector>,
) -> anyhow::Result<Endpoint> {
    let addr = tokio::net::lookup_host((server.host.as_str(), server.port))
        .await
        .with_context(|| format!("cannot resolve --addr {server}"))?
        .next()
        .ok_or_else(|| anyhow!("--addr {server} resolves to no address"))?;
    let Some(connector) = connector else {
        return Ok(Endpoint::plain(addr));
    };
    let name = match &args.tls_server_name {
        Some(name) => name.clone(),
        None => server.server_name().map_err(|e| {
            anyhow!(
                "the host of --addr {server} cannot name a TLS server: {e}; give --tls-server-name"
            )
        })?,
    };
    Ok(Endpoint::tls(addr, connector.clone(), name))
}

/// A tag that differs between runs, without a random-number crate.
fn random_tag() -> u32 {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    if let Ok(since) = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH) {
        hasher.write_u128(since.as_nanos());
    }
    hasher.finish() as u32
}

/// Connections opened by [`connect_all`].
pub struct Connected {
    pub conns: Vec<Conn>,
    /// How long each took to connect and subscribe, in nanoseconds.
    pub setup_ns: Vec<u64>,
    /// How long opening all of them took.
    pub elapsed: Duration,
}

/// Opens `n` connections, [`CONNECTING_AT_ONCE`] at a time, connection `i`
/// to the `i`-th of `--addr`'s servers in turn, subscribing it to
/// `subscription(i)` when there is one. Any failure fails the whole run at
/// once: results with connections missing would mislead.
pub async fn connect_all(
    ctx: &Ctx,
    what: &str,
    n: usize,
    subscription: impl Fn(usize) -> Option<Subscription>,
) -> anyhow::Result<Connected> {
    let started = Instant::now();
    let gate = Arc::new(Semaphore::new(CONNECTING_AT_ONCE));
    let mut tasks = JoinSet::new();
    for i in 0..n {
        let gate = gate.clone();
        let server = ctx.servers.for_connection(i).clone();
        let (addr, proto, wait) = (server.addr, ctx.args.proto, ctx.args.timeout);
        let sub = subscription(i);
        tasks.spawn(async move {
            let _permit = gate.acquire_owned().await;
            let begun = Instant::now();
            let mut conn =
                match tokio::time::timeout(wait, Conn::connect(&server, proto, wait)).await {
                    Err(_) => return Err(anyhow!("connecting to {addr} timed out")),
                    Ok(Err(e)) => {
                        return Err(anyhow!(
                            "cannot connect to {addr}: {}",
                            explain_connect_error(&e)
                        ))
                    }
                    Ok(Ok(conn)) => conn,
                };
            if let Some(sub) = sub {
                let early = conn
                    .subscribe(&sub, wait)
                    .await
                    .with_context(|| format!("subscribing to {:?}", sub.topic.name))?;
                if early > 0 {
                    return Err(anyhow!(
                        "{early} deliveries arrived before the reply to subscribe"
                    ));
                }
            }
            let took = u64::try_from(begun.elapsed().as_nanos()).unwrap_or(u64::MAX);
            Ok((i, conn, took))
        });
    }
    let mut slots: Vec<Option<(Conn, u64)>> = (0..n).map(|_| None).collect();
    let mut done = 0;
    while let Some(joined) = tasks.join_next().await {
        let (i, conn, took) = joined
            .context("a connecting task failed")?
            .with_context(|| format!("opening {n} {what} connections"))?;
        slots[i] = Some((conn, took));
        done += 1;
        if done % 100 == 0 || done == n {
            ctx.progress
                .phase(format!("connecting {what}s: {done}/{n}"));
        }
    }
    let (conns, setup_ns) = slots.into_iter().flatten().unzip();
    Ok(Connected {
        conns,
        setup_ns,
        elapsed: started.elapsed(),
    })
}

/// A publisher's plan from the command line: its share of `--messages` and
/// `--rate`, to `targets` in turn. The deadline is set when the phase starts.
pub fn plan(
    ctx: &Ctx,
    publisher: usize,
    publishers: usize,
    targets: Vec<Topic>,
    delivery: Delivery,
) -> SendPlan {
    let args = &ctx.args;
    let p = publishers as u64;
    SendPlan {
        publisher: publisher as u32,
        run: ctx.run,
        targets: targets.into(),
        delivery,
        quota: args
            .messages
            .map(|m| m / p + u64::from((publisher as u64) < m % p)),
        until: None,
        pace: match args.rate {
            Some(total) => Pace::Open {
                per_second: total / publishers as f64,
            },
            None => Pace::Closed,
        },
        size: args.size,
    }
}

/// The measured phase of a load on one topic, as fanout and queue run it:
/// the `receiving` connections (numbered first) each check what they get
/// with a fresh `expect()`, and the `sending` ones publish to `topic` with
/// `delivery`. The two loads differ only in those and in what is `owed`, so
/// they share the rest from here.
pub async fn drive_one_topic(
    ctx: &Ctx,
    topic: &Topic,
    receiving: Connected,
    sending: Connected,
    delivery: Delivery,
    expect: impl Fn() -> Expect,
    owed: impl Fn(&[u64]) -> u64,
) -> anyhow::Result<(Arc<Live>, Driven)> {
    let first_sender = receiving.conns.len();
    let publishers = sending.conns.len();
    let window = ctx.args.window as usize;
    let receivers = receiving.conns.into_iter().enumerate().map(|(i, conn)| {
        Peer::receiver(
            i,
            conn,
            Receiver::new(topic.name.clone(), ctx.run, expect()),
        )
    });
    let senders = sending.conns.into_iter().enumerate().map(|(p, conn)| {
        let plan = plan(ctx, p, publishers, vec![topic.clone()], delivery);
        Peer::publisher(first_sender + p, conn, window, plan)
    });
    let peers = receivers.chain(senders).collect();
    let live = Arc::new(Live::new(ctx.clock, publishers)?);
    let driven = drive(ctx, &live, ctx.args.scenario.name(), peers, owed).await;
    Ok((live, driven))
}

/// What a measured phase produced.
pub struct Driven {
    pub outcomes: Vec<Outcome>,
    /// What each publisher sent and had acknowledged.
    pub published: Published,
    /// Deliveries owed to all receivers together.
    pub owed: u64,
    /// When the phase started, on the run's clock.
    pub start_ns: u64,
    pub elapsed: Duration,
    /// CPU time loadgen used in the phase.
    pub cpu: Option<Duration>,
    /// CPU time the server used in the phase, with `--server-pid`.
    pub server_cpu: Option<Duration>,
    /// Why the phase was cut short, when it was.
    pub cut_short: Vec<String>,
}

/// Runs the measured phase: starts every peer, lets the publishers publish
/// until their deadline or quota, waits for every owed delivery (`owed`
/// computes them from the acknowledged counts per publisher), and stops
/// everyone. Every wait
/// is bounded: by `--timeout` without progress, and by [`GRACE`] after the
/// end of publishing.
pub async fn drive(
    ctx: &Ctx,
    live: &Arc<Live>,
    label: &str,
    mut peers: Vec<Peer>,
    owed: impl Fn(&[u64]) -> u64,
) -> Driven {
    let args = &ctx.args;
    let cpu_before = stats::cpu_time();
    let server_cpu = || {
        let pid = args.server_pid?;
        stats::process_cpu_time(pid)
            .map_err(|e| eprintln!("loadgen: the CPU time of --server-pid {pid}: {e:#}"))
            .ok()
    };
    let server_cpu_before = server_cpu();
    let start = Instant::now();
    let until = args.publish_for().map(|d| start + d);
    let hard_deadline = until.map(|u| u + GRACE);
    let publishers = peers.iter().filter(|p| p.send.is_some()).count();
    for plan in peers.iter_mut().filter_map(|p| p.send.as_mut()) {
        plan.until = until;
    }
    let (phase, watching) = watch::channel(Phase::Run);
    let handles: Vec<_> = peers
        .into_iter()
        .map(|p| tokio::spawn(peer::run(p, live.clone(), watching.clone(), args.timeout)))
        .collect();
    let mut cut_short = Vec::new();
    let past_deadline = || hard_deadline.is_some_and(|d| Instant::now() >= d);

    let mut watch = Progressing::new(live.acked.load(Ordering::Relaxed));
    while live.publishers_done.load(Ordering::Acquire) < publishers {
        tokio::time::sleep(TICK).await;
        ctx.progress.rates(label, live);
        let acked = live.acked.load(Ordering::Relaxed);
        let outstanding = live.sent.load(Ordering::Relaxed) > acked;
        if watch.stalled(acked, outstanding, args.timeout) {
            cut_short.push(format!(
                "no reply from the server for {} with sends outstanding",
                humantime::format_duration(args.timeout)
            ));
            break;
        }
        if past_deadline() {
            cut_short.push("the hard deadline passed while publishing".into());
            break;
        }
    }
    phase.send_replace(Phase::StopSending);
    let stop_waiting = Instant::now() + args.timeout;
    while live.writers_stopped.load(Ordering::Acquire) < publishers && Instant::now() < stop_waiting
    {
        tokio::time::sleep(TICK).await;
    }
    let published = live.published();
    let owed = owed(&published.acked);

    ctx.progress
        .phase(format!("{label}: waiting for the last deliveries"));
    let mut watch = Progressing::new(live.fresh.load(Ordering::Relaxed));
    loop {
        let fresh = live.fresh.load(Ordering::Relaxed);
        if fresh >= owed {
            break;
        }
        if watch.stalled(fresh, true, args.timeout) {
            cut_short.push(format!(
                "{} owed deliveries had not arrived after {} without progress",
                owed - fresh,
                humantime::format_duration(args.timeout)
            ));
            break;
        }
        if past_deadline() {
            cut_short.push("the hard deadline passed while waiting for deliveries".into());
            break;
        }
        tokio::time::sleep(TICK).await;
        ctx.progress.rates(label, live);
    }
    tokio::time::sleep(LINGER).await;
    phase.send_replace(Phase::Stop);

    let stop_by = Instant::now() + args.timeout;
    let mut outcomes = Vec::with_capacity(handles.len());
    for handle in handles {
        let abort = handle.abort_handle();
        match tokio::time::timeout_at(stop_by, handle).await {
            Ok(Ok(outcome)) => outcomes.push(outcome),
            Ok(Err(e)) => cut_short.push(format!("a connection task failed: {e}")),
            Err(_) => {
                abort.abort();
                cut_short.push("a connection task did not stop in time".into());
            }
        }
    }
    Driven {
        outcomes,
        published,
        owed,
        start_ns: ctx.clock.ns_at(start),
        elapsed: start.elapsed(),
        cpu: stats::cpu_time()
            .zip(cpu_before)
            .map(|(after, before)| after.saturating_sub(before)),
        server_cpu: server_cpu_before.and_then(|before| Some(server_cpu()?.saturating_sub(before))),
        cut_short,
    }
}

/// Tells when a counter has not moved for too long.
struct Progressing {
    value: u64,
    since: Instant,
}

impl Progressing {
    fn new(value: u64) -> Progressing {
        Progressing {
            value,
            since: Instant::now(),
        }
    }

    /// Whether `value` has stood still for `limit` while `waiting` for it.
    fn stalled(&mut self, value: u64, waiting: bool, limit: Duration) -> bool {
        if value != self.value || !waiting {
            self.value = value;
            self.since = Instant::now();
        }
        self.since.elapsed() >= limit
    }
}

/// A report with the run's identity and nothing measured yet.
pub fn blank_report(ctx: &Ctx, params: Params) -> Report {
    Report {
        scenario: ctx.args.scenario.name(),
        timestamp: report::timestamp(),
        git_revision: report::git_revision(),
        server: ctx.servers.describe(),
        proto: ctx.args.proto.name(),
        params,
        elapsed_s: 0.0,
        published: 0,
        acked: 0,
        deliveries: 0,
        owed: 0,
        publish_rate: 0.0,
        delivery_rate: 0.0,
        latency: None,
        loadgen_cpu_s: None,
        loadgen_cpu_s_per_delivery: None,
        server_cpu_s: None,
        server_cpu_s_per_delivery: None,
        violations: 0,
        correctness: Violations::default(),
        connection_errors: 0,
        errors: Vec::new(),
        queue: None,
        replay: None,
        conns: None,
    }
}

/// Turns a measured phase into a report: finishes every receiver's checks
/// against what the publishers did, adds up the figures and the violations.
pub fn summarize(ctx: &Ctx, live: &Live, driven: Driven, params: Params) -> anyhow::Result<Report> {
    let mut report = blank_report(ctx, params);
    let mut correctness = Violations::default();
    for outcome in driven.outcomes {
        report.published += outcome.sent;
        report.acked += outcome.acked;
        correctness.merge(outcome.violations);
        if let Some(recv) = outcome.recv {
            correctness.merge(recv.finish(&driven.published));
        }
        if let Some(error) = outcome.error {
            report.connection_errors += 1;
            if report.errors.len() < ERRORS_KEPT {
                report
                    .errors
                    .push(format!("connection {}: {error}", outcome.id));
            }
        }
    }
    report.errors.extend(driven.cut_short);
    report.violations = correctness.total();
    report.correctness = correctness;
    report.deliveries = live.fresh.load(Ordering::Relaxed);
    report.owed = driven.owed;
    report.elapsed_s = driven.elapsed.as_secs_f64();
    let per_second = |n: u64, until_ns: u64| {
        let secs = until_ns.saturating_sub(driven.start_ns) as f64 / 1e9;
        if secs > 0.0 {
            n as f64 / secs
        } else {
            0.0
        }
    };
    report.publish_rate = per_second(report.acked, live.last_ack_ns.load(Ordering::Relaxed));
    report.delivery_rate = per_second(
        report.deliveries,
        live.last_delivery_ns.load(Ordering::Relaxed),
    );
    report.latency = Latency::of("end_to_end", &live.latencies.merged()?);
    let per_delivery = |cpu: Option<f64>| {
        cpu.filter(|_| report.deliveries > 0)
            .map(|cpu| cpu / report.deliveries as f64)
    };
    report.loadgen_cpu_s = driven.cpu.map(|cpu| cpu.as_secs_f64());
    report.loadgen_cpu_s_per_delivery = per_delivery(report.loadgen_cpu_s);
    report.server_cpu_s = driven.server_cpu.map(|cpu| cpu.as_secs_f64());
    report.server_cpu_s_per_delivery = per_delivery(report.server_cpu_s);
    Ok(report)
}
