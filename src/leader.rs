//! Leader election on a `coordination.k8s.io/v1` Lease, so that of several replicas exactly
//! one runs the controllers (one writer of statuses and, later, of charges).
//!
//! `kube-lease-manager` acquires, renews and takes over the Lease. On top of it, the leader
//! confirms its hold before starting the controllers and then every half grace period: it
//! reads the Lease and keeps leading only while the Lease names it and its last renewal is
//! fresh enough that no other replica may yet take it over. A leader that cannot confirm in
//! time (the API server unreachable, a renewal late) stops its controllers at once, before
//! the Lease can expire for the others. Releasing on shutdown clears the holder only if it
//! is still this replica, guarded by the Lease's resourceVersion.

use std::hash::{BuildHasher, Hasher};
use std::time::{Duration, SystemTime};

use anyhow::Context;
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, PostParams};
use kube_lease_manager::{LeaseManager, LeaseManagerBuilder, LeaseManagerError};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The field manager of the operator's own writes to the Lease.
const MANAGER: &str = "certinext-operator";

/// Where the Lease is and how long a hold lasts.
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    pub namespace: String,
    pub name: String,
    /// How long a hold lasts after its last renewal; whole seconds, at least 2.
    pub duration: Duration,
    /// This replica's name in the Lease's `holderIdentity`.
    pub identity: String,
}

impl LeaseConfig {
    /// Renewals happen this long before a hold would lapse: a third of the duration, at least
    /// one second.
    pub fn grace(&self) -> Duration {
        Duration::from_secs((self.duration.as_secs() / 3).max(1))
    }

    /// How much earlier than the others would take over the leader stops counting on its
    /// hold: room for clock skew and for the stop itself.
    pub fn margin(&self) -> Duration {
        self.grace() / 2
    }
}

/// A name unique to this process: the pod's name (or host name) and a random suffix, as
/// client-go builds it.
pub fn identity() -> String {
    let host = std::env::var("POD_NAME")
        .or_else(|_| std::env::var("HOSTNAME"))
        .ok()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "certinext".to_owned());
    let mut random = std::collections::hash_map::RandomState::new().build_hasher();
    random.write_u32(std::process::id());
    format!("{host}_{:012x}", random.finish() & 0xffff_ffff_ffff)
}

/// Parses a lease duration such as `15s` or `1m`: whole seconds, at least two.
pub fn parse_lease_duration(text: &str) -> Result<Duration, String> {
    let duration: jiff::SignedDuration = text
        .parse()
        .map_err(|error| format!("{text:?} is not a duration like \"15s\": {error}"))?;
    if duration.subsec_nanos() != 0 || duration.as_secs() < 2 {
        return Err(format!(
            "{text:?}: a lease lasts a whole number of seconds, at least 2"
        ));
    }
    u64::try_from(duration.as_secs())
        .map(Duration::from_secs)
        .map_err(|_| format!("{text:?} is out of range"))
}

/// Until when `identity` may count on holding `lease`, by the Lease alone: its last renewal
/// plus its duration, if the Lease names `identity` as its holder.
pub fn held_until(lease: &Lease, identity: &str) -> Option<SystemTime> {
    let spec = lease.spec.as_ref()?;
    if spec.holder_identity.as_deref() != Some(identity) {
        return None;
    }
    let renewed: SystemTime = spec.renew_time.as_ref()?.0.into();
    let seconds = u64::try_from(spec.lease_duration_seconds?).ok()?;
    renewed.checked_add(Duration::from_secs(seconds))
}

/// One replica's part in the election.
pub struct Election {
    config: LeaseConfig,
    api: Api<Lease>,
    /// What the lease manager believes: true while it holds the Lease.
    holding: watch::Receiver<bool>,
    manager: JoinHandle<Result<LeaseManager, LeaseManagerError>>,
    /// Until when the last confirmation lets this replica lead.
    valid_until: Option<SystemTime>,
}

impl Election {
    /// Joins the election, creating the Lease if it does not exist.
    pub async fn join(client: kube::Client, config: LeaseConfig) -> anyhow::Result<Self> {
        let lease = format!("Lease {}/{}", config.namespace, config.name);
        let manager = LeaseManagerBuilder::new(client.clone(), &config.name)
            .with_namespace(&config.namespace)
            .with_identity(&config.identity)
            .with_duration(config.duration.as_secs())
            .with_grace(config.grace().as_secs())
            .with_field_manager(format!("{MANAGER}/{}", config.identity))
            .build()
            .await
            .with_context(|| format!("joining the leader election on {lease}"))?;
        let (holding, manager) = manager.watch().await;
        Ok(Election {
            api: Api::namespaced(client, &config.namespace),
            config,
            holding,
            manager,
            valid_until: None,
        })
    }

    pub fn config(&self) -> &LeaseConfig {
        &self.config
    }

    /// How often the leader confirms its hold.
    pub fn confirm_interval(&self) -> Duration {
        self.config.margin()
    }

    /// Whether the lease manager believes it holds the Lease.
    pub fn holding(&self) -> bool {
        *self.holding.borrow()
    }

    /// Waits for the lease manager to acquire or lose the Lease; fails if it stopped.
    pub async fn changed(&mut self) -> anyhow::Result<bool> {
        self.holding.changed().await.with_context(|| {
            format!(
                "the leader election on Lease {}/{} stopped",
                self.config.namespace, self.config.name
            )
        })?;
        Ok(*self.holding.borrow_and_update())
    }

    /// Whether this replica may lead now: the lease manager holds the Lease, and the Lease,
    /// read from the API server, names this replica with a renewal fresh enough. While
    /// `leading`, the read must answer before the previous confirmation runs out.
    pub async fn confirm(&mut self, leading: bool) -> bool {
        if !self.holding() {
            self.valid_until = None;
            return false;
        }
        let budget = match (leading, self.valid_until) {
            (true, Some(until)) => until
                .duration_since(SystemTime::now())
                .unwrap_or(Duration::ZERO),
            (true, None) => Duration::ZERO,
            (false, _) => self.config.grace(),
        };
        let lease = format!("Lease {}/{}", self.config.namespace, self.config.name);
        match tokio::time::timeout(budget, self.api.get_opt(&self.config.name)).await {
            Ok(Ok(Some(found))) => {
                self.valid_until = held_until(&found, &self.config.identity)
                    .and_then(|until| until.checked_sub(self.config.margin()));
                if self.valid_until.is_none() {
                    tracing::info!(%lease, holder = ?found.spec.and_then(|s| s.holder_identity), "the lease is held by another replica");
                }
            }
            Ok(Ok(None)) => {
                tracing::warn!(%lease, "the lease was deleted");
                self.valid_until = None;
            }
            Ok(Err(error)) => {
                tracing::warn!(%lease, %error, "could not read the lease to confirm leadership");
            }
            Err(_) => {
                tracing::warn!(%lease, "reading the lease took too long to confirm leadership");
                self.valid_until = None;
            }
        }
        self.valid_until
            .is_some_and(|until| SystemTime::now() < until)
    }

    /// Leaves the election: stops renewing, then clears the Lease's holder if it still names
    /// this replica, so that another replica takes over at once. Returns whether it did.
    pub async fn release(self) -> anyhow::Result<bool> {
        self.manager.abort();
        // The manager ends cancelled; a renewal it had in flight has had its answer.
        let _ = self.manager.await;
        let name = &self.config.name;
        let what = format!("releasing Lease {}/{name}", self.config.namespace);
        for _ in 0..5 {
            let Some(mut lease) = self.api.get_opt(name).await.context(what.clone())? else {
                return Ok(false);
            };
            let spec = lease.spec.get_or_insert_with(Default::default);
            if spec.holder_identity.as_deref() != Some(self.config.identity.as_str()) {
                return Ok(false);
            }
            spec.holder_identity = None;
            spec.acquire_time = None;
            spec.renew_time = None;
            spec.lease_duration_seconds = None;
            let params = PostParams {
                field_manager: Some(MANAGER.to_owned()),
                ..Default::default()
            };
            // The read's resourceVersion guards the write: a 409 means the Lease changed since.
            match self.api.replace(name, &params, &lease).await {
                Ok(_) => return Ok(true),
                Err(kube::Error::Api(status)) if status.is_conflict() => continue,
                Err(error) => return Err(error).context(what),
            }
        }
        anyhow::bail!("{what}: it kept changing while being released")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(holder: Option<&str>, renewed: Option<&str>, seconds: Option<i32>) -> Lease {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "certinext-operator"},
            "spec": {
                "holderIdentity": holder,
                "renewTime": renewed,
                "leaseDurationSeconds": seconds,
            },
        }))
        .expect("a valid Lease")
    }

    #[test]
    fn a_hold_lasts_from_the_last_renewal_for_the_duration() {
        let renewed = "2026-03-01T10:00:00.000000Z";
        let at = |s: &str| SystemTime::from(s.parse::<jiff::Timestamp>().expect("a timestamp"));
        assert_eq!(
            held_until(&lease(Some("a"), Some(renewed), Some(15)), "a"),
            Some(at("2026-03-01T10:00:15Z"))
        );
        assert_eq!(
            held_until(&lease(Some("b"), Some(renewed), Some(15)), "a"),
            None
        );
        assert_eq!(held_until(&lease(None, None, None), "a"), None);
        assert_eq!(held_until(&lease(Some("a"), None, Some(15)), "a"), None);
        assert_eq!(
            held_until(&lease(Some("a"), Some(renewed), None), "a"),
            None
        );
    }

    #[test]
    fn lease_durations_are_whole_seconds_of_at_least_two() {
        assert_eq!(parse_lease_duration("15s"), Ok(Duration::from_secs(15)));
        assert_eq!(parse_lease_duration("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_lease_duration("3s"), Ok(Duration::from_secs(3)));
        for bad in ["1s", "2.5s", "0s", "-5s", "soon", ""] {
            assert!(parse_lease_duration(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn renewals_come_a_third_of_the_duration_early_and_the_leader_stops_half_that_early() {
        let config = |seconds| LeaseConfig {
            namespace: "ns".into(),
            name: "lease".into(),
            duration: Duration::from_secs(seconds),
            identity: "me".into(),
        };
        assert_eq!(config(15).grace(), Duration::from_secs(5));
        assert_eq!(config(15).margin(), Duration::from_millis(2500));
        assert_eq!(config(3).grace(), Duration::from_secs(1));
        assert_eq!(config(2).grace(), Duration::from_secs(1));
    }

    #[test]
    fn identities_differ_between_processes_and_calls() {
        assert_ne!(identity(), identity());
    }
}
