//! `Product`: a customised certificate product.

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::*;

/// A certificate product: which CA issues it, for what use (template), for how long at most,
/// with which keys and names, at what base price, and whether orders are approved
/// automatically.
#[derive(CustomResource, KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "certinext.io",
    version = "v1alpha1",
    kind = "Product",
    plural = "products",
    shortname = "prod",
    category = "certinext",
    namespaced,
    status = "ProductStatus",
    derive = "PartialEq",
    doc = "A certificate product: its issuing CA, template, maximum validity, allowed keys and domains, base price and approval.",
    printcolumn(name = "Template", type_ = "string", json_path = ".spec.template"),
    printcolumn(name = "Issuer", type_ = "string", json_path = ".spec.issuerRef.name"),
    printcolumn(name = "Price", type_ = "string", json_path = ".spec.price"),
    printcolumn(
        name = "Max Validity",
        type_ = "string",
        json_path = ".spec.maxValidity",
        priority = 1
    ),
    printcolumn(
        name = "Auto-Approve",
        type_ = "boolean",
        json_path = ".spec.autoApprove"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct ProductSpec {
    /// Human-readable name shown in orders and reports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 128))]
    pub display_name: Option<String>,

    /// The CA that issues the product's certificates: a PrivateCA of the same account, or of
    /// the parent reseller for a sub-account.
    pub issuer_ref: IssuerReference,

    /// What the certificates are for; decides key usages and extended key usages.
    pub template: CertificateTemplate,

    /// The longest validity a certificate of this product gets; longer requests are clipped.
    /// A Go duration such as `8760h`. Defaults to 8760h (one year).
    #[serde(default = "default_max_validity")]
    #[schemars(extend("default" = "8760h"))]
    #[x_kube(validation = Rule::new("duration(self) >= duration('1h')").message("maxValidity must be at least 1h"))]
    pub max_validity: Duration,

    /// Key algorithms certificates of this product may use; any when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 6))]
    #[x_kube(merge_strategy = ListMerge::Set)]
    pub allowed_key_algorithms: Vec<KeyAlgorithm>,

    /// Domains certificates of this product may name (each covering its subdomains); the
    /// account's domains when empty. Always within the account's domains.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = 100),
        inner(length(min = 1, max = 253), pattern(DOMAIN_PATTERN))
    )]
    #[x_kube(merge_strategy = ListMerge::Set)]
    pub allowed_domains: Vec<String>,

    /// Base price per order, in the account's currency: `"25.00"`. A sub-account with a
    /// price list pays the list's price instead.
    pub price: Money,

    /// Whether orders for this product proceed without approval. Defaults to true; groups and
    /// accounts may still require approval.
    #[serde(default = "default_true")]
    pub auto_approve: bool,
}

fn default_max_validity() -> Duration {
    std::time::Duration::from_secs(8760 * 3600).into()
}

/// The use a product's certificates are made for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum CertificateTemplate {
    /// TLS servers: digital signature, key encipherment (RSA); server auth.
    #[default]
    #[serde(rename = "ServerTLS")]
    ServerTls,
    /// TLS clients: digital signature; client auth.
    #[serde(rename = "ClientTLS")]
    ClientTls,
    /// Both ends of mutual TLS: digital signature, key encipherment (RSA); server and client auth.
    #[serde(rename = "MutualTLS")]
    MutualTls,
    /// S/MIME: digital signature, key encipherment (RSA); email protection.
    EmailProtection,
}

/// The observed state of a product.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProductStatus {
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready says whether the product can be ordered; other conditions explain why not.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// The account the product belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// The resolved issuer, as `namespace/name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
}
