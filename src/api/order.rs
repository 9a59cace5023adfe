//! `Order`: one issuance, its charge, its approval and its audit record.

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::certificate::KeyUsage;
use super::common::*;

/// One issuance of a Certificate revision, created by the operator as
/// `<certificate>-<revision>`: the CSR, the product and price, the payer, the approval, the
/// charge and the issued certificate. The ledger entry and the audit record at once.
#[derive(CustomResource, KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "certinext.io",
    version = "v1alpha1",
    kind = "Order",
    plural = "orders",
    shortname = "ord",
    category = "certinext",
    namespaced,
    status = "OrderStatus",
    derive = "PartialEq",
    doc = "One issuance of a Certificate revision: CSR, product, price, payer, approval, charge and the issued certificate.",
    printcolumn(name = "State", type_ = "string", json_path = ".status.state"),
    printcolumn(name = "Type", type_ = "string", json_path = ".spec.type"),
    printcolumn(name = "Price", type_ = "string", json_path = ".status.price"),
    printcolumn(
        name = "Payer",
        type_ = "string",
        json_path = ".status.payer.name",
        priority = 1
    ),
    printcolumn(
        name = "Certificate",
        type_ = "string",
        json_path = ".spec.certificateRef.name"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("self.request == oldSelf.request").message("request is immutable: a new CSR is a new Order").field_path(".request"),
    validation = Rule::new("self.certificateRef == oldSelf.certificateRef && self.revision == oldSelf.revision").message("certificateRef and revision are immutable"),
    validation = Rule::new("!has(oldSelf.approval) || (has(self.approval) && self.approval == oldSelf.approval)").message("an approval or denial, once recorded, is final").field_path(".approval"),
    validation = Rule::new("has(self.sealedKey) == has(oldSelf.sealedKey) && (!has(self.sealedKey) || self.sealedKey == oldSelf.sealedKey)").message("sealedKey is immutable").field_path(".sealedKey"),
)]
pub struct OrderSpec {
    /// The Certificate this order issues.
    pub certificate_ref: LocalObjectReference,

    /// The Certificate revision this order issues.
    #[schemars(range(min = 1))]
    pub revision: i64,

    /// Purchase for a first issuance, Renewal for the ones after it.
    #[serde(rename = "type")]
    pub order_type: OrderType,

    /// The PEM-encoded PKCS#10 certificate signing request. Immutable.
    #[schemars(length(min = 1, max = 65536))]
    pub request: String,

    /// The Product ordered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product_ref: Option<ProductReference>,

    /// The issuer, when the Certificate names one instead of a product.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer_ref: Option<IssuerReference>,

    /// The Group that pays; the account wallet when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_ref: Option<LocalObjectReference>,

    /// Requested lifetime; clipped to the product's maximum validity and the CA's expiry.
    pub duration: Duration,

    /// Key usages and extended key usages requested.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 24))]
    pub usages: Vec<KeyUsage>,

    /// The approval or denial, recorded by `certinext approve` or `certinext deny`. Final once
    /// set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<Approval>,

    /// The private key of `request`, sealed (AES-256-GCM-SIV) under a key only the operator
    /// holds: set by the Certificate controller on the Orders it makes, so that the key of an
    /// Order in flight outlives a restart of the operator. Opaque to everyone else; immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16384))]
    pub sealed_key: Option<String>,
}

/// Whether an order is a first issuance or a renewal; the ledger records it as its
/// transaction type.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum OrderType {
    /// The first issuance of a Certificate (ledger: PURCHASE).
    #[default]
    Purchase,
    /// A later issuance of the same Certificate (ledger: RENEWAL).
    Renewal,
}

/// An approver's decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum Decision {
    /// The order may proceed.
    Approved,
    /// The order must not proceed; it ends Denied, uncharged.
    Denied,
}

/// Who decided an order's fate, when and why.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Approval {
    /// Approved or Denied.
    pub decision: Decision,
    /// The user who decided.
    #[schemars(length(min = 1, max = 253))]
    pub decided_by: String,
    /// When they decided.
    pub decided_at: Timestamp,
    /// Why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub reason: Option<String>,
}

/// Where an order is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum OrderState {
    /// Waiting for an authorised user to approve or deny it.
    PendingApproval,
    /// Approved (or auto-approved) and charged; issuance in progress. An order whose CA
    /// signs at once is charged and issued in one write, from its approval straight to Issued.
    Approved,
    /// The certificate was issued.
    Issued,
    /// An approver denied it; never charged.
    Denied,
    /// Refused by policy: capability, domain, product or funds; never charged.
    Rejected,
    /// Issuance failed; a charge made before was refunded.
    Failed,
    /// Superseded before issuance; any charge was refunded.
    Cancelled,
}

impl OrderState {
    /// The state's name, as the API writes it.
    pub const fn as_str(self) -> &'static str {
        match self {
            OrderState::PendingApproval => "PendingApproval",
            OrderState::Approved => "Approved",
            OrderState::Issued => "Issued",
            OrderState::Denied => "Denied",
            OrderState::Rejected => "Rejected",
            OrderState::Failed => "Failed",
            OrderState::Cancelled => "Cancelled",
        }
    }

    /// Whether the order's life is over: it is never acted on again.
    pub const fn is_terminal(self) -> bool {
        !matches!(self, OrderState::PendingApproval | OrderState::Approved)
    }
}

impl std::fmt::Display for OrderState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who pays for an order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum PayerKind {
    /// A Group's allocation.
    Group,
    /// An Account's wallet.
    Account,
}

/// The wallet an order is charged to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Payer {
    /// Group or Account.
    pub kind: PayerKind,
    /// Name of the group or account.
    pub name: String,
    /// Namespace of a group payer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// A ledger transaction type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TransactionType {
    Purchase,
    Renewal,
    Refund,
}

/// A movement of money recorded on an order: the charge, and its refund if any.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Transaction {
    /// PURCHASE, RENEWAL or REFUND.
    #[serde(rename = "type")]
    pub transaction_type: TransactionType,
    /// Amount moved, in the payer's currency.
    pub amount: Money,
    /// When it was recorded.
    pub at: Timestamp,
    /// Why, for a refund.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The observed state of an order.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderStatus {
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready is True once issued; other conditions explain a refusal or failure.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// PendingApproval, Approved, Issued, Denied, Rejected, Failed or Cancelled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<OrderState>,
    /// The price of the order, from the price list or the product.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price: Option<Money>,
    /// Currency of the price.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    /// The wallet charged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payer: Option<Payer>,
    /// The charge and any refund, in order. An order is charged at most once.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 2))]
    pub transactions: Vec<Transaction>,
    /// The issued certificate chain, PEM: leaf then intermediates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<String>,
    /// The root CA certificate, PEM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<String>,
    /// Serial number of the issued certificate, in hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial_number: Option<String>,
    /// Start of the issued certificate's validity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<Timestamp>,
    /// End of the issued certificate's validity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_after: Option<Timestamp>,
}
