//! OpenAPI v3 as the real kubectl reads it: `kubectl explain` of custom and built-in kinds,
//! `kubectl apply` with kubectl's default validation (no `--validate=false`), and the index's
//! hashes following the CRDs.
//!
//! kubectl 1.32 finds a kind's schema by its `x-kubernetes-group-version-kind` in the
//! group-version's document. Its default `--validate=strict` looks for the `fieldValidation`
//! parameter on the kind's PATCH operation there: when present, it sends
//! `fieldValidation=Strict` and the server names the unknown fields; when absent, kubectl
//! validates itself against `/openapi/v2`, which devcluster does not serve.

use std::path::PathBuf;
use std::process::Output;
use std::time::Duration;

use devcluster::{Config, DevCluster};
use serde_json::Value;
use tokio::process::Command;

/// A devcluster and a kubectl with its own home, so caches never leak between tests.
struct Kubectl {
    _cluster: DevCluster,
    kubeconfig: PathBuf,
    home: tempfile::TempDir,
}

impl Kubectl {
    async fn start() -> Self {
        let cluster = DevCluster::start(Config::default())
            .await
            .expect("devcluster starts");
        let kubeconfig = cluster.kubeconfig_path().to_owned();
        let home = tempfile::tempdir().expect("a home for kubectl");
        Kubectl {
            _cluster: cluster,
            kubeconfig,
            home,
        }
    }

    async fn output(&self, args: &[&str]) -> Output {
        let run = Command::new("kubectl")
            .args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("HOME", self.home.path())
            .kill_on_drop(true)
            .output();
        tokio::time::timeout(Duration::from_secs(60), run)
            .await
            .unwrap_or_else(|_| panic!("kubectl {args:?} did not finish"))
            .expect("kubectl runs")
    }

    /// Runs kubectl, which must succeed; its stdout.
    async fn run(&self, args: &[&str]) -> String {
        let output = self.output(args).await;
        assert!(
            output.status.success(),
            "kubectl {args:?} failed:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Runs kubectl, which must fail; its stderr.
    async fn fails(&self, args: &[&str]) -> String {
        let output = self.output(args).await;
        assert!(
            !output.status.success(),
            "kubectl {args:?} should have failed:\n{}",
            String::from_utf8_lossy(&output.stdout)
        );
        String::from_utf8_lossy(&output.stderr).into_owned()
    }

    /// `kubectl get --raw PATH` as JSON.
    async fn raw(&self, path: &str) -> Value {
        let text = self.run(&["get", "--raw", path]).await;
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path} is not JSON ({e}): {text}"))
    }

    /// Writes a manifest into kubectl's home; its path.
    fn file(&self, name: &str, contents: &str) -> String {
        let path = self.home.path().join(name);
        std::fs::write(&path, contents).expect("write a manifest");
        path.to_string_lossy().into_owned()
    }

    async fn apply(&self, name: &str, contents: &str) -> String {
        let file = self.file(name, contents);
        self.run(&["apply", "-f", &file]).await
    }

    async fn apply_fails(&self, name: &str, contents: &str) -> String {
        let file = self.file(name, contents);
        self.fails(&["apply", "-f", &file]).await
    }

    /// The hash in the index's URL of a group-version's document.
    async fn hash(&self, group_version: &str) -> String {
        let index = self.raw("/openapi/v3").await;
        let url = index["paths"][group_version]["serverRelativeURL"]
            .as_str()
            .unwrap_or_else(|| panic!("{group_version} not in the index: {index}"))
            .to_owned();
        url.split_once("?hash=")
            .map(|(_, hash)| hash.to_owned())
            .unwrap_or_else(|| panic!("no hash in {url}"))
    }
}

/// A CRD with descriptions, an enum and a nested object; `extra` adds properties to the spec.
fn widget_crd(extra: &str) -> String {
    format!(
        "apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {{name: widgets.example.com}}
spec:
  group: example.com
  scope: Namespaced
  names: {{plural: widgets, singular: widget, kind: Widget, listKind: WidgetList}}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        description: A Widget is a thing with a size.
        properties:
          spec:
            type: object
            description: The desired widget.
            required: [size]
            properties:
              size:
                type: integer
                description: How many sprockets wide the widget is.
              mode:
                type: string
                description: How the widget runs.
                enum: [Fast, Slow]
              limits:
                type: object
                description: Bounds on the widget.
                properties:
                  max:
                    type: integer
                    description: The largest size the widget may grow to.
{extra}"
    )
}

const WIDGET: &str = "apiVersion: example.com/v1
kind: Widget
metadata: {name: w, namespace: default}
spec: {size: 3, mode: Fast, limits: {max: 5}}
";

const CONFIGMAP: &str = "apiVersion: v1
kind: ConfigMap
metadata: {name: settings, namespace: default}
data: {colour: blue}
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_prints_the_descriptions_of_custom_and_builtin_fields() {
    let kubectl = Kubectl::start().await;
    kubectl.apply("crd.yaml", &widget_crd("")).await;

    let size = kubectl.run(&["explain", "widgets.spec.size"]).await;
    assert!(size.contains("KIND:       Widget"), "{size}");
    assert!(size.contains("FIELD: size <integer>"), "{size}");
    assert!(
        size.contains("How many sprockets wide the widget is."),
        "{size}"
    );

    let mode = kubectl.run(&["explain", "widgets.spec.mode"]).await;
    assert!(mode.contains("ENUM:\n    Fast\n    Slow"), "{mode}");

    let max = kubectl.run(&["explain", "widget.spec.limits.max"]).await;
    assert!(
        max.contains("The largest size the widget may grow to."),
        "{max}"
    );

    let widget = kubectl.run(&["explain", "widgets"]).await;
    assert!(
        widget.contains("A Widget is a thing with a size."),
        "{widget}"
    );
    assert!(widget.contains("metadata\t<ObjectMeta>"), "{widget}");
    let name = kubectl.run(&["explain", "widgets.metadata.name"]).await;
    assert!(
        name.contains("Name must be unique within a namespace."),
        "{name}"
    );

    let data = kubectl.run(&["explain", "configmaps.data"]).await;
    assert!(data.contains("KIND:       ConfigMap"), "{data}");
    assert!(data.contains("FIELD: data <map[string]string>"), "{data}");
    assert!(
        data.contains("Data contains the configuration data."),
        "{data}"
    );

    let recursive = kubectl
        .run(&["explain", "crd.spec.versions", "--recursive"])
        .await;
    assert!(recursive.contains("openAPIV3Schema"), "{recursive}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_validates_fields_with_kubectls_default_validation() {
    let kubectl = Kubectl::start().await;
    let out = kubectl.apply("crd.yaml", &widget_crd("")).await;
    assert!(out.contains("created"), "{out}");
    let out = kubectl.apply("widget.yaml", WIDGET).await;
    assert_eq!(out.trim(), "widget.example.com/w created");
    let out = kubectl.apply("configmap.yaml", CONFIGMAP).await;
    assert_eq!(out.trim(), "configmap/settings created");
    let again = kubectl.apply("widget.yaml", WIDGET).await;
    assert_eq!(again.trim(), "widget.example.com/w unchanged");

    // A new object with fields its schema lacks: kubectl asks for strict validation and the
    // server names every unknown field, nothing is created.
    let typo = "apiVersion: example.com/v1
kind: Widget
metadata: {name: typo, namespace: default}
spec: {size: 3, colour: red, limits: {max: 5, min: 1}}
";
    let error = kubectl.apply_fails("typo.yaml", typo).await;
    assert!(
        error.contains("Error from server (BadRequest): error when creating")
            && error.contains(
                "Widget in version \"v1\" cannot be handled as a Widget: strict decoding error: unknown field \"spec.colour\", unknown field \"spec.limits.min\""
            ),
        "{error}"
    );
    let missing = kubectl.fails(&["get", "widget", "typo"]).await;
    assert!(missing.contains("NotFound"), "{missing}");

    // The same on re-applying an existing object (a patch): the object is left as it was.
    let edited = "apiVersion: example.com/v1
kind: Widget
metadata: {name: w, namespace: default}
spec: {size: 4, colour: blue}
";
    let error = kubectl.apply_fails("edited.yaml", edited).await;
    assert!(
        error.contains("strict decoding error: unknown field \"spec.colour\""),
        "{error}"
    );
    let size = kubectl
        .run(&["get", "widget", "w", "-o", "jsonpath={.spec.size}"])
        .await;
    assert_eq!(size, "3");

    // Built-in kinds are checked against their real schemas.
    let configmap = "apiVersion: v1
kind: ConfigMap
metadata: {name: odd, namespace: default, labelz: {a: b}}
data: {a: b}
spec: {}
";
    let error = kubectl.apply_fails("odd.yaml", configmap).await;
    assert!(
        error.contains(
            "ConfigMap in version \"v1\" cannot be handled as a ConfigMap: strict decoding error: unknown field \"metadata.labelz\", unknown field \"spec\""
        ),
        "{error}"
    );

    // Server-side apply reports them as the typed schema would.
    let file = kubectl.file("typo.yaml", typo);
    let error = kubectl
        .fails(&["apply", "--server-side", "-f", &file])
        .await;
    assert!(
        error.contains(".spec.colour: field not declared in schema"),
        "{error}"
    );

    // Turning validation off is still the user's choice.
    let out = kubectl
        .run(&["apply", "--validate=false", "-f", &file])
        .await;
    assert_eq!(out.trim(), "widget.example.com/typo created");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_commands_still_work() {
    let kubectl = Kubectl::start().await;
    let out = kubectl.run(&["create", "namespace", "x"]).await;
    assert_eq!(out.trim(), "namespace/x created");
    let out = kubectl
        .run(&[
            "create",
            "configmap",
            "settings",
            "-n",
            "x",
            "--from-literal=colour=blue",
        ])
        .await;
    assert_eq!(out.trim(), "configmap/settings created");
    let out = kubectl
        .run(&[
            "create",
            "secret",
            "generic",
            "token",
            "-n",
            "x",
            "--from-literal=key=value",
        ])
        .await;
    assert_eq!(out.trim(), "secret/token created");
    let colour = kubectl
        .run(&[
            "get",
            "configmap",
            "settings",
            "-n",
            "x",
            "-o",
            "jsonpath={.data.colour}",
        ])
        .await;
    assert_eq!(colour, "blue");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_index_lists_every_group_version_and_hashes_follow_the_crds() {
    let kubectl = Kubectl::start().await;
    let index = kubectl.raw("/openapi/v3").await;
    let listed: Vec<&String> = index["paths"]
        .as_object()
        .map(|paths| paths.keys().collect())
        .unwrap_or_default();
    assert_eq!(
        listed,
        [
            "api/v1",
            "apis/admissionregistration.k8s.io/v1",
            "apis/apiextensions.k8s.io/v1",
            "apis/apps/v1",
            "apis/coordination.k8s.io/v1",
            "apis/events.k8s.io/v1",
            "apis/rbac.authorization.k8s.io/v1"
        ],
        "{index}"
    );

    kubectl.apply("crd.yaml", &widget_crd("")).await;
    let hash = kubectl.hash("apis/example.com/v1").await;
    let core_hash = kubectl.hash("api/v1").await;
    assert_eq!(kubectl.hash("apis/example.com/v1").await, hash, "stable");

    // The group-version's document, as the index points at it.
    let index = kubectl.raw("/openapi/v3").await;
    let url = index["paths"]["apis/example.com/v1"]["serverRelativeURL"]
        .as_str()
        .expect("a URL");
    assert!(
        url.starts_with("/openapi/v3/apis/example.com/v1?hash="),
        "{url}"
    );
    let document = kubectl.raw(url).await;
    assert_eq!(document["openapi"], "3.0.0");
    assert_eq!(document["info"]["title"], "Kubernetes");
    assert!(
        document["paths"]["/apis/example.com/v1/namespaces/{namespace}/widgets/{name}"]["patch"]
            .is_object(),
        "{document}"
    );
    let schemas = &document["components"]["schemas"];
    let widget = &schemas["io.example.v1.Widget"];
    assert!(widget.is_null(), "named by the reversed group");
    let widget = &schemas["com.example.v1.Widget"];
    assert_eq!(
        widget["x-kubernetes-group-version-kind"],
        serde_json::json!([{"group": "example.com", "version": "v1", "kind": "Widget"}])
    );
    assert_eq!(widget["properties"]["apiVersion"]["type"], "string");
    assert!(widget["properties"]["kind"]["description"].is_string());
    assert_eq!(
        widget["properties"]["metadata"]["allOf"][0]["$ref"],
        "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
    );
    assert_eq!(
        widget["properties"]["spec"]["properties"]["mode"]["enum"],
        serde_json::json!(["Fast", "Slow"])
    );
    for name in [
        "com.example.v1.WidgetList",
        "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
        "io.k8s.apimachinery.pkg.apis.meta.v1.ManagedFieldsEntry",
        "io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta",
    ] {
        assert!(schemas[name].is_object(), "{name} missing");
    }
    let core = kubectl.raw("/openapi/v3/api/v1").await;
    assert_eq!(
        core["components"]["schemas"]["io.k8s.api.core.v1.Secret"]["x-kubernetes-group-version-kind"],
        serde_json::json!([{"group": "", "version": "v1", "kind": "Secret"}])
    );

    // A new field in the CRD's schema: a new document, a new hash; other documents keep theirs.
    let colour = "              colour:
                type: string
                description: The colour the widget is painted.
";
    let out = kubectl.apply("crd.yaml", &widget_crd(colour)).await;
    assert!(out.contains("configured"), "{out}");
    let changed = kubectl.hash("apis/example.com/v1").await;
    assert_ne!(changed, hash);
    assert_eq!(kubectl.hash("api/v1").await, core_hash);
    let explained = kubectl.run(&["explain", "widgets.spec.colour"]).await;
    assert!(
        explained.contains("The colour the widget is painted."),
        "{explained}"
    );
    let painted = "apiVersion: example.com/v1
kind: Widget
metadata: {name: painted, namespace: default}
spec: {size: 1, colour: red}
";
    kubectl.apply("painted.yaml", painted).await;

    // Unknown group-versions and OpenAPI v2 are not found.
    let error = kubectl
        .fails(&["get", "--raw", "/openapi/v3/apis/nope.example.com/v1"])
        .await;
    assert!(error.contains("NotFound"), "{error}");
    let error = kubectl.fails(&["get", "--raw", "/openapi/v2"]).await;
    assert!(error.contains("NotFound"), "{error}");

    // The CRD gone, so is its group-version.
    kubectl
        .run(&["delete", "crd", "widgets.example.com", "--wait=true"])
        .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let index = kubectl.raw("/openapi/v3").await;
        if index["paths"].get("apis/example.com/v1").is_none() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "apis/example.com/v1 still listed: {index}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
