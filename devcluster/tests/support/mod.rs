//! What the devcluster test suites share: a cluster and a kube-rs client for it.
#![allow(dead_code)]

use devcluster::{Config, DevCluster};
use kube::Client;

/// A kube-rs client from the cluster's kubeconfig.
pub async fn client(cluster: &DevCluster) -> Client {
    let kubeconfig =
        kube::config::Kubeconfig::from_yaml(cluster.kubeconfig()).expect("kubeconfig parses");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .expect("kubeconfig loads");
    Client::try_from(config).expect("client")
}

/// A cluster started with `config`, and a client for it.
pub async fn start(config: Config) -> (DevCluster, Client) {
    let cluster = DevCluster::start(config).await.expect("devcluster starts");
    let client = client(&cluster).await;
    (cluster, client)
}
