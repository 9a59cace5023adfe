//! The Order controller on devcluster: orders priced, approved, charged exactly once and
//! issued; money under concurrency and across a restart; the wallet figures that follow.
//!
//! The CA Secret is made here with `pki::issue_root_ca` and the PrivateCA set Ready through
//! its status, as the PrivateCA controller would.

mod support;

use std::collections::BTreeMap;

use certinext::api::order::{OrderState, PayerKind, TransactionType};
use certinext::api::{Account, Group, Order, PrivateCA, SubAccount};
use certinext::billing::Money;
use certinext::billing::ledger;
use certinext::pki;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use support::cluster::{TestCluster, eventually, repo_path};

fn m(text: &str) -> Money {
    Money::parse(text).expect("an amount")
}

/// Applies YAML documents with server-side apply.
async fn apply(cluster: &TestCluster, yaml: &str) {
    certinext::manifests::apply(&cluster.client, yaml, "test")
        .await
        .expect("the manifests apply");
}

/// A root CA `name` in `namespace`: its Secret as the contract lays it out, and the
/// PrivateCA set Ready through the status subresource.
async fn ready_root_ca(cluster: &TestCluster, namespace: &str, name: &str, common_name: &str) {
    let client = &cluster.client;
    let cas: Api<PrivateCA> = Api::namespaced(client.clone(), namespace);
    let ca: PrivateCA = serde_json::from_value(json!({
        "apiVersion": "certinext.io/v1alpha1", "kind": "PrivateCA",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"subject": {"commonName": common_name}, "duration": "87600h"}
    }))
    .expect("a PrivateCA");
    let ca = cas
        .create(&PostParams::default(), &ca)
        .await
        .expect("PrivateCA created");
    let key = pki::generate_key_for(certinext::api::common::KeyAlgorithm::EcdsaP256).expect("key");
    let profile =
        pki::CaProfile::from_spec(&ca.spec, jiff::Timestamp::now()).expect("a CA profile");
    let root = pki::issue_root_ca(&profile, &key).expect("a root CA");
    let key_pem = key
        .to_pem(certinext::api::common::PrivateKeyEncoding::Pkcs8)
        .expect("key PEM");
    let secret: Secret = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
        "metadata": {"name": format!("{name}-ca"), "namespace": namespace,
            "labels": {"app.kubernetes.io/managed-by": "certinext-operator", "certinext.io/private-ca": name}},
    }))
    .map(|mut secret: Secret| {
        let bytes = |text: String| k8s_openapi::ByteString(text.into_bytes());
        secret.data = Some(
            [
                ("tls.crt".to_owned(), bytes(root.chain_pem)),
                ("tls.key".to_owned(), bytes(key_pem)),
                ("ca.crt".to_owned(), bytes(root.root_pem)),
            ]
            .into(),
        );
        secret
    })
    .expect("a Secret");
    Api::<Secret>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &secret)
        .await
        .expect("CA Secret created");
    let status = json!({"status": {
        "secretName": format!("{name}-ca"),
        "conditions": [{"type": "Ready", "status": "True", "reason": "Ready", "message": "test CA",
            "lastTransitionTime": "2025-01-01T00:00:00Z"}]
    }});
    cas.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .expect("PrivateCA Ready");
}

/// A CSR for `dns_names` with a fresh ECDSA P-256 key (kept nowhere).
fn csr(dns_names: &[&str]) -> String {
    let spec: certinext::api::CertificateSpec = serde_json::from_value(json!({
        "secretName": "unused", "dnsNames": dns_names, "issuerRef": {"name": "unused"}
    }))
    .expect("a Certificate spec");
    let key = pki::generate_key_for(certinext::api::common::KeyAlgorithm::EcdsaP256).expect("key");
    pki::build_csr(&spec, &key).expect("a CSR")
}

/// An Order as the Certificate controller creates it.
fn order(
    name: &str,
    namespace: &str,
    product: (&str, &str),
    group: Option<&str>,
    dns: &[&str],
) -> Order {
    let mut spec = json!({
        "certificateRef": {"name": name}, "revision": 1, "type": "Purchase",
        "request": csr(dns), "productRef": {"name": product.0, "namespace": product.1},
        "duration": "2160h",
    });
    if let Some(group) = group {
        spec["groupRef"] = json!({"name": group});
    }
    serde_json::from_value(json!({
        "apiVersion": "certinext.io/v1alpha1", "kind": "Order",
        "metadata": {"name": name, "namespace": namespace,
            "labels": {"certinext.io/certificate-name": name, "app.kubernetes.io/managed-by": "certinext-operator"}},
        "spec": spec,
    }))
    .expect("an Order")
}

fn state(order: &Order) -> Option<OrderState> {
    order.status.as_ref().and_then(|s| s.state)
}

fn transactions(order: &Order) -> Vec<(TransactionType, String)> {
    order
        .status
        .iter()
        .flat_map(|s| &s.transactions)
        .map(|t| (t.transaction_type, t.amount.to_string()))
        .collect()
}

fn ready_message(order: &Order) -> String {
    order
        .status
        .iter()
        .flat_map(|s| &s.conditions)
        .find(|c| c.type_ == "Ready")
        .map(|c| format!("{} {}: {}", c.status, c.reason, c.message))
        .unwrap_or_default()
}

/// Waits until the order reaches `wanted`; says where it is if it does not.
async fn wait_state(orders: &Api<Order>, name: &str, wanted: OrderState) -> Order {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let order = orders.get_opt(name).await.ok().flatten();
        if let Some(order) = order.as_ref().filter(|o| state(o) == Some(wanted)) {
            return order.clone();
        }
        if tokio::time::Instant::now() > deadline {
            panic!(
                "Order {name} did not reach {wanted}: {:?} {}",
                order.as_ref().and_then(state),
                order.as_ref().map(ready_message).unwrap_or_default()
            );
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Waits until `check` holds for the object `name`.
async fn wait_for<K>(api: &Api<K>, name: &str, what: &str, check: impl Fn(&K) -> bool) -> K
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned,
    K::DynamicType: Default,
{
    eventually(what, || async {
        api.get_opt(name).await.ok().flatten().filter(|o| check(o))
    })
    .await
}

/// An Enterprise account `acme` with 1000.00 credited, a group `team` funded with
/// `group_funds`, a CA and a product `web` at `price`.
async fn enterprise(cluster: &TestCluster, group_funds: &str, price: &str) {
    apply(
        cluster,
        &format!(
            "apiVersion: v1
kind: Namespace
metadata: {{name: acme}}
---
apiVersion: certinext.io/v1alpha1
kind: Account
metadata: {{name: acme}}
spec:
  type: Enterprise
  namespaces: [acme]
  credits: [{{id: c1, amount: \"1000.00\"}}]
  domains: [{{name: acme.example}}]
---
apiVersion: certinext.io/v1alpha1
kind: Group
metadata: {{name: team, namespace: acme}}
spec: {{funds: \"{group_funds}\"}}
---
apiVersion: certinext.io/v1alpha1
kind: Product
metadata: {{name: web, namespace: acme}}
spec:
  issuerRef: {{name: acme-ca}}
  template: ServerTLS
  maxValidity: 2160h
  allowedKeyAlgorithms: [ECDSA-P256]
  price: \"{price}\"
"
        ),
    )
    .await;
    ready_root_ca(cluster, "acme", "acme-ca", "Acme Root").await;
    let products: Api<certinext::api::Product> = Api::namespaced(cluster.client.clone(), "acme");
    wait_for(&products, "web", "Product web Ready", |p| {
        p.status
            .as_ref()
            .is_some_and(|s| certinext::controllers::is_ready(&s.conditions))
    })
    .await;
    let groups: Api<Group> = Api::namespaced(cluster.client.clone(), "acme");
    wait_for(&groups, "team", "Group team funded", |g| {
        g.status.as_ref().and_then(|s| s.allocated) == Some(m(group_funds))
    })
    .await;
}

fn stop(controllers: Vec<tokio::task::JoinHandle<()>>) {
    for controller in controllers {
        controller.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_auto_approved_order_is_charged_once_and_issued_and_the_wallets_show_it() {
    let cluster = TestCluster::with_crds().await;
    let controllers =
        certinext::controllers::start_except(&cluster.client, &Default::default(), &["PrivateCA"]);
    enterprise(&cluster, "100.00", "10.00").await;
    let orders: Api<Order> = Api::namespaced(cluster.client.clone(), "acme");

    orders
        .create(
            &PostParams::default(),
            &order(
                "www-1",
                "acme",
                ("web", "acme"),
                Some("team"),
                &["www.acme.example"],
            ),
        )
        .await
        .expect("Order created");
    let issued = wait_state(&orders, "www-1", OrderState::Issued).await;
    let status = issued.status.clone().expect("status");
    assert_eq!(
        transactions(&issued),
        [(TransactionType::Purchase, "10.00".into())]
    );
    assert_eq!(status.price, Some(m("10")));
    assert_eq!(status.currency.as_deref(), Some("USD"));
    let payer = status.payer.clone().expect("payer");
    assert_eq!(
        (payer.kind, payer.name.as_str()),
        (PayerKind::Group, "team")
    );
    let chain = status.certificate.clone().expect("certificate");
    let root = status.ca.clone().expect("ca");
    pki::verify_chain(&chain, &root, jiff::Timestamp::now()).expect("the chain verifies");
    let leaf = pki::inspect_pem(&chain).expect("the leaf parses");
    assert_eq!(leaf.subject_alt_names.dns_names, ["www.acme.example"]);
    assert_eq!(
        status.serial_number.as_deref(),
        Some(leaf.serial_hex.as_str())
    );
    assert!(
        ready_message(&issued).starts_with("True Issued"),
        "{}",
        ready_message(&issued)
    );

    // Without a group, the account wallet pays.
    orders
        .create(
            &PostParams::default(),
            &order(
                "api-1",
                "acme",
                ("web", "acme"),
                None,
                &["api.acme.example"],
            ),
        )
        .await
        .expect("Order created");
    let issued = wait_state(&orders, "api-1", OrderState::Issued).await;
    let payer = issued.status.and_then(|s| s.payer).expect("payer");
    assert_eq!(
        (payer.kind, payer.name.as_str()),
        (PayerKind::Account, "acme")
    );

    // A name outside the account's domains is Rejected, never charged.
    orders
        .create(
            &PostParams::default(),
            &order(
                "evil-1",
                "acme",
                ("web", "acme"),
                Some("team"),
                &["www.evil.example"],
            ),
        )
        .await
        .expect("Order created");
    let rejected = wait_state(&orders, "evil-1", OrderState::Rejected).await;
    assert!(transactions(&rejected).is_empty());
    assert!(
        ready_message(&rejected).contains("www.evil.example"),
        "{}",
        ready_message(&rejected)
    );

    // The figures: the group paid 10.00 of its 100.00, the account 10.00 of what it kept.
    let groups: Api<Group> = Api::namespaced(cluster.client.clone(), "acme");
    let team = wait_for(&groups, "team", "Group team spent 10.00", |g| {
        g.status.as_ref().and_then(|s| s.spent) == Some(m("10"))
    })
    .await;
    let team = team.status.expect("status");
    assert_eq!((team.balance, team.certificates), (Some(m("90")), Some(1)));
    let accounts: Api<Account> = Api::all(cluster.client.clone());
    let acme = wait_for(&accounts, "acme", "Account acme spent 10.00", |a| {
        a.status
            .as_ref()
            .and_then(|s| s.wallet.as_ref())
            .is_some_and(|w| w.spent == m("10"))
    })
    .await;
    let wallet = acme.status.and_then(|s| s.wallet).expect("wallet");
    assert_eq!(
        (wallet.credited, wallet.allocated, wallet.balance),
        (m("1000"), m("100"), m("890"))
    );
    stop(controllers);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sub_accounts_pay_their_price_list_and_wait_for_the_resellers_approval() {
    let cluster = TestCluster::with_crds().await;
    let controllers =
        certinext::controllers::start_except(&cluster.client, &Default::default(), &["PrivateCA"]);
    // The reseller example without its CAs (made here) and its Certificates.
    let example = std::fs::read_to_string(repo_path("examples/reseller.yaml")).expect("example");
    let documents: Vec<&str> = example
        .split("\n---\n")
        .filter(|d| !d.contains("kind: PrivateCA") && !d.contains("kind: Certificate"))
        .collect();
    let manifest = cluster.file("reseller.yaml", &documents.join("\n---\n"));
    cluster
        .kubectl(&[
            "apply",
            "--server-side",
            "-f",
            manifest.to_str().unwrap_or_default(),
        ])
        .await;
    ready_root_ca(&cluster, "sslhub", "sslhub-issuing", "SSLHub Issuing CA").await;
    let subs: Api<SubAccount> = Api::namespaced(cluster.client.clone(), "sslhub");
    for sub in ["initech", "hooli-shop"] {
        wait_for(&subs, sub, &format!("SubAccount {sub} Ready"), |s| {
            s.status
                .as_ref()
                .is_some_and(|s| certinext::controllers::is_ready(&s.conditions))
        })
        .await;
    }

    // hooli-shop has no price list: the product's base price, from its own wallet.
    let hooli: Api<Order> = Api::namespaced(cluster.client.clone(), "hooli-shop");
    hooli
        .create(
            &PostParams::default(),
            &order(
                "storefront-1",
                "hooli-shop",
                ("basic-tls", "sslhub"),
                None,
                &["www.hooli-shop.example"],
            ),
        )
        .await
        .expect("Order created");
    let issued = wait_state(&hooli, "storefront-1", OrderState::Issued).await;
    assert_eq!(
        transactions(&issued),
        [(TransactionType::Purchase, "20.00".into())]
    );
    let payer = issued.status.and_then(|s| s.payer).expect("payer");
    assert_eq!(
        (payer.kind, payer.name.as_str()),
        (PayerKind::Account, "hooli-shop")
    );
    let sub = wait_for(
        &subs,
        "hooli-shop",
        "SubAccount hooli-shop spent 20.00",
        |s| s.status.as_ref().and_then(|s| s.spent) == Some(m("20")),
    )
    .await;
    assert_eq!(sub.status.and_then(|s| s.balance), Some(m("180")));

    // initech is on the gold list and needs the reseller's approval.
    let initech: Api<Order> = Api::namespaced(cluster.client.clone(), "initech");
    initech
        .create(
            &PostParams::default(),
            &order(
                "intranet-1",
                "initech",
                ("basic-tls", "sslhub"),
                None,
                &["intranet.initech.example"],
            ),
        )
        .await
        .expect("Order created");
    let pending = wait_state(&initech, "intranet-1", OrderState::PendingApproval).await;
    assert_eq!(pending.status.as_ref().and_then(|s| s.price), Some(m("12")));
    assert!(transactions(&pending).is_empty());
    assert!(
        ready_message(&pending).contains("SubAccount \"initech\""),
        "{}",
        ready_message(&pending)
    );

    let kubeconfig = cluster
        .cluster
        .kubeconfig_path()
        .to_str()
        .unwrap_or_default()
        .to_owned();
    let certinext = |args: &[&str]| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_certinext"));
        command.args(args).args(["--kubeconfig", &kubeconfig]);
        command.output().expect("certinext runs")
    };
    let approved = certinext(&[
        "approve",
        "intranet-1",
        "-n",
        "initech",
        "--reason",
        "known customer",
    ]);
    assert!(
        approved.status.success(),
        "{}",
        String::from_utf8_lossy(&approved.stderr)
    );
    let issued = wait_state(&initech, "intranet-1", OrderState::Issued).await;
    assert_eq!(
        transactions(&issued),
        [(TransactionType::Purchase, "12.00".into())]
    );
    let approval = issued.spec.approval.clone().expect("approval");
    let user: Value = serde_yaml::from_str(cluster.cluster.kubeconfig()).expect("kubeconfig");
    assert_eq!(
        Some(approval.decided_by.as_str()),
        user["contexts"][0]["context"]["user"].as_str()
    );
    assert_eq!(approval.reason.as_deref(), Some("known customer"));

    // A decision is final, and says by whom.
    let again = certinext(&["deny", "intranet-1", "-n", "initech"]);
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(!again.status.success());
    assert!(stderr.contains("already approved by"), "{stderr}");
    let missing = certinext(&["approve", "nothing-1", "-n", "initech"]);
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("not found"),
        "{}",
        String::from_utf8_lossy(&missing.stderr)
    );

    // Denied: never charged.
    initech
        .create(
            &PostParams::default(),
            &order(
                "vpn-1",
                "initech",
                ("basic-tls", "sslhub"),
                None,
                &["vpn.initech.example"],
            ),
        )
        .await
        .expect("Order created");
    wait_state(&initech, "vpn-1", OrderState::PendingApproval).await;
    let denied = certinext(&[
        "deny",
        "vpn-1",
        "-n",
        "initech",
        "--reason",
        "not in the contract",
    ]);
    assert!(
        denied.status.success(),
        "{}",
        String::from_utf8_lossy(&denied.stderr)
    );
    let denied = wait_state(&initech, "vpn-1", OrderState::Denied).await;
    assert!(transactions(&denied).is_empty());
    assert!(
        ready_message(&denied).contains("not in the contract"),
        "{}",
        ready_message(&denied)
    );
    let sub = wait_for(&subs, "initech", "SubAccount initech spent 12.00", |s| {
        s.status.as_ref().and_then(|s| s.spent) == Some(m("12"))
    })
    .await;
    assert_eq!(sub.status.and_then(|s| s.balance), Some(m("488")));
    stop(controllers);
}

/// The charges recorded on every order in `namespace`, by order.
async fn charges(orders: &Api<Order>) -> BTreeMap<String, Order> {
    orders
        .list(&ListParams::default())
        .await
        .expect("Orders listed")
        .items
        .into_iter()
        .map(|o| (o.metadata.name.clone().unwrap_or_default(), o))
        .collect()
}

/// Each order holds at most one charge; returns the sum of charges net of refunds.
fn audit(orders: &BTreeMap<String, Order>) -> Money {
    let mut total = Money::ZERO;
    for (name, order) in orders {
        let status = order.status.clone().unwrap_or_default();
        let charges = status
            .transactions
            .iter()
            .filter(|t| t.transaction_type != TransactionType::Refund)
            .count();
        assert!(charges <= 1, "Order {name} was charged {charges} times");
        if let Some(charge) = ledger::charge(&status) {
            total = total.checked_add(charge.amount).expect("sum");
        }
        if let Some(refund) = ledger::refund(&status) {
            total = total.checked_sub(refund.amount).expect("sum");
        }
    }
    total
}

/// Creates `count` orders at once for the group team (`prefix0-1`, …), and waits until every
/// order of the namespace has ended.
async fn order_at_once(orders: &Api<Order>, prefix: &str, count: usize) -> BTreeMap<String, Order> {
    let creates = (0..count).map(|i| {
        let orders = orders.clone();
        async move {
            let name = format!("{prefix}{i}-1");
            let dns = format!("{prefix}{i}.acme.example");
            orders
                .create(
                    &PostParams::default(),
                    &order(&name, "acme", ("web", "acme"), Some("team"), &[&dns]),
                )
                .await
                .expect("Order created");
        }
    });
    futures_util::future::join_all(creates).await;
    eventually("every order ends", || async {
        let all = charges(orders).await;
        all.values()
            .all(|o| state(o).is_some_and(OrderState::is_terminal))
            .then_some(all)
    })
    .await
}

/// Exactly five orders at 10.00 were charged to team's 50.00, and the others were refused
/// for want of funds, with nothing charged.
fn five_charged_and_the_rest_refused(all: &BTreeMap<String, Order>) {
    let count = |wanted: OrderState| all.values().filter(|o| state(o) == Some(wanted)).count();
    assert_eq!(
        (count(OrderState::Issued), count(OrderState::Rejected)),
        (5, all.len() - 5),
        "{:#?}",
        all.values().map(ready_message).collect::<Vec<_>>()
    );
    assert_eq!(audit(all), m("50"));
    for rejected in all
        .values()
        .filter(|o| state(o) == Some(OrderState::Rejected))
    {
        assert!(transactions(rejected).is_empty());
        let message = ready_message(rejected);
        assert!(
            message.contains("Group acme/team cannot pay 10.00 USD: it has 0.00 USD available"),
            "{message}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_orders_never_overdraw_a_group() {
    let cluster = TestCluster::with_crds().await;
    let controllers =
        certinext::controllers::start_except(&cluster.client, &Default::default(), &["PrivateCA"]);
    // 50.00 covers five of the eight orders at 10.00.
    enterprise(&cluster, "50.00", "10.00").await;
    let orders: Api<Order> = Api::namespaced(cluster.client.clone(), "acme");
    let all = order_at_once(&orders, "host", 8).await;
    five_charged_and_the_rest_refused(&all);
    let groups: Api<Group> = Api::namespaced(cluster.client.clone(), "acme");
    let team = wait_for(&groups, "team", "Group team spent 50.00", |g| {
        g.status.as_ref().and_then(|s| s.spent) == Some(m("50"))
    })
    .await;
    assert_eq!(team.status.and_then(|s| s.balance), Some(Money::ZERO));
    stop(controllers);
}

/// Charges are written after the wallet's lock is let go. While slow writes are in flight,
/// the charges decided after them count them (no overdraft), and a write the API server
/// refuses takes its charge back: exactly the five orders the funds cover are charged,
/// whatever the conflicts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn charges_in_flight_are_counted_and_refused_writes_are_taken_back() {
    let cluster = TestCluster::with_crds().await;
    let controllers =
        certinext::controllers::start_except(&cluster.client, &Default::default(), &["PrivateCA"]);
    // 50.00 covers five of the twelve orders at 10.00.
    enterprise(&cluster, "50.00", "10.00").await;
    // Every patch is slow, and one in six is refused with 409 Conflict.
    cluster.cluster.set_faults(devcluster::Faults {
        conflict_rate: 0.16,
        verbs: vec!["patch".into()],
        latency: std::time::Duration::from_millis(300),
        ..Default::default()
    });
    let orders: Api<Order> = Api::namespaced(cluster.client.clone(), "acme");
    let all = order_at_once(&orders, "slow", 12).await;
    let (_, conflicts, _) = cluster.cluster.injected_faults();
    cluster.cluster.set_faults(devcluster::Faults::default());
    assert!(conflicts > 0, "the test refused some writes");
    five_charged_and_the_rest_refused(&all);
    stop(controllers);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_in_the_middle_charges_no_order_twice() {
    let cluster = TestCluster::with_crds().await;
    let controllers =
        certinext::controllers::start_except(&cluster.client, &Default::default(), &["PrivateCA"]);
    enterprise(&cluster, "100.00", "10.00").await;
    let orders: Api<Order> = Api::namespaced(cluster.client.clone(), "acme");
    for i in 0..16 {
        let name = format!("node{i}-1");
        let dns = format!("node{i}.acme.example");
        orders
            .create(
                &PostParams::default(),
                &order(&name, "acme", ("web", "acme"), Some("team"), &[&dns]),
            )
            .await
            .expect("Order created");
    }
    // Stop everything once some orders are charged and others are not yet.
    eventually("a few charges", || async {
        let charged = charges(&orders)
            .await
            .values()
            .filter(|o| !transactions(o).is_empty())
            .count();
        (charged >= 2).then_some(())
    })
    .await;
    stop(controllers);
    let before = charges(&orders).await;
    assert!(
        before
            .values()
            .any(|o| !state(o).is_some_and(OrderState::is_terminal)),
        "the restart should come while orders are in flight"
    );

    let controllers =
        certinext::controllers::start_except(&cluster.client, &Default::default(), &["PrivateCA"]);
    let all = eventually("every order ends", || async {
        let all = charges(&orders).await;
        all.values()
            .all(|o| state(o).is_some_and(OrderState::is_terminal))
            .then_some(all)
    })
    .await;
    let issued = all
        .values()
        .filter(|o| state(o) == Some(OrderState::Issued))
        .count();
    let rejected = all
        .values()
        .filter(|o| state(o) == Some(OrderState::Rejected))
        .count();
    assert_eq!((issued, rejected), (10, 6));
    assert_eq!(audit(&all), m("100"));
    // What was charged before the restart stayed charged, with the same transaction.
    for (name, order) in &before {
        if let Some(charge) = order.status.as_ref().and_then(ledger::charge) {
            let after = all[name].status.as_ref().and_then(ledger::charge);
            assert_eq!(after, Some(charge), "Order {name}");
        }
    }
    let groups: Api<Group> = Api::namespaced(cluster.client.clone(), "acme");
    wait_for(
        &groups,
        "team",
        "Group team spent 100.00 with nothing left",
        |g| {
            g.status
                .as_ref()
                .is_some_and(|s| s.spent == Some(m("100")) && s.balance == Some(Money::ZERO))
        },
    )
    .await;
    stop(controllers);
}

/// Leaves Order `name` as a build that wrote the charge before signing did when it stopped in
/// between: `Approved`, charged 10.00 to Group team.
async fn charged_unsigned(orders: &Api<Order>, name: &str) {
    let charged = json!({"status": {
        "state": "Approved", "price": "10.00", "currency": "USD",
        "payer": {"kind": "Group", "name": "team", "namespace": "acme"},
        "transactions": [{"type": "PURCHASE", "amount": "10.00", "at": "2025-01-01T00:00:00Z"}]
    }});
    orders
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&charged))
        .await
        .expect("status");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_superseded_order_is_cancelled_and_its_charge_refunded() {
    let cluster = TestCluster::with_crds().await;
    let controllers =
        certinext::controllers::start_except(&cluster.client, &Default::default(), &["PrivateCA"]);
    enterprise(&cluster, "100.00", "10.00").await;
    stop(controllers);
    let orders: Api<Order> = Api::namespaced(cluster.client.clone(), "acme");

    // One order charged but not issued when the operator stopped, one not yet looked at;
    // the Certificate moved on from both.
    for name in ["old-1", "older-1"] {
        let mut order = order(
            name,
            "acme",
            ("web", "acme"),
            Some("team"),
            &["old.acme.example"],
        );
        order.metadata.annotations =
            Some([("certinext.io/superseded".to_owned(), "true".to_owned())].into());
        orders
            .create(&PostParams::default(), &order)
            .await
            .expect("Order created");
    }
    charged_unsigned(&orders, "old-1").await;

    let controllers =
        certinext::controllers::start_except(&cluster.client, &Default::default(), &["PrivateCA"]);
    let cancelled = wait_state(&orders, "old-1", OrderState::Cancelled).await;
    assert_eq!(
        transactions(&cancelled),
        [
            (TransactionType::Purchase, "10.00".into()),
            (TransactionType::Refund, "10.00".into())
        ]
    );
    assert!(
        cancelled
            .status
            .as_ref()
            .is_some_and(|s| s.certificate.is_none())
    );
    let cancelled = wait_state(&orders, "older-1", OrderState::Cancelled).await;
    assert!(transactions(&cancelled).is_empty());
    let groups: Api<Group> = Api::namespaced(cluster.client.clone(), "acme");
    let team = wait_for(&groups, "team", "Group team refunded", |g| {
        g.status
            .as_ref()
            .is_some_and(|s| s.spent == Some(Money::ZERO) && s.balance == Some(m("100")))
    })
    .await;
    assert_eq!(team.status.and_then(|s| s.certificates), Some(0));
    stop(controllers);
}

/// An Order charged before it was signed (`Approved` with its charge, as a build that wrote
/// the charge first left it) is signed and issued without a second charge.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_charged_before_it_was_signed_is_issued_without_a_second_charge() {
    let cluster = TestCluster::with_crds().await;
    let controllers =
        certinext::controllers::start_except(&cluster.client, &Default::default(), &["PrivateCA"]);
    enterprise(&cluster, "100.00", "10.00").await;
    stop(controllers);
    let orders: Api<Order> = Api::namespaced(cluster.client.clone(), "acme");
    orders
        .create(
            &PostParams::default(),
            &order(
                "www-1",
                "acme",
                ("web", "acme"),
                Some("team"),
                &["www.acme.example"],
            ),
        )
        .await
        .expect("Order created");
    charged_unsigned(&orders, "www-1").await;

    let controllers =
        certinext::controllers::start_except(&cluster.client, &Default::default(), &["PrivateCA"]);
    let issued = wait_state(&orders, "www-1", OrderState::Issued).await;
    assert_eq!(
        transactions(&issued),
        [(TransactionType::Purchase, "10.00".into())]
    );
    let status = issued.status.clone().expect("status");
    let chain = status.certificate.expect("certificate");
    let root = status.ca.expect("ca");
    pki::verify_chain(&chain, &root, jiff::Timestamp::now()).expect("the chain verifies");
    let groups: Api<Group> = Api::namespaced(cluster.client.clone(), "acme");
    wait_for(&groups, "team", "Group team charged once", |g| {
        g.status
            .as_ref()
            .is_some_and(|s| s.spent == Some(m("10")) && s.balance == Some(m("90")))
    })
    .await;
    stop(controllers);
}

/// An account's wallet as its status shows it: allocated, spent, balance and whether it is
/// Overdrawn.
fn account_wallet(account: &Account) -> Option<(Money, Money, Money, bool)> {
    let status = account.status.as_ref()?;
    let wallet = status.wallet.as_ref()?;
    let overdrawn = status
        .conditions
        .iter()
        .any(|c| c.type_ == "Ready" && c.reason == "Overdrawn");
    Some((wallet.allocated, wallet.spent, wallet.balance, overdrawn))
}

/// One writer per account wallet: orders charging the account itself and groups asking it
/// for funds, all at once, never overdraw it — the Account's status, sampled throughout,
/// never shows a negative balance — and the final figures add up to the cent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_and_new_groups_at_once_never_overdraw_the_account() {
    const ORDERS: usize = 20;
    const GROUPS: usize = 8;
    let cluster = TestCluster::with_crds().await;
    let controllers =
        certinext::controllers::start_except(&cluster.client, &Default::default(), &["PrivateCA"]);
    // 100.00 against 20 orders at 5.00 and 8 groups asking 15.00 each: 220.00 wanted.
    apply(
        &cluster,
        "apiVersion: v1
kind: Namespace
metadata: {name: acme}
---
apiVersion: certinext.io/v1alpha1
kind: Account
metadata: {name: acme}
spec:
  type: Enterprise
  namespaces: [acme]
  credits: [{id: c1, amount: \"100.00\"}]
  domains: [{name: acme.example}]
---
apiVersion: certinext.io/v1alpha1
kind: Product
metadata: {name: web, namespace: acme}
spec: {issuerRef: {name: acme-ca}, template: ServerTLS, maxValidity: 2160h, price: \"5.00\"}
",
    )
    .await;
    ready_root_ca(&cluster, "acme", "acme-ca", "Acme Root").await;
    let products: Api<certinext::api::Product> = Api::namespaced(cluster.client.clone(), "acme");
    wait_for(&products, "web", "Product web Ready", |p| {
        p.status
            .as_ref()
            .is_some_and(|s| certinext::controllers::is_ready(&s.conditions))
    })
    .await;
    let accounts: Api<Account> = Api::all(cluster.client.clone());
    wait_for(&accounts, "acme", "Account acme's wallet", |a| {
        account_wallet(a).is_some()
    })
    .await;

    let stop_sampling = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let (stop_sampling, accounts) = (stop_sampling.clone(), accounts.clone());
        tokio::spawn(async move {
            let mut seen = Vec::new();
            while !stop_sampling.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok(account) = accounts.get("acme").await {
                    seen.extend(account_wallet(&account));
                }
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            seen
        })
    };

    let orders: Api<Order> = Api::namespaced(cluster.client.clone(), "acme");
    let groups: Api<Group> = Api::namespaced(cluster.client.clone(), "acme");
    // The orders all at once; the groups one after another, each named before the last so
    // that, created within the same second, it is served first: every new group changes what
    // the wallet can give the others.
    let create_orders = (0..ORDERS).map(|i| {
        let orders = orders.clone();
        async move {
            let name = format!("host{i}-1");
            let dns = format!("host{i}.acme.example");
            orders
                .create(
                    &PostParams::default(),
                    &order(&name, "acme", ("web", "acme"), None, &[&dns]),
                )
                .await
                .expect("Order created");
        }
    });
    let create_groups = async {
        for i in (0..GROUPS).rev() {
            let group: Group = serde_json::from_value(json!({
                "apiVersion": "certinext.io/v1alpha1", "kind": "Group",
                "metadata": {"name": format!("team{i:02}"), "namespace": "acme"},
                "spec": {"funds": "15.00"},
            }))
            .expect("a Group");
            groups
                .create(&PostParams::default(), &group)
                .await
                .expect("Group created");
            tokio::time::sleep(std::time::Duration::from_millis(30)).await;
        }
    };
    futures_util::future::join(futures_util::future::join_all(create_orders), create_groups).await;

    // Every order ends and every group is decided: funded, or refused for funds.
    let (all, decided) = eventually("every order ends and every group is decided", || async {
        let all = charges(&orders).await;
        let ended = all
            .values()
            .all(|o| state(o).is_some_and(OrderState::is_terminal));
        let decided = groups.list(&ListParams::default()).await.ok()?.items;
        let decided = decided
            .into_iter()
            .filter(|g| g.status.as_ref().is_some_and(|s| s.allocated.is_some()))
            .collect::<Vec<_>>();
        (ended && decided.len() == GROUPS).then_some((all, decided))
    })
    .await;
    let spent = audit(&all);
    let issued = all
        .values()
        .filter(|o| state(o) == Some(OrderState::Issued))
        .count();
    assert_eq!(
        spent,
        Money::from_minor(500 * i64::try_from(issued).expect("a count"))
    );
    let allocated = Money::checked_sum(
        decided
            .iter()
            .filter_map(|g| g.status.as_ref().and_then(|s| s.allocated)),
    )
    .expect("a sum");
    let balance = m("100")
        .checked_sub(allocated)
        .and_then(|b| b.checked_sub(spent))
        .expect("a balance");
    assert!(
        !balance.is_negative(),
        "allocated {allocated} and spent {spent} exceed the 100.00 credited"
    );
    // Nothing was refused while it would have fitted: what is left covers neither.
    if issued < ORDERS {
        assert!(balance < m("5"), "{issued} issued, {balance} left");
    }
    if allocated < Money::from_minor(1500 * i64::try_from(GROUPS).expect("a count")) {
        assert!(balance < m("15"), "{allocated} allocated, {balance} left");
    }
    let settled = wait_for(&accounts, "acme", "Account acme's final wallet", |a| {
        account_wallet(a) == Some((allocated, spent, balance, false))
    })
    .await;
    assert_eq!(
        account_wallet(&settled),
        Some((allocated, spent, balance, false))
    );

    stop_sampling.store(true, std::sync::atomic::Ordering::Relaxed);
    let seen = sampler.await.expect("the sampler ran");
    assert!(!seen.is_empty(), "the account's wallet was sampled");
    for (allocated, spent, balance, overdrawn) in &seen {
        assert!(
            !balance.is_negative() && !overdrawn,
            "Account acme went below zero: allocated {allocated}, spent {spent}, balance {balance}; every sample: {seen:?}"
        );
    }
    stop(controllers);
}

/// The next `n` objects a subscriber of a shared watch receives, as (name, state, label).
async fn next_seen(
    subscriber: &mut (impl futures_util::Stream<Item = std::sync::Arc<Order>> + Unpin),
    n: usize,
) -> Vec<(String, Option<OrderState>, Option<String>)> {
    use futures_util::StreamExt;
    let mut seen = Vec::new();
    while seen.len() < n {
        let next = tokio::time::timeout(std::time::Duration::from_secs(10), subscriber.next())
            .await
            .unwrap_or_else(|_| panic!("no object after {seen:?}"))
            .expect("the shared watch runs");
        let label = next.metadata.labels.as_ref().and_then(|l| l.get("seen"));
        seen.push((
            next.metadata.name.clone().unwrap_or_default(),
            state(&next),
            label.cloned(),
        ));
    }
    seen
}

/// Four controllers wait at once for the shared watch's first list before they reconcile;
/// every one of them is woken when it is in (a store's own wait wakes only the last waiter,
/// which once left the Certificate controller waiting for ever after a restart).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_waiter_for_the_shared_order_watchs_first_list_is_woken() {
    use certinext::controllers::cache::{SharedWatch, Synced, order_view};
    let cluster = TestCluster::with_crds().await;
    let orders: Api<Order> = Api::namespaced(cluster.client.clone(), "default");
    let (shared, task) = SharedWatch::new(orders, Default::default(), order_view);
    let waiters: Vec<_> = (0..4)
        .map(|_| {
            let synced = Synced::new(vec![shared.listed()]);
            tokio::spawn(async move { synced.wait().await.is_ok() })
        })
        .collect();
    // Every waiter is parked before the watch starts.
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let task = tokio::spawn(task);
    for waiter in waiters {
        let woken = tokio::time::timeout(std::time::Duration::from_secs(10), waiter).await;
        assert!(woken.expect("every waiter is woken").expect("joins"));
    }
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_subscriber_of_the_shared_order_watch_sees_the_orders_then_each_change() {
    use certinext::controllers::cache::{SharedWatch, order_view};
    let cluster = TestCluster::with_crds().await;
    let orders: Api<Order> = Api::namespaced(cluster.client.clone(), "default");
    for name in ["one", "two"] {
        let order = order(name, "default", ("web", "default"), None, &["a.example"]);
        orders
            .create(&PostParams::default(), &order)
            .await
            .expect("Order created");
    }
    let (shared, task) = SharedWatch::new(orders.clone(), Default::default(), order_view);
    // One subscriber joins before the watch has listed anything, one once it has.
    let mut early = Box::pin(shared.subscribe());
    let task = tokio::spawn(task);
    shared
        .store()
        .wait_until_ready()
        .await
        .expect("the watch lists");
    let mut late = Box::pin(shared.subscribe());

    orders
        .create(
            &PostParams::default(),
            &order("three", "default", ("web", "default"), None, &["b.example"]),
        )
        .await
        .expect("Order created");
    let label = json!({"metadata": {"labels": {"seen": "yes"}}});
    orders
        .patch("one", &PatchParams::default(), &Patch::Merge(&label))
        .await
        .expect("Order labelled");
    let issued = json!({"status": {"state": "Issued", "certificate": "PEM"}});
    orders
        .patch_status("two", &PatchParams::default(), &Patch::Merge(&issued))
        .await
        .expect("Order issued");
    orders
        .delete("three", &Default::default())
        .await
        .expect("Order deleted");

    let changes = [
        ("three".to_owned(), None, None),
        ("one".to_owned(), None, Some("yes".to_owned())),
        ("two".to_owned(), Some(OrderState::Issued), None),
        ("three".to_owned(), None, None),
    ];
    for (who, subscriber) in [("early", &mut early), ("late", &mut late)] {
        let mut listed = next_seen(subscriber, 2).await;
        listed.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            listed,
            [
                ("one".to_owned(), None, None),
                ("two".to_owned(), None, None)
            ],
            "{who}: the orders there before it subscribed"
        );
        assert_eq!(
            next_seen(subscriber, 4).await,
            changes,
            "{who}: each change, in order"
        );
    }
    // The store holds what is left, an Issued Order without its certificate.
    let two = shared
        .store()
        .get(&kube::runtime::reflector::ObjectRef::new("two").within("default"))
        .expect("two is cached");
    let status = two.status.as_ref().expect("a status");
    assert_eq!(
        (status.state, status.certificate.as_deref()),
        (Some(OrderState::Issued), None)
    );
    assert!(two.spec.request.is_empty());
    assert!(
        two.metadata
            .managed_fields
            .as_deref()
            .unwrap_or_default()
            .is_empty()
    );
    assert_eq!(shared.store().state().len(), 2);
    task.abort();
}
