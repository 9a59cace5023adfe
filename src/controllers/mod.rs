//! The controllers: one module per kind, each reading as dereference → decide → apply →
//! status, with the decisions in pure functions.

pub mod account;
pub mod group;
pub mod pricelist;
pub mod product;

use std::sync::Arc;

use kube::api::{Api, ListParams};
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
        let claims = account::claims(&accounts);
        Ok(Tenancy { accounts, claims })
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

/// Writes `status` to a namespaced object's status subresource by server-side apply, as
/// `manager`.
pub async fn write_status<K>(
    client: &Client,
    object: &K,
    manager: &str,
    status: serde_json::Value,
) -> Result<(), Error>
where
    K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), &object.namespace().unwrap_or_default());
    let patch = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    api.patch_status(
        &object.name_any(),
        &kube::api::PatchParams::apply(manager).force(),
        &kube::api::Patch::Apply(&patch),
    )
    .await?;
    Ok(())
}

/// What the controllers that need nothing but a client share.
pub struct Context {
    pub client: Client,
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
    vec![
        tokio::spawn(account::run(client.clone(), settings.clone())),
        tokio::spawn(group::run(client.clone(), settings.clone())),
        tokio::spawn(product::run(client.clone(), settings.clone())),
        tokio::spawn(pricelist::run(client.clone(), settings.clone())),
    ]
}

/// How every controller runs.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Reconciles of one kind that may run at once (never two of the same object).
    pub concurrency: u16,
}

impl Default for Settings {
    fn default() -> Self {
        Settings { concurrency: 4 }
    }
}

impl Settings {
    /// The kube-runtime configuration of one controller.
    pub fn controller_config(&self) -> kube::runtime::controller::Config {
        kube::runtime::controller::Config::default().concurrency(self.concurrency)
    }
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
        let run = reconcile(object, ctx);
        Box::pin(async move {
            let result = run.await;
            crate::metrics::reconciles().observe(&kind, started.elapsed(), result.is_err());
            result
        })
    }
}
