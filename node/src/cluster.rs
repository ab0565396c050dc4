//! `grove cluster init` and `grove cluster issue-cert`: the cluster CA and node certificates
//! that mutual TLS between nodes requires (see `grove_rpc::tls`).
//!
//! A cluster directory holds `cluster.json` (the cluster id), `ca.pem`, `ca.key` (0600; keep it
//! where certificates are issued, not on serving nodes) and one `NODE.pem` / `NODE.key` (0600)
//! pair per node. Nothing is ever overwritten.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Subcommand;
use grove_rpc::NodeId;
use grove_rpc::envelope::PROTOCOL_VERSION;
use grove_rpc::tls::{CA_VALIDITY_DAYS, ClusterCa, NODE_VALIDITY_DAYS, NodeIdentity};

/// The file naming the cluster a directory's CA belongs to.
pub const CLUSTER_FILE: &str = "cluster.json";

#[derive(Subcommand)]
pub enum ClusterCommand {
    /// Creates a cluster CA in DIR: ca.pem, ca.key (mode 0600) and cluster.json.
    Init {
        /// Directory for the cluster's credentials (created if missing).
        #[arg(long)]
        dir: PathBuf,
        /// The cluster's id; nodes refuse peers of any other cluster.
        #[arg(long)]
        cluster_id: String,
        /// Validity of the CA certificate, in days.
        #[arg(long, default_value_t = CA_VALIDITY_DAYS)]
        days: u32,
    },
    /// Issues node NODE's certificate, signed by the cluster CA: NODE.pem, NODE.key (0600).
    IssueCert {
        /// The node id (a DNS label: a-z, 0-9 and '-', starting with a letter).
        node: String,
        /// The cluster directory made by `grove cluster init`.
        #[arg(long)]
        dir: PathBuf,
        /// Validity of the certificate, in days.
        #[arg(long, default_value_t = NODE_VALIDITY_DAYS)]
        days: u32,
    },
}

pub fn run(command: ClusterCommand) -> anyhow::Result<()> {
    match command {
        ClusterCommand::Init {
            dir,
            cluster_id,
            days,
        } => {
            init(&dir, &cluster_id, days)?;
            println!(
                "cluster {cluster_id}: CA written to {} (keep ca.key private)",
                dir.display()
            );
        }
        ClusterCommand::IssueCert { node, dir, days } => {
            let identity = issue_cert(&dir, &node, days)?;
            println!(
                "node {}: certificate {}/{node}.pem and key {node}.key, valid {days} days",
                identity.node_id,
                dir.display()
            );
        }
    }
    Ok(())
}

/// Creates the cluster CA and `cluster.json` in `dir`.
pub fn init(dir: &Path, cluster_id: &str, days: u32) -> anyhow::Result<ClusterCa> {
    let cluster_file = dir.join(CLUSTER_FILE);
    if cluster_file.exists() {
        bail!(
            "{} already exists: {} already holds a cluster",
            cluster_file.display(),
            dir.display()
        );
    }
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    let ca = ClusterCa::generate(cluster_id, days)?;
    ca.write(dir)?;
    let description = serde_json::json!({
        "cluster_id": cluster_id,
        "protocol_version": PROTOCOL_VERSION,
        "ca_certificate": grove_rpc::tls::CA_CERT_FILE,
    });
    std::fs::write(
        &cluster_file,
        serde_json::to_string_pretty(&description)? + "\n",
    )
    .with_context(|| format!("write {}", cluster_file.display()))?;
    Ok(ca)
}

/// Reads the cluster id from `dir/cluster.json`.
pub fn cluster_id(dir: &Path) -> anyhow::Result<String> {
    let path = dir.join(CLUSTER_FILE);
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "read {} (run `grove cluster init --dir {}` first)",
            path.display(),
            dir.display()
        )
    })?;
    let value: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("parse {}", path.display()))?;
    value["cluster_id"]
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("{}: no \"cluster_id\" string", path.display()))
}

/// Issues and writes node `node`'s certificate and key into `dir`.
pub fn issue_cert(dir: &Path, node: &str, days: u32) -> anyhow::Result<NodeIdentity> {
    let node = NodeId::new(node)?;
    let ca = ClusterCa::load(dir, &cluster_id(dir)?)?;
    let identity = ca.issue(&node, days)?;
    identity.write(dir)?;
    Ok(identity)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use grove_rpc::conformance::{Echo, test_router};
    use grove_rpc::{QuicConfig, QuicTransport, RpcError, Transport, TransportExt};

    use super::*;

    fn bind(dir: &Path, node: &str) -> QuicTransport {
        let identity = NodeIdentity::load(dir, &NodeId::new(node).unwrap()).unwrap();
        let config = QuicConfig::new(
            identity,
            cluster_id(dir).unwrap(),
            "127.0.0.1:0".parse().unwrap(),
        );
        let transport = QuicTransport::bind(config).unwrap();
        transport.serve(test_router(Default::default()));
        transport
    }

    #[tokio::test]
    async fn issued_certificates_connect_and_foreign_ones_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let cluster = dir.path().join("prod");
        init(&cluster, "prod", 30).unwrap();
        assert!(
            init(&cluster, "prod", 30).is_err(),
            "init must not overwrite a cluster"
        );
        issue_cert(&cluster, "historical-1", 30).unwrap();
        issue_cert(&cluster, "broker-1", 30).unwrap();
        assert!(
            issue_cert(&cluster, "broker-1", 30).is_err(),
            "keys are never overwritten"
        );
        assert!(issue_cert(&cluster, "Not_A_Name", 30).is_err());

        let historical = bind(&cluster, "historical-1");
        let broker = bind(&cluster, "broker-1");
        broker.add_peer(
            NodeId::new("historical-1").unwrap(),
            historical.local_addr(),
        );
        let target = NodeId::new("historical-1").unwrap();
        let reply = broker
            .call::<Echo>(&target, &vec![1, 2], Duration::from_secs(5))
            .await;
        assert_eq!(reply.unwrap(), vec![1, 2]);

        // Same cluster id, another CA: the node cannot connect.
        let elsewhere = dir.path().join("elsewhere");
        init(&elsewhere, "prod", 30).unwrap();
        issue_cert(&elsewhere, "broker-2", 30).unwrap();
        let intruder = bind(&elsewhere, "broker-2");
        intruder.add_peer(target.clone(), historical.local_addr());
        let refused = intruder
            .call::<Echo>(&target, &vec![], Duration::from_secs(5))
            .await;
        assert!(
            matches!(refused, Err(RpcError::Refused { .. })),
            "{refused:?}"
        );
    }
}
