//! `Account`: a tenant of the platform.

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::*;
use crate::billing::CURRENCY_PATTERN;
use crate::capabilities::{AccountType, Capability, Scope};

/// A tenant: its type (Reseller, Enterprise or Retail) decides what it may do. It owns
/// namespaces, holds a prepaid wallet, and declares the organizations and domains it may certify.
#[derive(CustomResource, KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "certinext.io",
    version = "v1alpha1",
    kind = "Account",
    plural = "accounts",
    shortname = "acct",
    category = "certinext",
    status = "AccountStatus",
    derive = "PartialEq",
    doc = "A tenant of the certificate platform: a Reseller, Enterprise or Retail account with its namespaces, wallet, organizations and domains.",
    printcolumn(name = "Type", type_ = "string", json_path = ".spec.type"),
    printcolumn(name = "Parent", type_ = "string", json_path = ".status.parent", priority = 1),
    printcolumn(name = "Balance", type_ = "string", json_path = ".status.wallet.balance"),
    printcolumn(name = "Currency", type_ = "string", json_path = ".spec.currency"),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = Rule::new("self.metadata.name.size() <= 63").message("an Account's name is at most 63 characters"),
)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("self.type == oldSelf.type").message("type is immutable: create a new Account to change it").field_path(".type"),
    validation = Rule::new("has(self.parent) == has(oldSelf.parent) && (!has(self.parent) || self.parent == oldSelf.parent)").message("parent is immutable").field_path(".parent"),
    validation = Rule::new("!has(self.parent) || self.type != 'Reseller'").message("a sub-account is Enterprise or Retail: sub-accounts do not nest").field_path(".type"),
)]
pub struct AccountSpec {
    /// Reseller, Enterprise or Retail. Decides the account's capabilities; immutable.
    #[serde(rename = "type")]
    pub account_type: AccountType,

    /// Human-readable name shown in reports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 128))]
    pub display_name: Option<String>,

    /// Namespaces the account owns. Objects in them belong to the account. A namespace
    /// belongs to at most one account: the one created first keeps it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = 64),
        inner(length(min = 1, max = 63), pattern(DNS_LABEL_PATTERN))
    )]
    #[x_kube(merge_strategy = ListMerge::Set)]
    pub namespaces: Vec<String>,

    /// ISO 4217 currency of the wallet and of every price the account pays. Defaults to USD.
    #[serde(default = "default_currency")]
    #[schemars(pattern(CURRENCY_PATTERN))]
    pub currency: String,

    /// Funds credited to the wallet: an append-only record of payments received. Removing a
    /// credit that leaves the wallet overdrawn blocks new allocations and orders.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 1000))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["id".into()]))]
    pub credits: Vec<Credit>,

    /// Organizations the account may name in certificate subjects.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    pub organizations: Vec<Organization>,

    /// Domains the account may certify. A certificate's DNS names must fall within them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 500))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    pub domains: Vec<Domain>,

    /// Whether the account's orders need approval by default (groups and products may ask
    /// for it too). Defaults to Automatic.
    #[serde(default)]
    pub order_approval: ApprovalPolicy,

    /// Where alerts are sent.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 20))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    pub notifications: Vec<NotificationSink>,

    /// For a sub-account: the reseller and SubAccount that own it. Set by the operator when
    /// a SubAccount creates the account; immutable. Ignored unless that SubAccount exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<AccountParent>,
}

fn default_currency() -> String {
    "USD".into()
}

/// A payment credited to an account's wallet.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Credit {
    /// Unique identifier of the credit, such as an invoice or payment reference.
    #[schemars(length(min = 1, max = 64))]
    pub id: String,
    /// Amount credited, in the account's currency: `"1250.00"`.
    pub amount: Money,
    /// What the credit is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub description: Option<String>,
    /// When the payment was received.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub received_at: Option<Timestamp>,
}

/// The owner of a sub-account.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccountParent {
    /// Name of the parent Reseller account.
    #[schemars(length(min = 1, max = 63), pattern(DNS_LABEL_PATTERN))]
    pub account: String,
    /// Namespace of the SubAccount that created this account.
    #[schemars(length(min = 1, max = 63), pattern(DNS_LABEL_PATTERN))]
    pub namespace: String,
    /// Name of the SubAccount that created this account.
    #[schemars(length(min = 1, max = 253), pattern(DNS_SUBDOMAIN_PATTERN))]
    pub sub_account: String,
}

/// Alerts the platform can send.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum NotificationEvent {
    /// An order waits for approval (order alert).
    OrderPendingApproval,
    /// A certificate was issued (order alert).
    OrderIssued,
    /// An order was denied, rejected or failed (order alert).
    OrderRefused,
    /// A certificate will expire soon (order alert).
    CertificateExpiring,
    /// A group's balance fell below its threshold (group alert; not for Retail accounts).
    GroupBalanceLow,
    /// A group's members changed (group alert; not for Retail accounts).
    GroupMembershipChanged,
}

/// A destination for alerts.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.webhook) != has(self.email)").message("set exactly one of webhook and email"))]
pub struct NotificationSink {
    /// Name of the sink, unique within the account; groups refer to it by this name.
    #[schemars(length(min = 1, max = 63), pattern(DNS_LABEL_PATTERN))]
    pub name: String,
    /// An HTTPS endpoint that receives each alert as a JSON POST.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<WebhookSink>,
    /// An email address that receives each alert.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(email, length(max = 254))]
    pub email: Option<String>,
    /// The alerts to send; all that the account's type allows when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub events: Vec<NotificationEvent>,
}

/// A webhook destination.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
pub struct WebhookSink {
    /// The endpoint, an https URL.
    #[schemars(length(min = 1, max = 2048))]
    #[x_kube(validation = Rule::new("isURL(self) && url(self).getScheme() == 'https'").message("webhook url must be an https URL"))]
    pub url: String,
}

/// The observed state of an account.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccountStatus {
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready says whether the account is in force; other conditions explain why not.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// What the account may do, resolved from its type.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub capabilities: Vec<GrantedCapability>,
    /// Namespaces the account holds (those it claims and no earlier account claimed first).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
    /// The wallet's figures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wallet: Option<Wallet>,
    /// For a sub-account: the name of the parent reseller account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
}

/// A capability an account has, and how much of it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct GrantedCapability {
    /// The capability.
    pub name: Capability,
    /// Full, or the limit that applies to this account's type.
    pub scope: Scope,
}

/// A wallet's figures, in the account's currency. `balance = credited - allocated - spent`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Wallet {
    /// Currency of every figure.
    pub currency: String,
    /// Sum of the credits, and for a sub-account the funds its reseller allocated to it.
    pub credited: Money,
    /// For a sub-account: the part of `credited` that the reseller's wallet allocated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub funded: Option<Money>,
    /// Sum of the funds allocated to groups and sub-accounts.
    pub allocated: Money,
    /// Sum of the charges of orders paid from the account wallet, net of refunds.
    pub spent: Money,
    /// What remains to allocate or spend; negative when credits were removed after use.
    #[schemars(schema_with = "crate::billing::money::signed_schema")]
    pub balance: Money,
}
