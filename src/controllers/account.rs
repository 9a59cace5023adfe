//! The Account controller: which namespaces an account holds, what it may do, and its wallet.
//!
//! dereference (every account's claims, the funds requests of its groups and sub-accounts) →
//! decide (pure: claims, capabilities, allocations) → status by server-side apply.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::TryFutureExt;
use kube::api::{Api, ListParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use serde_json::json;

use super::{
    Error, Refusal, Standing, add_finalizer, error_policy, recorder, remove_finalizer, report,
};
use crate::api::account::{GrantedCapability, Wallet};
use crate::api::order::{Payer, PayerKind};
use crate::api::{Account, Certificate, Group, Order, PriceList, PrivateCA, Product, SubAccount};
use crate::billing::ledger::{self, Archive};
use crate::billing::wallet::{self, Allocation};
use crate::billing::{Money, MoneyError};
use crate::capabilities::{self, Capability};
use crate::tenancy::{self, Claim, Claims};

/// The field manager of the status this controller writes.
pub const MANAGER: &str = "certinext-account-controller";

pub struct Context {
    pub client: Client,
    pub recorder: super::events::Recorder,
    pub accounts: Store<Account>,
    /// The Orders of each watched scope.
    pub orders: Vec<(super::Scope, Store<Order>)>,
    /// The Order caches have listed their objects once.
    pub synced: super::cache::Synced,
    /// Spaces out each account's reconciles.
    pub pacer: super::Pacer,
}

/// What the controller decides for one account, from plain values.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub namespaces: Vec<String>,
    pub capabilities: Vec<GrantedCapability>,
    pub wallet: Wallet,
    /// In force, or why not.
    pub standing: Standing,
}

/// A funds request from the account's wallet: a group or a sub-account.
#[derive(Clone)]
pub struct FundsRequest {
    pub id: String,
    pub amount: Money,
    pub requested_at: i64,
    pub granted: Option<Money>,
}

impl FundsRequest {
    /// The request of `object` (a Group or SubAccount, named `kind/namespace/name`) for
    /// `amount`, in the order of its creation, with what it was granted before.
    fn of<K: ResourceExt>(kind: &str, object: &K, amount: Money, granted: Option<Money>) -> Self {
        FundsRequest {
            id: format!(
                "{kind}/{}/{}",
                object.namespace().unwrap_or_default(),
                object.name_any()
            ),
            amount,
            requested_at: object
                .creation_timestamp()
                .map_or(i64::MAX, |t| t.0.as_second()),
            granted,
        }
    }
}

/// What a wallet's figures are computed from besides the account's own credits.
#[derive(Clone, Default)]
pub struct WalletInputs {
    /// For a sub-account: the funds its reseller's wallet allocated to it.
    pub funding: Money,
    /// The groups' and sub-accounts' requests for funds.
    pub requests: Vec<FundsRequest>,
    /// What the account wallet has paid for directly: its orders' charges, net of refunds.
    pub spent: Money,
}

fn credited(account: &Account, inputs: &WalletInputs) -> Result<Money, MoneyError> {
    Money::checked_sum(account.spec.credits.iter().map(|c| c.amount))?.checked_add(inputs.funding)
}

/// The account wallet's allocations. Pure; the Account controller writes the wallet from it
/// and the Group and SubAccount controllers their share, so all see the same decision.
pub fn allocation(account: &Account, inputs: &WalletInputs) -> Result<Allocation, MoneyError> {
    let requests: Vec<wallet::Request<'_>> = inputs
        .requests
        .iter()
        .map(|r| wallet::Request {
            id: &r.id,
            amount: r.amount,
            requested_at: r.requested_at,
            granted: r.granted,
        })
        .collect();
    wallet::allocate(credited(account, inputs)?, inputs.spent, &requests)
}

/// Decides an account's status. Pure.
pub fn decide(
    account: &Account,
    claims: &Claims,
    inputs: &WalletInputs,
) -> Result<Decision, MoneyError> {
    let name = account.name_any();
    let account_type = account.spec.account_type;
    let capabilities = capabilities::granted(account_type)
        .map(|(name, scope)| GrantedCapability { name, scope })
        .collect();
    let (credited, spent) = (credited(account, inputs)?, inputs.spent);
    let allocation = allocation(account, inputs)?;
    let wallet = Wallet {
        currency: account.spec.currency.clone(),
        credited,
        funded: account.spec.parent.is_some().then_some(inputs.funding),
        allocated: allocation.allocated,
        spent,
        balance: allocation.balance,
    };
    let conflicts = claims.conflicts.get(&name).cloned().unwrap_or_default();
    let standing = if let Some(conflict) = conflicts.first() {
        let others = conflicts.len() - 1;
        let more = if others > 0 {
            format!(" (and {others} more)")
        } else {
            String::new()
        };
        Err(Refusal::new(
            "NamespaceConflict",
            format!(
                "Account {name:?} claims namespace {:?}{more}, which Account {:?} holds: it was created first",
                conflict.namespace, conflict.held_by
            ),
        ))
    } else if allocation.overdrawn() {
        Err(Refusal::new(
            "Overdrawn",
            format!(
                "Account {name:?} is overdrawn by {} {}: its allocations and charges exceed its credits; new allocations and orders are refused until it is credited",
                Money::ZERO.checked_sub(allocation.balance)?,
                account.spec.currency
            ),
        ))
    } else {
        Ok(format!("Account {name:?} ({account_type}) is in force"))
    };
    Ok(Decision {
        namespaces: claims.held_by(&name),
        capabilities,
        wallet,
        standing,
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

/// The groups a read of an account's funds listed, with whether each is being deleted (or
/// its spending already folded into the account's archive).
#[derive(Clone, Debug, Default)]
pub struct ListedGroups {
    namespaces: std::collections::BTreeSet<String>,
    groups: std::collections::BTreeMap<(String, String), bool>,
}

impl ListedGroups {
    /// Whether group `name` in `namespace` exists and is not being deleted, as listed; `None`
    /// when that namespace's groups were not listed.
    pub fn live(&self, namespace: &str, name: &str) -> Option<bool> {
        if !self.namespaces.contains(namespace) {
            return None;
        }
        let key = (namespace.to_owned(), name.to_owned());
        Some(self.groups.get(&key).is_some_and(|deleting| !deleting))
    }
}

/// A read of an account's funds ([`funds_inputs`]), kept in its wallet for the charges that
/// wait for it meanwhile.
pub struct FundsRead {
    /// When the read was sent.
    began: std::time::Instant,
    namespaces: Vec<String>,
    pub inputs: WalletInputs,
    pub archive: Archive,
    pub groups: ListedGroups,
}

impl FundsRead {
    /// The funds of `account` in `namespaces` for a charge that began waiting for the wallet
    /// at `since`: `last` when it was sent after that (it is as fresh as a read the charge
    /// would make now: nothing that changed before the charge began escaped it, and every
    /// holder of the wallet that moves money drops it), else read now.
    pub async fn since(
        last: Option<FundsRead>,
        since: std::time::Instant,
        client: &Client,
        account: &Account,
        namespaces: &[String],
    ) -> Result<FundsRead, Error> {
        if let Some(last) = last.filter(|last| last.serves(since, namespaces)) {
            return Ok(last);
        }
        let began = std::time::Instant::now();
        let (inputs, archive, groups) = funds_inputs(client, account, namespaces).await?;
        Ok(FundsRead {
            began,
            namespaces: namespaces.to_vec(),
            inputs,
            archive,
            groups,
        })
    }

    /// Whether this read serves a charge in `namespaces` that began waiting at `since`.
    fn serves(&self, since: std::time::Instant, namespaces: &[String]) -> bool {
        self.began > since && self.namespaces == namespaces
    }
}

/// What an account's wallet is computed from: its funding, its funds requests, and what it
/// spent, from its Orders (read before this call: an Order deleted since is in the archive
/// this reads) and its ledger archive.
pub async fn wallet_inputs<'a>(
    client: &Client,
    account: &Account,
    namespaces: &[String],
    orders: impl IntoIterator<Item = &'a Order>,
) -> Result<WalletInputs, Error> {
    let (mut inputs, archive, _) = funds_inputs(client, account, namespaces).await?;
    let payer = Payer {
        kind: PayerKind::Account,
        name: account.name_any(),
        namespace: None,
    };
    inputs.spent = ledger::spent_by(orders, &payer, &archive)
        .map_err(|e| Error::Money(account.name_any(), e))?;
    Ok(inputs)
}

/// What an account's wallet owes and is owed, without what it spent (`spent` is zero): its
/// funding from a reseller (for a sub-account), and the funds requests of its groups (with
/// the GroupFunding capability) and, for a reseller, of its sub-accounts. Returns the
/// account's ledger archive as it is now, not as a cache saw it; a deleted group whose
/// spending is folded into it requests nothing more.
pub async fn funds_inputs(
    client: &Client,
    account: &Account,
    namespaces: &[String],
) -> Result<(WalletInputs, Archive, ListedGroups), Error> {
    let name = account.name_any();
    let group_funding =
        capabilities::check(&name, account.spec.account_type, Capability::GroupFunding).is_ok();
    let sub_accounts_allowed =
        capabilities::check(&name, account.spec.account_type, Capability::SubAccounts).is_ok();
    // The reads do not depend on each other, so they are made at once: the wallet's lock,
    // which callers hold, waits for one round trip instead of one per read.
    let funding = async {
        let Some(parent) = &account.spec.parent else {
            return Ok(Money::ZERO);
        };
        let sub = Api::<SubAccount>::namespaced(client.clone(), &parent.namespace)
            .get_opt(&parent.sub_account)
            .await?;
        Ok::<_, Error>(
            sub.filter(|sub| sub.status.as_ref().and_then(|s| s.account.as_deref()) == Some(&name))
                .and_then(|sub| sub.status.and_then(|s| s.allocated))
                .unwrap_or(Money::ZERO),
        )
    };
    let accounts = Api::<Account>::all(client.clone());
    let fresh = accounts.get_metadata(&name).map_err(Error::from);
    let listed_in = |namespace: &String| {
        let groups = group_funding.then(|| Api::<Group>::namespaced(client.clone(), namespace));
        let subaccounts =
            sub_accounts_allowed.then(|| Api::<SubAccount>::namespaced(client.clone(), namespace));
        async move { futures_util::try_join!(list_if(groups), list_if(subaccounts)) }
    };
    let (funding, fresh, listed_by_namespace) = futures_util::try_join!(
        funding,
        fresh,
        futures_util::future::try_join_all(namespaces.iter().map(listed_in))
    )?;
    let archive = super::order::archive_of(&name, fresh.annotations())?;
    let mut requests = Vec::new();
    let mut listed = ListedGroups::default();
    for (namespace, (groups, subaccounts)) in namespaces.iter().zip(listed_by_namespace) {
        if let Some(groups) = groups {
            listed.namespaces.insert(namespace.clone());
            for group in groups {
                let folded = archive.holds(&group.uid().unwrap_or_default());
                listed.groups.insert(
                    (namespace.clone(), group.name_any()),
                    folded || group.metadata.deletion_timestamp.is_some(),
                );
                if folded {
                    continue;
                }
                if let Some(amount) = group.spec.funds {
                    let granted = group.status.as_ref().and_then(|s| s.allocated);
                    requests.push(FundsRequest::of("group", &group, amount, granted));
                }
            }
        }
        for sub in subaccounts.into_iter().flatten() {
            if let Some(amount) = sub.spec.funds {
                let granted = sub.status.as_ref().and_then(|s| s.allocated);
                requests.push(FundsRequest::of("subaccount", &sub, amount, granted));
            }
        }
    }
    let inputs = WalletInputs {
        funding,
        requests,
        spent: Money::ZERO,
    };
    Ok((inputs, archive, listed))
}

/// Every object `api` lists (without managed fields), when there is one to ask.
async fn list_if<K>(api: Option<Api<K>>) -> Result<Option<Vec<K>>, Error>
where
    K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let Some(api) = api else {
        return Ok(None);
    };
    let listed = super::lean::api(&api).list(&ListParams::default()).await?;
    Ok(Some(listed.items.into_iter().map(|lean| lean.0).collect()))
}

/// Every Order in `namespaces`: from the caches when they cover them all, else listed fresh.
pub async fn orders_cached(
    client: &Client,
    caches: &[(super::Scope, Store<Order>)],
    namespaces: &[String],
) -> Result<Vec<Arc<Order>>, Error> {
    match super::cache::in_namespaces(caches, namespaces) {
        Some(orders) => Ok(orders),
        None => Ok(orders_in(client, namespaces)
            .await?
            .into_iter()
            .map(Arc::new)
            .collect()),
    }
}

/// Every Order in `namespaces`, listed fresh from the API server.
pub async fn orders_in(client: &Client, namespaces: &[String]) -> Result<Vec<Order>, Error> {
    let mut orders = Vec::new();
    for namespace in namespaces {
        orders.extend(
            Api::<Order>::namespaced(client.clone(), namespace)
                .list(&ListParams::default())
                .await?
                .items,
        );
    }
    Ok(orders)
}

/// What about an Order can move a wallet: its transactions, and its deletion (which moves
/// its charge into an archive, or drops an unissued one) from start to end. Its other writes
/// (issuance, conditions) do not.
pub fn money_moved(
    order: &Order,
) -> (Vec<(crate::api::order::TransactionType, Money)>, bool, bool) {
    let transactions = order
        .status
        .iter()
        .flat_map(|s| &s.transactions)
        .map(|t| (t.transaction_type, t.amount))
        .collect();
    let deleting = order.metadata.deletion_timestamp.is_some();
    (transactions, deleting, order.finalizers().is_empty())
}

/// The finalizer that holds an account's deletion while its namespaces hold live objects.
pub const FINALIZER: &str = "certinext.io/account";

/// The live certinext objects in `namespaces`, as `Kind namespace/name`, up to `limit`.
pub async fn live_objects(
    client: &Client,
    namespaces: &[String],
    limit: usize,
) -> Result<Vec<String>, Error> {
    async fn names<K>(
        client: &Client,
        namespace: &str,
        found: &mut Vec<String>,
    ) -> Result<(), Error>
    where
        K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
    {
        let list = Api::<K>::namespaced(client.clone(), namespace)
            .list_metadata(&ListParams::default().limit(10))
            .await?;
        found.extend(
            list.items
                .iter()
                .map(|o| format!("{} {namespace}/{}", K::kind(&()), o.name_any())),
        );
        Ok(())
    }
    let mut found = Vec::new();
    for namespace in namespaces {
        names::<Group>(client, namespace, &mut found).await?;
        names::<SubAccount>(client, namespace, &mut found).await?;
        names::<PriceList>(client, namespace, &mut found).await?;
        names::<Product>(client, namespace, &mut found).await?;
        names::<PrivateCA>(client, namespace, &mut found).await?;
        names::<Certificate>(client, namespace, &mut found).await?;
        names::<Order>(client, namespace, &mut found).await?;
        if found.len() >= limit {
            break;
        }
    }
    found.truncate(limit);
    Ok(found)
}

pub async fn reconcile(account: Arc<Account>, ctx: Arc<Context>) -> Result<Action, Error> {
    let name = account.name_any();
    ctx.pacer.pace(&name).await;
    let api: Api<Account> = Api::all(ctx.client.clone());
    let claims = claims(&ctx.accounts.state());
    let held = claims.held_by(&name);
    let previous = account.status.as_ref().map(|s| s.conditions.as_slice());
    let deleting = account.metadata.deletion_timestamp.is_some();
    if !deleting {
        add_finalizer(&api, &*account, FINALIZER).await?;
    }

    // What the account spent, as the Order caches show it: its status follows them.
    ctx.synced.wait().await?;
    let orders = orders_cached(&ctx.client, &ctx.orders, &held).await?;
    let inputs = wallet_inputs(&ctx.client, &account, &held, orders.iter().map(|o| &**o)).await?;
    let mut decision =
        decide(&account, &claims, &inputs).map_err(|e| Error::Money(name.clone(), e))?;
    let mut action = Action::requeue(Duration::from_secs(300));
    if deleting {
        // Deletion waits until the account's namespaces hold no live objects: deleting it
        // earlier would leave them acted on by nobody.
        let live = live_objects(&ctx.client, &held, 5).await?;
        if live.is_empty() {
            remove_finalizer(&api, &*account, FINALIZER).await?;
            return Ok(Action::await_change());
        }
        decision.standing = Err(Refusal::new(
            "DeletionBlocked",
            format!(
                "Account {name:?} is being deleted and waits for the objects in its namespaces to be deleted first: {}{}",
                live.join(", "),
                if live.len() >= 5 { ", …" } else { "" }
            ),
        ));
        action = Action::requeue(Duration::from_secs(5));
    }
    let fields = json!({
        "capabilities": decision.capabilities,
        "namespaces": decision.namespaces,
        "wallet": decision.wallet,
        "parent": account.spec.parent.as_ref().map(|p| p.account.clone()),
    });
    report(
        &api,
        &ctx.recorder,
        &*account,
        MANAGER,
        previous,
        &decision.standing,
        fields,
    )
    .await?;
    Ok(action)
}

/// Runs the controller until the stream ends.
pub async fn run(client: Client, settings: super::Settings, shared: super::SharedOrders) {
    let accounts: Api<Account> = Api::all(client.clone());
    let controller = super::cache::controller(accounts, watcher::Config::default());
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
    // A charge or refund moves the wallet of the account holding the order's namespace; an
    // order that moved no money changes nothing here.
    let by_order = {
        let for_namespace = for_namespace.clone();
        move |order: Arc<Order>| {
            let charged = order
                .status
                .as_ref()
                .is_some_and(|s| !s.transactions.is_empty());
            if charged {
                for_namespace(order.namespace())
            } else {
                Vec::new()
            }
        }
    };
    // A sub-account changes its reseller's wallet and its own account's funding.
    let by_subaccount = {
        let store = store.clone();
        move |sub: SubAccount| {
            let mut refs = for_namespace(sub.namespace());
            refs.extend(
                store
                    .state()
                    .into_iter()
                    .filter(|a| {
                        a.spec.parent.as_ref().is_some_and(|p| {
                            Some(&p.namespace) == sub.metadata.namespace.as_ref()
                                && Some(&p.sub_account) == sub.metadata.name.as_ref()
                        })
                    })
                    .map(|a| ObjectRef::from_obj(&*a)),
            );
            refs
        }
    };
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
    let mut controller = controller.watches(
        Api::<Account>::all(client.clone()),
        watcher::Config::default(),
        all,
    );
    // Groups, sub-accounts and orders in the watched namespaces; the Orders are cached.
    let mut orders = Vec::new();
    for (scope, shared) in shared.scopes() {
        let by_group = by_group.clone();
        orders.push((scope.clone(), shared.store()));
        controller = controller
            .watches(
                super::scoped::<Group>(&client, scope),
                watcher::Config::default(),
                move |g: Group| by_group(g.namespace()),
            )
            .watches(
                super::scoped::<SubAccount>(&client, scope),
                watcher::Config::default(),
                by_subaccount.clone(),
            )
            .watches_shared_stream(
                shared.subscribe(),
                super::on_change_of(|o: &Order| money_moved(o), by_order.clone()),
            );
    }
    let synced = super::cache::Synced::new(shared.scopes().map(|(_, s)| s.listed()).collect());
    let context = Arc::new(Context {
        client: client.clone(),
        recorder: recorder(&client),
        accounts: store,
        orders,
        synced,
        pacer: super::Pacer::default(),
    });
    controller
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

    #[test]
    fn a_listed_group_is_live_unless_it_is_being_deleted_and_an_unlisted_namespace_is_unknown() {
        let mut listed = ListedGroups::default();
        listed.namespaces.insert("shop".into());
        listed.groups.insert(("shop".into(), "team".into()), false);
        listed.groups.insert(("shop".into(), "ops".into()), true);
        assert_eq!(listed.live("shop", "team"), Some(true));
        assert_eq!(listed.live("shop", "ops"), Some(false), "being deleted");
        assert_eq!(listed.live("shop", "gone"), Some(false), "not there");
        assert_eq!(listed.live("other", "team"), None, "not listed");
    }

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
            &WalletInputs {
                funding: Money::ZERO,
                requests: vec![
                    request("group/a", "2000", 1, None),
                    request("group/b", "1500", 2, None),
                ],
                spent: Money::parse("250").unwrap(),
            },
        )
        .unwrap();
        assert!(decision.standing.is_ok(), "{:?}", decision.standing);
        assert_eq!(decision.wallet.credited.to_string(), "7500.00");
        assert_eq!(decision.wallet.allocated.to_string(), "3500.00");
        assert_eq!(decision.wallet.spent.to_string(), "250.00");
        assert_eq!(decision.wallet.balance.to_string(), "3750.00");
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
        let decision = decide(&second, &claims, &WalletInputs::default()).unwrap();
        let refusal = decision.standing.unwrap_err();
        assert_eq!(refusal.reason, "NamespaceConflict");
        assert!(refusal.message.contains("\"first\""), "{}", refusal.message);
        assert_eq!(decision.namespaces, ["second"]);
    }

    #[test]
    fn a_funds_read_serves_the_charges_that_were_waiting_when_it_was_sent() {
        let waiting = std::time::Instant::now();
        let namespaces = vec!["shop".to_owned()];
        let read = FundsRead {
            began: waiting + std::time::Duration::from_millis(1),
            namespaces: namespaces.clone(),
            inputs: WalletInputs::default(),
            archive: Archive::default(),
            groups: ListedGroups::default(),
        };
        assert!(
            read.serves(waiting, &namespaces),
            "sent after the charge began waiting"
        );
        let later = read.began + std::time::Duration::from_millis(1);
        assert!(
            !read.serves(later, &namespaces),
            "sent before: older than the charge"
        );
        assert!(
            !read.serves(read.began, &namespaces),
            "sent at the same instant"
        );
        assert!(!read.serves(waiting, &["shop".to_owned(), "web".to_owned()]));
    }

    #[test]
    fn an_overdrawn_wallet_says_by_how_much() {
        let shop = account("shop", AccountType::Enterprise, &["100"]);
        let claims = tenancy::resolve(&[Claim {
            account: "shop",
            created: 1,
            namespaces: &shop.spec.namespaces,
        }]);
        let decision = decide(
            &shop,
            &claims,
            &WalletInputs {
                funding: Money::ZERO,
                requests: vec![request("group/a", "150", 1, Some("150"))],
                spent: Money::ZERO,
            },
        )
        .unwrap();
        assert_eq!(decision.wallet.balance.to_string(), "-50.00");
        let refusal = decision.standing.unwrap_err();
        assert_eq!(refusal.reason, "Overdrawn");
        assert!(refusal.message.contains("50.00 USD"), "{}", refusal.message);
    }

    #[test]
    fn a_wallet_is_woken_by_an_orders_money_and_deletion_not_by_its_other_writes() {
        let changed =
            crate::controllers::on_change_of(money_moved, |o: Arc<Order>| vec![o.name_any()]);
        let map = |o: Order| changed(Arc::new(o));
        let mut order: Order =
            serde_json::from_value(json!({"apiVersion": "certinext.io/v1alpha1",
            "kind": "Order", "metadata": {"name": "web-1", "namespace": "shop", "uid": "u1",
            "finalizers": ["certinext.io/ledger"]},
            "spec": {"certificateRef": {"name": "web"}, "revision": 1, "type": "Purchase",
                "request": "csr", "duration": "1h"}}))
            .unwrap();
        assert_eq!(map(order.clone()), ["web-1"], "first sight");
        order.status = Some(serde_json::from_value(json!({"state": "Approved"})).unwrap());
        assert!(map(order.clone()).is_empty(), "approved, nothing charged");
        order.status = Some(serde_json::from_value(json!({"state": "Approved",
            "transactions": [{"type": "PURCHASE", "amount": "10.00", "at": "2026-01-01T00:00:00Z"}]}))
            .unwrap());
        assert_eq!(map(order.clone()), ["web-1"], "charged");
        order.status.as_mut().unwrap().state = Some(crate::api::order::OrderState::Issued);
        assert!(map(order.clone()).is_empty(), "issued: no money moved");
        order.metadata.deletion_timestamp = Some(
            k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::UNIX_EPOCH),
        );
        assert_eq!(map(order.clone()), ["web-1"], "deletion starts");
        order.metadata.finalizers = None;
        assert_eq!(map(order), ["web-1"], "deletion ends");
    }
}
