use quickcheck::{Arbitrary, Gen, QuickCheck};
use sixfold_core::codec::{
    self, DecodeError, PageImage, RECORD_HEADER_BYTES, decode_page, decode_record, encode_page,
    encode_record_to_vec, scan_log,
};
use sixfold_core::{DbId, Edit, Epoch, Lsn, PAGE_BYTES, PageId, PgId, RedoBody, RedoRecord};

#[derive(Clone, Debug)]
struct AnyRecord(RedoRecord);

impl Arbitrary for AnyRecord {
    fn arbitrary(g: &mut Gen) -> AnyRecord {
        let lsn = u64::arbitrary(g).max(1);
        let below = |g: &mut Gen| u64::arbitrary(g) % lsn;
        let body = if bool::arbitrary(g) && bool::arbitrary(g) {
            RedoBody::FullImage((0..PAGE_BYTES).map(|_| u8::arbitrary(g)).collect())
        } else {
            let count = 1 + usize::arbitrary(g) % 4;
            RedoBody::Edits(
                (0..count)
                    .map(|_| {
                        let len = 1 + usize::arbitrary(g) % 64;
                        let offset = (usize::arbitrary(g) % (PAGE_BYTES - len)) as u16;
                        Edit {
                            offset,
                            bytes: (0..len).map(|_| u8::arbitrary(g)).collect(),
                        }
                    })
                    .collect(),
            )
        };
        AnyRecord(RedoRecord {
            lsn: Lsn(lsn),
            pg: PgId(u32::arbitrary(g)),
            prev_lsn_pg: Lsn(below(g)),
            prev_lsn_page: Lsn(below(g)),
            epoch: Epoch(u64::arbitrary(g)),
            page: PageId {
                db: DbId(u32::arbitrary(g)),
                page_no: u32::arbitrary(g),
            },
            cpl: bool::arbitrary(g),
            body,
        })
    }
}

#[test]
fn records_round_trip() {
    // L5: encode then decode gives the same record and the frame's length.
    fn property(record: AnyRecord) -> bool {
        let bytes = encode_record_to_vec(&record.0);
        matches!(decode_record(&bytes), Ok((decoded, len)) if decoded.record() == &record.0 && len == bytes.len())
    }
    QuickCheck::new()
        .tests(300)
        .quickcheck(property as fn(AnyRecord) -> bool);
}

#[test]
fn a_flipped_bit_never_decodes_as_valid() {
    // L5: any single bit flip in a frame is caught by a CRC32C or a structural check.
    fn property(record: AnyRecord, position: usize, bit: u8) -> bool {
        let mut bytes = encode_record_to_vec(&record.0);
        let at = position % bytes.len();
        bytes[at] ^= 1 << (bit % 8);
        decode_record(&bytes).is_err()
    }
    QuickCheck::new()
        .tests(500)
        .quickcheck(property as fn(AnyRecord, usize, u8) -> bool);
}

#[test]
fn arbitrary_bytes_never_panic() {
    // L6: decoding garbage returns a typed error (or, vanishingly rarely, a valid frame).
    fn property(bytes: Vec<u8>) -> bool {
        let _ = decode_record(&bytes);
        let _ = decode_page(&bytes);
        let _ = scan_log(&bytes);
        true
    }
    QuickCheck::new()
        .tests(500)
        .quickcheck(property as fn(Vec<u8>) -> bool);
    // Garbage with a valid-looking magic and a huge length is refused as oversize or CRC.
    let mut forged = vec![0u8; RECORD_HEADER_BYTES];
    forged[0..4].copy_from_slice(b"SIXR");
    forged[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(decode_record(&forged).is_err());
}

fn sample_records() -> Vec<RedoRecord> {
    let mut image = vec![0u8; PAGE_BYTES];
    image[..8].copy_from_slice(b"sixfold!");
    vec![
        RedoRecord {
            lsn: Lsn(1),
            pg: PgId(0),
            prev_lsn_pg: Lsn(0),
            prev_lsn_page: Lsn(0),
            epoch: Epoch(1),
            page: PageId::new(1, 2),
            cpl: false,
            body: RedoBody::Edits(vec![Edit {
                offset: 16,
                bytes: b"hello".to_vec(),
            }]),
        },
        RedoRecord {
            lsn: Lsn(2),
            pg: PgId(1),
            prev_lsn_pg: Lsn(0),
            prev_lsn_page: Lsn(0),
            epoch: Epoch(1),
            page: PageId::new(1, 1030),
            cpl: true,
            body: RedoBody::Edits(vec![
                Edit {
                    offset: 0,
                    bytes: vec![0xAB],
                },
                Edit {
                    offset: 4095,
                    bytes: vec![0xCD],
                },
            ]),
        },
        RedoRecord {
            lsn: Lsn(3),
            pg: PgId(0),
            prev_lsn_pg: Lsn(1),
            prev_lsn_page: Lsn(1),
            epoch: Epoch(1),
            page: PageId::new(1, 2),
            cpl: true,
            body: RedoBody::FullImage(image),
        },
    ]
}

fn hex_lines(bytes: &[u8]) -> String {
    bytes
        .chunks(16)
        .enumerate()
        .map(|(row, chunk)| {
            let hex: Vec<String> = chunk.iter().map(|b| format!("{b:02x}")).collect();
            format!("{:04x}: {}", row * 16, hex.join(" "))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn record_frames_hex_snapshot() {
    // L5: the byte-exact format of spec/formats.md; a change here is a format change.
    let records = sample_records();
    let mut out = String::new();
    for record in &records[..2] {
        let bytes = encode_record_to_vec(record);
        out.push_str(&format!(
            "# lsn {} ({} bytes)\n{}\n",
            record.lsn,
            bytes.len(),
            hex_lines(&bytes)
        ));
    }
    let full = encode_record_to_vec(&records[2]);
    out.push_str(&format!(
        "# lsn 3 full image ({} bytes), header only\n{}\n",
        full.len(),
        hex_lines(&full[..RECORD_HEADER_BYTES])
    ));
    let mut page = Vec::new();
    encode_page(
        &PageImage {
            page: PageId::new(1, 2),
            lsn: Lsn(3),
            bytes: vec![0x5A; PAGE_BYTES],
        },
        &mut page,
    );
    out.push_str(&format!(
        "# page image db1/p2 @3, header only\n{}\n",
        hex_lines(&page[..32])
    ));
    insta::assert_snapshot!(out);
}

#[test]
fn page_images_round_trip_and_catch_flips() {
    // L5 on pages.
    let image = PageImage {
        page: PageId::new(7, 9),
        lsn: Lsn(42),
        bytes: (0..PAGE_BYTES).map(|i| (i % 251) as u8).collect(),
    };
    let mut bytes = Vec::new();
    encode_page(&image, &mut bytes);
    assert_eq!(decode_page(&bytes).unwrap(), image);
    for at in [0, 5, 17, 31, 40, 4000] {
        let mut flipped = bytes.clone();
        flipped[at] ^= 0x10;
        assert!(
            decode_page(&flipped).is_err(),
            "flip at {at} went unnoticed"
        );
    }
}

fn log_of(records: &[RedoRecord]) -> (Vec<u8>, Vec<usize>) {
    let mut bytes = Vec::new();
    let mut starts = Vec::new();
    for record in records {
        starts.push(bytes.len());
        codec::encode_record(record, &mut bytes);
    }
    (bytes, starts)
}

#[test]
fn a_torn_tail_is_cut_at_the_last_whole_frame() {
    // S12: every possible tear of the last frame leaves the first two records.
    let records = sample_records();
    let (bytes, starts) = log_of(&records);
    for cut in starts[2] + 1..bytes.len() {
        let scan = scan_log(&bytes[..cut]);
        assert_eq!(scan.records.len(), 2, "cut at {cut}");
        assert_eq!(scan.valid_bytes, starts[2]);
        assert!(scan.damaged_at.is_empty());
    }
    let whole = scan_log(&bytes);
    assert_eq!((whole.records.len(), whole.valid_bytes), (3, bytes.len()));
}

#[test]
fn damage_in_the_middle_is_reported_not_cut() {
    // S11, S12: a bad frame followed by a good one is damage; the good one is kept.
    let records = sample_records();
    let (mut bytes, starts) = log_of(&records);
    bytes[starts[1] + RECORD_HEADER_BYTES + 1] ^= 0xFF;
    let scan = scan_log(&bytes);
    assert_eq!(scan.damaged_at, vec![starts[1]]);
    let lsns: Vec<u64> = scan.records.iter().map(|r| r.record().lsn.0).collect();
    assert_eq!(lsns, vec![1, 3]);
    assert_eq!(scan.valid_bytes, bytes.len());
    assert!(matches!(
        decode_record(&bytes[starts[1]..]),
        Err(DecodeError::BodyCrc { .. })
    ));
}

#[test]
fn edits_outside_the_page_are_refused() {
    // L4: an edit past the page end is not well formed, and a frame claiming one is refused.
    let bad = RedoBody::Edits(vec![Edit {
        offset: 4090,
        bytes: vec![0; 7],
    }]);
    assert!(!bad.is_well_formed());
    assert!(
        !RedoBody::Edits(vec![Edit {
            offset: 0,
            bytes: vec![]
        }])
        .is_well_formed()
    );
    assert!(!RedoBody::FullImage(vec![0; 100]).is_well_formed());
    let mut record = sample_records().remove(0);
    record.body = RedoBody::Edits(vec![Edit {
        offset: 4000,
        bytes: vec![1; 96],
    }]);
    let mut bytes = encode_record_to_vec(&record);
    // Rewrite the edit's offset to 4001 (now past the end) and fix up the body CRC.
    bytes[RECORD_HEADER_BYTES + 2..RECORD_HEADER_BYTES + 4].copy_from_slice(&4001u16.to_le_bytes());
    let body_crc = crc32c::crc32c(&bytes[RECORD_HEADER_BYTES..]);
    bytes[60..64].copy_from_slice(&body_crc.to_le_bytes());
    assert!(matches!(
        decode_record(&bytes),
        Err(DecodeError::Malformed(_))
    ));
}
