-- A node's heartbeat for one topic, or its new subscriber count.
-- KEYS: subs, next. ARGV: node id, subscriber count, heartbeat TTL (ms).
-- Returns the topic's next index (as a string).
register(KEYS[1], ARGV[1], ARGV[2], tonumber(ARGV[3]))
return redis.call('GET', KEYS[2]) or '0'
