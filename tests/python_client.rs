//! The Python Kubernetes client (`kubernetes` on PyPI), a third real client, against
//! devcluster: list, create, watch and select a custom resource.

mod support;

use support::cluster::{TestCluster, repo_path};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_client_lists_creates_and_watches_certificates() {
    let cluster = TestCluster::with_crds().await;
    certinext::manifests::apply(&cluster.client, certinext::dev::QUICKSTART, "test")
        .await
        .expect("the quickstart applies");
    let python = support::python::tool("python");
    let output = tokio::process::Command::new(python)
        .arg(repo_path("tests/python/custom_resources.py"))
        .arg(cluster.cluster.kubeconfig_path())
        .arg("acme-web")
        .output()
        .await
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let steps: Vec<&str> = stdout
        .lines()
        .map(|l| l.split_whitespace().next().unwrap_or_default())
        .collect();
    assert_eq!(
        steps,
        ["listed", "created", "watched", "selected"],
        "{stdout}"
    );
    assert!(stdout.starts_with("listed 2 at "), "{stdout}");
}
