//! The built-in tool sets, chosen by name (`--toolset NAME`).

pub mod conformance;
pub mod demo;
pub mod round_trips;
pub mod tasks;

use crate::tool::ToolSet;

/// The names `--toolset` accepts.
pub const NAMES: &[&str] = &["demo", "conformance"];

/// The tool set with this name, or `None` for an unknown name.
pub fn by_name(name: &str) -> Option<ToolSet> {
    match name {
        "demo" => Some(demo::tools()),
        "conformance" => Some(
            conformance::tools()
                .merge(round_trips::tools())
                .merge(tasks::tools()),
        ),
        _ => None,
    }
}

/// The union of the named tool sets; an error names the first unknown one.
pub fn build(names: &[String]) -> Result<ToolSet, String> {
    names.iter().try_fold(ToolSet::new(), |set, name| {
        by_name(name)
            .map(|tools| set.merge(tools))
            .ok_or_else(|| format!("unknown toolset {name:?} (known: {})", NAMES.join(", ")))
    })
}
