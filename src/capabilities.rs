//! What each account type may do: the capability matrix, held as one table.
//!
//! Every controller asks [`check`] before acting on a capability-gated field, and every refusal
//! names the capability, the account and its type. Nothing here talks to Kubernetes.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The type of an account, fixed when the account is created.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
pub enum AccountType {
    /// SSL providers, hosting companies and other resellers: everything, including
    /// sub-accounts, price lists and public CAs.
    Reseller,
    /// Organisations running their own certificate infrastructure: groups with funds, private
    /// CAs and custom products, but no sub-accounts or price lists.
    Enterprise,
    /// Online customers: groups without funds of their own (finance is account-level), private
    /// CAs and custom products.
    Retail,
}

impl AccountType {
    pub const ALL: [AccountType; 3] = [Self::Reseller, Self::Enterprise, Self::Retail];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Reseller => "Reseller",
            Self::Enterprise => "Enterprise",
            Self::Retail => "Retail",
        }
    }

    const fn column(self) -> usize {
        match self {
            Self::Reseller => 0,
            Self::Enterprise => 1,
            Self::Retail => 2,
        }
    }
}

impl fmt::Display for AccountType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Something an account may or may not do, one row of the matrix.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
pub enum Capability {
    /// Create and edit groups.
    GroupManagement,
    /// Allocate funds from the account wallet to groups.
    GroupFunding,
    /// Manage group members and their roles.
    UserManagement,
    /// Create sub-accounts for customers.
    SubAccounts,
    /// Price products for sub-accounts.
    PriceLists,
    /// REST and ACME API keys.
    ApiKeys,
    /// Create private certificate authorities.
    PrivateCA,
    /// Issue from public certificate authorities.
    PublicCA,
    /// Define custom certificate products.
    CustomProducts,
    /// Wallets, allocations and the ledger.
    Finance,
    /// Approve the orders of sub-accounts.
    OrderPreApproval,
    /// Declare the organizations and domains the account may certify.
    OrganizationsAndDomains,
    /// Reports and metrics.
    Reports,
    /// Notification sinks for alerts.
    Notifications,
}

impl Capability {
    /// Every capability, in the order of the matrix.
    pub const ALL: [Capability; 14] = [
        Self::GroupManagement,
        Self::GroupFunding,
        Self::UserManagement,
        Self::SubAccounts,
        Self::PriceLists,
        Self::ApiKeys,
        Self::PrivateCA,
        Self::PublicCA,
        Self::CustomProducts,
        Self::Finance,
        Self::OrderPreApproval,
        Self::OrganizationsAndDomains,
        Self::Reports,
        Self::Notifications,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::GroupManagement => "GroupManagement",
            Self::GroupFunding => "GroupFunding",
            Self::UserManagement => "UserManagement",
            Self::SubAccounts => "SubAccounts",
            Self::PriceLists => "PriceLists",
            Self::ApiKeys => "ApiKeys",
            Self::PrivateCA => "PrivateCA",
            Self::PublicCA => "PublicCA",
            Self::CustomProducts => "CustomProducts",
            Self::Finance => "Finance",
            Self::OrderPreApproval => "OrderPreApproval",
            Self::OrganizationsAndDomains => "OrganizationsAndDomains",
            Self::Reports => "Reports",
            Self::Notifications => "Notifications",
        }
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How much of a capability an account has.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
pub enum Scope {
    /// The whole capability.
    Full,
    /// API keys for the account itself, not for sub-accounts.
    OwnKeysOnly,
    /// Finance held at account level: one wallet, no funded groups.
    AccountLevelOnly,
    /// Order alerts, not group alerts.
    OrderAlertsOnly,
}

/// One cell of the matrix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cell {
    Allowed(Scope),
    /// Not available, with the reason the product gives.
    Denied(&'static str),
}

use Cell::{Allowed, Denied};
use Scope::{AccountLevelOnly, Full, OrderAlertsOnly, OwnKeysOnly};

const RESELLER_ONLY: &str = "only Reseller accounts have it";

/// The matrix: one row per capability, columns Reseller, Enterprise, Retail.
const MATRIX: [(Capability, [Cell; 3]); 14] = [
    (
        Capability::GroupManagement,
        [Allowed(Full), Allowed(Full), Allowed(Full)],
    ),
    (
        Capability::GroupFunding,
        [
            Allowed(Full),
            Allowed(Full),
            Denied("finance is account-level"),
        ],
    ),
    (
        Capability::UserManagement,
        [Allowed(Full), Allowed(Full), Allowed(Full)],
    ),
    (
        Capability::SubAccounts,
        [Allowed(Full), Denied(RESELLER_ONLY), Denied(RESELLER_ONLY)],
    ),
    (
        Capability::PriceLists,
        [Allowed(Full), Denied(RESELLER_ONLY), Denied(RESELLER_ONLY)],
    ),
    (
        Capability::ApiKeys,
        [Allowed(Full), Allowed(OwnKeysOnly), Allowed(OwnKeysOnly)],
    ),
    (
        Capability::PrivateCA,
        [Allowed(Full), Allowed(Full), Allowed(Full)],
    ),
    (
        Capability::PublicCA,
        [
            Allowed(Full),
            Denied("public CAs are for Reseller accounts; use a PrivateCA"),
            Denied("public CAs are for Reseller accounts; use a PrivateCA"),
        ],
    ),
    (
        Capability::CustomProducts,
        [Allowed(Full), Allowed(Full), Allowed(Full)],
    ),
    (
        Capability::Finance,
        [Allowed(Full), Allowed(Full), Allowed(AccountLevelOnly)],
    ),
    (
        Capability::OrderPreApproval,
        [
            Allowed(Full),
            Denied("only a Reseller approves the orders of its sub-accounts"),
            Denied("only a Reseller approves the orders of its sub-accounts"),
        ],
    ),
    (
        Capability::OrganizationsAndDomains,
        [Allowed(Full), Allowed(Full), Allowed(Full)],
    ),
    (
        Capability::Reports,
        [Allowed(Full), Allowed(Full), Allowed(Full)],
    ),
    (
        Capability::Notifications,
        [Allowed(Full), Allowed(Full), Allowed(OrderAlertsOnly)],
    ),
];

/// The cell of the matrix for `capability` and `account_type`.
pub fn cell(capability: Capability, account_type: AccountType) -> Cell {
    // MATRIX lists the capabilities in the order of Capability::ALL (a test holds it so).
    let (row, cells) = MATRIX[capability as usize];
    debug_assert_eq!(row, capability);
    cells[account_type.column()]
}

/// Why an account may not use a capability. Its message names the capability, the account and
/// the account's type; [`Denial::for_object`] prefixes the object that asked.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "requires the {capability} capability, which {account_type} accounts do not have (account {account:?}): {reason}"
)]
pub struct Denial {
    pub capability: Capability,
    pub account: String,
    pub account_type: AccountType,
    pub reason: &'static str,
}

impl Denial {
    /// The full message for a refused object: `PriceList "gold" requires the PriceLists …`.
    pub fn for_object(&self, kind: &str, name: &str) -> String {
        format!("{kind} {name:?} {self}")
    }
}

/// Whether the account `account` of type `account_type` may use `capability`, and how much.
pub fn check(
    account: &str,
    account_type: AccountType,
    capability: Capability,
) -> Result<Scope, Denial> {
    match cell(capability, account_type) {
        Allowed(scope) => Ok(scope),
        Denied(reason) => Err(Denial {
            capability,
            account: account.to_owned(),
            account_type,
            reason,
        }),
    }
}

/// Every capability an account type has, with its scope, in matrix order.
pub fn granted(account_type: AccountType) -> impl Iterator<Item = (Capability, Scope)> {
    Capability::ALL
        .into_iter()
        .filter_map(move |capability| match cell(capability, account_type) {
            Allowed(scope) => Some((capability, scope)),
            Denied(_) => None,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The matrix as the product states it, written out independently of `MATRIX`:
    /// `Y` full, `K` own keys only, `A` account level only, `O` order alerts only, `-` denied.
    const EXPECTED: [(Capability, &str); 14] = [
        (Capability::GroupManagement, "YYY"),
        (Capability::GroupFunding, "YY-"),
        (Capability::UserManagement, "YYY"),
        (Capability::SubAccounts, "Y--"),
        (Capability::PriceLists, "Y--"),
        (Capability::ApiKeys, "YKK"),
        (Capability::PrivateCA, "YYY"),
        (Capability::PublicCA, "Y--"),
        (Capability::CustomProducts, "YYY"),
        (Capability::Finance, "YYA"),
        (Capability::OrderPreApproval, "Y--"),
        (Capability::OrganizationsAndDomains, "YYY"),
        (Capability::Reports, "YYY"),
        (Capability::Notifications, "YYO"),
    ];

    #[test]
    fn every_cell_of_the_matrix() {
        let mut cells = 0;
        for (capability, row) in EXPECTED {
            for (account_type, expected) in AccountType::ALL.into_iter().zip(row.chars()) {
                let got = check("acme", account_type, capability);
                let want = match expected {
                    'Y' => Some(Scope::Full),
                    'K' => Some(Scope::OwnKeysOnly),
                    'A' => Some(Scope::AccountLevelOnly),
                    'O' => Some(Scope::OrderAlertsOnly),
                    '-' => None,
                    other => panic!("bad expectation {other}"),
                };
                assert_eq!(got.clone().ok(), want, "{capability} for {account_type}");
                cells += 1;
            }
        }
        assert_eq!(cells, 14 * 3);
    }

    #[test]
    fn the_table_lists_every_capability_once_in_order() {
        for (index, capability) in Capability::ALL.into_iter().enumerate() {
            assert_eq!(MATRIX[index].0, capability);
            assert_eq!(capability as usize, index);
            assert_eq!(EXPECTED[index].0, capability);
        }
    }

    #[test]
    fn a_denial_names_capability_account_and_type() {
        let denial = check("globex", AccountType::Enterprise, Capability::PriceLists).unwrap_err();
        assert_eq!(
            denial.for_object("PriceList", "gold"),
            "PriceList \"gold\" requires the PriceLists capability, which Enterprise accounts \
             do not have (account \"globex\"): only Reseller accounts have it"
        );
        let denial =
            check("corner-shop", AccountType::Retail, Capability::GroupFunding).unwrap_err();
        assert_eq!(denial.capability, Capability::GroupFunding);
        assert_eq!(denial.account, "corner-shop");
        assert_eq!(denial.account_type, AccountType::Retail);
        assert!(denial.to_string().contains("finance is account-level"));
    }

    #[test]
    fn granted_lists_only_allowed_capabilities() {
        assert_eq!(granted(AccountType::Reseller).count(), 14);
        let retail: Vec<_> = granted(AccountType::Retail).collect();
        assert!(retail.contains(&(Capability::Finance, Scope::AccountLevelOnly)));
        assert!(!retail.iter().any(|(c, _)| *c == Capability::SubAccounts));
        assert_eq!(retail.len(), 14 - 5);
        assert_eq!(granted(AccountType::Enterprise).count(), 14 - 4);
    }

    #[test]
    fn names_serialize_as_written_in_the_matrix() {
        for capability in Capability::ALL {
            assert_eq!(
                serde_json::to_value(capability).unwrap(),
                serde_json::Value::String(capability.as_str().into())
            );
        }
        for account_type in AccountType::ALL {
            assert_eq!(
                serde_json::to_value(account_type).unwrap(),
                serde_json::Value::String(account_type.to_string())
            );
        }
    }
}
