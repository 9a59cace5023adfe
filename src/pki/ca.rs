//! Certificate authorities: a self-signed root, an intermediate signed by a parent, and the
//! [`Issuer`] a controller rebuilds from a CA's Secret (`tls.crt`, `tls.key`, `ca.crt`).

use jiff::Timestamp;
use rcgen::{
    BasicConstraints, CertificateParams, GeneralSubtree, IsCa, KeyUsagePurpose, SerialNumber,
};
use rustls_pki_types::CertificateDer;

use super::csr::distinguished_name;
use super::inspect::{CertificateInfo, inspect_der, parse_der, split_pem_chain};
use super::keys::{KeyPair, load_key_pem};
use super::names::{NameConstraintViolation, check_name_constraints};
use super::{PkiError, Result, add_duration, std_duration, to_offset_date_time, to_pem};
use crate::api::common::KeyAlgorithm;
use crate::api::privateca::{CASubject, NameConstraints, PrivateCASpec};

/// What a CA certificate says besides its key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaProfile {
    /// Subject of the CA.
    pub subject: CASubject,
    /// Start of validity.
    pub not_before: Timestamp,
    /// End of validity; an intermediate's is clipped to its parent's.
    pub not_after: Timestamp,
    /// basicConstraints pathLenConstraint; unlimited when unset (for an intermediate, one
    /// less than its parent's when the parent has one).
    pub path_length: Option<u8>,
    /// DNS name constraints written into the CA certificate.
    pub name_constraints: Option<NameConstraints>,
}

impl CaProfile {
    /// The profile a PrivateCA's spec asks for, valid from `now` for `spec.duration`.
    pub fn from_spec(spec: &PrivateCASpec, now: Timestamp) -> Result<Self> {
        let duration = std_duration("duration", &spec.duration)?;
        Ok(Self {
            subject: spec.subject.clone(),
            not_before: now,
            not_after: add_duration("duration", now, duration)?,
            path_length: spec.path_length,
            name_constraints: spec.name_constraints.clone(),
        })
    }
}

/// A certificate as a Secret holds it, with what status reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IssuedCertificate {
    /// The certificate alone (PEM).
    pub certificate_pem: String,
    /// `tls.crt`: the certificate then the intermediates above it, without the root. For a
    /// root CA, the root itself.
    pub chain_pem: String,
    /// `ca.crt`: the root.
    pub root_pem: String,
    /// The certificate as [`inspect_der`] reads it: serial number, validity, names, key.
    pub info: CertificateInfo,
}

/// A CA certificate as issued.
pub type CaCertificate = IssuedCertificate;

/// A random positive serial number of 16 bytes (127 random bits), as RFC 5280 and the CA/B
/// baseline ask (at least 64 random bits, at most 20 bytes).
pub(crate) fn random_serial() -> Result<SerialNumber> {
    let mut bytes = [0u8; 16];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| PkiError::Signing {
        what: "serial number".to_string(),
        reason: "the random number generator failed".to_string(),
    })?;
    bytes[0] &= 0x7f;
    if bytes[0] == 0 {
        bytes[0] = 1;
    }
    Ok(SerialNumber::from_slice(&bytes))
}

fn ca_params(profile: &CaProfile, path_length: Option<u8>) -> Result<CertificateParams> {
    if profile.not_after <= profile.not_before {
        return Err(PkiError::Validity {
            reason: format!(
                "notAfter {} is not after notBefore {}",
                profile.not_after, profile.not_before
            ),
        });
    }
    let mut params = CertificateParams::default();
    params.distinguished_name = distinguished_name(
        Some(&profile.subject.common_name),
        "subject.commonName",
        Some(&profile.subject.rest),
        "subject",
    )?;
    params.not_before = to_offset_date_time("notBefore", profile.not_before)?;
    params.not_after = to_offset_date_time("notAfter", profile.not_after)?;
    params.serial_number = Some(random_serial()?);
    params.is_ca = IsCa::Ca(match path_length {
        Some(n) => BasicConstraints::Constrained(n),
        None => BasicConstraints::Unconstrained,
    });
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    if let Some(nc) = &profile.name_constraints {
        let subtrees = |items: &Option<crate::api::privateca::NameConstraintItems>,
                        kind: &str|
         -> Result<Vec<GeneralSubtree>> {
            items
                .iter()
                .flat_map(|i| i.dns_domains.iter().enumerate())
                .map(|(i, d)| {
                    super::names::validate_dns_name(d)
                        .map_err(|reason| PkiError::InvalidField {
                            field: format!("nameConstraints.{kind}.dnsDomains[{i}]"),
                            value: d.clone(),
                            reason,
                        })
                        .map(|()| GeneralSubtree::DnsName(d.clone()))
                })
                .collect()
        };
        let constraints = rcgen::NameConstraints {
            permitted_subtrees: subtrees(&nc.permitted, "permitted")?,
            excluded_subtrees: subtrees(&nc.excluded, "excluded")?,
        };
        if !nc.critical {
            // rcgen always marks the extension critical; a non-critical one is written by
            // hand with the same DER.
            let der = name_constraints_der(&constraints);
            if let Some(der) = der {
                params
                    .custom_extensions
                    .push(rcgen::CustomExtension::from_oid_content(
                        &[2, 5, 29, 30],
                        der,
                    ));
            }
        } else {
            params.name_constraints = Some(constraints);
        }
    }
    Ok(params)
}

/// The DER of a NameConstraints extension value with DNS subtrees, or `None` when empty.
fn name_constraints_der(nc: &rcgen::NameConstraints) -> Option<Vec<u8>> {
    let dns = |trees: &[GeneralSubtree]| -> Vec<String> {
        trees
            .iter()
            .filter_map(|t| match t {
                GeneralSubtree::DnsName(d) => Some(d.clone()),
                _ => None,
            })
            .collect()
    };
    let permitted = dns(&nc.permitted_subtrees);
    let excluded = dns(&nc.excluded_subtrees);
    if permitted.is_empty() && excluded.is_empty() {
        return None;
    }
    Some(yasna::construct_der(|w| {
        w.write_sequence(|w| {
            for (tag, names) in [(0u64, &permitted), (1u64, &excluded)] {
                if names.is_empty() {
                    continue;
                }
                w.next()
                    .write_tagged_implicit(yasna::Tag::context(tag), |w| {
                        w.write_sequence(|w| {
                            for name in names.iter() {
                                w.next().write_sequence(|w| {
                                    w.next().write_tagged_implicit(yasna::Tag::context(2), |w| {
                                        w.write_ia5_string(name)
                                    });
                                });
                            }
                        });
                    });
            }
        });
    }))
}

fn signing_error(what: &str, e: rcgen::Error) -> PkiError {
    PkiError::Signing {
        what: what.to_string(),
        reason: e.to_string(),
    }
}

/// Issues a self-signed root CA certificate for `key`.
pub fn issue_root_ca(profile: &CaProfile, key: &KeyPair) -> Result<CaCertificate> {
    let params = ca_params(profile, profile.path_length)?;
    let cert = params
        .self_signed(key.signing_key())
        .map_err(|e| signing_error("root CA certificate", e))?;
    let pem = to_pem("CERTIFICATE", cert.der());
    let info = inspect_der(cert.der())?;
    Ok(IssuedCertificate {
        certificate_pem: pem.clone(),
        chain_pem: pem.clone(),
        root_pem: pem,
        info,
    })
}

/// Issues an intermediate CA certificate for `key`, signed by `parent`. Its validity is
/// clipped to the parent's; its path length must be below the parent's (and defaults to one
/// less than the parent's when the parent has one).
pub fn issue_intermediate_ca(
    profile: &CaProfile,
    key: &KeyPair,
    parent: &Issuer,
) -> Result<CaCertificate> {
    let refuse = |reason: String| PkiError::Issuer {
        subject: parent.common_name().to_string(),
        reason,
    };
    let path_length = match (parent.info.path_length, profile.path_length) {
        (Some(0), _) => {
            return Err(refuse(
                "has path length 0, so it cannot sign intermediate CAs".to_string(),
            ));
        }
        (Some(p), Some(c)) if u32::from(c) >= p => {
            return Err(PkiError::InvalidField {
                field: "pathLength".to_string(),
                value: c.to_string(),
                reason: format!(
                    "must be less than the parent CA's path length {p} (parent {:?})",
                    parent.common_name()
                ),
            });
        }
        (Some(p), None) => Some(u8::try_from(p - 1).unwrap_or(u8::MAX)),
        (_, c) => c,
    };
    let mut profile = profile.clone();
    if profile.not_before >= parent.info.not_after {
        return Err(refuse(format!("expired at {}", parent.info.not_after)));
    }
    profile.not_after = profile.not_after.min(parent.info.not_after);
    let mut params = ca_params(&profile, path_length)?;
    params.use_authority_key_identifier_extension = true;
    let cert = params
        .signed_by(key.signing_key(), &parent.inner)
        .map_err(|e| signing_error("intermediate CA certificate", e))?;
    parent.issued(cert.der())
}

/// A CA that can sign: its certificate and key, the intermediates above it and the root.
pub struct Issuer {
    inner: rcgen::Issuer<'static, rcgen::KeyPair>,
    info: CertificateInfo,
    /// The CA certificate then the intermediates above it, without the root.
    chain: Vec<Vec<u8>>,
    root: Vec<u8>,
    /// Name constraints of the CA, its intermediates and its root.
    constraints: Vec<NameConstraints>,
    /// The CA key's algorithm.
    algorithm: KeyAlgorithm,
}

impl std::fmt::Debug for Issuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issuer")
            .field("subject", &self.info.subject)
            .field("serial", &self.info.serial_hex)
            .field("not_after", &self.info.not_after)
            .field("chain_len", &self.chain.len())
            .finish_non_exhaustive()
    }
}

impl Issuer {
    /// Rebuilds an issuer from a CA Secret's PEMs: `tls.crt` (the CA certificate, then the
    /// intermediates above it), `tls.key` and `ca.crt` (the root).
    pub fn from_pem(tls_crt: &str, tls_key: &str, ca_crt: &str) -> Result<Self> {
        Self::new(tls_crt, load_key_pem(tls_key)?, ca_crt)
    }

    /// Like [`Issuer::from_pem`], with the key already loaded.
    pub fn new(tls_crt: &str, key: KeyPair, ca_crt: &str) -> Result<Self> {
        let mut chain = split_pem_chain(tls_crt)?;
        let root = split_pem_chain(ca_crt)?
            .into_iter()
            .next()
            .ok_or_else(|| PkiError::Pem {
                what: "ca.crt".to_string(),
                reason: "no certificate found".to_string(),
            })?;
        // A tls.crt that carries the root at its end is accepted; the root is kept apart.
        if chain.len() > 1 && chain.last() == Some(&root) {
            chain.pop();
        }
        let ca = chain.first().ok_or_else(|| PkiError::Pem {
            what: "tls.crt".to_string(),
            reason: "no certificate found".to_string(),
        })?;
        let info = inspect_der(ca)?;
        let refuse = |reason: &str| PkiError::Issuer {
            subject: info.common_name.clone().unwrap_or_default(),
            reason: reason.to_string(),
        };
        if !info.is_ca {
            return Err(refuse(
                "tls.crt is not a CA certificate (basicConstraints cA is not set)",
            ));
        }
        if !info.key_usages.is_empty()
            && !info
                .key_usages
                .contains(&crate::api::certificate::KeyUsage::CertSign)
        {
            return Err(refuse("the CA certificate's key usage lacks keyCertSign"));
        }
        if !key.matches_public_key_der(&info.public_key_der) {
            return Err(refuse(
                "tls.key is not the key of the CA certificate in tls.crt",
            ));
        }
        // rcgen copies the subject; it supports single-valued RDNs only.
        let parsed = parse_der("tls.crt", ca)?;
        super::csr::dn_from_x509(parsed.subject()).map_err(|e| refuse(&e))?;
        let mut constraints = Vec::new();
        for (i, der) in chain.iter().chain(std::iter::once(&root)).enumerate() {
            let cert_info = if i == 0 {
                info.clone()
            } else {
                inspect_der(der)?
            };
            if i > 0 && !cert_info.is_ca {
                return Err(refuse(&format!("chain entry {i} is not a CA certificate")));
            }
            if let Some(nc) = cert_info.name_constraints {
                constraints.push(nc);
            }
        }
        let algorithm = key.algorithm();
        let inner = rcgen::Issuer::from_ca_cert_der(
            &CertificateDer::from(ca.as_slice()),
            key.into_signing_key(),
        )
        .map_err(|e| refuse(&format!("cannot sign with this CA: {e}")))?;
        Ok(Self {
            inner,
            info,
            chain,
            root,
            constraints,
            algorithm,
        })
    }

    /// The CA key's algorithm: whether its signatures take microseconds (ECDSA, Ed25519) or
    /// milliseconds (RSA), for [`super::keys::run_with`].
    pub fn algorithm(&self) -> KeyAlgorithm {
        self.algorithm
    }

    /// What the CA certificate says.
    pub fn info(&self) -> &CertificateInfo {
        &self.info
    }

    /// The CA's common name (empty when it has none).
    pub fn common_name(&self) -> &str {
        self.info.common_name.as_deref().unwrap_or_default()
    }

    /// End of the CA certificate's validity.
    pub fn not_after(&self) -> Timestamp {
        self.info.not_after
    }

    /// The CA certificate (PEM).
    pub fn certificate_pem(&self) -> String {
        to_pem("CERTIFICATE", &self.info.der)
    }

    /// The CA certificate then the intermediates above it, without the root (PEM).
    pub fn chain_pem(&self) -> String {
        self.chain
            .iter()
            .map(|der| to_pem("CERTIFICATE", der))
            .collect()
    }

    /// The root (PEM).
    pub fn root_pem(&self) -> String {
        to_pem("CERTIFICATE", &self.root)
    }

    /// The name constraints of the CA, its intermediates and its root.
    pub fn name_constraints(&self) -> &[NameConstraints] {
        &self.constraints
    }

    /// Checks a DNS name against every name constraint on the path to the root.
    pub fn check_dns_name(&self, name: &str) -> std::result::Result<(), NameConstraintViolation> {
        self.constraints
            .iter()
            .try_for_each(|nc| check_name_constraints(name, nc))
    }

    pub(crate) fn rcgen(&self) -> &rcgen::Issuer<'static, rcgen::KeyPair> {
        &self.inner
    }

    /// A certificate this CA just signed, with the chain and root above it. The chain is the
    /// certificate then the intermediates: a root signer adds nothing to it.
    pub(crate) fn issued(&self, der: &[u8]) -> Result<IssuedCertificate> {
        let info = inspect_der(der)?;
        let certificate_pem = to_pem("CERTIFICATE", der);
        let mut chain_pem = certificate_pem.clone();
        for intermediate in self.chain.iter().filter(|der| **der != self.root) {
            chain_pem.push_str(&to_pem("CERTIFICATE", intermediate));
        }
        Ok(IssuedCertificate {
            certificate_pem,
            chain_pem,
            root_pem: self.root_pem(),
            info,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::common::KeyAlgorithm;
    use crate::api::privateca::NameConstraintItems;
    use crate::pki::keys::generate_key_for;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    pub(crate) fn profile(cn: &str, path_length: Option<u8>) -> CaProfile {
        CaProfile {
            subject: CASubject {
                common_name: cn.to_string(),
                ..Default::default()
            },
            not_before: ts("2026-01-01T00:00:00Z"),
            not_after: ts("2036-01-01T00:00:00Z"),
            path_length,
            name_constraints: None,
        }
    }

    fn root(path_length: Option<u8>) -> Issuer {
        let key = generate_key_for(KeyAlgorithm::EcdsaP256).unwrap();
        let key_pem = key
            .to_pem(crate::api::common::PrivateKeyEncoding::Pkcs8)
            .unwrap();
        let ca = issue_root_ca(&profile("Root", path_length), &key).unwrap();
        Issuer::from_pem(&ca.chain_pem, &key_pem, &ca.root_pem).unwrap()
    }

    #[test]
    fn an_elliptic_curve_ca_signs_in_place_and_an_rsa_one_does_not() {
        assert!(crate::pki::keys::is_quick(root(None).algorithm()));
        let key = generate_key_for(KeyAlgorithm::Rsa2048).unwrap();
        let key_pem = key
            .to_pem(crate::api::common::PrivateKeyEncoding::Pkcs8)
            .unwrap();
        let ca = issue_root_ca(&profile("RSA Root", None), &key).unwrap();
        let rsa = Issuer::from_pem(&ca.chain_pem, &key_pem, &ca.root_pem).unwrap();
        assert!(!crate::pki::keys::is_quick(rsa.algorithm()));
        let quick = [
            KeyAlgorithm::EcdsaP256,
            KeyAlgorithm::EcdsaP384,
            KeyAlgorithm::Ed25519,
        ];
        assert!(quick.into_iter().all(crate::pki::keys::is_quick));
    }

    #[test]
    fn a_root_is_a_self_signed_ca_with_ca_usages() {
        let key = generate_key_for(KeyAlgorithm::EcdsaP384).unwrap();
        let ca = issue_root_ca(&profile("Root", Some(2)), &key).unwrap();
        let info = crate::pki::inspect_pem(&ca.certificate_pem).unwrap();
        assert!(info.is_ca && info.self_issued);
        assert_eq!(info.path_length, Some(2));
        use crate::api::certificate::KeyUsage::*;
        assert_eq!(info.key_usages, [CertSign, CrlSign]);
        assert!(info.subject_key_id.is_some());
        assert_eq!(ca.chain_pem, ca.root_pem);
        assert_eq!(ca.info.not_before, ts("2026-01-01T00:00:00Z"));
        assert_eq!(ca.info.serial_hex.len(), 32);
    }

    #[test]
    fn a_certificates_reading_holds_its_subject_attributes_besides_the_common_name() {
        let key = generate_key_for(KeyAlgorithm::EcdsaP256).unwrap();
        let mut p = profile("Root", None);
        p.subject.rest.organizations = vec!["Example".into()];
        p.subject.rest.countries = vec!["GB".into()];
        let ca = issue_root_ca(&p, &key).unwrap();
        let info = crate::pki::inspect_pem(&ca.certificate_pem).unwrap();
        let attributes: std::collections::BTreeSet<(&str, &str)> = info
            .subject_attributes
            .iter()
            .map(|(oid, value)| (oid.as_str(), value.as_str()))
            .collect();
        assert_eq!(
            attributes,
            [("2.5.4.10", "Example"), ("2.5.4.6", "GB")].into()
        );
        assert_eq!(info.common_name.as_deref(), Some("Root"));
    }

    #[test]
    fn a_profile_from_a_spec_runs_from_now_for_the_duration() {
        let spec: PrivateCASpec = serde_json::from_value(serde_json::json!({
            "subject": {"commonName": "Root", "organizations": ["Example"]},
            "duration": "8760h",
            "pathLength": 1,
        }))
        .unwrap();
        let p = CaProfile::from_spec(&spec, ts("2026-01-01T00:00:00Z")).unwrap();
        assert_eq!(p.not_after, ts("2027-01-01T00:00:00Z"));
        assert_eq!(p.path_length, Some(1));
        assert_eq!(p.subject.rest.organizations, ["Example"]);
    }

    #[test]
    fn serials_are_random_positive_and_16_bytes() {
        let a = random_serial().unwrap().to_bytes();
        let b = random_serial().unwrap().to_bytes();
        assert_ne!(a, b);
        for s in [a, b] {
            assert_eq!(s.len(), 16);
            assert!(s[0] > 0 && s[0] < 0x80);
        }
    }

    #[test]
    fn intermediate_path_length_follows_the_parent() {
        let key = generate_key_for(KeyAlgorithm::EcdsaP256).unwrap();
        // Parent pathLen 1: unset child gets 0, child 1 is refused.
        let parent = root(Some(1));
        let ca = issue_intermediate_ca(&profile("Int", None), &key, &parent).unwrap();
        let info = crate::pki::inspect_pem(&ca.certificate_pem).unwrap();
        assert_eq!(info.path_length, Some(0));
        assert_eq!(info.authority_key_id, parent.info().subject_key_id);
        let err = issue_intermediate_ca(&profile("Int", Some(1)), &key, &parent).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("pathLength: \"1\" must be less"),
            "{err}"
        );
        // Parent pathLen 0 signs no CA.
        let err = issue_intermediate_ca(&profile("Int", None), &key, &root(Some(0))).unwrap_err();
        assert!(err.to_string().contains("path length 0"), "{err}");
        // Unconstrained parent: the child's own value.
        let ca = issue_intermediate_ca(&profile("Int", None), &key, &root(None)).unwrap();
        assert_eq!(
            crate::pki::inspect_pem(&ca.certificate_pem)
                .unwrap()
                .path_length,
            None
        );
    }

    #[test]
    fn intermediate_validity_is_clipped_to_the_parent() {
        let key = generate_key_for(KeyAlgorithm::EcdsaP256).unwrap();
        let parent = root(None);
        let mut long = profile("Int", None);
        long.not_after = ts("2040-01-01T00:00:00Z");
        let ca = issue_intermediate_ca(&long, &key, &parent).unwrap();
        assert_eq!(ca.info.not_after, parent.not_after());
        // Under a root, the intermediate's chain is itself: the root stays in ca.crt.
        assert_eq!(ca.chain_pem, ca.certificate_pem.clone());
    }

    #[test]
    fn name_constraints_are_written_with_their_criticality() {
        for critical in [true, false] {
            let key = generate_key_for(KeyAlgorithm::EcdsaP256).unwrap();
            let mut p = profile("Constrained", None);
            let nc = NameConstraints {
                critical,
                permitted: Some(NameConstraintItems {
                    dns_domains: vec!["corp.example".into()],
                }),
                excluded: Some(NameConstraintItems {
                    dns_domains: vec!["secret.corp.example".into()],
                }),
            };
            p.name_constraints = Some(nc.clone());
            let ca = issue_root_ca(&p, &key).unwrap();
            let info = crate::pki::inspect_pem(&ca.certificate_pem).unwrap();
            assert_eq!(info.name_constraints, Some(nc));
        }
    }

    #[test]
    fn an_issuer_refuses_a_key_that_is_not_its_own_and_a_leaf() {
        let key = generate_key_for(KeyAlgorithm::EcdsaP256).unwrap();
        let other = generate_key_for(KeyAlgorithm::EcdsaP256).unwrap();
        let ca = issue_root_ca(&profile("Root", None), &key).unwrap();
        let err = Issuer::new(&ca.chain_pem, other, &ca.root_pem).unwrap_err();
        assert!(err.to_string().contains("tls.key is not the key"), "{err}");
        let err = Issuer::from_pem(&ca.chain_pem, "junk", &ca.root_pem).unwrap_err();
        assert!(err.to_string().contains("private key"), "{err}");
    }

    #[test]
    fn issuer_debug_has_no_key() {
        let issuer = root(None);
        let debug = format!("{issuer:?}");
        assert!(
            debug.starts_with("Issuer { subject: \"CN=Root\""),
            "{debug}"
        );
        assert!(!debug.contains("PRIVATE"));
    }
}
