//! The page workload of `sixfold load`: clients run random multi-page MTRs in several
//! databases, then every acknowledged commit is re-read and verified (C4: nothing
//! acknowledged is lost).
//!
//! Each client owns the pages whose slot it draws (disjoint from other clients), so a
//! page's history is one client's sequence of transactions and the client's model of the
//! page is exact. A page's first 16 bytes hold the id of the transaction that last wrote
//! it, the client and the page number; ids grow per client. A commit whose outcome is
//! unknown (timeout) marks its pages as "either version" and they are not written again.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sixfold_core::{DbId, PAGE_BYTES, PageId};

use crate::writer::{Transaction, Writer, WriterError};

/// Page slots each client draws from, per database.
pub const SLOTS_PER_CLIENT: u32 = 32;
/// Pages one transaction changes, at most.
pub const TXN_PAGES_MAX: usize = 4;
/// Bytes of the page header the workload writes (txn id, client, page number).
pub const HEADER_BYTES: usize = 16;
/// Longest random edit, in bytes.
pub const EDIT_BYTES_MAX: usize = 64;

#[derive(Clone, Debug)]
pub struct LoadOptions {
    pub txns: u64,
    pub clients: usize,
    pub seed: u64,
    pub databases: Vec<String>,
    /// A journal of submitted and acknowledged transactions, flushed per line, for a
    /// later [`verify_journal`] by another process.
    pub journal: Option<PathBuf>,
    /// Pages per PG, to spread slots over several PGs (V2).
    pub pg_pages: u32,
}

#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LoadReport {
    pub acknowledged: u64,
    pub verified: u64,
    pub lost: u64,
    /// Commits whose outcome stayed unknown (timeouts); not counted as acknowledged.
    pub unknown: u64,
    pub seconds: f64,
}

impl std::fmt::Display for LoadReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "acknowledged={} verified={} lost={} seconds={:.2}",
            self.acknowledged, self.verified, self.lost, self.seconds
        )
    }
}

struct PageModel {
    /// The page after its last acknowledged transaction (zeros: never acknowledged).
    acked: Vec<u8>,
    /// A later version whose commit outcome is unknown.
    unknown: Option<Vec<u8>>,
}

struct ClientResult {
    acknowledged: Vec<(u64, Vec<PageId>)>,
    pages: HashMap<PageId, PageModel>,
    unknown: u64,
}

/// The page number of `slot` for `client`: slots spread over four PGs (V2), clients never
/// share a page.
fn page_no(slot: u32, client: usize, clients: usize, pg_pages: u32) -> u32 {
    let stride = (clients as u32)
        .max(pg_pages.saturating_mul(4) / SLOTS_PER_CLIENT)
        .max(1);
    slot * stride + client as u32
}

/// Runs the workload, verifies, and reports. `progress` is told each finished commit.
pub fn run_load(
    writer: &Writer,
    options: &LoadOptions,
    progress: &(dyn Fn() + Sync),
) -> Result<LoadReport, WriterError> {
    let started = Instant::now();
    let mut databases = Vec::new();
    for name in &options.databases {
        databases.push(writer.database_id(name)?);
    }
    let journal = match &options.journal {
        Some(path) => Some(Mutex::new(File::create(path).map_err(|e| {
            WriterError::BadTransaction(format!("journal {}: {e}", path.display()))
        })?)),
        None => None,
    };
    let next_txn = AtomicU64::new(0);
    let clients = options.clients.max(1);
    let results: Vec<Result<ClientResult, WriterError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..clients)
            .map(|client| {
                let (databases, journal, next_txn) = (&databases, &journal, &next_txn);
                scope.spawn(move || {
                    run_client(
                        writer,
                        options,
                        client,
                        databases,
                        journal.as_ref(),
                        next_txn,
                        progress,
                    )
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or(Err(WriterError::Closed)))
            .collect()
    });
    let mut report = LoadReport::default();
    for result in results {
        let result = result?;
        report.unknown += result.unknown;
        report.acknowledged += result.acknowledged.len() as u64;
        let verified = verify_client(writer, &result)?;
        report.verified += verified;
    }
    report.lost = report.acknowledged - report.verified;
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

fn run_client(
    writer: &Writer,
    options: &LoadOptions,
    client: usize,
    databases: &[DbId],
    journal: Option<&Mutex<File>>,
    next_txn: &AtomicU64,
    progress: &(dyn Fn() + Sync),
) -> Result<ClientResult, WriterError> {
    let mut rng =
        StdRng::seed_from_u64(options.seed ^ (client as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let mut result = ClientResult {
        acknowledged: Vec::new(),
        pages: HashMap::new(),
        unknown: 0,
    };
    let clients = options.clients.max(1);
    let mut serial: u64 = 0;
    while next_txn.fetch_add(1, Ordering::SeqCst) < options.txns {
        serial += 1;
        let txn_id = serial * clients as u64 + client as u64;
        let count = rng.gen_range(1..=TXN_PAGES_MAX);
        let mut pages: Vec<PageId> = Vec::new();
        for _ in 0..count * 4 {
            if pages.len() == count {
                break;
            }
            let db = databases[rng.gen_range(0..databases.len())];
            let slot = rng.gen_range(0..SLOTS_PER_CLIENT);
            let page = PageId {
                db,
                page_no: page_no(slot, client, clients, options.pg_pages),
            };
            let poisoned = result.pages.get(&page).is_some_and(|m| m.unknown.is_some());
            if !pages.contains(&page) && !poisoned {
                pages.push(page);
            }
        }
        if pages.is_empty() {
            continue;
        }
        let mut txn = Transaction::default();
        let mut images = Vec::new();
        for &page in &pages {
            if let std::collections::hash_map::Entry::Vacant(entry) = result.pages.entry(page) {
                // A page of an earlier run starts from what the volume holds.
                let current = writer.read(page)?.unwrap_or_else(|| vec![0u8; PAGE_BYTES]);
                entry.insert(PageModel {
                    acked: current,
                    unknown: None,
                });
            }
            let mut image = result
                .pages
                .get(&page)
                .map_or_else(|| vec![0u8; PAGE_BYTES], |m| m.acked.clone());
            let mut header = [0u8; HEADER_BYTES];
            header[0..8].copy_from_slice(&txn_id.to_le_bytes());
            header[8..12].copy_from_slice(&(client as u32).to_le_bytes());
            header[12..16].copy_from_slice(&page.page_no.to_le_bytes());
            txn.write(page, 0, &header);
            image[..HEADER_BYTES].copy_from_slice(&header);
            let len = rng.gen_range(1..=EDIT_BYTES_MAX);
            let offset = rng.gen_range(HEADER_BYTES..PAGE_BYTES - len);
            let bytes: Vec<u8> = (0..len).map(|_| rng.r#gen()).collect();
            txn.write(page, offset as u16, &bytes);
            image[offset..offset + len].copy_from_slice(&bytes);
            images.push((page, image));
        }
        journal_line(journal, &format!("S {txn_id} {}", pages_text(&pages)));
        match writer.commit(txn) {
            Ok(_) => {
                journal_line(journal, &format!("A {txn_id}"));
                for (page, image) in images {
                    result.pages.insert(
                        page,
                        PageModel {
                            acked: image,
                            unknown: None,
                        },
                    );
                }
                result.acknowledged.push((txn_id, pages));
            }
            Err(error @ WriterError::Fenced { .. }) => return Err(error),
            Err(error) => {
                tracing::warn!(txn_id, %error, "commit outcome unknown");
                result.unknown += 1;
                for (page, image) in images {
                    let model = result.pages.entry(page).or_insert_with(|| PageModel {
                        acked: vec![0u8; PAGE_BYTES],
                        unknown: None,
                    });
                    model.unknown = Some(image);
                }
            }
        }
        progress();
    }
    Ok(result)
}

fn pages_text(pages: &[PageId]) -> String {
    pages
        .iter()
        .map(|p| format!("{}:{}", p.db.0, p.page_no))
        .collect::<Vec<_>>()
        .join(" ")
}

fn journal_line(journal: Option<&Mutex<File>>, line: &str) {
    if let Some(journal) = journal {
        let mut file = journal.lock().unwrap_or_else(|p| p.into_inner());
        // Flushed per line: a SIGKILLed process leaves every line it wrote.
        let _ = writeln!(file, "{line}").and_then(|_| file.flush());
    }
}

/// Re-reads the client's pages; a transaction is verified when each of its pages reads as
/// the client's model (or a later version of unknown outcome).
fn verify_client(writer: &Writer, result: &ClientResult) -> Result<u64, WriterError> {
    let mut page_ok: HashMap<PageId, bool> = HashMap::new();
    for (&page, model) in &result.pages {
        let read = writer.read(page)?.unwrap_or_else(|| vec![0u8; PAGE_BYTES]);
        let ok = read == model.acked || model.unknown.as_ref() == Some(&read);
        if !ok {
            tracing::error!(%page, "page does not match its acknowledged version");
        }
        page_ok.insert(page, ok);
    }
    Ok(result
        .acknowledged
        .iter()
        .filter(|(_, pages)| {
            pages
                .iter()
                .all(|p| page_ok.get(p).copied().unwrap_or(false))
        })
        .count() as u64)
}

/// What [`verify_journal`] found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct JournalCheck {
    pub acknowledged: u64,
    pub verified: u64,
    /// Transactions seen on some of their pages but not on all (L2 broken).
    pub partial_mtrs: u64,
}

/// After a crash of the process that wrote `journal`: every acknowledged transaction is
/// present (each of its pages holds it or a later transaction of the same client, C4),
/// and every transaction found on any page is found on all of its pages (no partial MTR,
/// X4).
pub fn verify_journal(writer: &Writer, journal: &Path) -> Result<JournalCheck, WriterError> {
    let file = File::open(journal)
        .map_err(|e| WriterError::BadTransaction(format!("journal {}: {e}", journal.display())))?;
    let mut submitted: BTreeMap<u64, Vec<PageId>> = BTreeMap::new();
    let mut acknowledged = Vec::new();
    for line in BufReader::new(file).lines() {
        let Ok(line) = line else { break };
        let mut words = line.split_whitespace();
        match (
            words.next(),
            words.next().and_then(|w| w.parse::<u64>().ok()),
        ) {
            (Some("S"), Some(txn)) => {
                let pages = words
                    .filter_map(|w| {
                        let (db, page_no) = w.split_once(':')?;
                        Some(PageId::new(db.parse().ok()?, page_no.parse().ok()?))
                    })
                    .collect();
                submitted.insert(txn, pages);
            }
            (Some("A"), Some(txn)) => acknowledged.push(txn),
            _ => {} // a torn last line
        }
    }
    let mut header_of: HashMap<PageId, u64> = HashMap::new();
    for pages in submitted.values() {
        for &page in pages {
            if let std::collections::hash_map::Entry::Vacant(entry) = header_of.entry(page) {
                let bytes = writer.read(page)?.unwrap_or_else(|| vec![0u8; PAGE_BYTES]);
                entry.insert(u64::from_le_bytes(bytes[0..8].try_into().expect("8")));
            }
        }
    }
    let mut check = JournalCheck {
        acknowledged: acknowledged.len() as u64,
        ..JournalCheck::default()
    };
    for txn in &acknowledged {
        let pages = submitted.get(txn).map(Vec::as_slice).unwrap_or(&[]);
        if pages
            .iter()
            .all(|p| header_of.get(p).is_some_and(|&h| h >= *txn))
        {
            check.verified += 1;
        }
    }
    let seen: std::collections::BTreeSet<u64> =
        header_of.values().copied().filter(|&t| t > 0).collect();
    for txn in seen {
        let pages = submitted.get(&txn).map(Vec::as_slice).unwrap_or(&[]);
        if !pages
            .iter()
            .all(|p| header_of.get(p).is_some_and(|&h| h >= txn))
        {
            check.partial_mtrs += 1;
        }
    }
    Ok(check)
}
