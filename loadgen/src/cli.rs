//! The command line: every knob of a run, with its default in `--help`.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use clap::error::ErrorKind;
use clap::{CommandFactory, Parser, ValueEnum};
use tokio_rustls::rustls::pki_types::ServerName;

use crate::client::Proto;

/// Floods a server that speaks the mq protocol (or Redis or NATS pub/sub)
/// and checks everything that comes back.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "loadgen",
    version,
    about,
    long_about = "Floods a server that speaks the mq protocol (docs/PROTOCOL.md in the mq-actix \
repository), or Redis or NATS pub/sub for comparison, and checks everything that comes back: \
each receiver must get every message it is owed exactly once, in increasing index order, and \
nothing else.\n\n\
Example: loadgen --clients 1000 --topic foo",
    after_help = "Exit status: 0 when every check passed, 1 on any correctness violation, \
connection failure or error, 2 on a usage error."
)]
pub struct Args {
    /// Which load to run
    #[arg(value_enum, default_value_t = Scenario::Fanout)]
    pub scenario: Scenario,

    /// Server to test, as HOST:PORT ([::1]:PORT for an IPv6 address); a
    /// comma-separated list (a:7000,b:7000) spreads the connections over
    /// the servers, the subscribers (or clients, or workers) in turn and the
    /// publishers in turn, with the same checks as against one
    #[arg(
        long,
        value_name = "HOST:PORT[,...]",
        value_parser = parse_host_port,
        value_delimiter = ',',
        default_value = "127.0.0.1:7000"
    )]
    pub addr: Vec<HostPort>,

    /// Protocol the server speaks (redis and nats: fanout, pairs, conns;
    /// nats also queue, through a queue group)
    #[arg(long, value_enum, default_value_t = Proto::Mq)]
    pub proto: Proto,

    /// Speak TLS on every connection, trusting only the certificates in
    /// FILE (PEM): the CA that signed the server's certificate, or that
    /// self-signed certificate itself; mq only
    /// [default: plain TCP]
    #[arg(long, value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,

    /// The name the server's certificate must be valid for, a DNS name or
    /// an IP address
    /// [default: the host part of each --addr]
    #[arg(long, value_name = "NAME", requires = "tls_ca", value_parser = parse_server_name)]
    pub tls_server_name: Option<ServerName<'static>>,

    /// Receiving connections: subscribers (fanout, replay), clients (pairs),
    /// workers (queue), idle connections (conns)
    #[arg(long, short, default_value_t = 10)]
    pub clients: usize,

    /// Publishing connections (fanout, queue)
    #[arg(long, short, default_value_t = 1)]
    pub publishers: usize,

    /// Topic name; for pairs, the prefix of each client's topic
    /// [default: a fresh random name]
    #[arg(long, short)]
    pub topic: Option<String>,

    /// Most unacknowledged sends per publisher
    #[arg(long, short, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..))]
    pub window: u32,

    /// Open loop: messages per second in total, spread evenly over the
    /// publishers; latency counts from each message's scheduled time
    /// [default: closed loop, as fast as the window allows]
    #[arg(long, short, value_parser = parse_rate)]
    pub rate: Option<f64>,

    /// How long to publish: 10, 10s, 1m30s; the run gives up 30s after it
    /// [default: 10s, or no time limit when --messages is given]
    #[arg(long, short, value_parser = parse_duration)]
    pub duration: Option<Duration>,

    /// Messages to publish in total, spread over the publishers; for replay,
    /// the messages published before the subscribers come
    /// [default: no count limit; for replay, --cache-size]
    #[arg(long, short)]
    pub messages: Option<u64>,

    /// Length of each message's text in bytes (never shorter than its header,
    /// about 30 bytes)
    #[arg(long, short, default_value_t = 64)]
    pub size: usize,

    /// conns: how long to hold the connections open
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    pub hold: Duration,

    /// The server's process id, to report its CPU time per delivery beside
    /// loadgen's (and in conns its memory per connection); Linux only
    /// [default: none, not reported]
    #[arg(long)]
    pub server_pid: Option<u32>,

    /// replay: the server's CACHE_SIZE, which decides the suffix each
    /// subscriber is owed
    #[arg(long, default_value_t = 100)]
    pub cache_size: u64,

    /// Give up on the server after this long without progress
    #[arg(long, value_parser = parse_duration, default_value = "5s")]
    pub timeout: Duration,

    /// Append the results to this file as one JSON object per line
    /// [default: none, table only]
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,

    /// Print no progress line
    #[arg(long, short)]
    pub quiet: bool,
}

/// A server as `--addr` names it. The host is kept as typed, not only
/// resolved, as it is the name a TLS certificate is checked against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort {
    pub host: String,
    pub port: u16,
}

impl HostPort {
    /// The host as a TLS server name.
    pub fn server_name(&self) -> Result<ServerName<'static>, String> {
        parse_server_name(&self.host)
    }
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// The loads loadgen can put on a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// --clients subscribers on one topic, --publishers sending to all of them
    Fanout,
    /// --clients clients, each subscribed to its own topic and sending to its
    /// neighbours' topics
    Pairs,
    /// --clients workers on one topic, --publishers sending `delivery: one`;
    /// shows how evenly round-robin shares the work
    Queue,
    /// publishes --messages, then --clients subscribers ask for the cache
    /// with `last_seen`, each owed an exact suffix
    Replay,
    /// opens --clients idle subscribed connections, holds them, checks that
    /// they all still answer
    Conns,
}

impl Scenario {
    /// Whether `proto` can express this load: Redis pub/sub has no
    /// one-of-many delivery, and neither Redis nor NATS core keeps messages
    /// to replay.
    pub fn supports(self, proto: Proto) -> bool {
        match self {
            Scenario::Fanout | Scenario::Pairs | Scenario::Conns => true,
            Scenario::Queue => proto != Proto::Redis,
            Scenario::Replay => proto == Proto::Mq,
        }
    }

    /// The scenario's name, as typed and as reported.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Fanout => "fanout",
            Scenario::Pairs => "pairs",
            Scenario::Queue => "queue",
            Scenario::Replay => "replay",
            Scenario::Conns => "conns",
        }
    }
}

impl Args {
    /// Refuses, as clap refuses a bad flag (exit status 2), what clap
    /// cannot tell alone: flags that do not go together.
    pub fn check(&self) -> Result<(), clap::Error> {
        if self.tls_ca.is_some() && self.proto != Proto::Mq {
            return Err(Args::command().error(
                ErrorKind::ArgumentConflict,
                format!(
                    "--tls-ca works with --proto mq only: loadgen speaks {} in plain text",
                    self.proto.name()
                ),
            ));
        }
        Ok(())
    }

    /// How long to publish: `--duration`, else 10 s unless a message count
    /// bounds the run instead.
    pub fn publish_for(&self) -> Option<Duration> {
        const DEFAULT: Duration = Duration::from_secs(10);
        match (self.duration, self.messages) {
            (Some(d), _) => Some(d),
            (None, Some(_)) => None,
            (None, None) => Some(DEFAULT),
        }
    }
}

/// Reads a duration as plain seconds (`5`, `0.5`) or with units (`5s`,
/// `1m30s`, `250ms`).
fn parse_duration(text: &str) -> Result<Duration, String> {
    match text.trim().parse::<f64>() {
        Ok(secs) if secs.is_finite() && secs >= 0.0 => Ok(Duration::from_secs_f64(secs)),
        Ok(_) => Err(format!("{text:?} is not a duration")),
        Err(_) => humantime::parse_duration(text.trim()).map_err(|e| e.to_string()),
    }
}

/// Reads `HOST:PORT`, with an IPv6 address in brackets (`[::1]:7000`), as
/// a bare one leaves no way to tell its last group from the port.
fn parse_host_port(text: &str) -> Result<HostPort, String> {
    let bad = || format!("{text:?} is not HOST:PORT");
    let (host, port) = text.trim().rsplit_once(':').ok_or_else(bad)?;
    let port = port.parse().map_err(|_| bad())?;
    let host = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(v6) => v6,
        None if host.contains(':') => {
            return Err(format!(
                "{text:?}: write an IPv6 address in brackets, as in [::1]:7000"
            ))
        }
        None => host,
    };
    if host.is_empty() {
        return Err(bad());
    }
    Ok(HostPort {
        host: host.to_string(),
        port,
    })
}

/// Reads a TLS server name: a DNS name or an IP address.
fn parse_server_name(text: &str) -> Result<ServerName<'static>, String> {
    ServerName::try_from(text.to_string())
        .map_err(|_| format!("{text:?} is neither a DNS name nor an IP address"))
}

fn parse_rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(rate) if rate.is_finite() && rate > 0.0 => Ok(rate),
        _ => Err(format!(
            "{text:?} is not a positive number of messages per second"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_is_consistent() {
        Args::command().debug_assert();
    }

    #[test]
    fn durations_take_plain_seconds_or_units() {
        assert_eq!(parse_duration("5"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("0.5"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert!(parse_duration("-1").is_err());
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn the_bare_form_is_fanout() {
        let args =
            Args::try_parse_from(["loadgen", "--clients", "1000", "--topic", "foo"]).unwrap();
        assert_eq!(args.scenario, Scenario::Fanout);
        assert_eq!((args.clients, args.topic.as_deref()), (1000, Some("foo")));
        assert_eq!(args.publish_for(), Some(Duration::from_secs(10)));
    }

    #[test]
    fn a_message_count_lifts_the_default_duration() {
        let args = Args::try_parse_from(["loadgen", "queue", "--messages", "10"]).unwrap();
        assert_eq!((args.scenario, args.publish_for()), (Scenario::Queue, None));
    }

    #[test]
    fn addresses_keep_their_host() {
        let at = |host: &str, port| HostPort {
            host: host.into(),
            port,
        };
        assert_eq!(parse_host_port("localhost:7000"), Ok(at("localhost", 7000)));
        assert_eq!(parse_host_port("127.0.0.1:1"), Ok(at("127.0.0.1", 1)));
        assert_eq!(parse_host_port("[::1]:7000"), Ok(at("::1", 7000)));
        assert_eq!(at("::1", 7000).to_string(), "[::1]:7000");
        assert_eq!(at("localhost", 7000).to_string(), "localhost:7000");
        for bad in [
            "localhost",
            "localhost:",
            ":7000",
            "host:70000",
            "::1:7000",
            "",
        ] {
            assert!(parse_host_port(bad).is_err(), "{bad:?}");
        }
        let name = at("127.0.0.1", 7000).server_name().unwrap();
        assert!(matches!(name, ServerName::IpAddress(_)));
    }

    #[test]
    fn addr_takes_a_list() {
        let addrs = |args: &[&str]| {
            Args::try_parse_from([&["loadgen"][..], args].concat())
                .map(|a| a.addr.iter().map(ToString::to_string).collect::<Vec<_>>())
        };
        assert_eq!(addrs(&[]).unwrap(), ["127.0.0.1:7000"]);
        assert_eq!(addrs(&["--addr", "a:1"]).unwrap(), ["a:1"]);
        assert_eq!(
            addrs(&["--addr", "a:1,[::1]:2, c:3"]).unwrap(),
            ["a:1", "[::1]:2", "c:3"]
        );
        assert_eq!(addrs(&["--addr", "a:1,a:1"]).unwrap(), ["a:1", "a:1"]);
        for bad in ["a:1,,b:2", "a:1,", "a:1,b"] {
            assert!(addrs(&["--addr", bad]).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn tls_is_for_mq_only() {
        let ca = ["--tls-ca", "ca.pem"];
        let mq = Args::try_parse_from([&["loadgen"][..], &ca].concat()).unwrap();
        assert!(mq.check().is_ok());
        for proto in ["redis", "nats"] {
            let args =
                Args::try_parse_from([&["loadgen", "--proto", proto][..], &ca].concat()).unwrap();
            let refused = args.check().unwrap_err();
            assert_eq!(refused.kind(), ErrorKind::ArgumentConflict);
            assert_eq!(refused.exit_code(), 2);
        }
    }

    #[test]
    fn a_server_name_needs_a_ca_and_must_be_a_name() {
        let named = |name| {
            Args::try_parse_from(["loadgen", "--tls-ca", "ca.pem", "--tls-server-name", name])
        };
        let args = named("localhost").unwrap();
        assert_eq!(args.tls_server_name.unwrap().to_str(), "localhost");
        assert!(named("::1").is_ok());
        assert!(named("not a name").is_err());
        let alone = Args::try_parse_from(["loadgen", "--tls-server-name", "localhost"]);
        assert_eq!(
            alone.unwrap_err().kind(),
            ErrorKind::MissingRequiredArgument
        );
    }

    #[test]
    fn each_protocol_runs_what_it_can_express() {
        assert!(Scenario::Replay.supports(Proto::Mq));
        assert!(!Scenario::Replay.supports(Proto::Nats));
        assert!(Scenario::Queue.supports(Proto::Nats));
        assert!(!Scenario::Queue.supports(Proto::Redis));
        assert!(Scenario::Pairs.supports(Proto::Redis));
    }
}
