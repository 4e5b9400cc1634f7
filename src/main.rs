use std::io::{BufRead, IsTerminal, Write};
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use actix::System;
use clap::{CommandFactory, Parser, ValueEnum};
use clap_complete::Shell;
use tokio::signal::unix::{signal, Signal, SignalKind};
use tracing_subscriber::EnvFilter;

use mq_actix::cluster::Cluster;
use mq_actix::config::{self, Config, Limits};
use mq_actix::metrics::Exporter;
use mq_actix::security::users::{self, Authenticator};
use mq_actix::security::{exposure_warning, tls, Exposure};
use mq_actix::server::{self, Broker};
use mq_actix::shutdown::Outcome;
use mq_actix::store::{Disk, Fsync, Persistence};
use mq_actix::units::parse_byte_size;

/// Exit status when the shutdown deadline passed with acknowledged lines
/// still unwritten (distinct from 1, a failure to start).
const EXIT_UNDELIVERED: u8 = 3;

/// Deliveries are allocated on one worker thread and freed on another;
/// mimalloc handles that far better than the system allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A pub/sub message broker speaking the mq JSON-lines protocol.
///
/// Logs go to stderr; they are quiet unless RUST_LOG raises them
/// (e.g. RUST_LOG=mq_actix=debug). Every option can also be set by the
/// environment variable shown beside it; the command line wins.
/// Sizes take units: 4096, 512k, 64MiB, 1GiB (k, M, G are powers of 1024).
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// TCP port to listen on (0 picks a free one).
    #[arg(env = "MQ_ACTIX_PORT", default_value_t = config::DEFAULT_PORT)]
    port: u16,
    /// Messages cached per topic for replay; 0 disables the cache.
    #[arg(env = "MQ_ACTIX_CACHE_SIZE", default_value_t = config::DEFAULT_CACHE_SIZE)]
    cache_size: usize,
    /// Host name or address to listen on (the TLS listener too); anything
    /// but a loopback address lets other machines in, and without --users
    /// the protocol has no authentication.
    #[arg(
        long,
        env = "MQ_ACTIX_BIND",
        value_name = "HOST",
        default_value = "127.0.0.1"
    )]
    bind: String,
    /// Longest accepted line, without its line ending.
    #[arg(long, env = "MQ_ACTIX_MAX_LINE", value_name = "SIZE",
          value_parser = parse_byte_size, default_value_t = config::DEFAULT_MAX_LINE)]
    max_line: usize,
    /// Bytes a client may owe (queued, unread) before it is disconnected.
    #[arg(long, env = "MQ_ACTIX_MAX_PENDING", value_name = "SIZE",
          value_parser = parse_byte_size, default_value_t = config::DEFAULT_MAX_PENDING)]
    max_pending: usize,
    /// Open connections before new ones are refused.
    #[arg(long, env = "MQ_ACTIX_MAX_CONNECTIONS", default_value_t = config::DEFAULT_MAX_CONNECTIONS)]
    max_connections: usize,
    /// Open connections from one IP address before new ones from it are
    /// refused [default: a quarter of --max-connections, at least 1024].
    #[arg(long, env = "MQ_ACTIX_MAX_CONNECTIONS_PER_IP", value_name = "N")]
    max_connections_per_ip: Option<usize>,
    /// Also listen for TLS connections on this port (0 picks a free one).
    #[arg(long, env = "MQ_ACTIX_TLS_PORT", value_name = "PORT", requires_all = ["tls_cert", "tls_key"])]
    tls_port: Option<u16>,
    /// The TLS listener's certificate chain (PEM).
    #[arg(
        long,
        env = "MQ_ACTIX_TLS_CERT",
        value_name = "FILE",
        requires = "tls_port"
    )]
    tls_cert: Option<PathBuf>,
    /// The TLS listener's private key (PEM).
    #[arg(
        long,
        env = "MQ_ACTIX_TLS_KEY",
        value_name = "FILE",
        requires = "tls_port"
    )]
    tls_key: Option<PathBuf>,
    /// Require TLS clients to show a certificate signed by this CA (PEM);
    /// with --users, a certificate whose common name is a user's logs in as
    /// that user.
    #[arg(
        long,
        env = "MQ_ACTIX_TLS_CLIENT_CA",
        value_name = "FILE",
        requires = "tls_port"
    )]
    tls_client_ca: Option<PathBuf>,
    /// Listen only for TLS, not for plain TCP on PORT.
    #[arg(long, env = "MQ_ACTIX_NO_PLAIN", requires = "tls_port")]
    no_plain: bool,
    /// Users file (TOML): clients must authenticate, and may use only the
    /// topics their permissions list. Re-read on SIGHUP.
    #[arg(long, env = "MQ_ACTIX_USERS", value_name = "FILE")]
    users: Option<PathBuf>,
    /// Bytes of caches, outboxes, topic mailboxes and partial lines before
    /// new sends are refused ("Server out of memory"), judged to within
    /// 64 KiB per thread; 0 = no limit [default: 50% of physical memory].
    #[arg(long, env = "MQ_ACTIX_MAX_MEMORY", value_name = "SIZE", value_parser = parse_byte_size)]
    max_memory: Option<usize>,
    /// Seconds a connection may hold an unfinished line before it is closed.
    #[arg(
        long,
        env = "MQ_ACTIX_LINE_TIMEOUT",
        value_name = "SECS",
        default_value_t = config::DEFAULT_LINE_TIMEOUT.as_secs_f64()
    )]
    line_timeout: f64,
    /// Worker threads running sessions and topics [default: number of cores].
    #[arg(long, env = "MQ_ACTIX_WORKERS")]
    workers: Option<usize>,
    /// Seconds that SIGINT/SIGTERM wait for clients to be sent what they are
    /// owed before the broker exits anyway (then with status 3 if anything
    /// acknowledged was left unwritten).
    #[arg(
        long,
        env = "MQ_ACTIX_SHUTDOWN_TIMEOUT",
        value_name = "SECS",
        default_value_t = config::DEFAULT_SHUTDOWN_TIMEOUT.as_secs_f64()
    )]
    shutdown_timeout: f64,
    /// Keep every topic's counter and cache in DIR, so a restart (or a
    /// crash) resumes them; without it everything lives in memory only.
    #[arg(long, env = "MQ_ACTIX_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// With --data-dir: when a send reaches the disk. always: acknowledged
    /// only once synced; batch: synced every 100 ms; never: synced only when
    /// needed (see the README's "Persistence") [default: always]
    #[arg(long, env = "MQ_ACTIX_FSYNC", value_enum, requires = "data_dir")]
    fsync: Option<Fsync>,
    /// Share every topic with the other brokers given the same Redis: one
    /// URL (redis://HOST:PORT) of a standalone Redis or of a Redis Cluster
    /// node, or several Redis Cluster seeds, comma-separated (see
    /// docs/CLUSTER.md) [default: off]. Not with --data-dir: the topics'
    /// state is in Redis.
    #[arg(
        long,
        env = "MQ_ACTIX_CLUSTER",
        value_name = "URLS",
        value_delimiter = ',',
        conflicts_with = "data_dir"
    )]
    cluster: Vec<String>,
    /// Serve Prometheus metrics at http://ADDR/metrics, with /healthz and
    /// /topics, e.g. 127.0.0.1:9100 [default: off]. Keep it on a loopback
    /// address: it has no authentication and names every topic.
    #[arg(long, env = "MQ_ACTIX_METRICS", value_name = "ADDR")]
    metrics: Option<String>,
    /// How log lines on stderr are written: for people, or one JSON object
    /// per line for a log collector.
    #[arg(long, env = "MQ_ACTIX_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Print a completion script for SHELL to stdout and exit.
    #[arg(long, value_name = "SHELL")]
    completions: Option<Shell>,
    /// Print a man page (roff) to stdout and exit.
    #[arg(long)]
    man: bool,
    /// Read a password (one line) on stdin, print its argon2 hash for the
    /// users file, and exit.
    #[arg(long)]
    hash_password: bool,
}

/// The two ways of writing log lines.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(shell) = cli.completions {
        let mut script = Vec::new();
        clap_complete::generate(shell, &mut Cli::command(), "mq-actix", &mut script);
        return print_and_exit(&script);
    }
    if cli.man {
        let mut page = Vec::new();
        if let Err(error) = clap_mangen::Man::new(Cli::command()).render(&mut page) {
            eprintln!("mq-actix: cannot write the man page: {error}");
            return ExitCode::from(1);
        }
        return print_and_exit(&page);
    }
    if cli.hash_password {
        return hash_password();
    }
    init_logging(cli.log_format);
    let users = match cli.users.as_deref().map(Authenticator::open).transpose() {
        Ok(users) => users,
        Err(error) => {
            eprintln!("mq-actix: {error}");
            return ExitCode::from(1);
        }
    };
    let tls = match (&cli.tls_cert, &cli.tls_key) {
        (Some(cert), Some(key)) => match tls::acceptor(cert, key, cli.tls_client_ca.as_deref()) {
            Ok(acceptor) => Some(acceptor),
            Err(error) => {
                eprintln!("mq-actix: {error}");
                return ExitCode::from(1);
            }
        },
        _ => None,
    };

    let config = Config {
        cache_size: cli.cache_size,
        workers: cli.workers.unwrap_or_else(config::default_workers).max(1),
        limits: Limits {
            max_line: cli.max_line,
            max_pending: cli.max_pending,
            max_connections: cli.max_connections,
            max_memory: cli.max_memory.unwrap_or_else(config::default_max_memory),
            line_timeout: seconds(cli.line_timeout),
            max_connections_per_ip: cli
                .max_connections_per_ip
                .unwrap_or_else(|| config::default_max_connections_per_ip(cli.max_connections)),
        },
        users: users.clone(),
    };
    let plain = match (!cli.no_plain)
        .then(|| listen(&cli.bind, cli.port))
        .transpose()
    {
        Ok(bound) => bound,
        Err(error) => {
            eprintln!("mq-actix: {error}");
            return ExitCode::from(1);
        }
    };
    let store = match &cli.data_dir {
        None => None,
        Some(dir) => {
            let persistence = Persistence {
                dir: dir.clone(),
                fsync: cli.fsync.unwrap_or(Fsync::Always),
            };
            match Disk::open(&persistence) {
                Ok(opened) => Some(opened),
                Err(error) => {
                    eprintln!("mq-actix: {error}");
                    return ExitCode::from(1);
                }
            }
        }
    };
    let secure = match tls.map(|tls| listen(&cli.bind, cli.tls_port.unwrap_or(0)).map(|l| (l, tls)))
    {
        None => None,
        Some(Ok(bound)) => Some(bound),
        Some(Err(error)) => {
            eprintln!("mq-actix: {error}");
            return ExitCode::from(1);
        }
    };
    // Before the broker starts, so that it registers every series with the
    // recorder this installs.
    let exporter = match cli.metrics.as_deref().map(Exporter::bind).transpose() {
        Ok(exporter) => exporter,
        Err(error) => {
            eprintln!("mq-actix: {error}");
            return ExitCode::from(1);
        }
    };
    let metrics_addr = exporter.as_ref().and_then(|e| e.local_addr().ok());
    if let Some(addr) = metrics_addr.filter(|addr| !addr.ip().is_loopback()) {
        tracing::warn!(
            "metrics on {addr}, which is not a loopback address: anyone who can reach it \
             can read every topic's name and size"
        );
    }
    server::raise_fd_limit(config.limits.max_connections as u64 + 64);
    let plain = plain.map(|(listener, addr)| {
        let local = listener.local_addr().unwrap_or(addr);
        (listener, local)
    });
    let secure = secure.map(|((listener, addr), tls)| {
        let local = listener.local_addr().unwrap_or(addr);
        (listener, local, tls)
    });
    let local = plain
        .as_ref()
        .map(|(_, local)| *local)
        .or(secure.as_ref().map(|(_, local, _)| *local));
    let Some(local) = local else {
        eprintln!("mq-actix: --no-plain leaves no listener without --tls-port");
        return ExitCode::from(1);
    };
    let exposure = Exposure {
        public: !local.ip().is_loopback(),
        plain: plain.is_some(),
        tls: secure.is_some(),
        client_ca: cli.tls_client_ca.is_some(),
        users: users.is_some(),
    };
    if let Some(warning) = exposure_warning(exposure) {
        tracing::warn!("listening on {local}: {warning}");
    }
    let banner = match (&plain, &secure) {
        (Some((_, plain)), Some((_, secure, _))) => {
            format!("listening on {plain} and with TLS on {secure}")
        }
        (None, Some((_, secure, _))) => format!("listening with TLS on {secure}"),
        _ => format!("listening on {local}"),
    };

    let system = System::new();
    let cluster = match cli.cluster.is_empty() {
        true => None,
        false => match system.block_on(Cluster::connect(&cli.cluster, config.cache_size)) {
            Ok(cluster) => Some(cluster),
            Err(error) => {
                eprintln!("mq-actix: {error}");
                return ExitCode::from(1);
            }
        },
    };
    let node_note = cluster
        .as_ref()
        .map(|cluster| format!(", cluster node {}", cluster.node()))
        .unwrap_or_default();
    let broker = system.block_on(async {
        let broker = match cluster {
            Some(cluster) => Broker::start_clustered(&config, cluster),
            None => Broker::start_with_store(&config, store),
        };
        if let Some((listener, _)) = plain {
            broker.serve(listener)?;
        }
        if let Some((listener, _, tls)) = secure {
            broker.serve_tls(listener, tls)?;
        }
        if let Some(users) = users {
            // Listening now, before the first line is printed, so that no
            // SIGHUP finds the default action (exit) still in place.
            match signal(SignalKind::hangup()) {
                Ok(hangup) => {
                    actix::spawn(reload_on_hangup(users, hangup));
                }
                Err(error) => tracing::warn!(
                    %error,
                    "cannot listen for SIGHUP: the users file will not be re-read"
                ),
            }
        }
        if let Some(exporter) = exporter {
            broker.serve_metrics(exporter)?;
        }
        Ok::<_, std::io::Error>(broker)
    });
    let broker = match broker {
        Ok(broker) => broker,
        Err(error) => {
            eprintln!("mq-actix: cannot serve on {local}: {error}");
            return ExitCode::from(1);
        }
    };
    let shutdown = broker.shutdown(seconds(cli.shutdown_timeout));
    let (outcome_tx, outcome_rx) = std::sync::mpsc::channel();
    system.block_on(async {
        actix::spawn(async move {
            wait_for_signal().await;
            tracing::info!("shutting down");
            let _ = outcome_tx.send(shutdown.await);
            System::current().stop();
        });
    });
    // One line, the only one on stdout, so that whoever starts the broker
    // learns every address (ports picked with 0 included) at once.
    let metrics_note = metrics_addr
        .map(|addr| format!(", metrics on http://{addr}/metrics"))
        .unwrap_or_default();
    println!(
        "mq-actix {banner} (cache size {}){node_note}{metrics_note}",
        config.cache_size
    );
    let result = system.run();
    broker.join();
    if let Err(error) = result {
        eprintln!("mq-actix: {error}");
        return ExitCode::from(1);
    }
    match outcome_rx.try_recv() {
        Ok(Outcome::TimedOut { lines, connections }) if lines > 0 => {
            tracing::error!(
                lines,
                connections,
                "shutdown deadline passed: acknowledged lines were never written"
            );
            ExitCode::from(EXIT_UNDELIVERED)
        }
        Ok(Outcome::TimedOut { .. }) => {
            tracing::warn!("shutdown deadline passed, but nothing owed was left unwritten");
            ExitCode::SUCCESS
        }
        _ => ExitCode::SUCCESS,
    }
}

/// A duration in seconds from the command line; negative or NaN is zero.
fn seconds(secs: f64) -> Duration {
    Duration::try_from_secs_f64(secs).unwrap_or(Duration::ZERO)
}

/// Writes what `--completions` or `--man` made to stdout; a reader that
/// stops early (`| head`) is no failure.
fn print_and_exit(text: &[u8]) -> ExitCode {
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(text).and_then(|()| stdout.flush()) {
        Err(error) if error.kind() != std::io::ErrorKind::BrokenPipe => {
            eprintln!("mq-actix: cannot write to stdout: {error}");
            ExitCode::from(1)
        }
        _ => ExitCode::SUCCESS,
    }
}

/// Logs to stderr at the level RUST_LOG asks for (warnings by default).
fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    let logs = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter);
    match format {
        LogFormat::Text => logs.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => logs.json().with_ansi(false).init(),
    }
}

/// Listens on the first address `host` resolves to that can be bound, so
/// that a name like `localhost` works whether it lists `::1` or `127.0.0.1`
/// first. An IPv6 address may be given in brackets.
fn listen(host: &str, port: u16) -> Result<(TcpListener, SocketAddr), String> {
    let name = host
        .strip_prefix('[')
        .and_then(|inner| inner.strip_suffix(']'))
        .unwrap_or(host);
    let addrs = (name, port)
        .to_socket_addrs()
        .map_err(|error| format!("cannot resolve {host} to listen on port {port}: {error}"))?;
    let mut failure = format!("cannot listen on {host}:{port}: the name has no address");
    for addr in addrs {
        match server::bind(addr) {
            Ok(listener) => return Ok((listener, addr)),
            Err(error) => failure = format!("cannot listen on {addr}: {error}"),
        }
    }
    Err(failure)
}

/// `--hash-password`: the first line of stdin, without its line ending,
/// hashed for the users file.
fn hash_password() -> ExitCode {
    let mut password = String::new();
    if let Err(error) = std::io::stdin().lock().read_line(&mut password) {
        eprintln!("mq-actix: cannot read the password on stdin: {error}");
        return ExitCode::from(1);
    }
    let password = password
        .strip_suffix('\n')
        .map_or(password.as_str(), |line| {
            line.strip_suffix('\r').unwrap_or(line)
        });
    if password.is_empty() {
        eprintln!("mq-actix: no password on stdin");
        return ExitCode::from(1);
    }
    match users::hash_password(password) {
        Ok(hash) => print_and_exit(format!("{hash}\n").as_bytes()),
        Err(error) => {
            eprintln!("mq-actix: {error}");
            ExitCode::from(1)
        }
    }
}

/// Re-reads the users file on each SIGHUP; open connections keep the user
/// they logged in as, and a file that does not load changes nothing.
async fn reload_on_hangup(users: Arc<Authenticator>, mut hangup: Signal) {
    while hangup.recv().await.is_some() {
        match users.reload() {
            Ok(count) => tracing::info!(users = count, "users file re-read"),
            Err(error) => tracing::error!("{error}; keeping the users as they were"),
        }
    }
}

/// SIGINT (Ctrl-C) or SIGTERM, whichever comes first.
async fn wait_for_signal() {
    let terminate = async {
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                terminate.recv().await;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
}
