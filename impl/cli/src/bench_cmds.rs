//! `sixfold bench`: sixfold beside stock SQLite and the disk's limit (docs/performance.md).

use std::path::PathBuf;
use std::process::ExitCode;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use sixfold_bench::{BenchError, BenchOptions, IoCounters, SixfoldSystem, SpaceCounters};
use sixfold_cluster::{EmbeddedCluster, WriterOptions};
use sixfold_sql::{Catalog, ClusterVolume, PageVolume};

#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  sixfold bench --quick\n  sixfold bench --out /tmp/bench --keep   (keeps /tmp/bench/sixfold-data)"
)]
pub struct BenchArgs {
    /// A short run (under three minutes) with a smaller table.
    #[arg(long)]
    pub quick: bool,
    /// Where the JSON report, the plots and the scratch databases go.
    #[arg(long, default_value = "bench-out")]
    pub out: PathBuf,
    /// Keep sixfold's data folder (OUT/sixfold-data, hundreds of MB) after the run;
    /// without it the folder is deleted, even when the run fails.
    #[arg(long)]
    pub keep: bool,
}

/// Deletes the embedded cluster's data folder when the bench ends, however it ends,
/// unless `--keep` asked to keep it. Declared before the cluster, so it runs after the
/// cluster has stopped.
struct DataCleanup {
    dir: PathBuf,
    keep: bool,
}

impl Drop for DataCleanup {
    fn drop(&mut self) {
        if self.keep {
            eprintln!("kept the data folder {} (--keep)", self.dir.display());
        } else if let Err(error) = std::fs::remove_dir_all(&self.dir)
            && error.kind() != std::io::ErrorKind::NotFound
        {
            eprintln!("warning: could not delete {}: {error}", self.dir.display());
        }
    }
}

pub fn bench(args: BenchArgs) -> anyhow::Result<ExitCode> {
    let options = BenchOptions {
        quick: args.quick,
        out: args.out.clone(),
    };
    let data = args.out.join("sixfold-data");
    let _ = std::fs::remove_dir_all(&data);
    let _cleanup = DataCleanup {
        dir: data.clone(),
        keep: args.keep,
    };
    let system = EmbeddedSixfold::start(&data)?;
    let report = sixfold_bench::run(&options, Some(&system)).context("running the benchmarks")?;
    system.stop();
    print!("{}", report.table());
    report
        .write(&args.out)
        .with_context(|| format!("writing the report to {}", args.out.display()))?;
    println!(
        "\nreport: {}/bench.json, plots: {}/*.png",
        args.out.display(),
        args.out.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// sixfold as the bench measures it: six storage nodes in this process on loopback, 4/6
/// quorum, fsync on, SQLite on the volume through the VFS.
struct EmbeddedSixfold {
    cluster: EmbeddedCluster,
    volume: Arc<ClusterVolume>,
    /// One replica's data folder: its growth is the bytes one replica wrote.
    replica_dir: std::path::PathBuf,
}

fn bench_error(error: impl std::fmt::Display) -> BenchError {
    BenchError::System(error.to_string())
}

/// Bytes in the files under `dir` (logs and page files only grow between GCs).
fn folder_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.metadata() {
            Ok(meta) if meta.is_dir() => folder_bytes(&entry.path()),
            Ok(meta) => meta.len(),
            Err(_) => 0,
        })
        .sum()
}

/// Resident memory of this process (Linux `/proc/self/status`), 0 where unknown.
fn resident_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|line| line.starts_with("VmRSS:"))
                .and_then(|line| line.split_whitespace().nth(1))
                .and_then(|kib| kib.parse::<u64>().ok())
        })
        .map_or(0, |kib| kib * 1024)
}

impl EmbeddedSixfold {
    fn start(data: &Path) -> anyhow::Result<EmbeddedSixfold> {
        let cluster = EmbeddedCluster::start(data).context("starting the embedded cluster")?;
        let volume = ClusterVolume::open(cluster.config().clone(), WriterOptions::default())
            .context("opening the writer")?;
        let replica_dir = cluster.config().nodes[0].data_dir.clone();
        Ok(EmbeddedSixfold {
            cluster,
            volume: Arc::new(volume),
            replica_dir,
        })
    }

    fn stop(self) {
        drop(self.volume);
        self.cluster.stop();
    }
}

impl SixfoldSystem for EmbeddedSixfold {
    fn connect(&self, db: &str) -> Result<rusqlite::Connection, BenchError> {
        let volume: Arc<dyn PageVolume> = self.volume.clone();
        let catalog = Catalog::new(volume.clone());
        if catalog.lookup(db).map_err(bench_error)?.is_none() {
            catalog.create_database(db).map_err(bench_error)?;
        }
        Ok(sixfold_sql::open_connection(volume, db)?)
    }

    fn io_counters(&self) -> IoCounters {
        IoCounters {
            disk_bytes_per_replica: folder_bytes(&self.replica_dir),
            network_bytes: sixfold_cluster::wire::FRAME_BYTES_SENT
                .load(std::sync::atomic::Ordering::Relaxed),
        }
    }

    fn space(&self) -> SpaceCounters {
        let nodes = self.cluster.config().nodes.len().max(1) as u64;
        let relaxed = std::sync::atomic::Ordering::Relaxed;
        SpaceCounters {
            replica_bytes: folder_bytes(&self.replica_dir),
            compaction_bytes: sixfold_storage::COMPACTION_BYTES_WRITTEN.load(relaxed) / nodes,
            redo_bytes: sixfold_cluster::wire::FRAME_BYTES_SENT.load(relaxed) / nodes,
            written_bytes: sixfold_storage::STD_DISK_BYTES_WRITTEN.load(relaxed) / nodes,
            resident_bytes: resident_bytes(),
        }
    }

    fn recovery_time(&self, db: &str, backlog_bytes: u64) -> Result<Duration, BenchError> {
        // Build the backlog: commits whose redo the replicas hold, then restart the writer.
        let connection = self.connect(db)?;
        connection.execute_batch(
            "CREATE TABLE IF NOT EXISTS backlog(id INTEGER PRIMARY KEY, pad BLOB)",
        )?;
        let start = folder_bytes(&self.replica_dir);
        let mut next = 0i64;
        while folder_bytes(&self.replica_dir).saturating_sub(start) < backlog_bytes {
            connection.execute_batch("BEGIN")?;
            for _ in 0..16 {
                connection.execute(
                    "INSERT OR REPLACE INTO backlog(id, pad) VALUES (?1, randomblob(3000))",
                    [next % 4096],
                )?;
                next += 1;
            }
            connection.execute_batch("COMMIT")?;
        }
        drop(connection);
        let started = Instant::now();
        self.volume.recover().map_err(bench_error)?;
        Ok(started.elapsed())
    }

    fn drop_writer_cache(&self) {
        // A new writer starts with an empty buffer cache.
        let _ = self.volume.recover();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_data_folder_goes_unless_kept() {
        let out = tempfile::tempdir().unwrap();
        for keep in [false, true] {
            let dir = out.path().join(format!("data-{keep}"));
            std::fs::create_dir_all(dir.join("node1")).unwrap();
            std::fs::write(dir.join("node1/log"), b"pages").unwrap();
            drop(DataCleanup {
                dir: dir.clone(),
                keep,
            });
            assert_eq!(dir.exists(), keep);
        }
    }
}
