//! `certinext run`: the operator against a cluster, with metrics, health endpoints and,
//! when several replicas run, leader election.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use kube::Client;
use kube::config::{KubeConfigOptions, Kubeconfig};
use prometheus_client::metrics::gauge::Gauge;
use tokio::task::JoinHandle;

use crate::controllers::{self, DEFAULT_NAMESPACE, Settings};
use crate::endpoints::{self, Health};
use crate::leader::{self, Election, LeaseConfig};
use crate::metrics::{self, ClusterState};

#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// The kubeconfig to use; without it, the in-cluster configuration, else $KUBECONFIG or
    /// ~/.kube/config.
    #[arg(long, value_name = "PATH", env = "CERTINEXT_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// Where to serve /metrics, /healthz and /readyz.
    #[arg(
        long,
        value_name = "ADDRESS",
        env = "CERTINEXT_METRICS_ADDRESS",
        default_value = "0.0.0.0:8080"
    )]
    pub metrics_address: SocketAddr,
    /// Run the controllers only while holding the leader Lease, so that several replicas
    /// can run with one of them active.
    #[arg(
        long,
        env = "CERTINEXT_LEADER_ELECT",
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub leader_elect: bool,
    /// The operator's own namespace, which holds the leader Lease and the Secret of the key
    /// that seals pending private keys [default: $POD_NAMESPACE, else certinext-system].
    #[arg(
        long,
        value_name = "NAMESPACE",
        env = "CERTINEXT_LEADER_ELECTION_NAMESPACE"
    )]
    pub leader_election_namespace: Option<String>,
    /// The name of the leader Lease.
    #[arg(
        long,
        value_name = "NAME",
        env = "CERTINEXT_LEASE_NAME",
        default_value = "certinext-operator"
    )]
    pub lease_name: String,
    /// How long a leader's hold lasts without renewal (whole seconds: `15s`, `1m`); a
    /// follower takes over this long after the leader stops renewing.
    #[arg(
        long,
        value_name = "DURATION",
        env = "CERTINEXT_LEASE_DURATION",
        default_value = "15s",
        value_parser = leader::parse_lease_duration
    )]
    pub lease_duration: Duration,
    /// Reconciles of one kind that may run at once.
    #[arg(
        long,
        value_name = "N",
        env = "CERTINEXT_CONCURRENCY",
        default_value_t = controllers::DEFAULT_CONCURRENCY,
        value_parser = clap::value_parser!(u16).range(1..)
    )]
    pub concurrency: u16,
    /// Watch and act on objects in these namespaces only (comma-separated); every namespace
    /// when unset. Accounts are cluster-scoped and always watched.
    #[arg(
        long,
        env = "CERTINEXT_WATCH_NAMESPACES",
        value_name = "NAMESPACE",
        value_delimiter = ','
    )]
    pub watch_namespaces: Vec<String>,
}

impl RunArgs {
    fn lease_namespace(&self) -> String {
        self.leader_election_namespace
            .clone()
            .or_else(|| std::env::var("POD_NAMESPACE").ok())
            .filter(|namespace| !namespace.is_empty())
            .unwrap_or_else(|| DEFAULT_NAMESPACE.to_owned())
    }
}

/// A client from `--kubeconfig` if given, else from the pod's service account or the
/// default kubeconfig.
async fn client(kubeconfig: Option<&Path>) -> anyhow::Result<Client> {
    let mut config = match kubeconfig {
        None => kube::Config::infer().await.context(
            "no --kubeconfig given, and neither an in-cluster configuration nor a kubeconfig \
             ($KUBECONFIG, ~/.kube/config) could be loaded",
        )?,
        Some(path) => {
            let what = || format!("loading the kubeconfig {}", path.display());
            let kubeconfig = Kubeconfig::read_from(path).with_context(what)?;
            kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                .await
                .with_context(what)?
        }
    };
    // API server audit logs (and devcluster's request counts) name the operator.
    config.headers.push((
        hyper::header::USER_AGENT,
        hyper::header::HeaderValue::from_static(USER_AGENT),
    ));
    Client::try_from(config).context("building the API client")
}

/// The User-Agent of the operator's API requests.
pub const USER_AGENT: &str = concat!("certinext-operator/", env!("CARGO_PKG_VERSION"));

/// Resolves on SIGTERM or Ctrl-C (SIGINT), naming which.
fn shutdown_signal() -> anyhow::Result<impl Future<Output = &'static str>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate()).context("listening for SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("listening for SIGINT")?;
    Ok(async move {
        tokio::select! {
            _ = terminate.recv() => "SIGTERM",
            _ = interrupt.recv() => "SIGINT",
        }
    })
}

/// Waits until the API server answers, retrying while it does not.
async fn connect(client: &Client) {
    loop {
        match client.apiserver_version().await {
            Ok(version) => {
                tracing::info!(version = %version.git_version, "reached the Kubernetes API server");
                return;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot reach the Kubernetes API server; retrying");
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }
    }
}

/// The running controllers.
struct Controllers(Vec<JoinHandle<()>>);

impl Controllers {
    /// Starts the controllers; the metrics read their caches of Certificates and Orders.
    fn start(client: &Client, settings: &Settings, leader: &Gauge, cluster: &ClusterState) -> Self {
        let (handles, caches) = controllers::start_sharing(client, settings);
        cluster.lead(caches);
        leader.set(1);
        Controllers(handles)
    }

    /// Stops every controller and its in-flight reconciles, and waits until they have.
    async fn stop(self, leader: &Gauge) {
        for handle in &self.0 {
            handle.abort();
        }
        for handle in self.0 {
            let _ = handle.await;
        }
        leader.set(0);
    }
}

pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    // Listening first: a SIGTERM while starting up stops cleanly too.
    let shutdown = shutdown_signal()?;
    let client = client(args.kubeconfig.as_deref()).await?;

    let leader = Gauge::default();
    let health = Arc::new(Health::default());
    let settings = Settings {
        concurrency: args.concurrency,
        namespaces: args.watch_namespaces.clone(),
        own_namespace: args.lease_namespace(),
    };
    let (cluster, watches) = ClusterState::watch(&client, &settings);
    let registry = Arc::new(metrics::registry(cluster.clone(), leader.clone()));
    let listener = tokio::net::TcpListener::bind(args.metrics_address)
        .await
        .with_context(|| format!("listening on {} (--metrics-address)", args.metrics_address))?;
    let address = listener
        .local_addr()
        .context("reading the metrics address")?;
    tracing::info!(%address, "serving /metrics, /healthz and /readyz");
    let server = tokio::spawn(endpoints::serve(listener, registry, health.clone()));

    let mut shutdown = std::pin::pin!(shutdown);
    let result = async {
        tokio::select! {
            signal = &mut shutdown => {
                tracing::info!(signal, "stopping before the API server was reached");
                return Ok(());
            }
            () = connect(&client) => {}
        }
        if args.leader_elect {
            return lead_when_elected(
                &client,
                &args,
                &settings,
                (&leader, &cluster),
                &health,
                shutdown,
            )
            .await;
        }
        let controllers = Controllers::start(&client, &settings, &leader, &cluster);
        health.set_ready(true);
        tracing::info!("running the controllers (no leader election)");
        let signal = shutdown.await;
        tracing::info!(signal, "stopping the controllers");
        controllers.stop(&leader).await;
        Ok(())
    }
    .await;
    for watch in watches {
        watch.abort();
    }
    server.abort();
    result
}

/// Joins the leader election and runs the controllers exactly while this replica leads,
/// until `shutdown`; then stops them and releases the Lease. While it does not lead, the
/// metrics watch Certificates and Orders themselves.
async fn lead_when_elected(
    client: &Client,
    args: &RunArgs,
    settings: &Settings,
    (leader, cluster): (&Gauge, &ClusterState),
    health: &Health,
    shutdown: impl Future<Output = &'static str>,
) -> anyhow::Result<()> {
    let config = LeaseConfig {
        namespace: args.lease_namespace(),
        name: args.lease_name.clone(),
        duration: args.lease_duration,
        identity: leader::identity(),
    };
    let lease = format!("{}/{}", config.namespace, config.name);
    tracing::info!(%lease, identity = %config.identity, "joining the leader election");
    let mut election = Election::join(client.clone(), config).await?;
    health.set_ready(true);

    let mut shutdown = std::pin::pin!(shutdown);
    let mut controllers: Option<Controllers> = None;
    let mut following = cluster.follow(client, settings);
    let outcome = loop {
        let holding = election.holding();
        let interval = election.confirm_interval();
        tokio::select! {
            signal = &mut shutdown => {
                tracing::info!(signal, "stopping");
                break Ok(());
            }
            changed = election.changed() => {
                if let Err(error) = changed {
                    break Err(error);
                }
            }
            // While the lease manager holds the Lease, confirm every interval.
            () = async {
                if holding {
                    tokio::time::sleep(interval).await
                } else {
                    std::future::pending().await
                }
            } => {}
        }
        let leading = election.confirm(controllers.is_some()).await;
        controllers = match (leading, controllers.take()) {
            (true, None) => {
                tracing::info!(%lease, "leading: starting the controllers");
                let running = Controllers::start(client, settings, leader, cluster);
                for watch in following.drain(..) {
                    watch.abort();
                }
                Some(running)
            }
            (false, Some(running)) => {
                tracing::warn!(%lease, "no longer leading: stopping the controllers");
                following = cluster.follow(client, settings);
                running.stop(leader).await;
                None
            }
            (_, running) => running,
        };
    };
    if let Some(running) = controllers {
        running.stop(leader).await;
    }
    for watch in following {
        watch.abort();
    }
    match election.release().await {
        Ok(true) => tracing::info!(%lease, "released the lease"),
        Ok(false) => {}
        Err(error) => {
            tracing::warn!(%lease, error = format!("{error:#}"), "could not release the lease; it expires on its own")
        }
    }
    outcome
}
