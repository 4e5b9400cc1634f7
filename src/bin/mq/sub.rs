//! `mq sub`: subscribe to topics and print what they deliver.

use std::io::Write;

use clap::Args;
use serde_json::{json, Value};

use crate::wire::{self, Line};
use crate::Failure;

/// The arguments of `mq sub`.
#[derive(Debug, Args)]
pub struct SubArgs {
    /// Topics to subscribe to.
    #[arg(required = true, value_name = "TOPIC")]
    topics: Vec<String>,
    /// Replay only cached messages with an index above N (-1: all of them).
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    last_seen: Option<i64>,
    /// Replay no cached message: only messages sent from now on.
    #[arg(long)]
    no_cache: bool,
    /// Exit after printing N messages.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    count: Option<u64>,
    /// Print each delivered JSON object as the broker sent it, instead of
    /// its message (the way to see indexes, or messages with newlines).
    #[arg(long)]
    json: bool,
}

impl SubArgs {
    /// The subscribe command for `topic`.
    fn command(&self, topic: &str) -> Value {
        let mut command = json!({"command": "subscribe", "topic": topic});
        if let Some(last_seen) = self.last_seen {
            command["last_seen"] = json!(last_seen);
        }
        if self.no_cache {
            command["cache"] = json!(false);
        }
        command
    }
}

/// Subscribes to every topic (pipelined), then prints deliveries until
/// Ctrl-C, `--count`, or a reader of stdout that has gone (`| head`).
pub async fn run(addr: &str, args: SubArgs) -> Result<(), Failure> {
    let (mut incoming, mut outgoing) = wire::connect(addr).await?;
    for topic in &args.topics {
        outgoing.send(&args.command(topic)).await?;
    }
    outgoing.flush().await?;

    // Replies come in the order of the subscribes, interleaved with the
    // deliveries (a topic's replay follows its own reply).
    let mut unanswered = args.topics.iter();
    let mut printed = 0;
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        let line = tokio::select! {
            line = incoming.next() => line?,
            _ = &mut ctrl_c => return Ok(()),
        };
        match line {
            None => return Err(incoming.closed("mq was subscribed")),
            Some(Line::Reply(reply)) => {
                let Some(topic) = unanswered.next() else {
                    return Err(incoming.unexpected("a reply to no command"));
                };
                reply.map_err(|reason| {
                    Failure::Refused(format!("cannot subscribe to {topic:?}: {reason}"))
                })?;
            }
            Some(Line::Delivery { line, msg }) => {
                let text = if args.json { line } else { msg };
                if !print(&text)? {
                    return Ok(());
                }
                printed += 1;
                if args.count == Some(printed) {
                    return Ok(());
                }
            }
        }
    }
}

/// Prints one line and flushes it, so that a pipe sees each message as it
/// comes. `false` when the reader has gone, which ends `mq sub` quietly.
fn print(text: &str) -> Result<bool, Failure> {
    let mut stdout = std::io::stdout().lock();
    match writeln!(stdout, "{text}").and_then(|()| stdout.flush()) {
        Ok(()) => Ok(true),
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
        Err(error) => Err(Failure::Io(format!(
            "cannot write to stdout: {}",
            wire::describe(&error)
        ))),
    }
}
