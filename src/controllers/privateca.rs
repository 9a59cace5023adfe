//! The PrivateCA controller: a root or intermediate CA whose key pair lives in a Secret.
//!
//! dereference (the account holding the namespace; for an intermediate, its parent PrivateCA
//! and the signer in the parent's Secret; the CA's own Secret) → validate (pure: the PrivateCA
//! capability, the parent's account, existence, readiness and path length, the key and the
//! subject) → decide (pure: issue when the Secret is missing or invalid, when the certificate
//! no longer matches the spec or the parent, or when renewal is due) → key (kept on renewal
//! unless `rotationPolicy` is Always or the algorithm changed) → sign → apply the Secret
//! (server-side, owned by the PrivateCA) → status → requeue at the renewal time.
//!
//! Children follow their parent: a change of a PrivateCA (its status names the certificate in
//! force) wakes the intermediates below it, which re-sign when the parent's chain moved.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use jiff::Timestamp;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use serde_json::{Value, json};

use super::{Context, Error, Refusal, Standing, Tenancy, api_of, error_policy, no_account, report};
use crate::api::common::{KeyAlgorithm, PrivateKey, PrivateKeyEncoding, RotationPolicy};
use crate::api::{Account, PrivateCA};
use crate::capabilities::{self, Capability};
use crate::pki::{self, CaProfile, CertificateInfo, Issuer, KeyPair, PkiError};

/// The field manager of what this controller writes.
pub const MANAGER: &str = "certinext-privateca-controller";
/// The label naming the PrivateCA a CA Secret belongs to.
pub const CA_LABEL: &str = "certinext.io/private-ca";
/// The label on every Secret the operator writes, and the only Secrets it watches.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// The value of [`MANAGED_BY_LABEL`].
pub const OPERATOR: &str = "certinext-operator";
/// The longest wait between two reconciles of a CA that needs nothing.
const MAX_REQUEUE: Duration = Duration::from_secs(3600);
/// How soon a CA refused because of its parent looks again (parent changes also wake it).
const PARENT_RETRY: Duration = Duration::from_secs(30);

/// Name of the CA's Secret: `spec.secretName`, or `<name>-ca`.
pub fn secret_name(ca: &PrivateCA) -> String {
    ca.spec
        .secret_name
        .clone()
        .unwrap_or_else(|| format!("{}-ca", ca.name_any()))
}

/// The parent an intermediate names, as (namespace, name); the namespace defaults to the CA's.
pub fn parent_of(ca: &PrivateCA) -> Option<(String, String)> {
    let parent = ca.spec.parent_ref.as_ref()?;
    let namespace = parent
        .namespace
        .clone()
        .or_else(|| ca.namespace())
        .unwrap_or_default();
    Some((namespace, parent.name.clone()))
}

/// The intermediates among `cas` whose parent is `parent`: what a change of `parent` wakes.
pub fn children(cas: &[Arc<PrivateCA>], parent: &PrivateCA) -> Vec<ObjectRef<PrivateCA>> {
    let wanted = (parent.namespace().unwrap_or_default(), parent.name_any());
    cas.iter()
        .filter(|ca| parent_of(ca).as_ref() == Some(&wanted))
        .map(|ca| ObjectRef::from_obj(&**ca))
        .collect()
}

/// An intermediate's parent as dereferenced.
pub struct Parent {
    /// Namespace of the parent.
    pub namespace: String,
    /// Name of the parent.
    pub name: String,
    /// The account holding the parent's namespace.
    pub holder: Option<Arc<Account>>,
    /// The parent PrivateCA, when it exists.
    pub ca: Option<PrivateCA>,
    /// The signer rebuilt from the parent's Secret, or why there is none.
    pub issuer: Result<Issuer, String>,
}

/// Whether a PrivateCA's `Ready` condition is True.
fn is_ready(ca: &PrivateCA) -> Option<Result<(), String>> {
    let ready = ca
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")?;
    Some(if ready.status == "True" {
        Ok(())
    } else {
        Err(ready.message.clone())
    })
}

/// Checks a PrivateCA against its account and, for an intermediate, its parent. Pure.
pub fn validate(ca: &PrivateCA, account: &Account, parent: Option<&Parent>) -> Result<(), Refusal> {
    let name = ca.name_any();
    let account_name = account.name_any();
    let invalid =
        |message: String| Refusal::new("InvalidSpec", format!("PrivateCA {name:?}: {message}"));
    capabilities::check(
        &account_name,
        account.spec.account_type,
        Capability::PrivateCA,
    )
    .map_err(|denial| Refusal::new("CapabilityDenied", denial.for_object("PrivateCA", &name)))?;

    let key = &ca.spec.private_key;
    if key.key_algorithm().is_none() {
        return Err(invalid(format!(
            "spec.privateKey.size {} does not exist for {:?} keys",
            key.size.unwrap_or_default(),
            key.algorithm
        )));
    }
    pki::csr::distinguished_name(
        Some(&ca.spec.subject.common_name),
        "spec.subject.commonName",
        Some(&ca.spec.subject.rest),
        "spec.subject",
    )
    .map_err(|e| invalid(e.to_string()))?;
    if ca.spec.duration.is_negative() {
        return Err(invalid(format!(
            "spec.duration {} must not be negative",
            ca.spec.duration
        )));
    }
    if let Some(before) = &ca.spec.renew_before
        && before.is_negative()
    {
        return Err(invalid(format!(
            "spec.renewBefore {before} must not be negative"
        )));
    }
    if let Some(nc) = &ca.spec.name_constraints {
        for (kind, items) in [("permitted", &nc.permitted), ("excluded", &nc.excluded)] {
            for (i, domain) in items.iter().flat_map(|i| i.dns_domains.iter()).enumerate() {
                pki::validate_dns_name(domain).map_err(|reason| {
                    invalid(format!(
                        "spec.nameConstraints.{kind}.dnsDomains[{i}] {domain:?}: {reason}"
                    ))
                })?;
            }
        }
    }

    let Some(parent) = parent else {
        return Ok(());
    };
    let parent_ref = format!("{}/{}", parent.namespace, parent.name);
    if Some(&parent.namespace) == ca.metadata.namespace.as_ref() && parent.name == name {
        return Err(invalid("spec.parentRef names the PrivateCA itself".into()));
    }
    let allowed = parent.holder.as_ref().is_some_and(|holder| {
        holder.name_any() == account_name
            || account
                .spec
                .parent
                .as_ref()
                .is_some_and(|p| p.account == holder.name_any())
    });
    if !allowed {
        let holder = parent.holder.as_ref().map_or("no account".to_owned(), |a| {
            format!("account {:?}", a.name_any())
        });
        return Err(Refusal::new(
            "ParentNotAllowed",
            format!(
                "PrivateCA {name:?}: spec.parentRef names PrivateCA {parent_ref:?} in a namespace of {holder}, not of account {account_name:?} or its parent reseller"
            ),
        ));
    }
    let Some(parent_ca) = &parent.ca else {
        return Err(Refusal::new(
            "ParentNotFound",
            format!("PrivateCA {name:?}: parent PrivateCA {parent_ref:?} does not exist"),
        ));
    };
    let not_ready = |why: String| {
        Refusal::new(
            "ParentNotReady",
            format!("PrivateCA {name:?}: parent PrivateCA {parent_ref:?} is not ready: {why}"),
        )
    };
    match is_ready(parent_ca) {
        None => return Err(not_ready("it has no status yet".into())),
        Some(Err(message)) => return Err(not_ready(message)),
        Some(Ok(())) => {}
    }
    let issuer = parent
        .issuer
        .as_ref()
        .map_err(|why| not_ready(why.clone()))?;
    match (issuer.info().path_length, ca.spec.path_length) {
        (Some(0), _) => Err(Refusal::new(
            "ParentNotAllowed",
            format!(
                "PrivateCA {name:?}: parent PrivateCA {parent_ref:?} has path length 0, so it signs no intermediate CAs"
            ),
        )),
        (Some(p), Some(c)) if u32::from(c) >= p => Err(invalid(format!(
            "spec.pathLength {c} must be less than the path length {p} of parent PrivateCA {parent_ref:?}"
        ))),
        _ => Ok(()),
    }
}

/// The CA Secret as read.
#[derive(Debug)]
pub enum Current {
    /// No Secret.
    Missing,
    /// A Secret that holds no usable CA, and why.
    Invalid(String),
    /// A CA that can sign.
    Valid {
        /// The CA certificate.
        info: Box<CertificateInfo>,
        /// `tls.crt` as DER: the CA certificate, then the intermediates above it.
        chain: Vec<Vec<u8>>,
        /// `ca.crt` as DER.
        root: Vec<u8>,
    },
}

/// The text of a Secret's data key.
fn secret_text(secret: &Secret, key: &str) -> Option<String> {
    let bytes = secret.data.as_ref()?.get(key)?;
    String::from_utf8(bytes.0.clone()).ok()
}

/// The CA material of a Secret: `tls.crt`, `tls.key`, `ca.crt`.
struct Material {
    tls_crt: String,
    tls_key: String,
    ca_crt: String,
}

impl Material {
    fn of(secret: &Secret) -> Result<Self, String> {
        let get = |key: &str| {
            secret_text(secret, key).ok_or_else(|| format!("{key} is missing or not text"))
        };
        Ok(Material {
            tls_crt: get("tls.crt")?,
            tls_key: get("tls.key")?,
            ca_crt: get("ca.crt")?,
        })
    }
}

/// Reads a CA Secret: whether it holds a CA certificate, its key and its root. Pure.
pub fn read_secret(secret: Option<&Secret>) -> Current {
    let Some(secret) = secret else {
        return Current::Missing;
    };
    let material = match Material::of(secret) {
        Ok(m) => m,
        Err(why) => return Current::Invalid(why),
    };
    let read = || -> Result<Current, PkiError> {
        let issuer = Issuer::from_pem(&material.tls_crt, &material.tls_key, &material.ca_crt)?;
        let chain = pki::split_pem_chain(&material.tls_crt)?;
        let root = pki::split_pem_chain(&material.ca_crt)?
            .into_iter()
            .next()
            .unwrap_or_default();
        Ok(Current::Valid {
            info: Box::new(issuer.info().clone()),
            chain,
            root,
        })
    };
    read().unwrap_or_else(|e| Current::Invalid(e.to_string()))
}

/// Why a CA certificate is issued.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// The Secret does not exist.
    Missing,
    /// The Secret holds no usable CA, and why.
    Invalid(String),
    /// The certificate no longer matches the spec field named.
    SpecChanged(&'static str),
    /// The parent's certificate changed: the intermediate is signed again under it.
    ParentChanged,
    /// The renewal time has come.
    RenewalDue(Timestamp),
}

impl std::fmt::Display for Trigger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Trigger::Missing => f.write_str("the Secret does not exist"),
            Trigger::Invalid(why) => write!(f, "the Secret holds no usable CA: {why}"),
            Trigger::SpecChanged(field) => {
                write!(f, "the certificate does not match {field}")
            }
            Trigger::ParentChanged => f.write_str("the parent CA's certificate changed"),
            Trigger::RenewalDue(at) => write!(f, "renewal was due at {at}"),
        }
    }
}

/// What to do with a CA.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Issue a certificate, for this reason.
    Issue(Trigger),
    /// The certificate in the Secret stands until the renewal time.
    Keep { renewal: Timestamp },
}

/// The path length an intermediate's certificate carries: its own, or one less than a
/// constrained parent's (as the signer writes it).
pub fn effective_path_length(own: Option<u8>, parent: Option<u32>) -> Option<u32> {
    match (parent, own) {
        (Some(p), None) => Some(p.saturating_sub(1)),
        (_, own) => own.map(u32::from),
    }
}

/// The certificates above a CA signed by `parent`, without the root, and the root (DER).
fn above(parent: &Issuer) -> (Vec<Vec<u8>>, Vec<u8>) {
    let root = pki::split_pem_chain(&parent.root_pem())
        .ok()
        .and_then(|mut r| (!r.is_empty()).then(|| r.remove(0)))
        .unwrap_or_default();
    let chain = pki::split_pem_chain(&parent.chain_pem())
        .unwrap_or_default()
        .into_iter()
        .filter(|der| *der != root)
        .collect();
    (chain, root)
}

/// Whether the CA certificate's subject is the spec's.
fn subject_matches(ca: &PrivateCA, info: &CertificateInfo) -> bool {
    let wanted = pki::csr::distinguished_name(
        Some(&ca.spec.subject.common_name),
        "spec.subject.commonName",
        Some(&ca.spec.subject.rest),
        "spec.subject",
    );
    let found = pki::inspect::parse_der("tls.crt", &info.der)
        .ok()
        .and_then(|cert| pki::csr::dn_from_x509(cert.subject()).ok());
    matches!((wanted, found), (Ok(w), Some(f)) if w == f)
}

/// Decides whether to issue the CA's certificate, and why. Pure.
pub fn decide(
    ca: &PrivateCA,
    current: &Current,
    parent: Option<&Issuer>,
    now: Timestamp,
) -> Decision {
    let (info, chain, root) = match current {
        Current::Missing => return Decision::Issue(Trigger::Missing),
        Current::Invalid(why) => return Decision::Issue(Trigger::Invalid(why.clone())),
        Current::Valid { info, chain, root } => (info, chain, root),
    };
    let spec = &ca.spec;
    if info.key_algorithm != spec.private_key.key_algorithm() {
        return Decision::Issue(Trigger::SpecChanged("spec.privateKey"));
    }
    if !subject_matches(ca, info) {
        return Decision::Issue(Trigger::SpecChanged("spec.subject"));
    }
    if info.self_issued != parent.is_none() {
        return Decision::Issue(Trigger::SpecChanged("spec.parentRef"));
    }
    let path_length = match parent {
        Some(parent) => effective_path_length(spec.path_length, parent.info().path_length),
        None => spec.path_length.map(u32::from),
    };
    if info.path_length != path_length {
        return Decision::Issue(Trigger::SpecChanged("spec.pathLength"));
    }
    if info.name_constraints != spec.name_constraints {
        return Decision::Issue(Trigger::SpecChanged("spec.nameConstraints"));
    }
    match parent {
        None if chain.as_slice() != std::slice::from_ref(root) => {
            return Decision::Issue(Trigger::Invalid(
                "a root CA's tls.crt and ca.crt must both hold the root alone".into(),
            ));
        }
        Some(parent) => {
            let (above, parent_root) = above(parent);
            if chain.get(1..) != Some(above.as_slice()) || *root != parent_root {
                return Decision::Issue(Trigger::ParentChanged);
            }
        }
        None => {}
    }
    let renewal = match pki::renewal_time(
        info.not_before,
        info.not_after,
        spec.renew_before.as_ref(),
        spec.renew_before_percentage,
    ) {
        Ok(at) => at,
        Err(e) => return Decision::Issue(Trigger::Invalid(e.to_string())),
    };
    if now >= renewal {
        return Decision::Issue(Trigger::RenewalDue(renewal));
    }
    Decision::Keep { renewal }
}

/// Whether the next certificate keeps the key already in the Secret (of algorithm
/// `existing`): unless `rotationPolicy` is Always or the spec asks for another algorithm. A
/// CA keeps its key by default, so that what it signed keeps verifying. Pure.
pub fn keep_key(spec: &PrivateKey, existing: Option<KeyAlgorithm>) -> bool {
    spec.rotation_policy != Some(RotationPolicy::Always)
        && existing.is_some()
        && existing == spec.key_algorithm()
}

/// A CA certificate and its chain as the Secret holds them.
pub struct Signed {
    /// The CA certificate, then the intermediates above it, without the root.
    pub tls_crt: String,
    /// The root.
    pub ca_crt: String,
}

/// Signs the CA's certificate for `key`: self-signed for a root, else by `parent`. Pure but
/// for the random serial.
pub fn sign(
    ca: &PrivateCA,
    key: &KeyPair,
    parent: Option<&Issuer>,
    now: Timestamp,
) -> Result<Signed, PkiError> {
    let profile = CaProfile::from_spec(&ca.spec, now)?;
    match parent {
        None => {
            let root = pki::issue_root_ca(&profile, key)?;
            Ok(Signed {
                tls_crt: root.certificate_pem,
                ca_crt: root.root_pem,
            })
        }
        Some(parent) => {
            let issued = pki::issue_intermediate_ca(&profile, key, parent)?;
            let (above, _) = above(parent);
            let mut tls_crt = issued.certificate_pem;
            for der in &above {
                tls_crt.push_str(&pki::to_pem("CERTIFICATE", der));
            }
            Ok(Signed {
                tls_crt,
                ca_crt: parent.root_pem(),
            })
        }
    }
}

/// The CA Secret as applied: `kubernetes.io/tls`, labelled, owned by the PrivateCA. Pure.
pub fn ca_secret(ca: &PrivateCA, tls_crt: &str, tls_key: &str, ca_crt: &str) -> Secret {
    let data = [
        ("tls.crt", tls_crt),
        ("tls.key", tls_key),
        ("ca.crt", ca_crt),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), ByteString(v.as_bytes().to_vec())))
    .collect();
    Secret {
        metadata: ObjectMeta {
            name: Some(secret_name(ca)),
            namespace: ca.namespace(),
            labels: Some(BTreeMap::from([
                (MANAGED_BY_LABEL.to_owned(), OPERATOR.to_owned()),
                (CA_LABEL.to_owned(), ca.name_any()),
            ])),
            owner_references: ca.controller_owner_ref(&()).map(|o| vec![o]),
            ..Default::default()
        },
        type_: Some("kubernetes.io/tls".to_owned()),
        data: Some(data),
        ..Default::default()
    }
}

/// Whether an existing Secret may be written as this CA's: it is labelled as this CA's or
/// controlled by it. Anything else named the same is someone else's and left alone.
pub fn secret_is_ours(secret: &Secret, ca: &PrivateCA) -> bool {
    let labelled = secret.labels().get(CA_LABEL) == Some(&ca.name_any());
    let controlled = secret
        .owner_references()
        .iter()
        .any(|o| o.controller == Some(true) && Some(&o.uid) == ca.metadata.uid.as_ref());
    labelled || controlled
}

/// Whether an existing Secret carries the labels, owner and type the contract asks for.
fn secret_metadata_current(secret: &Secret, ca: &PrivateCA) -> bool {
    let labels = secret.labels();
    labels.get(MANAGED_BY_LABEL).map(String::as_str) == Some(OPERATOR)
        && labels.get(CA_LABEL) == Some(&ca.name_any())
        && secret
            .owner_references()
            .iter()
            .any(|o| o.controller == Some(true) && Some(&o.uid) == ca.metadata.uid.as_ref())
        && secret.type_.as_deref() == Some("kubernetes.io/tls")
}

/// What status reports of the CA in force. Pure.
fn status_fields(
    ca: &PrivateCA,
    tls_crt: &str,
    ca_crt: &str,
    renewal: Timestamp,
) -> Result<(Value, String), PkiError> {
    let info = pki::inspect_pem(tls_crt)?;
    let depth = pki::chain_depth(tls_crt, ca_crt)?;
    let time = |t: Timestamp| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
    let secret = secret_name(ca);
    let fields = json!({
        "secretName": secret,
        "notBefore": time(info.not_before),
        "notAfter": time(info.not_after),
        "renewalTime": time(renewal),
        "serialNumber": info.serial_hex,
        "fingerprintSha256": info.fingerprint_sha256,
        "chainDepth": depth,
    });
    let kind = if depth == 0 {
        "a root CA".to_owned()
    } else {
        format!("an intermediate CA {depth} below its root")
    };
    let message = format!(
        "PrivateCA {:?} is {kind} in Secret {secret:?}, serial {}, valid until {}; renews at {}",
        ca.name_any(),
        info.serial_hex,
        time(info.not_after),
        time(renewal)
    );
    Ok((fields, message))
}

/// Dereferences an intermediate's parent: the account holding its namespace, the PrivateCA
/// and the signer in its Secret.
async fn load_parent(
    client: &Client,
    tenancy: &Tenancy,
    namespace: String,
    name: String,
) -> Result<Parent, Error> {
    let holder = tenancy.holder(&namespace).cloned();
    let ca = Api::<PrivateCA>::namespaced(client.clone(), &namespace)
        .get_opt(&name)
        .await?;
    let issuer = match &ca {
        None => Err("it does not exist".to_owned()),
        Some(parent) => {
            let secret = secret_name(parent);
            match Api::<Secret>::namespaced(client.clone(), &namespace)
                .get_opt(&secret)
                .await?
            {
                None => Err(format!("its Secret {secret:?} does not exist")),
                Some(s) => Material::of(&s)
                    .and_then(|m| {
                        Issuer::from_pem(&m.tls_crt, &m.tls_key, &m.ca_crt)
                            .map_err(|e| e.to_string())
                    })
                    .map_err(|why| format!("its Secret {secret:?} holds no usable CA: {why}")),
            }
        }
    };
    Ok(Parent {
        namespace,
        name,
        holder,
        ca,
        issuer,
    })
}

/// The refusal of a signing failure caused by the spec or the parent; `None` for failures
/// that a retry may cure.
fn signing_refusal(name: &str, error: &PkiError) -> Option<Refusal> {
    let reason = match error {
        PkiError::Issuer { .. } => "ParentNotReady",
        PkiError::InvalidField { .. }
        | PkiError::Validity { .. }
        | PkiError::UnsupportedKeySize { .. }
        | PkiError::NameConstraint(_) => "InvalidSpec",
        _ => return None,
    };
    Some(Refusal::new(reason, format!("PrivateCA {name:?}: {error}")))
}

pub async fn reconcile(ca: Arc<PrivateCA>, ctx: Arc<Context>) -> Result<Action, Error> {
    let name = ca.name_any();
    let namespace = ca.namespace().unwrap_or_default();
    let client = &ctx.client;
    let api = api_of(client, &*ca);
    let previous = ca.status.as_ref().map(|s| s.conditions.as_slice());
    let report = async |standing: Standing, fields: Value| {
        report(
            &api,
            &ctx.recorder,
            &*ca,
            MANAGER,
            previous,
            &standing,
            fields,
        )
        .await
    };
    if ca.metadata.deletion_timestamp.is_some() {
        // The Secret is owned by the PrivateCA: garbage collection deletes it.
        return Ok(Action::await_change());
    }

    // Dereference: the account, the parent and its signer, the CA's own Secret.
    let tenancy = Tenancy::load(client).await?;
    let Some(account) = tenancy.holder(&namespace) else {
        let refusal = Refusal::new("NoAccount", no_account("PrivateCA", &name, &namespace));
        report(Err(refusal), json!({})).await?;
        return Ok(Action::await_change());
    };
    let parent = match parent_of(&ca) {
        Some((parent_namespace, parent_name)) => {
            Some(load_parent(client, &tenancy, parent_namespace, parent_name).await?)
        }
        None => None,
    };

    // Validate.
    if let Err(refusal) = validate(&ca, account, parent.as_ref()) {
        let retry = refusal.reason.starts_with("Parent");
        report(Err(refusal), json!({})).await?;
        return Ok(if retry {
            Action::requeue(PARENT_RETRY)
        } else {
            Action::await_change()
        });
    }
    let parent_issuer = parent.as_ref().and_then(|p| p.issuer.as_ref().ok());
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &namespace);
    let secret = secrets.get_opt(&secret_name(&ca)).await?;
    if let Some(existing) = &secret
        && !secret_is_ours(existing, &ca)
    {
        let refusal = Refusal::new(
            "SecretConflict",
            format!(
                "PrivateCA {name:?}: Secret {:?} exists and does not belong to it; delete it or set spec.secretName",
                secret_name(&ca)
            ),
        );
        report(Err(refusal), json!({})).await?;
        return Ok(Action::await_change());
    }

    // Decide.
    let now = Timestamp::now();
    let current = read_secret(secret.as_ref());
    let (tls_crt, ca_crt) = match decide(&ca, &current, parent_issuer, now) {
        Decision::Keep { .. } => {
            let material = secret
                .as_ref()
                .ok_or_else(|| Error::Internal(format!("PrivateCA {name:?}: Secret vanished")))
                .and_then(|s| Material::of(s).map_err(Error::Internal))?;
            if let Some(s) = &secret
                && !secret_metadata_current(s, &ca)
            {
                apply_secret(
                    &secrets,
                    &ca,
                    &material.tls_crt,
                    &material.tls_key,
                    &material.ca_crt,
                )
                .await?;
            }
            (material.tls_crt, material.ca_crt)
        }
        Decision::Issue(trigger) => {
            // Key: the Secret's, unless it must rotate.
            let existing_key = secret
                .as_ref()
                .and_then(|s| secret_text(s, "tls.key"))
                .and_then(|pem| pki::load_key_pem(&pem).ok());
            let key = match existing_key {
                Some(key) if keep_key(&ca.spec.private_key, Some(key.algorithm())) => key,
                _ => pki::generate_key_blocking(ca.spec.private_key.clone())
                    .await
                    .map_err(|e| Error::Internal(format!("PrivateCA {name:?}: {e}")))?,
            };
            // Sign.
            let signed = match sign(&ca, &key, parent_issuer, now) {
                Ok(signed) => signed,
                Err(e) => match signing_refusal(&name, &e) {
                    Some(refusal) => {
                        report(Err(refusal), json!({})).await?;
                        return Ok(Action::requeue(PARENT_RETRY));
                    }
                    None => return Err(Error::Internal(format!("PrivateCA {name:?}: {e}"))),
                },
            };
            let tls_key = key
                .to_pem(PrivateKeyEncoding::Pkcs8)
                .map_err(|e| Error::Internal(format!("PrivateCA {name:?}: {e}")))?;
            // Apply.
            apply_secret(&secrets, &ca, &signed.tls_crt, &tls_key, &signed.ca_crt).await?;
            let note = format!(
                "PrivateCA {name:?}: certificate issued into Secret {:?} because {trigger}",
                secret_name(&ca)
            );
            tracing::info!(namespace = %namespace, name = %name, %trigger, "CA certificate issued");
            let event = Event {
                type_: EventType::Normal,
                reason: "Issued".into(),
                note: Some(note),
                action: "Issue".into(),
                secondary: None,
            };
            ctx.recorder.publish(&event, &ca.object_ref(&())).await?;
            (signed.tls_crt, signed.ca_crt)
        }
    };

    // Status, and the next look at the renewal time.
    let info = pki::inspect_pem(&tls_crt)
        .map_err(|e| Error::Internal(format!("PrivateCA {name:?}: tls.crt: {e}")))?;
    let renewal = pki::renewal_time(
        info.not_before,
        info.not_after,
        ca.spec.renew_before.as_ref(),
        ca.spec.renew_before_percentage,
    )
    .map_err(|e| Error::Internal(format!("PrivateCA {name:?}: {e}")))?;
    let (fields, message) = status_fields(&ca, &tls_crt, &ca_crt, renewal)
        .map_err(|e| Error::Internal(format!("PrivateCA {name:?}: {e}")))?;
    report(Ok(message), fields).await?;
    let wait = renewal.duration_since(Timestamp::now());
    let wait = Duration::try_from(wait)
        .unwrap_or(Duration::ZERO)
        .clamp(Duration::from_secs(1), MAX_REQUEUE);
    Ok(Action::requeue(wait))
}

/// Writes the CA Secret by server-side apply, forced, as this controller.
async fn apply_secret(
    secrets: &Api<Secret>,
    ca: &PrivateCA,
    tls_crt: &str,
    tls_key: &str,
    ca_crt: &str,
) -> Result<(), Error> {
    let secret = ca_secret(ca, tls_crt, tls_key, ca_crt);
    secrets
        .patch(
            &secret_name(ca),
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&secret),
        )
        .await?;
    Ok(())
}

/// Runs the controller until the stream ends.
pub async fn run(client: Client, settings: super::Settings) {
    super::in_each_scope(&settings, |scope| {
        run_in(client.clone(), settings.clone(), scope)
    })
    .await;
}

async fn run_in(client: Client, settings: super::Settings, scope: super::Scope) {
    let controller = super::cache::controller(
        super::scoped::<PrivateCA>(&client, &scope),
        watcher::Config::default(),
    );
    let store = controller.store();
    let parents = store.clone();
    // Accounts decide every CA's standing (namespaces held, types, sub-account parents).
    let all = move || {
        store
            .state()
            .into_iter()
            .map(|ca| ObjectRef::from_obj(&*ca))
            .collect::<Vec<_>>()
    };
    controller
        .owns(
            super::scoped::<Secret>(&client, &scope),
            // A CA's own Secrets only, not every Certificate's.
            watcher::Config::default().labels(CA_LABEL),
        )
        .watches(
            super::scoped::<PrivateCA>(&client, &scope),
            watcher::Config::default(),
            move |parent: PrivateCA| children(&parents.state(), &parent),
        )
        .watches(
            Api::<Account>::all(client.clone()),
            watcher::Config::default(),
            super::on_spec_change(move |_: Account| all()),
        )
        .with_config(settings.controller_config())
        .run(
            super::instrumented(reconcile),
            error_policy,
            Arc::new(Context::new(client)),
        )
        .for_each(|_| async {})
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::common::KeyAlgorithm::*;

    fn account(name: &str, account_type: &str, parent: Option<&str>) -> Account {
        let mut spec = json!({"type": account_type, "namespaces": [name]});
        if let Some(parent) = parent {
            spec["parent"] = json!({"account": parent, "namespace": parent, "subAccount": name});
        }
        serde_json::from_value(
            json!({"apiVersion": "certinext.io/v1alpha1", "kind": "Account",
            "metadata": {"name": name}, "spec": spec}),
        )
        .unwrap()
    }

    fn ca(name: &str, spec: Value) -> PrivateCA {
        serde_json::from_value(
            json!({"apiVersion": "certinext.io/v1alpha1", "kind": "PrivateCA",
            "metadata": {"name": name, "namespace": "globex", "uid": format!("uid-{name}")},
            "spec": spec}),
        )
        .unwrap()
    }

    fn root_spec() -> Value {
        json!({"subject": {"commonName": "Globex Root", "organizations": ["Globex"]},
               "duration": "8760h", "pathLength": 2})
    }

    fn ready(mut ca: PrivateCA, status: &str) -> PrivateCA {
        ca.status = Some(
            serde_json::from_value(json!({"conditions": [{"type": "Ready",
            "status": status, "reason": "Test", "message": "parent says so",
            "lastTransitionTime": "2026-01-01T00:00:00Z"}]}))
            .unwrap(),
        );
        ca
    }

    fn now() -> Timestamp {
        Timestamp::now()
    }

    /// A root PrivateCA with its Secret, as the controller writes it.
    fn issued_root(spec: Value) -> (PrivateCA, Secret, Issuer) {
        let root = ca("root", spec);
        let key = pki::generate_key_for(EcdsaP256).unwrap();
        let signed = sign(&root, &key, None, now()).unwrap();
        let key_pem = key.to_pem(PrivateKeyEncoding::Pkcs8).unwrap();
        let secret = ca_secret(&root, &signed.tls_crt, &key_pem, &signed.ca_crt);
        let issuer = Issuer::from_pem(&signed.tls_crt, &key_pem, &signed.ca_crt).unwrap();
        (root, secret, issuer)
    }

    fn parent(holder: Option<&Account>, ca: Option<PrivateCA>, issuer: Option<Issuer>) -> Parent {
        Parent {
            namespace: "globex".into(),
            name: "root".into(),
            holder: holder.cloned().map(Arc::new),
            ca,
            issuer: issuer.ok_or_else(|| "its Secret \"root-ca\" does not exist".to_owned()),
        }
    }

    #[test]
    fn validate_table() {
        let globex = account("globex", "Enterprise", None);
        let reseller = account("sslhub", "Reseller", None);
        let sub = account("initech", "Retail", Some("sslhub"));
        let other = account("acme", "Enterprise", None);
        let intermediate = |extra: Value| {
            let mut spec =
                json!({"subject": {"commonName": "Issuing"}, "parentRef": {"name": "root"}});
            if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
                spec.extend(extra.clone());
            }
            ca("issuing", spec)
        };
        let root_ready = || ready(ca("root", root_spec()), "True");
        let issuer = || Some(issued_root(root_spec()).2);
        let issuer_path0 = || {
            let mut spec = root_spec();
            spec["pathLength"] = json!(0);
            Some(issued_root(spec).2)
        };

        /// What, the CA, its account, its parent, the refusal's reason.
        type Case<'a> = (
            &'a str,
            PrivateCA,
            &'a Account,
            Option<Parent>,
            Option<&'a str>,
        );
        let cases: Vec<Case<'_>> = vec![
            ("a root", ca("root", root_spec()), &globex, None, None),
            (
                "an intermediate of the same account",
                intermediate(json!({})),
                &globex,
                Some(parent(Some(&globex), Some(root_ready()), issuer())),
                None,
            ),
            (
                "a sub-account's intermediate under its reseller",
                intermediate(json!({})),
                &sub,
                Some(parent(Some(&reseller), Some(root_ready()), issuer())),
                None,
            ),
            (
                "a parent in another account",
                intermediate(json!({})),
                &globex,
                Some(parent(Some(&other), Some(root_ready()), issuer())),
                Some("ParentNotAllowed"),
            ),
            (
                "a parent in a namespace nobody holds",
                intermediate(json!({})),
                &globex,
                Some(parent(None, Some(root_ready()), issuer())),
                Some("ParentNotAllowed"),
            ),
            (
                "a reseller is no parent of an unrelated account",
                intermediate(json!({})),
                &other,
                Some(parent(Some(&reseller), Some(root_ready()), issuer())),
                Some("ParentNotAllowed"),
            ),
            (
                "a missing parent",
                intermediate(json!({})),
                &globex,
                Some(parent(Some(&globex), None, None)),
                Some("ParentNotFound"),
            ),
            (
                "a parent without status",
                intermediate(json!({})),
                &globex,
                Some(parent(
                    Some(&globex),
                    Some(ca("root", root_spec())),
                    issuer(),
                )),
                Some("ParentNotReady"),
            ),
            (
                "a parent not Ready",
                intermediate(json!({})),
                &globex,
                Some(parent(
                    Some(&globex),
                    Some(ready(ca("root", root_spec()), "False")),
                    issuer(),
                )),
                Some("ParentNotReady"),
            ),
            (
                "a Ready parent without a usable Secret",
                intermediate(json!({})),
                &globex,
                Some(parent(Some(&globex), Some(root_ready()), None)),
                Some("ParentNotReady"),
            ),
            (
                "a parent with path length 0",
                intermediate(json!({})),
                &globex,
                Some(parent(Some(&globex), Some(root_ready()), issuer_path0())),
                Some("ParentNotAllowed"),
            ),
            (
                "a path length not below the parent's",
                intermediate(json!({"pathLength": 2})),
                &globex,
                Some(parent(Some(&globex), Some(root_ready()), issuer())),
                Some("InvalidSpec"),
            ),
            (
                "a path length below the parent's",
                intermediate(json!({"pathLength": 1})),
                &globex,
                Some(parent(Some(&globex), Some(root_ready()), issuer())),
                None,
            ),
            (
                "a parent that is itself",
                {
                    let mut me = intermediate(json!({}));
                    me.metadata.name = Some("root".into());
                    me
                },
                &globex,
                Some(parent(Some(&globex), Some(root_ready()), issuer())),
                Some("InvalidSpec"),
            ),
            (
                "two organizations",
                ca(
                    "root",
                    json!({"subject": {"commonName": "R", "organizations": ["A", "B"]}}),
                ),
                &globex,
                None,
                Some("InvalidSpec"),
            ),
            (
                "an RSA size that does not exist",
                ca(
                    "root",
                    json!({"subject": {"commonName": "R"},
                "privateKey": {"algorithm": "RSA", "size": 1024}}),
                ),
                &globex,
                None,
                Some("InvalidSpec"),
            ),
            (
                "a negative renewBefore",
                ca(
                    "root",
                    json!({"subject": {"commonName": "R"}, "renewBefore": "-1h"}),
                ),
                &globex,
                None,
                Some("InvalidSpec"),
            ),
        ];
        for (what, ca, account, parent, want) in cases {
            let got = validate(&ca, account, parent.as_ref());
            assert_eq!(
                got.as_ref().err().map(|r| r.reason),
                want,
                "{what}: {got:?}"
            );
            if let Err(refusal) = got {
                assert!(
                    refusal
                        .message
                        .starts_with(&format!("PrivateCA {:?}", ca.name_any())),
                    "{what}: {}",
                    refusal.message
                );
                assert!(!refusal.message.contains("PRIVATE KEY"), "{what}");
            }
        }
    }

    #[test]
    fn refusals_name_the_field_and_the_accounts() {
        let globex = account("globex", "Enterprise", None);
        let other = account("acme", "Enterprise", None);
        let ca = ca(
            "issuing",
            json!({"subject": {"commonName": "I"}, "parentRef": {"name": "root"}}),
        );
        let refusal = validate(&ca, &globex, Some(&parent(Some(&other), None, None))).unwrap_err();
        assert_eq!(
            refusal.message,
            "PrivateCA \"issuing\": spec.parentRef names PrivateCA \"globex/root\" in a namespace of \
             account \"acme\", not of account \"globex\" or its parent reseller"
        );
    }

    #[test]
    fn decide_table() {
        let (root, secret, root_issuer) = issued_root(root_spec());
        let current = read_secret(Some(&secret));
        assert!(matches!(current, Current::Valid { .. }), "{current:?}");
        let with = |change: Value| {
            let mut spec = root_spec();
            if let (Some(spec), Some(change)) = (spec.as_object_mut(), change.as_object()) {
                spec.extend(change.clone());
            }
            ca("root", spec)
        };
        let mut not_a_ca = secret.clone();
        let leaf_key = pki::generate_key_for(EcdsaP256).unwrap();
        let other_root = sign(&root, &leaf_key, None, now()).unwrap();
        if let Some(data) = not_a_ca.data.as_mut() {
            data.insert(
                "tls.crt".into(),
                ByteString(other_root.tls_crt.into_bytes()),
            );
        }
        let mut no_key = secret.clone();
        if let Some(data) = no_key.data.as_mut() {
            data.remove("tls.key");
        }
        let later = now() + jiff::SignedDuration::from_hours(24 * 300);

        let cases: Vec<(&str, PrivateCA, Current, Timestamp, Decision)> = vec![
            ("no Secret", root.clone(), read_secret(None), now(), Decision::Issue(Trigger::Missing)),
            ("a key that is not the certificate's", root.clone(), read_secret(Some(&not_a_ca)), now(),
                Decision::Issue(Trigger::Invalid(
                    "issuer \"Globex Root\": tls.key is not the key of the CA certificate in tls.crt".into()))),
            ("no key", root.clone(), read_secret(Some(&no_key)), now(),
                Decision::Issue(Trigger::Invalid("tls.key is missing or not text".into()))),
            ("another subject", with(json!({"subject": {"commonName": "Globex Root 2", "organizations": ["Globex"]}})),
                read_secret(Some(&secret)), now(), Decision::Issue(Trigger::SpecChanged("spec.subject"))),
            ("another organization", with(json!({"subject": {"commonName": "Globex Root"}})),
                read_secret(Some(&secret)), now(), Decision::Issue(Trigger::SpecChanged("spec.subject"))),
            ("another algorithm", with(json!({"privateKey": {"algorithm": "Ed25519"}})),
                read_secret(Some(&secret)), now(), Decision::Issue(Trigger::SpecChanged("spec.privateKey"))),
            ("another size", with(json!({"privateKey": {"algorithm": "ECDSA", "size": 384}})),
                read_secret(Some(&secret)), now(), Decision::Issue(Trigger::SpecChanged("spec.privateKey"))),
            ("another path length", with(json!({"pathLength": 1})),
                read_secret(Some(&secret)), now(), Decision::Issue(Trigger::SpecChanged("spec.pathLength"))),
            ("name constraints added", with(json!({"nameConstraints": {"permitted": {"dnsDomains": ["globex.example"]}}})),
                read_secret(Some(&secret)), now(), Decision::Issue(Trigger::SpecChanged("spec.nameConstraints"))),
            ("renewal due", root.clone(), read_secret(Some(&secret)), later,
                Decision::Issue(Trigger::RenewalDue(match decide(&root, &current, None, now()) {
                    Decision::Keep { renewal } => renewal,
                    other => panic!("{other:?}"),
                }))),
            ("renewal due earlier by percentage", with(json!({"renewBeforePercentage": 90})),
                read_secret(Some(&secret)), now() + jiff::SignedDuration::from_hours(24 * 40),
                Decision::Issue(Trigger::RenewalDue(match decide(&with(json!({"renewBeforePercentage": 90})), &current, None, now()) {
                    Decision::Keep { renewal } => renewal,
                    other => panic!("{other:?}"),
                }))),
        ];
        for (what, ca, current, at, want) in cases {
            assert_eq!(decide(&ca, &current, None, at), want, "{what}");
        }
        // An unchanged CA stands until two thirds of its life.
        let Decision::Keep { renewal } = decide(&root, &current, None, now()) else {
            panic!("an unchanged root is kept");
        };
        let Current::Valid { info, .. } = &current else {
            unreachable!()
        };
        assert_eq!(
            renewal,
            pki::renewal_time(info.not_before, info.not_after, None, None).unwrap()
        );
        // A root CA's certificate standing where an intermediate is asked for.
        assert_eq!(
            decide(&root, &current, Some(&root_issuer), now()),
            Decision::Issue(Trigger::SpecChanged("spec.parentRef"))
        );
    }

    #[test]
    fn an_intermediate_follows_its_parents_chain() {
        let (_, _, root_issuer) = issued_root(root_spec());
        let issuing = ca(
            "issuing",
            json!({"subject": {"commonName": "Issuing"}, "parentRef": {"name": "root"}, "privateKey": {"algorithm": "Ed25519"}}),
        );
        let key = pki::generate_key_for(Ed25519).unwrap();
        let signed = sign(&issuing, &key, Some(&root_issuer), now()).unwrap();
        // tls.crt holds the intermediate alone: the root is in ca.crt only.
        assert_eq!(pki::split_pem_chain(&signed.tls_crt).unwrap().len(), 1);
        assert_eq!(signed.ca_crt, root_issuer.root_pem());
        assert_eq!(
            pki::chain_depth(&signed.tls_crt, &signed.ca_crt).unwrap(),
            1
        );
        let key_pem = key.to_pem(PrivateKeyEncoding::Pkcs8).unwrap();
        let secret = ca_secret(&issuing, &signed.tls_crt, &key_pem, &signed.ca_crt);
        let current = read_secret(Some(&secret));
        let decision = decide(&issuing, &current, Some(&root_issuer), now());
        assert!(matches!(decision, Decision::Keep { .. }), "{decision:?}");
        // The parent's own pathLength 2 leaves 1 to an intermediate that sets none.
        let Current::Valid { info, .. } = &current else {
            panic!("{current:?}")
        };
        assert_eq!(info.path_length, Some(1));

        // The parent re-issued (same subject, new certificate): the child is signed again.
        let (_, _, renewed_root) = issued_root(root_spec());
        assert_eq!(
            decide(&issuing, &current, Some(&renewed_root), now()),
            Decision::Issue(Trigger::ParentChanged)
        );

        // Two levels: the second intermediate's tls.crt carries the first, not the root.
        let issuing_issuer = Issuer::from_pem(&signed.tls_crt, &key_pem, &signed.ca_crt).unwrap();
        let team = ca(
            "team",
            json!({"subject": {"commonName": "Team"}, "parentRef": {"name": "issuing"}, "privateKey": {"algorithm": "ECDSA", "size": 384}}),
        );
        let team_key = pki::generate_key_for(EcdsaP384).unwrap();
        let team_signed = sign(&team, &team_key, Some(&issuing_issuer), now()).unwrap();
        let chain = pki::split_pem_chain(&team_signed.tls_crt).unwrap();
        assert_eq!(chain.len(), 2);
        assert_eq!(chain[1], pki::split_pem_chain(&signed.tls_crt).unwrap()[0]);
        assert_eq!(
            pki::chain_depth(&team_signed.tls_crt, &team_signed.ca_crt).unwrap(),
            2
        );
        assert_eq!(
            pki::inspect_pem(&team_signed.tls_crt).unwrap().path_length,
            Some(0)
        );
    }

    #[test]
    fn keep_key_table() {
        let spec = |v: Value| -> PrivateKey { serde_json::from_value(v).unwrap() };
        let cases = [
            (json!({}), Some(EcdsaP256), true),
            (json!({}), None, false),
            (json!({"rotationPolicy": "Never"}), Some(EcdsaP256), true),
            (json!({"rotationPolicy": "Always"}), Some(EcdsaP256), false),
            (
                json!({"algorithm": "ECDSA", "size": 384}),
                Some(EcdsaP256),
                false,
            ),
            (json!({"algorithm": "RSA"}), Some(Rsa2048), true),
            (
                json!({"algorithm": "RSA", "size": 4096}),
                Some(Rsa2048),
                false,
            ),
            (json!({"algorithm": "Ed25519"}), Some(Ed25519), true),
        ];
        for (key, existing, want) in cases {
            assert_eq!(
                keep_key(&spec(key.clone()), existing),
                want,
                "{key} with {existing:?}"
            );
        }
    }

    #[test]
    fn the_secret_follows_the_contract_and_is_ours_only_when_labelled_or_owned() {
        let (root, secret, _) = issued_root(root_spec());
        assert_eq!(secret.metadata.name.as_deref(), Some("root-ca"));
        assert_eq!(secret.type_.as_deref(), Some("kubernetes.io/tls"));
        assert_eq!(
            secret.labels().get(MANAGED_BY_LABEL).map(String::as_str),
            Some(OPERATOR)
        );
        assert_eq!(
            secret.labels().get(CA_LABEL).map(String::as_str),
            Some("root")
        );
        let owner = &secret.owner_references()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
            ("PrivateCA", "uid-root", Some(true))
        );
        let data = secret.data.as_ref().unwrap();
        assert!(
            String::from_utf8_lossy(&data["tls.key"].0).starts_with("-----BEGIN PRIVATE KEY-----")
        );
        assert_eq!(data["tls.crt"], data["ca.crt"]);
        assert!(secret_is_ours(&secret, &root) && secret_metadata_current(&secret, &root));
        let mut foreign = secret.clone();
        foreign.metadata.labels = None;
        foreign.metadata.owner_references = None;
        assert!(!secret_is_ours(&foreign, &root));
        let named = ca(
            "root",
            json!({"subject": {"commonName": "R"}, "secretName": "vault"}),
        );
        assert_eq!(secret_name(&named), "vault");
    }

    #[test]
    fn a_parent_wakes_its_children_only() {
        let mut elsewhere = ca(
            "b",
            json!({"subject": {"commonName": "B"}, "parentRef": {"name": "root", "namespace": "other"}}),
        );
        elsewhere.metadata.namespace = Some("globex".into());
        let cas: Vec<Arc<PrivateCA>> = vec![
            Arc::new(ca("root", root_spec())),
            Arc::new(ca(
                "a",
                json!({"subject": {"commonName": "A"}, "parentRef": {"name": "root"}}),
            )),
            Arc::new(elsewhere),
            Arc::new(ca(
                "c",
                json!({"subject": {"commonName": "C"}, "parentRef": {"name": "root", "namespace": "globex"}}),
            )),
        ];
        let woken: Vec<String> = children(&cas, &ca("root", root_spec()))
            .into_iter()
            .map(|r| r.name)
            .collect();
        assert_eq!(woken, ["a", "c"]);
    }

    #[test]
    fn effective_path_length_table() {
        for (own, parent, want) in [
            (None, None, None),
            (Some(1), None, Some(1)),
            (None, Some(2), Some(1)),
            (Some(0), Some(2), Some(0)),
        ] {
            assert_eq!(
                effective_path_length(own, parent),
                want,
                "{own:?} under {parent:?}"
            );
        }
    }
}
