//! An upstream's server-to-client requests (sampling, elicitation, roots, ping), answered
//! by the downstream client through the routing a built-in tool uses: on the call's stream
//! through its [`ToolContext`] (whichever gateway holds it; the reply may reach any
//! gateway), or on the session's standalone stream for a request that belongs to no call.

use super::connection::Relayed;
use crate::context::{SessionHandle, ToolContext};
use crate::tool::ToolError;
use mcp_protocol::ErrorObject;
use serde_json::json;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

/// The requests of one running call, each answered on its own task so progress and log
/// messages keep flowing while the client thinks.
pub(crate) struct CallRequests {
    ctx: ToolContext,
    /// Aborted with the call: their replies drop, the upstream gets an error.
    running: JoinSet<()>,
    /// Keys of 2026-07-28 input requests: in arrival order, so the retry's run (which
    /// asks again in the same order) finds its answers under the same keys.
    next_key: usize,
    ended: mpsc::UnboundedSender<ToolError>,
}

impl CallRequests {
    /// For this call; a request that ends the call (2026-07-28: its answer is missing) is
    /// reported on the returned receiver.
    pub(crate) fn new(ctx: &ToolContext) -> (Self, mpsc::UnboundedReceiver<ToolError>) {
        let (ended, ends) = mpsc::unbounded_channel();
        let requests = Self {
            ctx: ctx.clone(),
            running: JoinSet::new(),
            next_key: 0,
            ended,
        };
        (requests, ends)
    }

    /// Starts answering one request.
    pub(crate) fn start(&mut self, request: Relayed) {
        let key = format!("upstream-{}", self.next_key);
        self.next_key += 1;
        let ctx = self.ctx.clone();
        let ended = self.ended.clone();
        self.running.spawn(async move {
            let Relayed {
                method,
                params,
                mut reply,
            } = request;
            let outcome = if method == "ping" && ctx.protocol_version().is_stateless() {
                // 2026-07-28 has no ping to the client; the worker answers.
                Ok(Ok(json!({})))
            } else {
                tokio::select! {
                    outcome = ctx.relay_request(key, method, params) => outcome,
                    // The upstream cancelled its request, or gave up on it.
                    () = reply.closed() => return,
                }
            };
            let answer = match outcome {
                Ok(answer) => answer,
                Err(ToolError::InputRequired(missing)) => {
                    // The call ends with an InputRequiredResult (the upstream's call is
                    // cancelled); the client's retry runs it again with the answer. The
                    // reply is held until the call's guard has told the upstream, which
                    // then drops this task (failing the request).
                    let _ = ended.send(ToolError::InputRequired(missing));
                    reply.closed().await;
                    return;
                }
                Err(ToolError::Cancelled) => {
                    // The call itself is being cancelled: the same, so the upstream hears
                    // that its call is cancelled before it hears its request failed.
                    reply.closed().await;
                    return;
                }
                Err(e) => Err(refusal(method, e)),
            };
            let _ = reply.send(answer);
        });
    }
}

/// Answers the requests of a per-session upstream session that belong to no call on the
/// downstream session's standalone stream, until the upstream session goes.
pub(crate) fn serve_session_requests(
    session: SessionHandle,
    mut requests: mpsc::UnboundedReceiver<Relayed>,
) {
    tokio::spawn(async move {
        let mut running = JoinSet::new();
        loop {
            tokio::select! {
                request = requests.recv() => {
                    let Some(Relayed { method, params, mut reply }) = request else { break };
                    let session = session.clone();
                    running.spawn(async move {
                        let answer = tokio::select! {
                            answer = session.relay_request(method, params) => answer,
                            () = reply.closed() => return,
                        };
                        let _ = reply.send(answer.unwrap_or_else(|e| Err(refusal(method, e))));
                    });
                }
                Some(_) = running.join_next() => {}
            }
        }
    });
}

/// The error the upstream gets when its request could not be put to the client.
fn refusal(method: &str, error: ToolError) -> ErrorObject {
    match error {
        ToolError::Protocol(e) => e,
        ToolError::Cancelled => ErrorObject::internal(format!(
            "the downstream request was cancelled (or its session ended) before the client answered {method}"
        )),
        other => ErrorObject::internal(format!(
            "{method} could not reach the downstream client: {other}"
        )),
    }
}
