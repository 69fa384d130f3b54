#!/usr/bin/env python3
"""A second implementation of the sixfold conformance suites, in Python (standard library
only), written from spec/conformance.md, spec/protocol.md, spec/formats.md and
spec/wire.md. It answers the runner's JSON lines on stdin/stdout:

    sixfold conformance --target "python3 conformance/python/target.py"
"""

import json
import struct
import sys

# One limit on a truncation history everywhere (S15, spec/conformance.md).
TRUNCATIONS_MAX = 4096

PAGE_BYTES = 4096
BODY_MAX = 8192
HEADER = 64
MAGIC = b"SIXR"
VW, VR, V = 4, 3, 6

# ---------------------------------------------------------------- CRC32C (Castagnoli)

_TABLE = []
for _n in range(256):
    _c = _n
    for _ in range(8):
        _c = (_c >> 1) ^ 0x82F63B78 if _c & 1 else _c >> 1
    _TABLE.append(_c)


def crc32c(data):
    crc = 0xFFFFFFFF
    table = _TABLE
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def unhex(text):
    if len(text) % 2:
        return None
    try:
        return bytes.fromhex(text) if all(c in "0123456789abcdefABCDEF" for c in text) else None
    except ValueError:
        return None


# ---------------------------------------------------------------- records


class Record:
    __slots__ = ("lsn", "pg", "prev_pg", "prev_page", "epoch", "page", "cpl", "image", "edits")

    def __init__(self, spec):
        self.lsn = spec["lsn"]
        self.pg = spec["pg"]
        self.prev_pg = spec["prev_lsn_pg"]
        self.prev_page = spec.get("prev_lsn_page", 0)
        self.epoch = spec.get("epoch", 1)
        self.page = tuple(spec["page"])
        self.cpl = spec.get("cpl", False)
        self.image = None
        self.edits = None
        if spec.get("full_image_byte") is not None:
            self.image = bytes([spec["full_image_byte"]]) * PAGE_BYTES
        elif spec.get("full_image") is not None:
            self.image = unhex(spec["full_image"]) or b""
        elif spec.get("edits") is not None:
            self.edits = [(off, unhex(h) or b"") for off, h in spec["edits"]]
        else:
            self.edits = [(0, bytes([self.lsn % 256]))]

    def key(self):
        return (self.lsn, self.pg, self.prev_pg, self.prev_page, self.epoch, self.page,
                self.cpl, self.image, tuple(self.edits) if self.edits is not None else None)

    def body_bytes(self):
        if self.image is not None:
            return len(self.image)
        return 2 + sum(4 + len(b) for _, b in self.edits)

    def well_formed(self):
        if self.image is not None:
            return len(self.image) == PAGE_BYTES
        return (len(self.edits) <= 0xFFFF
                and all(len(b) >= 1 and off + len(b) <= PAGE_BYTES for off, b in self.edits)
                and self.body_bytes() <= BODY_MAX)

    def spec(self):
        out = {"lsn": self.lsn, "pg": self.pg, "prev_lsn_pg": self.prev_pg,
               "prev_lsn_page": self.prev_page, "epoch": self.epoch, "page": list(self.page),
               "cpl": self.cpl}
        if self.image is not None:
            if all(b == self.image[0] for b in self.image):
                out["full_image_byte"] = self.image[0]
            else:
                out["full_image"] = self.image.hex()
        else:
            out["edits"] = [[off, b.hex()] for off, b in self.edits]
        return out


def encode(rec):
    if rec.image is not None:
        body = rec.image
    else:
        body = struct.pack("<H", len(rec.edits)) + b"".join(
            struct.pack("<HH", off, len(b)) + b for off, b in rec.edits)
    flags = (1 if rec.cpl else 0) | (2 if rec.image is not None else 0)
    head = MAGIC + struct.pack("<BBHIIQQQQII", 1, flags, 0, len(body), rec.pg, rec.lsn,
                               rec.prev_pg, rec.prev_page, rec.epoch, rec.page[0], rec.page[1])
    return head + struct.pack("<II", crc32c(head), crc32c(body)) + body


class DecodeError(Exception):
    pass


def decode(data):
    """formats.md's checks, in its order; returns (record spec dict, frame length)."""
    if len(data) < HEADER:
        raise DecodeError("truncated")
    if data[0:4] != MAGIC:
        raise DecodeError("bad_magic")
    if struct.unpack_from("<I", data, 56)[0] != crc32c(data[0:56]):
        raise DecodeError("header_crc")
    if data[4] != 1:
        raise DecodeError("bad_version")
    (body_len,) = struct.unpack_from("<I", data, 8)
    if body_len > BODY_MAX:
        raise DecodeError("oversize")
    if len(data) < HEADER + body_len:
        raise DecodeError("truncated")
    body = data[HEADER:HEADER + body_len]
    if struct.unpack_from("<I", data, 60)[0] != crc32c(body):
        raise DecodeError("body_crc")
    flags = data[5]
    if flags & ~3 or data[6] or data[7]:
        raise DecodeError("malformed")
    spec = {}
    if flags & 2:
        if len(body) != PAGE_BYTES:
            raise DecodeError("malformed")
        if all(b == body[0] for b in body):
            spec["full_image_byte"] = body[0]
        else:
            spec["full_image"] = body.hex()
    else:
        spec["edits"] = decode_edits(body)
    pg, lsn, prev_pg, prev_page, epoch, db, page_no = struct.unpack_from("<IQQQQII", data, 12)
    if lsn == 0 or prev_pg >= lsn or prev_page >= lsn:
        raise DecodeError("malformed")
    spec.update({"lsn": lsn, "pg": pg, "prev_lsn_pg": prev_pg, "prev_lsn_page": prev_page,
                 "epoch": epoch, "page": [db, page_no], "cpl": bool(flags & 1)})
    return spec, HEADER + body_len


def decode_edits(body):
    if len(body) < 2:
        raise DecodeError("malformed")
    (count,) = struct.unpack_from("<H", body, 0)
    at, edits = 2, []
    for _ in range(count):
        if len(body) - at < 4:
            raise DecodeError("malformed")
        off, n = struct.unpack_from("<HH", body, at)
        at += 4
        if n == 0 or n > len(body) - at or off + n > PAGE_BYTES:
            raise DecodeError("malformed")
        edits.append([off, body[at:at + n].hex()])
        at += n
    if at != len(body):
        raise DecodeError("malformed")
    return edits


# ---------------------------------------------------------------- writer suite


class Writer:
    def __init__(self, pg_pages, lal):
        self.pg_pages, self.lal = max(pg_pages, 1), lal
        self.epoch, self.next_lsn, self.vcl, self.vdl = 1, 1, 0, 0
        self.fenced = False
        self.pgs = {}  # pg -> {"last", "pgcl", "scl": [6], "history": [lsn...]}
        self.page_lsn = {}
        self.outstanding = {}  # lsn -> pg
        self.cpls = set()
        self.waiting = set()
        self.records = {}  # lsn -> pg, records above VDL (in flight)
        self.reads = {}  # read point -> count
        self.acked, self.failed = [], []

    def pgmrpl(self):
        return min(self.reads) if self.reads else self.vdl

    def submit(self, pages):
        if self.fenced:
            return {"error": "fenced"}
        if not pages:
            return {"error": "empty_mtr"}
        last = self.next_lsn + len(pages) - 1
        if last > self.vdl + self.lal:
            return {"error": "backpressure"}
        out = []
        for index, (db, page_no) in enumerate(pages):
            lsn = self.next_lsn
            self.next_lsn += 1
            pg = page_no // self.pg_pages
            track = self.pgs.setdefault(pg, {"last": 0, "pgcl": 0, "scl": [0] * V, "history": []})
            prev_page = self.page_lsn.get((db, page_no), 0)
            self.page_lsn[(db, page_no)] = lsn
            cpl = index == len(pages) - 1
            out.append([lsn, pg, track["last"], prev_page, cpl])
            track["last"] = lsn
            track["history"].append(lsn)
            self.outstanding[lsn] = pg
            self.records[lsn] = pg
        self.cpls.add(last)
        self.waiting.add(last)
        return {"records": out, "commit_lsn": last}

    def ack(self, pg, replica, scl, epoch):
        if epoch > self.epoch:
            if not self.fenced:
                self.fenced = True
                self.failed.extend(sorted(self.waiting))
                self.waiting.clear()
            return
        if epoch < self.epoch or self.fenced or pg not in self.pgs:
            return
        track = self.pgs[pg]
        if scl <= track["scl"][replica]:
            return
        track["scl"][replica] = scl
        quorum = min(sorted(track["scl"], reverse=True)[VW - 1], track["last"])
        if quorum <= track["pgcl"]:
            return
        track["pgcl"] = quorum
        for lsn in [l for l, p in self.outstanding.items() if p == pg and l <= quorum]:
            del self.outstanding[lsn]
        self.advance()

    def advance(self):
        vcl = min(self.outstanding) - 1 if self.outstanding else self.next_lsn - 1
        if vcl <= self.vcl:
            return
        self.vcl = vcl
        below = [c for c in self.cpls if c <= vcl]
        if not below:
            return
        self.vdl = max(below)
        self.cpls -= set(below)
        self.records = {l: p for l, p in self.records.items() if l > self.vdl}
        if not self.reads:
            self.prune()
        released = sorted(c for c in self.waiting if c <= self.vdl)
        self.waiting -= set(released)
        self.acked.extend(released)

    def prune(self):
        floor = self.pgmrpl()
        for track in self.pgs.values():
            keep = [l for l in track["history"] if l <= floor]
            if keep:
                track["history"] = [l for l in track["history"] if l >= keep[-1]]

    def pg_lsn_at(self, pg, point):
        track = self.pgs.get(pg)
        if not track:
            return 0
        below = [l for l in track["history"] if l <= point]
        return below[-1] if below else 0

    def step(self, step):
        op = step["op"]
        if op == "submit":
            return self.submit(step["pages"])
        if op == "ack":
            self.ack(step["pg"], min(step["replica"], 5), step["scl"], step["epoch"])
            return "ok"
        if op == "begin_read":
            self.reads[self.vdl] = self.reads.get(self.vdl, 0) + 1
            return {"read_point": self.vdl}
        if op == "end_read":
            point = step["read_point"]
            if point in self.reads:
                self.reads[point] -= 1
                if not self.reads[point]:
                    del self.reads[point]
            self.prune()
            return "ok"
        if op == "read_candidates":
            need = self.pg_lsn_at(step["pg"], step["read_point"])
            scls = self.pgs[step["pg"]]["scl"] if step["pg"] in self.pgs else [0] * V
            return {"pg_lsn": need, "replicas": [r for r in range(V) if need == 0 or scls[r] >= need]}
        if op == "resend":
            pg, replica = step["pg"], min(step["replica"], 5)
            scl = self.pgs[pg]["scl"][replica] if pg in self.pgs else 0
            return {"lsns": sorted(l for l, p in self.records.items() if p == pg and l > scl)}
        raise ValueError(op)


def run_writer(inp):
    writer = Writer(inp["pg_pages"], inp["lal"])
    steps = []
    for step in inp["steps"]:
        result = writer.step(step)
        steps.append({"result": result,
                      "pgcl": {str(pg): t["pgcl"] for pg, t in sorted(writer.pgs.items())},
                      "vcl": writer.vcl, "vdl": writer.vdl, "pgmrpl": writer.pgmrpl(),
                      "acknowledged": writer.acked, "failed": writer.failed,
                      "fenced": writer.fenced})
        writer.acked, writer.failed = [], []
    return {"steps": steps}


# ---------------------------------------------------------------- segment suite


class Refused(Exception):
    pass


class Segment:
    def __init__(self, pg):
        self.pg, self.epoch, self.scl, self.hint, self.forgotten = pg, 0, 0, 0, 0
        self.records = {}  # lsn -> Record
        self.next_by_prev = {}
        self.ranges = []  # [begin, end, epoch]

    @staticmethod
    def voids(rng, lsn, epoch):
        return epoch <= rng[2] and rng[0] < lsn <= rng[1]

    def check_epoch(self, epoch):
        if epoch < self.epoch:
            raise Refused("stale_epoch")
        self.epoch = max(self.epoch, epoch)

    def advance(self):
        while self.scl in self.next_by_prev:
            self.scl = self.next_by_prev[self.scl]

    def write(self, epoch, hint, rec):
        if rec.pg != self.pg:
            raise Refused("wrong_pg")
        if not rec.well_formed() or rec.lsn == 0 or rec.prev_pg >= rec.lsn or rec.prev_page >= rec.lsn:
            raise Refused("malformed")
        if any(self.voids(r, rec.lsn, rec.epoch) for r in self.ranges):
            raise Refused("truncated")
        self.check_epoch(epoch)
        self.hint = max(self.hint, hint)
        if rec.lsn <= self.forgotten:
            return "duplicate"
        held = self.records.get(rec.lsn)
        if held is not None:
            if held.key() != rec.key():
                raise Refused("duplicate_mismatch")
            return "duplicate"
        above = [l for l in self.records if l > rec.lsn]
        if above:
            nxt = self.records[min(above)]
            if nxt.epoch > rec.epoch and nxt.prev_pg < rec.lsn:
                return "duplicate"
        void = [l for l, r in self.records.items() if rec.prev_pg < l < rec.lsn and r.epoch < rec.epoch]
        for l in void:
            del self.next_by_prev[self.records.pop(l).prev_pg]
        if void and self.scl > rec.prev_pg:
            self.scl = max(rec.prev_pg, self.forgotten)
        if rec.prev_pg in self.next_by_prev:
            raise Refused("backlink_conflict")
        self.next_by_prev[rec.prev_pg] = rec.lsn
        self.records[rec.lsn] = rec
        self.advance()
        return "stored"

    def history_epoch(self, ranges):
        return max((r[2] for r in ranges), default=0)

    def truncate(self, begin, end, epoch):
        history = [list(r) for r in self.ranges] + [[begin, end, epoch]]
        if len(history) > TRUNCATIONS_MAX:
            raise Refused("too_many_truncations")
        self.check_epoch(epoch)
        self.check_epoch(self.history_epoch(history))
        if self.history_epoch(history) <= self.history_epoch(self.ranges):
            return "truncated"
        self.ranges = [r for r in self.ranges if r in history]
        for rng in history:
            if rng in self.ranges:
                continue
            self.ranges.append(rng)
            for l in sorted(l for l, r in self.records.items() if self.voids(rng, l, r.epoch)):
                del self.next_by_prev[self.records.pop(l).prev_pg]
            if self.scl > rng[0]:
                below = [l for l in self.records if l <= rng[0]]
                self.scl = max(max(below) if below else self.forgotten, self.forgotten)
                self.advance()
        return "truncated"

    def holes(self):
        out, below = [], self.scl
        for lsn in sorted(l for l in self.records if l > self.scl):
            prev = self.records[lsn].prev_pg
            if prev != self.scl and prev not in self.records:
                out.append([below, lsn])
            below = lsn
        return out

    def report(self):
        at_hint = [l for l in self.records if l <= self.hint]
        return {"epoch": self.epoch, "scl": self.scl, "vdl_hint": self.hint,
                "tip_at_hint": max(at_hint) if at_hint else min(self.forgotten, self.hint),
                "held": [[l, self.records[l].cpl, self.records[l].epoch]
                         for l in sorted(self.records) if l > self.hint],
                "truncations": [list(r) for r in self.ranges]}

    def step(self, step):
        op = step["op"]
        if op == "write":
            return self.write(step["epoch"], step["vdl_hint"], Record(step["record"]))
        if op == "truncate":
            return self.truncate(step["lsn_begin"], step["lsn_end"], step["epoch"])
        if op == "raise_epoch":
            if step["epoch"] <= self.epoch:
                raise Refused("stale_epoch")
            self.epoch = step["epoch"]
            return "ok"
        if op == "adopt_epoch":
            self.check_epoch(step["epoch"])
            return "ok"
        if op == "report":
            return {"report": self.report()}
        if op == "gossip_answer":
            if step["epoch"] < self.epoch:
                return {"lsns": []}
            wanted = [l for l in sorted(self.records) if l > step["scl"] and (
                l > step["max_held"] or any(a < l < b for a, b in step["holes"]))]
            return {"lsns": wanted[:256]}
        if op == "forget":
            through = min(step["lsn"], self.scl)
            dropped = sorted(l for l in self.records if l <= through)
            for l in dropped:
                del self.next_by_prev[self.records.pop(l).prev_pg]
            if dropped:
                self.forgotten = dropped[-1]
            return {"forgotten": len(dropped)}
        raise ValueError(op)


def run_segment(inp):
    seg = Segment(inp["pg"])
    steps = []
    for step in inp["steps"]:
        try:
            result = seg.step(step)
        except Refused as refusal:
            result = str(refusal)
        steps.append({"result": result, "scl": seg.scl, "epoch": seg.epoch, "vdl_hint": seg.hint,
                      "holes": seg.holes(), "held": sorted(seg.records),
                      "truncations": [list(r) for r in seg.ranges]})
    return {"steps": steps}


# ---------------------------------------------------------------- recovery suite


def run_recovery(inp):
    pgs = set(inp["pgs"])
    reports = {}
    for rep in inp["reports"]:
        if rep["pg"] not in pgs:
            return {"error": "unknown_pg"}
        if rep["epoch"] > inp["epoch"]:
            return {"error": "epoch_too_low"}
        reports[(rep["pg"], rep["replica"])] = rep
    for pg in sorted(pgs):
        if sum(1 for key in reports if key[0] == pg) < VR:
            return {"error": "no_read_quorum"}
    ordered = [reports[k] for k in sorted(reports)]
    floor = max((r["vdl_hint"] for r in ordered), default=0)

    def hist_epoch(rep):
        return max((t[2] for t in rep.get("truncations", [])), default=0)

    in_force = []
    best = -1
    for rep in ordered:
        if hist_epoch(rep) >= best:
            best, in_force = hist_epoch(rep), [list(t) for t in rep.get("truncations", [])]

    def void(lsn, epoch):
        return any(epoch <= t[2] and t[0] < lsn <= t[1] for t in in_force)

    newest = {}
    for rep in ordered:
        for lsn, cpl, epoch in rep["held"]:
            if void(lsn, epoch):
                continue
            if lsn not in newest or epoch > newest[lsn][0]:
                newest[lsn] = [epoch, cpl]
            elif epoch == newest[lsn][0]:
                newest[lsn][1] = newest[lsn][1] or cpl

    def surely_void(lsn):
        return any(t[0] < lsn <= t[1] and not any(o[2] > t[2] and o[1] < lsn for o in in_force)
                   for t in in_force)

    vcl = floor
    while (vcl + 1) in newest or surely_void(vcl + 1):
        vcl += 1
    cpls = [l for l, (_, cpl) in newest.items() if floor < l <= vcl and cpl]
    vdl = max(cpls) if cpls else floor
    base = max([vdl] + [t[1] for r in ordered for t in r.get("truncations", [])])
    truncation = [vdl, base + inp["lal"], inp["epoch"]]
    last = {}
    for pg in sorted(pgs):
        best_lsn = 0
        for rep in ordered:
            if rep["pg"] != pg:
                continue
            held = [l for l, _, e in rep["held"] if not void(l, e) and l <= vdl]
            best_lsn = max(best_lsn, max(held, default=0), min(rep["tip_at_hint"], vdl))
        last[str(pg)] = best_lsn
    return {"vcl": vcl, "vdl": vdl, "truncation": truncation, "history": in_force + [truncation],
            "last_lsn_by_pg": last, "next_lsn": truncation[1] + 1}


# ---------------------------------------------------------------- codec suite


def run_codec(inp):
    op = inp["op"]
    if op == "encode":
        rec = Record(inp["record"])
        if not rec.well_formed():
            return {"error": "malformed"}
        return {"hex": encode(rec).hex()}
    if op in ("decode", "scan"):
        data = unhex(inp["hex"])
        if data is None:
            return {"error": "bad_hex"}
        if op == "decode":
            try:
                spec, length = decode(data)
            except DecodeError as error:
                return {"error": str(error)}
            return {"record": spec, "frame_bytes": length}
        return scan(data)
    if op == "apply":
        return apply(sorted((Record(r) for r in inp["records"]), key=lambda r: r.lsn), inp["read_lsn"])
    raise ValueError(op)


def decodes(data):
    try:
        return decode(data)[1]
    except DecodeError:
        return None


def scan(data):
    lsns, valid, damaged, at = [], 0, [], 0
    while at < len(data):
        length = decodes(data[at:])
        if length is not None:
            lsns.append(decode(data[at:])[0]["lsn"])
            at += length
            valid = at
            continue
        nxt = next((o for o in range(at + 1, max(len(data) - HEADER + 1, 0)) if decodes(data[o:])), None)
        if nxt is None:
            break
        damaged.append(at)
        at = nxt
    return {"lsns": lsns, "valid_bytes": valid, "damaged_at": damaged}


def apply(records, read_lsn):
    page, page_lsn = bytearray(PAGE_BYTES), 0
    for rec in records:
        if rec.lsn <= page_lsn:
            continue
        if rec.lsn > read_lsn:
            break
        if rec.prev_page != page_lsn:
            return {"error": "broken_chain"}
        if not rec.well_formed():
            return {"error": "malformed"}
        if rec.image is not None:
            page[:] = rec.image
        else:
            for off, b in rec.edits:
                page[off:off + len(b)] = b
        page_lsn = rec.lsn
    runs, at = [], 0
    while at < PAGE_BYTES:
        if page[at] == 0:
            at += 1
            continue
        start = at
        while at < PAGE_BYTES and page[at]:
            at += 1
        runs.append([start, page[start:at].hex()])
    return {"page_lsn": page_lsn, "runs": runs}


# ---------------------------------------------------------------- wire suite

MAX_FRAME = 4 * 1024 * 1024


class Malformed(Exception):
    pass


class In:
    def __init__(self, data):
        self.data, self.at = data, 0

    def take(self, n):
        if len(self.data) - self.at < n:
            raise Malformed()
        out = self.data[self.at:self.at + n]
        self.at += n
        return out

    def u(self, fmt):
        size = struct.calcsize("<" + fmt)
        return struct.unpack("<" + fmt, self.take(size))[0]

    def flag(self):
        value = self.u("B")
        if value > 1:
            raise Malformed()
        return value

    def segment(self):
        self.u("I")
        if self.u("B") > 5:
            raise Malformed()

    def rng(self):
        begin, end, _ = self.u("Q"), self.u("Q"), self.u("Q")
        if end < begin:
            raise Malformed()

    def count(self, limit, min_bytes):
        n = self.u("I")
        if n > limit or n * min_bytes > len(self.data) - self.at:
            raise Malformed()
        return n

    def ranges(self):
        for _ in range(self.count(1 << 20, 24)):
            self.rng()

    def string(self):
        n = self.u("H")
        if n > 1024:
            raise Malformed()
        try:
            self.take(n).decode("utf-8")
        except UnicodeDecodeError:
            raise Malformed()

    def records(self):
        for _ in range(self.count(256, HEADER)):
            try:
                _, length = decode(self.data[self.at:])
            except DecodeError:
                raise Malformed()
            self.at += length


def _report(i):
    i.segment()
    i.u("Q"), i.u("Q"), i.u("Q"), i.u("Q")
    for _ in range(i.count(1 << 20, 17)):
        i.u("Q"), i.flag(), i.u("Q")
    i.ranges()


def _status(i):
    i.segment()
    for _ in range(5):
        i.u("Q")


MESSAGES = {
    0x04: ("Error", lambda i: (i.u("Q"), (1 <= i.u("H") <= 9) or _raise(), i.u("Q"), i.string())),
    0x10: ("WriteBatch", lambda i: (i.u("Q"), i.segment(), i.u("Q"), i.u("Q"),
                                    i.rng() if i.flag() else None, i.records())),
    0x11: ("Ack", lambda i: (i.u("Q"), i.segment(), i.u("Q"), i.u("Q"))),
    0x12: ("GetPage", lambda i: (i.u("Q"), i.segment(), i.u("Q"), i.u("Q"), i.u("Q"), i.u("I"), i.u("I"))),
    0x13: ("Page", lambda i: (i.u("Q"), i.u("I"), i.u("I"), i.u("Q"), i.take(PAGE_BYTES) if i.flag() else None)),
    0x14: ("Gossip", lambda i: (i.u("Q"), i.segment(), i.u("Q"), i.u("Q"), i.u("Q"),
                                [(i.u("Q"), i.u("Q")) for _ in range(i.count(1 << 20, 16))], i.ranges())),
    0x15: ("GossipRecords", lambda i: (i.u("Q"), i.segment(), i.u("Q"), i.ranges(), i.records())),
    0x16: ("Truncate", lambda i: (i.u("Q"), i.ranges())),
    0x17: ("RaiseEpoch", lambda i: (i.u("Q"), i.u("Q"))),
    0x18: ("Reports", lambda i: (i.u("Q"), i.u("Q"), i.ranges(),
                                 [_report(i) for _ in range(i.count(1 << 20, 61))])),
    0x19: ("Heartbeat", lambda i: (i.u("Q"), i.u("Q"), i.u("Q"), i.u("Q"), i.u("Q"),
                                   i.rng() if i.flag() else None)),
    0x1A: ("Status", lambda i: i.u("Q")),
    0x1B: ("StatusReply", lambda i: (i.u("Q"), i.u("I"), i.u("Q"),
                                     (i.u("Q"), i.u("Q"), i.u("Q"), i.u("Q")) if i.flag() else None,
                                     [_status(i) for _ in range(i.count(1 << 20, 45))])),
}


def _raise():
    raise Malformed()


def run_wire(inp):
    data = unhex(inp["frame"])
    if data is None:
        return {"error": "bad_hex"}
    if len(data) < 8:
        return {"error": "closed"}
    length, crc = struct.unpack_from("<II", data, 0)
    if length > MAX_FRAME:
        return {"error": "oversize"}
    if len(data) < 8 + length:
        return {"error": "closed"}
    payload = data[8:8 + length]
    if crc32c(payload) != crc:
        return {"error": "crc"}
    if not payload:
        return {"error": "malformed"}
    if payload[0] not in MESSAGES:
        return {"error": "unknown_type"}
    name, parse = MESSAGES[payload[0]]
    reader = In(payload)
    reader.at = 1
    try:
        parse(reader)
    except Malformed:
        return {"error": "malformed"}
    if reader.at != len(payload):
        return {"error": "malformed"}
    # A strict decoder accepts only canonical encodings, so the payload re-encodes exactly.
    return {"type": name, "reencodes": True}


SUITES = {"writer": run_writer, "segment": run_segment, "recovery": run_recovery,
          "codec": run_codec, "wire": run_wire}


def main():
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            request = json.loads(line)
            answer = SUITES[request["suite"]](request["input"])
        except Exception as error:  # an answer per line, whatever happens
            answer = {"error": "target failed: %r" % (error,)}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
