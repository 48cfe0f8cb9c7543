//! The conformance suite's tools for the tasks extension (2026-07-28): slow work, tool and
//! protocol failures, input asked for while a task runs, and input asked for before the
//! task starts. Part of `--toolset conformance`.

use crate::context::ToolContext;
use crate::input::InputRequest;
use crate::tool::{TaskSupport, ToolError, ToolSet};
use crate::toolsets::conformance::NoArguments;
use mcp_protocol::{CallToolResult, ErrorObject};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};
use std::time::Duration;

/// Arguments of `greet`.
#[derive(Deserialize, JsonSchema)]
pub struct Greet {
    /// Who to greet.
    pub name: String,
}

/// Arguments of `slow_compute`.
#[derive(Deserialize, JsonSchema)]
pub struct SlowCompute {
    /// How long the computation takes, in seconds.
    #[schemars(range(min = 0, max = 600))]
    pub seconds: u64,
    /// A label echoed in the result.
    #[serde(default)]
    pub label: String,
}

/// Arguments of `confirm_delete`.
#[derive(Deserialize, JsonSchema)]
pub struct ConfirmDelete {
    /// The file to delete (nothing is deleted: this is a fixture).
    pub filename: String,
}

fn confirm(key: &str, message: &str) -> InputRequest {
    InputRequest::elicit(
        key,
        message,
        json!({"type": "object", "properties": {"confirm": {"type": "boolean"}}, "required": ["confirm"]}),
    )
}

fn confirmed(answer: &Value) -> bool {
    answer["action"] == "accept" && answer["content"]["confirm"] == true
}

/// The task fixtures.
pub fn tools() -> ToolSet {
    ToolSet::new()
        .tool(
            "greet",
            "Greet someone (never a task)",
            |_: ToolContext, args: Greet| async move {
                Ok(CallToolResult::text(format!("Hello, {}!", args.name)))
            },
        )
        .tool(
            "slow_compute",
            "Compute for `seconds` seconds; a task for clients that take tasks, cancellable",
            |ctx: ToolContext, args: SlowCompute| async move {
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(args.seconds)) => {}
                    () = ctx.cancelled() => return Err(ToolError::Cancelled),
                }
                Ok(CallToolResult::text(format!(
                    "computed {:?} in {} s",
                    args.label, args.seconds
                )))
            },
        )
        .tool(
            "failing_job",
            "Run as a task for about a second, then fail with a tool error",
            |ctx: ToolContext, _: NoArguments| async move {
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    () = ctx.cancelled() => return Err(ToolError::Cancelled),
                }
                Err::<CallToolResult, _>(ToolError::failed("the job failed, as it always does"))
            },
        )
        .tool(
            "protocol_error_job",
            "Run as a task and fail with a protocol (JSON-RPC) error",
            |_: ToolContext, _: NoArguments| async move {
                Err::<CallToolResult, _>(ToolError::Protocol(ErrorObject::internal(
                    "the job hit an internal error, as it always does",
                )))
            },
        )
        .tool(
            "confirm_delete",
            "Ask for confirmation (as a task waiting for input), then report the deletion",
            |ctx: ToolContext, args: ConfirmDelete| async move {
                let answer = ctx
                    .input(confirm("confirm", &format!("Delete {}?", args.filename)))
                    .await?;
                Ok(CallToolResult::text(if confirmed(&answer) {
                    format!("deleted {}", args.filename)
                } else {
                    format!("kept {}", args.filename)
                }))
            },
        )
        .tool(
            "multi_input",
            "Ask for two inputs at once (as a task waiting for input)",
            |ctx: ToolContext, _: NoArguments| async move {
                let answers = ctx
                    .inputs(vec![
                        InputRequest::elicit(
                            "name",
                            "Your name?",
                            json!({"type": "object", "properties": {"name": {"type": "string"}}}),
                        ),
                        confirm("confirm", "Proceed?"),
                    ])
                    .await?;
                Ok(CallToolResult::text(format!(
                    "got {} and {}",
                    answers[0]["content"]["name"].as_str().unwrap_or("no name"),
                    confirmed(&answers[1])
                )))
            },
        )
        .tool(
            "test_tool_with_task",
            "Ask the user's name first (multi round-trip), then finish the greeting as a task",
            |ctx: ToolContext, _: NoArguments| async move {
                let answer = ctx
                    .input(InputRequest::elicit(
                        "user_name",
                        "What is your name?",
                        json!({"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}),
                    ))
                    .await?;
                let name = answer["content"]["name"].as_str().unwrap_or("stranger").to_owned();
                ctx.start_task().await?;
                Ok(CallToolResult::text(format!("Hello, {name}! (from a task)")))
            },
        )
        .task_support(
            &["slow_compute", "protocol_error_job", "confirm_delete", "multi_input"],
            TaskSupport::Optional,
        )
        .task_support(&["failing_job"], TaskSupport::Required)
        .task_support(&["test_tool_with_task"], TaskSupport::RequiredOnDemand)
        // A pure computation: if its worker dies, another may run it again from the start.
        .retryable(&["slow_compute"])
}
