//! The tenancy controllers on devcluster: accounts (namespaces held, capabilities, wallet, a
//! contested namespace) and groups (capabilities, funds, members as RoleBindings).

mod support;

use std::time::Duration;

use certinext::api::Account;
use kube::Api;
use kube::runtime::wait::await_condition;
use support::cluster::TestCluster;

/// Waits until the object `name` exists and satisfies `check`.
async fn wait_until<K>(api: &Api<K>, name: &str, check: impl Fn(&K) -> bool + Send + 'static) -> K
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + 'static,
    K::DynamicType: Default,
{
    let condition = move |object: Option<&K>| object.is_some_and(&check);
    tokio::time::timeout(
        Duration::from_secs(30),
        await_condition(api.clone(), name, condition),
    )
    .await
    .unwrap_or_else(|_| panic!("{name} did not reach the expected status"))
    .expect("watch")
    .expect("the object exists")
}

/// The Ready condition (status, reason, message) of any certinext object, through its JSON.
fn ready<K: serde::Serialize>(object: &K) -> Option<(String, String, String)> {
    let value = serde_json::to_value(object).ok()?;
    let conditions: Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> =
        serde_json::from_value(value["status"]["conditions"].clone()).ok()?;
    conditions
        .into_iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| (c.status, c.reason, c.message))
}

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
