//! Jobs (the contract's "jobs" section): one stream read by a consumer group of workers.
//! A running job's idle time is refreshed by its worker (see [`upkeep`](super::upkeep));
//! a job idle longer than the claim timeout belongs to a dead worker and is claimed by
//! another (`XAUTOCLAIM`) with `attempt` raised. `{<session>}:running` names the worker
//! running each request, `{<session>}:cancelled` the requests cancelled while queued.

use super::connection::{Conn, RedisMode, Source};
use super::keys::Keys;
use super::{RedisBus, corrupt, field_string, lock, metrics, redis_err, scripts};
use crate::error::BusError;
use crate::ids::WorkerId;
use crate::message::{EventBody, Job, StreamTarget};
use redis::AsyncCommands;
use redis::streams::{
    StreamAutoClaimOptions, StreamAutoClaimReply, StreamId as RedisStreamId, StreamReadOptions,
    StreamReadReply,
};
use std::sync::atomic::Ordering;
use std::time::Duration;

impl RedisBus {
    pub(super) async fn blocking_conn(&self) -> Result<Conn, BusError> {
        self.blocking
            .get_or_try_init(|| async {
                if self.config.mode == RedisMode::Cluster {
                    // Bounded anyway by `next_job` (its block time + 2 s).
                    return Conn::connect_cluster(
                        &self.config.url,
                        Duration::from_secs(60),
                        None::<super::hub::PushQueue>,
                    )
                    .await
                    .map_err(redis_err);
                }
                let config = redis::aio::ConnectionManagerConfig::new()
                    .set_response_timeout(None)
                    .set_number_of_retries(usize::MAX)
                    .set_max_delay(Duration::from_secs(1))
                    .set_connection_timeout(Some(Duration::from_secs(2)));
                let source = Source::new(
                    &self.config.mode,
                    &self.config.url,
                    &self.config.sentinel_master,
                )
                .map_err(redis_err)?;
                Conn::connect("blocking", source, config)
                    .await
                    .map_err(redis_err)
            })
            .await
            .cloned()
    }

    /// A failed read of the job stream; `NOGROUP` means the group must be made again.
    pub(super) fn job_read_error(&self, e: redis::RedisError) -> BusError {
        if e.code() == Some("NOGROUP") {
            self.job_group_ready.store(false, Ordering::Release);
        }
        redis_err(e)
    }

    pub(super) async fn ensure_group(&self) -> Result<(), BusError> {
        let mut conn = self.conn();
        let created: redis::RedisResult<()> = conn
            .xgroup_create_mkstream(self.keys.jobs(), Keys::JOB_GROUP, "0")
            .await;
        match created {
            Ok(()) => Ok(()),
            Err(e) if e.to_string().contains("BUSYGROUP") => Ok(()),
            Err(e) => Err(redis_err(e)),
        }
    }

    /// Claims one job that a dead worker left pending, if any.
    pub(super) async fn claim_abandoned(&self, worker: &WorkerId) -> Result<Option<Job>, BusError> {
        let mut conn = self.conn();
        let reply: StreamAutoClaimReply = conn
            .xautoclaim_options(
                self.keys.jobs(),
                Keys::JOB_GROUP,
                worker.0.as_str(),
                self.config.job_claim_idle.as_millis() as u64,
                "0-0",
                StreamAutoClaimOptions::default().count(1),
            )
            .await
            .map_err(|e| self.job_read_error(e))?;
        let Some(entry) = reply.claimed.into_iter().next() else {
            return Ok(None);
        };
        match Self::job_of(&entry) {
            Some(mut job) => {
                job.attempt += 1;
                tracing::warn!(session = %job.session, request = %job.request_id, attempt = job.attempt, "claimed a job whose worker stopped");
                Ok(Some(job))
            }
            None => {
                let _: () = redis::pipe()
                    .xack(self.keys.jobs(), Keys::JOB_GROUP, &[&entry.id])
                    .xdel(self.keys.jobs(), &[&entry.id])
                    .query_async(&mut conn)
                    .await
                    .map_err(redis_err)?;
                Ok(None)
            }
        }
    }

    pub(super) fn job_of(entry: &RedisStreamId) -> Option<Job> {
        let mut job: Job = serde_json::from_str(&field_string(entry, "job")?).ok()?;
        job.delivery_id = Some(entry.id.clone());
        Some(job)
    }

    /// Marks a job as taken by `worker`; false if the client cancelled it while queued (the
    /// job is then finished here, with no response, as for any cancelled request).
    pub(super) async fn take(&self, worker: &WorkerId, job: &Job) -> Result<bool, BusError> {
        let mut conn = self.conn();
        let field = serde_json::to_string(&job.request_id).map_err(corrupt)?;
        let (_, cancelled): ((), i64) = redis::pipe()
            .hset(self.keys.running(&job.session), &field, worker.0.as_str())
            .hdel(self.keys.cancelled(&job.session), &field)
            .query_async(&mut conn)
            .await
            .map_err(redis_err)?;
        if let Some(id) = &job.delivery_id {
            lock(&self.running_jobs).insert(id.clone());
        }
        if cancelled == 0 {
            return Ok(true);
        }
        let _ = self
            .publish(
                &job.session,
                StreamTarget::Request(job.stream),
                EventBody::End,
            )
            .await;
        self.finish_job(worker, job).await?;
        Ok(false)
    }

    pub(super) async fn enqueue(&self, job: Job) -> Result<(), BusError> {
        let payload = serde_json::to_string(&job).map_err(corrupt)?;
        let mut conn = self.conn();
        let id: Option<String> = scripts::ENQUEUE
            .key(self.keys.jobs())
            .arg(self.config.job_queue_len.max(1))
            .arg(payload)
            .invoke_async(&mut conn)
            .await
            .map_err(redis_err)?;
        id.map(|_| ()).ok_or(BusError::Overloaded)
    }

    pub(super) async fn next_job(&self, worker: &WorkerId) -> Result<Job, BusError> {
        if !self.job_group_ready.load(Ordering::Acquire) {
            self.ensure_group().await?;
            self.job_group_ready.store(true, Ordering::Release);
        }
        *lock(&self.consumer) = Some(worker.clone());
        loop {
            let claim_due = {
                let mut last = lock(&self.last_autoclaim);
                let due =
                    last.elapsed() >= self.config.heartbeat.min(self.config.job_claim_idle / 2);
                if due {
                    *last = std::time::Instant::now();
                }
                due
            };
            if claim_due && let Some(job) = self.claim_abandoned(worker).await? {
                if self.take(worker, &job).await? {
                    return Ok(job);
                }
                continue;
            }
            let mut conn = self.blocking_conn().await?;
            metrics::COMMANDS.inc();
            let block_ms = self.config.heartbeat.as_millis().min(2000) as usize;
            // This connection reconnects without limit and has no response timeout (the
            // read blocks on purpose), so a read sent to a master that is gone would wait
            // for it forever: bounded here, and a read that overruns its block counts as
            // a lost connection (with Sentinel, the connection moves to the new master).
            let stream = [self.keys.jobs()];
            let options = StreamReadOptions::default()
                .group(Keys::JOB_GROUP, worker.0.as_str())
                .count(1)
                .block(block_ms);
            let read = conn.xread_options(&stream, &[">"], &options);
            let bound = Duration::from_millis(block_ms as u64) + Duration::from_secs(2);
            let Ok(reply) = tokio::time::timeout(bound, read).await else {
                conn.timed_out();
                return Err(BusError::Unavailable(
                    "no answer from Redis to a blocking job read".into(),
                ));
            };
            let reply: Option<StreamReadReply> = reply.map_err(|e| self.job_read_error(e))?;
            let Some(entry) = reply
                .and_then(|r| r.keys.into_iter().next())
                .and_then(|k| k.ids.into_iter().next())
            else {
                continue;
            };
            let Some(job) = Self::job_of(&entry) else {
                tracing::warn!(id = entry.id, "dropping an unreadable job");
                let mut conn = self.conn();
                let _: () = redis::pipe()
                    .xack(self.keys.jobs(), Keys::JOB_GROUP, &[&entry.id])
                    .xdel(self.keys.jobs(), &[&entry.id])
                    .query_async(&mut conn)
                    .await
                    .map_err(redis_err)?;
                continue;
            };
            if self.take(worker, &job).await? {
                return Ok(job);
            }
        }
    }

    pub(super) async fn finish_job(&self, _worker: &WorkerId, job: &Job) -> Result<(), BusError> {
        let Some(id) = &job.delivery_id else {
            return Ok(());
        };
        lock(&self.running_jobs).remove(id);
        let field = serde_json::to_string(&job.request_id).map_err(corrupt)?;
        let mut conn = self.conn();
        let _: () = redis::pipe()
            .xack(self.keys.jobs(), Keys::JOB_GROUP, &[id])
            .ignore()
            .xdel(self.keys.jobs(), &[id])
            .ignore()
            .hdel(self.keys.running(&job.session), field)
            .ignore()
            .query_async(&mut conn)
            .await
            .map_err(redis_err)?;
        Ok(())
    }
}
