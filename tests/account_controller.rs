//! The Account controller on devcluster: namespaces held, capabilities, wallet figures, and
//! a contested namespace.

mod support;

use std::time::Duration;

use certinext::api::Account;
use kube::Api;
use kube::runtime::wait::await_condition;
use support::cluster::TestCluster;

async fn wait_for(api: &Api<Account>, name: &str, check: impl Fn(&Account) -> bool) -> Account {
    let condition = move |account: Option<&Account>| account.is_some_and(&check);
    tokio::time::timeout(
        Duration::from_secs(30),
        await_condition(api.clone(), name, condition),
    )
    .await
    .unwrap_or_else(|_| panic!("Account {name} did not reach the expected status"))
    .expect("watch")
    .expect("the account exists")
}

fn ready(account: &Account) -> Option<(String, String)> {
    account
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| (c.status.clone(), c.reason.clone()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_enterprise_example_reaches_ready_with_its_wallet() {
    let cluster = TestCluster::with_crds().await;
    let controllers = certinext::controllers::start(&cluster.client);
    let example = std::fs::read_to_string(support::cluster::repo_path("examples/enterprise.yaml"))
        .expect("example");
    certinext::manifests::apply(&cluster.client, &example, "test")
        .await
        .expect("applies");
    let accounts: Api<Account> = Api::all(cluster.client.clone());
    let globex = wait_for(&accounts, "globex", |a| {
        a.status
            .as_ref()
            .and_then(|s| s.wallet.as_ref())
            .is_some_and(|w| w.allocated.to_string() == "3500.00")
    })
    .await;
    assert_eq!(ready(&globex), Some(("True".into(), "Ready".into())));
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
    let initrode = wait_for(&accounts, "initrode", |a| ready(a).is_some()).await;
    assert_eq!(
        ready(&initrode),
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
