//! The Certificate controller: orders certificates from a product (or a PrivateCA), writes
//! them into `kubernetes.io/tls` Secrets in cert-manager's layout, and renews them.
//!
//! After cert-manager's split, kept as plain functions:
//! dereference (account, group, product, issuer, the Secrets, the Orders) → [`validate`]
//! (pure) → [`decide`] whether to issue and why (pure) → the next private key (stored in
//! `<cert>-next-key` before the Order exists) → an Order `<cert>-<revision>` with the CSR →
//! wait for the Order controller → write the Secret by server-side apply → status, requeued
//! at the renewal time. Failed orders back off exponentially ([`backoff`]); denied ones wait
//! for a spec change.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use serde_json::{Value, json};

use super::events::Recorder;
use super::{
    Error, Refusal, Scope, Standing, Tenancy, api_of, apply_status, condition, error_policy,
    no_account, report,
};
use super::{cache, receipt, sealing};
use crate::api::certificate::{Certificate, CertificateSpec};
use crate::api::common::{
    IssuerReference, KeyAlgorithm, PrivateKey, ProductReference, RotationPolicy,
};
use crate::api::order::{Order, OrderSpec, OrderState, OrderType};
use crate::api::product::CertificateTemplate;
use crate::api::{Account, Group, PrivateCA, Product};
use crate::capabilities::{self, Capability};
use crate::pki::{self, CertificateInfo, KeyPair, SealingKey};

/// The field manager of what this controller writes.
pub const MANAGER: &str = "certinext-certificate-controller";
/// The label naming the Certificate an Order or Secret belongs to.
pub const CERTIFICATE_LABEL: &str = "certinext.io/certificate-name";
/// The label every object the operator writes carries; Secret watches select on it.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "certinext-operator");
/// Set on an in-flight Order the Certificate has moved on from; the Order controller cancels it.
pub const SUPERSEDED_ANNOTATION: &str = "certinext.io/superseded";
/// The Certificate generation an Order was created for.
pub const GENERATION_ANNOTATION: &str = "certinext.io/certificate-generation";
pub const ISSUER_NAME_ANNOTATION: &str = "certinext.io/issuer-name";
pub const ISSUER_KIND_ANNOTATION: &str = "certinext.io/issuer-kind";
pub const COMMON_NAME_ANNOTATION: &str = "certinext.io/common-name";
pub const ALT_NAMES_ANNOTATION: &str = "certinext.io/alt-names";
pub const IP_SANS_ANNOTATION: &str = "certinext.io/ip-sans";
pub const URI_SANS_ANNOTATION: &str = "certinext.io/uri-sans";
pub const REVISION_ANNOTATION: &str = "certinext.io/revision";
/// On an Order: why the Certificate controller ordered it (the Secret is missing, renewal
/// was due, the spec changed, …), for the Certificate's status and for the record.
pub const ORDERED_BECAUSE_ANNOTATION: &str = "certinext.io/ordered-because";

/// How long a new Order may go unnoticed by the Order controller before the Certificate's
/// status says it is issuing: an Order issued sooner takes the Certificate straight to its
/// next state, with one status write instead of two.
pub const ISSUING_QUIET: Duration = Duration::from_secs(2);
/// How finely an object's creation time is recorded: its quiet time counts from the end of
/// that second, so it lasts between ISSUING_QUIET and this much longer.
const CREATION_PRECISION: Duration = Duration::from_secs(1);

/// The first wait after a failed issuance; each further failure doubles it.
pub const BACKOFF_BASE: Duration = Duration::from_secs(10);
/// The longest wait between failed issuances.
pub const BACKOFF_MAX: Duration = Duration::from_secs(3600);
/// Orders kept once the certificate is Ready, when the spec does not say.
pub const DEFAULT_REVISION_HISTORY_LIMIT: usize = 3;

/// The Secret holding the private key of the Order in flight.
pub fn next_key_secret_name(certificate: &str) -> String {
    format!("{certificate}-next-key")
}

/// The Order of a Certificate revision.
pub fn order_name(certificate: &str, revision: i64) -> String {
    format!("{certificate}-{revision}")
}

// ---------------------------------------------------------------------------------------
// Dereference
// ---------------------------------------------------------------------------------------

/// What the reconciles share: the client, and the caches of everything a Certificate reads,
/// filled by the watches that trigger the controller.
pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    /// The namespace the controller watches, or every one.
    pub scope: Scope,
    pub accounts: Store<Account>,
    pub groups: Store<Group>,
    pub products: Store<Product>,
    pub cas: Store<PrivateCA>,
    /// The Secrets the operator wrote (labelled managed-by): Certificates' and CAs'.
    pub secrets: Store<Secret>,
    /// The Orders of Certificates (labelled with their Certificate).
    pub orders: Store<Order>,
    /// The cached Orders' names by Certificate.
    pub orders_by_certificate: cache::LabelIndex,
    /// Every cache above has listed its objects once.
    pub synced: cache::Synced,
    /// The Secrets, Orders and statuses this controller wrote for each Certificate, until a
    /// cached view of the Certificate shows them.
    pub own_writes: cache::OwnWrites,
    /// The controller's own Certificates.
    pub certificates: Store<Certificate>,
    /// The controller's own writes, whose watch events reconcile nothing new.
    pub echoes: Arc<cache::Echoes>,
    /// The CA certificates, each parsed once per version of its Secret.
    pub ca_certificates: cache::PerVersion<CertificateInfo>,
    /// The pending keys of earlier versions of the operator, by next-key Secret, loaded once
    /// per version of the Secret.
    pub pending_keys: cache::PerVersion<KeyPair>,
    /// The key that seals each Order's private key into the Order ([`super::sealing`]).
    pub sealing: Arc<SealingKey>,
    /// The pending keys this controller made or opened, by Certificate ([`HeldKeys`]).
    pub held_keys: HeldKeys,
    /// The certificates of the Orders just issued, from the Order controller's writes.
    pub issued: Arc<cache::IssuedOrders>,
    /// The Orders created and not yet taken up by the Order controller.
    pub intake: Arc<cache::Intake>,
    /// The requests built for the Orders created, for the Order controller.
    pub built: Arc<cache::BuiltRequests>,
}

/// The private key of each Certificate's next Order, held from before the Order is made
/// until its certificate is in the Secret: the Order carries it sealed, for a process that
/// did not make it (after a restart, or a change of leader).
#[derive(Default)]
pub struct HeldKeys(cache::PerOwner<Arc<KeyPair>>);

impl HeldKeys {
    fn get(&self, namespace: &str, certificate: &str) -> Option<Arc<KeyPair>> {
        let key = (namespace.to_owned(), certificate.to_owned());
        self.0.lock().get(&key).cloned()
    }

    fn hold(&self, namespace: &str, certificate: &str, key: Arc<KeyPair>) {
        let owner = (namespace.to_owned(), certificate.to_owned());
        self.0.lock().insert(owner, key);
    }

    fn release(&self, namespace: &str, certificate: &str) {
        let owner = (namespace.to_owned(), certificate.to_owned());
        self.0.lock().remove(&owner);
    }
}

impl Context {
    /// The tenancy, from the Account cache.
    fn tenancy(&self) -> Tenancy {
        Tenancy::from_accounts(self.accounts.state())
    }
}

/// Everything a Certificate refers to, as fetched. Plain values: [`validate`] reads them.
#[derive(Clone, Debug, Default)]
pub struct Referenced {
    /// The account holding the Certificate's namespace.
    pub account: Option<Arc<Account>>,
    /// Whether the group named by `groupRef` exists (None without a groupRef).
    pub group_exists: Option<bool>,
    /// The product named by `productRef`, and the account holding its namespace.
    pub product: Option<Arc<Product>>,
    pub product_account: Option<String>,
    /// The PrivateCA that issues (the product's, or `issuerRef`), and the account holding
    /// its namespace.
    pub ca: Option<Arc<PrivateCA>>,
    pub ca_account: Option<String>,
}

/// `productRef` and `issuerRef` with their namespaces filled in (the Certificate's when unset).
pub fn resolved_refs(
    certificate: &Certificate,
) -> (Option<ProductReference>, Option<IssuerReference>) {
    let namespace = certificate.namespace().unwrap_or_default();
    let product = certificate
        .spec
        .product_ref
        .as_ref()
        .map(|p| ProductReference {
            name: p.name.clone(),
            namespace: Some(p.namespace.clone().unwrap_or_else(|| namespace.clone())),
        });
    let issuer = certificate
        .spec
        .issuer_ref
        .as_ref()
        .map(|i| IssuerReference {
            kind: i.kind,
            name: i.name.clone(),
            namespace: Some(i.namespace.clone().unwrap_or_else(|| namespace.clone())),
        });
    (product, issuer)
}

/// The CA a product names, its namespace defaulting to the product's.
fn product_issuer(product: &Product) -> IssuerReference {
    IssuerReference {
        kind: product.spec.issuer_ref.kind,
        name: product.spec.issuer_ref.name.clone(),
        namespace: Some(
            product
                .spec
                .issuer_ref
                .namespace
                .clone()
                .or_else(|| product.namespace())
                .unwrap_or_default(),
        ),
    }
}

fn namespace_of(reference: &IssuerReference) -> &str {
    reference.namespace.as_deref().unwrap_or_default()
}

async fn dereference(
    ctx: &Context,
    certificate: &Certificate,
    tenancy: &Tenancy,
) -> Result<Referenced, Error> {
    let namespace = certificate.namespace().unwrap_or_default();
    let holder = |ns: &str| tenancy.holder(ns).map(|a| a.name_any());
    let mut found = Referenced {
        account: tenancy.holder(&namespace).cloned(),
        ..Default::default()
    };
    let (client, scope) = (&ctx.client, &ctx.scope);
    if let Some(group) = &certificate.spec.group_ref {
        let group = cache::namespaced(&ctx.groups, client, scope, &namespace, &group.name).await?;
        found.group_exists = Some(group.is_some());
    }
    let (product_ref, issuer_ref) = resolved_refs(certificate);
    let mut ca_ref = issuer_ref;
    if let Some(product_ref) = product_ref {
        let product_namespace = product_ref.namespace.unwrap_or_default();
        let product = cache::namespaced(
            &ctx.products,
            client,
            scope,
            &product_namespace,
            &product_ref.name,
        )
        .await?;
        found.product = product;
        found.product_account = holder(&product_namespace);
        ca_ref = found.product.as_deref().map(product_issuer);
    }
    if let Some(ca_ref) = ca_ref {
        let ca_namespace = namespace_of(&ca_ref);
        let ca = cache::namespaced(&ctx.cas, client, scope, ca_namespace, &ca_ref.name).await?;
        found.ca = ca;
        found.ca_account = holder(ca_namespace);
    }
    Ok(found)
}

/// The CA's certificate, from its Secret (contract: `spec.secretName` or `<ca>-ca`), when it
/// can be read: the issuer-changed check compares issued certificates with it.
async fn ca_certificate(
    ctx: &Context,
    ca: &PrivateCA,
) -> Result<Option<Arc<CertificateInfo>>, Error> {
    let name = ca
        .status
        .as_ref()
        .and_then(|s| s.secret_name.clone())
        .or_else(|| ca.spec.secret_name.clone())
        .unwrap_or_else(|| format!("{}-ca", ca.name_any()));
    let namespace = ca.namespace().unwrap_or_default();
    let secret =
        cache::namespaced(&ctx.secrets, &ctx.client, &ctx.scope, &namespace, &name).await?;
    Ok(secret.and_then(|secret| {
        let inspect = |s: &Secret| {
            let crt = secret_text(s, "tls.crt").ok_or(())?;
            pki::inspect_pem(&crt).map_err(drop)
        };
        ctx.ca_certificates.get(&*secret, inspect).ok()
    }))
}

/// The Secrets and Orders of one Certificate, from the caches or read afresh.
struct View {
    secret: Option<Arc<Secret>>,
    next_key_secret: Option<Arc<Secret>>,
    orders: Vec<Arc<Order>>,
    fresh: bool,
    /// Whether the view shows every Secret and Order this controller wrote for the
    /// Certificate ([`cache::OwnWrites`]); a fresh view does.
    caught_up: bool,
}

impl View {
    fn cached(ctx: &Context, certificate: &Certificate) -> View {
        let namespace = certificate.namespace().unwrap_or_default();
        let get = |name: &str| ctx.secrets.get(&ObjectRef::new(name).within(&namespace));
        let name = certificate.name_any();
        let mut view = View {
            secret: get(&certificate.spec.secret_name),
            next_key_secret: get(&next_key_secret_name(&name)),
            orders: ctx
                .orders_by_certificate
                .objects(&ctx.orders, &namespace, &name),
            fresh: false,
            caught_up: false,
        };
        view.caught_up = ctx.own_writes.shown(&namespace, &name, |kind, object| {
            view.holds(certificate, kind, object)
        });
        view
    }

    /// What the view holds of the object `kind`/`name` (`None` inside: no such object), or
    /// `None` when that object is not part of it.
    fn holds(
        &self,
        certificate: &Certificate,
        kind: &str,
        name: &str,
    ) -> Option<Option<&ObjectMeta>> {
        if kind == Secret::kind(&()) {
            let secret = if name == certificate.spec.secret_name {
                &self.secret
            } else if name == next_key_secret_name(&certificate.name_any()) {
                &self.next_key_secret
            } else {
                return None;
            };
            Some(secret.as_ref().map(|s| &s.metadata))
        } else if kind == Order::kind(&()) {
            Some(
                self.orders
                    .iter()
                    .find(|o| o.metadata.name.as_deref() == Some(name))
                    .map(|o| &o.metadata),
            )
        } else {
            None
        }
    }

    /// The same, from the API server: before an Order is created, the decision must not
    /// rest on a cache that has not yet seen the controller's own last writes.
    async fn read(ctx: &Context, certificate: &Certificate) -> Result<View, Error> {
        let namespace = certificate.namespace().unwrap_or_default();
        let name = certificate.name_any();
        let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &namespace);
        let orders: Api<Order> = Api::namespaced(ctx.client.clone(), &namespace);
        let selector = format!("{CERTIFICATE_LABEL}={name}");
        Ok(View {
            secret: secrets
                .get_opt(&certificate.spec.secret_name)
                .await?
                .map(Arc::new),
            next_key_secret: secrets
                .get_opt(&next_key_secret_name(&name))
                .await?
                .map(Arc::new),
            orders: orders
                .list(&ListParams::default().labels(&selector))
                .await?
                .items
                .into_iter()
                .map(Arc::new)
                .collect(),
            fresh: true,
            caught_up: true,
        })
    }

    /// Whether the API server agrees with this cached view where an Order's creation rests
    /// on it: the two Secrets at the same versions, and no Order yet at `revision` (one there
    /// means the cache has not seen the controller's last Order). Three reads by name.
    async fn confirmed(
        &self,
        ctx: &Context,
        certificate: &Certificate,
        revision: i64,
    ) -> Result<bool, Error> {
        fn version<K: Resource>(object: Option<&K>) -> Option<(String, Option<String>)> {
            object.map(|o| {
                (
                    o.meta().uid.clone().unwrap_or_default(),
                    o.resource_version(),
                )
            })
        }
        let namespace = certificate.namespace().unwrap_or_default();
        let name = certificate.name_any();
        let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &namespace);
        let orders: Api<Order> = Api::namespaced(ctx.client.clone(), &namespace);
        let secret = secrets.get_opt(&certificate.spec.secret_name).await?;
        if version(secret.as_ref()) != version(self.secret.as_deref()) {
            return Ok(false);
        }
        let next_key = secrets.get_opt(&next_key_secret_name(&name)).await?;
        if version(next_key.as_ref()) != version(self.next_key_secret.as_deref()) {
            return Ok(false);
        }
        let taken = orders
            .get_metadata_opt(&order_name(&name, revision))
            .await?
            .is_some();
        Ok(!taken)
    }
}

/// A Secret's data entry as text.
pub fn secret_text(secret: &Secret, key: &str) -> Option<String> {
    let bytes = secret.data.as_ref()?.get(key)?;
    String::from_utf8(bytes.0.clone()).ok()
}

// ---------------------------------------------------------------------------------------
// Validate
// ---------------------------------------------------------------------------------------

/// What a valid Certificate orders: the resolved references, the issuing CA, the key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    pub product_ref: Option<ProductReference>,
    pub issuer_ref: Option<IssuerReference>,
    /// The PrivateCA that issues, as `(namespace, name)`.
    pub ca: (String, String),
    pub key_algorithm: KeyAlgorithm,
    pub template: Option<CertificateTemplate>,
}

/// Whether `account` may use what lives in a namespace held by `holder`: its own, or its
/// parent reseller's.
fn same_or_parent(account: &Account, holder: Option<&str>) -> bool {
    holder.is_some_and(|holder| {
        holder == account.name_any()
            || account
                .spec
                .parent
                .as_ref()
                .is_some_and(|p| p.account == holder)
    })
}

/// The DNS names a certificate asks for: `dnsNames`, and a common name that looks like one.
fn requested_dns_names(spec: &CertificateSpec) -> Vec<(String, &str)> {
    let mut names: Vec<(String, &str)> = spec
        .dns_names
        .iter()
        .enumerate()
        .map(|(i, n)| (format!("dnsNames[{i}]"), n.as_str()))
        .collect();
    if let Some(cn) = &spec.common_name
        && cn.contains('.')
        && pki::validate_dns_name(cn).is_ok()
    {
        names.push(("commonName".into(), cn.as_str()));
    }
    names
}

/// Checks a Certificate against what it refers to. Pure.
pub fn validate(certificate: &Certificate, found: &Referenced) -> Result<Plan, Refusal> {
    let name = certificate.name_any();
    let namespace = certificate.namespace().unwrap_or_default();
    let spec = &certificate.spec;
    let Some(account) = &found.account else {
        return Err(Refusal::new(
            "NoAccount",
            no_account("Certificate", &name, &namespace),
        ));
    };
    let account_name = account.name_any();
    let (product_ref, issuer_ref) = resolved_refs(certificate);
    let capability = if product_ref.is_some() {
        Capability::CustomProducts
    } else {
        Capability::PrivateCA
    };
    capabilities::check(&account_name, account.spec.account_type, capability).map_err(
        |denial| Refusal::new("CapabilityDenied", denial.for_object("Certificate", &name)),
    )?;
    if let (Some(group), Some(false)) = (&spec.group_ref, found.group_exists) {
        return Err(Refusal::new(
            "GroupNotFound",
            format!(
                "Certificate {name:?}: groupRef {:?} names no Group in namespace {namespace:?} (account {account_name:?})",
                group.name
            ),
        ));
    }
    let mut template = None;
    let mut allowed_domains: &[String] = &[];
    let mut allowed_keys: &[KeyAlgorithm] = &[];
    let ca_ref = match (&product_ref, &issuer_ref) {
        (Some(reference), _) => {
            let shown = format!(
                "{}/{}",
                reference.namespace.as_deref().unwrap_or_default(),
                reference.name
            );
            let Some(product) = &found.product else {
                return Err(Refusal::new(
                    "ProductNotFound",
                    format!(
                        "Certificate {name:?}: productRef {shown:?} names no Product (account {account_name:?})"
                    ),
                ));
            };
            if !same_or_parent(account, found.product_account.as_deref()) {
                let holder = found
                    .product_account
                    .as_deref()
                    .map_or("no account".to_owned(), |a| format!("account {a:?}"));
                return Err(Refusal::new(
                    "ProductNotAllowed",
                    format!(
                        "Certificate {name:?}: productRef {shown:?} belongs to {holder}, not to account {account_name:?} or its parent reseller"
                    ),
                ));
            }
            if !product
                .status
                .as_ref()
                .is_some_and(|s| super::is_ready(&s.conditions))
            {
                return Err(Refusal::new(
                    "ProductNotReady",
                    format!(
                        "Certificate {name:?}: productRef {shown:?} is not Ready; see the Product's conditions (account {account_name:?})"
                    ),
                ));
            }
            template = Some(product.spec.template);
            allowed_domains = &product.spec.allowed_domains;
            allowed_keys = &product.spec.allowed_key_algorithms;
            product_issuer(product)
        }
        (None, Some(reference)) => {
            if !same_or_parent(account, found.ca_account.as_deref()) {
                let holder = found
                    .ca_account
                    .as_deref()
                    .map_or("no account".to_owned(), |a| format!("account {a:?}"));
                return Err(Refusal::new(
                    "IssuerNotAllowed",
                    format!(
                        "Certificate {name:?}: issuerRef PrivateCA \"{}/{}\" belongs to {holder}, not to account {account_name:?} or its parent reseller",
                        namespace_of(reference),
                        reference.name
                    ),
                ));
            }
            reference.clone()
        }
        (None, None) => {
            return Err(Refusal::new(
                "IssuerNotFound",
                format!("Certificate {name:?}: set productRef or issuerRef"),
            ));
        }
    };
    let ca_shown = format!("{}/{}", namespace_of(&ca_ref), ca_ref.name);
    match &found.ca {
        None => {
            return Err(Refusal::new(
                "IssuerNotFound",
                format!("Certificate {name:?}: issuer PrivateCA {ca_shown:?} does not exist"),
            ));
        }
        Some(ca)
            if !ca
                .status
                .as_ref()
                .is_some_and(|s| super::is_ready(&s.conditions)) =>
        {
            return Err(Refusal::new(
                "IssuerNotReady",
                format!(
                    "Certificate {name:?}: issuer PrivateCA {ca_shown:?} is not Ready; see its conditions"
                ),
            ));
        }
        Some(_) => {}
    }
    for (field, dns_name) in requested_dns_names(spec) {
        if !super::product::within_domains(account, dns_name) {
            return Err(Refusal::new(
                "DomainNotAllowed",
                format!(
                    "Certificate {name:?}: {field} {dns_name:?} is not within the domains of account {account_name:?} (Account.spec.domains)"
                ),
            ));
        }
        if !allowed_domains.is_empty() && !pki::dns_name_in_domains(dns_name, allowed_domains) {
            return Err(Refusal::new(
                "DomainNotAllowed",
                format!(
                    "Certificate {name:?}: {field} {dns_name:?} is not within the allowed domains of Product {:?} ({}) (account {account_name:?})",
                    product_ref
                        .as_ref()
                        .map(|p| p.name.as_str())
                        .unwrap_or_default(),
                    allowed_domains.join(", ")
                ),
            ));
        }
    }
    let private_key = spec.private_key.clone().unwrap_or_default();
    let key_algorithm = pki::key_algorithm(&private_key).map_err(|e| {
        Refusal::new(
            "KeyAlgorithmNotAllowed",
            format!("Certificate {name:?}: {e} (account {account_name:?})"),
        )
    })?;
    if !allowed_keys.is_empty() && !allowed_keys.contains(&key_algorithm) {
        let allowed: Vec<&str> = allowed_keys
            .iter()
            .map(|k| pki::algorithm_name(*k))
            .collect();
        return Err(Refusal::new(
            "KeyAlgorithmNotAllowed",
            format!(
                "Certificate {name:?}: privateKey {} is not among the allowedKeyAlgorithms of Product {:?} ({}) (account {account_name:?})",
                pki::algorithm_name(key_algorithm),
                product_ref
                    .as_ref()
                    .map(|p| p.name.as_str())
                    .unwrap_or_default(),
                allowed.join(", ")
            ),
        ));
    }
    if let Some(subject) = &spec.subject {
        for (i, organization) in subject.organizations.iter().enumerate() {
            if !account
                .spec
                .organizations
                .iter()
                .any(|o| &o.name == organization)
            {
                return Err(Refusal::new(
                    "OrganizationNotAllowed",
                    format!(
                        "Certificate {name:?}: subject.organizations[{i}] {organization:?} is not among the organizations of account {account_name:?} (Account.spec.organizations)"
                    ),
                ));
            }
        }
    }
    pki::usages_for(template, &spec.usages, key_algorithm).map_err(|e| {
        Refusal::new(
            "UsageNotAllowed",
            format!("Certificate {name:?}: {e} (account {account_name:?})"),
        )
    })?;
    Ok(Plan {
        product_ref,
        issuer_ref: if certificate.spec.product_ref.is_some() {
            None
        } else {
            issuer_ref
        },
        ca: (namespace_of(&ca_ref).to_owned(), ca_ref.name),
        key_algorithm,
        template,
    })
}

// ---------------------------------------------------------------------------------------
// Decide
// ---------------------------------------------------------------------------------------

/// What the Secret currently holds, read (or why it cannot be).
#[derive(Debug)]
pub enum Current {
    Missing,
    Invalid(String),
    Held(Box<Held>),
}

/// A Secret holding a certificate and a key.
#[derive(Debug)]
pub struct Held {
    pub info: CertificateInfo,
    pub key: KeyPair,
    pub tls_crt: String,
    pub ca_crt: String,
    pub annotations: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
    pub revision: Option<i64>,
}

/// Reads the target Secret. Pure.
pub fn read_secret(secret: Option<&Secret>) -> Current {
    let Some(secret) = secret else {
        return Current::Missing;
    };
    let Some(tls_crt) = secret_text(secret, "tls.crt") else {
        return Current::Invalid("tls.crt is missing or not text".into());
    };
    let Some(tls_key) = secret_text(secret, "tls.key") else {
        return Current::Invalid("tls.key is missing or not text".into());
    };
    let info = match pki::inspect_pem(&tls_crt) {
        Ok(info) => info,
        Err(e) => return Current::Invalid(format!("tls.crt: {e}")),
    };
    let key = match pki::load_key_pem(&tls_key) {
        Ok(key) => key,
        // The error names the encoding and the rule, never the key.
        Err(e) => return Current::Invalid(format!("tls.key: {e}")),
    };
    let annotations = secret.annotations().clone();
    let revision = annotations
        .get(REVISION_ANNOTATION)
        .and_then(|r| r.parse().ok());
    Current::Held(Box::new(Held {
        info,
        key,
        tls_crt,
        ca_crt: secret_text(secret, "ca.crt").unwrap_or_default(),
        labels: secret.labels().clone(),
        annotations,
        revision,
    }))
}

/// Why a certificate must be issued.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Trigger {
    SecretMissing,
    SecretInvalid(String),
    KeyMismatch,
    SpecChanged(String),
    IssuerChanged(String),
    Expired(jiff::Timestamp),
    RenewalDue(jiff::Timestamp),
}

impl Trigger {
    /// The condition reason.
    pub fn reason(&self) -> &'static str {
        match self {
            Trigger::SecretMissing => "SecretMissing",
            Trigger::SecretInvalid(_) => "SecretInvalid",
            Trigger::KeyMismatch => "KeyMismatch",
            Trigger::SpecChanged(_) => "SpecChanged",
            Trigger::IssuerChanged(_) => "IssuerChanged",
            Trigger::Expired(_) => "Expired",
            Trigger::RenewalDue(_) => "RenewalDue",
        }
    }

    /// Whether the certificate in the Secret still serves while the new one is ordered.
    pub fn still_valid(&self) -> bool {
        matches!(self, Trigger::RenewalDue(_))
    }

    pub fn message(&self, secret: &str) -> String {
        match self {
            Trigger::SecretMissing => format!("Secret {secret:?} does not exist"),
            Trigger::SecretInvalid(why) => format!("Secret {secret:?} is not usable: {why}"),
            Trigger::KeyMismatch => {
                format!("Secret {secret:?}: tls.key is not the key of the certificate in tls.crt")
            }
            Trigger::SpecChanged(what) => {
                format!("the certificate in Secret {secret:?} does not match the spec: {what}")
            }
            Trigger::IssuerChanged(what) => {
                format!("the certificate in Secret {secret:?} was issued by another CA: {what}")
            }
            Trigger::Expired(at) => {
                format!("the certificate in Secret {secret:?} expired at {at}")
            }
            Trigger::RenewalDue(at) => format!("renewal was due at {at}"),
        }
    }
}

/// Whether to issue, and why; or when to look again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    Issue(Trigger),
    /// Nothing to do until the renewal time.
    Hold {
        renewal_time: jiff::Timestamp,
    },
}

/// The issuing CA as the issued certificate should name it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CaIdentity {
    pub name: String,
    /// The CA certificate's subject and key identifier, when its Secret could be read.
    pub subject: Option<String>,
    pub key_id: Option<String>,
}

fn set<T: Ord + Clone>(items: impl IntoIterator<Item = T>) -> BTreeSet<T> {
    items.into_iter().collect()
}

fn lower(items: &[String]) -> BTreeSet<String> {
    set(items.iter().map(|s| s.to_ascii_lowercase()))
}

/// The subject attributes besides the common name, as `(OID, value)` pairs.
fn subject_attributes(
    spec: Option<&crate::api::common::X509Subject>,
) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    let Some(subject) = spec else {
        return out;
    };
    let groups: [(&str, &[String]); 7] = [
        ("2.5.4.10", &subject.organizations),
        ("2.5.4.11", &subject.organizational_units),
        ("2.5.4.6", &subject.countries),
        ("2.5.4.8", &subject.provinces),
        ("2.5.4.7", &subject.localities),
        ("2.5.4.9", &subject.street_addresses),
        ("2.5.4.17", &subject.postal_codes),
    ];
    for (oid, values) in groups {
        for value in values {
            out.insert((oid.to_owned(), value.clone()));
        }
    }
    if let Some(serial) = &subject.serial_number {
        out.insert(("2.5.4.5".to_owned(), serial.clone()));
    }
    out
}

/// How an issued certificate (and the Order that asked for it) differs from the spec, if it
/// does. Pure.
pub fn spec_mismatch(
    spec: &CertificateSpec,
    plan: &Plan,
    info: &CertificateInfo,
    order: Option<&OrderSpec>,
) -> Option<String> {
    if info.common_name != spec.common_name {
        return Some(format!(
            "commonName is {:?}, the certificate has {:?}",
            spec.common_name, info.common_name
        ));
    }
    let sans = &info.subject_alt_names;
    if lower(&spec.dns_names) != lower(&sans.dns_names) {
        return Some(format!(
            "dnsNames are {:?}, the certificate has {:?}",
            spec.dns_names, sans.dns_names
        ));
    }
    let wanted_ips: BTreeSet<Option<IpAddr>> =
        set(spec.ip_addresses.iter().map(|ip| ip.parse().ok()));
    if wanted_ips != set(sans.ip_addresses.iter().copied().map(Some)) {
        return Some(format!(
            "ipAddresses are {:?}, the certificate has {:?}",
            spec.ip_addresses, sans.ip_addresses
        ));
    }
    if set(spec.uris.iter().cloned()) != set(sans.uris.iter().cloned()) {
        return Some(format!(
            "uris are {:?}, the certificate has {:?}",
            spec.uris, sans.uris
        ));
    }
    if lower(&spec.email_addresses) != lower(&sans.email_addresses) {
        return Some(format!(
            "emailAddresses are {:?}, the certificate has {:?}",
            spec.email_addresses, sans.email_addresses
        ));
    }
    if subject_attributes(spec.subject.as_ref())
        != info.subject_attributes.iter().cloned().collect()
    {
        return Some(format!(
            "subject differs from the certificate's {:?}",
            info.subject
        ));
    }
    if info.key_algorithm != Some(plan.key_algorithm) {
        return Some(format!(
            "privateKey is {}, the certificate's key is {}",
            pki::algorithm_name(plan.key_algorithm),
            info.key_algorithm.map_or("unknown", pki::algorithm_name)
        ));
    }
    if let Some(order) = order {
        if order.duration != spec.duration {
            return Some(format!(
                "duration is {}, the certificate was ordered for {}",
                spec.duration, order.duration
            ));
        }
        if set(order.usages.iter().map(|u| format!("{u:?}")))
            != set(spec.usages.iter().map(|u| format!("{u:?}")))
        {
            return Some(format!(
                "usages are {:?}, the certificate was ordered with {:?}",
                spec.usages, order.usages
            ));
        }
        if order.product_ref != plan.product_ref || order.issuer_ref != plan.issuer_ref {
            return Some(format!(
                "the certificate was ordered from {}, the spec names {}",
                source_name(order.product_ref.as_ref(), order.issuer_ref.as_ref()),
                source_name(plan.product_ref.as_ref(), plan.issuer_ref.as_ref())
            ));
        }
    }
    None
}

fn source_name(product: Option<&ProductReference>, issuer: Option<&IssuerReference>) -> String {
    match (product, issuer) {
        (Some(p), _) => format!(
            "Product \"{}/{}\"",
            p.namespace.as_deref().unwrap_or_default(),
            p.name
        ),
        (None, Some(i)) => format!("PrivateCA \"{}/{}\"", namespace_of(i), i.name),
        (None, None) => "nothing".into(),
    }
}

/// Whether to issue, and why. Pure: the Secret as read, the Order that issued it (when it
/// still exists), the CA that should have issued it, and the time.
pub fn decide(
    spec: &CertificateSpec,
    plan: &Plan,
    current: &Current,
    issued_by: Option<&OrderSpec>,
    ca: &CaIdentity,
    now: jiff::Timestamp,
) -> Decision {
    let held = match current {
        Current::Missing => return Decision::Issue(Trigger::SecretMissing),
        Current::Invalid(why) => return Decision::Issue(Trigger::SecretInvalid(why.clone())),
        Current::Held(held) => held,
    };
    if !held.key.matches_public_key_der(&held.info.public_key_der) {
        return Decision::Issue(Trigger::KeyMismatch);
    }
    if let Some(what) = spec_mismatch(spec, plan, &held.info, issued_by) {
        return Decision::Issue(Trigger::SpecChanged(what));
    }
    if let Some(what) = issuer_mismatch(held, ca) {
        return Decision::Issue(Trigger::IssuerChanged(what));
    }
    if held.info.not_after <= now {
        return Decision::Issue(Trigger::Expired(held.info.not_after));
    }
    let renewal_time = renewal_time(spec, &held.info);
    if renewal_time <= now {
        return Decision::Issue(Trigger::RenewalDue(renewal_time));
    }
    Decision::Hold { renewal_time }
}

/// When the certificate `info` describes is renewed under `spec`; its notAfter when the
/// renewal rule cannot be computed (a certificate with no lifetime).
pub fn renewal_time(spec: &CertificateSpec, info: &CertificateInfo) -> jiff::Timestamp {
    pki::renewal_time(
        info.not_before,
        info.not_after,
        spec.renew_before.as_ref(),
        spec.renew_before_percentage,
    )
    .unwrap_or(info.not_after)
}

fn issuer_mismatch(held: &Held, ca: &CaIdentity) -> Option<String> {
    let annotated = held.annotations.get(ISSUER_NAME_ANNOTATION);
    if annotated != Some(&ca.name) {
        return Some(format!(
            "annotation {ISSUER_NAME_ANNOTATION} is {annotated:?}, the issuer is PrivateCA {:?}",
            ca.name
        ));
    }
    if let Some(subject) = &ca.subject
        && &held.info.issuer != subject
    {
        return Some(format!(
            "issuer {:?}, PrivateCA {:?} is {subject:?}",
            held.info.issuer, ca.name
        ));
    }
    if let (Some(key_id), Some(authority)) = (&ca.key_id, &held.info.authority_key_id)
        && key_id != authority
    {
        return Some(format!(
            "signed by key {authority}, PrivateCA {:?} now signs with key {key_id}",
            ca.name
        ));
    }
    None
}

// ---------------------------------------------------------------------------------------
// Orders: revisions, failures, history
// ---------------------------------------------------------------------------------------

/// The next revision: 1 + the highest among the Orders and the status (a failed attempt
/// consumes its number and stays as an audit record).
pub fn next_revision(orders: &[Arc<Order>], status_revision: Option<i64>) -> i64 {
    orders
        .iter()
        .map(|o| o.spec.revision)
        .chain(status_revision)
        .max()
        .unwrap_or(0)
        + 1
}

/// The wait after `attempts` consecutive failures: 10s, 20s, 40s… up to an hour.
pub fn backoff(attempts: i32) -> Duration {
    let doublings = u32::try_from(attempts.saturating_sub(1))
        .unwrap_or(0)
        .min(16);
    BACKOFF_BASE
        .saturating_mul(1u32 << doublings)
        .min(BACKOFF_MAX)
}

pub fn state_of(order: &Order) -> Option<OrderState> {
    order.status.as_ref().and_then(|s| s.state)
}

fn in_flight(state: Option<OrderState>) -> bool {
    matches!(
        state,
        None | Some(OrderState::PendingApproval) | Some(OrderState::Approved)
    )
}

fn terminal(state: Option<OrderState>) -> bool {
    !in_flight(state)
}

fn failed(state: Option<OrderState>) -> bool {
    matches!(state, Some(OrderState::Rejected) | Some(OrderState::Failed))
}

/// An Order's Ready condition: `(reason, message, since)`.
fn order_ready(order: &Order) -> Option<(String, String, jiff::Timestamp)> {
    order.status.as_ref().and_then(|s| {
        s.conditions.iter().find(|c| c.type_ == "Ready").map(|c| {
            (
                c.reason.clone(),
                c.message.clone(),
                c.last_transition_time.0,
            )
        })
    })
}

/// Failed issuances since the certificate in the Secret: how many, and when the last was.
/// Derived from the Orders, so it survives restarts and counts each Order once.
pub fn failures(orders: &[Arc<Order>], since_revision: i64) -> (i32, Option<jiff::Timestamp>) {
    let failed: Vec<&Order> = orders
        .iter()
        .map(Arc::as_ref)
        .filter(|o| o.spec.revision > since_revision && failed(state_of(o)))
        .collect();
    let last = failed
        .iter()
        .filter_map(|o| {
            order_ready(o)
                .map(|(_, _, at)| at)
                .or_else(|| o.creation_timestamp().map(|t| t.0))
        })
        .max();
    (i32::try_from(failed.len()).unwrap_or(i32::MAX), last)
}

/// The Orders to delete once Ready: the oldest finished ones beyond `limit`, never the
/// current revision's nor one in flight. Pure.
pub fn history_to_delete(orders: &[Arc<Order>], current: i64, limit: usize) -> Vec<String> {
    let mut sorted: Vec<&Order> = orders.iter().map(Arc::as_ref).collect();
    sorted.sort_by_key(|o| o.spec.revision);
    let mut excess = sorted.len().saturating_sub(limit);
    let mut doomed = Vec::new();
    for order in sorted {
        if excess == 0 {
            break;
        }
        if order.spec.revision != current
            && order.spec.revision < current
            && terminal(state_of(order))
        {
            doomed.push(order.name_any());
            excess -= 1;
        }
    }
    doomed
}

fn generation_of(order: &Order) -> Option<i64> {
    order
        .annotations()
        .get(GENERATION_ANNOTATION)
        .and_then(|g| g.parse().ok())
}

// ---------------------------------------------------------------------------------------
// Build: the Order, the next-key Secret, the certificate Secret
// ---------------------------------------------------------------------------------------

/// The Order for a revision (contract §2). Pure.
pub fn build_order(
    certificate: &Certificate,
    plan: &Plan,
    revision: i64,
    order_type: OrderType,
    request: String,
    sealed_key: Option<String>,
    because: &str,
) -> Order {
    let name = certificate.name_any();
    let generation = certificate.metadata.generation.unwrap_or_default();
    let metadata = ObjectMeta {
        name: Some(order_name(&name, revision)),
        namespace: certificate.namespace(),
        labels: Some(base_labels(&name)),
        annotations: Some(BTreeMap::from([
            (GENERATION_ANNOTATION.to_owned(), generation.to_string()),
            (ORDERED_BECAUSE_ANNOTATION.to_owned(), because.to_owned()),
        ])),
        owner_references: certificate.controller_owner_ref(&()).map(|o| vec![o]),
        // Its charge outlives it in the payer's archive (see the Order controller).
        finalizers: Some(vec![super::order::FINALIZER.to_owned()]),
        ..ObjectMeta::default()
    };
    Order {
        metadata,
        spec: OrderSpec {
            certificate_ref: crate::api::common::LocalObjectReference { name },
            revision,
            order_type,
            request,
            product_ref: plan.product_ref.clone(),
            issuer_ref: plan.issuer_ref.clone(),
            group_ref: certificate.spec.group_ref.clone(),
            duration: certificate.spec.duration,
            usages: certificate.spec.usages.clone(),
            approval: None,
            sealed_key,
        },
        status: None,
    }
}

fn secret_object(
    name: &str,
    certificate: &Certificate,
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
    secret_type: &str,
    data: BTreeMap<String, ByteString>,
    owned: bool,
) -> Secret {
    let mut secret = Secret {
        type_: Some(secret_type.into()),
        data: Some(data),
        ..Default::default()
    };
    secret.metadata.name = Some(name.into());
    secret.metadata.namespace = certificate.namespace();
    secret.metadata.labels = Some(labels);
    secret.metadata.annotations = (!annotations.is_empty()).then_some(annotations);
    if owned {
        secret.metadata.owner_references = certificate.controller_owner_ref(&()).map(|o| vec![o]);
    }
    secret
}

fn base_labels(certificate: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (CERTIFICATE_LABEL.to_owned(), certificate.to_owned()),
        (MANAGED_BY.0.to_owned(), MANAGED_BY.1.to_owned()),
    ])
}

/// The `<cert>-next-key` Secret in which versions of the operator before sealed keys kept the
/// key of the Order in flight (PKCS#8); still read, and deleted once delivered. Pure.
pub fn build_next_key_secret(certificate: &Certificate, key: &KeyPair) -> Result<Secret, Error> {
    let name = certificate.name_any();
    let pem = key
        .to_pem(crate::api::common::PrivateKeyEncoding::Pkcs8)
        .map_err(|e| Error::Internal(format!("Certificate {name:?}: next private key: {e}")))?;
    Ok(secret_object(
        &next_key_secret_name(&name),
        certificate,
        base_labels(&name),
        BTreeMap::new(),
        "Opaque",
        BTreeMap::from([("tls.key".to_owned(), ByteString(pem.into_bytes()))]),
        true,
    ))
}

/// The labels and annotations of the certificate Secret (contract §4): the template's, then
/// the operator's (which win).
pub fn secret_metadata(
    certificate: &Certificate,
    ca_name: &str,
    revision: i64,
) -> (BTreeMap<String, String>, BTreeMap<String, String>) {
    let spec = &certificate.spec;
    let name = certificate.name_any();
    let template = spec.secret_template.clone().unwrap_or_default();
    let mut labels = template.labels;
    labels.extend(base_labels(&name));
    let mut annotations = template.annotations;
    annotations.extend([
        (CERTIFICATE_LABEL.to_owned(), name),
        (ISSUER_NAME_ANNOTATION.to_owned(), ca_name.to_owned()),
        (ISSUER_KIND_ANNOTATION.to_owned(), "PrivateCA".to_owned()),
        (
            COMMON_NAME_ANNOTATION.to_owned(),
            spec.common_name.clone().unwrap_or_default(),
        ),
        (ALT_NAMES_ANNOTATION.to_owned(), spec.dns_names.join(",")),
        (IP_SANS_ANNOTATION.to_owned(), spec.ip_addresses.join(",")),
        (URI_SANS_ANNOTATION.to_owned(), spec.uris.join(",")),
        (REVISION_ANNOTATION.to_owned(), revision.to_string()),
    ]);
    (labels, annotations)
}

/// The certificate Secret (contract §4), `tls.key` in the spec's encoding. Pure.
pub fn build_secret(
    certificate: &Certificate,
    ca_name: &str,
    revision: i64,
    tls_crt: &str,
    key: &KeyPair,
    ca_crt: &str,
) -> Result<Secret, Error> {
    let name = certificate.name_any();
    let encoding = certificate
        .spec
        .private_key
        .as_ref()
        .map(|k| k.encoding)
        .unwrap_or_default();
    let tls_key = key
        .to_pem(encoding)
        .map_err(|e| Error::Internal(format!("Certificate {name:?}: privateKey.encoding: {e}")))?;
    let (labels, annotations) = secret_metadata(certificate, ca_name, revision);
    Ok(secret_object(
        &certificate.spec.secret_name,
        certificate,
        labels,
        annotations,
        "kubernetes.io/tls",
        BTreeMap::from([
            (
                "tls.crt".to_owned(),
                ByteString(tls_crt.as_bytes().to_vec()),
            ),
            ("tls.key".to_owned(), ByteString(tls_key.into_bytes())),
            ("ca.crt".to_owned(), ByteString(ca_crt.as_bytes().to_vec())),
        ]),
        false,
    ))
}

// ---------------------------------------------------------------------------------------
// Reconcile
// ---------------------------------------------------------------------------------------

fn timestamp(t: jiff::Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// The status fields besides the conditions, from the Secret's certificate and the Orders.
struct Progress {
    revision: Option<i64>,
    certificate: Option<(CertificateInfo, jiff::Timestamp)>,
    current_order: Option<String>,
    failures: (i32, Option<jiff::Timestamp>),
    issuing: Option<(bool, String, String)>,
}

impl Progress {
    fn fields(&self, certificate: &Certificate) -> Value {
        let previous = certificate.status.as_ref();
        let generation = certificate.metadata.generation;
        let conditions = certificate.status.as_ref().map(|s| s.conditions.as_slice());
        let (attempts, last_failure) = self.failures;
        let (not_before, not_after, serial, renewal) = match &self.certificate {
            Some((info, renewal)) => (
                Some(timestamp(info.not_before)),
                Some(timestamp(info.not_after)),
                Some(info.serial_hex.clone()),
                Some(timestamp(*renewal)),
            ),
            None => (
                previous.and_then(|s| s.not_before.as_ref().map(|t| timestamp(t.0))),
                previous.and_then(|s| s.not_after.as_ref().map(|t| timestamp(t.0))),
                previous.and_then(|s| s.serial_number.clone()),
                None,
            ),
        };
        let issuing: Vec<Value> = self
            .issuing
            .iter()
            .map(|(status, reason, message)| {
                condition("Issuing", *status, reason, message, generation, conditions)
            })
            .collect();
        json!({
            "conditions": issuing,
            "revision": self.revision.or(previous.and_then(|s| s.revision)),
            "notBefore": not_before,
            "notAfter": not_after,
            "renewalTime": renewal,
            "serialNumber": serial,
            "currentOrder": self.current_order,
            "failedIssuanceAttempts": (attempts > 0).then_some(attempts),
            "lastFailureTime": last_failure.map(timestamp),
        })
    }
}

pub async fn reconcile(certificate: Arc<Certificate>, ctx: Arc<Context>) -> Result<Action, Error> {
    ctx.synced.wait().await?;
    let alive = |namespace: &str, name: &str| {
        ctx.certificates
            .get(&ObjectRef::new(name).within(namespace))
            .is_some()
    };
    ctx.own_writes.sweep(alive);
    ctx.held_keys.0.sweep(alive);
    // A copy older than this controller's last status write: the newer one is on its way and
    // reconciles the Certificate again; deciding now would only write that status again.
    let namespace = certificate.namespace().unwrap_or_default();
    let name = certificate.name_any();
    let kind = Certificate::kind(&());
    let shown = |copy: &Certificate| {
        let this =
            |k: &str, object: &str| (k == kind && object == name).then_some(Some(&copy.metadata));
        ctx.own_writes.shown(&namespace, &name, this)
    };
    let mut certificate = certificate;
    if !shown(&certificate) {
        // That copy is the controller's own write: its event must reconcile, not be left out
        // as an echo. One that came in meanwhile was left out, and is in the store.
        ctx.echoes.forget(&kind, &namespace, &name);
        match ctx
            .certificates
            .get(&ObjectRef::new(&name).within(&namespace))
        {
            Some(newer) if shown(&newer) => certificate = newer,
            _ => return Ok(Action::await_change()),
        }
    }
    let mut view = View::cached(&ctx, &certificate);
    loop {
        // Boxed: a pass's future is kilobytes, and this one's is moved into a box as it starts.
        match Box::pin(reconcile_with(&certificate, &ctx, view)).await? {
            Next::Done(action) => return Ok(action),
            Next::Again(fresh) => view = *fresh,
        }
    }
}

/// What one pass of a reconcile ends with.
enum Next {
    Done(Action),
    /// The caches were behind: reconcile again with what the API server holds.
    Again(Box<View>),
}

async fn reconcile_with(
    certificate: &Certificate,
    ctx: &Context,
    view: View,
) -> Result<Next, Error> {
    let name = certificate.name_any();
    let namespace = certificate.namespace().unwrap_or_default();
    let client = &ctx.client;
    let api = api_of(client, certificate);
    let previous = certificate.status.as_ref().map(|s| s.conditions.as_slice());
    let spec = &certificate.spec;
    let generation = certificate.metadata.generation.unwrap_or_default();
    let secret_name = &spec.secret_name;
    let status_revision = certificate.status.as_ref().and_then(|s| s.revision);
    let refuse = async |standing: Standing, fields: Value| {
        let write = report(
            &api,
            &ctx.recorder,
            certificate,
            MANAGER,
            previous,
            &standing,
            fields,
        );
        sent::<Certificate, _, _>(ctx, certificate, &name, write, status_left(certificate)).await?;
        Ok::<(), Error>(())
    };
    let progress_only = async |ready: (bool, &str, &str), fields: Value| {
        let write = apply_status(&api, certificate, MANAGER, previous, ready, fields);
        sent::<Certificate, _, _>(ctx, certificate, &name, write, status_left(certificate)).await?;
        Ok::<(), Error>(())
    };

    // Dereference.
    let tenancy = ctx.tenancy();
    let found = dereference(ctx, certificate, &tenancy).await?;
    let orders_api: Api<Order> = Api::namespaced(client.clone(), &namespace);
    let current = read_secret(view.secret.as_deref());
    let (next_key_secret, orders) = (&view.next_key_secret, &view.orders);
    let issued_revision = match &current {
        Current::Held(held) => held.revision.or(status_revision),
        _ => status_revision,
    }
    .unwrap_or(0);
    let mut progress = Progress {
        revision: (issued_revision > 0).then_some(issued_revision),
        certificate: None,
        current_order: None,
        failures: failures(orders, issued_revision),
        issuing: None,
    };

    // Validate: an invalid spec orders nothing and writes no Secret.
    let plan = match validate(certificate, &found) {
        Ok(plan) => plan,
        Err(refusal) => {
            refuse(Err(refusal), progress.fields(certificate)).await?;
            return Ok(Next::Done(Action::await_change()));
        }
    };
    let ca_info = match &found.ca {
        Some(ca) => ca_certificate(ctx, ca).await?,
        None => None,
    };
    let ca = CaIdentity {
        name: plan.ca.1.clone(),
        subject: ca_info.as_ref().map(|i| i.subject.clone()),
        key_id: ca_info.and_then(|i| i.subject_key_id.clone()),
    };
    let now = jiff::Timestamp::now();
    let issued_order = orders
        .iter()
        .map(Arc::as_ref)
        .find(|o| o.spec.revision == issued_revision);
    if let Current::Held(held) = &current {
        let renewal = renewal_time(spec, &held.info);
        progress.certificate = Some((held.info.clone(), renewal));
    }

    // Wait: the latest Order after the certificate in the Secret.
    let latest = orders
        .iter()
        .filter(|o| o.spec.revision > issued_revision)
        .max_by_key(|o| o.spec.revision);
    let for_this_spec = |o: &Order| generation_of(o) == Some(generation);
    let mut superseded: Vec<String> = Vec::new();
    if let Some(order) = latest {
        let order_name = order.name_any();
        let state = state_of(order);
        let (_, order_message, _) = order_ready(order).unwrap_or_default();
        match state {
            // The pending key is this controller's own write: a view that does not show it
            // yet is read afresh, not taken for a key that does not match.
            Some(OrderState::Issued) if !view.caught_up => {
                return Ok(Next::Again(Box::new(View::read(ctx, certificate).await?)));
            }
            Some(OrderState::Issued) => {
                if let Some(action) = write_issued(
                    ctx,
                    certificate,
                    &plan,
                    order,
                    next_key_secret.as_deref(),
                    orders,
                )
                .await?
                {
                    return Ok(Next::Done(action));
                }
            }
            s if in_flight(s) && for_this_spec(order) => {
                if s.is_none()
                    && let Some(left) = quiet_left(order, now)
                {
                    return Ok(Next::Done(Action::requeue(left)));
                }
                let reason = if s == Some(OrderState::PendingApproval) {
                    "PendingApproval"
                } else {
                    "Issuing"
                };
                progress.current_order = Some(order_name.clone());
                // The condition keeps its message while the same Order stays in the same
                // phase: a status write per Order step would wake every watcher for nothing.
                let kept = previous
                    .into_iter()
                    .flatten()
                    .find(|c| c.type_ == "Issuing" && c.status == "True" && c.reason == reason)
                    .map(|c| c.message.clone())
                    .filter(|m| m.starts_with(&format!("Order {order_name:?} ")));
                let because = order.annotations().get(ORDERED_BECAUSE_ANNOTATION);
                let message = kept.unwrap_or_else(|| match (s, because) {
                    (None, Some(because)) => format!("Order {order_name:?} created: {because}"),
                    _ => format!("Order {order_name:?} is {}", state_name(s)),
                });
                progress.issuing = Some((true, reason.into(), message));
                let ready = readiness(spec, &plan, &current, issued_order, &ca, now);
                progress_only((ready.0, ready.1, &ready.2), progress.fields(certificate)).await?;
                return Ok(Next::Done(Action::requeue(Duration::from_secs(300))));
            }
            s if in_flight(s) => superseded.push(order_name),
            Some(OrderState::Denied) if for_this_spec(order) => {
                progress.issuing = Some((false, "Denied".into(), order_message.clone()));
                let refusal = Refusal::new(
                    "Denied",
                    format!(
                        "Certificate {name:?}: Order {order_name:?} was denied; change the spec to order again: {order_message}"
                    ),
                );
                refuse(Err(refusal), progress.fields(certificate)).await?;
                return Ok(Next::Done(Action::await_change()));
            }
            s if failed(s) && for_this_spec(order) => {
                let (attempts, last) = progress.failures;
                let retry_at = last
                    .unwrap_or(now)
                    .checked_add(backoff(attempts))
                    .unwrap_or(now);
                if retry_at > now {
                    let wait = Duration::try_from(retry_at.duration_since(now))
                        .unwrap_or(BACKOFF_BASE)
                        .max(Duration::from_secs(1));
                    let why = format!(
                        "Order {order_name:?} ended {}: {order_message}; attempt {attempts} failed, retrying at {}",
                        state_name(s),
                        timestamp(retry_at)
                    );
                    progress.issuing = Some((false, state_name(s).into(), why.clone()));
                    let ready = readiness(spec, &plan, &current, issued_order, &ca, now);
                    if ready.0 {
                        progress_only((ready.0, ready.1, &ready.2), progress.fields(certificate))
                            .await?;
                    } else {
                        let refusal =
                            Refusal::new(state_name(s), format!("Certificate {name:?}: {why}"));
                        refuse(Err(refusal), progress.fields(certificate)).await?;
                    }
                    return Ok(Next::Done(Action::requeue(wait)));
                }
            }
            _ => {}
        }
    }

    // Decide.
    let decision = decide(
        spec,
        &plan,
        &current,
        issued_order.map(|o| &o.spec),
        &ca,
        now,
    );
    let trigger = match decision {
        Decision::Hold { renewal_time } => {
            if let Current::Held(held) = &current {
                refresh_secret_metadata(ctx, certificate, &plan, held, issued_revision).await?;
            }
            mark_superseded(&orders_api, &superseded).await?;
            cleanup_history(&orders_api, certificate, orders, issued_revision).await?;
            let message = format!(
                "Certificate {name:?} is valid until {}; renewal at {}",
                progress
                    .certificate
                    .as_ref()
                    .map(|(i, _)| timestamp(i.not_after))
                    .unwrap_or_default(),
                timestamp(renewal_time)
            );
            refuse(Ok(message), progress.fields(certificate)).await?;
            let wait = Duration::try_from(renewal_time.duration_since(now))
                .unwrap_or_default()
                .max(Duration::from_secs(1));
            return Ok(Next::Done(Action::requeue(wait)));
        }
        Decision::Issue(trigger) => trigger,
    };

    // An Order costs money: decide on caches that show this controller's own last writes
    // for the Certificate, else on what the API server holds.
    if !view.caught_up {
        let revision = next_revision(orders, status_revision.max(Some(issued_revision)));
        if !view.confirmed(ctx, certificate, revision).await? {
            let fresh = View::read(ctx, certificate).await?;
            return Ok(Next::Again(Box::new(fresh)));
        }
    }

    // Next private key, held, and sealed into the Order.
    let key = next_private_key(ctx, certificate, &current, next_key_secret.as_deref()).await?;

    // Order.
    let revision = next_revision(orders, status_revision.max(Some(issued_revision)));
    let request = pki::build_csr(spec, &key)
        .map_err(|e| Error::Internal(format!("Certificate {name:?}: building the CSR: {e}")))?;
    let issued_before = issued_revision > 0
        || orders
            .iter()
            .any(|o| state_of(o) == Some(OrderState::Issued));
    let order_type = if issued_before {
        OrderType::Renewal
    } else {
        OrderType::Purchase
    };
    let because = trigger.message(secret_name);
    let sealed = sealing::seal(&ctx.sealing, &key, &namespace, &name, &request)?;
    let order = build_order(
        certificate,
        &plan,
        revision,
        order_type,
        request,
        Some(sealed),
        &because,
    );
    let params = PostParams {
        field_manager: Some(MANAGER.into()),
        ..Default::default()
    };
    // Room in the Order controller's intake first: under a burst, the Certificate waits here
    // rather than its Order in that controller's queue.
    let order_name = order.name_any();
    ctx.intake.enter(&namespace, &order_name).await;
    ctx.built.put(&namespace, &order_name, &order.spec.request);
    let create = receipt::create(&orders_api, &params, &order);
    let created = sent::<Order, _, _>(ctx, certificate, &order_name, create, applied).await;
    if created.is_err() {
        ctx.intake.taken(&namespace, &order_name);
        ctx.built.forget(&namespace, &order_name);
    }
    let created = match created {
        Ok(created) => created,
        // The cached Orders did not show one at this revision: decide again on what the API
        // server holds (a fresh view computed this revision from the Orders it listed).
        Err(kube::Error::Api(response)) if response.code == 409 && !view.fresh => {
            return Ok(Next::Again(Box::new(View::read(ctx, certificate).await?)));
        }
        Err(error) => return Err(error.into()),
    };
    let new_order = created.name_any();
    tracing::info!(certificate = %name, namespace = %namespace, order = %new_order, reason = trigger.reason(), "ordered a certificate");
    superseded.extend(
        orders
            .iter()
            .filter(|o| o.spec.revision < revision && in_flight(state_of(o)))
            .map(|o| o.name_any()),
    );
    superseded.sort();
    superseded.dedup();
    mark_superseded(&orders_api, &superseded).await?;
    // The status is written when the Order moves (issued, waiting for approval, refused), or
    // says it is issuing once the Order has waited out its quiet time ([`quiet_left`]).
    Ok(Next::Done(Action::requeue(
        ISSUING_QUIET + CREATION_PRECISION,
    )))
}

/// What is left of `order`'s quiet time ([`ISSUING_QUIET`]) at `now`, if any. The creation
/// time has whole seconds: the wait counts from the end of that second, so the quiet time
/// lasts up to a second longer, never shorter.
fn quiet_left(order: &Order, now: jiff::Timestamp) -> Option<Duration> {
    let created = order.creation_timestamp()?.0;
    let waited = Duration::try_from(now.duration_since(created))
        .unwrap_or_default()
        .saturating_sub(CREATION_PRECISION);
    ISSUING_QUIET
        .checked_sub(waited)
        .filter(|left| !left.is_zero())
}

fn state_name(state: Option<OrderState>) -> &'static str {
    match state {
        None => "new",
        Some(OrderState::PendingApproval) => "PendingApproval",
        Some(OrderState::Approved) => "Approved",
        Some(OrderState::Issued) => "Issued",
        Some(OrderState::Denied) => "Denied",
        Some(OrderState::Rejected) => "Rejected",
        Some(OrderState::Failed) => "Failed",
        Some(OrderState::Cancelled) => "Cancelled",
    }
}

/// Ready while an order is in flight: True when the Secret holds a valid certificate for the
/// spec (cert-manager keeps Ready during a renewal), else False saying why.
fn readiness(
    spec: &CertificateSpec,
    plan: &Plan,
    current: &Current,
    issued_by: Option<&Order>,
    ca: &CaIdentity,
    now: jiff::Timestamp,
) -> (bool, &'static str, String) {
    match decide(spec, plan, current, issued_by.map(|o| &o.spec), ca, now) {
        Decision::Hold { .. } => (
            true,
            "Ready",
            format!("Secret {:?} holds a valid certificate", spec.secret_name),
        ),
        Decision::Issue(trigger) if trigger.still_valid() => (
            true,
            "Ready",
            format!(
                "Secret {:?} holds a valid certificate; renewing",
                spec.secret_name
            ),
        ),
        Decision::Issue(trigger) => (false, trigger.reason(), trigger.message(&spec.secret_name)),
    }
}

/// The key for the next Order: the pending one when it still fits (held, or in the
/// `<cert>-next-key` Secret an earlier version of the operator wrote), the Secret's own key
/// under `rotationPolicy: Never`, else a new one. Held from here until the Secret holds its
/// certificate; the Order carries it sealed.
async fn next_private_key(
    ctx: &Context,
    certificate: &Certificate,
    current: &Current,
    next_key_secret: Option<&Secret>,
) -> Result<Arc<KeyPair>, Error> {
    let name = certificate.name_any();
    let namespace = certificate.namespace().unwrap_or_default();
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &namespace);
    let spec: PrivateKey = certificate.spec.private_key.clone().unwrap_or_default();
    let fits = |k: &Arc<KeyPair>| k.matches_spec(&spec);
    if let Some(key) = ctx.held_keys.get(&namespace, &name).filter(fits) {
        return Ok(key);
    }
    if let Some(key) = pending_key(ctx, next_key_secret).filter(fits) {
        ctx.held_keys.hold(&namespace, &name, key.clone());
        return Ok(key);
    }
    let kept = match (spec.rotation_policy.unwrap_or_default(), current) {
        (RotationPolicy::Never, Current::Held(held)) if held.key.matches_spec(&spec) => {
            secret_text_key(&secrets, &certificate.spec.secret_name).await?
        }
        _ => None,
    };
    let key = match kept {
        Some(key) => key,
        None => pki::generate_key_blocking(spec)
            .await
            .map_err(|e| Error::Internal(format!("Certificate {name:?}: privateKey: {e}")))?,
    };
    let key = Arc::new(key);
    ctx.held_keys.hold(&namespace, &name, key.clone());
    Ok(key)
}

/// The key in the next-key Secret, if it holds one.
fn pending_key(ctx: &Context, next_key_secret: Option<&Secret>) -> Option<Arc<KeyPair>> {
    let load = |secret: &Secret| {
        secret_text(secret, "tls.key")
            .and_then(|pem| pki::load_key_pem(&pem).ok())
            .ok_or(())
    };
    ctx.pending_keys.get(next_key_secret?, load).ok()
}

/// The private key of `order`'s certificate (`info`): the one held since the Order was made,
/// else the one in a next-key Secret an earlier version of the operator wrote, else the one
/// sealed in the Order (read afresh when the cached copy went without it). `None`, with a
/// warning saying why, when none of them is the certificate's.
async fn key_for(
    ctx: &Context,
    certificate: &Certificate,
    order: &Order,
    info: &CertificateInfo,
    next_key_secret: Option<&Secret>,
) -> Result<Option<Arc<KeyPair>>, Error> {
    let (namespace, name) = (
        certificate.namespace().unwrap_or_default(),
        certificate.name_any(),
    );
    let order_name = order.name_any();
    let matches = |k: &Arc<KeyPair>| k.matches_public_key_der(&info.public_key_der);
    let at_hand = ctx
        .held_keys
        .get(&namespace, &name)
        .filter(matches)
        .or_else(|| pending_key(ctx, next_key_secret).filter(matches));
    if let Some(key) = at_hand {
        return Ok(Some(key));
    }
    let fetched;
    let order = if order.spec.sealed_key.is_some() && !order.spec.request.is_empty() {
        order
    } else {
        let orders: Api<Order> = Api::namespaced(ctx.client.clone(), &namespace);
        match orders.get_opt(&order_name).await? {
            Some(fresh) if fresh.metadata.uid == order.metadata.uid => {
                fetched = fresh;
                &fetched
            }
            _ => return Ok(None),
        }
    };
    let opened =
        order.spec.sealed_key.as_deref().map(|sealed| {
            sealing::open(&ctx.sealing, sealed, &namespace, &name, &order.spec.request)
        });
    let problem = match opened {
        Some(Ok(key)) => {
            let key = Arc::new(key);
            if matches(&key) {
                return Ok(Some(key));
            }
            "the key sealed in it is not its certificate's".to_owned()
        }
        Some(Err(problem)) => problem,
        None => "it carries no sealed key".to_owned(),
    };
    tracing::warn!(certificate = %name, namespace = %namespace, order = %order_name, %problem, "the private key of the Issued order's certificate cannot be had; ordering again");
    Ok(None)
}

/// The key in the certificate Secret, loaded again (keys are not cloned).
async fn secret_text_key(secrets: &Api<Secret>, name: &str) -> Result<Option<KeyPair>, Error> {
    Ok(secrets
        .get_opt(name)
        .await?
        .and_then(|s| secret_text(&s, "tls.key"))
        .and_then(|pem| pki::load_key_pem(&pem).ok()))
}

/// An Issued Order for the current spec: writes the Secret with the pending key, reports
/// Ready. `None` when the Order cannot be used (its certificate no longer fits the spec, or
/// its private key cannot be had), so the caller decides afresh.
async fn write_issued(
    ctx: &Context,
    certificate: &Certificate,
    plan: &Plan,
    order: &Order,
    next_key_secret: Option<&Secret>,
    orders: &[Arc<Order>],
) -> Result<Option<Action>, Error> {
    let name = certificate.name_any();
    let order_name = order.name_any();
    let spec = &certificate.spec;
    let namespace = certificate.namespace().unwrap_or_default();
    let orders_api: Api<Order> = Api::namespaced(ctx.client.clone(), &namespace);
    // The cache keeps Orders without their certificates: the Order controller's write
    // passes them on (with the certificate as the signer read it), else the Order is read
    // again.
    let fetched;
    let mut read = None;
    let order = if order
        .status
        .as_ref()
        .is_some_and(|s| s.certificate.is_some())
    {
        order
    } else if let Some((whole, info)) = ctx.issued.take(order) {
        fetched = whole;
        read = Some(info);
        &fetched
    } else {
        match orders_api.get_opt(&order_name).await? {
            Some(fresh) => {
                fetched = fresh;
                &fetched
            }
            None => return Ok(None),
        }
    };
    let status = order.status.clone().unwrap_or_default();
    let (Some(tls_crt), Some(ca_crt)) = (status.certificate.as_deref(), status.ca.as_deref())
    else {
        tracing::warn!(certificate = %name, order = %order_name, "the Issued order carries no certificate");
        return Ok(None);
    };
    let Some(info) = read.or_else(|| pki::inspect_pem(tls_crt).ok()) else {
        tracing::warn!(certificate = %name, order = %order_name, "the Issued order's certificate does not parse");
        return Ok(None);
    };
    if let Some(what) = spec_mismatch(spec, plan, &info, Some(&order.spec)) {
        tracing::info!(certificate = %name, order = %order_name, %what, "the Issued order no longer fits the spec");
        return Ok(None);
    }
    // Only for a certificate that will be written: finding its key may read the Order again.
    let Some(key) = key_for(ctx, certificate, order, &info, next_key_secret).await? else {
        return Ok(None);
    };
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &namespace);
    let revision = order.spec.revision;
    let secret = build_secret(certificate, &plan.ca.1, revision, tls_crt, &key, ca_crt)?;
    let params = PatchParams::apply(MANAGER).force();
    let patch = Patch::Apply(&secret);
    let write = receipt::patch(&secrets, None, &spec.secret_name, &params, &patch);
    sent::<Secret, _, _>(ctx, certificate, &spec.secret_name, write, applied).await?;
    ctx.held_keys.release(&namespace, &name);
    // A pending key an earlier version of the operator wrote out goes once it is delivered.
    // The view shows this controller's own writes (the caller made sure): no next-key Secret
    // in it means there is none.
    if let Some(next_key_secret) = next_key_secret {
        let next_key = next_key_secret_name(&name);
        let delete = async {
            secrets
                .delete(&next_key, &DeleteParams::default())
                .await
                .map(|_| ())
                .or_else(ignore_not_found)
        };
        let gone = |_: &()| Some(cache::Written::deleted(next_key_secret));
        sent::<Secret, _, _>(ctx, certificate, &next_key, delete, gone).await?;
        ctx.pending_keys.forget(&namespace, &next_key);
    }
    let event = Event {
        type_: EventType::Normal,
        reason: "Issued".into(),
        note: Some(format!(
            "Order {order_name:?} issued serial {} valid until {}; written to Secret {:?}",
            info.serial_hex,
            timestamp(info.not_after),
            spec.secret_name
        )),
        action: "Issue".into(),
        secondary: None,
    };
    ctx.recorder
        .publish(&event, &certificate.object_ref(&()))
        .await?;
    cleanup_history(&orders_api, certificate, orders, revision).await?;
    let renewal = renewal_time(spec, &info);
    let progress = Progress {
        revision: Some(revision),
        certificate: Some((info.clone(), renewal)),
        current_order: None,
        failures: (0, None),
        issuing: None,
    };
    let api = api_of(&ctx.client, certificate);
    let previous = certificate.status.as_ref().map(|s| s.conditions.as_slice());
    let message = format!(
        "Certificate {name:?} is valid until {}; renewal at {}",
        timestamp(info.not_after),
        timestamp(renewal)
    );
    let write = apply_status(
        &api,
        certificate,
        MANAGER,
        previous,
        (true, "Ready", &message),
        progress.fields(certificate),
    );
    sent::<Certificate, _, _>(ctx, certificate, &name, write, status_left(certificate)).await?;
    let wait = Duration::try_from(renewal.duration_since(jiff::Timestamp::now()))
        .unwrap_or_default()
        .max(Duration::from_secs(1));
    Ok(Some(Action::requeue(wait)))
}

/// Sends `request`, a write of the object `K`/`name` made for `certificate`, and notes what it
/// left (`left` of its answer; [`cache::OwnWrites`], [`cache::Echoes`]). That object's watch
/// events wait for the note ([`cache::Echoes::send`]), so that its echo is known when heard.
async fn sent<K, T, E>(
    ctx: &Context,
    certificate: &Certificate,
    name: &str,
    request: impl Future<Output = Result<T, E>>,
    left: impl FnOnce(&T) -> Option<cache::Written>,
) -> Result<T, E>
where
    K: Resource<DynamicType = ()>,
{
    let namespace = certificate.namespace().unwrap_or_default();
    let _sending = ctx.echoes.send::<K>(&namespace, name);
    let answer = request.await?;
    if let Some(written) = left(&answer) {
        ctx.echoes.note(&namespace, &written);
        ctx.own_writes
            .record(&namespace, &certificate.name_any(), written);
    }
    Ok(answer)
}

/// What a write left, from its answer.
fn applied<K: Resource<DynamicType = ()>>(answer: &K) -> Option<cache::Written> {
    Some(cache::Written::applied(answer))
}

/// What a status write left, from the resourceVersion it returned (`None`: nothing written).
/// A version that is not a number is not noted: no copy could be told to have reached it, and
/// every reconcile would wait for one.
fn status_left(certificate: &Certificate) -> impl Fn(&Option<String>) -> Option<cache::Written> {
    |version| {
        version
            .as_deref()
            .and_then(|v| cache::Written::at_version(certificate, v))
    }
}

fn ignore_not_found(error: kube::Error) -> Result<(), kube::Error> {
    match &error {
        kube::Error::Api(response) if response.code == 404 => Ok(()),
        _ => Err(error),
    }
}

/// Re-applies the Secret when its labels or annotations (the template's, the issuer's) or the
/// key's encoding no longer match the spec; the certificate itself is unchanged.
async fn refresh_secret_metadata(
    ctx: &Context,
    certificate: &Certificate,
    plan: &Plan,
    held: &Held,
    revision: i64,
) -> Result<(), Error> {
    let (labels, annotations) = secret_metadata(certificate, &plan.ca.1, revision);
    let fits = |wanted: &BTreeMap<String, String>, have: &BTreeMap<String, String>| {
        wanted.iter().all(|(k, v)| have.get(k) == Some(v))
    };
    if fits(&labels, &held.labels) && fits(&annotations, &held.annotations) {
        return Ok(());
    }
    let secret = build_secret(
        certificate,
        &plan.ca.1,
        revision,
        &held.tls_crt,
        &held.key,
        &held.ca_crt,
    )?;
    let namespace = certificate.namespace().unwrap_or_default();
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &namespace);
    let name = &certificate.spec.secret_name;
    let params = PatchParams::apply(MANAGER).force();
    let patch = Patch::Apply(&secret);
    let write = receipt::patch(&secrets, None, name, &params, &patch);
    sent::<Secret, _, _>(ctx, certificate, name, write, applied).await?;
    Ok(())
}

/// Marks in-flight Orders the Certificate moved on from; the Order controller cancels them.
async fn mark_superseded(orders: &Api<Order>, names: &[String]) -> Result<(), Error> {
    for name in names {
        let patch = json!({"metadata": {"annotations": {SUPERSEDED_ANNOTATION: "true"}}});
        orders
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map(|_| ())
            .or_else(ignore_not_found)?;
    }
    Ok(())
}

/// Deletes the Orders beyond `revisionHistoryLimit`, oldest first, never the current one.
async fn cleanup_history(
    orders_api: &Api<Order>,
    certificate: &Certificate,
    orders: &[Arc<Order>],
    current: i64,
) -> Result<(), Error> {
    let limit = certificate
        .spec
        .revision_history_limit
        .and_then(|l| usize::try_from(l).ok())
        .unwrap_or(DEFAULT_REVISION_HISTORY_LIMIT);
    for name in history_to_delete(orders, current, limit) {
        orders_api
            .delete(&name, &DeleteParams::default())
            .await
            .map(|_| ())
            .or_else(ignore_not_found)?;
    }
    Ok(())
}

/// The controller of each of `settings`' scopes, not yet running: its store is the cache of
/// that scope's Certificates.
pub fn controllers(client: &Client, settings: &super::Settings) -> Vec<Prepared> {
    settings
        .scopes()
        .into_iter()
        .map(|scope| {
            let api = super::scoped::<Certificate>(client, &scope);
            let echoes = Arc::new(cache::Echoes::default());
            let controller =
                cache::controller_hearing_others(api, watcher::Config::default(), echoes.clone());
            Prepared {
                scope,
                controller,
                echoes,
            }
        })
        .collect()
}

/// A Certificate controller of one scope, built before it runs so that its store can be
/// shared, with the record of its own writes that its watches leave out.
pub struct Prepared {
    pub scope: super::Scope,
    pub controller: kube::runtime::Controller<Certificate>,
    echoes: Arc<cache::Echoes>,
}

/// Runs `controllers` until their streams end.
pub async fn run(
    client: Client,
    settings: super::Settings,
    orders: super::SharedOrders,
    controllers: Vec<Prepared>,
) {
    let runs = controllers
        .into_iter()
        .map(|prepared| run_in(client.clone(), settings.clone(), orders.clone(), prepared));
    futures_util::future::join_all(runs).await;
}

async fn run_in(
    client: Client,
    settings: super::Settings,
    shared: super::SharedOrders,
    prepared: Prepared,
) {
    let Prepared {
        scope,
        controller,
        echoes,
    } = prepared;
    let shared_orders = shared.of(&scope);
    let store = controller.store();
    // Accounts, groups, products and CAs decide every certificate's standing; few change.
    let all = move || {
        store
            .state()
            .into_iter()
            .map(|c| ObjectRef::from_obj(&*c))
            .collect::<Vec<_>>()
    };
    let (after_group, after_product, after_ca) = (all.clone(), all.clone(), all.clone());
    let managed = watcher::Config::default().labels(&format!("{}={}", MANAGED_BY.0, MANAGED_BY.1));
    // Its Orders, from the watch the Order controller shares: an Issued Order's certificate
    // is not cached there, and is read afresh once, when it is written to the Secret.
    let orders = shared_orders.store();
    let orders_by_certificate = cache::LabelIndex::default();
    let index = orders_by_certificate.clone();
    // The watches' copies of the controller's own writes reconcile nothing new.
    let heard = echoes.clone();
    let order_changes = shared_orders
        .subscribe()
        .inspect(move |order| index.note(CERTIFICATE_LABEL, &**order))
        .filter(move |order| std::future::ready(!heard.echoed(&**order)));
    let (secrets, secret_changes) =
        cache::reflect(super::scoped::<Secret>(&client, &scope), managed);
    let secret_changes = cache::without_echoes(secret_changes, echoes.clone());
    let (accounts, account_changes) = cache::reflect(
        Api::<Account>::all(client.clone()),
        watcher::Config::default(),
    );
    let (groups, group_changes) = cache::reflect(
        super::scoped::<Group>(&client, &scope),
        watcher::Config::default(),
    );
    let (products, product_changes) = cache::reflect(
        super::scoped::<Product>(&client, &scope),
        watcher::Config::default(),
    );
    let (cas, ca_changes) = cache::reflect(
        super::scoped::<PrivateCA>(&client, &scope),
        watcher::Config::default(),
    );
    let synced = cache::Synced::new(vec![
        cache::listed(&accounts),
        cache::listed(&groups),
        cache::listed(&products),
        cache::listed(&cas),
        cache::listed(&secrets),
        shared_orders.listed(),
    ]);
    // No Order is made before its key can be sealed.
    let sealing = sealing::load(&client, &settings.own_namespace).await;
    let context = Context {
        synced,
        recorder: super::recorder(&client),
        client,
        scope,
        accounts,
        groups,
        products,
        cas,
        secrets,
        orders,
        orders_by_certificate,
        own_writes: cache::OwnWrites::default(),
        certificates: controller.store(),
        echoes,
        ca_certificates: Default::default(),
        pending_keys: Default::default(),
        sealing,
        held_keys: Default::default(),
        issued: shared.issued(),
        intake: shared.intake(),
        built: shared.built(),
    };
    controller
        .owns_shared_stream(order_changes)
        .watches_stream(secret_changes, |secret: Secret| {
            let namespace = secret.namespace();
            secret
                .labels()
                .get(CERTIFICATE_LABEL)
                .zip(namespace)
                .map(|(name, ns)| ObjectRef::<Certificate>::new(name).within(&ns))
        })
        .watches_stream(
            account_changes,
            super::on_spec_change(move |_: Account| all()),
        )
        .watches_stream(
            group_changes,
            super::on_spec_change(move |_: Group| after_group()),
        )
        .watches_stream(product_changes, move |_: Product| after_product())
        .watches_stream(ca_changes, move |_: PrivateCA| after_ca())
        .with_config(settings.controller_config())
        .run(
            super::instrumented(reconcile),
            error_policy,
            Arc::new(context),
        )
        .for_each(|_| async {})
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::privateca::{CASubject, PrivateCASpec};

    fn account(name: &str, parent: Option<&str>) -> Account {
        let mut spec = json!({"type": "Enterprise", "namespaces": [name],
            "domains": [{"name": "acme.example"}, {"name": "exact.example", "includeSubdomains": false}],
            "organizations": [{"name": "Acme Inc"}]});
        if let Some(parent) = parent {
            spec["parent"] = json!({"account": parent, "namespace": parent, "subAccount": name});
        }
        serde_json::from_value(
            json!({"apiVersion": "certinext.io/v1alpha1", "kind": "Account",
            "metadata": {"name": name}, "spec": spec}),
        )
        .unwrap()
    }

    fn ready_status() -> Value {
        json!({"conditions": [{"type": "Ready", "status": "True", "reason": "Ready", "message": "",
            "lastTransitionTime": "2025-01-01T00:00:00Z"}]})
    }

    fn product(namespace: &str, ready: bool, extra: Value) -> Product {
        let mut spec =
            json!({"issuerRef": {"name": "root"}, "template": "ServerTLS", "price": "1.00"});
        if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
            spec.extend(extra.clone());
        }
        let mut value = json!({"apiVersion": "certinext.io/v1alpha1", "kind": "Product",
            "metadata": {"name": "web", "namespace": namespace}, "spec": spec});
        if ready {
            value["status"] = ready_status();
        }
        serde_json::from_value(value).unwrap()
    }

    fn ca(ready: bool) -> PrivateCA {
        let mut value = json!({"apiVersion": "certinext.io/v1alpha1", "kind": "PrivateCA",
            "metadata": {"name": "root", "namespace": "acme"}, "spec": {"subject": {"commonName": "Acme Root"}}});
        if ready {
            value["status"] = ready_status();
        }
        serde_json::from_value(value).unwrap()
    }

    fn certificate(spec: Value) -> Certificate {
        let mut base = json!({"secretName": "web-tls", "productRef": {"name": "web"},
            "dnsNames": ["www.acme.example"]});
        if let (Some(base), Some(spec)) = (base.as_object_mut(), spec.as_object()) {
            for (k, v) in spec {
                if v.is_null() {
                    base.remove(k);
                } else {
                    base.insert(k.clone(), v.clone());
                }
            }
        }
        let mut certificate: Certificate = serde_json::from_value(json!({
            "apiVersion": "certinext.io/v1alpha1", "kind": "Certificate",
            "metadata": {"name": "web", "namespace": "acme", "generation": 1, "uid": "uid-web"},
            "spec": base}))
        .unwrap();
        certificate.metadata.generation = Some(1);
        certificate
    }

    fn found() -> Referenced {
        Referenced {
            account: Some(Arc::new(account("acme", None))),
            group_exists: None,
            product: Some(Arc::new(product("acme", true, json!({})))),
            product_account: Some("acme".into()),
            ca: Some(Arc::new(ca(true))),
            ca_account: Some("acme".into()),
        }
    }

    #[test]
    fn validate_refuses_with_a_reason_from_the_fixed_set() {
        type Case = (
            &'static str,
            Value,
            fn(&mut Referenced),
            Option<&'static str>,
            &'static str,
        );
        let cases: Vec<Case> = vec![
            ("valid", json!({}), |_| {}, None, ""),
            (
                "no account",
                json!({}),
                |f| f.account = None,
                Some("NoAccount"),
                "belongs to no Account",
            ),
            (
                "missing group",
                json!({"groupRef": {"name": "team"}}),
                |f| f.group_exists = Some(false),
                Some("GroupNotFound"),
                "groupRef \"team\"",
            ),
            (
                "missing product",
                json!({}),
                |f| f.product = None,
                Some("ProductNotFound"),
                "\"acme/web\"",
            ),
            (
                "another account's product",
                json!({"productRef": {"name": "web", "namespace": "other"}}),
                |f| f.product_account = Some("other".into()),
                Some("ProductNotAllowed"),
                "account \"other\"",
            ),
            (
                "product not ready",
                json!({}),
                |f| f.product = Some(Arc::new(product("acme", false, json!({})))),
                Some("ProductNotReady"),
                "not Ready",
            ),
            (
                "missing CA",
                json!({}),
                |f| f.ca = None,
                Some("IssuerNotFound"),
                "\"acme/root\"",
            ),
            (
                "CA not ready",
                json!({}),
                |f| f.ca = Some(Arc::new(ca(false))),
                Some("IssuerNotReady"),
                "not Ready",
            ),
            (
                "name outside the account",
                json!({"dnsNames": ["www.evil.example"]}),
                |_| {},
                Some("DomainNotAllowed"),
                "dnsNames[0] \"www.evil.example\" is not within the domains of account \"acme\"",
            ),
            (
                "subdomain of an exact domain",
                json!({"dnsNames": ["www.exact.example"]}),
                |_| {},
                Some("DomainNotAllowed"),
                "www.exact.example",
            ),
            (
                "common name outside the account",
                json!({"commonName": "evil.example"}),
                |_| {},
                Some("DomainNotAllowed"),
                "commonName",
            ),
            (
                "name outside the product",
                json!({}),
                |f| {
                    f.product = Some(Arc::new(product(
                        "acme",
                        true,
                        json!({"allowedDomains": ["shop.acme.example"]}),
                    )))
                },
                Some("DomainNotAllowed"),
                "allowed domains of Product \"web\"",
            ),
            (
                "key the product forbids",
                json!({"privateKey": {"algorithm": "RSA", "size": 4096}}),
                |f| {
                    f.product = Some(Arc::new(product(
                        "acme",
                        true,
                        json!({"allowedKeyAlgorithms": ["ECDSA-P256"]}),
                    )))
                },
                Some("KeyAlgorithmNotAllowed"),
                "RSA-4096 is not among the allowedKeyAlgorithms",
            ),
            (
                "foreign organization",
                json!({"subject": {"organizations": ["Evil Corp"]}}),
                |_| {},
                Some("OrganizationNotAllowed"),
                "subject.organizations[0] \"Evil Corp\"",
            ),
            (
                "own organization",
                json!({"subject": {"organizations": ["Acme Inc"]}}),
                |_| {},
                None,
                "",
            ),
            (
                "leaf asking for cert sign",
                json!({"usages": ["cert sign"]}),
                |_| {},
                Some("UsageNotAllowed"),
                "usages[0]",
            ),
            (
                "issuer of another account",
                json!({"productRef": null, "issuerRef": {"name": "root"}}),
                |f| f.ca_account = Some("other".into()),
                Some("IssuerNotAllowed"),
                "account \"other\"",
            ),
            (
                "issuer of the account",
                json!({"productRef": null, "issuerRef": {"name": "root"}}),
                |_| {},
                None,
                "",
            ),
        ];
        for (case, spec, tweak, reason, needle) in cases {
            let mut referenced = found();
            tweak(&mut referenced);
            let outcome = validate(&certificate(spec), &referenced);
            match (reason, outcome) {
                (None, Ok(_)) => {}
                (Some(reason), Err(refusal)) => {
                    assert_eq!(refusal.reason, reason, "{case}: {}", refusal.message);
                    assert!(
                        refusal.message.contains(needle),
                        "{case}: {}",
                        refusal.message
                    );
                    assert!(
                        refusal.message.contains("Certificate \"web\""),
                        "{case}: {}",
                        refusal.message
                    );
                }
                (wanted, got) => panic!("{case}: wanted {wanted:?}, got {got:?}"),
            }
        }
    }

    #[test]
    fn a_sub_account_may_order_its_resellers_product() {
        let mut referenced = found();
        referenced.account = Some(Arc::new(account("acme", Some("reseller"))));
        referenced.product_account = Some("reseller".into());
        let plan = validate(
            &certificate(json!({"productRef": {"name": "web", "namespace": "reseller"}})),
            &referenced,
        )
        .unwrap();
        assert_eq!(
            plan.product_ref,
            Some(ProductReference {
                name: "web".into(),
                namespace: Some("reseller".into())
            })
        );
        assert_eq!(plan.issuer_ref, None);
    }

    struct Fixture {
        issuer: pki::Issuer,
        ca_info: CertificateInfo,
    }

    fn fixture() -> Fixture {
        let spec = PrivateCASpec {
            subject: CASubject {
                common_name: "Acme Root".into(),
                ..Default::default()
            },
            private_key: PrivateKey::default(),
            parent_ref: None,
            duration: Duration::from_secs(87_600 * 3600).into(),
            renew_before: None,
            renew_before_percentage: None,
            path_length: None,
            name_constraints: None,
            secret_name: None,
        };
        let key = pki::generate_key_for(KeyAlgorithm::EcdsaP256).unwrap();
        let now = jiff::Timestamp::now();
        let root =
            pki::issue_root_ca(&pki::CaProfile::from_spec(&spec, now).unwrap(), &key).unwrap();
        let ca_info = pki::inspect_pem(&root.chain_pem).unwrap();
        let issuer = pki::Issuer::new(&root.chain_pem, key, &root.root_pem).unwrap();
        Fixture { issuer, ca_info }
    }

    /// A Secret holding a certificate issued for `certificate` now, valid for an hour.
    fn issued(fixture: &Fixture, certificate: &Certificate, key: &KeyPair) -> (Secret, Order) {
        let csr = pki::parse_csr(&pki::build_csr(&certificate.spec, key).unwrap()).unwrap();
        let now = jiff::Timestamp::now();
        let profile = pki::LeafProfile {
            usages: pki::usages_for(None, &[], key.algorithm()).unwrap(),
            validity: pki::Validity {
                not_before: now,
                not_after: now
                    .checked_add(jiff::SignedDuration::from_hours(1))
                    .unwrap(),
            },
        };
        let leaf = pki::sign_leaf(&csr, &fixture.issuer, &profile).unwrap();
        let plan = validate(certificate, &found()).unwrap();
        let secret =
            build_secret(certificate, "root", 1, &leaf.chain_pem, key, &leaf.root_pem).unwrap();
        let order = build_order(
            certificate,
            &plan,
            1,
            OrderType::Purchase,
            String::new(),
            None,
            "",
        );
        (secret, order)
    }

    #[test]
    fn decide_says_why_to_issue_or_when_to_renew() {
        let fixture = fixture();
        let base = certificate(json!({"duration": "1h"}));
        let plan = validate(&base, &found()).unwrap();
        let ca = CaIdentity {
            name: "root".into(),
            subject: Some(fixture.ca_info.subject.clone()),
            key_id: fixture.ca_info.subject_key_id.clone(),
        };
        let key = pki::generate_key_for(KeyAlgorithm::EcdsaP256).unwrap();
        let (secret, order) = issued(&fixture, &base, &key);
        let now = jiff::Timestamp::now();
        let later = |minutes: i64| {
            now.checked_add(jiff::SignedDuration::from_mins(minutes))
                .unwrap()
        };
        let other_key = pki::generate_key_for(KeyAlgorithm::EcdsaP256).unwrap();
        let swapped = {
            let mut s = secret.clone();
            if let Some(data) = s.data.as_mut() {
                data.insert(
                    "tls.key".into(),
                    ByteString(other_key.to_pem(Default::default()).unwrap().into_bytes()),
                );
            }
            s
        };
        let garbled = {
            let mut s = secret.clone();
            if let Some(data) = s.data.as_mut() {
                data.insert("tls.crt".into(), ByteString(b"not a certificate".to_vec()));
            }
            s
        };
        let moved = {
            let mut s = secret.clone();
            s.metadata
                .annotations
                .get_or_insert_default()
                .insert(ISSUER_NAME_ANNOTATION.into(), "old-root".into());
            s
        };
        let two_names = certificate(
            json!({"duration": "1h", "dnsNames": ["www.acme.example", "api.acme.example"]}),
        );
        let rsa = certificate(json!({"duration": "1h", "privateKey": {"algorithm": "RSA"}}));
        let longer = certificate(json!({"duration": "2h"}));
        let percent = certificate(json!({"duration": "1h", "renewBeforePercentage": 90}));
        let cases: Vec<(&str, &Certificate, Option<&Secret>, jiff::Timestamp, &str)> = vec![
            ("missing", &base, None, now, "SecretMissing"),
            ("garbled", &base, Some(&garbled), now, "SecretInvalid"),
            ("another key", &base, Some(&swapped), now, "KeyMismatch"),
            (
                "a new DNS name",
                &two_names,
                Some(&secret),
                now,
                "SpecChanged",
            ),
            (
                "another key algorithm",
                &rsa,
                Some(&secret),
                now,
                "SpecChanged",
            ),
            (
                "a longer duration",
                &longer,
                Some(&secret),
                now,
                "SpecChanged",
            ),
            ("another issuer", &base, Some(&moved), now, "IssuerChanged"),
            (
                "two thirds in",
                &base,
                Some(&secret),
                later(41),
                "RenewalDue",
            ),
            ("90% left", &percent, Some(&secret), later(7), "RenewalDue"),
            ("expired", &base, Some(&secret), later(61), "Expired"),
            ("fresh", &base, Some(&secret), now, "Hold"),
            ("fresh, 90% left", &percent, Some(&secret), later(5), "Hold"),
        ];
        for (case, certificate, secret, at, wanted) in cases {
            let plan = validate(certificate, &found()).unwrap_or_else(|_| plan.clone());
            let decision = decide(
                &certificate.spec,
                &plan,
                &read_secret(secret),
                Some(&order.spec),
                &ca,
                at,
            );
            let got = match &decision {
                Decision::Hold { .. } => "Hold",
                Decision::Issue(trigger) => trigger.reason(),
            };
            assert_eq!(got, wanted, "{case}: {decision:?}");
        }
    }

    #[test]
    fn the_renewal_time_follows_cert_managers_rule() {
        let fixture = fixture();
        let key = pki::generate_key_for(KeyAlgorithm::EcdsaP256).unwrap();
        let (secret, _) = issued(&fixture, &certificate(json!({})), &key);
        let Current::Held(held) = read_secret(Some(&secret)) else {
            panic!("held")
        };
        let start = held.info.not_before;
        for (spec, after_minutes) in [
            (json!({}), 40),
            (json!({"renewBeforePercentage": 25}), 45),
            (json!({"renewBefore": "10m"}), 50),
            (json!({"renewBefore": "2h"}), 40),
        ] {
            let at = renewal_time(&certificate(spec.clone()).spec, &held.info);
            assert_eq!(
                at.duration_since(start).as_secs() / 60,
                after_minutes,
                "{spec}"
            );
        }
    }

    fn order(revision: i64, state: Option<&str>) -> Order {
        let mut value = json!({"apiVersion": "certinext.io/v1alpha1", "kind": "Order",
            "metadata": {"name": format!("web-{revision}"), "namespace": "acme"},
            "spec": {"certificateRef": {"name": "web"}, "revision": revision, "type": "Renewal",
                     "request": "csr", "duration": "1h"}});
        if let Some(state) = state {
            value["status"] = json!({"state": state, "conditions": [{"type": "Ready", "status": "False",
                "reason": state, "message": "why", "lastTransitionTime": format!("2025-01-01T00:00:{:02}Z", revision)}]});
        }
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn the_next_revision_follows_the_highest_order_or_status() {
        for (revisions, status, wanted) in [
            (vec![], None, 1),
            (vec![], Some(4), 5),
            (vec![1, 2, 3], Some(2), 4),
            (vec![1, 7], Some(3), 8),
            (vec![2], Some(9), 10),
        ] {
            let orders: Vec<Arc<Order>> = revisions
                .iter()
                .map(|r| Arc::new(order(*r, None)))
                .collect();
            assert_eq!(
                next_revision(&orders, status),
                wanted,
                "{revisions:?} {status:?}"
            );
        }
    }

    #[test]
    fn backoff_doubles_from_ten_seconds_up_to_an_hour() {
        for (attempts, seconds) in [
            (0, 10),
            (1, 10),
            (2, 20),
            (3, 40),
            (6, 320),
            (9, 2560),
            (10, 3600),
            (99, 3600),
            (i32::MAX, 3600),
        ] {
            assert_eq!(
                backoff(attempts),
                Duration::from_secs(seconds),
                "{attempts}"
            );
        }
    }

    #[test]
    fn failures_count_rejected_and_failed_orders_since_the_issued_revision() {
        let orders = vec![
            order(1, Some("Issued")),
            order(2, Some("Rejected")),
            order(3, Some("Issued")),
            order(4, Some("Rejected")),
            order(5, Some("Failed")),
            order(6, Some("Cancelled")),
            order(7, None),
        ];
        let orders: Vec<Arc<Order>> = orders.into_iter().map(Arc::new).collect();
        let (count, last) = failures(&orders, 3);
        assert_eq!(count, 2);
        assert_eq!(last.map(timestamp).as_deref(), Some("2025-01-01T00:00:05Z"));
        assert_eq!(failures(&orders, 5).0, 0);
    }

    #[test]
    fn history_keeps_the_limit_never_the_current_nor_one_in_flight() {
        let orders: Vec<Arc<Order>> = [
            order(1, Some("Issued")),
            order(2, Some("Rejected")),
            order(3, None),
            order(4, Some("Issued")),
            order(5, Some("Issued")),
            order(6, Some("PendingApproval")),
        ]
        .into_iter()
        .map(Arc::new)
        .collect();
        for (current, limit, wanted) in [
            (5, 3, vec!["web-1", "web-2", "web-4"]),
            (5, 1, vec!["web-1", "web-2", "web-4"]),
            (5, 5, vec!["web-1"]),
            (5, 6, vec![]),
            (4, 3, vec!["web-1", "web-2"]),
        ] {
            assert_eq!(
                history_to_delete(&orders, current, limit),
                wanted,
                "current {current}, limit {limit}"
            );
        }
    }

    #[test]
    fn an_orders_quiet_time_counts_from_the_end_of_its_creation_second() {
        let order: Order = serde_json::from_value(json!({
            "apiVersion": "certinext.io/v1alpha1", "kind": "Order",
            "metadata": {"name": "web-1", "namespace": "acme",
                "creationTimestamp": "2026-11-28T10:00:00Z"},
            "spec": {"certificateRef": {"name": "web"}, "revision": 1, "type": "Purchase",
                "request": "CSR", "duration": "2160h"},
        }))
        .unwrap();
        let at = |t: &str| t.parse::<jiff::Timestamp>().unwrap();
        let left = |t: &str| quiet_left(&order, at(t));
        // Created at some moment within 10:00:00, so waited at least `now - 10:00:01`.
        assert_eq!(left("2026-11-28T10:00:00.900Z"), Some(ISSUING_QUIET));
        assert_eq!(
            left("2026-11-28T10:00:01.500Z"),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(
            left("2026-11-28T10:00:02.999Z"),
            Some(Duration::from_millis(1))
        );
        assert_eq!(left("2026-11-28T10:00:03Z"), None);
        assert_eq!(left("2026-11-28T10:01:00Z"), None);
        // A clock behind the API server's waits the whole quiet time, no more.
        assert_eq!(left("2026-11-28T09:59:50Z"), Some(ISSUING_QUIET));
    }

    #[test]
    fn the_order_and_the_secrets_follow_the_contract() {
        let certificate = certificate(
            json!({"groupRef": {"name": "team"}, "ipAddresses": ["10.0.0.1"],
            "secretTemplate": {"labels": {"team": "web"}, "annotations": {"note": "x"}},
            "privateKey": {"encoding": "PKCS8"}}),
        );
        let plan = validate(&certificate, &{
            let mut f = found();
            f.group_exists = Some(true);
            f
        })
        .unwrap();
        let because = "renewal was due at 2026-11-28T10:00:00Z";
        let order = build_order(
            &certificate,
            &plan,
            3,
            OrderType::Renewal,
            "CSR".into(),
            Some("v1.sealed".into()),
            because,
        );
        assert_eq!(order.name_any(), "web-3");
        assert_eq!(order.annotations()[ORDERED_BECAUSE_ANNOTATION], because);
        assert_eq!(order.labels()[CERTIFICATE_LABEL], "web");
        assert_eq!(order.labels()[MANAGED_BY.0], MANAGED_BY.1);
        assert_eq!(order.owner_references()[0].uid, "uid-web");
        assert_eq!(order.owner_references()[0].controller, Some(true));
        assert_eq!(order.namespace(), certificate.namespace());
        assert_eq!(order.finalizers(), [super::super::order::FINALIZER]);
        assert_eq!(
            order.annotations()[GENERATION_ANNOTATION],
            certificate
                .metadata
                .generation
                .unwrap_or_default()
                .to_string()
        );
        let sent = serde_json::to_value(&order).unwrap();
        assert_eq!(
            (&sent["apiVersion"], &sent["kind"], &sent["spec"]["request"]),
            (
                &json!("certinext.io/v1alpha1"),
                &json!("Order"),
                &json!("CSR")
            )
        );
        assert!(sent.get("status").is_none_or(Value::is_null));
        assert_eq!(
            order
                .spec
                .product_ref
                .as_ref()
                .and_then(|p| p.namespace.as_deref()),
            Some("acme")
        );
        assert_eq!(
            order.spec.group_ref.as_ref().map(|g| g.name.as_str()),
            Some("team")
        );
        assert_eq!(order.spec.order_type, OrderType::Renewal);
        assert_eq!(order.spec.sealed_key.as_deref(), Some("v1.sealed"));

        let key = pki::generate_key_for(KeyAlgorithm::EcdsaP256).unwrap();
        let next = build_next_key_secret(&certificate, &key).unwrap();
        assert_eq!(next.metadata.name.as_deref(), Some("web-next-key"));
        assert_eq!(next.labels()[CERTIFICATE_LABEL], "web");
        assert_eq!(next.owner_references()[0].uid, "uid-web");

        let secret = build_secret(&certificate, "root", 3, "CRT", &key, "CA").unwrap();
        assert_eq!(secret.type_.as_deref(), Some("kubernetes.io/tls"));
        let annotations = secret.annotations();
        for (k, v) in [
            (CERTIFICATE_LABEL, "web"),
            (ISSUER_NAME_ANNOTATION, "root"),
            (ISSUER_KIND_ANNOTATION, "PrivateCA"),
            (ALT_NAMES_ANNOTATION, "www.acme.example"),
            (IP_SANS_ANNOTATION, "10.0.0.1"),
            (REVISION_ANNOTATION, "3"),
            ("note", "x"),
        ] {
            assert_eq!(annotations.get(k).map(String::as_str), Some(v), "{k}");
        }
        assert_eq!(secret.labels()["team"], "web");
        assert!(secret.owner_references().is_empty());
        let tls_key = secret_text(&secret, "tls.key").unwrap();
        assert!(tls_key.starts_with("-----BEGIN PRIVATE KEY-----"));
    }
}
