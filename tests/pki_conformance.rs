//! Conformance of issued certificates, for every key algorithm: a root, an intermediate and
//! a leaf, each property asserted the same way, checked by our verifier and by OpenSSL.

use std::path::{Path, PathBuf};
use std::process::Command;

use certinext::api::certificate::{CertificateSpec, KeyUsage};
use certinext::api::common::{KeyAlgorithm, PrivateKeyEncoding};
use certinext::api::privateca::{CASubject, NameConstraintItems, NameConstraints};
use certinext::api::product::CertificateTemplate;
use certinext::pki::{
    self, CaProfile, Issuer, LeafProfile, PkiError, Validity, build_csr, issue_intermediate_ca,
    issue_root_ca, parse_csr, sign_leaf, usages_for, verify_chain,
};
use jiff::{SignedDuration, Timestamp};

const OPENSSL: &str = "/usr/bin/openssl";

fn openssl_available() -> bool {
    if Path::new(OPENSSL).exists() {
        true
    } else {
        eprintln!("skipping OpenSSL checks: {OPENSSL} not found");
        false
    }
}

/// Runs openssl; returns (success, combined output).
fn openssl(args: &[&str]) -> (bool, String) {
    let out = Command::new(OPENSSL).args(args).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn now() -> Timestamp {
    Timestamp::from_second(Timestamp::now().as_second()).unwrap()
}

fn ca_subject(cn: &str) -> CASubject {
    serde_json::from_value(serde_json::json!({
        "commonName": cn, "organizations": ["Example Ltd"], "countries": ["GB"],
    }))
    .unwrap()
}

fn constraints() -> NameConstraints {
    NameConstraints {
        critical: true,
        permitted: Some(NameConstraintItems {
            dns_domains: vec!["example.test".into()],
        }),
        excluded: Some(NameConstraintItems {
            dns_domains: vec!["secret.example.test".into()],
        }),
    }
}

fn leaf_spec(dns: &[&str]) -> CertificateSpec {
    serde_json::from_value(serde_json::json!({
        "secretName": "app-tls",
        "productRef": {"name": "server"},
        "commonName": "app.example.test",
        "dnsNames": dns,
        "ipAddresses": ["192.0.2.10", "2001:db8::10"],
        "uris": ["spiffe://example.test/ns/app/sa/app"],
        "emailAddresses": ["ops@example.test"],
        "subject": {"organizations": ["Example Ltd"], "organizationalUnits": ["Platform"]},
    }))
    .unwrap()
}

struct Pki {
    root_key: pki::KeyPair,
    root: Issuer,
    intermediate: Issuer,
}

/// A root (pathLen 1) and an intermediate (name-constrained) with keys of `alg`.
fn two_level_ca(alg: KeyAlgorithm) -> Pki {
    let start = now() - SignedDuration::from_mins(5);
    let root_key = pki::keys::generate_key_for(alg).unwrap();
    let root_ca = issue_root_ca(
        &CaProfile {
            subject: ca_subject("Conformance Root"),
            not_before: start,
            not_after: start + SignedDuration::from_hours(24 * 3650),
            path_length: Some(1),
            name_constraints: None,
        },
        &root_key,
    )
    .unwrap();
    let root = Issuer::new(
        &root_ca.chain_pem,
        pki::load_key_pem(&root_key.to_pem(PrivateKeyEncoding::Pkcs8).unwrap()).unwrap(),
        &root_ca.root_pem,
    )
    .unwrap();

    let int_key = pki::keys::generate_key_for(alg).unwrap();
    let int_ca = issue_intermediate_ca(
        &CaProfile {
            subject: ca_subject("Conformance Intermediate"),
            not_before: start,
            not_after: start + SignedDuration::from_hours(24 * 1825),
            path_length: None,
            name_constraints: Some(constraints()),
        },
        &int_key,
        &root,
    )
    .unwrap();
    // The controller's path: the Secret's three PEMs back into an Issuer.
    let intermediate = Issuer::from_pem(
        &int_ca.chain_pem,
        &int_key.to_pem(PrivateKeyEncoding::Pkcs1).unwrap(),
        &int_ca.root_pem,
    )
    .unwrap();
    Pki {
        root_key,
        root,
        intermediate,
    }
}

fn conformance(alg: KeyAlgorithm) {
    let pki = two_level_ca(alg);

    // CA certificates.
    let root_info = pki::inspect_pem(&pki.root.certificate_pem()).unwrap();
    assert!(root_info.is_ca && root_info.self_issued);
    assert_eq!(root_info.path_length, Some(1));
    assert_eq!(root_info.key_algorithm, Some(alg));
    assert!(
        pki.root_key
            .matches_certificate_pem(&pki.root.certificate_pem())
            .unwrap()
    );
    let int_info = pki.intermediate.info();
    assert!(int_info.is_ca && !int_info.self_issued);
    assert_eq!(int_info.path_length, Some(0), "one less than the root's");
    assert_eq!(int_info.key_usages, [KeyUsage::CertSign, KeyUsage::CrlSign]);
    assert_eq!(int_info.name_constraints, Some(constraints()));
    assert_eq!(int_info.authority_key_id, root_info.subject_key_id);
    assert_eq!(
        pki::chain_depth(&pki.intermediate.chain_pem(), &pki.intermediate.root_pem()).unwrap(),
        1
    );
    assert_eq!(
        pki::chain_depth(&pki.root.chain_pem(), &pki.root.root_pem()).unwrap(),
        0
    );

    // The leaf.
    let leaf_key = pki::keys::generate_key_for(alg).unwrap();
    let csr_pem = build_csr(
        &leaf_spec(&["app.example.test", "*.api.example.test"]),
        &leaf_key,
    )
    .unwrap();
    let csr = parse_csr(&csr_pem).unwrap();
    assert_eq!(csr.key_algorithm, alg);
    let validity = Validity {
        not_before: now() - SignedDuration::from_mins(1),
        not_after: now() + SignedDuration::from_hours(24 * 90),
    };
    let usages = usages_for(Some(CertificateTemplate::ServerTls), &[], alg).unwrap();
    let issued = sign_leaf(&csr, &pki.intermediate, &LeafProfile { usages, validity }).unwrap();

    let info = pki::inspect_pem(&issued.chain_pem).unwrap();
    assert!(
        leaf_key
            .matches_certificate_pem(&issued.certificate_pem)
            .unwrap()
    );
    assert!(
        !pki.root_key
            .matches_certificate_pem(&issued.certificate_pem)
            .unwrap()
    );
    assert_eq!(info.key_algorithm, Some(alg));
    assert_eq!(info.common_name.as_deref(), Some("app.example.test"));
    assert_eq!(
        info.subject,
        "O=Example Ltd, OU=Platform, CN=app.example.test"
    );
    assert_eq!(info.issuer, int_info.subject);
    let sans = &info.subject_alt_names;
    assert_eq!(sans.dns_names, ["app.example.test", "*.api.example.test"]);
    assert_eq!(
        sans.ip_addresses,
        [
            "192.0.2.10".parse::<std::net::IpAddr>().unwrap(),
            "2001:db8::10".parse().unwrap()
        ]
    );
    assert_eq!(sans.uris, ["spiffe://example.test/ns/app/sa/app"]);
    assert_eq!(sans.email_addresses, ["ops@example.test"]);
    let rsa = matches!(
        alg,
        KeyAlgorithm::Rsa2048 | KeyAlgorithm::Rsa3072 | KeyAlgorithm::Rsa4096
    );
    let want_ku: &[KeyUsage] = if rsa {
        &[KeyUsage::DigitalSignature, KeyUsage::KeyEncipherment]
    } else {
        &[KeyUsage::DigitalSignature]
    };
    assert_eq!(info.key_usages, want_ku);
    assert_eq!(info.extended_key_usages, [KeyUsage::ServerAuth]);
    assert!(!info.is_ca);
    assert_eq!(info.path_length, None);
    assert_eq!(info.not_before, validity.not_before);
    assert_eq!(info.not_after, validity.not_after);
    assert_eq!(
        (issued.info.not_before, issued.info.not_after),
        (validity.not_before, validity.not_after)
    );
    assert_eq!(info.serial_hex, issued.info.serial_hex);
    assert_eq!(info.fingerprint_sha256.len(), 64);
    assert_eq!(info.authority_key_id, int_info.subject_key_id);
    assert!(info.subject_key_id.is_some());

    // Secret layout: tls.crt is leaf then intermediate, ca.crt the root.
    let chain = pki::split_pem_chain(&issued.chain_pem).unwrap();
    assert_eq!(chain.len(), 2);
    assert_eq!(chain[1], int_info.der);
    assert_eq!(issued.root_pem, pki.root.certificate_pem());
    assert_eq!(
        pki::chain_depth(&issued.chain_pem, &issued.root_pem).unwrap(),
        2
    );

    // Rust verification: valid now, not after expiry, not against another root.
    let verified = verify_chain(&issued.chain_pem, &issued.root_pem, now()).unwrap();
    assert_eq!(verified.intermediates, 1);
    let later = validity.not_after + SignedDuration::from_hours(1);
    let err = verify_chain(&issued.chain_pem, &issued.root_pem, later).unwrap_err();
    assert!(
        err.to_string().contains("chain verification failed"),
        "{err}"
    );
    let stranger = two_level_ca(KeyAlgorithm::EcdsaP256);
    assert!(verify_chain(&issued.chain_pem, &stranger.root.root_pem(), now()).is_err());

    // A name outside the intermediate's constraints is refused at signing.
    let outside =
        parse_csr(&build_csr(&leaf_spec(&["app.example.org"]), &leaf_key).unwrap()).unwrap();
    let err = sign_leaf(
        &outside,
        &pki.intermediate,
        &LeafProfile {
            usages: vec![KeyUsage::ServerAuth],
            validity,
        },
    )
    .unwrap_err();
    assert!(
        matches!(err, PkiError::NameConstraint(_)) && err.to_string().contains("app.example.org"),
        "{err}"
    );
    let excluded =
        parse_csr(&build_csr(&leaf_spec(&["db.secret.example.test"]), &leaf_key).unwrap()).unwrap();
    let err = sign_leaf(
        &excluded,
        &pki.intermediate,
        &LeafProfile {
            usages: vec![KeyUsage::ServerAuth],
            validity,
        },
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("excluded domain \"secret.example.test\""),
        "{err}"
    );

    // Key PEM headers.
    let pkcs1 = leaf_key.to_pem(PrivateKeyEncoding::Pkcs1).unwrap();
    let pkcs8 = leaf_key.to_pem(PrivateKeyEncoding::Pkcs8).unwrap();
    let want_pkcs1 = match alg {
        KeyAlgorithm::Ed25519 => "PRIVATE KEY",
        KeyAlgorithm::EcdsaP256 | KeyAlgorithm::EcdsaP384 => "EC PRIVATE KEY",
        _ => "RSA PRIVATE KEY",
    };
    assert!(
        pkcs1.starts_with(&format!("-----BEGIN {want_pkcs1}-----\n")),
        "{pkcs1}"
    );
    assert!(pkcs8.starts_with("-----BEGIN PRIVATE KEY-----\n"));

    if !openssl_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let leaf_path = write(d, "leaf.pem", &issued.certificate_pem);
    let untrusted = write(d, "intermediates.pem", &pki.intermediate.chain_pem());
    let root_path = write(d, "root.pem", &issued.root_pem);
    let tls_crt = write(d, "tls.crt", &issued.chain_pem);
    let (ok, out) = openssl(&[
        "verify",
        "-CAfile",
        root_path.to_str().unwrap(),
        "-untrusted",
        untrusted.to_str().unwrap(),
        leaf_path.to_str().unwrap(),
    ]);
    assert!(ok && out.contains(": OK"), "openssl verify: {out}");
    // With the purpose a TLS server needs, and its name.
    let (ok, out) = openssl(&[
        "verify",
        "-purpose",
        "sslserver",
        "-verify_hostname",
        "app.example.test",
        "-CAfile",
        root_path.to_str().unwrap(),
        "-untrusted",
        untrusted.to_str().unwrap(),
        leaf_path.to_str().unwrap(),
    ]);
    assert!(ok, "openssl verify -purpose sslserver: {out}");
    // And it does fail: the wrong root.
    let stranger_root = write(d, "stranger.pem", &stranger.root.root_pem());
    let (ok, out) = openssl(&[
        "verify",
        "-CAfile",
        stranger_root.to_str().unwrap(),
        "-untrusted",
        untrusted.to_str().unwrap(),
        leaf_path.to_str().unwrap(),
    ]);
    assert!(!ok, "openssl verify against another root passed: {out}");

    let (ok, out) = openssl(&["x509", "-in", tls_crt.to_str().unwrap(), "-noout", "-text"]);
    assert!(ok, "openssl x509: {out}");
    assert!(out.contains("CA:FALSE"), "{out}");
    assert!(out.contains("DNS:app.example.test"), "{out}");
    assert!(out.contains("TLS Web Server Authentication"), "{out}");
    let (ok, out) = openssl(&[
        "x509",
        "-in",
        root_path.to_str().unwrap(),
        "-noout",
        "-text",
    ]);
    assert!(
        ok && out.contains("CA:TRUE, pathlen:1"),
        "openssl x509 root: {out}"
    );
    let int_path = write(d, "int.pem", &pki.intermediate.certificate_pem());
    let (ok, out) = openssl(&["x509", "-in", int_path.to_str().unwrap(), "-noout", "-text"]);
    assert!(
        ok && out.contains("Permitted:") && out.contains("DNS:example.test"),
        "{out}"
    );
    assert!(
        out.contains("Excluded:") && out.contains("DNS:secret.example.test"),
        "{out}"
    );

    for (name, text) in [("pkcs1.key", &pkcs1), ("pkcs8.key", &pkcs8)] {
        let path = write(d, name, text);
        let (ok, out) = openssl(&["pkey", "-in", path.to_str().unwrap(), "-noout", "-text"]);
        assert!(ok, "openssl pkey {name}: {out}");
        // The key in either encoding is the certificate's key.
        let (ok, key_pub) = openssl(&["pkey", "-in", path.to_str().unwrap(), "-pubout"]);
        assert!(ok, "{key_pub}");
        let (ok, cert_pub) = openssl(&[
            "x509",
            "-in",
            leaf_path.to_str().unwrap(),
            "-noout",
            "-pubkey",
        ]);
        assert!(ok, "{cert_pub}");
        assert_eq!(key_pub, cert_pub, "{name}");
    }
    let csr_path = write(d, "req.pem", &csr_pem);
    let (ok, out) = openssl(&[
        "req",
        "-in",
        csr_path.to_str().unwrap(),
        "-noout",
        "-verify",
    ]);
    assert!(ok, "openssl req -verify: {out}");
}

#[test]
fn ecdsa_p256() {
    conformance(KeyAlgorithm::EcdsaP256);
}

#[test]
fn ecdsa_p384() {
    conformance(KeyAlgorithm::EcdsaP384);
}

#[test]
fn ed25519() {
    conformance(KeyAlgorithm::Ed25519);
}

#[test]
fn rsa_2048() {
    conformance(KeyAlgorithm::Rsa2048);
}

#[test]
fn rsa_3072() {
    conformance(KeyAlgorithm::Rsa3072);
}

#[test]
fn rsa_4096() {
    conformance(KeyAlgorithm::Rsa4096);
}

/// A CSR and keys made by OpenSSL, not by us: parsed, signed, verified; OpenSSL's PKCS#1
/// and SEC 1 keys load.
#[test]
fn openssl_made_csrs_and_keys_are_accepted() {
    if !openssl_available() {
        return;
    }
    let pki = two_level_ca(KeyAlgorithm::EcdsaP256);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cases: [(&[&str], KeyAlgorithm); 3] = [
        // P-384 signed with SHA-256 (OpenSSL's default digest): the key's curve decides.
        (
            &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-384"],
            KeyAlgorithm::EcdsaP384,
        ),
        (&["-newkey", "rsa:3072"], KeyAlgorithm::Rsa3072),
        (&["-newkey", "ed25519"], KeyAlgorithm::Ed25519),
    ];
    for (i, (newkey, alg)) in cases.into_iter().enumerate() {
        let key_path = d.join(format!("k{i}.pem"));
        let csr_path = d.join(format!("r{i}.pem"));
        let mut args = vec!["req", "-new", "-nodes"];
        args.extend_from_slice(newkey);
        args.extend_from_slice(&[
            "-keyout",
            key_path.to_str().unwrap(),
            "-out",
            csr_path.to_str().unwrap(),
            "-subj",
            "/CN=ext.example.test",
            "-addext",
            "subjectAltName=DNS:ext.example.test,IP:192.0.2.1",
        ]);
        let (ok, out) = openssl(&args);
        assert!(ok, "{out}");
        let csr = parse_csr(&std::fs::read_to_string(&csr_path).unwrap()).unwrap();
        assert_eq!(csr.key_algorithm, alg);
        let issued = sign_leaf(
            &csr,
            &pki.intermediate,
            &LeafProfile {
                usages: usages_for(Some(CertificateTemplate::MutualTls), &[], alg).unwrap(),
                validity: Validity {
                    not_before: now() - SignedDuration::from_mins(1),
                    not_after: now() + SignedDuration::from_hours(24),
                },
            },
        )
        .unwrap();
        verify_chain(&issued.chain_pem, &issued.root_pem, now()).unwrap();
        let key = pki::load_key_pem(&std::fs::read_to_string(&key_path).unwrap()).unwrap();
        assert_eq!(key.algorithm(), alg);
        assert!(
            key.matches_certificate_pem(&issued.certificate_pem)
                .unwrap()
        );
        let info = pki::inspect_pem(&issued.certificate_pem).unwrap();
        assert_eq!(
            info.extended_key_usages,
            [KeyUsage::ServerAuth, KeyUsage::ClientAuth]
        );
    }
    // Traditional encodings written by OpenSSL load too.
    for (args, label) in [
        (vec!["genrsa", "-traditional", "2048"], "RSA PRIVATE KEY"),
        (
            vec!["ecparam", "-name", "prime256v1", "-genkey", "-noout"],
            "EC PRIVATE KEY",
        ),
    ] {
        let (ok, out) = openssl(&args);
        assert!(ok && out.contains(label), "{out}");
        let start = out.find("-----BEGIN").unwrap();
        pki::load_key_pem(&out[start..]).unwrap();
    }
}

/// Our verifier and OpenSSL enforce name constraints and path length themselves: a leaf
/// forged past our signer's checks (signed with rcgen directly) fails both.
#[test]
fn verifiers_refuse_what_the_constraints_forbid() {
    let start = now() - SignedDuration::from_mins(5);
    let root_key = pki::keys::generate_key_for(KeyAlgorithm::EcdsaP256).unwrap();
    let root = issue_root_ca(
        &CaProfile {
            subject: ca_subject("Forgery Root"),
            not_before: start,
            not_after: start + SignedDuration::from_hours(48),
            path_length: Some(0),
            name_constraints: Some(constraints()),
        },
        &root_key,
    )
    .unwrap();
    let signer = rcgen::Issuer::from_ca_cert_pem(
        &root.certificate_pem,
        rcgen::KeyPair::from_pem(&root_key.to_pem(PrivateKeyEncoding::Pkcs8).unwrap()).unwrap(),
    )
    .unwrap();
    let forge = |name: &str, is_ca: rcgen::IsCa, by: &rcgen::Issuer<'_, rcgen::KeyPair>| {
        let mut params = rcgen::CertificateParams::new(vec![name.to_string()]).unwrap();
        params.not_before = time::OffsetDateTime::now_utc() - time::Duration::minutes(1);
        params.not_after = time::OffsetDateTime::now_utc() + time::Duration::hours(1);
        params.is_ca = is_ca;
        params.use_authority_key_identifier_extension = true;
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, by).unwrap();
        (cert, key)
    };

    // A name outside the permitted domain.
    let (outside, _) = forge("www.example.org", rcgen::IsCa::ExplicitNoCa, &signer);
    let err = verify_chain(&outside.pem(), &root.root_pem, now()).unwrap_err();
    assert!(err.to_string().contains("NameConstraintViolation"), "{err}");
    // The same CA and a permitted name verify.
    let (inside, _) = forge("www.example.test", rcgen::IsCa::ExplicitNoCa, &signer);
    verify_chain(&inside.pem(), &root.root_pem, now()).unwrap();

    // A CA below an intermediate of pathLen 0. (webpki applies path length to
    // intermediates; a root's own pathLen, as a trust anchor, it does not read.)
    let root_issuer = Issuer::new(
        &root.chain_pem,
        pki::load_key_pem(&root_key.to_pem(PrivateKeyEncoding::Pkcs8).unwrap()).unwrap(),
        &root.root_pem,
    )
    .unwrap();
    let int_key = pki::keys::generate_key_for(KeyAlgorithm::EcdsaP256).unwrap();
    let int = issue_intermediate_ca(
        &CaProfile {
            subject: ca_subject("Forgery Intermediate"),
            not_before: start,
            not_after: start + SignedDuration::from_hours(24),
            path_length: Some(0),
            name_constraints: None,
        },
        &int_key,
        &root_issuer,
    );
    // Our signer refuses it outright: the root has pathLen 0.
    assert!(int.unwrap_err().to_string().contains("path length 0"));
    let open_root = issue_root_ca(
        &CaProfile {
            subject: ca_subject("Open Root"),
            not_before: start,
            not_after: start + SignedDuration::from_hours(48),
            path_length: None,
            name_constraints: None,
        },
        &root_key,
    )
    .unwrap();
    let open_issuer = Issuer::new(
        &open_root.chain_pem,
        pki::load_key_pem(&root_key.to_pem(PrivateKeyEncoding::Pkcs8).unwrap()).unwrap(),
        &open_root.root_pem,
    )
    .unwrap();
    let int = issue_intermediate_ca(
        &CaProfile {
            subject: ca_subject("Forgery Intermediate"),
            not_before: start,
            not_after: start + SignedDuration::from_hours(24),
            path_length: Some(0),
            name_constraints: None,
        },
        &int_key,
        &open_issuer,
    )
    .unwrap();
    let int_signer = rcgen::Issuer::from_ca_cert_pem(
        &int.certificate_pem,
        rcgen::KeyPair::from_pem(&int_key.to_pem(PrivateKeyEncoding::Pkcs8).unwrap()).unwrap(),
    )
    .unwrap();
    let (sub_ca, sub_key) = forge(
        "sub.example.test",
        rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained),
        &int_signer,
    );
    let sub = rcgen::Issuer::from_ca_cert_der(sub_ca.der(), sub_key).unwrap();
    let (deep_leaf, _) = forge("deep.example.test", rcgen::IsCa::ExplicitNoCa, &sub);
    let tls_crt = format!("{}{}{}", deep_leaf.pem(), sub_ca.pem(), int.certificate_pem);
    let err = verify_chain(&tls_crt, &open_root.root_pem, now()).unwrap_err();
    assert!(
        err.to_string().contains("PathLenConstraintViolated"),
        "{err}"
    );

    if !openssl_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let empty = write(d, "none.pem", "");
    for (name, leaf, untrusted, root_pem) in [
        ("outside", outside.pem(), None, &root.root_pem),
        (
            "deep",
            deep_leaf.pem(),
            Some(format!("{}{}", sub_ca.pem(), int.certificate_pem)),
            &open_root.root_pem,
        ),
    ] {
        let root_path = write(d, &format!("{name}-root.pem"), root_pem);
        let leaf_path = write(d, &format!("{name}.pem"), &leaf);
        let untrusted_path = match &untrusted {
            Some(text) => write(d, &format!("{name}-chain.pem"), text),
            None => empty.clone(),
        };
        let mut args = vec!["verify", "-CAfile", root_path.to_str().unwrap()];
        if untrusted.is_some() {
            args.extend_from_slice(&["-untrusted", untrusted_path.to_str().unwrap()]);
        }
        args.push(leaf_path.to_str().unwrap());
        let (ok, out) = openssl(&args);
        assert!(!ok, "openssl verified the {name} forgery: {out}");
    }
}
