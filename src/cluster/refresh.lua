-- A node's heartbeat for one topic, or its new subscriber count.
-- KEYS: subs. ARGV: node id, subscriber count, heartbeat TTL (ms).
register(KEYS[1], ARGV[1], ARGV[2], tonumber(ARGV[3]))
return 1
