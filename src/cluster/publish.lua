-- A batch of sends to one topic, numbered, cached and published at once.
-- KEYS: next, cache, subs, cursor, channel.
-- ARGV: publish command (PUBLISH or SPUBLISH), cache size, then per
-- message its flags (`a` or `o`, then `1` to cache or `0`) and the
-- delivered line up to its index.
-- Returns the first message's index.
local next_key, cache, subs, cursor, channel = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local publish, cache_size = ARGV[1], tonumber(ARGV[2])
local count = (#ARGV - 2) / 2
local first = redis.call('INCRBY', next_key, count) - count
local nodes, total
local records = {}
for k = 0, count - 1 do
  local flags, head = ARGV[3 + 2 * k], ARGV[4 + 2 * k]
  local index = string.format('%d', first + k)
  local line = head .. index .. '}\r\n'
  local one = string.sub(flags, 1, 1) == 'o'
  local keep = string.sub(flags, 2, 2) == '1' and cache_size > 0
  if one then
    if not nodes then
      nodes, total = live_nodes(subs, '')
    end
    local target = pick(nodes, total, cursor)
    if target then
      records[#records + 1] = record(index, target, string.sub(flags, 2, 2), line)
    elseif keep then
      cache_add(cache, cache_size, index, true, line)
    end
  else
    records[#records + 1] = record(index, '-', string.sub(flags, 2, 2), line)
    if keep then
      cache_add(cache, cache_size, index, false, line)
    end
  end
end
if #records > 0 then
  redis.call(publish, channel, table.concat(records))
end
return first
