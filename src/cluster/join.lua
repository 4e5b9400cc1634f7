-- A subscribe on one node: registers the node's new subscriber count,
-- then takes the replay, removing the `one` messages it hands out, all in
-- one step, so two nodes replaying at once never both get one.
-- KEYS: next, cache, subs.
-- ARGV: node id, its subscriber count, heartbeat TTL (ms), first index to
-- replay (empty: no replay), index to replay below (empty: no bound).
-- Returns the topic's next index (as a string), then the cache entries.
local next_key, cache, subs = KEYS[1], KEYS[2], KEYS[3]
register(subs, ARGV[1], ARGV[2], tonumber(ARGV[3]))
local result = {redis.call('GET', next_key) or '0'}
if ARGV[4] ~= '' then
  local upper = '+inf'
  if ARGV[5] ~= '' then
    upper = '(' .. ARGV[5]
  end
  for _, entry in ipairs(redis.call('ZRANGEBYSCORE', cache, ARGV[4], upper)) do
    if string.sub(entry, 1, 1) == 'o' then
      redis.call('ZREM', cache, entry)
    end
    result[#result + 1] = entry
  end
end
return result
