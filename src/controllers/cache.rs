//! Reflector caches: what a reconcile reads instead of asking the API server.
//!
//! One watch per kind and controller both fills the cache and triggers the controller, so a
//! cache costs no extra watch. Cached objects lose their `managedFields`, which no reconcile
//! reads and which would double the memory they take.

use std::fmt::Debug;
use std::sync::Arc;

use futures_util::Stream;
use kube::api::Api;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;

use super::{Error, Scope};

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
    let stream = watcher(api, config)
        .default_backoff()
        .modify(|object: &mut K| object.managed_fields_mut().clear());
    (
        reader,
        reflector::reflector(writer, stream).touched_objects(),
    )
}

/// Waits until `store` holds its first complete list: a reconcile must not take an object
/// the cache has not listed yet for one that does not exist.
pub async fn synced<K>(store: &Store<K>) -> Result<(), Error>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    store
        .wait_until_ready()
        .await
        .map_err(|_| Error::Internal(format!("the {} cache stopped", K::kind(&()))))
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

/// The cached objects of `namespace` whose label `key` has `value`.
pub fn labelled<K>(store: &Store<K>, namespace: &str, key: &str, value: &str) -> Vec<K>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    store
        .state_filter(|o| {
            o.namespace().as_deref() == Some(namespace)
                && o.labels().get(key).map(String::as_str) == Some(value)
        })
        .into_iter()
        .map(|o| (*o).clone())
        .collect()
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
}
