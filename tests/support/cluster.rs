//! A devcluster per test, with the real `kubectl` and a kube-rs client pointed at it.

use std::path::PathBuf;
use std::process::Output;
use std::time::Duration;

use devcluster::{Config, DevCluster};
use tokio::process::Command;

pub struct TestCluster {
    pub cluster: DevCluster,
    pub client: kube::Client,
    home: tempfile::TempDir,
}

impl TestCluster {
    /// A fresh cluster with nothing installed.
    pub async fn start() -> Self {
        Self::start_with(Config::default()).await
    }

    pub async fn start_with(config: Config) -> Self {
        let cluster = DevCluster::start(config).await.expect("devcluster starts");
        let client = certinext::dev::client_for(&cluster)
            .await
            .expect("a client");
        let home = tempfile::tempdir().expect("a home for kubectl's cache");
        TestCluster {
            cluster,
            client,
            home,
        }
    }

    /// A fresh cluster with the certinext CRDs and the operator's namespace installed.
    pub async fn with_crds() -> Self {
        let cluster = Self::start().await;
        certinext::dev::install(&cluster.client)
            .await
            .expect("CRDs install");
        cluster
    }

    /// `kubectl ARGS` against this cluster, with its own cache.
    pub fn kubectl_command(&self, args: &[&str]) -> Command {
        let mut command = Command::new("kubectl");
        command
            .args(args)
            .env("KUBECONFIG", self.cluster.kubeconfig_path())
            .env("HOME", self.home.path())
            .env_remove("KUBECTL_EXTERNAL_DIFF")
            .kill_on_drop(true);
        command
    }

    /// Runs kubectl to completion.
    pub async fn kubectl_output(&self, args: &[&str]) -> Output {
        let run = self.kubectl_command(args).output();
        tokio::time::timeout(Duration::from_secs(60), run)
            .await
            .unwrap_or_else(|_| panic!("kubectl {args:?} did not finish"))
            .expect("kubectl runs")
    }

    /// Runs kubectl and returns its stdout, failing the test if it fails.
    pub async fn kubectl(&self, args: &[&str]) -> String {
        let output = self.kubectl_output(args).await;
        assert!(
            output.status.success(),
            "kubectl {args:?} failed:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Runs kubectl expecting failure; returns its stderr.
    pub async fn kubectl_fails(&self, args: &[&str]) -> String {
        let output = self.kubectl_output(args).await;
        assert!(
            !output.status.success(),
            "kubectl {args:?} should have failed:\n{}",
            String::from_utf8_lossy(&output.stdout)
        );
        String::from_utf8_lossy(&output.stderr).into_owned()
    }

    /// Writes `contents` to a file in the test's directory and returns its path.
    pub fn file(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.home.path().join(name);
        std::fs::write(&path, contents).expect("write a manifest");
        path
    }
}

/// The repository's path of `relative`.
pub fn repo_path(relative: &str) -> String {
    format!("{}/{relative}", env!("CARGO_MANIFEST_DIR"))
}

/// Polls `check` until it returns Some, for at most 30 s.
pub async fn eventually<T, F, Fut>(what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    eventually_within(what, Duration::from_secs(30), check).await
}

/// Polls `check` until it returns Some, for at most `limit`.
pub async fn eventually_within<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
