//! Registering tools: a name, a description, and a typed handler whose argument type
//! yields the input schema.

use crate::catalog::{
    CompletionHandler, CompletionRequest, PromptEntry, ResourceContents, ResourceEntry,
    TemplateEntry,
};
use crate::context::ToolContext;
use futures::future::BoxFuture;
use mcp_protocol::{
    CallToolResult, ErrorObject, Prompt, PromptArgument, Resource, ResourceTemplate, Tool,
};
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde_json::Value;
use serde_json::json;
use std::collections::HashMap;
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Arc;

/// Why a tool call did not produce a normal result.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    /// The arguments do not match the tool's schema. Answered as `-32602` before protocol
    /// 2025-11-25 and as a tool execution error (`isError: true`) from it on.
    #[error("invalid arguments: {0}")]
    InvalidArguments(String),
    /// The tool failed in a way the model should see: a tool execution error.
    #[error("{0}")]
    Failed(String),
    /// The request itself is wrong: answered with this JSON-RPC error.
    #[error("{}", .0.message)]
    Protocol(ErrorObject),
    /// The client cancelled the request: no response is sent.
    #[error("cancelled by the client")]
    Cancelled,
    /// 2026-07-28: the tool needs these inputs from the client before it can finish; the
    /// call is answered with an `InputRequiredResult` (see [`crate::input`]).
    #[error("input required from the client")]
    InputRequired(Vec<crate::input::InputRequest>),
    /// The bus failed while the tool was talking to the client.
    #[error(transparent)]
    Bus(#[from] mcp_bus::BusError),
}

impl ToolError {
    /// A tool execution error with this message.
    pub fn failed(message: impl Into<String>) -> Self {
        Self::Failed(message.into())
    }
}

type Handler = dyn Fn(ToolContext, Value) -> BoxFuture<'static, Result<CallToolResult, ToolError>>
    + Send
    + Sync;

/// Whether a tool's calls may run as tasks (the tasks extension of 2026-07-28).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TaskSupport {
    /// Never: every call answers at once.
    #[default]
    Forbidden,
    /// A call from a client that declares the extension becomes a task as it starts;
    /// other clients get the result directly.
    Optional,
    /// Like `Optional`, but the tool calls [`ToolContext::start_task`] itself when it is
    /// ready (after asking for input, say).
    OptionalOnDemand,
    /// Only as a task: a client without the extension gets `-32021`.
    Required,
    /// Only as a task, started by the tool with [`ToolContext::start_task`].
    RequiredOnDemand,
}

impl TaskSupport {
    /// The call cannot be served to a client without the extension.
    pub fn is_required(self) -> bool {
        matches!(self, Self::Required | Self::RequiredOnDemand)
    }

    /// The runtime starts the task before the tool runs.
    pub fn starts_at_once(self) -> bool {
        matches!(self, Self::Optional | Self::Required)
    }
}

/// One registered tool.
pub struct ToolEntry {
    descriptor: Tool,
    retryable: bool,
    task_support: TaskSupport,
    validator: Option<jsonschema::Validator>,
    handler: Box<Handler>,
}

impl ToolEntry {
    /// The tool as `tools/list` shows it.
    pub fn descriptor(&self) -> &Tool {
        &self.descriptor
    }

    /// Whether and how the tool's calls run as tasks.
    pub fn task_support(&self) -> TaskSupport {
        self.task_support
    }

    /// Whether a call may run again after its worker died mid-call (the tool is
    /// idempotent, or its effects are harmless twice).
    pub fn retryable(&self) -> bool {
        self.retryable
    }

    /// Checks arguments against the input schema; the error lists every violation.
    pub fn validate(&self, arguments: &Value) -> Result<(), ToolError> {
        let Some(validator) = &self.validator else {
            return Ok(());
        };
        let problems: Vec<String> = validator
            .iter_errors(arguments)
            .map(|e| {
                let path = e.instance_path().to_string();
                if path.is_empty() {
                    e.to_string()
                } else {
                    format!("{path}: {e}")
                }
            })
            .collect();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ToolError::InvalidArguments(problems.join("; ")))
        }
    }

    /// Runs the tool. Arguments should have passed [`ToolEntry::validate`].
    pub fn call(
        &self,
        ctx: ToolContext,
        arguments: Value,
    ) -> BoxFuture<'static, Result<CallToolResult, ToolError>> {
        (self.handler)(ctx, arguments)
    }
}

/// What a worker serves: tools, and also resources, resource templates, prompts and a
/// completion handler.
#[derive(Default, Clone)]
pub struct ToolSet {
    tools: BTreeMap<String, Arc<ToolEntry>>,
    resources: BTreeMap<String, Arc<ResourceEntry>>,
    templates: BTreeMap<String, Arc<TemplateEntry>>,
    prompts: BTreeMap<String, Arc<PromptEntry>>,
    completion: Option<Arc<CompletionHandler>>,
    /// Tools and prompts served but not listed at start (`("tool" | "prompt", name)`);
    /// [`ToolContext::set_listed`] changes that at run time.
    unlisted: BTreeSet<(String, String)>,
}

impl ToolSet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a tool whose arguments are `A`. The input schema is `A`'s JSON Schema (doc
    /// comments become descriptions, `#[serde(default)]` fields are optional, and
    /// `#[schemars(range(min = …, max = …))]` bounds are enforced).
    pub fn tool<A, F, Fut>(self, name: &str, description: &str, handler: F) -> Self
    where
        A: DeserializeOwned + JsonSchema + Send + 'static,
        F: Fn(ToolContext, A) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<CallToolResult, ToolError>> + Send + 'static,
    {
        self.tool_with(name, description, None, handler)
    }

    /// Like [`ToolSet::tool`], with behaviour annotations (`readOnlyHint`, …).
    pub fn tool_with<A, F, Fut>(
        self,
        name: &str,
        description: &str,
        annotations: Option<Value>,
        handler: F,
    ) -> Self
    where
        A: DeserializeOwned + JsonSchema + Send + 'static,
        F: Fn(ToolContext, A) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<CallToolResult, ToolError>> + Send + 'static,
    {
        let handler = Arc::new(handler);
        let erased = move |ctx: ToolContext, arguments: Value| {
            let handler = handler.clone();
            let fut: BoxFuture<'static, Result<CallToolResult, ToolError>> = Box::pin(async move {
                let args: A = serde_json::from_value(arguments)
                    .map_err(|e| ToolError::InvalidArguments(e.to_string()))?;
                handler(ctx, args).await
            });
            fut
        };
        self.insert(
            name,
            description,
            input_schema_of::<A>(),
            annotations,
            Box::new(erased),
        )
    }

    /// Adds a tool whose input schema is written by hand (any JSON Schema 2020-12, kept
    /// verbatim in `tools/list`); the handler gets the validated arguments as JSON.
    pub fn tool_with_schema<F, Fut>(
        self,
        name: &str,
        description: &str,
        input_schema: Value,
        handler: F,
    ) -> Self
    where
        F: Fn(ToolContext, Value) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<CallToolResult, ToolError>> + Send + 'static,
    {
        let handler = Arc::new(handler);
        let erased = move |ctx: ToolContext, arguments: Value| {
            let handler = handler.clone();
            let fut: BoxFuture<'static, Result<CallToolResult, ToolError>> =
                Box::pin(async move { handler(ctx, arguments).await });
            fut
        };
        self.insert(name, description, input_schema, None, Box::new(erased))
    }

    fn insert(
        mut self,
        name: &str,
        description: &str,
        input_schema: Value,
        annotations: Option<Value>,
        handler: Box<Handler>,
    ) -> Self {
        // A schema that does not compile still lists; serde's own checks (or the
        // handler's) stand in for it.
        let validator = jsonschema::validator_for(&input_schema)
            .inspect_err(
                |e| tracing::warn!(tool = name, error = %e, "input schema does not compile"),
            )
            .ok();
        let descriptor = Tool {
            name: name.to_owned(),
            title: None,
            description: Some(description.to_owned()),
            input_schema,
            annotations,
        };
        self.tools.insert(
            name.to_owned(),
            Arc::new(ToolEntry {
                descriptor,
                retryable: false,
                task_support: TaskSupport::Forbidden,
                validator,
                handler,
            }),
        );
        self
    }

    /// Marks tools as safe to run again on another worker when the worker running a call
    /// of them dies. Calls of other tools fail with an error instead: a second run could
    /// repeat an effect the client already saw.
    pub fn retryable(mut self, names: &[&str]) -> Self {
        for name in names {
            if let Some(entry) = self.tools.get_mut(*name)
                && let Some(entry) = Arc::get_mut(entry)
            {
                entry.retryable = true;
            }
        }
        self
    }

    /// Sets how the named tools run as tasks (2026-07-28 tasks extension).
    pub fn task_support(mut self, names: &[&str], support: TaskSupport) -> Self {
        for name in names {
            if let Some(entry) = self.tools.get_mut(*name)
                && let Some(entry) = Arc::get_mut(entry)
            {
                entry.task_support = support;
            }
        }
        self
    }

    /// Adds a resource with a fixed URI; `read` returns its contents.
    pub fn resource<F, Fut>(mut self, resource: Resource, read: F) -> Self
    where
        F: Fn(ToolContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Vec<ResourceContents>, ToolError>> + Send + 'static,
    {
        let read = Arc::new(read);
        let erased = move |ctx: ToolContext, _uri: String, _vars: HashMap<String, String>| {
            let read = read.clone();
            let fut: BoxFuture<'static, _> = Box::pin(async move { read(ctx).await });
            fut
        };
        self.resources.insert(
            resource.uri.clone(),
            Arc::new(ResourceEntry {
                descriptor: resource,
                read: Box::new(erased),
            }),
        );
        self
    }

    /// Adds a resource template (`{name}` variables); `read` gets the URI asked for and
    /// the variables it matched.
    pub fn resource_template<F, Fut>(mut self, template: ResourceTemplate, read: F) -> Self
    where
        F: Fn(ToolContext, String, HashMap<String, String>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Vec<ResourceContents>, ToolError>> + Send + 'static,
    {
        let read = Arc::new(read);
        let erased = move |ctx: ToolContext, uri: String, vars: HashMap<String, String>| {
            let read = read.clone();
            let fut: BoxFuture<'static, _> = Box::pin(async move { read(ctx, uri, vars).await });
            fut
        };
        self.templates.insert(
            template.uri_template.clone(),
            Arc::new(TemplateEntry {
                descriptor: template,
                read: Box::new(erased),
            }),
        );
        self
    }

    /// Adds a prompt whose arguments are `A` (string fields; `Option` ones are optional).
    /// `get` returns its messages.
    pub fn prompt<A, F, Fut>(mut self, name: &str, description: &str, get: F) -> Self
    where
        A: DeserializeOwned + JsonSchema + Send + 'static,
        F: Fn(ToolContext, A) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Vec<Value>, ToolError>> + Send + 'static,
    {
        let schema = input_schema_of::<A>();
        let required: Vec<&str> = schema["required"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let arguments = schema["properties"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(name, property)| PromptArgument {
                name: name.clone(),
                description: property["description"].as_str().map(str::to_owned),
                required: required.contains(&name.as_str()),
            })
            .collect();
        let validator = jsonschema::validator_for(&schema).ok();
        let get = Arc::new(get);
        let erased = move |ctx: ToolContext, arguments: Value| {
            let get = get.clone();
            let fut: BoxFuture<'static, _> = Box::pin(async move {
                let args: A = serde_json::from_value(arguments)
                    .map_err(|e| ToolError::InvalidArguments(e.to_string()))?;
                get(ctx, args).await
            });
            fut
        };
        self.prompts.insert(
            name.to_owned(),
            Arc::new(PromptEntry {
                descriptor: Prompt {
                    name: name.to_owned(),
                    title: None,
                    description: Some(description.to_owned()),
                    arguments,
                    extra: Default::default(),
                },
                validator,
                get: Box::new(erased),
            }),
        );
        self
    }

    /// Sets the handler of `completion/complete` (suggested values for a prompt's or a
    /// template's argument). Without one, completions are empty.
    pub fn completion<F, Fut>(mut self, complete: F) -> Self
    where
        F: Fn(ToolContext, CompletionRequest) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Vec<String>, ToolError>> + Send + 'static,
    {
        let complete = Arc::new(complete);
        self.completion = Some(Arc::new(
            move |ctx: ToolContext, request: CompletionRequest| {
                let complete = complete.clone();
                let fut: BoxFuture<'static, _> =
                    Box::pin(async move { complete(ctx, request).await });
                fut
            },
        ));
        self
    }

    /// Adds everything `other` serves (its entries win on a clash).
    pub fn merge(mut self, other: ToolSet) -> Self {
        self.tools.extend(other.tools);
        self.resources.extend(other.resources);
        self.templates.extend(other.templates);
        self.prompts.extend(other.prompts);
        if other.completion.is_some() {
            self.completion = other.completion;
        }
        self.unlisted.extend(other.unlisted);
        self
    }

    /// Serves the named tools (`kind` "tool") or prompts ("prompt") without listing them
    /// until [`ToolContext::set_listed`] shows them.
    pub fn unlisted(mut self, kind: &str, names: &[&str]) -> Self {
        self.unlisted
            .extend(names.iter().map(|n| (kind.to_owned(), (*n).to_owned())));
        self
    }

    /// What starts out unlisted.
    pub(crate) fn initially_unlisted(&self) -> BTreeSet<(String, String)> {
        self.unlisted.clone()
    }

    /// Every resource's descriptor, sorted by URI.
    pub fn resource_descriptors(&self) -> Vec<Resource> {
        self.resources
            .values()
            .map(|r| r.descriptor.clone())
            .collect()
    }

    /// Every resource template's descriptor, sorted by template.
    pub fn template_descriptors(&self) -> Vec<ResourceTemplate> {
        self.templates
            .values()
            .map(|t| t.descriptor.clone())
            .collect()
    }

    /// Every prompt's descriptor, sorted by name.
    pub fn prompt_descriptors(&self) -> Vec<Prompt> {
        self.prompts
            .values()
            .map(|p| p.descriptor.clone())
            .collect()
    }

    /// Reads a resource: an exact URI first, then the templates.
    pub(crate) async fn read_resource(
        &self,
        ctx: ToolContext,
        uri: &str,
    ) -> Option<Result<Vec<ResourceContents>, ToolError>> {
        if let Some(entry) = self.resources.get(uri) {
            return Some((entry.read)(ctx, uri.to_owned(), HashMap::new()).await);
        }
        for entry in self.templates.values() {
            if let Some(vars) =
                mcp_protocol::catalog::match_template(&entry.descriptor.uri_template, uri)
            {
                return Some((entry.read)(ctx, uri.to_owned(), vars.into_iter().collect()).await);
            }
        }
        None
    }

    /// Gets a prompt; `None` for an unknown name.
    pub(crate) async fn get_prompt(
        &self,
        ctx: ToolContext,
        name: &str,
        arguments: Value,
    ) -> Option<Result<Value, ToolError>> {
        let entry = self.prompts.get(name)?.clone();
        if let Some(validator) = &entry.validator {
            let problems: Vec<String> = validator
                .iter_errors(&arguments)
                .map(|e| e.to_string())
                .collect();
            if !problems.is_empty() {
                return Some(Err(ToolError::InvalidArguments(problems.join("; "))));
            }
        }
        let messages = (entry.get)(ctx, arguments).await;
        Some(messages.map(
            |messages| json!({"description": entry.descriptor.description, "messages": messages}),
        ))
    }

    /// Completes an argument value (empty without a completion handler).
    pub(crate) async fn complete(
        &self,
        ctx: ToolContext,
        request: CompletionRequest,
    ) -> Result<Vec<String>, ToolError> {
        match &self.completion {
            Some(complete) => complete(ctx, request).await,
            None => Ok(Vec::new()),
        }
    }

    /// Whether it has a prompt of this name.
    pub(crate) fn has_prompt(&self, name: &str) -> bool {
        self.prompts.contains_key(name)
    }

    /// Whether a resource or template of its own serves `uri`.
    pub(crate) fn serves_resource(&self, uri: &str) -> bool {
        self.resources.contains_key(uri)
            || self.templates.values().any(|t| {
                mcp_protocol::catalog::match_template(&t.descriptor.uri_template, uri).is_some()
            })
    }

    /// Whether a `completion/complete` reference names one of its prompts, resources or
    /// resource templates.
    pub(crate) fn knows_reference(&self, reference: &Value) -> bool {
        match (reference["type"].as_str(), reference) {
            (Some("ref/prompt"), r) => r["name"].as_str().is_some_and(|n| self.has_prompt(n)),
            (Some("ref/resource"), r) => r["uri"].as_str().is_some_and(|uri| {
                self.resources.contains_key(uri)
                    || self
                        .templates
                        .values()
                        .any(|t| t.descriptor.uri_template == uri)
            }),
            _ => false,
        }
    }

    /// A tool by name.
    pub fn get(&self, name: &str) -> Option<Arc<ToolEntry>> {
        self.tools.get(name).cloned()
    }

    /// Every tool's descriptor, sorted by name.
    pub fn descriptors(&self) -> Vec<Tool> {
        self.tools.values().map(|t| t.descriptor.clone()).collect()
    }

    /// True when there are no tools.
    pub fn is_empty(&self) -> bool {
        self.tools.is_empty()
    }
}

fn input_schema_of<A: JsonSchema>() -> Value {
    let mut schema = schemars::schema_for!(A).to_value();
    if let Value::Object(map) = &mut schema {
        // The Rust type's name and doc comment speak to Rust readers; the tool's own
        // description speaks to clients.
        map.remove("title");
        map.remove("description");
        map.entry("type")
            .or_insert_with(|| Value::String("object".into()));
        map.entry("properties")
            .or_insert_with(|| Value::Object(Default::default()));
    }
    schema
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use serde_json::json;

    #[derive(Deserialize, JsonSchema)]
    struct Args {
        /// A count.
        #[schemars(range(min = 1, max = 10))]
        #[serde(default = "one")]
        count: u32,
        name: String,
    }
    fn one() -> u32 {
        1
    }

    fn set() -> ToolSet {
        ToolSet::new().tool("t", "test", |_ctx, a: Args| async move {
            Ok(CallToolResult::text(format!("{} {}", a.name, a.count)))
        })
    }

    #[test]
    fn schema_comes_from_the_argument_type() {
        let tools = set().descriptors();
        let schema = &tools[0].input_schema;
        assert_eq!(schema["type"], "object");
        assert_eq!(schema["required"], json!(["name"]));
        assert_eq!(schema["properties"]["count"]["maximum"], 10);
        assert_eq!(schema["properties"]["count"]["description"], "A count.");
        assert!(schema.get("title").is_none());
    }

    #[test]
    fn validation_names_every_problem() {
        let entry = set().get("t").unwrap();
        assert!(entry.validate(&json!({"name": "x"})).is_ok());
        let err = entry
            .validate(&json!({"count": 99}))
            .unwrap_err()
            .to_string();
        assert!(err.contains("name"), "{err}");
        assert!(err.contains("/count"), "{err}");
    }
}
