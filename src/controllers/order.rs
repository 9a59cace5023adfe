//! The Order controller: one issuance, charged exactly once.
//!
//! dereference (the account holding the namespace, the product, its PrivateCA and CA Secret,
//! the group, and for a sub-account its SubAccount and price list) → validate (pure: the CSR,
//! the product, the names, the key) → approval → sign → charge (serialised per account wallet,
//! against the in-process ledger) → one status write: Issued, with the charge and the
//! certificate.
//!
//! Charging exactly once rests on three things. The charge is written into the Order's own
//! status, so the Order is the idempotency key. Charges to an account's wallet and to its
//! groups are decided in turn under the account's lock (shared with the controllers that
//! allocate its funds, which wait for the charges in flight). The write is guarded by the
//! resourceVersion of the Order the decision was made on, so an attempt on a stale copy (one
//! charged, decided or superseded since) fails with a conflict instead of writing a second
//! charge. A charge enters the in-memory ledger when it is decided, so the charges decided
//! while it is written count it; a write that fails takes it out again, one that succeeds
//! replaces it with the Order as written. The ledger is rebuilt from a fresh list of every
//! Order when the controller starts. The charge and the certificate travel in the same
//! write, so no Order is charged without its certificate, nor issued without its charge.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::Store;
use kube::runtime::watcher;
use kube::{Client, ResourceExt};

use super::events::Recorder;
use super::{
    Error, Tenancy, Wallets, account, add_finalizer, api_of, cache, condition, error_policy,
    no_account, recorder, remove_finalizer,
};
use crate::api::common::IssuerReference;
use crate::api::order::{
    Decision, OrderState, OrderStatus, OrderType, Payer, PayerKind, Transaction, TransactionType,
};
use crate::api::{Account, Group, Order, PriceList, PrivateCA, Product, SubAccount};
use crate::billing::ledger::{self, ARCHIVE_ANNOTATION, Archive, Entry, Ledger};
use crate::billing::pricing::{self, ApprovalInputs};
use crate::billing::{Money, MoneyError};
use crate::pki::{self, CertificateInfo, Issuer, LeafProfile, ParsedCsr};

/// The field manager of what this controller writes.
pub const MANAGER: &str = "certinext-order-controller";
/// The annotation the Certificate controller sets on an order it no longer wants.
pub const SUPERSEDED: &str = "certinext.io/superseded";

/// The in-process ledger: every payer's charges. Charges are serialised by the account
/// wallets' locks ([`Wallets`]), not here.
#[derive(Default)]
pub struct Books {
    ledger: std::sync::Mutex<Ledger>,
}

impl Books {
    /// The books of every Order, from a fresh list (not a cache), with the archives of the
    /// charges of deleted Orders that groups and accounts keep.
    pub async fn load(client: &Client, settings: &super::Settings) -> Result<Books, Error> {
        let mut orders = Vec::new();
        let mut groups = Vec::new();
        for scope in settings.scopes() {
            let listed = super::scoped::<Order>(client, &scope)
                .list(&ListParams::default())
                .await?;
            orders.extend(listed.items);
            groups.extend(
                super::scoped::<Group>(client, &scope)
                    .list_metadata(&ListParams::default())
                    .await?
                    .items,
            );
        }
        let mut ledger = Ledger::from_orders(&orders);
        for group in groups {
            let payer = Payer {
                kind: PayerKind::Group,
                name: group.name_any(),
                namespace: group.namespace(),
            };
            ledger.archive(&payer, archive_of(&group.name_any(), group.annotations())?);
        }
        for account in Api::<Account>::all(client.clone())
            .list_metadata(&ListParams::default())
            .await?
        {
            let payer = Payer {
                kind: PayerKind::Account,
                name: account.name_any(),
                namespace: None,
            };
            ledger.archive(
                &payer,
                archive_of(&account.name_any(), account.annotations())?,
            );
        }
        Ok(Books::from_ledger(ledger))
    }

    pub fn from_ledger(ledger: Ledger) -> Books {
        Books {
            ledger: std::sync::Mutex::new(ledger),
        }
    }

    pub fn spent(&self, payer: &Payer) -> Result<Money, MoneyError> {
        let ledger = self.ledger.lock().unwrap_or_else(|e| e.into_inner());
        ledger.spent(payer)
    }

    pub fn entry(&self, order: &Order) -> Option<Entry> {
        let ledger = self.ledger.lock().unwrap_or_else(|e| e.into_inner());
        ledger.entry(order).cloned()
    }

    /// Records an order as the API server holds it after a successful write.
    fn record(&self, order: &Order) {
        let mut ledger = self.ledger.lock().unwrap_or_else(|e| e.into_inner());
        ledger.record(order);
    }

    /// Records the charge `status` holds for `order`, decided and about to be written.
    fn record_charge(&self, order: &Order, status: &OrderStatus) {
        let mut ledger = self.ledger.lock().unwrap_or_else(|e| e.into_inner());
        ledger.record_as(order, Some(status));
    }

    /// Sets a payer's archive as its annotation holds it now (read under the account's lock,
    /// so nothing newer can exist: a deleted group's spending may have been folded in).
    fn set_archive(&self, payer: &Payer, archive: Archive) {
        let mut ledger = self.ledger.lock().unwrap_or_else(|e| e.into_inner());
        ledger.archive(payer, archive);
    }

    /// Moves a deleted order's charge into its payer's archive.
    fn archive(&self, payer: &Payer, archive: Archive, order: &Order) {
        let mut ledger = self.ledger.lock().unwrap_or_else(|e| e.into_inner());
        ledger.archive(payer, archive);
        ledger.forget(order);
    }
}

/// The finalizer that keeps a charged Order until its charge is in its payer's archive.
pub const FINALIZER: &str = "certinext.io/ledger";

/// A payer's archive, from its annotations.
pub fn archive_of(
    payer: &str,
    annotations: &std::collections::BTreeMap<String, String>,
) -> Result<Archive, Error> {
    Archive::from_annotations(annotations).map_err(|e| Error::Internal(format!("{payer:?}: {e}")))
}

/// Folds a deleted order's charge into its payer's archive (an annotation on the Group or
/// Account), then lets the order go. Serialised with the payer's charges; the archive write
/// is guarded by the payer's resourceVersion, and an order folded before is not folded again,
/// so a crash between the two steps counts the charge once.
async fn release(step: &Step<'_>, order: &Order) -> Result<Action, Error> {
    let books = &step.ctx.books;
    let payer = order.status.as_ref().and_then(|s| s.payer.clone());
    // Only an issued certificate was paid for: an order deleted before issuance is, in
    // effect, refunded.
    let issued = order.status.as_ref().and_then(|s| s.state) == Some(OrderState::Issued);
    let entry = Entry::of_order(order).filter(|_| issued);
    if let (Some(entry), Some(payer)) = (entry, payer) {
        let client = &step.ctx.client;
        let wallet = match payer.kind {
            PayerKind::Account => payer.name.clone(),
            PayerKind::Group => Tenancy::load(client)
                .await?
                .holder(payer.namespace.as_deref().unwrap_or_default())
                .map_or_else(|| ledger::payer_key(&payer), |a| a.name_any()),
        };
        let _serialised = step.ctx.wallets.lock(&wallet).await;
        let name = payer.name.clone();
        let patched = match payer.kind {
            PayerKind::Group => {
                let api: Api<Group> = Api::namespaced(
                    client.clone(),
                    payer.namespace.as_deref().unwrap_or_default(),
                );
                fold(&api, &name, &entry).await?
            }
            PayerKind::Account => fold(&Api::<Account>::all(client.clone()), &name, &entry).await?,
        };
        match patched {
            Folded::Into(archive) => books.archive(&payer, archive, order),
            Folded::PayerGone => books.archive(&payer, Archive::default(), order),
            Folded::Conflict => return Ok(retry()),
        }
    }
    remove_finalizer(&step.api, order, FINALIZER).await?;
    Ok(Action::await_change())
}

enum Folded {
    Into(Archive),
    /// The payer was deleted first. A group's spending, this order's charge included, moved
    /// to its account's archive when it went: counting the charge again would count it twice.
    PayerGone,
    Conflict,
}

async fn fold<K>(api: &Api<K>, name: &str, entry: &Entry) -> Result<Folded, Error>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let Some(payer) = api.get_metadata_opt(name).await? else {
        return Ok(Folded::PayerGone);
    };
    let mut archive = archive_of(name, payer.annotations())?;
    let money = |e| Error::Money(name.to_owned(), e);
    if !archive.fold(entry).map_err(money)? {
        return Ok(Folded::Into(archive));
    }
    let patch = serde_json::json!({"metadata": {
        "resourceVersion": payer.resource_version(),
        "annotations": {ARCHIVE_ANNOTATION: archive.to_annotation()},
    }});
    match api
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => Ok(Folded::Into(archive)),
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(Folded::Conflict),
        Err(e) => Err(e.into()),
    }
}

pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    pub books: Arc<Books>,
    /// The locks that serialise each account wallet's charges and allocations.
    pub wallets: Arc<Wallets>,
    /// What an order refers to, cached.
    pub caches: Caches,
    /// The certificates just issued, for the Certificate controller.
    pub issued: Arc<cache::IssuedOrders>,
    /// The Orders the Certificate controller created, until taken up here.
    pub intake: Arc<cache::Intake>,
    /// The requests the Certificate controller built for them, until parsed here.
    pub built: Arc<cache::BuiltRequests>,
    /// This controller's status writes, whose watch events reconcile nothing new.
    pub echoes: Arc<cache::Echoes>,
}

/// The caches of what an order refers to, in the controller's scope (the account cache is
/// cluster-wide); what lies outside the scope is read from the API server.
pub struct Caches {
    pub scope: super::Scope,
    pub accounts: Store<Account>,
    pub products: Store<Product>,
    pub cas: Store<PrivateCA>,
    /// The CAs' Secrets (labelled with their PrivateCA).
    pub ca_secrets: Store<Secret>,
    pub groups: Store<Group>,
    pub sub_accounts: Store<SubAccount>,
    pub price_lists: Store<PriceList>,
    /// Every cache above has listed its objects once.
    pub synced: cache::Synced,
    /// The signers of the CAs' Secrets.
    pub issuers: Issuers,
}

/// The signer of each CA Secret, rebuilt once per version of the Secret ([`cache::PerVersion`]):
/// a key and its certificates are parsed once per version, not once per Order.
#[derive(Default)]
pub struct Issuers(cache::PerVersion<Issuer>);

impl Issuers {
    /// The signer held by CA Secret `namespace/name` (`secret`, if it exists). Otherwise what
    /// the Secret lacks, as the end of a sentence naming it.
    pub fn get(
        &self,
        namespace: &str,
        name: &str,
        secret: Option<&Secret>,
    ) -> Result<Arc<Issuer>, String> {
        let Some(secret) = secret else {
            self.0.forget(namespace, name);
            return Err(LACKS_CA.into());
        };
        self.0.get(secret, |secret| {
            let field = |key: &str| {
                secret
                    .data
                    .as_ref()
                    .and_then(|d| d.get(key))
                    .map(|b| String::from_utf8_lossy(&b.0))
            };
            let (Some(tls_crt), Some(tls_key), Some(ca_crt)) =
                (field("tls.crt"), field("tls.key"), field("ca.crt"))
            else {
                return Err(LACKS_CA.to_owned());
            };
            Issuer::from_pem(&tls_crt, &tls_key, &ca_crt)
                .map_err(|e| format!("does not hold a usable CA: {e}"))
        })
    }
}

const LACKS_CA: &str = "does not hold tls.crt, tls.key and ca.crt yet";

impl Caches {
    /// A namespaced object, from its cache when the namespace is in scope.
    async fn get<K>(
        &self,
        store: &Store<K>,
        client: &Client,
        namespace: &str,
        name: &str,
    ) -> Result<Option<K>, Error>
    where
        K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug
            + 'static,
    {
        let found = cache::namespaced(store, client, &self.scope, namespace, name).await?;
        Ok(found.map(|o| (*o).clone()))
    }
}

/// A product and the account holding its namespace.
pub type OwnedProduct = (Product, Option<Arc<Account>>);

/// What an order refers to, fetched.
pub struct Inputs {
    /// The account holding the order's namespace, and the namespaces it holds.
    pub account: Arc<Account>,
    pub namespaces: Vec<String>,
    /// The product, with the account holding its namespace.
    pub product: Option<OwnedProduct>,
    /// The CA, as `namespace/name`, with the account holding its namespace.
    pub issuer_name: String,
    pub issuer_account: Option<Arc<Account>>,
    /// The signer rebuilt from the CA Secret.
    pub issuer: Arc<Issuer>,
    pub group: Option<Group>,
    /// For a sub-account: its SubAccount and the price list it names.
    pub sub_account: Option<SubAccount>,
    pub price_list: Option<PriceList>,
}

/// Why an order cannot proceed yet or at all.
#[derive(Debug)]
pub enum Hold {
    /// Refused by policy: the order ends Rejected (reason, message).
    Reject(&'static str, String),
    /// Something it needs is not ready yet: try again later (reason, message).
    Wait(&'static str, String),
}

/// What validation decides for an order that may proceed.
#[derive(Debug, Clone)]
pub struct Plan {
    pub price: Money,
    pub currency: String,
    pub payer: Payer,
    /// Why an approver must decide first; empty when nobody must.
    pub approval: Vec<String>,
    pub leaf: LeafProfile,
}

/// The DNS names an order's CSR asks for: its DNS SANs and a common name that is a DNS name.
fn dns_names(csr: &ParsedCsr) -> Vec<String> {
    let mut names = csr.subject_alt_names.dns_names.clone();
    if let Some(cn) = &csr.common_name
        && cn.contains('.')
        && pki::validate_dns_name(cn).is_ok()
        && !names.contains(cn)
    {
        names.push(cn.clone());
    }
    names
}

/// Checks an order against what it refers to, and prices it. Pure.
pub fn validate(
    order: &Order,
    inputs: &Inputs,
    csr: &ParsedCsr,
    now: jiff::Timestamp,
) -> Result<Plan, Hold> {
    let name = order.name_any();
    let account = &inputs.account;
    let account_name = account.name_any();
    let parent = account.spec.parent.as_ref().map(|p| p.account.as_str());
    let belongs = |holder: Option<&Arc<Account>>| {
        holder
            .is_some_and(|h| h.name_any() == account_name || Some(h.name_any().as_str()) == parent)
    };
    let owner = |holder: Option<&Arc<Account>>| {
        holder.map_or("no account".to_owned(), |a| {
            format!("account {:?}", a.name_any())
        })
    };
    let reject = |reason: &'static str, message: String| Hold::Reject(reason, message);

    let (template, max_validity, allowed_domains, allowed_keys, auto_approve) = match &inputs
        .product
    {
        Some((product, holder)) => {
            let product_name = product.name_any();
            if !belongs(holder.as_ref()) {
                return Err(reject(
                    "ProductNotAllowed",
                    format!(
                        "Order {name:?}: Product {product_name:?} belongs to {}, not to account {account_name:?} or its parent reseller",
                        owner(holder.as_ref())
                    ),
                ));
            }
            if !product
                .status
                .as_ref()
                .is_some_and(|s| super::is_ready(&s.conditions))
            {
                return Err(reject(
                    "ProductNotReady",
                    format!(
                        "Order {name:?}: Product {product_name:?} is not Ready; see its conditions"
                    ),
                ));
            }
            (
                Some(product.spec.template),
                Some(&product.spec.max_validity),
                product.spec.allowed_domains.as_slice(),
                product.spec.allowed_key_algorithms.as_slice(),
                Some((product_name, product.spec.auto_approve)),
            )
        }
        None => {
            if !belongs(inputs.issuer_account.as_ref()) {
                return Err(reject(
                    "IssuerNotAllowed",
                    format!(
                        "Order {name:?}: issuer PrivateCA {:?} belongs to {}, not to account {account_name:?} or its parent reseller",
                        inputs.issuer_name,
                        owner(inputs.issuer_account.as_ref())
                    ),
                ));
            }
            (None, None, &[][..], &[][..], None)
        }
    };

    for dns_name in dns_names(csr) {
        if !super::product::within_domains(account, &dns_name) {
            return Err(reject(
                "DomainNotAllowed",
                format!(
                    "Order {name:?}: DNS name {dns_name:?} is not within the domains of account {account_name:?}"
                ),
            ));
        }
        if !allowed_domains.is_empty() && !pki::dns_name_in_domains(&dns_name, allowed_domains) {
            return Err(reject(
                "DomainNotAllowed",
                format!(
                    "Order {name:?}: DNS name {dns_name:?} is not within the allowed domains of the product ({})",
                    allowed_domains.join(", ")
                ),
            ));
        }
        if let Err(violation) = inputs.issuer.check_dns_name(&dns_name) {
            return Err(reject(
                "NameConstraint",
                format!("Order {name:?}: {violation}"),
            ));
        }
    }
    if !allowed_keys.is_empty() && !allowed_keys.contains(&csr.key_algorithm) {
        let allowed: Vec<&str> = allowed_keys
            .iter()
            .map(|k| pki::algorithm_name(*k))
            .collect();
        return Err(reject(
            "KeyAlgorithmNotAllowed",
            format!(
                "Order {name:?}: the CSR's key is {}, which the product does not allow (allowed: {})",
                pki::algorithm_name(csr.key_algorithm),
                allowed.join(", ")
            ),
        ));
    }
    let invalid = |e: pki::PkiError| reject("InvalidRequest", format!("Order {name:?}: {e}"));
    let usages =
        pki::usages_for(template, &order.spec.usages, csr.key_algorithm).map_err(invalid)?;
    let validity = pki::clip_validity(
        now,
        &order.spec.duration,
        max_validity,
        inputs.issuer.not_after(),
    )
    .map_err(invalid)?;

    let product = inputs.product.as_ref().map(|(p, _)| p);
    let price = pricing::price(product, inputs.price_list.as_ref());
    let payer = pricing::payer(account, inputs.group.as_ref());
    if let Some(group) = &inputs.group
        && payer.kind == PayerKind::Group
        && group.metadata.deletion_timestamp.is_some()
    {
        return Err(reject(
            "GroupDeleting",
            group_deleting(&name, &group.name_any()),
        ));
    }
    let group_policy = inputs.group.as_ref().and_then(|g| {
        g.spec
            .order_approval
            .map(|policy| (g.metadata.name.as_deref().unwrap_or_default(), policy))
    });
    let product_name = auto_approve.as_ref().map(|(n, a)| (n.as_str(), *a));
    let approval = pricing::approval_required(&ApprovalInputs {
        product: product_name,
        group: group_policy,
        account: (&account_name, account.spec.order_approval),
        sub_account: inputs.sub_account.as_ref().map(|s| {
            (
                s.metadata.name.as_deref().unwrap_or_default(),
                s.spec.order_approval,
            )
        }),
    });
    Ok(Plan {
        price,
        currency: account.spec.currency.clone(),
        payer,
        approval,
        leaf: LeafProfile { usages, validity },
    })
}

/// The refusal of an order whose paying group is being deleted.
fn group_deleting(order: &str, group: &str) -> String {
    format!(
        "Order {order:?}: Group {group:?} is being deleted and pays for no new orders; name another group in spec.groupRef, or none"
    )
}

/// Fetches what an order refers to.
pub async fn dereference(ctx: &Context, order: &Order) -> Result<Result<Inputs, Hold>, Error> {
    let name = order.name_any();
    let namespace = order.namespace().unwrap_or_default();
    let (client, caches) = (&ctx.client, &ctx.caches);
    caches.synced.wait().await?;
    let tenancy = Tenancy::from_accounts(caches.accounts.state());
    let Some(account) = tenancy.holder(&namespace).cloned() else {
        return Ok(Err(Hold::Reject(
            "NoAccount",
            no_account("Order", &name, &namespace),
        )));
    };
    let reject = |reason, message: String| Ok(Err(Hold::Reject(reason, message)));

    let (product, issuer_ref): (Option<OwnedProduct>, IssuerReference) =
        match (&order.spec.product_ref, &order.spec.issuer_ref) {
            (Some(reference), _) => {
                let product_namespace = reference.namespace.clone().unwrap_or(namespace.clone());
                let found = caches
                    .get(
                        &caches.products,
                        client,
                        &product_namespace,
                        &reference.name,
                    )
                    .await?;
                let Some(product) = found else {
                    return reject(
                        "ProductNotFound",
                        format!(
                            "Order {name:?}: Product {product_namespace}/{} does not exist",
                            reference.name
                        ),
                    );
                };
                let mut issuer = product.spec.issuer_ref.clone();
                issuer.namespace = issuer.namespace.or(Some(product_namespace.clone()));
                let holder = tenancy.holder(&product_namespace).cloned();
                (Some((product, holder)), issuer)
            }
            (None, Some(issuer)) => {
                let mut issuer = issuer.clone();
                issuer.namespace = issuer.namespace.or(Some(namespace.clone()));
                (None, issuer)
            }
            (None, None) => {
                return reject(
                    "NoIssuer",
                    format!("Order {name:?}: spec names neither productRef nor issuerRef"),
                );
            }
        };
    let issuer_namespace = issuer_ref.namespace.clone().unwrap_or_default();
    let issuer_name = format!("{issuer_namespace}/{}", issuer_ref.name);
    let Some(ca) = caches
        .get(&caches.cas, client, &issuer_namespace, &issuer_ref.name)
        .await?
    else {
        return reject(
            "IssuerNotFound",
            format!("Order {name:?}: issuer PrivateCA {issuer_name} does not exist"),
        );
    };
    if !ca
        .status
        .as_ref()
        .is_some_and(|s| super::is_ready(&s.conditions))
    {
        return Ok(Err(Hold::Wait(
            "IssuerNotReady",
            format!("Order {name:?}: issuer PrivateCA {issuer_name} is not Ready yet"),
        )));
    }
    let secret_name = ca
        .status
        .as_ref()
        .and_then(|s| s.secret_name.clone())
        .or_else(|| ca.spec.secret_name.clone())
        .unwrap_or_else(|| format!("{}-ca", issuer_ref.name));
    let secret = caches
        .get(&caches.ca_secrets, client, &issuer_namespace, &secret_name)
        .await?;
    let issuer = match caches
        .issuers
        .get(&issuer_namespace, &secret_name, secret.as_ref())
    {
        Ok(issuer) => issuer,
        Err(problem) => {
            return Ok(Err(Hold::Wait(
                "IssuerNotReady",
                format!(
                    "Order {name:?}: the Secret {issuer_namespace}/{secret_name} of PrivateCA {issuer_name} {problem}"
                ),
            )));
        }
    };
    let issuer_account = tenancy.holder(&issuer_namespace).cloned();

    let group = match &order.spec.group_ref {
        Some(reference) => {
            let found = caches
                .get(&caches.groups, client, &namespace, &reference.name)
                .await?;
            match found {
                Some(group) => Some(group),
                None => {
                    return reject(
                        "GroupNotFound",
                        format!("Order {name:?}: Group {:?} does not exist", reference.name),
                    );
                }
            }
        }
        None => None,
    };

    let (mut sub_account, mut price_list) = (None, None);
    if let Some(parent) = &account.spec.parent {
        let sub = caches
            .get(
                &caches.sub_accounts,
                client,
                &parent.namespace,
                &parent.sub_account,
            )
            .await?
            .filter(|s| {
                s.status.as_ref().and_then(|s| s.account.as_deref()) == Some(&account.name_any())
            });
        // Its price list and its reseller's approval come from the SubAccount: until the
        // SubAccount names this account, the order can be neither priced nor approved.
        if sub.is_none() {
            return Ok(Err(Hold::Wait(
                "SubAccountNotReady",
                format!(
                    "Order {name:?}: Account {:?} is a sub-account of {:?}, and SubAccount {}/{} does not name it yet",
                    account.name_any(),
                    parent.account,
                    parent.namespace,
                    parent.sub_account
                ),
            )));
        }
        if let Some(list_ref) = sub.as_ref().and_then(|s| s.spec.price_list_ref.as_ref()) {
            price_list = caches
                .get(
                    &caches.price_lists,
                    client,
                    &parent.namespace,
                    &list_ref.name,
                )
                .await?;
        }
        sub_account = sub;
    }
    let namespaces = tenancy.claims.held_by(&account.name_any());
    Ok(Ok(Inputs {
        account,
        namespaces,
        product,
        issuer_name,
        issuer_account,
        issuer,
        group,
        sub_account,
        price_list,
    }))
}

fn now() -> Time {
    // Kubernetes times are whole seconds.
    Time(jiff::Timestamp::from_second(jiff::Timestamp::now().as_second()).unwrap_or_default())
}

/// `previous` moved to `state`, with its Ready condition saying `message`.
fn next_status(order: &Order, state: OrderState, message: &str) -> OrderStatus {
    let mut status = order.status.clone().unwrap_or_default();
    let generation = order.metadata.generation;
    let issued = state == OrderState::Issued;
    let reason = if issued { "Issued" } else { state.as_str() };
    let ready = condition(
        "Ready",
        issued,
        reason,
        message,
        generation,
        Some(&status.conditions),
    );
    let ready: Option<Condition> = serde_json::from_value(ready).ok();
    status.conditions.retain(|c| c.type_ != "Ready");
    status.conditions.extend(ready);
    status.state = Some(state);
    status.observed_generation = generation;
    status
}

/// What a reconcile does after a conflicting write: read again at once.
fn retry() -> Action {
    Action::requeue(Duration::from_millis(200))
}

/// Records the price, currency and payer of `plan` on a status.
fn priced(status: &mut OrderStatus, plan: &Plan) {
    status.price = Some(plan.price);
    status.currency = Some(plan.currency.clone());
    status.payer = Some(plan.payer.clone());
}

/// The refund of an order's charge, if it has one not yet refunded.
fn refund_for(status: &OrderStatus, reason: &str) -> Option<Transaction> {
    let charge = ledger::charge(status)?;
    if ledger::refund(status).is_some() {
        return None;
    }
    Some(Transaction {
        transaction_type: TransactionType::Refund,
        amount: charge.amount,
        at: now(),
        reason: Some(reason.to_owned()),
    })
}

struct Step<'a> {
    ctx: &'a Context,
    api: Api<Order>,
}

impl Step<'_> {
    /// Writes `status` guarded by the order's resourceVersion (a merge patch of the status
    /// that carries it, which the API server refuses with 409 when the order has changed).
    /// `None` on such a conflict: the caller retries from a fresh read. The write's own watch
    /// event is an echo ([`cache::Echoes`]): whatever the status says next, this reconcile
    /// already acted on it.
    async fn write(&self, order: &Order, status: OrderStatus) -> Result<Option<Order>, Error> {
        let patch = serde_json::json!({
            "metadata": {"resourceVersion": order.resource_version()},
            "status": status,
        });
        let params = PatchParams {
            field_manager: Some(MANAGER.into()),
            ..Default::default()
        };
        let (namespace, name) = (order.namespace().unwrap_or_default(), order.name_any());
        let _sending = self.ctx.echoes.send::<Order>(&namespace, &name);
        // The answer is kept (the books record it) without its managed fields.
        match super::lean::api(&self.api)
            .patch_status(&name, &params, &Patch::Merge(&patch))
            .await
        {
            Ok(super::lean::Lean(written)) => {
                let noted = cache::Written::applied(&written);
                self.ctx.echoes.note(&namespace, &noted);
                Ok(Some(written))
            }
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Ends `order` in `state` (Rejected, Denied, Failed or Cancelled), refunding its charge
    /// if it had one, and publishes a Warning Event for a refusal.
    async fn end(
        &self,
        order: &Order,
        plan: Option<&Plan>,
        state: OrderState,
        reason: &str,
        message: &str,
    ) -> Result<Action, Error> {
        let mut status = next_status(order, state, message);
        if let Some(plan) = plan {
            priced(&mut status, plan);
        }
        let refund = refund_for(&status, message);
        status.transactions.extend(refund);
        let Some(written) = self.write(order, status).await? else {
            return Ok(retry());
        };
        self.ctx.books.record(&written);
        if state != OrderState::Cancelled {
            let previous = order.status.as_ref().map(|s| s.conditions.as_slice());
            super::warn_refusal(&self.ctx.recorder, order, previous, reason, message).await?;
        }
        tracing::info!(order = %order.name_any(), namespace = ?order.namespace(), %state, reason, "order ended");
        Ok(Action::await_change())
    }

    /// Writes a non-terminal status only when it differs from what the order shows.
    async fn hold(&self, order: &Order, status: OrderStatus) -> Result<Option<Order>, Error> {
        if order.status.as_ref() == Some(&status) {
            return Ok(Some(order.clone()));
        }
        self.write(order, status).await
    }
}

pub async fn reconcile(order: Arc<Order>, ctx: Arc<Context>) -> Result<Action, Error> {
    ctx.intake.taken(
        order.metadata.namespace.as_deref().unwrap_or_default(),
        &order.name_any(),
    );
    let step = Step {
        ctx: &ctx,
        api: api_of(&ctx.client, &*order),
    };
    if order.metadata.deletion_timestamp.is_some() {
        if order.finalizers().iter().any(|f| f == FINALIZER) {
            return release(&step, &order).await;
        }
        return Ok(Action::await_change());
    }
    if !order.finalizers().iter().any(|f| f == FINALIZER) {
        // Orders the Certificate controller makes carry it from the start; others get it
        // before anything can be charged.
        add_finalizer(&step.api, &*order, FINALIZER).await?;
        return Ok(Action::await_change());
    }
    let state = order.status.as_ref().and_then(|s| s.state);
    if state.is_some_and(OrderState::is_terminal) {
        return Ok(Action::await_change());
    }
    let name = order.name_any();
    if order
        .annotations()
        .get(SUPERSEDED)
        .is_some_and(|v| v == "true")
    {
        let message = format!("Order {name:?} was superseded before issuance");
        return step
            .end(&order, None, OrderState::Cancelled, "Cancelled", &message)
            .await;
    }

    let inputs = match dereference(&ctx, &order).await? {
        Ok(inputs) => inputs,
        Err(hold) => return on_hold(&step, &order, state, hold).await,
    };
    let csr = match pki::parse_csr_with(&order.spec.request, ctx.built.take(&order)) {
        Ok(csr) => csr,
        Err(e) => {
            let hold = Hold::Reject("InvalidRequest", format!("Order {name:?}: {e}"));
            return on_hold(&step, &order, state, hold).await;
        }
    };
    let plan = match validate(&order, &inputs, &csr, jiff::Timestamp::now()) {
        Ok(plan) => plan,
        Err(hold) => return on_hold(&step, &order, state, hold).await,
    };

    let charged = if state == Some(OrderState::Approved) {
        (*order).clone()
    } else {
        // Approval.
        let decision = order.spec.approval.as_ref().map(|a| (a.decision, a));
        if let Some((Decision::Denied, approval)) = decision {
            let message = format!(
                "Order {name:?} was denied by {:?}{}",
                approval.decided_by,
                approval
                    .reason
                    .as_deref()
                    .map(|r| format!(": {r}"))
                    .unwrap_or_default()
            );
            return step
                .end(&order, Some(&plan), OrderState::Denied, "Denied", &message)
                .await;
        }
        if !plan.approval.is_empty() && decision.is_none() {
            let message = format!(
                "Order {name:?} waits for approval ({}); approve it with `certinext approve {name} -n {}` or deny it with `certinext deny`",
                plan.approval.join("; "),
                order.namespace().unwrap_or_default()
            );
            let mut status = next_status(&order, OrderState::PendingApproval, &message);
            priced(&mut status, &plan);
            return Ok(match step.hold(&order, status).await? {
                Some(_) => Action::await_change(),
                None => retry(),
            });
        }
        return charge_and_issue(&step, &order, inputs, &plan, csr).await;
    };
    issue(&step, &charged, inputs.issuer, csr, plan.leaf).await
}

/// What an order that cannot proceed becomes: Rejected (Failed with a refund once charged),
/// or unchanged with a condition saying what it waits for.
async fn on_hold(
    step: &Step<'_>,
    order: &Order,
    state: Option<OrderState>,
    hold: Hold,
) -> Result<Action, Error> {
    match hold {
        Hold::Reject(reason, message) if state == Some(OrderState::Approved) => {
            let message = format!("{message}; the charge was refunded");
            step.end(order, None, OrderState::Failed, reason, &message)
                .await
        }
        Hold::Reject(reason, message) => {
            step.end(order, None, OrderState::Rejected, reason, &message)
                .await
        }
        Hold::Wait(reason, message) => {
            let mut status = order.status.clone().unwrap_or_default();
            let generation = order.metadata.generation;
            let waiting = condition(
                "Ready",
                false,
                reason,
                &message,
                generation,
                Some(&status.conditions),
            );
            let waiting: Option<Condition> = serde_json::from_value(waiting).ok();
            status.conditions.retain(|c| c.type_ != "Ready");
            status.conditions.extend(waiting);
            step.hold(order, status).await?;
            Ok(Action::requeue(Duration::from_secs(5)))
        }
    }
}

/// Signs an order's certificate and charges the order exactly once, decided in turn with
/// every other charge to its payer: the charge and the certificate are written in one status
/// write, so an order is never charged without its certificate nor issued without its charge.
/// The certificate is signed before the wallet's lock is taken, which is held only to read
/// the funds and decide. The charge enters the books as decided, before the lock is let go,
/// so the charges decided after it count it while it is written; a write that fails takes it
/// out again. A refusal for want of funds waits for the charges in flight when it was
/// decided and is decided again, so none is refused for a charge that then fails. A
/// certificate whose order is
/// refused, or whose write fails (a newer order, a restart), is never handed out, and the
/// next reconcile signs again.
async fn charge_and_issue(
    step: &Step<'_>,
    order: &Order,
    inputs: Inputs,
    plan: &Plan,
    csr: ParsedCsr,
) -> Result<Action, Error> {
    let name = order.name_any();
    let books = &step.ctx.books;
    let signed = sign(&name, inputs.issuer, csr, plan.leaf.clone()).await?;
    let account_name = inputs.account.name_any();
    let wallets = &step.ctx.wallets;
    let mut waited = false;
    let (wallet, available) = loop {
        let waiting = std::time::Instant::now();
        let mut wallet = wallets.lock_to_charge(&account_name).await;

        // The cached order is charged at its resourceVersion only: if the API server holds a
        // newer one (charged, decided or superseded since), the write fails and the reconcile
        // starts over from the cache.
        let read = account::FundsRead::since(
            wallet.funds.take(),
            waiting,
            &step.ctx.client,
            &inputs.account,
            &inputs.namespaces,
        )
        .await?;
        let available = available(books, &inputs.account, &plan.payer, &read)?;

        // Under the lock, a paying group as it is now (listed with the funds, else read): one
        // being deleted pays for nothing new (its spending is about to move to its account).
        if plan.payer.kind == PayerKind::Group {
            let namespace = plan.payer.namespace.as_deref().unwrap_or_default();
            let live = match read.groups.live(namespace, &plan.payer.name) {
                Some(live) => live,
                None => Api::<Group>::namespaced(step.ctx.client.clone(), namespace)
                    .get_metadata_opt(&plan.payer.name)
                    .await?
                    .is_some_and(|g| g.metadata.deletion_timestamp.is_none()),
            };
            if !live {
                wallet.funds = Some(read);
                let message = group_deleting(&name, &plan.payer.name);
                return step
                    .end(
                        order,
                        Some(plan),
                        OrderState::Rejected,
                        "GroupDeleting",
                        &message,
                    )
                    .await;
            }
        }
        // The charges waiting meanwhile may decide on this read too.
        wallet.funds = Some(read);
        // A refusal does not rest on charges that may still fail: with charges in flight,
        // wait once for them to land and decide again. Charges decided meanwhile came first.
        if !waited
            && ledger::may_charge(plan.price, available).is_err()
            && wallets.has_writing(&account_name)
        {
            drop(wallet);
            wallets.landed(&account_name).await;
            waited = true;
            continue;
        }
        break (wallet, available);
    };
    let payer = describe(&plan.payer);
    if let Err(shortfall) = ledger::may_charge(plan.price, available) {
        let message = format!(
            "Order {name:?}: {payer} cannot pay {} {}: it has {} {} available",
            shortfall.price, plan.currency, shortfall.available, plan.currency
        );
        return step
            .end(
                order,
                Some(plan),
                OrderState::Rejected,
                "InsufficientFunds",
                &message,
            )
            .await;
    }
    let issued = match signed {
        Ok(issued) => issued,
        Err(e) => {
            let message = format!("Order {name:?}: signing failed: {e}; nothing was charged");
            return step
                .end(
                    order,
                    Some(plan),
                    OrderState::Failed,
                    "SigningFailed",
                    &message,
                )
                .await;
        }
    };
    let message = format!(
        "Order {name:?} was charged {} {} to {payer} and issued certificate {} valid until {}",
        plan.price, plan.currency, issued.info.serial_hex, issued.info.not_after
    );
    let mut status = next_status(order, OrderState::Issued, &message);
    priced(&mut status, plan);
    status.transactions = vec![Transaction {
        transaction_type: match order.spec.order_type {
            OrderType::Purchase => TransactionType::Purchase,
            OrderType::Renewal => TransactionType::Renewal,
        },
        amount: plan.price,
        at: now(),
        reason: None,
    }];
    let info = with_certificate(&mut status, issued);
    step.ctx.issued.put(order, &status, info);
    // The charge counts from here; the lock is let go while it is written.
    books.record_charge(order, &status);
    let writing = wallets.writing(&account_name);
    drop(wallet);
    let written = step.write(order, status).await;
    match &written {
        Ok(Some(written)) => books.record(written),
        // Not written (a newer order, an error): the order as it was, uncharged.
        _ => books.record(order),
    }
    drop(writing);
    let Some(written) = written? else {
        return Ok(retry());
    };
    tracing::info!(order = %name, namespace = ?written.namespace(), price = %plan.price, %payer, "order charged and issued");
    Ok(Action::await_change())
}

fn describe(payer: &Payer) -> String {
    match payer.kind {
        PayerKind::Account => format!("Account {:?}", payer.name),
        PayerKind::Group => format!(
            "Group {}/{}",
            payer.namespace.as_deref().unwrap_or_default(),
            payer.name
        ),
    }
}

/// What `payer` can still spend: a group's allocation in force, or an account wallet's
/// balance, less the ledger's charges. The funds requests come from `read`, a fresh read
/// ([`account::FundsRead::since`]); what was spent comes from the books alone (with the
/// account's archive as read), never from a list of every Order.
fn available(
    books: &Books,
    account: &Account,
    payer: &Payer,
    read: &account::FundsRead,
) -> Result<Money, Error> {
    let name = account.name_any();
    let money = |e| Error::Money(name.clone(), e);
    let mut funds = read.inputs.clone();
    let account_payer = Payer {
        kind: PayerKind::Account,
        name: name.clone(),
        namespace: None,
    };
    books.set_archive(&account_payer, read.archive.clone());
    funds.spent = books.spent(&account_payer).map_err(money)?;
    let allocation = account::allocation(account, &funds).map_err(money)?;
    let available = match payer.kind {
        PayerKind::Account => allocation.balance,
        PayerKind::Group => {
            let id = format!(
                "group/{}/{}",
                payer.namespace.as_deref().unwrap_or_default(),
                payer.name
            );
            let in_force = allocation.decision(&id).map_or(Money::ZERO, |d| d.in_force);
            ledger::available(in_force, books.spent(payer).map_err(money)?).map_err(money)?
        }
    };
    Ok(available)
}

/// Signs the certificate of an order charged before (by a version of this controller that
/// wrote the charge first) and records it; a signing failure refunds the charge.
async fn issue(
    step: &Step<'_>,
    order: &Order,
    issuer: Arc<Issuer>,
    csr: ParsedCsr,
    leaf: LeafProfile,
) -> Result<Action, Error> {
    let name = order.name_any();
    let issued = match sign(&name, issuer, csr, leaf).await? {
        Ok(issued) => issued,
        Err(e) => {
            let message = format!("Order {name:?}: signing failed: {e}; the charge was refunded");
            return step
                .end(order, None, OrderState::Failed, "SigningFailed", &message)
                .await;
        }
    };
    let message = format!(
        "Order {name:?} issued certificate {} valid until {}",
        issued.info.serial_hex, issued.info.not_after
    );
    let mut status = next_status(order, OrderState::Issued, &message);
    let info = with_certificate(&mut status, issued);
    step.ctx.issued.put(order, &status, info);
    match step.write(order, status).await? {
        Some(written) => {
            step.ctx.books.record(&written);
            Ok(Action::await_change())
        }
        None => Ok(retry()),
    }
}

/// Signs an order's certificate without stalling the runtime (an RSA CA signs on the blocking
/// pool, [`pki::keys::run_with`]): the certificate, or why the CA could not sign it.
async fn sign(
    name: &str,
    issuer: Arc<Issuer>,
    csr: ParsedCsr,
    leaf: LeafProfile,
) -> Result<Result<pki::IssuedCertificate, pki::PkiError>, Error> {
    pki::keys::run_with(issuer.algorithm(), move || {
        pki::sign_leaf(&csr, &issuer, &leaf)
    })
    .await
    .map_err(|e| Error::Internal(format!("Order {name:?}: signing stopped: {e}")))
}

/// Records an issued certificate on an order's status; what it read of the certificate is
/// left for the Certificate controller ([`cache::IssuedOrders`]).
fn with_certificate(status: &mut OrderStatus, issued: pki::IssuedCertificate) -> CertificateInfo {
    status.certificate = Some(issued.chain_pem);
    status.ca = Some(issued.root_pem);
    status.serial_number = Some(issued.info.serial_hex.clone());
    status.not_before = Some(Time(issued.info.not_before));
    status.not_after = Some(Time(issued.info.not_after));
    issued.info
}

/// Runs the controller until the stream ends. The ledger is rebuilt first, from a fresh list
/// of every Order.
pub async fn run(
    client: Client,
    settings: super::Settings,
    wallets: Arc<Wallets>,
    orders: super::SharedOrders,
) {
    let mut delay = Duration::from_millis(200);
    let books = loop {
        match Books::load(&client, &settings).await {
            Ok(books) => break books,
            Err(error) => {
                tracing::warn!(%error, "listing Orders for the ledger failed; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(10));
            }
        }
    };
    let books = Arc::new(books);
    // One controller per watched namespace, sharing the books and the wallets' locks.
    super::in_each_scope(&settings, |scope| {
        run_in(
            client.clone(),
            settings.clone(),
            scope.clone(),
            (books.clone(), wallets.clone()),
            orders.clone(),
        )
    })
    .await;
}

async fn run_in(
    client: Client,
    settings: super::Settings,
    scope: super::Scope,
    (books, wallets): (Arc<Books>, Arc<Wallets>),
    shared: super::SharedOrders,
) {
    let orders = shared.of(&scope);
    let all = watcher::Config::default;
    let (accounts, account_changes) = cache::reflect(Api::<Account>::all(client.clone()), all());
    let (products, product_changes) = cache::reflect(super::scoped(&client, &scope), all());
    let (cas, ca_changes) = cache::reflect(super::scoped(&client, &scope), all());
    let ca_labelled = all().labels(super::privateca::CA_LABEL);
    let (ca_secrets, ca_secret_changes) =
        cache::reflect(super::scoped(&client, &scope), ca_labelled);
    let (groups, group_changes) = cache::reflect(super::scoped(&client, &scope), all());
    let (sub_accounts, sub_account_changes) = cache::reflect(super::scoped(&client, &scope), all());
    let (price_lists, price_list_changes) = cache::reflect(super::scoped(&client, &scope), all());
    let echoes = Arc::new(cache::Echoes::default());
    let context = Arc::new(Context {
        recorder: recorder(&client),
        books,
        wallets,
        caches: Caches {
            synced: cache::Synced::new(vec![
                cache::listed(&accounts),
                cache::listed(&products),
                cache::listed(&cas),
                cache::listed(&ca_secrets),
                cache::listed(&groups),
                cache::listed(&sub_accounts),
                cache::listed(&price_lists),
            ]),
            scope: scope.clone(),
            issuers: Issuers::default(),
            accounts,
            products,
            cas,
            ca_secrets,
            groups,
            sub_accounts,
            price_lists,
        },
        client: client.clone(),
        issued: shared.issued(),
        intake: shared.intake(),
        built: shared.built(),
        echoes: echoes.clone(),
    });
    // The caches' watches run with the controller; an order waiting for one of them retries
    // on its own schedule, so none of their changes triggers a reconcile.
    // The shared store of Orders holds every Order in scope: once an Order is over, it keeps
    // only what a deletion's release reads.
    // Its own status writes come back as echoes, which reconcile nothing new.
    let heard = cache::shared_without_echoes(orders.subscribe(), echoes);
    Controller::for_shared_stream(heard, orders.store())
        .watches_stream(account_changes, cache::fills_only)
        .watches_stream(product_changes, cache::fills_only)
        .watches_stream(ca_changes, cache::fills_only)
        .watches_stream(ca_secret_changes, cache::fills_only)
        .watches_stream(group_changes, cache::fills_only)
        .watches_stream(sub_account_changes, cache::fills_only)
        .watches_stream(price_list_changes, cache::fills_only)
        .with_config(settings.controller_config())
        .run(super::instrumented(reconcile), error_policy, context)
        .for_each(|_| async {})
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::common::KeyAlgorithm;
    use serde_json::json;

    fn account(name: &str, parent: Option<&str>, approval: &str) -> Arc<Account> {
        let mut spec = json!({"type": "Enterprise", "namespaces": [name], "currency": "EUR",
            "domains": [{"name": format!("{name}.example")}], "orderApproval": approval});
        if let Some(parent) = parent {
            spec["parent"] = json!({"account": parent, "namespace": parent, "subAccount": name});
        }
        Arc::new(
            serde_json::from_value(
                json!({"apiVersion": "certinext.io/v1alpha1", "kind": "Account",
                "metadata": {"name": name}, "spec": spec}),
            )
            .unwrap(),
        )
    }

    fn product(namespace: &str, spec: serde_json::Value, ready: bool) -> Product {
        let mut base = json!({"issuerRef": {"name": "ca"}, "template": "ServerTLS", "price": "20.00",
            "maxValidity": "720h"});
        if let (Some(base), Some(extra)) = (base.as_object_mut(), spec.as_object()) {
            base.extend(extra.clone());
        }
        serde_json::from_value(
            json!({"apiVersion": "certinext.io/v1alpha1", "kind": "Product",
            "metadata": {"name": "web", "namespace": namespace}, "spec": base,
            "status": {"conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"},
                "reason": "Ready", "message": "", "lastTransitionTime": "2025-01-01T00:00:00Z"}]}}),
        )
        .unwrap()
    }

    /// A fresh root CA: its chain, key and root, as PEM.
    fn root_pems() -> (String, String, String) {
        let key = pki::generate_key_for(KeyAlgorithm::EcdsaP256).unwrap();
        let spec: crate::api::PrivateCASpec =
            serde_json::from_value(json!({"subject": {"commonName": "Test Root"}})).unwrap();
        let profile = pki::CaProfile::from_spec(&spec, jiff::Timestamp::now()).unwrap();
        let root = pki::issue_root_ca(&profile, &key).unwrap();
        let key_pem = key
            .to_pem(crate::api::common::PrivateKeyEncoding::Pkcs8)
            .unwrap();
        (root.chain_pem, key_pem, root.root_pem)
    }

    /// A CA Secret holding a fresh root, at version `rv`.
    fn ca_secret(rv: &str) -> Secret {
        let (chain, key, root) = root_pems();
        let data = |text: &str| k8s_openapi::ByteString(text.as_bytes().to_vec());
        Secret {
            metadata: kube::api::ObjectMeta {
                name: Some("ca".into()),
                namespace: Some("acme".into()),
                uid: Some("u1".into()),
                resource_version: Some(rv.into()),
                ..Default::default()
            },
            data: Some(
                [
                    ("tls.crt".to_owned(), data(&chain)),
                    ("tls.key".to_owned(), data(&key)),
                    ("ca.crt".to_owned(), data(&root)),
                ]
                .into(),
            ),
            ..Default::default()
        }
    }

    #[test]
    fn a_ca_secret_is_parsed_once_per_version() {
        let issuers = Issuers::default();
        let first = ca_secret("1");
        let a = issuers.get("acme", "ca", Some(&first)).unwrap();
        let again = issuers.get("acme", "ca", Some(&first)).unwrap();
        assert!(
            Arc::ptr_eq(&a, &again),
            "the same version reuses its signer"
        );

        let rotated = ca_secret("2");
        let b = issuers.get("acme", "ca", Some(&rotated)).unwrap();
        assert!(!Arc::ptr_eq(&a, &b), "a new version is parsed again");
        assert_ne!(a.info().serial_hex, b.info().serial_hex);

        let mut emptied = rotated.clone();
        emptied.metadata.resource_version = Some("3".into());
        emptied.data.as_mut().unwrap().remove("tls.key");
        let problem = issuers.get("acme", "ca", Some(&emptied)).unwrap_err();
        assert_eq!(problem, "does not hold tls.crt, tls.key and ca.crt yet");
        assert!(issuers.get("acme", "ca", None).is_err());
    }

    fn issuer() -> Issuer {
        let (chain, key, root) = root_pems();
        Issuer::from_pem(&chain, &key, &root).unwrap()
    }

    fn csr(dns: &str, algorithm: KeyAlgorithm) -> ParsedCsr {
        let spec: crate::api::CertificateSpec = serde_json::from_value(
            json!({"secretName": "s", "dnsNames": [dns], "issuerRef": {"name": "ca"}}),
        )
        .unwrap();
        let key = pki::generate_key_for(algorithm).unwrap();
        pki::parse_csr(&pki::build_csr(&spec, &key).unwrap()).unwrap()
    }

    fn order() -> Order {
        serde_json::from_value(
            json!({"apiVersion": "certinext.io/v1alpha1", "kind": "Order",
            "metadata": {"name": "www-1", "namespace": "acme"},
            "spec": {"certificateRef": {"name": "www"}, "revision": 1, "type": "Purchase",
                "request": "-", "productRef": {"name": "web"}, "duration": "2160h"}}),
        )
        .unwrap()
    }

    fn inputs(account: Arc<Account>, product: Product, holder: Arc<Account>) -> Inputs {
        Inputs {
            account,
            namespaces: vec!["acme".into()],
            product: Some((product, Some(holder))),
            issuer_name: "acme/ca".into(),
            issuer_account: None,
            issuer: Arc::new(issuer()),
            group: None,
            sub_account: None,
            price_list: None,
        }
    }

    #[test]
    fn policy_refusals_name_the_rule_they_broke() {
        let acme = account("acme", None, "Automatic");
        let other = account("other", None, "Automatic");
        let ecdsa = KeyAlgorithm::EcdsaP256;
        let cases = [
            (
                product("acme", json!({}), true),
                acme.clone(),
                csr("www.evil.example", ecdsa),
                "DomainNotAllowed",
            ),
            (
                product(
                    "acme",
                    json!({"allowedDomains": ["shop.acme.example"]}),
                    true,
                ),
                acme.clone(),
                csr("www.acme.example", ecdsa),
                "DomainNotAllowed",
            ),
            (
                product("acme", json!({"allowedKeyAlgorithms": ["RSA-2048"]}), true),
                acme.clone(),
                csr("www.acme.example", ecdsa),
                "KeyAlgorithmNotAllowed",
            ),
            (
                product("other", json!({}), true),
                other.clone(),
                csr("www.acme.example", ecdsa),
                "ProductNotAllowed",
            ),
            (
                product("acme", json!({}), false),
                acme.clone(),
                csr("www.acme.example", ecdsa),
                "ProductNotReady",
            ),
        ];
        for (product, holder, csr, reason) in cases {
            let inputs = inputs(acme.clone(), product, holder);
            match validate(&order(), &inputs, &csr, jiff::Timestamp::now()) {
                Err(Hold::Reject(got, message)) => {
                    assert_eq!(got, reason, "{message}");
                    assert!(message.starts_with("Order \"www-1\""), "{message}");
                }
                other => panic!("expected {reason}, got {other:?}"),
            }
        }
    }

    #[test]
    fn a_valid_order_is_priced_clipped_and_asks_for_approval_when_a_policy_says_so() {
        let acme = account("acme", None, "Manual");
        let inputs = inputs(acme.clone(), product("acme", json!({}), true), acme);
        let now = jiff::Timestamp::now();
        let plan = validate(
            &order(),
            &inputs,
            &csr("www.acme.example", KeyAlgorithm::EcdsaP256),
            now,
        )
        .unwrap();
        assert_eq!(
            (plan.price.to_string(), plan.currency.as_str()),
            ("20.00".into(), "EUR")
        );
        assert_eq!(
            (plan.payer.kind, plan.payer.name.as_str()),
            (PayerKind::Account, "acme")
        );
        assert_eq!(plan.approval, ["Account \"acme\" requires approval"]);
        // 2160h asked, 720h allowed by the product.
        let lifetime =
            plan.leaf.validity.not_after.as_second() - plan.leaf.validity.not_before.as_second();
        assert_eq!(lifetime, 720 * 3600);
    }

    #[test]
    fn a_sub_account_orders_its_resellers_product_at_the_list_price() {
        let reseller = account("sslhub", None, "Automatic");
        let customer = account("initech", Some("sslhub"), "Automatic");
        let mut inputs = inputs(customer, product("sslhub", json!({}), true), reseller);
        inputs.price_list = serde_json::from_value(json!({"apiVersion": "certinext.io/v1alpha1",
            "kind": "PriceList", "metadata": {"name": "gold", "namespace": "sslhub"},
            "spec": {"currency": "EUR", "items": [{"product": "web", "price": "12.00"}]}}))
        .ok();
        inputs.sub_account = serde_json::from_value(json!({"apiVersion": "certinext.io/v1alpha1",
            "kind": "SubAccount", "metadata": {"name": "initech", "namespace": "sslhub"},
            "spec": {"type": "Enterprise", "namespaces": ["initech"], "orderApproval": "Manual"}}))
        .ok();
        let plan = validate(
            &order(),
            &inputs,
            &csr("intranet.initech.example", KeyAlgorithm::EcdsaP256),
            jiff::Timestamp::now(),
        )
        .unwrap();
        assert_eq!(plan.price.to_string(), "12.00");
        assert_eq!(plan.payer.name, "initech");
        assert_eq!(
            plan.approval,
            ["SubAccount \"initech\" requires the reseller's approval"]
        );
    }
}
