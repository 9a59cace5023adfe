//! `PriceList`: a reseller's prices for the products its sub-accounts order.

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::*;
use crate::billing::CURRENCY_PATTERN;

/// Prices per Product for the sub-accounts that reference this list. Reseller accounts only.
#[derive(CustomResource, KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "certinext.io",
    version = "v1alpha1",
    kind = "PriceList",
    plural = "pricelists",
    shortname = "pl",
    category = "certinext",
    namespaced,
    status = "PriceListStatus",
    derive = "PartialEq",
    doc = "A reseller's prices per Product for the sub-accounts that reference it.",
    printcolumn(name = "Currency", type_ = "string", json_path = ".spec.currency"),
    printcolumn(name = "Items", type_ = "integer", json_path = ".status.itemCount"),
    printcolumn(
        name = "Used By",
        type_ = "string",
        json_path = ".status.subAccounts",
        priority = 1
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
pub struct PriceListSpec {
    /// What the list is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub description: Option<String>,

    /// ISO 4217 currency of every price; must match the reseller account's currency.
    #[schemars(pattern(CURRENCY_PATTERN))]
    pub currency: String,

    /// One price per product.
    #[schemars(length(min = 1, max = 500))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["product".into()]))]
    pub items: Vec<PriceItem>,
}

/// The price of one product.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PriceItem {
    /// Name of a Product of the reseller, in this namespace.
    #[schemars(length(min = 1, max = 253), pattern(DNS_SUBDOMAIN_PATTERN))]
    pub product: String,
    /// Price per order: `"49.00"`.
    pub price: Money,
}

/// The observed state of a price list.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct PriceListStatus {
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready says whether the list is in force; other conditions explain why not.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// Number of items.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item_count: Option<i64>,
    /// SubAccounts that use this list.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sub_accounts: Vec<String>,
}
