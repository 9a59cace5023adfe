//! What kube-controller-manager and the apiextensions controllers do for the objects devcluster
//! serves: empty a terminating namespace, then let it go; delete a terminating CRD's objects,
//! then let it go; collect garbage by owner references (background, foreground, orphan).

use crate::At;
use std::sync::Arc;

use serde_json::Value;
use tokio::sync::watch;

use crate::api::{
    CRD_CLEANUP_FINALIZER, Cluster, DeleteOptions, FOREGROUND_FINALIZER, NAMESPACE_FINALIZER,
    ORPHAN_FINALIZER, finalizers, is_deleting, remove_finalizer,
};
use crate::registry::{CRD_KEY, NAMESPACE_KEY, defs_from_crd};
use crate::store::{Change, Event, EventType, ObjectKey, owner_uids};
use tokio::sync::broadcast;

fn uid(object: &Value) -> Option<&str> {
    object.at(&["metadata", "uid"]).and_then(Value::as_str)
}

/// Runs until `shutdown` turns true, acting on every change.
pub async fn run(cluster: Arc<Cluster>, mut shutdown: watch::Receiver<bool>) {
    let mut changes = cluster.store.changes();
    loop {
        tokio::select! {
            received = changes.recv() => {
                let event = match received {
                    Ok(event) => Some(event),
                    // Missed changes: look at everything instead.
                    Err(broadcast::error::RecvError::Lagged(_)) => None,
                    Err(broadcast::error::RecvError::Closed) => return,
                };
                let may_wait = cluster.may_wait();
                let cluster = cluster.clone();
                let work = move || {
                    match &event {
                        Some(event) => {
                            collect_garbage(&cluster, event);
                            // A terminating namespace or CRD moves on when it changes or when
                            // one of its objects goes; nothing else concerns the sweep.
                            let terminations = [NAMESPACE_KEY, CRD_KEY].contains(&event.key.resource.as_str())
                                || (event.kind == EventType::Deleted && in_termination(&cluster, &event.key));
                            if terminations {
                                sweep(&cluster);
                            }
                        }
                        None => {
                            collect_all_garbage(&cluster);
                            sweep(&cluster);
                        }
                    }
                };
                // As with requests: a change is CPU work, handed to another thread only when
                // its writes may wait for the disk.
                if may_wait {
                    let _ = tokio::task::spawn_blocking(work).await;
                } else {
                    work();
                }
            }
            _ = shutdown.changed() => return,
        }
    }
}

/// Whether the object at `key` was in a terminating namespace or of a terminating CRD's
/// resource: only then does its going move a termination on.
fn in_termination(cluster: &Cluster, key: &ObjectKey) -> bool {
    let deleting = |key: ObjectKey| cluster.store.get(&key).is_some_and(|o| is_deleting(&o));
    if !key.namespace.is_empty() && deleting(ObjectKey::new(NAMESPACE_KEY, "", &key.namespace)) {
        return true;
    }
    cluster
        .def_by_key(&key.resource)
        .filter(|def| def.custom)
        .is_some_and(|def| {
            deleting(ObjectKey::new(
                CRD_KEY,
                "",
                &format!("{}.{}", def.plural, def.group),
            ))
        })
}

/// The garbage collector's part of a change: dependents of a deleted owner, an object whose
/// owners are all gone, an owner deleted in the foreground or orphaning its dependents.
fn collect_garbage(cluster: &Cluster, event: &Event) {
    let object = &event.object;
    match event.kind {
        EventType::Deleted => {
            if let Some(uid) = uid(object) {
                for dependent in cluster.store.dependents_of(uid) {
                    collect_if_orphaned(cluster, &dependent);
                }
            }
            // A dependent going may release an owner waiting in the foreground.
            for owner in owner_uids(object) {
                if let Some(key) = cluster.store.key_of_uid(owner) {
                    finish_owner_deletion(cluster, &key);
                }
            }
        }
        EventType::Added | EventType::Modified => {
            if owner_uids(object).next().is_some() {
                collect_if_orphaned(cluster, &event.key);
            }
            if is_deleting(object) {
                finish_owner_deletion(cluster, &event.key);
            }
        }
    }
}

/// Every object with owners, and every owner being deleted, looked at afresh.
fn collect_all_garbage(cluster: &Cluster) {
    for key in cluster.store.owned() {
        collect_if_orphaned(cluster, &key);
    }
    for def in cluster.resources() {
        for key in cluster.store.keys(&def.key(), None) {
            if cluster.store.get(&key).is_some_and(|o| is_deleting(&o)) {
                finish_owner_deletion(cluster, &key);
            }
        }
    }
}

/// Deletes the object at `key` when it has owner references and none of its owners exists.
fn collect_if_orphaned(cluster: &Cluster, key: &ObjectKey) {
    let Some(object) = cluster.store.get(key) else {
        return;
    };
    let mut owners = owner_uids(&object).peekable();
    if owners.peek().is_none() || is_deleting(&object) {
        return;
    }
    let any_owner_left = owners.any(|uid| cluster.store.key_of_uid(uid).is_some());
    if !any_owner_left {
        delete(cluster, key);
    }
}

/// For an owner being deleted in the foreground: delete its dependents, and release it once
/// none that blocks its deletion is left. For an owner orphaning its dependents: remove its
/// owner reference from each, then release it.
fn finish_owner_deletion(cluster: &Cluster, key: &ObjectKey) {
    let Some(owner) = cluster.store.get(key) else {
        return;
    };
    let Some(uid) = uid(&owner).map(str::to_owned) else {
        return;
    };
    let held_by = finalizers(&owner);
    if held_by.iter().any(|f| f == ORPHAN_FINALIZER) {
        for dependent in cluster.store.dependents_of(&uid) {
            let _ =
                cluster
                    .store
                    .mutate::<crate::persist::PersistError>(&dependent, |current, _| {
                        let Some(current) = current else {
                            return Ok(Change::Keep);
                        };
                        let mut next = (**current).clone();
                        if let Some(references) = next
                            .pointer_mut("/metadata/ownerReferences")
                            .and_then(Value::as_array_mut)
                        {
                            references.retain(|r| {
                                r.get("uid").and_then(Value::as_str) != Some(uid.as_str())
                            });
                        }
                        Ok(Change::Put(next))
                    });
        }
        release(cluster, key, ORPHAN_FINALIZER);
    } else if held_by.iter().any(|f| f == FOREGROUND_FINALIZER) {
        let mut blocking = false;
        for dependent in cluster.store.dependents_of(&uid) {
            let Some(object) = cluster.store.get(&dependent) else {
                continue;
            };
            let blocks = object
                .at(&["metadata", "ownerReferences"])
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .any(|r| {
                    r.get("uid").and_then(Value::as_str) == Some(uid.as_str())
                        && r.get("blockOwnerDeletion").and_then(Value::as_bool) == Some(true)
                });
            blocking |= blocks;
            delete(cluster, &dependent);
        }
        if !blocking {
            release(cluster, key, FOREGROUND_FINALIZER);
        }
    }
}

/// One pass over terminating namespaces and CRDs.
pub fn sweep(cluster: &Cluster) {
    let (namespaces, _) = cluster.store.list(NAMESPACE_KEY, None);
    for namespace in namespaces.iter().filter(|n| is_deleting(n)) {
        let Some(name) = namespace.at(&["metadata", "name"]).and_then(Value::as_str) else {
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
        let Some(name) = crd.at(&["metadata", "name"]).and_then(Value::as_str) else {
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
    let outcome = cluster
        .store
        .mutate::<crate::persist::PersistError>(key, |current, _| {
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
