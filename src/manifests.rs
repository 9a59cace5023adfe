//! Applying YAML manifests (CRDs, examples) to a cluster with server-side apply, as
//! `kubectl apply --server-side` does.

use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::discovery::{self, Scope};
use kube::{Client, ResourceExt};
use serde::Deserialize;

/// Why a manifest could not be applied, naming the object.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("document {index}: not a Kubernetes object: {source}")]
    Parse {
        index: usize,
        source: serde_yaml::Error,
    },
    #[error("document {index}: {what}")]
    Malformed { index: usize, what: String },
    #[error("{kind} {name:?}: {source}")]
    Api {
        kind: String,
        name: String,
        source: kube::Error,
    },
}

/// The objects of a multi-document YAML stream, empty documents skipped.
pub fn parse(yaml: &str) -> Result<Vec<DynamicObject>, ApplyError> {
    let mut objects = Vec::new();
    for (index, document) in serde_yaml::Deserializer::from_str(yaml).enumerate() {
        let value = serde_yaml::Value::deserialize(document)
            .map_err(|source| ApplyError::Parse { index, source })?;
        if value.is_null() {
            continue;
        }
        let object: DynamicObject =
            serde_yaml::from_value(value).map_err(|source| ApplyError::Parse { index, source })?;
        if object.types.is_none() || object.metadata.name.is_none() {
            return Err(ApplyError::Malformed {
                index,
                what: "apiVersion, kind and metadata.name are required".into(),
            });
        }
        objects.push(object);
    }
    Ok(objects)
}

/// Applies every object of `yaml` in order with the field manager `manager`, resolving each
/// kind through discovery. Returns `kind/name` of each object applied.
pub async fn apply(client: &Client, yaml: &str, manager: &str) -> Result<Vec<String>, ApplyError> {
    let params = PatchParams::apply(manager).force();
    let mut applied = Vec::new();
    for object in parse(yaml)? {
        let types = object.types.clone().unwrap_or_default();
        let name = object.name_any();
        let api_error = |source| ApplyError::Api {
            kind: types.kind.clone(),
            name: name.clone(),
            source,
        };
        let gvk = GroupVersionKind::try_from(&types).map_err(|e| ApplyError::Malformed {
            index: applied.len(),
            what: e.to_string(),
        })?;
        let (resource, capabilities) = discovery::pinned_kind(client, &gvk)
            .await
            .map_err(api_error)?;
        let api: Api<DynamicObject> = match (capabilities.scope, object.namespace()) {
            (Scope::Cluster, _) => Api::all_with(client.clone(), &resource),
            (Scope::Namespaced, Some(namespace)) => {
                Api::namespaced_with(client.clone(), &namespace, &resource)
            }
            (Scope::Namespaced, None) => Api::default_namespaced_with(client.clone(), &resource),
        };
        api.patch(&name, &params, &Patch::Apply(&object))
            .await
            .map_err(api_error)?;
        applied.push(format!("{}/{name}", types.kind.to_ascii_lowercase()));
    }
    Ok(applied)
}
