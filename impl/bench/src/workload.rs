//! The commit workload, the same for every system: a transaction updates 1–4 random rows
//! of an `accounts` table and inserts one `history` row.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rusqlite::{Connection, params};
use serde::Serialize;

use crate::BenchError;
use crate::disk::percentile;

/// Rows inserted per setup transaction: bounded so no single MTR is huge.
const SETUP_BATCH_ROWS: u64 = 20_000;
/// How long a client waits on SQLite's lock before counting a busy error.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Opens a connection to the system under test.
pub type Connect<'a> = &'a (dyn Fn() -> Result<Connection, BenchError> + Sync);

#[derive(Clone, Debug, Serialize)]
pub struct CommitResult {
    pub clients: usize,
    pub commits: u64,
    pub errors: u64,
    pub seconds: f64,
    pub commits_per_second: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

pub fn setup(connection: &Connection, rows: u64) -> Result<(), BenchError> {
    connection.execute_batch(
        "CREATE TABLE IF NOT EXISTS accounts(id INTEGER PRIMARY KEY, balance INTEGER NOT NULL, note TEXT);
         CREATE TABLE IF NOT EXISTS history(id INTEGER PRIMARY KEY, account INTEGER, amount INTEGER, at INTEGER);",
    )?;
    let mut next = 0;
    while next < rows {
        let end = (next + SETUP_BATCH_ROWS).min(rows);
        connection.execute_batch("BEGIN")?;
        {
            let mut insert = connection
                .prepare_cached("INSERT INTO accounts(id, balance, note) VALUES (?1, 0, ?2)")?;
            for id in next..end {
                insert.execute(params![id as i64, "opening balance"])?;
            }
        }
        connection.execute_batch("COMMIT")?;
        next = end;
    }
    Ok(())
}

fn one_transaction(connection: &Connection, rng: &mut StdRng, rows: u64) -> rusqlite::Result<()> {
    connection.execute_batch("BEGIN IMMEDIATE")?;
    let result = (|| {
        let updates = rng.gen_range(1..=4);
        let mut first = 0;
        for index in 0..updates {
            let id = rng.gen_range(0..rows) as i64;
            if index == 0 {
                first = id;
            }
            connection
                .prepare_cached("UPDATE accounts SET balance = balance + 1 WHERE id = ?1")?
                .execute(params![id])?;
        }
        connection
            .prepare_cached("INSERT INTO history(account, amount, at) VALUES (?1, 1, ?2)")?
            .execute(params![first, updates])?;
        connection.execute_batch("COMMIT")
    })();
    if result.is_err() {
        let _ = connection.execute_batch("ROLLBACK");
    }
    result
}

/// Opens client `n`'s connection (to pick its database).
pub type ConnectClient<'a> = &'a (dyn Fn(usize) -> Result<Connection, BenchError> + Sync);

/// Runs `clients` threads of the workload for `run_time`; each commit's latency is timed.
pub fn run_commits(
    connect: Connect<'_>,
    clients: usize,
    run_time: Duration,
    rows: u64,
) -> Result<CommitResult, BenchError> {
    run_commits_per_client(&|_| connect(), clients, run_time, rows)
}

/// As [`run_commits`], each client on the connection `connect(client)` opens.
pub fn run_commits_per_client(
    connect: ConnectClient<'_>,
    clients: usize,
    run_time: Duration,
    rows: u64,
) -> Result<CommitResult, BenchError> {
    let stop = AtomicBool::new(false);
    let started = Instant::now();
    let per_client: Vec<Result<(Vec<f64>, u64), BenchError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..clients)
            .map(|client| {
                let stop = &stop;
                scope.spawn(move || -> Result<(Vec<f64>, u64), BenchError> {
                    let connection = connect(client)?;
                    connection.busy_timeout(BUSY_TIMEOUT)?;
                    let mut rng = StdRng::seed_from_u64(client as u64 + 1);
                    let mut latencies = Vec::new();
                    let mut errors = 0;
                    while !stop.load(Ordering::Relaxed) {
                        let t = Instant::now();
                        match one_transaction(&connection, &mut rng, rows) {
                            Ok(()) => latencies.push(t.elapsed().as_secs_f64() * 1e3),
                            Err(_) => errors += 1,
                        }
                    }
                    Ok((latencies, errors))
                })
            })
            .collect();
        std::thread::sleep(run_time);
        stop.store(true, Ordering::Relaxed);
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(BenchError::System("client thread panicked".into())))
            })
            .collect()
    });
    let seconds = started.elapsed().as_secs_f64();
    let mut latencies = Vec::new();
    let mut errors = 0;
    for result in per_client {
        let (l, e) = result?;
        latencies.extend(l);
        errors += e;
    }
    latencies.sort_by(|a, b| a.total_cmp(b));
    Ok(CommitResult {
        clients,
        commits: latencies.len() as u64,
        errors,
        seconds,
        commits_per_second: latencies.len() as f64 / seconds,
        p50_ms: percentile(&latencies, 50.0),
        p99_ms: percentile(&latencies, 99.0),
    })
}

/// Runs `count` workload transactions on one connection (for byte counts, where every
/// commit must go through the same connection's settings).
pub fn run_commits_on(connection: &Connection, rows: u64, count: u64) -> Result<u64, BenchError> {
    let mut rng = StdRng::seed_from_u64(99);
    let mut done = 0;
    for _ in 0..count {
        if one_transaction(connection, &mut rng, rows).is_ok() {
            done += 1;
        }
    }
    Ok(done)
}

/// Point selects per second on one connection.
pub fn run_point_selects(
    connection: &Connection,
    rows: u64,
    count: u64,
) -> Result<f64, BenchError> {
    let mut rng = StdRng::seed_from_u64(7);
    let started = Instant::now();
    let mut select = connection.prepare_cached("SELECT balance FROM accounts WHERE id = ?1")?;
    for _ in 0..count {
        let id = rng.gen_range(0..rows) as i64;
        let _: i64 = select.query_row(params![id], |row| row.get(0))?;
    }
    Ok(count as f64 / started.elapsed().as_secs_f64())
}
