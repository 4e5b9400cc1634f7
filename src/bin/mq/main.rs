//! `mq`: a command-line client for the mq protocol, to try a broker out,
//! watch a topic or feed one from a script without writing JSON by hand.
//!
//! - [`wire`]: the connection, and what each line from the broker means.
//! - [`sub`]: `mq sub`, printing what topics deliver.
//! - [`publish`]: `mq pub`, one message or one per line of stdin.
//!
//! It does not use the broker's library on purpose: it speaks only the
//! protocol on the wire, as any other client would.

mod publish;
mod sub;
mod wire;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// What `--help` says about exit statuses; [`Failure::status`] is the code.
const EXIT_STATUS: &str = "\
Exit status:
  0  done (for sub: --count messages printed, or Ctrl-C)
  1  the broker refused a command; its reason is on stderr
  2  bad command line
  3  cannot connect, the connection broke, or stdin/stdout failed
  4  the broker sent something that is not the mq protocol";

/// A client for mq brokers: subscribe to topics and publish messages.
#[derive(Debug, Parser)]
#[command(name = "mq", version, after_help = EXIT_STATUS)]
struct Cli {
    /// The broker to talk to.
    #[arg(
        long,
        global = true,
        env = "MQ_ADDR",
        value_name = "HOST:PORT",
        default_value = "127.0.0.1:7000"
    )]
    addr: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Subscribe to topics and print each message delivered, one per line,
    /// until Ctrl-C (or --count messages).
    #[command(after_help = EXIT_STATUS)]
    Sub(sub::SubArgs),
    /// Publish MSG to TOPIC, or each line of stdin when MSG is `-`.
    #[command(after_help = EXIT_STATUS)]
    Pub(publish::PubArgs),
}

/// Why `mq` gave up, which decides its exit status.
#[derive(Debug)]
pub enum Failure {
    /// The broker answered a command with an error.
    Refused(String),
    /// No connection, a broken one, or a failing stdin or stdout.
    Io(String),
    /// The broker sent a line that is not the mq protocol.
    Protocol(String),
}

impl Failure {
    /// The exit status, as listed in [`EXIT_STATUS`].
    fn status(&self) -> u8 {
        match self {
            Failure::Refused(_) => 1,
            Failure::Io(_) => 3,
            Failure::Protocol(_) => 4,
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Refused(message) | Failure::Io(message) => f.write_str(message),
            Failure::Protocol(message) => write!(f, "protocol error: {message}"),
        }
    }
}

/// One thread is plenty for one connection, and keeps the start quick.
#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Sub(args) => sub::run(&cli.addr, args).await,
        Command::Pub(args) => publish::run(&cli.addr, args).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("mq: {failure}");
            ExitCode::from(failure.status())
        }
    }
}
