//! The policy file: its format (TOML), its validation, and the questions it answers (may
//! this caller use this tool? which quotas apply to this call?).
//!
//! ```toml
//! [[rule]]
//! name = "analysts"                 # for logs; default rule-N
//! scopes = ["mcp:read"]             # the token must grant all of them
//! tools = ["server_status", "seed_*"]
//! prompts = ["*"]
//! resources = ["notify://*"]        # matched against the URI
//! resource_templates = ["notify://tasks/*"]
//!
//! [[quota]]
//! name = "calls"                    # the metrics label
//! principals = ["*"]
//! tools = ["*"]
//! per = "principal"                 # or "tool": one budget per principal x tool
//! rate = 10.0                       # calls per second ...
//! burst = 20                        # ... with this many at once
//! concurrent = 4                    # calls running at once
//! ```
//!
//! A caller may use what any rule that matches it allows; nothing else (deny by default).
//! Every quota that matches a call applies.

use crate::policy::caller::Caller;
use glob::Pattern;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;

/// Why a policy file was refused.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The file could not be read.
    #[error("policy file {path}: {message}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        message: String,
    },
    /// The file is not valid TOML, or a field has the wrong type or name.
    #[error("policy file {path}: line {line}, column {column}: {message}")]
    Syntax {
        /// The file.
        path: String,
        /// 1-based line of the offending text.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What is wrong.
        message: String,
    },
    /// A field's value is not acceptable (a bad pattern, a zero rate).
    #[error("policy file {path}: {field}: {message}")]
    Invalid {
        /// The file.
        path: String,
        /// The field, e.g. `rule[2].tools[0]`.
        field: String,
        /// What is wrong.
        message: String,
    },
}

/// What the policy names: the four kinds of things a client lists and uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Tools (`tools/list`, `tools/call`), by name.
    Tool,
    /// Prompts (`prompts/list`, `prompts/get`), by name.
    Prompt,
    /// Resources (`resources/list`, `resources/read`), by URI.
    Resource,
    /// Resource templates (`resources/templates/list`), by URI template.
    ResourceTemplate,
}

impl Kind {
    /// Every kind.
    pub const ALL: [Kind; 4] = [
        Kind::Tool,
        Kind::Prompt,
        Kind::Resource,
        Kind::ResourceTemplate,
    ];

    /// The `list_changed` notification a change of this kind's visible list calls for.
    pub fn list_changed(self) -> &'static str {
        match self {
            Kind::Tool => "notifications/tools/list_changed",
            Kind::Prompt => "notifications/prompts/list_changed",
            Kind::Resource | Kind::ResourceTemplate => "notifications/resources/list_changed",
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSpec {
    #[serde(default)]
    rule: Vec<RuleSpec>,
    #[serde(default)]
    quota: Vec<QuotaSpec>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleSpec {
    name: Option<String>,
    principals: Option<Vec<String>>,
    #[serde(default)]
    scopes: Vec<String>,
    #[serde(default)]
    claims: BTreeMap<String, String>,
    anonymous: Option<bool>,
    #[serde(default)]
    tools: Vec<String>,
    #[serde(default)]
    prompts: Vec<String>,
    #[serde(default)]
    resources: Vec<String>,
    #[serde(default)]
    resource_templates: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct QuotaSpec {
    name: String,
    principals: Option<Vec<String>>,
    #[serde(default)]
    scopes: Vec<String>,
    #[serde(default)]
    claims: BTreeMap<String, String>,
    anonymous: Option<bool>,
    tools: Option<Vec<String>>,
    #[serde(default)]
    prompts: Vec<String>,
    #[serde(default)]
    resources: Vec<String>,
    #[serde(default)]
    per: Per,
    rate: Option<f64>,
    burst: Option<u32>,
    concurrent: Option<u32>,
}

/// What one budget of a quota covers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Per {
    /// One budget per principal, for everything the quota names.
    #[default]
    Principal,
    /// One budget per principal and name called (tool, prompt or resource URI).
    Tool,
}

/// Whether any of `patterns` matches `name`: the one glob check of rules and quotas.
fn any_match(patterns: &[Pattern], name: &str) -> bool {
    patterns.iter().any(|p| p.matches(name))
}

/// Which callers a rule or quota applies to. Every condition given must hold; none given
/// matches every caller.
#[derive(Debug, Clone, PartialEq)]
struct CallerMatch {
    principals: Option<Vec<Pattern>>,
    scopes: Vec<String>,
    claims: Vec<(String, String)>,
    anonymous: Option<bool>,
}

impl CallerMatch {
    fn matches(&self, caller: &Caller) -> bool {
        if let Some(anonymous) = self.anonymous
            && anonymous != caller.is_anonymous()
        {
            return false;
        }
        if let Some(principals) = &self.principals
            && (caller.is_anonymous() || !any_match(principals, &caller.principal))
        {
            return false;
        }
        self.scopes.iter().all(|s| caller.scopes.contains(s))
            && self.claims.iter().all(|(k, v)| caller.has_claim(k, v))
    }
}

/// One access rule.
#[derive(Debug, Clone, PartialEq)]
struct Rule {
    name: String,
    who: CallerMatch,
    tools: Vec<Pattern>,
    prompts: Vec<Pattern>,
    resources: Vec<Pattern>,
    resource_templates: Vec<Pattern>,
}

impl Rule {
    fn patterns(&self, kind: Kind) -> &[Pattern] {
        match kind {
            Kind::Tool => &self.tools,
            Kind::Prompt => &self.prompts,
            Kind::Resource => &self.resources,
            Kind::ResourceTemplate => &self.resource_templates,
        }
    }
}

/// One quota: a rate (GCRA: `rate` per second, `burst` at once) and/or a number of calls
/// running at once, for the callers and the tools, prompts and resources it matches.
#[derive(Debug, Clone, PartialEq)]
pub struct Quota {
    /// Its name (the metrics label, part of the counter's key).
    pub name: String,
    who: CallerMatch,
    tools: Vec<Pattern>,
    prompts: Vec<Pattern>,
    resources: Vec<Pattern>,
    /// One budget per principal, or per principal and tool.
    pub per: Per,
    /// Calls per second, if the rate is limited.
    pub rate: Option<f64>,
    /// Calls allowed at once above the rate (at least 1).
    pub burst: u32,
    /// Calls running at once, if limited.
    pub concurrent: Option<u32>,
}

impl Quota {
    /// The budget `caller`'s use of the `kind` named `name` draws on. Per name, a prompt's
    /// or resource's budget names its kind, so it never shares one with a tool.
    pub fn budget_key(&self, caller: &Caller, kind: Kind, name: &str) -> String {
        match (self.per, kind) {
            (Per::Principal, _) => format!("{}|{}", self.name, caller.quota_key()),
            (Per::Tool, Kind::Tool) => format!("{}|{}|{name}", self.name, caller.quota_key()),
            (Per::Tool, Kind::Prompt) => {
                format!("{}|{}|prompt:{name}", self.name, caller.quota_key())
            }
            (Per::Tool, Kind::Resource | Kind::ResourceTemplate) => {
                format!("{}|{}|resource:{name}", self.name, caller.quota_key())
            }
        }
    }

    fn patterns(&self, kind: Kind) -> &[Pattern] {
        match kind {
            Kind::Tool => &self.tools,
            Kind::Prompt => &self.prompts,
            Kind::Resource => &self.resources,
            Kind::ResourceTemplate => &[],
        }
    }
}

/// A validated policy.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    rules: Vec<Rule>,
    quotas: Vec<Quota>,
}

impl Policy {
    /// Reads and validates the policy file at `path`.
    pub fn load(path: &Path) -> Result<Self, PolicyError> {
        let text = std::fs::read_to_string(path).map_err(|e| PolicyError::Read {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Validates a policy's text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self, PolicyError> {
        let spec: FileSpec = toml::from_str(text).map_err(|e| {
            let (line, column) = e
                .span()
                .map(|span| line_column(text, span.start))
                .unwrap_or((1, 1));
            PolicyError::Syntax {
                path: origin.to_owned(),
                line,
                column,
                message: e.message().trim().to_owned(),
            }
        })?;
        let invalid = |field: String, message: String| PolicyError::Invalid {
            path: origin.to_owned(),
            field,
            message,
        };
        let patterns = |field: &str, list: &[String]| -> Result<Vec<Pattern>, PolicyError> {
            list.iter()
                .enumerate()
                .map(|(i, p)| {
                    Pattern::new(p)
                        .map_err(|e| invalid(format!("{field}[{i}]"), format!("{p:?}: {e}")))
                })
                .collect()
        };
        let who = |at: &str,
                   principals: &Option<Vec<String>>,
                   scopes: &[String],
                   claims: &BTreeMap<String, String>,
                   anonymous: Option<bool>|
         -> Result<CallerMatch, PolicyError> {
            Ok(CallerMatch {
                principals: principals
                    .as_ref()
                    .map(|p| patterns(&format!("{at}.principals"), p))
                    .transpose()?,
                scopes: scopes.to_vec(),
                claims: claims.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
                anonymous,
            })
        };
        let mut rules = Vec::new();
        for (i, r) in spec.rule.iter().enumerate() {
            let at = format!("rule[{i}]");
            rules.push(Rule {
                name: r.name.clone().unwrap_or_else(|| format!("rule-{}", i + 1)),
                who: who(&at, &r.principals, &r.scopes, &r.claims, r.anonymous)?,
                tools: patterns(&format!("{at}.tools"), &r.tools)?,
                prompts: patterns(&format!("{at}.prompts"), &r.prompts)?,
                resources: patterns(&format!("{at}.resources"), &r.resources)?,
                resource_templates: patterns(
                    &format!("{at}.resource_templates"),
                    &r.resource_templates,
                )?,
            });
        }
        let mut quotas: Vec<Quota> = Vec::new();
        for (i, q) in spec.quota.iter().enumerate() {
            let at = format!("quota[{i}]");
            let valid_name = !q.name.is_empty()
                && q.name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            if !valid_name {
                return Err(invalid(
                    format!("{at}.name"),
                    "a quota needs a name of letters, digits, '_' and '-' (it is a metrics label)"
                        .into(),
                ));
            }
            if quotas.iter().any(|other| other.name == q.name) {
                return Err(invalid(
                    format!("{at}.name"),
                    format!("{:?} names another quota too", q.name),
                ));
            }
            if let Some(rate) = q.rate
                && !(rate.is_finite() && rate > 0.0)
            {
                return Err(invalid(
                    format!("{at}.rate"),
                    "must be a positive number of calls per second".into(),
                ));
            }
            if q.concurrent == Some(0) {
                return Err(invalid(
                    format!("{at}.concurrent"),
                    "must be at least 1 (leave it out for no limit)".into(),
                ));
            }
            if q.burst == Some(0) {
                return Err(invalid(format!("{at}.burst"), "must be at least 1".into()));
            }
            if q.rate.is_none() && q.concurrent.is_none() {
                return Err(invalid(
                    at,
                    "a quota needs `rate` or `concurrent` (or both)".into(),
                ));
            }
            let burst = q
                .burst
                .unwrap_or_else(|| q.rate.map_or(1, |r| r.ceil().max(1.0) as u32));
            quotas.push(Quota {
                name: q.name.clone(),
                who: who(&at, &q.principals, &q.scopes, &q.claims, q.anonymous)?,
                tools: patterns(
                    &format!("{at}.tools"),
                    q.tools.as_deref().unwrap_or(&["*".to_owned()]),
                )?,
                prompts: patterns(&format!("{at}.prompts"), &q.prompts)?,
                resources: patterns(&format!("{at}.resources"), &q.resources)?,
                per: q.per,
                rate: q.rate,
                burst,
                concurrent: q.concurrent,
            });
        }
        Ok(Self { rules, quotas })
    }

    /// Whether `caller` may see and use the `kind` named `name` (a URI for resources).
    pub fn allows(&self, caller: &Caller, kind: Kind, name: &str) -> bool {
        self.rules
            .iter()
            .any(|r| r.who.matches(caller) && any_match(r.patterns(kind), name))
    }

    /// The names of the rules that apply to `caller` (for logs).
    pub fn rules_for(&self, caller: &Caller) -> Vec<&str> {
        self.rules
            .iter()
            .filter(|r| r.who.matches(caller))
            .map(|r| r.name.as_str())
            .collect()
    }

    /// The quotas `caller`'s use of the `kind` named `name` draws on (`tools/call`,
    /// `prompts/get`, `resources/read`).
    pub fn quotas_for<'a>(
        &'a self,
        caller: &'a Caller,
        kind: Kind,
        name: &'a str,
    ) -> impl Iterator<Item = &'a Quota> + 'a {
        self.quotas
            .iter()
            .filter(move |q| q.who.matches(caller) && any_match(q.patterns(kind), name))
    }

    /// Every quota (for the metrics' rule labels).
    pub fn quotas(&self) -> &[Quota] {
        &self.quotas
    }

    /// The kinds whose visible lists may differ between `self` and `next` for some caller.
    pub fn changed_kinds(&self, next: &Policy) -> Vec<Kind> {
        let view = |p: &Policy, kind: Kind| -> Vec<(CallerMatch, Vec<Pattern>)> {
            p.rules
                .iter()
                .map(|r| (r.who.clone(), r.patterns(kind).to_vec()))
                .collect()
        };
        Kind::ALL
            .into_iter()
            .filter(|k| view(self, *k) != view(next, *k))
            .collect()
    }
}

/// The 1-based line and column of byte `offset` in `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before
        .rfind('\n')
        .map_or(before.len(), |nl| before.len() - nl - 1)
        + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn caller(principal: &str, scopes: &[&str]) -> Caller {
        Caller {
            principal: principal.into(),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            claims: json!({"org": "acme", "groups": ["ops", "dev"]}),
        }
    }

    const EXAMPLE: &str = r#"
[[rule]]
name = "readers"
scopes = ["mcp:read"]
tools = ["server_status", "seed_*", "seed.*"]
resources = ["notify://*"]

[[rule]]
principals = ["admin*"]
claims = { groups = "ops" }
tools = ["*"]
prompts = ["*"]

[[rule]]
anonymous = true
tools = ["send_notification"]

[[quota]]
name = "per-tool"
tools = ["seed_*"]
per = "tool"
rate = 2.5
concurrent = 1
"#;

    #[test]
    fn rules_allow_what_they_name_and_nothing_else() {
        let policy = Policy::parse(EXAMPLE, "test").unwrap();
        let reader = caller("i#reader", &["mcp:read"]);
        assert!(policy.allows(&reader, Kind::Tool, "server_status"));
        assert!(policy.allows(&reader, Kind::Tool, "seed_echo"));
        assert!(policy.allows(&reader, Kind::Tool, "seed.echo"));
        assert!(!policy.allows(&reader, Kind::Tool, "broadcast"));
        assert!(!policy.allows(&reader, Kind::Prompt, "greet"));
        assert!(policy.allows(&reader, Kind::Resource, "notify://tasks/1"));
        assert!(!policy.allows(&reader, Kind::ResourceTemplate, "notify://tasks/{id}"));
        let admin = caller("admin-1", &[]);
        assert!(policy.allows(&admin, Kind::Tool, "broadcast"));
        let mut outsider = caller("admin-2", &[]);
        outsider.claims = json!({"groups": ["dev"]});
        assert!(!policy.allows(&outsider, Kind::Tool, "broadcast"));
        let anonymous = Caller::default();
        assert!(policy.allows(&anonymous, Kind::Tool, "send_notification"));
        assert!(!policy.allows(&anonymous, Kind::Tool, "server_status"));
        assert!(!policy.allows(&reader, Kind::Tool, "send_notification"));
        let empty = Policy::parse("", "test").unwrap();
        assert!(!empty.allows(&admin, Kind::Tool, "broadcast"));
    }

    #[test]
    fn quotas_match_callers_and_tools() {
        let policy = Policy::parse(EXAMPLE, "test").unwrap();
        let reader = caller("i#reader", &["mcp:read"]);
        let quotas: Vec<_> = policy
            .quotas_for(&reader, Kind::Tool, "seed_echo")
            .collect();
        assert_eq!(quotas.len(), 1);
        assert_eq!(quotas[0].burst, 3);
        assert_eq!(
            quotas[0].budget_key(&reader, Kind::Tool, "seed_echo"),
            "per-tool|i#reader|seed_echo"
        );
        assert_eq!(
            policy
                .quotas_for(&reader, Kind::Tool, "server_status")
                .count(),
            0
        );
        // A quota counts prompts and resources only when it names them.
        assert_eq!(
            policy
                .quotas_for(&reader, Kind::Prompt, "seed_echo")
                .count(),
            0
        );
        let reads = Policy::parse(
            "[[quota]]\nname = \"reads\"\ntools = []\nprompts = [\"p*\"]\nresources = [\"notify://*\"]\nper = \"tool\"\nrate = 1.0\n",
            "t",
        )
        .unwrap();
        assert_eq!(reads.quotas_for(&reader, Kind::Tool, "p1").count(), 0);
        let prompt: Vec<_> = reads.quotas_for(&reader, Kind::Prompt, "p1").collect();
        assert_eq!(
            prompt[0].budget_key(&reader, Kind::Prompt, "p1"),
            "reads|i#reader|prompt:p1"
        );
        let resource: Vec<_> = reads
            .quotas_for(&reader, Kind::Resource, "notify://broadcast")
            .collect();
        assert_eq!(
            resource[0].budget_key(&reader, Kind::Resource, "notify://broadcast"),
            "reads|i#reader|resource:notify://broadcast"
        );
    }

    #[test]
    fn errors_name_the_line_or_the_field() {
        let syntax = Policy::parse("[[rule]]\ntools = [\"a\"\nprompts = 3\n", "p.toml")
            .unwrap_err()
            .to_string();
        assert!(syntax.starts_with("policy file p.toml: line "), "{syntax}");
        let unknown = Policy::parse("[[rule]]\ntool = [\"a\"]\n", "p.toml")
            .unwrap_err()
            .to_string();
        assert!(unknown.contains("line 2"), "{unknown}");
        assert!(unknown.contains("tool"), "{unknown}");
        let pattern = Policy::parse("[[rule]]\ntools = [\"ok\", \"[bad\"]\n", "p.toml")
            .unwrap_err()
            .to_string();
        assert!(pattern.contains("rule[0].tools[1]"), "{pattern}");
        let rate = Policy::parse("[[quota]]\nname = \"q\"\nrate = 0\n", "p.toml")
            .unwrap_err()
            .to_string();
        assert!(rate.contains("quota[0].rate"), "{rate}");
    }

    #[test]
    fn the_shipped_examples_are_valid() {
        let compose = include_str!("../../../deploy/policy/policy.toml");
        let policy = Policy::parse(compose, "deploy/policy/policy.toml").unwrap();
        assert!(policy.allows(&Caller::default(), Kind::Tool, "seed_echo"));
        let docs = include_str!("../../../docs/policies.md");
        let example = docs
            .split("```toml\n")
            .nth(1)
            .and_then(|rest| rest.split("```").next())
            .unwrap();
        Policy::parse(example, "docs/policies.md").unwrap();
    }

    #[test]
    fn changed_kinds_compares_per_kind() {
        let a = Policy::parse("[[rule]]\ntools = [\"a\"]\nprompts = [\"p\"]\n", "a").unwrap();
        let b =
            Policy::parse("[[rule]]\ntools = [\"a\", \"b\"]\nprompts = [\"p\"]\n", "b").unwrap();
        assert_eq!(a.changed_kinds(&b), vec![Kind::Tool]);
        assert!(a.changed_kinds(&a.clone()).is_empty());
    }
}
