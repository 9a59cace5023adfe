//! Reading certificates: validity, serial, fingerprint, names, CA-ness, usages, the key.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::FromDer;
use x509_parser::x509::SubjectPublicKeyInfo;

use super::{PkiError, Result, from_asn1_time, hex, parse_pem_blocks};
use crate::api::certificate::KeyUsage;
use crate::api::common::KeyAlgorithm;
use crate::api::privateca::{NameConstraintItems, NameConstraints};

const CERTIFICATE_LABEL: &str = "CERTIFICATE";

/// Subject alternative names by kind.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SubjectAltNames {
    /// DNS names, as written.
    pub dns_names: Vec<String>,
    /// IP addresses.
    pub ip_addresses: Vec<IpAddr>,
    /// URIs.
    pub uris: Vec<String>,
    /// Email addresses.
    pub email_addresses: Vec<String>,
}

impl SubjectAltNames {
    /// Whether there are no names at all.
    pub fn is_empty(&self) -> bool {
        self.dns_names.is_empty()
            && self.ip_addresses.is_empty()
            && self.uris.is_empty()
            && self.email_addresses.is_empty()
    }
}

/// What a controller or a test needs to know about a certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertificateInfo {
    /// Start of validity.
    pub not_before: jiff::Timestamp,
    /// End of validity.
    pub not_after: jiff::Timestamp,
    /// Serial number, lower-case hex without separators or leading zeros.
    pub serial_hex: String,
    /// SHA-256 of the DER, lower-case hex without separators.
    pub fingerprint_sha256: String,
    /// The subject's first common name.
    pub common_name: Option<String>,
    /// The subject, RFC 4514 style (`CN=…, O=…`).
    pub subject: String,
    /// The subject's attributes other than its common names, as (OID, value), in the
    /// certificate's order; a value that is not a string is empty.
    pub subject_attributes: Vec<(String, String)>,
    /// The issuer, RFC 4514 style.
    pub issuer: String,
    /// Subject alternative names.
    pub subject_alt_names: SubjectAltNames,
    /// basicConstraints cA.
    pub is_ca: bool,
    /// basicConstraints pathLenConstraint.
    pub path_length: Option<u32>,
    /// Key usages, named as `Certificate.spec.usages` names them.
    pub key_usages: Vec<KeyUsage>,
    /// Extended key usages, named as `Certificate.spec.usages` names them; OIDs without a
    /// name are left out.
    pub extended_key_usages: Vec<KeyUsage>,
    /// DNS name constraints, when the certificate has the extension.
    pub name_constraints: Option<NameConstraints>,
    /// The public key's algorithm and size, when it is one this module supports.
    pub key_algorithm: Option<KeyAlgorithm>,
    /// The public key as a DER SubjectPublicKeyInfo.
    pub public_key_der: Vec<u8>,
    /// Subject Key Identifier, hex.
    pub subject_key_id: Option<String>,
    /// Authority Key Identifier (key identifier part), hex.
    pub authority_key_id: Option<String>,
    /// Whether subject and issuer are the same name (a root, or a self-issued CA).
    pub self_issued: bool,
    /// The certificate's DER.
    pub der: Vec<u8>,
}

/// The DER of every `CERTIFICATE` block in `text`, in order (other blocks are refused).
pub fn split_pem_chain(text: &str) -> Result<Vec<Vec<u8>>> {
    parse_pem_blocks("certificate chain", text)?
        .into_iter()
        .enumerate()
        .map(|(i, block)| {
            if block.tag() == CERTIFICATE_LABEL {
                Ok(block.into_contents())
            } else {
                Err(PkiError::PemLabel {
                    what: format!("certificate chain entry {i}"),
                    label: block.tag().to_string(),
                    expected: CERTIFICATE_LABEL.to_string(),
                })
            }
        })
        .collect()
}

/// Inspects the first certificate of a PEM text (a `tls.crt` holds leaf then chain).
pub fn inspect_pem(text: &str) -> Result<CertificateInfo> {
    let chain = split_pem_chain(text)?;
    match chain.first() {
        Some(der) => inspect_der(der),
        None => Err(PkiError::Pem {
            what: "certificate".to_string(),
            reason: "no certificate found".to_string(),
        }),
    }
}

/// Parses a DER certificate, refusing trailing bytes.
pub(crate) fn parse_der<'a>(what: &str, der: &'a [u8]) -> Result<X509Certificate<'a>> {
    let (rest, cert) =
        X509Certificate::from_der(der).map_err(|e| PkiError::InvalidCertificate {
            what: what.to_string(),
            reason: e.to_string(),
        })?;
    if !rest.is_empty() {
        return Err(PkiError::InvalidCertificate {
            what: what.to_string(),
            reason: format!("{} bytes after the certificate", rest.len()),
        });
    }
    Ok(cert)
}

/// The OID of the X.520 commonName attribute.
const COMMON_NAME_OID: &str = "2.5.4.3";

/// Inspects one DER certificate.
pub fn inspect_der(der: &[u8]) -> Result<CertificateInfo> {
    let cert = parse_der("certificate", der)?;
    let invalid = |reason: String| PkiError::InvalidCertificate {
        what: "certificate".to_string(),
        reason,
    };
    let validity = cert.validity();
    let mut info = CertificateInfo {
        not_before: from_asn1_time("notBefore", validity.not_before)?,
        not_after: from_asn1_time("notAfter", validity.not_after)?,
        serial_hex: serial_hex(cert.raw_serial()),
        fingerprint_sha256: hex(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der).as_ref()),
        common_name: cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .map(str::to_string),
        subject: cert.subject().to_string(),
        subject_attributes: cert
            .subject()
            .iter_attributes()
            .filter_map(|a| {
                let oid = a.attr_type().to_id_string();
                (oid != COMMON_NAME_OID).then(|| (oid, a.as_str().unwrap_or_default().to_owned()))
            })
            .collect(),
        issuer: cert.issuer().to_string(),
        subject_alt_names: SubjectAltNames::default(),
        is_ca: false,
        path_length: None,
        key_usages: Vec::new(),
        extended_key_usages: Vec::new(),
        name_constraints: None,
        key_algorithm: key_algorithm_of_spki(cert.public_key()).ok(),
        public_key_der: cert.public_key().raw.to_vec(),
        subject_key_id: None,
        authority_key_id: None,
        self_issued: cert.subject().as_raw() == cert.issuer().as_raw(),
        der: der.to_vec(),
    };
    for ext in cert.extensions() {
        match ext.parsed_extension() {
            ParsedExtension::SubjectAlternativeName(san) => {
                info.subject_alt_names =
                    general_names(&san.general_names).map_err(|e| invalid(format!("SAN: {e}")))?;
            }
            ParsedExtension::BasicConstraints(bc) => {
                info.is_ca = bc.ca;
                info.path_length = bc.path_len_constraint;
            }
            ParsedExtension::KeyUsage(ku) => info.key_usages = key_usages(ku),
            ParsedExtension::ExtendedKeyUsage(eku) => {
                info.extended_key_usages = extended_key_usages(eku)
            }
            ParsedExtension::NameConstraints(nc) => {
                info.name_constraints = Some(name_constraints(nc, ext.critical))
            }
            ParsedExtension::SubjectKeyIdentifier(ski) => info.subject_key_id = Some(hex(ski.0)),
            ParsedExtension::AuthorityKeyIdentifier(aki) => {
                info.authority_key_id = aki.key_identifier.as_ref().map(|k| hex(k.0))
            }
            ParsedExtension::ParseError { error } => {
                return Err(invalid(format!("extension {}: {error}", ext.oid)));
            }
            _ => {}
        }
    }
    Ok(info)
}

/// How many CAs stand above the certificate that opens `tls_crt`: 0 for a self-issued root,
/// else the certificates after it in `tls_crt` plus the root in `ca_crt`.
pub fn chain_depth(tls_crt: &str, ca_crt: &str) -> Result<i32> {
    let chain = split_pem_chain(tls_crt)?;
    let first = match chain.first() {
        Some(first) => inspect_der(first)?,
        None => return Ok(0),
    };
    if first.self_issued {
        return Ok(0);
    }
    let root = split_pem_chain(ca_crt)?;
    // A chain that already carries the root does not count it twice.
    let root_in_chain = root.first().is_some_and(|r| chain.contains(r));
    let depth = chain.len() - 1 + usize::from(!root_in_chain);
    i32::try_from(depth).map_err(|_| PkiError::InvalidCertificate {
        what: "certificate chain".to_string(),
        reason: format!("{depth} certificates is not a chain"),
    })
}

fn serial_hex(raw: &[u8]) -> String {
    let trimmed: &[u8] = match raw.iter().position(|b| *b != 0) {
        Some(i) => &raw[i..],
        None => &[0],
    };
    hex(trimmed)
}

pub(crate) fn general_names(
    names: &[GeneralName<'_>],
) -> std::result::Result<SubjectAltNames, String> {
    let mut sans = SubjectAltNames::default();
    for name in names {
        match name {
            GeneralName::DNSName(n) => sans.dns_names.push(n.to_string()),
            GeneralName::RFC822Name(n) => sans.email_addresses.push(n.to_string()),
            GeneralName::URI(n) => sans.uris.push(n.to_string()),
            GeneralName::IPAddress(octets) => sans.ip_addresses.push(ip_from_octets(octets)?),
            other => return Err(format!("unsupported name {other:?}")),
        }
    }
    Ok(sans)
}

fn ip_from_octets(octets: &[u8]) -> std::result::Result<IpAddr, String> {
    if let Ok(v4) = <[u8; 4]>::try_from(octets) {
        Ok(IpAddr::V4(Ipv4Addr::from(v4)))
    } else if let Ok(v6) = <[u8; 16]>::try_from(octets) {
        Ok(IpAddr::V6(Ipv6Addr::from(v6)))
    } else {
        Err(format!("IP address of {} bytes", octets.len()))
    }
}

fn key_usages(ku: &x509_parser::extensions::KeyUsage) -> Vec<KeyUsage> {
    let table = [
        (ku.digital_signature(), KeyUsage::DigitalSignature),
        (ku.non_repudiation(), KeyUsage::ContentCommitment),
        (ku.key_encipherment(), KeyUsage::KeyEncipherment),
        (ku.data_encipherment(), KeyUsage::DataEncipherment),
        (ku.key_agreement(), KeyUsage::KeyAgreement),
        (ku.key_cert_sign(), KeyUsage::CertSign),
        (ku.crl_sign(), KeyUsage::CrlSign),
        (ku.encipher_only(), KeyUsage::EncipherOnly),
        (ku.decipher_only(), KeyUsage::DecipherOnly),
    ];
    table
        .into_iter()
        .filter(|(set, _)| *set)
        .map(|(_, u)| u)
        .collect()
}

fn extended_key_usages(eku: &x509_parser::extensions::ExtendedKeyUsage<'_>) -> Vec<KeyUsage> {
    let mut out: Vec<KeyUsage> = [
        (eku.any, KeyUsage::Any),
        (eku.server_auth, KeyUsage::ServerAuth),
        (eku.client_auth, KeyUsage::ClientAuth),
        (eku.code_signing, KeyUsage::CodeSigning),
        (eku.email_protection, KeyUsage::EmailProtection),
        (eku.time_stamping, KeyUsage::Timestamping),
        (eku.ocsp_signing, KeyUsage::OcspSigning),
    ]
    .into_iter()
    .filter(|(set, _)| *set)
    .map(|(_, u)| u)
    .collect();
    for oid in &eku.other {
        let id = oid.to_id_string();
        if let Some(usage) = super::sign::EXTRA_EKUS
            .iter()
            .find(|(_, arcs)| arcs_to_string(arcs) == id)
            .map(|(u, _)| *u)
        {
            out.push(usage);
        }
    }
    out
}

fn arcs_to_string(arcs: &[u64]) -> String {
    arcs.iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(".")
}

fn name_constraints(
    nc: &x509_parser::extensions::NameConstraints<'_>,
    critical: bool,
) -> NameConstraints {
    let dns = |subtrees: &Option<Vec<x509_parser::extensions::GeneralSubtree<'_>>>| {
        let domains: Vec<String> = subtrees
            .iter()
            .flatten()
            .filter_map(|s| match s.base {
                GeneralName::DNSName(d) => Some(d.to_string()),
                _ => None,
            })
            .collect();
        (!domains.is_empty()).then_some(NameConstraintItems {
            dns_domains: domains,
        })
    };
    NameConstraints {
        critical,
        permitted: dns(&nc.permitted_subtrees),
        excluded: dns(&nc.excluded_subtrees),
    }
}

const OID_RSA: &str = "1.2.840.113549.1.1.1";
const OID_EC: &str = "1.2.840.10045.2.1";
const OID_ED25519: &str = "1.3.101.112";
const OID_P256: &str = "1.2.840.10045.3.1.7";
const OID_P384: &str = "1.3.132.0.34";

/// The algorithm and size of a public key, when it is one this module supports.
pub(crate) fn key_algorithm_of_spki(spki: &SubjectPublicKeyInfo<'_>) -> Result<KeyAlgorithm> {
    let oid = spki.algorithm.algorithm.to_id_string();
    let unsupported = |algorithm: String| PkiError::UnsupportedPublicKey {
        what: "public key".to_string(),
        algorithm,
    };
    match oid.as_str() {
        OID_ED25519 => Ok(KeyAlgorithm::Ed25519),
        OID_EC => {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .map(|o| o.to_id_string())
                .unwrap_or_default();
            match curve.as_str() {
                OID_P256 => Ok(KeyAlgorithm::EcdsaP256),
                OID_P384 => Ok(KeyAlgorithm::EcdsaP384),
                other => Err(unsupported(format!("ECDSA on curve {other:?}"))),
            }
        }
        OID_RSA => {
            let bits = spki
                .parsed()
                .map_err(|e| unsupported(format!("RSA ({e})")))?
                .key_size();
            match bits {
                2048 => Ok(KeyAlgorithm::Rsa2048),
                3072 => Ok(KeyAlgorithm::Rsa3072),
                4096 => Ok(KeyAlgorithm::Rsa4096),
                other => Err(unsupported(format!("RSA-{other}"))),
            }
        }
        other => Err(unsupported(other.to_string())),
    }
}
