//! Conformance of what the operator issues, with every controller running: one table of
//! scenarios (each key algorithm, each template, from a root and from an intermediate) and
//! one assertion function over the Secret, in the manner of cert-manager's conformance
//! suite; a ServerTLS leaf linted by pkilint; renewal on time, charged as a RENEWAL; a
//! restart with 200 Certificates in flight; and a group whose funds run out.

mod support;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use certinext::api::certificate::KeyUsage;
use certinext::api::common::KeyAlgorithm;
use certinext::api::order::{OrderState, OrderType, TransactionType};
use certinext::api::product::CertificateTemplate;
use certinext::api::{Certificate, Group, Order};
use certinext::billing::Money;
use certinext::pki;
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::{Api, ListParams, Patch, PatchParams};
use support::cluster::{TestCluster, eventually_within};
use support::wait::{TIMEOUT, is_ready, ready, wait_until};

const NAMESPACE: &str = "acme";
const ORGANIZATION: &str = "Acme Corp";

/// An Enterprise account holding `acme`, a group funded with `funds`, a root CA and an
/// intermediate below it, and one product per template and issuing CA, each at `price`.
/// Products issued by the root allow 720h at most, those issued by the intermediate 8760h.
fn tenant(funds: &str, price: &str) -> String {
    let mut yaml = format!(
        r#"apiVersion: v1
kind: Namespace
metadata: {{name: {NAMESPACE}}}
---
apiVersion: certinext.io/v1alpha1
kind: Account
metadata: {{name: acme}}
spec:
  type: Enterprise
  namespaces: [{NAMESPACE}]
  currency: USD
  credits: [{{id: budget, amount: "100000.00"}}]
  organizations: [{{name: {ORGANIZATION}, country: GB}}]
  domains: [{{name: acme.test}}]
---
apiVersion: certinext.io/v1alpha1
kind: Group
metadata: {{name: team, namespace: {NAMESPACE}}}
spec:
  funds: "{funds}"
  orderApproval: Automatic
---
apiVersion: certinext.io/v1alpha1
kind: PrivateCA
metadata: {{name: acme-root, namespace: {NAMESPACE}}}
spec:
  subject: {{commonName: Acme Root CA, organizations: [{ORGANIZATION}], countries: [GB]}}
  privateKey: {{algorithm: ECDSA, size: 384}}
  duration: 87600h
  pathLength: 1
---
apiVersion: certinext.io/v1alpha1
kind: PrivateCA
metadata: {{name: acme-issuing, namespace: {NAMESPACE}}}
spec:
  parentRef: {{name: acme-root}}
  subject: {{commonName: Acme Issuing CA, organizations: [{ORGANIZATION}], countries: [GB]}}
  privateKey: {{algorithm: ECDSA, size: 256}}
  duration: 43800h
  pathLength: 0
"#
    );
    for template in TEMPLATES {
        for ca in [Ca::Root, Ca::Issuing] {
            yaml.push_str(&format!(
                "---\napiVersion: certinext.io/v1alpha1\nkind: Product\n\
                 metadata: {{name: {}, namespace: {NAMESPACE}}}\n\
                 spec:\n  issuerRef: {{name: {}}}\n  template: {}\n  maxValidity: {}\n  price: \"{price}\"\n",
                product_name(template, ca),
                ca.name(),
                template_name(template),
                ca.max_validity(),
            ));
        }
    }
    yaml
}

const TEMPLATES: [CertificateTemplate; 4] = [
    CertificateTemplate::ServerTls,
    CertificateTemplate::ClientTls,
    CertificateTemplate::MutualTls,
    CertificateTemplate::EmailProtection,
];

fn template_name(template: CertificateTemplate) -> &'static str {
    match template {
        CertificateTemplate::ServerTls => "ServerTLS",
        CertificateTemplate::ClientTls => "ClientTLS",
        CertificateTemplate::MutualTls => "MutualTLS",
        CertificateTemplate::EmailProtection => "EmailProtection",
    }
}

/// The CA a product issues from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ca {
    Root,
    Issuing,
}

impl Ca {
    fn name(self) -> &'static str {
        match self {
            Ca::Root => "acme-root",
            Ca::Issuing => "acme-issuing",
        }
    }
    fn max_validity(self) -> &'static str {
        match self {
            Ca::Root => "720h",
            Ca::Issuing => "8760h",
        }
    }
    fn max_validity_hours(self) -> i64 {
        match self {
            Ca::Root => 720,
            Ca::Issuing => 8760,
        }
    }
}

fn product_name(template: CertificateTemplate, ca: Ca) -> String {
    format!(
        "{}-{}",
        template_name(template).to_lowercase(),
        match ca {
            Ca::Root => "root",
            Ca::Issuing => "issuing",
        }
    )
}

/// One Certificate of the conformance table.
struct Scenario {
    name: &'static str,
    key: KeyAlgorithm,
    /// `privateKey.encoding`.
    encoding: &'static str,
    template: CertificateTemplate,
    ca: Ca,
    /// `duration`, in hours.
    hours: i64,
}

const fn scenario(
    name: &'static str,
    key: KeyAlgorithm,
    encoding: &'static str,
    template: CertificateTemplate,
    ca: Ca,
    hours: i64,
) -> Scenario {
    Scenario {
        name,
        key,
        encoding,
        template,
        ca,
        hours,
    }
}

use CertificateTemplate::{ClientTls, EmailProtection, MutualTls, ServerTls};
use KeyAlgorithm::{EcdsaP256, EcdsaP384, Ed25519, Rsa2048, Rsa3072, Rsa4096};

/// Every key algorithm from the root and from the intermediate (RSA 4096 once), every
/// template from both, durations below and above the product's maximum validity.
const SCENARIOS: [Scenario; 11] = [
    scenario("p256-root", EcdsaP256, "PKCS1", ServerTls, Ca::Root, 2160),
    scenario(
        "p256-issuing",
        EcdsaP256,
        "PKCS8",
        MutualTls,
        Ca::Issuing,
        2160,
    ),
    scenario("p384-root", EcdsaP384, "PKCS8", ClientTls, Ca::Root, 100),
    scenario(
        "p384-issuing",
        EcdsaP384,
        "PKCS1",
        ServerTls,
        Ca::Issuing,
        9000,
    ),
    scenario(
        "ed25519-root",
        Ed25519,
        "PKCS1",
        EmailProtection,
        Ca::Root,
        24,
    ),
    scenario(
        "ed25519-issuing",
        Ed25519,
        "PKCS8",
        ServerTls,
        Ca::Issuing,
        720,
    ),
    scenario("rsa2048-root", Rsa2048, "PKCS1", MutualTls, Ca::Root, 1000),
    scenario(
        "rsa2048-issuing",
        Rsa2048,
        "PKCS8",
        EmailProtection,
        Ca::Issuing,
        2160,
    ),
    scenario("rsa3072-root", Rsa3072, "PKCS8", ServerTls, Ca::Root, 48),
    scenario(
        "rsa3072-issuing",
        Rsa3072,
        "PKCS1",
        ClientTls,
        Ca::Issuing,
        2160,
    ),
    scenario(
        "rsa4096-issuing",
        Rsa4096,
        "PKCS1",
        ServerTls,
        Ca::Issuing,
        2160,
    ),
];

fn private_key_yaml(key: KeyAlgorithm) -> &'static str {
    match key {
        EcdsaP256 => "{algorithm: ECDSA, size: 256",
        EcdsaP384 => "{algorithm: ECDSA, size: 384",
        Ed25519 => "{algorithm: Ed25519",
        Rsa2048 => "{algorithm: RSA, size: 2048",
        Rsa3072 => "{algorithm: RSA, size: 3072",
        Rsa4096 => "{algorithm: RSA, size: 4096",
    }
}

impl Scenario {
    fn dns_names(&self) -> Vec<String> {
        vec![
            format!("{}.acme.test", self.name),
            format!("*.{}.apps.acme.test", self.name),
        ]
    }
    fn uri(&self) -> String {
        format!("spiffe://acme.test/ns/acme/sa/{}", self.name)
    }
    fn email(&self) -> String {
        format!("{}@acme.test", self.name)
    }

    fn manifest(&self) -> String {
        let dns = self.dns_names();
        format!(
            r#"---
apiVersion: certinext.io/v1alpha1
kind: Certificate
metadata: {{name: {name}, namespace: {NAMESPACE}}}
spec:
  secretName: {name}-tls
  secretTemplate:
    labels: {{app: {name}, tier: conformance}}
    annotations: {{example.com/owner: platform}}
  productRef: {{name: {product}}}
  groupRef: {{name: team}}
  commonName: {cn}
  dnsNames: ["{dns0}", "{dns1}"]
  ipAddresses: ["192.0.2.10", "2001:db8::10"]
  uris: ["{uri}"]
  emailAddresses: ["{email}"]
  subject: {{organizations: [{ORGANIZATION}]}}
  duration: {hours}h
  privateKey: {key}, encoding: {encoding}}}
"#,
            name = self.name,
            product = product_name(self.template, self.ca),
            cn = dns[0],
            dns0 = dns[0],
            dns1 = dns[1],
            uri = self.uri(),
            email = self.email(),
            hours = self.hours,
            key = private_key_yaml(self.key),
            encoding = self.encoding,
        )
    }

    /// The key usages and extended key usages the template grants (`src/pki/sign.rs`):
    /// key encipherment only for RSA keys.
    fn usages(&self) -> (HashSet<KeyUsage>, HashSet<KeyUsage>) {
        let rsa = matches!(self.key, Rsa2048 | Rsa3072 | Rsa4096);
        let mut key = HashSet::from([KeyUsage::DigitalSignature]);
        let extended: HashSet<KeyUsage> = match self.template {
            ServerTls => [KeyUsage::ServerAuth].into(),
            ClientTls => [KeyUsage::ClientAuth].into(),
            MutualTls => [KeyUsage::ServerAuth, KeyUsage::ClientAuth].into(),
            EmailProtection => [KeyUsage::EmailProtection].into(),
        };
        if rsa && self.template != ClientTls {
            key.insert(KeyUsage::KeyEncipherment);
        }
        (key, extended)
    }

    /// The PEM label `tls.key` must carry.
    fn key_label(&self) -> &'static str {
        match (self.encoding, self.key) {
            (_, Ed25519) | ("PKCS8", _) => "PRIVATE KEY",
            (_, Rsa2048 | Rsa3072 | Rsa4096) => "RSA PRIVATE KEY",
            _ => "EC PRIVATE KEY",
        }
    }
}

/// The text of a Secret's key.
fn text(secret: &Secret, key: &str) -> Option<String> {
    let bytes = secret.data.as_ref()?.get(key)?;
    String::from_utf8(bytes.0.clone()).ok()
}

/// Runs `program` with `args`; returns (success, stdout and stderr).
fn run(program: &Path, args: &[&str]) -> (bool, String) {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{} runs: {e}", program.display()));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

fn openssl(args: &[&str]) -> (bool, String) {
    run(Path::new("openssl"), args)
}

/// Applies a manifest with kubectl, through a file.
async fn kubectl_apply(cluster: &TestCluster, name: &str, yaml: &str) {
    let path = cluster.file(name, yaml);
    cluster
        .kubectl(&["apply", "-f", &path.to_string_lossy()])
        .await;
}

fn orders_api(cluster: &TestCluster) -> Api<Order> {
    Api::namespaced(cluster.client.clone(), NAMESPACE)
}

fn state(order: &Order) -> Option<OrderState> {
    order.status.as_ref().and_then(|s| s.state)
}

fn charges(order: &Order) -> Vec<(TransactionType, Money)> {
    order
        .status
        .iter()
        .flat_map(|s| &s.transactions)
        .map(|t| (t.transaction_type, t.amount))
        .collect()
}

/// What the orders charged, less refunds.
fn net_charged(orders: &[Order]) -> Money {
    let mut total = Money::ZERO;
    for order in orders {
        for (kind, amount) in charges(order) {
            total = match kind {
                TransactionType::Refund => total.checked_sub(amount),
                _ => total.checked_add(amount),
            }
            .expect("the sum fits");
        }
    }
    total
}

fn money(text: &str) -> Money {
    Money::parse(text).expect("an amount")
}

fn times(price: Money, n: usize) -> Money {
    Money::from_minor(price.minor_units() * i64::try_from(n).expect("a count"))
}

async fn group_figures(cluster: &TestCluster) -> (Option<Money>, Option<Money>) {
    let groups: Api<Group> = Api::namespaced(cluster.client.clone(), NAMESPACE);
    let group = groups.get("team").await.expect("the group");
    let status = group.status.unwrap_or_default();
    (status.spent, status.balance)
}

/// Every property of the Secret issued for `scenario` (its Certificate is Ready).
fn assert_conforms(
    scenario: &Scenario,
    certificate: &Certificate,
    secret: &Secret,
    dir: &Path,
) -> String {
    let name = scenario.name;
    let at = |property: &str| format!("Certificate {name}: {property}");

    // The Secret: type, keys, labels and annotations.
    assert_eq!(
        secret.type_.as_deref(),
        Some("kubernetes.io/tls"),
        "{}",
        at("Secret type")
    );
    let keys: BTreeSet<&str> = secret
        .data
        .iter()
        .flat_map(|d| d.keys())
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        BTreeSet::from(["ca.crt", "tls.crt", "tls.key"]),
        "{}",
        at("Secret keys")
    );
    let (crt, key, ca) = (
        text(secret, "tls.crt").expect("tls.crt"),
        text(secret, "tls.key").expect("tls.key"),
        text(secret, "ca.crt").expect("ca.crt"),
    );
    let labels = secret.labels();
    for (label, value) in [
        ("app", name),
        ("tier", "conformance"),
        ("app.kubernetes.io/managed-by", "certinext-operator"),
        ("certinext.io/certificate-name", name),
    ] {
        assert_eq!(
            labels.get(label).map(String::as_str),
            Some(value),
            "{}",
            at(&format!("Secret label {label}"))
        );
    }
    let dns = scenario.dns_names();
    let annotations = secret.annotations();
    for (annotation, value) in [
        ("example.com/owner", "platform".to_owned()),
        ("certinext.io/certificate-name", name.to_owned()),
        ("certinext.io/issuer-name", scenario.ca.name().to_owned()),
        ("certinext.io/issuer-kind", "PrivateCA".to_owned()),
        ("certinext.io/common-name", dns[0].clone()),
        ("certinext.io/alt-names", dns.join(",")),
        ("certinext.io/ip-sans", "192.0.2.10,2001:db8::10".to_owned()),
        ("certinext.io/uri-sans", scenario.uri()),
        ("certinext.io/revision", "1".to_owned()),
    ] {
        assert_eq!(
            annotations.get(annotation),
            Some(&value),
            "{}",
            at(&format!("Secret annotation {annotation}"))
        );
    }

    // The key: its encoding, its algorithm, and that it is the certificate's.
    let label = scenario.key_label();
    assert!(
        key.starts_with(&format!("-----BEGIN {label}-----")),
        "{}: {}",
        at(&format!("tls.key is not a {label} ({})", scenario.encoding)),
        key.lines().next().unwrap_or_default()
    );
    let pair = pki::load_key_pem(&key).expect("tls.key loads");
    assert_eq!(pair.algorithm(), scenario.key, "{}", at("key algorithm"));
    assert!(
        pair.matches_certificate_pem(&crt).expect("tls.crt parses"),
        "{}",
        at("tls.key does not match tls.crt")
    );

    // The chain: leaf then intermediates in tls.crt, the root alone in ca.crt.
    let chain = pki::split_pem_chain(&crt).expect("tls.crt is PEM certificates");
    let expected_length = match scenario.ca {
        Ca::Root => 1,
        Ca::Issuing => 2,
    };
    assert_eq!(chain.len(), expected_length, "{}", at("tls.crt length"));
    let leaf = pki::inspect_der(&chain[0]).expect("the leaf parses");
    if let Some(intermediate) = chain.get(1) {
        let intermediate = pki::inspect_der(intermediate).expect("the intermediate parses");
        assert!(
            intermediate.is_ca && !intermediate.self_issued,
            "{}",
            at("tls.crt[1] is not the intermediate")
        );
        assert_eq!(
            intermediate.common_name.as_deref(),
            Some("Acme Issuing CA"),
            "{}",
            at("tls.crt[1]")
        );
    }
    let roots = pki::split_pem_chain(&ca).expect("ca.crt is PEM certificates");
    assert_eq!(roots.len(), 1, "{}", at("ca.crt holds one certificate"));
    let root = pki::inspect_der(&roots[0]).expect("the root parses");
    assert!(
        root.is_ca && root.self_issued,
        "{}",
        at("ca.crt is not a root")
    );
    assert_eq!(
        root.common_name.as_deref(),
        Some("Acme Root CA"),
        "{}",
        at("ca.crt")
    );
    pki::verify_chain(&crt, &ca, jiff::Timestamp::now())
        .unwrap_or_else(|e| panic!("{}: {e}", at("pki::verify_chain")));
    let file = |suffix: &str, contents: &str| {
        let path = dir.join(format!("{name}-{suffix}"));
        std::fs::write(&path, contents).expect("write");
        path.to_string_lossy().into_owned()
    };
    let (crt_path, key_path, ca_path) = (
        file("tls.crt", &crt),
        file("tls.key", &key),
        file("ca.crt", &ca),
    );
    let (ok, out) = openssl(&[
        "verify",
        "-CAfile",
        &ca_path,
        "-untrusted",
        &crt_path,
        &crt_path,
    ]);
    assert!(ok, "{}: {out}", at("openssl verify"));
    let (ok, key_public) = openssl(&["pkey", "-in", &key_path, "-pubout"]);
    assert!(ok, "{}: {key_public}", at("openssl pkey reads tls.key"));
    let (ok, crt_public) = openssl(&["x509", "-in", &crt_path, "-noout", "-pubkey"]);
    assert!(ok, "{}: {crt_public}", at("openssl x509 reads tls.crt"));
    assert_eq!(
        key_public,
        crt_public,
        "{}",
        at("openssl: public keys differ")
    );

    // Names: subject and every kind of SAN, as the spec asks.
    assert_eq!(
        leaf.common_name.as_deref(),
        Some(dns[0].as_str()),
        "{}",
        at("CN")
    );
    assert!(
        leaf.subject.contains(&format!("O={ORGANIZATION}")),
        "{}: {}",
        at("subject O"),
        leaf.subject
    );
    let sans = &leaf.subject_alt_names;
    assert_eq!(
        sans.dns_names.iter().collect::<BTreeSet<_>>(),
        dns.iter().collect(),
        "{}",
        at("DNS SANs")
    );
    let ips: BTreeSet<String> = sans.ip_addresses.iter().map(|ip| ip.to_string()).collect();
    assert_eq!(
        ips,
        BTreeSet::from(["192.0.2.10".to_owned(), "2001:db8::10".to_owned()]),
        "{}",
        at("IP SANs")
    );
    assert_eq!(sans.uris, vec![scenario.uri()], "{}", at("URI SANs"));
    assert_eq!(
        sans.email_addresses,
        vec![scenario.email()],
        "{}",
        at("email SANs")
    );

    // Usages from the template, and not a CA.
    let (key_usages, extended) = scenario.usages();
    assert_eq!(
        leaf.key_usages.iter().copied().collect::<HashSet<_>>(),
        key_usages,
        "{}",
        at(&format!("key usages for {:?}", scenario.template))
    );
    assert_eq!(
        leaf.extended_key_usages
            .iter()
            .copied()
            .collect::<HashSet<_>>(),
        extended,
        "{}",
        at(&format!("extended key usages for {:?}", scenario.template))
    );
    assert!(!leaf.is_ca, "{}", at("basicConstraints cA"));
    let (ok, text) = openssl(&[
        "x509",
        "-in",
        &crt_path,
        "-noout",
        "-ext",
        "basicConstraints",
    ]);
    assert!(
        ok && text.contains("CA:FALSE"),
        "{}: {text}",
        at("openssl basicConstraints")
    );

    // Validity: the duration, clipped by the product's maximum.
    let lifetime = leaf.not_after.duration_since(leaf.not_before).as_secs();
    let expected_hours = scenario.hours.min(scenario.ca.max_validity_hours());
    assert_eq!(lifetime, expected_hours * 3600, "{}", at("validity"));

    // Status says what the Secret holds.
    let status = certificate.status.clone().unwrap_or_default();
    assert_eq!(status.revision, Some(1), "{}", at("status.revision"));
    assert_eq!(
        status.serial_number.as_deref(),
        Some(leaf.serial_hex.as_str()),
        "{}",
        at("status.serialNumber")
    );
    assert_eq!(
        status.not_after.map(|t| t.0),
        Some(leaf.not_after),
        "{}",
        at("status.notAfter")
    );
    assert_eq!(
        status.not_before.map(|t| t.0),
        Some(leaf.not_before),
        "{}",
        at("status.notBefore")
    );
    crt_path
}

/// pkilint's findings of WARNING and above on a certificate: `(severity, code, where and
/// what)`. `linter` is one of its command-line linters, `args` its options before the file.
fn pkilint(linter: &str, args: &[&str], crt_path: &str) -> Vec<(String, String, String)> {
    let linter = support::python::tool(linter);
    let mut all = vec!["lint"];
    all.extend(args);
    all.extend(["-s", "WARNING", "-f", "JSON", crt_path]);
    let (_, out) = run(&linter, &all);
    let report: serde_json::Value = serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("pkilint printed no JSON report ({e}):\n{out}"));
    let mut findings = Vec::new();
    for result in report["results"].as_array().into_iter().flatten() {
        for finding in result["finding_descriptions"]
            .as_array()
            .into_iter()
            .flatten()
        {
            findings.push((
                finding["severity"].as_str().unwrap_or_default().to_owned(),
                finding["code"].as_str().unwrap_or_default().to_owned(),
                format!(
                    "{} at {}",
                    finding["message"].as_str().unwrap_or_default(),
                    result["node_path"].as_str().unwrap_or_default()
                ),
            ));
        }
    }
    findings
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_issued_secret_conforms_for_every_key_and_template() {
    let cluster = TestCluster::with_crds().await;
    let controllers = certinext::controllers::start(&cluster.client, &Default::default());
    let mut yaml = tenant("100.00", "1.00");
    for scenario in &SCENARIOS {
        yaml.push_str(&scenario.manifest());
    }
    kubectl_apply(&cluster, "conformance.yaml", &yaml).await;

    let certificates: Api<Certificate> = Api::namespaced(cluster.client.clone(), NAMESPACE);
    let secrets: Api<Secret> = Api::namespaced(cluster.client.clone(), NAMESPACE);
    let dir = tempfile::tempdir().expect("a directory");
    for scenario in &SCENARIOS {
        let certificate = wait_until(&certificates, scenario.name, is_ready).await;
        let secret = secrets
            .get(&format!("{}-tls", scenario.name))
            .await
            .unwrap_or_else(|e| panic!("Certificate {}: its Secret: {e}", scenario.name));
        assert_conforms(scenario, &certificate, &secret, dir.path());
        let order = orders_api(&cluster)
            .get(&format!("{}-1", scenario.name))
            .await
            .expect("the Order");
        assert_eq!(
            charges(&order),
            vec![(TransactionType::Purchase, money("1.00"))],
            "Certificate {}: Order charges",
            scenario.name
        );
    }

    for controller in controllers {
        controller.abort();
    }
}

/// Baseline Requirements a private CA does not meet by design: revocation information and
/// AIA (it publishes no CRL or OCSP responder), the BR policy OIDs, and names that are not
/// on the public DNS.
const PUBLIC_TRUST_ONLY: [&str; 5] = [
    "cabf.serverauth.subscriber.revocation_information_absent",
    "msft.end_entity.revocation_information_absent",
    "cabf.serverauth.subscriber.authority_info_access_extension_absent",
    "cabf.serverauth.subscriber.certificate_policies_extension_absent",
    "cabf.internal_domain_name",
];

fn is_error(finding: &(String, String, String)) -> bool {
    finding.0 == "ERROR" || finding.0 == "FATAL"
}

fn report_findings(linter: &str, name: &str, findings: &[(String, String, String)]) {
    for (severity, code, what) in findings {
        eprintln!("{linter} {name}: {severity} {code}: {what}");
    }
}

/// A ServerTLS leaf as an ingress uses it (DNS names only), from the intermediate and from
/// the root, linted by pkilint: `lint_pkix_cert` (RFC 5280) must find no error; the CA/B
/// Forum linter may only report what a private CA cannot have. Warnings are printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_tls_leaves_pass_pkilint() {
    let cluster = TestCluster::with_crds().await;
    let controllers = certinext::controllers::start(&cluster.client, &Default::default());
    let mut yaml = tenant("100.00", "1.00");
    for (name, product, key) in [
        (
            "web-ecdsa",
            "servertls-issuing",
            "{algorithm: ECDSA, size: 256}",
        ),
        ("web-rsa", "servertls-root", "{algorithm: RSA, size: 2048}"),
    ] {
        yaml.push_str(&format!(
            "---\napiVersion: certinext.io/v1alpha1\nkind: Certificate\n\
             metadata: {{name: {name}, namespace: {NAMESPACE}}}\n\
             spec:\n  secretName: {name}-tls\n  productRef: {{name: {product}}}\n  groupRef: {{name: team}}\n\
             \x20 dnsNames: [{name}.acme.test, www.{name}.acme.test]\n  privateKey: {key}\n"
        ));
    }
    kubectl_apply(&cluster, "web.yaml", &yaml).await;

    let certificates: Api<Certificate> = Api::namespaced(cluster.client.clone(), NAMESPACE);
    let secrets: Api<Secret> = Api::namespaced(cluster.client.clone(), NAMESPACE);
    let dir = tempfile::tempdir().expect("a directory");
    for name in ["web-ecdsa", "web-rsa"] {
        wait_until(&certificates, name, is_ready).await;
        let secret = secrets
            .get(&format!("{name}-tls"))
            .await
            .expect("the Secret");
        let path = dir.path().join(format!("{name}.crt"));
        let chain = pki::split_pem_chain(&text(&secret, "tls.crt").expect("tls.crt"))
            .expect("tls.crt is PEM certificates");
        let leaf = pem::encode(&pem::Pem::new("CERTIFICATE", chain[0].clone()));
        std::fs::write(&path, leaf).expect("write");
        let path = path.to_string_lossy().into_owned();
        // RFC 5280 profile: no errors, whoever the relying party.
        let findings = pkilint("lint_pkix_cert", &[], &path);
        report_findings("lint_pkix_cert", name, &findings);
        let errors: Vec<_> = findings.iter().filter(|f| is_error(f)).collect();
        assert!(
            errors.is_empty(),
            "Certificate {name}: lint_pkix_cert errors: {errors:#?}"
        );

        // CA/Browser Forum TLS Baseline Requirements, as a DV subscriber certificate: every
        // error must be one that only a publicly-trusted CA can meet.
        let findings = pkilint(
            "lint_cabf_serverauth_cert",
            &["-t", "DV-FINAL-CERTIFICATE"],
            &path,
        );
        report_findings("lint_cabf_serverauth_cert", name, &findings);
        let errors: Vec<_> = findings
            .iter()
            .filter(|f| is_error(f) && !PUBLIC_TRUST_ONLY.contains(&f.1.as_str()))
            .collect();
        assert!(
            errors.is_empty(),
            "Certificate {name}: lint_cabf_serverauth_cert errors: {errors:#?}"
        );
    }
    for controller in controllers {
        controller.abort();
    }
}

/// A ServerTLS Certificate `name` from the intermediate, paid by the group, with `extra`
/// spec lines (indented by two spaces).
fn server_certificate(name: &str, extra: &str) -> String {
    format!(
        "---\napiVersion: certinext.io/v1alpha1\nkind: Certificate\n\
         metadata: {{name: {name}, namespace: {NAMESPACE}}}\n\
         spec:\n  secretName: {name}-tls\n  productRef: {{name: servertls-issuing}}\n  \
         groupRef: {{name: team}}\n  dnsNames: [{name}.acme.test]\n{extra}"
    )
}

/// Polls `observe` until `done` holds for what it returns, for at most `limit`; returns the
/// last observation either way, for the caller to assert on with its details.
async fn observe_until<T, F, Fut>(limit: Duration, mut observe: F, done: impl Fn(&T) -> bool) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = T>,
{
    let deadline = Instant::now() + limit;
    loop {
        let seen = observe().await;
        if done(&seen) || Instant::now() >= deadline {
            return seen;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn revision(certificate: &Certificate) -> i64 {
    certificate
        .status
        .as_ref()
        .and_then(|s| s.revision)
        .unwrap_or_default()
}

/// The public key (DER) and serial of the certificate in `name`'s Secret, after checking
/// that the key matches it and the chain verifies.
async fn issued_key(secrets: &Api<Secret>, name: &str) -> (Vec<u8>, String) {
    let secret = secrets
        .get(&format!("{name}-tls"))
        .await
        .unwrap_or_else(|e| panic!("Certificate {name}: its Secret: {e}"));
    let (crt, key, ca) = (
        text(&secret, "tls.crt").expect("tls.crt"),
        text(&secret, "tls.key").expect("tls.key"),
        text(&secret, "ca.crt").expect("ca.crt"),
    );
    let pair = pki::load_key_pem(&key).expect("tls.key loads");
    assert!(
        pair.matches_certificate_pem(&crt).expect("tls.crt parses"),
        "Certificate {name}: tls.key does not match tls.crt"
    );
    pki::verify_chain(&crt, &ca, jiff::Timestamp::now())
        .unwrap_or_else(|e| panic!("Certificate {name}: the chain does not verify: {e}"));
    let leaf = pki::inspect_pem(&crt).expect("the leaf parses");
    (pair.public_key_der(), leaf.serial_hex)
}

/// A one-hour certificate renewed ten seconds after issuance: a new revision with a new
/// key under `rotationPolicy: Always` and the same key under `Never`, each renewal an Order
/// of type Renewal charged to the group as a RENEWAL, and the group's `spent` counting every
/// issuance, including those whose Orders the revision history limit has deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_renew_on_time_and_each_renewal_is_charged() {
    let cluster = TestCluster::with_crds().await;
    let controllers = certinext::controllers::start(&cluster.client, &Default::default());
    let price = money("2.00");
    let mut yaml = tenant("100.00", "2.00");
    let short = "  duration: 1h\n  renewBefore: 59m50s\n";
    yaml.push_str(&server_certificate(
        "rotating",
        &format!("{short}  privateKey: {{algorithm: ECDSA, rotationPolicy: Always}}\n"),
    ));
    yaml.push_str(&server_certificate(
        "keeping",
        &format!(
            "{short}  privateKey: {{algorithm: ECDSA, rotationPolicy: Never}}\n  revisionHistoryLimit: 1\n"
        ),
    ));
    kubectl_apply(&cluster, "renewal.yaml", &yaml).await;

    let certificates: Api<Certificate> = Api::namespaced(cluster.client.clone(), NAMESPACE);
    let secrets: Api<Secret> = Api::namespaced(cluster.client.clone(), NAMESPACE);
    // Both are issued at once; the first certificate of each is read before either renews.
    let mut first = BTreeMap::new();
    for name in ["rotating", "keeping"] {
        let issued = wait_until(&certificates, name, |c| is_ready(c) && revision(c) == 1).await;
        let status = issued.status.unwrap_or_default();
        let renewal_time = status
            .renewal_time
            .unwrap_or_else(|| panic!("Certificate {name}: status.renewalTime"));
        let not_before = status.not_before.expect("notBefore");
        assert_eq!(
            renewal_time.0.duration_since(not_before.0).as_secs(),
            10,
            "Certificate {name}: renewalTime is notAfter - renewBefore"
        );
        first.insert(name, (renewal_time, issued_key(&secrets, name).await));
    }
    for (name, rotates) in [("rotating", true), ("keeping", false)] {
        let (renewal_time, (first_key, first_serial)) = first[name].clone();
        let renewed = wait_until(&certificates, name, |c| is_ready(c) && revision(c) >= 2).await;
        let (key, serial) = issued_key(&secrets, name).await;
        assert_ne!(
            serial, first_serial,
            "Certificate {name}: a renewal is a new certificate"
        );
        assert_eq!(
            key != first_key,
            rotates,
            "Certificate {name}: a new key under Always, the same under Never"
        );
        let renewed_at = renewed
            .status
            .and_then(|s| s.not_before)
            .expect("notBefore");
        assert!(
            renewed_at.0 >= renewal_time.0,
            "Certificate {name}: renewed at {renewed_at:?}, before its renewal time {renewal_time:?}"
        );

        let order = orders_api(&cluster)
            .get(&format!("{name}-2"))
            .await
            .unwrap_or_else(|e| panic!("Certificate {name}: Order {name}-2: {e}"));
        assert_eq!(
            order.spec.order_type,
            OrderType::Renewal,
            "Order {name}-2: type"
        );
        assert_eq!(
            state(&order),
            Some(OrderState::Issued),
            "Order {name}-2: state"
        );
        assert_eq!(
            charges(&order),
            vec![(TransactionType::Renewal, price)],
            "Order {name}-2: charged once, as a RENEWAL"
        );
    }

    // Stop renewing (a later renewal time needs no new certificate), then the group must
    // have paid for every issuance: one PURCHASE and each RENEWAL of both certificates.
    for name in ["rotating", "keeping"] {
        certificates
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({"spec": {"renewBefore": "30m"}})),
            )
            .await
            .expect("renewBefore patched");
    }
    let (issuances, spent) = observe_until(
        Duration::from_secs(30),
        || async {
            let before: i64 = certificates
                .list(&ListParams::default())
                .await
                .expect("list")
                .items
                .iter()
                .map(revision)
                .sum();
            let (spent, _) = group_figures(&cluster).await;
            let after: i64 = certificates
                .list(&ListParams::default())
                .await
                .expect("list")
                .items
                .iter()
                .map(revision)
                .sum();
            (if before == after { before } else { -1 }, spent)
        },
        |(issuances, spent)| {
            *issuances > 0
                && *spent
                    == Some(times(
                        price,
                        usize::try_from(*issuances).unwrap_or_default(),
                    ))
        },
    )
    .await;
    assert!(issuances >= 4, "both certificates renewed at least once");
    assert_eq!(
        spent,
        Some(times(price, usize::try_from(issuances).unwrap_or_default())),
        "Group team: status.spent after {issuances} issuances at {price}"
    );
    for controller in controllers {
        controller.abort();
    }
}

/// 200 Certificates; the controllers are aborted once about a third are Ready and started
/// again: every Certificate ends Ready with a valid Secret, no Order is charged twice, and the
/// group paid exactly one purchase per Certificate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_certificates_converge_across_a_restart() {
    const COUNT: usize = 200;
    let cluster = TestCluster::with_crds().await;
    let settings = Default::default();
    let controllers = certinext::controllers::start(&cluster.client, &settings);
    let price = money("1.00");
    let mut yaml = tenant("1000.00", "1.00");
    let names: Vec<String> = (0..COUNT).map(|i| format!("load-{i:03}")).collect();
    for name in &names {
        yaml.push_str(&server_certificate(
            name,
            "  privateKey: {algorithm: ECDSA, size: 256}\n",
        ));
    }
    let started = Instant::now();
    kubectl_apply(&cluster, "load.yaml", &yaml).await;

    let certificates: Api<Certificate> = Api::namespaced(cluster.client.clone(), NAMESPACE);
    let ready_count = || async {
        certificates
            .list(&ListParams::default())
            .await
            .map(|list| list.items.iter().filter(|c| is_ready(*c)).count())
            .unwrap_or_default()
    };
    let at_abort = eventually_within("a third of the certificates Ready", TIMEOUT, || async {
        let ready = ready_count().await;
        (ready >= COUNT / 3).then_some(ready)
    })
    .await;
    for controller in controllers {
        controller.abort();
        let _ = controller.await;
    }
    eprintln!(
        "{at_abort} of {COUNT} Ready after {:?}; controllers aborted",
        started.elapsed()
    );
    assert!(
        at_abort < COUNT,
        "the restart happened with certificates in flight"
    );

    let controllers = certinext::controllers::start(&cluster.client, &settings);
    // With 200 in flight, issuance runs at about one Certificate a second in debug builds on
    // two cores: the wait allows for it.
    let ready = observe_until(3 * TIMEOUT, ready_count, |ready| *ready == COUNT).await;
    assert_eq!(
        ready,
        COUNT,
        "Certificates Ready {:?} after the restart",
        started.elapsed()
    );
    eprintln!("{COUNT} of {COUNT} Ready after {:?}", started.elapsed());

    let secrets: Api<Secret> = Api::namespaced(cluster.client.clone(), NAMESPACE);
    for name in &names {
        issued_key(&secrets, name).await;
    }
    let orders = orders_api(&cluster)
        .list(&ListParams::default())
        .await
        .expect("list orders")
        .items;
    for order in &orders {
        let paid: Vec<_> = charges(order)
            .into_iter()
            .filter(|(kind, _)| *kind != TransactionType::Refund)
            .collect();
        assert!(
            paid.len() <= 1,
            "Order {}: charged {paid:?}",
            order.name_any()
        );
    }
    let mut purchases: BTreeMap<String, usize> = BTreeMap::new();
    for order in &orders {
        if charges(order).contains(&(TransactionType::Purchase, price)) {
            *purchases
                .entry(order.spec.certificate_ref.name.clone())
                .or_default() += 1;
        }
    }
    for name in &names {
        assert_eq!(
            purchases.get(name),
            Some(&1),
            "Certificate {name}: one PURCHASE"
        );
    }
    let renewals = orders
        .iter()
        .filter(|o| o.spec.order_type == OrderType::Renewal)
        .count();
    let expected = times(price, COUNT + renewals);
    assert_eq!(net_charged(&orders), expected, "the charges of every Order");
    let (spent, _) = observe_until(
        Duration::from_secs(30),
        || group_figures(&cluster),
        |(spent, _)| *spent == Some(expected),
    )
    .await;
    assert_eq!(spent, Some(expected), "Group team: status.spent");
    for controller in controllers {
        controller.abort();
    }
}

/// Twelve Certificates against a group whose funds cover nine: nine issued and charged,
/// three Rejected for funds (Ready=False, no Secret), the balance never below zero.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_that_covers_nine_certificates_of_twelve_issues_nine() {
    const COUNT: usize = 12;
    let cluster = TestCluster::with_crds().await;
    let controllers = certinext::controllers::start(&cluster.client, &Default::default());
    let price = money("10.00");
    let mut yaml = tenant("90.00", "10.00");
    let names: Vec<String> = (0..COUNT).map(|i| format!("burst-{i:02}")).collect();
    for name in &names {
        yaml.push_str(&server_certificate(name, ""));
    }

    // The balance as the group reports it, sampled from before the first order to the end.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let (stop, groups) = (
            stop.clone(),
            Api::<Group>::namespaced(cluster.client.clone(), NAMESPACE),
        );
        tokio::spawn(async move {
            let mut seen = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok(Some(group)) = groups.get_opt("team").await
                    && let Some(balance) = group.status.and_then(|s| s.balance)
                {
                    seen.push(balance);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            seen
        })
    };
    kubectl_apply(&cluster, "burst.yaml", &yaml).await;

    let certificates: Api<Certificate> = Api::namespaced(cluster.client.clone(), NAMESPACE);
    let orders = orders_api(&cluster);
    let rejected_for = |orders: &[Order], name: &str| {
        orders
            .iter()
            .any(|o| o.spec.certificate_ref.name == name && state(o) == Some(OrderState::Rejected))
    };
    let (issued, refused) = eventually_within("nine Ready and three refused", TIMEOUT, || async {
        let all = certificates.list(&ListParams::default()).await.ok()?.items;
        let orders = orders.list(&ListParams::default()).await.ok()?.items;
        let issued: Vec<String> = all
            .iter()
            .filter(|c| is_ready(*c))
            .map(|c| c.name_any())
            .collect();
        let refused: Vec<String> = all
            .iter()
            .filter(|c| ready(*c).is_some_and(|r| r.0 == "False"))
            .map(|c| c.name_any())
            .filter(|name| rejected_for(&orders, name))
            .collect();
        (issued.len() + refused.len() == COUNT).then_some((issued, refused))
    })
    .await;
    assert_eq!(issued.len(), 9, "issued: {issued:?}; refused: {refused:?}");
    assert_eq!(refused.len(), 3, "issued: {issued:?}; refused: {refused:?}");

    let secrets: Api<Secret> = Api::namespaced(cluster.client.clone(), NAMESPACE);
    for name in &issued {
        issued_key(&secrets, name).await;
    }
    for name in &refused {
        assert!(
            secrets
                .get_opt(&format!("{name}-tls"))
                .await
                .expect("get")
                .is_none(),
            "Certificate {name}: refused for funds, yet it has a Secret"
        );
    }
    let all_orders = orders
        .list(&ListParams::default())
        .await
        .expect("list")
        .items;
    for order in &all_orders {
        let name = order.name_any();
        match state(order) {
            Some(OrderState::Rejected) => {
                assert!(
                    charges(order).is_empty(),
                    "Order {name}: Rejected yet charged"
                )
            }
            Some(OrderState::Issued) => assert_eq!(
                charges(order),
                vec![(TransactionType::Purchase, price)],
                "Order {name}: charged once"
            ),
            other => panic!("Order {name}: unexpected state {other:?}"),
        }
    }
    assert_eq!(
        net_charged(&all_orders),
        money("90.00"),
        "the charges of every Order"
    );
    let (spent, balance) = observe_until(
        Duration::from_secs(30),
        || group_figures(&cluster),
        |figures| *figures == (Some(money("90.00")), Some(Money::ZERO)),
    )
    .await;
    assert_eq!(
        (spent, balance),
        (Some(money("90.00")), Some(Money::ZERO)),
        "Group team: spent and balance"
    );

    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let seen = sampler.await.expect("the sampler ran");
    assert!(!seen.is_empty(), "the group's balance was sampled");
    assert!(
        seen.iter().all(|b| !b.is_negative()),
        "Group team: the balance went below zero: {seen:?}"
    );
    for controller in controllers {
        controller.abort();
    }
}
