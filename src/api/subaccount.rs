//! `SubAccount`: a reseller's customer, backed by a child `Account`.

use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::common::*;
use crate::capabilities::AccountType;

/// A reseller's customer. The operator creates and owns a child Account of type Enterprise or
/// Retail with these namespaces and domains, prices its orders with the price list, and funds
/// it from the reseller's wallet.
#[derive(CustomResource, KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "certinext.io",
    version = "v1alpha1",
    kind = "SubAccount",
    plural = "subaccounts",
    shortname = "subacct",
    category = "certinext",
    namespaced,
    status = "SubAccountStatus",
    derive = "PartialEq",
    doc = "A reseller's customer: the operator creates and owns a child Account of type Enterprise or Retail, priced by a PriceList and funded from the reseller's wallet.",
    printcolumn(name = "Type", type_ = "string", json_path = ".spec.type"),
    printcolumn(name = "Account", type_ = "string", json_path = ".status.account"),
    printcolumn(
        name = "Price List",
        type_ = "string",
        json_path = ".spec.priceListRef.name"
    ),
    printcolumn(name = "Funds", type_ = "string", json_path = ".spec.funds"),
    printcolumn(name = "Balance", type_ = "string", json_path = ".status.balance"),
    printcolumn(
        name = "Approval",
        type_ = "string",
        json_path = ".spec.orderApproval",
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
#[x_kube(
    validation = Rule::new("self.type != 'Reseller'").message("a sub-account is Enterprise or Retail: sub-accounts do not nest").field_path(".type"),
    validation = Rule::new("self.type == oldSelf.type").message("type is immutable").field_path(".type"),
    validation = Rule::new("has(self.accountName) == has(oldSelf.accountName) && (!has(self.accountName) || self.accountName == oldSelf.accountName)").message("accountName is immutable").field_path(".accountName"),
)]
pub struct SubAccountSpec {
    /// Type of the child account: Enterprise or Retail. Immutable.
    #[serde(rename = "type")]
    pub account_type: AccountType,

    /// Name of the child Account. Defaults to `<reseller account>-<sub-account name>`.
    /// Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63), pattern(DNS_LABEL_PATTERN))]
    pub account_name: Option<String>,

    /// Human-readable name of the customer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 128))]
    pub display_name: Option<String>,

    /// Namespaces the child account owns.
    #[schemars(
        length(min = 1, max = 64),
        inner(length(min = 1, max = 63), pattern(DNS_LABEL_PATTERN))
    )]
    #[x_kube(merge_strategy = ListMerge::Set)]
    pub namespaces: Vec<String>,

    /// Domains the child account may certify.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 500))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    pub domains: Vec<Domain>,

    /// Organizations the child account may name in certificate subjects.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    pub organizations: Vec<Organization>,

    /// The PriceList (in this namespace) that prices the child account's orders. Without
    /// one, orders cost the product's base price.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price_list_ref: Option<LocalObjectReference>,

    /// Funds moved from the reseller's wallet to the child account's wallet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub funds: Option<Money>,

    /// Manual: the child account's orders wait until an admin of the reseller approves them.
    /// Defaults to Automatic.
    #[serde(default)]
    pub order_approval: ApprovalPolicy,
}

/// The observed state of a sub-account.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct SubAccountStatus {
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready says whether the sub-account and its Account are in force.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// Name of the child Account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// Funds in force: the allocation the reseller's wallet granted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allocated: Option<Money>,
    /// Charges of the child account's orders, net of refunds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spent: Option<Money>,
    /// What remains in the child account's wallet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::billing::money::signed_schema_optional")]
    pub balance: Option<Money>,
}
