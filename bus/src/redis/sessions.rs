//! Sessions (the contract's "sessions" section): a session is the hash
//! `{<id>}:session` with the idle TTL, indexed in `session_index` (for `stats`) and in its
//! principal's set (for the per-principal limit). Loading or touching a session restarts
//! the idle timer of the hash and of its log together.

use super::{RedisBus, corrupt, redis_err, scripts};
use crate::error::BusError;
use crate::ids::SessionId;
use crate::message::{Control, SessionRecord, StandaloneCursor};
use crate::now_ms;
use mcp_protocol::LogLevel;
use redis::AsyncCommands;

/// The session hash's `rec`, `level`, `cs` and `cb` fields, as `HMGET` returns them.
type SessionFields = (Option<String>, Option<String>, Option<u64>, Option<u64>);

impl RedisBus {
    pub(super) async fn create_session(&self, record: SessionRecord) -> Result<(), BusError> {
        let mut conn = self.conn();
        let key = self.keys.session(&record.id);
        let rec = serde_json::to_string(&record).map_err(corrupt)?;
        let mut index = redis::pipe();
        index
            .zadd(
                self.keys.session_index(),
                record.id.as_str(),
                self.deadline_ms(),
            )
            .ignore()
            .hset(
                self.keys.session_principals(),
                record.id.as_str(),
                &record.principal,
            )
            .ignore()
            .zadd(
                self.keys.principal_sessions(&record.principal),
                record.id.as_str(),
                now_ms(),
            )
            .ignore();
        let mut hash = redis::pipe();
        hash.hset_multiple(
            &key,
            &[
                ("rec", rec),
                ("cs", record.standalone_cursor.session_seq.to_string()),
                ("cb", record.standalone_cursor.broadcast_seq.to_string()),
                ("seq", "0".to_owned()),
            ],
        )
        .ignore()
        .pexpire(&key, self.ttl_ms() as i64)
        .ignore();
        if !conn.is_cluster() {
            // One Redis: both in one MULTI.
            for cmd in hash.cmd_iter() {
                index.add_command(cmd.clone()).ignore();
            }
            let () = index
                .atomic()
                .query_async(&mut conn)
                .await
                .map_err(redis_err)?;
            return Ok(());
        }
        // A cluster refuses a MULTI over two slots ({registry} and {SID}): two steps, the
        // index first. Should the second fail, the index names a session that never
        // existed, which upkeep removes once its deadline passes (as for an expired one);
        // the other order could leave a live session no index knows, whose idle expiry
        // nobody would announce.
        let () = index.query_async(&mut conn).await.map_err(redis_err)?;
        let () = hash
            .atomic()
            .query_async(&mut conn)
            .await
            .map_err(redis_err)?;
        Ok(())
    }

    pub(super) async fn session(&self, id: &SessionId) -> Result<SessionRecord, BusError> {
        let mut conn = self.conn();
        let key = self.keys.session(id);
        let ttl = self.ttl_ms() as i64;
        let ((rec, level, cs, cb),): (SessionFields,) = redis::pipe()
            .cmd("HMGET")
            .arg(&key)
            .arg(&["rec", "level", "cs", "cb"])
            .pexpire(&key, ttl)
            .ignore()
            .pexpire(self.keys.log(id), ttl)
            .ignore()
            .add_command(self.index_refresh(id))
            .ignore()
            .query_async(&mut conn)
            .await
            .map_err(redis_err)?;
        let rec = rec.ok_or(BusError::SessionNotFound)?;
        let mut record: SessionRecord = serde_json::from_str(&rec).map_err(corrupt)?;
        record.log_level = level.as_deref().and_then(LogLevel::parse);
        record.standalone_cursor = StandaloneCursor {
            session_seq: cs.unwrap_or(0),
            broadcast_seq: cb.unwrap_or(0),
        };
        Ok(record)
    }

    pub(super) async fn count_sessions(&self, principal: &str) -> Result<u64, BusError> {
        // Members whose session hash is gone (ended or expired) are dropped as we go, so
        // the set stays as small as the principal's live sessions.
        let mut conn = self.conn();
        let key = self.keys.principal_sessions(principal);
        let members: Vec<String> = conn.zrange(&key, 0, -1).await.map_err(redis_err)?;
        if members.is_empty() {
            return Ok(0);
        }
        let mut pipe = redis::pipe();
        for id in &members {
            let Some(id) = SessionId::parse(id) else {
                continue;
            };
            pipe.exists(self.keys.session(&id));
        }
        let alive: Vec<bool> = pipe.query_async(&mut conn).await.map_err(redis_err)?;
        let dead: Vec<&String> = members
            .iter()
            .zip(&alive)
            .filter(|(_, alive)| !**alive)
            .map(|(id, _)| id)
            .collect();
        if !dead.is_empty() {
            let _: i64 = conn.zrem(&key, dead).await.map_err(redis_err)?;
        }
        Ok(alive.iter().filter(|a| **a).count() as u64)
    }

    pub(super) async fn touch_session(&self, id: &SessionId) -> Result<(), BusError> {
        let mut conn = self.conn();
        let ttl = self.ttl_ms() as i64;
        let (exists,): (bool,) = redis::pipe()
            .pexpire(self.keys.session(id), ttl)
            .pexpire(self.keys.log(id), ttl)
            .ignore()
            .add_command(self.index_refresh(id))
            .ignore()
            .query_async(&mut conn)
            .await
            .map_err(redis_err)?;
        if exists {
            Ok(())
        } else {
            Err(BusError::SessionNotFound)
        }
    }

    pub(super) async fn set_log_level(
        &self,
        id: &SessionId,
        level: LogLevel,
    ) -> Result<(), BusError> {
        let mut conn = self.conn();
        let done: i64 = scripts::SET_IF_SESSION
            .key(self.keys.session(id))
            .arg("level")
            .arg(level.as_str())
            .invoke_async(&mut conn)
            .await
            .map_err(redis_err)?;
        if done < 0 {
            Err(BusError::SessionNotFound)
        } else {
            Ok(())
        }
    }

    pub(super) async fn advance_standalone_cursor(
        &self,
        id: &SessionId,
        cursor: StandaloneCursor,
    ) -> Result<(), BusError> {
        let mut conn = self.conn();
        let done: i64 = scripts::ADVANCE_CURSOR
            .key(self.keys.session(id))
            .arg(cursor.session_seq)
            .arg(cursor.broadcast_seq)
            .invoke_async(&mut conn)
            .await
            .map_err(redis_err)?;
        if done < 0 {
            Err(BusError::SessionNotFound)
        } else {
            Ok(())
        }
    }

    pub(super) async fn end_session(&self, id: &SessionId) -> Result<bool, BusError> {
        let mut conn = self.conn();
        let control = serde_json::to_string(&Control::SessionEnded {
            session: id.clone(),
        })
        .map_err(corrupt)?;
        let reply: Vec<redis::Value> = scripts::END_SESSION
            .key(self.keys.session(id))
            .key(self.keys.log(id))
            .key(self.keys.running(id))
            .key(self.keys.cancelled(id))
            .key(self.keys.session_resources(id))
            .arg(self.keys.session_channel(id))
            .arg(self.keys.control_channel())
            .arg(control)
            .arg(self.keys.session_publish())
            .invoke_async(&mut conn)
            .await
            .map_err(redis_err)?;
        let mut fields = reply
            .iter()
            .skip(1)
            .filter_map(|v| redis::from_redis_value_ref::<String>(v).ok());
        let Some(principal) = fields.next() else {
            // Gone already (expired, or ended elsewhere): take out whatever it left.
            self.forget_session(id).await?;
            return Ok(false);
        };
        let uris: Vec<String> = fields.collect();
        self.forget_shared(id, Some(&principal), &uris)
            .query_async::<()>(&mut conn)
            .await
            .map_err(redis_err)?;
        Ok(true)
    }

    /// When the session's idle TTL runs out if nobody uses it again (the score of
    /// `session_index`).
    pub(super) fn deadline_ms(&self) -> u64 {
        now_ms() + self.ttl_ms()
    }

    /// Moves a live session's deadline in `session_index` (`XX`: never re-adds a session
    /// that is gone, which upkeep took out).
    fn index_refresh(&self, id: &SessionId) -> redis::Cmd {
        let mut cmd = redis::cmd("ZADD");
        cmd.arg(self.keys.session_index())
            .arg("XX")
            .arg(self.deadline_ms())
            .arg(id.as_str());
        cmd
    }

    /// Removes everything a session leaves behind besides its hash: its place in the
    /// indexes, in its principal's set and in the subscriber sets of its resources, and
    /// its remaining keys. Called by `end_session` and by upkeep for an expired session.
    pub(super) async fn forget_session(&self, id: &SessionId) -> Result<(), BusError> {
        let mut conn = self.conn();
        let (principal, uris): (Option<String>, Vec<String>) = redis::pipe()
            .hget(self.keys.session_principals(), id.as_str())
            .smembers(self.keys.session_resources(id))
            .query_async(&mut conn)
            .await
            .map_err(redis_err)?;
        let mut pipe = self.forget_shared(id, principal.as_deref(), &uris);
        pipe.del(&[
            self.keys.log(id),
            self.keys.running(id),
            self.keys.cancelled(id),
            self.keys.session_resources(id),
        ])
        .ignore();
        let () = pipe.query_async(&mut conn).await.map_err(redis_err)?;
        Ok(())
    }

    /// The commands that take a session out of the shared sets: the index, the principal
    /// mapping and set, and the subscriber sets of `uris`.
    fn forget_shared(
        &self,
        id: &SessionId,
        principal: Option<&str>,
        uris: &[String],
    ) -> redis::Pipeline {
        let mut pipe = redis::pipe();
        pipe.zrem(self.keys.session_index(), id.as_str())
            .ignore()
            .hdel(self.keys.session_principals(), id.as_str())
            .ignore();
        if let Some(principal) = principal {
            pipe.zrem(self.keys.principal_sessions(principal), id.as_str())
                .ignore();
        }
        for uri in uris {
            pipe.srem(self.keys.resource_subscribers(uri), id.as_str())
                .ignore();
        }
        pipe
    }
}
