//! The raw limit: what the signing path alone does per second on every core, with no
//! Kubernetes in the loop — the same `pki` calls the operator makes per certificate (key
//! generation, CSR, signing, PEM encoding of the key), one thread per core.

use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;
use serde_json::json;

use crate::api::CertificateSpec;
use crate::api::common::{KeyAlgorithm, PrivateKeyEncoding};
use crate::api::privateca::PrivateCASpec;
use crate::api::product::CertificateTemplate;
use crate::pki::{self, Issuer, LeafProfile};

/// What the raw run measured.
#[derive(Debug, Clone, Serialize)]
pub struct RawFigures {
    /// Certificates (key + CSR + signature + PEM) per second over all threads.
    pub per_second: f64,
    pub threads: usize,
    pub certificates: u64,
    pub seconds: f64,
    /// Mean time of each step per certificate on one thread, in microseconds.
    pub step_us: Steps,
}

/// Mean microseconds per certificate of each step.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Steps {
    pub key_generation: f64,
    pub csr_build: f64,
    pub csr_parse: f64,
    pub signing: f64,
    pub key_pem: f64,
}

/// A root CA like the bench's PrivateCAs (ECDSA P-256) as an `Issuer`.
pub fn test_issuer() -> anyhow::Result<Issuer> {
    let spec: PrivateCASpec = serde_json::from_value(json!({
        "subject": {"commonName": "Bench Raw Root"},
        "privateKey": {"algorithm": "ECDSA", "size": 256},
        "duration": "87600h",
    }))
    .context("the raw run's CA spec")?;
    let key = pki::generate_key_for(KeyAlgorithm::EcdsaP256)?;
    let profile = pki::CaProfile::from_spec(&spec, jiff::Timestamp::now())?;
    let root = pki::issue_root_ca(&profile, &key)?;
    Ok(Issuer::new(&root.chain_pem, key, &root.root_pem)?)
}

/// Signs certificates for `algorithm` keys on `threads` threads for about `seconds`.
pub fn measure(
    algorithm: KeyAlgorithm,
    threads: usize,
    seconds: f64,
) -> anyhow::Result<RawFigures> {
    let issuer = test_issuer()?;
    let spec: CertificateSpec = serde_json::from_value(json!({
        "secretName": "raw-tls",
        "issuerRef": {"name": "raw"},
        "dnsNames": ["raw.bench.example"],
        "duration": "2160h",
    }))
    .context("the raw run's certificate spec")?;
    let budget = Duration::from_secs_f64(seconds.max(0.1));
    let start = Instant::now();
    let results: Vec<anyhow::Result<(u64, Steps)>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads.max(1))
            .map(|i| {
                let (issuer, spec) = (&issuer, &spec);
                std::thread::Builder::new()
                    .name(format!("cn-raw-{i}"))
                    .spawn_scoped(scope, move || sign_for(issuer, spec, algorithm, budget))
            })
            .collect();
        handles
            .into_iter()
            .map(|handle| match handle {
                Ok(handle) => handle
                    .join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("a raw signing thread panicked"))),
                Err(error) => Err(anyhow::anyhow!("starting a raw signing thread: {error}")),
            })
            .collect()
    });
    let elapsed = start.elapsed().as_secs_f64();
    let mut certificates = 0;
    let mut total = Steps::default();
    for result in results {
        let (count, steps) = result?;
        certificates += count;
        total.key_generation += steps.key_generation;
        total.csr_build += steps.csr_build;
        total.csr_parse += steps.csr_parse;
        total.signing += steps.signing;
        total.key_pem += steps.key_pem;
    }
    let per = |seconds: f64| seconds * 1e6 / certificates.max(1) as f64;
    Ok(RawFigures {
        per_second: certificates as f64 / elapsed,
        threads: threads.max(1),
        certificates,
        seconds: elapsed,
        step_us: Steps {
            key_generation: per(total.key_generation),
            csr_build: per(total.csr_build),
            csr_parse: per(total.csr_parse),
            signing: per(total.signing),
            key_pem: per(total.key_pem),
        },
    })
}

/// One thread's loop: certificates signed and the seconds spent in each step.
fn sign_for(
    issuer: &Issuer,
    spec: &CertificateSpec,
    algorithm: KeyAlgorithm,
    budget: Duration,
) -> anyhow::Result<(u64, Steps)> {
    let start = Instant::now();
    let mut steps = Steps::default();
    let mut count = 0;
    let usages = pki::usages_for(Some(CertificateTemplate::ServerTls), &[], algorithm)?;
    while count == 0 || start.elapsed() < budget {
        let t = Instant::now();
        let key = pki::generate_key_for(algorithm)?;
        steps.key_generation += t.elapsed().as_secs_f64();

        let t = Instant::now();
        let csr = pki::build_csr(spec, &key)?;
        steps.csr_build += t.elapsed().as_secs_f64();

        let t = Instant::now();
        let parsed = pki::parse_csr(&csr)?;
        steps.csr_parse += t.elapsed().as_secs_f64();

        let t = Instant::now();
        let now = jiff::Timestamp::now();
        let profile = LeafProfile {
            usages: usages.clone(),
            validity: pki::clip_validity(now, &spec.duration, None, issuer.not_after())?,
        };
        let issued = pki::sign_leaf(&parsed, issuer, &profile)?;
        steps.signing += t.elapsed().as_secs_f64();

        let t = Instant::now();
        let pem = key.to_pem(PrivateKeyEncoding::Pkcs1)?;
        steps.key_pem += t.elapsed().as_secs_f64();

        std::hint::black_box((issued, pem));
        count += 1;
    }
    Ok((count, steps))
}
