//! The Product controller: the CustomProducts capability, the issuer, the allowed domains.
//!
//! dereference (the account, the issuer's account, the PrivateCA) → validate (pure) → status.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use serde_json::json;

use super::{
    Context, Error, Refusal, Standing, Tenancy, all_of, api_of, error_policy, no_account, report,
};
use crate::api::{Account, PrivateCA, Product};
use crate::capabilities::{self, Capability};

/// The field manager of the status this controller writes.
pub const MANAGER: &str = "certinext-product-controller";

/// Whether `name` lies within the account's domains (itself, or below one that includes its
/// subdomains).
pub fn within_domains(account: &Account, name: &str) -> bool {
    account.spec.domains.iter().any(|domain| {
        if domain.include_subdomains {
            crate::pki::dns_name_within(name, &domain.name)
        } else {
            crate::pki::names::normalize(name) == domain.name
        }
    })
}

/// Checks a product against its account, given the account holding the issuer's namespace.
/// Pure.
pub fn validate(
    product: &Product,
    account: &Account,
    issuer_account: Option<&Account>,
) -> Result<(), Refusal> {
    let name = product.name_any();
    capabilities::check(
        &account.name_any(),
        account.spec.account_type,
        Capability::CustomProducts,
    )
    .map_err(|denial| Refusal::new("CapabilityDenied", denial.for_object("Product", &name)))?;
    let issuer = issuer_ref(product);
    let allowed_issuer = issuer_account.is_some_and(|holder| {
        holder.name_any() == account.name_any()
            || account
                .spec
                .parent
                .as_ref()
                .is_some_and(|p| p.account == holder.name_any())
    });
    if !allowed_issuer {
        let holder = issuer_account.map_or("no account".to_owned(), |a| {
            format!("account {:?}", a.name_any())
        });
        return Err(Refusal::new(
            "IssuerNotAllowed",
            format!(
                "Product {name:?}: issuer PrivateCA {issuer:?} belongs to {holder}, not to account {:?} or its parent reseller",
                account.name_any()
            ),
        ));
    }
    for domain in &product.spec.allowed_domains {
        if !within_domains(account, domain) {
            return Err(Refusal::new(
                "DomainNotAllowed",
                format!(
                    "Product {name:?}: allowed domain {domain:?} is not among the domains of account {:?}",
                    account.name_any()
                ),
            ));
        }
    }
    Ok(())
}

/// The issuer as `namespace/name`.
fn issuer_ref(product: &Product) -> String {
    let namespace = product
        .spec
        .issuer_ref
        .namespace
        .clone()
        .or_else(|| product.namespace())
        .unwrap_or_default();
    format!("{namespace}/{}", product.spec.issuer_ref.name)
}

pub async fn reconcile(product: Arc<Product>, ctx: Arc<Context>) -> Result<Action, Error> {
    let name = product.name_any();
    let namespace = product.namespace().unwrap_or_default();
    let client = &ctx.client;
    let api = api_of(client, &*product);
    let previous = product.status.as_ref().map(|s| s.conditions.as_slice());
    let report = async |standing: Standing, fields: serde_json::Value| {
        report(
            &api,
            &ctx.recorder,
            &*product,
            MANAGER,
            previous,
            &standing,
            fields,
        )
        .await
    };
    let tenancy = Tenancy::load(client).await?;
    let Some(account) = tenancy.holder(&namespace) else {
        let refusal = Refusal::new("NoAccount", no_account("Product", &name, &namespace));
        report(Err(refusal), json!({})).await?;
        return Ok(Action::await_change());
    };
    let issuer = issuer_ref(&product);
    let (issuer_namespace, issuer_name) = issuer.split_once('/').unwrap_or_default();
    let issuer_account = tenancy.holder(issuer_namespace).map(|a| &**a);
    let standing = match validate(&product, account, issuer_account) {
        Err(refusal) => Err(refusal),
        Ok(()) => {
            let cas: Api<PrivateCA> = Api::namespaced(client.clone(), issuer_namespace);
            match cas.get_opt(issuer_name).await? {
                None => Err(Refusal::new(
                    "IssuerNotFound",
                    format!("Product {name:?}: issuer PrivateCA {issuer:?} does not exist"),
                )),
                Some(_) => Ok(format!(
                    "Product {name:?} is issued by PrivateCA {issuer:?}"
                )),
            }
        }
    };
    report(
        standing,
        json!({"account": account.name_any(), "issuer": issuer}),
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
        super::scoped::<Product>(&client, &scope),
        watcher::Config::default(),
    );
    let store = controller.store();
    // Accounts and CAs decide every product's standing; there are few of each.
    controller
        .watches(
            Api::<Account>::all(client.clone()),
            watcher::Config::default(),
            // An account's spec decides; its wallet figures, which move with every charge,
            // do not.
            super::on_spec_change(all_of(&store)),
        )
        .watches(
            super::scoped::<PrivateCA>(&client, &scope),
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

    fn account(name: &str, parent: Option<&str>) -> Account {
        let mut spec = json!({"type": "Enterprise", "namespaces": [name], "domains": [{"name": "acme.example"}]});
        if let Some(parent) = parent {
            spec["parent"] = json!({"account": parent, "namespace": parent, "subAccount": name});
        }
        serde_json::from_value(
            json!({"apiVersion": "certinext.io/v1alpha1", "kind": "Account",
            "metadata": {"name": name}, "spec": spec}),
        )
        .unwrap()
    }

    fn product(allowed_domains: &[&str]) -> Product {
        serde_json::from_value(
            json!({"apiVersion": "certinext.io/v1alpha1", "kind": "Product",
            "metadata": {"name": "web", "namespace": "acme"},
            "spec": {"issuerRef": {"name": "ca"}, "template": "ServerTLS", "price": "1.00",
                     "allowedDomains": allowed_domains}}),
        )
        .unwrap()
    }

    #[test]
    fn the_issuer_must_belong_to_the_account_or_its_parent_reseller() {
        let acme = account("acme", None);
        assert!(validate(&product(&[]), &acme, Some(&acme)).is_ok());
        let other = account("other", None);
        let refusal = validate(&product(&[]), &acme, Some(&other)).unwrap_err();
        assert_eq!(refusal.reason, "IssuerNotAllowed");
        assert!(
            refusal.message.contains("account \"other\""),
            "{}",
            refusal.message
        );
        assert_eq!(
            validate(&product(&[]), &acme, None).unwrap_err().reason,
            "IssuerNotAllowed"
        );
        let reseller = account("reseller", None);
        let customer = account("customer", Some("reseller"));
        assert!(validate(&product(&[]), &customer, Some(&reseller)).is_ok());
    }

    #[test]
    fn allowed_domains_lie_within_the_accounts_domains() {
        let acme = account("acme", None);
        assert!(
            validate(
                &product(&["acme.example", "shop.acme.example"]),
                &acme,
                Some(&acme)
            )
            .is_ok()
        );
        let refusal = validate(&product(&["evil.example"]), &acme, Some(&acme)).unwrap_err();
        assert_eq!(refusal.reason, "DomainNotAllowed");
        assert!(
            !within_domains(&acme, "notacme.example"),
            "a suffix is not a subdomain"
        );
    }
}
