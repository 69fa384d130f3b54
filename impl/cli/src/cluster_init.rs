//! `sixfold cluster init`: writes a cluster config for 6, 9 or 12 storage nodes.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use sixfold_cluster::ClusterConfig;
use sixfold_cluster::identity::VolumeId;

/// Pages per protection group of a written config: the embedded cluster's.
const PG_PAGES: u32 = sixfold_cluster::embedded::EMBEDDED_PG_PAGES;

/// Random bytes of a written config's secret (hex in the file).
const SECRET_BYTES: usize = 32;

#[derive(clap::Args)]
#[command(after_help = "Examples:\n  \
    sixfold cluster init --nodes 6 --az 3 --base-port 7100 --out cluster.toml\n  \
    sixfold cluster init --nodes 9 --az 3 --base-port 7200 --host 10.0.0.5 --out c9.toml\n\
    Then start each node: sixfold storage-node --config cluster.toml --node-id N")]
pub struct InitArgs {
    /// Storage nodes: 6, 9 or 12 (every AZ needs two or more, Q3/Q4).
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(["6", "9", "12"]))]
    pub nodes: String,
    /// Availability zones the nodes are spread over, round robin (three or more).
    #[arg(long, default_value_t = 3)]
    pub az: u32,
    /// Node N listens on BASE-PORT + N - 1.
    #[arg(long)]
    pub base_port: u16,
    /// Host or IP address every node listens on.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Name of the cluster.
    #[arg(long, default_value = "sixfold")]
    pub cluster_id: String,
    /// The config file to write (mode 0600: it holds the secret); never overwritten.
    #[arg(long)]
    pub out: PathBuf,
}

/// The config text: a fresh volume id (I1) and a fresh 256-bit secret (A6).
pub fn config_text(args: &InitArgs, secret: &str) -> anyhow::Result<String> {
    let nodes: u32 = args.nodes.parse().context("--nodes")?;
    if args.az < 3 {
        anyhow::bail!("--az {}: each PG needs segments in three AZs (Q3)", args.az);
    }
    let mut text = format!(
        "cluster_id = {:?}\nvolume_id = \"{}\"\nsecret = {secret:?}\npg_pages = {PG_PAGES}\n",
        args.cluster_id,
        VolumeId::random()
    );
    for id in 1..=nodes {
        let port = u32::from(args.base_port) + id - 1;
        let port =
            u16::try_from(port).context("--base-port: the last node's port is above 65535")?;
        text.push_str(&format!(
            "\n[[node]]\nid = {id}\naz = \"az{}\"\naddr = \"{}:{port}\"\ndata = \"node{id}\"\n",
            (id - 1) % args.az + 1,
            args.host
        ));
    }
    let base = args.out.parent().map(PathBuf::from).unwrap_or_default();
    ClusterConfig::parse(&text, &base).context("the config written would be refused")?;
    Ok(text)
}

fn fresh_secret() -> anyhow::Result<String> {
    use std::io::Read;
    let mut bytes = [0u8; SECRET_BYTES];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut random| random.read_exact(&mut bytes))
        .context("reading /dev/urandom for the secret")?;
    Ok(bytes.iter().map(|byte| format!("{byte:02x}")).collect())
}

pub fn init(args: InitArgs) -> anyhow::Result<ExitCode> {
    let text = config_text(&args, &fresh_secret()?)?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&args.out)
        .with_context(|| {
            format!(
                "creating {} (an existing file is never overwritten)",
                args.out.display()
            )
        })?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", args.out.display()))?;
    println!(
        "wrote {} ({} nodes, mode 0600)",
        args.out.display(),
        args.nodes
    );
    println!(
        "start each node: sixfold storage-node --config {} --node-id N",
        args.out.display()
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(nodes: &str, az: u32) -> InitArgs {
        InitArgs {
            nodes: nodes.to_string(),
            az,
            base_port: 7100,
            host: "127.0.0.1".to_string(),
            cluster_id: "test".to_string(),
            out: PathBuf::from("/tmp/cluster.toml"),
        }
    }

    #[test]
    fn configs_for_6_9_12_nodes_parse() {
        for nodes in ["6", "9", "12"] {
            let text = config_text(&args(nodes, 3), "s").unwrap();
            let config = ClusterConfig::parse(&text, std::path::Path::new("/tmp")).unwrap();
            assert_eq!(config.nodes.len().to_string(), nodes);
            assert_eq!(config.nodes[0].addr.port(), 7100);
        }
        assert!(config_text(&args("6", 2), "s").is_err());
        assert!(
            config_text(&args("6", 4), "s").is_err(),
            "an AZ with one node is refused"
        );
    }
}
