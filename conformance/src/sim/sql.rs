//! Stock SQLite on the simulated volume (`Workload::Sql`): the same world, faults and checks
//! as the page workload, with SQLite (through `sixfold-sql`'s VFS) as the only client. At
//! the end every database must equal stock SQLite on a local file fed the transactions the
//! volume acknowledged (V5, C4).
//!
//! The volume (`SimVolume`) turns SQLite's commits into MTRs of full page images on the
//! newest open writer and steps the world until the commit is acknowledged. A commit whose
//! writer crashed or was fenced first is settled by the next recovery: it committed if it
//! is at or below that recovery's VDL, and is void otherwise (X4). In a real deployment the
//! SQL process dies with its writer and the client does not learn which; the simulation
//! keeps the SQLite connection and tells it, so that the oracle stays exact.

use std::sync::{Arc, Mutex, MutexGuard};

use rusqlite::Connection;
use sixfold_core::{Lsn, PageId, PgId, WriteError};
use sixfold_sql::{Catalog, PageVolume, PageWrite, VolumeError, check_writes, open_connection};

use super::{LIVENESS_TICKS_MAX, SIM_NODES, SIM_PG_PAGES, SIM_PGS, SimOptions, SimOutcome, World};

/// Ticks a commit or a read may wait for a writer, a quorum or a segment that caught up.
const WAIT_TICKS_MAX: u64 = 20_000;
/// The database the workload writes.
const DATABASE: &str = "app";
/// Rows' ids are below this, so the table stays within the simulated volume's pages.
const ROW_IDS: u64 = 40;

/// The simulated volume as SQLite's VFS sees it.
struct SimVolume {
    world: Mutex<World>,
}

/// How a commit ended.
enum Committed {
    /// At this CPL, for good.
    Durable(Lsn),
    /// Not durable, and never will be: a recovery truncated it (X4), or it was never sent.
    Void(String),
}

impl SimVolume {
    fn world(&self) -> MutexGuard<'_, World> {
        self.world
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn backend(error: String) -> VolumeError {
    VolumeError::Backend(error)
}

impl PageVolume for SimVolume {
    fn begin_read(&self) -> Result<u64, VolumeError> {
        let mut world = self.world();
        let id = world.wait_for_open_writer().map_err(backend)?;
        Ok(world.writers[id].vdl().unwrap_or(Lsn::ZERO).0)
    }

    fn end_read(&self, _read_point: u64) {}

    fn read_page(
        &self,
        db: u32,
        page_no: u32,
        read_point: u64,
    ) -> Result<Option<Vec<u8>>, VolumeError> {
        let page = self.volume_page(db, page_no)?;
        let (bytes, lsn) = self
            .world()
            .read_page(page, Lsn(read_point))
            .map_err(backend)?;
        Ok((lsn != Lsn::ZERO).then_some(bytes))
    }

    fn commit(&self, writes: Vec<PageWrite>) -> Result<u64, VolumeError> {
        check_writes(&writes)?;
        let mut pages = Vec::with_capacity(writes.len());
        for write in writes {
            pages.push((self.volume_page(write.db, write.page_no)?, write.image));
        }
        match self.world().commit(&pages).map_err(backend)? {
            Committed::Durable(lsn) => Ok(lsn.0),
            Committed::Void(why) => Err(VolumeError::Backend(why)),
        }
    }
}

impl SimVolume {
    /// The simulation hosts `SIM_PGS` PGs of `SIM_PG_PAGES` pages: page numbers above them
    /// belong to PGs no node hosts (V2 growth is not simulated), and the workload is sized
    /// never to reach them, so one that does fails the run.
    fn volume_page(&self, db: u32, page_no: u32) -> Result<PageId, VolumeError> {
        if page_no >= SIM_PGS * SIM_PG_PAGES {
            let failure = format!(
                "db {db} page {page_no} is beyond the simulated volume's {} pages",
                SIM_PGS * SIM_PG_PAGES
            );
            return Err(VolumeError::Backend(self.world().fail(failure)));
        }
        Ok(PageId::new(db, page_no))
    }
}

impl World {
    /// One step, with faults until the run heals.
    fn sql_step(&mut self) -> Result<(), String> {
        let faults_on = self.liveness_target.is_none();
        let result = self.step(faults_on);
        if let Err(failure) = &result {
            self.failure.get_or_insert_with(|| failure.clone());
        }
        result
    }

    fn fail(&mut self, failure: String) -> String {
        self.failure.get_or_insert_with(|| failure.clone());
        failure
    }

    /// A check that failed earlier fails every later volume call too.
    fn failed(&self) -> Result<(), String> {
        match &self.failure {
            Some(failure) => Err(failure.clone()),
            None => Ok(()),
        }
    }

    /// Steps until the newest writer is open; its index.
    fn wait_for_open_writer(&mut self) -> Result<usize, String> {
        self.failed()?;
        let deadline = self.now + WAIT_TICKS_MAX;
        loop {
            let newest = self.writers.len() - 1;
            if self.writers[newest].vdl().is_some() {
                return Ok(newest);
            }
            if self.now > deadline {
                return Err(self.fail(format!(
                    "liveness: no open writer within {WAIT_TICKS_MAX} ticks ({})",
                    self.writers[newest].describe()
                )));
            }
            self.sql_step()?;
        }
    }

    /// R1, R3: the page as of `read_point` from one segment whose SCL covers the PG's last
    /// LSN at or below it; X7: the open writer learns the page's LSN.
    fn read_page(&mut self, page: PageId, read_point: Lsn) -> Result<(Vec<u8>, Lsn), String> {
        self.failed()?;
        let deadline = self.now + WAIT_TICKS_MAX;
        let pg = PgId(page.page_no / SIM_PG_PAGES);
        loop {
            let id = self.wait_for_open_writer()?;
            let vdl = self.writers[id].vdl().unwrap_or(Lsn::ZERO);
            if read_point != vdl {
                // One connection: no commit is in flight while it reads, so its read point
                // is the VDL (R2); a writer that opened since has the same VDL.
                return Err(self.fail(format!(
                    "R2: a read at {read_point} while the VDL is {vdl}, with no commit in flight"
                )));
            }
            let required = self.writers[id].pg_lsn_at(pg, read_point);
            let epoch = self.writers[id].epoch();
            let first = self.rng.below(SIM_NODES as u64) as usize;
            for offset in 0..SIM_NODES {
                let node = &mut self.nodes[(first + offset) % SIM_NODES];
                let segment = super::segment(pg.0, node.index());
                if let Ok(image) = node.read_page(segment, epoch, page, read_point, required) {
                    self.writers[id].note_page_lsn(page, image.lsn);
                    return Ok((image.bytes, image.lsn));
                }
            }
            if self.now > deadline {
                return Err(self.fail(format!(
                    "liveness: no segment served {page} at {read_point} within {WAIT_TICKS_MAX} ticks"
                )));
            }
            self.sql_step()?;
        }
    }

    /// V5, C4: one MTR of page images on the newest open writer, until it is acknowledged
    /// or a recovery settles it.
    fn commit(&mut self, pages: &[(PageId, Vec<u8>)]) -> Result<Committed, String> {
        self.failed()?;
        let deadline = self.now + WAIT_TICKS_MAX;
        let (id, commit_lsn) = loop {
            if self.now > deadline {
                return Err(self.fail(format!(
                    "liveness: a commit could not be submitted within {WAIT_TICKS_MAX} ticks"
                )));
            }
            let id = self.wait_for_open_writer()?;
            match self.writers[id].submit_images(pages) {
                Some(Ok(output)) => {
                    let commit_lsn = output
                        .submitted
                        .first()
                        .map(|mtr| mtr.commit_lsn)
                        .ok_or("a submitted MTR without a commit LSN")?;
                    self.handle_writer_output(id, output)
                        .map_err(|failure| self.fail(failure))?;
                    break (id, commit_lsn);
                }
                Some(Err(WriteError::PageLsnUnknown { page })) => {
                    // X7: learn the page's LSN with a read at VDL, then try again.
                    let vdl = self.writers[id].vdl().unwrap_or(Lsn::ZERO);
                    self.read_page(page, vdl)?;
                }
                Some(Err(WriteError::Backpressure { .. })) | None => self.sql_step()?,
                Some(Err(error)) => {
                    return Err(
                        self.fail(format!("the newest open writer refused an MTR: {error}"))
                    );
                }
            }
        };
        let epoch = self.writers[id].epoch();
        loop {
            if self.oracle.is_acknowledged(commit_lsn) {
                return Ok(Committed::Durable(commit_lsn));
            }
            // The writer crashed or was fenced first: the next recovery settles it.
            if let Some(&(recovered, vdl)) = self.opened.iter().find(|(e, _)| *e > epoch) {
                self.commits_settled_by_recovery += 1;
                return Ok(if commit_lsn <= vdl {
                    // SQLite is told it committed: from now on it counts as acknowledged
                    // (C4), and later recoveries must keep it.
                    self.oracle.acknowledged(commit_lsn);
                    Committed::Durable(commit_lsn)
                } else {
                    self.commits_void += 1;
                    self.commits_void_in_statement += 1;
                    Committed::Void(format!(
                        "commit {commit_lsn} of epoch {epoch} is above VDL {vdl} of the recovery at epoch {recovered}: truncated (X4)"
                    ))
                });
            }
            if self.now > deadline {
                return Err(self.fail(format!(
                    "liveness: commit {commit_lsn} neither acknowledged nor settled by a recovery within {WAIT_TICKS_MAX} ticks"
                )));
            }
            self.sql_step()?;
        }
    }
}

fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// A random statement or transaction on `t(id INTEGER PRIMARY KEY, v TEXT, n INTEGER)`,
/// small enough that the table fits the simulated volume.
fn statement(rng: &mut u64) -> String {
    let id = next(rng) % ROW_IDS;
    let n = next(rng) % 1000;
    let len = 1 + next(rng) % 40;
    match next(rng) % 5 {
        0 | 1 => format!(
            "INSERT OR REPLACE INTO t VALUES({id}, substr(hex(zeroblob({len})), 1, {len}), {n})"
        ),
        2 => format!("UPDATE t SET n = n + {n} WHERE id % 7 = {}", id % 7),
        3 => format!("DELETE FROM t WHERE id BETWEEN {id} AND {}", id + 3),
        _ => format!(
            "BEGIN; INSERT OR REPLACE INTO t VALUES({id}, 'a', {n}); \
             UPDATE t SET v = substr(v || 'b', 1, 40) WHERE id < {id}; COMMIT"
        ),
    }
}

fn dump(conn: &Connection) -> Result<Vec<String>, String> {
    let mut statement = conn
        .prepare("SELECT id, v, n FROM t ORDER BY id")
        .map_err(|e| format!("dump: {e}"))?;
    let rows = statement
        .query_map([], |row| {
            Ok(format!(
                "{:?}|{:?}|{:?}",
                row.get_ref(0)?,
                row.get_ref(1)?,
                row.get_ref(2)?
            ))
        })
        .map_err(|e| format!("dump: {e}"))?;
    rows.collect::<Result<_, _>>()
        .map_err(|e| format!("dump: {e}"))
}

/// Runs one client call against the volume. `Some` if it took effect; `None` if it failed
/// because one of its commits was settled void by a recovery (SQLite rolled back). Any
/// other error, and any check that failed meanwhile, fails the run.
fn settle<T, E: std::fmt::Display>(
    volume: &SimVolume,
    what: &str,
    call: impl FnOnce() -> Result<T, E>,
) -> Result<Option<T>, String> {
    volume.world().commits_void_in_statement = 0;
    let result = call();
    let (failure, void) = {
        let world = volume.world();
        (world.failure.clone(), world.commits_void_in_statement)
    };
    if let Some(failure) = failure {
        return Err(failure);
    }
    match result {
        Ok(value) => Ok(Some(value)),
        Err(_) if void > 0 => Ok(None),
        Err(error) => Err(format!(
            "{what}: failed on the volume with no commit settled void: {error}"
        )),
    }
}

/// Runs `sql` on the volume; whether it took effect (and the oracle must run it).
fn run_to_effect(conn: &Connection, volume: &SimVolume, sql: &str) -> Result<bool, String> {
    let took_effect = settle(volume, sql, || conn.execute_batch(sql))?.is_some();
    if !took_effect {
        // A transaction left open by the failed COMMIT is rolled back; nothing of it is on
        // the volume.
        let _ = conn.execute_batch("ROLLBACK");
    }
    Ok(took_effect)
}

/// What a run with SQLite on the volume did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SqlRun {
    pub statements: usize,
    /// Statements that took effect (the rest were settled void and rolled back).
    pub applied: usize,
    /// Rows at the end, equal to stock SQLite's.
    pub rows: usize,
    /// Commits whose writer stopped before acknowledging them, settled by a recovery.
    pub settled_by_recovery: usize,
    /// Of those, the ones the recovery truncated.
    pub void: usize,
}

impl std::fmt::Display for SqlRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "SQL: {} statements, {} took effect, {} rows equal to stock SQLite; {} commits settled by a recovery, {} of them void",
            self.statements, self.applied, self.rows, self.settled_by_recovery, self.void
        )
    }
}

fn drive(volume: &Arc<SimVolume>, statements: usize, seed: u64) -> Result<SqlRun, String> {
    let shared: Arc<dyn PageVolume> = volume.clone();
    let catalog = Catalog::new(shared.clone());
    let deadline_tries = 20;
    let mut tries = 0;
    while settle(volume, "create_database", || {
        catalog.create_database(DATABASE)
    })?
    .is_none()
    {
        tries += 1;
        if tries > deadline_tries {
            return Err(format!(
                "liveness: the catalog commit was void {tries} times"
            ));
        }
    }
    let conn = open_connection(shared.clone(), DATABASE).map_err(|e| format!("open: {e}"))?;
    let oracle = Connection::open_in_memory().map_err(|e| format!("oracle: {e}"))?;
    let schema = "CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, v TEXT, n INTEGER)";
    let mut tries = 0;
    while !run_to_effect(&conn, volume, schema)? {
        tries += 1;
        if tries > deadline_tries {
            return Err(format!("liveness: the schema was void {tries} times"));
        }
    }
    oracle.execute_batch(schema).map_err(|e| e.to_string())?;
    let mut rng = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut applied = 0;
    for _ in 0..statements {
        let sql = statement(&mut rng);
        if run_to_effect(&conn, volume, &sql)? {
            oracle
                .execute_batch(&sql)
                .map_err(|e| format!("oracle: {sql}: {e}"))?;
            applied += 1;
        }
    }
    // Liveness: heal; a statement must commit, and every segment must catch up.
    {
        let mut world = volume.world();
        world.heal();
        world.liveness_target = Some(0);
    }
    let last = "INSERT OR REPLACE INTO t VALUES(0, 'healed', 0)";
    if !run_to_effect(&conn, volume, last)? {
        return Err("liveness: a statement after healing did not commit".into());
    }
    oracle.execute_batch(last).map_err(|e| e.to_string())?;
    {
        let mut world = volume.world();
        let deadline = world.now + LIVENESS_TICKS_MAX;
        while !world.converged() {
            if world.now > deadline {
                return Err(format!(
                    "liveness: segments not converged within {LIVENESS_TICKS_MAX} ticks after healing: {}",
                    world.lagging().join(", ")
                ));
            }
            world.step(false)?;
        }
        world.final_checks()?;
    }
    // A cold look: a fresh connection, empty SQLite cache.
    drop(conn);
    let conn = open_connection(shared, DATABASE).map_err(|e| format!("reopen: {e}"))?;
    let integrity: String = conn
        .query_row("PRAGMA integrity_check", [], |row| row.get(0))
        .map_err(|e| format!("integrity_check: {e}"))?;
    if integrity != "ok" {
        return Err(format!("integrity_check: {integrity}"));
    }
    let (actual, expected) = (dump(&conn)?, dump(&oracle)?);
    if actual != expected {
        let first = actual.iter().zip(&expected).position(|(a, b)| a != b);
        return Err(format!(
            "the database differs from stock SQLite fed the acknowledged transactions: {} rows vs {}, first difference at row {first:?} (V5, C4)",
            actual.len(),
            expected.len()
        ));
    }
    Ok(SqlRun {
        statements,
        applied,
        rows: actual.len(),
        ..SqlRun::default()
    })
}

pub(super) fn run_unguarded(options: SimOptions) -> SimOutcome {
    if options.scope != super::Scope::Full {
        let mut world = World::new(options);
        return world.outcome(
            Some("the SQL workload runs in the full scope only: SQLite's MTRs do not fit the model's LAL".into()),
            None,
        );
    }
    let statements = options.mtrs;
    let seed = options.seed;
    let mut world = World::new(SimOptions {
        // The page workload stays off: SQLite is the only client.
        mtrs: 0,
        ..options
    });
    world.start_writer(None);
    let volume = Arc::new(SimVolume {
        world: Mutex::new(world),
    });
    let result = drive(&volume, statements, seed);
    let mut world = volume.world();
    let failure = match result {
        Ok(run) => {
            world.sql_summary = Some(SqlRun {
                settled_by_recovery: world.commits_settled_by_recovery,
                void: world.commits_void,
                ..run
            });
            world.failure.clone().or_else(|| {
                crate::validate::validate(&world.trace)
                    .err()
                    .map(|violation| format!("trace validation: {violation}"))
            })
        }
        Err(failure) => Some(world.failure.clone().unwrap_or(failure)),
    };
    world.outcome(failure, None)
}
