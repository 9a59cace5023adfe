//! End to end, with every controller running: the examples applied with kubectl end with
//! every Certificate Ready and its Secret valid — the key matches the certificate and the
//! chain verifies to `ca.crt`, in Rust and with openssl — once the reseller approves the
//! order of its sub-account that needs approval.

mod support;

use certinext::api::order::OrderState;
use certinext::api::{Certificate, Order};
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use support::cluster::{TestCluster, repo_path};
use support::wait::{is_ready, wait_until};

/// The text of a Secret's key.
fn text(secret: &Secret, key: &str) -> String {
    let bytes = secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .unwrap_or_else(|| panic!("the Secret has no {key}"));
    String::from_utf8(bytes.0.clone()).expect("PEM is text")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_example_certificate_is_issued_into_a_valid_secret() {
    let cluster = TestCluster::with_crds().await;
    let controllers = certinext::controllers::start(&cluster.client, &Default::default());
    for example in ["reseller", "enterprise", "retail"] {
        cluster
            .kubectl(&[
                "apply",
                "-f",
                &repo_path(&format!("examples/{example}.yaml")),
            ])
            .await;
    }

    // Orders that need approval (Initech's, a sub-account its reseller approves; the
    // enterprise example's group that asks for it) are approved as an approver would.
    let all_orders: Api<Order> = Api::all(cluster.client.clone());
    let all_certificates: Api<Certificate> = Api::all(cluster.client.clone());
    let approved = std::sync::atomic::AtomicUsize::new(0);
    support::cluster::eventually_within(
        "every certificate Ready, approving what waits",
        support::wait::TIMEOUT,
        || async {
            let approved = &approved;
            for order in all_orders.list(&Default::default()).await.ok()?.items {
                if order.status.as_ref().and_then(|s| s.state) != Some(OrderState::PendingApproval)
                    || order.spec.approval.is_some()
                {
                    continue;
                }
                let namespace = order.metadata.namespace.clone().unwrap_or_default();
                let name = order.metadata.name.clone().unwrap_or_default();
                let output = std::process::Command::new(env!("CARGO_BIN_EXE_certinext"))
                    .args(["approve", &name, "-n", &namespace, "--kubeconfig"])
                    .arg(cluster.cluster.kubeconfig_path())
                    .output()
                    .expect("certinext runs");
                assert!(
                    output.status.success(),
                    "{}",
                    String::from_utf8_lossy(&output.stderr)
                );
                approved.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            let list = all_certificates.list(&Default::default()).await.ok()?;
            list.items.iter().all(is_ready).then_some(())
        },
    )
    .await;
    assert!(
        approved.load(std::sync::atomic::Ordering::Relaxed) >= 1,
        "the sub-account's order waited for approval"
    );

    let all: Api<Certificate> = Api::all(cluster.client.clone());
    let certificates = all.list(&Default::default()).await.expect("list");
    assert!(
        certificates.items.len() >= 4,
        "the examples hold certificates"
    );
    let dir = tempfile::tempdir().expect("a directory");
    for certificate in certificates {
        let namespace = certificate.metadata.namespace.clone().unwrap_or_default();
        let name = certificate.metadata.name.clone().unwrap_or_default();
        let api: Api<Certificate> = Api::namespaced(cluster.client.clone(), &namespace);
        let ready = wait_until(&api, &name, is_ready).await;
        let status = ready.status.expect("status");
        assert!(status.revision >= Some(1), "{namespace}/{name}: {status:?}");

        let secrets: Api<Secret> = Api::namespaced(cluster.client.clone(), &namespace);
        let secret = secrets
            .get(&certificate.spec.secret_name)
            .await
            .expect("the Secret");
        assert_eq!(secret.type_.as_deref(), Some("kubernetes.io/tls"));
        let (crt, key, ca) = (
            text(&secret, "tls.crt"),
            text(&secret, "tls.key"),
            text(&secret, "ca.crt"),
        );
        let pair = certinext::pki::load_key_pem(&key).expect("tls.key loads");
        assert!(
            pair.matches_certificate_pem(&crt).expect("tls.crt parses"),
            "{namespace}/{name}: key and certificate differ"
        );
        certinext::pki::verify_chain(&crt, &ca, jiff::Timestamp::now())
            .unwrap_or_else(|e| panic!("{namespace}/{name}: the chain does not verify: {e}"));
        let info = certinext::pki::inspect_pem(&crt).expect("the leaf parses");
        for dns in &certificate.spec.dns_names {
            assert!(
                info.subject_alt_names.dns_names.contains(dns),
                "{namespace}/{name}: {dns} missing from {:?}",
                info.subject_alt_names.dns_names
            );
        }
        assert_eq!(
            status.serial_number.as_deref(),
            Some(info.serial_hex.as_str())
        );

        let (crt_path, ca_path) = (
            dir.path().join(format!("{name}.crt")),
            dir.path().join(format!("{name}-ca.crt")),
        );
        std::fs::write(&crt_path, &crt).expect("write");
        std::fs::write(&ca_path, &ca).expect("write");
        let verified = std::process::Command::new("openssl")
            .args(["verify", "-CAfile"])
            .arg(&ca_path)
            .arg("-untrusted")
            .arg(&crt_path)
            .arg(&crt_path)
            .output()
            .expect("openssl runs (.ci/run installs it)");
        assert!(
            verified.status.success(),
            "{namespace}/{name}: openssl verify: {}{}",
            String::from_utf8_lossy(&verified.stdout),
            String::from_utf8_lossy(&verified.stderr)
        );
    }
    for controller in controllers {
        controller.abort();
    }
}

/// An Enterprise account `shop` with 100.00 of credit, funded groups (name, funds), a root CA
/// and an auto-approved product at 10.00, as YAML.
fn shop(groups: &[(&str, &str)]) -> String {
    let mut yaml = "apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: certinext.io/v1alpha1
kind: Account
metadata: {name: shop}
spec:
  type: Enterprise
  namespaces: [shop]
  credits: [{id: c1, amount: \"100.00\"}]
  domains: [{name: shop.example}]
---
apiVersion: certinext.io/v1alpha1
kind: PrivateCA
metadata: {name: ca, namespace: shop}
spec: {subject: {commonName: Shop CA}}
---
apiVersion: certinext.io/v1alpha1
kind: Product
metadata: {name: tls, namespace: shop}
spec: {issuerRef: {name: ca}, template: ServerTLS, price: \"10.00\", autoApprove: true}
"
    .to_owned();
    for (name, funds) in groups {
        yaml.push_str(&format!(
            "---
apiVersion: certinext.io/v1alpha1
kind: Group
metadata: {{name: {name}, namespace: shop}}
spec: {{funds: \"{funds}\"}}
"
        ));
    }
    yaml
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_certificates_charge_stays_in_its_payers_totals_across_restarts() {
    use certinext::api::Group;
    let cluster = TestCluster::with_crds().await;
    let controllers = certinext::controllers::start(&cluster.client, &Default::default());
    let setup = shop(&[("team", "15.00")]);
    certinext::manifests::apply(&cluster.client, &setup, "test")
        .await
        .expect("setup");
    let certificate = |name: &str| {
        format!(
            "apiVersion: certinext.io/v1alpha1
kind: Certificate
metadata: {{name: {name}, namespace: shop}}
spec: {{secretName: {name}-tls, productRef: {{name: tls}}, groupRef: {{name: team}}, dnsNames: [{name}.shop.example]}}
"
        )
    };
    certinext::manifests::apply(&cluster.client, &certificate("first"), "test")
        .await
        .expect("certificate");
    let certificates: Api<Certificate> = Api::namespaced(cluster.client.clone(), "shop");
    wait_until(&certificates, "first", is_ready).await;
    let groups: Api<Group> = Api::namespaced(cluster.client.clone(), "shop");
    let spent = |g: &Group| {
        g.status
            .as_ref()
            .and_then(|s| s.spent)
            .map(|m| m.to_string())
    };
    wait_until(&groups, "team", move |g| {
        spent(g).as_deref() == Some("10.00")
    })
    .await;

    // Deleting the Certificate collects its Orders; their charge stays with the group.
    certificates
        .delete("first", &Default::default())
        .await
        .expect("delete");
    let orders: Api<Order> = Api::namespaced(cluster.client.clone(), "shop");
    support::cluster::eventually("the orders collected", || async {
        orders
            .list(&Default::default())
            .await
            .ok()
            .and_then(|l| l.items.is_empty().then_some(()))
    })
    .await;
    let team = groups.get("team").await.expect("group");
    let archive = team
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get("certinext.io/ledger-archive"))
        .expect("the group keeps the archive");
    assert!(archive.contains("\"spent\":\"10.00\""), "{archive}");
    assert_eq!(spent(&team).as_deref(), Some("10.00"), "{:?}", team.status);

    // After a restart the books still hold it: 15.00 less 10.00 cannot pay another 10.00.
    for controller in controllers {
        controller.abort();
    }
    let controllers = certinext::controllers::start(&cluster.client, &Default::default());
    certinext::manifests::apply(&cluster.client, &certificate("second"), "test")
        .await
        .expect("certificate");
    let rejected = wait_until(&orders, "second-1", |o| {
        o.status.as_ref().and_then(|s| s.state) == Some(OrderState::Rejected)
    })
    .await;
    let message = rejected
        .status
        .and_then(|s| s.conditions.into_iter().find(|c| c.type_ == "Ready"))
        .map(|c| c.message)
        .unwrap_or_default();
    assert!(message.contains("5.00"), "{message}");
    let team = groups.get("team").await.expect("group");
    assert_eq!(spent(&team).as_deref(), Some("10.00"));
    for controller in controllers {
        controller.abort();
    }
}

/// The wallet of Account `shop` as its status shows it: allocated, spent, balance.
fn shop_wallet(account: &certinext::api::Account) -> Option<(String, String, String)> {
    let wallet = account.status.as_ref()?.wallet.as_ref()?;
    Some((
        wallet.allocated.to_string(),
        wallet.spent.to_string(),
        wallet.balance.to_string(),
    ))
}

/// Waits until Account `shop`'s wallet shows `allocated`, `spent` and `balance`.
async fn wait_wallet(cluster: &TestCluster, allocated: &str, spent: &str, balance: &str) {
    let accounts: Api<certinext::api::Account> = Api::all(cluster.client.clone());
    let wanted = Some((allocated.to_owned(), spent.to_owned(), balance.to_owned()));
    wait_until(&accounts, "shop", move |a| shop_wallet(a) == wanted).await;
}

/// Deletes Certificate `name` in `shop` and waits until its Orders are collected.
async fn delete_certificate(cluster: &TestCluster, name: &str) {
    let certificates: Api<Certificate> = Api::namespaced(cluster.client.clone(), "shop");
    certificates
        .delete(name, &Default::default())
        .await
        .expect("delete");
    let orders: Api<Order> = Api::namespaced(cluster.client.clone(), "shop");
    let selector = format!("certinext.io/certificate-name={name}");
    support::cluster::eventually("the orders collected", || async {
        orders
            .list(&kube::api::ListParams::default().labels(&selector))
            .await
            .ok()
            .and_then(|l| l.items.is_empty().then_some(()))
    })
    .await;
}

/// What a group spent stays spent when the group goes: the account's wallet takes it over,
/// counted once, whether the group's Orders are deleted before it or after it, and a group
/// being deleted pays for nothing new.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_groups_spend_moves_to_its_account_counted_once() {
    use certinext::api::Group;
    let cluster = TestCluster::with_crds().await;
    let controllers = certinext::controllers::start(&cluster.client, &Default::default());
    let setup = shop(&[("team", "30.00"), ("ops", "20.00")]);
    certinext::manifests::apply(&cluster.client, &setup, "test")
        .await
        .expect("setup");
    let certificate = |name: &str, group: &str| {
        format!(
            "apiVersion: certinext.io/v1alpha1
kind: Certificate
metadata: {{name: {name}, namespace: shop}}
spec: {{secretName: {name}-tls, productRef: {{name: tls}}, groupRef: {{name: {group}}}, dnsNames: [{name}.shop.example]}}
"
        )
    };
    let certificates: Api<Certificate> = Api::namespaced(cluster.client.clone(), "shop");
    for (name, group) in [("a", "team"), ("b", "team"), ("c", "ops")] {
        certinext::manifests::apply(&cluster.client, &certificate(name, group), "test")
            .await
            .expect("certificate");
    }
    for name in ["a", "b", "c"] {
        wait_until(&certificates, name, is_ready).await;
    }
    let groups: Api<Group> = Api::namespaced(cluster.client.clone(), "shop");
    for (name, spent) in [("team", "20.00"), ("ops", "10.00")] {
        wait_until(&groups, name, move |g| {
            g.status
                .as_ref()
                .and_then(|s| s.spent)
                .map(|m| m.to_string())
                == Some(spent.into())
        })
        .await;
    }
    // The groups' spending is within their allocations: the account shows none of it.
    wait_wallet(&cluster, "50.00", "0.00", "50.00").await;

    // Orders first: ops's Order goes (its charge into ops's archive), then ops.
    delete_certificate(&cluster, "c").await;
    groups
        .delete("ops", &Default::default())
        .await
        .expect("delete");
    support::wait::wait_gone(&groups, "ops").await;
    wait_wallet(&cluster, "30.00", "10.00", "60.00").await;

    // The group first: team is deleted with its Orders still live. A finalizer of the test's
    // own keeps it terminating, so that its refusal to pay can be seen.
    groups
        .patch(
            "team",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(serde_json::json!({
                "metadata": {"finalizers": ["certinext.io/group", "test.certinext.io/hold"]}
            })),
        )
        .await
        .expect("hold");
    groups
        .delete("team", &Default::default())
        .await
        .expect("delete");
    wait_wallet(&cluster, "0.00", "30.00", "70.00").await;
    wait_until(&groups, "team", |g| {
        g.metadata.finalizers.as_deref() == Some(&["test.certinext.io/hold".to_owned()][..])
    })
    .await;
    certinext::manifests::apply(&cluster.client, &certificate("d", "team"), "test")
        .await
        .expect("certificate");
    let orders: Api<Order> = Api::namespaced(cluster.client.clone(), "shop");
    let rejected = wait_until(&orders, "d-1", |o| {
        o.status.as_ref().and_then(|s| s.state) == Some(OrderState::Rejected)
    })
    .await;
    let status = rejected.status.expect("status");
    assert!(status.transactions.is_empty(), "{status:?}");
    let condition = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .expect("Ready");
    assert_eq!(condition.reason, "Rejected", "{condition:?}");
    assert!(
        condition
            .message
            .contains("Group \"team\" is being deleted and pays for no new orders"),
        "{}",
        condition.message
    );

    // Across a restart, team's Orders go after it: their charges are not counted again.
    for controller in controllers {
        controller.abort();
    }
    let controllers = certinext::controllers::start(&cluster.client, &Default::default());
    for name in ["a", "b", "d"] {
        delete_certificate(&cluster, name).await;
    }
    groups
        .patch(
            "team",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Json::<()>(
                serde_json::from_value(serde_json::json!([
                    {"op": "remove", "path": "/metadata/finalizers"}
                ]))
                .expect("a patch"),
            ),
        )
        .await
        .expect("release");
    support::wait::wait_gone(&groups, "team").await;
    // An order the account pays itself settles the account's books: 70.00 less 10.00.
    certinext::manifests::apply(
        &cluster.client,
        "apiVersion: certinext.io/v1alpha1
kind: Certificate
metadata: {name: e, namespace: shop}
spec: {secretName: e-tls, productRef: {name: tls}, dnsNames: [e.shop.example]}
",
        "test",
    )
    .await
    .expect("certificate");
    wait_until(&certificates, "e", is_ready).await;
    wait_wallet(&cluster, "0.00", "40.00", "60.00").await;
    let accounts: Api<certinext::api::Account> = Api::all(cluster.client.clone());
    let shop = accounts.get("shop").await.expect("shop");
    assert_eq!(
        shop_wallet(&shop),
        Some(("0.00".into(), "40.00".into(), "60.00".into()))
    );
    for controller in controllers {
        controller.abort();
    }
}

/// Deciding to order — a first issuance, then a renewal — rests on the cached Secrets and
/// Orders once they show the controller's own last writes: no Secret is read from the API
/// server for it, each Order is charged once, and each status is written once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_are_decided_from_caches_that_show_the_controllers_own_writes() {
    use certinext::api::{Group, Product};
    let cluster = TestCluster::with_crds().await;
    let controllers = certinext::controllers::start(&cluster.client, &Default::default());
    certinext::manifests::apply(&cluster.client, &shop(&[("team", "50.00")]), "test")
        .await
        .expect("setup");
    let products: Api<Product> = Api::namespaced(cluster.client.clone(), "shop");
    wait_until(&products, "tls", is_ready).await;
    cluster.cluster.reset_requests();

    certinext::manifests::apply(
        &cluster.client,
        "apiVersion: certinext.io/v1alpha1
kind: Certificate
metadata: {name: web, namespace: shop}
spec: {secretName: web-tls, productRef: {name: tls}, groupRef: {name: team}, dnsNames: [web.shop.example], duration: 2160h}
",
        "test",
    )
    .await
    .expect("certificate");
    let certificates: Api<Certificate> = Api::namespaced(cluster.client.clone(), "shop");
    let at_revision = |revision: i64| {
        move |c: &Certificate| {
            is_ready(c) && c.status.as_ref().and_then(|s| s.revision) == Some(revision)
        }
    };
    wait_until(&certificates, "web", at_revision(1)).await;
    let secrets: Api<Secret> = Api::namespaced(cluster.client.clone(), "shop");
    let first = secrets.get("web-tls").await.expect("the Secret");
    cluster.cluster.reset_requests();
    certificates
        .patch(
            "web",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(serde_json::json!({"spec": {"duration": "2159h"}})),
        )
        .await
        .expect("a new duration");
    wait_until(&certificates, "web", at_revision(2)).await;
    let count = |verb: &str, resource: &str| -> u64 {
        cluster
            .cluster
            .requests()
            .into_iter()
            .filter(|(kind, _)| kind.verb == verb && kind.resource == resource)
            .map(|(_, count)| count)
            .sum()
    };
    // The decision read no Secret (the test reads one below), and the certificate came
    // from the Order controller's write, not from reading the Issued Order again.
    for resource in ["secrets", "orders"] {
        assert_eq!(
            count("get", resource),
            0,
            "{resource}: {:#?}",
            cluster.cluster.requests()
        );
    }
    let renewed = secrets.get("web-tls").await.expect("the Secret");
    assert_ne!(text(&renewed, "tls.crt"), text(&first, "tls.crt"));
    let key = certinext::pki::load_key_pem(&text(&renewed, "tls.key")).expect("the key");
    let info = certinext::pki::inspect_pem(&text(&renewed, "tls.crt")).expect("the certificate");
    assert!(key.matches_public_key_der(&info.public_key_der));
    let orders: Api<Order> = Api::namespaced(cluster.client.clone(), "shop");
    for name in ["web-1", "web-2"] {
        wait_until(&orders, name, |o| {
            o.status.as_ref().and_then(|s| s.state) == Some(OrderState::Issued)
        })
        .await;
    }
    let groups: Api<Group> = Api::namespaced(cluster.client.clone(), "shop");
    wait_until(&groups, "team", |g| {
        g.status
            .as_ref()
            .and_then(|s| s.spent)
            .map(|m| m.to_string())
            == Some("20.00".into())
    })
    .await;
    assert_eq!(
        orders
            .list(&Default::default())
            .await
            .expect("list")
            .items
            .len(),
        2
    );
    // Counted once every write of the renewal is in: the Certificate's status was written
    // once (Ready; the Order was issued before it could be shown as issuing), not again by a
    // reconcile of a copy older than the controller's own last status write.
    assert_eq!(
        count("patch", "certificates/status"),
        1,
        "{:#?}",
        cluster.cluster.requests()
    );
    // The renewal's Order was charged and issued in one status write.
    assert_eq!(
        count("patch", "orders/status"),
        1,
        "{:#?}",
        cluster.cluster.requests()
    );
    for controller in controllers {
        controller.abort();
    }
}
