//! The cluster's own CA and serving certificate, generated at start, and the kubeconfig that
//! trusts them.

use std::net::SocketAddr;
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};
use rustls::pki_types::PrivateKeyDer;

/// The server's TLS identity.
pub struct ServingPki {
    /// The CA certificate clients trust, PEM.
    pub ca_pem: String,
    pub server_config: Arc<rustls::ServerConfig>,
}

/// What a data directory keeps so that a restarted cluster is the same cluster to its
/// clients: the CA, the serving certificate and key, and the token.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct Identity {
    pub ca_pem: String,
    pub chain_pem: String,
    pub key_pem: String,
    pub token: String,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("generating the cluster certificates: {0}")]
    Certificate(#[from] rcgen::Error),
    #[error("configuring TLS: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("reading the stored certificates: {0}")]
    Pem(#[from] rustls::pki_types::pem::Error),
    #[error("{path}: {source}")]
    Stored {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

/// The identity kept in `dir`, created there on first use.
pub fn load_or_create(dir: &std::path::Path, token: Option<String>) -> Result<Identity, TlsError> {
    let path = dir.join("identity.json");
    let stored = |source| TlsError::Stored {
        path: path.clone(),
        source,
    };
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| stored(std::io::Error::other(e))),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            let identity = create(token)?;
            std::fs::create_dir_all(dir).map_err(stored)?;
            let bytes =
                serde_json::to_vec(&identity).map_err(|e| stored(std::io::Error::other(e)))?;
            crate::write_private(&path, &String::from_utf8_lossy(&bytes)).map_err(stored)?;
            Ok(identity)
        }
        Err(error) => Err(stored(error)),
    }
}

/// A serving configuration for an identity.
pub fn serving(identity: &Identity) -> Result<ServingPki, TlsError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let chain = CertificateDer::pem_slice_iter(identity.chain_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()?;
    let key = PrivateKeyDer::from_pem_slice(identity.key_pem.as_bytes())?;
    let mut server_config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(chain, key)?;
    server_config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(ServingPki {
        ca_pem: identity.ca_pem.clone(),
        server_config: Arc::new(server_config),
    })
}

/// A fresh CA, a serving certificate for `localhost` and 127.0.0.1, and a token (random
/// unless given).
pub fn create(token: Option<String>) -> Result<Identity, TlsError> {
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "devcluster-ca");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let not_before = rcgen::date_time_ymd(2000, 1, 1);
    let not_after = rcgen::date_time_ymd(2100, 1, 1);
    ca_params.not_before = not_before;
    ca_params.not_after = not_after;
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;

    let mut params = CertificateParams::new(vec!["localhost".to_owned()])?;
    params
        .subject_alt_names
        .push(SanType::IpAddress([127, 0, 0, 1].into()));
    params
        .distinguished_name
        .push(DnType::CommonName, "devcluster-apiserver");
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.not_before = not_before;
    params.not_after = not_after;
    let key = KeyPair::generate()?;
    let certificate = params.signed_by(&key, &ca)?;
    Ok(Identity {
        ca_pem: ca.pem(),
        chain_pem: format!("{}{}", certificate.pem(), ca.pem()),
        key_pem: key.serialize_pem(),
        token: token.unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string()),
    })
}

/// A kubeconfig with one cluster, user and context, all named `name`.
pub fn kubeconfig(name: &str, address: SocketAddr, ca_pem: &str, token: &str) -> String {
    use base64::Engine;
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: {name}
  cluster:
    server: https://{address}
    certificate-authority-data: {ca}
users:
- name: {name}
  user:
    token: {token}
contexts:
- name: {name}
  context:
    cluster: {name}
    user: {name}
    namespace: default
current-context: {name}
preferences: {{}}
"
    )
}
