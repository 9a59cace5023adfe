//! `certinext dev`: the operator on an embedded API server, ready for kubectl.

use std::path::PathBuf;

use anyhow::Context;
use kube::config::{KubeConfigOptions, Kubeconfig};

use crate::manifests;

/// The scenario applied unless `--no-examples`.
pub const QUICKSTART: &str = include_str!("../examples/quickstart.yaml");

/// The field manager `certinext dev` applies with.
const MANAGER: &str = "certinext-dev";

#[derive(Debug, Clone, clap::Args)]
pub struct DevArgs {
    /// Port to listen on (on 127.0.0.1); 0 picks a free one.
    #[arg(long, default_value_t = 6443)]
    pub port: u16,
    /// Where to write the kubeconfig; a temporary file when unset.
    #[arg(long, value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,
    /// Do not apply examples/quickstart.yaml.
    #[arg(long)]
    pub no_examples: bool,
}

/// A client for a devcluster, from its kubeconfig.
pub async fn client_for(cluster: &devcluster::DevCluster) -> anyhow::Result<kube::Client> {
    let kubeconfig = Kubeconfig::from_yaml(cluster.kubeconfig())?;
    let config =
        kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?;
    Ok(kube::Client::try_from(config)?)
}

/// Installs the CRDs with server-side apply.
pub async fn install_crds(client: &kube::Client) -> anyhow::Result<()> {
    manifests::apply(client, &crate::crd::all_yaml()?, MANAGER)
        .await
        .context("installing the CRDs")?;
    Ok(())
}

/// Starts the operator's controllers against `client`. Each controller issue adds its
/// controller here; they run until the returned handles are aborted.
pub fn start_controllers(_client: &kube::Client) -> Vec<tokio::task::JoinHandle<()>> {
    Vec::new()
}

/// Prints a message for the user, ignoring a stdout nobody reads any more.
fn say(message: &str) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{message}").and_then(|()| stdout.flush());
}

pub async fn run(args: DevArgs) -> anyhow::Result<()> {
    let config = devcluster::Config {
        bind: ([127, 0, 0, 1], args.port).into(),
        kubeconfig_path: args.kubeconfig.clone(),
        ..Default::default()
    };
    let cluster = devcluster::DevCluster::start(config)
        .await
        .context("starting the embedded API server")?;
    let client = client_for(&cluster).await?;
    install_crds(&client).await?;
    let controllers = start_controllers(&client);
    if !args.no_examples {
        let applied = manifests::apply(&client, QUICKSTART, MANAGER)
            .await
            .context("applying examples/quickstart.yaml")?;
        tracing::info!(objects = applied.len(), "applied examples/quickstart.yaml");
    }
    // A closed stdout (a pipe whose reader went away) must not stop the cluster.
    say(&format!(
        "devcluster is serving the Kubernetes API at {}\n\n  export KUBECONFIG={}\n  kubectl get certinext -A\n\nPress Ctrl-C to stop.",
        cluster.url(),
        cluster.kubeconfig_path().display()
    ));
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    say("stopping");
    for controller in controllers {
        controller.abort();
    }
    cluster.shutdown().await;
    Ok(())
}
