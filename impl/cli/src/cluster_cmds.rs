//! `sixfold cluster`, `storage-node`, `status` and `load` (owned by the cluster work).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use sixfold_cluster::files::PrivatePath;
use sixfold_cluster::store::Unrecorded;
use sixfold_cluster::workload::{LoadOptions, run_load};
use sixfold_cluster::{ClusterConfig, EmbeddedCluster, NodeHandle, Writer, WriterOptions};
use sixfold_core::NodeId;

#[derive(clap::Args)]
#[command(
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true,
    after_help = "Examples:\n  sixfold cluster --data ./cluster   (six nodes in this process)\n  \
                  sixfold cluster init --nodes 9 --az 3 --base-port 7100 --out cluster.toml"
)]
pub struct ClusterArgs {
    #[command(subcommand)]
    pub action: Option<ClusterAction>,
    /// Folder of the cluster: config (cluster.toml, written if absent) and node data.
    #[arg(long, required = true)]
    pub data: Option<PathBuf>,
}

#[derive(clap::Subcommand)]
pub enum ClusterAction {
    /// Write a config file for a cluster of separate `storage-node` processes.
    Init(crate::cluster_init::InitArgs),
}

#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  sixfold storage-node --config cluster.toml --node-id 1 > node1.log 2>&1 &"
)]
pub struct StorageNodeArgs {
    /// The cluster config file (TOML).
    #[arg(long)]
    pub config: PathBuf,
    /// Which node of the config this process is.
    #[arg(long)]
    pub node_id: u32,
    /// One-time upgrade of a data folder written before identity checks (I4): record the
    /// config's cluster id, volume id and pg_pages in it. Check first that the config is
    /// the one the data was written with; a folder that has a record is never changed.
    #[arg(long)]
    pub adopt_identity: bool,
}

/// Where the cluster's config is: a cluster folder or a config file.
#[derive(clap::Args)]
#[group(required = true, multiple = false)]
pub struct ClusterLocation {
    /// Folder of an embedded cluster (its config is DIR/cluster.toml).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// The cluster config file (TOML).
    #[arg(long)]
    pub cluster: Option<PathBuf>,
}

impl ClusterLocation {
    fn config_path(&self) -> PathBuf {
        match (&self.data, &self.cluster) {
            (_, Some(file)) => file.clone(),
            (Some(dir), None) => dir.join(sixfold_cluster::embedded::CONFIG_FILE),
            (None, None) => unreachable!("clap requires one of --data and --cluster"),
        }
    }

    fn load(&self) -> anyhow::Result<ClusterConfig> {
        let path = self.config_path();
        ClusterConfig::load(&path).with_context(|| format!("loading {}", path.display()))
    }
}

#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  sixfold status --data ./cluster\n  sixfold status --cluster cluster.toml"
)]
pub struct StatusArgs {
    #[command(flatten)]
    pub location: ClusterLocation,
}

#[derive(clap::Args)]
#[command(after_help = "Examples:\n  sixfold load --cluster cluster.toml --txns 2000 --clients 4")]
pub struct LoadArgs {
    #[command(flatten)]
    pub location: ClusterLocation,
    /// Transactions to run.
    #[arg(long, default_value_t = 1000)]
    pub txns: u64,
    /// Concurrent clients.
    #[arg(long, default_value_t = 4)]
    pub clients: usize,
    /// Seed of the random workload (printed; the same seed replays the same choices).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Database names to spread the workload over.
    #[arg(long, value_delimiter = ',', default_value = "db1,db2,db3")]
    pub databases: Vec<String>,
    /// Seconds a commit may wait for durability before its outcome counts as unknown.
    #[arg(long, default_value_t = 30)]
    pub commit_timeout_secs: u64,
    /// Append each submitted and acknowledged transaction to this file, flushed per line
    /// (for checking after a crash).
    #[arg(long)]
    pub journal: Option<PathBuf>,
}

pub fn cluster(args: ClusterArgs) -> anyhow::Result<ExitCode> {
    let data = match (args.action, args.data) {
        (Some(ClusterAction::Init(init)), _) => return crate::cluster_init::init(init),
        (None, Some(data)) => data,
        (None, None) => anyhow::bail!("give --data DIR (or `cluster init`)"),
    };
    let cluster = EmbeddedCluster::start(&data)
        .with_context(|| format!("starting the embedded cluster in {}", data.display()))?;
    println!("config: {}", cluster.config_path().display());
    for node in &cluster.config().nodes {
        println!("node {} ({}) listening on {}", node.id, node.az, node.addr);
    }
    println!("running; interrupt (Ctrl-C) to stop");
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

pub fn storage_node(args: StorageNodeArgs) -> anyhow::Result<ExitCode> {
    // A6: the config holds the cluster secret; refuse one that others can read.
    sixfold_cluster::files::check_private(&args.config, PrivatePath::Config)?;
    let config = ClusterConfig::load(&args.config)
        .with_context(|| format!("loading {}", args.config.display()))?;
    let unrecorded = if args.adopt_identity {
        Unrecorded::Adopt
    } else {
        Unrecorded::Refuse
    };
    let node = NodeHandle::start_with(&config, NodeId(args.node_id), unrecorded)
        .with_context(|| format!("starting storage node {}", args.node_id))?;
    let addr = config
        .node(NodeId(args.node_id))
        .map(|n| n.addr.to_string())
        .unwrap_or_default();
    println!("storage node {} listening on {addr}", args.node_id);
    node.wait();
    Ok(ExitCode::SUCCESS)
}

pub fn status(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let config = args.location.load()?;
    let status = sixfold_cluster::status::collect(&config);
    print!("{}", status.render(&config));
    // Q1: a PG without a write quorum takes no commit: say so and fail.
    match status.quorum_problem(&config) {
        Some(problem) => {
            eprintln!("{problem}");
            Ok(ExitCode::FAILURE)
        }
        None => Ok(ExitCode::SUCCESS),
    }
}

fn progress_bar(txns: u64) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(txns);
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} txns {per_sec} {elapsed}")
    {
        bar.set_style(style);
    }
    bar
}

pub fn load(args: LoadArgs) -> anyhow::Result<ExitCode> {
    let config = args.location.load()?;
    let pg_pages = config.pg_pages;
    let options = WriterOptions {
        commit_timeout: Duration::from_secs(args.commit_timeout_secs),
        ..WriterOptions::default()
    };
    let writer = Writer::open(config, options).context("opening the writer (recovery)")?;
    let stats = writer.stats();
    eprintln!(
        "writer open: epoch {} VDL {} PGs {} seed {}",
        stats.epoch, stats.vdl, stats.pgs, args.seed
    );
    let load = LoadOptions {
        txns: args.txns,
        clients: args.clients,
        seed: args.seed,
        databases: args.databases.clone(),
        journal: args.journal.clone(),
        pg_pages,
    };
    let bar = progress_bar(args.txns);
    let report = run_load(&writer, &load, &|| bar.inc(1)).context("running the workload")?;
    bar.finish_and_clear();
    let stats = writer.stats();
    eprintln!(
        "writer: epoch {} VCL {} VDL {} PGs {}",
        stats.epoch, stats.vcl, stats.vdl, stats.pgs
    );
    if report.unknown > 0 {
        eprintln!(
            "{} commits timed out (outcome unknown, not counted)",
            report.unknown
        );
    }
    println!("{report}");
    writer.close();
    Ok(if report.lost == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
