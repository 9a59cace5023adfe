//! The Account controller: which namespaces an account holds, what it may do, and its wallet.
//!
//! dereference (every account's claims, the funds requests of its groups and sub-accounts) →
//! decide (pure: claims, capabilities, allocations) → status by server-side apply.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use serde_json::json;

use super::{Error, condition, error_policy};
use crate::api::account::{GrantedCapability, Wallet};
use crate::api::{Account, Group, SubAccount};
use crate::billing::wallet::{self, Allocation};
use crate::billing::{Money, MoneyError};
use crate::capabilities::{self, Capability};
use crate::tenancy::{self, Claim, Claims};

/// The field manager of the status this controller writes.
pub const MANAGER: &str = "certinext-account-controller";

pub struct Context {
    pub client: Client,
    pub accounts: Store<Account>,
}

/// What the controller decides for one account, from plain values.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub namespaces: Vec<String>,
    pub capabilities: Vec<GrantedCapability>,
    pub wallet: Wallet,
    /// `Ready` status, reason and message.
    pub ready: (bool, &'static str, String),
}

/// A funds request from the account's wallet: a group or a sub-account.
pub struct FundsRequest {
    pub id: String,
    pub amount: Money,
    pub requested_at: i64,
    pub granted: Option<Money>,
}

fn credited(account: &Account) -> Result<Money, MoneyError> {
    Money::checked_sum(account.spec.credits.iter().map(|c| c.amount))
}

/// What the account wallet has paid for directly. Orders are charged from the PKI work on;
/// until then nothing is spent.
fn spent(_account: &Account) -> Money {
    Money::ZERO
}

/// The account wallet's allocations to `requests`. Pure; the Account controller writes the
/// wallet from it and the Group controller a group's share, so both see the same decision.
pub fn allocation(account: &Account, requests: &[FundsRequest]) -> Result<Allocation, MoneyError> {
    let requests: Vec<wallet::Request<'_>> = requests
        .iter()
        .map(|r| wallet::Request {
            id: &r.id,
            amount: r.amount,
            requested_at: r.requested_at,
            granted: r.granted,
        })
        .collect();
    wallet::allocate(credited(account)?, spent(account), &requests)
}

/// Decides an account's status. Pure.
pub fn decide(
    account: &Account,
    claims: &Claims,
    requests: &[FundsRequest],
) -> Result<Decision, MoneyError> {
    let name = account.name_any();
    let account_type = account.spec.account_type;
    let capabilities = capabilities::granted(account_type)
        .map(|(name, scope)| GrantedCapability { name, scope })
        .collect();
    let (credited, spent) = (credited(account)?, spent(account));
    let allocation = allocation(account, requests)?;
    let wallet = Wallet {
        currency: account.spec.currency.clone(),
        credited,
        allocated: allocation.allocated,
        spent,
        balance: allocation.balance,
    };
    let conflicts = claims.conflicts.get(&name).cloned().unwrap_or_default();
    let ready = if let Some(conflict) = conflicts.first() {
        let others = conflicts.len() - 1;
        let more = if others > 0 {
            format!(" (and {others} more)")
        } else {
            String::new()
        };
        (
            false,
            "NamespaceConflict",
            format!(
                "Account {name:?} claims namespace {:?}{more}, which Account {:?} holds: it was created first",
                conflict.namespace, conflict.held_by
            ),
        )
    } else if allocation.overdrawn() {
        (
            false,
            "Overdrawn",
            format!(
                "Account {name:?} is overdrawn by {} {}: its allocations and charges exceed its credits; new allocations and orders are refused until it is credited",
                Money::ZERO.checked_sub(allocation.balance)?,
                account.spec.currency
            ),
        )
    } else {
        (
            true,
            "Ready",
            format!("Account {name:?} ({account_type}) is in force"),
        )
    };
    Ok(Decision {
        namespaces: claims.held_by(&name),
        capabilities,
        wallet,
        ready,
    })
}

/// Every account's claims, from the controller's cache.
pub fn claims(accounts: &[Arc<Account>]) -> Claims {
    let claims: Vec<Claim<'_>> = accounts
        .iter()
        .map(|a| Claim {
            account: a.metadata.name.as_deref().unwrap_or_default(),
            created: a.creation_timestamp().map_or(i64::MAX, |t| t.0.as_second()),
            namespaces: &a.spec.namespaces,
        })
        .collect();
    tenancy::resolve(&claims)
}

/// The funds requests against an account's wallet: its groups (with the GroupFunding
/// capability) and, for a reseller, its sub-accounts.
pub async fn funds_requests(
    client: &Client,
    account: &Account,
    namespaces: &[String],
) -> Result<Vec<FundsRequest>, Error> {
    let mut requests = Vec::new();
    let funding = capabilities::check(
        &account.name_any(),
        account.spec.account_type,
        Capability::GroupFunding,
    )
    .is_ok();
    for namespace in namespaces {
        if funding {
            let groups: Api<Group> = Api::namespaced(client.clone(), namespace);
            for group in groups.list(&ListParams::default()).await? {
                if let Some(amount) = group.spec.funds {
                    requests.push(FundsRequest {
                        id: format!("group/{namespace}/{}", group.name_any()),
                        amount,
                        requested_at: group
                            .creation_timestamp()
                            .map_or(i64::MAX, |t| t.0.as_second()),
                        granted: group.status.as_ref().and_then(|s| s.allocated),
                    });
                }
            }
        }
        let subaccounts: Api<SubAccount> = Api::namespaced(client.clone(), namespace);
        let sub_accounts_allowed = capabilities::check(
            &account.name_any(),
            account.spec.account_type,
            Capability::SubAccounts,
        )
        .is_ok();
        if sub_accounts_allowed {
            for sub in subaccounts.list(&ListParams::default()).await? {
                if let Some(amount) = sub.spec.funds {
                    requests.push(FundsRequest {
                        id: format!("subaccount/{namespace}/{}", sub.name_any()),
                        amount,
                        requested_at: sub
                            .creation_timestamp()
                            .map_or(i64::MAX, |t| t.0.as_second()),
                        granted: sub.status.as_ref().and_then(|s| s.allocated),
                    });
                }
            }
        }
    }
    Ok(requests)
}

pub async fn reconcile(account: Arc<Account>, ctx: Arc<Context>) -> Result<Action, Error> {
    let name = account.name_any();
    let claims = claims(&ctx.accounts.state());
    let held = claims.held_by(&name);
    let requests = funds_requests(&ctx.client, &account, &held).await?;
    let decision =
        decide(&account, &claims, &requests).map_err(|e| Error::Money(name.clone(), e))?;
    let generation = account.metadata.generation;
    let (ready, reason, message) = &decision.ready;
    let status = json!({
        "apiVersion": "certinext.io/v1alpha1",
        "kind": "Account",
        "status": {
            "observedGeneration": generation,
            "conditions": [condition("Ready", *ready, reason, message, generation, account.status.as_ref().map(|s| s.conditions.as_slice()))],
            "capabilities": decision.capabilities,
            "namespaces": decision.namespaces,
            "wallet": decision.wallet,
            "parent": account.spec.parent.as_ref().map(|p| p.account.clone()),
        }
    });
    let api: Api<Account> = Api::all(ctx.client.clone());
    api.patch_status(
        &name,
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&status),
    )
    .await?;
    Ok(Action::requeue(Duration::from_secs(300)))
}

/// Runs the controller until the stream ends.
pub async fn run(client: Client, settings: super::Settings) {
    let accounts: Api<Account> = Api::all(client.clone());
    let controller = Controller::new(accounts, watcher::Config::default());
    let store = controller.store();
    let for_namespace = {
        let store = store.clone();
        move |namespace: Option<String>| {
            let store = store.clone();
            store
                .state()
                .into_iter()
                .filter(|a| {
                    namespace
                        .as_ref()
                        .is_some_and(|ns| a.spec.namespaces.contains(ns))
                })
                .map(|a| ObjectRef::from_obj(&*a))
                .collect::<Vec<_>>()
        }
    };
    let by_group = for_namespace.clone();
    let by_subaccount = for_namespace;
    // Every account's claims depend on the others': a change to one re-decides all.
    let all = {
        let store = store.clone();
        move |_: Account| {
            store
                .state()
                .into_iter()
                .map(|a| ObjectRef::from_obj(&*a))
                .collect::<Vec<_>>()
        }
    };
    let context = Arc::new(Context {
        client: client.clone(),
        accounts: store,
    });
    controller
        .watches(
            Api::<Account>::all(client.clone()),
            watcher::Config::default(),
            all,
        )
        .watches(
            Api::<Group>::all(client.clone()),
            watcher::Config::default(),
            move |g: Group| by_group(g.namespace()),
        )
        .watches(
            Api::<SubAccount>::all(client.clone()),
            watcher::Config::default(),
            move |s: SubAccount| by_subaccount(s.namespace()),
        )
        .with_config(settings.controller_config())
        .run(super::instrumented(reconcile), error_policy, context)
        .for_each(|_| async {})
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::AccountSpec;
    use crate::api::account::Credit;
    use crate::capabilities::AccountType;

    fn account(name: &str, account_type: AccountType, credits: &[&str]) -> Account {
        let mut account = Account::new(
            name,
            AccountSpec {
                account_type,
                display_name: None,
                namespaces: vec![name.to_owned()],
                currency: "USD".into(),
                credits: credits
                    .iter()
                    .enumerate()
                    .map(|(i, amount)| Credit {
                        id: format!("c{i}"),
                        amount: Money::parse(amount).unwrap(),
                        ..Default::default()
                    })
                    .collect(),
                organizations: vec![],
                domains: vec![],
                order_approval: Default::default(),
                notifications: vec![],
                parent: None,
            },
        );
        account.metadata.generation = Some(1);
        account
    }

    fn request(id: &str, amount: &str, at: i64, granted: Option<&str>) -> FundsRequest {
        FundsRequest {
            id: id.into(),
            amount: Money::parse(amount).unwrap(),
            requested_at: at,
            granted: granted.map(|g| Money::parse(g).unwrap()),
        }
    }

    #[test]
    fn an_account_in_force_shows_its_capabilities_and_wallet() {
        let globex = account("globex", AccountType::Enterprise, &["5000", "2500"]);
        let claims = tenancy::resolve(&[Claim {
            account: "globex",
            created: 1,
            namespaces: &globex.spec.namespaces,
        }]);
        let decision = decide(
            &globex,
            &claims,
            &[
                request("group/a", "2000", 1, None),
                request("group/b", "1500", 2, None),
            ],
        )
        .unwrap();
        assert!(decision.ready.0, "{:?}", decision.ready);
        assert_eq!(decision.wallet.credited.to_string(), "7500.00");
        assert_eq!(decision.wallet.allocated.to_string(), "3500.00");
        assert_eq!(decision.wallet.balance.to_string(), "4000.00");
        assert_eq!(decision.namespaces, ["globex"]);
        assert!(
            !decision
                .capabilities
                .iter()
                .any(|c| c.name == Capability::SubAccounts)
        );
    }

    #[test]
    fn a_namespace_held_by_another_account_is_a_conflict_naming_both() {
        let first = account("first", AccountType::Retail, &[]);
        let mut second = account("second", AccountType::Retail, &[]);
        second.spec.namespaces = vec!["first".into(), "second".into()];
        let claims = tenancy::resolve(&[
            Claim {
                account: "first",
                created: 1,
                namespaces: &first.spec.namespaces,
            },
            Claim {
                account: "second",
                created: 2,
                namespaces: &second.spec.namespaces,
            },
        ]);
        let decision = decide(&second, &claims, &[]).unwrap();
        assert_eq!(decision.ready.1, "NamespaceConflict");
        assert!(
            decision.ready.2.contains("\"first\""),
            "{}",
            decision.ready.2
        );
        assert_eq!(decision.namespaces, ["second"]);
    }

    #[test]
    fn an_overdrawn_wallet_says_by_how_much() {
        let shop = account("shop", AccountType::Enterprise, &["100"]);
        let claims = tenancy::resolve(&[Claim {
            account: "shop",
            created: 1,
            namespaces: &shop.spec.namespaces,
        }]);
        let decision =
            decide(&shop, &claims, &[request("group/a", "150", 1, Some("150"))]).unwrap();
        assert_eq!(decision.ready.1, "Overdrawn");
        assert!(
            decision.ready.2.contains("50.00 USD"),
            "{}",
            decision.ready.2
        );
        assert_eq!(decision.wallet.balance.to_string(), "-50.00");
    }
}
