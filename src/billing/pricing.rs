//! What an order costs, who pays for it, and whether someone must approve it first. Pure.

use kube::ResourceExt;

use super::Money;
use crate::api::common::ApprovalPolicy;
use crate::api::order::{Payer, PayerKind};
use crate::api::{Account, Group, PriceList, Product};
use crate::capabilities::{self, Capability};

/// The price of an order for `product`: the price list's item for the product when the
/// ordering account is a sub-account whose SubAccount names `price_list` (and the list, in
/// the product's namespace, prices it), else the product's base price. An order without a
/// product (an `issuerRef` order) costs nothing.
pub fn price(product: Option<&Product>, price_list: Option<&PriceList>) -> Money {
    let Some(product) = product else {
        return Money::ZERO;
    };
    price_list
        .filter(|list| list.namespace() == product.namespace())
        .and_then(|list| {
            list.spec
                .items
                .iter()
                .find(|item| item.product == product.name_any())
        })
        .map_or(product.spec.price, |item| item.price)
}

/// Who pays for an order of `account`: the group named by the order when it has funds and
/// the account may fund groups (GroupFunding), else the account's wallet.
pub fn payer(account: &Account, group: Option<&Group>) -> Payer {
    let group_funding = capabilities::check(
        &account.name_any(),
        account.spec.account_type,
        Capability::GroupFunding,
    )
    .is_ok();
    match group {
        Some(group) if group.spec.funds.is_some() && group_funding => Payer {
            kind: PayerKind::Group,
            name: group.name_any(),
            namespace: group.namespace(),
        },
        _ => Payer {
            kind: PayerKind::Account,
            name: account.name_any(),
            namespace: None,
        },
    }
}

/// What decides whether an order needs approval.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApprovalInputs<'a> {
    /// The product and whether it is auto-approved; `None` for an `issuerRef` order.
    pub product: Option<(&'a str, bool)>,
    /// The order's group and its policy, when it names a group that sets one.
    pub group: Option<(&'a str, ApprovalPolicy)>,
    /// The ordering account and its default policy.
    pub account: (&'a str, ApprovalPolicy),
    /// For a sub-account: its SubAccount and the reseller's policy for its orders.
    pub sub_account: Option<(&'a str, ApprovalPolicy)>,
}

/// Why an order must wait for an approver; empty when it proceeds on its own. Each policy
/// can only ask for approval: a group's Automatic does not lift its account's Manual.
pub fn approval_required(inputs: &ApprovalInputs<'_>) -> Vec<String> {
    let manual = ApprovalPolicy::Manual;
    let mut why = Vec::new();
    if let Some((product, false)) = inputs.product {
        why.push(format!("Product {product:?} is not auto-approved"));
    }
    if let Some((group, policy)) = inputs.group
        && policy == manual
    {
        why.push(format!("Group {group:?} requires approval"));
    }
    let (account, policy) = inputs.account;
    if policy == manual {
        why.push(format!("Account {account:?} requires approval"));
    }
    if let Some((sub, policy)) = inputs.sub_account
        && policy == manual
    {
        why.push(format!(
            "SubAccount {sub:?} requires the reseller's approval"
        ));
    }
    why
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn product(name: &str, namespace: &str, price: &str) -> Product {
        serde_json::from_value(
            json!({"apiVersion": "certinext.io/v1alpha1", "kind": "Product",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"issuerRef": {"name": "ca"}, "template": "ServerTLS", "price": price}}),
        )
        .unwrap()
    }

    fn list(namespace: &str, items: &[(&str, &str)]) -> PriceList {
        let items: Vec<_> = items
            .iter()
            .map(|(p, price)| json!({"product": p, "price": price}))
            .collect();
        serde_json::from_value(
            json!({"apiVersion": "certinext.io/v1alpha1", "kind": "PriceList",
            "metadata": {"name": "gold", "namespace": namespace},
            "spec": {"currency": "USD", "items": items}}),
        )
        .unwrap()
    }

    fn account(account_type: &str) -> Account {
        serde_json::from_value(
            json!({"apiVersion": "certinext.io/v1alpha1", "kind": "Account",
            "metadata": {"name": "acme"}, "spec": {"type": account_type}}),
        )
        .unwrap()
    }

    fn group(funds: Option<&str>) -> Group {
        serde_json::from_value(
            json!({"apiVersion": "certinext.io/v1alpha1", "kind": "Group",
            "metadata": {"name": "team", "namespace": "acme"}, "spec": {"funds": funds}}),
        )
        .unwrap()
    }

    #[test]
    fn the_price_comes_from_the_list_when_it_prices_the_product_else_from_the_product() {
        let basic = product("basic-tls", "sslhub", "20.00");
        let cases: [(Option<&Product>, Option<PriceList>, &str); 5] = [
            (Some(&basic), None, "20.00"),
            (
                Some(&basic),
                Some(list("sslhub", &[("basic-tls", "12.00")])),
                "12.00",
            ),
            // The list does not price this product: base price.
            (
                Some(&basic),
                Some(list("sslhub", &[("client-auth", "9.00")])),
                "20.00",
            ),
            // A list in another namespace names a different product of the same name.
            (
                Some(&basic),
                Some(list("elsewhere", &[("basic-tls", "1.00")])),
                "20.00",
            ),
            (
                None,
                Some(list("sslhub", &[("basic-tls", "12.00")])),
                "0.00",
            ),
        ];
        for (product, list, expected) in cases {
            assert_eq!(
                price(product, list.as_ref()).to_string(),
                expected,
                "{list:?}"
            );
        }
    }

    #[test]
    fn a_funded_group_pays_when_the_account_may_fund_groups() {
        let cases = [
            ("Enterprise", Some(group(Some("100"))), PayerKind::Group),
            ("Reseller", Some(group(Some("100"))), PayerKind::Group),
            ("Enterprise", Some(group(None)), PayerKind::Account),
            ("Retail", Some(group(Some("100"))), PayerKind::Account),
            ("Enterprise", None, PayerKind::Account),
        ];
        for (account_type, group, kind) in cases {
            let payer = payer(&account(account_type), group.as_ref());
            assert_eq!(payer.kind, kind, "{account_type} {group:?}");
            match kind {
                PayerKind::Group => {
                    assert_eq!(
                        (payer.name.as_str(), payer.namespace.as_deref()),
                        ("team", Some("acme"))
                    )
                }
                PayerKind::Account => {
                    assert_eq!((payer.name.as_str(), payer.namespace), ("acme", None))
                }
            }
        }
    }

    #[test]
    fn any_manual_policy_or_a_product_without_auto_approval_asks_for_approval() {
        use ApprovalPolicy::{Automatic, Manual};
        let base = ApprovalInputs {
            product: Some(("web", true)),
            group: None,
            account: ("acme", Automatic),
            sub_account: None,
        };
        let cases = [
            (base.clone(), None),
            (
                ApprovalInputs {
                    product: None,
                    ..base.clone()
                },
                None,
            ),
            (
                ApprovalInputs {
                    product: Some(("web", false)),
                    ..base.clone()
                },
                Some("Product \"web\" is not auto-approved"),
            ),
            (
                ApprovalInputs {
                    group: Some(("team", Manual)),
                    ..base.clone()
                },
                Some("Group \"team\" requires approval"),
            ),
            (
                ApprovalInputs {
                    group: Some(("team", Automatic)),
                    ..base.clone()
                },
                None,
            ),
            (
                ApprovalInputs {
                    account: ("acme", Manual),
                    group: Some(("team", Automatic)),
                    ..base.clone()
                },
                Some("Account \"acme\" requires approval"),
            ),
            (
                ApprovalInputs {
                    sub_account: Some(("initech", Manual)),
                    ..base.clone()
                },
                Some("SubAccount \"initech\" requires the reseller's approval"),
            ),
            (
                ApprovalInputs {
                    sub_account: Some(("initech", Automatic)),
                    ..base.clone()
                },
                None,
            ),
        ];
        for (inputs, expected) in cases {
            let why = approval_required(&inputs);
            assert_eq!(why.first().map(String::as_str), expected, "{inputs:?}");
        }
    }
}
