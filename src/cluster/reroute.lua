-- A `one` message that a node could not deliver (its subscriber left):
-- handed to another node, or cached as waiting when nobody else subscribes.
-- KEYS: cache, subs, cursor, channel.
-- ARGV: publish command, cache size, the node giving it back, index, line,
-- `1` to cache it or `0`.
-- Returns 1 if another node takes it, 0 if not.
local cache, subs, cursor, channel = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local cache_size = tonumber(ARGV[2])
local nodes, total = live_nodes(subs, ARGV[3])
local target = pick(nodes, total, cursor)
if target then
  redis.call(ARGV[1], channel, record(ARGV[4], target, ARGV[6], ARGV[5]))
  return 1
end
if ARGV[6] == '1' and cache_size > 0 then
  cache_add(cache, cache_size, ARGV[4], true, ARGV[5])
end
return 0
