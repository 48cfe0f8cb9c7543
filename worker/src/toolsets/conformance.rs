//! Tools, resources, prompts and completions the official MCP conformance suite calls
//! (`--toolset conformance`). Each does what the suite's scenario describes, nothing
//! tailored to its checks; see `tests/conformance/`.

use crate::catalog::{CompletionRequest, ResourceContents, user_text};
use crate::context::ToolContext;
use crate::tool::{ToolError, ToolSet};
use mcp_protocol::{CallToolResult, LogLevel, Resource, ResourceTemplate};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::time::Duration;

/// A 1×1 PNG.
pub const PNG_1X1: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==";
/// A WAV of eight silent 8-bit samples at 8 kHz.
pub const WAV_SILENCE: &str =
    "UklGRiwAAABXQVZFZm10IBAAAAABAAEAQB8AAEAfAAABAAgAZGF0YQgAAACAgICAgICAgA==";

/// The resource subscribers watch; `update_watched_resource` changes it.
pub const WATCHED: &str = "test://watched-resource";

/// No arguments.
#[derive(Deserialize, JsonSchema)]
pub struct NoArguments {}

/// Arguments of `test_sampling`.
#[derive(Deserialize, JsonSchema)]
pub struct Sampling {
    /// The prompt to send to the client's model.
    pub prompt: String,
}

/// Arguments of `test_elicitation`.
#[derive(Deserialize, JsonSchema)]
pub struct Elicitation {
    /// The message to show the user.
    pub message: String,
}

/// An input schema using draft 2020-12 keywords a client must keep as they are
/// (`$defs` with `$anchor`, `$ref`, composition, conditionals): written by hand, since a
/// Rust type cannot express `if`/`then`/`else`.
fn schema_2020_12() -> Value {
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "$defs": {"address": {"$anchor": "addressDef", "type": "object", "properties": {
            "street": {"type": "string"}, "city": {"type": "string"},
        }}},
        "properties": {
            "name": {"type": "string"},
            "address": {"$ref": "#/$defs/address"},
            "contactMethod": {"type": "string", "enum": ["phone", "email"]},
            "phone": {"type": "string"},
            "email": {"type": "string"},
        },
        "allOf": [{"anyOf": [{"required": ["phone"]}, {"required": ["email"]}]}],
        "if": {"properties": {"contactMethod": {"const": "phone"}}, "required": ["contactMethod"]},
        "then": {"required": ["phone"]},
        "else": {"required": ["email"]},
        "additionalProperties": false,
    })
}

/// Arguments of `test_prompt_with_arguments`.
#[derive(Deserialize, JsonSchema)]
pub struct TwoArguments {
    /// First test argument.
    pub arg1: String,
    /// Second test argument.
    pub arg2: String,
}

/// Arguments of `test_prompt_with_embedded_resource`.
#[derive(Deserialize, JsonSchema)]
pub struct ResourceUri {
    /// URI of the resource to embed.
    #[serde(rename = "resourceUri")]
    pub resource_uri: String,
}

fn image() -> Value {
    json!({"type": "image", "data": PNG_1X1, "mimeType": "image/png"})
}

/// Everything the conformance suite calls.
pub fn tools() -> ToolSet {
    ToolSet::new()
        .tool(
            "test_simple_text",
            "Return one text block",
            |_: ToolContext, _: NoArguments| async {
                Ok(CallToolResult::text(
                    "This is a simple text response for testing.",
                ))
            },
        )
        .tool(
            "test_image_content",
            "Return an image",
            |_: ToolContext, _: NoArguments| async { Ok(CallToolResult::content(vec![image()])) },
        )
        .tool(
            "test_audio_content",
            "Return audio",
            |_: ToolContext, _: NoArguments| async {
                Ok(CallToolResult::content(vec![
                    json!({"type": "audio", "data": WAV_SILENCE, "mimeType": "audio/wav"}),
                ]))
            },
        )
        .tool(
            "test_embedded_resource",
            "Return an embedded resource",
            |_: ToolContext, _: NoArguments| async {
                Ok(CallToolResult::content(vec![
                    json!({"type": "resource", "resource": {
                        "uri": "test://embedded-resource",
                        "mimeType": "text/plain",
                        "text": "This is an embedded resource content.",
                    }}),
                ]))
            },
        )
        .tool(
            "test_multiple_content_types",
            "Return text, an image and a resource",
            |_: ToolContext, _: NoArguments| async {
                Ok(CallToolResult::content(vec![
                    json!({"type": "text", "text": "Multiple content types test:"}),
                    image(),
                    json!({"type": "resource", "resource": {
                        "uri": "test://mixed-content-resource",
                        "mimeType": "application/json",
                        "text": json!({"test": "data", "value": 123}).to_string(),
                    }}),
                ]))
            },
        )
        .tool(
            "test_tool_with_logging",
            "Send three log messages while running",
            tool_with_logging,
        )
        .tool(
            "test_tool_with_progress",
            "Report progress 0, 50, 100 of 100",
            tool_with_progress,
        )
        .tool(
            "test_error_handling",
            "Always fail with a tool execution error",
            |_: ToolContext, _: NoArguments| async {
                Err::<CallToolResult, _>(ToolError::failed(
                    "This tool intentionally returns an error for testing",
                ))
            },
        )
        .tool(
            "test_sampling",
            "Ask the client's model (sampling/createMessage) and return its answer",
            sampling,
        )
        .tool(
            "test_elicitation",
            "Ask the user for a username and an email (elicitation/create)",
            elicitation,
        )
        .tool(
            "test_elicitation_sep1034_defaults",
            "Elicit with a default for every primitive type (SEP-1034)",
            elicitation_defaults,
        )
        .tool(
            "test_elicitation_sep1330_enums",
            "Elicit with every enum form (SEP-1330)",
            elicitation_enums,
        )
        .tool_with_schema(
            "json_schema_2020_12_tool",
            "Tool with JSON Schema 2020-12 features",
            schema_2020_12(),
            |_: ToolContext, args: Value| async move {
                Ok(CallToolResult::text(format!(
                    "name={}, contact by {}",
                    args["name"].as_str().unwrap_or("?"),
                    args["contactMethod"].as_str().unwrap_or("?"),
                )))
            },
        )
        .tool(
            "test_reconnection",
            "Close the SSE connection mid-call; the client resumes and gets the result (SEP-1699)",
            reconnection,
        )
        .tool(
            "update_watched_resource",
            "Change test://watched-resource, notifying its subscribers",
            |ctx: ToolContext, _: NoArguments| async move {
                let notified = ctx.resource_updated(WATCHED).await?;
                Ok(CallToolResult::text(format!(
                    "{WATCHED} updated; {notified} subscribed sessions notified"
                )))
            },
        )
        .resource(
            Resource {
                uri: "test://static-text".into(),
                name: "static-text".into(),
                title: Some("Static text".into()),
                description: Some("A text resource whose content never changes".into()),
                mime_type: Some("text/plain".into()),
                extra: Default::default(),
            },
            |_: ToolContext| async {
                Ok(vec![ResourceContents::text(
                    "test://static-text",
                    "text/plain",
                    "This is the content of the static text resource.",
                )])
            },
        )
        .resource(
            Resource {
                uri: "test://static-binary".into(),
                name: "static-binary".into(),
                title: Some("Static binary".into()),
                description: Some("A 1x1 PNG".into()),
                mime_type: Some("image/png".into()),
                extra: Default::default(),
            },
            |_: ToolContext| async {
                Ok(vec![ResourceContents::blob(
                    "test://static-binary",
                    "image/png",
                    PNG_1X1,
                )])
            },
        )
        .resource(
            Resource {
                uri: WATCHED.into(),
                name: "watched-resource".into(),
                title: Some("Watched resource".into()),
                description: Some("Subscribe to it; update_watched_resource changes it".into()),
                mime_type: Some("text/plain".into()),
                extra: Default::default(),
            },
            |_: ToolContext| async {
                Ok(vec![ResourceContents::text(
                    WATCHED,
                    "text/plain",
                    "Watched resource content.",
                )])
            },
        )
        .resource_template(
            ResourceTemplate {
                uri_template: "test://template/{id}/data".into(),
                name: "template-data".into(),
                description: Some("Data for an id".into()),
                mime_type: Some("application/json".into()),
                extra: Default::default(),
            },
            |_: ToolContext, uri: String, vars: HashMap<String, String>| async move {
                let id = vars.get("id").cloned().unwrap_or_default();
                let text =
                    json!({"id": id, "templateTest": true, "data": format!("Data for ID: {id}")});
                Ok(vec![ResourceContents::text(
                    uri,
                    "application/json",
                    text.to_string(),
                )])
            },
        )
        .prompt(
            "test_simple_prompt",
            "A prompt without arguments",
            |_: ToolContext, _: NoArguments| async {
                Ok(vec![user_text("This is a simple prompt for testing.")])
            },
        )
        .prompt(
            "test_prompt_with_arguments",
            "A prompt with two arguments",
            |_: ToolContext, args: TwoArguments| async move {
                Ok(vec![user_text(format!(
                    "Prompt with arguments: arg1='{}', arg2='{}'",
                    args.arg1, args.arg2
                ))])
            },
        )
        .prompt(
            "test_prompt_with_embedded_resource",
            "A prompt embedding a resource",
            |_: ToolContext, args: ResourceUri| async move {
                Ok(vec![
                    json!({"role": "user", "content": {"type": "resource", "resource": {
                        "uri": args.resource_uri,
                        "mimeType": "text/plain",
                        "text": "Embedded resource content for testing.",
                    }}}),
                    user_text("Please process the embedded resource above."),
                ])
            },
        )
        .prompt(
            "test_prompt_with_image",
            "A prompt with an image",
            |_: ToolContext, _: NoArguments| async {
                Ok(vec![
                    json!({"role": "user", "content": image()}),
                    user_text("Please analyze the image above."),
                ])
            },
        )
        .completion(complete)
}

async fn tool_with_logging(ctx: ToolContext, _: NoArguments) -> Result<CallToolResult, ToolError> {
    ctx.log(LogLevel::Info, "conformance", "Tool execution started")
        .await?;
    tokio::time::sleep(Duration::from_millis(50)).await;
    ctx.log(LogLevel::Info, "conformance", "Tool processing data")
        .await?;
    tokio::time::sleep(Duration::from_millis(50)).await;
    ctx.log(LogLevel::Info, "conformance", "Tool execution completed")
        .await?;
    Ok(CallToolResult::text(
        "Tool with logging executed successfully",
    ))
}

async fn tool_with_progress(ctx: ToolContext, _: NoArguments) -> Result<CallToolResult, ToolError> {
    for (i, progress) in [0.0, 50.0, 100.0].into_iter().enumerate() {
        if i > 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        ctx.progress(progress, Some(100.0), None).await?;
    }
    Ok(CallToolResult::text(
        "Tool with progress executed successfully",
    ))
}

async fn sampling(ctx: ToolContext, args: Sampling) -> Result<CallToolResult, ToolError> {
    let reply = ctx
        .request(
            "sampling/createMessage",
            json!({
                "messages": [{"role": "user", "content": {"type": "text", "text": args.prompt}}],
                "maxTokens": 100,
            }),
        )
        .await?;
    let text = reply["content"]["text"].as_str().unwrap_or_default();
    Ok(CallToolResult::text(format!("LLM response: {text}")))
}

async fn elicit(
    ctx: &ToolContext,
    message: &str,
    schema: Value,
) -> Result<CallToolResult, ToolError> {
    let reply = ctx
        .request(
            "elicitation/create",
            json!({"message": message, "requestedSchema": schema}),
        )
        .await?;
    Ok(CallToolResult::text(format!(
        "Elicitation completed: action={}, content={}",
        reply["action"].as_str().unwrap_or("unknown"),
        reply.get("content").cloned().unwrap_or(json!({}))
    )))
}

async fn elicitation(ctx: ToolContext, args: Elicitation) -> Result<CallToolResult, ToolError> {
    let schema = json!({
        "type": "object",
        "properties": {
            "username": {"type": "string", "description": "User's response"},
            "email": {"type": "string", "description": "User's email address"},
        },
        "required": ["username", "email"],
    });
    let reply = ctx
        .request(
            "elicitation/create",
            json!({"message": args.message, "requestedSchema": schema}),
        )
        .await?;
    Ok(CallToolResult::text(format!(
        "User response: action={}, content={}",
        reply["action"].as_str().unwrap_or("unknown"),
        reply.get("content").cloned().unwrap_or(json!({}))
    )))
}

async fn elicitation_defaults(
    ctx: ToolContext,
    _: NoArguments,
) -> Result<CallToolResult, ToolError> {
    let schema = json!({
        "type": "object",
        "properties": {
            "name": {"type": "string", "description": "Your name", "default": "John Doe"},
            "age": {"type": "integer", "description": "Your age", "default": 30},
            "score": {"type": "number", "description": "Your score", "default": 95.5},
            "status": {"type": "string", "description": "Your status", "enum": ["active", "inactive", "pending"], "default": "active"},
            "verified": {"type": "boolean", "description": "Verified?", "default": true},
        },
    });
    elicit(
        &ctx,
        "Please review and update the form fields with defaults",
        schema,
    )
    .await
}

async fn elicitation_enums(ctx: ToolContext, _: NoArguments) -> Result<CallToolResult, ToolError> {
    let schema = json!({
        "type": "object",
        "properties": {
            "untitledSingle": {"type": "string", "description": "Pick one", "enum": ["option1", "option2", "option3"]},
            "titledSingle": {"type": "string", "description": "Pick one", "oneOf": [
                {"const": "value1", "title": "First Option"},
                {"const": "value2", "title": "Second Option"},
                {"const": "value3", "title": "Third Option"},
            ]},
            "legacyEnum": {"type": "string", "description": "Pick one", "enum": ["opt1", "opt2", "opt3"],
                "enumNames": ["Option One", "Option Two", "Option Three"]},
            "untitledMulti": {"type": "array", "description": "Pick some", "items": {"type": "string", "enum": ["option1", "option2", "option3"]}},
            "titledMulti": {"type": "array", "description": "Pick some", "items": {"anyOf": [
                {"const": "value1", "title": "First Choice"},
                {"const": "value2", "title": "Second Choice"},
                {"const": "value3", "title": "Third Choice"},
            ]}},
        },
    });
    elicit(&ctx, "Please select options from the enum fields", schema).await
}

async fn reconnection(ctx: ToolContext, _: NoArguments) -> Result<CallToolResult, ToolError> {
    // The client reconnects after the retry delay and finds the result in the log.
    ctx.close_stream(500).await?;
    tokio::time::sleep(Duration::from_millis(100)).await;
    Ok(CallToolResult::text("Reconnection test completed"))
}

async fn complete(_: ToolContext, request: CompletionRequest) -> Result<Vec<String>, ToolError> {
    let candidates: &[&str] = match (
        request.reference["type"].as_str(),
        request.argument.as_str(),
    ) {
        (Some("ref/prompt"), "arg1" | "arg2") => &["paris", "park", "party", "pasta", "piano"],
        (Some("ref/resource"), "id") => &["1", "2", "3", "42", "123"],
        _ => &[],
    };
    Ok(candidates
        .iter()
        .filter(|c| c.starts_with(&request.value))
        .map(|c| (*c).to_owned())
        .collect())
}
