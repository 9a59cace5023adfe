//! Types shared by several kinds: conditions, references, subjects, private keys, durations.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
pub use kube::core::Duration;

/// The API group of every certinext kind.
pub const GROUP: &str = "certinext.io";
/// The served and stored version of every certinext kind.
pub const VERSION: &str = "v1alpha1";
/// The category every kind belongs to: `kubectl get certinext` lists them all.
pub const CATEGORY: &str = "certinext";

/// A DNS-1123 label: a namespace or a Kubernetes object name that must be a label.
pub const DNS_LABEL_PATTERN: &str = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";
/// A DNS-1123 subdomain: the name of most Kubernetes objects, Secrets included.
pub const DNS_SUBDOMAIN_PATTERN: &str =
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";
/// A fully qualified domain name, lower case, without a wildcard: `example.com`.
pub const DOMAIN_PATTERN: &str =
    r"^([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\.)+[a-z]([-a-z0-9]{0,61}[a-z0-9])?$";
/// A DNS name for a certificate: a domain, optionally with a wildcard as its leftmost label.
pub const DNS_NAME_PATTERN: &str =
    r"^(\*\.)?([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\.)*[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$";
/// An ISO 3166-1 alpha-2 country code.
pub const COUNTRY_PATTERN: &str = "^[A-Z]{2}$";

/// The name of an object of a known kind in the same namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct LocalObjectReference {
    /// Name of the object.
    #[schemars(length(min = 1, max = 253), pattern(DNS_SUBDOMAIN_PATTERN))]
    pub name: String,
}

/// A reference to a Product: in the same namespace, or, for a sub-account, in a namespace of
/// its parent reseller (whose price list then sets the price).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ProductReference {
    /// Name of the Product.
    #[schemars(length(min = 1, max = 253), pattern(DNS_SUBDOMAIN_PATTERN))]
    pub name: String,
    /// Namespace of the Product; defaults to the namespace of the referring object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63), pattern(DNS_LABEL_PATTERN))]
    pub namespace: Option<String>,
}

/// The kinds that can issue certificates.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum IssuerKind {
    /// A certinext PrivateCA.
    #[default]
    PrivateCA,
}

/// A reference to an issuer: a PrivateCA in the same namespace, or, for the products of a
/// sub-account, in a namespace of its parent reseller.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IssuerReference {
    /// Kind of the issuer.
    #[serde(default)]
    pub kind: IssuerKind,
    /// Name of the issuer.
    #[schemars(length(min = 1, max = 253), pattern(DNS_SUBDOMAIN_PATTERN))]
    pub name: String,
    /// Namespace of the issuer; defaults to the namespace of the referring object. Only a
    /// namespace of the same account, or of the parent reseller of a sub-account, resolves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63), pattern(DNS_LABEL_PATTERN))]
    pub namespace: Option<String>,
}

/// Distinguished-name attributes of a certificate subject, besides the common name.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct X509Subject {
    /// Organizations (O).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8), inner(length(min = 1, max = 64)))]
    pub organizations: Vec<String>,
    /// Organizational units (OU).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8), inner(length(min = 1, max = 64)))]
    pub organizational_units: Vec<String>,
    /// Countries (C), as ISO 3166-1 alpha-2 codes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8), inner(pattern(COUNTRY_PATTERN)))]
    pub countries: Vec<String>,
    /// States or provinces (ST).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8), inner(length(min = 1, max = 128)))]
    pub provinces: Vec<String>,
    /// Localities or cities (L).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8), inner(length(min = 1, max = 128)))]
    pub localities: Vec<String>,
    /// Street addresses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8), inner(length(min = 1, max = 128)))]
    pub street_addresses: Vec<String>,
    /// Postal codes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8), inner(length(min = 1, max = 40)))]
    pub postal_codes: Vec<String>,
    /// Serial number attribute of the subject (not the certificate's serial number).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    pub serial_number: Option<String>,
}

/// The family of a private key.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum PrivateKeyAlgorithm {
    /// RSA, 2048, 3072 or 4096 bits (default 2048).
    #[serde(rename = "RSA")]
    Rsa,
    /// ECDSA on P-256 or P-384 (default 256).
    #[default]
    #[serde(rename = "ECDSA")]
    Ecdsa,
    /// Ed25519; takes no size.
    Ed25519,
}

/// A key algorithm and size as one value, the unit of a product's allowed key algorithms.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum KeyAlgorithm {
    #[serde(rename = "ECDSA-P256")]
    EcdsaP256,
    #[serde(rename = "ECDSA-P384")]
    EcdsaP384,
    Ed25519,
    #[serde(rename = "RSA-2048")]
    Rsa2048,
    #[serde(rename = "RSA-3072")]
    Rsa3072,
    #[serde(rename = "RSA-4096")]
    Rsa4096,
}

/// How a private key is encoded in `tls.key`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum PrivateKeyEncoding {
    /// PKCS#1 for RSA keys (`RSA PRIVATE KEY`), SEC 1 for ECDSA keys (`EC PRIVATE KEY`);
    /// Ed25519 keys are always PKCS#8.
    #[default]
    #[serde(rename = "PKCS1")]
    Pkcs1,
    /// PKCS#8 (`PRIVATE KEY`) for every algorithm.
    #[serde(rename = "PKCS8")]
    Pkcs8,
}

/// Whether a renewal generates a new private key.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum RotationPolicy {
    /// Every issuance gets a new key.
    #[default]
    Always,
    /// Keep the existing key as long as it matches the requested algorithm and size.
    Never,
}

/// The private key of a certificate or CA.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("!has(self.size) || self.algorithm != 'Ed25519'").message("size must not be set for Ed25519 keys").field_path(".size"),
    validation = Rule::new("!has(self.size) || self.algorithm != 'RSA' || self.size in [2048, 3072, 4096]").message("RSA keys are 2048, 3072 or 4096 bits").field_path(".size"),
    validation = Rule::new("!has(self.size) || self.algorithm != 'ECDSA' || self.size in [256, 384]").message("ECDSA keys are 256 (P-256) or 384 (P-384) bits").field_path(".size"),
)]
pub struct PrivateKey {
    /// Key algorithm: RSA, ECDSA or Ed25519.
    #[serde(default)]
    pub algorithm: PrivateKeyAlgorithm,
    /// Key size in bits: 2048, 3072 or 4096 for RSA (default 2048); 256 or 384 for ECDSA
    /// (default 256); not set for Ed25519.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u32>,
    /// Encoding of `tls.key`: PKCS1 (default) or PKCS8.
    #[serde(default)]
    pub encoding: PrivateKeyEncoding,
    /// Always (default for certificates) generates a new key on every issuance; Never keeps
    /// the current key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation_policy: Option<RotationPolicy>,
}

impl PrivateKey {
    /// The algorithm and size as one value, applying the defaults. `None` when the size does
    /// not exist for the algorithm (the schema refuses such keys; this guards the rest).
    pub fn key_algorithm(&self) -> Option<KeyAlgorithm> {
        match (self.algorithm, self.size) {
            (PrivateKeyAlgorithm::Ecdsa, None | Some(256)) => Some(KeyAlgorithm::EcdsaP256),
            (PrivateKeyAlgorithm::Ecdsa, Some(384)) => Some(KeyAlgorithm::EcdsaP384),
            (PrivateKeyAlgorithm::Rsa, None | Some(2048)) => Some(KeyAlgorithm::Rsa2048),
            (PrivateKeyAlgorithm::Rsa, Some(3072)) => Some(KeyAlgorithm::Rsa3072),
            (PrivateKeyAlgorithm::Rsa, Some(4096)) => Some(KeyAlgorithm::Rsa4096),
            (PrivateKeyAlgorithm::Ed25519, None) => Some(KeyAlgorithm::Ed25519),
            _ => None,
        }
    }
}

/// Who decides whether an order proceeds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ApprovalPolicy {
    /// Orders proceed without a person approving them.
    #[default]
    Automatic,
    /// Orders wait in PendingApproval until an authorised user approves or denies them.
    Manual,
}

/// Labels and annotations copied onto a generated Secret.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SecretTemplate {
    /// Annotations to add to the Secret.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub annotations: std::collections::BTreeMap<String, String>,
    /// Labels to add to the Secret.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub labels: std::collections::BTreeMap<String, String>,
}

/// A domain an account may certify.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Domain {
    /// The domain, lower case, without a wildcard: `example.com`.
    #[schemars(length(min = 1, max = 253), pattern(DOMAIN_PATTERN))]
    pub name: String,
    /// Whether names below the domain (`www.example.com`, `*.example.com`) are covered too.
    /// Defaults to true.
    #[serde(default = "default_true")]
    pub include_subdomains: bool,
}

/// An organization an account may name in certificate subjects.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Organization {
    /// Legal name of the organization, as it appears in the subject's O attribute.
    #[schemars(length(min = 1, max = 64))]
    pub name: String,
    /// Country of registration, as an ISO 3166-1 alpha-2 code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(COUNTRY_PATTERN))]
    pub country: Option<String>,
    /// State or province.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128))]
    pub province: Option<String>,
    /// Locality or city.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128))]
    pub locality: Option<String>,
}

pub(crate) fn default_true() -> bool {
    true
}

/// An amount of money, written in `status` by the operator.
pub use crate::billing::Money;

/// Timestamps in status use the Kubernetes `Time` (RFC 3339, seconds).
pub type Timestamp = Time;

// The CEL rule and merge-strategy types the schema derive expects in scope.
pub use kube::core::{ListMerge, Rule};
