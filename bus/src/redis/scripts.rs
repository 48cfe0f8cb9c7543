//! Lua scripts: each multi-key step that must be atomic is one script, so the log and the
//! live message can never disagree (the Centrifugo pattern).

use redis::Script;
use std::sync::LazyLock;

/// Appends a session event and publishes it, with the next dense sequence number.
/// KEYS: session, log. ARGV: log max length, channel, payload, ttl ms, publish command
/// (`PUBLISH`, or `SPUBLISH` in a cluster).
/// Returns the sequence number, or -1 when the session does not exist.
pub static PUBLISH_EVENT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local seq = redis.call('HINCRBY', KEYS[1], 'seq', 1)
redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[1], seq .. '-1', 'e', ARGV[3])
redis.call('PEXPIRE', KEYS[2], ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call(ARGV[5], ARGV[2], 'e ' .. seq .. ' ' .. ARGV[3])
return seq
",
    )
});

/// Appends several session events of one stream, with consecutive sequence numbers, and
/// publishes them as one message (`b FIRST` then the payloads, one per line: compact JSON
/// has no raw newline): `PUBLISH_EVENT` for a batch, in one round trip and one pub/sub
/// message, which every subscribed gateway decodes once instead of once per event.
/// KEYS: session, log. ARGV: log max length, channel, ttl ms, publish command, payload...
/// (at least one).
/// Returns the last sequence number, or -1 when the session does not exist.
pub static PUBLISH_EVENTS: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local n = #ARGV - 4
local last = redis.call('HINCRBY', KEYS[1], 'seq', n)
local payloads = {}
for i = 1, n do
  redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[1], (last - n + i) .. '-1', 'e', ARGV[4 + i])
  payloads[i] = ARGV[4 + i]
end
redis.call(ARGV[4], ARGV[2], 'b ' .. (last - n + 1) .. ' ' .. table.concat(payloads, '\n'))
redis.call('PEXPIRE', KEYS[2], ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return last
",
    )
});

/// Appends a broadcast and publishes it.
/// KEYS: seq counter, log. ARGV: log max length, channel, payload. Returns the sequence.
pub static PUBLISH_BROADCAST: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local seq = redis.call('INCR', KEYS[1])
redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[1], seq .. '-1', 'm', ARGV[3])
redis.call('PUBLISH', ARGV[2], seq .. ' ' .. ARGV[3])
return seq
",
    )
});

/// Queues a job unless the queue is full. KEYS: jobs. ARGV: max length, payload.
/// Returns the entry id, or false when full.
pub static ENQUEUE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('XLEN', KEYS[1]) >= tonumber(ARGV[1]) then return false end
return redis.call('XADD', KEYS[1], '*', 'job', ARGV[2])
",
    )
});

/// Ends a session. KEYS: session, log, running, cancelled, resources. ARGV: session
/// channel, control channel, control payload, the session channel's publish command. Returns `{0}` if it did not exist (its keys
/// are left to `forget_session`), else `{1, principal, uri...}`: what the caller must
/// still remove from the shared sets (another slot, so not here).
pub static END_SESSION: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local rec = redis.call('HGET', KEYS[1], 'rec')
if not rec then return {0} end
local principal = cjson.decode(rec)['principal'] or ''
local reply = {1, principal}
for _, uri in ipairs(redis.call('SMEMBERS', KEYS[5])) do reply[#reply + 1] = uri end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5])
redis.call(ARGV[4], ARGV[1], 'x')
redis.call('PUBLISH', ARGV[2], ARGV[3])
return reply
",
    )
});

/// Moves the standalone cursor forward, never back. KEYS: session. ARGV: cs, cb.
/// Returns -1 when the session does not exist.
pub static ADVANCE_CURSOR: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local cs = tonumber(redis.call('HGET', KEYS[1], 'cs') or '0')
local cb = tonumber(redis.call('HGET', KEYS[1], 'cb') or '0')
if tonumber(ARGV[1]) > cs then redis.call('HSET', KEYS[1], 'cs', ARGV[1]) end
if tonumber(ARGV[2]) > cb then redis.call('HSET', KEYS[1], 'cb', ARGV[2]) end
return 1
",
    )
});

/// Sets a field of a session that exists. KEYS: session. ARGV: field, value.
/// Returns -1 when the session does not exist.
pub static SET_IF_SESSION: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
",
    )
});

/// GCRA: draws one call from a rate budget on the server's clock (`TIME`), so nodes with
/// skewed clocks share one budget exactly. The `tat` key expires when the budget is full.
/// KEYS: rate key. ARGV: period ms, burst.
/// Returns `{1, "0"}` when admitted, `{0, wait ms}` when not (wait as a string: Lua numbers
/// become integers in replies).
pub static QUOTA_TAKE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local period = tonumber(ARGV[1])
local tolerance = period * (math.max(tonumber(ARGV[2]), 1) - 1)
local tat = now
local stored = redis.call('GET', KEYS[1])
if stored then tat = math.max(tonumber(stored), now) end
local wait = tat - now - tolerance
if wait > 0 then return {0, tostring(wait)} end
local nxt = tat + period
redis.call('SET', KEYS[1], tostring(nxt), 'PX', math.ceil(nxt - now) + 1)
return {1, '0'}
",
    )
});

/// Takes a running-call slot: drops slots whose lease ran out, then adds this one if fewer
/// than the limit are held. The key lives as long as its longest lease.
/// KEYS: slots key. ARGV: limit, lease ms, slot id.
/// Returns 1 when taken, 0 when all are held.
pub static QUOTA_ACQUIRE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then return 0 end
local lease = tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], now + lease, ARGV[3])
if redis.call('PTTL', KEYS[1]) < lease then redis.call('PEXPIRE', KEYS[1], lease) end
return 1
",
    )
});
