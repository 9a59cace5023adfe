//! Reflector caches: what a reconcile reads instead of asking the API server.
//!
//! One watch per kind and controller both fills the cache and triggers the controller, so a
//! cache costs no extra watch. Cached objects are decoded without their `managedFields`
//! ([`lean`]), which no reconcile reads and which would double the memory they take.

use std::fmt::Debug;
use std::sync::Arc;

use futures_util::future::{BoxFuture, FutureExt, Shared};
use futures_util::{Stream, StreamExt};
use kube::api::{Api, ObjectMeta};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;

use super::{Error, Scope, lean};

/// A watch of `api` that keeps every object it sees in the returned store, and yields each
/// object it touches to trigger a controller with.
pub fn reflect<K>(
    api: Api<K>,
    config: watcher::Config,
) -> (
    Store<K>,
    impl Stream<Item = Result<K, watcher::Error>> + Send + 'static,
)
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let (reader, writer) = reflector::store();
    let stream = lean::watch(api, config);
    (
        reader,
        reflector::reflector(writer, stream).touched_objects(),
    )
}

/// A controller of `K` whose own store, like the caches, holds objects without their managed
/// fields (on a Certificate written by two managers, they were a third of its size).
pub fn controller<K>(api: Api<K>, config: watcher::Config) -> kube::runtime::Controller<K>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let (store, changes) = reflect(api, config);
    kube::runtime::Controller::for_stream(changes, store)
}

/// The same, where the events of the controller's own writes of `K` (noted in `echoes`) do
/// not reconcile again.
pub fn controller_hearing_others<K>(
    api: Api<K>,
    config: watcher::Config,
    echoes: Arc<Echoes>,
) -> kube::runtime::Controller<K>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let (store, changes) = reflect(api, config);
    kube::runtime::Controller::for_stream(without_echoes(changes, echoes), store)
}

/// `changes`, a watch's, without the copies of the writes noted in `echoes`. A change of an
/// object with a write on its way waits for that write's answer to be noted (at most
/// [`Echoes::ANSWER_WAIT`]): the API server may send the event before the answer arrives.
pub fn without_echoes<K, E>(
    changes: impl Stream<Item = Result<K, E>>,
    echoes: Arc<Echoes>,
) -> impl Stream<Item = Result<K, E>>
where
    K: Resource<DynamicType = ()>,
{
    changes.filter_map(move |change| {
        let echoes = echoes.clone();
        async move {
            match &change {
                Ok(object) if !echoes.heard(object).await => None,
                _ => Some(change),
            }
        }
    })
}

/// [`without_echoes`] for a shared watch's subscription ([`SharedWatch::subscribe`]).
pub fn shared_without_echoes<K>(
    changes: impl Stream<Item = Arc<K>>,
    echoes: Arc<Echoes>,
) -> impl Stream<Item = Arc<K>>
where
    K: Resource<DynamicType = ()>,
{
    changes.filter_map(move |object| {
        let echoes = echoes.clone();
        async move { echoes.heard(&*object).await.then_some(object) }
    })
}

/// One watch of a kind whose objects several controllers read, fanned out to each of them:
/// the objects are decoded and cached once, where a watch per controller decoded every
/// change once per controller. A subscriber receives every object the watch touches
/// (applied, listed or deleted), as [`reflect`]'s stream yields them; one that subscribes
/// while the watch is listing receives the complete list once it is in.
pub struct SharedWatch<K>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    store: Store<K>,
    fanout: Arc<std::sync::Mutex<Fanout<K>>>,
    /// Whether the watch has listed its objects once. Several controllers wait for it at
    /// once; a store's own wait would wake only the last of them.
    listed: tokio::sync::watch::Receiver<bool>,
}

impl<K> Clone for SharedWatch<K>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    fn clone(&self) -> Self {
        SharedWatch {
            store: self.store.clone(),
            fanout: self.fanout.clone(),
            listed: self.listed.clone(),
        }
    }
}

/// Where a shared watch's objects go. Subscribers' channels are unbounded: each holds
/// shared objects, not copies, and a controller drains its trigger stream into its queue
/// (one pending reconcile per object) as fast as it comes, so none waits for the slowest.
struct Fanout<K> {
    /// Subscribers receiving each change as it comes.
    live: Vec<UnboundedSender<Arc<K>>>,
    /// Subscribers that joined during a listing: they receive the whole list at its end.
    joining: Vec<UnboundedSender<Arc<K>>>,
    /// Whether the watch is (re)listing: the store then holds the previous list, or nothing.
    listing: bool,
}

type UnboundedSender<T> = tokio::sync::mpsc::UnboundedSender<T>;

impl<K> SharedWatch<K>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    /// The shared watch of `api`, keeping each object as `slim` leaves it (and without its
    /// managed fields), and the task that runs it: nothing is watched until it is polled.
    pub fn new(
        api: Api<K>,
        config: watcher::Config,
        slim: impl Fn(&mut K) + Send + Sync + 'static,
    ) -> (SharedWatch<K>, BoxFuture<'static, ()>) {
        let (store, mut writer) = reflector::store();
        let fanout = Arc::new(std::sync::Mutex::new(Fanout {
            live: Vec::new(),
            joining: Vec::new(),
            listing: true,
        }));
        let (listed_once, listed_rx) = tokio::sync::watch::channel(false);
        let shared = SharedWatch {
            store: store.clone(),
            fanout: fanout.clone(),
            listed: listed_rx,
        };
        let events = lean::watch(api, config).modify(slim);
        let task = async move {
            let mut events = std::pin::pin!(events);
            while let Some(event) = events.next().await {
                let event = match event {
                    Ok(event) => event,
                    Err(error) => {
                        tracing::debug!(kind = %K::kind(&()), %error, "shared watch failed; retrying");
                        continue;
                    }
                };
                let mut fanout = fanout.lock().unwrap_or_else(|e| e.into_inner());
                writer.apply_watcher_event(&event);
                let touched = match event {
                    watcher::Event::Apply(object)
                    | watcher::Event::InitApply(object)
                    | watcher::Event::Delete(object) => Arc::new(object),
                    watcher::Event::Init => {
                        fanout.listing = true;
                        continue;
                    }
                    watcher::Event::InitDone => {
                        fanout.listing = false;
                        let joining = std::mem::take(&mut fanout.joining);
                        let listed = store.state();
                        for subscriber in joining {
                            if listed.iter().all(|o| subscriber.send(o.clone()).is_ok()) {
                                fanout.live.push(subscriber);
                            }
                        }
                        listed_once.send_replace(true);
                        continue;
                    }
                };
                fanout
                    .live
                    .retain(|subscriber| subscriber.send(touched.clone()).is_ok());
            }
        };
        (shared, task.boxed())
    }

    /// The objects the watch holds now. Wait for its first list with [`SharedWatch::listed`],
    /// not with the store's own wait, which wakes only the last of several waiters.
    pub fn store(&self) -> Store<K> {
        self.store.clone()
    }

    /// The wait for the watch's first complete list, for [`Synced::new`]: any number of
    /// waiters may wait at once. False when the watch stopped before.
    pub fn listed(&self) -> BoxFuture<'static, bool> {
        let mut listed = self.listed.clone();
        async move { listed.wait_for(|listed| *listed).await.is_ok() }.boxed()
    }

    /// The objects the watch touches from now on, after every object it holds now.
    pub fn subscribe(&self) -> impl Stream<Item = Arc<K>> + Send + 'static {
        let (sender, mut receiver) = tokio::sync::mpsc::unbounded_channel();
        let mut fanout = self.fanout.lock().unwrap_or_else(|e| e.into_inner());
        if fanout.listing {
            fanout.joining.push(sender);
        } else {
            for object in self.store.state() {
                let _ = sender.send(object);
            }
            fanout.live.push(sender);
        }
        futures_util::stream::poll_fn(move |cx| receiver.poll_recv(cx))
    }
}

/// An Order as the shared watch keeps it ([`SharedWatch`]): whole while it can still be
/// acted on, and once its life is over (Issued, Denied, Failed, …) without its CSR, sealed
/// key and certificates, most of its size, which only the Certificate controller reads,
/// afresh.
pub fn order_view(order: &mut crate::api::Order) {
    let Some(status) = order.status.as_mut() else {
        return;
    };
    if status
        .state
        .is_some_and(crate::api::order::OrderState::is_terminal)
    {
        order.spec.request.clear();
        order.spec.sealed_key = None;
        status.certificate = None;
        status.ca = None;
    }
}

/// One wait for the first complete list of several caches, shared by every reconcile: a
/// reconcile must not take an object the cache has not listed yet for one that does not
/// exist. (A store's own wait wakes only the last of several concurrent waiters, so the
/// reconciles share this one instead.)
#[derive(Clone)]
pub struct Synced(Shared<BoxFuture<'static, bool>>);

impl Synced {
    pub fn new(waits: Vec<BoxFuture<'static, bool>>) -> Self {
        let all = async move {
            futures_util::future::join_all(waits)
                .await
                .into_iter()
                .all(|ok| ok)
        };
        Synced(all.boxed().shared())
    }

    pub async fn wait(&self) -> Result<(), Error> {
        if self.0.clone().await {
            Ok(())
        } else {
            Err(Error::Internal(
                "a cache stopped before it was filled".into(),
            ))
        }
    }
}

/// The wait for `store`'s first complete list, for [`Synced::new`]. Only for a store one
/// task waits for: a store's wait wakes only the last of several waiters (a shared watch's
/// store: [`SharedWatch::listed`]).
pub fn listed<K>(store: &Store<K>) -> BoxFuture<'static, bool>
where
    K: Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
{
    let store = store.clone();
    async move { store.wait_until_ready().await.is_ok() }.boxed()
}

/// An object of a namespaced kind: from the cache when `namespace` is in the controller's
/// scope (there, absent from the cache is absent), else from the API server.
pub async fn namespaced<K>(
    store: &Store<K>,
    client: &Client,
    scope: &Scope,
    namespace: &str,
    name: &str,
) -> Result<Option<Arc<K>>, Error>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Debug
        + 'static,
{
    if in_scope(scope, namespace) {
        return Ok(store.get(&ObjectRef::new(name).within(namespace)));
    }
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    Ok(api.get_opt(name).await?.map(Arc::new))
}

/// The mapper of a watch that only fills a cache: its changes reconcile nothing.
pub fn fills_only<T, K>(_: T) -> Option<ObjectRef<K>>
where
    K: Resource<DynamicType = ()>,
{
    None
}

/// Whether a controller running in `scope` watches `namespace`.
pub fn in_scope(scope: &Scope, namespace: &str) -> bool {
    scope.as_deref().is_none_or(|s| s == namespace)
}

/// The cached objects in `namespaces`, when a cache's scope covers every one of them.
pub fn in_namespaces<K>(caches: &[(Scope, Store<K>)], namespaces: &[String]) -> Option<Vec<Arc<K>>>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    let mut found = Vec::new();
    for (scope, store) in caches {
        let here: Vec<&String> = namespaces.iter().filter(|n| in_scope(scope, n)).collect();
        if !here.is_empty() {
            found.extend(store.state_filter(|o| {
                let namespace = o.meta().namespace.as_deref();
                namespace.is_some_and(|n| here.iter().any(|h| h.as_str() == n))
            }));
        }
    }
    let covered = namespaces
        .iter()
        .all(|n| caches.iter().any(|(scope, _)| in_scope(scope, n)));
    covered.then_some(found)
}

/// Object names by (namespace, label value).
type NamesByLabel = std::collections::HashMap<(String, String), std::collections::BTreeSet<String>>;

/// The names of cached objects by the value of one label, per namespace: a reconcile finds
/// its few objects among many without scanning the cache. Filled from the watch that fills
/// the cache; a name whose object is gone is dropped when looked up.
#[derive(Clone, Default)]
pub struct LabelIndex {
    names: Arc<std::sync::Mutex<NamesByLabel>>,
}

impl LabelIndex {
    /// Notes `object` under its value of `label`.
    pub fn note<K: Resource>(&self, label: &str, object: &K) {
        let (Some(value), Some(namespace), Some(name)) = (
            object.labels().get(label),
            object.meta().namespace.as_ref(),
            object.meta().name.as_ref(),
        ) else {
            return;
        };
        let mut names = self.names.lock().unwrap_or_else(|e| e.into_inner());
        names
            .entry((namespace.clone(), value.clone()))
            .or_default()
            .insert(name.clone());
    }

    /// The cached objects of `namespace` noted under `value`, as `store` holds them now.
    pub fn objects<K>(&self, store: &Store<K>, namespace: &str, value: &str) -> Vec<Arc<K>>
    where
        K: Resource<DynamicType = ()> + Clone + 'static,
    {
        let key = (namespace.to_owned(), value.to_owned());
        let mut names = self.names.lock().unwrap_or_else(|e| e.into_inner());
        let Some(noted) = names.get_mut(&key) else {
            return Vec::new();
        };
        let mut found = Vec::new();
        noted.retain(
            |name| match store.get(&ObjectRef::new(name).within(namespace)) {
                Some(object) => {
                    found.push(object);
                    true
                }
                None => false,
            },
        );
        if noted.is_empty() {
            names.remove(&key);
        }
        found
    }
}

/// A controller's own write, as its caches will show it once their watches deliver it.
#[derive(Clone, Debug, PartialEq)]
pub struct Written {
    kind: String,
    name: String,
    uid: String,
    left: Left,
}

#[derive(Clone, Debug, PartialEq)]
enum Left {
    /// The object at this resourceVersion or a later one.
    Version(u64),
    /// A resourceVersion that is not a number: no cached copy can be told to be as new.
    Unknown,
    /// No object: the one deleted was at this resourceVersion, if it was a number.
    Gone(Option<u64>),
}

impl Written {
    /// `object` as the write that returned it left it.
    pub fn applied<K: Resource<DynamicType = ()>>(object: &K) -> Written {
        Written {
            kind: K::kind(&()).into_owned(),
            name: object.name_any(),
            uid: object.meta().uid.clone().unwrap_or_default(),
            left: object
                .meta()
                .resource_version
                .as_deref()
                .and_then(comparable_version)
                .map_or(Left::Unknown, Left::Version),
        }
    }

    /// `object`, left at `version` by a write that returned only that (a status write);
    /// none when `version` is not a number, which no cached copy could be told to reach.
    pub fn at_version<K: Resource<DynamicType = ()>>(object: &K, version: &str) -> Option<Written> {
        let version = comparable_version(version)?;
        Some(Written {
            left: Left::Version(version),
            ..Written::applied(object)
        })
    }

    /// `object` (as last seen), deleted.
    pub fn deleted<K: Resource<DynamicType = ()>>(object: &K) -> Written {
        let applied = Written::applied(object);
        let last = match applied.left {
            Left::Version(version) => Some(version),
            _ => None,
        };
        Written {
            left: Left::Gone(last),
            ..applied
        }
    }

    /// Whether a cache holding `cached` under this object's name has seen this write. A
    /// cache is filled by one watch, in the order of the writes, and resource versions of one
    /// resource compare as numbers (Kubernetes 1.35, KEP-5504): a copy at the written version
    /// or later, of this object or of a later one of the same name, comes after the write.
    /// After a deletion the name is free, or held by an object created since; another object
    /// there at an older version than the deleted one is from before it.
    fn shown_by(&self, cached: Option<&ObjectMeta>) -> bool {
        let version =
            cached.and_then(|c| c.resource_version.as_deref().and_then(comparable_version));
        match (&self.left, cached) {
            (Left::Version(written), Some(_)) => version.is_some_and(|v| v >= *written),
            (Left::Gone(_), None) => true,
            (Left::Gone(last), Some(cached)) => {
                cached.uid.as_deref() != Some(self.uid.as_str())
                    && last.zip(version).is_some_and(|(last, v)| v > last)
            }
            _ => false,
        }
    }
}

/// The Orders the Certificate controller created that the Order controller of the same
/// process has not yet taken up: a bounded hand-over between the two. Under a burst, a
/// Certificate waits for room before it orders ([`Intake::enter`]) instead of its Order
/// waiting in the Order controller's queue, where one left past its quiet time costs a
/// status write saying it is issuing (see the Certificate controller).
/// The wait is bounded ([`Intake::WAIT`]): an Order controller that is not running, or an
/// Order deleted before it was taken up, holds back no Certificate for long, and a place
/// held longer than [`Intake::STALE`] is given back.
pub struct Intake {
    room: Arc<tokio::sync::Semaphore>,
    /// The places held, by `namespace/name` of their Order.
    held: std::sync::Mutex<std::collections::HashMap<String, Place>>,
    /// When the places were last looked over for stale ones.
    swept: std::sync::Mutex<Option<tokio::time::Instant>>,
}

type Place = (tokio::time::Instant, tokio::sync::OwnedSemaphorePermit);

impl Default for Intake {
    fn default() -> Self {
        Intake {
            room: Arc::new(tokio::sync::Semaphore::new(Self::LIMIT)),
            held: Default::default(),
            swept: Default::default(),
        }
    }
}

impl Intake {
    /// Orders created and not yet taken up, at most, before a Certificate waits.
    pub const LIMIT: usize = 256;
    /// The longest a Certificate waits for room.
    pub const WAIT: std::time::Duration = std::time::Duration::from_secs(1);
    /// How long a place may be held before it is taken to be lost and given back.
    pub const STALE: std::time::Duration = std::time::Duration::from_secs(60);
    /// How often, at most, the places are looked over for stale ones.
    const SWEEP: std::time::Duration = std::time::Duration::from_secs(1);

    /// Takes a place for the Order `namespace/name`, about to be created: at once when there
    /// is room, else as soon as there is, or without one after [`Intake::WAIT`].
    pub async fn enter(&self, namespace: &str, name: &str) {
        let room = self.room.clone();
        let permit = match room.clone().try_acquire_owned() {
            Ok(permit) => Some(permit),
            Err(_) => {
                self.give_back_stale();
                tokio::time::timeout(Self::WAIT, room.acquire_owned())
                    .await
                    .ok()
                    .and_then(Result::ok)
            }
        };
        if let Some(permit) = permit {
            let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
            held.insert(
                format!("{namespace}/{name}"),
                (tokio::time::Instant::now(), permit),
            );
        }
    }

    /// The Order `namespace/name` is taken up (or was not created): its place is free.
    pub fn taken(&self, namespace: &str, name: &str) {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        if !held.is_empty() {
            held.remove(&format!("{namespace}/{name}"));
        }
    }

    /// Gives back the places held past [`Intake::STALE`]. Under a burst every Certificate
    /// finds the intake full, so the places are looked over at most once a second: a stale
    /// place is given back at most that much later.
    fn give_back_stale(&self) {
        {
            let mut swept = self.swept.lock().unwrap_or_else(|e| e.into_inner());
            let now = tokio::time::Instant::now();
            if swept.is_some_and(|at| now.duration_since(at) < Self::SWEEP) {
                return;
            }
            *swept = Some(now);
        }
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        held.retain(|_, (since, _)| since.elapsed() < Self::STALE);
    }

    /// Places held now.
    #[cfg(test)]
    fn held(&self) -> usize {
        self.held.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

/// The requests (CSRs) the Certificate controller built for the Orders it created, until the
/// Order controller of the same process parses them: a request whose bytes are the ones built
/// here was signed here, with a key this process holds, so its signature need not be checked
/// again ([`crate::pki::Possession::Known`]). An Order is matched by namespace, name and the
/// exact request text, so a request changed since, or a hand-made Order, is checked in full.
/// Forgetting is always safe (the signature is checked), so at most [`BuiltRequests::LIMIT`]
/// are held: past it, the record starts again.
#[derive(Default)]
pub struct BuiltRequests {
    /// The request built for each Order, by (namespace, name).
    built: std::sync::Mutex<std::collections::HashMap<(String, String), String>>,
}

impl BuiltRequests {
    const LIMIT: usize = 4_096;

    /// Notes `request`, built for the Order `namespace/name` about to be created.
    pub fn put(&self, namespace: &str, name: &str, request: &str) {
        let mut built = self.built.lock().unwrap_or_else(|e| e.into_inner());
        if built.len() >= Self::LIMIT {
            built.clear();
        }
        built.insert((namespace.to_owned(), name.to_owned()), request.to_owned());
    }

    /// How `order`'s request is to be parsed: [`Possession::Known`] when it is, byte for
    /// byte, the request built for it here. The note is let go either way.
    ///
    /// [`Possession::Known`]: crate::pki::Possession::Known
    pub fn take(&self, order: &crate::api::Order) -> crate::pki::Possession {
        let meta = &order.metadata;
        let built = match (&meta.namespace, &meta.name) {
            (Some(namespace), Some(name)) => self
                .built
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&(namespace.clone(), name.clone())),
            _ => None,
        };
        if built.as_deref() == Some(order.spec.request.as_str()) {
            crate::pki::Possession::Known
        } else {
            crate::pki::Possession::Verify
        }
    }

    /// Lets go of the request noted for the Order `namespace/name` (it was not created).
    pub fn forget(&self, namespace: &str, name: &str) {
        let mut built = self.built.lock().unwrap_or_else(|e| e.into_inner());
        built.remove(&(namespace.to_owned(), name.to_owned()));
    }

    /// Requests noted now.
    #[cfg(test)]
    fn held(&self) -> usize {
        self.built.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

/// The status of each Order the Order controller is issuing, certificate included, until the
/// Certificate controller takes it for the Secret. The shared watch keeps an Issued Order
/// without its certificate ([`order_view`]), so without this the Certificate controller would
/// read the Order again. A status is held from just before its write; it is taken only when
/// the cached Order shows that very status, so one whose write failed is never used. Taking a
/// status that is not held is always safe (the Order is read instead), so at most
/// [`IssuedOrders::LIMIT`] are held: past it, the record starts again.
#[derive(Default)]
pub struct IssuedOrders {
    /// By (namespace, name): the Order's uid and the status written.
    held: std::sync::Mutex<IssuedByName>,
}

type IssuedByName = std::collections::HashMap<(String, String), Held>;

/// A status held for an Order: the Order's uid, the status, and its certificate as the
/// signer read it.
type Held = (
    String,
    crate::api::order::OrderStatus,
    crate::pki::CertificateInfo,
);

impl IssuedOrders {
    const LIMIT: usize = 4_096;

    /// Holds `status`, about to be written to `order`, whose certificate is `info`.
    pub fn put(
        &self,
        order: &crate::api::Order,
        status: &crate::api::order::OrderStatus,
        info: crate::pki::CertificateInfo,
    ) {
        let meta = &order.metadata;
        let (Some(namespace), Some(name), Some(uid)) = (
            meta.namespace.as_ref(),
            meta.name.as_ref(),
            meta.uid.as_ref(),
        ) else {
            return;
        };
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        if held.len() >= Self::LIMIT {
            held.clear();
        }
        held.insert(
            (namespace.clone(), name.clone()),
            (uid.clone(), status.clone(), info),
        );
    }

    /// `order` (a cached copy) with the whole status held for it and its certificate read,
    /// when the copy shows that status as the cache keeps it; the held status is let go either
    /// way.
    pub fn take(
        &self,
        order: &crate::api::Order,
    ) -> Option<(crate::api::Order, crate::pki::CertificateInfo)> {
        let meta = &order.metadata;
        let key = (meta.namespace.clone()?, meta.name.clone()?);
        let (uid, status, info) = self
            .held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&key)?;
        let whole = crate::api::Order {
            status: Some(status),
            ..order.clone()
        };
        let mut shown = whole.clone();
        order_view(&mut shown);
        (meta.uid.as_ref() == Some(&uid) && shown.status == order.status).then_some((whole, info))
    }
}

/// What was made of each object (by namespace and name), with the version of the object it
/// was made from: made once per version (uid and resourceVersion), not once per reconcile.
/// A version that changes replaces what the last one made. Forgetting is always safe (the
/// next lookup makes it again), so past [`PerVersion::LIMIT`] objects the record starts again:
/// nothing is kept for ever for an object deleted before it was forgotten.
pub struct PerVersion<T> {
    made: std::sync::Mutex<std::collections::HashMap<String, (String, Arc<T>)>>,
}

impl<T> Default for PerVersion<T> {
    fn default() -> Self {
        PerVersion {
            made: Default::default(),
        }
    }
}

impl<T> PerVersion<T> {
    /// Objects whose makings are held at most.
    const LIMIT: usize = 65_536;

    /// What `make` made of `object`'s version, or makes of it now. A failure is not kept.
    pub fn get<K: Resource, E>(
        &self,
        object: &K,
        make: impl FnOnce(&K) -> Result<T, E>,
    ) -> Result<Arc<T>, E> {
        let (key, version) = Self::identity(object.meta());
        let mut made = self.made.lock().unwrap_or_else(|e| e.into_inner());
        if let (Some(version), Some((held, it))) = (&version, made.get(&key))
            && held == version
        {
            return Ok(it.clone());
        }
        match (make(object), version) {
            (Ok(it), Some(version)) => {
                let it = Arc::new(it);
                if made.len() >= Self::LIMIT {
                    made.clear();
                }
                made.insert(key, (version, it.clone()));
                Ok(it)
            }
            (result, _) => {
                made.remove(&key);
                result.map(Arc::new)
            }
        }
    }

    /// An object's key (namespace and name) and version (uid and resourceVersion, if both).
    fn identity(meta: &ObjectMeta) -> (String, Option<String>) {
        let key = format!(
            "{}/{}",
            meta.namespace.as_deref().unwrap_or_default(),
            meta.name.as_deref().unwrap_or_default()
        );
        let version = meta
            .uid
            .as_deref()
            .zip(meta.resource_version.as_deref())
            .map(|(uid, rv)| format!("{uid}/{rv}"));
        (key, version)
    }

    /// Forgets what was made of the object `namespace/name` (it is gone).
    pub fn forget(&self, namespace: &str, name: &str) {
        let mut made = self.made.lock().unwrap_or_else(|e| e.into_inner());
        made.remove(&format!("{namespace}/{name}"));
    }
}

/// The watch events of a controller's own writes: the copy a write returned, coming back.
/// Such an event shows the controller nothing it did not know when it wrote, so it need not
/// reconcile again; every other event (another writer's change, a later version, a relist)
/// still does. Forgetting a write is always safe: its event then reconciles, as any event
/// would. So the record is bounded by clearing it when it grows past [`Echoes::LIMIT`].
#[derive(Default)]
pub struct Echoes {
    /// The last write of each object, by (kind, namespace, name).
    written: std::sync::Mutex<std::collections::HashMap<EchoKey, Written>>,
    /// The writes sent and not yet answered, counted by object.
    sending: std::sync::Mutex<std::collections::HashMap<EchoKey, usize>>,
    /// Woken as each of those is answered.
    answers: tokio::sync::Notify,
}

type EchoKey = (String, String, String);

/// A write on its way ([`Echoes::send`]); dropped once its answer is noted, or lost.
pub struct Sending<'a> {
    echoes: &'a Echoes,
    key: EchoKey,
}

impl Drop for Sending<'_> {
    fn drop(&mut self) {
        let mut sending = self.echoes.sending();
        if let Some(count) = sending.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                sending.remove(&self.key);
            }
        }
        drop(sending);
        self.echoes.answers.notify_waiters();
    }
}

impl Echoes {
    /// Objects whose writes are held at most; past it, the record starts again.
    const LIMIT: usize = 65_536;

    /// How long a change waits for the answer of a write on its way before it passes anyway.
    pub const ANSWER_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

    fn sending(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<EchoKey, usize>> {
        self.sending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Marks a write of the object `K`/`name` in `namespace` as on its way until the returned
    /// guard is dropped: note its answer first, so that its event is known when it is heard.
    pub fn send<K: Resource<DynamicType = ()>>(&self, namespace: &str, name: &str) -> Sending<'_> {
        let key = (
            K::kind(&()).into_owned(),
            namespace.to_owned(),
            name.to_owned(),
        );
        *self.sending().entry(key.clone()).or_default() += 1;
        Sending { echoes: self, key }
    }

    /// Waits until no write of `object` is on its way, or [`Echoes::ANSWER_WAIT`] has passed.
    pub async fn answered<K: Resource<DynamicType = ()>>(&self, object: &K) {
        if self.sending().is_empty() {
            return;
        }
        let meta = object.meta();
        let (Some(namespace), Some(name)) = (meta.namespace.as_ref(), meta.name.as_ref()) else {
            return;
        };
        let key = (K::kind(&()).into_owned(), namespace.clone(), name.clone());
        let wait = async {
            loop {
                let answer = self.answers.notified();
                let mut answer = std::pin::pin!(answer);
                // Registered before the check, so that an answer between the two is not missed.
                answer.as_mut().enable();
                if !self.sending().contains_key(&key) {
                    return;
                }
                answer.await;
            }
        };
        let _ = tokio::time::timeout(Self::ANSWER_WAIT, wait).await;
    }

    /// Notes `written`, an object in `namespace` this controller wrote or deleted.
    pub fn note(&self, namespace: &str, written: &Written) {
        let mut noted = self.written.lock().unwrap_or_else(|e| e.into_inner());
        if noted.len() >= Self::LIMIT {
            noted.clear();
        }
        let key = (
            written.kind.clone(),
            namespace.to_owned(),
            written.name.clone(),
        );
        noted.insert(key, written.clone());
    }

    /// Forgets the writes of the object `kind`/`name` in `namespace`: its next event
    /// reconciles.
    pub fn forget(&self, kind: &str, namespace: &str, name: &str) {
        let mut noted = self.written.lock().unwrap_or_else(|e| e.into_inner());
        noted.remove(&(kind.to_owned(), namespace.to_owned(), name.to_owned()));
    }

    /// Whether `object`, from a watch, is news rather than the echo of a noted write (once
    /// any write of it on its way is answered: [`Echoes::answered`]).
    pub async fn heard<K: Resource<DynamicType = ()>>(&self, object: &K) -> bool {
        self.answered(object).await;
        !self.echoed(object)
    }

    /// Whether `object`, as a watch delivered it, is this controller's own last write of it
    /// coming back (after a deletion: the deleted object). Heard once, the write is
    /// forgotten, and so it is on a later copy, another object of the same name or a version
    /// that is not a number.
    pub fn echoed<K: Resource<DynamicType = ()>>(&self, object: &K) -> bool {
        let meta = object.meta();
        let (Some(namespace), Some(name)) = (meta.namespace.as_ref(), meta.name.as_ref()) else {
            return false;
        };
        let key: EchoKey = (K::kind(&()).into_owned(), namespace.clone(), name.clone());
        let mut noted = self.written.lock().unwrap_or_else(|e| e.into_inner());
        let Some(written) = noted.get(&key) else {
            return false;
        };
        let same_object = meta.uid.as_deref() == Some(written.uid.as_str());
        let version = meta
            .resource_version
            .as_deref()
            .and_then(comparable_version);
        let (echo, keep) = match (&written.left, version) {
            (Left::Gone(_), _) if same_object => (true, false),
            (Left::Version(v), Some(version)) if same_object && version == *v => (true, false),
            // An earlier change, by this controller or another writer: the write comes later.
            (Left::Version(v), Some(version)) if same_object && version < *v => (false, true),
            _ => (false, false),
        };
        if !keep {
            noted.remove(&key);
        }
        echo
    }
}

/// A resourceVersion as a number: a positive integer without leading zeros, else none.
fn comparable_version(version: &str) -> Option<u64> {
    if version.starts_with('0') {
        return None;
    }
    version.parse().ok()
}

/// The writes a controller made for each of its objects (a Certificate's Secrets, Orders and
/// own status) that a cached view of that object must show before a decision rests on it.
/// A view that shows them all is at least as new as the controller's own writes; what other
/// writers did before the controller started is in its caches' first lists (it runs only
/// while it leads, and those lists read the latest state). A view that does not is read
/// afresh from the API server instead, or (an object older than its own last status write)
/// left for the newer copy on its way.
#[derive(Default)]
pub struct OwnWrites {
    /// The writes not yet seen in a view, by the (namespace, name) they were made for.
    pending: PerOwner<Vec<Written>>,
}

impl OwnWrites {
    /// Notes `written`, made for `owner` in `namespace`; it replaces an earlier write of the
    /// same object, which a watch delivers before this one.
    pub fn record(&self, namespace: &str, owner: &str, written: Written) {
        let mut pending = self.pending.lock();
        let writes = pending
            .entry((namespace.to_owned(), owner.to_owned()))
            .or_default();
        writes.retain(|w| w.kind != written.kind || w.name != written.name);
        writes.push(written);
    }

    /// Whether a view of `owner` shows every write made for it, `cached` giving what the view
    /// holds of an object of a kind, by name (`None`: not part of the view, so not asked
    /// about). The writes it shows are forgotten: a view taken later shows them too.
    pub fn shown<'a>(
        &self,
        namespace: &str,
        owner: &str,
        cached: impl Fn(&str, &str) -> Option<Option<&'a ObjectMeta>>,
    ) -> bool {
        let key = (namespace.to_owned(), owner.to_owned());
        let mut pending = self.pending.lock();
        let Some(writes) = pending.get_mut(&key) else {
            return true;
        };
        let mut all = true;
        writes.retain(|w| match cached(&w.kind, &w.name) {
            Some(held) if w.shown_by(held) => false,
            Some(_) => {
                all = false;
                true
            }
            None => true,
        });
        if writes.is_empty() {
            pending.remove(&key);
        }
        all
    }

    /// Forgets the writes made for objects that are gone ([`PerOwner::sweep`]).
    pub fn sweep(&self, alive: impl Fn(&str, &str) -> bool) {
        self.pending.sweep(alive);
    }
}

/// Something kept per object (its namespace and name) for as long as the object lives: the
/// entries of objects that are gone are swept out now and then ([`PerOwner::sweep`]).
pub struct PerOwner<V> {
    map: std::sync::Mutex<std::collections::HashMap<(String, String), V>>,
    /// How many objects may have entries before the next sweep.
    sweep_at: std::sync::atomic::AtomicUsize,
}

impl<V> Default for PerOwner<V> {
    fn default() -> Self {
        PerOwner {
            map: Default::default(),
            sweep_at: Default::default(),
        }
    }
}

impl<V> PerOwner<V> {
    /// The entries, locked.
    pub fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<(String, String), V>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Forgets the entries of objects that are gone (`alive` says which are not), each time
    /// the objects with entries have doubled since the last time (at least 1,024).
    pub fn sweep(&self, alive: impl Fn(&str, &str) -> bool) {
        let mut map = self.lock();
        let at = self.sweep_at.load(std::sync::atomic::Ordering::Relaxed);
        if map.len() > at.max(1024) {
            map.retain(|(namespace, name), _| alive(namespace, name));
            self.sweep_at
                .store(2 * map.len(), std::sync::atomic::Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scope_holds_its_namespace_only_and_the_cluster_holds_all() {
        assert!(in_scope(&None, "shop"));
        assert!(in_scope(&Some("shop".into()), "shop"));
        assert!(!in_scope(&Some("shop".into()), "reseller"));
    }

    #[tokio::test]
    async fn every_reconcile_waiting_for_the_caches_wakes_once_they_are_filled() {
        use k8s_openapi::api::core::v1::Secret;
        let (reader, mut writer) = reflector::store::<Secret>();
        let synced = Synced::new(vec![listed(&reader)]);
        let waiters: Vec<_> = (0..4)
            .map(|_| {
                let synced = synced.clone();
                tokio::spawn(async move { synced.wait().await.is_ok() })
            })
            .collect();
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        writer.apply_watcher_event(&watcher::Event::Init);
        writer.apply_watcher_event(&watcher::Event::InitDone);
        for waiter in waiters {
            let woken = tokio::time::timeout(std::time::Duration::from_secs(5), waiter).await;
            assert!(woken.expect("every waiter is woken").expect("joins"));
        }
    }

    fn secret(uid: &str, version: &str) -> k8s_openapi::api::core::v1::Secret {
        let mut secret = k8s_openapi::api::core::v1::Secret::default();
        secret.metadata.name = Some("web-tls".into());
        secret.metadata.namespace = Some("shop".into());
        secret.metadata.uid = Some(uid.into());
        secret.metadata.resource_version = Some(version.into());
        secret
    }

    /// Whether a view holding `held` as Secret `web-tls` of Certificate `web` shows the writes.
    fn shown(writes: &OwnWrites, held: Option<&k8s_openapi::api::core::v1::Secret>) -> bool {
        writes.shown("shop", "web", |kind, name| {
            (kind == "Secret" && name == "web-tls").then(|| held.map(|s| &s.metadata))
        })
    }

    #[test]
    fn a_view_shows_a_write_once_it_holds_that_object_at_that_version_or_later() {
        let writes = OwnWrites::default();
        assert!(shown(&writes, None), "nothing written, nothing to show");
        writes.record("shop", "web", Written::applied(&secret("u1", "20")));
        assert!(!shown(&writes, None));
        assert!(!shown(&writes, Some(&secret("u1", "19"))));
        assert!(
            !shown(&writes, Some(&secret("u0", "15"))),
            "an older object"
        );
        assert!(shown(&writes, Some(&secret("u1", "100"))), "as numbers");
        // Shown once, forgotten: an older view no longer holds anything back.
        assert!(shown(&writes, Some(&secret("u1", "19"))));

        writes.record("shop", "web", Written::applied(&secret("u1", "20")));
        assert!(shown(&writes, Some(&secret("u2", "21"))), "a later object");

        let status = Written::at_version(&secret("u1", "20"), "25").expect("a number");
        writes.record("shop", "web", status);
        assert!(Written::at_version(&secret("u1", "20"), "x25").is_none());
        assert!(!shown(&writes, Some(&secret("u1", "24"))));
        assert!(shown(&writes, Some(&secret("u1", "25"))));

        writes.record("shop", "web", Written::deleted(&secret("u1", "30")));
        assert!(!shown(&writes, Some(&secret("u1", "30"))));
        assert!(
            !shown(&writes, Some(&secret("u1", "31"))),
            "not yet deleted"
        );
        assert!(!shown(&writes, Some(&secret("u0", "12"))), "from before");
        assert!(shown(&writes, Some(&secret("u2", "40"))), "created since");
        writes.record("shop", "web", Written::deleted(&secret("u1", "30")));
        assert!(shown(&writes, None));
    }

    #[test]
    fn a_later_write_replaces_an_earlier_one_and_other_objects_are_not_asked_about() {
        let writes = OwnWrites::default();
        writes.record("shop", "web", Written::deleted(&secret("u1", "30")));
        writes.record("shop", "web", Written::applied(&secret("u2", "31")));
        assert!(shown(&writes, Some(&secret("u2", "31"))));
        // A write of an object the view does not hold is kept, and does not hold it back.
        let mut other = secret("u3", "40");
        other.metadata.name = Some("old-tls".into());
        writes.record("shop", "web", Written::applied(&other));
        assert!(shown(&writes, None), "the view's Secret was not written");
        writes.record("shop", "web", Written::applied(&secret("u2", "41")));
        assert!(!shown(&writes, Some(&secret("u2", "31"))));
    }

    #[test]
    fn a_version_that_is_not_a_positive_number_is_never_shown() {
        for version in ["", "0", "012", "x17", "-5"] {
            let writes = OwnWrites::default();
            writes.record("shop", "web", Written::applied(&secret("u1", version)));
            assert!(!shown(&writes, Some(&secret("u1", "99"))), "{version:?}");
            let writes = OwnWrites::default();
            writes.record("shop", "web", Written::applied(&secret("u1", "5")));
            assert!(!shown(&writes, Some(&secret("u1", version))), "{version:?}");
        }
    }

    #[test]
    fn the_writes_of_objects_gone_are_swept_once_many_are_noted() {
        let writes = OwnWrites::default();
        for n in 0..1025 {
            writes.record(
                "shop",
                &format!("c{n}"),
                Written::applied(&secret("u1", "5")),
            );
        }
        let pending = |w: &OwnWrites| w.pending.lock().len();
        writes.sweep(|_, name| name == "c7");
        assert_eq!(pending(&writes), 1);
        // The next sweep waits until the noted objects have doubled again (at least 1,024).
        writes.record("shop", "c8", Written::applied(&secret("u1", "5")));
        writes.sweep(|_, _| false);
        assert_eq!(pending(&writes), 2);
    }

    #[test]
    fn a_making_serves_its_version_and_the_record_is_bounded() {
        let made: PerVersion<String> = PerVersion::default();
        let first = made
            .get(&secret("u1", "20"), |_| Ok::<_, ()>("first".to_owned()))
            .expect("made");
        assert_eq!(*first, "first");
        let kept = made.get(&secret("u1", "20"), |_| Ok::<_, ()>("again".to_owned()));
        assert_eq!(
            *kept.expect("made"),
            "first",
            "the same version is made once"
        );
        let later = made.get(&secret("u1", "21"), |_| Ok::<_, ()>("later".to_owned()));
        assert_eq!(
            *later.expect("made"),
            "later",
            "a later version is made again"
        );
        let failed = made.get(&secret("u1", "22"), |_| Err::<String, _>("broken"));
        assert_eq!(failed, Err("broken"));
        let after = made.get(&secret("u1", "22"), |_| Ok::<_, ()>("fixed".to_owned()));
        assert_eq!(*after.expect("made"), "fixed", "a failure is not kept");

        let mut unversioned = secret("u1", "23");
        unversioned.metadata.resource_version = None;
        let once = made.get(&unversioned, |_| Ok::<_, ()>("once".to_owned()));
        assert_eq!(*once.expect("made"), "once");
        let twice = made.get(&unversioned, |_| Ok::<_, ()>("twice".to_owned()));
        assert_eq!(
            *twice.expect("made"),
            "twice",
            "nothing is kept without a version"
        );

        for i in 0..PerVersion::<String>::LIMIT {
            let mut other = secret("u2", "1");
            other.metadata.name = Some(format!("other-{i}"));
            let _ = made.get(&other, |_| Ok::<_, ()>(String::new()));
        }
        let held = made.made.lock().map(|m| m.len()).unwrap_or_default();
        assert!(held <= PerVersion::<String>::LIMIT, "{held} held");
        let again = made.get(&secret("u1", "22"), |_| Ok::<_, ()>("again".to_owned()));
        assert_eq!(*again.expect("made"), "again", "the record started again");
    }

    #[tokio::test(start_paused = true)]
    async fn an_order_waits_for_room_in_the_intake_for_a_while_only() {
        let intake = Arc::new(Intake::default());
        let started = tokio::time::Instant::now();
        for n in 0..Intake::LIMIT {
            intake.enter("shop", &format!("web-{n}")).await;
        }
        assert_eq!(started.elapsed(), std::time::Duration::ZERO, "room for all");
        assert_eq!(intake.held(), Intake::LIMIT);

        // A full intake: the next Order waits until one is taken up.
        let waiting = {
            let intake = intake.clone();
            tokio::spawn(async move { intake.enter("shop", "late-1").await })
        };
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        assert!(!waiting.is_finished(), "no room yet");
        intake.taken("shop", "web-0");
        waiting.await.expect("entered");
        assert_eq!(started.elapsed(), std::time::Duration::from_millis(300));
        assert_eq!(intake.held(), Intake::LIMIT);

        // Taking up an Order that holds no place frees none; with none freed, an Order waits
        // Intake::WAIT and goes ahead without a place.
        intake.taken("shop", "hand-made");
        let before = tokio::time::Instant::now();
        intake.enter("shop", "late-2").await;
        assert_eq!(before.elapsed(), Intake::WAIT);
        assert_eq!(intake.held(), Intake::LIMIT);

        // Places held past Intake::STALE are given back to the next Order that finds none.
        tokio::time::advance(Intake::STALE).await;
        intake.enter("shop", "late-3").await;
        assert_eq!(before.elapsed(), Intake::WAIT + Intake::STALE, "no wait");
        assert_eq!(intake.held(), 1, "late-3's place only");
    }

    #[tokio::test(start_paused = true)]
    async fn stale_places_are_looked_for_at_most_once_a_second() {
        use std::time::Duration;
        let intake = Intake::default();
        intake.enter("shop", "web-1").await;
        tokio::time::advance(Intake::STALE - Duration::from_millis(500)).await;
        intake.give_back_stale();
        assert_eq!(intake.held(), 1, "not stale yet");
        tokio::time::advance(Duration::from_millis(600)).await;
        intake.give_back_stale();
        assert_eq!(intake.held(), 1, "stale, but looked over 0.6 s ago");
        tokio::time::advance(Duration::from_millis(400)).await;
        intake.give_back_stale();
        assert_eq!(intake.held(), 0, "given back a second after the last look");
    }

    #[tokio::test(start_paused = true)]
    async fn a_change_heard_before_its_writes_answer_waits_for_it() {
        type Changes = Vec<Result<k8s_openapi::api::core::v1::Secret, ()>>;
        let echoes = Arc::new(Echoes::default());
        let hear = |changes: Changes| {
            let heard = without_echoes(futures_util::stream::iter(changes), echoes.clone());
            tokio::spawn(heard.collect::<Vec<_>>())
        };

        // The write's event comes first; its answer is noted after.
        let sending = echoes.send::<k8s_openapi::api::core::v1::Secret>("shop", "web-tls");
        let heard = hear(vec![Ok(secret("u1", "20")), Ok(secret("u1", "21"))]);
        tokio::task::yield_now().await;
        assert!(!heard.is_finished(), "the change waits for the answer");
        echoes.note("shop", &Written::applied(&secret("u1", "20")));
        drop(sending);
        let heard = heard.await.expect("the watch");
        let versions: Vec<_> = heard
            .iter()
            .flatten()
            .map(|s| s.resource_version().unwrap_or_default())
            .collect();
        assert_eq!(
            versions,
            vec!["21"],
            "the echo is known once the answer is in"
        );

        // A write whose answer never comes holds a change up for a while only.
        let lost = echoes.send::<k8s_openapi::api::core::v1::Secret>("shop", "web-tls");
        let started = tokio::time::Instant::now();
        let heard = hear(vec![Ok(secret("u1", "22"))]).await.expect("the watch");
        assert_eq!(heard.len(), 1);
        assert_eq!(started.elapsed(), Echoes::ANSWER_WAIT);
        drop(lost);

        // Another object's change does not wait.
        let _other = echoes.send::<k8s_openapi::api::core::v1::Secret>("shop", "other");
        let started = tokio::time::Instant::now();
        let heard = hear(vec![Ok(secret("u1", "23"))]).await.expect("the watch");
        assert_eq!(
            (heard.len(), started.elapsed()),
            (1, std::time::Duration::ZERO)
        );
    }

    #[test]
    fn an_echo_is_the_controllers_own_write_coming_back_and_only_that() {
        let echoes = Echoes::default();
        assert!(!echoes.echoed(&secret("u1", "20")), "nothing written");

        echoes.note("shop", &Written::applied(&secret("u1", "20")));
        assert!(
            !echoes.echoed(&secret("u1", "19")),
            "an earlier change, by anyone"
        );
        assert!(echoes.echoed(&secret("u1", "20")), "the write itself");
        assert!(!echoes.echoed(&secret("u1", "20")), "heard once, forgotten");

        echoes.note("shop", &Written::applied(&secret("u1", "20")));
        assert!(
            !echoes.echoed(&secret("u1", "21")),
            "another writer's, later"
        );
        assert!(
            !echoes.echoed(&secret("u1", "20")),
            "forgotten by the later one"
        );

        echoes.note("shop", &Written::applied(&secret("u1", "20")));
        assert!(!echoes.echoed(&secret("u2", "20")), "another object");

        let status = Written::at_version(&secret("u1", "20"), "25").expect("a number");
        echoes.note("shop", &status);
        assert!(echoes.echoed(&secret("u1", "25")), "a status write");

        echoes.note("shop", &Written::applied(&secret("u1", "26")));
        echoes.forget("Secret", "shop", "web-tls");
        assert!(!echoes.echoed(&secret("u1", "26")), "forgotten on purpose");

        echoes.note("shop", &Written::applied(&secret("u1", "x27")));
        assert!(
            !echoes.echoed(&secret("u1", "x27")),
            "a version that is not a number is never told to be the write"
        );

        echoes.note("shop", &Written::deleted(&secret("u1", "30")));
        assert!(echoes.echoed(&secret("u1", "31")), "its deletion");
        assert!(!echoes.echoed(&secret("u1", "31")), "heard once, forgotten");
        echoes.note("shop", &Written::deleted(&secret("u1", "30")));
        assert!(!echoes.echoed(&secret("u2", "40")), "created since");
        assert!(
            !echoes.echoed(&secret("u1", "31")),
            "forgotten by the new one"
        );
    }

    #[test]
    fn the_echoes_start_again_past_their_limit() {
        let echoes = Echoes::default();
        for n in 0..Echoes::LIMIT {
            let mut other = secret("u1", "5");
            other.metadata.name = Some(format!("s{n}"));
            echoes.note("shop", &Written::applied(&other));
        }
        echoes.note("shop", &Written::applied(&secret("u1", "20")));
        let noted = echoes.written.lock().map(|w| w.len()).unwrap_or_default();
        assert_eq!(noted, 1);
        assert!(echoes.echoed(&secret("u1", "20")));
    }

    fn issued_order() -> (crate::api::Order, crate::api::order::OrderStatus) {
        let order: crate::api::Order = serde_json::from_value(serde_json::json!({
            "apiVersion": "certinext.io/v1alpha1", "kind": "Order",
            "metadata": {"name": "web-1", "namespace": "shop", "uid": "o1", "resourceVersion": "7"},
            "spec": {"certificateRef": {"name": "web"}, "revision": 1, "type": "Purchase",
                "duration": "2160h", "request": "-----BEGIN CERTIFICATE REQUEST-----"},
        }))
        .expect("an Order");
        let status: crate::api::order::OrderStatus = serde_json::from_value(serde_json::json!({
            "state": "Issued", "serialNumber": "0a",
            "certificate": "-----BEGIN CERTIFICATE-----", "ca": "-----BEGIN CERTIFICATE-----",
        }))
        .expect("a status");
        (order, status)
    }

    /// `order` with `status`, as the shared watch caches it once written.
    fn cached(
        order: &crate::api::Order,
        status: &crate::api::order::OrderStatus,
    ) -> crate::api::Order {
        let mut cached = crate::api::Order {
            status: Some(status.clone()),
            ..order.clone()
        };
        order_view(&mut cached);
        assert!(
            cached
                .status
                .as_ref()
                .is_some_and(|s| s.certificate.is_none())
        );
        cached
    }

    #[test]
    fn an_issued_status_is_taken_only_by_the_copy_that_shows_it() {
        let issued = IssuedOrders::default();
        let (order, status) = issued_order();
        assert!(issued.take(&cached(&order, &status)).is_none(), "none held");

        let signed = rcgen::generate_simple_self_signed(vec!["web.shop.example".to_owned()])
            .expect("a certificate");
        let info = crate::pki::inspect_der(signed.cert.der()).expect("it reads");
        issued.put(&order, &status, info.clone());
        let (whole, read) = issued
            .take(&cached(&order, &status))
            .expect("the status held");
        assert_eq!(whole.status.as_ref(), Some(&status));
        assert_eq!(read, info, "with the certificate as the signer read it");
        assert!(
            issued.take(&cached(&order, &status)).is_none(),
            "taken once"
        );

        // A write that failed: the Order shows another status, or is another Order.
        issued.put(&order, &status, info.clone());
        let mut other = status.clone();
        other.serial_number = Some("0b".into());
        assert!(issued.take(&cached(&order, &other)).is_none());
        assert!(issued.take(&cached(&order, &status)).is_none(), "let go");
        issued.put(&order, &status, info);
        let mut recreated = order.clone();
        recreated.metadata.uid = Some("o2".into());
        assert!(issued.take(&cached(&recreated, &status)).is_none());
    }

    #[test]
    fn a_request_is_known_only_byte_for_byte_to_its_own_order_and_once() {
        use crate::pki::Possession::{Known, Verify};
        let built = BuiltRequests::default();
        let (order, _) = issued_order();
        let request = order.spec.request.clone();
        assert_eq!(built.take(&order), Verify, "nothing noted");

        built.put("shop", "web-1", &request);
        assert_eq!(built.take(&order), Known);
        assert_eq!(built.take(&order), Verify, "taken once");

        // A request changed since it was built, or another Order's.
        built.put("shop", "web-1", &request);
        let mut changed = order.clone();
        changed.spec.request.push('\n');
        assert_eq!(built.take(&changed), Verify);
        assert_eq!(built.take(&order), Verify, "let go");
        built.put("shop", "web-2", &request);
        built.put("other", "web-1", &request);
        assert_eq!(built.take(&order), Verify);
        assert_eq!(built.held(), 2);

        // Bounded: past the limit the record starts again.
        for n in 0..BuiltRequests::LIMIT {
            built.put("shop", &format!("o{n}"), &request);
        }
        assert!(built.held() <= BuiltRequests::LIMIT);
    }

    #[test]
    fn an_index_finds_the_labelled_objects_the_cache_still_holds() {
        use k8s_openapi::api::core::v1::Secret;
        let (reader, mut writer) = reflector::store::<Secret>();
        let secret = |name: &str, certificate: &str| {
            let mut secret = Secret::default();
            secret.metadata.name = Some(name.into());
            secret.metadata.namespace = Some("shop".into());
            secret.metadata.labels = Some([("cert".to_owned(), certificate.to_owned())].into());
            secret
        };
        let index = LabelIndex::default();
        for s in [
            secret("web-1", "web"),
            secret("web-2", "web"),
            secret("api-1", "api"),
        ] {
            writer.apply_watcher_event(&watcher::Event::Apply(s.clone()));
            index.note("cert", &s);
        }
        let names = |found: Vec<Arc<Secret>>| -> Vec<String> {
            found
                .into_iter()
                .filter_map(|s| s.metadata.name.clone())
                .collect()
        };
        assert_eq!(
            names(index.objects(&reader, "shop", "web")),
            ["web-1", "web-2"]
        );
        assert!(index.objects(&reader, "other", "web").is_empty());
        writer.apply_watcher_event(&watcher::Event::Delete(secret("web-1", "web")));
        assert_eq!(names(index.objects(&reader, "shop", "web")), ["web-2"]);
    }
}
