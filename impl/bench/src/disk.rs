//! The disk's limit, measured in the same run: fsync latency of a 4 KiB append, and
//! sequential write bandwidth.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use std::time::Instant;

use serde::Serialize;

use crate::BenchError;

#[derive(Clone, Debug, Serialize)]
pub struct DiskLimit {
    pub fsync_p50_us: f64,
    pub fsync_p99_us: f64,
    /// 4 KiB appends each followed by fdatasync, per second: one commit per fsync.
    pub fsyncs_per_second: f64,
    pub sequential_write_mib_per_second: f64,
}

/// The p-th percentile (0..=100) of sorted samples.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

pub fn measure(dir: &Path, fsyncs: usize, sequential_bytes: u64) -> Result<DiskLimit, BenchError> {
    let path = dir.join("fsync-probe");
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&path)
        .map_err(BenchError::io(&path))?;
    let block = vec![0xA5u8; 4096];
    let mut samples = Vec::with_capacity(fsyncs);
    let started = Instant::now();
    for _ in 0..fsyncs {
        let t = Instant::now();
        file.write_all(&block).map_err(BenchError::io(&path))?;
        file.sync_data().map_err(BenchError::io(&path))?;
        samples.push(t.elapsed().as_secs_f64() * 1e6);
    }
    let fsyncs_per_second = fsyncs as f64 / started.elapsed().as_secs_f64();
    samples.sort_by(|a, b| a.total_cmp(b));
    drop(file);

    let seq_path = dir.join("sequential-probe");
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&seq_path)
        .map_err(BenchError::io(&seq_path))?;
    let chunk = vec![0x5Au8; 1 << 20];
    let started = Instant::now();
    let mut written = 0;
    while written < sequential_bytes {
        file.write_all(&chunk).map_err(BenchError::io(&seq_path))?;
        written += chunk.len() as u64;
    }
    file.sync_all().map_err(BenchError::io(&seq_path))?;
    let seconds = started.elapsed().as_secs_f64();
    let _ = std::fs::remove_file(&path);
    let _ = std::fs::remove_file(&seq_path);
    Ok(DiskLimit {
        fsync_p50_us: percentile(&samples, 50.0),
        fsync_p99_us: percentile(&samples, 99.0),
        fsyncs_per_second,
        sequential_write_mib_per_second: written as f64 / (1 << 20) as f64 / seconds,
    })
}
