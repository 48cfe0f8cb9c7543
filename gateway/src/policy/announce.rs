//! Telling sessions that a policy change changed what they may see: once per change for
//! the whole cluster, and only to the sessions whose caller's visible list changed.
//!
//! A gateway that applies a changed policy swaps the cluster-wide value
//! [`ANNOUNCED`] to the new policy's digest (`Bus::exchange_value`); only the gateway that
//! changed it broadcasts one [`MARKER`]: the digests before and after, the kinds whose
//! rules changed, and the new policy's text. Every gateway's standalone and listen
//! streams turn the marker into the `list_changed` notifications their own caller's
//! lists call for (comparing what the caller may see of the catalog under both
//! policies), or into nothing; the marker itself never reaches a client. A gateway that
//! hears of a digest it does not have reads its file again at once.

use super::caller::Caller;
use super::file::{Kind, Policy};
use mcp_bus::Catalog;
use mcp_protocol::jsonrpc;
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

/// The method of the broadcast a policy change travels as between gateways.
pub const MARKER: &str = "notifications/mcpgw/policy_changed";

/// The cluster-wide value holding the digest of the last policy change announced.
pub const ANNOUNCED: &str = "policy-announced";

/// The digest a gateway without a policy file stands for ("no policy: all visible").
pub const NO_POLICY: &str = "";

/// Policies this gateway has known recently, by digest: what a marker's digests name.
const KEPT: usize = 8;

fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Tool => "tools",
        Kind::Prompt => "prompts",
        Kind::Resource => "resources",
        Kind::ResourceTemplate => "resource_templates",
    }
}

fn kind_of(name: &str) -> Option<Kind> {
    Kind::ALL.into_iter().find(|k| kind_name(*k) == name)
}

/// The marker of a change from `before` to `after` (with `after`'s text) of `kinds`.
pub fn marker(before: &str, after: &str, text: &str, kinds: &[Kind]) -> Value {
    let kinds: Vec<&str> = kinds.iter().map(|k| kind_name(*k)).collect();
    jsonrpc::notification(
        MARKER,
        json!({"before": before, "after": after, "kinds": kinds, "text": text}),
    )
}

/// Whether `message` is a policy-change marker.
pub fn is_marker(message: &Value) -> bool {
    message.get("method").and_then(Value::as_str) == Some(MARKER)
}

/// The digest of the policy a marker moves to.
pub fn marker_after(message: &Value) -> Option<&str> {
    message["params"]["after"].as_str()
}

/// A catalog fetched once, shared by every stream that asks for it.
type CatalogCell = Arc<tokio::sync::OnceCell<Option<Arc<Catalog>>>>;

/// Policies known recently, by digest (the newest last).
#[derive(Default)]
pub struct Known {
    policies: Mutex<VecDeque<(String, Arc<Policy>)>>,
    /// The catalog a marker's streams compare against, fetched once per marker (by its
    /// broadcast `seq`): the cell is filled outside the lock.
    catalog: Mutex<Option<(u64, CatalogCell)>>,
}

impl Known {
    /// Remembers `policy` under `digest`.
    pub fn remember(&self, digest: &str, policy: Arc<Policy>) {
        let mut policies = self.policies.lock().unwrap_or_else(|p| p.into_inner());
        if policies.iter().any(|(d, _)| d == digest) {
            return;
        }
        policies.push_back((digest.to_owned(), policy));
        while policies.len() > KEPT {
            policies.pop_front();
        }
    }

    /// The policy of `digest`: `Some(None)` for [`NO_POLICY`]; parsed from `text` when not
    /// known yet; `None` when it cannot be told.
    fn policy(&self, digest: &str, text: Option<&str>) -> Option<Option<Arc<Policy>>> {
        if digest == NO_POLICY {
            return Some(None);
        }
        let known = self
            .policies
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .find(|(d, _)| d == digest)
            .map(|(_, p)| p.clone());
        if let Some(policy) = known {
            return Some(Some(policy));
        }
        let policy = Arc::new(Policy::parse(text?, "announced policy").ok()?);
        self.remember(digest, policy.clone());
        Some(Some(policy))
    }

    /// The catalog for the marker with broadcast sequence `seq`: fetched by the first
    /// stream that needs it, shared by the others.
    pub async fn catalog(&self, seq: u64, bus: &dyn mcp_bus::Bus) -> Option<Arc<Catalog>> {
        let cell = {
            let mut cached = self.catalog.lock().unwrap_or_else(|p| p.into_inner());
            match cached.as_ref() {
                Some((at, cell)) if *at == seq => cell.clone(),
                _ => {
                    let cell = CatalogCell::default();
                    *cached = Some((seq, cell.clone()));
                    cell
                }
            }
        };
        cell.get_or_init(|| async { bus.catalog().await.ok().map(Arc::new) })
            .await
            .clone()
    }

    /// The `list_changed` methods `marker` calls for on a stream of `caller`: those of
    /// the kinds whose visible part of `catalog` differs between the two policies. When
    /// either policy or the catalog cannot be told, every kind the marker names (better
    /// a needless notification than a missed one).
    pub fn changes_for(
        &self,
        caller: &Caller,
        marker: &Value,
        catalog: Option<&Catalog>,
    ) -> Vec<&'static str> {
        let params = &marker["params"];
        let kinds: Vec<Kind> = params["kinds"]
            .as_array()
            .map(|ks| {
                ks.iter()
                    .filter_map(Value::as_str)
                    .filter_map(kind_of)
                    .collect()
            })
            .unwrap_or_default();
        let before = params["before"].as_str().and_then(|d| self.policy(d, None));
        let after = params["after"]
            .as_str()
            .and_then(|d| self.policy(d, params["text"].as_str()));
        let mut methods: Vec<&'static str> = kinds
            .into_iter()
            .filter(|kind| match (&before, &after, catalog) {
                (Some(before), Some(after), Some(catalog)) => {
                    visible(before.as_deref(), caller, *kind, catalog)
                        != visible(after.as_deref(), caller, *kind, catalog)
                }
                _ => true,
            })
            .map(Kind::list_changed)
            .collect();
        methods.dedup();
        methods
    }
}

/// The names of `kind` in `catalog` that `policy` lets `caller` see (all without one).
fn visible(policy: Option<&Policy>, caller: &Caller, kind: Kind, catalog: &Catalog) -> Vec<String> {
    let names: Vec<&str> = match kind {
        Kind::Tool => catalog.tools.iter().map(|t| t.name.as_str()).collect(),
        Kind::Prompt => catalog.prompts.iter().map(|p| p.name.as_str()).collect(),
        Kind::Resource => catalog.resources.iter().map(|r| r.uri.as_str()).collect(),
        Kind::ResourceTemplate => catalog
            .resource_templates
            .iter()
            .map(|t| t.uri_template.as_str())
            .collect(),
    };
    names
        .into_iter()
        .filter(|name| policy.is_none_or(|p| p.allows(caller, kind, name)))
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(scope: &str) -> Caller {
        Caller {
            principal: format!("#{scope}"),
            scopes: vec![scope.to_owned()],
            claims: Value::Null,
        }
    }

    #[test]
    fn only_callers_whose_view_changed_are_told() {
        let a = "[[rule]]\nscopes = [\"x\"]\ntools = [\"t1\"]\n[[rule]]\nscopes = [\"y\"]\ntools = [\"t2\"]\n";
        let b = a.replace("tools = [\"t1\"]", "tools = [\"t1\", \"t3\"]");
        let known = Known::default();
        known.remember("a", Arc::new(Policy::parse(a, "a").unwrap()));
        let mut catalog = Catalog::default();
        for name in ["t1", "t2", "t3"] {
            catalog.tools.push(
                serde_json::from_value(json!({"name": name, "inputSchema": {"type": "object"}}))
                    .unwrap(),
            );
        }
        let m = marker("a", "b", &b, &[Kind::Tool]);
        assert_eq!(
            known.changes_for(&caller("x"), &m, Some(&catalog)),
            ["notifications/tools/list_changed"]
        );
        assert!(
            known
                .changes_for(&caller("y"), &m, Some(&catalog))
                .is_empty()
        );
        // A tool the catalog does not have changes nobody's list.
        let c = b.replace("\"t3\"", "\"t3\", \"absent\"");
        let m = marker("b", "c", &c, &[Kind::Tool]);
        assert!(
            known
                .changes_for(&caller("x"), &m, Some(&catalog))
                .is_empty()
        );
        // Unknown before: everyone is told.
        let m = marker("unknown", "c", &c, &[Kind::Tool]);
        assert_eq!(known.changes_for(&caller("y"), &m, Some(&catalog)).len(), 1);
    }
}
