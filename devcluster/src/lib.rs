//! An embedded, Kubernetes-compatible API server for development and tests.
//!
//! `devcluster` serves the Kubernetes API surface that real clients (`kubectl`, kube-rs, the
//! Python client) use, from a single process: discovery, the built-in resources an operator
//! needs, CustomResourceDefinitions and their resources, every verb with Kubernetes
//! semantics (optimistic concurrency, server-side apply with managed fields, finalizers,
//! watches that resume or expire). It knows nothing of certinext.
//!
//! ```no_run
//! # async fn example() -> Result<(), devcluster::Error> {
//! let cluster = devcluster::DevCluster::start(devcluster::Config::default()).await?;
//! println!("export KUBECONFIG={}", cluster.kubeconfig_path().display());
//! cluster.shutdown().await;
//! # Ok(())
//! # }
//! ```

pub mod api;
mod convert;
mod housekeeping;
pub mod openapi;
pub mod patch;
mod persist;
pub mod protobuf;
pub mod registry;
pub mod schema;
pub mod selector;
mod server;
pub mod ssa;
pub mod status;
pub mod store;
pub mod strategic;
mod table;
mod tls;
mod watch;

/// A field at a fixed path of a JSON value, found by name at each step. `Value::pointer`
/// unescapes every token of its path into a new string, on every call: the store, the
/// watches and the handlers look up metadata fields many times per request.
pub(crate) trait At {
    /// The value at `path` (object field names), if every step is an object holding it.
    fn at(&self, path: &[&str]) -> Option<&serde_json::Value>;
}

impl At for serde_json::Value {
    fn at(&self, path: &[&str]) -> Option<&serde_json::Value> {
        path.iter()
            .try_fold(self, |value, name| value.as_object()?.get(*name))
    }
}

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch as signal;
use tokio::task::JoinHandle;

/// How to start a cluster.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where to listen; port 0 picks a free port. Always loopback by default.
    pub bind: SocketAddr,
    /// Where to write the kubeconfig; a fresh temporary directory when unset.
    pub kubeconfig_path: Option<PathBuf>,
    /// The bearer token clients must present; random when unset.
    pub token: Option<String>,
    /// How many recent changes a watch can resume from before it gets 410 Expired.
    pub history_window: usize,
    /// The name of the cluster, user and context in the kubeconfig.
    pub context_name: String,
    /// How often a watch that allows bookmarks gets one.
    pub bookmark_interval: std::time::Duration,
    /// Failures to inject, for reliability tests. None by default.
    pub faults: Faults,
    /// Keep every object and the resourceVersion sequence in this directory across restarts.
    /// In memory only when unset.
    pub data_dir: Option<PathBuf>,
    /// With `data_dir`: fsync every change before answering, so that even a machine crash
    /// loses no acknowledged write (a killed process loses none either way).
    pub sync_writes: bool,
}

/// How many faults were injected so far.
#[derive(Debug, Default)]
pub struct FaultCounts {
    pub errors: std::sync::atomic::AtomicU64,
    pub conflicts: std::sync::atomic::AtomicU64,
    pub watches_closed: std::sync::atomic::AtomicU64,
}

/// Resource requests of one kind, as RBAC sees them: who asked (the client's User-Agent up
/// to the first `/`), the verb, and the resource.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RequestKind {
    pub user_agent: String,
    pub verb: String,
    /// API group; empty for the core group.
    pub group: String,
    /// The resource's plural name, with `/subresource` when the request names one.
    pub resource: String,
}

/// Failures devcluster injects, so clients can be tested against a flaky API server.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Faults {
    /// The share (0 to 1) of resource requests answered with 500 InternalError.
    pub error_rate: f64,
    /// The share (0 to 1) of writes answered with 409 Conflict.
    pub conflict_rate: f64,
    /// The verbs faults apply to (`get`, `list`, `watch`, `create`, `update`, `patch`,
    /// `delete`, `deletecollection`); all when empty.
    pub verbs: Vec<String>,
    /// Latency added to every resource request.
    pub latency: std::time::Duration,
    /// Close every watch after this long; clients resume from their last version.
    pub watch_close_interval: Option<std::time::Duration>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            kubeconfig_path: None,
            token: None,
            history_window: 10_000,
            context_name: "devcluster".into(),
            bookmark_interval: std::time::Duration::from_secs(5),
            faults: Faults::default(),
            data_dir: None,
            sync_writes: false,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot listen on {address}: {source}")]
    Bind {
        address: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error("cannot open the data directory: {0}")]
    Storage(#[from] persist::PersistError),
    #[error("cannot write the kubeconfig to {path}: {source}")]
    Kubeconfig {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// A running cluster. Dropping it without [`DevCluster::shutdown`] stops it too.
pub struct DevCluster {
    address: SocketAddr,
    kubeconfig_path: PathBuf,
    kubeconfig: String,
    ca_pem: String,
    token: String,
    cluster: Arc<api::Cluster>,
    shutdown: signal::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    _temp_dir: Option<tempfile::TempDir>,
}

impl DevCluster {
    /// Starts serving on `config.bind` and writes the kubeconfig.
    pub async fn start(config: Config) -> Result<DevCluster, Error> {
        let listener = TcpListener::bind(config.bind)
            .await
            .map_err(|source| Error::Bind {
                address: config.bind,
                source,
            })?;
        let address = listener.local_addr().map_err(|source| Error::Bind {
            address: config.bind,
            source,
        })?;
        let identity = match &config.data_dir {
            Some(dir) => tls::load_or_create(dir, config.token.clone())?,
            None => tls::create(config.token.clone())?,
        };
        let pki = tls::serving(&identity)?;
        let token = identity.token;
        let kubeconfig = tls::kubeconfig(&config.context_name, address, &pki.ca_pem, &token);
        let (kubeconfig_path, temp_dir) = match config.kubeconfig_path {
            Some(path) => (path, None),
            None => {
                let dir = tempfile::Builder::new()
                    .prefix("devcluster-")
                    .tempdir()
                    .map_err(|source| Error::Kubeconfig {
                        path: std::env::temp_dir(),
                        source,
                    })?;
                (dir.path().join("kubeconfig"), Some(dir))
            }
        };
        write_private(&kubeconfig_path, &kubeconfig).map_err(|source| Error::Kubeconfig {
            path: kubeconfig_path.clone(),
            source,
        })?;
        let store = match &config.data_dir {
            Some(dir) => store::Store::open(config.history_window, dir, config.sync_writes)?,
            None => store::Store::new(config.history_window),
        };
        let mut cluster = api::Cluster::new(store, token.clone(), address);
        cluster.bookmark_interval = config.bookmark_interval;
        cluster.faults = std::sync::RwLock::new(config.faults);
        let cluster = Arc::new(cluster);
        cluster.restore_resources();
        cluster.bootstrap();
        let (shutdown, stop) = signal::channel(false);
        let acceptor = tokio_rustls::TlsAcceptor::from(pki.server_config);
        let tasks = vec![
            tokio::spawn(server::serve(
                listener,
                acceptor,
                cluster.clone(),
                stop.clone(),
            )),
            tokio::spawn(housekeeping::run(cluster.clone(), stop)),
        ];
        Ok(DevCluster {
            address,
            kubeconfig_path,
            kubeconfig,
            ca_pem: pki.ca_pem,
            token,
            cluster,
            shutdown,
            tasks,
            _temp_dir: temp_dir,
        })
    }

    /// The address the API listens on.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// `https://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("https://{}", self.address)
    }

    /// The kubeconfig file that points at this cluster.
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig_path
    }

    /// The kubeconfig's contents.
    pub fn kubeconfig(&self) -> &str {
        &self.kubeconfig
    }

    /// The CA certificate that signed the serving certificate, PEM.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The bearer token clients present.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// The latest resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.cluster.store.current_rv()
    }

    /// Changes the faults to inject from now on.
    pub fn set_faults(&self, faults: Faults) {
        *self
            .cluster
            .faults
            .write()
            .unwrap_or_else(|e| e.into_inner()) = faults;
    }

    /// How many (500 errors, 409 conflicts, closed watches) were injected so far.
    pub fn injected_faults(&self) -> (u64, u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        let counts = &self.cluster.injected;
        (
            counts.errors.load(Relaxed),
            counts.conflicts.load(Relaxed),
            counts.watches_closed.load(Relaxed),
        )
    }

    /// How many resource requests of each kind the server answered (or refused) so far.
    pub fn requests(&self) -> std::collections::BTreeMap<RequestKind, u64> {
        self.cluster
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Forgets the requests counted so far.
    pub fn reset_requests(&self) {
        self.cluster
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    /// Ends every open watch; clients resume from their last version.
    pub fn close_watches(&self) {
        self.cluster.close_watches();
    }

    /// Forgets the change window and ends every open watch, as etcd compaction with an API
    /// server restart would: clients get 410 Expired on resuming and must relist.
    pub fn compact(&self) {
        self.cluster.store.compact();
        self.cluster.close_watches();
    }

    /// Stops accepting requests, ends open watches and waits for the server's tasks.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        for task in self.tasks.drain(..) {
            let _ = task.await;
        }
    }
}

impl Drop for DevCluster {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

/// Writes a file only its owner can read: it holds a credential.
pub(crate) fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    options.mode(0o600);
    options.open(path)?.write_all(contents.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::At;
    use serde_json::json;

    #[test]
    fn a_path_finds_the_field_pointer_finds_and_nothing_through_non_objects() {
        let object = json!({
            "metadata": {"name": "web", "labels": {"a/b": "x"}, "finalizers": ["f"]},
            "spec": null,
        });
        for path in [&["metadata", "name"][..], &["metadata"], &["spec"], &[]] {
            let pointer = format!("/{}", path.join("/"));
            let pointer = if path.is_empty() {
                ""
            } else {
                pointer.as_str()
            };
            assert_eq!(object.at(path), object.pointer(pointer), "{path:?}");
        }
        // A name is taken as it is: no JSON-pointer escapes.
        assert_eq!(object.at(&["metadata", "labels", "a/b"]), Some(&json!("x")));
        assert_eq!(object.at(&["metadata", "missing"]), None);
        assert_eq!(object.at(&["metadata", "name", "deeper"]), None);
        assert_eq!(object.at(&["spec", "anything"]), None);
        assert_eq!(
            object.at(&["metadata", "finalizers", "0"]),
            None,
            "lists are not indexed"
        );
    }
}
