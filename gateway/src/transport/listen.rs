//! `subscriptions/listen` (2026-07-28): a long-lived POST response stream carrying the
//! change notifications a client opted in to.
//!
//! A listen stream is served like a session's standalone stream: the gateway makes a
//! session for it alone, subscribes that session to the requested resources on the bus,
//! and pumps its events and the cluster's broadcasts (where list changes travel) through
//! a filter that keeps only the requested types and tags each with the subscription id.
//! So an update caused through any gateway, or by any worker, reaches every matching
//! listener on every gateway.

use crate::http::auth::Principal;
use crate::http::error::HttpError;
use crate::state::AppState;
use crate::transport::post::{check_session_limit, new_record};
use crate::transport::pump::{Frame, PumpEnd, StandalonePump};
use crate::transport::respond;
use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use mcp_protocol::stateless::{self, RequestMeta, SUBSCRIPTION_ID};
use mcp_protocol::{ErrorObject, ProtocolVersion, RequestId, jsonrpc};
use serde_json::{Map, Value, json};
use std::collections::HashSet;
use tokio::sync::mpsc;
use tracing::Instrument;

/// What a listen stream carries, and the id that tags it.
#[derive(Debug, Clone, PartialEq)]
pub struct ListenFilter {
    /// The JSON-RPC id of the `subscriptions/listen` request.
    pub subscription_id: Value,
    /// `notifications/tools/list_changed`.
    pub tools_list_changed: bool,
    /// `notifications/prompts/list_changed`.
    pub prompts_list_changed: bool,
    /// `notifications/resources/list_changed`.
    pub resources_list_changed: bool,
    /// `notifications/resources/updated` for these URIs.
    pub resource_subscriptions: HashSet<String>,
}

impl ListenFilter {
    /// Reads `params.notifications`; a malformed filter is `-32602`.
    pub fn parse(id: &RequestId, params: Option<&Value>) -> Result<Self, ErrorObject> {
        let filter = params
            .and_then(|p| p.get("notifications"))
            .and_then(Value::as_object)
            .ok_or_else(|| {
                ErrorObject::invalid_params("params.notifications, an object, is required")
            })?;
        let flag = |name: &str| -> Result<bool, ErrorObject> {
            match filter.get(name) {
                None | Some(Value::Null) => Ok(false),
                Some(Value::Bool(b)) => Ok(*b),
                Some(_) => Err(ErrorObject::invalid_params(format!(
                    "params.notifications.{name} must be a boolean"
                ))),
            }
        };
        let resource_subscriptions = match filter.get("resourceSubscriptions") {
            None | Some(Value::Null) => HashSet::new(),
            Some(Value::Array(uris)) => uris
                .iter()
                .map(|u| u.as_str().map(str::to_owned))
                .collect::<Option<_>>()
                .ok_or_else(|| {
                    ErrorObject::invalid_params(
                        "params.notifications.resourceSubscriptions must be an array of URIs",
                    )
                })?,
            Some(_) => {
                return Err(ErrorObject::invalid_params(
                    "params.notifications.resourceSubscriptions must be an array of URIs",
                ));
            }
        };
        Ok(Self {
            subscription_id: id.to_value(),
            tools_list_changed: flag("toolsListChanged")?,
            prompts_list_changed: flag("promptsListChanged")?,
            resources_list_changed: flag("resourcesListChanged")?,
            resource_subscriptions,
        })
    }

    /// The filter as the acknowledgement reports it: what was asked for and is honoured.
    pub fn agreed(&self) -> Value {
        let mut agreed = Map::new();
        for (name, on) in [
            ("toolsListChanged", self.tools_list_changed),
            ("promptsListChanged", self.prompts_list_changed),
            ("resourcesListChanged", self.resources_list_changed),
        ] {
            if on {
                agreed.insert(name.into(), Value::Bool(true));
            }
        }
        if !self.resource_subscriptions.is_empty() {
            let mut uris: Vec<_> = self.resource_subscriptions.iter().cloned().collect();
            uris.sort();
            agreed.insert("resourceSubscriptions".into(), json!(uris));
        }
        Value::Object(agreed)
    }

    /// The message as this stream sends it (tagged), or `None` if the client did not ask
    /// for its type.
    pub fn admit(&self, message: &Value) -> Option<Value> {
        let wanted = match message.get("method").and_then(Value::as_str)? {
            "notifications/tools/list_changed" => self.tools_list_changed,
            "notifications/prompts/list_changed" => self.prompts_list_changed,
            "notifications/resources/list_changed" => self.resources_list_changed,
            "notifications/resources/updated" => message["params"]["uri"]
                .as_str()
                .is_some_and(|uri| self.resource_subscriptions.contains(uri)),
            _ => false,
        };
        wanted.then(|| self.tag(message.clone()))
    }

    /// Puts the subscription id into a notification's `params._meta`.
    pub fn tag(&self, mut message: Value) -> Value {
        if let Value::Object(fields) = &mut message {
            let params = fields
                .entry("params")
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(params) = params {
                let meta = params
                    .entry("_meta")
                    .or_insert_with(|| Value::Object(Map::new()));
                if let Value::Object(meta) = meta {
                    meta.insert(SUBSCRIPTION_ID.into(), self.subscription_id.clone());
                }
            }
        }
        message
    }

    /// The acknowledgement, the stream's first message.
    pub fn acknowledgement(&self) -> Value {
        self.tag(jsonrpc::notification(
            "notifications/subscriptions/acknowledged",
            json!({"notifications": self.agreed()}),
        ))
    }

    /// The result that ends the subscription gracefully (shutdown, or a client too slow to
    /// keep up, which may listen again).
    pub fn completion(&self, id: &RequestId) -> Value {
        let mut result = json!({"_meta": {SUBSCRIPTION_ID: self.subscription_id.clone()}});
        stateless::finish_result("subscriptions/listen", &mut result);
        jsonrpc::response_ok(id, result)
    }
}

/// Opens a listen stream.
pub async fn open(
    app: AppState,
    id: RequestId,
    params: Option<Value>,
    meta: RequestMeta,
    principal: &Principal,
    caller: crate::policy::caller::Caller,
) -> Result<Response, HttpError> {
    let filter = match ListenFilter::parse(&id, params.as_ref()) {
        Ok(filter) => filter,
        Err(error) => {
            return Ok((
                StatusCode::BAD_REQUEST,
                Json(jsonrpc::response_err(Some(&id), error)),
            )
                .into_response());
        }
    };
    if app.draining.is_cancelled() {
        return Err(HttpError::Unavailable(
            "the gateway is shutting down; listen on another node".into(),
        ));
    }
    // A listen stream holds state on the bus for as long as it is open: it counts against
    // the principal's sessions.
    check_session_limit(&app, principal).await?;
    let mut record = new_record(
        &app,
        ProtocolVersion::STATELESS,
        meta.client_capabilities,
        meta.client_info.unwrap_or_else(|| json!({})),
        true,
    )
    .await?;
    record.principal = principal.0.clone();
    let session = record.id.clone();
    app.bus.create_session(record.clone()).await?;
    let opened = async {
        // Subscribe before acknowledging: an update sent after the client saw the
        // acknowledgement must reach it.
        let subscription = app.bus.subscribe(&session).await?;
        let broadcasts = app.bus.subscribe_broadcasts().await?;
        // A URI the caller may not read is acknowledged like any other but never
        // subscribed (see `Policies::may_read`).
        for uri in &filter.resource_subscriptions {
            if !app.policies.may_read(&caller, uri) {
                continue;
            }
            app.bus.subscribe_resource(&session, uri).await?;
        }
        Ok::<_, mcp_bus::BusError>((subscription, broadcasts))
    };
    let (subscription, broadcasts) = match opened.await {
        Ok(subscribed) => subscribed,
        Err(e) => {
            let _ = app.bus.end_session(&session).await;
            return Err(e.into());
        }
    };
    let (tx, rx) = mpsc::channel(32);
    let _ = tx.try_send(Frame::unlogged_message(filter.acknowledgement()));
    app.count_request("subscriptions/listen", true, "ok");
    let pump = StandalonePump {
        app: app.clone(),
        session: session.clone(),
        subscription,
        broadcasts,
        cursor: record.standalone_cursor,
        claim: rand::random(),
        log_level: None,
        priming: false,
        listen: Some(filter.clone()),
        caller,
    };
    let bus = app.bus.clone();
    tokio::spawn(
        async move {
            let end = pump.run(tx.clone()).await;
            if end == PumpEnd::Interrupted {
                let _ = tx
                    .send(Frame::unlogged_response(filter.completion(&id)))
                    .await;
            }
            let _ = bus.end_session(&session).await;
        }
        .instrument(tracing::Span::current()),
    );
    Ok(respond::sse_without_ids(&app, rx))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admits_only_what_was_asked_and_tags_it() {
        let id = RequestId::Number(7);
        let filter = ListenFilter::parse(
            &id,
            Some(&json!({"notifications": {
                "toolsListChanged": true,
                "resourceSubscriptions": ["notify://broadcast"],
            }})),
        )
        .unwrap();
        assert_eq!(
            filter.agreed(),
            json!({"toolsListChanged": true, "resourceSubscriptions": ["notify://broadcast"]})
        );
        let ack = filter.acknowledgement();
        assert_eq!(ack["method"], "notifications/subscriptions/acknowledged");
        assert_eq!(ack["params"]["_meta"][SUBSCRIPTION_ID], 7);

        let tools = jsonrpc::notification("notifications/tools/list_changed", json!({}));
        assert_eq!(
            filter.admit(&tools).unwrap()["params"]["_meta"][SUBSCRIPTION_ID],
            7
        );
        let prompts = jsonrpc::notification("notifications/prompts/list_changed", json!({}));
        assert!(filter.admit(&prompts).is_none());
        let updated =
            |uri| jsonrpc::notification("notifications/resources/updated", json!({"uri": uri}));
        assert!(filter.admit(&updated("notify://broadcast")).is_some());
        assert!(filter.admit(&updated("notify://other")).is_none());
        let log = jsonrpc::notification("notifications/message", json!({"level": "info"}));
        assert!(filter.admit(&log).is_none());

        let done = filter.completion(&id);
        assert_eq!(done["result"]["resultType"], "complete");
        assert_eq!(done["result"]["_meta"][SUBSCRIPTION_ID], 7);
    }

    #[test]
    fn refuses_malformed_filters() {
        let id = RequestId::Number(1);
        for bad in [
            json!({}),
            json!({"notifications": true}),
            json!({"notifications": {"toolsListChanged": "yes"}}),
            json!({"notifications": {"resourceSubscriptions": [1]}}),
        ] {
            assert!(ListenFilter::parse(&id, Some(&bad)).is_err(), "{bad}");
        }
    }
}
