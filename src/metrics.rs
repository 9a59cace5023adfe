//! Prometheus metrics: reconcile counts and durations per kind, and gauges of what the
//! cluster's objects say (certificates, orders, wallet balances), computed at each scrape
//! from watched copies of the objects. No Secret is ever watched or read here.
//!
//! Balances are exported as floats of major units for dashboards only; money itself is
//! never computed from them.

use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use futures_util::StreamExt;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};
use serde::de::DeserializeOwned;

use crate::api::common::Condition;
use crate::api::{Account, Certificate, CertificateStatus, Group, Order, OrderStatus};
use crate::billing::Money;
use crate::controllers::{Caches, lean};

/// The label of the per-kind reconcile metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: String,
}

type DurationFamily = Family<KindLabel, Histogram, fn() -> Histogram>;

/// Reconcile counts, failures and durations of every controller in this process.
#[derive(Clone, Debug)]
pub struct ReconcileMetrics {
    pub reconciles: Family<KindLabel, Counter>,
    pub errors: Family<KindLabel, Counter>,
    pub durations: DurationFamily,
}

fn duration_histogram() -> Histogram {
    // 5 ms to about 20 s.
    Histogram::new(exponential_buckets(0.005, 2.0, 13))
}

impl ReconcileMetrics {
    fn new() -> Self {
        ReconcileMetrics {
            reconciles: Family::default(),
            errors: Family::default(),
            durations: Family::new_with_constructor(duration_histogram),
        }
    }

    /// Records one reconcile of `kind` that took `elapsed` and failed or not.
    pub fn observe(&self, kind: &str, elapsed: Duration, failed: bool) {
        let label = KindLabel {
            kind: kind.to_owned(),
        };
        self.reconciles.get_or_create(&label).inc();
        if failed {
            self.errors.get_or_create(&label).inc();
        }
        self.durations
            .get_or_create(&label)
            .observe(elapsed.as_secs_f64());
    }
}

static RECONCILES: LazyLock<ReconcileMetrics> = LazyLock::new(ReconcileMetrics::new);

/// The process's reconcile metrics, which every controller's reconcile records into.
pub fn reconciles() -> &'static ReconcileMetrics {
    &RECONCILES
}

/// Every metric `certinext run` serves, under the `certinext_` prefix.
pub fn registry(cluster: ClusterState, leader: Gauge) -> Registry {
    let mut registry = Registry::with_prefix("certinext");
    let reconciles = reconciles().clone();
    registry.register(
        "reconciles",
        "Reconciles run, per kind",
        reconciles.reconciles,
    );
    registry.register(
        "reconcile_errors",
        "Reconciles that failed and will be retried, per kind",
        reconciles.errors,
    );
    registry.register_with_unit(
        "reconcile_duration",
        "How long reconciles took, per kind",
        Unit::Seconds,
        reconciles.durations,
    );
    registry.register(
        "leader",
        "1 while this replica holds the leader lease and runs the controllers, else 0",
        leader,
    );
    registry.register_collector(Box::new(cluster));
    registry
}

/// The registry as text: OpenMetrics when the scraper accepts it, else the Prometheus text
/// format 0.0.4. Returns the body and its content type.
pub fn encode(
    registry: &Registry,
    accept: &str,
) -> Result<(String, &'static str), std::fmt::Error> {
    let mut body = String::new();
    if accept.contains("application/openmetrics-text") {
        prometheus_client::encoding::text::encode(&mut body, registry)?;
        Ok((
            body,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        ))
    } else {
        prometheus_client::encoding::prometheus_text::encode(&mut body, registry)?;
        Ok((
            body,
            prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
        ))
    }
}

/// Watched copies of the objects the gauges describe.
#[derive(Clone)]
pub struct ClusterState {
    accounts: Store<Account>,
    /// One store per watched namespace (or one for the cluster).
    groups: Vec<Store<Group>>,
    /// Certificates and Orders: while this replica leads, the controllers' own caches (each
    /// change is watched once); else the metrics' own watches, slimmed.
    objects: Arc<std::sync::RwLock<Caches>>,
}

impl std::fmt::Debug for ClusterState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterState").finish_non_exhaustive()
    }
}

impl ClusterState {
    /// Starts watching accounts and groups; the watches run until the returned tasks are
    /// aborted. Certificates and Orders come from [`ClusterState::follow`] or
    /// [`ClusterState::lead`].
    pub fn watch(
        client: &Client,
        settings: &crate::controllers::Settings,
    ) -> (Self, Vec<tokio::task::JoinHandle<()>>) {
        let (accounts, a) = reflect(Api::<Account>::all(client.clone()), |_| {});
        let (groups, g) = reflect_each(settings.apis::<Group>(client), |_| {});
        let state = ClusterState {
            accounts,
            groups,
            objects: Arc::default(),
        };
        let tasks = std::iter::once(a).chain(g).collect();
        (state, tasks)
    }

    /// Reads Certificates and Orders from watches of its own, which run until the returned
    /// tasks are aborted: for a replica that does not lead.
    pub fn follow(
        &self,
        client: &Client,
        settings: &crate::controllers::Settings,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        let (certificates, c) =
            reflect_each(settings.apis::<Certificate>(client), gauged_certificate);
        let (orders, o) = reflect_each(settings.apis::<Order>(client), gauged_order);
        self.set(Caches {
            certificates,
            orders,
        });
        c.into_iter().chain(o).collect()
    }

    /// Reads Certificates and Orders from the running controllers' caches.
    pub fn lead(&self, caches: Caches) {
        self.set(caches);
    }

    fn set(&self, caches: Caches) {
        *self.objects.write().unwrap_or_else(|e| e.into_inner()) = caches;
    }

    /// The gauges' values as the watched objects are now.
    pub fn gauges(&self) -> Gauges {
        fn all<K: Resource<DynamicType = ()> + Clone>(stores: &[Store<K>]) -> Vec<Arc<K>> {
            stores.iter().flat_map(Store::state).collect()
        }
        let objects = self
            .objects
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        Gauges::of(
            &self.accounts.state(),
            &all(&self.groups),
            &all(&objects.certificates),
            &all(&objects.orders),
        )
    }
}

/// Reflectors of `K` through each of `apis`.
fn reflect_each<K>(
    apis: Vec<Api<K>>,
    slim: fn(&mut K),
) -> (Vec<Store<K>>, Vec<tokio::task::JoinHandle<()>>)
where
    K: Resource<DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    apis.into_iter().map(|api| reflect(api, slim)).unzip()
}

/// A Certificate as the gauges read it: its name, state (condition types, statuses and
/// reasons) and expiry. One is held per Certificate, so the rest is dropped.
fn gauged_certificate(certificate: &mut Certificate) {
    keep_only_names(&mut certificate.metadata);
    let spec = &mut certificate.spec;
    for names in [
        &mut spec.dns_names,
        &mut spec.ip_addresses,
        &mut spec.uris,
        &mut spec.email_addresses,
    ] {
        *names = Vec::new();
    }
    spec.secret_template = None;
    spec.subject = None;
    if let Some(status) = certificate.status.take() {
        certificate.status = Some(CertificateStatus {
            conditions: status
                .conditions
                .into_iter()
                .map(|condition| Condition {
                    message: String::new(),
                    ..condition
                })
                .collect(),
            not_after: status.not_after,
            ..CertificateStatus::default()
        });
    }
}

/// An Order as the gauges read it: its name and state.
fn gauged_order(order: &mut Order) {
    keep_only_names(&mut order.metadata);
    order.spec.request = String::new();
    order.spec.approval = None;
    let state = order.status.as_ref().and_then(|s| s.state);
    order.status = Some(OrderStatus {
        state,
        ..OrderStatus::default()
    });
}

fn keep_only_names(metadata: &mut kube::api::ObjectMeta) {
    *metadata = kube::api::ObjectMeta {
        name: metadata.name.take(),
        namespace: metadata.namespace.take(),
        ..kube::api::ObjectMeta::default()
    };
}

/// A reflector of every `K`, keeping only what the gauges read about (as `slim` leaves it).
fn reflect<K>(api: Api<K>, slim: fn(&mut K)) -> (Store<K>, tokio::task::JoinHandle<()>)
where
    K: Resource<DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let (reader, writer) = reflector::store();
    let stream = lean::watch(api, watcher::Config::default())
        .modify(move |object: &mut K| {
            object.annotations_mut().clear();
            slim(object);
        })
        .reflect(writer)
        .applied_objects();
    let task = tokio::spawn(async move {
        stream
            .for_each(|event| async move {
                if let Err(error) = event {
                    tracing::debug!(kind = %K::kind(&()), %error, "watch for metrics failed; retrying");
                }
            })
            .await;
    });
    (reader, task)
}

/// What a certificate's conditions say, as one word: `Ready` while the Secret holds a valid
/// certificate for the spec (even during a renewal), `Issuing` while the first or a
/// replacing certificate is on its way, `NotReady` otherwise.
pub fn certificate_state(certificate: &Certificate) -> &'static str {
    let conditions = certificate
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    let holds = |kind: &str| {
        conditions
            .iter()
            .any(|c| c.type_ == kind && c.status == "True")
    };
    if holds("Ready") {
        "Ready"
    } else if holds("Issuing") {
        "Issuing"
    } else {
        "NotReady"
    }
}

/// An order's state as a label; `New` before the operator has decided anything.
pub fn order_state(order: &Order) -> String {
    match order.status.as_ref().and_then(|s| s.state) {
        Some(state) => format!("{state:?}"),
        None => "New".to_owned(),
    }
}

/// An amount as a float of major units, for display only.
fn major_units(amount: Money) -> f64 {
    amount.minor_units() as f64 / 100.0
}

/// The gauges' values, computed from plain objects.
#[derive(Debug, Default, PartialEq)]
pub struct Gauges {
    /// Certificates per (namespace, state).
    pub certificates: BTreeMap<(String, &'static str), i64>,
    /// Each certificate's notAfter in Unix seconds, per (namespace, name).
    pub certificate_expirations: BTreeMap<(String, String), i64>,
    /// Orders per (namespace, state).
    pub orders: BTreeMap<(String, String), i64>,
    /// Each account wallet's balance, per (account, currency).
    pub account_balances: BTreeMap<(String, String), f64>,
    /// Each group's balance, per (namespace, group).
    pub group_balances: BTreeMap<(String, String), f64>,
}

impl Gauges {
    pub fn of(
        accounts: &[Arc<Account>],
        groups: &[Arc<Group>],
        certificates: &[Arc<Certificate>],
        orders: &[Arc<Order>],
    ) -> Self {
        let mut gauges = Gauges::default();
        for certificate in certificates {
            let namespace = certificate.namespace().unwrap_or_default();
            *gauges
                .certificates
                .entry((namespace.clone(), certificate_state(certificate)))
                .or_default() += 1;
            if let Some(not_after) = certificate
                .status
                .as_ref()
                .and_then(|s| s.not_after.as_ref())
            {
                gauges
                    .certificate_expirations
                    .insert((namespace, certificate.name_any()), not_after.0.as_second());
            }
        }
        for order in orders {
            *gauges
                .orders
                .entry((order.namespace().unwrap_or_default(), order_state(order)))
                .or_default() += 1;
        }
        for account in accounts {
            if let Some(wallet) = account.status.as_ref().and_then(|s| s.wallet.as_ref()) {
                gauges.account_balances.insert(
                    (account.name_any(), wallet.currency.clone()),
                    major_units(wallet.balance),
                );
            }
        }
        for group in groups {
            if let Some(balance) = group.status.as_ref().and_then(|s| s.balance) {
                gauges.group_balances.insert(
                    (group.namespace().unwrap_or_default(), group.name_any()),
                    major_units(balance),
                );
            }
        }
        gauges
    }
}

impl Collector for ClusterState {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let gauges = self.gauges();
        gauge_family(
            &mut encoder,
            "certificates",
            "Certificates per namespace and state (Ready, Issuing, NotReady)",
            &gauges.certificates,
            ["namespace", "state"],
        )?;
        gauge_family(
            &mut encoder,
            "certificate_expiration_timestamp_seconds",
            "When each certificate's current X.509 certificate expires (status.notAfter), in Unix seconds",
            &gauges.certificate_expirations,
            ["namespace", "name"],
        )?;
        gauge_family(
            &mut encoder,
            "orders",
            "Orders per namespace and state",
            &gauges.orders,
            ["namespace", "state"],
        )?;
        gauge_family(
            &mut encoder,
            "account_balance",
            "Each account wallet's balance in major units of its currency (for display only)",
            &gauges.account_balances,
            ["account", "currency"],
        )?;
        gauge_family(
            &mut encoder,
            "group_balance",
            "Each group's balance in major units of its account's currency (for display only)",
            &gauges.group_balances,
            ["namespace", "group"],
        )?;
        Ok(())
    }
}

/// Writes one gauge family whose samples are keyed by their two label values, skipping it
/// when it has no samples.
fn gauge_family<A, B, Value>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    samples: &BTreeMap<(A, B), Value>,
    label_names: [&str; 2],
) -> Result<(), std::fmt::Error>
where
    A: AsRef<str>,
    B: AsRef<str>,
    Value: Copy + prometheus_client::encoding::EncodeGaugeValue,
{
    if samples.is_empty() {
        return Ok(());
    }
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for ((a, b), value) in samples {
        let labels = [(label_names[0], a.as_ref()), (label_names[1], b.as_ref())];
        ConstGauge::new(*value).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object<K: DeserializeOwned>(value: serde_json::Value) -> Arc<K> {
        Arc::new(serde_json::from_value(value).expect("a valid test object"))
    }

    fn certificate(
        name: &str,
        conditions: &[(&str, &str)],
        not_after: Option<&str>,
    ) -> Arc<Certificate> {
        let conditions: Vec<_> = conditions
            .iter()
            .map(|(kind, status)| {
                serde_json::json!({
                    "type": kind, "status": status, "reason": "Test", "message": "",
                    "lastTransitionTime": "2026-01-01T00:00:00Z",
                })
            })
            .collect();
        object(serde_json::json!({
            "apiVersion": "certinext.io/v1alpha1",
            "kind": "Certificate",
            "metadata": {"name": name, "namespace": "web"},
            "spec": {"secretName": format!("{name}-tls"), "productRef": {"name": "p"}},
            "status": {"conditions": conditions, "notAfter": not_after},
        }))
    }

    #[test]
    fn a_certificate_is_ready_issuing_or_not_ready() {
        let cases = [
            (vec![("Ready", "True")], "Ready"),
            (vec![("Ready", "True"), ("Issuing", "True")], "Ready"),
            (vec![("Ready", "False"), ("Issuing", "True")], "Issuing"),
            (vec![("Ready", "False")], "NotReady"),
            (vec![], "NotReady"),
        ];
        for (conditions, state) in cases {
            assert_eq!(
                certificate_state(&certificate("c", &conditions, None)),
                state,
                "{conditions:?}"
            );
        }
    }

    #[test]
    fn gauges_count_certificates_and_orders_and_convert_balances_to_major_units() {
        let accounts = [object::<Account>(serde_json::json!({
            "apiVersion": "certinext.io/v1alpha1",
            "kind": "Account",
            "metadata": {"name": "globex"},
            "spec": {"type": "Enterprise", "currency": "USD"},
            "status": {"wallet": {"currency": "USD", "credited": "7500.00", "allocated": "3500.00",
                                  "spent": "0", "balance": "4000.05"}},
        }))];
        let groups = [object::<Group>(serde_json::json!({
            "apiVersion": "certinext.io/v1alpha1",
            "kind": "Group",
            "metadata": {"name": "platform", "namespace": "web"},
            "spec": {},
            "status": {"balance": "-12.50"},
        }))];
        let certificates = [
            certificate("a", &[("Ready", "True")], Some("2027-01-01T00:00:00Z")),
            certificate("b", &[("Ready", "True")], None),
            certificate("c", &[("Issuing", "True")], None),
        ];
        let orders = [
            object::<Order>(serde_json::json!({
                "apiVersion": "certinext.io/v1alpha1",
                "kind": "Order",
                "metadata": {"name": "a-1", "namespace": "web"},
                "spec": {"certificateRef": {"name": "a"}, "revision": 1, "type": "Purchase", "request": "csr", "duration": "720h"},
                "status": {"state": "Issued"},
            })),
            object::<Order>(serde_json::json!({
                "apiVersion": "certinext.io/v1alpha1",
                "kind": "Order",
                "metadata": {"name": "c-1", "namespace": "web"},
                "spec": {"certificateRef": {"name": "c"}, "revision": 1, "type": "Purchase", "request": "csr", "duration": "720h"},
            })),
        ];
        let gauges = Gauges::of(&accounts, &groups, &certificates, &orders);
        let web = |s: &str| ("web".to_owned(), s.to_owned());
        assert_eq!(
            gauges.certificates,
            BTreeMap::from([
                (("web".to_owned(), "Ready"), 2),
                (("web".to_owned(), "Issuing"), 1)
            ])
        );
        assert_eq!(
            gauges.certificate_expirations,
            BTreeMap::from([(web("a"), 1_798_761_600)])
        );
        assert_eq!(
            gauges.orders,
            BTreeMap::from([(web("Issued"), 1), (web("New"), 1)])
        );
        assert_eq!(
            gauges.account_balances,
            BTreeMap::from([(("globex".to_owned(), "USD".to_owned()), 4000.05)])
        );
        assert_eq!(
            gauges.group_balances,
            BTreeMap::from([(web("platform"), -12.5)])
        );
    }

    #[test]
    fn reconciles_are_counted_per_kind_and_served_as_prometheus_text() {
        let metrics = ReconcileMetrics::new();
        metrics.observe("Widget", Duration::from_millis(12), false);
        metrics.observe("Widget", Duration::from_millis(30), true);
        let mut registry = Registry::with_prefix("certinext");
        registry.register("reconciles", "", metrics.reconciles.clone());
        registry.register("reconcile_errors", "", metrics.errors.clone());
        registry.register_with_unit(
            "reconcile_duration",
            "",
            Unit::Seconds,
            metrics.durations.clone(),
        );
        let (text, content_type) = encode(&registry, "*/*").expect("encodes");
        assert!(content_type.starts_with("text/plain; version=0.0.4"));
        assert!(
            text.contains("certinext_reconciles_total{kind=\"Widget\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("certinext_reconcile_errors_total{kind=\"Widget\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("certinext_reconcile_duration_seconds_count{kind=\"Widget\"} 2\n"),
            "{text}"
        );
        let (open, content_type) =
            encode(&registry, "application/openmetrics-text;version=1.0.0").expect("encodes");
        assert!(content_type.starts_with("application/openmetrics-text"));
        assert!(open.ends_with("# EOF\n"), "{open}");
    }
}
