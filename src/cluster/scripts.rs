//! The Lua scripts that keep a topic's state in Redis, and the names of the
//! keys they touch. Every key of a topic carries the hash tag `{t:NAME}`, so
//! in Redis Cluster a topic lives on one shard and each script runs there,
//! atomically.

use redis::Script;

/// Each script is `common.lua` (helpers a script cannot import) followed by
/// its own body; loaded by hash on first use (`EVALSHA`, then `SCRIPT LOAD`
/// if the shard does not know it yet).
#[derive(Debug)]
pub struct Scripts {
    pub publish: Script,
    pub join: Script,
    pub refresh: Script,
    pub reroute: Script,
}

impl Scripts {
    pub fn new() -> Scripts {
        Scripts {
            publish: Script::new(concat!(
                include_str!("common.lua"),
                include_str!("publish.lua")
            )),
            join: Script::new(concat!(
                include_str!("common.lua"),
                include_str!("join.lua")
            )),
            refresh: Script::new(concat!(
                include_str!("common.lua"),
                include_str!("refresh.lua")
            )),
            reroute: Script::new(concat!(
                include_str!("common.lua"),
                include_str!("reroute.lua")
            )),
        }
    }
}

/// The Redis names of one topic, made once when its actor starts.
#[derive(Debug)]
pub struct Keys {
    /// The next index to hand out (a counter; absent means 0).
    pub next: Vec<u8>,
    /// The cache: a sorted set of entries scored by index.
    pub cache: Vec<u8>,
    /// Node id → `COUNT:EXPIRY_MS`: who subscribes, for `one` messages.
    pub subs: Vec<u8>,
    /// The cluster-wide round-robin cursor for `one` messages.
    pub cursor: Vec<u8>,
    /// The pub/sub channel every message is published on.
    pub channel: Vec<u8>,
}

impl Keys {
    pub fn new(topic: &str) -> Keys {
        let key = |suffix: &str| {
            let mut key = Vec::with_capacity(topic.len() + 12);
            key.extend_from_slice(b"{t:");
            key.extend_from_slice(topic.as_bytes());
            key.extend_from_slice(b"}:");
            key.extend_from_slice(suffix.as_bytes());
            key
        };
        Keys {
            next: key("next"),
            cache: key("cache"),
            subs: key("subs"),
            cursor: key("cursor"),
            channel: key("live"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_of_a_topic_shares_its_hash_tag() {
        let keys = Keys::new("a}b{c");
        for key in [
            &keys.next,
            &keys.cache,
            &keys.subs,
            &keys.cursor,
            &keys.channel,
        ] {
            assert!(
                key.starts_with(b"{t:a}"),
                "{:?}",
                String::from_utf8_lossy(key)
            );
        }
        assert_ne!(Keys::new("x").next, Keys::new("x}:next").next);
    }
}
