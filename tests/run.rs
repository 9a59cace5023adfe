//! `certinext run` against devcluster: reconciling, metrics and health endpoints, leader
//! election between two replicas (one leader, take-over after a crash, release on SIGTERM).

mod support;

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::cluster::{TestCluster, eventually, repo_path};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio::time::Instant;

/// A `certinext run` process and what its logs said about it.
struct Operator {
    child: Child,
    /// Where it serves /metrics, /healthz and /readyz.
    address: String,
    /// Its identity in the leader election, when it joined one.
    identity: Option<String>,
    logs: Arc<Mutex<Vec<String>>>,
}

impl Operator {
    /// Starts `certinext run` against `cluster` on a free port, with JSON logs, and waits
    /// until it serves its endpoints (and has joined the election, if `extra` asks for one).
    async fn start(cluster: &TestCluster, extra: &[&str]) -> Operator {
        let mut child = Command::new(env!("CARGO_BIN_EXE_certinext"))
            .arg("run")
            .arg("--kubeconfig")
            .arg(cluster.cluster.kubeconfig_path())
            .args(["--metrics-address", "127.0.0.1:0", "--log-format", "json"])
            .args(["--log-level", "info,certinext=debug"])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("certinext run starts");
        let stderr = child.stderr.take().expect("piped stderr");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let kept = logs.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if let Ok(entry) = serde_json::from_str::<serde_json::Value>(&line) {
                    let fields = &entry["fields"];
                    let _ = tx.send((
                        fields["message"].as_str().unwrap_or_default().to_owned(),
                        fields.clone(),
                    ));
                }
                kept.lock().expect("logs").push(line);
            }
        });
        let elects = extra.contains(&"--leader-elect");
        let (mut address, mut identity) = (None, None);
        let started = tokio::time::timeout(Duration::from_secs(60), async {
            while address.is_none() || (elects && identity.is_none()) {
                let Some((message, fields)) = rx.recv().await else {
                    return false;
                };
                match message.as_str() {
                    "serving /metrics, /healthz and /readyz" => {
                        address = fields["address"].as_str().map(str::to_owned);
                    }
                    "joining the leader election" => {
                        identity = fields["identity"].as_str().map(str::to_owned);
                    }
                    _ => {}
                }
            }
            true
        })
        .await;
        assert!(
            started == Ok(true),
            "certinext run did not start:\n{}",
            logs.lock().expect("logs").join("\n")
        );
        Operator {
            child,
            address: address.unwrap_or_default(),
            identity,
            logs,
        }
    }

    fn logs(&self) -> String {
        self.logs.lock().expect("logs").join("\n")
    }

    /// GET `path`: the status code and body.
    async fn get(&self, path: &str) -> Option<(u16, String)> {
        let mut stream = tokio::net::TcpStream::connect(&self.address).await.ok()?;
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).await.ok()?;
        let (head, body) = response.split_once("\r\n\r\n")?;
        let status = head.split_whitespace().nth(1)?.parse().ok()?;
        Some((status, body.to_owned()))
    }

    /// Scrapes /metrics and parses it as the Prometheus text format.
    async fn scrape(&self) -> Option<Metrics> {
        let (status, body) = self.get("/metrics").await?;
        assert_eq!(status, 200, "{body}");
        let lines = body.lines().map(|line| Ok(line.to_owned()));
        let scrape = prometheus_parse::Scrape::parse(lines).expect("the metrics parse");
        Some(Metrics(scrape))
    }

    /// Sends SIGTERM and waits for the process to exit, returning how it exited.
    async fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().expect("running").to_string();
        let sent = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .await
            .expect("kill runs");
        assert!(sent.success());
        let logs = self.logs.clone();
        tokio::time::timeout(Duration::from_secs(20), self.child.wait())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "certinext run did not stop on SIGTERM:\n{}",
                    logs.lock().expect("logs").join("\n")
                )
            })
            .expect("wait")
    }
}

/// One scrape.
struct Metrics(prometheus_parse::Scrape);

impl Metrics {
    /// The value of the sample `name` with exactly `labels`, if there is one.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.0
            .samples
            .iter()
            .find(|sample| {
                sample.metric == name
                    && sample.labels.len() == labels.len()
                    && labels
                        .iter()
                        .all(|(key, value)| sample.labels.get(key) == Some(*value))
            })
            .and_then(|sample| match sample.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => Some(v),
                _ => None,
            })
    }

    /// The sum of every sample of `name` whose labels include `labels`.
    fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.0
            .samples
            .iter()
            .filter(|sample| {
                sample.metric == name
                    && labels
                        .iter()
                        .all(|(key, value)| sample.labels.get(key) == Some(*value))
            })
            .filter_map(|sample| match sample.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => Some(v),
                _ => None,
            })
            .sum()
    }

    /// How many reconciles of `kind` the process ran.
    fn reconciles(&self, kind: &str) -> f64 {
        self.value("certinext_reconciles_total", &[("kind", kind)])
            .unwrap_or(0.0)
    }

    /// How many reconciles of any kind the process ran.
    fn all_reconciles(&self) -> f64 {
        self.sum("certinext_reconciles_total", &[])
    }

    /// The number of observations of the duration histogram for `kind`.
    fn timed_reconciles(&self, kind: &str) -> Option<f64> {
        self.0
            .samples
            .iter()
            .find_map(|sample| match &sample.value {
                prometheus_parse::Value::Histogram(buckets)
                    if sample.metric == "certinext_reconcile_duration_seconds"
                        && sample.labels.get("kind") == Some(kind) =>
                {
                    buckets
                        .iter()
                        .find(|bucket| bucket.less_than == f64::INFINITY)
                        .map(|bucket| bucket.count)
                }
                _ => None,
            })
    }
}

/// Polls `check` on each scrape until it returns Some.
async fn scrape_until<T>(
    operator: &Operator,
    what: &str,
    check: impl Fn(&Metrics) -> Option<T>,
) -> T {
    eventually(what, || async {
        operator.scrape().await.and_then(|metrics| check(&metrics))
    })
    .await
}

async fn account_field(cluster: &TestCluster, name: &str, jsonpath: &str) -> String {
    let output = cluster
        .kubectl_output(&[
            "get",
            "accounts.certinext.io",
            name,
            "-o",
            &format!("jsonpath={jsonpath}"),
        ])
        .await;
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Waits until the account's Ready condition is True.
async fn wait_account_ready(cluster: &TestCluster, name: &str) {
    eventually(&format!("Account {name} Ready"), || async {
        let ready = account_field(
            cluster,
            name,
            "{.status.conditions[?(@.type==\"Ready\")].status}",
        )
        .await;
        (ready == "True").then_some(())
    })
    .await;
}

async fn lease_holder(cluster: &TestCluster) -> String {
    cluster
        .kubectl(&[
            "get",
            "lease",
            "certinext-operator",
            "-n",
            "certinext-system",
            "-o",
            "jsonpath={.spec.holderIdentity}",
        ])
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_reconciles_the_enterprise_example_and_serves_its_metrics() {
    let cluster = TestCluster::with_crds().await;
    let operator = Operator::start(&cluster, &["--concurrency", "2"]).await;
    assert_eq!(
        operator.get("/healthz").await.map(|(status, _)| status),
        Some(200)
    );
    eventually("/readyz answers 200", || async {
        (operator.get("/readyz").await?.0 == 200).then_some(())
    })
    .await;

    cluster
        .kubectl(&["apply", "-f", &repo_path("examples/enterprise.yaml")])
        .await;
    wait_account_ready(&cluster, "globex").await;
    // 7500.00 credited, 3500.00 allocated to the two groups (the Account may be Ready before
    // it has counted both).
    eventually("the wallet's balance counts both groups", || async {
        let balance = account_field(&cluster, "globex", "{.status.wallet.balance}").await;
        (balance == "4000.00").then_some(())
    })
    .await;

    scrape_until(&operator, "the example's figures in /metrics", |m| {
        let balance = m.value(
            "certinext_account_balance",
            &[("account", "globex"), ("currency", "USD")],
        )?;
        let platform = m.value(
            "certinext_group_balance",
            &[("namespace", "globex-platform"), ("group", "platform-team")],
        )?;
        (balance == 4000.0 && platform == 2000.0 && m.reconciles("Account") > 0.0).then_some(())
    })
    .await;
    let metrics = operator.scrape().await.expect("a scrape");
    assert!(metrics.reconciles("Account") > 0.0, "{}", operator.logs());
    assert!(metrics.reconciles("Group") > 0.0);
    assert!(
        metrics.timed_reconciles("Account").unwrap_or(0.0) >= metrics.reconciles("Account"),
        "every reconcile is timed"
    );
    assert_eq!(
        metrics.value(
            "certinext_group_balance",
            &[("namespace", "globex-payments"), ("group", "payments-team")]
        ),
        Some(1500.0)
    );
    // One certificate in each namespace, whatever state it is in.
    for namespace in ["globex-platform", "globex-payments"] {
        assert_eq!(
            metrics.sum("certinext_certificates", &[("namespace", namespace)]),
            1.0,
            "{namespace}"
        );
    }
    assert_eq!(metrics.value("certinext_leader", &[]), Some(1.0));
    // The leader's metrics read the controllers' cache: Certificates are listed and watched
    // once, not once more for the metrics.
    let by_operator = |verb: &str| -> u64 {
        cluster
            .cluster
            .requests()
            .into_iter()
            .filter(|(kind, _)| {
                kind.user_agent == "certinext-operator"
                    && kind.verb == verb
                    && kind.resource == "certificates"
            })
            .map(|(_, count)| count)
            .sum()
    };
    assert_eq!(
        (by_operator("list"), by_operator("watch")),
        (1, 1),
        "{:#?}",
        cluster.cluster.requests()
    );
    // No Secret is ever described.
    assert!(
        !metrics
            .0
            .samples
            .iter()
            .any(|s| s.metric.contains("secret")),
        "no metric about Secrets"
    );

    let exit = operator.terminate().await;
    assert!(exit.success(), "SIGTERM stops it cleanly: {exit:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_two_replicas_one_leads_and_the_other_takes_over_when_it_dies() {
    const LEASE: &str = "3s";
    // The operator's namespace comes with the CRDs.
    let cluster = TestCluster::with_crds().await;
    let elect = ["--leader-elect", "--lease-duration", LEASE];
    let first = Operator::start(&cluster, &elect).await;
    let second = Operator::start(&cluster, &elect).await;
    cluster
        .kubectl(&["apply", "-f", &repo_path("examples/enterprise.yaml")])
        .await;

    // Exactly one leads: the one the Lease names.
    let holder = eventually("a lease holder", || async {
        let holder = lease_holder(&cluster).await;
        (!holder.is_empty()).then_some(holder)
    })
    .await;
    let (leader, follower) = if first.identity.as_deref() == Some(holder.as_str()) {
        (first, second)
    } else {
        (second, first)
    };
    assert!(follower.identity.is_some(), "both replicas joined");
    assert_eq!(leader.identity.as_deref(), Some(holder.as_str()));
    wait_account_ready(&cluster, "globex").await;
    scrape_until(&leader, "the leader reconciles", |m| {
        (m.value("certinext_leader", &[]) == Some(1.0) && m.reconciles("Account") > 0.0)
            .then_some(())
    })
    .await;
    // The follower is ready, reports it does not lead, and has reconciled nothing.
    assert_eq!(follower.get("/readyz").await.map(|(s, _)| s), Some(200));
    let idle = follower.scrape().await.expect("a scrape");
    assert_eq!(idle.value("certinext_leader", &[]), Some(0.0));
    assert_eq!(idle.all_reconciles(), 0.0, "{}", follower.logs());
    // It still describes the Certificates, from watches of its own.
    scrape_until(&follower, "the follower's certificate gauges", |m| {
        (m.sum("certinext_certificates", &[]) == 2.0).then_some(())
    })
    .await;
    let before = leader
        .scrape()
        .await
        .expect("a scrape")
        .reconciles("Account");

    // A change while the leader runs is reconciled by the leader alone.
    cluster
        .kubectl(&[
            "patch",
            "accounts.certinext.io",
            "globex",
            "--type",
            "json",
            "-p",
            r#"[{"op":"add","path":"/spec/credits/-","value":{"id":"po-5001","amount":"500.00"}}]"#,
        ])
        .await;
    scrape_until(&leader, "the leader reconciles the change", |m| {
        (m.reconciles("Account") > before).then_some(())
    })
    .await;
    eventually("the new credit in the wallet", || async {
        (account_field(&cluster, "globex", "{.status.wallet.balance}").await == "4500.00")
            .then_some(())
    })
    .await;
    let idle = follower.scrape().await.expect("a scrape");
    assert_eq!(idle.all_reconciles(), 0.0, "{}", follower.logs());

    // The leader dies without a word; the follower takes over once the lease lapses.
    let mut crashed = leader;
    crashed.child.kill().await.expect("kill -9");
    let killed = Instant::now();
    cluster
        .kubectl(&[
            "patch",
            "accounts.certinext.io",
            "globex",
            "--type",
            "json",
            "-p",
            r#"[{"op":"add","path":"/spec/credits/-","value":{"id":"po-5002","amount":"1000.00"}}]"#,
        ])
        .await;
    let deadline = Duration::from_secs(3) + Duration::from_secs(5);
    loop {
        let leads = follower
            .scrape()
            .await
            .and_then(|m| m.value("certinext_leader", &[]))
            == Some(1.0);
        if leads {
            eprintln!(
                "the follower took over {:?} after the crash",
                killed.elapsed()
            );
            break;
        }
        assert!(
            killed.elapsed() < deadline,
            "the follower did not take over within {deadline:?}:\n{}",
            follower.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        lease_holder(&cluster).await,
        follower.identity.clone().unwrap_or_default()
    );
    eventually("the change after the crash reconciled", || async {
        (account_field(&cluster, "globex", "{.status.wallet.balance}").await == "5500.00")
            .then_some(())
    })
    .await;
    scrape_until(&follower, "the new leader's metrics", |m| {
        (m.reconciles("Account") > 0.0
            && m.sum("certinext_certificates", &[]) == 2.0
            && m.value(
                "certinext_account_balance",
                &[("account", "globex"), ("currency", "USD")],
            ) == Some(5500.0))
        .then_some(())
    })
    .await;

    // SIGTERM: a clean exit that leaves the lease free at once.
    let exit = follower.terminate().await;
    assert!(exit.success(), "SIGTERM stops it cleanly: {exit:?}");
    assert_eq!(lease_holder(&cluster).await, "", "the lease is released");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_whose_lease_is_taken_stops_its_controllers_at_once() {
    // The operator's namespace comes with the CRDs.
    let cluster = TestCluster::with_crds().await;
    let operator = Operator::start(&cluster, &["--leader-elect", "--lease-duration", "3s"]).await;
    scrape_until(&operator, "the replica leads", |m| {
        (m.value("certinext_leader", &[]) == Some(1.0)).then_some(())
    })
    .await;

    // Another holder appears in the Lease, freshly renewed (as after a network partition).
    let now = jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string();
    let patch = serde_json::json!({"spec": {
        "holderIdentity": "elsewhere",
        "renewTime": now,
        "leaseDurationSeconds": 3,
    }});
    cluster
        .kubectl(&[
            "patch",
            "lease",
            "certinext-operator",
            "-n",
            "certinext-system",
            "--type",
            "merge",
            "-p",
            &patch.to_string(),
        ])
        .await;
    let taken = Instant::now();
    eventually("the replica stops leading", || async {
        let leads = operator.scrape().await?.value("certinext_leader", &[])?;
        (leads == 0.0).then_some(())
    })
    .await;
    // Within a confirmation interval (half of a third of the lease) or so, and in any case
    // before the other hold could lapse and a third replica take the lease.
    assert!(
        taken.elapsed() < Duration::from_millis(2500),
        "stopped after {:?}:\n{}",
        taken.elapsed(),
        operator.logs()
    );
    assert_eq!(operator.get("/readyz").await.map(|(s, _)| s), Some(200));

    // Nobody renews the other hold, so the replica takes the lease back once it lapses.
    scrape_until(&operator, "the replica leads again", |m| {
        (m.value("certinext_leader", &[]) == Some(1.0)).then_some(())
    })
    .await;
    assert_eq!(
        lease_holder(&cluster).await,
        operator.identity.clone().unwrap_or_default()
    );
    let exit = operator.terminate().await;
    assert!(exit.success(), "{exit:?}");
    assert_eq!(lease_holder(&cluster).await, "");
}

/// Permissions the operator's role grants that a run over the examples does not exercise,
/// and why each is still needed.
const GRANTED_BUT_NOT_EXERCISED: &[(&str, &str, &str, &str)] = &[
    (
        "",
        "secrets",
        "delete",
        "a <cert>-next-key Secret an earlier version wrote, once its certificate is delivered",
    ),
    (
        "certinext.io",
        "products",
        "get",
        "a reseller's Product outside --watch-namespaces, which no cache holds",
    ),
    (
        "certinext.io",
        "pricelists",
        "get",
        "a reseller's PriceList outside --watch-namespaces, which no cache holds",
    ),
    (
        "events.k8s.io",
        "events",
        "patch",
        "an Event repeated within minutes updates its series",
    ),
    (
        "certinext.io",
        "orders",
        "delete",
        "Orders beyond a Certificate's revision history limit",
    ),
    (
        "certinext.io",
        "orders",
        "get",
        "an Issued Order whose certificate did not come from this process's Order controller (it issued before a restart)",
    ),
    (
        "certinext.io",
        "orders",
        "patch",
        "marking an in-flight Order superseded after a spec change",
    ),
    (
        "certinext.io",
        "accounts/finalizers",
        "update",
        "OwnerReferencesPermissionEnforcement: a RoleBinding owned by a sub-account's Account",
    ),
    (
        "certinext.io",
        "groups/finalizers",
        "update",
        "the same, for a Group's RoleBindings",
    ),
    (
        "certinext.io",
        "privatecas/finalizers",
        "update",
        "the same, for a PrivateCA's Secret",
    ),
    (
        "certinext.io",
        "certificates/finalizers",
        "update",
        "the same, for a Certificate's Orders and next-key Secret",
    ),
];

/// The (group, resource, verb) triples the rules of a Role or ClusterRole grant; rules
/// limited to resourceNames (such as `bind`) are not requests the operator makes.
fn granted(rules: &serde_json::Value) -> std::collections::BTreeSet<(String, String, String)> {
    let strings = |value: &serde_json::Value| -> Vec<String> {
        value
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s.as_str().map(str::to_owned))
            .collect()
    };
    let mut granted = std::collections::BTreeSet::new();
    for rule in rules.as_array().into_iter().flatten() {
        if rule.get("resourceNames").is_some() {
            continue;
        }
        for group in strings(&rule["apiGroups"]) {
            for resource in strings(&rule["resources"]) {
                for verb in strings(&rule["verbs"]) {
                    granted.insert((group.clone(), resource.clone(), verb));
                }
            }
        }
    }
    granted
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_role_grants_exactly_what_the_operator_uses() {
    // The operator's namespace comes with the CRDs.
    let cluster = TestCluster::with_crds().await;
    cluster.cluster.reset_requests();
    let operator = Operator::start(
        &cluster,
        &[
            "--leader-elect",
            "--lease-duration",
            "3s",
            "--leader-election-namespace",
            "certinext-system",
        ],
    )
    .await;
    for example in ["reseller", "enterprise", "retail"] {
        cluster
            .kubectl(&[
                "apply",
                "-f",
                &repo_path(&format!("examples/{example}.yaml")),
            ])
            .await;
    }
    let accounts: kube::Api<certinext::api::Account> = kube::Api::all(cluster.client.clone());
    let is_ready = |a: &certinext::api::Account| {
        a.status
            .as_ref()
            .is_some_and(|s| certinext::controllers::is_ready(&s.conditions))
    };
    support::cluster::eventually_within("every account Ready", Duration::from_secs(90), || async {
        let list = accounts.list(&Default::default()).await.ok()?;
        (list.items.len() == 5 && list.items.iter().all(is_ready)).then_some(())
    })
    .await;
    // Deletions: certificates (their charged Orders' charges move to the payers' archives:
    // an account wallet and a group), then a sub-account (its account's finalizer and its own).
    support::cluster::eventually_within(
        "the certificates issued",
        Duration::from_secs(90),
        || async {
            let certificates: kube::Api<certinext::api::Certificate> =
                kube::Api::namespaced(cluster.client.clone(), "sslhub");
            let portal = certificates.get("portal").await.ok()?;
            portal
                .status
                .as_ref()
                .is_some_and(|s| certinext::controllers::is_ready(&s.conditions))
                .then_some(())
        },
    )
    .await;
    cluster
        .kubectl(&["delete", "certificate", "portal", "-n", "sslhub"])
        .await;
    cluster
        .kubectl(&["delete", "certificate", "storefront", "-n", "hooli-shop"])
        .await;
    cluster
        .kubectl(&[
            "delete",
            "subaccount",
            "hooli-shop",
            "-n",
            "sslhub",
            "--wait=false",
        ])
        .await;
    eventually("the sub-account's account deleted", || async {
        accounts
            .get_opt("hooli-shop")
            .await
            .ok()
            .and_then(|a| a.is_none().then_some(()))
    })
    .await;
    // A group losing a role: its binding is deleted.
    cluster
        .kubectl(&[
            "patch", "group", "sales", "-n", "sslhub", "--type", "merge", "-p",
            r#"{"spec":{"members":[{"kind":"User","name":"clerk@sslhub.example","role":"Viewer"}]}}"#,
        ])
        .await;
    eventually("the admin binding deleted", || async {
        let out = cluster
            .kubectl_output(&["get", "rolebinding", "sales-admin", "-n", "sslhub"])
            .await;
        (!out.status.success()).then_some(())
    })
    .await;
    assert!(operator.terminate().await.success());

    let used: std::collections::BTreeSet<(String, String, String)> = cluster
        .cluster
        .requests()
        .into_keys()
        .filter(|k| k.user_agent == "certinext-operator")
        .map(|k| (k.group, k.resource, k.verb))
        .collect();
    assert!(
        !used.is_empty(),
        "no request carried the operator's User-Agent"
    );
    let rendered = cluster
        .kubectl(&["kustomize", &repo_path("config/rbac")])
        .await;
    let mut allowed = std::collections::BTreeSet::new();
    for document in serde_yaml::Deserializer::from_str(&rendered) {
        let object: serde_json::Value =
            serde::Deserialize::deserialize(document).expect("kustomize renders YAML");
        let name = object["metadata"]["name"].as_str().unwrap_or_default();
        if matches!(
            (object["kind"].as_str(), name),
            (Some("ClusterRole"), "certinext-operator")
                | (Some("Role"), "certinext-leader-election")
        ) {
            allowed.extend(granted(&object["rules"]));
        }
    }
    let missing: Vec<_> = used.difference(&allowed).collect();
    assert!(
        missing.is_empty(),
        "the operator made requests its role does not allow (group, resource, verb): {missing:#?}"
    );
    let excused: std::collections::BTreeSet<(String, String, String)> = GRANTED_BUT_NOT_EXERCISED
        .iter()
        .map(|(g, r, v, _)| (g.to_string(), r.to_string(), v.to_string()))
        .collect();
    let unused: Vec<_> = allowed
        .difference(&used)
        .filter(|p| !excused.contains(*p))
        .collect();
    assert!(
        unused.is_empty(),
        "the role grants permissions the operator never used (group, resource, verb): {unused:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_namespaces_limits_the_operator_to_them() {
    use certinext::api::{Certificate, Group};
    let cluster = TestCluster::with_crds().await;
    let operator = Operator::start(&cluster, &["--watch-namespaces", "globex-platform"]).await;
    cluster
        .kubectl(&["apply", "-f", &repo_path("examples/enterprise.yaml")])
        .await;
    let has_status = |g: &Group| g.status.is_some();
    let platform: kube::Api<Group> =
        kube::Api::namespaced(cluster.client.clone(), "globex-platform");
    eventually("the watched namespace's group reconciled", || async {
        platform
            .get("platform-team")
            .await
            .ok()
            .filter(has_status)
            .map(|_| ())
    })
    .await;
    let certificates: kube::Api<Certificate> =
        kube::Api::namespaced(cluster.client.clone(), "globex-platform");
    eventually("the watched namespace's certificate issued", || async {
        let c = certificates.get("ingress-wildcard").await.ok()?;
        c.status
            .as_ref()
            .is_some_and(|s| certinext::controllers::is_ready(&s.conditions))
            .then_some(())
    })
    .await;
    // The account itself is cluster-scoped and reconciled; the other namespace is left alone.
    let payments: kube::Api<Group> =
        kube::Api::namespaced(cluster.client.clone(), "globex-payments");
    let untouched = payments.get("payments-team").await.expect("the group");
    assert!(untouched.status.is_none(), "{:?}", untouched.status);
    let ledger: kube::Api<Certificate> =
        kube::Api::namespaced(cluster.client.clone(), "globex-payments");
    let untouched = ledger.get("ledger-service").await.expect("the certificate");
    assert!(untouched.status.is_none(), "{:?}", untouched.status);
    assert!(operator.terminate().await.success());
}
