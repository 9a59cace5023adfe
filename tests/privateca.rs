//! The PrivateCA controller on devcluster: a root and two intermediates for every key
//! algorithm, each Secret as the issuance contract lays it out, chains verified by `openssl
//! verify` and by our verifier, status that matches the certificate, refusals with Warning
//! Events, renewal that keeps or rotates the key, children re-signed under a renewed parent,
//! the Secret collected with its PrivateCA, and every PrivateCA of the examples Ready.

mod support;

use std::path::Path;
use std::process::Command;

use certinext::api::PrivateCA;
use certinext::api::certificate::CertificateSpec;
use certinext::api::common::KeyAlgorithm;
use certinext::api::privateca::{NameConstraintItems, NameConstraints};
use certinext::pki;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use serde::Deserialize;
use support::cluster::{TestCluster, eventually, repo_path};
use support::wait::{is_ready, ready, wait_gone, wait_until};

/// A cluster with the CRDs, the controllers running, and `manifest` applied with kubectl.
struct Running {
    cluster: TestCluster,
    controllers: Vec<tokio::task::JoinHandle<()>>,
}

impl Running {
    async fn with(manifest: &str) -> Self {
        let cluster = TestCluster::with_crds().await;
        let controllers = certinext::controllers::start(&cluster.client, &Default::default());
        let path = cluster.file("manifest.yaml", manifest);
        cluster
            .kubectl(&["apply", "-f", path.to_str().unwrap_or_default()])
            .await;
        Running {
            cluster,
            controllers,
        }
    }

    fn cas(&self, namespace: &str) -> Api<PrivateCA> {
        Api::namespaced(self.cluster.client.clone(), namespace)
    }

    fn secrets(&self, namespace: &str) -> Api<Secret> {
        Api::namespaced(self.cluster.client.clone(), namespace)
    }

    /// Waits until the PrivateCA is Ready for its generation; returns it and its Secret.
    async fn ready_ca(&self, namespace: &str, name: &str) -> (PrivateCA, Secret) {
        let ca = wait_until(&self.cas(namespace), name, is_ready).await;
        let secret_name = ca
            .status
            .as_ref()
            .and_then(|s| s.secret_name.clone())
            .expect("a Ready PrivateCA names its Secret");
        let secret = self
            .secrets(namespace)
            .get(&secret_name)
            .await
            .expect("the CA Secret exists");
        (ca, secret)
    }

    /// Waits until the PrivateCA is refused; returns the reason and message.
    async fn refused(&self, namespace: &str, name: &str) -> (String, String) {
        let ca = wait_until(&self.cas(namespace), name, |ca| {
            ready(ca).is_some_and(|r| r.0 == "False")
        })
        .await;
        let (_, reason, message) = ready(&ca).unwrap_or_default();
        (reason, message)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        for controller in &self.controllers {
            controller.abort();
        }
    }
}

fn text(secret: &Secret, key: &str) -> String {
    let bytes = secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .unwrap_or_else(|| panic!("the Secret has no {key}"));
    String::from_utf8(bytes.0.clone()).expect("PEM is text")
}

fn certificates(pem: &str) -> Vec<Vec<u8>> {
    pki::split_pem_chain(pem).expect("a PEM chain")
}

fn format_time(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn openssl(dir: &Path, args: &[&str]) -> String {
    let output = Command::new("/usr/bin/openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl runs");
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "openssl {args:?} failed: {all}");
    all
}

const NAMESPACE_AND_ACCOUNT: &str = "apiVersion: v1
kind: Namespace
metadata: {name: globex}
---
apiVersion: certinext.io/v1alpha1
kind: Account
metadata: {name: globex}
spec: {type: Enterprise, namespaces: [globex]}
";

/// The key algorithms, as a PrivateCA spec writes them and as the certificate carries them.
const FAMILIES: [(&str, &str, KeyAlgorithm); 4] = [
    (
        "p256",
        "{algorithm: ECDSA, size: 256}",
        KeyAlgorithm::EcdsaP256,
    ),
    (
        "p384",
        "{algorithm: ECDSA, size: 384}",
        KeyAlgorithm::EcdsaP384,
    ),
    ("ed25519", "{algorithm: Ed25519}", KeyAlgorithm::Ed25519),
    (
        "rsa2048",
        "{algorithm: RSA, size: 2048}",
        KeyAlgorithm::Rsa2048,
    ),
];

fn hierarchy(family: &str, key: &str) -> String {
    format!(
        "---
apiVersion: certinext.io/v1alpha1
kind: PrivateCA
metadata: {{name: root-{family}, namespace: globex}}
spec:
  subject: {{commonName: Globex Root {family}, organizations: [Globex], countries: [US]}}
  privateKey: {key}
  duration: 87600h
  pathLength: 2
---
apiVersion: certinext.io/v1alpha1
kind: PrivateCA
metadata: {{name: mid-{family}, namespace: globex}}
spec:
  parentRef: {{name: root-{family}}}
  subject: {{commonName: Globex Issuing {family}, organizations: [Globex]}}
  privateKey: {key}
  duration: 43800h
  nameConstraints:
    permitted: {{dnsDomains: [globex.example]}}
    excluded: {{dnsDomains: [secret.globex.example]}}
---
apiVersion: certinext.io/v1alpha1
kind: PrivateCA
metadata: {{name: team-{family}, namespace: globex}}
spec:
  parentRef: {{name: mid-{family}}}
  subject: {{commonName: Globex Team {family}}}
  privateKey: {key}
  secretName: team-{family}-keys
"
    )
}

/// Status fields equal what the certificate in the Secret says.
fn assert_status_matches(ca: &PrivateCA, secret: &Secret, depth: i32) {
    let name = ca.metadata.name.clone().unwrap_or_default();
    let status = ca.status.clone().expect("status");
    let info = pki::inspect_pem(&text(secret, "tls.crt")).expect("tls.crt parses");
    assert_eq!(
        status.serial_number.as_deref(),
        Some(info.serial_hex.as_str()),
        "{name}"
    );
    assert_eq!(
        status.fingerprint_sha256.as_deref(),
        Some(info.fingerprint_sha256.as_str()),
        "{name}"
    );
    let time = |t: &Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>| {
        t.as_ref().map(|t| t.0.to_string())
    };
    assert_eq!(
        time(&status.not_after),
        Some(format_time(info.not_after)),
        "{name}"
    );
    assert_eq!(
        time(&status.not_before),
        Some(format_time(info.not_before)),
        "{name}"
    );
    let renewal = pki::renewal_time(info.not_before, info.not_after, None, None).expect("renewal");
    assert_eq!(
        time(&status.renewal_time),
        Some(format_time(renewal)),
        "{name}"
    );
    assert_eq!(status.chain_depth, Some(depth), "{name}");
    assert_eq!(status.secret_name, secret.metadata.name, "{name}");
    assert_eq!(status.observed_generation, ca.metadata.generation, "{name}");
}

/// A Ready PrivateCA reports every status field.
fn assert_status_complete(ca: &PrivateCA, what: &str) {
    let status = ca.status.clone().unwrap_or_default();
    assert!(
        status.serial_number.is_some()
            && status.fingerprint_sha256.is_some()
            && status.not_after.is_some()
            && status.renewal_time.is_some()
            && status.chain_depth.is_some()
            && status.secret_name.is_some(),
        "{what}: {status:?}"
    );
}

/// The Secret is laid out as the issuance contract says, for the PrivateCA `ca`.
fn assert_secret_layout(ca: &PrivateCA, secret: &Secret, algorithm: KeyAlgorithm) {
    let name = ca.metadata.name.clone().unwrap_or_default();
    assert_eq!(secret.type_.as_deref(), Some("kubernetes.io/tls"), "{name}");
    let labels = secret.metadata.labels.clone().unwrap_or_default();
    assert_eq!(
        labels
            .get("app.kubernetes.io/managed-by")
            .map(String::as_str),
        Some("certinext-operator"),
        "{name}"
    );
    assert_eq!(labels.get("certinext.io/private-ca"), Some(&name), "{name}");
    let owners = secret.metadata.owner_references.clone().unwrap_or_default();
    assert_eq!(owners.len(), 1, "{name}");
    assert_eq!(
        (
            owners[0].kind.as_str(),
            owners[0].name.as_str(),
            Some(&owners[0].uid),
            owners[0].controller
        ),
        (
            "PrivateCA",
            name.as_str(),
            ca.metadata.uid.as_ref(),
            Some(true)
        ),
    );
    let key = text(secret, "tls.key");
    assert!(
        key.starts_with("-----BEGIN PRIVATE KEY-----\n"),
        "{name}: PKCS#8"
    );
    let key = pki::load_key_pem(&key).expect("tls.key loads");
    assert_eq!(key.algorithm(), algorithm, "{name}");
    assert!(
        key.matches_certificate_pem(&text(secret, "tls.crt"))
            .expect("tls.crt parses"),
        "{name}: tls.key is the key of tls.crt"
    );
    let info = pki::inspect_pem(&text(secret, "tls.crt")).expect("tls.crt parses");
    assert!(info.is_ca, "{name}");
    assert_eq!(info.key_algorithm, Some(algorithm), "{name}");
}

fn leaf_spec() -> CertificateSpec {
    serde_json::from_value(serde_json::json!({
        "secretName": "app-tls",
        "productRef": {"name": "server"},
        "commonName": "app.globex.example",
        "dnsNames": ["app.globex.example"],
    }))
    .expect("a Certificate spec")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_key_algorithm_makes_a_root_and_two_intermediates_that_verify() {
    let mut manifest = NAMESPACE_AND_ACCOUNT.to_owned();
    for (family, key, _) in FAMILIES {
        manifest.push_str(&hierarchy(family, key));
    }
    manifest.push_str(
        "---
apiVersion: certinext.io/v1alpha1
kind: PrivateCA
metadata: {name: root-rsa4096, namespace: globex}
spec:
  subject: {commonName: Globex Root RSA 4096}
  privateKey: {algorithm: RSA, size: 4096}
",
    );
    let running = Running::with(&manifest).await;
    let dir = tempfile::tempdir().expect("a directory for PEM files");

    for (family, _, algorithm) in FAMILIES {
        let (root, root_secret) = running.ready_ca("globex", &format!("root-{family}")).await;
        let (mid, mid_secret) = running.ready_ca("globex", &format!("mid-{family}")).await;
        let (team, team_secret) = running.ready_ca("globex", &format!("team-{family}")).await;
        for (ca, secret, depth) in [
            (&root, &root_secret, 0),
            (&mid, &mid_secret, 1),
            (&team, &team_secret, 2),
        ] {
            assert_secret_layout(ca, secret, algorithm);
            assert_status_matches(ca, secret, depth);
        }
        assert_eq!(
            root_secret.metadata.name.as_deref(),
            Some(format!("root-{family}-ca").as_str())
        );
        assert_eq!(
            team_secret.metadata.name.as_deref(),
            Some(format!("team-{family}-keys").as_str())
        );

        // tls.crt: the CA then the intermediates above it, never the root; ca.crt: the root.
        let root_pem = text(&root_secret, "tls.crt");
        assert_eq!(
            text(&root_secret, "ca.crt"),
            root_pem,
            "{family}: a root is its own ca.crt"
        );
        assert_eq!(certificates(&root_pem).len(), 1);
        let mid_pem = text(&mid_secret, "tls.crt");
        assert_eq!(certificates(&mid_pem).len(), 1, "{family}");
        assert_eq!(text(&mid_secret, "ca.crt"), root_pem, "{family}");
        let team_chain = certificates(&text(&team_secret, "tls.crt"));
        assert_eq!(team_chain.len(), 2, "{family}");
        assert_eq!(team_chain[1], certificates(&mid_pem)[0], "{family}");
        assert_eq!(text(&team_secret, "ca.crt"), root_pem, "{family}");

        // Path length and name constraints are in the certificates.
        let info = |pem: &str| pki::inspect_pem(pem).expect("parses");
        assert_eq!(info(&root_pem).path_length, Some(2), "{family}");
        let mid_info = info(&mid_pem);
        assert_eq!(
            mid_info.path_length,
            Some(1),
            "{family}: one less than the root's"
        );
        assert_eq!(
            mid_info.name_constraints,
            Some(NameConstraints {
                critical: true,
                permitted: Some(NameConstraintItems {
                    dns_domains: vec!["globex.example".into()]
                }),
                excluded: Some(NameConstraintItems {
                    dns_domains: vec!["secret.globex.example".into()]
                }),
            }),
            "{family}"
        );
        assert_eq!(
            info(&text(&team_secret, "tls.crt")).path_length,
            Some(0),
            "{family}"
        );

        // openssl verifies each intermediate against the root.
        let file = |name: &str, pem: &str| {
            let name = format!("{family}-{name}.pem");
            std::fs::write(dir.path().join(&name), pem).expect("write PEM");
            name
        };
        let root_file = file("root", &root_pem);
        let mid_file = file("mid", &mid_pem);
        let team_file = file(
            "team",
            &pki::inspect_pem(&text(&team_secret, "tls.crt"))
                .map(|i| pem::encode(&pem::Pem::new("CERTIFICATE", i.der)))
                .expect("parses"),
        );
        let out = openssl(dir.path(), &["verify", "-CAfile", &root_file, &mid_file]);
        assert!(out.contains(&format!("{mid_file}: OK")), "{out}");
        let out = openssl(
            dir.path(),
            &[
                "verify",
                "-CAfile",
                &root_file,
                "-untrusted",
                &mid_file,
                &team_file,
            ],
        );
        assert!(out.contains(&format!("{team_file}: OK")), "{out}");
        let text_out = openssl(dir.path(), &["x509", "-noout", "-text", "-in", &mid_file]);
        assert!(text_out.contains("pathlen:1"), "{text_out}");
        assert!(
            text_out.contains("Permitted:") && text_out.contains("DNS:globex.example"),
            "{text_out}"
        );
        assert!(
            text_out.contains("Excluded:") && text_out.contains("DNS:secret.globex.example"),
            "{text_out}"
        );

        // The team CA signs: a leaf verifies through both intermediates, with webpki and
        // openssl; a name outside the constraints is refused.
        let team_issuer = pki::Issuer::from_pem(
            &text(&team_secret, "tls.crt"),
            &text(&team_secret, "tls.key"),
            &text(&team_secret, "ca.crt"),
        )
        .expect("the Secret rebuilds an issuer");
        let leaf_key = pki::generate_key_for(KeyAlgorithm::EcdsaP256).expect("a key");
        let csr = pki::parse_csr(&pki::build_csr(&leaf_spec(), &leaf_key).expect("a CSR"))
            .expect("the CSR parses");
        let now = Timestamp::now();
        let profile = pki::LeafProfile {
            usages: pki::usages_for(None, &[], KeyAlgorithm::EcdsaP256).expect("usages"),
            validity: pki::Validity {
                not_before: now - SignedDuration::from_mins(1),
                not_after: now + SignedDuration::from_hours(24),
            },
        };
        let leaf = pki::sign_leaf(&csr, &team_issuer, &profile).expect("the team CA signs");
        let verified = pki::verify_chain(&leaf.chain_pem, &text(&team_secret, "ca.crt"), now)
            .expect("the chain verifies");
        assert_eq!(verified.intermediates, 2, "{family}");
        let leaf_file = file("leaf", &leaf.chain_pem);
        let out = openssl(
            dir.path(),
            &[
                "verify",
                "-CAfile",
                &root_file,
                "-untrusted",
                &leaf_file,
                &leaf_file,
            ],
        );
        assert!(out.contains(&format!("{leaf_file}: OK")), "{out}");
    }

    let (root, secret) = running.ready_ca("globex", "root-rsa4096").await;
    assert_secret_layout(&root, &secret, KeyAlgorithm::Rsa4096);
    assert_status_matches(&root, &secret, 0);
    let printed = running
        .cluster
        .kubectl(&["get", "privatecas", "-n", "globex", "--no-headers"])
        .await;
    assert_eq!(printed.lines().count(), 13, "{printed}");
    assert!(printed.lines().all(|l| l.contains(" True ")), "{printed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parents_are_resolved_within_the_account_or_its_reseller_and_refusals_are_warned() {
    let running = Running::with(
        "apiVersion: v1
kind: Namespace
metadata: {name: globex}
---
apiVersion: v1
kind: Namespace
metadata: {name: acme}
---
apiVersion: v1
kind: Namespace
metadata: {name: sslhub}
---
apiVersion: v1
kind: Namespace
metadata: {name: initech}
---
apiVersion: v1
kind: Namespace
metadata: {name: nobody}
---
apiVersion: certinext.io/v1alpha1
kind: Account
metadata: {name: globex}
spec: {type: Enterprise, namespaces: [globex]}
---
apiVersion: certinext.io/v1alpha1
kind: Account
metadata: {name: acme}
spec: {type: Enterprise, namespaces: [acme]}
---
apiVersion: certinext.io/v1alpha1
kind: Account
metadata: {name: sslhub}
spec: {type: Reseller, namespaces: [sslhub]}
---
apiVersion: certinext.io/v1alpha1
kind: SubAccount
metadata: {name: initech, namespace: sslhub}
spec: {type: Retail, namespaces: [initech]}
---
apiVersion: certinext.io/v1alpha1
kind: PrivateCA
metadata: {name: root, namespace: globex}
spec:
  subject: {commonName: Globex Root}
---
apiVersion: certinext.io/v1alpha1
kind: PrivateCA
metadata: {name: borrowed, namespace: acme}
spec:
  parentRef: {name: root, namespace: globex}
  subject: {commonName: Acme Issuing}
---
apiVersion: certinext.io/v1alpha1
kind: PrivateCA
metadata: {name: orphan, namespace: nobody}
spec:
  subject: {commonName: Nobody's Root}
---
apiVersion: certinext.io/v1alpha1
kind: PrivateCA
metadata: {name: dangling, namespace: globex}
spec:
  parentRef: {name: no-such-ca}
  subject: {commonName: Dangling}
---
apiVersion: certinext.io/v1alpha1
kind: PrivateCA
metadata: {name: partner-root, namespace: sslhub}
spec:
  subject: {commonName: SSLHub Root}
  pathLength: 1
---
apiVersion: certinext.io/v1alpha1
kind: PrivateCA
metadata: {name: customer, namespace: initech}
spec:
  parentRef: {name: partner-root, namespace: sslhub}
  subject: {commonName: Initech Issuing}
",
    )
    .await;

    // Another account's CA is not a parent, and the refusal is a Warning Event.
    let (reason, message) = running.refused("acme", "borrowed").await;
    assert_eq!(reason, "ParentNotAllowed");
    assert_eq!(
        message,
        "PrivateCA \"borrowed\": spec.parentRef names PrivateCA \"globex/root\" in a namespace of \
         account \"globex\", not of account \"acme\" or its parent reseller"
    );
    let events = eventually("a Warning Event on PrivateCA borrowed", || async {
        let reasons = running
            .cluster
            .kubectl(&[
                "get",
                "events",
                "-n",
                "acme",
                "--field-selector",
                "involvedObject.name=borrowed,involvedObject.kind=PrivateCA,type=Warning",
                "-o",
                "jsonpath={.items[*].reason}",
            ])
            .await;
        reasons.contains("ParentNotAllowed").then_some(reasons)
    })
    .await;
    assert!(events.contains("ParentNotAllowed"), "{events}");
    assert!(
        running
            .secrets("acme")
            .get_opt("borrowed-ca")
            .await
            .expect("get")
            .is_none(),
        "a refused CA has no Secret"
    );

    let (reason, message) = running.refused("nobody", "orphan").await;
    assert_eq!(reason, "NoAccount");
    assert!(message.contains("\"nobody\""), "{message}");
    let (reason, message) = running.refused("globex", "dangling").await;
    assert_eq!(reason, "ParentNotFound");
    assert!(message.contains("\"globex/no-such-ca\""), "{message}");

    // A sub-account's CA may hang below its reseller's.
    let (partner, partner_secret) = running.ready_ca("sslhub", "partner-root").await;
    let (customer, customer_secret) = running.ready_ca("initech", "customer").await;
    assert_eq!(
        text(&customer_secret, "ca.crt"),
        text(&partner_secret, "tls.crt")
    );
    assert_status_matches(&customer, &customer_secret, 1);
    assert_status_matches(&partner, &partner_secret, 0);
    assert_eq!(
        pki::inspect_pem(&text(&customer_secret, "tls.crt"))
            .expect("parses")
            .path_length,
        Some(0)
    );

    // A spec change re-issues the CA with its key, and its child follows.
    running
        .cluster
        .kubectl(&[
            "patch",
            "privateca",
            "partner-root",
            "-n",
            "sslhub",
            "--type",
            "merge",
            "-p",
            r#"{"spec":{"nameConstraints":{"permitted":{"dnsDomains":["initech.example"]}}}}"#,
        ])
        .await;
    let (patched, patched_secret) = running.ready_ca("sslhub", "partner-root").await;
    assert_eq!(patched.metadata.generation, Some(2));
    let info = pki::inspect_pem(&text(&patched_secret, "tls.crt")).expect("parses");
    assert_eq!(
        info.name_constraints.and_then(|nc| nc.permitted),
        Some(NameConstraintItems {
            dns_domains: vec!["initech.example".into()]
        })
    );
    assert_ne!(
        patched
            .status
            .as_ref()
            .and_then(|s| s.serial_number.clone()),
        partner
            .status
            .as_ref()
            .and_then(|s| s.serial_number.clone())
    );
    assert_eq!(
        pki::load_key_pem(&text(&patched_secret, "tls.key"))
            .expect("loads")
            .public_key_der(),
        pki::load_key_pem(&text(&partner_secret, "tls.key"))
            .expect("loads")
            .public_key_der(),
        "the key is kept"
    );
    let new_root = text(&patched_secret, "tls.crt");
    wait_until(&running.secrets("initech"), "customer-ca", move |s| {
        s.data
            .as_ref()
            .and_then(|d| d.get("ca.crt"))
            .is_some_and(|c| c.0 == new_root.as_bytes())
    })
    .await;

    // A deleted Secret is issued again.
    running
        .cluster
        .kubectl(&["delete", "secret", "customer-ca", "-n", "initech"])
        .await;
    wait_until(&running.secrets("initech"), "customer-ca", |s| {
        s.data.as_ref().is_some_and(|d| d.contains_key("tls.key"))
    })
    .await;

    // Deleting a PrivateCA deletes its Secret.
    running.ready_ca("globex", "root").await;
    running
        .cluster
        .kubectl(&["delete", "privateca", "root", "-n", "globex"])
        .await;
    wait_gone(&running.secrets("globex"), "root-ca").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_lived_cas_renew_keeping_or_rotating_their_key_and_children_follow() {
    // Renewal 10 s after issuance: renewBefore is 59m50s of a one-hour lifetime (the minimum).
    let running = Running::with(&format!(
        "{NAMESPACE_AND_ACCOUNT}---
apiVersion: certinext.io/v1alpha1
kind: PrivateCA
metadata: {{name: keeps, namespace: globex}}
spec:
  subject: {{commonName: Keeps Its Key}}
  duration: 1h
  renewBefore: 59m50s
---
apiVersion: certinext.io/v1alpha1
kind: PrivateCA
metadata: {{name: rotates, namespace: globex}}
spec:
  subject: {{commonName: Rotates Its Key}}
  privateKey: {{algorithm: ECDSA, rotationPolicy: Always}}
  duration: 1h
  renewBefore: 59m50s
---
apiVersion: certinext.io/v1alpha1
kind: PrivateCA
metadata: {{name: child, namespace: globex}}
spec:
  parentRef: {{name: keeps}}
  subject: {{commonName: Child}}
"
    ))
    .await;
    let serial = |ca: &PrivateCA| ca.status.as_ref().and_then(|s| s.serial_number.clone());
    let public_key = |secret: &Secret| {
        pki::inspect_pem(&text(secret, "tls.crt"))
            .expect("parses")
            .public_key_der
    };
    let (keeps, keeps_secret) = running.ready_ca("globex", "keeps").await;
    let (rotates, rotates_secret) = running.ready_ca("globex", "rotates").await;
    let (child, child_secret) = running.ready_ca("globex", "child").await;
    let status = keeps.status.clone().expect("status");
    let lifetime = |s: &certinext::api::privateca::PrivateCAStatus| {
        let at = |t: &Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>| {
            t.as_ref().map(|t| t.0.as_second()).unwrap_or_default()
        };
        (
            at(&s.not_after) - at(&s.not_before),
            at(&s.renewal_time) - at(&s.not_before),
        )
    };
    assert_eq!(lifetime(&status), (3600, 10));
    // The child's lifetime is clipped to its parent's.
    let child_status = child.status.clone().expect("status");
    assert!(child_status.not_after <= status.not_after);

    for (name, before, secret, same_key) in [
        ("keeps", &keeps, &keeps_secret, true),
        ("rotates", &rotates, &rotates_secret, false),
    ] {
        let first = serial(before);
        let renewed = wait_until(&running.cas("globex"), name, move |ca| {
            is_ready(ca) && ca.status.as_ref().and_then(|s| s.serial_number.clone()) != first
        })
        .await;
        let renewed_secret = running
            .secrets("globex")
            .get(&format!("{name}-ca"))
            .await
            .expect("the Secret");
        assert_ne!(
            text(&renewed_secret, "tls.crt"),
            text(secret, "tls.crt"),
            "{name}: a new certificate"
        );
        assert_eq!(
            public_key(&renewed_secret) == public_key(secret),
            same_key,
            "{name}: key kept is {same_key}"
        );
        assert_eq!(
            ready(&renewed).map(|r| r.1),
            Some("Ready".to_owned()),
            "{name}"
        );
    }

    // The child is signed again under its renewed parent, keeping its own key.
    let first_root = text(&child_secret, "ca.crt");
    let renewed = wait_until(&running.cas("globex"), "child", {
        let first = serial(&child);
        move |ca| is_ready(ca) && ca.status.as_ref().and_then(|s| s.serial_number.clone()) != first
    })
    .await;
    let renewed_secret = running
        .secrets("globex")
        .get("child-ca")
        .await
        .expect("the Secret");
    assert_ne!(text(&renewed_secret, "ca.crt"), first_root);
    assert_eq!(public_key(&renewed_secret), public_key(&child_secret));
    assert_eq!(renewed.status.and_then(|s| s.chain_depth), Some(1));
    let dir = tempfile::tempdir().expect("a directory");
    std::fs::write(dir.path().join("root.pem"), text(&renewed_secret, "ca.crt")).expect("write");
    std::fs::write(
        dir.path().join("child.pem"),
        text(&renewed_secret, "tls.crt"),
    )
    .expect("write");
    // The parent may have renewed again meanwhile: the child verifies against the root it holds.
    let out = openssl(dir.path(), &["verify", "-CAfile", "root.pem", "child.pem"]);
    assert!(out.contains("child.pem: OK"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_private_ca_in_the_examples_becomes_ready() {
    for example in ["quickstart", "enterprise", "reseller", "retail"] {
        let cluster = TestCluster::with_crds().await;
        let controllers = certinext::controllers::start(&cluster.client, &Default::default());
        let path = repo_path(&format!("examples/{example}.yaml"));
        let manifest = std::fs::read_to_string(&path).expect("the example");
        certinext::manifests::apply(&cluster.client, &manifest, "test")
            .await
            .expect("the example applies");
        let cas: Vec<(String, String)> = serde_yaml::Deserializer::from_str(&manifest)
            .filter_map(|doc| serde_yaml::Value::deserialize(doc).ok())
            .filter(|doc| doc["kind"].as_str() == Some("PrivateCA"))
            .map(|doc| {
                (
                    doc["metadata"]["namespace"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                    doc["metadata"]["name"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                )
            })
            .collect();
        assert!(!cas.is_empty(), "{example} has a PrivateCA");
        for (namespace, name) in cas {
            let api: Api<PrivateCA> = Api::namespaced(cluster.client.clone(), &namespace);
            let ca = wait_until(&api, &name, is_ready).await;
            assert_status_complete(&ca, &format!("{example}: {namespace}/{name}"));
        }
        for controller in controllers {
            controller.abort();
        }
    }
}
