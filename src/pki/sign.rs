//! Issuing a leaf certificate from a CSR: usages from the product's template (one table) or
//! the Certificate's explicit usages, validity clipped by the caller's policy, names checked
//! against the CA's name constraints.

use jiff::Timestamp;
use rcgen::{CertificateParams, ExtendedKeyUsagePurpose, IsCa, KeyUsagePurpose, SanType};

use super::ca::{IssuedCertificate, Issuer, random_serial};
use super::csr::ParsedCsr;
use super::names::validate_dns_name;
use super::{PkiError, Result, add_duration, std_duration, to_offset_date_time};
use crate::api::certificate::KeyUsage;
use crate::api::common::{Duration, KeyAlgorithm};
use crate::api::product::CertificateTemplate;

/// What each template grants. `KeyEncipherment` is granted to RSA keys only: it means
/// RSA key transport, which other keys cannot do.
pub const TEMPLATE_USAGES: [(CertificateTemplate, &[KeyUsage]); 4] = [
    (
        CertificateTemplate::ServerTls,
        &[
            KeyUsage::DigitalSignature,
            KeyUsage::KeyEncipherment,
            KeyUsage::ServerAuth,
        ],
    ),
    (
        CertificateTemplate::ClientTls,
        &[KeyUsage::DigitalSignature, KeyUsage::ClientAuth],
    ),
    (
        CertificateTemplate::MutualTls,
        &[
            KeyUsage::DigitalSignature,
            KeyUsage::KeyEncipherment,
            KeyUsage::ServerAuth,
            KeyUsage::ClientAuth,
        ],
    ),
    (
        CertificateTemplate::EmailProtection,
        &[
            KeyUsage::DigitalSignature,
            KeyUsage::KeyEncipherment,
            KeyUsage::EmailProtection,
        ],
    ),
];

/// Usages of a certificate issued without a product or explicit usages, as cert-manager's.
pub const DEFAULT_USAGES: &[KeyUsage] = &[KeyUsage::DigitalSignature, KeyUsage::KeyEncipherment];

/// Extended key usages rcgen has no name for, by OID.
pub(crate) const EXTRA_EKUS: [(KeyUsage, &[u64]); 5] = [
    (KeyUsage::IpsecEndSystem, &[1, 3, 6, 1, 5, 5, 7, 3, 5]),
    (KeyUsage::IpsecTunnel, &[1, 3, 6, 1, 5, 5, 7, 3, 6]),
    (KeyUsage::IpsecUser, &[1, 3, 6, 1, 5, 5, 7, 3, 7]),
    (KeyUsage::MicrosoftSgc, &[1, 3, 6, 1, 4, 1, 311, 10, 3, 3]),
    (KeyUsage::NetscapeSgc, &[2, 16, 840, 1, 113730, 4, 1]),
];

/// A usage as it goes into a certificate: a key usage bit or an extended key usage.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Usage {
    Key(KeyUsagePurpose),
    Extended(ExtendedKeyUsagePurpose),
}

fn usage(u: KeyUsage) -> Usage {
    use ExtendedKeyUsagePurpose as E;
    use KeyUsagePurpose as K;
    match u {
        KeyUsage::Signing | KeyUsage::DigitalSignature => Usage::Key(K::DigitalSignature),
        KeyUsage::ContentCommitment => Usage::Key(K::ContentCommitment),
        KeyUsage::KeyEncipherment => Usage::Key(K::KeyEncipherment),
        KeyUsage::KeyAgreement => Usage::Key(K::KeyAgreement),
        KeyUsage::DataEncipherment => Usage::Key(K::DataEncipherment),
        KeyUsage::CertSign => Usage::Key(K::KeyCertSign),
        KeyUsage::CrlSign => Usage::Key(K::CrlSign),
        KeyUsage::EncipherOnly => Usage::Key(K::EncipherOnly),
        KeyUsage::DecipherOnly => Usage::Key(K::DecipherOnly),
        KeyUsage::Any => Usage::Extended(E::Any),
        KeyUsage::ServerAuth => Usage::Extended(E::ServerAuth),
        KeyUsage::ClientAuth => Usage::Extended(E::ClientAuth),
        KeyUsage::CodeSigning => Usage::Extended(E::CodeSigning),
        KeyUsage::EmailProtection | KeyUsage::Smime => Usage::Extended(E::EmailProtection),
        KeyUsage::Timestamping => Usage::Extended(E::TimeStamping),
        KeyUsage::OcspSigning => Usage::Extended(E::OcspSigning),
        KeyUsage::IpsecEndSystem
        | KeyUsage::IpsecTunnel
        | KeyUsage::IpsecUser
        | KeyUsage::MicrosoftSgc
        | KeyUsage::NetscapeSgc => Usage::Extended(E::Other(
            EXTRA_EKUS
                .iter()
                .find(|(k, _)| *k == u)
                .map(|(_, oid)| oid.to_vec())
                .unwrap_or_default(),
        )),
    }
}

/// The usages a leaf gets: the explicit ones when given, else the template's (without
/// `KeyEncipherment` for non-RSA keys), else [`DEFAULT_USAGES`] (same RSA rule). Explicit
/// `cert sign` and `crl sign` are refused: a leaf is not a CA.
pub fn usages_for(
    template: Option<CertificateTemplate>,
    explicit: &[KeyUsage],
    key: KeyAlgorithm,
) -> Result<Vec<KeyUsage>> {
    if !explicit.is_empty() {
        if let Some((i, u)) = explicit
            .iter()
            .enumerate()
            .find(|(_, u)| matches!(u, KeyUsage::CertSign | KeyUsage::CrlSign))
        {
            return Err(PkiError::InvalidField {
                field: format!("usages[{i}]"),
                value: serde_json::to_value(u)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default(),
                reason: "is for CA certificates; a leaf certificate cannot have it".to_string(),
            });
        }
        let mut out: Vec<KeyUsage> = Vec::new();
        for u in explicit {
            if !out.contains(u) {
                out.push(*u);
            }
        }
        return Ok(out);
    }
    let base = match template {
        Some(t) => TEMPLATE_USAGES
            .iter()
            .find(|(tt, _)| *tt == t)
            .map(|(_, u)| *u)
            .unwrap_or(DEFAULT_USAGES),
        None => DEFAULT_USAGES,
    };
    let rsa = matches!(
        key,
        KeyAlgorithm::Rsa2048 | KeyAlgorithm::Rsa3072 | KeyAlgorithm::Rsa4096
    );
    Ok(base
        .iter()
        .copied()
        .filter(|u| rsa || *u != KeyUsage::KeyEncipherment)
        .collect())
}

/// A validity window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Validity {
    /// Start.
    pub not_before: Timestamp,
    /// End.
    pub not_after: Timestamp,
}

/// The validity of a certificate requested at `now` for `requested`, clipped to the product's
/// `max_validity` (when there is a product) and to the CA's `ca_not_after`. Refused when the
/// CA has expired by `now`.
pub fn clip_validity(
    now: Timestamp,
    requested: &Duration,
    max_validity: Option<&Duration>,
    ca_not_after: Timestamp,
) -> Result<Validity> {
    let requested = std_duration("duration", requested)?;
    if requested.is_zero() {
        return Err(PkiError::InvalidField {
            field: "duration".to_string(),
            value: "0s".to_string(),
            reason: "must be positive".to_string(),
        });
    }
    let mut lifetime = requested;
    if let Some(max) = max_validity {
        lifetime = lifetime.min(std_duration("maxValidity", max)?);
    }
    if ca_not_after <= now {
        return Err(PkiError::Validity {
            reason: format!("the issuing CA expired at {ca_not_after}"),
        });
    }
    let not_after = add_duration("duration", now, lifetime)?.min(ca_not_after);
    Ok(Validity {
        not_before: now,
        not_after,
    })
}

/// What the signer decides about a leaf: its usages and validity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeafProfile {
    /// Key usages and extended key usages, as [`usages_for`] resolves them.
    pub usages: Vec<KeyUsage>,
    /// The validity, as [`clip_validity`] computes it.
    pub validity: Validity,
}

/// Signs a leaf certificate for a parsed CSR: subject and SANs from the CSR, usages and
/// validity from `profile`, basicConstraints CA:false, SKI and AKI. Every DNS name (and a
/// DNS-like common name) must pass the name constraints of the whole chain.
pub fn sign_leaf(
    csr: &ParsedCsr,
    issuer: &Issuer,
    profile: &LeafProfile,
) -> Result<IssuedCertificate> {
    let Validity {
        not_before,
        not_after,
    } = profile.validity;
    if not_after <= not_before {
        return Err(PkiError::Validity {
            reason: format!("notAfter {not_after} is not after notBefore {not_before}"),
        });
    }
    if not_after > issuer.not_after() {
        return Err(PkiError::Validity {
            reason: format!(
                "notAfter {not_after} is after the issuing CA's notAfter {}",
                issuer.not_after()
            ),
        });
    }
    let sans = &csr.subject_alt_names;
    if sans.is_empty() && csr.common_name.is_none() {
        return Err(PkiError::InvalidCsr {
            reason: "names nothing: no common name and no subject alternative names".to_string(),
        });
    }
    for name in &sans.dns_names {
        issuer.check_dns_name(name)?;
    }
    if let Some(cn) = &csr.common_name
        && cn.contains('.')
        && validate_dns_name(cn).is_ok()
    {
        issuer.check_dns_name(cn)?;
    }

    let mut params = CertificateParams::default();
    params.distinguished_name = csr.distinguished_name.clone();
    params.serial_number = Some(random_serial()?);
    params.not_before = to_offset_date_time("notBefore", not_before)?;
    params.not_after = to_offset_date_time("notAfter", not_after)?;
    params.is_ca = IsCa::ExplicitNoCa;
    params.use_authority_key_identifier_extension = true;
    for u in &profile.usages {
        match usage(*u) {
            Usage::Key(k) => {
                if !params.key_usages.contains(&k) {
                    params.key_usages.push(k)
                }
            }
            Usage::Extended(e) => params.insert_extended_key_usage(e),
        }
    }
    let ia5 = |v: &str| {
        rcgen::string::Ia5String::try_from(v).map_err(|_| PkiError::InvalidCsr {
            reason: format!("name {v:?} is not ASCII"),
        })
    };
    for d in &sans.dns_names {
        params.subject_alt_names.push(SanType::DnsName(ia5(d)?));
    }
    for ip in &sans.ip_addresses {
        params.subject_alt_names.push(SanType::IpAddress(*ip));
    }
    for u in &sans.uris {
        params.subject_alt_names.push(SanType::URI(ia5(u)?));
    }
    for e in &sans.email_addresses {
        params.subject_alt_names.push(SanType::Rfc822Name(ia5(e)?));
    }
    let cert = params
        .signed_by(&csr.public_key, issuer.rcgen())
        .map_err(|e| PkiError::Signing {
            what: "leaf certificate".to_string(),
            reason: e.to_string(),
        })?;
    issuer.issued(cert.der())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::certificate::CertificateSpec;
    use crate::api::common::PrivateKeyEncoding;
    use crate::api::privateca::{CASubject, NameConstraintItems, NameConstraints};
    use crate::pki::ca::{CaProfile, issue_root_ca};
    use crate::pki::csr::{build_csr, parse_csr};
    use crate::pki::keys::generate_key_for;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }
    fn dur(s: &str) -> Duration {
        s.parse().unwrap()
    }

    #[test]
    fn template_usages_table() {
        use KeyUsage::*;
        let cases: [(Option<CertificateTemplate>, KeyAlgorithm, &[KeyUsage]); 7] = [
            (
                Some(CertificateTemplate::ServerTls),
                KeyAlgorithm::Rsa2048,
                &[DigitalSignature, KeyEncipherment, ServerAuth],
            ),
            (
                Some(CertificateTemplate::ServerTls),
                KeyAlgorithm::EcdsaP256,
                &[DigitalSignature, ServerAuth],
            ),
            (
                Some(CertificateTemplate::ClientTls),
                KeyAlgorithm::Rsa4096,
                &[DigitalSignature, ClientAuth],
            ),
            (
                Some(CertificateTemplate::MutualTls),
                KeyAlgorithm::Ed25519,
                &[DigitalSignature, ServerAuth, ClientAuth],
            ),
            (
                Some(CertificateTemplate::EmailProtection),
                KeyAlgorithm::Rsa3072,
                &[DigitalSignature, KeyEncipherment, EmailProtection],
            ),
            (
                None,
                KeyAlgorithm::Rsa2048,
                &[DigitalSignature, KeyEncipherment],
            ),
            (None, KeyAlgorithm::EcdsaP384, &[DigitalSignature]),
        ];
        for (template, key, want) in cases {
            assert_eq!(
                usages_for(template, &[], key).unwrap(),
                want,
                "{template:?} {key:?}"
            );
        }
    }

    #[test]
    fn explicit_usages_win_and_ca_usages_are_refused() {
        use KeyUsage::*;
        let got = usages_for(
            Some(CertificateTemplate::ServerTls),
            &[DigitalSignature, ClientAuth, ClientAuth],
            KeyAlgorithm::EcdsaP256,
        )
        .unwrap();
        assert_eq!(got, [DigitalSignature, ClientAuth]);
        let err = usages_for(None, &[DigitalSignature, CertSign], KeyAlgorithm::EcdsaP256)
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "usages[1]: \"cert sign\" is for CA certificates; a leaf certificate cannot have it"
        );
    }

    #[test]
    fn validity_clip_table() {
        let now = ts("2026-01-01T00:00:00Z");
        let ca_end = ts("2026-06-01T00:00:00Z");
        let cases: [(&str, Option<&str>, &str); 4] = [
            ("2160h", None, "2026-04-01T00:00:00Z"), // as requested
            ("2160h", Some("720h"), "2026-01-31T00:00:00Z"), // product maximum
            ("8760h", None, "2026-06-01T00:00:00Z"), // CA's end
            ("8760h", Some("87600h"), "2026-06-01T00:00:00Z"), // CA's end before maximum
        ];
        for (requested, max, want) in cases {
            let max = max.map(dur);
            let v = clip_validity(now, &dur(requested), max.as_ref(), ca_end).unwrap();
            assert_eq!(v.not_before, now);
            assert_eq!(v.not_after, ts(want), "{requested} max {max:?}");
        }
        let err = clip_validity(ca_end, &dur("1h"), None, ca_end)
            .unwrap_err()
            .to_string();
        assert!(err.contains("expired"), "{err}");
        let err = clip_validity(now, &dur("-1h"), None, ca_end)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("duration"), "{err}");
    }

    fn constrained_issuer() -> Issuer {
        let key = generate_key_for(KeyAlgorithm::EcdsaP256).unwrap();
        let profile = CaProfile {
            subject: CASubject {
                common_name: "Corp Root".into(),
                ..Default::default()
            },
            not_before: ts("2026-01-01T00:00:00Z"),
            not_after: ts("2030-01-01T00:00:00Z"),
            path_length: Some(0),
            name_constraints: Some(NameConstraints {
                critical: true,
                permitted: Some(NameConstraintItems {
                    dns_domains: vec!["corp.example".into()],
                }),
                excluded: None,
            }),
        };
        let ca = issue_root_ca(&profile, &key).unwrap();
        Issuer::from_pem(
            &ca.chain_pem,
            &key.to_pem(PrivateKeyEncoding::Pkcs1).unwrap(),
            &ca.root_pem,
        )
        .unwrap()
    }

    fn csr_for(dns: &[&str], cn: Option<&str>) -> ParsedCsr {
        let spec: CertificateSpec = serde_json::from_value(serde_json::json!({
            "secretName": "s", "issuerRef": {"name": "ca"},
            "dnsNames": dns, "commonName": cn,
        }))
        .unwrap();
        let key = generate_key_for(KeyAlgorithm::EcdsaP256).unwrap();
        parse_csr(&build_csr(&spec, &key).unwrap()).unwrap()
    }

    fn profile() -> LeafProfile {
        LeafProfile {
            usages: vec![KeyUsage::DigitalSignature, KeyUsage::ServerAuth],
            validity: Validity {
                not_before: ts("2026-02-01T00:00:00Z"),
                not_after: ts("2026-05-01T00:00:00Z"),
            },
        }
    }

    #[test]
    fn a_leaf_of_a_root_carries_no_root_in_its_chain() {
        let issuer = constrained_issuer();
        let leaf = sign_leaf(&csr_for(&["api.corp.example"], None), &issuer, &profile()).unwrap();
        assert_eq!(
            leaf.chain_pem, leaf.certificate_pem,
            "tls.crt is the leaf alone"
        );
        assert_eq!(leaf.root_pem, issuer.root_pem());
    }

    #[test]
    fn signing_checks_names_against_constraints() {
        let issuer = constrained_issuer();
        let ok = sign_leaf(&csr_for(&["api.corp.example"], None), &issuer, &profile()).unwrap();
        assert_eq!(ok.info.not_after, ts("2026-05-01T00:00:00Z"));
        let err = sign_leaf(
            &csr_for(&["api.corp.example", "evil.example"], None),
            &issuer,
            &profile(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("\"evil.example\" is outside the permitted domains [\"corp.example\"]"),
            "{err}"
        );
        let err = sign_leaf(&csr_for(&[], Some("www.evil.example")), &issuer, &profile())
            .unwrap_err()
            .to_string();
        assert!(err.contains("www.evil.example"), "{err}");
    }

    #[test]
    fn signing_refuses_validity_beyond_the_ca() {
        let issuer = constrained_issuer();
        let mut p = profile();
        p.validity.not_after = ts("2031-01-01T00:00:00Z");
        let err = sign_leaf(&csr_for(&["a.corp.example"], None), &issuer, &p).unwrap_err();
        assert!(
            err.to_string().contains("after the issuing CA's notAfter"),
            "{err}"
        );
    }

    #[test]
    fn a_leaf_carries_the_usages_and_is_not_a_ca() {
        let issuer = constrained_issuer();
        let mut p = profile();
        p.usages = usages_for(
            Some(CertificateTemplate::MutualTls),
            &[],
            KeyAlgorithm::Rsa2048,
        )
        .unwrap();
        p.usages.push(KeyUsage::IpsecUser);
        let leaf = sign_leaf(&csr_for(&["a.corp.example"], Some("a")), &issuer, &p).unwrap();
        let info = crate::pki::inspect_pem(&leaf.certificate_pem).unwrap();
        assert!(!info.is_ca);
        assert_eq!(
            info.key_usages,
            [KeyUsage::DigitalSignature, KeyUsage::KeyEncipherment]
        );
        assert_eq!(
            info.extended_key_usages,
            [
                KeyUsage::ServerAuth,
                KeyUsage::ClientAuth,
                KeyUsage::IpsecUser
            ]
        );
        assert_eq!(info.authority_key_id, issuer.info().subject_key_id);
        assert!(info.subject_key_id.is_some());
        // What the signer read of the certificate is what reading it again finds.
        assert_eq!(leaf.info, info);
    }
}
