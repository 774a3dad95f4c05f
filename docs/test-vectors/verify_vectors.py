#!/usr/bin/env python3
"""A second implementation of ClinicDesk's audit encoding, written from docs/audit-format.md
alone (Python standard library only), checked against audit-v2.json: every canonical
encoding and hash, the chain links, every Merkle root, inclusion and consistency proof, and
the checkpoint's signed bytes, a receipt's and a key rotation's signed bytes, and a whole export bundle
(export-v1.jsonl, beside it): its header, every event's proof against the header's
checkpoint, the chain links, the completeness of an unfiltered export, the digest and the
bytes its end line signs. Ed25519 signatures are not checked here (the standard library has
no Ed25519); the Rust test checks them.

usage: verify_vectors.py audit-v2.json
"""

import os

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


def checkpoint_bytes(cp):
    return (
        b"clinicdesk-checkpoint-v1\x00" + uuid_bytes(cp["clinic_id"])
        + struct.pack(">Q", cp["tree_size"]) + bytes.fromhex(cp["root_hash"])
        + struct.pack(">q", cp["issued_at_ms"])
    )


def receipt_bytes(r):
    forked = r["forked"]
    return (
        b"clinicdesk-receipt-v1\x00" + uuid_bytes(r["device_id"])
        + struct.pack(">Q", r["highest_contiguous_seq"]) + bytes.fromhex(r["contiguous_hash"])
        + struct.pack(">I", len(forked)) + b"".join(struct.pack(">Q", s) for s in forked)
        + checkpoint_bytes(r["checkpoint"]["checkpoint"])
    )


def check_receipt(v):
    r = v["receipt"]["receipt"]
    assert receipt_bytes(r).hex() == v["receipt"]["canonical_hex"], "receipt bytes differ"
    cp = r["checkpoint"]["checkpoint"]
    p = r["inclusion"]
    assert p["tree_size"] == cp["tree_size"], "receipt proof against another size"
    proof = [bytes.fromhex(h) for h in p["hashes"]]
    contiguous = leaf(bytes.fromhex(r["contiguous_hash"]))
    top = bytes.fromhex(cp["root_hash"])
    assert verify_inclusion(p["leaf_index"], p["tree_size"], contiguous, proof, top), "receipt proof"
    print("receipt: matches")


def check_rotation(v):
    r = v["rotation"]["record"]
    signed = (
        b"clinicdesk-key-rotation-v1\x00" + bytes.fromhex(r["old_key"])
        + bytes.fromhex(r["new_key"]) + struct.pack(">q", r["at_ms"])
    )
    assert signed.hex() == v["rotation"]["signed_hex"], "rotation bytes differ"
    assert r["old_key"] == v["server_public_key"], "the rotation starts at the server key"
    print("rotation: matches")


def check_bundle(v, path):
    """The export bundle, as docs/audit-format.md's "To verify" says (but the signatures)."""
    raw = open(path, "rb").read()
    assert raw.endswith(b"\n"), "the bundle ends with a newline"
    lines = raw[:-1].split(b"\n")
    header = json.loads(lines[0])["header"]
    assert header["format"] == "clinicdesk-audit-export-v1", "format"
    assert header["keys"] == v["keys"], "the header's keys are what `audit keys` prints"
    cp = header["checkpoint"]["checkpoint"]
    top = bytes.fromhex(cp["root_hash"])
    chains = header["keys"]["chains"]
    seen_leaves, digest, by_chain = set(), hashlib.sha256(), {}
    end = None
    for n, line in enumerate(lines[1:], start=2):
        obj = json.loads(line)
        assert end is None, f"line {n} follows the end line"
        if "end" in obj:
            end = obj["end"]
            continue
        x = obj["event"]
        e = x["event"]
        h = sha256(canonical(e))
        assert e["clinic_id"] == header["clinic_id"], f"line {n}: another clinic"
        assert chains[e["device_id"]]["recorded_by"] == e["recorded_by"], f"line {n}: recorder"
        assert x["leaf_index"] not in seen_leaves, f"line {n}: leaf repeats"
        seen_leaves.add(x["leaf_index"])
        proof = [bytes.fromhex(p) for p in x["inclusion"]]
        assert verify_inclusion(x["leaf_index"], cp["tree_size"], leaf(h), proof, top), f"line {n}: proof"
        digest.update(h)
        by_chain.setdefault(e["device_id"], {})[e["device_seq"]] = (h, bytes.fromhex(e["prev_hash"]))
    assert end is not None, "no end line"
    for chain in by_chain.values():
        for seq, (_, prev) in chain.items():
            if seq - 1 in chain:
                assert chain[seq - 1][0] == prev, f"chain link at {seq}"
    count = len(seen_leaves)
    assert end["events"] == count, "end count"
    assert end["digest"] == digest.hexdigest(), "end digest"
    if all(f is None for f in header["filters"].values()):
        assert count == cp["tree_size"], "an unfiltered export holds every leaf"
    signed = (
        b"clinicdesk-export-end-v1\x00" + sha256(lines[0])
        + struct.pack(">Q", end["events"]) + bytes.fromhex(end["digest"])
    )
    assert signed.hex() == v["export_bundle"]["end_signed_hex"], "end line's signed bytes"
    print(f"export bundle: {count} events, whole")


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
    cp_bytes = checkpoint_bytes(cp)
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
    check_receipt(v)
    check_rotation(v)
    check_bundle(v, os.path.join(os.path.dirname(path), v["export_bundle"]["file"]))


if __name__ == "__main__":
    main(sys.argv[1])
