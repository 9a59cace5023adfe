//! Waiting on objects: until a condition holds, until Ready is reported, until gone.

use std::time::Duration;

use kube::Api;
use kube::runtime::wait::await_condition;

/// How long a test waits for the controllers: RSA 4096 keys take seconds in debug builds.
pub const TIMEOUT: Duration = Duration::from_secs(90);

/// Waits until the object `name` exists and satisfies `check`.
pub async fn wait_until<K>(
    api: &Api<K>,
    name: &str,
    check: impl Fn(&K) -> bool + Send + 'static,
) -> K
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + 'static,
    K::DynamicType: Default,
{
    let condition = move |object: Option<&K>| object.is_some_and(&check);
    let reached =
        tokio::time::timeout(TIMEOUT, await_condition(api.clone(), name, condition)).await;
    match reached {
        Ok(found) => found.expect("watch").expect("the object exists"),
        Err(_) => panic!(
            "{name} did not reach the expected status; it is now {:#?}",
            api.get_opt(name).await
        ),
    }
}

/// Waits until the object `name` does not exist.
pub async fn wait_gone<K>(api: &Api<K>, name: &str)
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + 'static,
    K::DynamicType: Default,
{
    let reached = tokio::time::timeout(
        TIMEOUT,
        await_condition(api.clone(), name, |o: Option<&K>| o.is_none()),
    )
    .await;
    assert!(
        matches!(reached, Ok(Ok(_))),
        "{name} still exists: {:#?}",
        api.get_opt(name).await
    );
}

/// The Ready condition (status, reason, message) of any certinext object, through its JSON.
pub fn ready<K: serde::Serialize>(object: &K) -> Option<(String, String, String)> {
    let value = serde_json::to_value(object).ok()?;
    let conditions: Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> =
        serde_json::from_value(value["status"]["conditions"].clone()).ok()?;
    conditions
        .into_iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| (c.status, c.reason, c.message))
}

/// Whether the object's Ready condition is True for its current generation.
pub fn is_ready<K: serde::Serialize>(object: &K) -> bool {
    let value = serde_json::to_value(object).unwrap_or_default();
    let generation = &value["metadata"]["generation"];
    ready(object).is_some_and(|r| r.0 == "True")
        && &value["status"]["observedGeneration"] == generation
}
