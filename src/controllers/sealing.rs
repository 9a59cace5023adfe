//! The operator's sealing key: it seals the private key of each Order the Certificate
//! controller makes into the Order itself ([`crate::pki::seal`]), so that the key of an Order
//! in flight outlives a restart without a Secret written and deleted per certificate.
//!
//! The key lives in the Secret [`SECRET_NAME`] in the operator's own namespace, made by the
//! first replica that needs it and read by the others. Nothing else reads it: tenants, who
//! can read their Orders, cannot open what is sealed in them. A sealing key that is deleted
//! is replaced by a new one at the next start; Orders in flight sealed under the old one then
//! lose their keys, and their Certificates order again.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::PostParams;
use kube::{Api, Client};

use super::Error;
use crate::pki::{self, KeyPair, SealingKey};

/// The Secret holding the sealing key, in the operator's own namespace.
pub const SECRET_NAME: &str = "certinext-sealing-key";
/// The Secret's data key holding the key's bytes.
const DATA_KEY: &str = "key";

/// What a sealed private key is bound to: the Certificate it is for and the request it
/// answers, so that it opens in no other Order.
fn bound_to(namespace: &str, certificate: &str, request: &str) -> Vec<u8> {
    format!("certinext.io Order key\n{namespace}/{certificate}\n{request}").into_bytes()
}

/// `key`, sealed for the Order of Certificate `namespace/certificate` carrying `request`.
pub fn seal(
    sealing: &SealingKey,
    key: &KeyPair,
    namespace: &str,
    certificate: &str,
    request: &str,
) -> Result<String, Error> {
    sealing
        .seal(key.pkcs8_der(), &bound_to(namespace, certificate, request))
        .map_err(|e| {
            Error::Internal(format!(
                "Certificate {namespace}/{certificate}: sealing its private key: {e}"
            ))
        })
}

/// The private key sealed in an Order of Certificate `namespace/certificate` carrying
/// `request`, or why it cannot be had.
pub fn open(
    sealing: &SealingKey,
    sealed: &str,
    namespace: &str,
    certificate: &str,
    request: &str,
) -> Result<KeyPair, String> {
    let der = sealing
        .open(sealed, &bound_to(namespace, certificate, request))
        .map_err(|e| format!("spec.sealedKey: {e}"))?;
    pki::load_key_pkcs8_der(&der).map_err(|e| format!("spec.sealedKey: {e}"))
}

/// The sealing key from its Secret in `namespace`, made if there is none. Of two replicas
/// making it at once, the one whose create fails reads the other's.
pub async fn load_or_create(client: &Client, namespace: &str) -> Result<SealingKey, Error> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let what = format!("Secret {namespace}/{SECRET_NAME}");
    let from = |secret: Secret| {
        let bytes = secret
            .data
            .as_ref()
            .and_then(|d| d.get(DATA_KEY))
            .map(|b| b.0.as_slice())
            .unwrap_or_default();
        SealingKey::from_bytes(bytes).map_err(|e| {
            Error::Internal(format!(
                "{what}: data.{DATA_KEY}: {e}; delete the Secret to have a new key made (Orders in flight then lose their keys and are ordered again)"
            ))
        })
    };
    if let Some(secret) = api.get_opt(SECRET_NAME).await? {
        return from(secret);
    }
    let bytes = SealingKey::generate().map_err(|e| Error::Internal(format!("{what}: {e}")))?;
    let mut secret = Secret {
        type_: Some("Opaque".into()),
        data: Some([(DATA_KEY.to_owned(), ByteString(bytes.to_vec()))].into()),
        ..Default::default()
    };
    secret.metadata.name = Some(SECRET_NAME.into());
    secret.metadata.labels = Some(
        [(
            "app.kubernetes.io/part-of".to_owned(),
            "certinext".to_owned(),
        )]
        .into(),
    );
    let params = PostParams {
        field_manager: Some(super::certificate::MANAGER.into()),
        ..Default::default()
    };
    match api.create(&params, &secret).await {
        Ok(created) => {
            tracing::info!(secret = %what, "made the key that seals pending private keys");
            from(created)
        }
        Err(kube::Error::Api(response)) if response.code == 409 => {
            match api.get_opt(SECRET_NAME).await? {
                Some(secret) => from(secret),
                None => Err(Error::Internal(format!(
                    "{what} was made by someone else and deleted again; retrying"
                ))),
            }
        }
        Err(error) => Err(error.into()),
    }
}

/// [`load_or_create`], retried until it succeeds: no Order can be made without it.
pub async fn load(client: &Client, namespace: &str) -> Arc<SealingKey> {
    let mut wait = Duration::from_millis(500);
    loop {
        match load_or_create(client, namespace).await {
            Ok(key) => return Arc::new(key),
            Err(error) => {
                tracing::error!(
                    secret = %format!("{namespace}/{SECRET_NAME}"),
                    error = %error,
                    retry_in = ?wait,
                    "cannot read or make the sealing key; the Certificate controller waits for it"
                );
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(30));
            }
        }
    }
}
