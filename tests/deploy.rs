//! The deployment artefacts: the kustomize bases in `config/`, the Helm chart in
//! `charts/certinext-operator/`, the Argo CD health checks in `config/argocd/` and the
//! Dockerfile. Each is rendered by its real tool (kubectl's kustomize, Helm's engine, Lua),
//! validated against the Kubernetes schemas and, for the installs, applied to a devcluster.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use support::cluster::{TestCluster, repo_path};

const CHART: &str = "charts/certinext-operator";
const NAMESPACE: &str = "certinext-system";
const REGENERATE_CRDS: &str = "cargo run -- crd --output-dir crds --output-dir config/crd --output-dir charts/certinext-operator/crds";
const TENANT_ROLES: [&str; 4] = [
    "certinext-admin",
    "certinext-requester",
    "certinext-viewer",
    "certinext-approver",
];

// ---------------------------------------------------------------------------------------------
// Rendering

/// The documents of a YAML stream, without empty ones.
fn documents(yaml: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(yaml)
        .map(|document| {
            let value: Value = serde::Deserialize::deserialize(document)
                .unwrap_or_else(|e| panic!("not YAML: {e}\n{yaml}"));
            value
        })
        .filter(|value| !value.is_null())
        .collect()
}

fn succeeded(what: &str, output: Output) -> String {
    assert!(
        output.status.success(),
        "{what} failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("UTF-8 output")
}

/// `kubectl kustomize config/default`.
fn kustomize_yaml() -> String {
    let output = Command::new("kubectl")
        .args(["kustomize", &repo_path("config/default")])
        .output()
        .expect("kubectl runs (is it on PATH?)");
    succeeded("kubectl kustomize config/default", output)
}

fn kustomize() -> Vec<Value> {
    documents(&kustomize_yaml())
}

/// Runs `tests/python/helm_chart.py COMMAND CHART VALUES ARGS…` (Helm's engine, embedded by
/// helm-python-sdk: no helm binary).
fn helm_command(command: &str, values: &Value, args: &[&str]) -> std::process::Command {
    let mut run = Command::new(support::python::tool("python"));
    run.arg(repo_path("tests/python/helm_chart.py"))
        .arg(command)
        .arg(repo_path(CHART))
        .arg(values.to_string())
        .args(args);
    run
}

fn helm(command: &str, values: &Value, args: &[&str]) -> Output {
    helm_command(command, values, args)
        .output()
        .expect("python runs")
}

/// The chart rendered as `helm template` would, as objects, in template order.
fn render_chart(values: &Value) -> Vec<Value> {
    let stdout = succeeded(
        &format!("rendering the chart with {values}"),
        helm("render", values, &["certinext-operator", NAMESPACE]),
    );
    let manifests: BTreeMap<String, String> =
        serde_json::from_str(&stdout).expect("render prints JSON");
    manifests
        .iter()
        .filter(|(path, _)| path.ends_with(".yaml"))
        .flat_map(|(_, yaml)| documents(yaml))
        .collect()
}

fn non_default_values() -> Value {
    json!({
        "replicaCount": 2,
        "image": {"repository": "registry.example.com/platform/certinext", "tag": "1.2.3", "pullPolicy": "Always"},
        "imagePullSecrets": [{"name": "registry-credentials"}],
        "fullnameOverride": "certs",
        "serviceAccount": {"name": "certinext-bot", "annotations": {"iam.example.com/role": "certinext"}},
        "operator": {
            "logLevel": "certinext=debug,kube=warn",
            "logFormat": "text",
            "concurrency": 8,
            "watchNamespaces": ["acme-web", "acme-api"],
            "extraArgs": ["--lease-duration=30s"],
            "extraEnv": [{"name": "TZ", "value": "UTC"}]
        },
        "leaderElection": {"leaseName": "certs-leader"},
        "metrics": {"port": 9090, "service": {"annotations": {"prometheus.io/scrape": "true"}}},
        "serviceMonitor": {"enabled": true, "interval": "15s", "labels": {"release": "kube-prometheus"}},
        "podAnnotations": {"example.com/team": "platform"},
        "podLabels": {"example.com/tier": "control"},
        "priorityClassName": "system-cluster-critical",
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "platform", "effect": "NoSchedule"}],
        "topologySpreadConstraints": [{
            "maxSkew": 1,
            "topologyKey": "kubernetes.io/hostname",
            "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": {"matchLabels": {"app.kubernetes.io/name": "certinext-operator"}}
        }]
    })
}

fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name:?} among {}", names(objects)))
}

fn of_kind<'a>(objects: &'a [Value], kind: &str) -> Vec<&'a Value> {
    objects.iter().filter(|o| o["kind"] == kind).collect()
}

fn names(objects: &[Value]) -> String {
    objects
        .iter()
        .map(|o| {
            format!(
                "{}/{}",
                o["kind"].as_str().unwrap_or("?"),
                o["metadata"]["name"]
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

// ---------------------------------------------------------------------------------------------
// Checks shared by both formats

/// Every object passes `kubernetes-validate --strict` for Kubernetes 1.32, and none is skipped
/// for want of a schema. Kinds the validator has no schema for must be listed in `unknown`.
fn assert_valid(objects: &[Value], unknown: &[&str]) {
    let dir = tempfile::tempdir().expect("a directory");
    let mut files = Vec::new();
    for (index, object) in objects.iter().enumerate() {
        if unknown.contains(&object["kind"].as_str().unwrap_or_default()) {
            continue;
        }
        let path = dir.path().join(format!("{index:03}.yaml"));
        std::fs::write(&path, serde_yaml::to_string(object).expect("YAML")).expect("write");
        files.push(path);
    }
    let output = Command::new(support::python::tool("kubernetes-validate"))
        .args(["--strict", "--kubernetes-version", "1.32.0"])
        .args(&files)
        .output()
        .expect("kubernetes-validate runs");
    let stdout = succeeded("kubernetes-validate", output);
    let passed = stdout.matches(" passed for resource ").count();
    assert_eq!(
        passed,
        files.len(),
        "every object must be validated against a schema:\n{stdout}"
    );
}

/// The operator's Deployment runs `certinext run` hardened: non-root, read-only root file
/// system, no capabilities, the runtime's seccomp profile, resources, and probes on the
/// metrics port.
fn assert_hardened(deployment: &Value) {
    let pod = &deployment["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    let name = &deployment["metadata"]["name"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{name}");
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault",
        "{name}"
    );
    let security = &container["securityContext"];
    assert_eq!(security["readOnlyRootFilesystem"], true, "{name}");
    assert_eq!(security["allowPrivilegeEscalation"], false, "{name}");
    assert_eq!(security["capabilities"]["drop"], json!(["ALL"]), "{name}");
    assert!(
        container["resources"]["requests"]["memory"].is_string()
            && container["resources"]["limits"]["memory"].is_string(),
        "{name} has memory requests and limits: {}",
        container["resources"]
    );
    assert_eq!(container["args"][0], "run", "{name} runs the operator");
    let port = container["ports"]
        .as_array()
        .and_then(|ports| ports.iter().find(|p| p["name"] == "metrics"))
        .unwrap_or_else(|| panic!("{name} has no metrics port"));
    let metrics_address = format!("--metrics-address=0.0.0.0:{}", port["containerPort"]);
    assert!(
        args(deployment).contains(&metrics_address),
        "{name} serves on its metrics port: {:?}",
        args(deployment)
    );
    for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
        assert_eq!(container[probe]["httpGet"]["path"], path, "{name} {probe}");
        assert_eq!(
            container[probe]["httpGet"]["port"], "metrics",
            "{name} {probe}"
        );
    }
    let pod_namespace = container["env"]
        .as_array()
        .and_then(|env| env.iter().find(|e| e["name"] == "POD_NAMESPACE"))
        .unwrap_or_else(|| panic!("{name} tells the operator its namespace"));
    assert_eq!(
        pod_namespace["valueFrom"]["fieldRef"]["fieldPath"],
        "metadata.namespace"
    );
}

fn args(deployment: &Value) -> Vec<String> {
    deployment["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a.as_str().map(str::to_owned))
        .collect()
}

/// The Deployment's arguments are ones `certinext` itself accepts: clap stops at the first
/// argument it refuses (exit 2) and prints help (exit 0) only when every one before parsed.
fn assert_the_operator_accepts(deployment: &Value) {
    let args = args(deployment);
    let output = Command::new(env!("CARGO_BIN_EXE_certinext"))
        .args(&args)
        .arg("--help")
        .output()
        .expect("certinext runs");
    assert!(
        output.status.success(),
        "certinext refuses the Deployment's arguments {args:?}:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(args.first().map(String::as_str), Some("run"), "{args:?}");
}

/// The operator's ServiceAccount is what the Deployment runs as and what both bindings name.
fn assert_bound(objects: &[Value], deployment: &Value, namespace: &str) {
    let account = &deployment["spec"]["template"]["spec"]["serviceAccountName"];
    let account = account
        .as_str()
        .expect("the Deployment names its ServiceAccount");
    find(objects, "ServiceAccount", account);
    for kind in ["ClusterRoleBinding", "RoleBinding"] {
        let bindings = of_kind(objects, kind);
        assert_eq!(bindings.len(), 1, "one {kind}: {}", names(objects));
        assert_eq!(
            bindings[0]["subjects"],
            json!([{"kind": "ServiceAccount", "name": account, "namespace": namespace}]),
            "{kind} binds the operator's ServiceAccount"
        );
        let role_kind = bindings[0]["roleRef"]["kind"].as_str().unwrap_or_default();
        let role_name = bindings[0]["roleRef"]["name"].as_str().unwrap_or_default();
        find(objects, role_kind, role_name);
    }
}

/// The rules of the operator's ClusterRole, its leader-election Role and the tenant roles.
fn rbac_rules(objects: &[Value]) -> BTreeMap<String, Value> {
    let mut rules = BTreeMap::new();
    for role in of_kind(objects, "ClusterRole")
        .into_iter()
        .chain(of_kind(objects, "Role"))
    {
        let name = role["metadata"]["name"].as_str().unwrap_or_default();
        let key = if TENANT_ROLES.contains(&name) {
            name.to_owned()
        } else if role["kind"] == "Role" {
            "leader election".to_owned()
        } else {
            "operator".to_owned()
        };
        assert!(
            rules.insert(key.clone(), role["rules"].clone()).is_none(),
            "two roles for {key}: {}",
            names(objects)
        );
    }
    rules
}

/// The operator's permissions hold no wildcard, bind only the tenant roles, and apply
/// Secrets rather than update them.
fn assert_least_privilege(rules: &BTreeMap<String, Value>) {
    for (role, rules) in rules {
        for rule in rules.as_array().expect("rules is a list") {
            for field in ["apiGroups", "resources", "verbs", "resourceNames"] {
                for value in rule[field].as_array().into_iter().flatten() {
                    assert_ne!(value, "*", "{role} has a wildcard in {field}: {rule}");
                }
            }
        }
    }
    let allows = |role: &str, group: &str, resource: &str, verb: &str| {
        rules[role].as_array().into_iter().flatten().any(|rule| {
            let has = |field: &str, value: &str| {
                rule[field]
                    .as_array()
                    .is_some_and(|values| values.iter().any(|v| v == value))
            };
            has("apiGroups", group) && has("resources", resource) && has("verbs", verb)
        })
    };
    // What the operator needs, no more, is derived from a recorded run in tests/run.rs
    // (`the_operator_role_grants_exactly_what_the_operator_uses`); here, the shape.
    assert!(
        allows(
            "operator",
            "rbac.authorization.k8s.io",
            "clusterroles",
            "bind"
        ),
        "bind the tenant roles"
    );
    assert!(
        !allows("operator", "", "secrets", "update"),
        "secrets are applied, not updated"
    );
    let bind = rules["operator"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|rule| rule["verbs"] == json!(["bind"]))
        .expect("a bind rule");
    assert_eq!(
        bind["resourceNames"],
        json!(TENANT_ROLES),
        "bind only the tenant roles"
    );
    for verb in ["get", "create", "update"] {
        assert!(
            allows("leader election", "coordination.k8s.io", "leases", verb),
            "{verb} leases"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// kustomize

#[test]
fn kustomize_default_renders_the_operator_in_certinext_system() {
    let objects = kustomize();
    let kinds: BTreeSet<&str> = objects.iter().filter_map(|o| o["kind"].as_str()).collect();
    assert_eq!(
        kinds,
        BTreeSet::from([
            "ClusterRole",
            "ClusterRoleBinding",
            "CustomResourceDefinition",
            "Deployment",
            "Namespace",
            "Role",
            "RoleBinding",
            "Service",
            "ServiceAccount"
        ])
    );
    find(&objects, "Namespace", NAMESPACE);
    for object in &objects {
        let cluster_scoped = [
            "Namespace",
            "CustomResourceDefinition",
            "ClusterRole",
            "ClusterRoleBinding",
        ]
        .contains(&object["kind"].as_str().unwrap_or_default());
        let namespace = &object["metadata"]["namespace"];
        if cluster_scoped {
            assert!(
                namespace.is_null(),
                "{} is cluster-scoped",
                object["metadata"]["name"]
            );
        } else {
            assert_eq!(namespace, NAMESPACE, "{}", object["metadata"]["name"]);
        }
    }
    let deployment = find(&objects, "Deployment", "certinext-operator");
    assert_hardened(deployment);
    assert_the_operator_accepts(deployment);
    let args = args(deployment);
    assert!(args.contains(&"--leader-elect".to_owned()), "{args:?}");
    assert!(args.contains(&"--log-format=json".to_owned()), "{args:?}");
    assert_bound(&objects, deployment, NAMESPACE);
    assert_least_privilege(&rbac_rules(&objects));

    let service = find(&objects, "Service", "certinext-operator-metrics");
    let selector = service["spec"]["selector"].as_object().expect("a selector");
    let pod_labels = &deployment["spec"]["template"]["metadata"]["labels"];
    for (label, value) in selector {
        assert_eq!(
            &pod_labels[label], value,
            "the metrics Service selects the pods"
        );
    }

    // kustomize writes `1.0` as `1`; otherwise the CRDs are the generated ones.
    let mut expected: Vec<Value> = certinext::crd::files()
        .expect("CRDs render")
        .iter()
        .flat_map(|(_, yaml)| documents(yaml))
        .map(|crd| integral(&crd))
        .collect();
    expected.sort_by_key(|crd| crd["metadata"]["name"].to_string());
    let mut rendered: Vec<Value> = of_kind(&objects, "CustomResourceDefinition")
        .into_iter()
        .map(integral)
        .collect();
    rendered.sort_by_key(|crd| crd["metadata"]["name"].to_string());
    assert!(
        rendered == expected,
        "config/default renders the generated CRDs unchanged"
    );
}

/// `value` with every whole float written as an integer.
fn integral(value: &Value) -> Value {
    match value {
        Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() && f.fract() == 0.0 && f.abs() < 1e15 => json!(f as i64),
            _ => value.clone(),
        },
        Value::Array(items) => Value::Array(items.iter().map(integral).collect()),
        Value::Object(fields) => Value::Object(
            fields
                .iter()
                .map(|(k, v)| (k.clone(), integral(v)))
                .collect(),
        ),
        _ => value.clone(),
    }
}

#[test]
fn kustomize_default_objects_are_valid_kubernetes_objects() {
    assert_valid(&kustomize(), &[]);
}

/// `kubectl apply -f -` with `yaml` on its standard input; returns its output.
async fn apply_stdin(cluster: &TestCluster, yaml: &str) -> String {
    use tokio::io::AsyncWriteExt;
    let mut child = cluster
        .kubectl_command(&["apply", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl runs");
    let mut stdin = child.stdin.take().expect("kubectl's stdin");
    stdin
        .write_all(yaml.as_bytes())
        .await
        .expect("write to kubectl");
    drop(stdin);
    let output = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("kubectl apply finishes")
        .expect("kubectl runs");
    succeeded("kubectl apply -f -", output)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kustomize_default_applies_to_a_cluster() {
    let cluster = TestCluster::start().await;
    let yaml = kustomize_yaml();
    let out = apply_stdin(&cluster, &yaml).await;
    assert_eq!(out.matches(" created").count(), kustomize().len(), "{out}");
    let again = apply_stdin(&cluster, &yaml).await;
    assert_eq!(
        again.matches(" unchanged").count(),
        kustomize().len(),
        "applying again changes nothing:\n{again}"
    );

    cluster
        .kubectl(&[
            "wait",
            "--for=condition=Established",
            "crd",
            "--all",
            "--timeout=30s",
        ])
        .await;
    let deployment = cluster
        .kubectl(&[
            "-n",
            NAMESPACE,
            "get",
            "deployment",
            "certinext-operator",
            "-o",
            "json",
        ])
        .await;
    let deployment: Value = serde_json::from_str(&deployment).expect("JSON");
    assert_hardened(&deployment);
    let listed = cluster
        .kubectl(&[
            "-n",
            NAMESPACE,
            "get",
            "serviceaccount,service,role,rolebinding",
            "-o",
            "name",
        ])
        .await;
    for object in [
        "serviceaccount/certinext-operator",
        "service/certinext-operator-metrics",
        "role.rbac.authorization.k8s.io/certinext-leader-election",
        "rolebinding.rbac.authorization.k8s.io/certinext-leader-election",
    ] {
        assert!(listed.contains(object), "{object} is missing:\n{listed}");
    }
    let roles = cluster
        .kubectl(&["get", "clusterroles", "-o", "name"])
        .await;
    for role in TENANT_ROLES.iter().chain(&["certinext-operator"]) {
        assert!(roles.contains(role), "{role} is missing:\n{roles}");
    }
    // The CRDs are served: the API knows the kinds.
    let kinds = cluster
        .kubectl(&["api-resources", "--api-group=certinext.io", "-o", "name"])
        .await;
    assert_eq!(kinds.lines().count(), 8, "{kinds}");
}

#[test]
fn crd_copies_are_the_generated_crds() {
    let generated = certinext::crd::files().expect("CRDs render");
    let expected: BTreeSet<String> = generated.iter().map(|(name, _)| name.clone()).collect();
    let mut stale = Vec::new();
    for dir in ["config/crd", "charts/certinext-operator/crds"] {
        for (name, yaml) in &generated {
            match std::fs::read_to_string(repo_path(&format!("{dir}/{name}"))) {
                Ok(on_disk) if &on_disk == yaml => {}
                Ok(_) => stale.push(format!("{dir}/{name} differs from the code")),
                Err(error) => stale.push(format!("{dir}/{name}: {error}")),
            }
        }
        for entry in std::fs::read_dir(repo_path(dir)).expect("the directory exists") {
            let name = entry
                .expect("an entry")
                .file_name()
                .to_string_lossy()
                .into_owned();
            let kustomization = dir == "config/crd" && name == "kustomization.yaml";
            if !expected.contains(&name) && !kustomization {
                stale.push(format!("{dir}/{name} is not generated by the code"));
            }
        }
    }
    assert!(
        stale.is_empty(),
        "{}\nregenerate with: {REGENERATE_CRDS}",
        stale.join("\n")
    );

    let kustomization = std::fs::read_to_string(repo_path("config/crd/kustomization.yaml"))
        .expect("config/crd/kustomization.yaml");
    let listed: BTreeSet<String> = documents(&kustomization)[0]["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .filter_map(|r| r.as_str().map(str::to_owned))
        .collect();
    assert_eq!(
        listed, expected,
        "config/crd/kustomization.yaml lists every CRD"
    );
}

// ---------------------------------------------------------------------------------------------
// Helm

#[test]
fn chart_lints_clean() {
    for values in [json!({}), non_default_values()] {
        let stdout = succeeded("helm lint", helm("lint", &values, &[]));
        let report: Value = serde_json::from_str(&stdout).expect("lint prints JSON");
        let findings: Vec<&Value> = report["messages"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|m| m["severity"].as_i64().unwrap_or(3) >= 2)
            .collect();
        assert!(
            findings.is_empty() && report["errors"].as_array().is_some_and(Vec::is_empty),
            "helm lint --strict with {values}:\n{report:#}"
        );
        assert_eq!(report["total_charts_linted"], 1);
    }
}

#[test]
fn chart_renders_valid_objects_with_default_values() {
    let objects = render_chart(&json!({}));
    assert_valid(&objects, &[]);
    assert!(
        of_kind(&objects, "ServiceMonitor").is_empty(),
        "no ServiceMonitor by default"
    );
    let deployment = find(&objects, "Deployment", "certinext-operator");
    assert_hardened(deployment);
    assert_the_operator_accepts(deployment);
    assert_bound(&objects, deployment, NAMESPACE);
    assert_eq!(deployment["spec"]["replicas"], 1);
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        container["image"],
        format!(
            "ghcr.io/certinext/certinext-operator:{}",
            env!("CARGO_PKG_VERSION")
        ),
        "the image tag defaults to the appVersion, which is the crate's version"
    );
    let args = args(deployment);
    for arg in [
        "--leader-elect",
        "--log-format=json",
        "--lease-name=certinext-operator",
    ] {
        assert!(args.contains(&arg.to_owned()), "{arg} in {args:?}");
    }
    let concurrency = format!(
        "--concurrency={}",
        certinext::controllers::DEFAULT_CONCURRENCY
    );
    assert!(
        args.contains(&concurrency),
        "the chart's default is the operator's own, {concurrency}: {args:?}"
    );
    assert_least_privilege(&rbac_rules(&objects));
}

#[test]
fn chart_renders_valid_objects_with_non_default_values() {
    let objects = render_chart(&non_default_values());
    assert_valid(&objects, &["ServiceMonitor"]);
    let deployment = find(&objects, "Deployment", "certs");
    assert_hardened(deployment);
    assert_the_operator_accepts(deployment);
    assert_bound(&objects, deployment, NAMESPACE);
    assert_eq!(deployment["spec"]["replicas"], 2);
    let pod = &deployment["spec"]["template"];
    assert_eq!(pod["spec"]["serviceAccountName"], "certinext-bot");
    assert_eq!(
        pod["spec"]["imagePullSecrets"],
        json!([{"name": "registry-credentials"}])
    );
    assert_eq!(pod["spec"]["priorityClassName"], "system-cluster-critical");
    assert_eq!(
        pod["spec"]["nodeSelector"],
        json!({"kubernetes.io/os": "linux"})
    );
    assert_eq!(pod["spec"]["tolerations"][0]["key"], "dedicated");
    assert_eq!(pod["spec"]["topologySpreadConstraints"][0]["maxSkew"], 1);
    assert_eq!(
        pod["metadata"]["annotations"]["example.com/team"],
        "platform"
    );
    assert_eq!(pod["metadata"]["labels"]["example.com/tier"], "control");
    let container = &pod["spec"]["containers"][0];
    assert_eq!(
        container["image"],
        "registry.example.com/platform/certinext:1.2.3"
    );
    assert_eq!(container["imagePullPolicy"], "Always");
    assert_eq!(container["ports"][0]["containerPort"], 9090);
    assert!(
        container["env"]
            .as_array()
            .is_some_and(|env| env.contains(&json!({"name": "TZ", "value": "UTC"}))),
        "{}",
        container["env"]
    );
    let args = args(deployment);
    for arg in [
        "--log-level=certinext=debug,kube=warn",
        "--log-format=text",
        "--concurrency=8",
        "--leader-elect",
        "--lease-name=certs-leader",
        "--watch-namespaces=acme-web,acme-api",
        "--lease-duration=30s",
    ] {
        assert!(args.contains(&arg.to_owned()), "{arg} in {args:?}");
    }
    let account = find(&objects, "ServiceAccount", "certinext-bot");
    assert_eq!(
        account["metadata"]["annotations"]["iam.example.com/role"],
        "certinext"
    );

    let service = find(&objects, "Service", "certs-metrics");
    assert_eq!(service["spec"]["ports"][0]["port"], 9090);
    assert_eq!(
        service["metadata"]["annotations"]["prometheus.io/scrape"],
        "true"
    );
    let monitor = find(&objects, "ServiceMonitor", "certs");
    assert_eq!(monitor["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(monitor["metadata"]["labels"]["release"], "kube-prometheus");
    assert_eq!(
        monitor["spec"]["namespaceSelector"]["matchNames"],
        json!([NAMESPACE])
    );
    for (label, value) in monitor["spec"]["selector"]["matchLabels"]
        .as_object()
        .expect("the ServiceMonitor selects by labels")
    {
        assert_eq!(
            &service["metadata"]["labels"][label], value,
            "it selects the Service"
        );
    }
    let endpoint = &monitor["spec"]["endpoints"][0];
    assert_eq!(endpoint["port"], service["spec"]["ports"][0]["name"]);
    assert_eq!(endpoint["path"], "/metrics");
    assert_eq!(endpoint["interval"], "15s");
}

#[test]
fn chart_without_its_optional_objects() {
    let objects = render_chart(&json!({
        "serviceAccount": {"create": false, "name": "existing"},
        "rbac": {"create": false, "tenantRoles": false},
        "leaderElection": {"enabled": false},
        "image": {"digest": format!("sha256:{}", "ab".repeat(32))}
    }));
    assert_valid(&objects, &[]);
    let kinds: Vec<&str> = objects.iter().filter_map(|o| o["kind"].as_str()).collect();
    assert_eq!(kinds, ["Deployment", "Service"], "{}", names(&objects));
    let deployment = &objects[0];
    assert_eq!(
        deployment["spec"]["template"]["spec"]["serviceAccountName"],
        "existing"
    );
    let args = args(deployment);
    assert!(
        !args
            .iter()
            .any(|a| a.starts_with("--leader-elect") || a.starts_with("--lease-name")),
        "{args:?}"
    );
    assert_eq!(
        deployment["spec"]["template"]["spec"]["containers"][0]["image"],
        format!(
            "ghcr.io/certinext/certinext-operator@sha256:{}",
            "ab".repeat(32)
        ),
        "a digest wins over the tag"
    );
}

#[test]
fn chart_refuses_values_outside_its_schema() {
    for (values, expected) in [
        (
            json!({"replicaCount": 2, "leaderElection": {"enabled": false}}),
            "/leaderElection/enabled",
        ),
        (json!({"replicas": 2}), "replicas"),
        (
            json!({"operator": {"logFormat": "xml"}}),
            "/operator/logFormat",
        ),
        (
            json!({"operator": {"concurrency": 0}}),
            "/operator/concurrency",
        ),
        (
            json!({"serviceMonitor": {"interval": "often"}}),
            "/serviceMonitor/interval",
        ),
        (json!({"image": {"digest": "latest"}}), "/image/digest"),
    ] {
        let output = helm("render", &values, &["certinext-operator", NAMESPACE]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{values} should be refused");
        assert!(
            stderr.contains(expected),
            "{values}: the refusal names {expected}:\n{stderr}"
        );
    }
    let output = helm(
        "render",
        &json!({"serviceAccount": {"create": false}}),
        &["certinext-operator", NAMESPACE],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success() && stderr.contains("serviceAccount.name is required"),
        "{stderr}"
    );
}

/// Every value has a description in values.schema.json, down to the free-form objects
/// (resources, security contexts, affinity) that are Kubernetes' own types.
#[test]
fn chart_values_are_documented() {
    let values: Value = serde_yaml::from_str(
        &std::fs::read_to_string(repo_path(&format!("{CHART}/values.yaml"))).expect("values.yaml"),
    )
    .expect("values.yaml is YAML");
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(repo_path(&format!("{CHART}/values.schema.json")))
            .expect("values.schema.json"),
    )
    .expect("values.schema.json is JSON");
    let mut undocumented = Vec::new();
    documented(&values, &schema, "", &mut undocumented);
    assert!(
        undocumented.is_empty(),
        "values without a schema description: {undocumented:?}"
    );
    let declared: BTreeSet<&String> = schema["properties"]
        .as_object()
        .expect("properties")
        .keys()
        .collect();
    let defaulted: BTreeSet<&String> = values.as_object().expect("values").keys().collect();
    assert_eq!(
        declared, defaulted,
        "values.yaml sets a default for every value of the schema"
    );
}

fn documented(values: &Value, schema: &Value, path: &str, undocumented: &mut Vec<String>) {
    let (Some(values), Some(properties)) = (values.as_object(), schema["properties"].as_object())
    else {
        return;
    };
    for (key, value) in values {
        let path = format!("{path}.{key}");
        match properties.get(key) {
            Some(property)
                if property["description"]
                    .as_str()
                    .is_some_and(|d| !d.is_empty()) =>
            {
                documented(value, property, &path, undocumented)
            }
            _ => undocumented.push(path),
        }
    }
}

#[test]
fn chart_rbac_is_the_kustomize_rbac() {
    let chart = rbac_rules(&render_chart(&json!({})));
    let kustomize = rbac_rules(&kustomize());
    assert_eq!(
        chart.keys().collect::<Vec<_>>(),
        kustomize.keys().collect::<Vec<_>>()
    );
    for (role, rules) in &kustomize {
        let only_in = |these: &Value, those: &Value| -> String {
            let those = those.as_array().cloned().unwrap_or_default();
            these
                .as_array()
                .into_iter()
                .flatten()
                .filter(|rule| !those.contains(rule))
                .map(|rule| format!("\n  {rule}"))
                .collect()
        };
        assert!(
            &chart[role] == rules,
            "the {role} rules of the chart and of config/rbac differ\n\
             only in the chart:{}\nonly in config/rbac:{}",
            only_in(&chart[role], rules),
            only_in(rules, &chart[role]),
        );
    }
    let shipped = std::fs::read_to_string(repo_path("config/rbac/certinext-roles.yaml"))
        .expect("config/rbac/certinext-roles.yaml");
    let shipped = rbac_rules(&documents(&shipped));
    for role in TENANT_ROLES {
        assert_eq!(
            chart[role], shipped[role],
            "{role} in the chart differs from config/rbac"
        );
    }
}

#[test]
fn versions_agree() {
    let chart: Value = serde_yaml::from_str(
        &std::fs::read_to_string(repo_path(&format!("{CHART}/Chart.yaml"))).expect("Chart.yaml"),
    )
    .expect("Chart.yaml is YAML");
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(
        chart["appVersion"], version,
        "the chart's appVersion is the crate's version"
    );
    let manager: Value = serde_yaml::from_str(
        &std::fs::read_to_string(repo_path("config/manager/kustomization.yaml"))
            .expect("config/manager/kustomization.yaml"),
    )
    .expect("YAML");
    assert_eq!(
        manager["images"][0]["newTag"], version,
        "config/manager runs the crate's version"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chart_installs_into_a_cluster() {
    let cluster = TestCluster::start().await;
    let kubeconfig = cluster
        .cluster
        .kubeconfig_path()
        .to_str()
        .expect("UTF-8 path")
        .to_owned();
    let install = helm_command(
        "install",
        &json!({}),
        &["certinext-operator", NAMESPACE, &kubeconfig],
    );
    let output = tokio::process::Command::from(install)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(120), output)
        .await
        .expect("helm install finishes")
        .expect("python runs");
    let stdout = succeeded("helm install", output);
    let release: Value = serde_json::from_str(&stdout).expect("install prints JSON");
    assert_eq!(release["name"], "certinext-operator", "{release:#}");
    assert_eq!(release["revision"], 1, "{release:#}");
    assert_eq!(release["status"], "deployed", "{release:#}");

    let crds = cluster.kubectl(&["get", "crds", "-o", "name"]).await;
    assert_eq!(
        crds.matches(".certinext.io").count(),
        8,
        "the chart's crds/ are installed:\n{crds}"
    );
    let deployment = cluster
        .kubectl(&[
            "-n",
            NAMESPACE,
            "get",
            "deployment",
            "certinext-operator",
            "-o",
            "json",
        ])
        .await;
    let deployment: Value = serde_json::from_str(&deployment).expect("JSON");
    assert_hardened(&deployment);
    assert_eq!(
        deployment["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "Helm"
    );
    let listed = cluster
        .kubectl(&[
            "-n",
            NAMESPACE,
            "get",
            "serviceaccount,service,role,rolebinding,secret",
            "-o",
            "name",
        ])
        .await;
    for object in [
        "serviceaccount/certinext-operator",
        "service/certinext-operator-metrics",
        "role.rbac.authorization.k8s.io/certinext-operator-leader-election",
        "rolebinding.rbac.authorization.k8s.io/certinext-operator-leader-election",
        "secret/sh.helm.release.v1.certinext-operator.v1",
    ] {
        assert!(listed.contains(object), "{object} is missing:\n{listed}");
    }
    let cluster_wide = cluster
        .kubectl(&["get", "clusterroles,clusterrolebindings", "-o", "name"])
        .await;
    for object in [
        "clusterrole.rbac.authorization.k8s.io/certinext-operator",
        "clusterrolebinding.rbac.authorization.k8s.io/certinext-operator",
        "clusterrole.rbac.authorization.k8s.io/certinext-admin",
        "clusterrole.rbac.authorization.k8s.io/certinext-requester",
        "clusterrole.rbac.authorization.k8s.io/certinext-viewer",
    ] {
        assert!(
            cluster_wide.contains(object),
            "{object} is missing:\n{cluster_wide}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Argo CD health checks

const ARGOCD_PATCH: &str = "config/argocd/argocd-cm-patch.yaml";

/// The health script for each certinext.io kind, as the argocd-cm patch carries it.
fn health_scripts() -> BTreeMap<String, String> {
    let patch = std::fs::read_to_string(repo_path(ARGOCD_PATCH)).expect("the argocd-cm patch");
    let patch = &documents(&patch)[0];
    assert_eq!(patch["kind"], "ConfigMap");
    assert_eq!(patch["metadata"]["name"], "argocd-cm");
    patch["data"]
        .as_object()
        .expect("data")
        .iter()
        .map(|(key, script)| {
            let kind = key
                .strip_prefix("resource.customizations.health.certinext.io_")
                .unwrap_or_else(|| panic!("{key} is not a certinext.io health check"));
            (
                kind.to_owned(),
                script.as_str().expect("a script").to_owned(),
            )
        })
        .collect()
}

#[test]
fn argocd_cm_patch_embeds_the_lua_files() {
    let scripts = health_scripts();
    for (kind, file) in [
        ("Account", "conditions.lua"),
        ("PrivateCA", "conditions.lua"),
        ("Certificate", "conditions.lua"),
        ("Order", "order.lua"),
    ] {
        let source = std::fs::read_to_string(repo_path(&format!("config/argocd/{file}")))
            .expect("the Lua file");
        assert!(
            scripts.get(kind) == Some(&source),
            "{ARGOCD_PATCH}: the {kind} health check is not config/argocd/{file} verbatim"
        );
    }
    assert_eq!(scripts.len(), 4, "{:?}", scripts.keys());
}

/// A Lua table constructor for a JSON value, as Argo CD hands objects to health scripts
/// (JSON null becomes an absent field).
fn lua_literal(value: &Value) -> String {
    match value {
        Value::Null => "nil".to_owned(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => lua_string(s),
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(lua_literal).collect();
            format!("{{{}}}", items.join(", "))
        }
        Value::Object(fields) => {
            let fields: Vec<String> = fields
                .iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| format!("[{}] = {}", lua_string(k), lua_literal(v)))
                .collect();
            format!("{{{}}}", fields.join(", "))
        }
    }
}

fn lua_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_ascii_control() => out.push_str(&format!("\\{:03}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Runs the health `script` on `object` as Argo CD does; returns (status, message).
fn health(script: &str, object: &Value) -> (String, String) {
    let dir = tempfile::tempdir().expect("a directory");
    let script_path = dir.path().join("health.lua");
    std::fs::write(&script_path, script).expect("write the script");
    let harness = format!(
        "obj = {}\nlocal hs = assert(loadfile({}))()\nio.write(hs.status, \"\\n\", hs.message or \"\", \"\\n\")\n",
        lua_literal(object),
        lua_string(script_path.to_str().expect("a UTF-8 path")),
    );
    let harness_path = dir.path().join("harness.lua");
    std::fs::write(&harness_path, harness).expect("write the harness");
    let output = match Command::new("lua5.4").arg(&harness_path).output() {
        Ok(output) => output,
        Err(error) => {
            panic!("cannot run lua5.4 ({error}): .ci/run installs it (apt-get install -y lua5.4)")
        }
    };
    let stdout = succeeded("the health script", output);
    let mut lines = stdout.lines();
    let status = lines.next().unwrap_or_default().to_owned();
    (status, lines.collect::<Vec<_>>().join("\n"))
}

fn object(kind: &str, generation: i64, status: Value) -> Value {
    json!({
        "apiVersion": "certinext.io/v1alpha1",
        "kind": kind,
        "metadata": {"name": "sample", "namespace": "acme-web", "generation": generation},
        "spec": {},
        "status": status,
    })
}

fn condition(kind: &str, status: &str, reason: &str, message: &str) -> Value {
    json!({
        "type": kind, "status": status, "reason": reason, "message": message,
        "observedGeneration": 1, "lastTransitionTime": "2026-01-01T00:00:00Z",
    })
}

#[test]
fn lua_literals_round_trip_awkward_strings() {
    let awkward = "quote \" backslash \\ newline \n tab \t nul \0 — ünïcode";
    let dir = tempfile::tempdir().expect("a directory");
    let path = dir.path().join("echo.lua");
    std::fs::write(&path, format!("io.write({})", lua_literal(&json!(awkward)))).expect("write");
    let output = Command::new("lua5.4").arg(&path).output();
    let output = output.unwrap_or_else(|e| panic!("cannot run lua5.4 ({e}): .ci/run installs it"));
    assert_eq!(succeeded("lua", output), awkward);
}

#[test]
fn health_checks_follow_the_conditions() {
    let scripts = health_scripts();
    let ready = || condition("Ready", "True", "Ready", "in force");
    let not_ready = |reason: &str| condition("Ready", "False", reason, &format!("{reason} here"));
    let issuing = |status: &str| condition("Issuing", status, "Renewing", "renewal due");
    // (kind, metadata.generation, status.observedGeneration, conditions; None: no status)
    type Status = Option<(i64, Vec<Value>)>;
    let cases: Vec<(&str, i64, Status, &str)> = vec![
        ("Certificate", 1, None, "Progressing"),
        ("Certificate", 1, Some((1, vec![])), "Progressing"),
        (
            "Certificate",
            1,
            Some((1, vec![issuing("True"), not_ready("Issuing")])),
            "Progressing",
        ),
        (
            "Certificate",
            1,
            Some((1, vec![ready(), issuing("True")])),
            "Progressing",
        ),
        (
            "Certificate",
            1,
            Some((1, vec![ready(), issuing("False")])),
            "Healthy",
        ),
        ("Certificate", 2, Some((1, vec![ready()])), "Progressing"),
        (
            "Certificate",
            1,
            Some((1, vec![not_ready("DomainNotAllowed")])),
            "Degraded",
        ),
        (
            "Certificate",
            1,
            Some((1, vec![not_ready("CapabilityDenied")])),
            "Degraded",
        ),
        ("PrivateCA", 1, None, "Progressing"),
        ("PrivateCA", 1, Some((1, vec![ready()])), "Healthy"),
        (
            "PrivateCA",
            1,
            Some((1, vec![not_ready("Pending")])),
            "Progressing",
        ),
        (
            "PrivateCA",
            1,
            Some((1, vec![condition("Ready", "Unknown", "Starting", "")])),
            "Progressing",
        ),
        (
            "PrivateCA",
            1,
            Some((1, vec![not_ready("ParentNotReady")])),
            "Degraded",
        ),
        ("Account", 1, None, "Progressing"),
        ("Account", 3, Some((3, vec![ready()])), "Healthy"),
        (
            "Account",
            1,
            Some((1, vec![not_ready("NamespaceConflict")])),
            "Degraded",
        ),
        (
            "Account",
            1,
            Some((1, vec![not_ready("Overdrawn")])),
            "Degraded",
        ),
    ];
    for (kind, generation, status, expected) in cases {
        let status = status.map_or(Value::Null, |(observed, conditions)| {
            json!({"observedGeneration": observed, "conditions": conditions})
        });
        let object = object(kind, generation, status);
        let (health, message) = health(&scripts[kind], &object);
        assert_eq!(health, expected, "{kind} {:#}: {message}", object["status"]);
        if expected == "Degraded" {
            let reason = object["status"]["conditions"][0]["reason"]
                .as_str()
                .unwrap_or_default();
            assert_eq!(
                message,
                format!("{reason}: {reason} here"),
                "{kind} says why"
            );
        }
    }
}

#[test]
fn order_health_follows_its_state() {
    let scripts = health_scripts();
    let order = |state: Option<&str>, message: &str| {
        let mut status = json!({"conditions": [condition("Ready", "False", "Refused", message)]});
        if let Some(state) = state {
            status["state"] = json!(state);
        }
        object("Order", 1, status)
    };
    for (state, expected) in [
        (None, "Progressing"),
        (Some("PendingApproval"), "Progressing"),
        (Some("Approved"), "Progressing"),
        (Some("Issued"), "Healthy"),
        (Some("Cancelled"), "Healthy"),
        (Some("Denied"), "Degraded"),
        (Some("Rejected"), "Degraded"),
        (Some("Failed"), "Degraded"),
        (Some("Exploded"), "Unknown"),
    ] {
        let why = format!("because {state:?}");
        let (status, message) = health(&scripts["Order"], &order(state, &why));
        assert_eq!(status, expected, "Order in state {state:?}: {message}");
        if expected == "Degraded" {
            let state = state.unwrap_or_default();
            assert!(
                message.starts_with(state) && message.contains(&why),
                "{message}"
            );
        }
    }
    let (status, _) = health(
        &scripts["Order"],
        &json!({"apiVersion": "certinext.io/v1alpha1", "kind": "Order", "metadata": {"name": "bare"}}),
    );
    assert_eq!(status, "Progressing", "an Order without status");
}

#[test]
fn argocd_applications_point_at_the_install() {
    for (file, path) in [
        ("config/argocd/application.yaml", "config/default"),
        ("config/argocd/application-helm.yaml", CHART),
    ] {
        let application = &documents(&std::fs::read_to_string(repo_path(file)).expect(file))[0];
        assert_eq!(application["apiVersion"], "argoproj.io/v1alpha1", "{file}");
        assert_eq!(application["kind"], "Application", "{file}");
        assert_eq!(application["spec"]["source"]["path"], path, "{file}");
        assert!(
            Path::new(&repo_path(path)).is_dir(),
            "{file} points at {path}"
        );
        assert_eq!(
            application["spec"]["destination"]["namespace"], NAMESPACE,
            "{file}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Image and documentation

#[test]
fn dockerfile_builds_the_locked_binary_on_the_project_toolchain() {
    let dockerfile = std::fs::read_to_string(repo_path("Dockerfile")).expect("Dockerfile");
    let froms: Vec<&str> = dockerfile
        .lines()
        .filter_map(|l| l.strip_prefix("FROM "))
        .collect();
    let rust_version = env!("CARGO_PKG_RUST_VERSION");
    assert_eq!(
        froms,
        [
            format!("rust:{rust_version}-bookworm AS builder").as_str(),
            "gcr.io/distroless/cc-debian12:nonroot"
        ],
        "the builder is the crate's rust-version, the runtime distroless and non-root"
    );
    for line in [
        "cargo build --release --locked --bin certinext",
        "USER 65532:65532",
        "ENTRYPOINT [\"/usr/local/bin/certinext\"]",
        "CMD [\"run\"]",
    ] {
        assert!(dockerfile.contains(line), "the Dockerfile lacks {line:?}");
    }
    // The build context keeps what the build reads: the workspace and the embedded examples.
    let ignored: Vec<String> = std::fs::read_to_string(repo_path(".dockerignore"))
        .expect(".dockerignore")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.trim_end_matches('/').to_owned())
        .collect();
    assert!(ignored.contains(&"target".to_owned()), "{ignored:?}");
    for needed in [
        "Cargo.toml",
        "Cargo.lock",
        "src",
        "devcluster",
        "devcluster/src",
        "examples",
    ] {
        assert!(
            !ignored.iter().any(|i| i == needed),
            ".dockerignore drops {needed}"
        );
    }
}

#[test]
fn readme_links_the_install_guides() {
    let readme = std::fs::read_to_string(repo_path("README.md")).expect("README.md");
    for doc in [
        "docs/INSTALL-HELM.md",
        "docs/INSTALL-KUSTOMIZE.md",
        "docs/GITOPS-ARGOCD.md",
        "docs/UPGRADE.md",
    ] {
        assert!(
            readme.contains(&format!("]({doc})")),
            "README.md links {doc}"
        );
        assert!(Path::new(&repo_path(doc)).is_file(), "{doc} exists");
    }
}

/// The health checks read the objects the controllers really write: an issued Certificate
/// and its Order are Healthy, an order waiting for approval (and its Certificate) Progressing,
/// the Account and its CAs Healthy, and a refused Certificate Degraded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_checks_read_the_objects_the_controllers_write() {
    use certinext::api::{Account, Certificate, Order, PrivateCA};
    use kube::Api;
    use support::wait::{is_ready, wait_until};
    let scripts = health_scripts();
    let cluster = TestCluster::with_crds().await;
    let controllers = certinext::controllers::start(&cluster.client, &Default::default());
    cluster
        .kubectl(&["apply", "-f", &repo_path("examples/enterprise.yaml")])
        .await;
    let refused = cluster.file(
        "refused.yaml",
        "apiVersion: certinext.io/v1alpha1
kind: Certificate
metadata: {name: elsewhere, namespace: globex-platform}
spec: {secretName: elsewhere-tls, productRef: {name: internal-server}, dnsNames: [www.not-globex.example]}
",
    );
    cluster
        .kubectl(&["apply", "-f", refused.to_str().unwrap_or_default()])
        .await;
    fn json<T: serde::Serialize>(object: &T) -> Value {
        serde_json::to_value(object).expect("objects serialize")
    }

    let platform: Api<Certificate> = Api::namespaced(cluster.client.clone(), "globex-platform");
    let issued = wait_until(&platform, "ingress-wildcard", is_ready).await;
    let orders: Api<Order> = Api::namespaced(cluster.client.clone(), "globex-platform");
    let issued_order = orders
        .get(&format!(
            "ingress-wildcard-{}",
            issued.status.as_ref().and_then(|s| s.revision).unwrap_or(1)
        ))
        .await
        .expect("the issued Order");
    let payments: Api<Order> = Api::namespaced(cluster.client.clone(), "globex-payments");
    let pending = wait_until(&payments, "ledger-service-1", |o| {
        o.status.as_ref().and_then(|s| s.state)
            == Some(certinext::api::order::OrderState::PendingApproval)
    })
    .await;
    let waiting: Api<Certificate> = Api::namespaced(cluster.client.clone(), "globex-payments");
    let waiting = waiting
        .get("ledger-service")
        .await
        .expect("the waiting Certificate");
    let refused = wait_until(&platform, "elsewhere", |c| {
        support::wait::ready(c).is_some_and(|r| r.0 == "False")
    })
    .await;
    let account = wait_until(
        &Api::<Account>::all(cluster.client.clone()),
        "globex",
        is_ready,
    )
    .await;
    let cas: Api<PrivateCA> = Api::namespaced(cluster.client.clone(), "globex-platform");
    let ca = wait_until(&cas, "globex-issuing", is_ready).await;

    for (kind, object, expected) in [
        ("Certificate", json(&issued), "Healthy"),
        ("Order", json(&issued_order), "Healthy"),
        ("Order", json(&pending), "Progressing"),
        ("Certificate", json(&waiting), "Progressing"),
        ("Certificate", json(&refused), "Degraded"),
        ("Account", json(&account), "Healthy"),
        ("PrivateCA", json(&ca), "Healthy"),
    ] {
        let (status, message) = health(&scripts[kind], &object);
        assert_eq!(
            status, expected,
            "{kind} {}: {message}",
            object["metadata"]["name"]
        );
    }
    for controller in controllers {
        controller.abort();
    }
}
