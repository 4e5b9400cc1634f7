//! mq-actix: a pub/sub broker speaking the mq JSON-lines protocol
//! (`docs/PROTOCOL.md`), built on actix actors. `docs/ARCHITECTURE.md` draws
//! the actors and the path of each command.
//!
//! A map of the crate, from the wire inwards:
//! - [`server`]: binds, accepts, spreads connections over worker threads.
//! - `reader`, [`codec`]: split the byte stream into lines, bounding their
//!   length and how long one may stay unfinished.
//! - [`protocol`]: pure parsing of a line into a command or an error, the
//!   replies, and the encoding of deliveries.
//! - `session`: `SessionActor`, one per connection: runs its commands.
//! - [`outbox`]: what a connection owes its client, and the task writing it.
//! - `registry`: `Registry`, which creates topics and hands out handles;
//!   `directory`: each worker thread's copy of those handles.
//! - [`topic`]: `TopicActor`, one per topic: counter, cache, subscribers,
//!   and the credit that paces its publishers.
//! - `subscribers`: the round-robin list behind `delivery: "one"`.
//! - [`memory`]: the broker-wide memory budget (`--max-memory`).
//! - [`store`]: what a topic keeps besides memory: nothing by default, a
//!   redb file with `--data-dir` (`store::disk`).
//! - [`cluster`]: `--cluster`, topics shared by several brokers through
//!   Redis (standalone or Redis Cluster).
//! - [`shutdown`]: the phases of a graceful stop.
//! - [`metrics`]: the counters Prometheus scrapes, and the HTTP endpoint
//!   (`--metrics`) serving them with `/healthz` and `/topics`.
//! - [`security`]: TLS, users and their permissions, the per-address
//!   connection limit; all off unless asked for.
//! - [`config`] (every setting and limit), [`stats`]: settings and counters
//!   of a running broker; [`units`]: sizes with units on the command line.

pub mod cluster;
pub mod codec;
pub mod config;
mod directory;
pub mod memory;
pub mod metrics;
pub mod outbox;
pub mod protocol;
mod reader;
mod registry;
pub mod security;
pub mod server;
mod session;
pub mod shutdown;
pub mod stats;
pub mod store;
mod subscribers;
#[cfg(feature = "testing")]
pub mod testing;
pub mod topic;
pub mod units;
