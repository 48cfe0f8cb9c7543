//! The conformance suite's tools for protocol 2026-07-28: input from the client (multi
//! round-trip requests), per-request logging, and a mirrored header. Part of
//! `--toolset conformance`. Each asks through [`ToolContext::input`], so the same tool
//! also works for session-protocol clients (as server-to-client requests).

use crate::catalog::user_text;
use crate::context::ToolContext;
use crate::input::InputRequest;
use crate::tool::{ToolError, ToolSet};
use crate::toolsets::conformance::NoArguments;
use mcp_protocol::{CallToolResult, LogLevel};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};

/// Arguments of `test_custom_header_tool`.
#[derive(Deserialize, JsonSchema)]
pub struct Greeting {
    /// A greeting, mirrored into the `Mcp-Param-Greeting` header.
    #[schemars(extend("x-mcp-header" = "Greeting"))]
    pub greeting: String,
}

fn ask_name() -> InputRequest {
    InputRequest::elicit(
        "user_name",
        "What is your name?",
        json!({"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}),
    )
}

fn ask_capital() -> InputRequest {
    InputRequest::sample(
        "capital_question",
        json!({
            "messages": [{"role": "user", "content": {"type": "text", "text": "What is the capital of France?"}}],
            "maxTokens": 100,
        }),
    )
}

fn ask_confirmation() -> InputRequest {
    InputRequest::elicit(
        "confirm",
        "Proceed?",
        json!({"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}),
    )
}

/// The accepted content of an elicitation answer, if the user accepted.
fn accepted(answer: &Value) -> Option<&Value> {
    (answer["action"] == "accept").then(|| &answer["content"])
}

/// A string field of an accepted elicitation, or the request asked again: an answer
/// without it cannot finish the call.
fn accepted_string(answer: &Value, field: &str, again: InputRequest) -> Result<String, ToolError> {
    match accepted(answer)
        .and_then(|c| c.get(field))
        .and_then(Value::as_str)
    {
        Some(value) => Ok(value.to_owned()),
        None if answer["action"] == "decline" || answer["action"] == "cancel" => {
            Err(ToolError::failed("the user did not answer"))
        }
        None => Err(ToolError::InputRequired(vec![again])),
    }
}

/// The text of a sampling answer.
fn sampled_text(answer: &Value) -> String {
    answer["content"]["text"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// The round-trip tools.
pub fn tools() -> ToolSet {
    ToolSet::new()
        .tool(
            "test_input_required_result_elicitation",
            "Ask the user's name (elicitation), then greet them",
            |ctx: ToolContext, _: NoArguments| async move {
                let answer = ctx.input(ask_name()).await?;
                let name = accepted_string(&answer, "name", ask_name())?;
                Ok(CallToolResult::text(format!("Hello, {name}!")))
            },
        )
        .tool(
            "test_input_required_result_sampling",
            "Ask the client's model a question (sampling)",
            |ctx: ToolContext, _: NoArguments| async move {
                let answer = ctx.input(ask_capital()).await?;
                Ok(CallToolResult::text(format!("The model said: {}", sampled_text(&answer))))
            },
        )
        .tool(
            "test_input_required_result_list_roots",
            "List the client's roots",
            |ctx: ToolContext, _: NoArguments| async move {
                let answer = ctx.input(InputRequest::roots("client_roots")).await?;
                let roots = answer["roots"].as_array().map_or(0, Vec::len);
                Ok(CallToolResult::text(format!("The client has {roots} roots")))
            },
        )
        .tool(
            "test_input_required_result_request_state",
            "Ask for a confirmation; the answer comes back with the signed request state",
            |ctx: ToolContext, _: NoArguments| async move {
                let answer = ctx.input(ask_confirmation()).await?;
                let ok = accepted(&answer).and_then(|c| c["ok"].as_bool()) == Some(true);
                Ok(CallToolResult::text(if ok { "state-ok: confirmed" } else { "state-ok: not confirmed" }))
            },
        )
        .tool(
            "test_input_required_result_multiple_inputs",
            "Ask for a name, a model answer and the roots at once",
            |ctx: ToolContext, _: NoArguments| async move {
                let answers = ctx
                    .inputs(vec![
                        ask_name(),
                        InputRequest::sample(
                            "greeting",
                            json!({
                                "messages": [{"role": "user", "content": {"type": "text", "text": "Write a one-line greeting."}}],
                                "maxTokens": 50,
                            }),
                        ),
                        InputRequest::roots("client_roots"),
                    ])
                    .await?;
                let name = accepted_string(&answers[0], "name", ask_name())?;
                let roots = answers[2]["roots"].as_array().map_or(0, Vec::len);
                Ok(CallToolResult::text(format!(
                    "{name}: {} ({roots} roots)",
                    sampled_text(&answers[1])
                )))
            },
        )
        .tool(
            "test_input_required_result_multi_round",
            "Ask for a name, then (a second round) for a favourite colour",
            |ctx: ToolContext, _: NoArguments| async move {
                let step1 = InputRequest::elicit(
                    "step1",
                    "What is your name?",
                    json!({"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}),
                );
                let name = accepted_string(&ctx.input(step1.clone()).await?, "name", step1)?;
                let step2 = InputRequest::elicit(
                    "step2",
                    &format!("{name}, what is your favourite colour?"),
                    json!({"type": "object", "properties": {"color": {"type": "string"}}, "required": ["color"]}),
                );
                let color = accepted_string(&ctx.input(step2.clone()).await?, "color", step2)?;
                Ok(CallToolResult::text(format!("{name} likes {color}")))
            },
        )
        .tool(
            "test_input_required_result_tampered_state",
            "Ask for a confirmation; a retry whose request state was altered is refused",
            |ctx: ToolContext, _: NoArguments| async move {
                let answer = ctx.input(ask_confirmation()).await?;
                let ok = accepted(&answer).and_then(|c| c["ok"].as_bool()) == Some(true);
                Ok(CallToolResult::text(format!("confirmed: {ok}")))
            },
        )
        .tool(
            "test_input_required_result_capabilities",
            "Ask for whatever input the client declared it can give",
            |ctx: ToolContext, _: NoArguments| async move {
                let caps = ctx.client_capabilities().clone();
                let mut wanted = Vec::new();
                if caps.get("sampling").is_some() {
                    wanted.push(ask_capital());
                }
                if caps.get("elicitation").is_some() {
                    wanted.push(ask_name());
                }
                if caps.get("roots").is_some() {
                    wanted.push(InputRequest::roots("client_roots"));
                }
                let asked = wanted.len();
                ctx.inputs(wanted).await?;
                Ok(CallToolResult::text(format!("{asked} inputs received")))
            },
        )
        .tool(
            "test_missing_capability",
            "Needs sampling: refused for a client that did not declare it",
            |ctx: ToolContext, _: NoArguments| async move {
                let answer = ctx.input(ask_capital()).await?;
                Ok(CallToolResult::text(sampled_text(&answer)))
            },
        )
        .tool(
            "test_streaming_elicitation",
            "Ask the user through elicitation (an input request, never a request on the stream)",
            |ctx: ToolContext, _: NoArguments| async move {
                let answer = ctx.input(ask_name()).await?;
                let name = accepted_string(&answer, "name", ask_name())?;
                Ok(CallToolResult::text(format!("Hello, {name}!")))
            },
        )
        .tool(
            "test_logging_tool",
            "Log three messages; a 2026-07-28 request sees them only if its _meta sets a log level",
            |ctx: ToolContext, _: NoArguments| async move {
                for (i, level) in [LogLevel::Info, LogLevel::Warning, LogLevel::Error].into_iter().enumerate() {
                    ctx.log(level, "test_logging_tool", format!("log message {}", i + 1)).await?;
                }
                Ok(CallToolResult::text("logged three messages"))
            },
        )
        .tool(
            "test_custom_header_tool",
            "Echo a greeting that clients mirror into the Mcp-Param-Greeting header",
            |_: ToolContext, args: Greeting| async move {
                Ok(CallToolResult::text(format!("greeting: {}", args.greeting)))
            },
        )
        .tool(
            "test_trigger_tool_change",
            "Show or hide test_dynamic_tool on every worker, so the tool list changes",
            |ctx: ToolContext, _: NoArguments| async move {
                let listed = ctx.is_listed("tool", "test_dynamic_tool");
                ctx.set_listed("tool", "test_dynamic_tool", !listed).await?;
                Ok(CallToolResult::text(if listed { "test_dynamic_tool hidden" } else { "test_dynamic_tool listed" }))
            },
        )
        .tool(
            "test_dynamic_tool",
            "A tool test_trigger_tool_change shows and hides",
            |_: ToolContext, _: NoArguments| async { Ok(CallToolResult::text("dynamic")) },
        )
        .tool(
            "test_trigger_prompt_change",
            "Show or hide test_dynamic_prompt on every worker, so the prompt list changes",
            |ctx: ToolContext, _: NoArguments| async move {
                let listed = ctx.is_listed("prompt", "test_dynamic_prompt");
                ctx.set_listed("prompt", "test_dynamic_prompt", !listed).await?;
                Ok(CallToolResult::text(if listed { "test_dynamic_prompt hidden" } else { "test_dynamic_prompt listed" }))
            },
        )
        .prompt(
            "test_dynamic_prompt",
            "A prompt test_trigger_prompt_change shows and hides",
            |_: ToolContext, _: NoArguments| async { Ok(vec![user_text("dynamic")]) },
        )
        .unlisted("tool", &["test_dynamic_tool"])
        .unlisted("prompt", &["test_dynamic_prompt"])
        .prompt(
            "test_input_required_result_prompt",
            "A prompt that asks the user for context first",
            |ctx: ToolContext, _: NoArguments| async move {
                let ask = InputRequest::elicit(
                    "user_context",
                    "What context should the prompt use?",
                    json!({"type": "object", "properties": {"context": {"type": "string"}}, "required": ["context"]}),
                );
                let context = accepted_string(&ctx.input(ask.clone()).await?, "context", ask)?;
                Ok(vec![user_text(format!("Use this context: {context}"))])
            },
        )
}
