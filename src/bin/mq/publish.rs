//! `mq pub`: one message from the command line, or one per line of stdin.

use clap::Args;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::mpsc;

use crate::wire::{self, Incoming, Line};
use crate::Failure;

/// The arguments of `mq pub`.
#[derive(Debug, Args)]
pub struct PubArgs {
    /// Topic to publish to.
    topic: String,
    /// The message; `-` sends each line of stdin as one message.
    #[arg(value_name = "MSG")]
    msg: String,
    /// Deliver to one subscriber (round robin) instead of all of them.
    #[arg(long)]
    one: bool,
    /// Do not cache the message for later subscribers.
    #[arg(long)]
    no_cache: bool,
}

impl PubArgs {
    /// The send command for `msg`.
    fn command(&self, msg: &str) -> Value {
        let delivery = if self.one { "one" } else { "all" };
        let mut command =
            json!({"command": "send", "topic": self.topic, "msg": msg, "delivery": delivery});
        if self.no_cache {
            command["cache"] = json!(false);
        }
        command
    }
}

/// Publishes and waits for the broker's replies.
pub async fn run(addr: &str, args: PubArgs) -> Result<(), Failure> {
    if args.msg == "-" {
        from_stdin(addr, &args).await
    } else {
        one(addr, &args).await
    }
}

/// One message, one reply.
async fn one(addr: &str, args: &PubArgs) -> Result<(), Failure> {
    let (mut incoming, mut outgoing) = wire::connect(addr).await?;
    outgoing.send(&args.command(&args.msg)).await?;
    outgoing.flush().await?;
    match incoming.next().await? {
        Some(Line::Reply(Ok(()))) => Ok(()),
        Some(Line::Reply(Err(reason))) => Err(Failure::Refused(format!(
            "the broker refused the message: {reason}"
        ))),
        Some(Line::Delivery { line, .. }) => Err(incoming.unexpected(&line)),
        None => Err(incoming.closed("mq waited for its reply")),
    }
}

/// What became of one line of stdin, in line order, for the side that reads
/// the replies: so each failure is reported with its line number, and all of
/// them in the order of the lines.
enum Fate {
    /// Sent as a message: its reply is due.
    Sent(u64),
    /// Not valid UTF-8, so not sent: no reply is due.
    NotUtf8(u64),
}

/// Each line of stdin (without its `\n` or `\r\n`) is one message. Sending
/// and reading replies run side by side, so the commands are pipelined
/// instead of waiting a round trip each; each reply is matched to its line
/// through a channel that carries the lines' fates in order.
async fn from_stdin(addr: &str, args: &PubArgs) -> Result<(), Failure> {
    let (mut incoming, mut outgoing) = wire::connect(addr).await?;
    let (fates_tx, mut fates_rx) = mpsc::unbounded_channel();

    let sending = async move {
        let mut stdin = BufReader::new(tokio::io::stdin());
        let mut number = 0;
        let mut bytes = Vec::new();
        loop {
            bytes.clear();
            let read = stdin.read_until(b'\n', &mut bytes).await;
            let read = read.map_err(|error| {
                Failure::Io(format!("cannot read stdin: {}", wire::describe(&error)))
            })?;
            if read == 0 {
                break;
            }
            number += 1;
            if bytes.last() == Some(&b'\n') {
                bytes.pop();
                if bytes.last() == Some(&b'\r') {
                    bytes.pop();
                }
            }
            let fate = match std::str::from_utf8(&bytes) {
                Ok(msg) => {
                    outgoing.send(&args.command(msg)).await?;
                    Fate::Sent(number)
                }
                Err(_) => Fate::NotUtf8(number),
            };
            // The receiving side ends only after this side drops the sender
            // (or fails, which ends this side too), so it is listening.
            let _ = fates_tx.send(fate);
            // Send what is queued before waiting for more input, so that a
            // slow producer (`tail -f`) does not hold messages back.
            if stdin.buffer().is_empty() {
                outgoing.flush().await?;
            }
        }
        outgoing.flush().await?;
        drop(fates_tx);
        Ok::<(), Failure>(())
    };

    let receiving = async {
        let mut failed = 0;
        while let Some(fate) = fates_rx.recv().await {
            match fate {
                Fate::Sent(number) => {
                    if let Some(reason) = reply(&mut incoming).await? {
                        eprintln!("mq: stdin line {number}: the broker refused it: {reason}");
                        failed += 1;
                    }
                }
                Fate::NotUtf8(number) => {
                    eprintln!("mq: stdin line {number}: not UTF-8, not sent");
                    failed += 1;
                }
            }
        }
        Ok::<u64, Failure>(failed)
    };

    let ((), failed) = tokio::try_join!(sending, receiving)?;
    match failed {
        0 => Ok(()),
        failed => Err(Failure::Refused(format!(
            "{failed} line(s) of stdin were not published"
        ))),
    }
}

/// The reply to the oldest unanswered send: `None` for success, else the
/// broker's reason.
async fn reply(incoming: &mut Incoming) -> Result<Option<String>, Failure> {
    match incoming.next().await? {
        Some(Line::Reply(reply)) => Ok(reply.err()),
        Some(Line::Delivery { line, .. }) => Err(incoming.unexpected(&line)),
        None => Err(incoming.closed("mq waited for replies")),
    }
}
