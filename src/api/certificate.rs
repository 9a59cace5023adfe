//! `Certificate`: what a workload needs, issued and renewed into a `kubernetes.io/tls` Secret.

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::*;

/// A certificate a workload needs. The operator orders it from a product (or issuer), charges
/// the group or account, writes it to a `kubernetes.io/tls` Secret in cert-manager's layout,
/// and renews it before it expires.
#[derive(CustomResource, KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "certinext.io",
    version = "v1alpha1",
    kind = "Certificate",
    plural = "certificates",
    shortname = "cncert",
    category = "certinext",
    namespaced,
    status = "CertificateStatus",
    derive = "PartialEq",
    doc = "A certificate issued and renewed into a kubernetes.io/tls Secret, ordered from a Product (or issuer) and charged to a group or account wallet.",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(name = "Secret", type_ = "string", json_path = ".spec.secretName"),
    printcolumn(
        name = "Product",
        type_ = "string",
        json_path = ".spec.productRef.name"
    ),
    printcolumn(
        name = "Issuer",
        type_ = "string",
        json_path = ".spec.issuerRef.name",
        priority = 1
    ),
    printcolumn(
        name = "Group",
        type_ = "string",
        json_path = ".spec.groupRef.name",
        priority = 1
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
    validation = Rule::new("has(self.productRef) != has(self.issuerRef)").message("set exactly one of productRef and issuerRef"),
    validation = Rule::new("has(self.commonName) || (has(self.dnsNames) && size(self.dnsNames) > 0) || (has(self.ipAddresses) && size(self.ipAddresses) > 0) || (has(self.uris) && size(self.uris) > 0) || (has(self.emailAddresses) && size(self.emailAddresses) > 0)").message("set at least one identity: commonName, dnsNames, ipAddresses, uris or emailAddresses"),
    validation = Rule::new("!(has(self.renewBefore) && has(self.renewBeforePercentage))").message("set at most one of renewBefore and renewBeforePercentage"),
    validation = Rule::new("!has(self.renewBefore) || duration(self.renewBefore) < duration(self.duration)").message("renewBefore must be shorter than duration").field_path(".renewBefore"),
)]
pub struct CertificateSpec {
    /// Name of the Secret to write: type `kubernetes.io/tls` with `tls.crt` (leaf then
    /// intermediates), `tls.key` and `ca.crt` (the root).
    #[schemars(length(min = 1, max = 253), pattern(DNS_SUBDOMAIN_PATTERN))]
    pub secret_name: String,

    /// Labels and annotations to put on the Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_template: Option<SecretTemplate>,

    /// The Product to order from; its CA issues the certificate and its price is charged. A
    /// sub-account may order its reseller's products by naming the reseller's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product_ref: Option<ProductReference>,

    /// An issuer to use directly instead of a product (no template limits, no price).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer_ref: Option<IssuerReference>,

    /// The Group that pays and whose approval policy applies; the account wallet when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_ref: Option<LocalObjectReference>,

    /// Common name (CN) of the subject. Prefer dnsNames: clients ignore the CN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    pub common_name: Option<String>,

    /// DNS subject alternative names; a leftmost `*` label makes a wildcard.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = 100),
        inner(length(min = 1, max = 253), pattern(DNS_NAME_PATTERN))
    )]
    #[x_kube(merge_strategy = ListMerge::Set)]
    pub dns_names: Vec<String>,

    /// IP address subject alternative names, IPv4 or IPv6.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100), inner(length(min = 1, max = 45)))]
    #[x_kube(merge_strategy = ListMerge::Set, validation = Rule::new("self.all(ip, isIP(ip))").message("every ipAddresses entry must be an IPv4 or IPv6 address"))]
    pub ip_addresses: Vec<String>,

    /// URI subject alternative names, such as SPIFFE IDs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100), inner(length(min = 1, max = 2048)))]
    #[x_kube(merge_strategy = ListMerge::Set, validation = Rule::new("self.all(u, isURL(u))").message("every uris entry must be an absolute URI"))]
    pub uris: Vec<String>,

    /// Email subject alternative names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100), inner(email, length(min = 3, max = 254)))]
    #[x_kube(merge_strategy = ListMerge::Set)]
    pub email_addresses: Vec<String>,

    /// Other subject attributes; organizations must be among the account's organizations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<X509Subject>,

    /// Requested lifetime, a Go duration; clipped to the product's maximum validity and the
    /// CA's expiry. Defaults to 2160h (90 days).
    #[serde(default = "default_duration")]
    #[schemars(extend("default" = "2160h"))]
    #[x_kube(validation = Rule::new("duration(self) >= duration('1h')").message("duration must be at least 1h"))]
    pub duration: Duration,

    /// How long before expiry to renew. Mutually exclusive with renewBeforePercentage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renew_before: Option<Duration>,

    /// When to renew, as the percentage of the issued lifetime left at renewal.
    /// Mutually exclusive with renewBefore. Without either, renewal starts when one third of
    /// the lifetime remains.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 99))]
    pub renew_before_percentage: Option<i32>,

    /// The private key: algorithm and size, encoding, and rotation on renewal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key: Option<PrivateKey>,

    /// Key usages and extended key usages, as cert-manager names them; the product template's
    /// usages when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 24))]
    #[x_kube(merge_strategy = ListMerge::Set)]
    pub usages: Vec<KeyUsage>,

    /// How many past Orders to keep once the certificate is Ready. Defaults to 3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100))]
    pub revision_history_limit: Option<i32>,
}

fn default_duration() -> Duration {
    std::time::Duration::from_secs(2160 * 3600).into()
}

/// A key usage or extended key usage, named as cert-manager names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum KeyUsage {
    Signing,
    #[serde(rename = "digital signature")]
    DigitalSignature,
    #[serde(rename = "content commitment")]
    ContentCommitment,
    #[serde(rename = "key encipherment")]
    KeyEncipherment,
    #[serde(rename = "key agreement")]
    KeyAgreement,
    #[serde(rename = "data encipherment")]
    DataEncipherment,
    #[serde(rename = "cert sign")]
    CertSign,
    #[serde(rename = "crl sign")]
    CrlSign,
    #[serde(rename = "encipher only")]
    EncipherOnly,
    #[serde(rename = "decipher only")]
    DecipherOnly,
    Any,
    #[serde(rename = "server auth")]
    ServerAuth,
    #[serde(rename = "client auth")]
    ClientAuth,
    #[serde(rename = "code signing")]
    CodeSigning,
    #[serde(rename = "email protection")]
    EmailProtection,
    #[serde(rename = "s/mime")]
    Smime,
    #[serde(rename = "ipsec end system")]
    IpsecEndSystem,
    #[serde(rename = "ipsec tunnel")]
    IpsecTunnel,
    #[serde(rename = "ipsec user")]
    IpsecUser,
    Timestamping,
    #[serde(rename = "ocsp signing")]
    OcspSigning,
    #[serde(rename = "microsoft sgc")]
    MicrosoftSgc,
    #[serde(rename = "netscape sgc")]
    NetscapeSgc,
}

/// The observed state of a certificate.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct CertificateStatus {
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready says whether the Secret holds a valid certificate for the current spec; Issuing
    /// says an order is in progress and why, once the Order has waited two seconds (one
    /// issued sooner takes the Certificate straight to its next state).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// Number of the current issuance; each issuance creates Order `<name>-<revision>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<i64>,
    /// Start of the current certificate's validity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<Timestamp>,
    /// End of the current certificate's validity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_after: Option<Timestamp>,
    /// When the operator will renew the certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renewal_time: Option<Timestamp>,
    /// Serial number of the current certificate, in hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial_number: Option<String>,
    /// The Order in progress, if any, once it has waited two seconds (as Issuing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_order: Option<String>,
    /// Consecutive failed issuances; reset by a success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_issuance_attempts: Option<i32>,
    /// When the last issuance failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failure_time: Option<Timestamp>,
}
