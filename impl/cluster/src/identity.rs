//! Identity and geometry (I1–I4): what a node records in its data folder, what both ends of
//! a connection tell each other right after the handshake, and the checks that refuse a
//! mismatch before anything is written, gossiped or read.
//!
//! Placement is computed from the config (Q3, Q6), so an edited config silently moves
//! segments: a node would answer for a replica it does not hold, and recovery would count
//! it as empty and truncate acknowledged data. These checks turn every such edit into an
//! error that names both values and how to undo it. Moving segments on purpose is a
//! membership change (M1–M3), which these checks leave to its own protocol.
//!
//! The record (`identity` in the data folder), little-endian: magic `"SIXI"` u32, version
//! u8, 3 zero bytes, node id u32, `pg_pages` u32, volume id 16 bytes, cluster id (u16
//! length, UTF-8), CRC32C of everything before, u32. It is written once, atomically
//! (temp file, fsync, rename, directory fsync), and never rewritten. The segments a node
//! holds are recorded by the engine: one folder per segment with its CRC-checked `meta`.

use std::fmt;
use std::path::{Path, PathBuf};

use sixfold_core::{NodeId, SegmentId};
use sixfold_storage::{StdDisk, StorageError, meta};

use crate::config::{CLUSTER_ID_BYTES_MAX, ClusterConfig};
use crate::session::CLIENT_NODE_ID;

/// Bytes of a volume id: 128 random bits.
pub const VOLUME_ID_BYTES: usize = 16;
/// File name of the identity record in a node's data folder.
pub const IDENTITY_FILE: &str = "identity";
const IDENTITY_MAGIC: u32 = u32::from_le_bytes(*b"SIXI");
const IDENTITY_VERSION: u8 = 1;
const IDENTITY_FIXED_BYTES: usize = 4 + 4 + 4 + 4 + VOLUME_ID_BYTES + 2;
/// The largest identity record read from disk, in bytes.
pub const IDENTITY_BYTES_MAX: u64 = (IDENTITY_FIXED_BYTES + CLUSTER_ID_BYTES_MAX + 4) as u64;

/// I1: the id of one volume, chosen at random when its config is written.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VolumeId(pub [u8; VOLUME_ID_BYTES]);

impl VolumeId {
    pub fn random() -> VolumeId {
        VolumeId(rand::random())
    }

    /// Parses 32 hexadecimal digits.
    pub fn parse(text: &str) -> Result<VolumeId, String> {
        if text.len() != 2 * VOLUME_ID_BYTES || !text.is_ascii() {
            return Err(format!(
                "must be {} hexadecimal digits",
                2 * VOLUME_ID_BYTES
            ));
        }
        let mut bytes = [0u8; VOLUME_ID_BYTES];
        for (i, byte) in bytes.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16)
                .map_err(|_| format!("{:?} is not hexadecimal", &text[2 * i..2 * i + 2]))?;
        }
        Ok(VolumeId(bytes))
    }
}

impl fmt::Display for VolumeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in self.0 {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for VolumeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VolumeId({self})")
    }
}

/// I2: what one end of a connection says it is, right after the handshake.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub cluster_id: String,
    pub volume_id: VolumeId,
    pub pg_pages: u32,
    /// The sender's node id; 0 for a writer or tool.
    pub node_id: u32,
    /// The segments the sender holds (a node's hosted segments; none for a client).
    pub segments: Vec<SegmentId>,
}

impl Identity {
    /// A writer's or tool's identity under `config`: it holds no segment.
    pub fn client(config: &ClusterConfig) -> Identity {
        Identity {
            cluster_id: config.cluster_id.clone(),
            volume_id: config.volume_id,
            pg_pages: config.pg_pages,
            node_id: CLIENT_NODE_ID,
            segments: Vec::new(),
        }
    }

    /// Node `node`'s identity under `config`, holding `segments`.
    pub fn node(config: &ClusterConfig, node: NodeId, segments: Vec<SegmentId>) -> Identity {
        Identity {
            node_id: node.0,
            segments,
            ..Identity::client(config)
        }
    }
}

/// How an end of a connection is named in an error: "node 3" or "the writer".
pub fn describe(node_id: u32) -> String {
    if node_id == CLIENT_NODE_ID {
        "the writer (or tool)".into()
    } else {
        format!("node {node_id}")
    }
}

/// I2, I3: a peer's identity disagrees with this side's config. Each names both values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    #[error("{peer} is of cluster {theirs:?}, {local}'s config says cluster {ours:?} (I2)")]
    ClusterId {
        peer: String,
        local: String,
        theirs: String,
        ours: String,
    },
    #[error(
        "{peer} belongs to volume {theirs}, {local}'s config says volume {ours}: the config \
         or the data folder is another volume's (I2)"
    )]
    VolumeId {
        peer: String,
        local: String,
        theirs: VolumeId,
        ours: VolumeId,
    },
    #[error(
        "{peer} has pg_pages={theirs}, {local}'s config says {ours}: a volume's pg_pages never \
         changes; put pg_pages = {theirs} back (I2)"
    )]
    PgPages {
        peer: String,
        local: String,
        theirs: u32,
        ours: u32,
    },
    #[error(
        "the peer identified as node {found}, but {local} expected node {expected} (the node \
         its config puts at that address, or the id the peer authenticated as) (I2)"
    )]
    NodeId {
        local: String,
        found: u32,
        expected: u32,
    },
    #[error(
        "{peer} holds segment {segment}, but {local}'s config places {segment} on {placed}: \
         the config's [[node]] entries changed; restore them (ids, AZ names, data folders) or \
         move segments with a membership change (I2, I3)"
    )]
    Misplaced {
        peer: String,
        local: String,
        segment: SegmentId,
        placed: String,
    },
}

/// I2: checks a peer's `identity` against this side's `config`. `local` names this side in
/// errors ("this writer", "node 2"); `expected_node` is the node id this side dialled, or
/// `None` when the peer dialled in (its node id then came with its authenticated Auth).
pub fn check_peer(
    config: &ClusterConfig,
    local: &str,
    identity: &Identity,
    expected_node: Option<u32>,
) -> Result<(), IdentityError> {
    let peer = describe(identity.node_id);
    if identity.cluster_id != config.cluster_id {
        return Err(IdentityError::ClusterId {
            peer,
            local: local.into(),
            theirs: identity.cluster_id.clone(),
            ours: config.cluster_id.clone(),
        });
    }
    if identity.volume_id != config.volume_id {
        return Err(IdentityError::VolumeId {
            peer,
            local: local.into(),
            theirs: identity.volume_id,
            ours: config.volume_id,
        });
    }
    if identity.pg_pages != config.pg_pages {
        return Err(IdentityError::PgPages {
            peer,
            local: local.into(),
            theirs: identity.pg_pages,
            ours: config.pg_pages,
        });
    }
    if let Some(expected) = expected_node
        && expected != identity.node_id
    {
        return Err(IdentityError::NodeId {
            local: local.into(),
            found: identity.node_id,
            expected,
        });
    }
    for &segment in &identity.segments {
        let placed = config.node_of(segment);
        if placed != Some(NodeId(identity.node_id)) {
            return Err(IdentityError::Misplaced {
                peer,
                local: local.into(),
                segment,
                placed: placed.map_or("no node".into(), |n| describe(n.0)),
            });
        }
    }
    Ok(())
}

/// I1: what a node's data folder records of the volume it belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdentityRecord {
    pub cluster_id: String,
    pub volume_id: VolumeId,
    pub pg_pages: u32,
    pub node_id: u32,
}

impl IdentityRecord {
    pub fn of(config: &ClusterConfig, node: NodeId) -> IdentityRecord {
        IdentityRecord {
            cluster_id: config.cluster_id.clone(),
            volume_id: config.volume_id,
            pg_pages: config.pg_pages,
            node_id: node.0,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        assert!(
            self.cluster_id.len() <= CLUSTER_ID_BYTES_MAX,
            "cluster id bounded by the config check"
        );
        let mut out = Vec::with_capacity(IDENTITY_FIXED_BYTES + self.cluster_id.len() + 4);
        out.extend_from_slice(&IDENTITY_MAGIC.to_le_bytes());
        out.extend_from_slice(&[IDENTITY_VERSION, 0, 0, 0]);
        out.extend_from_slice(&self.node_id.to_le_bytes());
        out.extend_from_slice(&self.pg_pages.to_le_bytes());
        out.extend_from_slice(&self.volume_id.0);
        out.extend_from_slice(&(self.cluster_id.len() as u16).to_le_bytes());
        out.extend_from_slice(self.cluster_id.as_bytes());
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        debug_assert_eq!(IdentityRecord::decode(&out).as_ref(), Ok(self));
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<IdentityRecord, &'static str> {
        if bytes.len() < IDENTITY_FIXED_BYTES + 4 {
            return Err("identity record too short");
        }
        let (body, crc) = bytes.split_at(bytes.len() - 4);
        if crc32c::crc32c(body) != u32::from_le_bytes(crc.try_into().map_err(|_| "crc")?) {
            return Err("identity record CRC32C mismatch");
        }
        let u32_at = |at: usize| u32::from_le_bytes(body[at..at + 4].try_into().expect("4"));
        if u32_at(0) != IDENTITY_MAGIC {
            return Err("bad identity magic");
        }
        if u32_at(4) != u32::from(IDENTITY_VERSION) {
            return Err("unsupported identity record version");
        }
        let node_id = u32_at(8);
        let pg_pages = u32_at(12);
        let volume_id = VolumeId(body[16..32].try_into().expect("16"));
        let length = u16::from_le_bytes(body[32..34].try_into().expect("2")) as usize;
        if length > CLUSTER_ID_BYTES_MAX || body.len() != IDENTITY_FIXED_BYTES + length {
            return Err("identity record length does not match its cluster id");
        }
        let cluster_id = std::str::from_utf8(&body[IDENTITY_FIXED_BYTES..])
            .map_err(|_| "cluster id is not UTF-8")?
            .to_string();
        Ok(IdentityRecord {
            cluster_id,
            volume_id,
            pg_pages,
            node_id,
        })
    }
}

/// I1, I4: a node's data folder disagrees with its config, or cannot be checked.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error(
        "data folder {dir} records {field} = {recorded}, but the config says {configured}: \
         {fix} (I1)"
    )]
    Mismatch {
        dir: PathBuf,
        field: &'static str,
        recorded: String,
        configured: String,
        fix: &'static str,
    },
    #[error(
        "data folder {dir} holds segment {segment}, but the config places {segment} on {placed} \
         (and {here} on node {node}): the config's [[node]] entries changed since this data \
         was written; restore them (ids, AZ names, data folders) or move segments with a \
         membership change (I1, I3)"
    )]
    Misplaced {
        dir: PathBuf,
        node: u32,
        segment: SegmentId,
        placed: String,
        here: String,
    },
    #[error(
        "data folder {dir} holds data but no identity record (it was written before identity \
         checks): check that the config is the one this data was written with, then start \
         this node once with --adopt-identity to record it (I4)"
    )]
    Unrecorded { dir: PathBuf },
    #[error("identity record {path} is damaged: {reason}")]
    Damaged { path: PathBuf, reason: String },
    #[error(transparent)]
    Disk(#[from] StorageError),
}

/// Reads `dir/identity`; `Ok(None)` when there is none.
pub fn read_record(dir: &Path) -> Result<Option<IdentityRecord>, RecordError> {
    let path = dir.join(IDENTITY_FILE);
    let Some(bytes) = meta::read_optional(&StdDisk, &path, IDENTITY_BYTES_MAX)? else {
        return Ok(None);
    };
    IdentityRecord::decode(&bytes)
        .map(Some)
        .map_err(|reason| RecordError::Damaged {
            path,
            reason: reason.into(),
        })
}

/// I1: writes `dir/identity` once, atomically and durably.
pub fn write_record(dir: &Path, record: &IdentityRecord) -> Result<(), RecordError> {
    Ok(meta::write_atomic(
        &StdDisk,
        dir,
        IDENTITY_FILE,
        &record.encode(),
    )?)
}

/// I1: the recorded identity must be the config's for `node`, field by field.
pub fn check_record(
    dir: &Path,
    recorded: &IdentityRecord,
    config: &ClusterConfig,
    node: NodeId,
) -> Result<(), RecordError> {
    let expected = IdentityRecord::of(config, node);
    let mismatch = |field, recorded: String, configured: String, fix| {
        Err(RecordError::Mismatch {
            dir: dir.to_path_buf(),
            field,
            recorded,
            configured,
            fix,
        })
    };
    if recorded.node_id != expected.node_id {
        return mismatch(
            "node id",
            recorded.node_id.to_string(),
            format!("this folder is node {}'s data", expected.node_id),
            "two nodes' data folders were swapped or renamed; give each [[node]] its own \
             data folder back",
        );
    }
    if recorded.cluster_id != expected.cluster_id {
        return mismatch(
            "cluster_id",
            format!("{:?}", recorded.cluster_id),
            format!("{:?}", expected.cluster_id),
            "put the recorded cluster_id back, or point this node at its own cluster's data",
        );
    }
    if recorded.volume_id != expected.volume_id {
        return mismatch(
            "volume_id",
            recorded.volume_id.to_string(),
            expected.volume_id.to_string(),
            "this folder holds another volume's data; put the recorded volume_id back, or \
             point this node at this volume's data folder",
        );
    }
    if recorded.pg_pages != expected.pg_pages {
        return mismatch(
            "pg_pages",
            recorded.pg_pages.to_string(),
            expected.pg_pages.to_string(),
            "a volume's pg_pages never changes (W2); put the recorded value back",
        );
    }
    Ok(())
}

/// I1, I3: every segment in `node`'s data folder must be placed on `node` by `config`.
pub fn check_segments_placed(
    dir: &Path,
    config: &ClusterConfig,
    node: NodeId,
    segments: &[SegmentId],
) -> Result<(), RecordError> {
    for &segment in segments {
        let placed = config.node_of(segment);
        if placed == Some(node) {
            continue;
        }
        let here = config
            .placement(segment.pg)
            .iter()
            .position(|&n| n == node)
            .map_or(format!("no segment of pg{}", segment.pg.0), |replica| {
                format!("pg{}.{replica}", segment.pg.0)
            });
        return Err(RecordError::Misplaced {
            dir: dir.to_path_buf(),
            node: node.0,
            segment,
            placed: placed.map_or("no node".into(), |n| describe(n.0)),
            here,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::six_node_toml;
    use sixfold_core::PgId;

    fn config(pg_pages: u32) -> ClusterConfig {
        ClusterConfig::parse(
            &six_node_toml("demo", "s", pg_pages, &[1, 2, 3, 4, 5, 6]),
            Path::new("/tmp/x"),
        )
        .unwrap()
    }

    fn segment(pg: u32, replica: u8) -> SegmentId {
        SegmentId {
            pg: PgId(pg),
            replica,
        }
    }

    #[test]
    fn a_matching_identity_is_accepted() {
        // I2: same cluster, volume and pg_pages, segments where the config places them.
        let config = config(16);
        let node3 = Identity::node(&config, NodeId(3), vec![segment(0, 2), segment(7, 2)]);
        assert_eq!(check_peer(&config, "this writer", &node3, Some(3)), Ok(()));
        let writer = Identity::client(&config);
        assert_eq!(check_peer(&config, "node 1", &writer, None), Ok(()));
    }

    #[test]
    fn pg_pages_mismatch_names_both_values() {
        // I2: scenario 3 of #12: a writer whose pg_pages differs from the nodes'.
        let nodes = config(1024);
        let mut writer_config = nodes.clone();
        writer_config.pg_pages = 512;
        let node3 = Identity::node(&nodes, NodeId(3), vec![]);
        let error = check_peer(&writer_config, "this writer", &node3, Some(3)).unwrap_err();
        assert_eq!(
            error.to_string().split(':').next().unwrap(),
            "node 3 has pg_pages=1024, this writer's config says 512"
        );
    }

    #[test]
    fn cluster_volume_and_node_mismatches_are_refused() {
        // I2: each field is compared, and the error names both values.
        let ours = config(16);
        let theirs = config(16); // a fresh random volume id
        let peer = Identity::node(&theirs, NodeId(2), vec![]);
        let error = check_peer(&ours, "node 1", &peer, None).unwrap_err();
        assert!(matches!(error, IdentityError::VolumeId { .. }));
        assert!(error.to_string().contains(&theirs.volume_id.to_string()));
        assert!(error.to_string().contains(&ours.volume_id.to_string()));
        let mut renamed = Identity::node(&ours, NodeId(2), vec![]);
        renamed.cluster_id = "other".into();
        assert!(matches!(
            check_peer(&ours, "node 1", &renamed, None),
            Err(IdentityError::ClusterId { .. })
        ));
        let at_wrong_address = Identity::node(&ours, NodeId(2), vec![]);
        assert!(matches!(
            check_peer(&ours, "this writer", &at_wrong_address, Some(1)),
            Err(IdentityError::NodeId {
                found: 2,
                expected: 1,
                ..
            })
        ));
    }

    #[test]
    fn a_segment_the_config_places_elsewhere_is_refused() {
        // I2, I3: node 3 holds replica 2; a config that places replica 2 elsewhere (an AZ
        // renamed, so AZ order changed) refuses it.
        let config = config(16);
        let renamed = ClusterConfig::parse(
            &six_node_toml("demo", "s", 16, &[1, 2, 3, 4, 5, 6]).replace("az1", "az9"),
            Path::new("/tmp/x"),
        )
        .unwrap();
        let node3 = Identity::node(&config, NodeId(3), vec![segment(0, 2)]);
        let mut node3_for_renamed = node3.clone();
        node3_for_renamed.volume_id = renamed.volume_id;
        let error = check_peer(&renamed, "this writer", &node3_for_renamed, Some(3)).unwrap_err();
        assert_eq!(
            error.to_string().split(':').next().unwrap(),
            "node 3 holds segment pg0.2, but this writer's config places pg0.2 on node 5"
        );
    }

    #[test]
    fn renaming_an_az_that_keeps_the_name_order_keeps_the_placement() {
        // Q3, Q6: placement sorts AZs by name, so only a rename that reorders them moves
        // segments (docs/operations.md, "Identity and geometry").
        let text = six_node_toml("demo", "s", 16, &[1, 2, 3, 4, 5, 6]);
        let parse = |text: &str| ClusterConfig::parse(text, Path::new("/tmp/x")).unwrap();
        let (before, kept, moved) = (
            parse(&text),
            parse(&text.replace("\"az1\"", "\"a0\"")),
            parse(&text.replace("\"az1\"", "\"az9\"")),
        );
        for pg in 0..20 {
            assert_eq!(before.placement(PgId(pg)), kept.placement(PgId(pg)));
            assert_ne!(before.placement(PgId(pg)), moved.placement(PgId(pg)));
        }
    }

    #[test]
    fn the_record_round_trips_and_detects_every_single_bit_flip() {
        // I1: the record is CRC-checked like every other metadata file.
        let record = IdentityRecord::of(&config(16), NodeId(4));
        let bytes = record.encode();
        assert_eq!(IdentityRecord::decode(&bytes), Ok(record));
        for bit in 0..bytes.len() * 8 {
            let mut flipped = bytes.clone();
            flipped[bit / 8] ^= 1 << (bit % 8);
            assert!(IdentityRecord::decode(&flipped).is_err(), "bit {bit}");
        }
        for cut in 0..bytes.len() {
            assert!(IdentityRecord::decode(&bytes[..cut]).is_err());
        }
    }

    #[test]
    fn a_recorded_identity_is_checked_field_by_field() {
        // I1: a data folder refuses a config that changed pg_pages, the volume or the
        // node it belongs to.
        let dir = Path::new("/data/node4");
        let config16 = config(16);
        let record = IdentityRecord::of(&config16, NodeId(4));
        assert!(check_record(dir, &record, &config16, NodeId(4)).is_ok());
        let mut config32 = config16.clone();
        config32.pg_pages = 32;
        let error = check_record(dir, &record, &config32, NodeId(4)).unwrap_err();
        assert!(
            error.to_string().starts_with(
                "data folder /data/node4 records pg_pages = 16, but the config says 32"
            )
        );
        let swapped = check_record(dir, &record, &config16, NodeId(3)).unwrap_err();
        assert!(swapped.to_string().contains("node id = 4"), "{swapped}");
        let other_volume = config(16);
        let error = check_record(dir, &record, &other_volume, NodeId(4)).unwrap_err();
        assert!(error.to_string().contains("volume_id"));
    }

    #[test]
    fn held_segments_must_be_placed_on_the_node() {
        // I1, I3: adding nodes to an AZ rotates placement: node 1 held pg1.0, the new
        // config places pg1.0 on node 7 and gives node 1 pg1.1.
        let config = config(16);
        let dir = Path::new("/data/node1");
        let held = [segment(0, 0), segment(1, 0)];
        assert!(check_segments_placed(dir, &config, NodeId(1), &held).is_ok());
        let mut text = six_node_toml("demo", "s", 16, &[1, 2, 3, 4, 5, 6]);
        text.push_str("\n[[node]]\nid = 7\naz = \"az1\"\naddr = \"127.0.0.1:7\"\ndata = \"n7\"\n");
        let grown = ClusterConfig::parse(&text, Path::new("/tmp/x")).unwrap();
        let error = check_segments_placed(dir, &grown, NodeId(1), &held).unwrap_err();
        assert_eq!(
            error.to_string().split(':').next().unwrap(),
            "data folder /data/node1 holds segment pg1.0, but the config places pg1.0 on node 7 \
             (and pg1.1 on node 1)"
        );
    }
}
