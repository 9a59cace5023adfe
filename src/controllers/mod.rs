//! The controllers: one module per kind, each reading as dereference → decide → apply →
//! status, with the decisions in pure functions.

pub mod account;
pub mod group;

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
pub fn start(client: &kube::Client) -> Vec<tokio::task::JoinHandle<()>> {
    vec![
        tokio::spawn(account::run(client.clone())),
        tokio::spawn(group::run(client.clone())),
    ]
}
