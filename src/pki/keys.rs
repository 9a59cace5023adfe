//! Private keys: generation for a `PrivateKey` spec, PEM encoding per `PrivateKeyEncoding`,
//! loading from any PEM form we write, and matching a key with a certificate.
//!
//! Encodings, as cert-manager writes them:
//!
//! | algorithm | PKCS1 | PKCS8 |
//! |---|---|---|
//! | RSA | `RSA PRIVATE KEY` (PKCS#1) | `PRIVATE KEY` |
//! | ECDSA | `EC PRIVATE KEY` (SEC 1, named curve and public key included) | `PRIVATE KEY` |
//! | Ed25519 | `PRIVATE KEY`: Ed25519 has no PKCS#1 form, so it is always PKCS#8 | `PRIVATE KEY` |

use std::fmt;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_ASN1_SIGNING, ECDSA_P384_SHA384_ASN1_SIGNING, EcdsaKeyPair,
    EcdsaSigningAlgorithm,
};
use rcgen::{PublicKeyData, RsaKeySize, SignatureAlgorithm};

use super::{PkiError, Result, parse_one_pem, to_pem};
use crate::api::common::{KeyAlgorithm, PrivateKey, PrivateKeyAlgorithm, PrivateKeyEncoding};

const PKCS8_LABEL: &str = "PRIVATE KEY";
const PKCS1_RSA_LABEL: &str = "RSA PRIVATE KEY";
const SEC1_EC_LABEL: &str = "EC PRIVATE KEY";

/// A private key with its algorithm. Holds the key as PKCS#8 inside; `Debug` shows the
/// algorithm only.
pub struct KeyPair {
    algorithm: KeyAlgorithm,
    inner: rcgen::KeyPair,
}

impl fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyPair")
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

/// The name users write for an algorithm, as in `Product.spec.allowedKeyAlgorithms`.
pub fn algorithm_name(algorithm: KeyAlgorithm) -> &'static str {
    match algorithm {
        KeyAlgorithm::EcdsaP256 => "ECDSA-P256",
        KeyAlgorithm::EcdsaP384 => "ECDSA-P384",
        KeyAlgorithm::Ed25519 => "Ed25519",
        KeyAlgorithm::Rsa2048 => "RSA-2048",
        KeyAlgorithm::Rsa3072 => "RSA-3072",
        KeyAlgorithm::Rsa4096 => "RSA-4096",
    }
}

fn family_name(algorithm: PrivateKeyAlgorithm) -> &'static str {
    match algorithm {
        PrivateKeyAlgorithm::Rsa => "RSA",
        PrivateKeyAlgorithm::Ecdsa => "ECDSA",
        PrivateKeyAlgorithm::Ed25519 => "Ed25519",
    }
}

/// The algorithm and size a `PrivateKey` spec asks for, with the defaults applied.
pub fn key_algorithm(spec: &PrivateKey) -> Result<KeyAlgorithm> {
    spec.key_algorithm()
        .ok_or_else(|| PkiError::UnsupportedKeySize {
            algorithm: family_name(spec.algorithm).to_string(),
            size: spec.size.unwrap_or_default(),
        })
}

/// Generates a key pair for a `PrivateKey` spec. RSA generation takes from tens of
/// milliseconds (2048) to seconds (4096): call [`generate_key_blocking`] from async code.
pub fn generate_key(spec: &PrivateKey) -> Result<KeyPair> {
    generate_key_for(key_algorithm(spec)?)
}

/// Generates a key pair of the given algorithm and size.
pub fn generate_key_for(algorithm: KeyAlgorithm) -> Result<KeyPair> {
    let generated = match algorithm {
        KeyAlgorithm::EcdsaP256 => rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256),
        KeyAlgorithm::EcdsaP384 => rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384),
        KeyAlgorithm::Ed25519 => rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519),
        KeyAlgorithm::Rsa2048 => {
            rcgen::KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, RsaKeySize::_2048)
        }
        KeyAlgorithm::Rsa3072 => {
            rcgen::KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, RsaKeySize::_3072)
        }
        KeyAlgorithm::Rsa4096 => {
            rcgen::KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, RsaKeySize::_4096)
        }
    };
    let inner = generated.map_err(|e| PkiError::KeyGeneration {
        algorithm: algorithm_name(algorithm).to_string(),
        reason: e.to_string(),
    })?;
    if algorithm == KeyAlgorithm::Ed25519 {
        return from_pkcs8("PKCS#8", inner.serialized_der());
    }
    Ok(KeyPair { algorithm, inner })
}

/// Whether generating a key of `algorithm`, or signing with one, takes microseconds
/// (ECDSA, Ed25519): work that costs less than handing it to another thread and back. RSA
/// takes milliseconds to sign and up to seconds to generate.
pub fn is_quick(algorithm: KeyAlgorithm) -> bool {
    !matches!(
        algorithm,
        KeyAlgorithm::Rsa2048 | KeyAlgorithm::Rsa3072 | KeyAlgorithm::Rsa4096
    )
}

/// Runs `work` with keys of `algorithm` without stalling the async runtime: in place when it
/// is quick ([`is_quick`]), else on tokio's blocking pool.
pub async fn run_with<T: Send + 'static>(
    algorithm: KeyAlgorithm,
    work: impl FnOnce() -> T + Send + 'static,
) -> std::result::Result<T, tokio::task::JoinError> {
    if is_quick(algorithm) {
        return Ok(work());
    }
    tokio::task::spawn_blocking(work).await
}

/// [`generate_key`] without stalling the runtime ([`run_with`]).
pub async fn generate_key_blocking(spec: PrivateKey) -> Result<KeyPair> {
    let algorithm = key_algorithm(&spec)?;
    run_with(algorithm, move || generate_key_for(algorithm))
        .await
        .map_err(|e| PkiError::KeyGeneration {
            algorithm: algorithm_name(algorithm).to_string(),
            reason: format!("the generating task did not finish: {e}"),
        })?
}

/// Loads a private key from PEM: `PRIVATE KEY` (PKCS#8), `RSA PRIVATE KEY` (PKCS#1) or
/// `EC PRIVATE KEY` (SEC 1). Encrypted keys are refused.
pub fn load_key_pem(text: &str) -> Result<KeyPair> {
    let block = parse_one_pem(
        "private key",
        text,
        &[PKCS8_LABEL, PKCS1_RSA_LABEL, SEC1_EC_LABEL],
    )?;
    match block.tag() {
        PKCS1_RSA_LABEL => {
            let rsa = aws_lc_rs::rsa::KeyPair::from_der(block.contents())
                .map_err(|e| invalid("PKCS#1", e.to_string()))?;
            let pkcs8 = rsa.as_der().map_err(|e| invalid("PKCS#1", e.to_string()))?;
            from_pkcs8("PKCS#1", pkcs8.as_ref())
        }
        SEC1_EC_LABEL => {
            let pkcs8 = sec1_to_pkcs8(block.contents())?;
            from_pkcs8("SEC 1", &pkcs8)
        }
        _ => from_pkcs8("PKCS#8", block.contents()),
    }
}

/// Loads a private key from PKCS#8 DER, as [`KeyPair::pkcs8_der`] gives it.
pub fn load_key_pkcs8_der(der: &[u8]) -> Result<KeyPair> {
    from_pkcs8("PKCS#8", der)
}

fn invalid(encoding: &str, reason: String) -> PkiError {
    PkiError::InvalidKey {
        encoding: encoding.to_string(),
        reason,
    }
}

fn sec1_to_pkcs8(der: &[u8]) -> Result<Vec<u8>> {
    let curves: [&'static EcdsaSigningAlgorithm; 2] = [
        &ECDSA_P256_SHA256_ASN1_SIGNING,
        &ECDSA_P384_SHA384_ASN1_SIGNING,
    ];
    for curve in curves {
        if let Ok(key) = EcdsaKeyPair::from_private_key_der(curve, der) {
            let doc = key
                .to_pkcs8v1()
                .map_err(|_| invalid("SEC 1", "cannot be re-encoded as PKCS#8".to_string()))?;
            return Ok(doc.as_ref().to_vec());
        }
    }
    Err(invalid(
        "SEC 1",
        "not an EC private key on P-256 or P-384".to_string(),
    ))
}

fn from_pkcs8(encoding: &str, der: &[u8]) -> Result<KeyPair> {
    let inner = rcgen::KeyPair::try_from(der).map_err(|e| invalid(encoding, e.to_string()))?;
    let algorithm = algorithm_of(encoding, &inner)?;
    if algorithm == KeyAlgorithm::Ed25519 && pkcs8_version(der) != Some(0) {
        // Ed25519 keys are kept as PKCS#8 v1 (no embedded public key), as Go and OpenSSL
        // write them: OpenSSL 3.0 cannot read the v2 form the crypto library generates.
        let v1: aws_lc_rs::encoding::Pkcs8V1Der<'static> =
            aws_lc_rs::signature::Ed25519KeyPair::from_pkcs8_maybe_unchecked(der)
                .map_err(|e| invalid(encoding, e.to_string()))?
                .as_der()
                .map_err(|_| invalid(encoding, "cannot be re-encoded as PKCS#8 v1".to_string()))?;
        return from_pkcs8(encoding, v1.as_ref());
    }
    Ok(KeyPair { algorithm, inner })
}

/// The version field of a PKCS#8 structure: 0 for v1, 1 for v2 (RFC 5958).
fn pkcs8_version(der: &[u8]) -> Option<u8> {
    yasna::parse_der(der, |r| {
        r.read_sequence(|r| {
            let version = r.next().read_u8()?;
            let _ = r.next().read_der()?;
            let _ = r.next().read_der()?;
            let _ = r.read_optional(|r| r.read_der())?;
            let _ = r.read_optional(|r| r.read_der())?;
            Ok(version)
        })
    })
    .ok()
}

fn algorithm_of(encoding: &str, key: &rcgen::KeyPair) -> Result<KeyAlgorithm> {
    let alg: &SignatureAlgorithm = key.algorithm();
    if alg == &rcgen::PKCS_ECDSA_P256_SHA256 {
        Ok(KeyAlgorithm::EcdsaP256)
    } else if alg == &rcgen::PKCS_ECDSA_P384_SHA384 {
        Ok(KeyAlgorithm::EcdsaP384)
    } else if alg == &rcgen::PKCS_ED25519 {
        Ok(KeyAlgorithm::Ed25519)
    } else if alg == &rcgen::PKCS_RSA_SHA256 {
        let rsa = aws_lc_rs::rsa::KeyPair::from_pkcs8(key.serialized_der())
            .map_err(|e| invalid(encoding, e.to_string()))?;
        match rsa.public_modulus_len() * 8 {
            2048 => Ok(KeyAlgorithm::Rsa2048),
            3072 => Ok(KeyAlgorithm::Rsa3072),
            4096 => Ok(KeyAlgorithm::Rsa4096),
            bits => Err(invalid(
                encoding,
                format!("RSA keys of {bits} bits are not supported (2048, 3072 or 4096)"),
            )),
        }
    } else {
        Err(invalid(
            encoding,
            "only RSA, ECDSA P-256/P-384 and Ed25519 keys are supported".to_string(),
        ))
    }
}

impl KeyPair {
    /// The key's algorithm and size.
    pub fn algorithm(&self) -> KeyAlgorithm {
        self.algorithm
    }

    /// Whether the key is what `spec` asks for (algorithm and size; encoding aside), as
    /// `rotationPolicy: Never` needs to decide whether the key can be kept.
    pub fn matches_spec(&self, spec: &PrivateKey) -> bool {
        spec.key_algorithm() == Some(self.algorithm)
    }

    /// The private key as PEM in `encoding` (see the module table). Ed25519 keys are PKCS#8
    /// whatever the encoding, as they have no PKCS#1 form.
    pub fn to_pem(&self, encoding: PrivateKeyEncoding) -> Result<String> {
        match (encoding, self.algorithm) {
            (PrivateKeyEncoding::Pkcs8, _) | (PrivateKeyEncoding::Pkcs1, KeyAlgorithm::Ed25519) => {
                Ok(to_pem(PKCS8_LABEL, self.inner.serialized_der()))
            }
            (
                PrivateKeyEncoding::Pkcs1,
                KeyAlgorithm::Rsa2048 | KeyAlgorithm::Rsa3072 | KeyAlgorithm::Rsa4096,
            ) => Ok(to_pem(
                PKCS1_RSA_LABEL,
                &pkcs8_private_key_octets(self.inner.serialized_der())?,
            )),
            (PrivateKeyEncoding::Pkcs1, KeyAlgorithm::EcdsaP256 | KeyAlgorithm::EcdsaP384) => {
                // The PKCS#8 of a key this crate generated holds the SEC 1 structure already,
                // less the curve (which PKCS#8 names in its algorithm): rewrapping it is plain
                // DER work, where loading the key would check it with a point multiplication.
                let der = self.inner.serialized_der();
                let sec1 = match pkcs8_to_sec1(der) {
                    Some(sec1) => sec1,
                    None => sec1_of_loaded(self.algorithm, der)?,
                };
                Ok(to_pem(SEC1_EC_LABEL, &sec1))
            }
        }
    }

    /// The private key as PKCS#8 DER, for [`super::seal`].
    pub fn pkcs8_der(&self) -> &[u8] {
        self.inner.serialized_der()
    }

    /// The public key as a DER SubjectPublicKeyInfo.
    pub fn public_key_der(&self) -> Vec<u8> {
        self.inner.subject_public_key_info()
    }

    /// The public key as PEM (`PUBLIC KEY`).
    pub fn public_key_pem(&self) -> String {
        to_pem("PUBLIC KEY", &self.public_key_der())
    }

    /// Whether the certificate in `cert_pem` (its first block) is for this key.
    pub fn matches_certificate_pem(&self, cert_pem: &str) -> Result<bool> {
        let info = super::inspect::inspect_pem(cert_pem)?;
        Ok(self.matches_public_key_der(&info.public_key_der))
    }

    /// Whether a DER SubjectPublicKeyInfo is this key's public key.
    pub fn matches_public_key_der(&self, spki_der: &[u8]) -> bool {
        use x509_parser::prelude::FromDer;
        match x509_parser::x509::SubjectPublicKeyInfo::from_der(spki_der) {
            Ok((_, spki)) => {
                spki.subject_public_key.data.as_ref() == self.inner.public_key_raw()
                    && spki.algorithm.algorithm.to_id_string() == spki_algorithm_oid(self.algorithm)
            }
            Err(_) => false,
        }
    }

    /// The key as rcgen signs with it.
    pub(crate) fn signing_key(&self) -> &rcgen::KeyPair {
        &self.inner
    }

    /// The key as rcgen signs with it, taken out of the wrapper.
    pub(crate) fn into_signing_key(self) -> rcgen::KeyPair {
        self.inner
    }
}

fn spki_algorithm_oid(algorithm: KeyAlgorithm) -> &'static str {
    match algorithm {
        KeyAlgorithm::EcdsaP256 | KeyAlgorithm::EcdsaP384 => "1.2.840.10045.2.1",
        KeyAlgorithm::Ed25519 => "1.3.101.112",
        KeyAlgorithm::Rsa2048 | KeyAlgorithm::Rsa3072 | KeyAlgorithm::Rsa4096 => {
            "1.2.840.113549.1.1.1"
        }
    }
}

/// The `privateKey` OCTET STRING of a PKCS#8 PrivateKeyInfo: for RSA, the PKCS#1 key.
fn pkcs8_private_key_octets(pkcs8: &[u8]) -> Result<Vec<u8>> {
    yasna::parse_der(pkcs8, |r| {
        r.read_sequence(|r| {
            let _version = r.next().read_u8()?;
            let _algorithm = r.next().read_der()?;
            let key = r.next().read_bytes()?;
            // Optional attributes [0] and public key [1] (PKCS#8 v2) are skipped.
            let _ = r.read_optional(|r| r.read_der())?;
            let _ = r.read_optional(|r| r.read_der())?;
            Ok(key)
        })
    })
    .map_err(|e| invalid("PKCS#8", format!("malformed PrivateKeyInfo: {e}")))
}

/// The SEC 1 `ECPrivateKey` (RFC 5915) in the PKCS#8 `pkcs8` of an EC key, with the curve
/// named in its `parameters` as a standalone SEC 1 key carries it: `None` unless `pkcs8` is a
/// well-formed EC key that holds its public key (the SEC 1 form then needs nothing computed).
fn pkcs8_to_sec1(pkcs8: &[u8]) -> Option<Vec<u8>> {
    let (curve, inner) = yasna::parse_der(pkcs8, |r| {
        r.read_sequence(|r| {
            let _version = r.next().read_u8()?;
            let (algorithm, curve) = r.next().read_sequence(|r| {
                let algorithm = r.next().read_oid()?;
                let curve = r.next().read_oid()?;
                Ok((algorithm, curve))
            })?;
            if algorithm.components().as_slice() != EC_PUBLIC_KEY_OID {
                return Err(yasna::ASN1Error::new(yasna::ASN1ErrorKind::Invalid));
            }
            let inner = r.next().read_bytes()?;
            let _ = r.read_optional(|r| r.read_der())?;
            let _ = r.read_optional(|r| r.read_der())?;
            Ok((curve, inner))
        })
    })
    .ok()?;
    let (private, curve_in_key, public) = yasna::parse_der(&inner, |r| {
        r.read_sequence(|r| {
            if r.next().read_u8()? != 1 {
                return Err(yasna::ASN1Error::new(yasna::ASN1ErrorKind::Invalid));
            }
            let private = r.next().read_bytes()?;
            let curve =
                r.read_optional(|r| r.read_tagged(yasna::Tag::context(0), |r| r.read_oid()))?;
            let public = r.read_optional(|r| {
                r.read_tagged(yasna::Tag::context(1), |r| r.read_bitvec_bytes())
            })?;
            Ok((private, curve, public))
        })
    })
    .ok()?;
    if curve_in_key.is_some_and(|named| named != curve) {
        return None;
    }
    let (public, bits) = public?;
    Some(yasna::construct_der(|w| {
        w.write_sequence(|w| {
            w.next().write_u8(1);
            w.next().write_bytes(&private);
            w.next()
                .write_tagged(yasna::Tag::context(0), |w| w.write_oid(&curve));
            w.next().write_tagged(yasna::Tag::context(1), |w| {
                w.write_bitvec_bytes(&public, bits)
            });
        })
    }))
}

/// The SEC 1 form of the EC key in `pkcs8`, as the crypto library writes it once it has
/// loaded (and checked) the key.
fn sec1_of_loaded(algorithm: KeyAlgorithm, pkcs8: &[u8]) -> Result<Vec<u8>> {
    let curve: &'static EcdsaSigningAlgorithm = if algorithm == KeyAlgorithm::EcdsaP256 {
        &ECDSA_P256_SHA256_ASN1_SIGNING
    } else {
        &ECDSA_P384_SHA384_ASN1_SIGNING
    };
    let key =
        EcdsaKeyPair::from_pkcs8(curve, pkcs8).map_err(|e| invalid("PKCS#8", e.to_string()))?;
    let sec1 = key
        .private_key()
        .as_der()
        .map_err(|_| PkiError::UnsupportedEncoding {
            algorithm: algorithm_name(algorithm).to_string(),
            encoding: "SEC 1".to_string(),
        })?;
    Ok(sec1.as_ref().to_vec())
}

/// id-ecPublicKey (RFC 5480).
const EC_PUBLIC_KEY_OID: &[u64] = &[1, 2, 840, 10045, 2, 1];

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(algorithm: PrivateKeyAlgorithm, size: Option<u32>) -> PrivateKey {
        PrivateKey {
            algorithm,
            size,
            ..Default::default()
        }
    }

    const FAST: [KeyAlgorithm; 4] = [
        KeyAlgorithm::EcdsaP256,
        KeyAlgorithm::EcdsaP384,
        KeyAlgorithm::Ed25519,
        KeyAlgorithm::Rsa2048,
    ];

    #[test]
    fn spec_maps_to_algorithm_with_defaults_and_refuses_impossible_sizes() {
        let cases = [
            (
                PrivateKeyAlgorithm::Ecdsa,
                None,
                Some(KeyAlgorithm::EcdsaP256),
            ),
            (
                PrivateKeyAlgorithm::Ecdsa,
                Some(384),
                Some(KeyAlgorithm::EcdsaP384),
            ),
            (PrivateKeyAlgorithm::Rsa, None, Some(KeyAlgorithm::Rsa2048)),
            (
                PrivateKeyAlgorithm::Rsa,
                Some(4096),
                Some(KeyAlgorithm::Rsa4096),
            ),
            (
                PrivateKeyAlgorithm::Ed25519,
                None,
                Some(KeyAlgorithm::Ed25519),
            ),
            (PrivateKeyAlgorithm::Ed25519, Some(256), None),
            (PrivateKeyAlgorithm::Rsa, Some(1024), None),
        ];
        for (family, size, want) in cases {
            let got = key_algorithm(&spec(family, size));
            match want {
                Some(want) => assert_eq!(got.unwrap(), want, "{family:?} {size:?}"),
                None => {
                    let msg = got.unwrap_err().to_string();
                    assert!(msg.contains("size"), "{msg}");
                }
            }
        }
    }

    #[test]
    fn generated_keys_have_the_requested_algorithm() {
        for alg in FAST {
            assert_eq!(generate_key_for(alg).unwrap().algorithm(), alg);
        }
    }

    #[test]
    fn pem_labels_follow_the_encoding() {
        let cases = [
            (
                KeyAlgorithm::Rsa2048,
                PrivateKeyEncoding::Pkcs1,
                "RSA PRIVATE KEY",
            ),
            (
                KeyAlgorithm::Rsa2048,
                PrivateKeyEncoding::Pkcs8,
                "PRIVATE KEY",
            ),
            (
                KeyAlgorithm::EcdsaP256,
                PrivateKeyEncoding::Pkcs1,
                "EC PRIVATE KEY",
            ),
            (
                KeyAlgorithm::EcdsaP384,
                PrivateKeyEncoding::Pkcs1,
                "EC PRIVATE KEY",
            ),
            (
                KeyAlgorithm::EcdsaP384,
                PrivateKeyEncoding::Pkcs8,
                "PRIVATE KEY",
            ),
            (
                KeyAlgorithm::Ed25519,
                PrivateKeyEncoding::Pkcs1,
                "PRIVATE KEY",
            ),
            (
                KeyAlgorithm::Ed25519,
                PrivateKeyEncoding::Pkcs8,
                "PRIVATE KEY",
            ),
        ];
        for (alg, encoding, label) in cases {
            let key = generate_key_for(alg).unwrap();
            let text = key.to_pem(encoding).unwrap();
            assert!(
                text.starts_with(&format!("-----BEGIN {label}-----\n")),
                "{alg:?} {encoding:?}: {text}"
            );
        }
    }

    #[test]
    fn every_encoding_loads_back_to_the_same_key() {
        for alg in FAST {
            let key = generate_key_for(alg).unwrap();
            for encoding in [PrivateKeyEncoding::Pkcs1, PrivateKeyEncoding::Pkcs8] {
                let loaded = load_key_pem(&key.to_pem(encoding).unwrap()).unwrap();
                assert_eq!(loaded.algorithm(), alg);
                assert_eq!(loaded.public_key_der(), key.public_key_der(), "{alg:?}");
            }
        }
    }

    #[test]
    fn an_ec_keys_sec1_form_is_rewrapped_from_its_pkcs8_as_the_crypto_library_writes_it() {
        for alg in [KeyAlgorithm::EcdsaP256, KeyAlgorithm::EcdsaP384] {
            for _ in 0..64 {
                let key = generate_key_for(alg).unwrap();
                let der = key.pkcs8_der();
                let rewrapped = pkcs8_to_sec1(der).expect("a generated key holds its public key");
                assert_eq!(rewrapped, sec1_of_loaded(alg, der).unwrap(), "{alg:?}");
            }
        }
    }

    #[test]
    fn an_ec_key_without_its_public_key_is_loaded_to_write_its_sec1_form() {
        // OpenSSL's PKCS#8 of a P-256 key made without the optional public key.
        let sec1 = yasna::construct_der(|w| {
            w.write_sequence(|w| {
                w.next().write_u8(1);
                w.next().write_bytes(&[7u8; 32]);
            })
        });
        let pkcs8 = yasna::construct_der(|w| {
            w.write_sequence(|w| {
                w.next().write_u8(0);
                w.next().write_sequence(|w| {
                    w.next()
                        .write_oid(&yasna::models::ObjectIdentifier::from_slice(
                            EC_PUBLIC_KEY_OID,
                        ));
                    w.next()
                        .write_oid(&yasna::models::ObjectIdentifier::from_slice(&[
                            1, 2, 840, 10045, 3, 1, 7,
                        ]));
                });
                w.next().write_bytes(&sec1);
            })
        });
        assert_eq!(
            pkcs8_to_sec1(&pkcs8),
            None,
            "nothing to rewrap without a public key"
        );
        let key = load_key_pem(&to_pem(PKCS8_LABEL, &pkcs8)).unwrap();
        let written = key.to_pem(PrivateKeyEncoding::Pkcs1).unwrap();
        assert!(
            written.starts_with("-----BEGIN EC PRIVATE KEY-----"),
            "{written}"
        );
        let back = load_key_pem(&written).unwrap();
        assert_eq!(back.public_key_der(), key.public_key_der());
        // Not an EC key at all: not rewrapped.
        let rsa = generate_key_for(KeyAlgorithm::Rsa2048).unwrap();
        assert_eq!(pkcs8_to_sec1(rsa.pkcs8_der()), None);
    }

    #[test]
    fn ed25519_keys_are_pkcs8_v1_even_when_loaded_from_v2() {
        let v2 = aws_lc_rs::signature::Ed25519KeyPair::generate_pkcs8(
            &aws_lc_rs::rand::SystemRandom::new(),
        )
        .unwrap();
        assert_eq!(pkcs8_version(v2.as_ref()), Some(1));
        let loaded = load_key_pem(&to_pem(PKCS8_LABEL, v2.as_ref())).unwrap();
        let pem = loaded.to_pem(PrivateKeyEncoding::Pkcs8).unwrap();
        let der = pem::parse(&pem).unwrap().into_contents();
        assert_eq!(pkcs8_version(&der), Some(0));
        let generated = generate_key_for(KeyAlgorithm::Ed25519).unwrap();
        assert_eq!(
            pkcs8_version(generated.signing_key().serialized_der()),
            Some(0)
        );
    }

    #[test]
    fn debug_never_shows_key_material() {
        let key = generate_key_for(KeyAlgorithm::EcdsaP256).unwrap();
        let debug = format!("{key:?}");
        let pem = key.to_pem(PrivateKeyEncoding::Pkcs8).unwrap();
        let body: String = pem.lines().nth(1).unwrap().chars().take(20).collect();
        assert_eq!(debug, "KeyPair { algorithm: EcdsaP256, .. }");
        assert!(!debug.contains(&body));
    }

    #[test]
    fn garbage_and_wrong_labels_are_refused_with_the_reason() {
        let err = load_key_pem("not pem").unwrap_err().to_string();
        assert!(err.contains("private key"), "{err}");
        let err = load_key_pem("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("\"CERTIFICATE\" is not accepted"), "{err}");
        let err =
            load_key_pem("-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n")
                .unwrap_err()
                .to_string();
        assert!(err.contains("PKCS#1"), "{err}");
    }

    #[test]
    fn spec_matching_compares_algorithm_and_size() {
        let key = generate_key_for(KeyAlgorithm::EcdsaP256).unwrap();
        assert!(key.matches_spec(&spec(PrivateKeyAlgorithm::Ecdsa, None)));
        assert!(!key.matches_spec(&spec(PrivateKeyAlgorithm::Ecdsa, Some(384))));
        assert!(!key.matches_spec(&spec(PrivateKeyAlgorithm::Rsa, None)));
    }

    #[tokio::test]
    async fn blocking_pool_generation_returns_the_key() {
        let key = generate_key_blocking(spec(PrivateKeyAlgorithm::Ed25519, None))
            .await
            .unwrap();
        assert_eq!(key.algorithm(), KeyAlgorithm::Ed25519);
    }
}
