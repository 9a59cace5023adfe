//! The real `kubectl` against devcluster: what users do, answered as a real API server answers.
//! kubectl runs with its default validation throughout.

mod support;

use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use support::cluster::{TestCluster, eventually, repo_path};
use tokio::io::{AsyncBufReadExt, BufReader};

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_resources_lists_the_builtins_and_the_crds() {
    let cluster = TestCluster::start().await;
    cluster.kubectl(&["apply", "-f", &repo_path("crds")]).await;
    let resources = cluster.kubectl(&["api-resources", "-o", "name"]).await;
    for expected in [
        "namespaces",
        "secrets",
        "configmaps",
        "serviceaccounts",
        "services",
        "events",
        "leases.coordination.k8s.io",
        "customresourcedefinitions.apiextensions.k8s.io",
        "accounts.certinext.io",
        "certificates.certinext.io",
        "orders.certinext.io",
    ] {
        assert!(
            resources.lines().any(|l| l == expected),
            "{expected} missing from:\n{resources}"
        );
    }
    let namespaced = cluster
        .kubectl(&[
            "api-resources",
            "--namespaced=false",
            "--api-group=certinext.io",
            "-o",
            "name",
        ])
        .await;
    assert_eq!(namespaced.trim(), "accounts.certinext.io");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_example_applies_and_reads_back() {
    let cluster = TestCluster::start().await;
    let out = cluster.kubectl(&["apply", "-f", &repo_path("crds")]).await;
    assert_eq!(out.matches("created").count(), 8, "{out}");
    for example in ["quickstart", "enterprise", "reseller", "retail"] {
        let file = repo_path(&format!("examples/{example}.yaml"));
        cluster.kubectl(&["apply", "-f", &file]).await;
        // Every object the file declares is there, as declared.
        let listed = json(&cluster.kubectl(&["get", "-f", &file, "-o", "json"]).await);
        let items = listed["items"].as_array().expect("a list");
        assert!(items.len() >= 5, "{example}: {listed}");
        for item in items {
            assert!(item["metadata"]["uid"].is_string(), "{item}");
            assert!(item["metadata"]["resourceVersion"].is_string());
        }
        // Applying again changes nothing. (kubectl may still send a patch, and say
        // "configured", where the server defaulted a field inside a list: the patch is a no-op
        // and no version moves, as on a real API server.)
        let versions = |listed: &Value| -> Vec<Value> {
            listed["items"]
                .as_array()
                .map(|items| {
                    items
                        .iter()
                        .map(|i| i["metadata"]["resourceVersion"].clone())
                        .collect()
                })
                .unwrap_or_default()
        };
        cluster.kubectl(&["apply", "-f", &file]).await;
        let again = json(&cluster.kubectl(&["get", "-f", &file, "-o", "json"]).await);
        assert_eq!(
            versions(&listed),
            versions(&again),
            "{example}: re-applying changed something"
        );
    }
    let accounts = cluster.kubectl(&["get", "accounts", "-o", "name"]).await;
    assert_eq!(
        accounts.lines().collect::<Vec<_>>(),
        [
            "account.certinext.io/acme",
            "account.certinext.io/corner-shop",
            "account.certinext.io/globex",
            "account.certinext.io/sslhub"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reapply_after_an_edit_merges_through_the_last_applied_configuration() {
    let cluster = TestCluster::start().await;
    cluster.kubectl(&["apply", "-f", &repo_path("crds")]).await;
    cluster.kubectl(&["create", "namespace", "shop"]).await;
    let first = cluster.file(
        "cert.yaml",
        "apiVersion: certinext.io/v1alpha1
kind: Certificate
metadata: {name: www, namespace: shop}
spec:
  secretName: www-tls
  productRef: {name: web}
  dnsNames: [www.shop.example]
  renewBeforePercentage: 30
",
    );
    cluster
        .kubectl(&["apply", "-f", first.to_str().unwrap_or_default()])
        .await;
    // Someone else adds a label; the user's next apply must keep it.
    cluster
        .kubectl(&[
            "label",
            "-n",
            "shop",
            "certificate.certinext.io/www",
            "team=web",
        ])
        .await;
    let edited = cluster.file(
        "cert.yaml",
        "apiVersion: certinext.io/v1alpha1
kind: Certificate
metadata: {name: www, namespace: shop}
spec:
  secretName: www-tls
  productRef: {name: web}
  dnsNames: [www.shop.example, shop.example]
",
    );
    let out = cluster
        .kubectl(&["apply", "-f", edited.to_str().unwrap_or_default()])
        .await;
    assert!(out.contains("configured"), "{out}");
    let object = json(
        &cluster
            .kubectl(&[
                "get",
                "-n",
                "shop",
                "certificate.certinext.io/www",
                "-o",
                "json",
            ])
            .await,
    );
    assert_eq!(
        object["spec"]["dnsNames"],
        serde_json::json!(["www.shop.example", "shop.example"])
    );
    assert!(
        object["spec"].get("renewBeforePercentage").is_none(),
        "removed field stays: {object}"
    );
    assert_eq!(object["metadata"]["labels"]["team"], "web");
    assert_eq!(object["metadata"]["generation"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_supports_output_formats_and_selectors() {
    let cluster = TestCluster::start().await;
    for (name, tier) in [("alpha", "front"), ("beta", "back"), ("gamma", "front")] {
        cluster
            .kubectl(&[
                "create",
                "configmap",
                name,
                &format!("--from-literal=name={name}"),
            ])
            .await;
        cluster
            .kubectl(&["label", "configmap", name, &format!("tier={tier}")])
            .await;
    }
    let yaml = cluster
        .kubectl(&["get", "configmap", "alpha", "-o", "yaml"])
        .await;
    assert!(
        yaml.contains("kind: ConfigMap") && yaml.contains("tier: front"),
        "{yaml}"
    );
    let names = cluster
        .kubectl(&[
            "get",
            "configmaps",
            "-o",
            "jsonpath={.items[*].metadata.name}",
        ])
        .await;
    assert_eq!(names, "alpha beta gamma");
    let front = cluster
        .kubectl(&["get", "configmaps", "-l", "tier=front", "-o", "name"])
        .await;
    assert_eq!(
        front.lines().collect::<Vec<_>>(),
        ["configmap/alpha", "configmap/gamma"]
    );
    let not_front = cluster
        .kubectl(&[
            "get",
            "configmaps",
            "-l",
            "tier notin (front)",
            "-o",
            "name",
        ])
        .await;
    assert_eq!(not_front.trim(), "configmap/beta");
    let by_field = cluster
        .kubectl(&[
            "get",
            "configmaps",
            "--field-selector",
            "metadata.name!=beta",
            "-o",
            "name",
        ])
        .await;
    assert_eq!(by_field.lines().count(), 2, "{by_field}");
    let paged = cluster
        .kubectl(&["get", "configmaps", "--chunk-size=1", "-o", "name"])
        .await;
    assert_eq!(paged.lines().count(), 3, "{paged}");
    let refused = cluster
        .kubectl_fails(&["get", "configmaps", "--field-selector", "data.name=x"])
        .await;
    assert!(refused.contains("field label not supported"), "{refused}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_watch_sees_an_update() {
    let cluster = TestCluster::start().await;
    cluster
        .kubectl(&["create", "configmap", "watched", "--from-literal=step=one"])
        .await;
    let mut watch = cluster
        .kubectl_command(&[
            "get",
            "configmap",
            "watched",
            "-w",
            "--output-watch-events",
            "-o",
            "json",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("kubectl get -w starts");
    let stdout = watch.stdout.take().expect("piped stdout");
    let mut lines = BufReader::new(stdout).lines();
    let mut seen = String::new();
    let mut patched = false;
    let outcome = tokio::time::timeout(Duration::from_secs(30), async {
        while let Ok(Some(line)) = lines.next_line().await {
            seen.push_str(&line);
            seen.push('\n');
            if !patched && line.contains("\"ADDED\"") {
                cluster
                    .kubectl(&[
                        "patch",
                        "configmap",
                        "watched",
                        "--type",
                        "merge",
                        "-p",
                        r#"{"data":{"step":"two"}}"#,
                    ])
                    .await;
                patched = true;
            }
            if seen.contains("\"MODIFIED\"") && seen.contains("\"two\"") {
                return;
            }
        }
    })
    .await;
    let _ = watch.kill().await;
    assert!(
        outcome.is_ok(),
        "kubectl get -w did not see the update:\n{seen}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patch_label_annotate_and_create_secret() {
    let cluster = TestCluster::start().await;
    cluster
        .kubectl(&[
            "create",
            "secret",
            "generic",
            "db",
            "--from-literal=password=s3cret",
        ])
        .await;
    let secret = json(
        &cluster
            .kubectl(&["get", "secret", "db", "-o", "json"])
            .await,
    );
    assert_eq!(secret["type"], "Opaque");
    assert_eq!(secret["data"]["password"], "czNjcmV0");

    cluster
        .kubectl(&[
            "patch",
            "secret",
            "db",
            "--type",
            "merge",
            "-p",
            r#"{"stringData":null,"data":{"user":"YWRtaW4="}}"#,
        ])
        .await;
    cluster
        .kubectl(&["patch", "secret", "db", "--type", "json", "-p", r#"[{"op":"remove","path":"/data/password"},{"op":"add","path":"/data/host","value":"ZGI="}]"#])
        .await;
    cluster
        .kubectl(&["label", "secret", "db", "app=shop"])
        .await;
    cluster
        .kubectl(&["annotate", "secret", "db", "owner=team-a"])
        .await;
    let secret = json(
        &cluster
            .kubectl(&["get", "secret", "db", "-o", "json"])
            .await,
    );
    assert_eq!(
        secret["data"],
        serde_json::json!({"user": "YWRtaW4=", "host": "ZGI="})
    );
    assert_eq!(secret["metadata"]["labels"]["app"], "shop");
    assert_eq!(secret["metadata"]["annotations"]["owner"], "team-a");

    let failed = cluster
        .kubectl_fails(&[
            "patch",
            "secret",
            "db",
            "--type",
            "json",
            "-p",
            r#"[{"op":"test","path":"/data/user","value":"bm9ib2R5"}]"#,
        ])
        .await;
    assert!(failed.contains("test"), "{failed}");
    let missing = cluster
        .kubectl_fails(&["label", "secret", "nothere", "a=b"])
        .await;
    assert!(missing.contains("not found"), "{missing}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_waits_for_finalizers() {
    let cluster = TestCluster::start().await;
    let manifest = cluster.file(
        "held.yaml",
        "apiVersion: v1
kind: ConfigMap
metadata:
  name: held
  finalizers: [example.com/hold]
data: {a: b}
",
    );
    cluster
        .kubectl(&["create", "-f", manifest.to_str().unwrap_or_default()])
        .await;
    let mut delete = cluster
        .kubectl_command(&["delete", "configmap", "held", "--timeout=60s"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("kubectl delete starts");
    // The object is marked for deletion and stays while the finalizer holds it.
    eventually("the deletion timestamp", || async {
        let object = json(
            &cluster
                .kubectl(&["get", "configmap", "held", "-o", "json"])
                .await,
        );
        object["metadata"]["deletionTimestamp"]
            .is_string()
            .then_some(())
    })
    .await;
    assert!(
        delete
            .try_wait()
            .expect("kubectl delete is running")
            .is_none(),
        "delete returned early"
    );
    cluster
        .kubectl(&[
            "patch",
            "configmap",
            "held",
            "--type",
            "json",
            "-p",
            r#"[{"op":"remove","path":"/metadata/finalizers"}]"#,
        ])
        .await;
    let status = tokio::time::timeout(Duration::from_secs(30), delete.wait())
        .await
        .expect("kubectl delete returns once the finalizer is gone")
        .expect("kubectl delete runs");
    assert!(status.success());
    let gone = cluster.kubectl_fails(&["get", "configmap", "held"]).await;
    assert!(gone.contains("not found"), "{gone}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_namespace_removes_its_contents() {
    let cluster = TestCluster::start().await;
    cluster.kubectl(&["create", "namespace", "doomed"]).await;
    cluster
        .kubectl(&[
            "create",
            "configmap",
            "-n",
            "doomed",
            "settings",
            "--from-literal=a=b",
        ])
        .await;
    cluster
        .kubectl(&[
            "create",
            "secret",
            "generic",
            "-n",
            "doomed",
            "token",
            "--from-literal=t=x",
        ])
        .await;
    cluster.kubectl(&["create", "configmap", "survivor"]).await;
    cluster
        .kubectl(&["delete", "namespace", "doomed", "--timeout=60s"])
        .await;
    let left = cluster
        .kubectl(&["get", "configmaps,secrets", "-A", "-o", "name"])
        .await;
    assert_eq!(left.trim(), "configmap/survivor");
    let namespace = cluster.kubectl_fails(&["get", "namespace", "doomed"]).await;
    assert!(namespace.contains("not found"), "{namespace}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_breaking_its_schema_is_refused_naming_the_field() {
    let cluster = TestCluster::with_crds().await;
    cluster.kubectl(&["create", "namespace", "shop"]).await;
    let bad = cluster.file(
        "bad.yaml",
        "apiVersion: certinext.io/v1alpha1
kind: Certificate
metadata: {name: www, namespace: shop}
spec:
  secretName: www-tls
  productRef: {name: web}
  dnsNames: www.shop.example
  revisionHistoryLimit: three
",
    );
    let error = cluster
        .kubectl_fails(&["apply", "-f", bad.to_str().unwrap_or_default()])
        .await;
    assert!(error.contains("spec.dnsNames"), "{error}");
    assert!(error.contains("must be of type array"), "{error}");
    assert!(error.contains("spec.revisionHistoryLimit"), "{error}");
    let nothing = cluster
        .kubectl(&["get", "certificates.certinext.io", "-A", "-o", "name"])
        .await;
    assert!(nothing.trim().is_empty(), "{nothing}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_side_apply_refuses_a_conflict_unless_forced() {
    let cluster = TestCluster::start().await;
    let mine = cluster.file(
        "mine.yaml",
        "apiVersion: v1
kind: ConfigMap
metadata: {name: shared}
data: {owner: alice, colour: blue}
",
    );
    cluster
        .kubectl(&[
            "apply",
            "--server-side",
            "--field-manager=alice",
            "-f",
            mine.to_str().unwrap_or_default(),
        ])
        .await;
    let theirs = cluster.file(
        "theirs.yaml",
        "apiVersion: v1
kind: ConfigMap
metadata: {name: shared}
data: {colour: red}
",
    );
    let theirs = theirs.to_str().unwrap_or_default();
    let conflict = cluster
        .kubectl_fails(&[
            "apply",
            "--server-side",
            "--field-manager=bob",
            "-f",
            theirs,
        ])
        .await;
    assert!(conflict.contains("conflict"), "{conflict}");
    assert!(conflict.contains("alice"), "{conflict}");
    assert!(conflict.contains(".data.colour"), "{conflict}");
    cluster
        .kubectl(&[
            "apply",
            "--server-side",
            "--field-manager=bob",
            "--force-conflicts",
            "-f",
            theirs,
        ])
        .await;
    let object = json(
        &cluster
            .kubectl(&[
                "get",
                "configmap",
                "shared",
                "-o",
                "json",
                "--show-managed-fields",
            ])
            .await,
    );
    assert_eq!(
        object["data"],
        serde_json::json!({"owner": "alice", "colour": "red"})
    );
    let managers: Vec<_> = object["metadata"]["managedFields"]
        .as_array()
        .expect("managed fields")
        .iter()
        .map(|m| {
            (
                m["manager"].as_str().unwrap_or_default(),
                m["operation"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(managers, [("alice", "Apply"), ("bob", "Apply")]);
}

/// A cluster with the CRDs, namespace `shop` and Certificate `www` applied with kubectl.
async fn with_certificate_www() -> TestCluster {
    let cluster = TestCluster::with_crds().await;
    cluster.kubectl(&["create", "namespace", "shop"]).await;
    let file = cluster.file("www.yaml", &certificate_manifest("www"));
    cluster
        .kubectl(&["apply", "-f", file.to_str().unwrap_or_default()])
        .await;
    cluster
}

fn certificate_manifest(name: &str) -> String {
    format!(
        "apiVersion: certinext.io/v1alpha1
kind: Certificate
metadata: {{name: {name}, namespace: shop}}
spec:
  secretName: {name}-tls
  productRef: {{name: web}}
  dnsNames: [{name}.shop.example]
"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_prints_the_printer_columns() {
    let cluster = with_certificate_www().await;
    let table = cluster
        .kubectl(&["get", "certificates.certinext.io", "-n", "shop"])
        .await;
    let mut lines = table.lines();
    let header: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        ["NAME", "READY", "SECRET", "PRODUCT", "EXPIRES", "AGE"],
        "{table}"
    );
    let row: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(&row[..3], ["www", "www-tls", "web"], "{table}");
    // An expiry in the future reads as its date: a `date` column would print `<invalid>`
    // for any time still to come.
    cluster
        .kubectl(&[
            "patch",
            "certificates.certinext.io",
            "www",
            "-n",
            "shop",
            "--subresource=status",
            "--type=merge",
            "-p",
            r#"{"status":{"notAfter":"2031-01-01T00:00:00Z"}}"#,
        ])
        .await;
    let table = cluster
        .kubectl(&["get", "certificates.certinext.io", "www", "-n", "shop"])
        .await;
    let row: Vec<&str> = table
        .lines()
        .nth(1)
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(row.get(3), Some(&"2031-01-01T00:00:00Z"), "{table}");
    let wide = cluster
        .kubectl(&[
            "get",
            "certificates.certinext.io",
            "-n",
            "shop",
            "-o",
            "wide",
        ])
        .await;
    assert!(
        wide.lines().next().unwrap_or_default().contains("ISSUER"),
        "{wide}"
    );
    let namespaces = cluster.kubectl(&["get", "namespaces"]).await;
    assert!(
        namespaces.starts_with("NAME")
            && namespaces.contains("STATUS")
            && namespaces.contains("Active"),
        "{namespaces}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_returns_when_the_condition_is_set_for_the_current_generation() {
    use certinext::api::Certificate;
    use kube::api::{Api, Patch, PatchParams};
    let cluster = with_certificate_www().await;
    let mut wait = cluster
        .kubectl_command(&[
            "wait",
            "--for=condition=Ready",
            "-n",
            "shop",
            "certificates.certinext.io/www",
            "--timeout=60s",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("kubectl wait starts");
    let api: Api<Certificate> = Api::namespaced(cluster.client.clone(), "shop");
    let status = serde_json::json!({"status": {"conditions": [{
        "type": "Ready", "status": "True", "reason": "Issued", "message": "issued",
        "observedGeneration": 1, "lastTransitionTime": "2026-11-27T10:00:00Z"}]}});
    api.patch_status("www", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .expect("status set");
    let exit = tokio::time::timeout(Duration::from_secs(30), wait.wait())
        .await
        .expect("kubectl wait returns")
        .expect("kubectl wait runs");
    assert!(exit.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describe_shows_the_objects_events() {
    use k8s_openapi::api::core::v1::{Event, ObjectReference};
    use kube::api::{Api, PostParams};
    let cluster = with_certificate_www().await;
    let object = json(
        &cluster
            .kubectl(&[
                "get",
                "-n",
                "shop",
                "certificates.certinext.io/www",
                "-o",
                "json",
            ])
            .await,
    );
    let events: Api<Event> = Api::namespaced(cluster.client.clone(), "shop");
    let event = Event {
        metadata: kube::api::ObjectMeta {
            generate_name: Some("www.".into()),
            ..Default::default()
        },
        involved_object: ObjectReference {
            api_version: Some("certinext.io/v1alpha1".into()),
            kind: Some("Certificate".into()),
            name: Some("www".into()),
            namespace: Some("shop".into()),
            uid: object["metadata"]["uid"].as_str().map(str::to_owned),
            ..Default::default()
        },
        reason: Some("ProductMissing".into()),
        message: Some("Product \"web\" does not exist in namespace \"shop\"".into()),
        type_: Some("Warning".into()),
        count: Some(1),
        first_timestamp: object["metadata"]["creationTimestamp"]
            .as_str()
            .and_then(|t| serde_json::from_value(serde_json::json!(t)).ok()),
        last_timestamp: object["metadata"]["creationTimestamp"]
            .as_str()
            .and_then(|t| serde_json::from_value(serde_json::json!(t)).ok()),
        ..Default::default()
    };
    events
        .create(&PostParams::default(), &event)
        .await
        .expect("event created");
    let described = cluster
        .kubectl(&["describe", "-n", "shop", "certificates.certinext.io/www"])
        .await;
    assert!(described.contains("Events:"), "{described}");
    assert!(described.contains("ProductMissing"), "{described}");
    assert!(described.contains("does not exist"), "{described}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_an_owner_removes_its_dependents() {
    let cluster = TestCluster::start().await;
    cluster.kubectl(&["create", "configmap", "owner"]).await;
    let uid = cluster
        .kubectl(&[
            "get",
            "configmap",
            "owner",
            "-o",
            "jsonpath={.metadata.uid}",
        ])
        .await;
    let dependent = cluster.file(
        "dependent.yaml",
        &format!(
            "apiVersion: v1
kind: ConfigMap
metadata:
  name: dependent
  ownerReferences: [{{apiVersion: v1, kind: ConfigMap, name: owner, uid: {uid}}}]
"
        ),
    );
    cluster
        .kubectl(&["apply", "-f", dependent.to_str().unwrap_or_default()])
        .await;
    cluster.kubectl(&["delete", "configmap", "owner"]).await;
    cluster
        .kubectl(&[
            "wait",
            "--for=delete",
            "configmap/dependent",
            "--timeout=30s",
        ])
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rbac_deployments_and_webhook_configurations_apply() {
    let cluster = TestCluster::start().await;
    let manifest = cluster.file(
        "install.yaml",
        "apiVersion: v1
kind: ServiceAccount
metadata: {name: operator, namespace: default}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: operator}
rules:
- apiGroups: [certinext.io]
  resources: [certificates, certificates/status]
  verbs: [get, list, watch, patch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: operator}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: operator}
subjects: [{kind: ServiceAccount, name: operator, namespace: default}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: leases, namespace: default}
rules: [{apiGroups: [coordination.k8s.io], resources: [leases], verbs: [get, create, update]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: leases, namespace: default}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: leases}
subjects: [{kind: ServiceAccount, name: operator, namespace: default}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: operator, namespace: default}
spec:
  replicas: 1
  selector: {matchLabels: {app: operator}}
  template:
    metadata: {labels: {app: operator}}
    spec:
      serviceAccountName: operator
      containers:
      - name: operator
        image: certinext/operator:dev
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata: {name: certinext}
webhooks:
- name: certificates.certinext.io
  admissionReviewVersions: [v1]
  sideEffects: None
  clientConfig: {service: {name: operator, namespace: default, path: /validate}}
  rules: [{apiGroups: [certinext.io], apiVersions: [v1alpha1], operations: [CREATE, UPDATE], resources: [certificates]}]
",
    );
    let out = cluster
        .kubectl(&["apply", "-f", manifest.to_str().unwrap_or_default()])
        .await;
    assert_eq!(out.matches("created").count(), 7, "{out}");
    let deployment = json(
        &cluster
            .kubectl(&["get", "deployment", "operator", "-o", "json"])
            .await,
    );
    assert_eq!(deployment["metadata"]["generation"], 1);
    let binding = cluster.kubectl(&["get", "rolebinding", "leases"]).await;
    assert!(
        binding.contains("Role/leases") || binding.contains("leases"),
        "{binding}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_shows_the_field_documentation() {
    let cluster = TestCluster::with_crds().await;
    let explained = cluster
        .kubectl(&["explain", "certificates.certinext.io.spec.dnsNames"])
        .await;
    assert!(
        explained.contains("DNS subject alternative names"),
        "{explained}"
    );
    let account = cluster.kubectl(&["explain", "accounts.spec.type"]).await;
    assert!(
        account.contains("Reseller, Enterprise or Retail"),
        "{account}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_accounts_type_cannot_change() {
    let cluster = TestCluster::with_crds().await;
    let account = |ty: &str| {
        format!(
            "apiVersion: certinext.io/v1alpha1\nkind: Account\nmetadata: {{name: globex}}\nspec: {{type: {ty}}}\n"
        )
    };
    let file = cluster.file("account.yaml", &account("Enterprise"));
    cluster
        .kubectl(&["apply", "-f", file.to_str().unwrap_or_default()])
        .await;
    let file = cluster.file("account.yaml", &account("Reseller"));
    let refused = cluster
        .kubectl_fails(&["apply", "-f", file.to_str().unwrap_or_default()])
        .await;
    assert!(refused.contains("is invalid"), "{refused}");
    assert!(refused.contains("spec.type"), "{refused}");
    assert!(refused.contains("type is immutable"), "{refused}");
    let stored = cluster
        .kubectl(&["get", "accounts", "globex", "-o", "jsonpath={.spec.type}"])
        .await;
    assert_eq!(stored, "Enterprise");

    // The same through kube-rs: a 422 Invalid whose cause names the field and the rule.
    use certinext::api::Account;
    use certinext::capabilities::AccountType;
    let accounts: kube::Api<Account> = kube::Api::all(cluster.client.clone());
    let mut account = accounts.get("globex").await.expect("get");
    account.spec.account_type = AccountType::Retail;
    match accounts
        .replace("globex", &Default::default(), &account)
        .await
    {
        Err(kube::Error::Api(status)) => {
            assert_eq!((status.code, status.reason.as_str()), (422, "Invalid"));
            let causes = status.details.map(|d| d.causes).unwrap_or_default();
            assert!(
                causes
                    .iter()
                    .any(|c| c.field == "spec.type" && c.message.contains("type is immutable")),
                "{causes:?}"
            );
        }
        other => panic!("expected 422 Invalid, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_fields_are_refused_and_defaults_applied() {
    let cluster = TestCluster::with_crds().await;
    cluster.kubectl(&["create", "namespace", "shop"]).await;
    let typo = cluster.file(
        "typo.yaml",
        "apiVersion: certinext.io/v1alpha1
kind: Product
metadata: {name: web, namespace: shop}
spec:
  issuerRef: {name: ca}
  template: ServerTLS
  price: \"5.00\"
  autoApprov: false
",
    );
    let refused = cluster
        .kubectl_fails(&["apply", "-f", typo.to_str().unwrap_or_default()])
        .await;
    assert!(refused.contains("autoApprov"), "{refused}");
    let fixed = cluster.file(
        "fixed.yaml",
        "apiVersion: certinext.io/v1alpha1
kind: Product
metadata: {name: web, namespace: shop}
spec:
  issuerRef: {name: ca}
  template: ServerTLS
  price: \"5.00\"
",
    );
    cluster
        .kubectl(&["apply", "-f", fixed.to_str().unwrap_or_default()])
        .await;
    let product = json(
        &cluster
            .kubectl(&["get", "-n", "shop", "products/web", "-o", "json"])
            .await,
    );
    assert_eq!(product["spec"]["autoApprove"], true, "defaulted: {product}");
    assert_eq!(product["spec"]["maxValidity"], "8760h");
    assert_eq!(product["spec"]["issuerRef"]["kind"], "PrivateCA");
}

fn deployment(containers: &[(&str, &str)]) -> String {
    let containers: String = containers
        .iter()
        .map(|(name, image)| format!("      - name: {name}\n        image: {image}\n"))
        .collect();
    format!(
        "apiVersion: apps/v1
kind: Deployment
metadata: {{name: web, namespace: default}}
spec:
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      containers:
{containers}"
    )
}

fn container_images(cluster_json: &Value) -> Vec<(String, String)> {
    cluster_json["spec"]["template"]["spec"]["containers"]
        .as_array()
        .map(|containers| {
            containers
                .iter()
                .map(|c| {
                    (
                        c["name"].as_str().unwrap_or_default().to_owned(),
                        c["image"].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strategic_merge_patches_merge_built_in_lists_by_their_keys() {
    let cluster = TestCluster::start().await;
    let file = cluster.file(
        "web.yaml",
        &deployment(&[("app", "app:1"), ("proxy", "proxy:1")]),
    );
    let path = file.to_str().unwrap_or_default().to_owned();
    cluster.kubectl(&["apply", "-f", &path]).await;
    // A patch names one container: the other stays.
    cluster
        .kubectl(&[
            "patch",
            "deployment",
            "web",
            "-p",
            r#"{"spec":{"template":{"spec":{"containers":[{"name":"app","image":"app:2"}]}}}}"#,
        ])
        .await;
    let object = json(
        &cluster
            .kubectl(&["get", "deployment", "web", "-o", "json"])
            .await,
    );
    let mut images = container_images(&object);
    images.sort();
    assert_eq!(
        images,
        [
            ("app".to_owned(), "app:2".to_owned()),
            ("proxy".to_owned(), "proxy:1".to_owned())
        ]
    );
    // Client-side apply drops the container the file no longer lists.
    cluster.file("web.yaml", &deployment(&[("app", "app:3")]));
    cluster.kubectl(&["apply", "-f", &path]).await;
    let object = json(
        &cluster
            .kubectl(&["get", "deployment", "web", "-o", "json"])
            .await,
    );
    assert_eq!(
        container_images(&object),
        [("app".to_owned(), "app:3".to_owned())]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_side_apply_merges_built_in_lists_by_key_across_managers() {
    let cluster = TestCluster::start().await;
    let first = cluster.file("app.yaml", &deployment(&[("app", "app:1")]));
    cluster
        .kubectl(&[
            "apply",
            "--server-side",
            "--field-manager=team-app",
            "-f",
            first.to_str().unwrap_or_default(),
        ])
        .await;
    let second = cluster.file("sidecar.yaml", &deployment(&[("sidecar", "sidecar:1")]));
    cluster
        .kubectl(&[
            "apply",
            "--server-side",
            "--field-manager=team-mesh",
            "-f",
            second.to_str().unwrap_or_default(),
        ])
        .await;
    let object = json(
        &cluster
            .kubectl(&["get", "deployment", "web", "-o", "json"])
            .await,
    );
    let mut images = container_images(&object);
    images.sort();
    assert_eq!(
        images,
        [
            ("app".to_owned(), "app:1".to_owned()),
            ("sidecar".to_owned(), "sidecar:1".to_owned())
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shipped_cluster_roles_apply() {
    let cluster = TestCluster::start().await;
    let out = cluster
        .kubectl(&[
            "apply",
            "-f",
            &repo_path("config/rbac/certinext-roles.yaml"),
        ])
        .await;
    assert_eq!(out.matches("created").count(), 4, "{out}");
    let roles = cluster
        .kubectl(&["get", "clusterroles", "-o", "name"])
        .await;
    for role in [
        "certinext-admin",
        "certinext-requester",
        "certinext-viewer",
        "certinext-approver",
    ] {
        assert!(roles.contains(role), "{roles}");
    }
}
