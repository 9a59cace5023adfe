//! Fault injection: a kube-rs Controller still converges when the API server fails requests
//! and closes watches.

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use devcluster::{Config, DevCluster, Faults};
use futures_util::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::ResourceExt;
use kube::api::{Api, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;

const OBJECTS: usize = 1_000;

async fn retry<T, F, Fut>(mut call: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = kube::Result<T>>,
{
    for _ in 0..100 {
        match call().await {
            Ok(value) => return value,
            Err(kube::Error::Api(status)) if matches!(status.code, 500 | 409) => continue,
            Err(error) => panic!("unexpected error: {error}"),
        }
    }
    panic!("100 injected failures in a row");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controller_reconciles_every_object_despite_errors_and_closed_watches() {
    let faults = Faults {
        error_rate: 0.10,
        conflict_rate: 0.05,
        // Shorter than the 2 s the reliability target names, so that this run sees many.
        watch_close_interval: Some(Duration::from_millis(300)),
        ..Faults::default()
    };
    let cluster = DevCluster::start(Config {
        faults,
        history_window: 50_000,
        ..Config::default()
    })
    .await
    .expect("devcluster starts");
    let client = support::client(&cluster).await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");

    let controller = Controller::new(api.clone(), watcher::Config::default())
        .run(
            |object: Arc<ConfigMap>, api: Arc<Api<ConfigMap>>| async move {
                if object.annotations().contains_key("reconciled") {
                    return Ok(Action::await_change());
                }
                let patch =
                    serde_json::json!({"metadata": {"annotations": {"reconciled": "true"}}});
                api.patch(
                    &object.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await?;
                Ok::<_, kube::Error>(Action::await_change())
            },
            |_, _, _| Action::requeue(Duration::from_millis(100)),
            Arc::new(api.clone()),
        )
        .for_each(|_| async {});
    let running = tokio::spawn(controller);

    futures_util::stream::iter(0..OBJECTS)
        .for_each_concurrent(16, |i| {
            let api = api.clone();
            async move {
                let object = ConfigMap {
                    metadata: ObjectMeta {
                        name: Some(format!("object-{i:04}")),
                        ..Default::default()
                    },
                    data: Some(BTreeMap::from([("i".to_owned(), i.to_string())])),
                    ..Default::default()
                };
                retry(|| async {
                    match api.create(&PostParams::default(), &object).await {
                        // An injected 500 may hide a create that happened.
                        Err(kube::Error::Api(status))
                            if status.code == 409 && status.reason == "AlreadyExists" =>
                        {
                            Ok(())
                        }
                        other => other.map(|_| ()),
                    }
                })
                .await;
            }
        })
        .await;

    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    let params = ListParams::default();
    loop {
        let list = retry(|| api.list(&params)).await;
        let done = list
            .items
            .iter()
            .filter(|o| o.annotations().contains_key("reconciled"))
            .count();
        if done == OBJECTS && list.items.len() == OBJECTS {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {done} of {OBJECTS} reconciled"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    running.abort();
    let (errors, conflicts, closed) = cluster.injected_faults();
    assert!(
        errors > 50 && conflicts > 10 && closed >= 1,
        "faults injected: {errors} errors, {conflicts} conflicts, {closed} watches closed"
    );
}
