//! Key generation, CSRs, CAs, signing, inspection, name rules, renewal and chain
//! verification: plain functions over plain values, with no Kubernetes client.
//!
//! The controllers call these in their pipeline: [`keys`] makes the next private key,
//! [`csr`] turns a Certificate's spec into a CSR and back, [`ca`] makes root and intermediate
//! CAs and rebuilds an [`Issuer`] from a CA's Secret, [`sign`] issues a leaf from a CSR,
//! [`inspect`] reads certificates for status, [`names`] decides whether names are allowed,
//! [`renewal`] decides when to renew, [`verify`] checks a chain as a client would, and
//! [`seal`] seals a pending private key into the Order that carries its request.

pub mod ca;
pub mod csr;
pub mod inspect;
pub mod keys;
pub mod names;
pub mod renewal;
pub mod seal;
pub mod sign;
pub mod verify;

pub use ca::{
    CaCertificate, CaProfile, IssuedCertificate, Issuer, issue_intermediate_ca, issue_root_ca,
};
pub use csr::{ParsedCsr, Possession, build_csr, parse_csr, parse_csr_with};
pub use inspect::{
    CertificateInfo, SubjectAltNames, chain_depth, inspect_der, inspect_pem, split_pem_chain,
};
pub use keys::{
    KeyPair, algorithm_name, generate_key, generate_key_blocking, generate_key_for, key_algorithm,
    load_key_pem, load_key_pkcs8_der,
};
pub use names::{
    NameConstraintViolation, check_name_constraints, dns_name_in_domains, dns_name_within,
    validate_dns_name,
};
pub use renewal::renewal_time;
pub use seal::{SealError, SealingKey};
pub use sign::{
    DEFAULT_USAGES, LeafProfile, TEMPLATE_USAGES, Validity, clip_validity, sign_leaf, usages_for,
};
pub use verify::{VerifiedChain, verify_chain};

/// Everything that can go wrong in the PKI module. Messages name the field or value and the
/// rule it broke; they never carry private key material.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// A private key spec asks for an algorithm and size that do not exist.
    #[error("privateKey: {algorithm} keys cannot have size {size}")]
    UnsupportedKeySize {
        /// The requested algorithm.
        algorithm: String,
        /// The requested size.
        size: u32,
    },
    /// A key could not be generated.
    #[error("generating a {algorithm} key failed: {reason}")]
    KeyGeneration {
        /// The requested algorithm.
        algorithm: String,
        /// Why, from the crypto library.
        reason: String,
    },
    /// PEM text could not be read.
    #[error("{what}: not valid PEM: {reason}")]
    Pem {
        /// What was being read: `tls.key`, `tls.crt`, a CSR…
        what: String,
        /// Why.
        reason: String,
    },
    /// A PEM block had a label this module does not read there.
    #[error("{what}: PEM block {label:?} is not accepted here (expected {expected})")]
    PemLabel {
        /// What was being read.
        what: String,
        /// The label found.
        label: String,
        /// The labels accepted.
        expected: String,
    },
    /// A private key could not be loaded.
    #[error("private key ({encoding}): {reason}")]
    InvalidKey {
        /// The encoding that was tried.
        encoding: String,
        /// Why it was refused (never the key itself).
        reason: String,
    },
    /// A key has no form in the requested encoding.
    #[error("{algorithm} keys have no {encoding} encoding")]
    UnsupportedEncoding {
        /// The key algorithm.
        algorithm: String,
        /// The encoding requested.
        encoding: String,
    },
    /// A certificate could not be parsed.
    #[error("{what}: not a valid X.509 certificate: {reason}")]
    InvalidCertificate {
        /// Which certificate: `tls.crt`, `ca.crt`, chain entry 2…
        what: String,
        /// Why.
        reason: String,
    },
    /// A CSR could not be parsed or its signature does not verify.
    #[error("CSR: {reason}")]
    InvalidCsr {
        /// Why.
        reason: String,
    },
    /// A field of a spec, a CSR or a profile has a value that cannot go into a certificate.
    #[error("{field}: {value:?} {reason}")]
    InvalidField {
        /// The field, as a user would write it: `dnsNames[1]`, `subject.countries[0]`.
        field: String,
        /// The offending value.
        value: String,
        /// The rule it broke.
        reason: String,
    },
    /// A public key algorithm the module does not support.
    #[error("{what}: unsupported public key algorithm {algorithm}")]
    UnsupportedPublicKey {
        /// Where the key was found.
        what: String,
        /// The algorithm, as an OID or name.
        algorithm: String,
    },
    /// A name is outside what a CA's name constraints allow.
    #[error("{0}")]
    NameConstraint(#[from] NameConstraintViolation),
    /// A validity window that cannot be issued.
    #[error("validity: {reason}")]
    Validity {
        /// Why.
        reason: String,
    },
    /// A CA cannot issue what is asked of it.
    #[error("issuer {subject:?}: {reason}")]
    Issuer {
        /// The CA's subject common name.
        subject: String,
        /// Why.
        reason: String,
    },
    /// A chain failed verification.
    #[error("chain verification failed: {reason}")]
    ChainVerification {
        /// Why, from the verifier.
        reason: String,
    },
    /// Signing failed inside the certificate library.
    #[error("signing {what} failed: {reason}")]
    Signing {
        /// What was being signed.
        what: String,
        /// Why.
        reason: String,
    },
}

/// Shorthand for results of this module.
pub type Result<T, E = PkiError> = std::result::Result<T, E>;

/// Parses every PEM block of `text` (for `what`, used in errors).
pub(crate) fn parse_pem_blocks(what: &str, text: &str) -> Result<Vec<pem::Pem>> {
    let blocks = pem::parse_many(text).map_err(|e| PkiError::Pem {
        what: what.to_string(),
        reason: e.to_string(),
    })?;
    if blocks.is_empty() {
        return Err(PkiError::Pem {
            what: what.to_string(),
            reason: "no PEM block found".to_string(),
        });
    }
    Ok(blocks)
}

/// Parses exactly one PEM block with one of the `labels`.
pub(crate) fn parse_one_pem(what: &str, text: &str, labels: &[&str]) -> Result<pem::Pem> {
    let mut blocks = parse_pem_blocks(what, text)?;
    if blocks.len() != 1 {
        return Err(PkiError::Pem {
            what: what.to_string(),
            reason: format!("expected one PEM block, found {}", blocks.len()),
        });
    }
    let block = blocks.remove(0);
    if !labels.contains(&block.tag()) {
        return Err(PkiError::PemLabel {
            what: what.to_string(),
            label: block.tag().to_string(),
            expected: labels.join(" or "),
        });
    }
    Ok(block)
}

/// Encodes DER as PEM with `label`, LF line endings.
pub(crate) fn to_pem(label: &str, der: &[u8]) -> String {
    pem::encode_config(
        &pem::Pem::new(label, der.to_vec()),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    )
}

/// Lower-case hex without separators.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A jiff timestamp as the `time` crate's date-time rcgen takes, to the second.
pub(crate) fn to_offset_date_time(
    field: &str,
    ts: jiff::Timestamp,
) -> Result<time::OffsetDateTime> {
    time::OffsetDateTime::from_unix_timestamp(ts.as_second()).map_err(|e| PkiError::Validity {
        reason: format!("{field} {ts} cannot be written in a certificate: {e}"),
    })
}

/// An ASN.1 time from a certificate as a jiff timestamp.
pub(crate) fn from_asn1_time(
    field: &str,
    t: x509_parser::time::ASN1Time,
) -> Result<jiff::Timestamp> {
    jiff::Timestamp::from_second(t.timestamp()).map_err(|e| PkiError::Validity {
        reason: format!("{field} {t} is out of range: {e}"),
    })
}

/// A Kubernetes duration as a std duration, refusing negative ones.
pub(crate) fn std_duration(
    field: &str,
    d: &crate::api::common::Duration,
) -> Result<std::time::Duration> {
    if d.is_negative() {
        return Err(PkiError::InvalidField {
            field: field.to_string(),
            value: d.to_string(),
            reason: "must not be negative".to_string(),
        });
    }
    Ok((*d).into())
}

/// Adds a std duration to a timestamp, naming `field` if it overflows.
pub(crate) fn add_duration(
    field: &str,
    ts: jiff::Timestamp,
    d: std::time::Duration,
) -> Result<jiff::Timestamp> {
    let span = jiff::SignedDuration::try_from(d).map_err(|e| PkiError::Validity {
        reason: format!("{field} is too long: {e}"),
    })?;
    ts.checked_add(span).map_err(|e| PkiError::Validity {
        reason: format!("{ts} plus {field} is out of range: {e}"),
    })
}
