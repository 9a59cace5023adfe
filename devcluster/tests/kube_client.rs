//! kube-rs, unchanged, against devcluster: watchers across closed watches and expired
//! versions, `Api::entry`, finalizers, `patch_status`, and a `Controller`.

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use devcluster::Config;
use futures_util::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::wait::{await_condition, conditions};
use kube::runtime::watcher::{self, Event};
use kube::{Client, CustomResource, CustomResourceExt, ResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use support::start;
use tokio::sync::mpsc;

#[derive(CustomResource, Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "example.com",
    version = "v1",
    kind = "Widget",
    namespaced,
    status = "WidgetStatus"
)]
pub struct WidgetSpec {
    pub size: i64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
pub struct WidgetStatus {
    pub seen: i64,
}

async fn install_widgets(client: &Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.patch(
        "widgets.example.com",
        &PatchParams::apply("test").force(),
        &Patch::Apply(Widget::crd()),
    )
    .await
    .expect("CRD applies");
    let established = await_condition(
        crds,
        "widgets.example.com",
        conditions::is_crd_established(),
    );
    tokio::time::timeout(Duration::from_secs(10), established)
        .await
        .expect("CRD established in time")
        .expect("watch works");
}

fn configmap(name: &str, step: i64) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        data: Some(BTreeMap::from([("step".to_owned(), step.to_string())])),
        ..Default::default()
    }
}

/// Collects the `step` values a watcher reports for `name`, touched (Apply) events only.
fn steps(events: &[Event<ConfigMap>], name: &str) -> Vec<String> {
    let mut seen = Vec::new();
    for event in events {
        let objects: Vec<&ConfigMap> = match event {
            Event::Apply(o) | Event::InitApply(o) => vec![o],
            _ => vec![],
        };
        for o in objects.into_iter().filter(|o| o.name_any() == name) {
            if let Some(step) = o.data.as_ref().and_then(|d| d.get("step")) {
                seen.push(step.clone());
            }
        }
    }
    seen
}

/// Forwards a watcher's events. The watcher backs off and retries on errors, as every
/// controller's does; errors are printed (they show in a failing test's output) and a
/// relist after a 410 is what the relist test expects.
async fn forward(
    stream: impl futures_util::Stream<Item = watcher::Result<Event<ConfigMap>>>,
    sender: mpsc::UnboundedSender<Event<ConfigMap>>,
) {
    use kube::runtime::WatchStreamExt;
    let mut stream = std::pin::pin!(stream.default_backoff());
    while let Some(event) = stream.next().await {
        match event {
            Ok(event) => {
                if sender.send(event).is_err() {
                    return;
                }
            }
            Err(error) => eprintln!("watcher error (retried): {error}"),
        }
    }
}

/// Receives events into `events` until one shows `step`.
async fn wait_for(
    receiver: &mut mpsc::UnboundedReceiver<Event<ConfigMap>>,
    events: &mut Vec<Event<ConfigMap>>,
    step: i64,
) {
    let want = step.to_string();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let event = tokio::time::timeout_at(deadline, receiver.recv())
            .await
            .unwrap_or_else(|_| panic!("step {step} not seen in time; events: {events:?}"))
            .expect("the watcher runs (a closed channel means it failed: see its panic)");
        let done = matches!(&event, Event::Apply(o) | Event::InitApply(o)
            if o.data.as_ref().and_then(|d| d.get("step")) == Some(&want));
        events.push(event);
        if done {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_sees_every_change_once_across_a_closed_watch() {
    let (cluster, client) = start(Config::default()).await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    api.create(&PostParams::default(), &configmap("counter", 0))
        .await
        .expect("create");

    let (sender, mut receiver) = mpsc::unbounded_channel();
    let stream = watcher::watcher(api.clone(), watcher::Config::default());
    let task = tokio::spawn(forward(stream, sender));
    let mut events = Vec::new();
    wait_for(&mut receiver, &mut events, 0).await;
    for step in 1..=5 {
        api.patch(
            "counter",
            &PatchParams::default(),
            &Patch::Merge(configmap("counter", step)),
        )
        .await
        .expect("patch");
    }
    wait_for(&mut receiver, &mut events, 5).await;
    cluster.close_watches();
    for step in 6..=10 {
        api.patch(
            "counter",
            &PatchParams::default(),
            &Patch::Merge(configmap("counter", step)),
        )
        .await
        .expect("patch");
    }
    wait_for(&mut receiver, &mut events, 10).await;
    task.abort();
    let expected: Vec<String> = (0..=10).map(|s| s.to_string()).collect();
    assert_eq!(
        steps(&events, "counter"),
        expected,
        "each change exactly once, in order"
    );
    assert_eq!(
        events.iter().filter(|e| matches!(e, Event::Init)).count(),
        1,
        "a closed watch resumes without a relist"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_relists_after_410_and_converges() {
    let (cluster, client) = start(Config {
        history_window: 4,
        ..Config::default()
    })
    .await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    for name in ["a", "b"] {
        api.create(&PostParams::default(), &configmap(name, 0))
            .await
            .expect("create");
    }
    let (sender, mut receiver) = mpsc::unbounded_channel();
    // Without bookmarks the watcher's version is that of the last configmap it saw.
    let stream = watcher::watcher(api.clone(), watcher::Config::default().disable_bookmarks());
    let task = tokio::spawn(forward(stream, sender));
    let mut events: Vec<Event<ConfigMap>> = Vec::new();
    let mut inits = 0;
    // The first listing.
    while inits < 1 {
        let event = receiver.recv().await.expect("watcher runs");
        if matches!(event, Event::InitDone) {
            inits += 1;
        }
        events.push(event);
    }
    // Changes the watcher sees; then writes to another resource move the cluster's version
    // past the watcher's, and compaction forgets them: resuming from the watcher's version
    // gets 410 Expired.
    for step in 1..=3 {
        api.patch(
            "a",
            &PatchParams::default(),
            &Patch::Merge(configmap("a", step)),
        )
        .await
        .expect("patch");
    }
    api.delete("b", &DeleteParams::default())
        .await
        .expect("delete");
    wait_for(&mut receiver, &mut events, 3).await;
    let secrets: Api<k8s_openapi::api::core::v1::Secret> =
        Api::namespaced(api.clone().into_client(), "default");
    for i in 0..3 {
        let secret = k8s_openapi::api::core::v1::Secret {
            metadata: ObjectMeta {
                name: Some(format!("s{i}")),
                ..Default::default()
            },
            ..Default::default()
        };
        secrets
            .create(&PostParams::default(), &secret)
            .await
            .expect("create secret");
    }
    cluster.compact();
    api.create(&PostParams::default(), &configmap("c", 0))
        .await
        .expect("create");
    // The watcher relists and its view converges to the cluster's.
    let mut view: BTreeMap<String, String> = BTreeMap::new();
    let mut relisted = false;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let event = tokio::time::timeout_at(deadline, receiver.recv())
            .await
            .unwrap_or_else(|_| {
                panic!("converges in time; relisted {relisted}, view {view:?}, events: {events:?}")
            })
            .expect("watcher runs");
        match &event {
            Event::Init => {
                relisted = true;
                view.clear();
            }
            Event::InitApply(o) | Event::Apply(o) => {
                let step = o
                    .data
                    .as_ref()
                    .and_then(|d| d.get("step"))
                    .cloned()
                    .unwrap_or_default();
                view.insert(o.name_any(), step);
            }
            Event::Delete(o) => {
                view.remove(&o.name_any());
            }
            Event::InitDone => {}
        }
        events.push(event);
        let expected = BTreeMap::from([
            ("a".to_owned(), "3".to_owned()),
            ("c".to_owned(), "0".to_owned()),
        ]);
        if relisted && view == expected {
            break;
        }
    }
    task.abort();
    assert!(relisted, "a 410 makes the watcher relist");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entry_creates_and_replaces() {
    let (_cluster, client) = start(Config::default()).await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    api.entry("settings")
        .await
        .expect("entry")
        .or_insert(|| configmap("settings", 1))
        .commit(&PostParams::default())
        .await
        .expect("created");
    api.entry("settings")
        .await
        .expect("entry")
        .or_insert(|| configmap("settings", 0))
        .and_modify(|cm| {
            cm.data
                .get_or_insert_default()
                .insert("step".into(), "2".into());
        })
        .commit(&PostParams::default())
        .await
        .expect("replaced");
    let stored = api.get("settings").await.expect("get");
    assert_eq!(
        stored
            .data
            .as_ref()
            .and_then(|d| d.get("step"))
            .map(String::as_str),
        Some("2")
    );
    // A stale replace is refused with 409 Conflict.
    let mut stale = stored.clone();
    stale.metadata.resource_version = Some("1".into());
    match api
        .replace("settings", &PostParams::default(), &stale)
        .await
    {
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 409);
            assert_eq!(status.reason, "Conflict");
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finalizer_helper_adds_and_removes_its_finalizer() {
    let (_cluster, client) = start(Config::default()).await;
    install_widgets(&client).await;
    let api: Api<Widget> = Api::namespaced(client, "default");
    api.create(
        &PostParams::default(),
        &Widget::new("w", WidgetSpec { size: 1 }),
    )
    .await
    .expect("create");
    let reconcile = |api: Api<Widget>| async move {
        let widget = api.get("w").await.expect("get");
        finalizer(
            &api,
            "example.com/cleanup",
            Arc::new(widget),
            |event| async move {
                match event {
                    Finalizer::Apply(_) | Finalizer::Cleanup(_) => {
                        Ok::<_, std::convert::Infallible>(Action::await_change())
                    }
                }
            },
        )
        .await
    };
    reconcile(api.clone())
        .await
        .expect("first pass adds the finalizer");
    let widget = api.get("w").await.expect("get");
    assert_eq!(widget.finalizers(), ["example.com/cleanup"]);
    api.delete("w", &DeleteParams::default())
        .await
        .expect("delete starts");
    assert!(
        api.get("w")
            .await
            .expect("still there")
            .metadata
            .deletion_timestamp
            .is_some()
    );
    reconcile(api.clone())
        .await
        .expect("cleanup removes the finalizer");
    assert!(
        api.get_opt("w").await.expect("get_opt").is_none(),
        "gone once the finalizer is removed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patch_status_touches_only_status() {
    let (_cluster, client) = start(Config::default()).await;
    install_widgets(&client).await;
    let api: Api<Widget> = Api::namespaced(client, "default");
    let created = api
        .create(
            &PostParams::default(),
            &Widget::new("w", WidgetSpec { size: 1 }),
        )
        .await
        .expect("create");
    assert_eq!(created.metadata.generation, Some(1));
    let patch = serde_json::json!({"spec": {"size": 99}, "status": {"seen": 7}});
    let updated = api
        .patch_status("w", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("patch status");
    assert_eq!(updated.status.map(|s| s.seen), Some(7));
    assert_eq!(updated.spec.size, 1, "the status endpoint ignores spec");
    assert_eq!(
        updated.metadata.generation,
        Some(1),
        "status does not bump generation"
    );
    let main = serde_json::json!({"spec": {"size": 2}, "status": {"seen": 0}});
    let updated = api
        .patch("w", &PatchParams::default(), &Patch::Merge(&main))
        .await
        .expect("patch");
    assert_eq!(updated.spec.size, 2);
    assert_eq!(
        updated.status.map(|s| s.seen),
        Some(7),
        "the main endpoint ignores status"
    );
    assert_eq!(
        updated.metadata.generation,
        Some(2),
        "a spec change bumps generation"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controller_reconciles_an_object_created_after_it_started() {
    let (_cluster, client) = start(Config::default()).await;
    install_widgets(&client).await;
    let api: Api<Widget> = Api::namespaced(client.clone(), "default");
    let (sender, mut reconciled) = mpsc::unbounded_channel::<String>();
    let controller = Controller::new(api.clone(), watcher::Config::default())
        .run(
            move |widget: Arc<Widget>, ctx: Arc<mpsc::UnboundedSender<String>>| async move {
                let _ = ctx.send(widget.name_any());
                Ok::<_, kube::Error>(Action::await_change())
            },
            |_, _, _| Action::requeue(Duration::from_secs(1)),
            Arc::new(sender),
        )
        .try_for_each(|_| async { Ok(()) });
    let running = tokio::spawn(controller);
    api.create(
        &PostParams::default(),
        &Widget::new("late", WidgetSpec { size: 3 }),
    )
    .await
    .expect("create");
    let name = tokio::time::timeout(Duration::from_secs(20), reconciled.recv())
        .await
        .expect("reconciled in time")
        .expect("controller runs");
    assert_eq!(name, "late");
    running.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streaming_list_watcher_gets_the_objects_then_the_changes() {
    let (_cluster, client) = start(Config::default()).await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    for name in ["a", "b", "c"] {
        api.create(&PostParams::default(), &configmap(name, 0))
            .await
            .expect("create");
    }
    let stream = watcher::watcher(api.clone(), watcher::Config::default().streaming_lists());
    let mut stream = std::pin::pin!(stream);
    let mut initial = Vec::new();
    loop {
        let event = tokio::time::timeout(Duration::from_secs(10), stream.try_next())
            .await
            .expect("events in time")
            .expect("no watch error")
            .expect("the stream goes on");
        match event {
            Event::Init => {}
            Event::InitApply(object) => initial.push(object.name_any()),
            Event::InitDone => break,
            other => panic!("unexpected {other:?} before the initial events end"),
        }
    }
    assert_eq!(initial, ["a", "b", "c"]);
    api.patch(
        "b",
        &PatchParams::default(),
        &Patch::Merge(configmap("b", 1)),
    )
    .await
    .expect("patch");
    let event = tokio::time::timeout(Duration::from_secs(10), stream.try_next())
        .await
        .expect("a change in time")
        .expect("no watch error")
        .expect("the stream goes on");
    match event {
        Event::Apply(object) => assert_eq!(object.name_any(), "b"),
        other => panic!("expected the change, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_metadata_watcher_gets_partial_object_metadata() {
    let (_cluster, client) = start(Config::default()).await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    api.create(&PostParams::default(), &configmap("meta", 0))
        .await
        .expect("create");
    let metadata: Api<kube::core::PartialObjectMeta<ConfigMap>> =
        Api::namespaced(api.into_client(), "default");
    let stream = watcher::watcher(metadata, watcher::Config::default());
    let mut stream = std::pin::pin!(stream);
    loop {
        let event = tokio::time::timeout(Duration::from_secs(10), stream.try_next())
            .await
            .expect("events in time")
            .expect("no watch error")
            .expect("the stream goes on");
        if let Event::InitApply(object) = event {
            assert_eq!(object.name_any(), "meta");
            assert!(object.metadata.uid.is_some());
            assert_eq!(
                object.types.as_ref().map(|t| t.kind.as_str()),
                Some("PartialObjectMetadata")
            );
            break;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_published_through_events_k8s_io_are_core_events_too() {
    use k8s_openapi::api::core::v1::{Event as CoreEvent, ObjectReference};
    use kube::runtime::events::{Event as Published, EventType, Recorder, Reporter};
    let (_cluster, client) = start(Config::default()).await;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let object = api
        .create(&PostParams::default(), &configmap("subject", 0))
        .await
        .expect("create");
    let reporter = Reporter {
        controller: "tester".into(),
        instance: Some("tester-1".into()),
    };
    let recorder = Recorder::new(client.clone(), reporter);
    let reference = ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("ConfigMap".into()),
        name: object.metadata.name.clone(),
        namespace: Some("default".into()),
        uid: object.metadata.uid.clone(),
        ..Default::default()
    };
    let event = Published {
        type_: EventType::Warning,
        reason: "Refused".into(),
        note: Some("the subject was refused".into()),
        action: "Validate".into(),
        secondary: None,
    };
    recorder.publish(&event, &reference).await.expect("publish");
    recorder
        .publish(&event, &reference)
        .await
        .expect("publish again (a series)");
    let core: Api<CoreEvent> = Api::namespaced(client, "default");
    let selector = format!(
        "involvedObject.name=subject,involvedObject.uid={}",
        object.metadata.uid.unwrap_or_default()
    );
    let listed = core
        .list(&kube::api::ListParams::default().fields(&selector))
        .await
        .expect("list");
    assert_eq!(listed.items.len(), 1, "one event, counted as a series");
    let event = &listed.items[0];
    assert_eq!(event.reason.as_deref(), Some("Refused"));
    assert_eq!(event.message.as_deref(), Some("the subject was refused"));
    assert_eq!(event.type_.as_deref(), Some("Warning"));
    assert_eq!(event.reporting_component.as_deref(), Some("tester"));
    assert_eq!(event.series.as_ref().and_then(|s| s.count), Some(2));
    let other = core
        .list(&kube::api::ListParams::default().fields("involvedObject.name=someone-else"))
        .await
        .expect("list");
    assert!(other.items.is_empty());
    for (selector, found) in [
        ("type=Warning,reason=Refused", 1),
        ("type=Normal", 0),
        ("reportingComponent=tester,reason!=Refused", 0),
    ] {
        let listed = core
            .list(&kube::api::ListParams::default().fields(selector))
            .await
            .expect("list by the event's own fields");
        assert_eq!(listed.items.len(), found, "{selector}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_writes_nothing_and_delete_collection_deletes_the_selected() {
    let (_cluster, client) = start(Config::default()).await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let dry = PostParams {
        dry_run: true,
        ..Default::default()
    };
    let preview = api
        .create(&dry, &configmap("ghost", 0))
        .await
        .expect("dry-run create");
    assert_eq!(preview.name_any(), "ghost");
    assert!(
        api.get_opt("ghost").await.expect("get").is_none(),
        "a dry run stores nothing"
    );
    for (name, tier) in [("a", "x"), ("b", "x"), ("c", "y")] {
        let mut object = configmap(name, 0);
        object.metadata.labels = Some(BTreeMap::from([("tier".to_owned(), tier.to_owned())]));
        api.create(&PostParams::default(), &object)
            .await
            .expect("create");
    }
    let dry_delete = kube::api::DeleteParams {
        dry_run: true,
        ..Default::default()
    };
    api.delete("a", &dry_delete).await.expect("dry-run delete");
    assert!(api.get_opt("a").await.expect("get").is_some());
    api.delete_collection(
        &DeleteParams::default(),
        &kube::api::ListParams::default().labels("tier=x"),
    )
    .await
    .expect("delete collection");
    let left: Vec<String> = api
        .list(&Default::default())
        .await
        .expect("list")
        .items
        .iter()
        .map(|o| o.name_any())
        .collect();
    assert_eq!(left, ["c"]);
}
