//! Resource subscriptions (the contract's "resource subscriptions" section): a session's
//! URIs in `{<session>}:resources` (removed with the session) and each URI's subscribers in
//! `{res}:subscribers:<uri>`; an update is published to each subscriber's session log.

use super::{RedisBus, redis_err};
use crate::error::BusError;
use crate::ids::SessionId;
use crate::message::{EventBody, StreamTarget};
use mcp_protocol::jsonrpc;
use redis::AsyncCommands;
use serde_json::json;

impl RedisBus {
    pub(super) async fn subscribe_resource(
        &self,
        session: &SessionId,
        uri: &str,
    ) -> Result<(), BusError> {
        let mut conn = self.conn();
        // The session's URI set has no TTL of its own: it must outlive an expired session
        // so upkeep can take the session out of each URI's subscribers.
        let (exists, (), ()): (bool, (), ()) = redis::pipe()
            .exists(self.keys.session(session))
            .sadd(self.keys.session_resources(session), uri)
            .ignore()
            .sadd(self.keys.resource_subscribers(uri), session.as_str())
            .ignore()
            .query_async::<(bool,)>(&mut conn)
            .await
            .map(|(e,)| (e, (), ()))
            .map_err(redis_err)?;
        if !exists {
            let _: redis::RedisResult<()> = redis::pipe()
                .srem(self.keys.resource_subscribers(uri), session.as_str())
                .del(self.keys.session_resources(session))
                .query_async(&mut conn)
                .await;
            return Err(BusError::SessionNotFound);
        }
        Ok(())
    }

    pub(super) async fn unsubscribe_resource(
        &self,
        session: &SessionId,
        uri: &str,
    ) -> Result<(), BusError> {
        let mut conn = self.conn();
        let (exists,): (bool,) = redis::pipe()
            .exists(self.keys.session(session))
            .srem(self.keys.session_resources(session), uri)
            .ignore()
            .srem(self.keys.resource_subscribers(uri), session.as_str())
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

    pub(super) async fn resource_updated(&self, uri: &str) -> Result<u64, BusError> {
        let subscribers: Vec<String> = {
            let mut conn = self.conn();
            conn.smembers(self.keys.resource_subscribers(uri))
                .await
                .map_err(redis_err)?
        };
        let message = jsonrpc::notification("notifications/resources/updated", json!({"uri": uri}));
        let mut notified = 0;
        let mut gone = Vec::new();
        for id in subscribers {
            let Some(session) = SessionId::parse(&id) else {
                continue;
            };
            // One publish per session keeps each session's keys in one slot (cluster-safe).
            match self
                .publish(
                    &session,
                    StreamTarget::Standalone,
                    EventBody::Message(message.clone()),
                )
                .await
            {
                Ok(_) => notified += 1,
                Err(BusError::SessionNotFound) => gone.push(id),
                Err(e) => return Err(e),
            }
        }
        if !gone.is_empty() {
            let mut conn = self.conn();
            let _: i64 = conn
                .srem(self.keys.resource_subscribers(uri), &gone)
                .await
                .map_err(redis_err)?;
        }
        Ok(notified)
    }
}
