//! Events on the objects the controllers act on, as `events.k8s.io/v1` Events.
//!
//! A repeat of an Event (same object, type, reason and action) within [`SERIES_WINDOW`] adds to
//! the first one's series instead of creating another, as client-go's and kube's recorders do.
//! Unlike kube's, this one remembers at most [`RECENT_LIMIT`] Events, oldest out first, and
//! never scans them all: a burst of 10,000 issuances would otherwise keep 10,000 Events in
//! memory for six minutes and walk them on every publish.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::{Event as K8sEvent, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::events::{Event, EventType, Reporter};
use kube::{Client, ResourceExt};

/// How long a repeat joins the first Event's series.
pub const SERIES_WINDOW: SignedDuration = SignedDuration::from_mins(6);
/// The most Events remembered for series.
pub const RECENT_LIMIT: usize = 4096;

/// Publishes Events as one reporter.
#[derive(Clone)]
pub struct Recorder {
    client: Client,
    reporter: Reporter,
    recent: Arc<Mutex<Recent>>,
}

impl Recorder {
    pub fn new(client: Client, reporter: Reporter) -> Self {
        Recorder {
            client,
            reporter,
            recent: Arc::default(),
        }
    }

    fn recent(&self) -> MutexGuard<'_, Recent> {
        self.recent.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Publishes `event` about `regarding`, in its namespace (`default` for cluster-scoped
    /// objects): a new Event, or the next of a recent one's series.
    pub async fn publish(
        &self,
        event: &Event,
        regarding: &ObjectReference,
    ) -> Result<(), kube::Error> {
        let now = Timestamp::now();
        let key = key_of(event, regarding);
        let namespace = regarding.namespace.as_deref().unwrap_or("default");
        let api: Api<K8sEvent> = Api::namespaced(self.client.clone(), namespace);
        let repeat = self.recent().repeat(&key, now);
        if let Some((name, count)) = repeat {
            let series = serde_json::json!({"series": EventSeries {
                count,
                last_observed_time: MicroTime(now),
            }});
            match api
                .patch(&name, &PatchParams::default(), &Patch::Merge(&series))
                .await
            {
                Ok(_) => return Ok(()),
                // Deleted meanwhile (Events expire): start a new one.
                Err(kube::Error::Api(response)) if response.code == 404 => {}
                Err(error) => return Err(error),
            }
        }
        let event = self.event(event, regarding, now);
        let created = super::receipt::create(&api, &PostParams::default(), &event).await?;
        self.recent().remember(key, created.name_any(), now);
        Ok(())
    }

    fn event(&self, event: &Event, regarding: &ObjectReference, now: Timestamp) -> K8sEvent {
        let controller = &self.reporter.controller;
        K8sEvent {
            metadata: ObjectMeta {
                namespace: regarding.namespace.clone(),
                name: Some(format!(
                    "{}.{:x}",
                    regarding.name.as_deref().unwrap_or(controller),
                    now.as_nanosecond()
                )),
                ..ObjectMeta::default()
            },
            action: Some(event.action.clone()),
            reason: Some(event.reason.clone()),
            note: event.note.clone(),
            type_: Some(
                match event.type_ {
                    EventType::Normal => "Normal",
                    EventType::Warning => "Warning",
                }
                .to_owned(),
            ),
            event_time: Some(MicroTime(now)),
            regarding: Some(regarding.clone()),
            related: event.secondary.clone(),
            reporting_controller: Some(controller.clone()),
            reporting_instance: Some(
                self.reporter
                    .instance
                    .clone()
                    .unwrap_or_else(|| controller.clone()),
            ),
            ..K8sEvent::default()
        }
    }
}

/// What makes two Events the same: the object, the type, reason and action, and the related
/// object.
fn key_of(event: &Event, regarding: &ObjectReference) -> String {
    let object = |r: &ObjectReference| {
        format!(
            "{}/{}/{}/{}/{}",
            r.api_version.as_deref().unwrap_or_default(),
            r.kind.as_deref().unwrap_or_default(),
            r.namespace.as_deref().unwrap_or_default(),
            r.name.as_deref().unwrap_or_default(),
            r.uid.as_deref().unwrap_or_default()
        )
    };
    format!(
        "{}\n{:?}\n{}\n{}\n{}",
        object(regarding),
        event.type_,
        event.reason,
        event.action,
        event.secondary.as_ref().map(object).unwrap_or_default()
    )
}

/// The Events published lately, by key, and the order they were first published in.
#[derive(Default)]
struct Recent {
    seen: HashMap<String, Seen>,
    order: VecDeque<String>,
}

struct Seen {
    name: String,
    count: i32,
    last: Timestamp,
}

impl Recent {
    /// The Event `key` repeats and its series' new count, when one was published within the
    /// window.
    fn repeat(&mut self, key: &str, now: Timestamp) -> Option<(String, i32)> {
        self.expire(now);
        let seen = self.seen.get_mut(key)?;
        if seen.last + SERIES_WINDOW <= now {
            return None;
        }
        // The first Event counts as one; its first repeat makes a series of two.
        seen.count = seen.count.saturating_add(1);
        seen.last = now;
        Some((seen.name.clone(), seen.count))
    }

    fn remember(&mut self, key: String, name: String, now: Timestamp) {
        if self.seen.contains_key(&key) {
            self.order.retain(|k| *k != key);
        }
        self.seen.insert(
            key.clone(),
            Seen {
                name,
                count: 1,
                last: now,
            },
        );
        self.order.push_back(key);
        while self.order.len() > RECENT_LIMIT {
            if let Some(oldest) = self.order.pop_front() {
                self.seen.remove(&oldest);
            }
        }
    }

    /// Forgets the oldest Events while their series have ended.
    fn expire(&mut self, now: Timestamp) {
        while let Some(oldest) = self.order.front() {
            let ended = self
                .seen
                .get(oldest)
                .is_none_or(|s| s.last + SERIES_WINDOW <= now);
            if !ended {
                break;
            }
            if let Some(oldest) = self.order.pop_front() {
                self.seen.remove(&oldest);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeat_within_the_window_continues_the_series() {
        let mut recent = Recent::default();
        let t0 = Timestamp::UNIX_EPOCH;
        assert_eq!(recent.repeat("a", t0), None);
        recent.remember("a".into(), "a.1".into(), t0);
        let t1 = t0 + SignedDuration::from_mins(5);
        assert_eq!(recent.repeat("a", t1), Some(("a.1".into(), 2)));
        // The window runs from the latest repeat.
        let t2 = t1 + SignedDuration::from_mins(5);
        assert_eq!(recent.repeat("a", t2), Some(("a.1".into(), 3)));
        let t3 = t2 + SERIES_WINDOW;
        assert_eq!(recent.repeat("a", t3), None);
        assert!(recent.seen.is_empty() && recent.order.is_empty());
    }

    #[test]
    fn memory_is_bounded_oldest_out_first() {
        let mut recent = Recent::default();
        let now = Timestamp::UNIX_EPOCH;
        for i in 0..RECENT_LIMIT + 10 {
            recent.remember(format!("k{i}"), format!("n{i}"), now);
        }
        assert_eq!(recent.seen.len(), RECENT_LIMIT);
        assert_eq!(recent.order.len(), RECENT_LIMIT);
        assert_eq!(recent.repeat("k0", now), None);
        assert_eq!(recent.repeat("k9", now), None);
        assert_eq!(
            recent.repeat(&format!("k{}", RECENT_LIMIT + 9), now),
            Some((format!("n{}", RECENT_LIMIT + 9), 2))
        );
    }
}
