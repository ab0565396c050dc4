//! Mutual TLS for the cluster: a cluster CA, node certificates it signs (rcgen), and the rustls
//! configurations (ring provider, TLS 1.3 only, ALPN `grove/1`) that require both ends of every
//! connection to present a certificate signed by that CA.
//!
//! A node certificate names its node as its DNS subject alternative name, so the dialing side
//! verifies it reached the node it meant to (TLS server name = node id) and the accepting side
//! checks that the node id claimed in the handshake is the one its certificate names.
//!
//! Files (PEM), as `grove cluster init` and `grove cluster issue-cert` write them:
//! `ca.pem`, `ca.key` (0600, only where certificates are issued), `NODE.pem`, `NODE.key` (0600).

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, version::TLS13};

use crate::envelope::ALPN;
use crate::error::RpcError;
use crate::transport::NodeId;

/// The CA certificate file in a cluster directory.
pub const CA_CERT_FILE: &str = "ca.pem";
/// The CA private key file in a cluster directory (keep it off serving nodes).
pub const CA_KEY_FILE: &str = "ca.key";
/// Default validity of a cluster CA.
pub const CA_VALIDITY_DAYS: u32 = 10 * 365;
/// Default validity of a node certificate.
pub const NODE_VALIDITY_DAYS: u32 = 2 * 365;

/// A cluster's certificate authority: signs the certificates of the cluster's nodes.
#[derive(Clone)]
pub struct ClusterCa {
    cluster_id: String,
    cert_pem: String,
    key_pem: String,
}

impl std::fmt::Debug for ClusterCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterCa")
            .field("cluster_id", &self.cluster_id)
            .finish_non_exhaustive()
    }
}

/// A node's credentials: its certificate and key, and the cluster CA it trusts.
#[derive(Clone)]
pub struct NodeIdentity {
    pub node_id: NodeId,
    pub ca_cert_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for NodeIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeIdentity")
            .field("node_id", &self.node_id)
            .finish_non_exhaustive()
    }
}

impl ClusterCa {
    /// Creates a new CA for cluster `cluster_id` (ECDSA P-256), valid for `validity_days`.
    pub fn generate(cluster_id: &str, validity_days: u32) -> Result<Self, RpcError> {
        check_cluster_id(cluster_id)?;
        let key = KeyPair::generate().map_err(|e| tls_error("generate CA key", e))?;
        let mut params = ca_params(cluster_id);
        set_validity(&mut params, validity_days);
        let cert = params
            .self_signed(&key)
            .map_err(|e| tls_error("self-sign CA", e))?;
        Ok(ClusterCa {
            cluster_id: cluster_id.to_owned(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// A CA created earlier by [`ClusterCa::generate`] for `cluster_id`.
    pub fn from_pem(cluster_id: &str, cert_pem: &str, key_pem: &str) -> Result<Self, RpcError> {
        check_cluster_id(cluster_id)?;
        parse_cert_chain(cert_pem, "CA certificate")?;
        KeyPair::from_pem(key_pem).map_err(|e| tls_error("CA key", e))?;
        Ok(ClusterCa {
            cluster_id: cluster_id.to_owned(),
            cert_pem: cert_pem.to_owned(),
            key_pem: key_pem.to_owned(),
        })
    }

    /// Reads `ca.pem` and `ca.key` from `dir`.
    pub fn load(dir: &Path, cluster_id: &str) -> Result<Self, RpcError> {
        let cert = read_file(&dir.join(CA_CERT_FILE))?;
        let key = read_file(&dir.join(CA_KEY_FILE))?;
        ClusterCa::from_pem(cluster_id, &cert, &key)
    }

    /// Writes `ca.pem` and `ca.key` (mode 0600) into `dir`; refuses to overwrite either.
    pub fn write(&self, dir: &Path) -> Result<(), RpcError> {
        write_new_file(&dir.join(CA_CERT_FILE), &self.cert_pem, false)?;
        write_new_file(&dir.join(CA_KEY_FILE), &self.key_pem, true)
    }

    pub fn cluster_id(&self) -> &str {
        &self.cluster_id
    }

    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// Issues node `node`'s certificate (DNS name = node id, server and client use), valid for
    /// `validity_days`, and checks that it verifies against this CA.
    pub fn issue(&self, node: &NodeId, validity_days: u32) -> Result<NodeIdentity, RpcError> {
        let ca_key = KeyPair::from_pem(&self.key_pem).map_err(|e| tls_error("CA key", e))?;
        let issuer = Issuer::new(ca_params(&self.cluster_id), ca_key);
        let key = KeyPair::generate().map_err(|e| tls_error("generate node key", e))?;
        let mut params = CertificateParams::new(vec![node.as_str().to_owned()])
            .map_err(|e| tls_error("node certificate names", e))?;
        let mut name = DistinguishedName::new();
        name.push(DnType::CommonName, node.as_str());
        name.push(
            DnType::OrganizationalUnitName,
            format!("grove cluster {}", self.cluster_id),
        );
        params.distinguished_name = name;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        set_validity(&mut params, validity_days);
        let cert = params
            .signed_by(&key, &issuer)
            .map_err(|e| tls_error("sign node certificate", e))?;
        let identity = NodeIdentity {
            node_id: node.clone(),
            ca_cert_pem: self.cert_pem.clone(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        };
        // Post-condition: the certificate verifies against this CA (a CA created for another
        // cluster id would produce an issuer name that does not match).
        let verifier = client_verifier(&identity)?;
        verifier
            .verify_client_cert(cert.der(), &[], UnixTime::now())
            .map_err(|e| {
                RpcError::config(format!(
                    "issued certificate for {node} does not verify against the CA of cluster {}: {e}",
                    self.cluster_id
                ))
            })?;
        Ok(identity)
    }
}

impl NodeIdentity {
    /// Credentials from PEM text; checks that they parse.
    pub fn from_pem(
        node_id: NodeId,
        ca_cert_pem: &str,
        cert_pem: &str,
        key_pem: &str,
    ) -> Result<Self, RpcError> {
        let identity = NodeIdentity {
            node_id,
            ca_cert_pem: ca_cert_pem.to_owned(),
            cert_pem: cert_pem.to_owned(),
            key_pem: key_pem.to_owned(),
        };
        identity.parts()?;
        Ok(identity)
    }

    /// Reads `ca.pem`, `NODE.pem` and `NODE.key` from `dir`.
    pub fn load(dir: &Path, node_id: &NodeId) -> Result<Self, RpcError> {
        let ca = read_file(&dir.join(CA_CERT_FILE))?;
        let cert = read_file(&dir.join(format!("{node_id}.pem")))?;
        let key = read_file(&dir.join(format!("{node_id}.key")))?;
        NodeIdentity::from_pem(node_id.clone(), &ca, &cert, &key)
    }

    /// Writes `NODE.pem` and `NODE.key` (mode 0600) into `dir`; refuses to overwrite either.
    pub fn write(&self, dir: &Path) -> Result<(), RpcError> {
        write_new_file(
            &dir.join(format!("{}.pem", self.node_id)),
            &self.cert_pem,
            false,
        )?;
        write_new_file(
            &dir.join(format!("{}.key", self.node_id)),
            &self.key_pem,
            true,
        )
    }

    fn parts(
        &self,
    ) -> Result<
        (
            RootCertStore,
            Vec<CertificateDer<'static>>,
            PrivateKeyDer<'static>,
        ),
        RpcError,
    > {
        let mut roots = RootCertStore::empty();
        for ca in parse_cert_chain(&self.ca_cert_pem, "CA certificate")? {
            roots
                .add(ca)
                .map_err(|e| RpcError::config(format!("CA certificate: {e}")))?;
        }
        let chain = parse_cert_chain(&self.cert_pem, "node certificate")?;
        let key = PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes())
            .map_err(|e| RpcError::config(format!("node key: {e}")))?;
        Ok((roots, chain, key))
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn client_verifier(
    identity: &NodeIdentity,
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, RpcError> {
    let (roots, _, _) = identity.parts()?;
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
        .build()
        .map_err(|e| RpcError::config(format!("client verifier: {e}")))
}

/// TLS for accepting connections: our certificate, and a client certificate signed by the
/// cluster CA required of every peer.
pub fn server_crypto(identity: &NodeIdentity) -> Result<rustls::ServerConfig, RpcError> {
    let (_, chain, key) = identity.parts()?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&TLS13])
        .map_err(|e| RpcError::config(format!("tls: {e}")))?
        .with_client_cert_verifier(client_verifier(identity)?)
        .with_single_cert(chain, key)
        .map_err(|e| RpcError::config(format!("node certificate: {e}")))?;
    config.alpn_protocols = vec![ALPN.to_vec()];
    Ok(config)
}

/// TLS for dialing: trust only the cluster CA, present our certificate.
pub fn client_crypto(identity: &NodeIdentity) -> Result<rustls::ClientConfig, RpcError> {
    let (roots, chain, key) = identity.parts()?;
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&TLS13])
        .map_err(|e| RpcError::config(format!("tls: {e}")))?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(|e| RpcError::config(format!("node certificate: {e}")))?;
    config.alpn_protocols = vec![ALPN.to_vec()];
    Ok(config)
}

/// Whether the (already CA-verified) certificate `der` names node `node`.
pub(crate) fn certificate_names(der: &CertificateDer<'_>, node: &str) -> bool {
    let Ok(name) = ServerName::try_from(node) else {
        return false;
    };
    webpki::EndEntityCert::try_from(der)
        .is_ok_and(|cert| cert.verify_is_valid_for_subject_name(&name).is_ok())
}

/// A stateless-reset key derived from the node's private key: stable across restarts, so a
/// restarted node tells peers at once that their old connection is gone.
pub(crate) fn reset_key(identity: &NodeIdentity) -> ring::hmac::Key {
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    context.update(b"grove stateless reset key v1\0");
    context.update(identity.key_pem.as_bytes());
    ring::hmac::Key::new(ring::hmac::HMAC_SHA256, context.finish().as_ref())
}

/// The CA's parameters, a function of the cluster id alone, so the issuer of node certificates
/// can be rebuilt from `ca.key` and the cluster id without parsing `ca.pem`.
fn ca_params(cluster_id: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, format!("grove cluster {cluster_id} CA"));
    name.push(DnType::OrganizationName, "grove");
    params.distinguished_name = name;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
}

fn set_validity(params: &mut CertificateParams, validity_days: u32) {
    let now = time::OffsetDateTime::now_utc();
    // An hour of slack for clocks that run behind the issuer's.
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(i64::from(validity_days.max(1)));
}

fn check_cluster_id(cluster_id: &str) -> Result<(), RpcError> {
    let valid = !cluster_id.is_empty()
        && cluster_id.len() <= 64
        && cluster_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if !valid {
        return Err(RpcError::config(format!(
            "invalid cluster id {cluster_id:?}: use 1-64 characters of letters, digits, '-', '_' and '.'"
        )));
    }
    Ok(())
}

fn parse_cert_chain(pem: &str, what: &str) -> Result<Vec<CertificateDer<'static>>, RpcError> {
    let chain = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| RpcError::config(format!("{what}: {e}")))?;
    if chain.is_empty() {
        return Err(RpcError::config(format!(
            "{what}: no certificate in the PEM text"
        )));
    }
    Ok(chain)
}

fn tls_error(what: &str, error: rcgen::Error) -> RpcError {
    RpcError::config(format!("{what}: {error}"))
}

fn read_file(path: &Path) -> Result<String, RpcError> {
    std::fs::read_to_string(path)
        .map_err(|e| RpcError::config(format!("read {}: {e}", path.display())))
}

fn write_new_file(path: &Path, text: &str, private: bool) -> Result<(), RpcError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut file = options.open(path).map_err(|e| {
        let hint = if e.kind() == std::io::ErrorKind::AlreadyExists {
            " (refusing to overwrite it)"
        } else {
            ""
        };
        RpcError::config(format!("create {}: {e}{hint}", path.display()))
    })?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| RpcError::config(format!("write {}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_certificates_name_their_node_and_chain_to_their_ca() {
        let ca = ClusterCa::generate("test", 30).unwrap();
        let node = NodeId::new("historical-1").unwrap();
        let identity = ca.issue(&node, 30).unwrap();
        let (_, chain, _) = identity.parts().unwrap();
        assert!(certificate_names(&chain[0], "historical-1"));
        assert!(!certificate_names(&chain[0], "broker-1"));
        server_crypto(&identity).unwrap();
        client_crypto(&identity).unwrap();

        let other = ClusterCa::generate("other", 30).unwrap();
        let foreign = other.issue(&node, 30).unwrap();
        let (_, foreign_chain, _) = foreign.parts().unwrap();
        assert!(
            client_verifier(&identity)
                .unwrap()
                .verify_client_cert(&foreign_chain[0], &[], UnixTime::now())
                .is_err()
        );
        // A CA loaded under the wrong cluster id cannot issue certificates that verify.
        let mislabelled = ClusterCa::from_pem("other", ca.cert_pem(), &ca.key_pem).unwrap();
        assert!(mislabelled.issue(&node, 30).is_err());
    }

    #[test]
    fn files_are_written_once_with_private_keys_private() {
        let dir = tempfile::tempdir().unwrap();
        let ca = ClusterCa::generate("files", 30).unwrap();
        ca.write(dir.path()).unwrap();
        assert!(ca.write(dir.path()).is_err());
        let node = NodeId::new("n1").unwrap();
        ca.issue(&node, 30).unwrap().write(dir.path()).unwrap();
        let loaded = NodeIdentity::load(dir.path(), &node).unwrap();
        assert_eq!(loaded.ca_cert_pem, ca.cert_pem());
        ClusterCa::load(dir.path(), "files").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            for file in ["ca.key", "n1.key"] {
                let mode = std::fs::metadata(dir.path().join(file))
                    .unwrap()
                    .permissions()
                    .mode();
                assert_eq!(mode & 0o777, 0o600, "{file}");
            }
        }
    }
}
