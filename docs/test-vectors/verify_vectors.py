#!/usr/bin/env python3
"""A second implementation of ClinicDesk's audit encoding, written from docs/audit-format.md
alone (Python standard library only), checked against audit-v2.json: every canonical
encoding and hash, the chain links, every Merkle root, inclusion and consistency proof, and
the checkpoint's signed bytes. Ed25519 signatures are not checked here (the standard library
has no Ed25519); the Rust test checks them.

usage: verify_vectors.py audit-v2.json
"""

import hashlib
import json
import struct
import sys
import uuid


def sha256(*parts):
    h = hashlib.sha256()
    for p in parts:
        h.update(p)
    return h.digest()


def string(s):
    b = s.encode("utf-8")
    return struct.pack(">I", len(b)) + b


def uuid_bytes(s):
    return uuid.UUID(s).bytes


def option(value, encode):
    return b"\x00" if value is None else b"\x01" + encode(value)


def canonical(e):
    out = b"clinicdesk-audit-v2\x00"
    out += uuid_bytes(e["id"]) + uuid_bytes(e["clinic_id"]) + uuid_bytes(e["actor_user_id"])
    out += string(e["actor_role"]) + string(e["recorded_by"])
    out += uuid_bytes(e["device_id"]) + struct.pack(">Q", e["device_seq"])
    out += string(e["action"]) + string(e["resource_type"]) + string(e["resource_id"])
    out += option(e.get("patient_id"), uuid_bytes)
    out += struct.pack(">I", len(e["fields"])) + b"".join(string(f) for f in e["fields"])
    out += string(e["outcome"]) + struct.pack(">q", e["occurred_at_ms"])
    out += b"\x01" if e["offline"] else b"\x00"
    out += string(e["route"])
    out += option(e.get("break_glass"), lambda b: string(b["reason_code"]) + string(b["reason_text"]))
    out += option(
        e.get("request"),
        lambda r: string(r["client_ip"]) + string(r["user_agent"])
        + option(r.get("session_device_id"), uuid_bytes),
    )
    return out + bytes.fromhex(e["prev_hash"])


def leaf(event_hash):
    return sha256(b"\x00", event_hash)


def node(left, right):
    return sha256(b"\x01", left, right)


def root(leaves):
    """RFC 9162 2.1.1 Merkle Tree Hash over leaf hashes."""
    if not leaves:
        return sha256()
    if len(leaves) == 1:
        return leaves[0]
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return node(root(leaves[:k]), root(leaves[k:]))


def verify_inclusion(index, size, leaf_hash, proof, expected_root):
    """RFC 9162 2.1.3.2."""
    if index >= size:
        return False
    fn, sn, r = index, size - 1, leaf_hash
    for p in proof:
        if sn == 0:
            return False
        if fn % 2 == 1 or fn == sn:
            r = node(p, r)
            if fn % 2 == 0:
                while fn % 2 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == expected_root


def verify_consistency(first, second, first_root, second_root, proof):
    """RFC 9162 2.1.4.2."""
    if first == second:
        return not proof and first_root == second_root
    if not proof:
        return False
    if first & (first - 1) == 0:  # a power of two: the old root starts the path
        proof = [first_root] + proof
    fn, sn = first - 1, second - 1
    while fn % 2 == 1:
        fn >>= 1
        sn >>= 1
    fr = sr = proof[0]
    for c in proof[1:]:
        if sn == 0:
            return False
        if fn % 2 == 1 or fn == sn:
            fr = node(c, fr)
            sr = node(c, sr)
            if fn % 2 == 0:
                while fn % 2 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node(sr, c)
        fn >>= 1
        sn >>= 1
    return fr == first_root and sr == second_root and sn == 0


def main(path):
    v = json.load(open(path, encoding="utf-8"))
    hashes, tips = [], {}
    for i, x in enumerate(v["events"]):
        e = x["event"]
        enc = canonical(e)
        assert enc.hex() == x["canonical_hex"], f"event {i}: encoding differs"
        assert sha256(enc).hex() == x["hash"], f"event {i}: hash differs"
        seq, prev = tips.get(e["device_id"], (0, bytes(32)))
        assert e["device_seq"] == seq + 1 and bytes.fromhex(e["prev_hash"]) == prev, f"event {i}: chain"
        tips[e["device_id"]] = (e["device_seq"], sha256(enc))
        hashes.append(sha256(enc))
    leaves = [leaf(h) for h in hashes]
    log = v["log"]
    for n, r in enumerate(log["roots_by_size"], start=1):
        assert root(leaves[:n]).hex() == r, f"root of size {n} differs"
    cp = log["checkpoint"]["checkpoint"]
    cp_bytes = (
        b"clinicdesk-checkpoint-v1\x00" + uuid_bytes(cp["clinic_id"])
        + struct.pack(">Q", cp["tree_size"]) + bytes.fromhex(cp["root_hash"])
        + struct.pack(">q", cp["issued_at_ms"])
    )
    assert cp_bytes.hex() == log["checkpoint"]["canonical_hex"], "checkpoint bytes differ"
    top = bytes.fromhex(cp["root_hash"])
    assert top == root(leaves), "checkpoint root differs"
    for p in log["inclusion"]:
        proof = [bytes.fromhex(h) for h in p["hashes"]]
        i = p["leaf_index"]
        assert verify_inclusion(i, p["tree_size"], leaves[i], proof, top), f"inclusion {i}"
        if proof:
            bad = [bytes(32)] + proof[1:]
            assert not verify_inclusion(i, p["tree_size"], leaves[i], bad, top), "a bad proof passed"
    for c in log["consistency"]:
        proof = [bytes.fromhex(h) for h in c["hashes"]]
        old = bytes.fromhex(c["old_root"])
        assert verify_consistency(c["old_size"], c["new_size"], old, top, proof), f"consistency {c['old_size']}"
        assert not verify_consistency(c["old_size"], c["new_size"], bytes(32), top, proof), "a bad root passed"
    print(
        f"{len(hashes)} events, {len(log['inclusion'])} inclusion proofs, "
        f"{len(log['consistency'])} consistency proofs: all match"
    )


if __name__ == "__main__":
    main(sys.argv[1])
