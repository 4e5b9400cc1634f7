//! The name and help text of every series, in one list: `describe` and
//! `Metrics::register` take them from here, and README's table follows it.
//! Names follow the Prometheus naming guide: an `mq_` prefix, the unit in
//! the name, `_total` on counters, and no per-topic label (one series per
//! topic would grow without bound; `/topics` shows topics instead).

/// Connections open now.
pub const CONNECTIONS: &str = "mq_connections";
/// Connections accepted since start.
pub const CONNECTIONS_ACCEPTED: &str = "mq_connections_accepted_total";
/// Connections turned away, by `reason`.
pub const CONNECTIONS_REFUSED: &str = "mq_connections_refused_total";
/// Subscriptions now, over all connections and topics.
pub const SUBSCRIPTIONS: &str = "mq_subscriptions";
/// Topics with an actor now; a dormant topic (idle, only its name and
/// counter kept) is not counted.
pub const TOPICS: &str = "mq_topics";
/// `send`s taken, by `delivery`.
pub const MESSAGES_IN: &str = "mq_messages_in_total";
/// Live deliveries, by `delivery`.
pub const MESSAGES_OUT: &str = "mq_messages_out_total";
/// Bytes of the lines clients sent.
pub const RECEIVED_BYTES: &str = "mq_received_bytes_total";
/// Bytes written to clients' sockets.
pub const SENT_BYTES: &str = "mq_sent_bytes_total";
/// Cached messages replayed to subscribers.
pub const REPLAYED_MESSAGES: &str = "mq_replayed_messages_total";
/// Clients cut off as slow consumers.
pub const SLOW_CONSUMERS: &str = "mq_slow_consumers_total";
/// Bytes queued in outboxes, not yet written.
pub const OUTBOX_PENDING_BYTES: &str = "mq_outbox_pending_bytes";
/// Lines refused before they became a command, by `reason`.
pub const PARSE_ERRORS: &str = "mq_parse_errors_total";
/// Bytes the memory budget counts now.
pub const MEMORY_USED_BYTES: &str = "mq_memory_used_bytes";
/// The memory budget (`--max-memory`); 0 = none.
pub const MEMORY_LIMIT_BYTES: &str = "mq_memory_limit_bytes";

/// Every series with its help text, as `/metrics` describes it.
pub const HELP: &[(&str, &str)] = &[
    (CONNECTIONS, "Connections open now."),
    (CONNECTIONS_ACCEPTED, "Connections accepted since start."),
    (
        CONNECTIONS_REFUSED,
        "Connections turned away: max_connections (--max-connections reached), \
         max_connections_per_ip (--max-connections-per-ip reached) or setup_failed (the socket could not be handed to a worker).",
    ),
    (
        SUBSCRIPTIONS,
        "Subscriptions now, over all connections and topics.",
    ),
    (
        TOPICS,
        "Topics with an actor now (dormant topics are not counted).",
    ),
    (MESSAGES_IN, "Sends taken (acknowledged), by delivery."),
    (
        MESSAGES_OUT,
        "Live deliveries: delivery=\"all\" counts each copy queued for a subscriber, \
         delivery=\"one\" each message written whole to its subscriber's socket.",
    ),
    (
        RECEIVED_BYTES,
        "Bytes of the lines clients sent, without line endings or the discarded \
         part of over-long lines.",
    ),
    (
        SENT_BYTES,
        "Bytes written to clients' sockets (replies and deliveries).",
    ),
    (
        REPLAYED_MESSAGES,
        "Cached messages replayed to subscribers.",
    ),
    (
        SLOW_CONSUMERS,
        "Clients cut off for owing more than --max-pending, or chosen to relieve --max-memory.",
    ),
    (
        OUTBOX_PENDING_BYTES,
        "Bytes queued for clients and not yet written, with each item's bookkeeping.",
    ),
    (
        PARSE_ERRORS,
        "Lines refused before they became a command: not_utf8, not_json, malformed, line_too_long.",
    ),
    (
        MEMORY_USED_BYTES,
        "Bytes the --max-memory budget counts now: caches, outboxes, topic credit, partial lines.",
    ),
    (
        MEMORY_LIMIT_BYTES,
        "The --max-memory budget in bytes; 0 means none.",
    ),
];
