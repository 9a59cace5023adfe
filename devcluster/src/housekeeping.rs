//! What kube-controller-manager and the apiextensions controllers do for the objects devcluster
//! serves: empty a terminating namespace, then let it go; delete a terminating CRD's objects,
//! then let it go.

use std::sync::Arc;

use serde_json::Value;
use tokio::sync::watch;

use crate::api::{
    CRD_CLEANUP_FINALIZER, Cluster, DeleteOptions, NAMESPACE_FINALIZER, finalizers, is_deleting,
    remove_finalizer,
};
use crate::registry::{CRD_KEY, NAMESPACE_KEY, defs_from_crd};
use crate::store::{Change, ObjectKey};

/// Runs until `shutdown` turns true, sweeping after every change.
pub async fn run(cluster: Arc<Cluster>, mut shutdown: watch::Receiver<bool>) {
    let mut changes = cluster.store.changes();
    loop {
        tokio::select! {
            received = changes.recv() => {
                if let Err(tokio::sync::broadcast::error::RecvError::Closed) = received {
                    return;
                }
                // Lagging only means several changes arrived at once: one sweep covers them.
                let cluster = cluster.clone();
                let _ = tokio::task::spawn_blocking(move || sweep(&cluster)).await;
            }
            _ = shutdown.changed() => return,
        }
    }
}

/// One pass over terminating namespaces and CRDs.
pub fn sweep(cluster: &Cluster) {
    let (namespaces, _) = cluster.store.list(NAMESPACE_KEY, None);
    for namespace in namespaces.iter().filter(|n| is_deleting(n)) {
        let Some(name) = namespace.pointer("/metadata/name").and_then(Value::as_str) else {
            continue;
        };
        let contents = cluster.store.keys_in_namespace(name);
        if contents.is_empty() {
            release(
                cluster,
                &ObjectKey::new(NAMESPACE_KEY, "", name),
                NAMESPACE_FINALIZER,
            );
        } else {
            for key in contents {
                delete(cluster, &key);
            }
        }
    }
    let (crds, _) = cluster.store.list(CRD_KEY, None);
    for crd in crds.iter().filter(|c| is_deleting(c)) {
        let Some(name) = crd.pointer("/metadata/name").and_then(Value::as_str) else {
            continue;
        };
        let Some(resource) = defs_from_crd(crd)
            .ok()
            .and_then(|d| d.first().map(|d| d.key()))
        else {
            release(
                cluster,
                &ObjectKey::new(CRD_KEY, "", name),
                CRD_CLEANUP_FINALIZER,
            );
            continue;
        };
        let instances = cluster.store.keys(&resource, None);
        if instances.is_empty() {
            release(
                cluster,
                &ObjectKey::new(CRD_KEY, "", name),
                CRD_CLEANUP_FINALIZER,
            );
        } else {
            for key in instances {
                delete(cluster, &key);
            }
        }
    }
}

/// Deletes an object the way a client would, honouring its finalizers.
fn delete(cluster: &Cluster, key: &ObjectKey) {
    let Some(def) = cluster.def_by_key(&key.resource) else {
        return;
    };
    let already = cluster.store.get(key).is_some_and(|o| is_deleting(&o));
    if !already {
        let _ = cluster.delete_object(&def, key, &DeleteOptions::default(), false);
    }
}

/// Removes the system finalizer from a terminating object, and the object once nothing else
/// holds it.
fn release(cluster: &Cluster, key: &ObjectKey, finalizer: &str) {
    let Some(def) = cluster.def_by_key(&key.resource) else {
        return;
    };
    let outcome = cluster.store.mutate::<()>(key, |current, _| {
        let Some(current) = current else {
            return Ok(Change::Keep);
        };
        let mut next = (**current).clone();
        remove_finalizer(&mut next, finalizer);
        Ok(if finalizers(&next).is_empty() {
            Change::Remove
        } else {
            Change::Put(next)
        })
    });
    if let Ok(crate::store::Outcome::Removed(object)) = outcome {
        cluster.after_remove(&def, &object);
    }
}
