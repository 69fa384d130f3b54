//! `sixfold slt`: SQLite's sqllogictest files on the cluster volume, optionally with
//! storage nodes killed and the writer crashed and recovered between records.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use sixfold_cluster::EmbeddedCluster;
use sixfold_core::NodeId;
use sixfold_sql::{ClusterVolume, PageVolume, slt};

use crate::sql_cmds::writer_options;

#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  sixfold slt conformance/sqllogictest\n  sixfold slt conformance/sqllogictest/select1.test --faults --fault-every 50"
)]
pub struct SltArgs {
    /// sqllogictest files, or folders searched for `*.test` files.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Between records, stop and restart storage nodes (at most two down, so writes go
    /// on) and crash and recover the writer.
    #[arg(long)]
    pub faults: bool,
    /// Records between two faults.
    #[arg(long, default_value_t = 40)]
    pub fault_every: usize,
    /// Seed of the fault schedule (printed; the same seed replays it).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Folder of the embedded cluster (default: a temporary folder, removed at the end).
    #[arg(long)]
    pub data: Option<PathBuf>,
}

/// Most nodes down at once: two leave 4 of 6 segments, a write quorum (Q4).
const NODES_DOWN_MAX: usize = 2;

fn test_files(paths: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            collect(path, &mut files).with_context(|| format!("reading {}", path.display()))?;
        } else if path.is_file() {
            files.push(path.clone());
        } else {
            anyhow::bail!("{} is neither a file nor a folder", path.display());
        }
    }
    Ok(files)
}

fn collect(dir: &Path, files: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    entries.sort();
    for path in entries {
        if path.is_dir() {
            collect(&path, files)?;
        } else if path.extension().is_some_and(|e| e == "test") {
            files.push(path);
        }
    }
    Ok(())
}

/// Counts of injected faults.
#[derive(Default, Clone, Copy)]
struct FaultCounts {
    nodes_stopped: u32,
    nodes_started: u32,
    writer_crashes: u32,
}

/// The fault schedule: a seeded walk over "stop a node", "start the stopped nodes",
/// "crash and recover the writer".
struct Faults<'a> {
    cluster: &'a EmbeddedCluster,
    volume: &'a ClusterVolume,
    every: usize,
    rng: u64,
    counts: FaultCounts,
    /// The first fault that could not be injected (recovery failed, a node did not
    /// start); the run reports it.
    error: Option<String>,
}

impl Faults<'_> {
    fn next(&mut self) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }

    fn between(&mut self, index: usize) {
        if index == 0 || !index.is_multiple_of(self.every) || self.error.is_some() {
            return;
        }
        let all: Vec<NodeId> = self.cluster.config().nodes.iter().map(|n| n.id).collect();
        let running = self.cluster.running();
        let down = all.len() - running.len();
        match self.next() % 6 {
            0..=2 if down < NODES_DOWN_MAX => {
                let node = running[(self.next() % running.len() as u64) as usize];
                self.cluster.stop_node(node);
                self.counts.nodes_stopped += 1;
            }
            0..=3 => self.start_all(),
            _ => {
                self.counts.writer_crashes += 1;
                if let Err(error) = self.volume.recover() {
                    self.error = Some(format!("recovery after a writer crash: {error}"));
                }
            }
        }
    }

    fn start_all(&mut self) {
        for node in self.cluster.config().nodes.iter().map(|n| n.id) {
            if !self.cluster.running().contains(&node) {
                match self.cluster.start_node(node) {
                    Ok(()) => self.counts.nodes_started += 1,
                    Err(error) => self.error = Some(format!("restarting node {node}: {error}")),
                }
            }
        }
    }
}

pub fn slt(args: SltArgs) -> anyhow::Result<ExitCode> {
    let files = test_files(&args.paths)?;
    let temp;
    let dir = match &args.data {
        Some(dir) => dir.clone(),
        None => {
            temp = tempfile::tempdir().context("creating a temporary folder")?;
            temp.path().to_path_buf()
        }
    };
    let cluster = EmbeddedCluster::start(&dir)
        .with_context(|| format!("starting the embedded cluster in {}", dir.display()))?;
    let volume = Arc::new(
        ClusterVolume::open(cluster.config().clone(), writer_options())
            .context("opening the writer")?,
    );
    if args.faults {
        println!(
            "faults every {} records, seed {}",
            args.fault_every.max(1),
            args.seed
        );
    }
    let mut failed = 0;
    let started = Instant::now();
    for (index, file) in files.iter().enumerate() {
        let file_started = Instant::now();
        let mut faults = Faults {
            cluster: &cluster,
            volume: &volume,
            every: args.fault_every.max(1),
            rng: args.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (index as u64 + 1),
            counts: FaultCounts::default(),
            error: None,
        };
        let page_volume: Arc<dyn PageVolume> = volume.clone();
        let db_name = format!("slt{index}");
        let result = if args.faults {
            let mut hook = |record: usize| faults.between(record);
            slt::run_file(page_volume, &db_name, file, Some(&mut hook))
        } else {
            slt::run_file(page_volume, &db_name, file, None)
        };
        faults.start_all();
        let counts = faults.counts;
        let fault_text = if args.faults {
            format!(
                ", faults: {} node stops, {} node starts, {} writer crashes",
                counts.nodes_stopped, counts.nodes_started, counts.writer_crashes
            )
        } else {
            String::new()
        };
        let seconds = file_started.elapsed().as_secs_f64();
        match (result, faults.error) {
            (Ok(report), None) => println!(
                "ok   {}: {} records, {} queries{fault_text}, {seconds:.1}s",
                file.display(),
                report.records,
                report.queries
            ),
            (result, error) => {
                failed += 1;
                let reason = match (result, error) {
                    (_, Some(error)) => error,
                    (Err(error), None) => error.to_string(),
                    (Ok(_), None) => unreachable!("matched above"),
                };
                println!("FAIL {}: {reason}{fault_text}", file.display());
            }
        }
    }
    drop(volume);
    cluster.stop();
    println!(
        "{} files, {} passed, {failed} failed, {:.1}s",
        files.len(),
        files.len() - failed,
        started.elapsed().as_secs_f64()
    );
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
