//! The controllers: one module per kind, each reading as dereference → decide → apply →
//! status, with the decisions in pure functions.

pub mod account;
pub mod cache;
pub mod certificate;
pub mod events;
pub mod group;
pub mod lean;
pub mod order;
pub mod pricelist;
pub mod privateca;
pub mod product;
pub mod receipt;
pub mod sealing;
pub mod subaccount;

use std::sync::Arc;

use kube::api::{Api, ListParams};
use kube::runtime::events::{Event, EventType, Reporter};
use kube::runtime::reflector::Store;

use events::Recorder;
use kube::{Client, ResourceExt};

use crate::api::Account;
use crate::tenancy::Claims;

/// Every account, and which one holds each namespace: what a namespaced object's
/// controller dereferences first.
pub struct Tenancy {
    pub accounts: Vec<Arc<Account>>,
    pub claims: Claims,
}

impl Tenancy {
    pub async fn load(client: &Client) -> Result<Self, Error> {
        let accounts: Vec<Arc<Account>> = Api::<Account>::all(client.clone())
            .list(&ListParams::default())
            .await?
            .items
            .into_iter()
            .map(Arc::new)
            .collect();
        Ok(Tenancy::from_accounts(accounts))
    }

    /// The tenancy of `accounts` (a cache's, say).
    pub fn from_accounts(accounts: Vec<Arc<Account>>) -> Self {
        let claims = account::claims(&accounts);
        Tenancy { accounts, claims }
    }

    /// The account holding `namespace`.
    pub fn holder(&self, namespace: &str) -> Option<&Arc<Account>> {
        let owner = self.claims.owner_of(namespace)?;
        self.accounts.iter().find(|a| a.name_any() == owner)
    }

    pub fn account(&self, name: &str) -> Option<&Arc<Account>> {
        self.accounts.iter().find(|a| a.name_any() == name)
    }
}

/// Why an object is not in force: the reason of its `Ready=False` condition (one of a
/// small fixed set) and a message naming the object, the rule and the account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub reason: &'static str,
    pub message: String,
}

impl Refusal {
    pub fn new(reason: &'static str, message: impl Into<String>) -> Self {
        Refusal {
            reason,
            message: message.into(),
        }
    }
}

/// An object's standing: in force (with a message saying so), or refused.
pub type Standing = Result<String, Refusal>;

/// Writes an object's status by server-side apply as `manager`: `fields` plus
/// `observedGeneration` and the `Ready` condition of `standing`. A refusal is also published
/// as a Warning Event, once per change. Returns the object's resourceVersion after the write,
/// if it wrote.
pub async fn report<K>(
    api: &Api<K>,
    recorder: &Recorder,
    object: &K,
    manager: &str,
    previous: Option<&[Condition]>,
    standing: &Standing,
    fields: Value,
) -> Result<Option<String>, Error>
where
    K: kube::Resource<DynamicType = ()>
        + kube::core::object::HasStatus
        + Clone
        + serde::de::DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug,
    K::Status: serde::Serialize,
{
    let (ready, reason, message) = match standing {
        Ok(message) => (true, "Ready", message.as_str()),
        Err(refusal) => (false, refusal.reason, refusal.message.as_str()),
    };
    let written = apply_status(
        api,
        object,
        manager,
        previous,
        (ready, reason, message),
        fields,
    )
    .await?;
    if !ready {
        warn_refusal(recorder, object, previous, reason, message).await?;
    }
    Ok(written)
}

/// Writes an object's status by server-side apply as `manager`: `fields` plus
/// `observedGeneration` and the `Ready` condition `(status, reason, message)`, after any
/// other conditions `fields` carries. No Event: for a Ready=False that is progress, not a
/// refusal (a certificate waiting for its first issuance). Returns the object's
/// resourceVersion after the write, if it wrote.
pub async fn apply_status<K>(
    api: &Api<K>,
    object: &K,
    manager: &str,
    previous: Option<&[Condition]>,
    (ready, reason, message): (bool, &str, &str),
    mut fields: Value,
) -> Result<Option<String>, Error>
where
    K: kube::Resource<DynamicType = ()>
        + kube::core::object::HasStatus
        + Clone
        + serde::de::DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug,
    K::Status: serde::Serialize,
{
    let generation = object.meta().generation;
    if let Some(fields) = fields.as_object_mut() {
        fields.insert("observedGeneration".into(), json!(generation));
        let mut conditions = match fields.remove("conditions") {
            Some(Value::Array(others)) => others,
            _ => Vec::new(),
        };
        conditions.insert(
            0,
            condition("Ready", ready, reason, message, generation, previous),
        );
        fields.insert("conditions".into(), Value::Array(conditions));
    }
    // A status that already says all this is not written again: most reconciles change
    // nothing, and each write would wake every watcher of the kind.
    let current = object
        .status()
        .and_then(|status| serde_json::to_value(status).ok());
    if status_holds(current.as_ref(), &fields) {
        return Ok(None);
    }
    let patch = json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": fields,
    });
    let written = receipt::patch(
        api,
        Some("status"),
        &object.name_any(),
        &kube::api::PatchParams::apply(manager).force(),
        &kube::api::Patch::Apply(&patch),
    )
    .await?;
    Ok(written.resource_version())
}

/// Whether `status` already holds every field of `fields` (a null field: absent), so that
/// applying `fields` would change nothing.
pub fn status_holds(status: Option<&Value>, fields: &Value) -> bool {
    let (Some(Value::Object(have)), Value::Object(want)) = (status, fields) else {
        return false;
    };
    want.iter().all(|(key, wanted)| match wanted {
        Value::Null => have.get(key).is_none_or(Value::is_null),
        wanted => have.get(key) == Some(wanted),
    })
}

/// The API of a namespaced object's kind in its namespace.
pub fn api_of<K>(client: &Client, object: &K) -> Api<K>
where
    K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>,
{
    Api::namespaced(client.clone(), &object.namespace().unwrap_or_default())
}

/// What the controllers that need nothing but a client share.
pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
}

impl Context {
    pub fn new(client: Client) -> Self {
        let recorder = recorder(&client);
        Context { client, recorder }
    }
}

/// One lock per account wallet, keyed by the account's name: whatever decides or moves an
/// account's money (an Order's charge or release, a Group's or SubAccount's allocation, a
/// deleted Group's spending folded into the account) does it under the account's lock, so
/// each decision reads what the one before it wrote. Created once per operator and handed to
/// the controllers that need it.
///
/// A charge decides under the lock and writes after letting it go ([`Wallets::writing`]):
/// its charge is in the Order controller's books from the decision on, so the charges after
/// it count it, and every other holder of the lock waits until the charges in flight have
/// landed (or failed) before it reads anything.
#[derive(Default)]
pub struct Wallets {
    accounts: std::sync::Mutex<std::collections::HashMap<String, Arc<AccountWallet>>>,
}

/// One account's lock, and its charges being written after their decision.
#[derive(Default)]
struct AccountWallet {
    lock: Arc<tokio::sync::Mutex<Wallet>>,
    writing: tokio::sync::watch::Sender<InFlight>,
}

/// The charges of an account being written, numbered in the order they began.
#[derive(Default)]
struct InFlight {
    next: u64,
    open: std::collections::BTreeSet<u64>,
}

/// An account's wallet, as its holder finds it.
#[derive(Default)]
pub struct Wallet {
    /// The last read of the account's funds, made by a charge, for the charges that were
    /// already waiting when it began ([`account::FundsRead::since`]).
    pub funds: Option<account::FundsRead>,
}

/// A charge being written after its decision; dropping it says the write is over, however it
/// ended.
pub struct Writing {
    account: Arc<AccountWallet>,
    number: u64,
}

impl Drop for Writing {
    fn drop(&mut self) {
        self.account.writing.send_modify(|in_flight| {
            in_flight.open.remove(&self.number);
        });
    }
}

impl Wallets {
    /// Waits for `account`'s wallet; it is held until the guard is dropped. The holder may
    /// move the account's money (allocate, fold, release), so it also waits for the charges
    /// in flight to land, and the last read of its funds is let go.
    pub async fn lock(&self, account: &str) -> tokio::sync::OwnedMutexGuard<Wallet> {
        let account = self.account(account);
        let mut wallet = account.lock.clone().lock_owned().await;
        account.landed().await;
        wallet.funds = None;
        wallet
    }

    /// The same for a charge, which keeps the last read of the funds (a charge's own
    /// spending is in the books, not in the read) and does not wait for the charges in
    /// flight: the books count them.
    pub async fn lock_to_charge(&self, account: &str) -> tokio::sync::OwnedMutexGuard<Wallet> {
        self.account(account).lock.clone().lock_owned().await
    }

    /// Marks a charge of `account`, decided under its lock and already in the books, as
    /// being written; the lock may then be let go.
    pub fn writing(&self, account: &str) -> Writing {
        let account = self.account(account);
        let mut number = 0;
        account.writing.send_modify(|in_flight| {
            number = in_flight.next;
            in_flight.next += 1;
            in_flight.open.insert(number);
        });
        Writing { account, number }
    }

    /// Whether a charge of `account` is being written.
    pub fn has_writing(&self, account: &str) -> bool {
        !self.account(account).writing.borrow().open.is_empty()
    }

    /// Waits until every charge of `account` being written now has landed or failed; charges
    /// that begin meanwhile are not waited for, so a busy account does not keep the waiter.
    pub async fn landed(&self, account: &str) {
        self.account(account).landed().await;
    }

    fn account(&self, account: &str) -> Arc<AccountWallet> {
        let mut accounts = self.accounts.lock().unwrap_or_else(|e| e.into_inner());
        accounts.entry(account.to_owned()).or_default().clone()
    }
}

impl AccountWallet {
    async fn landed(&self) {
        let begun = self.writing.borrow().next;
        // The sender lives as long as `self`, so the wait ends only when those have ended.
        let _ = self
            .writing
            .subscribe()
            .wait_for(|in_flight| in_flight.open.first().is_none_or(|&n| n >= begun))
            .await;
    }
}

/// Spaces out the reconciles of one object: a wallet's figures are summed over all of its
/// Orders, and during a burst of charges its reconciles would otherwise run back to back.
/// Triggers that come during the wait are merged into the one reconcile that follows it.
#[derive(Default)]
pub struct Pacer {
    last: std::sync::Mutex<std::collections::HashMap<String, tokio::time::Instant>>,
}

impl Pacer {
    /// The least time between two reconciles of one object.
    pub const INTERVAL: std::time::Duration = std::time::Duration::from_millis(250);

    /// Waits until `key`'s last reconcile began at least [`Pacer::INTERVAL`] ago.
    pub async fn pace(&self, key: &str) {
        let now = tokio::time::Instant::now();
        let start = {
            let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
            let start = last
                .get(key)
                .map_or(now, |previous| (*previous + Self::INTERVAL).max(now));
            last.insert(key.to_owned(), start);
            start
        };
        tokio::time::sleep_until(start).await;
    }
}

/// What the controllers that allocate an account's funds (Group, SubAccount) share.
pub struct WalletContext {
    pub client: Client,
    pub recorder: Recorder,
    pub wallets: Arc<Wallets>,
    /// The Orders of the controller's scope, when it caches them.
    pub orders: Vec<(Scope, kube::runtime::reflector::Store<crate::api::Order>)>,
    /// Those caches have listed their objects once.
    pub synced: Option<cache::Synced>,
    /// Spaces out each object's reconciles.
    pub pacer: Pacer,
}

impl WalletContext {
    pub fn new(client: Client, wallets: Arc<Wallets>) -> Self {
        let recorder = recorder(&client);
        WalletContext {
            client,
            recorder,
            wallets,
            orders: Vec::new(),
            synced: None,
            pacer: Pacer::default(),
        }
    }
}

/// The name the operator reports Events as.
pub const REPORTER: &str = "certinext-operator";

/// An Event recorder reporting as the operator (and, in a cluster, as its pod).
pub fn recorder(client: &Client) -> Recorder {
    Recorder::new(
        client.clone(),
        Reporter {
            controller: REPORTER.into(),
            instance: std::env::var("POD_NAME").ok(),
        },
    )
}

/// Publishes a Warning Event on `object` for a refusal, once per refusal: when its `Ready`
/// condition was not already False with the same reason and message.
pub async fn warn_refusal<K: kube::Resource<DynamicType = ()>>(
    recorder: &Recorder,
    object: &K,
    previous: Option<&[Condition]>,
    reason: &str,
    message: &str,
) -> Result<(), Error> {
    let already = previous.into_iter().flatten().any(|c| {
        c.type_ == "Ready" && c.status == "False" && c.reason == reason && c.message == message
    });
    if already {
        return Ok(());
    }
    let event = Event {
        type_: EventType::Warning,
        reason: reason.into(),
        note: Some(message.chars().take(1024).collect()),
        action: "Reconcile".into(),
        secondary: None,
    };
    recorder.publish(&event, &object.object_ref(&())).await?;
    Ok(())
}

/// Adds `finalizer` to an object that lacks it (a JSON patch guarded by the object's
/// resourceVersion, so a concurrent change is retried rather than overwritten).
pub async fn add_finalizer<K>(api: &Api<K>, object: &K, finalizer: &str) -> Result<(), Error>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    if object.finalizers().iter().any(|f| f == finalizer) {
        return Ok(());
    }
    let patch = if object.meta().finalizers.is_none() {
        json!([
            {"op": "test", "path": "/metadata/resourceVersion", "value": object.resource_version()},
            {"op": "add", "path": "/metadata/finalizers", "value": [finalizer]},
        ])
    } else {
        json!([
            {"op": "test", "path": "/metadata/resourceVersion", "value": object.resource_version()},
            {"op": "add", "path": "/metadata/finalizers/-", "value": finalizer},
        ])
    };
    json_patch(api, object, patch).await
}

/// Removes `finalizer` from an object, letting its deletion complete.
pub async fn remove_finalizer<K>(api: &Api<K>, object: &K, finalizer: &str) -> Result<(), Error>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let Some(index) = object.finalizers().iter().position(|f| f == finalizer) else {
        return Ok(());
    };
    let path = format!("/metadata/finalizers/{index}");
    let patch = json!([
        {"op": "test", "path": path, "value": finalizer},
        {"op": "remove", "path": path},
    ]);
    json_patch(api, object, patch).await
}

async fn json_patch<K>(api: &Api<K>, object: &K, patch: Value) -> Result<(), Error>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let patch: json_patch::Patch =
        serde_json::from_value(patch).map_err(|e| Error::Internal(e.to_string()))?;
    api.patch(
        &object.name_any(),
        &kube::api::PatchParams::default(),
        &kube::api::Patch::<()>::Json(patch),
    )
    .await?;
    Ok(())
}

/// Every controller's answer to a failed reconcile: say which object failed and why, and
/// retry soon (transient API errors are the usual cause).
pub fn error_policy<K: kube::Resource<DynamicType = ()>, C>(
    object: Arc<K>,
    error: &Error,
    _ctx: Arc<C>,
) -> kube::runtime::controller::Action {
    tracing::warn!(kind = %K::kind(&()), name = %object.name_any(), %error, "reconcile failed");
    kube::runtime::controller::Action::requeue(std::time::Duration::from_secs(5))
}

/// Maps a change to an object of any kind to every object the controller holds: for kinds
/// that are few and whose standing depends on cluster-wide state (accounts, wallets).
pub fn all_of<K, T>(
    store: &kube::runtime::reflector::Store<K>,
) -> impl Fn(T) -> Vec<kube::runtime::reflector::ObjectRef<K>> + Clone + Send + Sync + 'static
where
    K: kube::Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
{
    let store = store.clone();
    move |_| {
        store
            .state()
            .iter()
            .map(|object| kube::runtime::reflector::ObjectRef::from_obj(&**object))
            .collect()
    }
}

/// Wraps a watch mapper so that it runs only when the watched object is new or its spec
/// changed (its generation moved), not on every status write: an Account's or a Group's
/// wallet figures change with every charge, and none of that concerns a Certificate.
pub fn on_spec_change<T, R>(
    mapper: impl Fn(T) -> Vec<R> + Send + Sync + 'static,
) -> impl Fn(T) -> Vec<R> + Send + Sync + 'static
where
    T: kube::Resource + Clone,
{
    let changed = on_change_of(
        |object: &T| object.meta().generation,
        move |object: Arc<T>| mapper(Arc::unwrap_or_clone(object)),
    );
    move |object: T| changed(Arc::new(object))
}

/// Wraps a watch mapper so that it runs only when the watched object is new or `key` of it
/// changed since the mapper last ran for it (objects are told apart by uid).
pub fn on_change_of<T, R, K>(
    key: impl Fn(&T) -> K + Send + Sync + 'static,
    mapper: impl Fn(Arc<T>) -> Vec<R> + Send + Sync + 'static,
) -> impl Fn(Arc<T>) -> Vec<R> + Send + Sync + 'static
where
    T: kube::Resource,
    K: PartialEq + Send + 'static,
{
    let seen = std::sync::Mutex::new(std::collections::HashMap::<String, K>::new());
    move |object: Arc<T>| {
        let uid = object.meta().uid.clone().unwrap_or_default();
        let now = key(&object);
        let changed = {
            let mut seen = seen.lock().unwrap_or_else(|e| e.into_inner());
            let changed = seen.get(&uid) != Some(&now);
            seen.insert(uid, now);
            changed
        };
        if changed { mapper(object) } else { Vec::new() }
    }
}

/// Whether a status's conditions say `Ready=True`.
pub fn is_ready(conditions: &[Condition]) -> bool {
    conditions
        .iter()
        .any(|c| c.type_ == "Ready" && c.status == "True")
}

/// The refusal of an object in a namespace no account holds.
pub fn no_account(kind: &str, name: &str, namespace: &str) -> String {
    format!(
        "{kind} {name:?}: namespace {namespace:?} belongs to no Account; add it to an Account's spec.namespaces"
    )
}

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use serde_json::{Value, json};

/// Why a reconcile failed; the controller retries.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the API server refused a request: {0}")]
    Kube(#[from] kube::Error),
    #[error("Account {0:?}: {1}")]
    Money(String, crate::billing::MoneyError),
    #[error("{0}")]
    Internal(String),
}

/// A `metav1.Condition` as JSON, keeping the last transition time while the status holds.
pub fn condition(
    kind: &str,
    status: bool,
    reason: &str,
    message: &str,
    generation: Option<i64>,
    previous: Option<&[Condition]>,
) -> Value {
    let status = if status { "True" } else { "False" };
    let since = previous
        .into_iter()
        .flatten()
        .find(|c| c.type_ == kind && c.status == status)
        .map(|c| c.last_transition_time.0.to_string())
        .unwrap_or_else(|| {
            jiff::Timestamp::now()
                .strftime("%Y-%m-%dT%H:%M:%SZ")
                .to_string()
        });
    json!({
        "type": kind,
        "status": status,
        "reason": reason,
        "message": message,
        "observedGeneration": generation,
        "lastTransitionTime": since,
    })
}

/// Starts every controller against `client`; they run until the handles are aborted.
pub fn start(client: &kube::Client, settings: &Settings) -> Vec<tokio::task::JoinHandle<()>> {
    start_except(client, settings, &[])
}

/// The same, with the caches of Certificates and Orders the controllers keep, for others to
/// read while the controllers run (the metrics).
pub fn start_sharing(
    client: &kube::Client,
    settings: &Settings,
) -> (Vec<tokio::task::JoinHandle<()>>, Caches) {
    start_controllers(client, settings, &[])
}

/// The caches of Certificates and Orders of running controllers, one per scope.
#[derive(Clone, Default)]
pub struct Caches {
    /// The Certificate controllers' own stores.
    pub certificates: Vec<Store<crate::api::Certificate>>,
    /// The shared Order watch's stores.
    pub orders: Vec<Store<crate::api::Order>>,
}

/// Starts the controllers of every kind but those named in `except` (by kind, such as
/// `"Order"`): a test that plays one controller's part itself starts the others.
pub fn start_except(
    client: &kube::Client,
    settings: &Settings,
    except: &[&str],
) -> Vec<tokio::task::JoinHandle<()>> {
    start_controllers(client, settings, except).0
}

fn start_controllers(
    client: &kube::Client,
    settings: &Settings,
    except: &[&str],
) -> (Vec<tokio::task::JoinHandle<()>>, Caches) {
    let (c, s) = (client, settings);
    // One writer per account wallet, shared by every controller that moves its money.
    let wallets = Arc::new(Wallets::default());
    let w = &wallets;
    let mut handles = Vec::new();
    // One watch of Orders per scope, which four controllers read.
    let orders = SharedOrders::new(client, settings, &mut handles);
    let o = &orders;
    // The Certificate controllers, built here so that their stores can be shared.
    let certificates = certificate::controllers(client, settings);
    let caches = Caches {
        certificates: certificates.iter().map(|c| c.controller.store()).collect(),
        orders: orders.scopes().map(|(_, shared)| shared.store()).collect(),
    };
    let mut spawn = |kind: &str, task: futures_util::future::BoxFuture<'static, ()>| {
        if !except.contains(&kind) {
            handles.push(tokio::spawn(task));
        }
    };
    spawn(
        "Account",
        Box::pin(account::run(c.clone(), s.clone(), o.clone())),
    );
    spawn(
        "Group",
        Box::pin(group::run(c.clone(), s.clone(), w.clone(), o.clone())),
    );
    spawn("Product", Box::pin(product::run(c.clone(), s.clone())));
    spawn("PriceList", Box::pin(pricelist::run(c.clone(), s.clone())));
    spawn(
        "SubAccount",
        Box::pin(subaccount::run(c.clone(), s.clone(), w.clone())),
    );
    spawn("PrivateCA", Box::pin(privateca::run(c.clone(), s.clone())));
    spawn(
        "Certificate",
        Box::pin(certificate::run(
            c.clone(),
            s.clone(),
            o.clone(),
            certificates,
        )),
    );
    spawn(
        "Order",
        Box::pin(order::run(c.clone(), s.clone(), w.clone(), o.clone())),
    );
    (handles, caches)
}

/// The Orders of each scope, from one watch per scope that the Order, Certificate, Account
/// and Group controllers share. An Order is cached as [`cache::order_view`] leaves it.
/// The certificates of the Orders just issued pass from the Order controller to the
/// Certificate controller through [`cache::IssuedOrders`].
#[derive(Clone)]
pub struct SharedOrders {
    scopes: Arc<[(Scope, cache::SharedWatch<crate::api::Order>)]>,
    issued: Arc<cache::IssuedOrders>,
    intake: Arc<cache::Intake>,
    built: Arc<cache::BuiltRequests>,
}

impl SharedOrders {
    /// The watches of `settings`' scopes; their tasks join `handles`.
    fn new(
        client: &Client,
        settings: &Settings,
        handles: &mut Vec<tokio::task::JoinHandle<()>>,
    ) -> Self {
        let scopes = settings.scopes().into_iter().map(|scope| {
            let (shared, task) = cache::SharedWatch::new(
                scoped(client, &scope),
                kube::runtime::watcher::Config::default(),
                cache::order_view,
            );
            handles.push(tokio::spawn(task));
            (scope, shared)
        });
        SharedOrders {
            scopes: scopes.collect(),
            issued: Arc::default(),
            intake: Arc::default(),
            built: Arc::default(),
        }
    }

    /// Every scope's watch.
    pub fn scopes(&self) -> impl Iterator<Item = &(Scope, cache::SharedWatch<crate::api::Order>)> {
        self.scopes.iter()
    }

    /// The watch of `scope`, one of the settings' scopes.
    pub fn of(&self, scope: &Scope) -> cache::SharedWatch<crate::api::Order> {
        match self.scopes.iter().find(|(s, _)| s == scope) {
            Some((_, shared)) => shared.clone(),
            None => unreachable!("every scope of the settings has its watch of Orders"),
        }
    }

    /// The certificates of the Orders just issued, on their way to their Secrets.
    pub fn issued(&self) -> Arc<cache::IssuedOrders> {
        self.issued.clone()
    }

    /// The Orders created and not yet taken up by the Order controller.
    pub fn intake(&self) -> Arc<cache::Intake> {
        self.intake.clone()
    }

    /// The requests built for the Orders created, until the Order controller parses them.
    pub fn built(&self) -> Arc<cache::BuiltRequests> {
        self.built.clone()
    }
}

/// How every controller runs.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Reconciles of one kind that may run at once (never two of the same object).
    pub concurrency: u16,
    /// The namespaces whose objects the operator watches and acts on; every namespace when
    /// empty. Accounts, which are cluster-scoped, are always watched.
    pub namespaces: Vec<String>,
    /// The operator's own namespace, which holds the sealing key Secret
    /// ([`certificate::SEALING_KEY_SECRET`]).
    pub own_namespace: String,
}

/// The operator's own namespace when nothing says otherwise.
pub const DEFAULT_NAMESPACE: &str = "certinext-system";

/// Reconciles of one kind at once when nothing says otherwise. A Certificate's issuance is
/// a chain of round trips to the API server (its Order, the charge, the signature, the
/// Secret, its status), so a reconcile spends most of its time waiting. With more of them in
/// flight, the operator and the API server each handle several requests and watch events
/// per wake-up instead of one: on a two-core machine, a burst of 10,000 certificates ran
/// at about 1,100/s with 32 against about 750/s with 4, with half the context switches and
/// about a third less CPU per certificate (docs/PERFORMANCE.md). One object is still never
/// reconciled twice at once.
pub const DEFAULT_CONCURRENCY: u16 = 32;

impl Default for Settings {
    fn default() -> Self {
        Settings {
            concurrency: DEFAULT_CONCURRENCY,
            namespaces: Vec::new(),
            own_namespace: DEFAULT_NAMESPACE.to_owned(),
        }
    }
}

/// Where a controller of a namespaced kind acts: every namespace (`None`) or one.
pub type Scope = Option<String>;

impl Settings {
    /// The kube-runtime configuration of one controller.
    pub fn controller_config(&self) -> kube::runtime::controller::Config {
        kube::runtime::controller::Config::default().concurrency(self.concurrency)
    }

    /// One scope per watched namespace, or the whole cluster.
    pub fn scopes(&self) -> Vec<Scope> {
        if self.namespaces.is_empty() {
            vec![None]
        } else {
            self.namespaces.iter().cloned().map(Some).collect()
        }
    }

    /// The API of a namespaced kind in every scope.
    pub fn apis<K>(&self, client: &Client) -> Vec<Api<K>>
    where
        K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>,
    {
        self.scopes()
            .iter()
            .map(|scope| scoped(client, scope))
            .collect()
    }
}

/// The API of a namespaced kind in `scope`.
pub fn scoped<K>(client: &Client, scope: &Scope) -> Api<K>
where
    K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>,
{
    match scope {
        None => Api::all(client.clone()),
        Some(namespace) => Api::namespaced(client.clone(), namespace),
    }
}

/// Runs a controller of a namespaced kind once per scope, until they all end.
pub async fn in_each_scope<F, Fut>(settings: &Settings, run_in: F)
where
    F: Fn(Scope) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    futures_util::future::join_all(settings.scopes().into_iter().map(run_in)).await;
}

/// Wraps a controller's reconcile function so that each run is counted, timed and, when it
/// fails, counted as an error, under the kind it reconciles (`certinext_reconcile*` metrics).
pub fn instrumented<K, C, E, F, Fut>(
    mut reconcile: F,
) -> impl FnMut(
    Arc<K>,
    Arc<C>,
)
    -> futures_util::future::BoxFuture<'static, Result<kube::runtime::controller::Action, E>>
where
    K: kube::Resource<DynamicType = ()>,
    F: FnMut(Arc<K>, Arc<C>) -> Fut,
    Fut:
        std::future::Future<Output = Result<kube::runtime::controller::Action, E>> + Send + 'static,
{
    let kind: Arc<str> = K::kind(&()).into();
    move |object, ctx| {
        let kind = kind.clone();
        let started = std::time::Instant::now();
        // Boxed where it is made: a reconcile's future is kilobytes, and moving it into the
        // future below and that into its box copied it twice per reconcile.
        let run = Box::pin(reconcile(object, ctx));
        Box::pin(async move {
            let result = run.await;
            crate::metrics::reconciles().observe(&kind, started.elapsed(), result.is_err());
            result
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Group;

    #[test]
    fn a_mapper_on_spec_change_ignores_status_writes() {
        let map = on_spec_change(|g: Group| vec![g.name_any()]);
        let mut group: Group = serde_json::from_value(json!({"apiVersion": "certinext.io/v1alpha1",
            "kind": "Group", "metadata": {"name": "team", "namespace": "shop", "uid": "u1", "generation": 1},
            "spec": {}}))
        .unwrap();
        assert_eq!(map(group.clone()), ["team"], "first sight");
        group.status = Some(Default::default());
        assert!(map(group.clone()).is_empty(), "a status write");
        group.metadata.generation = Some(2);
        assert_eq!(map(group.clone()), ["team"], "a spec change");
        group.metadata.uid = Some("u2".into());
        assert_eq!(map(group), ["team"], "a new object of the same name");
    }

    #[test]
    fn a_status_is_not_written_again_when_it_already_holds_the_fields() {
        let fields = |balance: &str, spent: Value| {
            json!({
                "observedGeneration": 1,
                "conditions": [condition("Ready", true, "Ready", "in force", Some(1), None)],
                "balance": balance,
                "spent": spent,
            })
        };
        // The group as the API server returns it after the write: typed, then serialised.
        let mut group: Group =
            serde_json::from_value(json!({"apiVersion": "certinext.io/v1alpha1",
            "kind": "Group", "metadata": {"name": "team", "namespace": "shop", "generation": 1},
            "spec": {}, "status": fields("10.00", json!(null))}))
            .unwrap();
        let status = |group: &Group| serde_json::to_value(group).unwrap()["status"].clone();
        assert!(status_holds(
            Some(&status(&group)),
            &fields("10.00", json!(null))
        ));
        assert!(
            !status_holds(Some(&status(&group)), &fields("9.00", json!(null))),
            "a figure moved"
        );
        assert!(
            !status_holds(Some(&status(&group)), &fields("10.00", json!("1.00"))),
            "a new field"
        );
        let conditions = group.status.as_ref().unwrap().conditions.clone();
        let previous = Some(conditions.as_slice());
        let refused = json!({"observedGeneration": 1, "balance": "10.00", "spent": null,
            "conditions": [condition("Ready", false, "Overdrawn", "overdrawn", Some(1), previous)]});
        assert!(
            !status_holds(Some(&status(&group)), &refused),
            "a condition changed"
        );
        group.status.as_mut().unwrap().spent = Some(crate::billing::Money::ZERO);
        assert!(
            !status_holds(Some(&status(&group)), &fields("10.00", json!(null))),
            "a field to clear"
        );
        assert!(
            !status_holds(None, &fields("10.00", json!(null))),
            "no status yet"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn reconciles_of_one_object_are_spaced_out_and_others_are_not_held() {
        let pacer = Pacer::default();
        let start = tokio::time::Instant::now();
        pacer.pace("a").await;
        assert_eq!(
            start.elapsed(),
            std::time::Duration::ZERO,
            "the first goes at once"
        );
        pacer.pace("b").await;
        assert_eq!(
            start.elapsed(),
            std::time::Duration::ZERO,
            "another object is not held"
        );
        pacer.pace("a").await;
        assert_eq!(
            start.elapsed(),
            Pacer::INTERVAL,
            "the second waits its turn"
        );
        tokio::time::sleep(Pacer::INTERVAL * 2).await;
        let later = tokio::time::Instant::now();
        pacer.pace("a").await;
        assert_eq!(
            later.elapsed(),
            std::time::Duration::ZERO,
            "one long after goes at once"
        );
    }

    /// A charge's writing keeps every other holder of its account's wallet waiting (not
    /// other charges, and not other accounts) until it is over, however it ends.
    #[tokio::test]
    async fn holders_of_a_wallet_wait_for_the_charges_in_flight_and_charges_do_not() {
        let wallets = Arc::new(Wallets::default());
        let decided = wallets.lock_to_charge("acme").await;
        let writing = wallets.writing("acme");
        drop(decided);
        assert!(wallets.has_writing("acme"));
        assert!(!wallets.has_writing("globex"));

        let soon = std::time::Duration::from_millis(50);
        let charge = tokio::time::timeout(soon, wallets.lock_to_charge("acme")).await;
        assert!(charge.is_ok(), "another charge decides meanwhile");
        drop(charge);
        let other = tokio::time::timeout(soon, wallets.lock("globex")).await;
        assert!(other.is_ok(), "another account's wallet is not held");
        drop(other);

        let waiting = tokio::spawn({
            let wallets = wallets.clone();
            async move {
                let _wallet = wallets.lock("acme").await;
            }
        });
        tokio::time::sleep(soon).await;
        assert!(!waiting.is_finished(), "an allocation waits for the write");
        drop(writing);
        tokio::time::timeout(std::time::Duration::from_secs(5), waiting)
            .await
            .expect("the allocation goes once the write is over")
            .expect("no panic");
        assert!(!wallets.has_writing("acme"));
        tokio::time::timeout(soon, wallets.landed("acme"))
            .await
            .expect("nothing left in flight");

        // A wait is for the charges in flight when it began, not for those after it.
        let first = wallets.writing("acme");
        let waiting = tokio::spawn({
            let wallets = wallets.clone();
            async move { wallets.landed("acme").await }
        });
        tokio::time::sleep(soon).await;
        let second = wallets.writing("acme");
        drop(first);
        tokio::time::timeout(std::time::Duration::from_secs(5), waiting)
            .await
            .expect("the wait ends with the first charge, the second still in flight")
            .expect("no panic");
        assert!(wallets.has_writing("acme"));
        drop(second);
    }
}
