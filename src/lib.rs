//! mq-actix: a pub/sub broker speaking the mq JSON-lines protocol
//! (`docs/PROTOCOL.md`), built on actix actors.
//!
//! A map of the crate, from the wire inwards:
//! - [`server`]: binds, accepts, spreads connections over worker threads.
//! - [`codec`]: splits the byte stream into lines, bounding their length.
//! - [`protocol`]: pure parsing of a line into a command or an error, and the
//!   encoding of replies and deliveries.
//! - [`session`]: `SessionActor`, one per connection: runs its commands.
//! - [`outbox`]: what a connection owes its client, and the task writing it.
//! - [`registry`]: `Registry`, which creates topics and hands out addresses;
//!   [`directory`]: each worker thread's copy of those addresses.
//! - [`topic`]: `TopicActor`, one per topic: counter, cache, subscribers.
//! - [`subscribers`]: the round-robin list behind `delivery: "one"`.
//! - [`shutdown`]: the two phases of a graceful stop.
//! - [`config`], [`stats`]: settings and counters of a running broker.

pub mod codec;
pub mod config;
pub mod directory;
pub mod outbox;
pub mod protocol;
pub mod registry;
pub mod server;
pub mod session;
pub mod shutdown;
pub mod stats;
pub mod subscribers;
pub mod topic;
pub mod units;
