//! The Certificate controller on devcluster: issuance into a Secret in cert-manager's layout,
//! key encodings, spec changes, key rotation, renewal on time, refusals, failed and denied
//! orders, and the revision history.
//!
//! The CA and the Orders are played by this file: [`issue_ca`] writes a CA Secret as the
//! PrivateCA controller would (contract §1) and marks the PrivateCA Ready, and
//! [`stand_in_order_controller`] signs each new Order's CSR (or rejects or denies it) and
//! writes its status as the Order controller would (contract §3).

mod support;

use std::sync::Arc;
use std::time::Duration;

use certinext::api::{Certificate, Order, PrivateCA, Product};
use certinext::pki;
use futures_util::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{ListParams, Patch, PatchParams};
use kube::runtime::wait::await_condition;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use serde_json::json;
use support::cluster::TestCluster;

const NS: &str = "acme";

/// Waits up to `seconds` until the object `name` exists and satisfies `check`.
async fn wait_for<K>(
    api: &Api<K>,
    name: &str,
    seconds: u64,
    check: impl Fn(&K) -> bool + Send + 'static,
) -> K
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + 'static,
    K::DynamicType: Default,
{
    let condition = move |object: Option<&K>| object.is_some_and(&check);
    let reached = tokio::time::timeout(
        Duration::from_secs(seconds),
        await_condition(api.clone(), name, condition),
    )
    .await;
    match reached {
        Ok(found) => found.expect("watch").expect("the object exists"),
        Err(_) => panic!(
            "{name} did not reach the expected state in {seconds}s; it is now {:#?}",
            api.get_opt(name).await
        ),
    }
}

/// A condition of a Certificate: (status, reason, message).
fn condition(certificate: &Certificate, kind: &str) -> Option<(String, String, String)> {
    certificate
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == kind)
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
}

fn is_ready_at(revision: i64) -> impl Fn(&Certificate) -> bool {
    move |c| {
        condition(c, "Ready").is_some_and(|r| r.0 == "True")
            && c.status.as_ref().and_then(|s| s.revision) == Some(revision)
            && c.status.as_ref().is_some_and(|s| s.current_order.is_none())
    }
}

fn text(secret: &Secret, key: &str) -> String {
    let bytes = secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .unwrap_or_else(|| panic!("Secret {} has no {key}", secret.name_any()));
    String::from_utf8(bytes.0.clone()).expect("PEM is text")
}

async fn apply(client: &Client, yaml: &str) {
    certinext::manifests::apply(client, yaml, "test")
        .await
        .expect("applies");
}

/// The CA as the PrivateCA controller would leave it: a root key pair in Secret `root-ca`
/// (contract §1) and the PrivateCA `root` marked Ready through its status.
async fn issue_ca(client: &Client) -> Arc<pki::Issuer> {
    apply(
        client,
        "apiVersion: certinext.io/v1alpha1
kind: PrivateCA
metadata: {name: root, namespace: acme}
spec:
  subject: {commonName: Acme Test Root}
",
    )
    .await;
    let cas: Api<PrivateCA> = Api::namespaced(client.clone(), NS);
    let ca = cas.get("root").await.expect("the PrivateCA");
    let key = pki::generate_key_for(certinext::api::common::KeyAlgorithm::EcdsaP256).expect("key");
    let profile =
        pki::CaProfile::from_spec(&ca.spec, jiff::Timestamp::now()).expect("the CA profile");
    let root = pki::issue_root_ca(&profile, &key).expect("a root CA");
    let key_pem = key
        .to_pem(certinext::api::common::PrivateKeyEncoding::Pkcs8)
        .expect("PEM");
    let secret: Secret = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
        "metadata": {"name": "root-ca", "namespace": NS, "labels": {
            "app.kubernetes.io/managed-by": "certinext-operator", "certinext.io/private-ca": "root"}},
        "stringData": {"tls.crt": root.chain_pem, "tls.key": key_pem, "ca.crt": root.root_pem},
    }))
    .expect("a Secret");
    let secrets: Api<Secret> = Api::namespaced(client.clone(), NS);
    secrets
        .create(&Default::default(), &secret)
        .await
        .expect("the CA Secret");
    let status = json!({"status": {
        "secretName": "root-ca", "serialNumber": root.info.serial_hex, "chainDepth": 0,
        "conditions": [{"type": "Ready", "status": "True", "reason": "Ready",
            "message": "test CA", "lastTransitionTime": "2025-01-01T00:00:00Z"}]}});
    cas.patch_status("root", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .expect("the CA's status");
    Arc::new(pki::Issuer::from_pem(&root.chain_pem, &key_pem, &root.root_pem).expect("issuer"))
}

/// What the stand-in Order controller does with an Order.
enum Outcome {
    Issue,
    Reject(&'static str),
    Deny,
    /// Left as created, as by an Order controller that has not got to it.
    Ignore,
}

/// Certificates named `flaky` are refused once for lack of funds; `denied` ones are denied;
/// the Orders of `waiting` ones are left alone.
fn outcome_for(order: &Order) -> Outcome {
    match (
        order.spec.certificate_ref.name.as_str(),
        order.spec.revision,
    ) {
        ("flaky", 1) => Outcome::Reject("group \"team\" has 0.00 USD left; the order costs 10.00"),
        ("denied", _) => Outcome::Deny,
        ("waiting", _) => Outcome::Ignore,
        _ => Outcome::Issue,
    }
}

/// A stand-in for the Order controller (not available here): signs each new Order's CSR with
/// the test CA and writes `Issued` with the certificate fields, or `Rejected` / `Denied`.
fn stand_in_order_controller(
    client: Client,
    issuer: Arc<pki::Issuer>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let orders: Api<Order> = Api::namespaced(client.clone(), NS);
        let mut stream = watcher(orders.clone(), watcher::Config::default())
            .applied_objects()
            .boxed();
        while let Some(Ok(order)) = stream.next().await {
            if order.metadata.deletion_timestamp.is_some() {
                // Nothing was charged: let the order go, as the Order controller would.
                let release = json!({"metadata": {"finalizers": null}});
                let _ = orders
                    .patch(
                        &order.name_any(),
                        &PatchParams::default(),
                        &Patch::Merge(&release),
                    )
                    .await;
                continue;
            }
            if order.status.as_ref().and_then(|s| s.state).is_some() {
                continue;
            }
            let (state, ready, message, fields) = match outcome_for(&order) {
                Outcome::Ignore => continue,
                Outcome::Issue => {
                    let issued = sign(&order, &issuer);
                    (
                        "Issued",
                        "True",
                        "issued".to_owned(),
                        json!({"certificate": issued.chain_pem, "ca": issued.root_pem,
                            "serialNumber": issued.info.serial_hex,
                            "notBefore": issued.info.not_before.to_string(),
                            "notAfter": issued.info.not_after.to_string()}),
                    )
                }
                Outcome::Reject(why) => ("Rejected", "False", why.to_owned(), json!({})),
                Outcome::Deny => (
                    "Denied",
                    "False",
                    "denied by approver@acme.example: not this quarter".to_owned(),
                    json!({}),
                ),
            };
            let mut status = fields;
            status["state"] = json!(state);
            status["conditions"] = json!([{"type": "Ready", "status": ready,
                "reason": if ready == "True" { "Ready" } else { state }, "message": message,
                "lastTransitionTime": jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()}]);
            orders
                .patch_status(
                    &order.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(&json!({"status": status})),
                )
                .await
                .expect("the stand-in writes the Order's status");
        }
    })
}

fn sign(order: &Order, issuer: &pki::Issuer) -> pki::IssuedCertificate {
    let csr = pki::parse_csr(&order.spec.request).expect("the Order carries a valid CSR");
    let usages = pki::usages_for(
        Some(certinext::api::product::CertificateTemplate::ServerTls),
        &order.spec.usages,
        csr.key_algorithm,
    )
    .expect("usages");
    let validity = pki::clip_validity(
        jiff::Timestamp::now(),
        &order.spec.duration,
        None,
        issuer.not_after(),
    )
    .expect("validity");
    pki::sign_leaf(&csr, issuer, &pki::LeafProfile { usages, validity }).expect("signed")
}

/// A cluster with the controllers, the accounts `acme` (domain acme.example) and `other`,
/// the test CA, the Ready Product `web` of acme (ECDSA-P256 or RSA-2048 keys), a Product of
/// `other`, and the stand-in Order controller.
struct Scenario {
    cluster: TestCluster,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Scenario {
    async fn start() -> Self {
        let cluster = TestCluster::with_crds().await;
        let client = cluster.client.clone();
        // This suite plays the PrivateCA and Order controllers' parts itself, to drive the
        // Certificate controller through each outcome; tests/issuance.rs runs them all.
        let mut tasks = certinext::controllers::start_except(
            &client,
            &Default::default(),
            &["PrivateCA", "Order"],
        );
        apply(
            &client,
            "apiVersion: v1
kind: Namespace
metadata: {name: acme}
---
apiVersion: v1
kind: Namespace
metadata: {name: other}
---
apiVersion: certinext.io/v1alpha1
kind: Account
metadata: {name: acme}
spec:
  type: Enterprise
  namespaces: [acme]
  organizations: [{name: Acme Inc, country: US}]
  domains: [{name: acme.example}]
---
apiVersion: certinext.io/v1alpha1
kind: Account
metadata: {name: other}
spec:
  type: Enterprise
  namespaces: [other]
  domains: [{name: other.example}]
---
apiVersion: certinext.io/v1alpha1
kind: Product
metadata: {name: theirs, namespace: other}
spec: {issuerRef: {name: their-root}, template: ServerTLS, price: \"5.00\"}
",
        )
        .await;
        let issuer = issue_ca(&client).await;
        apply(
            &client,
            "apiVersion: certinext.io/v1alpha1
kind: Product
metadata: {name: web, namespace: acme}
spec:
  issuerRef: {name: root}
  template: ServerTLS
  price: \"10.00\"
  allowedKeyAlgorithms: [ECDSA-P256, RSA-2048]
",
        )
        .await;
        let products: Api<Product> = Api::namespaced(client.clone(), NS);
        wait_for(&products, "web", 30, |p| {
            p.status
                .as_ref()
                .is_some_and(|s| certinext::controllers::is_ready(&s.conditions))
        })
        .await;
        tasks.push(stand_in_order_controller(client, issuer));
        Scenario { cluster, tasks }
    }

    fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        Api::namespaced(self.cluster.client.clone(), NS)
    }

    async fn orders_of(&self, certificate: &str) -> Vec<Order> {
        let mut orders = self
            .api::<Order>()
            .list(
                &ListParams::default()
                    .labels(&format!("certinext.io/certificate-name={certificate}")),
            )
            .await
            .expect("orders")
            .items;
        orders.sort_by_key(|o| o.spec.revision);
        orders
    }

    async fn patch_spec(&self, certificate: &str, spec: serde_json::Value) {
        self.api::<Certificate>()
            .patch(
                certificate,
                &PatchParams::default(),
                &Patch::Merge(&json!({"spec": spec})),
            )
            .await
            .expect("the spec changes");
    }
}

impl Drop for Scenario {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// The public key of the certificate in a Secret.
fn public_key(secret: &Secret) -> Vec<u8> {
    pki::inspect_pem(&text(secret, "tls.crt"))
        .expect("tls.crt parses")
        .public_key_der
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_are_issued_into_secrets_in_cert_managers_layout_and_follow_spec_changes() {
    let s = Scenario::start().await;
    apply(
        &s.cluster.client,
        "apiVersion: certinext.io/v1alpha1
kind: Certificate
metadata: {name: web, namespace: acme}
spec:
  secretName: web-tls
  productRef: {name: web}
  commonName: www.acme.example
  dnsNames: [www.acme.example, acme.example]
  ipAddresses: [10.0.0.1]
  subject: {organizations: [Acme Inc]}
  secretTemplate:
    labels: {team: storefront}
    annotations: {owner: platform}
---
apiVersion: certinext.io/v1alpha1
kind: Certificate
metadata: {name: api, namespace: acme}
spec:
  secretName: api-tls
  productRef: {name: web}
  dnsNames: [api.acme.example]
  privateKey: {algorithm: RSA, size: 2048, encoding: PKCS8}
---
apiVersion: certinext.io/v1alpha1
kind: Certificate
metadata: {name: pinned, namespace: acme}
spec:
  secretName: pinned-tls
  productRef: {name: web}
  dnsNames: [pinned.acme.example]
  privateKey: {rotationPolicy: Never}
",
    )
    .await;
    let certificates = s.api::<Certificate>();
    let secrets = s.api::<Secret>();
    let web = wait_for(&certificates, "web", 60, is_ready_at(1)).await;

    // The Secret, as contract §4 and cert-manager lay it out.
    let secret = secrets.get("web-tls").await.expect("the Secret");
    assert_eq!(secret.type_.as_deref(), Some("kubernetes.io/tls"));
    let (tls_crt, tls_key, ca_crt) = (
        text(&secret, "tls.crt"),
        text(&secret, "tls.key"),
        text(&secret, "ca.crt"),
    );
    assert!(
        tls_key.starts_with("-----BEGIN EC PRIVATE KEY-----"),
        "PKCS1 (SEC 1) by default"
    );
    let key = pki::load_key_pem(&tls_key).expect("tls.key loads");
    assert!(
        key.matches_certificate_pem(&tls_crt)
            .expect("tls.crt parses")
    );
    let info = pki::inspect_pem(&tls_crt).expect("tls.crt parses");
    assert_eq!(
        info.subject_alt_names.dns_names,
        ["www.acme.example", "acme.example"]
    );
    assert_eq!(
        info.subject_alt_names.ip_addresses,
        ["10.0.0.1".parse::<std::net::IpAddr>().expect("an IP")]
    );
    assert_eq!(info.common_name.as_deref(), Some("www.acme.example"));
    assert!(info.subject.contains("O=Acme Inc"), "{}", info.subject);
    pki::verify_chain(&tls_crt, &ca_crt, jiff::Timestamp::now()).expect("the chain verifies");
    let dir = tempfile::tempdir().expect("a temporary directory");
    std::fs::write(dir.path().join("tls.crt"), &tls_crt).expect("write tls.crt");
    std::fs::write(dir.path().join("ca.crt"), &ca_crt).expect("write ca.crt");
    let verified = std::process::Command::new("/usr/bin/openssl")
        .args(["verify", "-CAfile"])
        .arg(dir.path().join("ca.crt"))
        .arg(dir.path().join("tls.crt"))
        .output()
        .expect("openssl runs");
    assert!(
        verified.status.success(),
        "openssl verify: {}{}",
        String::from_utf8_lossy(&verified.stdout),
        String::from_utf8_lossy(&verified.stderr)
    );
    let annotations = secret.annotations();
    for (k, v) in [
        ("certinext.io/certificate-name", "web"),
        ("certinext.io/issuer-name", "root"),
        ("certinext.io/issuer-kind", "PrivateCA"),
        ("certinext.io/common-name", "www.acme.example"),
        ("certinext.io/alt-names", "www.acme.example,acme.example"),
        ("certinext.io/ip-sans", "10.0.0.1"),
        ("certinext.io/uri-sans", ""),
        ("certinext.io/revision", "1"),
        ("owner", "platform"),
    ] {
        assert_eq!(
            annotations.get(k).map(String::as_str),
            Some(v),
            "annotation {k}"
        );
    }
    let labels = secret.labels();
    assert_eq!(labels["app.kubernetes.io/managed-by"], "certinext-operator");
    assert_eq!(labels["certinext.io/certificate-name"], "web");
    assert_eq!(labels["team"], "storefront");

    // The status describes that certificate; the pending key is gone; the Order is a Purchase.
    let status = web.status.clone().expect("status");
    assert_eq!(
        status.serial_number.as_deref(),
        Some(info.serial_hex.as_str())
    );
    assert_eq!(
        status.not_after.map(|t| t.0.as_second()),
        Some(info.not_after.as_second())
    );
    assert!(status.renewal_time.is_some());
    assert!(
        secrets
            .get_opt("web-next-key")
            .await
            .expect("get")
            .is_none()
    );
    let orders = s.orders_of("web").await;
    assert_eq!(orders.len(), 1);
    assert_eq!(orders[0].name_any(), "web-1");
    assert_eq!(
        orders[0].spec.order_type,
        certinext::api::order::OrderType::Purchase
    );
    assert_eq!(
        orders[0]
            .spec
            .product_ref
            .as_ref()
            .and_then(|p| p.namespace.as_deref()),
        Some(NS)
    );
    assert!(
        !serde_json::to_string(&orders[0])
            .expect("JSON")
            .contains("PRIVATE KEY"),
        "no private key in an Order"
    );

    // PKCS#8 on request.
    wait_for(&certificates, "api", 60, is_ready_at(1)).await;
    let api_secret = secrets.get("api-tls").await.expect("the Secret");
    let api_key = text(&api_secret, "tls.key");
    assert!(api_key.starts_with("-----BEGIN PRIVATE KEY-----"), "PKCS8");
    assert_eq!(
        pki::load_key_pem(&api_key).expect("loads").algorithm(),
        certinext::api::common::KeyAlgorithm::Rsa2048
    );

    // A new DNS name is a new revision, ordered as a Renewal, with a new key (Always).
    s.patch_spec(
        "web",
        json!({"dnsNames": ["www.acme.example", "acme.example", "shop.acme.example"]}),
    )
    .await;
    wait_for(&certificates, "web", 60, is_ready_at(2)).await;
    let renewed = secrets.get("web-tls").await.expect("the Secret");
    let renewed_info = pki::inspect_pem(&text(&renewed, "tls.crt")).expect("parses");
    assert!(
        renewed_info
            .subject_alt_names
            .dns_names
            .contains(&"shop.acme.example".to_owned())
    );
    assert_ne!(
        public_key(&renewed),
        public_key(&secret),
        "rotationPolicy Always"
    );
    assert_eq!(renewed.annotations()["certinext.io/revision"], "2");
    let orders = s.orders_of("web").await;
    assert_eq!(
        orders
            .iter()
            .map(|o| (o.name_any(), o.spec.order_type))
            .collect::<Vec<_>>(),
        [
            ("web-1".into(), certinext::api::order::OrderType::Purchase),
            ("web-2".into(), certinext::api::order::OrderType::Renewal)
        ]
    );

    // rotationPolicy Never keeps the key across a reissue.
    wait_for(&certificates, "pinned", 60, is_ready_at(1)).await;
    let pinned = secrets.get("pinned-tls").await.expect("the Secret");
    s.patch_spec(
        "pinned",
        json!({"dnsNames": ["pinned.acme.example", "pin.acme.example"]}),
    )
    .await;
    wait_for(&certificates, "pinned", 60, is_ready_at(2)).await;
    let repinned = secrets.get("pinned-tls").await.expect("the Secret");
    assert_eq!(
        public_key(&repinned),
        public_key(&pinned),
        "rotationPolicy Never"
    );
    assert_ne!(
        text(&repinned, "tls.crt"),
        text(&pinned, "tls.crt"),
        "a new certificate"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_says_it_is_issuing_only_once_its_order_has_waited() {
    let s = Scenario::start().await;
    let certificates = s.api::<Certificate>();
    // Every version of the Certificates, from before they exist.
    let seen = Arc::new(std::sync::Mutex::new(Vec::<Certificate>::new()));
    let recorder = {
        let seen = seen.clone();
        let api = certificates.clone();
        tokio::spawn(async move {
            let mut stream = watcher(api, watcher::Config::default())
                .applied_objects()
                .boxed();
            while let Some(Ok(certificate)) = stream.next().await {
                seen.lock().unwrap().push(certificate);
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    apply(
        &s.cluster.client,
        "apiVersion: certinext.io/v1alpha1
kind: Certificate
metadata: {name: quick, namespace: acme}
spec: {secretName: quick-tls, productRef: {name: web}, dnsNames: [quick.acme.example]}
---
apiVersion: certinext.io/v1alpha1
kind: Certificate
metadata: {name: waiting, namespace: acme}
spec: {secretName: waiting-tls, productRef: {name: web}, dnsNames: [waiting.acme.example]}
",
    )
    .await;

    // An Order issued at once takes its Certificate straight to Ready.
    wait_for(&certificates, "quick", 60, is_ready_at(1)).await;
    let issuing = |c: &Certificate| condition(c, "Issuing").is_some_and(|i| i.0 == "True");
    let quick: Vec<Certificate> = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|c| c.name_any() == "quick")
        .cloned()
        .collect();
    assert!(!quick.is_empty());
    assert!(!quick.iter().any(issuing), "{quick:#?}");

    // One left waiting is shown as issuing once it has waited, with why it was ordered.
    let orders = s.api::<Order>();
    wait_for(&orders, "waiting-1", 30, |_| true).await;
    let ordered = std::time::Instant::now();
    let waiting = wait_for(&certificates, "waiting", 30, issuing).await;
    assert!(
        ordered.elapsed() >= Duration::from_secs(1),
        "Issuing after {:?}",
        ordered.elapsed()
    );
    let (_, reason, message) = condition(&waiting, "Issuing").expect("Issuing");
    assert_eq!(reason, "Issuing");
    assert_eq!(
        message,
        "Order \"waiting-1\" created: Secret \"waiting-tls\" does not exist"
    );
    let status = waiting.status.as_ref().expect("a status");
    assert_eq!(status.current_order.as_deref(), Some("waiting-1"));
    let order = orders.get("waiting-1").await.expect("the Order");
    assert_eq!(
        order.annotations()["certinext.io/ordered-because"],
        "Secret \"waiting-tls\" does not exist"
    );
    recorder.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_lived_certificate_renews_on_time_and_keeps_its_revision_history() {
    let s = Scenario::start().await;
    // The shortest duration the CRD admits is 1h; renewing 59m45s before expiry renews
    // 15s after issuance.
    apply(
        &s.cluster.client,
        "apiVersion: certinext.io/v1alpha1
kind: Certificate
metadata: {name: brief, namespace: acme}
spec:
  secretName: brief-tls
  productRef: {name: web}
  dnsNames: [brief.acme.example]
  duration: 1h
  renewBefore: 59m45s
  revisionHistoryLimit: 1
",
    )
    .await;
    let certificates = s.api::<Certificate>();
    let first = wait_for(&certificates, "brief", 60, is_ready_at(1)).await;
    let renewal = first
        .status
        .as_ref()
        .and_then(|s| s.renewal_time.clone())
        .expect("a renewal time");
    let not_before = first
        .status
        .as_ref()
        .and_then(|s| s.not_before.clone())
        .expect("notBefore");
    assert_eq!(renewal.0.duration_since(not_before.0).as_secs(), 15);

    let third = wait_for(&certificates, "brief", 90, is_ready_at(3)).await;
    assert_eq!(third.metadata.generation, Some(1), "no spec change");
    let renewed_at = third
        .status
        .as_ref()
        .and_then(|s| s.not_before.clone())
        .expect("notBefore");
    assert!(
        renewed_at.0 >= renewal.0,
        "renewed at or after the renewal time"
    );

    // History: only the current Order is kept (limit 1), and any newer in flight.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let names: Vec<i64> = s
            .orders_of("brief")
            .await
            .iter()
            .map(|o| o.spec.revision)
            .collect();
        if names.iter().all(|r| *r >= 3) && names.contains(&3) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "old Orders were not deleted: {names:?}"
        );
        let orders = s.api::<Order>();
        let _ = tokio::time::timeout(
            Duration::from_secs(2),
            await_condition(orders, "brief-1", |o: Option<&Order>| o.is_none()),
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_specs_are_refused_with_no_order_and_no_secret() {
    let s = Scenario::start().await;
    apply(
        &s.cluster.client,
        "apiVersion: certinext.io/v1alpha1
kind: Certificate
metadata: {name: outside, namespace: acme}
spec:
  secretName: outside-tls
  productRef: {name: web}
  dnsNames: [www.acme.example, www.evil.example]
---
apiVersion: certinext.io/v1alpha1
kind: Certificate
metadata: {name: big-key, namespace: acme}
spec:
  secretName: big-key-tls
  productRef: {name: web}
  dnsNames: [big.acme.example]
  privateKey: {algorithm: RSA, size: 4096}
---
apiVersion: certinext.io/v1alpha1
kind: Certificate
metadata: {name: borrowed, namespace: acme}
spec:
  secretName: borrowed-tls
  productRef: {name: theirs, namespace: other}
  dnsNames: [www.acme.example]
",
    )
    .await;
    let certificates = s.api::<Certificate>();
    for (name, reason, words) in [
        (
            "outside",
            "DomainNotAllowed",
            &[
                "Certificate \"outside\"",
                "dnsNames[1]",
                "\"www.evil.example\"",
                "account \"acme\"",
            ][..],
        ),
        (
            "big-key",
            "KeyAlgorithmNotAllowed",
            &[
                "Certificate \"big-key\"",
                "RSA-4096",
                "allowedKeyAlgorithms",
                "Product \"web\"",
            ][..],
        ),
        (
            "borrowed",
            "ProductNotAllowed",
            &[
                "Certificate \"borrowed\"",
                "\"other/theirs\"",
                "account \"other\"",
                "account \"acme\"",
            ][..],
        ),
    ] {
        let refused = wait_for(&certificates, name, 30, |c| {
            condition(c, "Ready").is_some_and(|r| r.0 == "False")
        })
        .await;
        let (_, got, message) = condition(&refused, "Ready").unwrap_or_default();
        assert_eq!(got, reason, "{name}: {message}");
        for word in words {
            assert!(message.contains(word), "{name}: {message:?} lacks {word:?}");
        }
        assert!(s.orders_of(name).await.is_empty(), "{name}: no Order");
        let secret = s
            .api::<Secret>()
            .get_opt(&format!("{name}-tls"))
            .await
            .expect("get");
        assert!(secret.is_none(), "{name}: no Secret");
        assert!(
            s.api::<Secret>()
                .get_opt(&format!("{name}-next-key"))
                .await
                .expect("get")
                .is_none(),
            "{name}: no pending key"
        );
    }

    // A fixed spec is issued.
    s.patch_spec("outside", json!({"dnsNames": ["www.acme.example"]}))
        .await;
    wait_for(&certificates, "outside", 60, is_ready_at(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_order_is_retried_after_backoff_and_a_denied_one_is_not() {
    let s = Scenario::start().await;
    apply(
        &s.cluster.client,
        "apiVersion: certinext.io/v1alpha1
kind: Certificate
metadata: {name: flaky, namespace: acme}
spec:
  secretName: flaky-tls
  productRef: {name: web}
  dnsNames: [flaky.acme.example]
---
apiVersion: certinext.io/v1alpha1
kind: Certificate
metadata: {name: denied, namespace: acme}
spec:
  secretName: denied-tls
  productRef: {name: web}
  dnsNames: [denied.acme.example]
",
    )
    .await;
    let certificates = s.api::<Certificate>();
    let rejected = wait_for(&certificates, "flaky", 30, |c| {
        c.status
            .as_ref()
            .is_some_and(|s| s.failed_issuance_attempts == Some(1))
    })
    .await;
    let status = rejected.status.clone().expect("status");
    assert!(status.last_failure_time.is_some());
    let (ready, reason, message) = condition(&rejected, "Ready").unwrap_or_default();
    assert_eq!((ready.as_str(), reason.as_str()), ("False", "Rejected"));
    assert!(
        message.contains("flaky-1") && message.contains("has 0.00 USD left"),
        "{message}"
    );

    // The retry comes after the backoff (10s) as revision 2, and resets the count.
    let issued = wait_for(&certificates, "flaky", 60, is_ready_at(2)).await;
    assert_eq!(
        issued
            .status
            .as_ref()
            .and_then(|s| s.failed_issuance_attempts),
        None
    );
    let orders = s.orders_of("flaky").await;
    let created: Vec<_> = orders
        .iter()
        .map(|o| o.creation_timestamp().expect("created").0)
        .collect();
    assert_eq!(orders.len(), 2);
    assert!(
        created[1].duration_since(created[0]).as_secs() >= 10,
        "retried after the backoff: {created:?}"
    );

    // Denied: Ready=False, reason Denied, and no second Order even after a backoff's time.
    let denied = wait_for(&certificates, "denied", 30, |c| {
        condition(c, "Ready").is_some_and(|r| r.1 == "Denied")
    })
    .await;
    let (_, _, message) = condition(&denied, "Ready").unwrap_or_default();
    assert!(message.contains("not this quarter"), "{message}");
    assert_eq!(
        s.orders_of("denied")
            .await
            .iter()
            .map(|o| o.name_any())
            .collect::<Vec<_>>(),
        ["denied-1"]
    );
    assert!(
        s.api::<Secret>()
            .get_opt("denied-tls")
            .await
            .expect("get")
            .is_none()
    );
}

/// The controllers' Events as `kubectl` lists them: a repeat on the same object joins the
/// first Event's series, another reason makes another Event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_event_joins_the_first_ones_series() {
    use kube::runtime::events::{Event, EventType};
    let s = TestCluster::start().await;
    s.kubectl(&["create", "namespace", NS]).await;
    s.kubectl(&["create", "configmap", "subject", "-n", NS])
        .await;
    let subject = Api::<k8s_openapi::api::core::v1::ConfigMap>::namespaced(s.client.clone(), NS)
        .get("subject")
        .await
        .expect("the ConfigMap");
    let recorder = certinext::controllers::recorder(&s.client);
    let event = |reason: &str, note: &str| Event {
        type_: EventType::Normal,
        reason: reason.into(),
        note: Some(note.into()),
        action: "Test".into(),
        secondary: None,
    };
    let regarding = kube::Resource::object_ref(&subject, &());
    for note in ["first", "second", "third"] {
        recorder
            .publish(&event("Repeated", note), &regarding)
            .await
            .expect("published");
    }
    recorder
        .publish(&event("Other", "once"), &regarding)
        .await
        .expect("published");

    let listed: serde_json::Value = serde_json::from_str(
        &s.kubectl(&["get", "events.events.k8s.io", "-n", NS, "-o", "json"])
            .await,
    )
    .expect("JSON");
    let mut seen: Vec<(String, String, i64)> = listed["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|e| {
            assert_eq!(e["regarding"]["name"], "subject", "{e}");
            assert_eq!(e["reportingController"], "certinext-operator", "{e}");
            (
                e["reason"].as_str().unwrap_or_default().to_owned(),
                e["note"].as_str().unwrap_or_default().to_owned(),
                e["series"]["count"].as_i64().unwrap_or(1),
            )
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        vec![
            ("Other".to_owned(), "once".to_owned(), 1),
            ("Repeated".to_owned(), "first".to_owned(), 3),
        ]
    );
}

/// The test CA [`issue_ca`] made, from its Secret.
async fn the_ca(client: &Client) -> pki::Issuer {
    let secret = Api::<Secret>::namespaced(client.clone(), NS)
        .get("root-ca")
        .await
        .expect("the CA Secret");
    let (crt, key, ca) = (
        text(&secret, "tls.crt"),
        text(&secret, "tls.key"),
        text(&secret, "ca.crt"),
    );
    pki::Issuer::from_pem(&crt, &key, &ca).expect("the CA")
}

/// The sealing key the operator made, from its Secret.
async fn sealing_key(client: &Client) -> Option<pki::SealingKey> {
    let secrets: Api<Secret> =
        Api::namespaced(client.clone(), certinext::controllers::DEFAULT_NAMESPACE);
    let secret = secrets
        .get_opt(certinext::controllers::sealing::SECRET_NAME)
        .await
        .expect("get")?;
    let bytes = secret.data.as_ref().and_then(|d| d.get("key"))?;
    Some(pki::SealingKey::from_bytes(&bytes.0).expect("a sealing key"))
}

impl Scenario {
    /// The Certificate `waiting` (whose Orders the stand-in leaves alone) and its first Order.
    async fn order_waiting(&self) -> Order {
        apply(
            &self.cluster.client,
            "apiVersion: certinext.io/v1alpha1
kind: Certificate
metadata: {name: waiting, namespace: acme}
spec: {secretName: waiting-tls, productRef: {name: web}, dnsNames: [waiting.acme.example]}
",
        )
        .await;
        wait_for(&self.api::<Order>(), "waiting-1", 30, |_| true).await
    }

    /// Stops the controllers, as a restart does; the stand-in (the last task) keeps running.
    fn stop_controllers(&mut self) {
        let stand_in = self.tasks.pop().expect("the stand-in");
        for task in self.tasks.drain(..) {
            task.abort();
        }
        self.tasks.push(stand_in);
    }

    /// Starts new controllers, which hold nothing the stopped ones held.
    fn start_controllers(&mut self) {
        let controllers = certinext::controllers::start_except(
            &self.cluster.client,
            &Default::default(),
            &["PrivateCA", "Order"],
        );
        let at = self.tasks.len().saturating_sub(1);
        self.tasks.splice(at..at, controllers);
    }

    /// Issues `order` as the Order controller would, with the test CA.
    async fn issue(&self, order: &Order) {
        let issued = sign(order, &the_ca(&self.cluster.client).await);
        let status = json!({"status": {"state": "Issued", "certificate": issued.chain_pem,
            "ca": issued.root_pem, "serialNumber": issued.info.serial_hex,
            "notBefore": issued.info.not_before.to_string(), "notAfter": issued.info.not_after.to_string(),
            "conditions": [{"type": "Ready", "status": "True", "reason": "Issued",
                "message": "issued", "lastTransitionTime": "2026-11-28T00:00:00Z"}]}});
        self.api::<Order>()
            .patch_status(
                &order.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&status),
            )
            .await
            .expect("the Order is issued");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_orders_key_is_sealed_into_it_and_outlives_a_restart() {
    let mut s = Scenario::start().await;
    let order = s.order_waiting().await;
    let csr = pki::parse_csr(&order.spec.request).expect("the CSR");

    // The Order carries its key sealed, bound to its Certificate and request; no Secret
    // holds it meanwhile.
    let sealed = order.spec.sealed_key.clone().expect("a sealed key");
    let sealing = sealing_key(&s.cluster.client).await.expect("a sealing key");
    let open = |certificate: &str| {
        certinext::controllers::sealing::open(
            &sealing,
            &sealed,
            NS,
            certificate,
            &order.spec.request,
        )
    };
    let key = open("waiting").expect("the sealed key opens");
    assert!(key.matches_public_key_der(&csr.public_key_der));
    let der_base64 = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(key.pkcs8_der())
    };
    assert!(!sealed.contains(&der_base64[..40]), "{sealed}");
    assert!(
        open("other").is_err(),
        "it opens for its own Certificate only"
    );
    let secrets = s.api::<Secret>();
    assert!(
        secrets
            .get_opt("waiting-next-key")
            .await
            .expect("get")
            .is_none()
    );

    // A restart: the controllers that made the Order, and held its key, are gone. Issued
    // now, the Order is delivered by new ones with the key sealed in it.
    s.stop_controllers();
    s.start_controllers();
    s.issue(&order).await;
    wait_for(&s.api::<Certificate>(), "waiting", 60, is_ready_at(1)).await;
    let secret = secrets.get("waiting-tls").await.expect("the Secret");
    let delivered = pki::load_key_pem(&text(&secret, "tls.key")).expect("tls.key");
    assert!(delivered.matches_public_key_der(&csr.public_key_der));
    assert_eq!(public_key(&secret), csr.public_key_der);
    assert_eq!(
        s.orders_of("waiting").await.len(),
        1,
        "nothing ordered again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_whose_sealed_key_cannot_be_opened_is_ordered_again() {
    let mut s = Scenario::start().await;
    let client = s.cluster.client.clone();
    let order = s.order_waiting().await;

    // The sealing key is deleted and the controllers restart: a new sealing key is made,
    // and the Order's key, sealed under the old one, is lost.
    let old = sealing_key(&client).await.expect("a sealing key");
    s.stop_controllers();
    let operator_secrets: Api<Secret> =
        Api::namespaced(client.clone(), certinext::controllers::DEFAULT_NAMESPACE);
    operator_secrets
        .delete(
            certinext::controllers::sealing::SECRET_NAME,
            &Default::default(),
        )
        .await
        .expect("the sealing key is deleted");
    s.start_controllers();
    let new = support::cluster::eventually("a new sealing key", || sealing_key(&client)).await;
    assert_ne!(new.id(), old.id());

    // Issued, the Order cannot be delivered: the Certificate orders again, with a new key.
    s.issue(&order).await;
    let second = wait_for(&s.api::<Order>(), "waiting-2", 60, |_| true).await;
    let first_key = pki::parse_csr(&order.spec.request)
        .expect("CSR")
        .public_key_der;
    let second_key = pki::parse_csr(&second.spec.request)
        .expect("CSR")
        .public_key_der;
    assert_ne!(first_key, second_key, "a new key");
    let sealed = second.spec.sealed_key.as_deref().expect("sealed");
    assert!(sealed.starts_with(&format!("v1.{}.", new.id())), "{sealed}");
    assert!(
        s.api::<Secret>()
            .get_opt("waiting-tls")
            .await
            .expect("get")
            .is_none(),
        "no Secret with a certificate whose key is lost"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_an_earlier_version_made_is_delivered_with_its_next_key_secret() {
    let mut s = Scenario::start().await;
    let first = s.order_waiting().await;

    // The operator stops; an earlier version takes over and orders revision 2 as it did:
    // the key in `waiting-next-key`, none sealed in the Order.
    s.stop_controllers();
    let certificate = s
        .api::<Certificate>()
        .get("waiting")
        .await
        .expect("the Certificate");
    let key = pki::generate_key_for(certinext::api::common::KeyAlgorithm::EcdsaP256).expect("key");
    let next_key = certinext::controllers::certificate::build_next_key_secret(&certificate, &key)
        .expect("the next-key Secret");
    let secrets = s.api::<Secret>();
    secrets
        .create(&Default::default(), &next_key)
        .await
        .expect("the next-key Secret is written");
    let mut earlier = serde_json::to_value(&first).expect("JSON");
    earlier["metadata"] = json!({"name": "waiting-2", "namespace": NS,
        "labels": first.metadata.labels, "annotations": first.metadata.annotations,
        "ownerReferences": first.metadata.owner_references,
        "finalizers": first.metadata.finalizers});
    earlier["spec"]["revision"] = json!(2);
    earlier["spec"]["request"] = json!(pki::build_csr(&certificate.spec, &key).expect("CSR"));
    earlier["spec"]
        .as_object_mut()
        .expect("a spec")
        .remove("sealedKey");
    earlier.as_object_mut().expect("an Order").remove("status");
    let earlier: Order = serde_json::from_value(earlier).expect("an Order");
    let earlier = s
        .api::<Order>()
        .create(&Default::default(), &earlier)
        .await
        .expect("the earlier version's Order");
    s.issue(&earlier).await;

    // This version starts again: it delivers revision 2 with that key, and lets the
    // next-key Secret go.
    s.start_controllers();
    wait_for(&s.api::<Certificate>(), "waiting", 60, is_ready_at(2)).await;
    let secret = secrets.get("waiting-tls").await.expect("the Secret");
    assert_eq!(public_key(&secret), key.public_key_der());
    let delivered = pki::load_key_pem(&text(&secret, "tls.key")).expect("tls.key");
    assert!(delivered.matches_public_key_der(&key.public_key_der()));
    support::cluster::eventually("the next-key Secret deleted", || {
        let secrets = secrets.clone();
        async move {
            secrets
                .get_opt("waiting-next-key")
                .await
                .ok()
                .and_then(|s| s.is_none().then_some(()))
        }
    })
    .await;
}
