//! Jobs (the contract's "jobs" section): a stream read by a consumer group of workers
//! (on one Redis one stream; in a cluster [`Keys::CLUSTER_JOB_STREAMS`] streams on
//! different slots, so jobs spread over the shards, each read by every worker).
//! A running job's idle time is refreshed by its worker (see [`upkeep`](super::upkeep));
//! a job idle longer than the claim timeout belongs to a dead worker and is claimed by
//! another (`XAUTOCLAIM`) with `attempt` raised. `{<session>}:running` names the worker
//! running each request, `{<session>}:cancelled` the requests cancelled while queued.
//!
//! With several streams a worker cannot block on all of them in one `XREADGROUP` (its
//! streams would span slots), so it runs one reader per stream, each on a connection of
//! its own (blocking reads on one connection would wait for each other), feeding one
//! queue that `next_job` takes from. Readers read only while a caller of `next_job` waits
//! and the queue has no job for it, so a busy or draining worker takes no jobs; a burst
//! may still bring one job per stream for one caller: a worker holds at most one job per
//! stream it has read but not started, and keeps it fresh like a running one (so no other
//! worker claims it meanwhile).

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
use std::sync::Weak;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// The job stream and entry id a delivery id names: `<stream>/<entry id>` with several
/// streams, the bare entry id (stream 0) with one.
pub(super) fn parse_delivery(delivery: &str) -> (usize, &str) {
    match delivery.split_once('/') {
        Some((stream, id)) => (stream.parse().unwrap_or(0), id),
        None => (0, delivery),
    }
}

impl RedisBus {
    /// The connection for blocking reads of job stream `stream` (one per stream: blocking
    /// reads on one connection would wait for each other).
    pub(super) async fn blocking_conn(&self, stream: usize) -> Result<Conn, BusError> {
        let cell = self
            .blocking
            .get(stream)
            .ok_or_else(|| BusError::Corrupt(format!("no job stream {stream}")))?;
        cell.get_or_try_init(|| async {
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
        for stream in 0..self.keys.job_streams() {
            let created: redis::RedisResult<()> = conn
                .xgroup_create_mkstream(self.keys.job_stream(stream), Keys::JOB_GROUP, "0")
                .await;
            match created {
                Ok(()) => {}
                Err(e) if e.to_string().contains("BUSYGROUP") => {}
                Err(e) => return Err(redis_err(e)),
            }
        }
        Ok(())
    }

    /// The delivery id of entry `id` of job stream `stream` (see [`parse_delivery`]).
    fn delivery(&self, stream: usize, id: &str) -> String {
        if self.keys.job_streams() > 1 {
            format!("{stream}/{id}")
        } else {
            id.to_owned()
        }
    }

    /// Claims one job that a dead worker left pending, if any, looking at every stream.
    pub(super) async fn claim_abandoned(&self, worker: &WorkerId) -> Result<Option<Job>, BusError> {
        for stream in 0..self.keys.job_streams() {
            if let Some(job) = self.claim_abandoned_in(worker, stream).await? {
                return Ok(Some(job));
            }
        }
        Ok(None)
    }

    async fn claim_abandoned_in(
        &self,
        worker: &WorkerId,
        stream: usize,
    ) -> Result<Option<Job>, BusError> {
        let mut conn = self.conn();
        let reply: StreamAutoClaimReply = conn
            .xautoclaim_options(
                self.keys.job_stream(stream),
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
        match self.job_of(stream, &entry) {
            Some(mut job) => {
                job.attempt += 1;
                tracing::warn!(session = %job.session, request = %job.request_id, attempt = job.attempt, "claimed a job whose worker stopped");
                Ok(Some(job))
            }
            None => {
                let _: () = redis::pipe()
                    .xack(self.keys.job_stream(stream), Keys::JOB_GROUP, &[&entry.id])
                    .xdel(self.keys.job_stream(stream), &[&entry.id])
                    .query_async(&mut conn)
                    .await
                    .map_err(redis_err)?;
                Ok(None)
            }
        }
    }

    pub(super) fn job_of(&self, stream: usize, entry: &RedisStreamId) -> Option<Job> {
        let mut job: Job = serde_json::from_str(&field_string(entry, "job")?).ok()?;
        job.delivery_id = Some(self.delivery(stream, &entry.id));
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
        // Spread over the streams in turn; each holds its share of the queue's bound.
        let streams = self.keys.job_streams();
        let stream = self.job_turn.fetch_add(1, Ordering::Relaxed) % streams;
        let id: Option<String> = scripts::ENQUEUE
            .key(self.keys.job_stream(stream))
            .arg(self.config.job_queue_len.div_ceil(streams).max(1))
            .arg(payload)
            .invoke_async(&mut conn)
            .await
            .map_err(redis_err)?;
        id.map(|_| ()).ok_or(BusError::Overloaded)
    }

    pub(super) async fn next_job(&self, worker: &WorkerId) -> Result<Job, BusError> {
        *lock(&self.consumer) = Some(worker.clone());
        loop {
            if !self.job_group_ready.load(Ordering::Acquire) {
                self.ensure_group().await?;
                self.job_group_ready.store(true, Ordering::Release);
            }
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
            let job = if self.keys.job_streams() == 1 {
                self.read_job(0, worker).await?
            } else {
                self.receive_job().await?
            };
            if let Some(job) = job
                && self.take(worker, &job).await?
            {
                return Ok(job);
            }
        }
    }

    /// One blocking read of job stream `stream` for `worker`: a job, or `None` when none
    /// came within the block time (or the entry was unreadable, and dropped).
    async fn read_job(&self, stream: usize, worker: &WorkerId) -> Result<Option<Job>, BusError> {
        let read = self.job_read(stream, worker).await?;
        let entry = read.run().await;
        self.job_read_done(stream, entry).await
    }

    /// What a blocking read of job stream `stream` needs, so a reader can run it without
    /// holding the bus (see [`read_stream`]).
    async fn job_read(&self, stream: usize, worker: &WorkerId) -> Result<JobRead, BusError> {
        Ok(JobRead {
            conn: self.blocking_conn(stream).await?,
            key: self.keys.job_stream(stream),
            worker: worker.clone(),
            block_ms: self.config.heartbeat.as_millis().min(2000) as usize,
        })
    }

    /// Turns a read's entry into a job (dropping an unreadable one).
    async fn job_read_done(
        &self,
        stream: usize,
        entry: Result<Option<RedisStreamId>, JobReadError>,
    ) -> Result<Option<Job>, BusError> {
        let entry = match entry {
            Ok(Some(entry)) => entry,
            Ok(None) => return Ok(None),
            Err(JobReadError::Redis(e)) => return Err(self.job_read_error(e)),
            Err(JobReadError::NoAnswer) => {
                return Err(BusError::Unavailable(
                    "no answer from Redis to a blocking job read".into(),
                ));
            }
        };
        let Some(job) = self.job_of(stream, &entry) else {
            tracing::warn!(id = entry.id, "dropping an unreadable job");
            let mut conn = self.conn();
            let _: () = redis::pipe()
                .xack(self.keys.job_stream(stream), Keys::JOB_GROUP, &[&entry.id])
                .xdel(self.keys.job_stream(stream), &[&entry.id])
                .query_async(&mut conn)
                .await
                .map_err(redis_err)?;
            return Ok(None);
        };
        Ok(Some(job))
    }

    /// With several job streams: the next job any of this process's readers (one per
    /// stream, started on first use) took, or `None` after a heartbeat without one (so
    /// `next_job` looks for abandoned jobs again).
    async fn receive_job(&self) -> Result<Option<Job>, BusError> {
        let jobs = self.job_readers.get_or_init(|| {
            let (tx, rx) = async_channel::bounded(1);
            for stream in 0..self.keys.job_streams() {
                tokio::spawn(read_stream(self.me.clone(), stream, tx.clone()));
            }
            rx
        });
        // Readers read only while someone waits for a job (see `read_stream`).
        let _waiting = Demand::new(self);
        self.job_wanted.notify_waiters();
        match tokio::time::timeout(self.config.heartbeat, jobs.recv()).await {
            Err(_) => Ok(None),
            Ok(Ok(job)) => Ok(Some(job)),
            Ok(Err(_)) => Err(BusError::Closed),
        }
    }

    pub(super) async fn finish_job(&self, _worker: &WorkerId, job: &Job) -> Result<(), BusError> {
        let Some(id) = &job.delivery_id else {
            return Ok(());
        };
        lock(&self.running_jobs).remove(id);
        let field = serde_json::to_string(&job.request_id).map_err(corrupt)?;
        let (stream, entry) = parse_delivery(id);
        let mut conn = self.conn();
        let _: () = redis::pipe()
            .xack(self.keys.job_stream(stream), Keys::JOB_GROUP, &[entry])
            .ignore()
            .xdel(self.keys.job_stream(stream), &[entry])
            .ignore()
            .hdel(self.keys.running(&job.session), field)
            .ignore()
            .query_async(&mut conn)
            .await
            .map_err(redis_err)?;
        Ok(())
    }
}

/// One caller of `next_job` waiting for a job from the readers, for as long as it lives.
struct Demand<'a>(&'a RedisBus);

impl<'a> Demand<'a> {
    fn new(bus: &'a RedisBus) -> Self {
        bus.job_demand.fetch_add(1, Ordering::AcqRel);
        Self(bus)
    }
}

impl Drop for Demand<'_> {
    fn drop(&mut self) {
        self.0.job_demand.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A blocking `XREADGROUP` of one job stream, ready to run.
struct JobRead {
    conn: Conn,
    key: String,
    worker: WorkerId,
    block_ms: usize,
}

enum JobReadError {
    Redis(redis::RedisError),
    NoAnswer,
}

impl JobRead {
    /// Runs the read: the entry read, or `None` when none came within the block time.
    async fn run(mut self) -> Result<Option<RedisStreamId>, JobReadError> {
        metrics::COMMANDS.inc();
        // This connection reconnects without limit and has no response timeout (the
        // read blocks on purpose), so a read sent to a master that is gone would wait
        // for it forever: bounded here, and a read that overruns its block counts as
        // a lost connection (with Sentinel, the connection moves to the new master).
        let options = StreamReadOptions::default()
            .group(Keys::JOB_GROUP, self.worker.0.as_str())
            .count(1)
            .block(self.block_ms);
        let keys = [self.key.as_str()];
        let read = self.conn.xread_options(&keys, &[">"], &options);
        let bound = Duration::from_millis(self.block_ms as u64) + Duration::from_secs(2);
        let Ok(reply) = tokio::time::timeout(bound, read).await else {
            self.conn.timed_out();
            return Err(JobReadError::NoAnswer);
        };
        let reply: Option<StreamReadReply> = reply.map_err(JobReadError::Redis)?;
        Ok(reply
            .and_then(|r| r.keys.into_iter().next())
            .and_then(|k| k.ids.into_iter().next()))
    }
}

/// One reader of job stream `stream` (several streams, see the module's doc): reads for
/// the process's worker and hands each job over to `next_job`, one at a time. A job waiting
/// to be taken is kept fresh like a running one. It holds the bus only between reads, so
/// the bus can go away; then it stops.
async fn read_stream(bus: Weak<RedisBus>, stream: usize, jobs: async_channel::Sender<Job>) {
    loop {
        // Read only while more callers wait than jobs are queued for them: a worker that
        // is busy or stopping takes no jobs it cannot start (the readers of a burst may
        // still bring one each: at most one job per stream waits for a caller).
        let wanted = {
            let Some(this) = bus.upgrade() else { return };
            let wanted = this.job_wanted.clone();
            let waiting = wanted.notified();
            tokio::pin!(waiting);
            waiting.as_mut().enable();
            if this.job_demand.load(Ordering::Acquire) > jobs.len() {
                None
            } else {
                drop(this);
                let _ = tokio::time::timeout(Duration::from_secs(1), waiting).await;
                Some(())
            }
        };
        if wanted.is_some() {
            continue;
        }
        let read = {
            let Some(this) = bus.upgrade() else { return };
            let Some(worker) = lock(&this.consumer).clone() else {
                return;
            };
            if this.job_group_ready.load(Ordering::Acquire) {
                Some(this.job_read(stream, &worker).await)
            } else {
                // `next_job` makes the groups again (Redis restarted empty); wait for it.
                None
            }
        };
        let result = match read {
            None => {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
            Some(Err(e)) => Err(e),
            Some(Ok(read)) => {
                let entry = read.run().await;
                let Some(this) = bus.upgrade() else { return };
                let job = this.job_read_done(stream, entry).await;
                if let Ok(Some(job)) = &job
                    && let Some(id) = &job.delivery_id
                {
                    lock(&this.running_jobs).insert(id.clone());
                }
                job
            }
        };
        match result {
            Ok(Some(job)) => {
                if jobs.send(job).await.is_err() {
                    return;
                }
            }
            Ok(None) => {}
            Err(e) => {
                tracing::debug!(error = %e, stream, "reading a job stream failed; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}
