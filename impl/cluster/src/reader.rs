//! Read-only attach (R12): `db list`, `sql --readonly` and other readers that must never
//! fence the application. No recovery, no epoch raised, nothing written or truncated: the
//! reader asks every node for its status and reads at `F`, the highest VDL any segment or
//! heartbeat reports (durable, C3).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use sixfold_core::{Epoch, Lsn, NodeId, PAGE_BYTES, PageId, PgId, QuorumConfig, SegmentId};

use crate::config::ClusterConfig;
use crate::link::{Link, LinkEvents};
use crate::wire::{Message, SegmentStatus};

/// How long attaching waits for the nodes to connect and answer, in milliseconds.
pub const ATTACH_TIMEOUT_MS: u64 = 5_000;
/// One read attempt at one segment, in milliseconds.
pub const READER_ATTEMPT_TIMEOUT_MS: u64 = 1_000;

#[derive(Debug, thiserror::Error)]
pub enum ReaderError {
    /// I2: a node is not what this config says.
    #[error("refused: {0}")]
    Identity(String),
    #[error(
        "pg{pg}: only {have} segments answered; a read-only attach needs a read quorum of {need} (R12)"
    )]
    NoReadQuorum { pg: u32, have: usize, need: usize },
    #[error(
        "no segment of pg{pg} served {page} at read point {read_point}: the writer may have moved \
         on or a recovery may be running; attach again (R12)"
    )]
    ReadFailed {
        pg: u32,
        page: PageId,
        read_point: Lsn,
    },
}

/// Where a PG can be read at the attach's read point.
#[derive(Clone, Debug)]
struct PgRead {
    /// R12: min(F, the highest SCL among the PG's answering segments).
    pg_lsn: Lsn,
    /// Segments whose SCL covers `pg_lsn`.
    candidates: Vec<SegmentId>,
}

/// A read-only view of the volume at one durable point (R12).
pub struct Reader {
    config: ClusterConfig,
    links: BTreeMap<NodeId, Arc<Link>>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    epoch: Epoch,
    read_point: Lsn,
    pgs: BTreeMap<PgId, PgRead>,
}

struct Quiet;

impl LinkEvents for Quiet {
    fn unsolicited(&self, node: NodeId, message: Message) {
        tracing::debug!(
            node = node.0,
            id = message.request_id(),
            "late reply dropped"
        );
    }
    fn connected(&self, _: NodeId) {}
}

impl Reader {
    /// R12: connects and reads every node's status; raises no epoch.
    pub fn attach(config: ClusterConfig) -> Result<Reader, ReaderError> {
        let links: BTreeMap<NodeId, Arc<Link>> = config
            .nodes
            .iter()
            .map(|n| (n.id, Link::new(n.id, n.addr)))
            .collect();
        let stop = Arc::new(AtomicBool::new(false));
        let events: Arc<dyn LinkEvents> = Arc::new(Quiet);
        let threads = links
            .values()
            .map(|link| {
                let (link, config, events, stop) =
                    (link.clone(), config.clone(), events.clone(), stop.clone());
                std::thread::Builder::new()
                    .name(format!("reader-link{}", link.node.0))
                    .spawn(move || link.run(config, events, stop))
                    .expect("spawn link thread")
            })
            .collect();
        let mut reader = Reader {
            config,
            links,
            stop,
            threads,
            epoch: Epoch(0),
            read_point: Lsn::ZERO,
            pgs: BTreeMap::new(),
        };
        reader.survey()?;
        Ok(reader)
    }

    fn survey(&mut self) -> Result<(), ReaderError> {
        let started = Instant::now();
        let timeout = Duration::from_millis(ATTACH_TIMEOUT_MS);
        while started.elapsed() < timeout
            && self
                .links
                .values()
                .any(|l| !l.is_connected() && l.refusal().is_none())
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        if let Some(refusal) = self.links.values().find_map(|l| l.refusal()) {
            return Err(ReaderError::Identity(refusal));
        }
        let mut statuses: Vec<(NodeId, SegmentStatus)> = Vec::new();
        // S20: each answering node, and whether a segment it lacks may be one it lost.
        let mut answering: BTreeMap<NodeId, bool> = BTreeMap::new();
        let mut read_point = Lsn::ZERO;
        let mut epoch = Epoch(0);
        for (&node, link) in &self.links {
            let reply = link.request(
                |request_id| Message::Status { request_id },
                Duration::from_millis(READER_ATTEMPT_TIMEOUT_MS),
            );
            if let Ok(Message::StatusReply {
                epoch: node_epoch,
                writer,
                segments,
                absent_may_be_lost,
                ..
            }) = reply
            {
                answering.insert(node, absent_may_be_lost);
                epoch = epoch.max(node_epoch);
                if let Some(info) = writer {
                    read_point = read_point.max(info.vdl);
                }
                for status in segments {
                    read_point = read_point.max(status.vdl_hint);
                    statuses.push((node, status));
                }
            }
        }
        self.epoch = epoch;
        self.read_point = read_point;
        self.pgs = plan_reads(&self.config, &answering, &statuses, read_point)?;
        tracing::info!(
            epoch = epoch.0,
            read_point = read_point.0,
            "attached read-only (R12)"
        );
        Ok(())
    }

    /// R12: the durable point this reader reads at.
    pub fn read_point(&self) -> Lsn {
        self.read_point
    }

    /// R12: `page` as of the attach's read point; `None` if it had never been written.
    pub fn read_page(&self, page: PageId) -> Result<Option<Vec<u8>>, ReaderError> {
        let pg = self.config.geometry().pg_of(page);
        let Some(plan) = self.pgs.get(&pg) else {
            return Ok(None); // No segment of this PG exists: never written.
        };
        for &segment in &plan.candidates {
            let Some(link) = self
                .config
                .node_of(segment)
                .and_then(|n| self.links.get(&n))
            else {
                continue;
            };
            let reply = link.request(
                |request_id| Message::GetPage {
                    request_id,
                    segment,
                    epoch: self.epoch,
                    read_point: self.read_point,
                    pg_lsn: plan.pg_lsn,
                    page,
                },
                Duration::from_millis(READER_ATTEMPT_TIMEOUT_MS),
            );
            match reply {
                Ok(Message::Page { bytes, .. })
                    if bytes.as_ref().is_none_or(|b| b.len() == PAGE_BYTES) =>
                {
                    return Ok(bytes);
                }
                Ok(other) => tracing::debug!(%segment, id = other.request_id(), "read refused"),
                Err(error) => tracing::debug!(%segment, %error, "read failed"),
            }
        }
        Err(ReaderError::ReadFailed {
            pg: pg.0,
            page,
            read_point: self.read_point,
        })
    }

    pub fn close(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// R12, X11: per PG with any answering segment, `pg_lsn` = min(F, highest SCL) over at
/// least a read quorum of answering segments placed where the config says, and the segments
/// whose SCL covers it. Every record ≤ F reached a write quorum, which meets any read quorum
/// (Q2), so the highest SCL covers the PG's last record ≤ F. A repairing segment, or a
/// segment absent from a node that may have lost it (S20), is not one of that read quorum;
/// its SCL still counts (it holds every record up to it).
fn plan_reads(
    config: &ClusterConfig,
    answering: &BTreeMap<NodeId, bool>,
    statuses: &[(NodeId, SegmentStatus)],
    read_point: Lsn,
) -> Result<BTreeMap<PgId, PgRead>, ReaderError> {
    let mut by_pg: BTreeMap<PgId, Vec<(SegmentId, Lsn)>> = BTreeMap::new();
    let mut repairing: BTreeSet<SegmentId> = BTreeSet::new();
    for (node, status) in statuses {
        if config.node_of(status.segment) == Some(*node) {
            by_pg
                .entry(status.segment.pg)
                .or_default()
                .push((status.segment, status.scl));
            if status.repairing {
                repairing.insert(status.segment);
            }
        }
    }
    let need = QuorumConfig::AURORA.read_quorum();
    let mut plans = BTreeMap::new();
    for (pg, segments) in by_pg {
        // A placed node that answered without the segment holds nothing of the PG (V2),
        // unless it may have lost it (S20); a repairing segment is no answer (X11).
        let answered = config
            .placement(pg)
            .iter()
            .enumerate()
            .filter(|(replica, node)| {
                let segment = SegmentId {
                    pg,
                    replica: *replica as u8,
                };
                let Some(&absent_may_be_lost) = answering.get(node) else {
                    return false;
                };
                let hosted = segments.iter().any(|(s, _)| *s == segment);
                !repairing.contains(&segment) && (hosted || !absent_may_be_lost)
            })
            .count();
        if answered < need {
            return Err(ReaderError::NoReadQuorum {
                pg: pg.0,
                have: answered,
                need,
            });
        }
        let highest = segments
            .iter()
            .map(|(_, scl)| *scl)
            .max()
            .unwrap_or(Lsn::ZERO);
        let pg_lsn = highest.min(read_point);
        let mut candidates: Vec<(SegmentId, Lsn)> = segments
            .into_iter()
            .filter(|(_, scl)| *scl >= pg_lsn)
            .collect();
        candidates.sort_by_key(|(_, scl)| std::cmp::Reverse(*scl));
        let candidates = candidates.into_iter().map(|(s, _)| s).collect();
        plans.insert(pg, PgRead { pg_lsn, candidates });
    }
    Ok(plans)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::six_node_toml;

    fn config() -> ClusterConfig {
        let text = six_node_toml("t", "secret-secret", 1024, &[1, 2, 3, 4, 5, 6]);
        ClusterConfig::parse(&text, std::path::Path::new("/tmp")).unwrap()
    }

    fn status(segment: SegmentId, scl: u64) -> SegmentStatus {
        SegmentStatus {
            segment,
            epoch: Epoch(2),
            scl: Lsn(scl),
            vdl_hint: Lsn(0),
            max_held: Lsn(scl),
            records: 1,
            problem: String::new(),
            repairing: false,
        }
    }

    fn answering(statuses: &[(NodeId, SegmentStatus)], late: bool) -> BTreeMap<NodeId, bool> {
        statuses.iter().map(|(node, _)| (*node, late)).collect()
    }

    #[test]
    fn read_plan_takes_the_highest_scl_capped_at_the_read_point() {
        // R12: pg_lsn = min(F, highest SCL); fewer than Vr answering placed nodes refuse.
        let config = config();
        let pg = PgId(0);
        let placed = config.placement(pg);
        let statuses: Vec<(NodeId, SegmentStatus)> = [5u64, 9, 7]
            .iter()
            .enumerate()
            .map(|(r, scl)| {
                let segment = SegmentId {
                    pg,
                    replica: r as u8,
                };
                (placed[r], status(segment, *scl))
            })
            .collect();
        let nodes = answering(&statuses, false);
        let plans = plan_reads(&config, &nodes, &statuses, Lsn(8)).unwrap();
        assert_eq!(plans[&pg].pg_lsn, Lsn(8));
        assert_eq!(
            plans[&pg].candidates.len(),
            1,
            "only the SCL-9 segment covers 8"
        );
        let plans = plan_reads(&config, &nodes, &statuses, Lsn(20)).unwrap();
        assert_eq!(plans[&pg].pg_lsn, Lsn(9));
        let two = &statuses[..2];
        assert!(matches!(
            plan_reads(&config, &answering(two, false), two, Lsn(8)),
            Err(ReaderError::NoReadQuorum { have: 2, .. })
        ));
    }

    #[test]
    fn repairing_segments_and_late_nodes_are_not_a_read_quorum() {
        // X11, S20, R12: the rebuilt segment and a late node without the segment do not
        // make up the read quorum a stale read would need.
        let config = config();
        let pg = PgId(0);
        let placed = config.placement(pg);
        let mut statuses: Vec<(NodeId, SegmentStatus)> = [5u64, 9, 7]
            .iter()
            .enumerate()
            .map(|(r, scl)| {
                let segment = SegmentId {
                    pg,
                    replica: r as u8,
                };
                (placed[r], status(segment, *scl))
            })
            .collect();
        statuses[2].1.repairing = true;
        let mut nodes = answering(&statuses, false);
        assert!(matches!(
            plan_reads(&config, &nodes, &statuses, Lsn(8)),
            Err(ReaderError::NoReadQuorum { have: 2, .. })
        ));
        nodes.insert(placed[3], true);
        assert!(matches!(
            plan_reads(&config, &nodes, &statuses, Lsn(8)),
            Err(ReaderError::NoReadQuorum { have: 2, .. })
        ));
        nodes.insert(placed[4], false);
        let plans = plan_reads(&config, &nodes, &statuses, Lsn(8)).unwrap();
        assert_eq!(
            plans[&pg].pg_lsn,
            Lsn(8),
            "the repairing segment's SCL still counts"
        );
    }
}
