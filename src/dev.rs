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
    /// Keep the cluster's objects in this directory across restarts.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Do not apply examples/quickstart.yaml.
    #[arg(long)]
    pub no_examples: bool,
    /// Answer this share (0 to 1) of API requests with 500 InternalError.
    #[arg(long, value_name = "RATE", default_value_t = 0.0, value_parser = rate)]
    pub fault_error_rate: f64,
    /// Answer this share (0 to 1) of writes with 409 Conflict.
    #[arg(long, value_name = "RATE", default_value_t = 0.0, value_parser = rate)]
    pub fault_conflict_rate: f64,
    /// Only inject faults into these verbs (get, list, watch, create, update, patch, delete,
    /// deletecollection); all when not given.
    #[arg(long, value_name = "VERB", value_delimiter = ',')]
    pub fault_verbs: Vec<String>,
    /// Add this many milliseconds of latency to every API request.
    #[arg(long, value_name = "MS", default_value_t = 0)]
    pub fault_latency_ms: u64,
    /// Close every watch after this many seconds.
    #[arg(long, value_name = "SECONDS")]
    pub fault_watch_close_seconds: Option<u64>,
}

fn rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(rate) if (0.0..=1.0).contains(&rate) => Ok(rate),
        _ => Err(format!("{text:?} is not a rate between 0 and 1")),
    }
}

/// A client for a devcluster, from its kubeconfig.
pub async fn client_for(cluster: &devcluster::DevCluster) -> anyhow::Result<kube::Client> {
    client_from(cluster.kubeconfig(), None).await
}

/// A client from a devcluster's kubeconfig text, naming itself with `user_agent` when given
/// (devcluster counts requests by User-Agent). The client's background task runs on the
/// calling tokio runtime.
pub async fn client_from(
    kubeconfig: &str,
    user_agent: Option<&'static str>,
) -> anyhow::Result<kube::Client> {
    let kubeconfig = Kubeconfig::from_yaml(kubeconfig)?;
    let mut config =
        kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?;
    if let Some(agent) = user_agent {
        config.headers.push((
            hyper::header::USER_AGENT,
            hyper::header::HeaderValue::from_static(agent),
        ));
    }
    Ok(kube::Client::try_from(config)?)
}

/// Installs what the operator needs before it starts, with server-side apply: the CRDs, and
/// its own namespace (which holds its sealing key), as `config/` and the Helm chart do.
pub async fn install(client: &kube::Client) -> anyhow::Result<()> {
    manifests::apply(client, &crate::crd::all_yaml()?, MANAGER)
        .await
        .context("installing the CRDs")?;
    let namespace = format!(
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {}\n",
        crate::controllers::DEFAULT_NAMESPACE
    );
    manifests::apply(client, &namespace, MANAGER)
        .await
        .context("making the operator's namespace")?;
    Ok(())
}

/// Starts the operator's controllers against `client`.
pub fn start_controllers(client: &kube::Client) -> Vec<tokio::task::JoinHandle<()>> {
    crate::controllers::start(client, &crate::controllers::Settings::default())
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
        data_dir: args.data_dir.clone(),
        ..Default::default()
    };
    let cluster = devcluster::DevCluster::start(config)
        .await
        .context("starting the embedded API server")?;
    let client = client_for(&cluster).await?;
    install(&client).await?;
    let controllers = start_controllers(&client);
    if !args.no_examples {
        let applied = manifests::apply(&client, QUICKSTART, MANAGER)
            .await
            .context("applying examples/quickstart.yaml")?;
        tracing::info!(objects = applied.len(), "applied examples/quickstart.yaml");
    }
    // Faults start once the cluster is set up, so that setting it up cannot fail.
    cluster.set_faults(devcluster::Faults {
        error_rate: args.fault_error_rate,
        conflict_rate: args.fault_conflict_rate,
        verbs: args.fault_verbs.clone(),
        latency: std::time::Duration::from_millis(args.fault_latency_ms),
        watch_close_interval: args
            .fault_watch_close_seconds
            .map(std::time::Duration::from_secs),
    });
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
