//! What an upstream serves besides calls: its tools, resources, resource templates and
//! prompts, listed (every page, filtered), shown under its prefix, and the requests that
//! name them (`resources/read`, `prompts/get`, `completion/complete`) routed back to it
//! under its own names.
//!
//! Resource URIs are not names: clients read the URIs that tools and prompts hand them
//! (resource links, embedded resources), so an upstream's URIs are kept as they are and
//! a read finds its upstream by URI. A URI (or template) two sources serve is kept from
//! the first (the worker's own tool set, then the upstreams in configuration order) and
//! the other is left out with a warning.

use super::connection::Connection;
use super::{Upstream, Upstreams, lock};
use crate::context::ToolContext;
use crate::tool::ToolError;
use mcp_bus::Bus;
use mcp_protocol::{ErrorObject, Prompt, Resource, ResourceTemplate, Tool};
use rmcp::model::{
    ClientRequest, GetPromptRequest, GetPromptRequestParams, ListPromptsRequest,
    ListResourceTemplatesRequest, ListResourcesRequest, ListToolsRequest, PaginatedRequestParams,
    ReadResourceRequest, ReadResourceRequestParams, ServerResult, SubscribeRequestParams,
};
use rmcp::service::{PeerRequestOptions, ServiceError};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};
use std::collections::HashSet;
use std::sync::{Arc, Weak};
use tokio::sync::mpsc;

/// More items than this of one kind are not listed (a runaway upstream's pages).
const MAX_ITEMS: usize = 10_000;

/// What one upstream serves, under its own names, as last listed.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Listing {
    pub(super) tools: Vec<Tool>,
    pub(super) resources: Vec<Resource>,
    pub(super) templates: Vec<ResourceTemplate>,
    pub(super) prompts: Vec<Prompt>,
    /// It declared `resources`: reads of URIs no list names may still be its.
    pub(super) has_resources: bool,
    /// It declared `resources.subscribe`.
    pub(super) subscribe: bool,
    /// It declared `completions`.
    pub(super) completions: bool,
}

/// The resources the worker's own upstream session is subscribed to.
#[derive(Default)]
pub(super) struct Subscribed {
    session: Weak<Connection>,
    uris: HashSet<String>,
    /// A subscription failed in this session: not tried again until the next session
    /// (one warning, not one per health check).
    refused: bool,
}

#[derive(Clone, Copy)]
enum Kind {
    Tools,
    Resources,
    Templates,
    Prompts,
}

impl Kind {
    fn method(self) -> &'static str {
        match self {
            Self::Tools => "tools/list",
            Self::Resources => "resources/list",
            Self::Templates => "resources/templates/list",
            Self::Prompts => "prompts/list",
        }
    }

    fn field(self) -> &'static str {
        match self {
            Self::Tools => "tools",
            Self::Resources => "resources",
            Self::Templates => "resourceTemplates",
            Self::Prompts => "prompts",
        }
    }

    fn request(self, cursor: Option<String>) -> ClientRequest {
        let params = cursor.map(|c| PaginatedRequestParams::default().with_cursor(Some(c)));
        match self {
            Self::Tools => ClientRequest::ListToolsRequest(ListToolsRequest {
                method: Default::default(),
                params,
                extensions: Default::default(),
            }),
            Self::Resources => ClientRequest::ListResourcesRequest(ListResourcesRequest {
                method: Default::default(),
                params,
                extensions: Default::default(),
            }),
            Self::Templates => {
                ClientRequest::ListResourceTemplatesRequest(ListResourceTemplatesRequest {
                    method: Default::default(),
                    params,
                    extensions: Default::default(),
                })
            }
            Self::Prompts => ClientRequest::ListPromptsRequest(ListPromptsRequest {
                method: Default::default(),
                params,
                extensions: Default::default(),
            }),
        }
    }
}

fn prefixed<T: Clone>(items: &[T], prefix: &str, name: impl Fn(&mut T) -> &mut String) -> Vec<T> {
    items
        .iter()
        .map(|item| {
            let mut item = item.clone();
            let n = name(&mut item);
            *n = format!("{prefix}{n}");
            item
        })
        .collect()
}

impl Upstreams {
    /// Adds the resources, templates and prompts of the upstreams that are up (prompts
    /// under their prefixes, URIs as they are) to the worker's own. An item whose URI,
    /// template or name is already there is left out, with a warning the first time.
    pub(crate) fn extend_catalog(
        &self,
        resources: &mut Vec<Resource>,
        templates: &mut Vec<ResourceTemplate>,
        prompts: &mut Vec<Prompt>,
    ) {
        let mut uris: HashSet<String> = resources.iter().map(|r| r.uri.clone()).collect();
        let mut patterns: HashSet<String> =
            templates.iter().map(|t| t.uri_template.clone()).collect();
        let mut names: HashSet<String> = prompts.iter().map(|p| p.name.clone()).collect();
        for u in self.all.iter().filter(|u| u.is_up()) {
            let prefix = u.config.prefix.as_str();
            let (r, t, p) = {
                let listing = lock(&u.listing);
                (
                    prefixed(&listing.resources, prefix, |r| &mut r.name),
                    prefixed(&listing.templates, prefix, |t| &mut t.name),
                    prefixed(&listing.prompts, prefix, |p| &mut p.name),
                )
            };
            for r in r {
                if uris.insert(r.uri.clone()) {
                    resources.push(r);
                } else {
                    self.duplicate(u, "resource", &r.uri);
                }
            }
            for t in t {
                if patterns.insert(t.uri_template.clone()) {
                    templates.push(t);
                } else {
                    self.duplicate(u, "resource template", &t.uri_template);
                }
            }
            for p in p {
                if names.insert(p.name.clone()) {
                    prompts.push(p);
                } else {
                    self.duplicate(u, "prompt", &p.name);
                }
            }
        }
    }

    fn duplicate(&self, upstream: &Upstream, kind: &str, key: &str) {
        let first = lock(&self.warned).insert((upstream.config.name.clone(), key.to_owned()));
        if first {
            tracing::warn!(upstream = %upstream.config.name, "{kind} {key} is served by an earlier source (the worker's own tools or an upstream listed before); this upstream's is left out");
        }
    }

    /// The upstream that serves the resource `uri`: the first (in configuration order)
    /// that lists it, else the first with a template that matches it, else the only
    /// upstream that serves resources at all (a URI a tool handed out need not be listed).
    pub(crate) fn find_resource(&self, uri: &str) -> Option<Arc<Upstream>> {
        let up: Vec<&Arc<Upstream>> = self.all.iter().filter(|u| u.is_up()).collect();
        let lists = |u: &Upstream| lock(&u.listing).resources.iter().any(|r| r.uri == uri);
        let matches = |u: &Upstream| {
            lock(&u.listing)
                .templates
                .iter()
                .any(|t| mcp_protocol::catalog::match_template(&t.uri_template, uri).is_some())
        };
        if let Some(u) = up
            .iter()
            .find(|u| lists(u))
            .or_else(|| up.iter().find(|u| matches(u)))
        {
            return Some((*u).clone());
        }
        match up
            .iter()
            .filter(|u| lock(&u.listing).has_resources)
            .collect::<Vec<_>>()
            .as_slice()
        {
            [only] => Some((**only).clone()),
            _ => None,
        }
    }

    /// The upstream serving the cluster prompt `name`, and the prompt's upstream name.
    pub(crate) fn find_prompt(&self, name: &str) -> Option<(Arc<Upstream>, String)> {
        self.all.iter().find_map(|u| {
            let original = name.strip_prefix(u.config.prefix.as_str())?;
            let known = lock(&u.listing).prompts.iter().any(|p| p.name == original);
            known.then(|| (u.clone(), original.to_owned()))
        })
    }

    /// The upstream a `completion/complete` reference (`ref/prompt` by cluster name,
    /// `ref/resource` by URI or URI template) belongs to, and the reference as that
    /// upstream names it.
    pub(crate) fn find_reference(&self, reference: &Value) -> Option<(Arc<Upstream>, Value)> {
        match reference["type"].as_str()? {
            "ref/prompt" => {
                let (upstream, original) = self.find_prompt(reference["name"].as_str()?)?;
                let mut renamed = reference.clone();
                renamed["name"] = Value::String(original);
                Some((upstream, renamed))
            }
            "ref/resource" => {
                let uri = reference["uri"].as_str()?;
                self.all
                    .iter()
                    .find(|u| {
                        let listing = lock(&u.listing);
                        listing.templates.iter().any(|t| t.uri_template == uri)
                            || listing.resources.iter().any(|r| r.uri == uri)
                    })
                    .map(|u| (u.clone(), reference.clone()))
            }
            _ => None,
        }
    }
}

impl Upstream {
    pub(super) fn is_up(&self) -> bool {
        self.up.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Lists everything the upstream serves that its capabilities declare, every page,
    /// filtered by the include/exclude globs (over its own names). A kind the upstream
    /// declares but refuses to list (a JSON-RPC error) is left empty with a warning; a
    /// transport failure fails the listing (the upstream is down).
    pub(super) async fn list(&self, conn: &Connection) -> Result<Listing, String> {
        let capabilities = conn
            .peer
            .peer_info()
            .and_then(|info| serde_json::to_value(&info.capabilities).ok())
            .unwrap_or(Value::Null);
        let declares = |name: &str| capabilities.get(name).is_some_and(|c| !c.is_null());
        let mut listing = Listing {
            tools: self.pages(conn, Kind::Tools).await?,
            has_resources: declares("resources"),
            subscribe: capabilities["resources"]["subscribe"] == true,
            completions: declares("completions"),
            ..Listing::default()
        };
        if listing.has_resources {
            listing.resources = self.optional_pages(conn, Kind::Resources).await?;
            listing.templates = self.optional_pages(conn, Kind::Templates).await?;
        }
        if declares("prompts") {
            listing.prompts = self.optional_pages(conn, Kind::Prompts).await?;
        }
        let admits = |name: &str| self.config.admits(name);
        listing.tools.retain(|t| admits(&t.name));
        listing.resources.retain(|r| admits(&r.name));
        listing.templates.retain(|t| admits(&t.name));
        listing.prompts.retain(|p| admits(&p.name));
        listing.tools.sort_by(|a, b| a.name.cmp(&b.name));
        listing.resources.sort_by(|a, b| a.uri.cmp(&b.uri));
        listing
            .templates
            .sort_by(|a, b| a.uri_template.cmp(&b.uri_template));
        listing.prompts.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(listing)
    }

    async fn optional_pages<T: DeserializeOwned>(
        &self,
        conn: &Connection,
        kind: Kind,
    ) -> Result<Vec<T>, String> {
        match self.pages_or_error(conn, kind).await {
            Ok(items) => Ok(items),
            Err(ServiceError::McpError(e)) => {
                tracing::warn!(upstream = %self.config.name, error = %e.message, "the upstream declares {} but did not list them; none are served", kind.field());
                Ok(Vec::new())
            }
            Err(e) => Err(format!("{}: {e}", kind.method())),
        }
    }

    async fn pages<T: DeserializeOwned>(
        &self,
        conn: &Connection,
        kind: Kind,
    ) -> Result<Vec<T>, String> {
        self.pages_or_error(conn, kind)
            .await
            .map_err(|e| format!("{}: {e}", kind.method()))
    }

    async fn pages_or_error<T: DeserializeOwned>(
        &self,
        conn: &Connection,
        kind: Kind,
    ) -> Result<Vec<T>, ServiceError> {
        let mut items = Vec::new();
        let mut cursor = None;
        tracing::trace!(upstream = %self.config.name, method = kind.method(), "listing");
        loop {
            let options = PeerRequestOptions::with_timeout(self.config.connect_timeout);
            let result = conn
                .peer
                .send_request_with_option(kind.request(cursor), options)
                .await?
                .await_response()
                .await?;
            // The SDK's result type is an untagged union: its JSON form is the page.
            let page = serde_json::to_value(&result).unwrap_or(Value::Null);
            for item in page[kind.field()].as_array().into_iter().flatten() {
                match serde_json::from_value::<T>(item.clone()) {
                    Ok(item) => items.push(item),
                    Err(e) => {
                        tracing::warn!(upstream = %self.config.name, error = %e, item = %item, "an upstream {} entry was skipped", kind.field())
                    }
                }
            }
            match page["nextCursor"].as_str() {
                Some(next) if items.len() < MAX_ITEMS => cursor = Some(next.to_owned()),
                _ => break,
            }
        }
        Ok(items)
    }

    /// `resources/read` upstream, in the session `ctx` uses; the result as the upstream
    /// gave it.
    pub(crate) async fn read_resource(
        &self,
        ctx: &ToolContext,
        uri: &str,
    ) -> Result<Value, ToolError> {
        let request = ClientRequest::ReadResourceRequest(ReadResourceRequest::new(
            ReadResourceRequestParams::new(uri),
        ));
        let result = self.exchange(ctx, request, "resources/read").await?;
        self.result_with(result, "contents", "resources/read")
    }

    /// `prompts/get` upstream under the prompt's upstream name.
    pub(crate) async fn get_prompt(
        &self,
        ctx: &ToolContext,
        name: &str,
        arguments: Value,
    ) -> Result<Value, ToolError> {
        let mut params = GetPromptRequestParams::new(name);
        if let Value::Object(map) = arguments {
            params = params.with_arguments(map);
        }
        let request = ClientRequest::GetPromptRequest(GetPromptRequest::new(params));
        let result = self.exchange(ctx, request, "prompts/get").await?;
        self.result_with(result, "messages", "prompts/get")
    }

    /// `completion/complete` upstream with the reference as the upstream names it; an
    /// upstream that does not declare completions completes nothing.
    pub(crate) async fn complete(
        &self,
        ctx: &ToolContext,
        reference: Value,
        params: &Map<String, Value>,
    ) -> Result<Value, ToolError> {
        if !lock(&self.listing).completions {
            return Ok(json!({"completion": {"values": [], "total": 0, "hasMore": false}}));
        }
        let mut params = params.clone();
        params.insert("ref".into(), reference);
        let request: ClientRequest =
            serde_json::from_value(json!({"method": "completion/complete", "params": params}))
                .map_err(|e| {
                    ToolError::Protocol(ErrorObject::invalid_params(format!(
                        "completion/complete params: {e}"
                    )))
                })?;
        let result = self.exchange(ctx, request, "completion/complete").await?;
        self.result_with(result, "completion", "completion/complete")
    }

    /// The JSON form of an upstream result that must carry `field`.
    fn result_with(
        &self,
        result: ServerResult,
        field: &str,
        method: &str,
    ) -> Result<Value, ToolError> {
        let value = serde_json::to_value(&result).map_err(|e| ToolError::failed(e.to_string()))?;
        if value.get(field).is_none() {
            return Err(ToolError::Protocol(ErrorObject::internal(format!(
                "upstream {} answered {method} without {field}",
                self.config.name
            ))));
        }
        Ok(value)
    }

    /// The upstream's own messages to the worker's session: list changes re-list at once;
    /// resource updates go to every downstream session subscribed to the URI, through the
    /// bus (the gateway keeps the subscriptions). The rest (log messages of shared calls
    /// that came outside a call) have no downstream session to go to.
    pub(super) fn route_own_messages(&self, conn: &Connection) {
        let (tx, mut rx) = mpsc::unbounded_channel::<Value>();
        conn.router.set_session_sink(tx);
        let relist = self.relist.clone();
        let bus: Option<Arc<dyn Bus>> = self.bus.get().cloned();
        let name = self.config.name.clone();
        tokio::spawn(async move {
            while let Some(message) = rx.recv().await {
                match message["method"].as_str() {
                    Some("notifications/resources/list_changed")
                    | Some("notifications/prompts/list_changed") => relist.notify_one(),
                    Some("notifications/resources/updated") => {
                        let (Some(bus), Some(uri)) = (&bus, message["params"]["uri"].as_str())
                        else {
                            continue;
                        };
                        if let Err(e) = bus.resource_updated(uri).await {
                            tracing::debug!(upstream = %name, error = %e, "a resource update was lost");
                        }
                    }
                    _ => {}
                }
            }
        });
    }

    /// Subscribes the worker's own session to each listed resource it is not subscribed
    /// to yet, when the upstream takes subscriptions: its updates then reach the
    /// downstream sessions subscribed to the URI (see [`Upstream::route_own_messages`]).
    pub(super) async fn subscribe_upstream(&self, conn: &Arc<Connection>) {
        let uris: Vec<String> = {
            let listing = lock(&self.listing);
            if !listing.subscribe {
                return;
            }
            let mut subscribed = lock(&self.subscribed);
            if !std::ptr::eq(subscribed.session.as_ptr(), Arc::as_ptr(conn)) {
                *subscribed = Subscribed {
                    session: Arc::downgrade(conn),
                    uris: HashSet::new(),
                    refused: false,
                };
            }
            if subscribed.refused {
                return;
            }
            listing
                .resources
                .iter()
                .filter(|r| !subscribed.uris.contains(&r.uri))
                .map(|r| r.uri.clone())
                .collect()
        };
        for uri in uris {
            // `resources/subscribe` is how the session revisions subscribe (the SDK marks it
            // legacy for 2026-07-28 upstreams, which are not subscribed here).
            #[allow(deprecated)]
            let request = ClientRequest::SubscribeRequest(rmcp::model::SubscribeRequest::new(
                SubscribeRequestParams::new(uri.clone()),
            ));
            let options = PeerRequestOptions::with_timeout(self.config.connect_timeout);
            let done = match conn.peer.send_request_with_option(request, options).await {
                Ok(handle) => handle.await_response().await.map(|_| ()),
                Err(e) => Err(e),
            };
            match done {
                Ok(()) => {
                    let mut subscribed = lock(&self.subscribed);
                    if std::ptr::eq(subscribed.session.as_ptr(), Arc::as_ptr(conn)) {
                        subscribed.uris.insert(uri);
                    }
                }
                Err(e) => {
                    tracing::warn!(upstream = %self.config.name, uri = %uri, error = %e, "could not subscribe to an upstream resource; its updates are not relayed, and this upstream session is not asked again");
                    let mut subscribed = lock(&self.subscribed);
                    if std::ptr::eq(subscribed.session.as_ptr(), Arc::as_ptr(conn)) {
                        subscribed.refused = true;
                    }
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::config::parse_flag;
    use std::sync::atomic::Ordering;

    fn resource(uri: &str, name: &str) -> Resource {
        Resource {
            uri: uri.into(),
            name: name.into(),
            title: None,
            description: None,
            mime_type: None,
            extra: Map::new(),
        }
    }

    fn template(uri_template: &str, name: &str) -> ResourceTemplate {
        ResourceTemplate {
            uri_template: uri_template.into(),
            name: name.into(),
            description: None,
            mime_type: None,
            extra: Map::new(),
        }
    }

    fn prompt(name: &str) -> Prompt {
        Prompt {
            name: name.into(),
            title: None,
            description: None,
            arguments: Vec::new(),
            extra: Map::new(),
        }
    }

    /// Two upstreams, `a` and `b`, up, serving what `listings` says.
    fn upstreams(listings: [Listing; 2]) -> Upstreams {
        let all = Upstreams::new(vec![
            parse_flag("a=http://127.0.0.1:1/mcp").unwrap(),
            parse_flag("b=http://127.0.0.1:2/mcp").unwrap(),
        ]);
        for (u, listing) in all.all.iter().zip(listings) {
            *lock(&u.listing) = listing;
            u.up.store(true, Ordering::Relaxed);
        }
        all
    }

    fn listing(resources: &[&str], templates: &[&str], prompts: &[&str]) -> Listing {
        Listing {
            resources: resources.iter().map(|u| resource(u, "r")).collect(),
            templates: templates.iter().map(|t| template(t, "t")).collect(),
            prompts: prompts.iter().map(|p| prompt(p)).collect(),
            has_resources: !resources.is_empty() || !templates.is_empty(),
            ..Listing::default()
        }
    }

    #[test]
    fn the_first_source_of_a_uri_keeps_it_and_names_get_prefixes() {
        let all = upstreams([
            listing(&["test://x", "test://a"], &["t://{id}"], &["p"]),
            listing(
                &["test://x", "own://r", "test://b"],
                &["t://{id}", "u://{id}"],
                &["p"],
            ),
        ]);
        let mut resources = vec![resource("own://r", "own")];
        let mut templates = Vec::new();
        let mut prompts = vec![prompt("mine")];
        all.extend_catalog(&mut resources, &mut templates, &mut prompts);
        let uris: Vec<(&str, &str)> = resources
            .iter()
            .map(|r| (r.uri.as_str(), r.name.as_str()))
            .collect();
        assert_eq!(
            uris,
            [
                ("own://r", "own"),
                ("test://x", "a_r"),
                ("test://a", "a_r"),
                ("test://b", "b_r"),
            ]
        );
        let templates: Vec<(&str, &str)> = templates
            .iter()
            .map(|t| (t.uri_template.as_str(), t.name.as_str()))
            .collect();
        assert_eq!(templates, [("t://{id}", "a_t"), ("u://{id}", "b_t")]);
        let prompts: Vec<&str> = prompts.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(prompts, ["mine", "a_p", "b_p"]);
        assert_eq!(lock(&all.warned).len(), 3, "test://x, own://r, t://{{id}}");

        // A down upstream drops out of the lists.
        all.all[0].up.store(false, Ordering::Relaxed);
        let (mut resources, mut templates, mut prompts) = (Vec::new(), Vec::new(), Vec::new());
        all.extend_catalog(&mut resources, &mut templates, &mut prompts);
        assert!(resources.iter().all(|r| r.name == "b_r"), "{resources:?}");
        assert_eq!(prompts.len(), 1);
    }

    #[test]
    fn reads_and_references_find_their_upstream() {
        let all = upstreams([
            listing(&["test://x"], &["t://{id}/data"], &["p"]),
            listing(&["test://x", "test://y"], &["u://{id}"], &["q"]),
        ]);
        let name = |u: Option<Arc<Upstream>>| u.map(|u| u.config.name.clone());
        assert_eq!(name(all.find_resource("test://x")).as_deref(), Some("a"));
        assert_eq!(name(all.find_resource("test://y")).as_deref(), Some("b"));
        assert_eq!(name(all.find_resource("t://7/data")).as_deref(), Some("a"));
        assert_eq!(name(all.find_resource("u://7")).as_deref(), Some("b"));
        assert_eq!(
            name(all.find_resource("nobody://z")),
            None,
            "two upstreams serve resources: an unknown URI is nobody's"
        );
        lock(&all.all[1].listing).has_resources = false;
        assert_eq!(
            name(all.find_resource("nobody://z")).as_deref(),
            Some("a"),
            "the only upstream with resources takes URIs no list names"
        );

        let (u, original) = all.find_prompt("b_q").unwrap();
        assert_eq!((u.config.name.as_str(), original.as_str()), ("b", "q"));
        assert!(all.find_prompt("a_q").is_none());
        assert!(all.find_prompt("q").is_none());

        let (u, renamed) = all
            .find_reference(&json!({"type": "ref/prompt", "name": "a_p"}))
            .unwrap();
        assert_eq!(u.config.name, "a");
        assert_eq!(renamed, json!({"type": "ref/prompt", "name": "p"}));
        let (u, same) = all
            .find_reference(&json!({"type": "ref/resource", "uri": "u://{id}"}))
            .unwrap();
        assert_eq!(u.config.name, "b");
        assert_eq!(same["uri"], "u://{id}");
        assert!(
            all.find_reference(&json!({"type": "ref/resource", "uri": "v://{id}"}))
                .is_none()
        );
        assert!(all.find_reference(&json!({"type": "ref/other"})).is_none());
    }
}
