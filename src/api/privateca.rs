//! `PrivateCA`: a root or intermediate certificate authority.

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::*;

/// A private certificate authority: self-signed root, or intermediate signed by another
/// PrivateCA. Its key pair lives in a Secret the operator owns.
#[derive(CustomResource, KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "certinext.io",
    version = "v1alpha1",
    kind = "PrivateCA",
    plural = "privatecas",
    singular = "privateca",
    shortname = "pca",
    category = "certinext",
    namespaced,
    status = "PrivateCAStatus",
    derive = "PartialEq",
    doc = "A private certificate authority, root or intermediate, with its key pair in a Secret.",
    printcolumn(
        name = "Common Name",
        type_ = "string",
        json_path = ".spec.subject.commonName"
    ),
    printcolumn(name = "Parent", type_ = "string", json_path = ".spec.parentRef.name"),
    printcolumn(
        name = "Key",
        type_ = "string",
        json_path = ".spec.privateKey.algorithm",
        priority = 1
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(name = "Expires", type_ = "string", json_path = ".status.notAfter"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("!(has(self.renewBefore) && has(self.renewBeforePercentage))").message("set at most one of renewBefore and renewBeforePercentage"),
    validation = Rule::new("has(self.parentRef) == has(oldSelf.parentRef) && (!has(self.parentRef) || self.parentRef == oldSelf.parentRef)").message("parentRef is immutable: create a new PrivateCA to move it").field_path(".parentRef"),
    validation = Rule::new("!has(self.renewBefore) || duration(self.renewBefore) < duration(self.duration)").message("renewBefore must be shorter than duration").field_path(".renewBefore"),
)]
pub struct PrivateCASpec {
    /// The CA's subject.
    pub subject: CASubject,

    /// The CA's key pair. Defaults to ECDSA P-256; renewal keeps the key unless
    /// `rotationPolicy` is Always.
    #[serde(default)]
    pub private_key: PrivateKey,

    /// The parent CA of an intermediate: a PrivateCA of the same account, or of the parent
    /// reseller for a sub-account. A root CA when unset. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_ref: Option<IssuerReference>,

    /// Lifetime of the CA certificate, a Go duration. Defaults to 87600h (ten years).
    #[serde(default = "default_ca_duration")]
    #[schemars(extend("default" = "87600h"))]
    #[x_kube(validation = Rule::new("duration(self) >= duration('1h')").message("duration must be at least 1h"))]
    pub duration: Duration,

    /// How long before expiry to renew the CA certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renew_before: Option<Duration>,

    /// When to renew, as a percentage of the lifetime remaining (default: one third).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 99))]
    pub renew_before_percentage: Option<i32>,

    /// The maximum number of intermediate CAs below this one (basic constraints pathLen).
    /// Unlimited when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 8))]
    pub path_length: Option<u8>,

    /// DNS name constraints on every certificate below this CA.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name_constraints: Option<NameConstraints>,

    /// Name of the Secret holding the CA's key pair (`tls.crt`, `tls.key`, `ca.crt`).
    /// Defaults to `<name>-ca`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), pattern(DNS_SUBDOMAIN_PATTERN))]
    pub secret_name: Option<String>,
}

fn default_ca_duration() -> Duration {
    std::time::Duration::from_secs(87_600 * 3600).into()
}

/// The subject of a CA certificate.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CASubject {
    /// Common name (CN) of the CA.
    #[schemars(length(min = 1, max = 64))]
    pub common_name: String,
    /// Other distinguished-name attributes.
    #[serde(flatten)]
    pub rest: X509Subject,
}

/// DNS name constraints, as in RFC 5280 §4.2.1.10.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.permitted) || has(self.excluded)").message("set permitted or excluded"))]
pub struct NameConstraints {
    /// Whether the extension is marked critical. Defaults to true.
    #[serde(default = "default_true")]
    pub critical: bool,
    /// Names certificates below the CA may use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permitted: Option<NameConstraintItems>,
    /// Names certificates below the CA may not use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub excluded: Option<NameConstraintItems>,
}

/// A set of DNS domains in a name constraint.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NameConstraintItems {
    /// DNS domains; each covers its subdomains.
    #[schemars(
        length(min = 1, max = 64),
        inner(length(min = 1, max = 253), pattern(DOMAIN_PATTERN))
    )]
    pub dns_domains: Vec<String>,
}

/// The observed state of a private CA.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct PrivateCAStatus {
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready says whether the CA can issue; other conditions explain why not.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// Start of the CA certificate's validity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<Timestamp>,
    /// End of the CA certificate's validity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_after: Option<Timestamp>,
    /// When the operator will renew the CA certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renewal_time: Option<Timestamp>,
    /// Serial number of the CA certificate, in hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial_number: Option<String>,
    /// SHA-256 fingerprint of the CA certificate, in hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint_sha256: Option<String>,
    /// Number of CAs above this one: 0 for a root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain_depth: Option<i32>,
    /// The Secret that holds the key pair.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_name: Option<String>,
}
