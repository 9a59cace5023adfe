//! Writes whose answer is used only for the identity and version of the object they left.
//!
//! The API server answers a write with the whole object: its managed fields, a Secret's
//! data, a status. A controller that only notes the resourceVersion it wrote would decode
//! all of that into a typed object and drop it. A [`Receipt`] reads the answer's
//! `metadata.name`, `namespace`, `uid`, `resourceVersion` and `generation`, and skips the rest
//! without building it.

use std::borrow::Cow;
use std::fmt::Debug;
use std::marker::PhantomData;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde::{Deserialize, Serialize};

/// The object a write left, as far as its identity and version go.
#[derive(Clone, Debug)]
pub struct Receipt<K> {
    metadata: ObjectMeta,
    kind: PhantomData<fn() -> K>,
}

impl<'de, K> Deserialize<'de> for Receipt<K> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Answer {
            #[serde(default)]
            metadata: Identity,
        }
        #[derive(Default, Deserialize)]
        #[serde(default, rename_all = "camelCase")]
        struct Identity {
            name: Option<String>,
            namespace: Option<String>,
            uid: Option<String>,
            resource_version: Option<String>,
            generation: Option<i64>,
        }
        let Identity {
            name,
            namespace,
            uid,
            resource_version,
            generation,
        } = Answer::deserialize(deserializer)?.metadata;
        Ok(Receipt {
            metadata: ObjectMeta {
                name,
                namespace,
                uid,
                resource_version,
                generation,
                ..ObjectMeta::default()
            },
            kind: PhantomData,
        })
    }
}

impl<K: kube::Resource> kube::Resource for Receipt<K> {
    type DynamicType = K::DynamicType;
    type Scope = K::Scope;

    fn kind(dt: &Self::DynamicType) -> Cow<'_, str> {
        K::kind(dt)
    }

    fn group(dt: &Self::DynamicType) -> Cow<'_, str> {
        K::group(dt)
    }

    fn version(dt: &Self::DynamicType) -> Cow<'_, str> {
        K::version(dt)
    }

    fn plural(dt: &Self::DynamicType) -> Cow<'_, str> {
        K::plural(dt)
    }

    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

/// [`Api::patch`] of the object `name`, or of its `subresource` ([`Api::patch_status`] for
/// `Some("status")`), answered with a [`Receipt`].
pub async fn patch<K, P>(
    api: &Api<K>,
    subresource: Option<&str>,
    name: &str,
    params: &PatchParams,
    patch: &Patch<P>,
) -> kube::Result<Receipt<K>>
where
    K: kube::Resource + Clone,
    P: Serialize + Debug,
{
    let request = kube::core::Request::new(api.resource_url());
    let (request, verb) = match subresource {
        None => (request.patch(name, params, patch), "patch"),
        Some(sub) => (
            request.patch_subresource(sub, name, params, patch),
            if sub == "status" {
                "patch_status"
            } else {
                "patch_subresource"
            },
        ),
    };
    let mut request = request.map_err(kube::Error::BuildRequest)?;
    // The verb, as `Api`'s own calls name it for the client's tracing.
    request.extensions_mut().insert(verb);
    api.clone().into_client().request(request).await
}

/// [`Api::create`] of `object`, answered with a [`Receipt`].
pub async fn create<K>(api: &Api<K>, params: &PostParams, object: &K) -> kube::Result<Receipt<K>>
where
    K: kube::Resource + Clone + Serialize,
{
    let body = serde_json::to_vec(object).map_err(kube::Error::SerdeError)?;
    let mut request = kube::core::Request::new(api.resource_url())
        .create(params, body)
        .map_err(kube::Error::BuildRequest)?;
    // The verb, as `Api`'s own calls name it for the client's tracing.
    request.extensions_mut().insert("create");
    api.clone().into_client().request(request).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Secret;
    use kube::{Resource, ResourceExt};
    use serde_json::json;

    #[test]
    fn a_receipt_keeps_the_identity_and_version_and_nothing_else() {
        let answer = json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": "web-tls", "namespace": "shop", "uid": "u-1",
                "resourceVersion": "42", "generation": 3,
                "labels": {"a": "b"},
                "managedFields": [{"manager": "m", "operation": "Apply",
                    "fieldsType": "FieldsV1", "fieldsV1": {"f:data": {"f:tls.crt": {}}}}]
            },
            "type": "kubernetes.io/tls",
            "data": {"tls.crt": "bm90IGJhc2U2NCE=", "tls.key": "a2V5"}
        });
        let receipt: Receipt<Secret> = serde_json::from_value(answer).expect("a receipt");
        assert_eq!(receipt.name_any(), "web-tls");
        assert_eq!(receipt.namespace().as_deref(), Some("shop"));
        assert_eq!(receipt.uid().as_deref(), Some("u-1"));
        assert_eq!(receipt.resource_version().as_deref(), Some("42"));
        assert_eq!(receipt.meta().generation, Some(3));
        assert!(receipt.labels().is_empty());
        assert!(receipt.managed_fields().is_empty());
        assert_eq!(Receipt::<Secret>::kind(&()), "Secret");
        assert_eq!(
            Receipt::<Secret>::url_path(&(), Some("shop")),
            "/api/v1/namespaces/shop/secrets"
        );
    }

    #[test]
    fn an_answer_without_metadata_is_an_empty_receipt() {
        let receipt: Receipt<Secret> =
            serde_json::from_value(json!({"kind": "Secret"})).expect("a receipt");
        assert_eq!(receipt.resource_version(), None);
    }
}
