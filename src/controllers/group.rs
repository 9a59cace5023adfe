//! The Group controller: capabilities, members as RoleBindings, and the group's funds.
//!
//! dereference (the account holding the namespace, the wallet's decision) → validate (pure:
//! GroupManagement, GroupFunding, UserManagement) → build (pure: one RoleBinding per role) →
//! apply (server-side, owned by the group; bindings for roles no longer used are deleted) →
//! status.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use serde_json::{Value, json};

use super::account;
use super::{
    Error, Refusal, Standing, Tenancy, WalletContext, add_finalizer, all_of, api_of, error_policy,
    no_account, remove_finalizer, report,
};
use crate::api::group::{Member, MemberKind, Role};
use crate::api::order::{OrderState, Payer, PayerKind};
use crate::api::{Account, Group, Order};
use crate::billing::Money;
use crate::billing::ledger::{self, ARCHIVE_ANNOTATION, Ledger};
use crate::billing::wallet::Allocation;
use crate::capabilities::{self, Capability};

/// The field manager of what this controller writes.
pub const MANAGER: &str = "certinext-group-controller";
/// The label that marks the RoleBindings of a group.
pub const GROUP_LABEL: &str = "certinext.io/group";
/// The finalizer that keeps a deleted group until what it spent is in its account's archive.
pub const FINALIZER: &str = "certinext.io/group";

/// The ClusterRole each role binds (shipped in `config/rbac/`).
pub fn cluster_role(role: Role) -> &'static str {
    match role {
        Role::Admin => "certinext-admin",
        Role::Requester => "certinext-requester",
        Role::Viewer => "certinext-viewer",
    }
}

/// Checks the capabilities the group's spec uses against its account. Pure.
pub fn validate(group: &Group, account: &Account) -> Result<(), Refusal> {
    let name = group.name_any();
    let account_name = account.name_any();
    let account_type = account.spec.account_type;
    let mut needed = vec![Capability::GroupManagement];
    if group.spec.funds.is_some() {
        needed.push(Capability::GroupFunding);
    }
    if !group.spec.members.is_empty() {
        needed.push(Capability::UserManagement);
    }
    for capability in needed {
        if let Err(denial) = capabilities::check(&account_name, account_type, capability) {
            return Err(Refusal::new(
                "CapabilityDenied",
                denial.for_object("Group", &name),
            ));
        }
    }
    Ok(())
}

/// A member as a RoleBinding subject; a service account defaults to the group's namespace.
pub fn subject(member: &Member, namespace: &str) -> Value {
    match member.kind {
        MemberKind::User => {
            json!({"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": member.name})
        }
        MemberKind::Group => {
            json!({"kind": "Group", "apiGroup": "rbac.authorization.k8s.io", "name": member.name})
        }
        MemberKind::ServiceAccount => json!({"kind": "ServiceAccount", "name": member.name,
            "namespace": member.namespace.as_deref().unwrap_or(namespace)}),
    }
}

/// The RoleBindings the group's members need: one per role in use, named `<group>-<role>`.
pub fn role_bindings(group: &Group) -> BTreeMap<String, Value> {
    let namespace = group.namespace().unwrap_or_default();
    let name = group.name_any();
    let owner = group
        .controller_owner_ref(&())
        .map(|o| serde_json::to_value(o).unwrap_or(Value::Null));
    let mut by_role: BTreeMap<&'static str, Vec<Value>> = BTreeMap::new();
    for member in &group.spec.members {
        let subject = subject(member, &namespace);
        by_role
            .entry(cluster_role(member.role))
            .or_default()
            .push(subject);
    }
    by_role
        .into_iter()
        .map(|(role, subjects)| {
            let binding_name = format!("{name}-{}", role.trim_start_matches("certinext-"));
            let binding = json!({
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": {
                    "name": binding_name,
                    "namespace": namespace,
                    "labels": {GROUP_LABEL: name, "app.kubernetes.io/managed-by": "certinext-operator"},
                    "ownerReferences": owner.iter().collect::<Vec<_>>(),
                },
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
                "subjects": subjects,
            });
            (binding_name, binding)
        })
        .collect()
}

/// Whether the wallet's decision grants `id` more than the allocation in force. Pure.
pub fn grants_more(allocation: &Allocation, id: &str, granted: Option<Money>) -> bool {
    allocation
        .decision(id)
        .is_some_and(|d| d.in_force > granted.unwrap_or(Money::ZERO))
}

/// How many Certificates the group's Issued orders issued. Pure.
pub fn certificates<'a>(orders: impl IntoIterator<Item = &'a Order>, group: &str) -> usize {
    let issued: BTreeSet<&str> = orders
        .into_iter()
        .filter(|o| o.spec.group_ref.as_ref().is_some_and(|g| g.name == group))
        .filter(|o| o.status.as_ref().and_then(|s| s.state) == Some(OrderState::Issued))
        .map(|o| o.spec.certificate_ref.name.as_str())
        .collect();
    issued.len()
}

/// The Orders charged to `payer` whose charge may still change: charged, not refunded and
/// not issued (an Order deleted before issuance counts as refunded). Pure.
pub fn unsettled<'a>(orders: &'a [Order], payer: &Payer) -> Vec<&'a Order> {
    orders
        .iter()
        .filter(|o| {
            o.status.as_ref().is_some_and(|s| {
                s.payer.as_ref() == Some(payer)
                    && ledger::charge(s).is_some()
                    && ledger::refund(s).is_none()
                    && s.state != Some(OrderState::Issued)
            })
        })
        .collect()
}

pub async fn reconcile(group: Arc<Group>, ctx: Arc<WalletContext>) -> Result<Action, Error> {
    let name = group.name_any();
    let namespace = group.namespace().unwrap_or_default();
    let client = &ctx.client;
    let api = api_of(client, &*group);
    if group.metadata.deletion_timestamp.is_some() {
        if group.finalizers().iter().any(|f| f == FINALIZER) {
            return retire(&group, &ctx, &api).await;
        }
        return Ok(Action::await_change());
    }
    // Before anything can be charged to it.
    add_finalizer(&api, &*group, FINALIZER).await?;
    ctx.pacer.pace(&format!("{namespace}/{name}")).await;
    let previous = group.status.as_ref().map(|s| s.conditions.as_slice());
    let report = async |standing: Standing, fields: Value| {
        report(
            &api,
            &ctx.recorder,
            &*group,
            MANAGER,
            previous,
            &standing,
            fields,
        )
        .await
    };

    // Dereference: the account holding the namespace.
    let tenancy = Tenancy::load(client).await?;
    let Some(holder) = tenancy.holder(&namespace) else {
        let refusal = Refusal::new("NoAccount", no_account("Group", &name, &namespace));
        report(Err(refusal), json!({"account": null})).await?;
        return Ok(Action::await_change());
    };

    // Validate: what the group asks of its account's capabilities.
    if let Err(refusal) = validate(&group, holder) {
        report(Err(refusal), json!({"account": holder.name_any()})).await?;
        return Ok(Action::await_change());
    }

    // Build and apply: the members' RoleBindings, and none for roles no longer used.
    let bindings: Api<RoleBinding> = Api::namespaced(client.clone(), &namespace);
    let desired = role_bindings(&group);
    for (binding_name, binding) in &desired {
        bindings
            .patch(
                binding_name,
                &PatchParams::apply(MANAGER).force(),
                &Patch::Apply(binding),
            )
            .await?;
    }
    let selector = format!("{GROUP_LABEL}={name}");
    for existing in bindings
        .list(&ListParams::default().labels(&selector))
        .await?
    {
        if !desired.contains_key(&existing.name_any()) {
            bindings
                .delete(&existing.name_any(), &DeleteParams::default())
                .await?;
        }
    }

    // The group's share of the account wallet, as the wallet decides it, decided and written
    // under the wallet's lock: no charge or other allocation comes in between.
    let _wallet = ctx.wallets.lock(&holder.name_any()).await;
    let held = tenancy.claims.held_by(&holder.name_any());
    let id = format!("group/{namespace}/{name}");
    let granted = group.status.as_ref().and_then(|s| s.allocated);
    if let Some(synced) = &ctx.synced {
        synced.wait().await?;
    }
    let mut orders = account::orders_cached(client, &ctx.orders, &held).await?;
    let mut inputs =
        account::wallet_inputs(client, holder, &held, orders.iter().map(|o| &**o)).await?;
    let mut allocation =
        account::allocation(holder, &inputs).map_err(|e| Error::Money(holder.name_any(), e))?;
    if grants_more(&allocation, &id, granted) {
        // A new grant rests on everything the account spent, which a cache may not have
        // seen yet: decide it on a fresh list (under the lock, no charge comes in between).
        orders = account::orders_in(client, &held)
            .await?
            .into_iter()
            .map(Arc::new)
            .collect();
        inputs = account::wallet_inputs(client, holder, &held, orders.iter().map(|o| &**o)).await?;
        allocation =
            account::allocation(holder, &inputs).map_err(|e| Error::Money(holder.name_any(), e))?;
    }
    let decision = allocation.decision(&id);
    let allocated = decision.map_or(Money::ZERO, |d| d.in_force);
    let orders: Vec<&Order> = orders
        .iter()
        .map(|o| &**o)
        .filter(|o| o.namespace().as_deref() == Some(namespace.as_str()))
        .collect();
    let payer = Payer {
        kind: PayerKind::Group,
        name: name.clone(),
        namespace: Some(namespace.clone()),
    };
    let money = |e| Error::Money(holder.name_any(), e);
    // The archive as it is now, not as a cache saw it: its Orders may already be gone.
    let fresh = api.get_metadata(&name).await?;
    let archive = super::order::archive_of(&name, fresh.annotations())?;
    let spent = ledger::spent_by(orders.iter().copied(), &payer, &archive).map_err(money)?;
    let balance = ledger::available(allocated, spent).map_err(money)?;
    let certificates = certificates(orders.iter().copied(), &name);
    let standing = match decision.and_then(|d| d.refused.as_ref()) {
        Some(refused) => Err(Refusal::new(
            "InsufficientFunds",
            format!(
                "Group {name:?} asks for {} {} but Account {:?} can allocate only {} to it; {} is in force",
                refused.wanted,
                holder.spec.currency,
                holder.name_any(),
                refused.available,
                allocated
            ),
        )),
        None => Ok(format!(
            "Group {name:?} is in force with {} member(s)",
            group.spec.members.len()
        )),
    };
    let funded = group.spec.funds.is_some();
    let fields = json!({
        "account": holder.name_any(),
        "allocated": funded.then_some(allocated),
        "spent": funded.then_some(spent),
        "balance": funded.then_some(balance),
        "certificates": certificates,
    });
    report(standing, fields).await?;
    Ok(Action::requeue(Duration::from_secs(300)))
}

/// A deleted group's end: once the charges of its Orders are settled, what it spent (its
/// archive and its live Orders' net charges) moves into its account's archive, under the
/// account's lock, guarded by the account's resourceVersion and keyed by the group's uid so
/// that a retry counts it once; then the group may go. Its Orders, released later into a
/// group that is gone, add nothing.
async fn retire(group: &Group, ctx: &WalletContext, api: &Api<Group>) -> Result<Action, Error> {
    let name = group.name_any();
    let namespace = group.namespace().unwrap_or_default();
    let client = &ctx.client;
    let tenancy = Tenancy::load(client).await?;
    let Some(holder) = tenancy.holder(&namespace) else {
        remove_finalizer(api, group, FINALIZER).await?;
        return Ok(Action::await_change());
    };
    let account_name = holder.name_any();
    let money = |e| Error::Money(account_name.clone(), e);
    let _wallet = ctx.wallets.lock(&account_name).await;
    let payer = Payer {
        kind: PayerKind::Group,
        name: name.clone(),
        namespace: Some(namespace.clone()),
    };
    let orders = account::orders_in(client, std::slice::from_ref(&namespace)).await?;
    let waiting: Vec<String> = unsettled(&orders, &payer)
        .iter()
        .map(|o| o.name_any())
        .collect();
    if !waiting.is_empty() {
        let refusal = Refusal::new(
            "Deleting",
            format!(
                "Group {name:?} is being deleted and waits for the charges of its Orders {} to be issued or refunded",
                waiting.join(", ")
            ),
        );
        let previous = group.status.as_ref().map(|s| s.conditions.as_slice());
        let fields = json!({"account": account_name});
        report(
            api,
            &ctx.recorder,
            group,
            MANAGER,
            previous,
            &Err(refusal),
            fields,
        )
        .await?;
        return Ok(Action::requeue(Duration::from_secs(1)));
    }
    // The Orders first, then the archive: an Order deleted in between is in the archive.
    let fresh = api.get_metadata(&name).await?;
    let mut ledger = Ledger::from_orders(&orders);
    ledger.archive(
        &payer,
        super::order::archive_of(&name, fresh.annotations())?,
    );
    let spent = ledger.spent(&payer).map_err(money)?;
    if !spent.is_zero() {
        let accounts: Api<Account> = Api::all(client.clone());
        let current = accounts.get_metadata(&account_name).await?;
        let mut archive = super::order::archive_of(&account_name, current.annotations())?;
        if archive
            .fold_group(&group.uid().unwrap_or_default(), spent)
            .map_err(money)?
        {
            let patch = json!({"metadata": {
                "resourceVersion": current.resource_version(),
                "annotations": {ARCHIVE_ANNOTATION: archive.to_annotation()},
            }});
            match accounts
                .patch(
                    &account_name,
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await
            {
                Ok(_) => {}
                Err(kube::Error::Api(status)) if status.code == 409 => {
                    return Ok(Action::requeue(Duration::from_millis(200)));
                }
                Err(e) => return Err(e.into()),
            }
            tracing::info!(group = %name, %namespace, account = %account_name, %spent, "deleted group's spending moved to its account");
        }
    }
    remove_finalizer(api, group, FINALIZER).await?;
    Ok(Action::await_change())
}

/// Runs the controller until the stream ends.
pub async fn run(
    client: Client,
    settings: super::Settings,
    wallets: Arc<super::Wallets>,
    orders: super::SharedOrders,
) {
    super::in_each_scope(&settings, |scope| {
        let orders = orders.of(&scope);
        run_in(
            client.clone(),
            settings.clone(),
            scope,
            wallets.clone(),
            orders,
        )
    })
    .await;
}

async fn run_in(
    client: Client,
    settings: super::Settings,
    scope: super::Scope,
    wallets: Arc<super::Wallets>,
    shared_orders: super::cache::SharedWatch<Order>,
) {
    let groups: Api<Group> = super::scoped(&client, &scope);
    let controller = super::cache::controller(groups, watcher::Config::default());
    let store = controller.store();
    // A change to an account (its type, credits, namespaces) or to another group's funds
    // can change every group's standing.
    // An order that moved money or was issued changes its group's spent, balance and count.
    let after_order = |order: Arc<Order>| {
        let moved = order
            .status
            .as_ref()
            .is_some_and(|s| !s.transactions.is_empty() || s.state == Some(OrderState::Issued));
        match (&order.spec.group_ref, moved) {
            (Some(group), true) => {
                vec![
                    kube::runtime::reflector::ObjectRef::<Group>::new(&group.name)
                        .within(&order.namespace().unwrap_or_default()),
                ]
            }
            _ => Vec::new(),
        }
    };
    let bindings = watcher::Config::default().labels(GROUP_LABEL);
    let orders = shared_orders.store();
    let synced = super::cache::Synced::new(vec![shared_orders.listed()]);
    let mut context = WalletContext::new(client.clone(), wallets);
    context.orders = vec![(scope.clone(), orders)];
    context.synced = Some(synced);
    controller
        .owns(super::scoped::<RoleBinding>(&client, &scope), bindings)
        .watches(
            Api::<Account>::all(client.clone()),
            watcher::Config::default(),
            all_of(&store),
        )
        .watches(
            super::scoped::<Group>(&client, &scope),
            watcher::Config::default(),
            all_of(&store),
        )
        .watches_shared_stream(
            shared_orders.subscribe(),
            super::on_change_of(
                |o: &Order| {
                    let issued =
                        o.status.as_ref().and_then(|s| s.state) == Some(OrderState::Issued);
                    (account::money_moved(o), issued)
                },
                after_order,
            ),
        )
        .with_config(settings.controller_config())
        .run(
            super::instrumented(reconcile),
            error_policy,
            Arc::new(context),
        )
        .for_each(|_| async {})
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::GroupSpec;
    use crate::api::group::Member;
    use crate::capabilities::AccountType;

    fn group(funds: Option<&str>, members: Vec<Member>) -> Group {
        let mut group = Group::new(
            "team",
            GroupSpec {
                funds: funds.map(|f| Money::parse(f).unwrap()),
                members,
                ..Default::default()
            },
        );
        group.metadata.namespace = Some("shop".into());
        group.metadata.uid = Some("uid-1".into());
        group
    }

    fn account(account_type: AccountType) -> Account {
        serde_json::from_value(json!({"apiVersion": "certinext.io/v1alpha1", "kind": "Account",
            "metadata": {"name": "corner-shop"}, "spec": {"type": account_type, "namespaces": ["shop"]}}))
        .unwrap()
    }

    fn member(kind: MemberKind, name: &str, role: Role) -> Member {
        Member {
            kind,
            name: name.into(),
            namespace: None,
            role,
        }
    }

    #[test]
    fn a_funded_group_in_a_retail_account_is_refused_with_the_matrix_reason() {
        let refusal =
            validate(&group(Some("10"), vec![]), &account(AccountType::Retail)).unwrap_err();
        assert_eq!(refusal.reason, "CapabilityDenied");
        assert_eq!(
            refusal.message,
            "Group \"team\" requires the GroupFunding capability, which Retail accounts do not have \
             (account \"corner-shop\"): finance is account-level"
        );
        assert!(validate(&group(None, vec![]), &account(AccountType::Retail)).is_ok());
        assert!(
            validate(
                &group(Some("10"), vec![]),
                &account(AccountType::Enterprise)
            )
            .is_ok()
        );
    }

    #[test]
    fn a_deleted_group_waits_only_for_charges_that_may_still_change() {
        let payer = |name: &str| json!({"kind": "Group", "name": name, "namespace": "shop"});
        let order = |name: &str, state: &str, paid_by: &str, transactions: Value| -> Order {
            serde_json::from_value(
                json!({"apiVersion": "certinext.io/v1alpha1", "kind": "Order",
                "metadata": {"name": name, "namespace": "shop"},
                "spec": {"certificateRef": {"name": name}, "revision": 1, "type": "Purchase",
                    "request": "-", "duration": "1h"},
                "status": {"state": state, "payer": payer(paid_by), "transactions": transactions}}),
            )
            .unwrap()
        };
        let charge = json!({"type": "PURCHASE", "amount": "10.00", "at": "2025-01-01T00:00:00Z"});
        let refund = json!({"type": "REFUND", "amount": "10.00", "at": "2025-01-01T00:00:00Z"});
        let orders = [
            order("issued", "Issued", "team", json!([charge])),
            order("charged", "Approved", "team", json!([charge])),
            order("refunded", "Failed", "team", json!([charge, refund])),
            order("waiting", "PendingApproval", "team", json!([])),
            order("other", "Approved", "ops", json!([charge])),
        ];
        let team: Payer = serde_json::from_value(payer("team")).unwrap();
        let names: Vec<String> = unsettled(&orders, &team)
            .iter()
            .map(|o| o.name_any())
            .collect();
        assert_eq!(names, ["charged"]);
    }

    #[test]
    fn members_become_one_binding_per_role_owned_by_the_group() {
        let bindings = role_bindings(&group(
            None,
            vec![
                member(MemberKind::User, "alice", Role::Admin),
                member(MemberKind::Group, "devs", Role::Requester),
                member(MemberKind::ServiceAccount, "ci", Role::Requester),
            ],
        ));
        assert_eq!(
            bindings.keys().collect::<Vec<_>>(),
            ["team-admin", "team-requester"]
        );
        let requester = &bindings["team-requester"];
        assert_eq!(requester["roleRef"]["name"], "certinext-requester");
        assert_eq!(
            requester["subjects"][1],
            json!({"kind": "ServiceAccount", "name": "ci", "namespace": "shop"})
        );
        assert_eq!(requester["metadata"]["ownerReferences"][0]["uid"], "uid-1");
        assert_eq!(
            requester["metadata"]["ownerReferences"][0]["controller"],
            true
        );
        assert_eq!(requester["metadata"]["labels"][GROUP_LABEL], "team");
    }

    #[test]
    fn only_a_new_or_larger_grant_is_decided_on_a_fresh_list() {
        let m = |t: &str| Money::parse(t).unwrap();
        let request = |granted: Option<&str>| crate::billing::wallet::Request {
            id: "group/shop/team",
            amount: m("30"),
            requested_at: 1,
            granted: granted.map(m),
        };
        let decide = |granted: Option<&str>| {
            crate::billing::wallet::allocate(m("100"), m("10"), &[request(granted)]).unwrap()
        };
        assert!(
            grants_more(&decide(None), "group/shop/team", None),
            "a first grant"
        );
        assert!(
            grants_more(&decide(Some("20")), "group/shop/team", Some(m("20"))),
            "an increase"
        );
        assert!(
            !grants_more(&decide(Some("30")), "group/shop/team", Some(m("30"))),
            "in force"
        );
        assert!(
            !grants_more(&decide(None), "group/shop/other", None),
            "another group"
        );
    }
}
