//! `sixfold bench`: every performance number of sixfold comes from here, measured side by
//! side with its baselines in one run, on one disk, alternating, with medians over
//! repetitions. Targets are goals printed beside the numbers, never assertions.

pub mod disk;
pub mod report;
pub mod sqlite;
pub mod workload;

use std::path::PathBuf;
use std::time::Duration;

/// How long and how big.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    pub quick: bool,
    pub out: PathBuf,
}

impl BenchOptions {
    /// Rows in the table every commit benchmark updates.
    pub fn table_rows(&self) -> u64 {
        if self.quick { 20_000 } else { 1_000_000 }
    }

    pub fn run_time(&self) -> Duration {
        Duration::from_millis(if self.quick { 1_500 } else { 8_000 })
    }

    pub fn repetitions(&self) -> usize {
        if self.quick { 1 } else { 3 }
    }

    pub fn client_counts(&self) -> &'static [usize] {
        &[1, 8, 32]
    }

    /// Databases the several-databases rows spread their clients over.
    pub fn databases(&self) -> usize {
        4
    }

    /// Client counts of the several-databases rows.
    pub fn spread_client_counts(&self) -> &'static [usize] {
        &[8, 32]
    }

    /// Commit counts at which the space benchmark measures (cumulative, one run).
    pub fn space_commits(&self) -> Vec<u64> {
        if self.quick {
            vec![2_000, 10_000]
        } else {
            vec![10_000, 100_000, 1_000_000]
        }
    }

    /// Rows of the space benchmark's own table.
    pub fn space_rows(&self) -> u64 {
        if self.quick { 20_000 } else { 100_000 }
    }

    /// Redo backlogs for the recovery benchmark, in bytes.
    pub fn backlogs(&self) -> Vec<u64> {
        if self.quick {
            vec![1 << 20, 4 << 20]
        } else {
            vec![4 << 20, 16 << 20, 64 << 20]
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("SQLite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("I/O on {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("plot: {0}")]
    Plot(String),
    #[error("{0}")]
    System(String),
}

impl BenchError {
    pub fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> BenchError + '_ {
        move |source| BenchError::Io {
            path: path.display().to_string(),
            source,
        }
    }
}

/// The median of some measurements (the lower middle one for an even count).
pub fn median(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(|a, b| a.total_cmp(b));
    values[(values.len() - 1) / 2]
}

/// What the bench needs of a running sixfold (embedded cluster, SQLite on the VFS). The
/// binary implements it; the bench knows nothing of clusters.
pub trait SixfoldSystem: Sync {
    /// A SQLite connection on the volume database `db` (created if absent).
    fn connect(&self, db: &str) -> Result<rusqlite::Connection, BenchError>;
    /// Bytes written to disk by one replica and sent over the network by the writer, so far.
    fn io_counters(&self) -> IoCounters;
    /// Leaves `backlog_bytes` of redo not yet materialized, restarts the writer, and returns
    /// how long recovery took until the volume was open.
    fn recovery_time(
        &self,
        db: &str,
        backlog_bytes: u64,
    ) -> Result<std::time::Duration, BenchError>;
    /// Empties the writer's buffer cache.
    fn drop_writer_cache(&self);
    /// Space and its costs so far (S16).
    fn space(&self) -> SpaceCounters;
}

/// What the space benchmark reads off a running sixfold.
#[derive(Clone, Copy, Debug, Default)]
pub struct SpaceCounters {
    /// Bytes of one replica's folder.
    pub replica_bytes: u64,
    /// Bytes compaction wrote, per replica.
    pub compaction_bytes: u64,
    /// Bytes of redo the writer sent, per replica (what was committed).
    pub redo_bytes: u64,
    /// Bytes one replica wrote to disk, everything included (logs, versions, compaction).
    pub written_bytes: u64,
    /// Resident memory of the process (six nodes and the writer).
    pub resident_bytes: u64,
}

#[derive(Clone, Copy, Debug, Default)]
pub struct IoCounters {
    pub disk_bytes_per_replica: u64,
    pub network_bytes: u64,
}

fn median_run(mut runs: Vec<workload::CommitResult>) -> workload::CommitResult {
    runs.sort_by(|a, b| a.commits_per_second.total_cmp(&b.commits_per_second));
    runs.swap_remove((runs.len() - 1) / 2)
}

/// Runs every scenario and returns the report.
pub fn run(
    options: &BenchOptions,
    sixfold: Option<&dyn SixfoldSystem>,
) -> Result<report::BenchReport, BenchError> {
    use report::*;
    std::fs::create_dir_all(&options.out).map_err(BenchError::io(&options.out))?;
    let scratch = tempfile::tempdir_in(&options.out).map_err(BenchError::io(&options.out))?;
    let rows = options.table_rows();
    let mut report = BenchReport {
        machine: machine_description(),
        quick: options.quick,
        table_rows: rows,
        ..BenchReport::default()
    };
    let progress = indicatif::ProgressBar::new_spinner();
    progress.enable_steady_tick(std::time::Duration::from_millis(200));

    progress.set_message("disk limit");
    let disk = disk::measure(
        scratch.path(),
        if options.quick { 500 } else { 3000 },
        if options.quick { 64 << 20 } else { 512 << 20 },
    )?;
    report.group_commit_limit = [1, 8, 32]
        .iter()
        .map(|&batch| (batch, disk.fsyncs_per_second * batch as f64))
        .collect();
    report.disk = Some(disk);

    progress.set_message("preparing databases");
    let baselines: Vec<sqlite::SqliteDb> = sqlite::BASELINES
        .iter()
        .map(|&mode| sqlite::SqliteDb::create(scratch.path(), mode, rows))
        .collect::<Result<_, _>>()?;
    if let Some(system) = sixfold {
        let connection = system.connect("bench")?;
        workload::setup(&connection, rows)?;
    }

    // Commit throughput: alternate systems within each repetition so drift hits all alike.
    let mut names: Vec<String> = Vec::new();
    if sixfold.is_some() {
        names.push("sixfold".into());
    }
    names.extend(baselines.iter().map(|b| b.mode.name.to_string()));
    let mut samples: Vec<Vec<Vec<workload::CommitResult>>> =
        vec![vec![Vec::new(); options.client_counts().len()]; names.len()];
    for repetition in 0..options.repetitions() {
        for (c, &clients) in options.client_counts().iter().enumerate() {
            for (s, name) in names.iter().enumerate() {
                progress.set_message(format!(
                    "commits: {name}, {clients} clients, repetition {}",
                    repetition + 1
                ));
                let result = match (s, sixfold) {
                    (0, Some(system)) => workload::run_commits(
                        &|| system.connect("bench"),
                        clients,
                        options.run_time(),
                        rows,
                    )?,
                    _ => {
                        let db = &baselines[s - usize::from(sixfold.is_some())];
                        workload::run_commits(&|| db.connect(), clients, options.run_time(), rows)?
                    }
                };
                samples[s][c].push(result);
            }
        }
    }
    report.commits = names
        .iter()
        .zip(samples)
        .map(|(name, by_clients)| SystemCommits {
            system: name.clone(),
            runs: by_clients.into_iter().map(median_run).collect(),
        })
        .collect();

    several_databases(options, sixfold, scratch.path(), &progress, &mut report)?;

    // Bytes per commit.
    progress.set_message("bytes per commit");
    let commits_for_bytes = if options.quick { 500 } else { 5_000 };
    if let Some(system) = sixfold {
        let before = system.io_counters();
        let mut done = 0;
        while done < commits_for_bytes {
            done += workload::run_commits(
                &|| system.connect("bench"),
                1,
                std::time::Duration::from_millis(200),
                rows,
            )?
            .commits;
        }
        let after = system.io_counters();
        report.bytes.push(BytesPerCommit {
            system: "sixfold".into(),
            disk_bytes_per_replica: (after.disk_bytes_per_replica - before.disk_bytes_per_replica)
                as f64
                / done as f64,
            network_bytes: Some((after.network_bytes - before.network_bytes) as f64 / done as f64),
        });
    }
    for db in baselines.iter().filter(|b| b.mode.journal_mode == "WAL") {
        report.bytes.push(BytesPerCommit {
            system: db.mode.name.into(),
            disk_bytes_per_replica: db.wal_bytes_per_commit(rows, commits_for_bytes)?,
            network_bytes: None,
        });
    }

    // Recovery against backlog.
    for backlog in options.backlogs() {
        progress.set_message(format!("recovery with {} MiB of backlog", backlog >> 20));
        if let Some(system) = sixfold {
            let elapsed = system.recovery_time("bench", backlog)?;
            report.recovery.push(RecoveryPoint {
                system: "sixfold".into(),
                backlog_bytes: backlog,
                milliseconds: elapsed.as_secs_f64() * 1e3,
            });
        }
        let elapsed = baselines[0].wal_recovery_time(scratch.path(), rows, backlog)?;
        report.recovery.push(RecoveryPoint {
            system: baselines[0].mode.name.into(),
            backlog_bytes: backlog,
            milliseconds: elapsed.as_secs_f64() * 1e3,
        });
    }
    report.recovery.sort_by(|a, b| {
        a.system
            .cmp(&b.system)
            .then(a.backlog_bytes.cmp(&b.backlog_bytes))
    });

    // Reads.
    progress.set_message("point selects");
    let selects = if options.quick { 5_000 } else { 50_000 };
    if let Some(system) = sixfold {
        system.drop_writer_cache();
        let connection = system.connect("bench")?;
        let cold = workload::run_point_selects(&connection, rows, selects)?;
        let warm = workload::run_point_selects(&connection, rows, selects)?;
        report.reads.push(ReadResult {
            system: "sixfold".into(),
            cache: "cold".into(),
            selects_per_second: cold,
        });
        report.reads.push(ReadResult {
            system: "sixfold".into(),
            cache: "warm".into(),
            selects_per_second: warm,
        });
    } else {
        report
            .skipped
            .push("sixfold scenarios: no sixfold system was given".into());
    }
    let connection = baselines[0].connect()?;
    report.reads.push(ReadResult {
        system: baselines[0].mode.name.into(),
        cache: "warm".into(),
        selects_per_second: workload::run_point_selects(&connection, rows, selects)?,
    });
    if let Some(system) = sixfold {
        space(options, system, scratch.path(), &progress, &mut report)?;
    }
    progress.finish_and_clear();
    Ok(report)
}

/// Commit throughput with the clients spread over several databases (client `n` writes
/// database `n mod D`): one database's write lock no longer serialises every client, so
/// commits of different databases share the writer's batches and the nodes' group commits
/// (C20, S25). The baseline is stock SQLite WAL FULL with one file per database.
fn several_databases(
    options: &BenchOptions,
    sixfold: Option<&dyn SixfoldSystem>,
    scratch: &std::path::Path,
    progress: &indicatif::ProgressBar,
    report: &mut report::BenchReport,
) -> Result<(), BenchError> {
    let (dbs, rows) = (options.databases(), options.table_rows().min(20_000));
    progress.set_message(format!("preparing {dbs} databases"));
    let names: Vec<String> = (0..dbs).map(|db| format!("spread{db}")).collect();
    let mode = sqlite::BASELINES[0];
    let baselines: Vec<sqlite::SqliteDb> = names
        .iter()
        .map(|name| sqlite::SqliteDb::create_named(scratch, mode, rows, &format!("-{name}")))
        .collect::<Result<_, _>>()?;
    if let Some(system) = sixfold {
        for name in &names {
            workload::setup(&system.connect(name)?, rows)?;
        }
    }
    let mut sixfold_runs = Vec::new();
    let mut sqlite_runs = Vec::new();
    for &clients in options.spread_client_counts() {
        progress.set_message(format!("commits over {dbs} databases, {clients} clients"));
        if let Some(system) = sixfold {
            let connect = |client: usize| system.connect(&names[client % dbs]);
            sixfold_runs.push(workload::run_commits_per_client(
                &connect,
                clients,
                options.run_time(),
                rows,
            )?);
        }
        let connect = |client: usize| baselines[client % dbs].connect();
        sqlite_runs.push(workload::run_commits_per_client(
            &connect,
            clients,
            options.run_time(),
            rows,
        )?);
    }
    let suffix = report::spread_suffix(dbs);
    if sixfold.is_some() {
        report.commits.push(report::SystemCommits {
            system: format!("sixfold{suffix}"),
            runs: sixfold_runs,
        });
    }
    report.commits.push(report::SystemCommits {
        system: format!("{}{suffix}", mode.name),
        runs: sqlite_runs,
    });
    Ok(())
}

/// Space over time (S16): one replica's bytes on disk against the live page bytes of the
/// volume's databases, beside stock SQLite's files for the same commits.
fn space(
    options: &BenchOptions,
    system: &dyn SixfoldSystem,
    scratch: &std::path::Path,
    progress: &indicatif::ProgressBar,
    report: &mut report::BenchReport,
) -> Result<(), BenchError> {
    let rows = options.space_rows();
    progress.set_message("space: preparing");
    workload::setup(&system.connect("space")?, rows)?;
    let sqlite = sqlite::SqliteDb::create(scratch, sqlite::BASELINES[0], rows)?;
    let sqlite_connection = sqlite.connect()?;
    let before = system.space();
    let (mut done, mut sqlite_done) = (0, 0);
    for target in options.space_commits() {
        while done < target {
            progress.set_message(format!("space: {done} of {target} commits"));
            done += workload::run_commits(
                &|| system.connect("space"),
                8,
                Duration::from_millis(1_000),
                rows,
            )?
            .commits;
        }
        sqlite_done += workload::run_commits_on(&sqlite_connection, rows, done - sqlite_done)?;
        let now = system.space();
        let live_bytes = ["bench", "space"]
            .iter()
            .map(|db| {
                let connection = system.connect(db)?;
                let pages: i64 = connection.query_row("PRAGMA page_count", [], |r| r.get(0))?;
                let size: i64 = connection.query_row("PRAGMA page_size", [], |r| r.get(0))?;
                Ok(pages.max(0) as u64 * size.max(0) as u64)
            })
            .sum::<Result<u64, BenchError>>()?;
        let committed = now.redo_bytes.saturating_sub(before.redo_bytes);
        let compacted = now.compaction_bytes.saturating_sub(before.compaction_bytes);
        report.space.push(report::SpacePoint {
            commits: done,
            replica_bytes: now.replica_bytes,
            live_bytes,
            amplification: now.replica_bytes as f64 / live_bytes.max(1) as f64,
            sqlite_bytes: sqlite.file_bytes(),
            compaction_per_committed_byte: compacted as f64 / committed.max(1) as f64,
            compaction_per_other_written_byte: compacted as f64
                / now
                    .written_bytes
                    .saturating_sub(before.written_bytes)
                    .saturating_sub(compacted)
                    .max(1) as f64,
            resident_mib: now.resident_bytes as f64 / (1 << 20) as f64,
        });
    }
    Ok(())
}

fn machine_description() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .next()
                .map(|l| l.split_whitespace().nth(1).unwrap_or("?").to_string())
        })
        .and_then(|kb| kb.parse::<u64>().ok())
        .map_or("?".into(), |kb| format!("{} GiB", kb >> 20));
    format!(
        "{} {}, {cores} cores, {memory}",
        std::env::consts::OS,
        std::env::consts::ARCH
    )
}
