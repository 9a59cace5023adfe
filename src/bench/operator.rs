//! The operator under test: `certinext run` in a child process of this binary, as it runs in
//! production (its own pod), so its memory and CPU time are its own and not devcluster's.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{ExitStatus, Stdio};

use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};

use super::process;

/// The bench's own log settings (the global `--log-level` and `--log-format`), passed on to
/// the operator's process so that its logs (on the shared stderr) read like the bench's.
#[derive(Debug, Clone)]
pub struct Logging {
    /// The log filter, as `--log-level` takes it.
    pub level: String,
    /// `text` or `json`, as `--log-format` takes it.
    pub format: String,
}

/// The operator's process: killed when dropped, so a failing bench leaves nothing behind.
pub struct Operator {
    child: Child,
    pid: u32,
    /// Where the operator serves its metrics.
    metrics: SocketAddr,
}

impl Operator {
    /// Starts `certinext run` against the cluster of `kubeconfig`, with `concurrency`
    /// reconciles of one kind at once and its metrics on a free loopback port. Its stdout
    /// is dropped (the bench's stdout ends with the JSON summary); its stderr is the bench's.
    pub fn start(kubeconfig: &Path, concurrency: u16, logging: &Logging) -> anyhow::Result<Self> {
        let program = std::env::current_exe()
            .context("finding this program's path, to run the operator from it")?;
        // A port free now: the operator binds it a moment later.
        let metrics = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .context("finding a free loopback port for the operator's metrics")?;
        let child = Command::new(&program)
            .arg("--log-level")
            .arg(&logging.level)
            .arg("--log-format")
            .arg(&logging.format)
            .arg("run")
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .arg("--metrics-address")
            .arg(metrics.to_string())
            .arg("--concurrency")
            .arg(concurrency.to_string())
            // Settings from the bench's environment that would change what is measured: the
            // operator runs alone and watches every namespace.
            .env_remove("CERTINEXT_LEADER_ELECT")
            .env_remove("CERTINEXT_WATCH_NAMESPACES")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting the operator ({} run)", program.display()))?;
        let pid = child
            .id()
            .context("the operator's process has no id right after starting")?;
        Ok(Operator {
            child,
            pid,
            metrics,
        })
    }

    /// The reconciles the operator has run so far, by kind, from its metrics.
    pub async fn reconciles(&self) -> anyhow::Result<BTreeMap<String, f64>> {
        let read = async {
            let mut stream = tokio::net::TcpStream::connect(self.metrics).await?;
            stream
                .write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
                .await?;
            let mut response = String::new();
            stream.read_to_string(&mut response).await?;
            Ok::<_, std::io::Error>(response)
        };
        let url = format!("http://{}/metrics", self.metrics);
        let response = tokio::time::timeout(std::time::Duration::from_secs(10), read)
            .await
            .with_context(|| format!("{url}: no answer within 10 s"))?
            .with_context(|| format!("reading {url}"))?;
        let (head, page) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
        let status = head.lines().next().unwrap_or_default();
        if status.split_whitespace().nth(1) != Some("200") {
            anyhow::bail!("{url} answered {status:?}");
        }
        reconciles_in(page).with_context(|| format!("{url}: the Prometheus text does not parse"))
    }

    /// Fails, naming the exit status, when the operator's process has exited.
    pub fn check(&mut self) -> anyhow::Result<()> {
        match self
            .child
            .try_wait()
            .context("checking on the operator's process")?
        {
            None => Ok(()),
            Some(status) => Err(exited(status)),
        }
    }

    /// Runs `work` to its end, unless the operator's process exits first: that fails, naming
    /// the exit status.
    pub async fn alongside<T>(&mut self, work: impl Future<Output = T>) -> anyhow::Result<T> {
        tokio::select! {
            // Cancel safe: dropping the wait when `work` ends first loses nothing.
            status = self.child.wait() => {
                Err(exited(status.context("waiting on the operator's process")?))
            }
            value = work => Ok(value),
        }
    }

    /// A field of the operator's /proc status in MiB (`VmHWM`, `VmRSS`), while it runs.
    pub fn status_mib(&self, field: &str) -> Option<f64> {
        process::status_mib_of(self.pid, field)
    }

    /// The CPU seconds the operator's process has spent so far.
    pub fn cpu_seconds(&self) -> Option<f64> {
        process::cpu_seconds_of(self.pid)
    }

    /// Stops the operator (SIGKILL: nothing of its shutdown is measured) and waits until it
    /// has exited.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.child
            .start_kill()
            .context("stopping the operator's process")?;
        self.child
            .wait()
            .await
            .context("waiting for the operator's process to exit")?;
        Ok(())
    }
}

/// The `certinext_reconciles_total` counters of a metrics page, by kind.
fn reconciles_in(page: &str) -> std::io::Result<BTreeMap<String, f64>> {
    let lines = page.lines().map(|line| Ok(line.to_owned()));
    let scrape = prometheus_parse::Scrape::parse(lines)?;
    Ok(scrape
        .samples
        .into_iter()
        .filter(|sample| sample.metric == "certinext_reconciles_total")
        .filter_map(|sample| {
            let kind = sample.labels.get("kind")?.to_owned();
            match sample.value {
                prometheus_parse::Value::Counter(n) | prometheus_parse::Value::Untyped(n) => {
                    Some((kind, n))
                }
                _ => None,
            }
        })
        .collect())
}

/// The error for an operator that exited while the bench still needed it.
fn exited(status: ExitStatus) -> anyhow::Error {
    anyhow::anyhow!(
        "the operator's process (certinext run) exited before the bench was done: {status}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reconcile_counters_are_read_from_the_metrics_page() {
        let page = "\
# HELP certinext_reconciles Reconciles run, per kind\n\
# TYPE certinext_reconciles counter\n\
certinext_reconciles_total{kind=\"Certificate\"} 7021\n\
certinext_reconciles_total{kind=\"Order\"} 4400\n\
certinext_reconcile_errors_total{kind=\"Order\"} 3\n\
certinext_reconcile_duration_seconds_count{kind=\"Order\"} 4400\n";
        assert_eq!(
            reconciles_in(page).expect("parses"),
            BTreeMap::from([("Certificate".into(), 7021.0), ("Order".into(), 4400.0)])
        );
    }
}
