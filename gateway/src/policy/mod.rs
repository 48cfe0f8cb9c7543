//! Policies at the edge: who may see and use which tool, prompt and resource; how much
//! (quotas shared by every gateway); and a record of every call (audit).
//!
//! # Layout
//! - [`caller`]: who is calling (principal, scopes, claims), made by authentication.
//! - [`file`]: the policy file (TOML), its validation, and its answers: may this caller
//!   use this name; which quotas does this call draw on.
//! - [`quota`]: GCRA rates and calls running at once, drawn from the bus (on Redis shared
//!   by every gateway, in memory for the standalone gateway).
//! - [`audit`]: one record per call, to the log and optionally the bus's bounded audit
//!   log (a Redis stream).
//! - [`metrics`]: denials, reloads, quota rejections, audit records.
//! - [`announce`]: a reload's `list_changed`, once per change for the cluster and only to
//!   sessions whose visible lists changed.
//!
//! This module is [`Policies`]: the policy in force (reloaded on file change or SIGHUP; a
//! malformed reload keeps the old one), the list filter, and the admission of each call.
//! No policy file means no filtering and no quotas: today's behaviour.

pub mod announce;
pub mod audit;
pub mod caller;
pub mod file;
pub mod metrics;
pub mod quota;

use crate::config::Config;
use audit::{AuditSink, CallTicket, Outcome, Record};
use caller::Caller;
use file::{Kind, Policy, PolicyError};
use mcp_bus::{Bus, SessionId};
use mcp_protocol::{ErrorObject, RequestId, jsonrpc};
use quota::{QuotaStore, Refusal};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// A policy change applied by [`Policies::reload`].
#[derive(Debug, Clone)]
pub struct Reloaded {
    /// The kinds whose rules changed.
    pub kinds: Vec<Kind>,
    /// The digest of the policy before (empty when there was none).
    pub before: String,
    /// The digest of the policy now in force.
    pub after: String,
    /// Its text.
    pub text: String,
}

/// Why a call was refused before it reached a worker.
#[derive(Debug, Clone, PartialEq)]
pub enum Refused {
    /// The caller may not use it: the error an unknown name gets, so the policy does not
    /// tell a caller what exists beyond what it may use.
    Denied(ErrorObject),
    /// A quota is used up: 429, `Retry-After` seconds.
    Quota {
        /// What the client is told.
        message: String,
        /// Whole seconds to wait (at least 1).
        retry_after: u64,
    },
    /// The quota store could not be asked: 503.
    Unavailable(String),
}

/// The policy in force, the quota store and the audit sink.
pub struct Policies {
    path: Option<PathBuf>,
    current: RwLock<Option<(Arc<Policy>, String)>>,
    /// `None` only without a policy (no quotas to count).
    store: Option<QuotaStore>,
    audit: Option<Arc<AuditSink>>,
    hold: Duration,
    known: announce::Known,
}

fn digest(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

impl Policies {
    /// Loads the policy file the configuration names (a malformed one is an error: the
    /// gateway refuses to start); quotas and the audit log go through `bus`.
    pub async fn from_config(
        config: &Config,
        node: &str,
        bus: Arc<dyn Bus>,
    ) -> Result<Self, String> {
        let current = match &config.policy {
            None => None,
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    PolicyError::Read {
                        path: path.display().to_string(),
                        message: e.to_string(),
                    }
                    .to_string()
                })?;
                let policy =
                    Policy::parse(&text, &path.display().to_string()).map_err(|e| e.to_string())?;
                Some((Arc::new(policy), digest(&text)))
            }
        };
        let audit = if config.audit_stream {
            // The memory bus would keep the records where nobody can read them.
            if config.redis_url.is_none() {
                return Err("--audit-stream needs --redis-url".into());
            }
            Some(Arc::new(AuditSink::with_bus(
                config.audit_arguments,
                node,
                bus.clone(),
                config.audit_stream_len.max(1),
            )))
        } else if config.audit {
            Some(Arc::new(AuditSink::log_only(config.audit_arguments, node)))
        } else {
            None
        };
        let store = Some(QuotaStore::new(bus));
        let known = announce::Known::default();
        if let Some((policy, digest)) = &current {
            metrics::RELOADS.with_label_values(&["ok"]).inc();
            known.remember(digest, policy.clone());
        }
        Ok(Self {
            path: config.policy.clone(),
            current: RwLock::new(current),
            store,
            audit,
            hold: config.job_timeout() + Duration::from_secs(30),
            known,
        })
    }

    /// No policy, no audit: what tests and embedders get by default.
    pub fn none() -> Self {
        Self {
            path: None,
            current: RwLock::new(None),
            store: None,
            audit: None,
            hold: Duration::from_secs(330),
            known: announce::Known::default(),
        }
    }

    /// The digest of the policy in force.
    fn current_digest(&self) -> Option<String> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|(_, d)| d.clone())
    }

    /// The policy in force, if a policy file is configured.
    pub fn current(&self) -> Option<Arc<Policy>> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|(p, _)| p.clone())
    }

    /// Reads the policy file again. `Ok(None)` when its text did not change; else the
    /// change: the kinds whose rules changed, the digests before and after, and the new
    /// text. An error leaves the policy in force untouched.
    pub fn reload(&self) -> Result<Option<Reloaded>, PolicyError> {
        let Some(path) = &self.path else {
            return Ok(None);
        };
        let text = std::fs::read_to_string(path).map_err(|e| PolicyError::Read {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        let next_digest = digest(&text);
        let (before, before_digest) = {
            let current = self.current.read().unwrap_or_else(|p| p.into_inner());
            match current.as_ref() {
                Some((_, d)) if *d == next_digest => return Ok(None),
                Some((p, d)) => (Some(p.clone()), d.clone()),
                None => (None, String::new()),
            }
        };
        let next = Arc::new(Policy::parse(&text, &path.display().to_string())?);
        let changed = match &before {
            Some(before) => before.changed_kinds(&next),
            None => Kind::ALL.to_vec(),
        };
        self.known.remember(&next_digest, next.clone());
        *self.current.write().unwrap_or_else(|p| p.into_inner()) =
            Some((next, next_digest.clone()));
        Ok(Some(Reloaded {
            kinds: changed,
            before: before_digest,
            after: next_digest,
            text,
        }))
    }

    /// Reloads and reports: logs and counts the result; on a change, announces it once
    /// for the cluster (see [`announce`]): the first gateway to apply it broadcasts a
    /// marker, which each session's stream turns into the `list_changed` notifications
    /// its caller's lists call for. Counted after the announcement, so a reload counted
    /// has nothing more to send.
    pub async fn reload_and_announce(&self, bus: &Arc<dyn Bus>, why: &str) {
        match self.reload() {
            Ok(None) => {}
            Ok(Some(change)) => {
                tracing::info!(why, policy = %change.after, "policy reloaded");
                let first = match bus.exchange_value(announce::ANNOUNCED, &change.after).await {
                    Ok(previous) => previous.as_deref() != Some(change.after.as_str()),
                    // Better a second announcement than none.
                    Err(e) => {
                        tracing::warn!(error = %e, "could not tell whether this policy change was announced");
                        true
                    }
                };
                if first && !change.kinds.is_empty() {
                    let marker = announce::marker(
                        &change.before,
                        &change.after,
                        &change.text,
                        &change.kinds,
                    );
                    if let Err(e) = bus.broadcast(marker).await {
                        tracing::warn!(error = %e, "could not announce a policy change");
                    }
                }
                metrics::RELOADS.with_label_values(&["ok"]).inc();
            }
            Err(e) => {
                metrics::RELOADS.with_label_values(&["error"]).inc();
                tracing::error!(why, error = %e, "policy reload refused; the previous policy stays in force");
            }
        }
    }

    /// The `list_changed` notifications a broadcast policy marker (`event`) calls for on
    /// a stream of `caller`; empty when its visible lists did not change.
    pub async fn list_changes(
        &self,
        caller: &Caller,
        event: &mcp_bus::BroadcastEvent,
        bus: &dyn Bus,
    ) -> Vec<Value> {
        let catalog = self.known.catalog(event.seq, bus).await;
        self.known
            .changes_for(caller, &event.message, catalog.as_deref())
            .into_iter()
            .map(|method| jsonrpc::notification(method, json!({})))
            .collect()
    }

    /// Reloads on file change (polled every `poll`) and on SIGHUP, until the process ends.
    pub fn watch(
        self: Arc<Self>,
        bus: Arc<dyn Bus>,
        poll: Duration,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        // The SIGHUP handler is installed now, before the gateway serves: a SIGHUP that
        // came before the task first ran would otherwise end the process.
        let hangup = self.path.as_ref().and_then(|_| {
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
                .inspect_err(|e| {
                    tracing::warn!(error = %e, "no SIGHUP handler; the policy reloads on file change only");
                })
                .ok()
        });
        self.watch_with(bus, poll, hangup)
    }

    async fn watch_with(
        self: Arc<Self>,
        bus: Arc<dyn Bus>,
        poll: Duration,
        mut hangup: Option<tokio::signal::unix::Signal>,
    ) {
        if self.path.is_none() {
            return;
        }
        // Another gateway's announcement of a policy this one does not have: read the file
        // now rather than at the next poll.
        let mut peers = bus.subscribe_broadcasts().await.ok();
        let mut tick = tokio::time::interval(poll.max(Duration::from_millis(50)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // A malformed file is reported once, not at every poll.
        let mut last_error: Option<String> = None;
        loop {
            let why = tokio::select! {
                _ = tick.tick() => "file",
                Some(()) = async { match hangup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => {
                    last_error = None;
                    "SIGHUP"
                }
                heard = async { match peers.as_mut() { Some(p) => p.receiver.recv().await, None => std::future::pending().await } } => {
                    match heard {
                        Ok(event) if announce::is_marker(&event.message)
                            && announce::marker_after(&event.message) != self.current_digest().as_deref() => "file",
                        Ok(_) => continue,
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => "file",
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                            peers = None;
                            continue;
                        }
                    }
                }
            };
            if why == "file" {
                // Poll quietly: only a change of text is worth a reload.
                let text = self
                    .path
                    .as_ref()
                    .and_then(|p| std::fs::read_to_string(p).ok());
                let Some(text) = text else { continue };
                let now = digest(&text);
                let same = self
                    .current
                    .read()
                    .unwrap_or_else(|p| p.into_inner())
                    .as_ref()
                    .is_some_and(|(_, d)| *d == now);
                if same || last_error.as_deref() == Some(now.as_str()) {
                    continue;
                }
                if let Err(e) = Policy::parse(&text, "") {
                    last_error = Some(now);
                    metrics::RELOADS.with_label_values(&["error"]).inc();
                    let path = self.path.as_ref().map(|p| p.display().to_string());
                    tracing::error!(why, error = %e, path, "policy reload refused; the previous policy stays in force");
                    continue;
                }
            }
            self.reload_and_announce(&bus, why).await;
        }
    }

    /// Filters a list result for `caller`: only what the policy lets it use. For a
    /// 2026-07-28 result the cache scope becomes private, since the list now depends on
    /// who asked. Without a policy the result is untouched.
    pub fn filter_list(&self, caller: &Caller, method: &str, result: &mut Value) {
        let Some(policy) = self.current() else {
            return;
        };
        let (field, kind, key) = match method {
            "tools/list" => ("tools", Kind::Tool, "name"),
            "prompts/list" => ("prompts", Kind::Prompt, "name"),
            "resources/list" => ("resources", Kind::Resource, "uri"),
            "resources/templates/list" => {
                ("resourceTemplates", Kind::ResourceTemplate, "uriTemplate")
            }
            _ => return,
        };
        if let Some(Value::Array(items)) = result.get_mut(field) {
            items.retain(|item| {
                item.get(key)
                    .and_then(Value::as_str)
                    .is_some_and(|name| policy.allows(caller, kind, name))
            });
        }
        if let Value::Object(fields) = result {
            fields.insert("cacheScope".into(), json!("private"));
        }
    }

    /// Whether `caller` may read the resource `uri` (true without a policy). A resource
    /// subscription outside the policy is acknowledged but never made, so it delivers
    /// nothing, as a subscription to a URI that does not exist: the policy does not reveal
    /// what exists.
    pub fn may_read(&self, caller: &Caller, uri: &str) -> bool {
        self.current()
            .is_none_or(|policy| policy.allows(caller, Kind::Resource, uri))
    }

    /// Checks a `completion/complete` against the policy: completing the arguments of a
    /// prompt or resource template the caller may not use would show what it hides. Refused
    /// with the error the spec names for an unknown prompt (`-32602`); not audited and not
    /// counted against quotas (it is neither a call, a get nor a read).
    fn admit_completion(
        &self,
        caller: &Caller,
        params: Option<&Value>,
        stateless: bool,
    ) -> Result<(), Refused> {
        let Some(policy) = self.current() else {
            return Ok(());
        };
        let reference = params.and_then(|p| p.get("ref"));
        let field = |name| {
            reference
                .and_then(|r| r.get(name))
                .and_then(Value::as_str)
                .unwrap_or_default()
        };
        // A malformed reference is the worker's to refuse (-32602), as without a policy.
        let (allowed, kind, name) = match reference
            .and_then(|r| r.get("type"))
            .and_then(Value::as_str)
        {
            Some("ref/prompt") if !field("name").is_empty() => {
                let name = field("name");
                (
                    policy.allows(caller, Kind::Prompt, name),
                    Kind::Prompt,
                    name,
                )
            }
            // The spec's `ref/resource` names a URI or a URI template.
            Some("ref/resource") if !field("uri").is_empty() => {
                let uri = field("uri");
                let allowed = policy.allows(caller, Kind::ResourceTemplate, uri)
                    || policy.allows(caller, Kind::Resource, uri);
                (allowed, Kind::ResourceTemplate, uri)
            }
            _ => return Ok(()),
        };
        if allowed {
            return Ok(());
        }
        metrics::DENIALS
            .with_label_values(&["completion/complete"])
            .inc();
        Err(Refused::Denied(unknown(kind, name, stateless)))
    }

    /// Admits one call (`tools/call`, `prompts/get`, `resources/read`) or refuses it.
    /// Admitted, it gets a ticket that writes its audit record and holds its quota slots
    /// until it ends (`None` when there is nothing to record or hold). Refused, its audit
    /// record is written here and it never reaches a worker.
    #[allow(clippy::too_many_arguments)]
    pub async fn admit(
        &self,
        caller: &Caller,
        session: Option<&SessionId>,
        method: &str,
        id: &RequestId,
        params: Option<&Value>,
        trace_id: Option<&str>,
        stateless: bool,
    ) -> Result<Option<Arc<CallTicket>>, Refused> {
        let (kind, field) = match method {
            "completion/complete" => {
                return self
                    .admit_completion(caller, params, stateless)
                    .map(|()| None);
            }
            "tools/call" => (Kind::Tool, "name"),
            "prompts/get" => (Kind::Prompt, "name"),
            "resources/read" => (Kind::Resource, "uri"),
            _ => return Ok(None),
        };
        let policy = self.current();
        if policy.is_none() && self.audit.is_none() {
            return Ok(None);
        }
        let name = params
            .and_then(|p| p.get(field))
            .and_then(Value::as_str)
            .unwrap_or_default();
        let ticket = CallTicket::new(
            self.audit.clone(),
            Record::new(
                self.audit.as_ref().is_some_and(|a| a.include_arguments),
                &caller.principal,
                session.map(|s| s.as_str()).unwrap_or_default(),
                method,
                name,
                &id.to_string(),
                trace_id,
                params.and_then(|p| p.get("arguments")),
            ),
        );
        let Some(policy) = policy else {
            return Ok(Some(Arc::new(ticket)));
        };
        // A call without a name is the worker's to refuse (-32602), as without a policy.
        if !name.is_empty() && !policy.allows(caller, kind, name) {
            metrics::DENIALS.with_label_values(&[method]).inc();
            ticket.finish(Outcome::Denied, None);
            return Err(Refused::Denied(unknown(kind, name, stateless)));
        }
        let budgets: Vec<_> = policy
            .quotas_for(caller, kind, name)
            .map(|q| (q.clone(), q.budget_key(caller, kind, name)))
            .collect();
        if !budgets.is_empty() {
            let Some(store) = &self.store else {
                let refusal = Refusal::Unavailable("no quota store".into());
                return Err(self.refuse(&ticket, refusal));
            };
            match store.admit(&budgets, self.hold).await {
                Ok(slots) => {
                    for (quota, _) in &budgets {
                        metrics::QUOTA_ADMITTED
                            .with_label_values(&[quota.name.as_str()])
                            .inc();
                    }
                    *ticket.slots.lock().unwrap_or_else(|p| p.into_inner()) = Some(slots);
                }
                Err(refusal) => return Err(self.refuse(&ticket, refusal)),
            }
        }
        Ok(Some(Arc::new(ticket)))
    }

    fn refuse(&self, ticket: &CallTicket, refusal: Refusal) -> Refused {
        match refusal {
            Refusal::Rate { quota, retry_after } => {
                metrics::QUOTA_REJECTIONS
                    .with_label_values(&[quota.as_str(), "rate"])
                    .inc();
                ticket.set_reason(&quota);
                ticket.finish(Outcome::Quota, None);
                let retry_after = retry_after.as_secs_f64().ceil().max(1.0) as u64;
                Refused::Quota {
                    message: format!(
                        "quota {quota:?}: too many calls per second; retry in {retry_after} s"
                    ),
                    retry_after,
                }
            }
            Refusal::Concurrent { quota, limit } => {
                metrics::QUOTA_REJECTIONS
                    .with_label_values(&[quota.as_str(), "concurrent"])
                    .inc();
                ticket.set_reason(&quota);
                ticket.finish(Outcome::Quota, None);
                Refused::Quota {
                    message: format!(
                        "quota {quota:?}: {limit} calls already running; retry when one ends"
                    ),
                    retry_after: 1,
                }
            }
            Refusal::Unavailable(e) => {
                metrics::QUOTA_REJECTIONS
                    .with_label_values(&["-", "unavailable"])
                    .inc();
                ticket.set_reason("quota store unavailable");
                ticket.finish(Outcome::Unavailable, None);
                Refused::Unavailable(format!("quotas cannot be checked now: {e}"))
            }
        }
    }
}

/// The error a name unknown to the cluster gets from a worker, word for word.
fn unknown(kind: Kind, name: &str, stateless: bool) -> ErrorObject {
    match kind {
        Kind::Tool => ErrorObject::invalid_params(format!("Unknown tool: {name}")),
        Kind::Prompt => ErrorObject::invalid_params(format!("Unknown prompt: {name}")),
        Kind::ResourceTemplate => {
            ErrorObject::invalid_params(format!("Unknown resource template: {name}"))
        }
        Kind::Resource => ErrorObject {
            // 2026-07-28 moved "resource not found" to invalid params.
            code: if stateless {
                jsonrpc::INVALID_PARAMS
            } else {
                jsonrpc::RESOURCE_NOT_FOUND
            },
            message: format!("Resource not found: {name}"),
            data: Some(json!({"uri": name})),
        },
    }
}

/// The trace id of a W3C `traceparent` (`00-<trace id>-<span id>-<flags>`).
pub fn trace_id_of(traceparent: Option<&str>) -> Option<&str> {
    traceparent?.split('-').nth(1).filter(|t| t.len() == 32)
}
