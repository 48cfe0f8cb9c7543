//! Tools the official MCP conformance suite calls (`--toolset conformance`). So far, the
//! ones that ask the client: sampling and elicitation, whose replies may reach any gateway.

use crate::context::ToolContext;
use crate::tool::{ToolError, ToolSet};
use mcp_protocol::CallToolResult;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::json;

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

/// The conformance tools.
pub fn tools() -> ToolSet {
    ToolSet::new()
        .tool(
            "test_sampling",
            "Ask the client's model (sampling/createMessage) and return its answer",
            sampling,
        )
        .tool(
            "test_elicitation",
            "Ask the user for a username and an email (elicitation/create) and return the answer",
            elicitation,
        )
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

async fn elicitation(ctx: ToolContext, args: Elicitation) -> Result<CallToolResult, ToolError> {
    let reply = ctx
        .request(
            "elicitation/create",
            json!({
                "message": args.message,
                "requestedSchema": {
                    "type": "object",
                    "properties": {
                        "username": {"type": "string", "description": "User's response"},
                        "email": {"type": "string", "description": "User's email address"},
                    },
                    "required": ["username", "email"],
                },
            }),
        )
        .await?;
    Ok(CallToolResult::text(format!(
        "User response: action={}, content={}",
        reply["action"].as_str().unwrap_or("unknown"),
        reply.get("content").cloned().unwrap_or(json!({}))
    )))
}
