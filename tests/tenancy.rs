//! The tenancy controllers on devcluster: accounts (namespaces held, capabilities, wallet, a
//! contested namespace) and groups (capabilities, funds, members as RoleBindings).

mod support;

use std::time::Duration;

use certinext::api::Account;
use kube::Api;
use kube::runtime::wait::await_condition;
use support::cluster::TestCluster;
use support::wait::{ready, wait_until};

/// Waits for the object's Ready condition, and returns the object and the condition.
async fn wait_ready<K>(api: &Api<K>, name: &str) -> (K, (String, String, String))
where
    K: kube::Resource
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + serde::Serialize
        + Send
        + 'static,
    K::DynamicType: Default,
{
    let object = wait_until(api, name, |o: &K| ready(o).is_some()).await;
    let condition = ready(&object).unwrap_or_default();
    (object, condition)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_enterprise_example_reaches_ready_with_its_wallet() {
    let cluster = TestCluster::with_crds().await;
    let controllers = certinext::controllers::start(&cluster.client, &Default::default());
    let example = std::fs::read_to_string(support::cluster::repo_path("examples/enterprise.yaml"))
        .expect("example");
    certinext::manifests::apply(&cluster.client, &example, "test")
        .await
        .expect("applies");
    let accounts: Api<Account> = Api::all(cluster.client.clone());
    let globex = wait_until(&accounts, "globex", |a| {
        a.status
            .as_ref()
            .and_then(|s| s.wallet.as_ref())
            .is_some_and(|w| w.allocated.to_string() == "3500.00")
    })
    .await;
    assert_eq!(
        ready(&globex).map(|r| (r.0, r.1)),
        Some(("True".into(), "Ready".into()))
    );
    let status = globex.status.expect("status");
    let wallet = status.wallet.expect("wallet");
    assert_eq!(
        (
            wallet.credited.to_string(),
            wallet.allocated.to_string(),
            wallet.balance.to_string()
        ),
        ("7500.00".into(), "3500.00".into(), "4000.00".into())
    );
    assert_eq!(status.namespaces, ["globex-payments", "globex-platform"]);
    assert_eq!(status.observed_generation, Some(1));
    assert!(
        status
            .capabilities
            .iter()
            .all(|c| c.name.as_str() != "SubAccounts")
    );

    // A later account claiming one of globex's namespaces is refused, naming both.
    let intruder = cluster.file(
        "intruder.yaml",
        "apiVersion: certinext.io/v1alpha1
kind: Account
metadata: {name: initrode}
spec:
  type: Retail
  namespaces: [globex-payments, initrode]
",
    );
    cluster
        .kubectl(&["apply", "-f", intruder.to_str().unwrap_or_default()])
        .await;
    let initrode = wait_until(&accounts, "initrode", |a| ready(a).is_some()).await;
    assert_eq!(
        ready(&initrode).map(|r| (r.0, r.1)),
        Some(("False".into(), "NamespaceConflict".into()))
    );
    let message = initrode
        .status
        .as_ref()
        .and_then(|s| s.conditions.first())
        .map(|c| c.message.clone())
        .unwrap_or_default();
    assert!(
        message.contains("globex-payments") && message.contains("globex"),
        "{message}"
    );
    assert_eq!(
        initrode.status.map(|s| s.namespaces).unwrap_or_default(),
        ["initrode"]
    );
    for controller in controllers {
        controller.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_get_their_funds_and_their_members_role_bindings() {
    use certinext::api::Group;
    use k8s_openapi::api::rbac::v1::RoleBinding;
    let cluster = TestCluster::with_crds().await;
    let controllers = certinext::controllers::start(&cluster.client, &Default::default());
    let example = std::fs::read_to_string(support::cluster::repo_path("examples/enterprise.yaml"))
        .expect("example");
    certinext::manifests::apply(&cluster.client, &example, "test")
        .await
        .expect("applies");

    let platform: Api<Group> = Api::namespaced(cluster.client.clone(), "globex-platform");
    let team = wait_until(&platform, "platform-team", |g| {
        ready(g).is_some_and(|r| r.0 == "True")
    })
    .await;
    let status = team.status.expect("status");
    assert_eq!(status.account.as_deref(), Some("globex"));
    assert_eq!(
        status.allocated.map(|m| m.to_string()).as_deref(),
        Some("2000.00")
    );
    assert_eq!(
        status.balance.map(|m| m.to_string()).as_deref(),
        Some("2000.00")
    );

    let bindings: Api<RoleBinding> = Api::namespaced(cluster.client.clone(), "globex-platform");
    let requester = bindings
        .get("platform-team-requester")
        .await
        .expect("the requester binding");
    assert_eq!(requester.role_ref.name, "certinext-requester");
    let subjects: Vec<(String, String)> = requester
        .subjects
        .unwrap_or_default()
        .into_iter()
        .map(|s| (s.kind, s.name))
        .collect();
    assert_eq!(
        subjects,
        [
            ("Group".into(), "platform-engineers".into()),
            (
                "ServiceAccount".into(),
                "argocd-application-controller".into()
            )
        ]
    );
    assert!(bindings.get("platform-team-admin").await.is_ok());

    // A group asking for more than the wallet holds is refused, naming what it could have.
    let greedy = cluster.file(
        "greedy.yaml",
        "apiVersion: certinext.io/v1alpha1
kind: Group
metadata: {name: greedy, namespace: globex-platform}
spec: {funds: \"5000.00\"}
",
    );
    cluster
        .kubectl(&["apply", "-f", greedy.to_str().unwrap_or_default()])
        .await;
    let greedy = wait_until(&platform, "greedy", |g| ready(g).is_some()).await;
    let (status, reason, message) = ready(&greedy).expect("a Ready condition");
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("False", "InsufficientFunds")
    );
    assert!(
        message.contains("5000.00") && message.contains("4000.00"),
        "{message}"
    );

    // Deleting a group takes its RoleBindings with it.
    platform
        .delete("platform-team", &Default::default())
        .await
        .expect("delete");
    let gone = await_condition(
        bindings.clone(),
        "platform-team-admin",
        |b: Option<&RoleBinding>| b.is_none(),
    );
    tokio::time::timeout(Duration::from_secs(30), gone)
        .await
        .expect("bindings collected")
        .expect("watch");
    for controller in controllers {
        controller.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_funded_group_in_a_retail_account_is_refused() {
    use certinext::api::Group;
    let cluster = TestCluster::with_crds().await;
    let controllers = certinext::controllers::start(&cluster.client, &Default::default());
    let example = std::fs::read_to_string(support::cluster::repo_path("examples/retail.yaml"))
        .expect("example");
    certinext::manifests::apply(&cluster.client, &example, "test")
        .await
        .expect("applies");
    let groups: Api<Group> = Api::namespaced(cluster.client.clone(), "corner-shop");
    let staff = wait_until(&groups, "staff", |g| ready(g).is_some()).await;
    assert_eq!(
        ready(&staff).map(|r| r.0),
        Some("True".into()),
        "an unfunded group is fine"
    );
    let funded = cluster.file(
        "funded.yaml",
        "apiVersion: certinext.io/v1alpha1
kind: Group
metadata: {name: marketing, namespace: corner-shop}
spec: {funds: \"10.00\"}
",
    );
    cluster
        .kubectl(&["apply", "-f", funded.to_str().unwrap_or_default()])
        .await;
    let marketing = wait_until(&groups, "marketing", |g| ready(g).is_some()).await;
    let (status, reason, message) = ready(&marketing).expect("a Ready condition");
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("False", "CapabilityDenied")
    );
    assert_eq!(
        message,
        "Group \"marketing\" requires the GroupFunding capability, which Retail accounts do not have (account \"corner-shop\"): finance is account-level"
    );
    for controller in controllers {
        controller.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reseller_price_lists_and_products_are_checked() {
    use certinext::api::{PriceList, Product};
    let cluster = TestCluster::with_crds().await;
    let controllers = certinext::controllers::start(&cluster.client, &Default::default());
    let example = std::fs::read_to_string(support::cluster::repo_path("examples/reseller.yaml"))
        .expect("example");
    certinext::manifests::apply(&cluster.client, &example, "test")
        .await
        .expect("applies");

    let lists: Api<PriceList> = Api::namespaced(cluster.client.clone(), "sslhub");
    let (gold, ready) = wait_ready(&lists, "partner-gold").await;
    assert_eq!(ready.0, "True", "{ready:?}");
    let status = gold.status.expect("status");
    assert_eq!(status.item_count, Some(2));
    assert_eq!(status.sub_accounts, ["initech"]);

    let products: Api<Product> = Api::namespaced(cluster.client.clone(), "sslhub");
    let (basic, ready) = wait_ready(&products, "basic-tls").await;
    assert_eq!(ready.0, "True", "{ready:?}");
    assert_eq!(
        basic.status.and_then(|s| s.issuer).as_deref(),
        Some("sslhub/sslhub-issuing")
    );

    let stray = cluster.file(
        "stray.yaml",
        "apiVersion: certinext.io/v1alpha1
kind: Product
metadata: {name: stray, namespace: sslhub}
spec:
  issuerRef: {name: someone-elses-ca, namespace: kube-system}
  template: ServerTLS
  price: \"1.00\"
",
    );
    cluster
        .kubectl(&["apply", "-f", stray.to_str().unwrap_or_default()])
        .await;
    let (_, ready) = wait_ready(&products, "stray").await;
    assert_eq!(
        (ready.0.as_str(), ready.1.as_str()),
        ("False", "IssuerNotAllowed"),
        "{ready:?}"
    );
    for controller in controllers {
        controller.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_price_list_in_an_enterprise_account_is_refused() {
    use certinext::api::PriceList;
    let cluster = TestCluster::with_crds().await;
    let controllers = certinext::controllers::start(&cluster.client, &Default::default());
    let example = std::fs::read_to_string(support::cluster::repo_path("examples/enterprise.yaml"))
        .expect("example");
    certinext::manifests::apply(&cluster.client, &example, "test")
        .await
        .expect("applies");
    let list = cluster.file(
        "gold.yaml",
        "apiVersion: certinext.io/v1alpha1
kind: PriceList
metadata: {name: gold, namespace: globex-platform}
spec:
  currency: USD
  items: [{product: internal-server, price: \"1.00\"}]
",
    );
    cluster
        .kubectl(&["apply", "-f", list.to_str().unwrap_or_default()])
        .await;
    let lists: Api<PriceList> = Api::namespaced(cluster.client.clone(), "globex-platform");
    let (_, ready) = wait_ready(&lists, "gold").await;
    assert_eq!(
        (ready.0.as_str(), ready.1.as_str()),
        ("False", "CapabilityDenied")
    );
    assert_eq!(
        ready.2,
        "PriceList \"gold\" requires the PriceLists capability, which Enterprise accounts do not have (account \"globex\"): only Reseller accounts have it"
    );
    for controller in controllers {
        controller.abort();
    }
}

/// The wallet figures of an account: credited, allocated, balance.
fn wallet(account: &Account) -> Option<(String, String, String)> {
    let wallet = account.status.as_ref()?.wallet.as_ref()?;
    Some((
        wallet.credited.to_string(),
        wallet.allocated.to_string(),
        wallet.balance.to_string(),
    ))
}

fn figures(credited: &str, allocated: &str, balance: &str) -> Option<(String, String, String)> {
    Some((credited.into(), allocated.into(), balance.into()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reseller_example_reaches_ready_and_sub_accounts_come_and_go() {
    use certinext::api::{Certificate, Group, PriceList, Product, SubAccount};
    use k8s_openapi::api::rbac::v1::RoleBinding;
    let cluster = TestCluster::with_crds().await;
    let controllers = certinext::controllers::start(&cluster.client, &Default::default());
    let example = support::cluster::repo_path("examples/reseller.yaml");
    cluster.kubectl(&["apply", "-f", &example]).await;

    // The wallet figures the example's numbers imply: 10000 credited; 1000 to the sales
    // group and 500 + 200 to the sub-accounts. hooli-shop's storefront is approved
    // automatically: its 20.00 may be spent before the wallet is first figured.
    let accounts: Api<Account> = Api::all(cluster.client.clone());
    for (name, expected) in [
        ("sslhub", vec![figures("10000.00", "1700.00", "8300.00")]),
        ("initech", vec![figures("500.00", "0.00", "500.00")]),
        (
            "hooli-shop",
            vec![
                figures("200.00", "0.00", "200.00"),
                figures("200.00", "0.00", "180.00"),
            ],
        ),
    ] {
        let account = wait_until(&accounts, name, move |a| {
            expected.contains(&wallet(a)) && ready(a).is_some_and(|r| r.0 == "True")
        })
        .await;
        let status = account.status.expect("status");
        if name != "sslhub" {
            assert_eq!(status.parent.as_deref(), Some("sslhub"));
            assert_eq!(
                status.wallet.and_then(|w| w.funded),
                account.spec.credits.is_empty().then(|| {
                    certinext::billing::Money::parse(if name == "initech" { "500" } else { "200" })
                        .expect("money")
                })
            );
        }
    }
    let initech = accounts.get("initech").await.expect("the child account");
    assert_eq!(initech.spec.account_type.to_string(), "Enterprise");
    assert_eq!(initech.spec.namespaces, ["initech"]);
    assert_eq!(initech.spec.domains[0].name, "initech.example");

    let subs: Api<SubAccount> = Api::namespaced(cluster.client.clone(), "sslhub");
    // A sub-account shows its account's balance: hooli-shop's, less the storefront once spent.
    for (name, funds, balances) in [
        ("initech", "500.00", &["500.00"][..]),
        ("hooli-shop", "200.00", &["200.00", "180.00"][..]),
    ] {
        let sub = wait_until(&subs, name, move |s| {
            let balance = s.status.as_ref().and_then(|s| s.balance);
            ready(s).is_some_and(|r| r.0 == "True")
                && balance.is_some_and(|b| balances.contains(&b.to_string().as_str()))
        })
        .await;
        let status = sub.status.expect("status");
        assert_eq!(status.account.as_deref(), Some(name));
        assert_eq!(
            status.allocated.map(|m| m.to_string()).as_deref(),
            Some(funds)
        );
    }
    let (_, condition) = wait_ready(
        &Api::<Group>::namespaced(cluster.client.clone(), "sslhub"),
        "sales",
    )
    .await;
    assert_eq!(condition.0, "True", "{condition:?}");
    let (_, condition) = wait_ready(
        &Api::<PriceList>::namespaced(cluster.client.clone(), "sslhub"),
        "partner-gold",
    )
    .await;
    assert_eq!(condition.0, "True", "{condition:?}");
    for product in ["basic-tls", "client-auth"] {
        let (_, condition) = wait_ready(
            &Api::<Product>::namespaced(cluster.client.clone(), "sslhub"),
            product,
        )
        .await;
        assert_eq!(condition.0, "True", "{condition:?}");
    }

    // The reseller's admins may approve the customer's orders, and nobody else is bound.
    let bindings: Api<RoleBinding> = Api::namespaced(cluster.client.clone(), "initech");
    let approvers = bindings
        .get("certinext-reseller-approvers")
        .await
        .expect("the approvers' binding");
    assert_eq!(approvers.role_ref.name, "certinext-approver");
    let subjects: Vec<String> = approvers
        .subjects
        .unwrap_or_default()
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(subjects, ["partner-admin@sslhub.example"]);
    let owner = &approvers.metadata.owner_references.unwrap_or_default()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str()),
        ("Account", "initech")
    );

    // kubectl shows type, balance and readiness.
    let table = cluster
        .kubectl(&[
            "get",
            "accounts,groups,subaccounts,pricelists,products",
            "-A",
        ])
        .await;
    let row = |needle: &str| {
        table
            .lines()
            .find(|l| {
                l.split_whitespace()
                    .any(|w| w == needle || w.ends_with(&format!("/{needle}")))
            })
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .unwrap_or_else(|| panic!("no row for {needle} in\n{table}"))
    };
    let sslhub = row("sslhub");
    assert!(
        table.contains("TYPE") && table.contains("BALANCE") && table.contains("READY"),
        "{table}"
    );
    assert!(
        sslhub.contains(&"Reseller") && sslhub.contains(&"8300.00") && sslhub.contains(&"True"),
        "{sslhub:?}"
    );
    let hooli = row("subaccount.certinext.io/hooli-shop");
    assert!(
        hooli.contains(&"Retail") && hooli.contains(&"200.00") && hooli.contains(&"True"),
        "{hooli:?}"
    );

    // Deleting a sub-account deletes its account, which waits for the objects in its
    // namespaces to go first and says so.
    subs.delete("hooli-shop", &Default::default())
        .await
        .expect("delete");
    let blocked = wait_until(&accounts, "hooli-shop", |a| {
        ready(a).is_some_and(|r| r.1 == "DeletionBlocked")
    })
    .await;
    let message = ready(&blocked).map(|r| r.2).unwrap_or_default();
    assert!(
        message.contains("Certificate hooli-shop/storefront"),
        "{message}"
    );
    let (sub, condition) = wait_ready(&subs, "hooli-shop").await;
    assert!(sub.metadata.deletion_timestamp.is_some());
    assert_eq!(condition.1, "Deleting", "{condition:?}");
    Api::<Certificate>::namespaced(cluster.client.clone(), "hooli-shop")
        .delete("storefront", &Default::default())
        .await
        .expect("delete the certificate");
    for gone in [
        tokio::time::timeout(
            Duration::from_secs(30),
            await_condition(accounts.clone(), "hooli-shop", |a: Option<&Account>| {
                a.is_none()
            }),
        )
        .await
        .is_ok(),
        tokio::time::timeout(
            Duration::from_secs(30),
            await_condition(subs.clone(), "hooli-shop", |s: Option<&SubAccount>| {
                s.is_none()
            }),
        )
        .await
        .is_ok(),
    ] {
        assert!(gone, "the sub-account and its account are deleted");
    }
    // Its allocation returns to the reseller's wallet.
    wait_until(&accounts, "sslhub", |a| {
        wallet(a) == figures("10000.00", "1500.00", "8500.00")
    })
    .await;
    for controller in controllers {
        controller.abort();
    }
}

/// What the controllers must decide for an object in each account type's namespace.
enum Expect {
    Ready,
    Refused(&'static str, &'static str),
}
use Expect::{Ready, Refused};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_capability_matrix_is_enforced_for_every_account_type() {
    let _ = tracing_subscriber::fmt().with_env_filter("warn").try_init();
    use certinext::api::{Group, PriceList, Product, SubAccount};
    let cluster = TestCluster::with_crds().await;
    let controllers = certinext::controllers::start(&cluster.client, &Default::default());
    let mut setup = String::new();
    for (name, kind) in [
        ("res", "Reseller"),
        ("ent", "Enterprise"),
        ("ret", "Retail"),
    ] {
        setup.push_str(&format!(
            "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {name}}}\n---
apiVersion: certinext.io/v1alpha1\nkind: Account\nmetadata: {{name: {name}}}
spec: {{type: {kind}, namespaces: [{name}], credits: [{{id: c1, amount: \"1000.00\"}}], domains: [{{name: {name}.example}}]}}\n---
apiVersion: certinext.io/v1alpha1\nkind: PrivateCA\nmetadata: {{name: ca, namespace: {name}}}
spec: {{subject: {{commonName: {name} CA}}}}\n---\n"
        ));
    }
    certinext::manifests::apply(&cluster.client, &setup, "test")
        .await
        .expect("accounts");

    // One row per cell the tenancy controllers enforce: (capability, object, expected for
    // Reseller, Enterprise, Retail). Written from DESIGN.md §3, not from the code's table.
    let funding = Refused(
        "CapabilityDenied",
        "requires the GroupFunding capability, which Retail accounts do not have",
    );
    let rows: Vec<(&str, &str, [Expect; 3])> = vec![
        (
            "GroupManagement",
            "kind: Group\nmetadata: {name: plain}\nspec: {}",
            [Ready, Ready, Ready],
        ),
        (
            "GroupFunding",
            "kind: Group\nmetadata: {name: funded}\nspec: {funds: \"10.00\"}",
            [Ready, Ready, funding],
        ),
        (
            "UserManagement",
            "kind: Group\nmetadata: {name: staffed}\nspec: {members: [{kind: User, name: alice, role: Admin}]}",
            [Ready, Ready, Ready],
        ),
        (
            "CustomProducts",
            "kind: Product\nmetadata: {name: tls}\nspec: {issuerRef: {name: ca}, template: ServerTLS, price: \"1.00\"}",
            [Ready, Ready, Ready],
        ),
        (
            "PriceLists",
            "kind: PriceList\nmetadata: {name: gold}\nspec: {currency: USD, items: [{product: tls, price: \"0.50\"}]}",
            [
                Ready,
                Refused(
                    "CapabilityDenied",
                    "requires the PriceLists capability, which Enterprise accounts do not have",
                ),
                Refused(
                    "CapabilityDenied",
                    "requires the PriceLists capability, which Retail accounts do not have",
                ),
            ],
        ),
        (
            "SubAccounts",
            "kind: SubAccount\nmetadata: {name: customer}\nspec: {type: Retail, namespaces: [NS-customer], funds: \"5.00\"}",
            [
                Ready,
                Refused(
                    "CapabilityDenied",
                    "requires the SubAccounts capability, which Enterprise accounts do not have",
                ),
                Refused(
                    "CapabilityDenied",
                    "requires the SubAccounts capability, which Retail accounts do not have",
                ),
            ],
        ),
    ];
    for (_, object, _) in &rows {
        for namespace in ["res", "ent", "ret"] {
            let manifest = format!(
                "apiVersion: certinext.io/v1alpha1\n{}\n",
                object.replace("NS", namespace).replace(
                    "metadata: {name: ",
                    &format!("metadata: {{namespace: {namespace}, name: ")
                )
            );
            certinext::manifests::apply(&cluster.client, &manifest, "test")
                .await
                .unwrap_or_else(|e| panic!("{manifest}: {e}"));
        }
    }
    for (capability, object, expected) in &rows {
        let kind = object
            .lines()
            .next()
            .unwrap_or_default()
            .trim_start_matches("kind: ");
        let name = object
            .split("metadata: {name: ")
            .nth(1)
            .and_then(|rest| rest.split('}').next())
            .unwrap_or_default();
        for (namespace, expect) in ["res", "ent", "ret"].into_iter().zip(expected) {
            let condition = match kind {
                "Group" => {
                    wait_ready(
                        &Api::<Group>::namespaced(cluster.client.clone(), namespace),
                        name,
                    )
                    .await
                    .1
                }
                "Product" => {
                    wait_ready(
                        &Api::<Product>::namespaced(cluster.client.clone(), namespace),
                        name,
                    )
                    .await
                    .1
                }
                "PriceList" => {
                    wait_ready(
                        &Api::<PriceList>::namespaced(cluster.client.clone(), namespace),
                        name,
                    )
                    .await
                    .1
                }
                "SubAccount" => {
                    let api = Api::<SubAccount>::namespaced(cluster.client.clone(), namespace);
                    // A sub-account is Ready once its account is: wait past the first status.
                    wait_until(&api, name, |s| {
                        ready(s).is_some_and(|r| r.1 != "AccountNotReady")
                    })
                    .await;
                    wait_ready(&api, name).await.1
                }
                other => panic!("no row kind {other}"),
            };
            let cell = format!("{capability} for {kind} {namespace}/{name}");
            match expect {
                Ready => assert_eq!(condition.0, "True", "{cell}: {condition:?}"),
                Refused(reason, message) => {
                    assert_eq!(
                        (condition.0.as_str(), condition.1.as_str()),
                        ("False", *reason),
                        "{cell}: {condition:?}"
                    );
                    assert!(
                        condition.2.contains(message)
                            && condition.2.contains(&format!("(account \"{namespace}\")")),
                        "{cell}: {}",
                        condition.2
                    );
                    // Every refusal is also a Warning Event on the object.
                    let events = cluster
                        .kubectl(&[
                            "get",
                            "events",
                            "-n",
                            namespace,
                            "--field-selector",
                            &format!(
                                "involvedObject.name={name},involvedObject.kind={kind},type=Warning"
                            ),
                            "-o",
                            "jsonpath={.items[*].reason}",
                        ])
                        .await;
                    assert!(
                        events.contains(reason),
                        "{cell}: no Warning Event, got {events:?}"
                    );
                }
            }
        }
    }

    // A refused sub-account leaves nothing behind.
    let accounts: Api<Account> = Api::all(cluster.client.clone());
    assert!(
        accounts
            .get_opt("ent-customer")
            .await
            .expect("get")
            .is_none()
    );
    assert!(
        accounts
            .get_opt("res-customer")
            .await
            .expect("get")
            .is_some()
    );

    // A sub-account of type Reseller is refused by the API server itself: no nesting.
    let nested = cluster.file(
        "nested.yaml",
        "apiVersion: certinext.io/v1alpha1\nkind: SubAccount\nmetadata: {name: nested, namespace: res}\nspec: {type: Reseller, namespaces: [nested]}\n",
    );
    let refused = cluster
        .kubectl_fails(&["apply", "-f", nested.to_str().unwrap_or_default()])
        .await;
    assert!(refused.contains("sub-accounts do not nest"), "{refused}");
    for controller in controllers {
        controller.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allocations_beyond_the_balance_are_refused_and_an_overdrawn_wallet_blocks_new_ones() {
    use certinext::api::Group;
    let cluster = TestCluster::with_crds().await;
    let controllers = certinext::controllers::start(&cluster.client, &Default::default());
    let account = |credits: &str| {
        format!(
            "apiVersion: v1\nkind: Namespace\nmetadata: {{name: acme}}\n---
apiVersion: certinext.io/v1alpha1\nkind: Account\nmetadata: {{name: acme}}
spec: {{type: Enterprise, namespaces: [acme], credits: [{credits}]}}\n"
        )
    };
    let group = |name: &str, funds: &str| {
        format!(
            "apiVersion: certinext.io/v1alpha1\nkind: Group\nmetadata: {{name: {name}, namespace: acme}}\nspec: {{funds: \"{funds}\"}}\n"
        )
    };
    let both = "{id: a, amount: \"1000.00\"}, {id: b, amount: \"500.00\"}";
    certinext::manifests::apply(&cluster.client, &account(both), "test")
        .await
        .expect("account");
    let groups: Api<Group> = Api::namespaced(cluster.client.clone(), "acme");
    certinext::manifests::apply(&cluster.client, &group("first", "1200.00"), "test")
        .await
        .expect("group");
    let (_, condition) = wait_ready(&groups, "first").await;
    assert_eq!(condition.0, "True", "{condition:?}");

    // Beyond the balance: refused, naming what is left.
    certinext::manifests::apply(&cluster.client, &group("second", "400.00"), "test")
        .await
        .expect("group");
    let (second, condition) = wait_ready(&groups, "second").await;
    assert_eq!(condition.1, "InsufficientFunds", "{condition:?}");
    assert!(
        condition.2.contains("400.00") && condition.2.contains("300.00"),
        "{}",
        condition.2
    );
    assert_eq!(
        second
            .status
            .and_then(|s| s.allocated)
            .map(|m| m.to_string())
            .as_deref(),
        Some("0.00")
    );

    // Removing a credit overdraws the wallet: the account says so, the first group keeps
    // its allocation, and a new group gets nothing.
    certinext::manifests::apply(
        &cluster.client,
        &account("{id: a, amount: \"1000.00\"}"),
        "test",
    )
    .await
    .expect("account");
    let accounts: Api<Account> = Api::all(cluster.client.clone());
    let acme = wait_until(&accounts, "acme", |a| {
        ready(a).is_some_and(|r| r.1 == "Overdrawn")
    })
    .await;
    assert_eq!(wallet(&acme), figures("1000.00", "1200.00", "-200.00"));
    certinext::manifests::apply(&cluster.client, &group("third", "10.00"), "test")
        .await
        .expect("group");
    let (_, condition) = wait_ready(&groups, "third").await;
    assert_eq!(condition.1, "InsufficientFunds", "{condition:?}");
    let first = groups.get("first").await.expect("first");
    assert_eq!(ready(&first).map(|r| r.0).as_deref(), Some("True"));
    assert_eq!(
        first
            .status
            .and_then(|s| s.allocated)
            .map(|m| m.to_string())
            .as_deref(),
        Some("1200.00")
    );
    for controller in controllers {
        controller.abort();
    }
}
