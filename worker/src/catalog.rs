//! Resources, resource templates, prompts and completions: what a worker serves besides
//! tools, registered on the same [`ToolSet`](crate::ToolSet) with the same ergonomics.

use crate::context::ToolContext;
use crate::tool::ToolError;
use futures::future::BoxFuture;
use mcp_protocol::{Prompt, Resource, ResourceTemplate};
use serde_json::{Value, json};
use std::collections::HashMap;

/// The contents of one resource, as `resources/read` returns them.
#[derive(Debug, Clone, PartialEq)]
pub enum ResourceContents {
    /// Text.
    Text {
        /// The resource's URI.
        uri: String,
        /// Its MIME type.
        mime_type: String,
        /// The text.
        text: String,
    },
    /// Binary data, base64-encoded.
    Blob {
        /// The resource's URI.
        uri: String,
        /// Its MIME type.
        mime_type: String,
        /// The base64 data.
        blob: String,
    },
}

impl ResourceContents {
    /// Text contents.
    pub fn text(
        uri: impl Into<String>,
        mime_type: impl Into<String>,
        text: impl Into<String>,
    ) -> Self {
        Self::Text {
            uri: uri.into(),
            mime_type: mime_type.into(),
            text: text.into(),
        }
    }

    /// Binary contents (already base64-encoded).
    pub fn blob(
        uri: impl Into<String>,
        mime_type: impl Into<String>,
        base64: impl Into<String>,
    ) -> Self {
        Self::Blob {
            uri: uri.into(),
            mime_type: mime_type.into(),
            blob: base64.into(),
        }
    }

    /// The wire form.
    pub fn to_value(&self) -> Value {
        match self {
            Self::Text {
                uri,
                mime_type,
                text,
            } => json!({"uri": uri, "mimeType": mime_type, "text": text}),
            Self::Blob {
                uri,
                mime_type,
                blob,
            } => json!({"uri": uri, "mimeType": mime_type, "blob": blob}),
        }
    }
}

/// What a `completion/complete` asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct CompletionRequest {
    /// `ref/prompt` (`name`) or `ref/resource` (`uri`), as sent.
    pub reference: Value,
    /// The argument being completed.
    pub argument: String,
    /// What the user typed so far.
    pub value: String,
    /// Values of other arguments already chosen (`context.arguments`).
    pub context: HashMap<String, String>,
}

pub(crate) type ReadHandler = dyn Fn(
        ToolContext,
        String,
        HashMap<String, String>,
    ) -> BoxFuture<'static, Result<Vec<ResourceContents>, ToolError>>
    + Send
    + Sync;

pub(crate) type PromptHandler =
    dyn Fn(ToolContext, Value) -> BoxFuture<'static, Result<Vec<Value>, ToolError>> + Send + Sync;

pub(crate) type CompletionHandler = dyn Fn(ToolContext, CompletionRequest) -> BoxFuture<'static, Result<Vec<String>, ToolError>>
    + Send
    + Sync;

/// A registered resource.
pub(crate) struct ResourceEntry {
    pub(crate) descriptor: Resource,
    pub(crate) read: Box<ReadHandler>,
}

/// A registered resource template.
pub(crate) struct TemplateEntry {
    pub(crate) descriptor: ResourceTemplate,
    pub(crate) read: Box<ReadHandler>,
}

/// A registered prompt.
pub(crate) struct PromptEntry {
    pub(crate) descriptor: Prompt,
    pub(crate) validator: Option<jsonschema::Validator>,
    pub(crate) get: Box<PromptHandler>,
}

/// A user message with one text block, the commonest prompt message.
pub fn user_text(text: impl Into<String>) -> Value {
    json!({"role": "user", "content": {"type": "text", "text": text.into()}})
}
