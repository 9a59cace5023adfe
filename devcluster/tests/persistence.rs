//! `data_dir`: a restarted cluster has every object, the same versions, its CRDs' resources,
//! and the change window a watch resumes from.

mod support;

use devcluster::{Config, DevCluster};
use futures_util::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::ResourceExt;
use kube::api::{
    Api, DeleteParams, ObjectMeta, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};

fn configmap(name: &str, value: &str) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        data: Some([("value".to_owned(), value.to_owned())].into()),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_keeps_objects_versions_and_the_change_window() {
    let dir = tempfile::tempdir().expect("a data directory");
    let config = || Config {
        data_dir: Some(dir.path().to_owned()),
        ..Config::default()
    };

    let first = DevCluster::start(config()).await.expect("starts");
    let api: Api<ConfigMap> = Api::default_namespaced(support::client(&first).await);
    let kept = api
        .create(&PostParams::default(), &configmap("kept", "1"))
        .await
        .expect("create");
    api.create(&PostParams::default(), &configmap("removed", "1"))
        .await
        .expect("create");
    let resume_from = first.resource_version();
    api.patch(
        "kept",
        &PatchParams::default(),
        &Patch::Merge(configmap("kept", "2")),
    )
    .await
    .expect("patch");
    api.delete("removed", &DeleteParams::default())
        .await
        .expect("delete");
    let last = first.resource_version();
    let kubeconfig = first.kubeconfig().to_owned();
    first.shutdown().await;

    let second = DevCluster::start(config()).await.expect("restarts");
    assert_eq!(
        second.resource_version(),
        last,
        "the version sequence continues"
    );
    assert_eq!(
        second.token(),
        kubeconfig
            .lines()
            .find_map(|l| l.trim().strip_prefix("token: "))
            .unwrap_or_default(),
        "the same token: existing kubeconfigs keep working"
    );
    let api: Api<ConfigMap> = Api::default_namespaced(support::client(&second).await);
    let restored = api.get("kept").await.expect("kept survives");
    assert_eq!(restored.metadata.uid, kept.metadata.uid);
    assert_eq!(
        restored
            .data
            .as_ref()
            .and_then(|d| d.get("value"))
            .map(String::as_str),
        Some("2")
    );
    assert!(api.get_opt("removed").await.expect("get").is_none());

    // A watch from before the restart resumes: the changes after its version are replayed.
    let stream = api
        .watch(&WatchParams::default().timeout(1), &resume_from.to_string())
        .await
        .expect("watch");
    let events: Vec<_> = stream.filter_map(|e| async { e.ok() }).collect().await;
    let seen: Vec<String> = events
        .iter()
        .map(|e| match e {
            WatchEvent::Added(o) => format!("ADDED {}", o.name_any()),
            WatchEvent::Modified(o) => format!("MODIFIED {}", o.name_any()),
            WatchEvent::Deleted(o) => format!("DELETED {}", o.name_any()),
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(seen, ["MODIFIED kept", "DELETED removed"]);

    let next = api
        .create(&PostParams::default(), &configmap("after", "1"))
        .await
        .expect("create");
    let version: u64 = next
        .resource_version()
        .unwrap_or_default()
        .parse()
        .expect("a number");
    assert_eq!(version, last + 1);
    second.shutdown().await;
}
