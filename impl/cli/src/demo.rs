//! `sixfold demo`: the README's main command. Stock SQLite on an embedded six-node cluster
//! runs an order-entry workload in three databases while an AZ, then one more node, go
//! down and the writer crashes and recovers; at the end each database is compared with
//! stock SQLite on a local file that ran exactly the acknowledged transactions.
//! docs/sql.md tells the story step by step.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use rusqlite::Connection;
use sixfold_cluster::EmbeddedCluster;
use sixfold_core::NodeId;
use sixfold_sql::{Catalog, ClusterVolume, PageVolume, open_connection};

use crate::sql_cmds::writer_options;

#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  sixfold demo --quick\n  sixfold demo --data ./demo-data --seed 3"
)]
pub struct DemoArgs {
    /// Folder for the cluster (must not hold one yet); default: a temporary folder,
    /// removed at the end.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// A shorter run (fewer transactions per step, shorter waits), for tests.
    #[arg(long)]
    pub quick: bool,
    /// Seed of the workload's choices (the same seed replays the same transactions).
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
}

/// The three databases the demo creates.
const DATABASES: [&str; 3] = ["shop_eu", "shop_us", "shop_ap"];
/// Tables of each database, compared in full at the end.
const TABLES: [&str; 3] = ["item", "customer", "orders"];
const ITEMS: u64 = 50;
const CUSTOMERS: u64 = 20;
const SCHEMA: &str = "CREATE TABLE item(id INTEGER PRIMARY KEY, name TEXT NOT NULL, \
                      price INTEGER NOT NULL, stock INTEGER NOT NULL);\n\
                      CREATE TABLE customer(id INTEGER PRIMARY KEY, name TEXT NOT NULL, \
                      balance INTEGER NOT NULL);\n\
                      CREATE TABLE orders(id INTEGER PRIMARY KEY, customer INTEGER NOT NULL, \
                      item INTEGER NOT NULL, qty INTEGER NOT NULL, amount INTEGER NOT NULL, \
                      note TEXT);\n\
                      CREATE INDEX orders_by_customer ON orders(customer);";

/// Transactions per database in each step.
struct Sizes {
    healthy: u64,
    az_down: u64,
    crash_run: u64,
    after_recovery: u64,
    /// How long the demo watches a commit wait with AZ+1 down.
    waiting: Duration,
    /// How long the workload runs before the writer is crashed.
    crash_after: Duration,
}

impl Sizes {
    fn of(quick: bool) -> Sizes {
        if quick {
            Sizes {
                healthy: 20,
                az_down: 15,
                crash_run: 10_000,
                after_recovery: 15,
                waiting: Duration::from_millis(1_500),
                crash_after: Duration::from_millis(500),
            }
        } else {
            Sizes {
                healthy: 500,
                az_down: 300,
                crash_run: 100_000,
                after_recovery: 300,
                waiting: Duration::from_secs(3),
                crash_after: Duration::from_secs(2),
            }
        }
    }
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// One order: a row in `orders`, stock taken from the item, the amount added to the
/// customer's balance. Order ids are unique, so an order's row shows whether its
/// transaction is in the database.
#[derive(Clone, Debug)]
struct Order {
    id: u64,
    sql: String,
}

impl Order {
    fn new(seed: u64, db: usize, id: u64) -> Order {
        let r = splitmix(seed ^ ((db as u64) << 40) ^ id);
        let customer = 1 + r % CUSTOMERS;
        let item = 1 + (r >> 8) % ITEMS;
        let qty = 1 + (r >> 16) % 5;
        let note_len = (r >> 24) % 300;
        let sql = format!(
            "BEGIN;\n\
             INSERT INTO orders VALUES({id}, {customer}, {item}, {qty}, \
             {qty} * (SELECT price FROM item WHERE id = {item}), \
             substr(printf('%0300d', {r}), 1, {note_len}));\n\
             UPDATE item SET stock = stock - {qty} WHERE id = {item};\n\
             UPDATE customer SET balance = balance + (SELECT amount FROM orders WHERE id = {id}) \
             WHERE id = {customer};\n\
             COMMIT;",
            r = r % 1_000_000_007
        );
        Order { id, sql }
    }
}

fn setup_sql() -> String {
    let mut sql = format!("BEGIN;\n{SCHEMA}\n");
    for id in 1..=ITEMS {
        sql.push_str(&format!(
            "INSERT INTO item VALUES({id}, 'item {id}', {}, 1000000);\n",
            10 + id * 7 % 90
        ));
    }
    for id in 1..=CUSTOMERS {
        sql.push_str(&format!(
            "INSERT INTO customer VALUES({id}, 'customer {id}', 0);\n"
        ));
    }
    sql.push_str("COMMIT;");
    sql
}

/// The outcome of one transaction.
enum Outcome {
    /// SQLite's COMMIT returned: VDL passed its MTR (C4).
    Acknowledged,
    /// The commit failed while the writer was being crashed: it may or may not be there.
    Unknown,
    /// Failed with the cluster healthy enough to commit: a bug.
    Failed(String),
}

/// One database of the demo, seen from its workload client.
struct DbRun {
    index: usize,
    name: &'static str,
    conn: Connection,
    next_order: u64,
    /// In commit order: setup first, then orders (their effects commute).
    acknowledged: Vec<String>,
    unknown: Vec<Order>,
    failed: Vec<String>,
}

impl DbRun {
    fn run(&mut self, sql: &str, crashing: &AtomicBool) -> Outcome {
        match self.conn.execute_batch(sql) {
            Ok(()) => Outcome::Acknowledged,
            Err(error) => {
                // A failed COMMIT leaves SQLite rolled back or in a transaction; either
                // way the next one starts clean.
                let _ = self.conn.execute_batch("ROLLBACK");
                if crashing.load(Ordering::SeqCst) {
                    Outcome::Unknown
                } else {
                    let vfs = sixfold_sql::last_vfs_error(&self.conn).unwrap_or_default();
                    Outcome::Failed(format!("{error} {vfs}"))
                }
            }
        }
    }

    /// Runs up to `count` orders, stopping early at a failure or when `stop` is set.
    fn run_orders(&mut self, seed: u64, count: u64, crashing: &AtomicBool, stop: &AtomicBool) {
        for _ in 0..count {
            if stop.load(Ordering::SeqCst) {
                return;
            }
            let order = Order::new(seed, self.index, self.next_order);
            self.next_order += 1;
            match self.run(&order.sql, crashing) {
                Outcome::Acknowledged => self.acknowledged.push(order.sql),
                Outcome::Unknown => {
                    self.unknown.push(order);
                    return;
                }
                Outcome::Failed(error) => {
                    self.failed.push(format!("order {}: {error}", order.id));
                    return;
                }
            }
        }
    }

    fn orders_acknowledged(&self) -> usize {
        self.acknowledged.len().saturating_sub(1)
    }
}

/// Prints each step with the time since the start.
struct Clock(Instant);

impl Clock {
    fn step(&self, text: impl std::fmt::Display) {
        println!("[{:6.2}s] {text}", self.0.elapsed().as_secs_f64());
    }
}

/// One check of the verdict.
struct Check {
    passed: bool,
    text: String,
}

pub fn demo(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let temp;
    let dir = match &args.data {
        Some(dir) => {
            if dir.join(sixfold_cluster::embedded::CONFIG_FILE).exists() {
                anyhow::bail!(
                    "{} already holds a cluster; the demo starts from an empty folder",
                    dir.display()
                );
            }
            dir.clone()
        }
        None => {
            temp = tempfile::tempdir().context("creating a temporary folder")?;
            temp.path().to_path_buf()
        }
    };
    let oracle_dir = tempfile::tempdir().context("creating the oracle's folder")?;
    let checks = run(&dir, oracle_dir.path(), &args)?;
    println!("\nverdict:");
    let passed = checks.iter().all(|c| c.passed);
    for check in &checks {
        println!(
            "  [{}] {}",
            if check.passed { "ok" } else { "FAILED" },
            check.text
        );
    }
    if passed {
        println!(
            "PASS: every acknowledged transaction survived an AZ outage, AZ+1, a writer \
             crash and two recoveries, and nothing else appeared."
        );
        Ok(ExitCode::SUCCESS)
    } else {
        println!("FAIL: see the failed checks above.");
        Ok(ExitCode::FAILURE)
    }
}

fn run(dir: &Path, oracle_dir: &Path, args: &DemoArgs) -> anyhow::Result<Vec<Check>> {
    let clock = Clock(Instant::now());
    let sizes = Sizes::of(args.quick);
    let mut checks = Vec::new();
    let crashing = AtomicBool::new(false);
    let never = AtomicBool::new(false);

    clock.step(format!("starting six storage nodes in {}", dir.display()));
    let cluster = EmbeddedCluster::start(dir).context("starting the embedded cluster")?;
    for node in &cluster.config().nodes {
        println!(
            "           node {} in {} on {}",
            node.id, node.az, node.addr
        );
    }
    let volume = Arc::new(
        ClusterVolume::open(cluster.config().clone(), writer_options())
            .context("opening the writer")?,
    );
    let page_volume: Arc<dyn PageVolume> = volume.clone();
    let stats = volume.stats().unwrap_or_default();
    clock.step(format!(
        "writer open (recovery done): epoch {} VDL {}",
        stats.epoch, stats.vdl
    ));

    let catalog = Catalog::new(page_volume.clone());
    let mut runs = Vec::new();
    for (index, name) in DATABASES.into_iter().enumerate() {
        let id = catalog
            .create_database(name)
            .with_context(|| format!("creating database {name}"))?;
        let conn = open_connection(page_volume.clone(), name)
            .with_context(|| format!("opening database {name}"))?;
        let mut run = DbRun {
            index,
            name,
            conn,
            next_order: 1,
            acknowledged: Vec::new(),
            unknown: Vec::new(),
            failed: Vec::new(),
        };
        let setup = setup_sql();
        match run.run(&setup, &never) {
            Outcome::Acknowledged => run.acknowledged.push(setup),
            Outcome::Unknown | Outcome::Failed(_) => {
                anyhow::bail!("setting up {name} failed: {:?}", run.conn.is_autocommit())
            }
        }
        println!("           database {name} (id {id}): {ITEMS} items, {CUSTOMERS} customers");
        runs.push(run);
    }
    clock.step(format!(
        "created {} databases in one volume; their pages share the PGs",
        DATABASES.len()
    ));

    // Step: healthy cluster.
    let started = Instant::now();
    parallel(&mut runs, |run| {
        run.run_orders(args.seed, sizes.healthy, &never, &never)
    });
    clock.step(format!(
        "order entry, all six nodes up: {} orders per database in {:.2}s",
        sizes.healthy,
        started.elapsed().as_secs_f64()
    ));

    // Step: a whole AZ down.
    let config = cluster.config().clone();
    let az = config.nodes[0].az.clone();
    let az_nodes: Vec<NodeId> = config
        .nodes
        .iter()
        .filter(|n| n.az == az)
        .map(|n| n.id)
        .collect();
    for node in &az_nodes {
        cluster.stop_node(*node);
    }
    clock.step(format!("stopped AZ {az} (nodes {})", ids(&az_nodes)));
    let before: usize = runs.iter().map(DbRun::orders_acknowledged).sum();
    let started = Instant::now();
    parallel(&mut runs, |run| {
        run.run_orders(args.seed, sizes.az_down, &never, &never)
    });
    let during_az = runs.iter().map(DbRun::orders_acknowledged).sum::<usize>() - before;
    clock.step(format!(
        "order entry with {az} down: {during_az} orders acknowledged in {:.2}s (4 of 6 is a write quorum)",
        started.elapsed().as_secs_f64()
    ));
    checks.push(Check {
        passed: during_az as u64 == sizes.az_down * DATABASES.len() as u64,
        text: format!("with AZ {az} down, writes went on: {during_az} orders acknowledged"),
    });

    // Step: AZ + 1 down.
    let extra = config
        .nodes
        .iter()
        .find(|n| n.az != az)
        .map(|n| n.id)
        .context("a node outside the stopped AZ")?;
    cluster.stop_node(extra);
    clock.step(format!(
        "stopped node {extra} too: AZ+1 down, 3 of 6 segments left"
    ));
    let vdl_before = volume.stats().unwrap_or_default().vdl;
    // Nothing is being committed now: empty the writer's cache so the reads below go to
    // the three storage nodes left.
    volume.clear_cache();
    let (wait_check, read_check) = az_plus_one(
        &mut runs,
        &cluster,
        &page_volume,
        extra,
        args.seed,
        &sizes,
        &clock,
    )?;
    checks.push(read_check);
    checks.push(wait_check);
    println!("           (VDL was {vdl_before} when the commit started)");

    // Step: crash the writer mid-run, recover with the AZ still down.
    clock.step(format!(
        "order entry running; crashing the writer in {:.1}s (the SQL layer then logs the \
         failed reads and commits it sees as WARN lines: expected)",
        sizes.crash_after.as_secs_f64()
    ));
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let (crashing, stop, volume) = (&crashing, &stop, &volume);
        let handles: Vec<_> = runs
            .iter_mut()
            .map(|run| {
                scope.spawn(move || run.run_orders(args.seed, sizes.crash_run, crashing, stop))
            })
            .collect();
        std::thread::sleep(sizes.crash_after);
        crashing.store(true, Ordering::SeqCst);
        volume.crash_writer();
        stop.store(true, Ordering::SeqCst);
        for handle in handles {
            let _ = handle.join();
        }
    });
    let unknown: usize = runs.iter().map(|r| r.unknown.len()).sum();
    let acknowledged: usize = runs.iter().map(DbRun::orders_acknowledged).sum();
    clock.step(format!(
        "writer crashed: {acknowledged} orders acknowledged so far; {unknown} commits were \
         in flight (outcome unknown, never acknowledged)"
    ));
    let started = Instant::now();
    let stats = volume
        .recover()
        .context("recovering the writer with one AZ down")?;
    crashing.store(false, Ordering::SeqCst);
    clock.step(format!(
        "new writer recovered in {:.2}s with AZ {az} still down: epoch {} VDL {} \
         (truncated above VDL, X4)",
        started.elapsed().as_secs_f64(),
        stats.epoch,
        stats.vdl
    ));
    let (kept, dropped) = settle_unknown(&mut runs)?;
    clock.step(format!(
        "in-flight commits after recovery: {kept} kept whole, {dropped} gone whole \
         (either is allowed: none was acknowledged)"
    ));

    let started = Instant::now();
    parallel(&mut runs, |run| {
        run.run_orders(args.seed, sizes.after_recovery, &never, &never)
    });
    clock.step(format!(
        "order entry on the new writer: {} orders per database in {:.2}s",
        sizes.after_recovery,
        started.elapsed().as_secs_f64()
    ));

    // Step: the AZ comes back and catches up.
    for node in &az_nodes {
        cluster
            .start_node(*node)
            .with_context(|| format!("restarting node {node}"))?;
    }
    clock.step(format!("restarted AZ {az} (nodes {})", ids(&az_nodes)));
    let caught_up = wait_caught_up(&cluster, &volume, Duration::from_secs(20));
    let table = sixfold_cluster::status::collect(cluster.config()).render(cluster.config());
    clock.step(match caught_up {
        Some(waited) => format!(
            "every segment caught up (SCL = VCL) {:.2}s later, by re-sends and gossip:",
            waited.as_secs_f64()
        ),
        None => "segments did NOT all catch up within 20s:".to_string(),
    });
    for line in table.lines() {
        println!("           {line}");
    }
    checks.push(Check {
        passed: caught_up.is_some(),
        text: "the restarted nodes caught up: every segment's SCL reached the VCL".into(),
    });

    let failed: Vec<String> = runs.iter().flat_map(|r| r.failed.clone()).collect();
    checks.push(Check {
        passed: failed.is_empty(),
        text: if failed.is_empty() {
            "no transaction failed outside the writer crash".into()
        } else {
            format!("transactions failed: {}", failed.join("; "))
        },
    });

    // Step: a cold writer (second recovery) and the comparison with stock SQLite.
    for run in &mut runs {
        let conn = open_connection(page_volume.clone(), run.name)?;
        drop(std::mem::replace(&mut run.conn, conn));
    }
    let started = Instant::now();
    let stats = volume.recover().context("the second recovery")?;
    clock.step(format!(
        "writer restarted once more (empty cache) in {:.2}s: epoch {} VDL {}",
        started.elapsed().as_secs_f64(),
        stats.epoch,
        stats.vdl
    ));
    for run in &runs {
        checks.push(compare_with_oracle(run, oracle_dir)?);
    }
    clock.step("compared every database with stock SQLite fed the acknowledged transactions");
    drop(runs);
    drop(catalog);
    drop(page_volume);
    drop(volume);
    cluster.stop();
    clock.step("writer closed, nodes stopped");
    Ok(checks)
}

fn ids(nodes: &[NodeId]) -> String {
    nodes
        .iter()
        .map(|n| n.to_string())
        .collect::<Vec<_>>()
        .join(" and ")
}

fn parallel(runs: &mut [DbRun], work: impl Fn(&mut DbRun) + Sync) {
    std::thread::scope(|scope| {
        for run in runs.iter_mut() {
            let work = &work;
            scope.spawn(move || work(run));
        }
    });
}

/// With an AZ and one more node down: reads go on; a commit waits, unacknowledged,
/// until the extra node returns.
fn az_plus_one(
    runs: &mut [DbRun],
    cluster: &EmbeddedCluster,
    volume: &Arc<dyn PageVolume>,
    extra: NodeId,
    seed: u64,
    sizes: &Sizes,
    clock: &Clock,
) -> anyhow::Result<(Check, Check)> {
    let started = Instant::now();
    let mut answers = Vec::new();
    for run in runs.iter() {
        let reader = open_connection(volume.clone(), run.name)?;
        let (orders, amount): (i64, i64) = reader
            .query_row(
                "SELECT count(*), coalesce(sum(amount), 0) FROM orders",
                [],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .with_context(|| format!("reading {} with AZ+1 down", run.name))?;
        let expected = run.orders_acknowledged() as i64;
        answers.push((run.name, orders, amount, orders == expected));
    }
    let read_ok = answers.iter().all(|a| a.3);
    clock.step(format!(
        "reads with AZ+1 down, from storage (writer cache emptied), answered in {} ms: {}",
        started.elapsed().as_millis(),
        answers
            .iter()
            .map(|(name, orders, amount, _)| format!("{name} {orders} orders, {amount} total"))
            .collect::<Vec<_>>()
            .join("; ")
    ));
    let read_check = Check {
        passed: read_ok,
        text: "with AZ+1 down, reads went on and saw every acknowledged order".into(),
    };

    let run = &mut runs[0];
    let order = Order::new(seed, run.index, run.next_order);
    run.next_order += 1;
    let never = AtomicBool::new(false);
    let done = AtomicBool::new(false);
    let (waited_unacknowledged, acknowledged_after, outcome) = std::thread::scope(|scope| {
        let (sql, done_ref, never_ref) = (&order.sql, &done, &never);
        let conn_run = &mut *run;
        let handle = scope.spawn(move || {
            let outcome = conn_run.run(sql, never_ref);
            done_ref.store(true, Ordering::SeqCst);
            outcome
        });
        let commit_started = Instant::now();
        std::thread::sleep(sizes.waiting);
        let waited_unacknowledged = !done.load(Ordering::SeqCst);
        clock.step(format!(
            "a commit to {} has waited {:.1}s: {}",
            DATABASES[0],
            commit_started.elapsed().as_secs_f64(),
            if waited_unacknowledged {
                "not acknowledged (C4: 3 of 6 is no write quorum)"
            } else {
                "ACKNOWLEDGED (it should not be)"
            }
        ));
        let restarted = cluster.start_node(extra);
        clock.step(format!("restarted node {extra}: 4 of 6 segments again"));
        let outcome = handle.join();
        let after = commit_started.elapsed();
        (waited_unacknowledged, restarted.map(|()| after), outcome)
    });
    let acknowledged_after = acknowledged_after.context("restarting the extra node")?;
    let acknowledged = matches!(outcome, Ok(Outcome::Acknowledged));
    if acknowledged {
        run.acknowledged.push(order.sql.clone());
    } else {
        run.failed
            .push(format!("order {} (the waiting commit)", order.id));
    }
    clock.step(format!(
        "the waiting commit was acknowledged {:.2}s after it started, once node {extra} was back",
        acknowledged_after.as_secs_f64()
    ));
    let wait_check = Check {
        passed: waited_unacknowledged && acknowledged,
        text: format!(
            "with AZ+1 down a commit waited {:.1}s unacknowledged and was acknowledged only \
             after a node returned",
            sizes.waiting.as_secs_f64()
        ),
    };
    Ok((wait_check, read_check))
}

/// After recovery: an in-flight order is in the database whole or not at all. One that
/// is there counts as committed (the oracle runs it too).
fn settle_unknown(runs: &mut [DbRun]) -> anyhow::Result<(usize, usize)> {
    let (mut kept, mut dropped) = (0, 0);
    for run in runs.iter_mut() {
        for order in std::mem::take(&mut run.unknown) {
            let present: i64 = run
                .conn
                .query_row(
                    "SELECT count(*) FROM orders WHERE id = ?1",
                    [order.id as i64],
                    |row| row.get(0),
                )
                .with_context(|| format!("looking for order {} in {}", order.id, run.name))?;
            if present == 1 {
                kept += 1;
                run.acknowledged.push(order.sql);
            } else {
                dropped += 1;
            }
        }
    }
    Ok((kept, dropped))
}

/// Waits until every running node's segments have SCL ≥ the writer's VCL.
fn wait_caught_up(
    cluster: &EmbeddedCluster,
    volume: &ClusterVolume,
    timeout: Duration,
) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < timeout {
        let vcl = volume.stats().map(|s| s.vcl).unwrap_or_default();
        let status = sixfold_cluster::status::collect(cluster.config());
        let segments = status.segments();
        let pgs: std::collections::BTreeSet<_> = segments.keys().map(|s| s.pg).collect();
        let complete = !pgs.is_empty()
            && status.nodes.iter().all(|n| n.reply.is_ok())
            && segments.len() == pgs.len() * 6
            && segments.values().all(|(_, s)| s.scl >= vcl);
        if complete {
            return Some(started.elapsed());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    None
}

/// Every row of every table, rendered with its SQLite type.
fn dump(conn: &Connection) -> anyhow::Result<Vec<Vec<String>>> {
    let mut tables = Vec::new();
    let mut schema = conn.prepare("SELECT type, name, sql FROM sqlite_schema ORDER BY name")?;
    let rows: Vec<String> = schema
        .query_map([], |row| {
            Ok(format!(
                "{}|{}|{}",
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, Option<String>>(2)?.unwrap_or_default()
            ))
        })?
        .collect::<Result<_, _>>()?;
    tables.push(rows);
    for table in TABLES {
        let mut statement = conn.prepare(&format!("SELECT * FROM {table} ORDER BY id"))?;
        let columns = statement.column_count();
        let mut rows = statement.query([])?;
        let mut lines = Vec::new();
        while let Some(row) = rows.next()? {
            let mut line = Vec::with_capacity(columns);
            for index in 0..columns {
                line.push(format!("{:?}", row.get_ref(index)?));
            }
            lines.push(line.join("|"));
        }
        tables.push(lines);
    }
    Ok(tables)
}

fn compare_with_oracle(run: &DbRun, oracle_dir: &Path) -> anyhow::Result<Check> {
    let path = oracle_dir.join(format!("{}.sqlite", run.name));
    let oracle = Connection::open(&path)
        .with_context(|| format!("opening the oracle {}", path.display()))?;
    // The oracle's own durability does not matter: it only has to compute the same
    // state, and thousands of fsyncs would dominate the demo's time.
    oracle.execute_batch("PRAGMA synchronous = OFF; PRAGMA journal_mode = MEMORY;")?;
    for sql in &run.acknowledged {
        oracle
            .execute_batch(sql)
            .context("the oracle refused an acknowledged transaction")?;
    }
    let expected = dump(&oracle)?;
    let actual = dump(&run.conn).with_context(|| format!("dumping {}", run.name))?;
    let integrity: String = run
        .conn
        .query_row("PRAGMA integrity_check", [], |row| row.get(0))?;
    let rows: Vec<String> = TABLES
        .iter()
        .zip(&expected[1..])
        .map(|(table, rows)| format!("{table} {}", rows.len()))
        .collect();
    let passed = expected == actual && integrity == "ok";
    let mut text = format!(
        "{}: {} acknowledged transactions; full dump {} stock SQLite's ({}); integrity_check {integrity}",
        run.name,
        run.acknowledged.len(),
        if expected == actual {
            "equals"
        } else {
            "DIFFERS from"
        },
        rows.join(", "),
    );
    if expected != actual {
        let (table, first) = first_difference(&expected, &actual);
        text.push_str(&format!("; first difference in {table}: {first}"));
    }
    Ok(Check { passed, text })
}

fn first_difference(expected: &[Vec<String>], actual: &[Vec<String>]) -> (String, String) {
    let names: Vec<&str> = std::iter::once("sqlite_schema").chain(TABLES).collect();
    for (index, name) in names.iter().enumerate() {
        let (e, a) = (&expected[index], &actual[index]);
        if e != a {
            let at = e
                .iter()
                .zip(a)
                .position(|(x, y)| x != y)
                .unwrap_or(e.len().min(a.len()));
            return (
                (*name).to_string(),
                format!(
                    "row {at}: expected {:?}, found {:?} ({} vs {} rows)",
                    e.get(at),
                    a.get(at),
                    e.len(),
                    a.len()
                ),
            );
        }
    }
    ("none".into(), String::new())
}
