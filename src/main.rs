use std::io::IsTerminal;
use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

use actix::System;
use clap::Parser;
use tokio::signal::unix::{signal, SignalKind};
use tracing_subscriber::EnvFilter;

use mq_actix::config::{self, Config, Limits};
use mq_actix::server::{self, Broker};
use mq_actix::shutdown::Outcome;

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
/// (e.g. RUST_LOG=mq_actix=debug).
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// TCP port to listen on (0 picks a free one).
    #[arg(default_value_t = config::DEFAULT_PORT)]
    port: u16,
    /// Messages cached per topic for replay; 0 disables the cache.
    #[arg(default_value_t = config::DEFAULT_CACHE_SIZE)]
    cache_size: usize,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    bind: IpAddr,
    /// Longest accepted line in bytes, without its line ending.
    #[arg(long, default_value_t = config::DEFAULT_MAX_LINE)]
    max_line: usize,
    /// Bytes a client may owe (queued, unread) before it is disconnected.
    #[arg(long, default_value_t = config::DEFAULT_MAX_PENDING)]
    max_pending: usize,
    /// Open connections before new ones are refused.
    #[arg(long, default_value_t = config::DEFAULT_MAX_CONNECTIONS)]
    max_connections: usize,
    /// Bytes of caches, outboxes, topic mailboxes and partial lines before
    /// new sends are refused ("Server out of memory"); 0 = no limit
    /// [default: 50% of physical memory].
    #[arg(long, value_name = "BYTES")]
    max_memory: Option<usize>,
    /// Seconds a connection may hold an unfinished line before it is closed.
    #[arg(long, value_name = "SECS", default_value_t = config::DEFAULT_LINE_TIMEOUT.as_secs_f64())]
    line_timeout: f64,
    /// Worker threads running sessions and topics [default: number of cores].
    #[arg(long)]
    workers: Option<usize>,
    /// Seconds that SIGINT/SIGTERM wait for clients to be sent what they are
    /// owed before the broker exits anyway (then with status 3 if anything
    /// acknowledged was left unwritten).
    #[arg(long, value_name = "SECS", default_value_t = config::DEFAULT_SHUTDOWN_TIMEOUT.as_secs_f64())]
    shutdown_timeout: f64,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn")),
        )
        .init();

    let config = Config {
        cache_size: cli.cache_size,
        workers: cli.workers.unwrap_or_else(config::default_workers).max(1),
        limits: Limits {
            max_line: cli.max_line,
            max_pending: cli.max_pending,
            max_connections: cli.max_connections,
            max_memory: cli.max_memory.unwrap_or_else(config::default_max_memory),
            line_timeout: seconds(cli.line_timeout),
        },
    };
    let addr = SocketAddr::new(cli.bind, cli.port);
    let listener = match server::bind(addr) {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("mq-actix: cannot listen on {addr}: {error}");
            return ExitCode::from(1);
        }
    };
    server::raise_fd_limit(config.limits.max_connections as u64 + 64);
    let local = listener.local_addr().unwrap_or(addr);

    let system = System::new();
    let broker = system.block_on(async {
        let broker = Broker::start(&config);
        broker.serve(listener).map(|()| broker)
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
    println!(
        "mq-actix listening on {local} (cache size {})",
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
