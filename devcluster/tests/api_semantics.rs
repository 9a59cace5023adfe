//! The API's semantics as a client meets them: names, conflicts, preconditions, watch
//! options, the status subresource under server-side apply, and a CRD's lifecycle.

mod support;

use std::time::{Duration, Instant};

use devcluster::{Config, DevCluster};
use futures_util::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, ObjectMeta, Patch, PatchParams, PostParams,
    Preconditions, WatchEvent, WatchParams,
};
use kube::core::GroupVersionKind;
use kube::runtime::wait::{await_condition, conditions};
use kube::{Client, ResourceExt};
use serde_json::json;

async fn start() -> (DevCluster, Client) {
    support::start(Config::default()).await
}

fn api_error<T: std::fmt::Debug>(result: kube::Result<T>) -> kube::core::Status {
    match result {
        Err(kube::Error::Api(status)) => *status,
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_are_generated_and_duplicates_refused() {
    let (_cluster, client) = start().await;
    let api: Api<ConfigMap> = Api::default_namespaced(client);
    let template = ConfigMap {
        metadata: ObjectMeta {
            generate_name: Some("job-".into()),
            ..Default::default()
        },
        ..Default::default()
    };
    let first = api
        .create(&PostParams::default(), &template)
        .await
        .expect("create");
    let second = api
        .create(&PostParams::default(), &template)
        .await
        .expect("create");
    let (a, b) = (first.name_any(), second.name_any());
    assert!(a.starts_with("job-") && a.len() == "job-".len() + 5, "{a}");
    assert_ne!(a, b);

    let duplicate = ConfigMap {
        metadata: ObjectMeta {
            name: Some(a.clone()),
            ..Default::default()
        },
        ..Default::default()
    };
    let status = api_error(api.create(&PostParams::default(), &duplicate).await);
    assert_eq!(
        (status.code, status.reason.as_str()),
        (409, "AlreadyExists")
    );
    assert_eq!(status.message, format!("configmaps \"{a}\" already exists"));

    let status = api_error(api.get("missing").await);
    assert_eq!((status.code, status.reason.as_str()), (404, "NotFound"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secrets_string_data_is_merged_into_its_data_and_not_kept() {
    let (_cluster, client) = start().await;
    let api: Api<k8s_openapi::api::core::v1::Secret> = Api::default_namespaced(client);
    let secret = serde_json::from_value(json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "db"},
        "data": {"user": "cm9vdA==", "host": "ZGI="},
        "stringData": {"user": "admin", "password": "s3cret"}}))
    .expect("a Secret");
    let created = api
        .create(&PostParams::default(), &secret)
        .await
        .expect("create");
    let data = |s: &k8s_openapi::api::core::v1::Secret| {
        s.data
            .clone()
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, String::from_utf8(v.0).expect("text")))
            .collect::<std::collections::BTreeMap<_, _>>()
    };
    // stringData wins over data for the same key, and is not stored.
    assert_eq!(
        data(&created),
        [("host", "db"), ("password", "s3cret"), ("user", "admin")]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .into()
    );
    assert!(created.string_data.is_none());
    let read = api.get("db").await.expect("get");
    assert_eq!(data(&read), data(&created));
    assert!(read.string_data.is_none());

    // The same on a patch.
    let patched = api
        .patch(
            "db",
            &PatchParams::default(),
            &Patch::Merge(json!({"stringData": {"password": "n3w"}})),
        )
        .await
        .expect("patch");
    assert_eq!(data(&patched)["password"], "n3w");
    assert_eq!(data(&patched)["user"], "admin");
    assert!(patched.string_data.is_none());

    // A value that is not a string is refused, naming the key.
    let status = api_error(
        api.patch(
            "db",
            &PatchParams::default(),
            &Patch::Merge(json!({"stringData": {"port": 5432}})),
        )
        .await,
    );
    assert_eq!(status.code, 422, "{status:?}");
    assert!(
        status.message.contains("stringData[port]"),
        "{}",
        status.message
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_preconditions_protect_the_object_they_name() {
    let (_cluster, client) = start().await;
    let api: Api<ConfigMap> = Api::default_namespaced(client);
    let object = ConfigMap {
        metadata: ObjectMeta {
            name: Some("guarded".into()),
            ..Default::default()
        },
        ..Default::default()
    };
    let created = api
        .create(&PostParams::default(), &object)
        .await
        .expect("create");
    let wrong = DeleteParams {
        preconditions: Some(Preconditions {
            uid: Some("not-the-uid".into()),
            resource_version: None,
        }),
        ..Default::default()
    };
    let status = api_error(api.delete("guarded", &wrong).await);
    assert_eq!((status.code, status.reason.as_str()), (409, "Conflict"));
    assert!(
        status.message.contains("Precondition failed"),
        "{}",
        status.message
    );
    let stale = DeleteParams {
        preconditions: Some(Preconditions {
            uid: None,
            resource_version: Some("1".into()),
        }),
        ..Default::default()
    };
    assert_eq!(api_error(api.delete("guarded", &stale).await).code, 409);
    let right = DeleteParams {
        preconditions: Some(Preconditions {
            uid: created.metadata.uid.clone(),
            resource_version: created.metadata.resource_version.clone(),
        }),
        ..Default::default()
    };
    let deleted = api.delete("guarded", &right).await.expect("delete");
    assert!(
        deleted.is_right(),
        "an object without finalizers is gone at once"
    );
    assert!(api.get_opt("guarded").await.expect("get").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watches_send_bookmarks_and_end_at_their_timeout() {
    let cluster = DevCluster::start(Config {
        bookmark_interval: Duration::from_millis(200),
        ..Config::default()
    })
    .await
    .expect("devcluster starts");
    let api: Api<ConfigMap> = Api::default_namespaced(support::client(&cluster).await);
    let version = cluster.resource_version().to_string();
    let started = Instant::now();
    let mut params = WatchParams::default().timeout(2);
    params.bookmarks = true;
    let stream = api.watch(&params, &version).await.expect("watch");
    let events: Vec<_> = stream.try_collect().await.expect("a clean end");
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_secs(2) && elapsed < Duration::from_secs(10),
        "{elapsed:?}"
    );
    assert!(events.len() >= 5, "a bookmark every 200 ms: {events:?}");
    for event in &events {
        match event {
            WatchEvent::Bookmark(bookmark) => {
                assert_eq!(bookmark.metadata.resource_version, version)
            }
            other => panic!("only bookmarks expected, got {other:?}"),
        }
    }
}

/// The next line of a watch, as JSON.
async fn next_line<S>(lines: &mut S) -> serde_json::Value
where
    S: futures_util::Stream<Item = std::io::Result<String>> + Unpin,
{
    let line = tokio::time::timeout(Duration::from_secs(10), lines.next())
        .await
        .expect("a line in time")
        .expect("the stream goes on")
        .expect("a line");
    serde_json::from_str(&line).expect("a JSON line")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_answers_with_the_object_its_watchers_see_in_the_form_each_asked_for() {
    use futures_util::AsyncBufReadExt;
    let (cluster, client) = start().await;
    let api: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let before = cluster.resource_version().to_string();
    // Written before the watches start: they replay it from the change window.
    let first = client
        .request_text(
            hyper::Request::post("/api/v1/namespaces/default/configmaps")
                .header("Content-Type", "application/json")
                .body(
                    serde_json::to_vec(&json!({"apiVersion": "v1", "kind": "ConfigMap",
                        "metadata": {"name": "shared"}, "data": {"n": "1"}}))
                    .expect("json"),
                )
                .expect("request"),
        )
        .await
        .expect("create");
    let watch = |accept: &'static str| {
        let client = client.clone();
        let before = before.clone();
        async move {
            let request = hyper::Request::get(format!(
                "/api/v1/namespaces/default/configmaps?watch=1&resourceVersion={before}"
            ))
            .header("Accept", accept)
            .body(Vec::new())
            .expect("request");
            client.request_stream(request).await.expect("watch").lines()
        }
    };
    let mut objects = Box::pin(watch("application/json").await);
    let mut metadata =
        Box::pin(watch("application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1").await);
    let second = client
        .request_text(
            hyper::Request::patch("/api/v1/namespaces/default/configmaps/shared")
                .header("Content-Type", "application/merge-patch+json")
                .body(br#"{"data": {"n": "2"}}"#.to_vec())
                .expect("request"),
        )
        .await
        .expect("patch");
    for (kind, answer) in [("ADDED", &first), ("MODIFIED", &second)] {
        let event = next_line(&mut objects).await;
        assert_eq!(event["type"], kind);
        let answer: serde_json::Value = serde_json::from_str(answer).expect("the answer is JSON");
        assert_eq!(
            event["object"], answer,
            "the watch sees what the write answered"
        );
        // Replayed or live, a metadata watch gets metadata only.
        let event = next_line(&mut metadata).await;
        assert_eq!(event["type"], kind);
        assert_eq!(event["object"]["kind"], "PartialObjectMetadata", "{event}");
        assert_eq!(
            event["object"]["metadata"]["resourceVersion"],
            answer["metadata"]["resourceVersion"]
        );
        assert!(event["object"].get("data").is_none(), "{event}");
    }
    assert_eq!(
        api.get("shared").await.expect("get").data.expect("data")["n"],
        "2"
    );
    // A watch from now starts with the current objects, in its form too.
    let request = hyper::Request::get("/api/v1/namespaces/default/configmaps?watch=1")
        .header(
            "Accept",
            "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1",
        )
        .body(Vec::new())
        .expect("request");
    let mut current = Box::pin(client.request_stream(request).await.expect("watch").lines());
    let event = next_line(&mut current).await;
    assert_eq!(event["type"], "ADDED");
    assert_eq!(event["object"]["kind"], "PartialObjectMetadata", "{event}");
    assert_eq!(event["object"]["metadata"]["name"], "shared");
    assert!(event["object"].get("data").is_none(), "{event}");
    let metadata = api.get_metadata("shared").await.expect("get as metadata");
    assert_eq!(
        metadata.types.as_ref().map(|t| t.kind.as_str()),
        Some("PartialObjectMetadata")
    );
    let answer: serde_json::Value = serde_json::from_str(&second).expect("the answer is JSON");
    assert_eq!(
        metadata.metadata.resource_version.as_deref(),
        answer["metadata"]["resourceVersion"].as_str()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_from_an_expired_version_gets_410_in_the_stream() {
    let cluster = DevCluster::start(Config {
        history_window: 2,
        ..Config::default()
    })
    .await
    .expect("devcluster starts");
    let api: Api<ConfigMap> = Api::default_namespaced(support::client(&cluster).await);
    let start = cluster.resource_version().to_string();
    for i in 0..5 {
        let object = ConfigMap {
            metadata: ObjectMeta {
                name: Some(format!("c{i}")),
                ..Default::default()
            },
            ..Default::default()
        };
        api.create(&PostParams::default(), &object)
            .await
            .expect("create");
    }
    let mut stream = api
        .watch(&WatchParams::default(), &start)
        .await
        .expect("HTTP 200")
        .boxed();
    match stream.next().await {
        Some(Ok(WatchEvent::Error(error))) => {
            assert_eq!(error.code, 410);
            assert_eq!(error.reason, "Expired");
        }
        other => panic!("expected an in-stream 410, got {other:?}"),
    }
    assert!(
        stream.next().await.is_none(),
        "the stream ends after the error"
    );
    // A recent version replays exactly the changes after it.
    let recent = (cluster.resource_version() - 1).to_string();
    let mut stream = api
        .watch(&WatchParams::default().timeout(1), &recent)
        .await
        .expect("watch")
        .boxed();
    match stream.next().await {
        Some(Ok(WatchEvent::Added(object))) => assert_eq!(object.name_any(), "c4"),
        other => panic!("expected the last change, got {other:?}"),
    }
}

fn widget_crd() -> serde_json::Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {
            "group": "example.com",
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "shortNames": ["wd"]},
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "properties": {
                        "size": {"type": "integer"},
                        "tags": {"type": "array", "items": {"type": "string"}, "x-kubernetes-list-type": "set"}
                    }},
                    "status": {"type": "object", "properties": {
                        "conditions": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"],
                            "items": {"type": "object", "required": ["type"], "properties": {
                                "type": {"type": "string"}, "status": {"type": "string"}}}}
                    }}
                }}}
            }]
        }
    })
}

fn widgets(client: &Client) -> Api<DynamicObject> {
    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk("example.com", "v1", "Widget"));
    Api::namespaced_with(client.clone(), "default", &resource)
}

async fn install_widget_crd(client: &Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd: CustomResourceDefinition = serde_json::from_value(widget_crd()).expect("a CRD");
    crds.create(&PostParams::default(), &crd)
        .await
        .expect("CRD created");
    let established = await_condition(
        crds,
        "widgets.example.com",
        conditions::is_crd_established(),
    );
    tokio::time::timeout(Duration::from_secs(10), established)
        .await
        .expect("in time")
        .expect("watch");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_side_apply_tracks_status_separately_and_merges_lists_by_schema() {
    let (_cluster, client) = start().await;
    install_widget_crd(&client).await;
    let api = widgets(&client);
    let apply = |manager: &str| PatchParams::apply(manager);
    let mine = json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"},
        "spec": {"size": 1, "tags": ["a"]}});
    api.patch("w", &apply("alice"), &Patch::Apply(&mine))
        .await
        .expect("create by apply");
    let theirs = json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"},
        "spec": {"tags": ["b"]}});
    let merged = api
        .patch("w", &apply("bob"), &Patch::Apply(&theirs))
        .await
        .expect("bob applies");
    assert_eq!(
        merged.data["spec"]["tags"],
        json!(["a", "b"]),
        "a set list merges"
    );

    let status = json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"},
        "status": {"conditions": [{"type": "Ready", "status": "True"}]}});
    let updated = api
        .patch_status("w", &apply("controller"), &Patch::Apply(&status))
        .await
        .expect("status apply");
    assert_eq!(updated.data["status"]["conditions"][0]["status"], "True");
    let entries: Vec<_> = updated
        .managed_fields()
        .iter()
        .map(|m| (m.manager.clone().unwrap_or_default(), m.subresource.clone()))
        .collect();
    assert!(
        entries.contains(&("controller".into(), Some("status".into()))),
        "{entries:?}"
    );
    assert!(entries.contains(&("alice".into(), None)), "{entries:?}");

    // Alice stops applying her tag: it goes, bob's stays.
    let without_tag = json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"},
        "spec": {"size": 1}});
    let after = api
        .patch("w", &apply("alice"), &Patch::Apply(&without_tag))
        .await
        .expect("alice re-applies");
    assert_eq!(after.data["spec"]["tags"], json!(["b"]));
    assert_eq!(
        after.data["status"]["conditions"][0]["type"], "Ready",
        "main apply keeps status"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_crd_stops_serving_it_and_deletes_its_objects() {
    let (_cluster, client) = start().await;
    install_widget_crd(&client).await;
    let api = widgets(&client);
    for name in ["a", "b"] {
        let widget = json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": name}, "spec": {"size": 1}});
        api.patch(name, &PatchParams::apply("test"), &Patch::Apply(&widget))
            .await
            .expect("create");
    }
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.delete("widgets.example.com", &DeleteParams::default())
        .await
        .expect("delete");
    let gone = await_condition(
        crds.clone(),
        "widgets.example.com",
        |crd: Option<&CustomResourceDefinition>| crd.is_none(),
    );
    tokio::time::timeout(Duration::from_secs(10), gone)
        .await
        .expect("in time")
        .expect("watch");
    let status = api_error(api.list(&Default::default()).await);
    assert_eq!(status.code, 404);
    // Installing it again serves an empty resource: the objects went with it.
    install_widget_crd(&client).await;
    assert!(
        api.list(&Default::default())
            .await
            .expect("list")
            .items
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminating_namespace_or_crd_goes_once_the_finalizer_holding_its_last_object_does() {
    use k8s_openapi::api::core::v1::Namespace;
    let (_cluster, client) = start().await;
    install_widget_crd(&client).await;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let namespace = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "held"}});
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(namespace).expect("namespace"),
        )
        .await
        .expect("create the namespace");
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), "held");
    let held = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "held", "finalizers": ["example.com/hold"]}});
    configmaps
        .create(
            &PostParams::default(),
            &serde_json::from_value(held).expect("configmap"),
        )
        .await
        .expect("create the held ConfigMap");
    let widgets = widgets(&client);
    let widget = json!({"apiVersion": "example.com/v1", "kind": "Widget",
        "metadata": {"name": "held", "finalizers": ["example.com/hold"]}, "spec": {"size": 1}});
    widgets
        .patch("held", &PatchParams::apply("test"), &Patch::Apply(&widget))
        .await
        .expect("create the held Widget");
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    namespaces
        .delete("held", &DeleteParams::default())
        .await
        .expect("delete the namespace");
    crds.delete("widgets.example.com", &DeleteParams::default())
        .await
        .expect("delete the CRD");

    // Both wait for their last object, which waits for its finalizer.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let terminating = |meta: &ObjectMeta| meta.deletion_timestamp.is_some();
    assert!(terminating(
        &namespaces.get("held").await.expect("still there").metadata
    ));
    assert!(terminating(
        &crds
            .get("widgets.example.com")
            .await
            .expect("still there")
            .metadata
    ));
    assert!(terminating(
        &configmaps.get("held").await.expect("still there").metadata
    ));

    let release = json!({"metadata": {"finalizers": null}});
    configmaps
        .patch("held", &PatchParams::default(), &Patch::Merge(&release))
        .await
        .expect("release the ConfigMap");
    widgets
        .patch("held", &PatchParams::default(), &Patch::Merge(&release))
        .await
        .expect("release the Widget");
    let namespace_gone = await_condition(namespaces, "held", |n: Option<&Namespace>| n.is_none());
    let crd_gone = await_condition(
        crds,
        "widgets.example.com",
        |c: Option<&CustomResourceDefinition>| c.is_none(),
    );
    tokio::time::timeout(Duration::from_secs(10), async {
        namespace_gone.await.expect("watch");
        crd_gone.await.expect("watch");
    })
    .await
    .expect("both gone in time");
}

fn owned_by(name: &str, owner: &ConfigMap, block: bool, finalizers: &[&str]) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.into()),
            owner_references: Some(vec![
                k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
                    api_version: "v1".into(),
                    kind: "ConfigMap".into(),
                    name: owner.name_any(),
                    uid: owner.metadata.uid.clone().unwrap_or_default(),
                    block_owner_deletion: block.then_some(true),
                    controller: None,
                },
            ]),
            finalizers: (!finalizers.is_empty())
                .then(|| finalizers.iter().map(|f| (*f).to_owned()).collect()),
            ..Default::default()
        },
        ..Default::default()
    }
}

async fn configmap_named(api: &Api<ConfigMap>, name: &str) -> ConfigMap {
    let object = ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        ..Default::default()
    };
    api.create(&PostParams::default(), &object)
        .await
        .expect("create")
}

async fn wait_gone(api: &Api<ConfigMap>, name: &str) {
    // Not `conditions::is_deleted("")`: with an empty uid it holds for any existing object.
    let gone = await_condition(api.clone(), name, |o: Option<&ConfigMap>| o.is_none());
    tokio::time::timeout(Duration::from_secs(10), gone)
        .await
        .expect("gone in time")
        .expect("watch");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_deletion_collects_dependents_whose_owners_are_gone() {
    let (_cluster, client) = start().await;
    let api: Api<ConfigMap> = Api::default_namespaced(client);
    let owner = configmap_named(&api, "owner").await;
    let other = configmap_named(&api, "other-owner").await;
    api.create(
        &PostParams::default(),
        &owned_by("dependent", &owner, false, &[]),
    )
    .await
    .expect("create");
    let mut shared = owned_by("shared", &owner, false, &[]);
    if let Some(references) = shared.metadata.owner_references.as_mut() {
        references.extend(
            owned_by("x", &other, false, &[])
                .metadata
                .owner_references
                .unwrap_or_default(),
        );
    }
    api.create(&PostParams::default(), &shared)
        .await
        .expect("create");
    api.delete("owner", &DeleteParams::background())
        .await
        .expect("delete owner");
    wait_gone(&api, "dependent").await;
    assert!(
        api.get_opt("shared").await.expect("get").is_some(),
        "an object with a live owner stays"
    );
    // An object created with owners that do not exist is collected too.
    api.create(
        &PostParams::default(),
        &owned_by("stray", &owner, false, &[]),
    )
    .await
    .expect("create");
    wait_gone(&api, "stray").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreground_deletion_waits_for_blocking_dependents() {
    let (_cluster, client) = start().await;
    let api: Api<ConfigMap> = Api::default_namespaced(client);
    let owner = configmap_named(&api, "owner").await;
    api.create(
        &PostParams::default(),
        &owned_by("held", &owner, true, &["example.com/hold"]),
    )
    .await
    .expect("create");
    api.delete("owner", &DeleteParams::foreground())
        .await
        .expect("delete owner");
    let owner_now = api.get("owner").await.expect("the owner waits");
    assert!(owner_now.metadata.deletion_timestamp.is_some());
    assert!(
        owner_now
            .finalizers()
            .contains(&"foregroundDeletion".to_owned())
    );
    let being_deleted =
        |cm: Option<&ConfigMap>| cm.is_some_and(|cm| cm.metadata.deletion_timestamp.is_some());
    let held = await_condition(api.clone(), "held", being_deleted);
    tokio::time::timeout(Duration::from_secs(10), held)
        .await
        .expect("the dependent is being deleted, held by its finalizer")
        .expect("watch");
    api.patch(
        "held",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .expect("release the dependent");
    wait_gone(&api, "held").await;
    wait_gone(&api, "owner").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orphan_deletion_keeps_dependents_without_the_reference() {
    let (_cluster, client) = start().await;
    let api: Api<ConfigMap> = Api::default_namespaced(client);
    let owner = configmap_named(&api, "owner").await;
    api.create(
        &PostParams::default(),
        &owned_by("orphan", &owner, false, &[]),
    )
    .await
    .expect("create");
    api.delete("owner", &DeleteParams::orphan())
        .await
        .expect("delete owner");
    wait_gone(&api, "owner").await;
    let orphan = api.get("orphan").await.expect("the dependent stays");
    assert!(
        orphan
            .metadata
            .owner_references
            .unwrap_or_default()
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_counted_by_client_verb_and_resource() {
    let cluster = DevCluster::start(Config::default())
        .await
        .expect("devcluster starts");
    let kubeconfig =
        kube::config::Kubeconfig::from_yaml(cluster.kubeconfig()).expect("kubeconfig parses");
    let mut config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .expect("kubeconfig loads");
    config.headers.push((
        "user-agent".parse().expect("header name"),
        "counted-client/1.0".parse().expect("header value"),
    ));
    let client = Client::try_from(config).expect("client");
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    cluster.reset_requests();
    let cm: ConfigMap =
        serde_json::from_value(serde_json::json!({"metadata": {"name": "counted"}}))
            .expect("configmap");
    api.create(&Default::default(), &cm).await.expect("create");
    api.get("counted").await.expect("get");
    api.get("counted").await.expect("get again");
    let _ = api.get("missing").await;
    let counted: Vec<(String, String, String, u64)> = cluster
        .requests()
        .into_iter()
        .filter(|(k, _)| k.user_agent == "counted-client")
        .map(|(k, n)| (k.verb, k.group, k.resource, n))
        .collect();
    assert_eq!(
        counted,
        [
            ("create".into(), "".into(), "configmaps".into(), 1),
            ("get".into(), "".into(), "configmaps".into(), 3),
        ]
    );
}
