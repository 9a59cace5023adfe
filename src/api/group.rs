//! `Group`: an organisational unit of an account, with members and funds.

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::*;

/// An organisational unit of an account: its members and their roles (rendered as
/// RoleBindings), a funds allocation from the account wallet, and an order approval policy.
#[derive(CustomResource, KubeSchema, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "certinext.io",
    version = "v1alpha1",
    kind = "Group",
    plural = "groups",
    shortname = "grp",
    category = "certinext",
    namespaced,
    status = "GroupStatus",
    derive = "PartialEq",
    doc = "An organisational unit of an account: members with roles, a funds allocation from the account wallet, and an order approval policy.",
    printcolumn(name = "Account", type_ = "string", json_path = ".status.account"),
    printcolumn(name = "Funds", type_ = "string", json_path = ".spec.funds"),
    printcolumn(name = "Balance", type_ = "string", json_path = ".status.balance"),
    printcolumn(
        name = "Certificates",
        type_ = "integer",
        json_path = ".status.certificates",
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
pub struct GroupSpec {
    /// Human-readable name shown in reports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 128))]
    pub display_name: Option<String>,

    /// Users, groups and service accounts with a role in this group's namespace.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256))]
    pub members: Vec<Member>,

    /// Funds allocated to the group from the account wallet, in the account's currency. The
    /// group's orders are charged to it. Needs the GroupFunding capability (not Retail).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub funds: Option<Money>,

    /// Whether the group's orders need approval; defaults to the account's policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_approval: Option<ApprovalPolicy>,

    /// Alerts about this group and its orders.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notifications: Option<GroupNotifications>,
}

/// The kind of a group member, as in a RoleBinding subject.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum MemberKind {
    /// A user, as the cluster authenticates them.
    #[default]
    User,
    /// A group of users, as the cluster authenticates them.
    Group,
    /// A Kubernetes ServiceAccount.
    ServiceAccount,
}

/// What a member may do in the group's namespace.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum Role {
    /// Manage everything in the namespace, and approve or deny orders.
    Admin,
    /// Request certificates and read what the namespace holds.
    Requester,
    /// Read only.
    #[default]
    Viewer,
}

/// A member of a group.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.__namespace__) || self.kind == 'ServiceAccount'").message("namespace is only for ServiceAccount members").field_path(".namespace"))]
pub struct Member {
    /// User, Group or ServiceAccount.
    #[serde(default)]
    pub kind: MemberKind,
    /// Name of the user, group or service account.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Namespace of a ServiceAccount member; defaults to the group's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63), pattern(DNS_LABEL_PATTERN))]
    pub namespace: Option<String>,
    /// Admin, Requester or Viewer.
    pub role: Role,
}

/// Where a group's alerts go.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GroupNotifications {
    /// Names of the account's notification sinks to use.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 20), inner(length(min = 1, max = 63)))]
    pub sinks: Vec<String>,
    /// The alerts to send; the sinks' own selection when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub events: Vec<super::account::NotificationEvent>,
}

/// The observed state of a group.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct GroupStatus {
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready says whether the group is in force; other conditions explain why not.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// The account the group belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// Funds in force: the allocation the account wallet granted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allocated: Option<Money>,
    /// Charges of the group's orders, net of refunds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spent: Option<Money>,
    /// What remains: allocated minus spent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::billing::money::signed_schema_optional")]
    pub balance: Option<Money>,
    /// Number of certificates charged to the group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificates: Option<i64>,
}
