//! Watch streams: JSON lines of `{"type": …, "object": …}`, from a version in the change window
//! or from the current state, with bookmarks, timeouts and an in-stream 410 for a version the
//! window no longer holds.

use crate::At;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};

use crate::api::{Cluster, Filter, Presented, present};
use crate::registry::ResourceDef;
use crate::status::ApiError;
use crate::store::{Event, EventType};
use crate::table::{self, Format};

pub struct Options {
    /// Close the watch after this long (fault injection).
    pub close_after: Option<Duration>,
    /// A streaming list: the current objects, then a bookmark marking their end.
    pub send_initial_events: bool,
    /// Objects, Table rows or PartialObjectMetadata.
    pub format: Format,
    /// How often to send a bookmark; none when unset.
    pub bookmarks: Option<Duration>,
    pub timeout: Option<Duration>,
}

/// Starts a watch; its lines arrive on the returned receiver until the watch ends.
pub fn start(
    cluster: &Arc<Cluster>,
    def: Arc<ResourceDef>,
    namespace: Option<String>,
    from: Option<u64>,
    filter: Filter,
    options: Options,
) -> mpsc::Receiver<Vec<u8>> {
    let (sender, receiver) = mpsc::channel(256);
    let mut closed = cluster.watch_epoch.subscribe();
    let cluster = cluster.clone();
    let subscription = cluster
        .store
        .subscribe(&def.key(), namespace.as_deref(), from);
    tokio::spawn(async move {
        let mut subscription = match subscription {
            Ok(subscription) => subscription,
            Err(expired) => {
                let status = ApiError::gone(format!(
                    "too old resource version: {} ({})",
                    expired.requested, expired.oldest
                ))
                .to_status();
                let _ = sender.send(line("ERROR", &status)).await;
                return;
            }
        };
        let mut last_rv = subscription.rv;
        let mut render = Render {
            def: &def,
            format: options.format,
            first: true,
        };
        for object in std::mem::take(&mut subscription.initial) {
            if filter.matches(&object) && sender.send(render.line("ADDED", &object)).await.is_err()
            {
                return;
            }
        }
        if options.send_initial_events {
            let end = json!({
                "kind": def.kind,
                "apiVersion": def.api_version(),
                "metadata": {
                    "resourceVersion": last_rv.to_string(),
                    "annotations": {"k8s.io/initial-events-end": "true"},
                },
            });
            if sender.send(line("BOOKMARK", &end)).await.is_err() {
                return;
            }
        }
        let in_scope = |event: &Event| {
            event.key.resource == def.key()
                && namespace
                    .as_deref()
                    .is_none_or(|ns| event.key.namespace == ns)
        };
        let api_version = def.api_version();
        for event in std::mem::take(&mut subscription.backlog) {
            last_rv = last_rv.max(event.rv);
            if let Some((kind, object)) = visible(&event, &filter)
                && sender
                    .send(render.event_line(&event, kind, object, &api_version))
                    .await
                    .is_err()
            {
                return;
            }
        }
        // A watch ends at its own timeout or at the injected closing interval, whichever first.
        let injected_close = options
            .close_after
            .is_some_and(|c| options.timeout.is_none_or(|t| c < t));
        let deadline = [options.timeout, options.close_after]
            .into_iter()
            .flatten()
            .min()
            .map(|t| tokio::time::Instant::now() + t);
        let mut bookmarks =
            tokio::time::interval(options.bookmarks.unwrap_or(Duration::from_secs(3600)));
        bookmarks.tick().await;
        loop {
            let timeout = async {
                match deadline {
                    Some(deadline) => tokio::time::sleep_until(deadline).await,
                    None => std::future::pending().await,
                }
            };
            // In this order: a watch closed (`close_watches`, as by a restart of the API
            // server) or past its time sends nothing more, even when changes made after that
            // are already waiting; its client then resumes from the last change it was sent.
            // A random pick could send one more, and the client would resume past the close.
            tokio::select! {
                biased;
                _ = closed.changed() => return,
                _ = sender.closed() => return,
                _ = timeout => {
                    if injected_close {
                        cluster.injected.watches_closed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    return;
                }
                _ = bookmarks.tick(), if options.bookmarks.is_some() => {
                    let bookmark = json!({
                        "kind": def.kind,
                        "apiVersion": def.api_version(),
                        "metadata": {"resourceVersion": last_rv.to_string()},
                    });
                    if sender.send(line("BOOKMARK", &bookmark)).await.is_err() {
                        return;
                    }
                }
                received = subscription.receiver.recv() => match received {
                    // The receiver was subscribed under the store's lock: it holds exactly the
                    // changes after the snapshot and the backlog.
                    Ok(event) => {
                        last_rv = last_rv.max(event.rv);
                        if !in_scope(&event) {
                            continue;
                        }
                        let Some((kind, object)) = visible(&event, &filter) else {
                            continue;
                        };
                        let line = render.event_line(&event, kind, object, &api_version);
                        if sender.send(line).await.is_err() {
                            return;
                        }
                    }
                    // A watcher too slow for the feed ends; the client resumes from its last
                    // version or relists.
                    Err(broadcast::error::RecvError::Lagged(_)) => return,
                    Err(broadcast::error::RecvError::Closed) => return,
                },
            }
        }
    });
    receiver
}

/// How a change looks through a selector: an update that moves an object into the selection
/// is an ADDED, out of it a DELETED, as the API server reports them.
fn visible<'a>(event: &'a Event, filter: &Filter) -> Option<(&'static str, &'a Value)> {
    let now = filter.matches(&event.object);
    let before = event.previous.as_ref().is_some_and(|p| filter.matches(p));
    match event.kind {
        EventType::Added => now.then_some(("ADDED", &*event.object)),
        EventType::Modified => match (before, now) {
            (true, true) => Some(("MODIFIED", &*event.object)),
            (false, true) => Some(("ADDED", &*event.object)),
            (true, false) => Some(("DELETED", &*event.object)),
            (false, false) => None,
        },
        EventType::Deleted => (before || now).then_some(("DELETED", &*event.object)),
    }
}

/// Turns stored objects into the event lines the client asked for.
struct Render<'a> {
    def: &'a ResourceDef,
    format: Format,
    /// Tables carry their column definitions in the first event only.
    first: bool,
}

impl Render<'_> {
    /// The line of `event`, seen as a change of `kind` to `object` by this watch: an object's
    /// bytes are those every other watch of its version sends.
    fn event_line(
        &mut self,
        event: &Event,
        kind: &str,
        object: &Value,
        api_version: &str,
    ) -> Vec<u8> {
        match self.format {
            Format::Object => object_line(
                kind,
                &event.presented(api_version, || presented(self.def, object)),
            ),
            _ => self.line(kind, object),
        }
    }

    fn line(&mut self, kind: &str, stored: &Value) -> Vec<u8> {
        let object = match self.format {
            Format::Object => return presented_line(self.def, kind, stored),
            Format::Metadata => table::partial(&present(self.def, stored)),
            Format::Table(include) => {
                let object = present(self.def, stored);
                let rv = json!({"resourceVersion": object.at(&["metadata", "resourceVersion"])});
                let first = std::mem::replace(&mut self.first, false);
                table::table(self.def, &[object], rv, include, first)
            }
        };
        line(kind, &object)
    }
}

/// An event line for a stored object, serialised from the store without a copy.
fn presented_line(def: &ResourceDef, kind: &str, stored: &Value) -> Vec<u8> {
    object_line(kind, &presented(def, stored))
}

/// A stored object as `def`'s version presents it, serialised.
pub fn presented(def: &ResourceDef, stored: &Value) -> Vec<u8> {
    let api_version = def.api_version();
    let object = Presented {
        def,
        api_version: &api_version,
        object: stored,
    };
    serde_json::to_vec(&object).unwrap_or_else(|_| b"{}".to_vec())
}

/// The event line `{"type": kind, "object": …}` of a serialised object.
fn object_line(kind: &str, object: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(object.len() + kind.len() + 24);
    bytes.extend_from_slice(b"{\"type\":\"");
    bytes.extend_from_slice(kind.as_bytes());
    bytes.extend_from_slice(b"\",\"object\":");
    bytes.extend_from_slice(object);
    bytes.extend_from_slice(b"}\n");
    bytes
}

fn line(kind: &str, object: &Value) -> Vec<u8> {
    let mut bytes = serde_json::to_vec(&json!({"type": kind, "object": object}))
        .unwrap_or_else(|_| b"{}".to_vec());
    bytes.push(b'\n');
    bytes
}
