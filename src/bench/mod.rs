//! `certinext bench`: how fast the operator issues certificates end to end, beside the raw
//! signing rate of this machine, in one run.
//!
//! The operator runs as in production, in its own process: `certinext run` against
//! devcluster's kubeconfig, a child of the bench. In the bench's process, two tokio runtimes
//! with distinct thread names keep the rest apart: devcluster (the API server) and the
//! bench's own client, which creates the Certificates and watches them become Ready. CPU time
//! and memory from /proc, per process and per thread, then say who spent what, and
//! devcluster's request counts by User-Agent say what the operator asked.

mod operator;
mod process;
pub mod raw;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures_util::{StreamExt, TryStreamExt, stream};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use serde::Serialize;
use serde_json::json;
use tokio::runtime::Handle;

pub use operator::Logging;

use crate::api::common::KeyAlgorithm;
use crate::api::{Account, Certificate, Group, PrivateCA, Product};
use crate::controllers::{Settings, lean};
use operator::Operator;
use process::{CLIENT_THREADS, DEVCLUSTER_THREADS};

/// The namespace the Certificates live in.
const NAMESPACE: &str = "bench";
/// The namespace of the Secrets the operator does not own.
const UNRELATED_NAMESPACE: &str = "bench-unrelated";
/// The account's domain; every certificate names one host below it.
const DOMAIN: &str = "bench.example";
/// The User-Agent of the bench's own requests, so they are not counted as the operator's.
const BENCH_AGENT: &str = "certinext-bench/0";
/// Price of one order, in cents.
const PRICE_CENTS: u64 = 1;
/// The size of each unrelated Secret's data.
const UNRELATED_SECRET_BYTES: usize = 100 * 1024;
/// The storm's new duration: a spec change that reissues every certificate as a renewal.
const STORM_DURATION: &str = "2159h";

#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Certificates created at once (the burst).
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    pub certificates: usize,
    /// Certificates created one at a time on an idle system, before the burst.
    #[arg(long, value_name = "N", default_value_t = 200)]
    pub sequential: usize,
    /// The certificates' key algorithm.
    #[arg(long, value_enum, default_value_t = KeyChoice::EcdsaP256)]
    pub key: KeyChoice,
    /// Secrets of 100 KiB the operator does not own, created before the operator starts.
    #[arg(long, value_name = "M", default_value_t = 0)]
    pub unrelated_secrets: usize,
    /// After the burst, change every Certificate's duration at once, so each is reissued as
    /// a renewal, and measure how long until all are renewed.
    #[arg(long)]
    pub renewal_storm: bool,
    /// Requests the bench's client keeps in flight while creating.
    #[arg(long, value_name = "N", default_value_t = 64, value_parser = clap::value_parser!(u16).range(1..))]
    pub concurrency: u16,
    /// Reconciles of one kind the operator runs at once (`certinext run --concurrency`).
    #[arg(long, value_name = "N", default_value_t = Settings::default().concurrency, value_parser = clap::value_parser!(u16).range(1..))]
    pub reconcile_concurrency: u16,
    /// PrivateCAs (each with its Product) the certificates are spread over.
    #[arg(long, value_name = "N", default_value_t = 10, value_parser = clap::value_parser!(u16).range(1..))]
    pub cas: u16,
    /// How long the raw signing run lasts.
    #[arg(long, value_name = "SECONDS", default_value_t = 3.0)]
    pub raw_seconds: f64,
    /// Give up waiting for Ready (or renewed) certificates after this long, per phase.
    #[arg(long, value_name = "SECONDS", default_value_t = 1800)]
    pub timeout: u64,
}

/// A key algorithm, as the command line names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum KeyChoice {
    EcdsaP256,
    EcdsaP384,
    Ed25519,
    Rsa2048,
    Rsa3072,
    Rsa4096,
}

impl KeyChoice {
    pub fn algorithm(self) -> KeyAlgorithm {
        match self {
            KeyChoice::EcdsaP256 => KeyAlgorithm::EcdsaP256,
            KeyChoice::EcdsaP384 => KeyAlgorithm::EcdsaP384,
            KeyChoice::Ed25519 => KeyAlgorithm::Ed25519,
            KeyChoice::Rsa2048 => KeyAlgorithm::Rsa2048,
            KeyChoice::Rsa3072 => KeyAlgorithm::Rsa3072,
            KeyChoice::Rsa4096 => KeyAlgorithm::Rsa4096,
        }
    }

    /// A Certificate's `privateKey` for this algorithm.
    fn private_key(self) -> serde_json::Value {
        match self {
            KeyChoice::EcdsaP256 => json!({"algorithm": "ECDSA", "size": 256}),
            KeyChoice::EcdsaP384 => json!({"algorithm": "ECDSA", "size": 384}),
            KeyChoice::Ed25519 => json!({"algorithm": "Ed25519"}),
            KeyChoice::Rsa2048 => json!({"algorithm": "RSA", "size": 2048}),
            KeyChoice::Rsa3072 => json!({"algorithm": "RSA", "size": 3072}),
            KeyChoice::Rsa4096 => json!({"algorithm": "RSA", "size": 4096}),
        }
    }
}

/// Latency percentiles, in milliseconds.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Latency {
    pub count: usize,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

impl Latency {
    fn of(mut samples: Vec<Duration>) -> Self {
        samples.sort();
        let at = |q: f64| {
            let rank = ((q * samples.len() as f64).ceil() as usize).clamp(1, samples.len());
            samples[rank - 1].as_secs_f64() * 1000.0
        };
        if samples.is_empty() {
            return Latency::default();
        }
        Latency {
            count: samples.len(),
            p50: at(0.50),
            p90: at(0.90),
            p99: at(0.99),
            max: at(1.0),
        }
    }
}

/// The burst: N certificates created as fast as the client can.
#[derive(Debug, Clone, Serialize)]
pub struct Burst {
    pub certificates: usize,
    pub ready: usize,
    /// From the first create call to the last Ready observation.
    pub seconds: f64,
    pub certificates_per_second: f64,
    /// End-to-end rate over the raw signing rate.
    pub ratio_to_raw: f64,
    /// How long creating them took (the client's side).
    pub create_seconds: f64,
    /// From each create call's return to its Ready observation (watch).
    pub latency_ms: Latency,
}

/// The renewal storm: every burst certificate reissued at once.
#[derive(Debug, Clone, Serialize)]
pub struct Storm {
    pub certificates: usize,
    pub renewed: usize,
    /// From the first patch to the last renewal observed.
    pub seconds: f64,
    pub renewals_per_second: f64,
    /// From each patch's return to the renewed certificate's Ready observation.
    pub latency_ms: Latency,
}

/// Resident memory at points of the run, in MiB, per process: the `operator_*` figures are
/// the operator's own process (`certinext run`); the others are the bench's process, which
/// holds devcluster (every object of the cluster) and the bench's client, not the operator.
#[derive(Debug, Clone, Serialize)]
pub struct Memory {
    /// The operator's VmHWM at the end, just before it is stopped: its peak over the run.
    pub operator_peak_mib: Option<f64>,
    /// The operator's VmRSS once it started and the account, group, CAs and products are
    /// Ready.
    pub operator_after_setup_mib: Option<f64>,
    /// The operator's VmRSS after the burst, once its requests settled.
    pub operator_after_burst_mib: Option<f64>,
    /// The bench process's VmHWM at the end: the peak of devcluster and the bench's client.
    pub peak_mib: Option<f64>,
    /// The bench process's VmRSS with devcluster up and the CRDs installed.
    pub baseline_mib: Option<f64>,
    /// The bench process's VmRSS once the unrelated Secrets exist (devcluster holds them).
    pub after_unrelated_secrets_mib: Option<f64>,
    /// The bench process's VmRSS once the account, group, CAs and products are Ready.
    pub after_setup_mib: Option<f64>,
    /// The bench process's VmRSS after the burst, once the operator's requests settled.
    pub after_burst_mib: Option<f64>,
}

/// Everything a run measured; printed as the last line, as JSON.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub date: String,
    pub version: &'static str,
    pub build: &'static str,
    pub nproc: usize,
    pub key: String,
    pub concurrency: u16,
    pub reconcile_concurrency: u16,
    pub cas: u16,
    pub unrelated_secrets: usize,
    pub raw: raw::RawFigures,
    pub burst: Burst,
    pub sequential: Latency,
    /// The operator's API requests during the burst (until they settle), per certificate.
    pub api_requests_per_certificate: BTreeMap<String, f64>,
    /// The same by `verb resource`.
    pub api_requests_per_certificate_by_resource: BTreeMap<String, f64>,
    /// The operator's reconciles during the burst (until its requests settle), per
    /// certificate, by kind: from its metrics.
    pub reconciles_per_certificate: BTreeMap<String, f64>,
    /// CPU seconds from the burst's start until the operator's requests settle, by who:
    /// `operator` is the operator's process; `devcluster`, `bench` (the bench's client) and
    /// `other` are threads of the bench's process.
    pub cpu_seconds: BTreeMap<&'static str, f64>,
    /// The operator's share of the CPU time of operator + devcluster.
    pub operator_cpu_share: f64,
    /// The same CPU time per certificate of the burst, in milliseconds, by who, and `all`.
    pub cpu_ms_per_certificate: BTreeMap<&'static str, f64>,
    pub memory: Memory,
    pub renewal_storm: Option<Storm>,
    pub secrets_verified: usize,
    pub secrets_checked: usize,
    pub all_ready: bool,
    pub all_verified: bool,
    /// The first failures, if any.
    pub failures: Vec<String>,
}

/// Runs the bench: the raw limit, then devcluster in this process and the operator in its
/// own, logging as `logging` says.
pub fn run(args: &BenchArgs, logging: &Logging) -> anyhow::Result<Summary> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    say(&format!(
        "raw signing: {} keys, {threads} threads, {:.1} s",
        pki_name(args.key),
        args.raw_seconds
    ));
    let raw = raw::measure(args.key.algorithm(), threads, args.raw_seconds)
        .context("the raw signing run")?;
    let devcluster = runtime(DEVCLUSTER_THREADS)?;
    let client = runtime(CLIENT_THREADS)?;
    let body = measure(
        args.clone(),
        logging.clone(),
        raw,
        devcluster.handle().clone(),
    );
    let result = client
        .block_on(async { client.handle().spawn(body).await })
        .context("the bench's task")
        .and_then(|result| result);
    client.shutdown_background();
    devcluster.shutdown_background();
    result
}

/// Prints the human summary, then the JSON summary as the last line.
pub fn print(summary: &Summary) -> anyhow::Result<()> {
    say(&human(summary));
    say(&serde_json::to_string(summary).context("the JSON summary")?);
    Ok(())
}

fn runtime(name: &str) -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name(name)
        // Idle blocking threads would otherwise exit, taking their CPU time with them.
        .thread_keep_alive(Duration::from_secs(24 * 3600))
        .build()
        .with_context(|| format!("starting the {name} runtime"))
}

fn say(message: &str) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{message}").and_then(|()| stdout.flush());
}

fn pki_name(key: KeyChoice) -> &'static str {
    crate::pki::algorithm_name(key.algorithm())
}

/// What the watch saw: when each Certificate was first Ready, and first Ready renewed.
#[derive(Default)]
struct Observed {
    issued: Seen,
    renewed: Seen,
}

/// When each Certificate was first seen so, and their names in that order: a waiter reads
/// only the names added since it last looked.
#[derive(Default)]
struct Seen {
    at: HashMap<String, Instant>,
    order: Vec<String>,
}

impl Seen {
    fn saw(&mut self, name: &str, now: Instant) {
        if !self.at.contains_key(name) {
            self.at.insert(name.to_owned(), now);
            self.order.push(name.to_owned());
        }
    }
}

type Shared = Arc<Mutex<Observed>>;

fn lock(observed: &Shared) -> std::sync::MutexGuard<'_, Observed> {
    observed.lock().unwrap_or_else(|e| e.into_inner())
}

async fn measure(
    args: BenchArgs,
    logging: Logging,
    raw: raw::RawFigures,
    dev: Handle,
) -> anyhow::Result<Summary> {
    let cluster = dev
        .spawn(devcluster::DevCluster::start(devcluster::Config::default()))
        .await
        .context("starting devcluster")?
        .context("starting devcluster")?;
    let client = crate::dev::client_from(cluster.kubeconfig(), Some(BENCH_AGENT)).await?;
    crate::dev::install(&client).await?;
    for namespace in [NAMESPACE, UNRELATED_NAMESPACE] {
        create_namespace(&client, namespace).await?;
    }
    let baseline_mib = process::status_mib("VmRSS");
    if args.unrelated_secrets > 0 {
        say(&format!(
            "creating {} unrelated Secrets of 100 KiB",
            args.unrelated_secrets
        ));
        create_unrelated_secrets(&client, args.unrelated_secrets, args.concurrency).await?;
    }
    let after_unrelated_secrets_mib = process::status_mib("VmRSS");

    // The operator, in its own process: `certinext run`, whose requests devcluster counts
    // by its User-Agent.
    let mut operator = Operator::start(
        cluster.kubeconfig_path(),
        args.reconcile_concurrency,
        &logging,
    )?;

    let orders = args.sequential + args.certificates * (1 + usize::from(args.renewal_storm));
    say(&format!(
        "setting up: an account, a funded group, {} PrivateCAs and products",
        args.cas
    ));
    operator
        .alongside(set_up(&client, &args, orders))
        .await
        .context("the bench's setup")??;
    let after_setup_mib = process::status_mib("VmRSS");
    let operator_after_setup_mib = operator.status_mib("VmRSS");

    let observed = Shared::default();
    let watch = tokio::spawn(watch_certificates(client.clone(), observed.clone()));
    let certificates: Api<Certificate> = Api::namespaced(client.clone(), NAMESPACE);
    let timeout = Duration::from_secs(args.timeout);
    let mut failures = Vec::new();
    let mut not_ready = 0;

    // One at a time, on an idle system.
    say(&format!(
        "sequential: {} certificates one at a time",
        args.sequential
    ));
    let mut sequential = Vec::new();
    for i in 0..args.sequential {
        let name = format!("seq-{i}");
        create_certificate(&certificates, &name, i, &args).await?;
        let created = Instant::now();
        let remaining = operator
            .alongside(wait_for(
                &observed,
                std::slice::from_ref(&name),
                timeout,
                |o| &o.issued,
            ))
            .await
            .with_context(|| format!("waiting for Certificate {NAMESPACE}/{name}"))?;
        match lock(&observed).issued.at.get(&name) {
            Some(ready) if remaining == 0 => {
                sequential.push(ready.saturating_duration_since(created))
            }
            _ => {
                not_ready += 1;
                failures.push(format!(
                    "Certificate {NAMESPACE}/{name} was not Ready in time"
                ));
            }
        }
    }
    let sequential = Latency::of(sequential);

    // The burst.
    say(&format!(
        "burst: {} certificates, {} requests in flight",
        args.certificates, args.concurrency
    ));
    operator
        .check()
        .context("after the sequential certificates")?;
    cluster.reset_requests();
    let reconciles_before = operator
        .reconciles()
        .await
        .context("the operator's reconciles before the burst")?;
    let cpu_before = process::thread_cpu();
    let operator_cpu_before = operator.cpu_seconds();
    let start = Instant::now();
    let created: Vec<(String, Instant)> = stream::iter(0..args.certificates)
        .map(|i| {
            let (api, args) = (&certificates, &args);
            async move {
                let name = format!("cert-{i}");
                create_certificate(api, &name, i, args).await?;
                Ok::<_, anyhow::Error>((name, Instant::now()))
            }
        })
        .buffer_unordered(usize::from(args.concurrency))
        .try_collect()
        .await?;
    let create_seconds = start.elapsed().as_secs_f64();
    let names: Vec<String> = created.iter().map(|(name, _)| name.clone()).collect();
    let missing = operator
        .alongside(wait_for(&observed, &names, timeout, |o| &o.issued))
        .await
        .context("waiting for the burst's certificates")?;
    let (latencies, last) = latencies(&lock(&observed).issued.at, &created);
    let seconds = last.map_or(start.elapsed(), |last| {
        last.saturating_duration_since(start)
    });
    let seconds = seconds.as_secs_f64();
    not_ready += missing;
    if missing > 0 {
        failures.push(format!(
            "{missing} burst certificates were not Ready in time"
        ));
    }
    operator
        .alongside(settle(&cluster))
        .await
        .context("waiting for the operator's requests to settle after the burst")?;
    let mut cpu_seconds = process::cpu_between(&cpu_before, &process::thread_cpu());
    if let Some((before, after)) = operator_cpu_before.zip(operator.cpu_seconds()) {
        cpu_seconds.insert("operator", (after - before).max(0.0));
    }
    let (by_verb, by_resource) = operator_requests(&cluster, args.certificates);
    let reconciles_after = operator
        .reconciles()
        .await
        .context("the operator's reconciles after the burst")?;
    let per = args.certificates.max(1) as f64;
    let reconciles_per_certificate = reconciles_after
        .into_iter()
        .map(|(kind, after)| {
            let before = reconciles_before.get(&kind).copied().unwrap_or_default();
            (kind, (after - before) / per)
        })
        .collect();
    let after_burst_mib = process::status_mib("VmRSS");
    let operator_after_burst_mib = operator.status_mib("VmRSS");
    let ready = names.len() - missing;
    let certificates_per_second = ready as f64 / seconds.max(f64::EPSILON);
    let burst = Burst {
        certificates: args.certificates,
        ready,
        seconds,
        certificates_per_second,
        ratio_to_raw: certificates_per_second / raw.per_second.max(f64::EPSILON),
        create_seconds,
        latency_ms: Latency::of(latencies),
    };

    say("verifying every Secret");
    let mut expected: Vec<String> = (0..args.sequential).map(|i| format!("seq-{i}")).collect();
    expected.extend(names.iter().cloned());
    let (mut verified, mut checked) = verify_secrets(&client, &expected, &mut failures).await?;
    let mut expected_checks = expected.len();
    operator.check().context("after the verification")?;

    let renewal_storm = if args.renewal_storm {
        say(&format!(
            "renewal storm: {} certificates reissued at once",
            names.len()
        ));
        let storm = operator
            .alongside(renewal_storm(
                &certificates,
                &observed,
                &names,
                &args,
                timeout,
            ))
            .await
            .context("the renewal storm")??;
        not_ready += storm.certificates - storm.renewed;
        if storm.renewed < storm.certificates {
            failures.push(format!(
                "{} certificates were not renewed in time",
                storm.certificates - storm.renewed
            ));
        }
        say("verifying every renewed Secret");
        let (v, c) = verify_secrets(&client, &names, &mut failures).await?;
        verified += v;
        checked += c;
        expected_checks += names.len();
        Some(storm)
    } else {
        None
    };

    watch.abort();
    // The operator's figures while it still runs, then it stops before devcluster does.
    operator.check().context("at the end of the bench")?;
    let operator_peak_mib = operator.status_mib("VmHWM");
    operator.stop().await?;
    cluster.shutdown().await;

    let operator = cpu_seconds.get("operator").copied().unwrap_or_default();
    let devcluster = cpu_seconds.get("devcluster").copied().unwrap_or_default();
    let cpu_ms_per_certificate = per_certificate_ms(&cpu_seconds, burst.certificates);
    failures.truncate(20);
    Ok(Summary {
        date: jiff::Timestamp::now().to_string(),
        version: env!("CARGO_PKG_VERSION"),
        build: if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
        nproc: std::thread::available_parallelism().map_or(1, |n| n.get()),
        key: pki_name(args.key).to_owned(),
        concurrency: args.concurrency,
        reconcile_concurrency: args.reconcile_concurrency,
        cas: args.cas,
        unrelated_secrets: args.unrelated_secrets,
        raw,
        all_ready: not_ready == 0,
        burst,
        sequential,
        api_requests_per_certificate: by_verb,
        api_requests_per_certificate_by_resource: by_resource,
        reconciles_per_certificate,
        operator_cpu_share: operator / (operator + devcluster).max(f64::EPSILON),
        cpu_seconds,
        cpu_ms_per_certificate,
        memory: Memory {
            operator_peak_mib,
            operator_after_setup_mib,
            operator_after_burst_mib,
            peak_mib: process::status_mib("VmHWM"),
            baseline_mib,
            after_unrelated_secrets_mib,
            after_setup_mib,
            after_burst_mib,
        },
        renewal_storm,
        all_verified: verified == checked && checked == expected_checks,
        secrets_verified: verified,
        secrets_checked: checked,
        failures,
    })
}

async fn create_namespace(client: &Client, name: &str) -> anyhow::Result<()> {
    let namespace: Namespace = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name},
    }))?;
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &namespace)
        .await
        .with_context(|| format!("creating Namespace {name}"))?;
    Ok(())
}

async fn create_unrelated_secrets(
    client: &Client,
    count: usize,
    concurrency: u16,
) -> anyhow::Result<()> {
    let api: Api<Secret> = Api::namespaced(client.clone(), UNRELATED_NAMESPACE);
    stream::iter(0..count)
        .map(|i| {
            let api = api.clone();
            async move {
                // Distinct contents, so nothing can share them.
                let mut blob = vec![0u8; UNRELATED_SECRET_BYTES];
                for (j, byte) in blob.iter_mut().enumerate() {
                    *byte = (i.wrapping_mul(31).wrapping_add(j) % 251) as u8;
                }
                let secret = Secret {
                    metadata: kube::api::ObjectMeta {
                        name: Some(format!("unrelated-{i}")),
                        ..Default::default()
                    },
                    data: Some([("blob".to_owned(), ByteString(blob))].into()),
                    ..Default::default()
                };
                api.create(&PostParams::default(), &secret)
                    .await
                    .with_context(|| format!("creating Secret {UNRELATED_NAMESPACE}/unrelated-{i}"))
            }
        })
        .buffer_unordered(usize::from(concurrency))
        .try_for_each(|_| async { Ok(()) })
        .await
}

/// Money in major units from cents: `"12.34"`.
fn money(cents: u64) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

/// The account (with credits), its funded group, the PrivateCAs and a product per CA; waits
/// until all are Ready.
async fn set_up(client: &Client, args: &BenchArgs, orders: usize) -> anyhow::Result<()> {
    let funds = orders as u64 * PRICE_CENTS + 100;
    let account: Account = serde_json::from_value(json!({
        "apiVersion": "certinext.io/v1alpha1", "kind": "Account",
        "metadata": {"name": "bench"},
        "spec": {
            "type": "Enterprise",
            "displayName": "Bench",
            "namespaces": [NAMESPACE],
            "currency": "USD",
            "credits": [{"id": "bench-credit", "amount": money(funds + 100)}],
            "organizations": [{"name": "Bench", "country": "US"}],
            "domains": [{"name": DOMAIN}],
        },
    }))
    .context("the bench Account")?;
    Api::<Account>::all(client.clone())
        .create(&PostParams::default(), &account)
        .await
        .context("creating Account bench")?;
    let group: Group = serde_json::from_value(json!({
        "apiVersion": "certinext.io/v1alpha1", "kind": "Group",
        "metadata": {"name": "bench", "namespace": NAMESPACE},
        "spec": {
            "funds": money(funds),
            "orderApproval": "Automatic",
            "members": [{"kind": "User", "name": "bench@bench.example", "role": "Admin"}],
        },
    }))
    .context("the bench Group")?;
    Api::<Group>::namespaced(client.clone(), NAMESPACE)
        .create(&PostParams::default(), &group)
        .await
        .context("creating Group bench")?;
    let cas: Api<PrivateCA> = Api::namespaced(client.clone(), NAMESPACE);
    let products: Api<Product> = Api::namespaced(client.clone(), NAMESPACE);
    for i in 0..args.cas {
        let ca: PrivateCA = serde_json::from_value(json!({
            "apiVersion": "certinext.io/v1alpha1", "kind": "PrivateCA",
            "metadata": {"name": format!("ca-{i}"), "namespace": NAMESPACE},
            "spec": {
                "subject": {"commonName": format!("Bench CA {i}"), "organizations": ["Bench"]},
                "privateKey": {"algorithm": "ECDSA", "size": 256},
                "duration": "87600h",
                "pathLength": 0,
                "nameConstraints": {"permitted": {"dnsDomains": [DOMAIN]}},
            },
        }))
        .context("a bench PrivateCA")?;
        cas.create(&PostParams::default(), &ca)
            .await
            .with_context(|| format!("creating PrivateCA ca-{i}"))?;
        let product: Product = serde_json::from_value(json!({
            "apiVersion": "certinext.io/v1alpha1", "kind": "Product",
            "metadata": {"name": format!("product-{i}"), "namespace": NAMESPACE},
            "spec": {
                "issuerRef": {"name": format!("ca-{i}")},
                "template": "ServerTLS",
                "maxValidity": "2160h",
                "allowedKeyAlgorithms": [pki_name(args.key)],
                "price": money(PRICE_CENTS),
            },
        }))
        .context("a bench Product")?;
        products
            .create(&PostParams::default(), &product)
            .await
            .with_context(|| format!("creating Product product-{i}"))?;
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let lp = ListParams::default();
        let account = Api::<Account>::all(client.clone()).get("bench").await?;
        let group = Api::<Group>::namespaced(client.clone(), NAMESPACE)
            .get("bench")
            .await?;
        let cas = cas.list(&lp).await?.items;
        let products = products.list(&lp).await?.items;
        let mut waiting = Vec::new();
        if !is_ready(&account) {
            waiting.push("Account bench".to_owned());
        }
        if !is_ready(&group) {
            waiting.push("Group bench".to_owned());
        }
        waiting.extend(
            cas.iter()
                .filter(|c| !is_ready(*c))
                .map(|c| format!("PrivateCA {}", c.name_any())),
        );
        waiting.extend(
            products
                .iter()
                .filter(|p| !is_ready(*p))
                .map(|p| format!("Product {}", p.name_any())),
        );
        if waiting.is_empty()
            && cas.len() == usize::from(args.cas)
            && products.len() == usize::from(args.cas)
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            anyhow::bail!(
                "the bench's setup is not Ready after 120 s: {}",
                waiting.join(", ")
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Whether an object's `Ready` condition is True for its current generation.
fn is_ready<K: Serialize>(object: &K) -> bool {
    let Ok(value) = serde_json::to_value(object) else {
        return false;
    };
    let status = &value["status"];
    let ready = status["conditions"].as_array().is_some_and(|conditions| {
        conditions
            .iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    });
    ready && status["observedGeneration"] == value["metadata"]["generation"]
}

/// Whether a Certificate is Ready for its current generation with `revision` or later.
fn certificate_ready(certificate: &Certificate, revision: i64) -> bool {
    let Some(status) = &certificate.status else {
        return false;
    };
    status.revision.unwrap_or_default() >= revision
        && status.observed_generation.is_some()
        && status.observed_generation == certificate.metadata.generation
        && crate::controllers::is_ready(&status.conditions)
}

async fn create_certificate(
    api: &Api<Certificate>,
    name: &str,
    index: usize,
    args: &BenchArgs,
) -> anyhow::Result<()> {
    let certificate: Certificate = serde_json::from_value(json!({
        "apiVersion": "certinext.io/v1alpha1", "kind": "Certificate",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "secretName": format!("{name}-tls"),
            "productRef": {"name": format!("product-{}", index % usize::from(args.cas))},
            "groupRef": {"name": "bench"},
            "dnsNames": [format!("{name}.{DOMAIN}")],
            "duration": "2160h",
            "privateKey": args.key.private_key(),
        },
    }))
    .context("a bench Certificate")?;
    api.create(&PostParams::default(), &certificate)
        .await
        .with_context(|| format!("creating Certificate {NAMESPACE}/{name}"))?;
    Ok(())
}

/// Records when each Certificate is first seen Ready, and first seen Ready renewed.
async fn watch_certificates(client: Client, observed: Shared) {
    let api: Api<Certificate> = Api::namespaced(client, NAMESPACE);
    let events = lean::watch(api, watcher::Config::default());
    let mut events = std::pin::pin!(events);
    while let Some(event) = events.next().await {
        let certificate = match event {
            Ok(watcher::Event::Apply(c) | watcher::Event::InitApply(c)) => c,
            Ok(_) => continue,
            Err(error) => {
                tracing::warn!(%error, "the bench's Certificate watch failed; retrying");
                continue;
            }
        };
        let now = Instant::now();
        let name = certificate.name_any();
        let mut observed = lock(&observed);
        if certificate_ready(&certificate, 1) {
            observed.issued.saw(&name, now);
        }
        if certificate_ready(&certificate, 2) {
            observed.renewed.saw(&name, now);
        }
    }
}

/// Waits until every name is in the map `which` picks, or `timeout`; how many are missing.
async fn wait_for(
    observed: &Shared,
    names: &[String],
    timeout: Duration,
    which: fn(&Observed) -> &Seen,
) -> usize {
    let deadline = Instant::now() + timeout;
    let mut remaining: HashSet<&str> = names.iter().map(String::as_str).collect();
    let mut read = 0;
    loop {
        {
            let observed = lock(observed);
            let seen = which(&observed);
            for name in &seen.order[read..] {
                remaining.remove(name.as_str());
            }
            read = seen.order.len();
        }
        if remaining.is_empty() || Instant::now() > deadline {
            return remaining.len();
        }
        // Local state only: the times were taken by the watch as events arrived.
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Each observed latency from its start, and the last observation.
fn latencies(
    seen: &HashMap<String, Instant>,
    started: &[(String, Instant)],
) -> (Vec<Duration>, Option<Instant>) {
    let mut last = None;
    let latencies = started
        .iter()
        .filter_map(|(name, start)| {
            let at = *seen.get(name)?;
            last = Some(last.map_or(at, |l: Instant| l.max(at)));
            Some(at.saturating_duration_since(*start))
        })
        .collect();
    (latencies, last)
}

/// The operator's requests so far, in total.
fn operator_total(cluster: &devcluster::DevCluster) -> u64 {
    let agent = operator_agent();
    cluster
        .requests()
        .iter()
        .filter(|(kind, _)| kind.user_agent == agent)
        .map(|(_, count)| count)
        .sum()
}

fn operator_agent() -> &'static str {
    crate::run::USER_AGENT
        .split('/')
        .next()
        .unwrap_or(crate::run::USER_AGENT)
}

/// Waits (at most a minute) until the operator has made no request for a second: the work
/// that follows the last Ready (wallet figures, history) is then done too.
async fn settle(cluster: &devcluster::DevCluster) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = operator_total(cluster);
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = operator_total(cluster);
        if now == last {
            return;
        }
        last = now;
    }
}

/// The operator's requests per certificate, by verb and by `verb resource`.
fn operator_requests(
    cluster: &devcluster::DevCluster,
    certificates: usize,
) -> (BTreeMap<String, f64>, BTreeMap<String, f64>) {
    let agent = operator_agent();
    let per = certificates.max(1) as f64;
    let (mut by_verb, mut by_resource) = (BTreeMap::new(), BTreeMap::new());
    for (kind, count) in cluster.requests() {
        if kind.user_agent != agent {
            continue;
        }
        *by_verb.entry(kind.verb.clone()).or_insert(0.0) += count as f64 / per;
        *by_resource
            .entry(format!("{} {}", kind.verb, kind.resource))
            .or_insert(0.0) += count as f64 / per;
    }
    (by_verb, by_resource)
}

/// Checks the Secret of each named Certificate: its key matches its certificate, the chain
/// verifies to `ca.crt`, and the certificate names the Certificate's host. (verified, checked)
async fn verify_secrets(
    client: &Client,
    names: &[String],
    failures: &mut Vec<String>,
) -> anyhow::Result<(usize, usize)> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), NAMESPACE);
    let lp = ListParams::default().labels("app.kubernetes.io/managed-by=certinext-operator");
    let by_name: HashMap<String, Secret> = secrets
        .list(&lp)
        .await
        .context("listing the certificates' Secrets")?
        .items
        .into_iter()
        .map(|s| (s.name_any(), s))
        .collect();
    let by_name = Arc::new(by_name);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunks: Vec<Vec<String>> = names
        .chunks(names.len().div_ceil(threads).max(1))
        .map(<[String]>::to_vec)
        .collect();
    let mut tasks = Vec::new();
    for chunk in chunks {
        let by_name = by_name.clone();
        tasks.push(tokio::task::spawn_blocking(move || {
            chunk
                .iter()
                .map(|name| {
                    verify_one(&by_name, name).map_err(|e| format!("{NAMESPACE}/{name}: {e:#}"))
                })
                .collect::<Vec<_>>()
        }));
    }
    let (mut verified, mut checked) = (0, 0);
    for task in tasks {
        for result in task.await.context("a verification task")? {
            checked += 1;
            match result {
                Ok(()) => verified += 1,
                Err(failure) => failures.push(failure),
            }
        }
    }
    Ok((verified, checked))
}

fn verify_one(secrets: &HashMap<String, Secret>, name: &str) -> anyhow::Result<()> {
    let secret_name = format!("{name}-tls");
    let secret = secrets
        .get(&secret_name)
        .with_context(|| format!("Secret {secret_name} is missing"))?;
    let text = |key: &str| -> anyhow::Result<String> {
        let bytes = secret
            .data
            .as_ref()
            .and_then(|d| d.get(key))
            .with_context(|| format!("Secret {secret_name} has no {key}"))?;
        String::from_utf8(bytes.0.clone()).with_context(|| format!("{key} is not text"))
    };
    let (crt, key, ca) = (text("tls.crt")?, text("tls.key")?, text("ca.crt")?);
    let pair = crate::pki::load_key_pem(&key).context("tls.key")?;
    anyhow::ensure!(
        pair.matches_certificate_pem(&crt).context("tls.crt")?,
        "tls.key is not the key of tls.crt"
    );
    crate::pki::verify_chain(&crt, &ca, jiff::Timestamp::now()).context("the chain")?;
    let host = format!("{name}.{DOMAIN}");
    let info = crate::pki::inspect_pem(&crt).context("tls.crt")?;
    anyhow::ensure!(
        info.subject_alt_names.dns_names.contains(&host),
        "tls.crt does not name {host}"
    );
    Ok(())
}

/// Patches every burst Certificate's duration at once and waits until each is Ready with a
/// new revision.
async fn renewal_storm(
    certificates: &Api<Certificate>,
    observed: &Shared,
    names: &[String],
    args: &BenchArgs,
    timeout: Duration,
) -> anyhow::Result<Storm> {
    let start = Instant::now();
    let patch = Patch::Merge(json!({"spec": {"duration": STORM_DURATION}}));
    let patched: Vec<(String, Instant)> = stream::iter(names.to_vec())
        .map(|name| {
            let (patch, certificates) = (patch.clone(), certificates.clone());
            async move {
                certificates
                    .patch(&name, &PatchParams::default(), &patch)
                    .await
                    .with_context(|| format!("patching Certificate {NAMESPACE}/{name}"))?;
                Ok::<_, anyhow::Error>((name, Instant::now()))
            }
        })
        .buffer_unordered(usize::from(args.concurrency))
        .try_collect()
        .await?;
    let missing = wait_for(observed, names, timeout, |o| &o.renewed).await;
    let (latencies, last) = latencies(&lock(observed).renewed.at, &patched);
    let seconds = last
        .map_or(start.elapsed(), |last| {
            last.saturating_duration_since(start)
        })
        .as_secs_f64();
    let renewed = names.len() - missing;
    Ok(Storm {
        certificates: names.len(),
        renewed,
        seconds,
        renewals_per_second: renewed as f64 / seconds.max(f64::EPSILON),
        latency_ms: Latency::of(latencies),
    })
}

/// CPU seconds by who, as milliseconds per certificate of `certificates`, with their sum as
/// `all`.
fn per_certificate_ms(
    cpu_seconds: &BTreeMap<&'static str, f64>,
    certificates: usize,
) -> BTreeMap<&'static str, f64> {
    let per = |seconds: f64| 1000.0 * seconds / certificates.max(1) as f64;
    let mut ms: BTreeMap<&'static str, f64> =
        cpu_seconds.iter().map(|(who, s)| (*who, per(*s))).collect();
    ms.insert("all", per(cpu_seconds.values().sum()));
    ms
}

/// Figures by name, as `name 1.23, …`, each shown by `show`.
fn listed<K: std::fmt::Display>(
    figures: &BTreeMap<K, f64>,
    show: impl Fn(f64) -> String,
) -> String {
    figures
        .iter()
        .map(|(name, n)| format!("{name} {}", show(*n)))
        .collect::<Vec<_>>()
        .join(", ")
}

fn human(s: &Summary) -> String {
    let mib = |v: Option<f64>| v.map_or("n/a".to_owned(), |v| format!("{v:.0} MiB"));
    let lat = |l: &Latency| {
        format!(
            "p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms (n={})",
            l.p50, l.p90, l.p99, l.max, l.count
        )
    };
    let mut out = vec![
        format!(
            "certinext bench {} ({} build, {} cores), {} keys",
            s.version, s.build, s.nproc, s.key
        ),
        format!(
            "raw signing limit: {:.0} certificates/s on {} threads (per certificate: key {:.0} µs, CSR {:.0}+{:.0} µs, sign {:.0} µs, key PEM {:.0} µs)",
            s.raw.per_second,
            s.raw.threads,
            s.raw.step_us.key_generation,
            s.raw.step_us.csr_build,
            s.raw.step_us.csr_parse,
            s.raw.step_us.signing,
            s.raw.step_us.key_pem
        ),
        format!(
            "burst: {}/{} Ready in {:.2} s: {:.1} certificates/s end to end, {:.3} of the raw limit (creates took {:.2} s)",
            s.burst.ready,
            s.burst.certificates,
            s.burst.seconds,
            s.burst.certificates_per_second,
            s.burst.ratio_to_raw,
            s.burst.create_seconds
        ),
        format!(
            "burst latency, create to Ready: {}",
            lat(&s.burst.latency_ms)
        ),
        format!(
            "sequential latency, create to Ready: {}",
            lat(&s.sequential)
        ),
        format!(
            "operator API requests per certificate: {}",
            listed(&s.api_requests_per_certificate, |n| format!("{n:.2}"))
        ),
        format!(
            "operator reconciles per certificate: {}",
            listed(&s.reconciles_per_certificate, |n| format!("{n:.2}"))
        ),
        format!(
            "CPU during the burst: {} (operator share of operator + devcluster {:.0}%)",
            listed(&s.cpu_seconds, |secs| format!("{secs:.1} s")),
            s.operator_cpu_share * 100.0
        ),
        format!(
            "CPU per certificate: {}",
            listed(&s.cpu_ms_per_certificate, |ms| format!("{ms:.2} ms"))
        ),
        format!(
            "operator memory (its own process): peak {}; RSS after setup {}, after the burst {}",
            mib(s.memory.operator_peak_mib),
            mib(s.memory.operator_after_setup_mib),
            mib(s.memory.operator_after_burst_mib)
        ),
        format!(
            "devcluster + bench process memory: peak {}; RSS baseline {}, after {} unrelated Secrets {}, after setup {}, after the burst {}",
            mib(s.memory.peak_mib),
            mib(s.memory.baseline_mib),
            s.unrelated_secrets,
            mib(s.memory.after_unrelated_secrets_mib),
            mib(s.memory.after_setup_mib),
            mib(s.memory.after_burst_mib)
        ),
    ];
    if let Some(storm) = &s.renewal_storm {
        out.push(format!(
            "renewal storm: {}/{} renewed in {:.2} s ({:.1}/s); latency {}",
            storm.renewed,
            storm.certificates,
            storm.seconds,
            storm.renewals_per_second,
            lat(&storm.latency_ms)
        ));
    }
    out.push(format!(
        "Secrets verified: {}/{} ({})",
        s.secrets_verified,
        s.secrets_checked,
        if s.all_verified { "all" } else { "NOT all" }
    ));
    for failure in &s.failures {
        out.push(format!("  failure: {failure}"));
    }
    out.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let samples = (1..=100).map(Duration::from_millis).collect();
        let l = Latency::of(samples);
        assert_eq!(
            (l.count, l.p50, l.p90, l.p99, l.max),
            (100, 50.0, 90.0, 99.0, 100.0)
        );
        assert_eq!(Latency::of(vec![]).count, 0);
    }

    #[test]
    fn cpu_is_counted_per_certificate_by_who_and_in_all() {
        let seconds = BTreeMap::from([("devcluster", 2.0), ("operator", 1.5), ("bench", 0.5)]);
        let ms = per_certificate_ms(&seconds, 1000);
        assert_eq!(
            ms,
            BTreeMap::from([
                ("all", 4.0),
                ("bench", 0.5),
                ("devcluster", 2.0),
                ("operator", 1.5)
            ])
        );
        assert_eq!(
            per_certificate_ms(&seconds, 0)["all"],
            4000.0,
            "no division by zero"
        );
    }

    #[test]
    fn money_is_written_in_major_units() {
        assert_eq!(money(1), "0.01");
        assert_eq!(money(20_300), "203.00");
    }
}
