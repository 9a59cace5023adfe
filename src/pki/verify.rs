//! Chain verification as a TLS client does it (rustls-webpki): signatures, validity at a
//! given time, CA basic constraints and path length, and DNS name constraints. Extended key
//! usage is not required here; tests assert it on the inspected leaf. The root is a trust
//! anchor: its name constraints apply, its own pathLen does not (webpki reads only the
//! intermediates' basic constraints); our signer enforces the root's pathLen when it issues.

use jiff::Timestamp;
use rustls_pki_types::{CertificateDer, UnixTime};
use webpki::{EndEntityCert, ExtendedKeyUsageValidator, KeyPurposeIdIter};

use super::inspect::split_pem_chain;
use super::{PkiError, Result};

/// A chain that verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedChain {
    /// How many intermediates the verified path went through.
    pub intermediates: usize,
}

/// Accepts whatever extended key usages a leaf has.
struct AnyUsage;

impl ExtendedKeyUsageValidator for AnyUsage {
    fn validate(&self, iter: KeyPurposeIdIter<'_, '_>) -> std::result::Result<(), webpki::Error> {
        for id in iter {
            id?;
        }
        Ok(())
    }
}

/// Verifies `tls_crt` (leaf then intermediates) up to the root in `ca_crt` at time `at`.
pub fn verify_chain(tls_crt: &str, ca_crt: &str, at: Timestamp) -> Result<VerifiedChain> {
    let fail = |reason: String| PkiError::ChainVerification { reason };
    let chain = split_pem_chain(tls_crt)?;
    let roots = split_pem_chain(ca_crt)?;
    let (leaf, intermediates) = chain
        .split_first()
        .ok_or_else(|| fail("tls.crt holds no certificate".to_string()))?;
    let leaf = CertificateDer::from(leaf.as_slice());
    let intermediates: Vec<CertificateDer<'_>> = intermediates
        .iter()
        .map(|d| CertificateDer::from(d.as_slice()))
        .collect();
    let root_ders: Vec<CertificateDer<'_>> = roots
        .iter()
        .map(|d| CertificateDer::from(d.as_slice()))
        .collect();
    let anchors = root_ders
        .iter()
        .map(|d| webpki::anchor_from_trusted_cert(d).map_err(|e| fail(format!("ca.crt: {e}"))))
        .collect::<Result<Vec<_>>>()?;
    let end_entity = EndEntityCert::try_from(&leaf).map_err(|e| fail(format!("leaf: {e}")))?;
    let seconds =
        u64::try_from(at.as_second()).map_err(|_| fail(format!("time {at} is before 1970")))?;
    let time = UnixTime::since_unix_epoch(std::time::Duration::from_secs(seconds));
    let path = end_entity
        .verify_for_usage(
            webpki::ALL_VERIFICATION_ALGS,
            &anchors,
            &intermediates,
            time,
            AnyUsage,
            None,
            None,
        )
        .map_err(|e| fail(format!("{e}")))?;
    Ok(VerifiedChain {
        intermediates: path.intermediate_certificates().count(),
    })
}
