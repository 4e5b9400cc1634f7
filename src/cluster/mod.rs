//! `--cluster`: several brokers share their topics through Redis.
//!
//! A topic's counter, cache and the census of who subscribes to it (per
//! node, for `one` messages) live in Redis under keys that share one hash
//! tag (`scripts::Keys`), so in Redis Cluster each topic lives on one shard.
//! Everything that must be atomic across nodes is one Lua script on that
//! shard: numbering and caching a batch of sends and publishing it
//! (`publish.lua`), registering a subscriber and taking its replay, with
//! the `one` messages it consumes (`join.lua`), handing back a `one`
//! message a node could not deliver (`reroute.lua`). Each node hears a
//! topic's messages on the topic's channel (`PUBLISH`/`SUBSCRIBE` on a
//! standalone Redis, `SPUBLISH`/`SSUBSCRIBE` on Redis Cluster), in index
//! order, and its `TopicActor` delivers them to its own subscribers.
//!
//! This module owns the connection: one multiplexed connection (per shard,
//! in Redis Cluster) carries the scripts and the subscriptions, RESP3 push
//! messages are routed to the topics by channel, and an outage makes every
//! request fail fast until a retry, backed off up to
//! [`CLUSTER_MAX_BACKOFF`], gets through. docs/CLUSTER.md has the whole
//! design.

pub mod records;
mod scripts;

use std::collections::HashMap;
use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::{Message, Recipient};
use bytes::Bytes;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::{
    Cmd, ErrorKind, Pipeline, ProtocolVersion, PushInfo, PushKind, RedisError, RedisFuture,
    RedisResult, Value,
};

use crate::config::{
    CLUSTER_CONNECT_TIMEOUT, CLUSTER_MAX_BACKOFF, CLUSTER_MIN_BACKOFF, CLUSTER_NODE_TTL,
    CLUSTER_REQUEST_TIMEOUT, CLUSTER_RESPONSE_TIMEOUT,
};
pub use records::{Entry, Record};
pub use scripts::Keys;
use scripts::Scripts;

/// What a topic hears from its channel.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub enum Heard {
    /// Messages, in index order: every `all` message, and the `one`
    /// messages this node is to deliver; `last` is the last index the
    /// channel carried, for this node or not.
    Records { records: Vec<Record>, last: u64 },
    /// The connection to Redis broke: messages published until it is back
    /// were not heard, and the topic must catch up from its cache.
    Interrupted,
}

/// What a subscribe learns from Redis.
#[derive(Debug)]
pub struct Joined {
    /// The topic's next index when the subscription took effect: every
    /// message from there on arrives on the channel.
    pub next_index: u64,
    /// The replay, in index order; its `one` messages are now this
    /// subscriber's alone.
    pub replay: Vec<Entry>,
}

/// One message of a publish batch, encoded up to its index.
#[derive(Debug)]
pub struct Outgoing {
    pub one: bool,
    pub cache: bool,
    pub head: Bytes,
}

/// The broker's handle on Redis; cheap to clone, one per process.
#[derive(Clone)]
pub struct Cluster(Arc<Inner>);

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("node", &self.0.node)
            .field("sharded", &self.0.sharded)
            .finish()
    }
}

struct Inner {
    conn: Conn,
    /// This broker's id, random at start: how `one` messages find it.
    node: u64,
    /// Redis Cluster (sharded pub/sub) rather than one standalone Redis.
    sharded: bool,
    cache_size: usize,
    scripts: Scripts,
    routes: Arc<Routes>,
    health: Health,
}

/// The two kinds of connection, behind one `ConnectionLike`, so scripts run
/// the same way on both.
#[derive(Clone)]
enum Conn {
    /// A standalone Redis; reconnects by itself and resubscribes.
    Single(ConnectionManager),
    /// Redis Cluster: routes each script by its keys' slot, follows slot
    /// moves and resubscribes by itself.
    Sharded(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(conn) => conn.req_packed_command(cmd),
            Conn::Sharded(conn) => conn.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(conn) => conn.req_packed_commands(pipeline, offset, count),
            Conn::Sharded(conn) => conn.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(conn) => conn.get_db(),
            Conn::Sharded(conn) => conn.get_db(),
        }
    }
}

/// Channel → the topic that listens on it, for the push messages.
struct Routes {
    node: u64,
    topics: Mutex<HashMap<Vec<u8>, Recipient<Heard>>>,
}

impl Routes {
    /// Called by the connection for every push message, on its own task:
    /// decodes a channel message and hands the topic what concerns this
    /// node, in arrival (that is, index) order.
    fn push(&self, push: PushInfo) {
        match push.kind {
            PushKind::Message | PushKind::SMessage => {}
            PushKind::Disconnection => {
                tracing::warn!("lost the connection to Redis; reconnecting");
                return self.interrupt();
            }
            _ => return,
        }
        let mut data = push.data.into_iter();
        let (Some(Value::BulkString(channel)), Some(Value::BulkString(payload))) =
            (data.next(), data.next())
        else {
            return;
        };
        let Some(topic) = self.lock().get(&channel).cloned() else {
            return;
        };
        // The records' lines are slices of this one buffer, as read.
        match records::parse_records(&Bytes::from(payload)) {
            Ok(mut records) => {
                let Some(last) = records.last().map(|r| r.index) else {
                    return;
                };
                records.retain(|r| r.target.is_none_or(|node| node == self.node));
                topic.do_send(Heard::Records { records, last });
            }
            Err(error) => tracing::error!(
                channel = %String::from_utf8_lossy(&channel),
                error,
                "a malformed message on a topic channel was dropped"
            ),
        }
    }

    /// Tells every listening topic that it may have missed messages.
    fn interrupt(&self) {
        for topic in self.lock().values() {
            topic.do_send(Heard::Interrupted);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Vec<u8>, Recipient<Heard>>> {
        self.topics
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Whether Redis is reachable, as the last requests found.
#[derive(Default)]
struct Health(Mutex<Option<Outage>>);

struct Outage {
    since: Instant,
    backoff: Duration,
    /// Until then requests fail at once, without trying Redis.
    retry_at: Instant,
}

impl Health {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Outage>> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// During an outage, between retries, fails at once: a send is answered
    /// `Cluster unavailable` without waiting for a timeout.
    fn gate(&self) -> RedisResult<()> {
        match &*self.lock() {
            Some(outage) if Instant::now() < outage.retry_at => Err(RedisError::from((
                ErrorKind::Io,
                "Redis unavailable (waiting before the next try)",
            ))),
            _ => Ok(()),
        }
    }

    /// Logs the start (once) and the end of an outage, and backs retries
    /// off; says whether this result ended an outage.
    fn observe<T>(&self, result: &RedisResult<T>) -> bool {
        let mut state = self.lock();
        match result {
            Ok(_) => {
                if let Some(outage) = state.take() {
                    tracing::info!(
                        after = ?outage.since.elapsed(),
                        "Redis is reachable again"
                    );
                    return true;
                }
            }
            Err(error) if is_outage(error) => {
                let now = Instant::now();
                match &mut *state {
                    Some(outage) => {
                        outage.backoff = (outage.backoff * 2).min(CLUSTER_MAX_BACKOFF);
                        outage.retry_at = now + outage.backoff;
                    }
                    None => {
                        tracing::warn!(
                            %error,
                            "Redis is unavailable: sends are refused with \"Cluster unavailable\" \
                             until it is back; retrying with backoff"
                        );
                        *state = Some(Outage {
                            since: now,
                            backoff: CLUSTER_MIN_BACKOFF,
                            retry_at: now + CLUSTER_MIN_BACKOFF,
                        });
                    }
                }
            }
            Err(error) => tracing::error!(%error, "a Redis script failed"),
        }
        false
    }
}

/// Errors that mean Redis cannot be reached (rather than a script bug).
fn is_outage(error: &RedisError) -> bool {
    error.is_io_error()
        || error.is_timeout()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || error.is_cluster_error()
        || error.kind() == ErrorKind::ClusterConnectionNotFound
}

impl Cluster {
    /// Connects to Redis: one URL is a standalone Redis unless `INFO
    /// cluster` says it is a cluster node; several URLs are seeds of one
    /// Redis Cluster.
    pub async fn connect(urls: &[String], cache_size: usize) -> Result<Cluster, String> {
        let node = node_id();
        let routes = Arc::new(Routes {
            node,
            topics: Mutex::new(HashMap::new()),
        });
        let sharded = urls.len() > 1 || is_cluster_node(&urls[0]).await?;
        let push_routes = routes.clone();
        let push = move |push: PushInfo| -> Result<(), std::convert::Infallible> {
            push_routes.push(push);
            Ok(())
        };
        let conn = if sharded {
            let client = ClusterClientBuilder::new(urls.iter().map(String::as_str))
                .use_protocol(ProtocolVersion::RESP3)
                .push_sender(push)
                .connection_timeout(CLUSTER_CONNECT_TIMEOUT)
                .response_timeout(CLUSTER_RESPONSE_TIMEOUT)
                .retries(2)
                .min_retry_wait(50)
                .max_retry_wait(CLUSTER_MAX_BACKOFF.as_millis() as u64)
                .build()
                .map_err(|e| format!("--cluster {}: {e}", urls.join(",")))?;
            let conn = client
                .get_async_connection()
                .await
                .map_err(|e| format!("cannot connect to Redis Cluster {}: {e}", urls.join(",")))?;
            Conn::Sharded(conn)
        } else {
            let client = redis::Client::open(urls[0].as_str())
                .map_err(|e| format!("--cluster {}: {e}", urls[0]))?;
            let info = client.get_connection_info().clone();
            let settings = info
                .redis_settings()
                .clone()
                .set_protocol(ProtocolVersion::RESP3);
            let client = redis::Client::open(info.set_redis_settings(settings))
                .map_err(|e| format!("--cluster {}: {e}", urls[0]))?;
            let config = ConnectionManagerConfig::new()
                .set_push_sender(push)
                .set_automatic_resubscription()
                .set_connection_timeout(Some(CLUSTER_CONNECT_TIMEOUT))
                .set_response_timeout(Some(CLUSTER_RESPONSE_TIMEOUT))
                .set_number_of_retries(1)
                .set_min_delay(CLUSTER_MIN_BACKOFF)
                .set_max_delay(CLUSTER_MAX_BACKOFF);
            let conn = client
                .get_connection_manager_with_config(config)
                .await
                .map_err(|e| format!("cannot connect to Redis at {}: {e}", urls[0]))?;
            Conn::Single(conn)
        };
        tracing::info!(
            node,
            mode = if sharded {
                "Redis Cluster"
            } else {
                "standalone Redis"
            },
            "clustered through {}",
            urls.join(",")
        );
        Ok(Cluster(Arc::new(Inner {
            conn,
            node,
            sharded,
            cache_size,
            scripts: Scripts::new(),
            routes,
            health: Health::default(),
        })))
    }

    /// This broker's node id, as the `one` census in Redis names it.
    pub fn node(&self) -> u64 {
        self.0.node
    }

    /// Numbers, caches and publishes a batch of sends to one topic in one
    /// script call (one round trip); the first message's index.
    pub fn publish(
        &self,
        keys: Arc<Keys>,
        batch: Vec<Outgoing>,
    ) -> impl Future<Output = RedisResult<u64>> + 'static {
        let inner = self.0.clone();
        async move {
            let mut invocation = inner.scripts.publish.prepare_invoke();
            invocation
                .key(&keys.next)
                .key(&keys.cache)
                .key(&keys.subs)
                .key(&keys.cursor)
                .key(&keys.channel)
                .arg(inner.publish_command())
                .arg(inner.cache_size);
            for message in &batch {
                let flags: &[u8] = match (message.one, message.cache) {
                    (false, false) => b"a0",
                    (false, true) => b"a1",
                    (true, false) => b"o0",
                    (true, true) => b"o1",
                };
                invocation.arg(flags).arg(&message.head[..]);
            }
            let mut conn = inner.conn.clone();
            inner
                .checked(async { invocation.invoke_async(&mut conn).await })
                .await
        }
    }

    /// Listens on the topic's channel: from when this resolves, every
    /// message published to the topic reaches `topic` as [`Heard`].
    pub fn listen(
        &self,
        keys: Arc<Keys>,
        topic: Recipient<Heard>,
    ) -> impl Future<Output = RedisResult<()>> + 'static {
        let inner = self.0.clone();
        async move {
            let new = inner
                .routes
                .lock()
                .insert(keys.channel.clone(), topic)
                .is_none();
            let subscribed = inner
                .checked(async {
                    match inner.conn.clone() {
                        Conn::Single(mut conn) => conn.subscribe(&keys.channel).await,
                        Conn::Sharded(mut conn) => conn.ssubscribe(&keys.channel).await,
                    }
                })
                .await;
            if subscribed.is_err() && new {
                inner.routes.lock().remove(&keys.channel);
            }
            subscribed
        }
    }

    /// Registers this node's subscriber count for the topic and, if
    /// `replay` is `Some((from, below))`, takes the cached messages with
    /// indexes from `from` (and below `below`, if given), consuming their
    /// `one` messages, all in one atomic step.
    pub fn join(
        &self,
        keys: Arc<Keys>,
        subscribers: usize,
        replay: Option<(u64, Option<u64>)>,
    ) -> impl Future<Output = RedisResult<Joined>> + 'static {
        let inner = self.0.clone();
        async move {
            let (from, below) = match replay {
                Some((from, below)) => (from.to_string(), below.map(|b| b.to_string())),
                None => (String::new(), None),
            };
            let mut invocation = inner.scripts.join.prepare_invoke();
            invocation
                .key(&keys.next)
                .key(&keys.cache)
                .key(&keys.subs)
                .arg(inner.node)
                .arg(subscribers)
                .arg(CLUSTER_NODE_TTL.as_millis() as u64)
                .arg(from)
                .arg(below.unwrap_or_default());
            let mut conn = inner.conn.clone();
            let reply: Vec<Vec<u8>> = inner
                .checked(async { invocation.invoke_async(&mut conn).await })
                .await?;
            let mut reply = reply.into_iter();
            let next_index = reply
                .next()
                .and_then(|next| std::str::from_utf8(&next).ok()?.parse().ok())
                .ok_or_else(|| malformed("the topic's counter is not a number"))?;
            let replay = reply
                .map(|entry| records::parse_entry(Bytes::from(entry)).map_err(malformed))
                .collect::<RedisResult<Vec<Entry>>>()?;
            Ok(Joined { next_index, replay })
        }
    }

    /// The topic's next index and its cached messages from index `from`
    /// on, without consuming any: what a topic missed while its channel was
    /// interrupted. One round trip.
    pub fn cached_from(
        &self,
        keys: Arc<Keys>,
        from: u64,
    ) -> impl Future<Output = RedisResult<Joined>> + 'static {
        let inner = self.0.clone();
        async move {
            let mut conn = inner.conn.clone();
            let (next_index, entries): (Option<u64>, Vec<Vec<u8>>) = inner
                .checked(async {
                    redis::pipe()
                        .cmd("GET")
                        .arg(&keys.next)
                        .cmd("ZRANGEBYSCORE")
                        .arg(&keys.cache)
                        .arg(from)
                        .arg("+inf")
                        .query_async(&mut conn)
                        .await
                })
                .await?;
            let replay = entries
                .into_iter()
                .map(|entry| records::parse_entry(Bytes::from(entry)).map_err(malformed))
                .collect::<RedisResult<Vec<Entry>>>()?;
            Ok(Joined {
                next_index: next_index.unwrap_or(0),
                replay,
            })
        }
    }

    /// Refreshes this node's subscriber count for the topic (its heartbeat,
    /// or a change); 0 removes the node from the topic's census. Answers
    /// the topic's next index, by which the node sees whether it heard
    /// everything published.
    pub fn refresh(
        &self,
        keys: Arc<Keys>,
        subscribers: usize,
    ) -> impl Future<Output = RedisResult<u64>> + 'static {
        let inner = self.0.clone();
        async move {
            let mut invocation = inner.scripts.refresh.prepare_invoke();
            invocation
                .key(&keys.subs)
                .key(&keys.next)
                .arg(inner.node)
                .arg(subscribers)
                .arg(CLUSTER_NODE_TTL.as_millis() as u64);
            let mut conn = inner.conn.clone();
            inner
                .checked(async { invocation.invoke_async(&mut conn).await })
                .await
        }
    }

    /// Hands a `one` message this node cannot deliver to another node, or
    /// caches it as waiting (if `cache`) when no other node subscribes.
    pub fn reroute(
        &self,
        keys: Arc<Keys>,
        index: u64,
        line: Bytes,
        cache: bool,
    ) -> impl Future<Output = RedisResult<()>> + 'static {
        let inner = self.0.clone();
        async move {
            let mut invocation = inner.scripts.reroute.prepare_invoke();
            invocation
                .key(&keys.cache)
                .key(&keys.subs)
                .key(&keys.cursor)
                .key(&keys.channel)
                .arg(inner.publish_command())
                .arg(inner.cache_size)
                .arg(inner.node)
                .arg(index)
                .arg(&line[..])
                .arg(if cache { "1" } else { "0" });
            let mut conn = inner.conn.clone();
            inner
                .checked(async { invocation.invoke_async::<()>(&mut conn).await })
                .await
        }
    }
}

impl Inner {
    fn publish_command(&self) -> &'static str {
        if self.sharded {
            "SPUBLISH"
        } else {
            "PUBLISH"
        }
    }

    /// Runs a request unless an outage says to fail at once, and notes
    /// what it found. However the client retries and recovers inside, the
    /// request fails after [`CLUSTER_REQUEST_TIMEOUT`]: a send is never
    /// left unanswered for longer.
    async fn checked<T>(&self, request: impl Future<Output = RedisResult<T>>) -> RedisResult<T> {
        self.health.gate()?;
        let result = tokio::time::timeout(CLUSTER_REQUEST_TIMEOUT, request)
            .await
            .unwrap_or_else(|_| {
                Err(RedisError::from((
                    ErrorKind::Io,
                    "no answer from Redis in time",
                )))
            });
        if self.health.observe(&result) {
            // Whatever the connection saw, the topics catch up on what
            // they may have missed during the outage.
            self.routes.interrupt();
        }
        result
    }
}

fn malformed(what: &'static str) -> RedisError {
    RedisError::from((ErrorKind::Parse, what))
}

/// Whether the Redis at `url` runs in cluster mode.
async fn is_cluster_node(url: &str) -> Result<bool, String> {
    let client = redis::Client::open(url).map_err(|e| format!("--cluster {url}: {e}"))?;
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .map_err(|e| format!("cannot connect to Redis at {url}: {e}"))?;
    let info: String = redis::cmd("INFO")
        .arg("cluster")
        .query_async(&mut conn)
        .await
        .map_err(|e| format!("Redis at {url}: {e}"))?;
    Ok(info.contains("cluster_enabled:1"))
}

/// A random, non-zero node id: std's hasher keys are random per process.
fn node_id() -> u64 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    hasher.finish().max(1)
}
