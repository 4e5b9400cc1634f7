-- Helpers shared by the scripts below (each script is this file followed by
-- its own body: a script cannot call another one).

-- Milliseconds by the Redis server's clock, so that every node's expiries
-- are compared on one clock, whatever the nodes' own clocks say.
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- A node's share of a topic's `one` messages: its local subscriber count,
-- valid until an expiry its heartbeat keeps pushing back.
local function register(subs, node, count, ttl_ms)
  if count == '0' then
    redis.call('HDEL', subs, node)
  else
    redis.call('HSET', subs, node, count .. ':' .. string.format('%d', now_ms() + ttl_ms))
  end
end

-- The live nodes with subscribers, sorted by id so every script walks them
-- in one order, and their subscriber total; expired entries are removed.
local function live_nodes(subs, excluded)
  local now = now_ms()
  local flat = redis.call('HGETALL', subs)
  local nodes, total = {}, 0
  for i = 1, #flat, 2 do
    local node = flat[i]
    local count, expiry = string.match(flat[i + 1], '^(%d+):(%d+)$')
    count, expiry = tonumber(count), tonumber(expiry)
    if not count or expiry < now then
      redis.call('HDEL', subs, node)
    elseif node ~= excluded and count > 0 then
      nodes[#nodes + 1] = {node, count}
      total = total + count
    end
  end
  table.sort(nodes, function(a, b) return a[1] < b[1] end)
  return nodes, total
end

-- The node that takes the next `one` message: a cluster-wide cursor over
-- every subscriber of every node, each node owning as many consecutive
-- positions as it has subscribers; nil when nobody subscribes anywhere.
local function pick(nodes, total, cursor)
  if total == 0 then
    return nil
  end
  local position = redis.call('INCR', cursor) % total
  for _, node in ipairs(nodes) do
    if position < node[2] then
      return node[1]
    end
    position = position - node[2]
  end
  return nil
end

-- One message as published: `INDEX TARGET CACHE LENGTH\n` then the line,
-- TARGET being `-` for `all` or the id of the node that delivers a `one`,
-- CACHE `1` or `0` as the sender asked (where a `one` goes if it comes back).
local function record(index, target, cache, line)
  return index .. ' ' .. target .. ' ' .. cache .. ' ' .. #line .. '\n' .. line
end

-- Caches a message (member `a INDEX LINE` or `o INDEX LINE`, scored by
-- its index, a decimal string) and evicts the lowest indexes beyond the
-- cache size.
local function cache_add(cache, cache_size, index, one, line)
  local kind = one and 'o' or 'a'
  redis.call('ZADD', cache, index, kind .. index .. ' ' .. line)
  local excess = redis.call('ZCARD', cache) - cache_size
  if excess > 0 then
    redis.call('ZREMRANGEBYRANK', cache, 0, excess - 1)
  end
end
