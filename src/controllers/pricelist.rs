//! The PriceList controller: Reseller only, one currency, every item a product of the reseller,
//! and which sub-accounts use the list.
//!
//! dereference (the account, its products, the sub-accounts naming the list) → validate
//! (pure) → status.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use kube::api::{Api, ListParams};
use kube::runtime::controller::Action;
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use serde_json::json;

use super::{
    Context, Error, Refusal, Standing, Tenancy, all_of, api_of, error_policy, no_account, report,
};
use crate::api::{Account, PriceList, Product, SubAccount};
use crate::capabilities::{self, Capability};

/// The field manager of the status this controller writes.
pub const MANAGER: &str = "certinext-pricelist-controller";

/// Checks a price list against its account and the products in its namespace. Pure.
pub fn validate(
    list: &PriceList,
    account: &Account,
    products: &BTreeSet<String>,
) -> Result<(), Refusal> {
    let name = list.name_any();
    capabilities::check(
        &account.name_any(),
        account.spec.account_type,
        Capability::PriceLists,
    )
    .map_err(|denial| Refusal::new("CapabilityDenied", denial.for_object("PriceList", &name)))?;
    if list.spec.currency != account.spec.currency {
        return Err(Refusal::new(
            "CurrencyMismatch",
            format!(
                "PriceList {name:?} prices in {} but account {:?} pays in {}",
                list.spec.currency,
                account.name_any(),
                account.spec.currency
            ),
        ));
    }
    let missing: Vec<&str> = list
        .spec
        .items
        .iter()
        .map(|item| item.product.as_str())
        .filter(|product| !products.contains(*product))
        .collect();
    if !missing.is_empty() {
        return Err(Refusal::new(
            "ProductNotFound",
            format!(
                "PriceList {name:?} prices products that do not exist in namespace {:?}: {}",
                list.namespace().unwrap_or_default(),
                missing.join(", ")
            ),
        ));
    }
    Ok(())
}

pub async fn reconcile(list: Arc<PriceList>, ctx: Arc<Context>) -> Result<Action, Error> {
    let name = list.name_any();
    let namespace = list.namespace().unwrap_or_default();
    let client = &ctx.client;
    let api = api_of(client, &*list);
    let previous = list.status.as_ref().map(|s| s.conditions.as_slice());
    let report = async |standing: Standing, fields: serde_json::Value| {
        report(
            &api,
            &ctx.recorder,
            &*list,
            MANAGER,
            previous,
            &standing,
            fields,
        )
        .await
    };
    let tenancy = Tenancy::load(client).await?;
    let Some(account) = tenancy.holder(&namespace) else {
        let refusal = Refusal::new("NoAccount", no_account("PriceList", &name, &namespace));
        report(Err(refusal), json!({})).await?;
        return Ok(Action::await_change());
    };
    let products: BTreeSet<String> = Api::<Product>::namespaced(client.clone(), &namespace)
        .list(&ListParams::default())
        .await?
        .items
        .iter()
        .map(ResourceExt::name_any)
        .collect();
    let users: Vec<String> = Api::<SubAccount>::namespaced(client.clone(), &namespace)
        .list(&ListParams::default())
        .await?
        .items
        .iter()
        .filter(|s| {
            s.spec
                .price_list_ref
                .as_ref()
                .is_some_and(|r| r.name == name)
        })
        .map(ResourceExt::name_any)
        .collect();
    let standing = validate(&list, account, &products).map(|()| {
        format!(
            "PriceList {name:?} prices {} product(s)",
            list.spec.items.len()
        )
    });
    report(
        standing,
        json!({"itemCount": list.spec.items.len(), "subAccounts": users}),
    )
    .await?;
    Ok(Action::requeue(Duration::from_secs(300)))
}

/// Runs the controller until the stream ends.
pub async fn run(client: Client, settings: super::Settings) {
    super::in_each_scope(&settings, |scope| {
        run_in(client.clone(), settings.clone(), scope)
    })
    .await;
}

async fn run_in(client: Client, settings: super::Settings, scope: super::Scope) {
    let controller = super::cache::controller(
        super::scoped::<PriceList>(&client, &scope),
        watcher::Config::default(),
    );
    let store = controller.store();
    controller
        .watches(
            Api::<Account>::all(client.clone()),
            watcher::Config::default(),
            // An account's spec decides; its wallet figures, which move with every charge,
            // do not.
            super::on_spec_change(all_of(&store)),
        )
        .watches(
            super::scoped::<Product>(&client, &scope),
            watcher::Config::default(),
            all_of(&store),
        )
        .watches(
            super::scoped::<SubAccount>(&client, &scope),
            watcher::Config::default(),
            all_of(&store),
        )
        .with_config(settings.controller_config())
        .run(
            super::instrumented(reconcile),
            error_policy,
            Arc::new(Context::new(client)),
        )
        .for_each(|_| async {})
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(account_type: &str) -> Account {
        serde_json::from_value(json!({"apiVersion": "certinext.io/v1alpha1", "kind": "Account",
            "metadata": {"name": "globex"}, "spec": {"type": account_type, "namespaces": ["globex"]}}))
        .unwrap()
    }

    fn list(currency: &str) -> PriceList {
        serde_json::from_value(
            json!({"apiVersion": "certinext.io/v1alpha1", "kind": "PriceList",
            "metadata": {"name": "gold", "namespace": "globex"},
            "spec": {"currency": currency, "items": [{"product": "basic", "price": "9.00"}]}}),
        )
        .unwrap()
    }

    #[test]
    fn only_resellers_price_products() {
        let products = BTreeSet::from(["basic".to_owned()]);
        let refusal = validate(&list("USD"), &account("Enterprise"), &products).unwrap_err();
        assert_eq!(refusal.reason, "CapabilityDenied");
        assert_eq!(
            refusal.message,
            "PriceList \"gold\" requires the PriceLists capability, which Enterprise accounts do not have \
             (account \"globex\"): only Reseller accounts have it"
        );
        assert!(validate(&list("USD"), &account("Reseller"), &products).is_ok());
    }

    #[test]
    fn currency_and_products_must_match_the_reseller() {
        let products = BTreeSet::from(["basic".to_owned()]);
        assert_eq!(
            validate(&list("EUR"), &account("Reseller"), &products)
                .unwrap_err()
                .reason,
            "CurrencyMismatch"
        );
        let refusal = validate(&list("USD"), &account("Reseller"), &BTreeSet::new()).unwrap_err();
        assert_eq!(refusal.reason, "ProductNotFound");
        assert!(refusal.message.ends_with(": basic"), "{}", refusal.message);
    }
}
