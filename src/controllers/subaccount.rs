//! The SubAccount controller: a reseller's customer, backed by a child Account.
//!
//! dereference (the reseller holding the namespace, the child Account, the price list, the
//! reseller's admins) → validate (pure: SubAccounts capability, price list, namespaces,
//! the child's name) → build (pure: the child Account, the approvers' RoleBindings) → apply
//! → funds from the reseller's wallet → status. A finalizer deletes the child Account, which
//! a namespaced SubAccount cannot own.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use serde_json::{Value, json};

use super::group::subject;
use super::{
    Error, Refusal, Standing, Tenancy, WalletContext, account, add_finalizer, all_of, api_of,
    error_policy, no_account, remove_finalizer, report,
};
use crate::api::group::Role;
use crate::api::{Account, Group, PriceList, SubAccount};
use crate::billing::Money;
use crate::capabilities::{self, Capability};
use crate::tenancy::Claims;

/// The field manager of what this controller writes.
pub const MANAGER: &str = "certinext-subaccount-controller";
/// The finalizer that deletes the child Account with the SubAccount.
pub const FINALIZER: &str = "certinext.io/sub-account";
/// The label that marks the approvers' RoleBindings in a sub-account's namespaces.
pub const SUB_ACCOUNT_LABEL: &str = "certinext.io/sub-account";
/// The ClusterRole that lets a reseller's admins approve or deny orders.
pub const APPROVER_ROLE: &str = "certinext-approver";
/// The name of the approvers' RoleBinding in each of a sub-account's namespaces.
pub const APPROVERS_BINDING: &str = "certinext-reseller-approvers";

/// Name of the child Account: `spec.accountName`, or `<reseller>-<sub-account>`.
pub fn child_name(sub: &SubAccount, reseller: &str) -> String {
    sub.spec
        .account_name
        .clone()
        .unwrap_or_else(|| format!("{reseller}-{}", sub.name_any()))
}

/// Whether `account` is the child of `sub`.
pub fn is_child_of(account: &Account, sub: &SubAccount, reseller: &str) -> bool {
    account.spec.parent.as_ref().is_some_and(|p| {
        p.account == reseller
            && Some(&p.namespace) == sub.metadata.namespace.as_ref()
            && Some(&p.sub_account) == sub.metadata.name.as_ref()
    })
}

/// Checks a sub-account against its reseller and the cluster's accounts. Pure.
pub fn validate(
    sub: &SubAccount,
    reseller: &Account,
    existing_child: Option<&Account>,
    claims: &Claims,
    price_lists: &BTreeSet<String>,
) -> Result<(), Refusal> {
    let name = sub.name_any();
    let reseller_name = reseller.name_any();
    capabilities::check(
        &reseller_name,
        reseller.spec.account_type,
        Capability::SubAccounts,
    )
    .map_err(|denial| Refusal::new("CapabilityDenied", denial.for_object("SubAccount", &name)))?;
    if let Some(list) = &sub.spec.price_list_ref {
        capabilities::check(
            &reseller_name,
            reseller.spec.account_type,
            Capability::PriceLists,
        )
        .map_err(|denial| {
            Refusal::new("CapabilityDenied", denial.for_object("SubAccount", &name))
        })?;
        if !price_lists.contains(&list.name) {
            return Err(Refusal::new(
                "PriceListNotFound",
                format!(
                    "SubAccount {name:?}: spec.priceListRef names PriceList {:?}, which does not exist in namespace {:?}",
                    list.name,
                    sub.namespace().unwrap_or_default()
                ),
            ));
        }
    }
    let child = child_name(sub, &reseller_name);
    if let Some(existing) = existing_child
        && !is_child_of(existing, sub, &reseller_name)
    {
        return Err(Refusal::new(
            "AccountExists",
            format!(
                "SubAccount {name:?}: Account {child:?} already exists and does not belong to it; set spec.accountName to another name"
            ),
        ));
    }
    for namespace in &sub.spec.namespaces {
        if let Some(holder) = claims.owner_of(namespace)
            && holder != child
        {
            return Err(Refusal::new(
                "NamespaceConflict",
                format!(
                    "SubAccount {name:?}: namespace {namespace:?} in spec.namespaces is held by Account {holder:?}"
                ),
            ));
        }
    }
    Ok(())
}

/// The child Account the sub-account asks for. Pure. Fields it does not set (credits,
/// notifications) stay the platform admin's to manage.
pub fn child_account(sub: &SubAccount, reseller: &Account) -> Value {
    let reseller_name = reseller.name_any();
    json!({
        "apiVersion": "certinext.io/v1alpha1",
        "kind": "Account",
        "metadata": {
            "name": child_name(sub, &reseller_name),
            "labels": {"app.kubernetes.io/managed-by": "certinext-operator"},
        },
        "spec": {
            "type": sub.spec.account_type,
            "displayName": sub.spec.display_name,
            "namespaces": sub.spec.namespaces,
            "currency": reseller.spec.currency,
            "domains": sub.spec.domains,
            "organizations": sub.spec.organizations,
            "parent": {
                "account": reseller_name,
                "namespace": sub.namespace().unwrap_or_default(),
                "subAccount": sub.name_any(),
            },
        },
    })
}

/// The RoleBindings that let the reseller's admins (the Admin members of its groups) approve
/// orders in each of the child's namespaces, owned by the child Account. Pure.
pub fn approver_bindings(sub: &SubAccount, child: &Account, groups: &[Group]) -> Vec<Value> {
    let mut subjects: Vec<Value> = Vec::new();
    for group in groups {
        let namespace = group.namespace().unwrap_or_default();
        for member in group.spec.members.iter().filter(|m| m.role == Role::Admin) {
            let subject = subject(member, &namespace);
            if !subjects.contains(&subject) {
                subjects.push(subject);
            }
        }
    }
    if subjects.is_empty() {
        return Vec::new();
    }
    let owner = child
        .controller_owner_ref(&())
        .map(|o| serde_json::to_value(o).unwrap_or(Value::Null));
    sub.spec
        .namespaces
        .iter()
        .map(|namespace| {
            json!({
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": {
                    "name": APPROVERS_BINDING,
                    "namespace": namespace,
                    "labels": {SUB_ACCOUNT_LABEL: child.name_any(), "app.kubernetes.io/managed-by": "certinext-operator"},
                    "ownerReferences": owner.iter().collect::<Vec<_>>(),
                },
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": APPROVER_ROLE},
                "subjects": subjects,
            })
        })
        .collect()
}

pub async fn reconcile(sub: Arc<SubAccount>, ctx: Arc<WalletContext>) -> Result<Action, Error> {
    let name = sub.name_any();
    let namespace = sub.namespace().unwrap_or_default();
    let client = &ctx.client;
    let api = api_of(client, &*sub);
    let accounts: Api<Account> = Api::all(client.clone());
    let previous = sub.status.as_ref().map(|s| s.conditions.as_slice());
    let report = async |standing: Standing, fields: Value| {
        report(
            &api,
            &ctx.recorder,
            &*sub,
            MANAGER,
            previous,
            &standing,
            fields,
        )
        .await
    };

    // Dereference: the reseller holding the namespace, and the child it may already have.
    let tenancy = Tenancy::load(client).await?;
    let holder = tenancy.holder(&namespace);
    let child = holder.and_then(|r| tenancy.account(&child_name(&sub, &r.name_any())));
    let own_child = holder
        .zip(child)
        .filter(|(reseller, child)| is_child_of(child, &sub, &reseller.name_any()))
        .map(|(_, child)| child);

    if sub.metadata.deletion_timestamp.is_some() {
        match own_child {
            Some(child) => {
                if child.metadata.deletion_timestamp.is_none() {
                    accounts
                        .delete(&child.name_any(), &DeleteParams::foreground())
                        .await?;
                }
                let refusal = Refusal::new(
                    "Deleting",
                    format!(
                        "SubAccount {name:?} is being deleted and waits for its Account {:?} to be deleted; see that Account's conditions",
                        child.name_any()
                    ),
                );
                report(Err(refusal), json!({"account": child.name_any()})).await?;
                return Ok(Action::requeue(Duration::from_secs(5)));
            }
            None => {
                remove_finalizer(&api, &*sub, FINALIZER).await?;
                return Ok(Action::await_change());
            }
        }
    }

    let Some(reseller) = holder else {
        let refusal = Refusal::new("NoAccount", no_account("SubAccount", &name, &namespace));
        report(Err(refusal), json!({"account": null})).await?;
        return Ok(Action::await_change());
    };
    let price_lists: BTreeSet<String> = Api::<PriceList>::namespaced(client.clone(), &namespace)
        .list_metadata(&ListParams::default())
        .await?
        .items
        .iter()
        .map(ResourceExt::name_any)
        .collect();

    // Validate before anything is created: a refused sub-account leaves nothing behind.
    if let Err(refusal) = validate(
        &sub,
        reseller,
        child.map(|c| &**c),
        &tenancy.claims,
        &price_lists,
    ) {
        report(Err(refusal), json!({"account": null})).await?;
        return Ok(Action::await_change());
    }

    // Apply: the finalizer first, then the child Account and its approvers.
    add_finalizer(&api, &*sub, FINALIZER).await?;
    let child_name = child_name(&sub, &reseller.name_any());
    let child: Account = accounts
        .patch(
            &child_name,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&child_account(&sub, reseller)),
        )
        .await?;
    let mut admins = Vec::new();
    for held in tenancy.claims.held_by(&reseller.name_any()) {
        admins.extend(
            Api::<Group>::namespaced(client.clone(), &held)
                .list(&ListParams::default())
                .await?
                .items,
        );
    }
    // Namespaces are the platform admin's to create; the approvers are bound in each one as
    // it appears.
    let mut missing = Vec::new();
    for target in &sub.spec.namespaces {
        if Api::<Namespace>::all(client.clone())
            .get_metadata_opt(target)
            .await?
            .is_none()
        {
            missing.push(target.as_str());
        }
    }
    let desired: Vec<Value> = approver_bindings(&sub, &child, &admins)
        .into_iter()
        .filter(|b| !missing.contains(&b["metadata"]["namespace"].as_str().unwrap_or_default()))
        .collect();
    for binding in &desired {
        let target = binding["metadata"]["namespace"]
            .as_str()
            .unwrap_or_default();
        Api::<RoleBinding>::namespaced(client.clone(), target)
            .patch(
                APPROVERS_BINDING,
                &PatchParams::apply(MANAGER).force(),
                &Patch::Apply(binding),
            )
            .await?;
    }
    let selector = format!("{SUB_ACCOUNT_LABEL}={child_name}");
    let mut existing_bindings = Vec::new();
    for target in &sub.spec.namespaces {
        if missing.contains(&target.as_str()) {
            continue;
        }
        existing_bindings.extend(
            Api::<RoleBinding>::namespaced(client.clone(), target)
                .list_metadata(&ListParams::default().labels(&selector))
                .await?
                .items,
        );
    }
    for existing in existing_bindings {
        let existing_namespace = existing.namespace().unwrap_or_default();
        let wanted = desired
            .iter()
            .any(|b| b["metadata"]["namespace"] == existing_namespace.as_str());
        if !wanted {
            Api::<RoleBinding>::namespaced(client.clone(), &existing_namespace)
                .delete(&existing.name_any(), &DeleteParams::default())
                .await?;
        }
    }

    // Funds: the sub-account's share of the reseller's wallet, as the wallet decides it,
    // decided and written under the wallet's lock.
    let _wallet = ctx.wallets.lock(&reseller.name_any()).await;
    let held = tenancy.claims.held_by(&reseller.name_any());
    let orders = account::orders_in(client, &held).await?;
    let inputs = account::wallet_inputs(client, reseller, &held, &orders).await?;
    let allocation =
        account::allocation(reseller, &inputs).map_err(|e| Error::Money(reseller.name_any(), e))?;
    let decision = allocation.decision(&format!("subaccount/{namespace}/{name}"));
    let allocated = decision.map_or(Money::ZERO, |d| d.in_force);
    let wallet = child.status.as_ref().and_then(|s| s.wallet.as_ref());
    let child_ready = child
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"));
    let standing = if let Some(refused) = decision.and_then(|d| d.refused.as_ref()) {
        Err(Refusal::new(
            "InsufficientFunds",
            format!(
                "SubAccount {name:?} asks for {} {} but Account {:?} can allocate only {} to it; {} is in force",
                refused.wanted,
                reseller.spec.currency,
                reseller.name_any(),
                refused.available,
                allocated
            ),
        ))
    } else {
        match child_ready {
            Some(c) if c.status == "True" => Ok(format!(
                "SubAccount {name:?} is in force as {} Account {child_name:?}{}",
                sub.spec.account_type,
                if missing.is_empty() {
                    String::new()
                } else {
                    format!("; namespace(s) {} do not exist yet", missing.join(", "))
                }
            )),
            Some(c) => Err(Refusal::new(
                "AccountNotReady",
                format!(
                    "SubAccount {name:?}: its Account {child_name:?} is not in force: {}",
                    c.message
                ),
            )),
            None => Err(Refusal::new(
                "AccountNotReady",
                format!("SubAccount {name:?}: its Account {child_name:?} has no status yet"),
            )),
        }
    };
    let fields = json!({
        "account": child_name,
        "allocated": sub.spec.funds.is_some().then_some(allocated),
        "spent": wallet.map(|w| w.spent),
        "balance": wallet.map(|w| w.balance),
    });
    report(standing, fields).await?;
    Ok(Action::requeue(Duration::from_secs(300)))
}

/// Runs the controller until the stream ends.
pub async fn run(client: Client, settings: super::Settings, wallets: Arc<super::Wallets>) {
    super::in_each_scope(&settings, |scope| {
        run_in(client.clone(), settings.clone(), scope, wallets.clone())
    })
    .await;
}

async fn run_in(
    client: Client,
    settings: super::Settings,
    scope: super::Scope,
    wallets: Arc<super::Wallets>,
) {
    let controller = super::cache::controller(
        super::scoped::<SubAccount>(&client, &scope),
        watcher::Config::default(),
    );
    let store = controller.store();
    // Accounts (the reseller's wallet, the children), groups (funds, admins) and price lists
    // decide every sub-account's standing; there are few sub-accounts.
    controller
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
        .watches(
            super::scoped::<PriceList>(&client, &scope),
            watcher::Config::default(),
            all_of(&store),
        )
        .watches(
            super::scoped::<SubAccount>(&client, &scope),
            watcher::Config::default(),
            all_of(&store),
        )
        .watches(
            Api::<Namespace>::all(client.clone()),
            watcher::Config::default(),
            all_of(&store),
        )
        .owns(
            super::scoped::<RoleBinding>(&client, &scope),
            watcher::Config::default().labels(SUB_ACCOUNT_LABEL),
        )
        .with_config(settings.controller_config())
        .run(
            super::instrumented(reconcile),
            error_policy,
            Arc::new(WalletContext::new(client, wallets)),
        )
        .for_each(|_| async {})
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tenancy::{self, Claim};

    fn account(name: &str, account_type: &str, namespaces: &[&str]) -> Account {
        let mut account: Account = serde_json::from_value(
            json!({"apiVersion": "certinext.io/v1alpha1", "kind": "Account",
            "metadata": {"name": name, "uid": format!("uid-{name}")},
            "spec": {"type": account_type, "namespaces": namespaces, "currency": "EUR"}}),
        )
        .unwrap();
        account.metadata.uid = Some(format!("uid-{name}"));
        account
    }

    fn sub(spec: Value) -> SubAccount {
        serde_json::from_value(
            json!({"apiVersion": "certinext.io/v1alpha1", "kind": "SubAccount",
            "metadata": {"name": "initech", "namespace": "sslhub"}, "spec": spec}),
        )
        .unwrap()
    }

    fn claims(accounts: &[&Account]) -> Claims {
        let claims: Vec<Claim<'_>> = accounts
            .iter()
            .enumerate()
            .map(|(i, a)| Claim {
                account: a.metadata.name.as_deref().unwrap_or_default(),
                created: i as i64,
                namespaces: &a.spec.namespaces,
            })
            .collect();
        tenancy::resolve(&claims)
    }

    #[test]
    fn only_a_reseller_has_sub_accounts() {
        let globex = account("globex", "Enterprise", &["sslhub"]);
        let refusal = validate(
            &sub(json!({"type": "Retail", "namespaces": ["initech"]})),
            &globex,
            None,
            &claims(&[&globex]),
            &BTreeSet::new(),
        )
        .unwrap_err();
        assert_eq!(refusal.reason, "CapabilityDenied");
        assert_eq!(
            refusal.message,
            "SubAccount \"initech\" requires the SubAccounts capability, which Enterprise accounts \
             do not have (account \"globex\"): only Reseller accounts have it"
        );
    }

    #[test]
    fn price_list_namespaces_and_the_child_name_are_checked() {
        let sslhub = account("sslhub", "Reseller", &["sslhub"]);
        let other = account("acme", "Enterprise", &["initech"]);
        let spec = json!({"type": "Enterprise", "namespaces": ["initech"], "priceListRef": {"name": "gold"}});
        let lists = BTreeSet::from(["gold".to_owned()]);

        let refusal = validate(
            &sub(spec.clone()),
            &sslhub,
            None,
            &claims(&[&sslhub]),
            &BTreeSet::new(),
        )
        .unwrap_err();
        assert_eq!(refusal.reason, "PriceListNotFound");

        let refusal = validate(
            &sub(spec.clone()),
            &sslhub,
            None,
            &claims(&[&sslhub, &other]),
            &lists,
        )
        .unwrap_err();
        assert_eq!(refusal.reason, "NamespaceConflict");
        assert!(refusal.message.contains("\"acme\""), "{}", refusal.message);

        let squatter = account("sslhub-initech", "Retail", &[]);
        let refusal = validate(
            &sub(spec.clone()),
            &sslhub,
            Some(&squatter),
            &claims(&[&sslhub]),
            &lists,
        )
        .unwrap_err();
        assert_eq!(refusal.reason, "AccountExists");

        // Its own child holding the namespaces is no conflict.
        let sub = sub(spec);
        let child: Account = serde_json::from_value(child_account(&sub, &sslhub)).unwrap();
        assert_eq!(child.name_any(), "sslhub-initech");
        assert!(
            validate(
                &sub,
                &sslhub,
                Some(&child),
                &claims(&[&sslhub, &child]),
                &lists
            )
            .is_ok()
        );
    }

    #[test]
    fn the_child_account_carries_the_sub_accounts_terms_and_its_parent() {
        let sslhub = account("sslhub", "Reseller", &["sslhub"]);
        let sub = sub(
            json!({"type": "Retail", "accountName": "hooli", "namespaces": ["hooli-shop"],
            "domains": [{"name": "hooli.example"}]}),
        );
        let child = child_account(&sub, &sslhub);
        assert_eq!(child["metadata"]["name"], "hooli");
        assert_eq!(child["spec"]["type"], "Retail");
        assert_eq!(child["spec"]["currency"], "EUR");
        assert_eq!(child["spec"]["namespaces"], json!(["hooli-shop"]));
        assert_eq!(
            child["spec"]["parent"],
            json!({"account": "sslhub", "namespace": "sslhub", "subAccount": "initech"})
        );
        assert!(child["spec"].get("credits").is_none());
        let parsed: Account = serde_json::from_value(child).unwrap();
        assert!(is_child_of(&parsed, &sub, "sslhub"));
        assert!(!is_child_of(&parsed, &sub, "other-reseller"));
    }

    #[test]
    fn the_resellers_admins_may_approve_in_every_child_namespace() {
        let sub = sub(json!({"type": "Enterprise", "namespaces": ["a", "b"]}));
        let child = account("sslhub-initech", "Enterprise", &["a", "b"]);
        let groups: Vec<Group> = vec![
            serde_json::from_value(
                json!({"apiVersion": "certinext.io/v1alpha1", "kind": "Group",
                "metadata": {"name": "sales", "namespace": "sslhub"},
                "spec": {"members": [
                    {"kind": "User", "name": "boss", "role": "Admin"},
                    {"kind": "User", "name": "clerk", "role": "Requester"},
                    {"kind": "ServiceAccount", "name": "bot", "role": "Admin"}]}}),
            )
            .unwrap(),
        ];
        let bindings = approver_bindings(&sub, &child, &groups);
        assert_eq!(bindings.len(), 2);
        assert_eq!(bindings[1]["metadata"]["namespace"], "b");
        assert_eq!(bindings[0]["roleRef"]["name"], APPROVER_ROLE);
        assert_eq!(
            bindings[0]["subjects"],
            json!([
                {"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": "boss"},
                {"kind": "ServiceAccount", "name": "bot", "namespace": "sslhub"}
            ])
        );
        assert_eq!(
            bindings[0]["metadata"]["ownerReferences"][0]["uid"],
            "uid-sslhub-initech"
        );
        assert!(approver_bindings(&sub, &child, &[]).is_empty());
    }
}
