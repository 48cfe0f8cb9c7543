//! Tool sets chosen by name (`--toolset NAME`): the built-in ones, and any a library user
//! adds with [`Toolsets::with`] before handing the registry to [`crate::cli::run`] (their
//! own worker binary) or to the gateway (its embedded worker).

pub mod conformance;
pub mod demo;
pub mod round_trips;
pub mod tasks;

use crate::tool::ToolSet;
use std::sync::Arc;

/// The names of the built-in tool sets.
pub const NAMES: &[&str] = &["demo", "conformance", "none"];

/// Builds a tool set; called once per process, when the names on the command line are
/// resolved.
pub type Factory = Arc<dyn Fn() -> ToolSet + Send + Sync>;

/// An open registry of named tool sets, and the names served when `--toolset` is not given.
///
/// ```
/// use worker::{CallToolResult, ToolContext, ToolSet, toolsets::Toolsets};
///
/// let registry = Toolsets::builtin()
///     .with("mine", || {
///         ToolSet::new().tool("hello", "Say hello", |_ctx: ToolContext, _: serde_json::Value| async {
///             Ok(CallToolResult::text("hello"))
///         })
///     })
///     .default_to(&["mine"]);
/// let tools = registry.build(&[]).unwrap();
/// assert_eq!(tools.descriptors()[0].name, "hello");
/// assert!(registry.build(&["demo".into(), "mine".into()]).is_ok());
/// assert!(registry.build(&["nope".into()]).is_err());
/// ```
#[derive(Clone)]
pub struct Toolsets {
    sets: Vec<(String, Factory)>,
    default: Vec<String>,
}

impl Toolsets {
    /// No tool sets at all, and no default.
    pub fn empty() -> Self {
        Self {
            sets: Vec::new(),
            default: Vec::new(),
        }
    }

    /// The built-in sets (`demo`, `conformance`, and `none`, for a worker that serves only
    /// its upstreams); `demo` by default.
    pub fn builtin() -> Self {
        Self::empty()
            .with("demo", demo::tools)
            .with("none", ToolSet::new)
            .with("conformance", || {
                conformance::tools()
                    .merge(round_trips::tools())
                    .merge(tasks::tools())
            })
            .default_to(&["demo"])
    }

    /// Adds (or replaces) the set called `name`.
    pub fn with(mut self, name: &str, build: impl Fn() -> ToolSet + Send + Sync + 'static) -> Self {
        let build: Factory = Arc::new(build);
        match self.sets.iter_mut().find(|(n, _)| n == name) {
            Some(entry) => entry.1 = build,
            None => self.sets.push((name.to_owned(), build)),
        }
        self
    }

    /// The sets served when no name is asked for.
    pub fn default_to(mut self, names: &[&str]) -> Self {
        self.default = names.iter().map(|n| (*n).to_owned()).collect();
        self
    }

    /// The registered names, in registration order.
    pub fn names(&self) -> Vec<&str> {
        self.sets.iter().map(|(n, _)| n.as_str()).collect()
    }

    /// The union of the named sets (the default ones when `names` is empty); an error
    /// names the first unknown one.
    pub fn build(&self, names: &[String]) -> Result<ToolSet, String> {
        let names = if names.is_empty() {
            &self.default
        } else {
            names
        };
        names.iter().try_fold(ToolSet::new(), |set, name| {
            let (_, build) = self.sets.iter().find(|(n, _)| n == name).ok_or_else(|| {
                format!(
                    "unknown toolset {name:?} (known: {})",
                    self.names().join(", ")
                )
            })?;
            Ok(set.merge(build()))
        })
    }
}

impl Default for Toolsets {
    fn default() -> Self {
        Self::builtin()
    }
}

/// The built-in tool set with this name, or `None` for an unknown name.
pub fn by_name(name: &str) -> Option<ToolSet> {
    Toolsets::builtin().build(&[name.to_owned()]).ok()
}

/// The union of the named built-in tool sets (`demo` when none is named); an error names
/// the first unknown one.
pub fn build(names: &[String]) -> Result<ToolSet, String> {
    Toolsets::builtin().build(names)
}
