//! `certinext dev`: the main job a newcomer runs.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// Starts `certinext dev` and returns it with the kubeconfig path it printed.
async fn start_dev(extra: &[&str], home: &std::path::Path) -> (Child, String) {
    let kubeconfig = home.join("kubeconfig");
    let mut child = Command::new(env!("CARGO_BIN_EXE_certinext"))
        .args(["dev", "--port", "0", "--kubeconfig"])
        .arg(&kubeconfig)
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("certinext dev starts");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut lines = BufReader::new(stdout).lines();
    let printed = tokio::time::timeout(Duration::from_secs(60), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(path) = line.trim().strip_prefix("export KUBECONFIG=") {
                return path.to_owned();
            }
        }
        panic!("certinext dev ended without printing the kubeconfig");
    })
    .await
    .expect("certinext dev is ready in time");
    // Keep reading what it prints after, as a terminal would.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, printed)
}

async fn kubectl(kubeconfig: &str, home: &std::path::Path, args: &[&str]) -> String {
    let output = Command::new("kubectl")
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .env("HOME", home)
        .output()
        .await
        .expect("kubectl runs");
    assert!(
        output.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

async fn interrupt_and_wait(mut child: Child) {
    let pid = child.id().expect("running").to_string();
    let status = Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .await
        .expect("kill runs");
    assert!(status.success());
    let exit = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .expect("Ctrl-C stops certinext dev")
        .expect("wait");
    assert!(
        exit.success(),
        "certinext dev exits cleanly on Ctrl-C: {exit:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_serves_the_quickstart_to_kubectl_and_stops_on_ctrl_c() {
    let home = tempfile::tempdir().expect("a temporary home");
    let (child, kubeconfig) = start_dev(&[], home.path()).await;
    assert_eq!(
        kubeconfig,
        home.path().join("kubeconfig").display().to_string()
    );
    let certificates = kubectl(
        &kubeconfig,
        home.path(),
        &[
            "get",
            "certificates.certinext.io",
            "-n",
            "acme-web",
            "-o",
            "name",
        ],
    )
    .await;
    assert_eq!(
        certificates.lines().collect::<Vec<_>>(),
        [
            "certificate.certinext.io/api",
            "certificate.certinext.io/www"
        ]
    );
    let everything = kubectl(
        &kubeconfig,
        home.path(),
        &["get", "certinext", "-A", "-o", "name"],
    )
    .await;
    assert!(
        everything.contains("account.certinext.io/acme"),
        "{everything}"
    );
    interrupt_and_wait(child).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_without_examples_installs_only_the_crds() {
    let home = tempfile::tempdir().expect("a temporary home");
    let (child, kubeconfig) = start_dev(&["--no-examples"], home.path()).await;
    let crds = kubectl(&kubeconfig, home.path(), &["get", "crds", "-o", "name"]).await;
    assert_eq!(crds.lines().count(), 8, "{crds}");
    let accounts = kubectl(
        &kubeconfig,
        home.path(),
        &["get", "accounts.certinext.io", "-o", "name"],
    )
    .await;
    assert!(accounts.trim().is_empty(), "{accounts}");
    interrupt_and_wait(child).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_injects_the_faults_it_is_asked_for_after_setting_up() {
    let home = tempfile::tempdir().expect("a temporary home");
    let (child, kubeconfig) = start_dev(
        &["--fault-error-rate", "1", "--fault-verbs", "list"],
        home.path(),
    )
    .await;
    // Setting up (CRDs, quickstart) was not disturbed; lists now fail as asked, gets do not.
    let output = Command::new("kubectl")
        .args(["get", "certificates.certinext.io", "-n", "acme-web"])
        .env("KUBECONFIG", &kubeconfig)
        .env("HOME", home.path())
        .output()
        .await
        .expect("kubectl runs");
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("injected fault"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let www = kubectl(
        &kubeconfig,
        home.path(),
        &[
            "get",
            "certificates.certinext.io",
            "www",
            "-n",
            "acme-web",
            "-o",
            "name",
        ],
    )
    .await;
    assert_eq!(www.trim(), "certificate.certinext.io/www");
    interrupt_and_wait(child).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_with_a_data_dir_loses_nothing_to_kill_9() {
    let home = tempfile::tempdir().expect("a temporary home");
    let data = home.path().join("data");
    let data_arg = data.to_str().unwrap_or_default().to_owned();
    let (mut child, kubeconfig) = start_dev(&["--data-dir", &data_arg], home.path()).await;
    kubectl(
        &kubeconfig,
        home.path(),
        &["create", "configmap", "survivor", "--from-literal=k=v"],
    )
    .await;
    kubectl(
        &kubeconfig,
        home.path(),
        &[
            "label",
            "certificates.certinext.io",
            "www",
            "-n",
            "acme-web",
            "kept=yes",
        ],
    )
    .await;
    child.kill().await.expect("kill -9");

    let (child, kubeconfig) = start_dev(&["--data-dir", &data_arg], home.path()).await;
    let survivor = kubectl(
        &kubeconfig,
        home.path(),
        &["get", "configmap", "survivor", "-o", "jsonpath={.data.k}"],
    )
    .await;
    assert_eq!(survivor, "v");
    let label = kubectl(
        &kubeconfig,
        home.path(),
        &[
            "get",
            "certificates.certinext.io",
            "www",
            "-n",
            "acme-web",
            "-o",
            "jsonpath={.metadata.labels.kept}",
        ],
    )
    .await;
    assert_eq!(
        label, "yes",
        "the quickstart re-applied on restart keeps what others changed"
    );
    interrupt_and_wait(child).await;
}
