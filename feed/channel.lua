-- One channel's state, history and live publication, changed atomically.
--
-- KEYS[1]  the channel's meta hash (epoch, seq, state)
-- KEYS[2]  the channel's history stream (entry id "<seq>-0", field "m" = the envelope)
-- ARGV[1]  "sync" or "publish"
-- ARGV[2]  a fresh epoch, used only when the channel needs a new one
-- ARGV[3]  the initial state (JSON), used only with a new epoch when there is no state
-- ARGV[4]  the caller's known epoch ("" for none) and ARGV[5] its known seq (-1 for none)
--
-- A channel exists in Redis once something is published on it. Reading one that does not exist
-- writes nothing (anyone may ask for any name): it answers the initial state at seq 0 of the
-- channel's placeholder epoch (derived from the venue's epoch seed, feed.bus). The first
-- publish makes the channel exist in that very epoch, so readers who followed it carry on with
-- seq 1, no new snapshot. A lost seed (Redis lost everything) gives other placeholders.
--
-- A replica promoted by a failover may lack the last events of the primary it replaces, events
-- that servers and clients may have seen: the same seq could then name two events. So each
-- channel records the replication id of the primary that last wrote it ('node'); the first call
-- on a channel last written by the primary this Redis took over from (its master_replid2) moves
-- it to a new epoch, whoever calls (a server re-reading it, or a publisher that knows nothing).
-- A Redis restarted from its own files is no promoted replica: its channels keep their epoch.
--
-- sync:    ARGV[6] epoch and ARGV[7] seq to read history after, ARGV[8] most entries to return,
--          ARGV[9] the placeholder epoch;
--          returns {epoch, seq, state, exists (1 or 0), envelope...}
-- publish: ARGV[6] the new state, ARGV[7..9] the envelope cut around epoch and seq,
--          ARGV[10] history length, ARGV[11] the pub/sub channel, ARGV[12] the change's id,
--          ARGV[13] the placeholder epoch;
--          returns {1, epoch, seq} when published; {2, epoch, seq} when this very change was
--          already published (the call was retried after its reply was lost); or
--          {0, epoch, seq, state} when the caller's known position is not the channel's
--          (recompute the state and try again)
local meta, log = KEYS[1], KEYS[2]
local known_epoch, known_seq = ARGV[4], tonumber(ARGV[5])
local placeholder = ARGV[1] == 'sync' and ARGV[9] or ARGV[13]
local replication = redis.call('INFO', 'replication')
local node = string.match(replication, 'master_replid:(%w+)') or ''
local previous_node = string.match(replication, 'master_replid2:(%w+)') or ''

local function new_epoch(keep_state)
  redis.call('DEL', log)
  if keep_state then
    redis.call('HSET', meta, 'epoch', ARGV[2], 'seq', 0, 'node', node)
  else
    redis.call('HSET', meta, 'epoch', ARGV[2], 'seq', 0, 'state', ARGV[3], 'node', node)
  end
  return ARGV[2], 0
end

local epoch = redis.call('HGET', meta, 'epoch')
local seq
if not epoch then
  if (known_epoch == placeholder and known_seq > 0) or redis.call('EXISTS', log) == 1 then
    -- The channel existed (the caller, a server or a publisher but never a client, saw it at
    -- a later seq; or its history is still there): Redis lost it (an older append-only file).
    -- A fresh epoch, so that no (epoch, seq) ever names two events.
    epoch, seq = new_epoch(false)
  elseif ARGV[1] == 'sync' then
    return {placeholder, 0, ARGV[3], 0}
  else
    -- The first publish: the channel takes the epoch its readers were given.
    redis.call('DEL', log)
    redis.call('HSET', meta, 'epoch', placeholder, 'seq', 0, 'state', ARGV[3])
    epoch, seq = placeholder, 0
  end
else
  seq = tonumber(redis.call('HGET', meta, 'seq')) or 0
  local writer = redis.call('HGET', meta, 'node')
  if (known_epoch == epoch and known_seq > seq) or (writer and writer == previous_node) then
    -- Redis lost writes it had acknowledged (an older append-only file replayed), or may have
    -- (a promoted replica): the same seq would now name two different events, so move to a
    -- new epoch and keep the state.
    epoch, seq = new_epoch(redis.call('HEXISTS', meta, 'state') == 1)
  end
end

if ARGV[1] == 'sync' then
  local reply = {epoch, seq, redis.call('HGET', meta, 'state'), 1}
  local after = tonumber(ARGV[7])
  if ARGV[6] == epoch and after >= 0 and after < seq then
    local entries = redis.call('XRANGE', log, (after + 1) .. '-0', '+', 'COUNT', tonumber(ARGV[8]))
    for _, entry in ipairs(entries) do
      reply[#reply + 1] = entry[2][2]
    end
  end
  return reply
end

if known_epoch ~= epoch or known_seq ~= seq then
  if redis.call('HGET', meta, 'last') == ARGV[12] then
    -- Written again (the same value): a WAIT after this call then covers the change too.
    redis.call('HSET', meta, 'last', ARGV[12])
    return {2, epoch, seq}
  end
  return {0, epoch, seq, redis.call('HGET', meta, 'state')}
end
seq = seq + 1
local envelope = ARGV[7] .. epoch .. ARGV[8] .. seq .. ARGV[9]
redis.call('XADD', log, 'MAXLEN', '~', ARGV[10], seq .. '-0', 'm', envelope)
redis.call('HSET', meta, 'seq', seq, 'state', ARGV[6], 'last', ARGV[12], 'node', node)
redis.call('PUBLISH', ARGV[11], envelope)
return {1, epoch, seq}
