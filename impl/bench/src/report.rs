//! The bench report: a terminal table with ratios, a JSON file, and PNG plots.

use std::fmt::Write as _;
use std::path::Path;

use plotters::prelude::*;
use serde::Serialize;

use crate::BenchError;
use crate::disk::DiskLimit;
use crate::workload::CommitResult;

#[derive(Clone, Debug, Serialize)]
pub struct SystemCommits {
    pub system: String,
    /// Median over repetitions, by client count.
    pub runs: Vec<CommitResult>,
}

#[derive(Clone, Debug, Serialize)]
pub struct BytesPerCommit {
    pub system: String,
    /// Written to disk by one replica (sixfold) or to the WAL (SQLite), per commit.
    pub disk_bytes_per_replica: f64,
    /// Sent over the network by the writer per commit (sixfold only).
    pub network_bytes: Option<f64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct RecoveryPoint {
    pub system: String,
    pub backlog_bytes: u64,
    pub milliseconds: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct ReadResult {
    pub system: String,
    pub cache: String,
    pub selects_per_second: f64,
}

/// One point of the space benchmark (S16).
#[derive(Clone, Debug, Serialize)]
pub struct SpacePoint {
    pub commits: u64,
    /// Bytes of one replica's folder.
    pub replica_bytes: u64,
    /// Pages in use by the volume's databases, in bytes.
    pub live_bytes: u64,
    /// `replica_bytes / live_bytes`.
    pub amplification: f64,
    /// Stock SQLite (WAL, synchronous=FULL): its database file and WAL after the same commits.
    pub sqlite_bytes: u64,
    /// Bytes compaction wrote per byte of redo committed, per replica.
    pub compaction_per_committed_byte: f64,
    /// Bytes compaction wrote per byte the replica wrote otherwise (logs, page versions).
    pub compaction_per_other_written_byte: f64,
    /// Resident memory of the whole process (six nodes and the writer).
    pub resident_mib: f64,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct BenchReport {
    pub machine: String,
    pub quick: bool,
    pub table_rows: u64,
    pub disk: Option<DiskLimit>,
    /// Commits per second the disk allows with group commit of `batch` commits per fsync.
    pub group_commit_limit: Vec<(usize, f64)>,
    pub commits: Vec<SystemCommits>,
    pub bytes: Vec<BytesPerCommit>,
    pub recovery: Vec<RecoveryPoint>,
    pub reads: Vec<ReadResult>,
    pub space: Vec<SpacePoint>,
    /// Scenarios not run, with the reason.
    pub skipped: Vec<String>,
}

/// The name suffix of the rows whose clients are spread over `databases` databases.
pub fn spread_suffix(databases: usize) -> String {
    format!(", {databases} dbs")
}

/// The sixfold row a baseline row is compared with: the one with the same suffix.
fn sixfold_row_for(system: &str) -> String {
    match system.find(", ") {
        Some(at) => format!("sixfold{}", &system[at..]),
        None => "sixfold".into(),
    }
}

impl BenchReport {
    fn commits_of(&self, system: &str, clients: usize) -> Option<&CommitResult> {
        self.commits
            .iter()
            .find(|s| s.system == system)?
            .runs
            .iter()
            .find(|r| r.clients == clients)
    }

    /// The terminal table, with sixfold's ratio to each baseline.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "machine: {}", self.machine);
        if let Some(disk) = &self.disk {
            let _ = writeln!(
                out,
                "disk limit: fsync p50 {:.3} ms, p99 {:.3} ms, {:.0} fsyncs/s, sequential {:.0} MiB/s",
                disk.fsync_p50_us / 1e3,
                disk.fsync_p99_us / 1e3,
                disk.fsyncs_per_second,
                disk.sequential_write_mib_per_second
            );
            for (batch, rate) in &self.group_commit_limit {
                let _ = writeln!(
                    out,
                    "  group commit of {batch:>3} per fsync allows {rate:>10.0} commits/s"
                );
            }
        }
        let _ = writeln!(out, "\ncommit throughput ({} rows)", self.table_rows);
        let _ = writeln!(
            out,
            "{:<22} {:>7} {:>12} {:>9} {:>9} {:>8} {:>14}",
            "system", "clients", "commits/s", "p50 ms", "p99 ms", "errors", "sixfold ratio"
        );
        for system in &self.commits {
            for run in &system.runs {
                let sixfold = sixfold_row_for(&system.system);
                let ratio = self
                    .commits_of(&sixfold, run.clients)
                    .filter(|_| system.system != sixfold)
                    .map(|s| {
                        format!(
                            "{:.2}x",
                            s.commits_per_second / run.commits_per_second.max(1e-9)
                        )
                    })
                    .unwrap_or_default();
                let _ = writeln!(
                    out,
                    "{:<22} {:>7} {:>12.0} {:>9.2} {:>9.2} {:>8} {:>14}",
                    system.system,
                    run.clients,
                    run.commits_per_second,
                    run.p50_ms,
                    run.p99_ms,
                    run.errors,
                    ratio
                );
            }
        }
        if !self.bytes.is_empty() {
            let _ = writeln!(out, "\nbytes per commit");
            let sixfold = self
                .bytes
                .iter()
                .find(|b| b.system == "sixfold")
                .map(|b| b.disk_bytes_per_replica);
            for bytes in &self.bytes {
                let ratio = match sixfold {
                    Some(s) if bytes.system != "sixfold" => format!(
                        "sixfold writes {:.2}x of this",
                        s / bytes.disk_bytes_per_replica.max(1e-9)
                    ),
                    _ => String::new(),
                };
                let network = bytes
                    .network_bytes
                    .map(|n| format!(", network {n:.0}"))
                    .unwrap_or_default();
                let _ = writeln!(
                    out,
                    "{:<22} disk/replica {:>10.0}{network}  {ratio}",
                    bytes.system, bytes.disk_bytes_per_replica
                );
            }
        }
        if !self.recovery.is_empty() {
            let _ = writeln!(out, "\nrecovery time against backlog");
            for point in &self.recovery {
                let _ = writeln!(
                    out,
                    "{:<22} {:>8.1} MiB {:>10.1} ms",
                    point.system,
                    point.backlog_bytes as f64 / (1 << 20) as f64,
                    point.milliseconds
                );
            }
        }
        if !self.reads.is_empty() {
            let _ = writeln!(out, "\npoint selects");
            for read in &self.reads {
                let _ = writeln!(
                    out,
                    "{:<22} {:<6} {:>12.0} /s",
                    read.system, read.cache, read.selects_per_second
                );
            }
        }
        if !self.space.is_empty() {
            let _ = writeln!(
                out,
                "\nspace (one replica; target: amplification <= 1.5x, compaction <= 1 byte per committed byte)"
            );
            let _ = writeln!(
                out,
                "{:>9} {:>12} {:>12} {:>8} {:>12} {:>18} {:>9}",
                "commits",
                "replica MiB",
                "live MiB",
                "ampl.",
                "sqlite MiB",
                "compaction B/B",
                "RSS MiB"
            );
            let mib = |bytes: u64| bytes as f64 / (1 << 20) as f64;
            for point in &self.space {
                let _ = writeln!(
                    out,
                    "{:>9} {:>12.1} {:>12.1} {:>7.2}x {:>12.1} {:>16.3} {:>18.3} {:>9.0}",
                    point.commits,
                    mib(point.replica_bytes),
                    mib(point.live_bytes),
                    point.amplification,
                    mib(point.sqlite_bytes),
                    point.compaction_per_committed_byte,
                    point.compaction_per_other_written_byte,
                    point.resident_mib
                );
            }
        }
        for skipped in &self.skipped {
            let _ = writeln!(out, "skipped: {skipped}");
        }
        out
    }

    pub fn write(&self, dir: &Path) -> Result<(), BenchError> {
        std::fs::create_dir_all(dir).map_err(BenchError::io(dir))?;
        let json = dir.join("bench.json");
        let text =
            serde_json::to_string_pretty(self).map_err(|e| BenchError::System(e.to_string()))?;
        std::fs::write(&json, text).map_err(BenchError::io(&json))?;
        if register_font() {
            self.plot_throughput(&dir.join("throughput.png"))?;
            if !self.recovery.is_empty() {
                self.plot_recovery(&dir.join("recovery.png"))?;
            }
            if !self.space.is_empty() {
                self.plot_space(&dir.join("space.png"))?;
            }
        }
        Ok(())
    }

    fn plot_throughput(&self, path: &Path) -> Result<(), BenchError> {
        let series = self
            .commits
            .iter()
            .map(|system| {
                let points = system
                    .runs
                    .iter()
                    .map(|r| (r.clients as f64, r.commits_per_second))
                    .collect();
                (system.system.clone(), points)
            })
            .collect();
        plot_lines(
            path,
            "commit throughput against clients",
            "concurrent clients",
            "commits per second",
            series,
        )
    }

    fn plot_space(&self, path: &Path) -> Result<(), BenchError> {
        let mib = |bytes: u64| bytes as f64 / (1 << 20) as f64;
        let series = |name: &str, value: &dyn Fn(&SpacePoint) -> f64| {
            let points = self
                .space
                .iter()
                .map(|p| (p.commits as f64, value(p)))
                .collect();
            (name.to_string(), points)
        };
        plot_lines(
            path,
            "space on one replica against commits",
            "commits",
            "MiB",
            vec![
                series("sixfold replica", &|p| mib(p.replica_bytes)),
                series("live pages", &|p| mib(p.live_bytes)),
                series("stock SQLite", &|p| mib(p.sqlite_bytes)),
                series("process RSS", &|p| p.resident_mib),
            ],
        )
    }

    fn plot_recovery(&self, path: &Path) -> Result<(), BenchError> {
        let mut systems: Vec<&str> = self.recovery.iter().map(|p| p.system.as_str()).collect();
        systems.dedup();
        let series = systems
            .into_iter()
            .map(|system| {
                let points = self
                    .recovery
                    .iter()
                    .filter(|p| p.system == system)
                    .map(|p| (p.backlog_bytes as f64 / (1 << 20) as f64, p.milliseconds))
                    .collect();
                (system.to_string(), points)
            })
            .collect();
        plot_lines(
            path,
            "recovery time against redo backlog",
            "backlog (MiB)",
            "milliseconds",
            series,
        )
    }
}

/// A PNG line chart, one line per named series of (x, y) points.
fn plot_lines(
    path: &Path,
    caption: &str,
    x_desc: &str,
    y_desc: &str,
    series: Vec<(String, Vec<(f64, f64)>)>,
) -> Result<(), BenchError> {
    let all = || series.iter().flat_map(|(_, points)| points.iter());
    let x_max = all().map(|p| p.0).fold(1.0, f64::max);
    let y_max = all().map(|p| p.1).fold(1.0, f64::max);
    let root = BitMapBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_error)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(caption, ("sans-serif", 24))
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..x_max * 1.05, 0f64..y_max * 1.1)
        .map_err(plot_error)?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .draw()
        .map_err(plot_error)?;
    for (index, (name, points)) in series.into_iter().enumerate() {
        let color = Palette99::pick(index).to_rgba();
        chart
            .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))
            .map_err(plot_error)?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
        chart
            .draw_series(
                points
                    .into_iter()
                    .map(|p| Circle::new(p, 4, color.filled())),
            )
            .map_err(plot_error)?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE)
        .border_style(BLACK)
        .draw()
        .map_err(plot_error)?;
    root.present().map_err(plot_error)
}

fn plot_error(error: impl std::fmt::Display) -> BenchError {
    BenchError::Plot(error.to_string())
}

/// Fonts where Debian puts DejaVu (the `fonts-dejavu-core` package).
const FONT_PATHS: [&str; 2] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
];

/// plotters draws text with a font we register; without one, plots are skipped (and said).
fn register_font() -> bool {
    for path in FONT_PATHS {
        if let Ok(bytes) = std::fs::read(path) {
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            if plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok() {
                return true;
            }
        }
    }
    false
}
