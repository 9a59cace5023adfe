//! One ordered store for every object, one monotonically increasing resourceVersion, and a
//! window of recent changes that watches resume from.

use crate::At;
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::Value;
use tokio::sync::broadcast;

use crate::persist::{PersistError, Persistence};

/// Where an object lives: its resource's storage key (`group/plural`), namespace (empty for
/// cluster-scoped objects) and name. Ordered, so lists come out sorted by namespace and name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey {
    pub resource: String,
    pub namespace: String,
    pub name: String,
}

impl ObjectKey {
    pub fn new(resource: &str, namespace: &str, name: &str) -> Self {
        ObjectKey {
            resource: resource.to_owned(),
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// A change's object as one apiVersion presents it, serialised.
pub type Rendered = (String, Arc<[u8]>);

/// One change, as watches see it.
#[derive(Debug)]
pub struct Event {
    pub rv: u64,
    pub kind: EventType,
    pub key: ObjectKey,
    /// The object after the change; for a deletion, its last state.
    pub object: Arc<Value>,
    /// The object before the change, for selectors that an update moves an object out of.
    pub previous: Option<Arc<Value>>,
    /// Its object once serialised, by apiVersion: the write's answer and every watcher of the
    /// resource send the same bytes, so the object is serialised once, not once per watch.
    pub rendered: Mutex<Vec<Rendered>>,
}

impl Event {
    /// The object of this change in the form of `api_version`, serialised by `render` the
    /// first time it is asked for.
    pub fn presented(&self, api_version: &str, render: impl FnOnce() -> Vec<u8>) -> Arc<[u8]> {
        let mut rendered = self.rendered.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, bytes)) = rendered.iter().find(|(v, _)| v == api_version) {
            return bytes.clone();
        }
        let bytes: Arc<[u8]> = render().into();
        rendered.push((api_version.to_owned(), bytes.clone()));
        bytes
    }
}

/// What a mutation decided.
pub enum Change {
    /// Store this object (its resourceVersion is assigned by the store).
    Put(Value),
    /// Delete the object.
    Remove,
    /// Leave the store as it is.
    Keep,
}

/// What a mutation did.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// The object as stored, and its change (whose rendering the write's answer shares with
    /// the watches).
    Written(Arc<Value>, Arc<Event>),
    Removed(Arc<Value>),
    Unchanged(Option<Arc<Value>>),
}

/// A watch's starting point: what it must replay, and the live feed after it.
pub struct Subscription {
    /// Current objects of the resource, for a watch that starts from "now" (no version).
    pub initial: Vec<Arc<Value>>,
    /// Changes after the requested version that happened before the subscription.
    pub backlog: Vec<Arc<Event>>,
    pub receiver: broadcast::Receiver<Arc<Event>>,
    /// The store's version when the subscription started.
    pub rv: u64,
}

/// The requested version is older than the change window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expired {
    pub requested: u64,
    pub oldest: u64,
}

pub struct Store {
    inner: Mutex<Inner>,
    /// Every change, for the server's own controllers ([`Store::changes`]).
    sender: broadcast::Sender<Arc<Event>>,
    /// Whether every change is written to disk (`--data-dir`).
    persistent: bool,
}

/// The current objects. Every read and update finds its object by hash; the keys are also
/// kept in order, for lists (sorted by namespace and name) and the snapshot. An update
/// replaces the object under its key and leaves the order alone, so only creations and
/// deletions walk the ordered keys: an ordered map walked for every read compared its keys'
/// three strings a dozen times or more per lookup.
#[derive(Default)]
struct Objects {
    by_key: HashMap<ObjectKey, Arc<Value>>,
    order: BTreeSet<ObjectKey>,
}

impl Objects {
    fn get(&self, key: &ObjectKey) -> Option<&Arc<Value>> {
        self.by_key.get(key)
    }

    /// Stores `object` at `key`, copying the key only for a new object.
    fn put(&mut self, key: &ObjectKey, object: Arc<Value>) {
        match self.by_key.get_mut(key) {
            Some(stored) => *stored = object,
            None => {
                self.by_key.insert(key.clone(), object);
                self.order.insert(key.clone());
            }
        }
    }

    fn remove(&mut self, key: &ObjectKey) -> Option<Arc<Value>> {
        let removed = self.by_key.remove(key);
        if removed.is_some() {
            self.order.remove(key);
        }
        removed
    }

    /// The objects from `start` on, in key order.
    fn from<'a>(
        &'a self,
        start: &ObjectKey,
    ) -> impl Iterator<Item = (&'a ObjectKey, &'a Arc<Value>)> + use<'a> {
        self.in_order(self.order.range(start..))
    }

    /// Every object, in key order.
    fn iter(&self) -> impl Iterator<Item = (&ObjectKey, &Arc<Value>)> {
        self.in_order(self.order.iter())
    }

    fn in_order<'a>(
        &'a self,
        keys: impl Iterator<Item = &'a ObjectKey> + 'a,
    ) -> impl Iterator<Item = (&'a ObjectKey, &'a Arc<Value>)> + 'a {
        keys.filter_map(|key| self.by_key.get_key_value(key))
    }
}

struct Inner {
    rv: u64,
    objects: Objects,
    history: VecDeque<Arc<Event>>,
    window: usize,
    /// The log every change is written to first, with `--data-dir`.
    persistence: Option<Persistence>,
    /// Where each uid lives.
    uids: HashMap<String, ObjectKey>,
    /// The objects naming each uid among their owner references.
    dependents: HashMap<String, BTreeSet<ObjectKey>>,
    /// The changes of each watched resource, for its watches: a change wakes only the watches
    /// of its own resource, where one feed of every change woke every watch for each.
    feeds: HashMap<String, broadcast::Sender<Arc<Event>>>,
}

impl Inner {
    /// Keeps the uid and owner indexes in step with the object at `key` changing from
    /// `before` to `after`.
    /// An update that keeps the uid and the owners (nearly every one) changes nothing here.
    fn index(&mut self, key: &ObjectKey, before: Option<&Value>, after: Option<&Value>) {
        if before.and_then(uid_of) == after.and_then(uid_of)
            && before
                .into_iter()
                .flat_map(owner_uids)
                .eq(after.into_iter().flat_map(owner_uids))
        {
            return;
        }
        if let Some(before) = before {
            if let Some(uid) = uid_of(before) {
                self.uids.remove(uid);
            }
            for owner in owner_uids(before) {
                if let Some(set) = self.dependents.get_mut(owner) {
                    set.remove(key);
                    if set.is_empty() {
                        self.dependents.remove(owner);
                    }
                }
            }
        }
        if let Some(after) = after {
            if let Some(uid) = uid_of(after) {
                self.uids.insert(uid.to_owned(), key.clone());
            }
            for owner in owner_uids(after) {
                self.dependents
                    .entry(owner.to_owned())
                    .or_default()
                    .insert(key.clone());
            }
        }
    }
}

fn uid_of(object: &Value) -> Option<&str> {
    object.at(&["metadata", "uid"]).and_then(Value::as_str)
}

/// The uids an object's owner references name.
pub fn owner_uids(object: &Value) -> impl Iterator<Item = &str> {
    object
        .at(&["metadata", "ownerReferences"])
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|r| r.get("uid").and_then(Value::as_str))
}

/// How many changes the live feed holds for watchers that fall behind; one further behind
/// ends, and its client resumes from the change window (each held change keeps the object's
/// version at that change alive, so the feed is kept short).
const LIVE_FEED: usize = 8_192;
/// How many of the latest changes keep their rendered objects.
const RENDERED_KEPT: usize = 1_024;

impl Store {
    /// A store that keeps the last `window` changes for watches to resume from.
    pub fn new(window: usize) -> Self {
        let (sender, _) = broadcast::channel(LIVE_FEED);
        Store {
            inner: Mutex::new(Inner {
                rv: 1,
                objects: Objects::default(),
                history: VecDeque::with_capacity(window.min(65_536)),
                window: window.max(1),
                uids: HashMap::new(),
                dependents: HashMap::new(),
                feeds: HashMap::new(),
                persistence: None,
            }),
            sender,
            persistent: false,
        }
    }

    /// A store kept in `dir`: what it holds is loaded, the changes since its last snapshot
    /// fill the change window, and every change from now on is written there first.
    pub fn open(window: usize, dir: &std::path::Path, sync: bool) -> Result<Self, PersistError> {
        let (persistence, recovered) = Persistence::open(dir, sync)?;
        let mut store = Store::new(window);
        store.persistent = true;
        {
            let mut inner = store.lock();
            inner.rv = inner.rv.max(recovered.snapshot_rv);
            for (key, object) in recovered.snapshot {
                inner.index(&key, None, Some(&object));
                inner.objects.put(&key, object);
            }
            for record in recovered.changes {
                let key = ObjectKey::from(record.key);
                let previous = inner.objects.get(&key).cloned();
                inner.rv = inner.rv.max(record.rv);
                let (kind, object) = match record.object {
                    Some(object) => {
                        let object = Arc::new(object);
                        inner.index(&key, previous.as_deref(), Some(&object));
                        inner.objects.put(&key, object.clone());
                        let kind = if previous.is_some() {
                            EventType::Modified
                        } else {
                            EventType::Added
                        };
                        (kind, object)
                    }
                    None => {
                        let Some(previous) = previous.clone() else {
                            continue;
                        };
                        inner.index(&key, Some(&previous), None);
                        inner.objects.remove(&key);
                        let mut last = (*previous).clone();
                        if let Some(metadata) =
                            last.get_mut("metadata").and_then(Value::as_object_mut)
                        {
                            metadata.insert(
                                "resourceVersion".into(),
                                Value::String(record.rv.to_string()),
                            );
                        }
                        (EventType::Deleted, Arc::new(last))
                    }
                };
                if inner.history.len() == inner.window {
                    inner.history.pop_front();
                }
                inner.history.push_back(Arc::new(Event {
                    rv: record.rv,
                    kind,
                    key,
                    object,
                    previous,
                    rendered: Mutex::default(),
                }));
            }
            inner.persistence = Some(persistence);
        }
        Ok(store)
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave a half-written map behind (every write
        // is a single insert or remove), so a poisoned lock is still consistent.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether writes go to disk: a write may then wait for it.
    pub fn persistent(&self) -> bool {
        self.persistent
    }

    pub fn current_rv(&self) -> u64 {
        self.lock().rv
    }

    pub fn get(&self, key: &ObjectKey) -> Option<Arc<Value>> {
        self.lock().objects.get(key).cloned()
    }

    /// The objects of a resource, in one namespace or all, sorted by namespace and name, with
    /// the version they were read at.
    pub fn list(&self, resource: &str, namespace: Option<&str>) -> (Vec<Arc<Value>>, u64) {
        let inner = self.lock();
        (
            scan(&inner, resource, namespace).cloned().collect(),
            inner.rv,
        )
    }

    /// The keys of a resource's objects, in one namespace or all.
    pub fn keys(&self, resource: &str, namespace: Option<&str>) -> Vec<ObjectKey> {
        let inner = self.lock();
        let start = ObjectKey::new(resource, namespace.unwrap_or(""), "");
        inner
            .objects
            .from(&start)
            .map(|(k, _)| k)
            .take_while(|k| k.resource == resource && namespace.is_none_or(|ns| k.namespace == ns))
            .cloned()
            .collect()
    }

    /// Every key in a namespace, whatever the resource.
    pub fn keys_in_namespace(&self, namespace: &str) -> Vec<ObjectKey> {
        self.lock()
            .objects
            .iter()
            .map(|(k, _)| k)
            .filter(|k| k.namespace == namespace)
            .cloned()
            .collect()
    }

    /// Reads the object at `key`, lets `decide` choose a change, and applies it atomically,
    /// with the store locked throughout: for decisions that cost little.
    /// A `Put` that changes nothing but bookkeeping is not a write: the version stays.
    pub fn mutate<E: From<PersistError>>(
        &self,
        key: &ObjectKey,
        decide: impl FnOnce(Option<&Arc<Value>>, u64) -> Result<Change, E>,
    ) -> Result<Outcome, E> {
        let mut inner = self.lock();
        let current = inner.objects.get(key).cloned();
        let next_rv = inner.rv + 1;
        let change = decide(current.as_ref(), next_rv)?;
        let change = keep_if_unchanged(current.as_ref(), change);
        self.commit(&mut inner, key, current, change)
    }

    /// As [`Store::mutate`], with `decide` run on the object as read, the store unlocked (as
    /// the API server decides an update on a copy read from etcd): the change is applied only
    /// if the object is still the one decided on, else `decide` runs again on the newer one.
    /// Writes to different objects then decide at once, and the lock is held only to store.
    pub fn update<E: From<PersistError>>(
        &self,
        key: &ObjectKey,
        mut decide: impl FnMut(Option<&Arc<Value>>) -> Result<Change, E>,
    ) -> Result<Outcome, E> {
        loop {
            let current = self.get(key);
            let change = keep_if_unchanged(current.as_ref(), decide(current.as_ref())?);
            let mut inner = self.lock();
            let still = match (inner.objects.get(key), &current) {
                // `current` keeps its allocation alive, so an equal address is the same object.
                (Some(now), Some(read)) => Arc::ptr_eq(now, read),
                (None, None) => true,
                _ => false,
            };
            if still {
                return self.commit(&mut inner, key, current, change);
            }
        }
    }

    /// Applies `change` to the object at `key`, which is `current`.
    fn commit<E: From<PersistError>>(
        &self,
        inner: &mut Inner,
        key: &ObjectKey,
        current: Option<Arc<Value>>,
        change: Change,
    ) -> Result<Outcome, E> {
        let next_rv = inner.rv + 1;
        match change {
            Change::Keep => Ok(Outcome::Unchanged(current)),
            Change::Put(mut object) => {
                if let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) {
                    metadata.insert("resourceVersion".into(), Value::String(next_rv.to_string()));
                }
                if let Some(persistence) = inner.persistence.as_mut() {
                    persistence.append(next_rv, key, Some(&object))?;
                }
                inner.rv = next_rv;
                let object = Arc::new(object);
                inner.index(key, current.as_deref(), Some(&object));
                inner.objects.put(key, object.clone());
                let kind = if current.is_some() {
                    EventType::Modified
                } else {
                    EventType::Added
                };
                let event = self.record(inner, kind, key, object.clone(), current);
                Ok(Outcome::Written(object, event))
            }
            Change::Remove => {
                let Some(current) = current else {
                    return Ok(Outcome::Unchanged(None));
                };
                if let Some(persistence) = inner.persistence.as_mut() {
                    persistence.append(next_rv, key, None)?;
                }
                inner.rv = next_rv;
                inner.objects.remove(key);
                inner.index(key, Some(&current), None);
                // A deletion event carries the object's last state at the deletion's version.
                let mut last = (*current).clone();
                if let Some(metadata) = last.get_mut("metadata").and_then(Value::as_object_mut) {
                    metadata.insert("resourceVersion".into(), Value::String(next_rv.to_string()));
                }
                let last = Arc::new(last);
                let _ = self.record(inner, EventType::Deleted, key, last.clone(), Some(current));
                Ok(Outcome::Removed(last))
            }
        }
    }

    fn record(
        &self,
        inner: &mut Inner,
        kind: EventType,
        key: &ObjectKey,
        object: Arc<Value>,
        previous: Option<Arc<Value>>,
    ) -> Arc<Event> {
        let event = Arc::new(Event {
            rv: inner.rv,
            kind,
            key: key.clone(),
            object,
            previous,
            rendered: Mutex::default(),
        });
        if inner.history.len() == inner.window {
            inner.history.pop_front();
        }
        inner.history.push_back(event.clone());
        // Watchers render a change within moments; one that far behind renders it again.
        if let Some(old) = inner
            .history
            .len()
            .checked_sub(RENDERED_KEPT)
            .and_then(|i| inner.history.get(i))
        {
            old.rendered
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clear();
        }
        // No receiver is not an error: nobody watches.
        if let Some(feed) = inner.feeds.get(&event.key.resource) {
            let _ = feed.send(event.clone());
        }
        let _ = self.sender.send(event.clone());
        let inner = &mut *inner;
        if let Some(persistence) = inner.persistence.as_mut()
            && persistence.wants_compaction()
            && let Err(error) = persistence.compact(inner.rv, inner.objects.iter())
        {
            // The log keeps growing, which loses nothing; say so and try again later.
            tracing::warn!(%error, "cannot snapshot the store");
        }
        event
    }

    /// Starts a watch of `resource` (in `namespace`, or all): from `from` (replaying the
    /// changes after it from the window), or from now with the current objects as `initial`.
    pub fn subscribe(
        &self,
        resource: &str,
        namespace: Option<&str>,
        from: Option<u64>,
    ) -> Result<Subscription, Expired> {
        let mut inner = self.lock();
        let receiver = inner
            .feeds
            .entry(resource.to_owned())
            .or_insert_with(|| broadcast::channel(LIVE_FEED).0)
            .subscribe();
        let in_scope = |key: &ObjectKey| {
            key.resource == resource && namespace.is_none_or(|ns| key.namespace == ns)
        };
        match from {
            None => Ok(Subscription {
                initial: scan(&inner, resource, namespace).cloned().collect(),
                backlog: Vec::new(),
                receiver,
                rv: inner.rv,
            }),
            Some(from) if from >= inner.rv => Ok(Subscription {
                initial: Vec::new(),
                backlog: Vec::new(),
                receiver,
                rv: inner.rv,
            }),
            Some(from) => {
                let oldest = inner.history.front().map_or(inner.rv + 1, |e| e.rv);
                if from + 1 < oldest {
                    return Err(Expired {
                        requested: from,
                        oldest: oldest.saturating_sub(1),
                    });
                }
                let backlog = inner
                    .history
                    .iter()
                    .filter(|e| e.rv > from && in_scope(&e.key))
                    .cloned()
                    .collect();
                Ok(Subscription {
                    initial: Vec::new(),
                    backlog,
                    receiver,
                    rv: inner.rv,
                })
            }
        }
    }

    /// Where the object with this uid lives, if it exists.
    pub fn key_of_uid(&self, uid: &str) -> Option<ObjectKey> {
        self.lock().uids.get(uid).cloned()
    }

    /// The objects that name `uid` among their owner references.
    pub fn dependents_of(&self, uid: &str) -> Vec<ObjectKey> {
        self.lock()
            .dependents
            .get(uid)
            .map(|set| set.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Every object that has owner references.
    pub fn owned(&self) -> Vec<ObjectKey> {
        let inner = self.lock();
        let mut keys: BTreeSet<ObjectKey> = BTreeSet::new();
        for set in inner.dependents.values() {
            keys.extend(set.iter().cloned());
        }
        keys.into_iter().collect()
    }

    /// Forgets the change window, as etcd compaction does: a watch from an older version
    /// then gets 410 Expired and must relist.
    pub fn compact(&self) {
        self.lock().history.clear();
    }

    /// A feed of every change, for the server's own controllers.
    pub fn changes(&self) -> broadcast::Receiver<Arc<Event>> {
        self.sender.subscribe()
    }
}

fn scan<'a>(
    inner: &'a Inner,
    resource: &'a str,
    namespace: Option<&'a str>,
) -> impl Iterator<Item = &'a Arc<Value>> + 'a {
    let start = ObjectKey::new(resource, namespace.unwrap_or(""), "");
    inner
        .objects
        .from(&start)
        .take_while(move |(k, _)| {
            k.resource == resource && namespace.is_none_or(|ns| k.namespace == ns)
        })
        .map(|(_, v)| v)
}

/// `Keep` for a `Put` of what `current` already holds (bookkeeping aside), else `change`.
fn keep_if_unchanged(current: Option<&Arc<Value>>, change: Change) -> Change {
    match change {
        Change::Put(object) if current.is_some_and(|current| same_content(current, &object)) => {
            Change::Keep
        }
        change => change,
    }
}

/// Whether two versions of an object differ only in their resourceVersion and the times of
/// their managedFields entries: such a write changes nothing. Compared in place, without a
/// copy of either.
fn same_content(current: &Value, next: &Value) -> bool {
    same_fields(current, next, None, &|field, current, next| match field {
        "metadata" => same_fields(
            current,
            next,
            Some("resourceVersion"),
            &|field, a, b| match (field, a, b) {
                ("managedFields", Value::Array(a), Value::Array(b)) => {
                    a.len() == b.len()
                        && a.iter()
                            .zip(b)
                            .all(|(a, b)| same_fields(a, b, Some("time"), &|_, a, b| a == b))
                }
                _ => a == b,
            },
        ),
        _ => current == next,
    })
}

/// Whether two objects have the same fields, `ignored` aside, and `same` holds for the two
/// values of each (given the field's name); other values must be equal.
fn same_fields(
    current: &Value,
    next: &Value,
    ignored: Option<&str>,
    same: &dyn Fn(&str, &Value, &Value) -> bool,
) -> bool {
    let (Value::Object(current), Value::Object(next)) = (current, next) else {
        return current == next;
    };
    let kept = |field: &String| Some(field.as_str()) != ignored;
    current.keys().filter(|f| kept(f)).count() == next.keys().filter(|f| kept(f)).count()
        && current
            .iter()
            .filter(|(field, _)| kept(field))
            .all(|(field, value)| {
                next.get(field)
                    .is_some_and(|other| same(field, value, other))
            })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn put(store: &Store, name: &str, data: Value) -> Outcome {
        let key = ObjectKey::new("/configmaps", "default", name);
        store
            .mutate::<PersistError>(&key, |_, _| {
                Ok(Change::Put(
                    json!({"metadata": {"name": name}, "data": data}),
                ))
            })
            .unwrap()
    }

    #[test]
    fn a_watch_hears_only_its_own_resources_changes() {
        let store = Store::new(10);
        let mut configmaps = store
            .subscribe("/configmaps", None, None)
            .expect("a subscription")
            .receiver;
        let mut secrets = store
            .subscribe("/secrets", None, None)
            .expect("a subscription")
            .receiver;
        let mut everything = store.changes();
        put(&store, "a", json!({"x": "1"}));
        let heard = configmaps.try_recv().expect("the ConfigMap's change");
        assert_eq!(heard.key, ObjectKey::new("/configmaps", "default", "a"));
        assert!(secrets.try_recv().is_err(), "a Secret watch is not woken");
        assert!(
            everything.try_recv().is_ok(),
            "the feed of every change has it"
        );
    }

    #[test]
    fn a_changes_object_is_serialised_once_per_version_for_its_answer_and_its_watches() {
        let store = Store::new(10);
        let mut feed = store.changes();
        let Outcome::Written(object, change) = put(&store, "a", json!({"x": "1"})) else {
            panic!("written")
        };
        let heard = feed.try_recv().expect("the feed has the change");
        assert!(
            Arc::ptr_eq(&heard, &change),
            "the write and its watchers share one change"
        );
        let renders = std::cell::Cell::new(0);
        let render = || {
            renders.set(renders.get() + 1);
            serde_json::to_vec(&*object).unwrap()
        };
        let answer = change.presented("v1", render);
        let watched = heard.presented("v1", || panic!("rendered again"));
        assert!(Arc::ptr_eq(&answer, &watched));
        assert_eq!(renders.get(), 1);
        let other = heard.presented("v2", || b"{}".to_vec());
        assert_eq!(&*other, b"{}", "another version is rendered apart");
    }

    #[test]
    fn the_uid_and_owner_indexes_follow_updates_that_keep_or_change_them() {
        let store = Store::new(10);
        let key = ObjectKey::new("/secrets", "shop", "web-tls");
        let write = |object: Option<Value>| {
            store
                .mutate::<PersistError>(&key, |_, _| {
                    Ok(match object {
                        Some(object) => Change::Put(object),
                        None => Change::Remove,
                    })
                })
                .unwrap();
        };
        let secret = |uid: &str, owners: &[&str], data: &str| {
            let owners: Vec<Value> = owners.iter().map(|o| json!({"uid": o})).collect();
            json!({"metadata": {"name": "web-tls", "uid": uid, "ownerReferences": owners},
                "data": {"x": data}})
        };
        let dependents = |uid: &str| store.dependents_of(uid).len();

        write(Some(secret("s1", &["c1"], "1")));
        assert_eq!(store.key_of_uid("s1"), Some(key.clone()));
        assert_eq!(dependents("c1"), 1);
        // Kept: the indexes are as they were.
        write(Some(secret("s1", &["c1"], "2")));
        assert_eq!(store.key_of_uid("s1"), Some(key.clone()));
        assert_eq!((dependents("c1"), store.owned().len()), (1, 1));
        // Changed owners: the object moves from one owner's dependents to the others'.
        write(Some(secret("s1", &["c2", "c3"], "3")));
        assert_eq!(
            (dependents("c1"), dependents("c2"), dependents("c3")),
            (0, 1, 1)
        );
        write(Some(secret("s1", &[], "4")));
        assert_eq!((dependents("c2"), store.owned().len()), (0, 0));
        // A new uid at the same key (deleted and made again in one step).
        write(Some(secret("s2", &["c1"], "5")));
        assert_eq!(store.key_of_uid("s1"), None);
        assert_eq!(store.key_of_uid("s2"), Some(key.clone()));
        assert_eq!(dependents("c1"), 1);
        write(None);
        assert_eq!((store.key_of_uid("s2"), dependents("c1")), (None, 0));
    }

    #[test]
    fn every_write_gets_the_next_version() {
        let store = Store::new(10);
        let Outcome::Written(a, _) = put(&store, "a", json!({"x": "1"})) else {
            panic!()
        };
        let Outcome::Written(b, _) = put(&store, "a", json!({"x": "2"})) else {
            panic!()
        };
        assert_eq!(a["metadata"]["resourceVersion"], "2");
        assert_eq!(b["metadata"]["resourceVersion"], "3");
        assert!(matches!(
            put(&store, "a", json!({"x": "2"})),
            Outcome::Unchanged(Some(_))
        ));
        assert_eq!(store.current_rv(), 3);
    }

    #[test]
    fn a_write_that_changes_only_versions_and_times_is_the_same_content() {
        let stored = json!({
            "metadata": {"name": "a", "resourceVersion": "7", "managedFields": [
                {"manager": "m", "operation": "Apply", "time": "2026-01-01T00:00:00Z",
                 "fieldsV1": {"f:data": {}}}
            ]},
            "data": {"x": "1"}
        });
        let mut next = stored.clone();
        next["metadata"]["managedFields"][0]["time"] = json!("2026-01-02T00:00:00Z");
        next["metadata"]
            .as_object_mut()
            .unwrap()
            .remove("resourceVersion");
        assert!(same_content(&stored, &next));

        let changed = |edit: &dyn Fn(&mut Value)| {
            let mut next = stored.clone();
            edit(&mut next);
            same_content(&stored, &next)
        };
        assert!(!changed(&|o| o["data"]["x"] = json!("2")));
        assert!(!changed(&|o| o["spec"] = json!({})));
        assert!(!changed(&|o| o["metadata"]["labels"] = json!({"a": "b"})));
        assert!(!changed(
            &|o| o["metadata"]["managedFields"][0]["manager"] = json!("n")
        ));
        assert!(changed(&|o| {
            o["metadata"]["managedFields"][0]
                .as_object_mut()
                .unwrap()
                .remove("time");
        }));
        assert!(!changed(&|o| o["metadata"]["managedFields"]
            .as_array_mut()
            .unwrap()
            .push(json!({"manager": "n"}))));
        assert!(!changed(&|o| {
            o.as_object_mut().unwrap().remove("data");
        }));
    }

    #[test]
    fn an_update_decided_on_an_object_changed_meanwhile_is_decided_again() {
        let store = Store::new(10);
        put(&store, "a", json!({"n": 1}));
        let key = ObjectKey::new("/configmaps", "default", "a");
        let mut seen = Vec::new();
        let outcome = store
            .update::<PersistError>(&key, |current| {
                let current = current.expect("the object");
                seen.push(current["data"]["n"].clone());
                if seen.len() == 1 {
                    // Another write lands between the read and the store.
                    put(&store, "a", json!({"n": 2}));
                }
                let mut next = (**current).clone();
                next["data"]["n"] = json!(current["data"]["n"].as_i64().unwrap() + 10);
                Ok(Change::Put(next))
            })
            .unwrap();
        assert_eq!(seen, [json!(1), json!(2)]);
        let Outcome::Written(written, _) = outcome else {
            panic!("written")
        };
        assert_eq!(written["data"]["n"], 12);
        assert_eq!(written["metadata"]["resourceVersion"], "4");
    }

    #[test]
    fn lists_are_sorted_and_scoped() {
        let store = Store::new(10);
        for name in ["b", "a", "c"] {
            put(&store, name, json!({}));
        }
        let other = ObjectKey::new("/secrets", "default", "s");
        store
            .mutate::<PersistError>(&other, |_, _| {
                Ok(Change::Put(json!({"metadata": {"name": "s"}})))
            })
            .unwrap();
        let (items, rv) = store.list("/configmaps", Some("default"));
        let names: Vec<_> = items
            .iter()
            .map(|o| o["metadata"]["name"].clone())
            .collect();
        assert_eq!(names, [json!("a"), json!("b"), json!("c")]);
        assert_eq!(rv, 5);
        assert!(store.list("/configmaps", Some("other")).0.is_empty());
    }

    #[test]
    fn updates_and_removals_keep_lists_in_order_and_reads_current() {
        let store = Store::new(10);
        for name in ["b", "a", "c"] {
            put(&store, name, json!({"v": 1}));
        }
        put(&store, "a", json!({"v": 2}));
        let b = ObjectKey::new("/configmaps", "default", "b");
        store
            .mutate::<PersistError>(&b, |_, _| Ok(Change::Remove))
            .unwrap();
        let listed = |store: &Store| -> Vec<(Value, Value)> {
            store
                .list("/configmaps", None)
                .0
                .iter()
                .map(|o| (o["metadata"]["name"].clone(), o["data"]["v"].clone()))
                .collect()
        };
        assert_eq!(
            listed(&store),
            [(json!("a"), json!(2)), (json!("c"), json!(1))]
        );
        let names: Vec<String> = store
            .keys("/configmaps", Some("default"))
            .into_iter()
            .map(|k| k.name)
            .collect();
        assert_eq!(names, ["a", "c"]);
        assert!(store.get(&b).is_none());
        let a = ObjectKey::new("/configmaps", "default", "a");
        assert_eq!(
            store.get(&a).map(|o| o["data"]["v"].clone()),
            Some(json!(2))
        );

        put(&store, "b", json!({"v": 3}));
        assert_eq!(
            listed(&store),
            [
                (json!("a"), json!(2)),
                (json!("b"), json!(3)),
                (json!("c"), json!(1))
            ]
        );
        assert_eq!(store.keys_in_namespace("default").len(), 3);
    }

    #[test]
    fn a_watch_resumes_from_the_window_or_expires() {
        let store = Store::new(3);
        for i in 0..5 {
            put(&store, "a", json!({"i": i.to_string()}));
        }
        // Versions 2..=6 were written; the window holds 4, 5, 6.
        let sub = store.subscribe("/configmaps", None, Some(3)).unwrap();
        let versions: Vec<_> = sub.backlog.iter().map(|e| e.rv).collect();
        assert_eq!(versions, [4, 5, 6]);
        assert_eq!(
            store.subscribe("/configmaps", None, Some(2)).err(),
            Some(Expired {
                requested: 2,
                oldest: 3
            })
        );
        assert!(
            store
                .subscribe("/configmaps", None, Some(6))
                .unwrap()
                .backlog
                .is_empty()
        );
    }

    #[test]
    fn removal_emits_the_last_state_at_a_new_version() {
        let store = Store::new(10);
        put(&store, "a", json!({}));
        let mut sub = store.subscribe("/configmaps", None, None).unwrap();
        assert_eq!(sub.initial.len(), 1);
        let key = ObjectKey::new("/configmaps", "default", "a");
        let Outcome::Removed(last) = store
            .mutate::<PersistError>(&key, |_, _| Ok(Change::Remove))
            .unwrap()
        else {
            panic!()
        };
        assert_eq!(last["metadata"]["resourceVersion"], "3");
        let event = sub.receiver.try_recv().unwrap();
        assert_eq!(event.kind, EventType::Deleted);
        assert!(store.get(&key).is_none());
    }
}
