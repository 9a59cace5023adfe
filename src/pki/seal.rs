//! Sealing private keys for the Order that carries their request: AES-256-GCM-SIV under a
//! key only the operator holds, so that a key generated for an Order in flight outlives the
//! process without being written anywhere a tenant can read it in the clear.
//!
//! GCM-SIV (RFC 8452) rather than GCM: each seal takes a random 96-bit nonce, and a nonce
//! that comes round again under GCM would give the authentication key away; under GCM-SIV it
//! only shows that the same key was sealed twice. One sealing key then serves any number of
//! Orders.
//!
//! A sealed key reads `v1.<key id>.<base64 of nonce, ciphertext and tag>`: the key id (the
//! first eight bytes of the sealing key's SHA-256, in hex) says which sealing key opens it,
//! and the associated data binds it to where it belongs (the Certificate and the request), so
//! a sealed key copied to another Order does not open there.

use std::fmt;

use aws_lc_rs::aead::{AES_256_GCM_SIV, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// The length of a sealing key, in bytes.
pub const KEY_LEN: usize = 32;
const VERSION: &str = "v1";

/// Why a sealed key does not open.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// The sealing key itself is unusable.
    #[error("the sealing key must be {KEY_LEN} bytes, not {0}")]
    KeyLength(usize),
    /// Not of the form `v1.<key id>.<base64>`.
    #[error("not a sealed key (expected v1.<key id>.<base64>): {0}")]
    Malformed(&'static str),
    /// Sealed under another sealing key (one that was replaced, or another cluster's).
    #[error("sealed under key {found}, not this operator's key {expected}")]
    OtherKey {
        /// The key id the sealed key names.
        found: String,
        /// This sealing key's id.
        expected: String,
    },
    /// The ciphertext, its tag or the associated data does not match: altered, or copied from
    /// another object.
    #[error("it does not open: it was altered, or sealed for another object")]
    Tampered,
    /// The system's random source failed.
    #[error("no random bytes for the nonce")]
    Random,
    /// The cipher refused to seal (more bytes than it takes).
    #[error("the cipher refused to seal {0} bytes")]
    TooLong(usize),
}

/// A sealing key. `Debug` shows its id only.
pub struct SealingKey {
    key: LessSafeKey,
    id: String,
}

impl fmt::Debug for SealingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SealingKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl SealingKey {
    /// A new random sealing key, as bytes to store.
    pub fn generate() -> Result<[u8; KEY_LEN], SealError> {
        let mut bytes = [0u8; KEY_LEN];
        SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| SealError::Random)?;
        Ok(bytes)
    }

    /// The sealing key of stored bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<SealingKey, SealError> {
        if bytes.len() != KEY_LEN {
            return Err(SealError::KeyLength(bytes.len()));
        }
        let unbound = UnboundKey::new(&AES_256_GCM_SIV, bytes)
            .map_err(|_| SealError::KeyLength(bytes.len()))?;
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
        let id = digest.as_ref()[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Ok(SealingKey {
            key: LessSafeKey::new(unbound),
            id,
        })
    }

    /// This key's id, as sealed keys name it.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Seals `plaintext` for the object `bound_to` describes.
    pub fn seal(&self, plaintext: &[u8], bound_to: &[u8]) -> Result<String, SealError> {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| SealError::Random)?;
        let mut sealed = plaintext.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(bound_to),
                &mut sealed,
            )
            .map_err(|_| SealError::TooLong(plaintext.len()))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        Ok(format!("{VERSION}.{}.{}", self.id, STANDARD.encode(out)))
    }

    /// Opens what [`SealingKey::seal`] sealed for the same `bound_to`.
    pub fn open(&self, sealed: &str, bound_to: &[u8]) -> Result<Vec<u8>, SealError> {
        let mut parts = sealed.splitn(3, '.');
        let (Some(version), Some(id), Some(body)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(SealError::Malformed("it has fewer than three parts"));
        };
        if version != VERSION {
            return Err(SealError::Malformed("unknown version"));
        }
        if id != self.id {
            return Err(SealError::OtherKey {
                found: id.to_owned(),
                expected: self.id.clone(),
            });
        }
        let bytes = STANDARD
            .decode(body)
            .map_err(|_| SealError::Malformed("its body is not base64"))?;
        if bytes.len() < NONCE_LEN + AES_256_GCM_SIV.tag_len() {
            return Err(SealError::Malformed("its body is too short"));
        }
        let (nonce, ciphertext) = bytes.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce)
            .map_err(|_| SealError::Malformed("its nonce is too short"))?;
        let mut in_out = ciphertext.to_vec();
        let opened = self
            .key
            .open_in_place(nonce, Aad::from(bound_to), &mut in_out)
            .map_err(|_| SealError::Tampered)?;
        Ok(opened.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SealingKey {
        SealingKey::from_bytes(&SealingKey::generate().expect("random")).expect("key")
    }

    #[test]
    fn a_sealed_key_opens_only_with_its_key_for_its_object() {
        let (key, other) = (key(), key());
        let sealed = key.seal(b"secret bytes", b"acme/web\nCSR").expect("sealed");
        assert!(sealed.starts_with(&format!("v1.{}.", key.id())));
        assert!(!sealed.contains("secret"));
        assert_eq!(
            key.open(&sealed, b"acme/web\nCSR").expect("opens"),
            b"secret bytes"
        );
        // Two seals of the same bytes differ (a fresh nonce each time).
        assert_ne!(
            key.seal(b"secret bytes", b"x").ok(),
            key.seal(b"secret bytes", b"x").ok()
        );

        assert_eq!(
            key.open(&sealed, b"acme/api\nCSR"),
            Err(SealError::Tampered)
        );
        assert!(matches!(
            other.open(&sealed, b"acme/web\nCSR"),
            Err(SealError::OtherKey { found, expected }) if found == key.id() && expected == other.id()
        ));
        // Any altered byte of the body is caught.
        let body_at = sealed.rfind('.').expect("dot") + 1;
        let body = STANDARD.decode(&sealed[body_at..]).expect("base64");
        for i in 0..body.len() {
            let mut altered = body.clone();
            altered[i] ^= 1;
            let text = format!("{}{}", &sealed[..body_at], STANDARD.encode(altered));
            assert_eq!(
                key.open(&text, b"acme/web\nCSR"),
                Err(SealError::Tampered),
                "byte {i}"
            );
        }
    }

    #[test]
    fn malformed_sealed_keys_and_sealing_keys_are_named() {
        let key = key();
        let id = key.id().to_owned();
        for (text, want) in [
            ("", "fewer than three parts"),
            ("v1.abc", "fewer than three parts"),
            ("v2.x.y", "unknown version"),
        ] {
            let problem = key.open(text, b"").expect_err(text).to_string();
            assert!(problem.contains(want), "{text:?}: {problem}");
        }
        let problem = key
            .open(&format!("v1.{id}.not base64!"), b"")
            .expect_err("body");
        assert_eq!(problem, SealError::Malformed("its body is not base64"));
        let problem = key.open(&format!("v1.{id}.AAAA"), b"").expect_err("short");
        assert_eq!(problem, SealError::Malformed("its body is too short"));
        assert_eq!(
            SealingKey::from_bytes(&[0u8; 16]).map(|_| ()),
            Err(SealError::KeyLength(16))
        );
        assert_eq!(
            SealingKey::from_bytes(&[]).map(|_| ()),
            Err(SealError::KeyLength(0))
        );
        // The key's id is the same for the same bytes, and Debug shows nothing else.
        let bytes = [7u8; KEY_LEN];
        let (a, b) = (
            SealingKey::from_bytes(&bytes).expect("a"),
            SealingKey::from_bytes(&bytes).expect("b"),
        );
        assert_eq!(a.id(), b.id());
        assert_eq!(a.id().len(), 16);
        assert_eq!(
            format!("{a:?}"),
            format!("SealingKey {{ id: {:?}, .. }}", a.id())
        );
    }
}
