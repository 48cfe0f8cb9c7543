//! Control (the contract's "control" section): cancellations and replies to
//! server-to-client requests go to the one worker concerned, on its own channel; session
//! ends and listing changes go to every worker on the shared control channel.

use super::{RedisBus, corrupt, lock, redis_err};
use crate::error::BusError;
use crate::ids::{SessionId, WorkerId};
use crate::message::Control;
use mcp_protocol::RequestId;
use redis::AsyncCommands;
use tokio::sync::broadcast;

impl RedisBus {
    pub(super) async fn send_control(&self, message: Control) -> Result<(), BusError> {
        let payload = serde_json::to_string(&message).map_err(corrupt)?;
        let mut conn = self.conn();
        match &message {
            Control::Cancel {
                session,
                request_id,
                ..
            } => {
                let field = serde_json::to_string(request_id).map_err(corrupt)?;
                // Either the worker's `take` sees the marker, or we see its claim: the
                // marker is written before the second look.
                let running: Option<String> = conn
                    .hget(self.keys.running(session), &field)
                    .await
                    .map_err(redis_err)?;
                let worker = match running {
                    Some(worker) => Some(worker),
                    None => {
                        let (_, _, running): ((), (), Option<String>) = redis::pipe()
                            .hset(self.keys.cancelled(session), &field, 1)
                            .pexpire(self.keys.cancelled(session), self.ttl_ms() as i64)
                            .hget(self.keys.running(session), &field)
                            .query_async(&mut conn)
                            .await
                            .map_err(redis_err)?;
                        running
                    }
                };
                if let Some(worker) = worker {
                    let _: i64 = conn
                        .publish(self.keys.worker_channel(&WorkerId(worker)), payload)
                        .await
                        .map_err(redis_err)?;
                }
            }
            Control::ClientResponse { request_id, .. } => {
                // Our requests to clients are named `<worker id>-<n>`.
                let worker = match request_id {
                    RequestId::String(s) => s.rsplit_once('-').map(|(w, _)| w.to_owned()),
                    RequestId::Number(_) => None,
                };
                match worker {
                    Some(worker) => {
                        let _: i64 = conn
                            .publish(self.keys.worker_channel(&WorkerId(worker)), payload)
                            .await
                            .map_err(redis_err)?;
                    }
                    None => {
                        tracing::debug!(request = %request_id, "a response to no request of ours")
                    }
                }
            }
            Control::SessionEnded { .. } | Control::SetListed { .. } => {
                let _: i64 = conn
                    .publish(self.keys.control_channel(), payload)
                    .await
                    .map_err(redis_err)?;
            }
        }
        Ok(())
    }

    pub(super) async fn subscribe_control(
        &self,
        worker: &WorkerId,
    ) -> Result<broadcast::Receiver<Control>, BusError> {
        let receiver = self.hub.control.subscribe();
        self.control_ready
            .get_or_try_init(|| self.hub.subscribe_channel(self.keys.control_channel()))
            .await?;
        // Marked only once subscribed, so a failed attempt is retried by the next call.
        let known = lock(&self.control_subscribed).contains(worker);
        if !known {
            self.hub
                .subscribe_channel(self.keys.worker_channel(worker))
                .await?;
            lock(&self.control_subscribed).insert(worker.clone());
        }
        Ok(receiver)
    }

    pub(super) async fn adopt_call(
        &self,
        worker: &WorkerId,
        session: &SessionId,
        request_id: &RequestId,
    ) -> Result<(), BusError> {
        let field = serde_json::to_string(request_id).map_err(corrupt)?;
        let key = self.keys.running(session);
        let mut conn = self.conn();
        let ((), ()) = redis::pipe()
            .hset(&key, &field, &worker.0)
            .pexpire(&key, self.ttl_ms() as i64)
            .query_async(&mut conn)
            .await
            .map_err(redis_err)?;
        Ok(())
    }
}
