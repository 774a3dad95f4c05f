//! `clinicdesk-server audit verify-export FILE`: checks a JSON Lines export offline, with
//! only the clinic's public keys: the checkpoint's signature, every event's hash, signature
//! (by the key of its chain, of the right recorder) and inclusion proof against that
//! checkpoint, the links between consecutive events of a chain present in the file, the
//! server's signed end line over the header, the count and every event hash in order, that
//! nothing follows that end, and, for an unfiltered export, that it holds every leaf of the
//! checkpoint's log (each leaf is checked once and in the log, so the count says it).

use std::collections::HashMap;
use std::io::BufRead;

use clinicdesk_protocol::audit::{Hash32, Recorder};
use clinicdesk_protocol::export::{
    ClinicKeys, EXPORT_FORMAT, EventDigest, ExportEnd, ExportFilters, ExportHeader, ExportLine,
};
use clinicdesk_protocol::merkle::verify_inclusion;
use uuid::Uuid;

use super::key::{PublicKey, verify_hex};

/// What a good export holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportSummary {
    pub clinic_id: Uuid,
    pub events: u64,
    pub tree_size: u64,
    pub checkpoint_issued_at_ms: i64,
    /// True when the keys came from the file itself rather than from the verifier.
    pub self_keyed: bool,
}

/// The first problem, by line (1-based) and, where there is one, event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}{}: {problem}", event.map(|e| format!(" (event {e})")).unwrap_or_default())]
pub struct ExportProblem {
    pub line: u64,
    pub event: Option<Uuid>,
    pub problem: &'static str,
}

fn problem(line: u64, event: Option<Uuid>, problem: &'static str) -> ExportProblem {
    ExportProblem {
        line,
        event,
        problem,
    }
}

/// Verifies an export read from `input`. `trusted` are the clinic's keys as the verifier
/// knows them (`audit keys`); without them the file's own keys are used, which proves the
/// file is intact and self-consistent but not who made it.
pub fn verify_export(
    input: impl BufRead,
    trusted: Option<&ClinicKeys>,
) -> Result<ExportSummary, ExportProblem> {
    let mut lines = input.split(b'\n').enumerate();
    let Some((_, Ok(header_line))) = lines.next() else {
        return Err(problem(1, None, "the file is empty or unreadable"));
    };
    let header: ExportHeader = match serde_json::from_slice(&header_line) {
        Ok(ExportLine::Header(h)) => h,
        _ => return Err(problem(1, None, "the first line is not an export header")),
    };
    if header.format != EXPORT_FORMAT {
        return Err(problem(1, None, "unknown export format"));
    }
    let keys = trusted.unwrap_or(&header.keys);
    if keys.clinic_id != header.clinic_id {
        return Err(problem(1, None, "the keys are another clinic's"));
    }
    // The server's keys over time: each signed what is dated in its period.
    let server_keys = keys.server_keys().ok_or(problem(
        1,
        None,
        "the server key is malformed or its rotations do not lead to it",
    ))?;
    let cp = &header.checkpoint;
    let checkpoint_key = server_keys.at(cp.checkpoint.issued_at_ms);
    if cp.checkpoint.clinic_id != header.clinic_id
        || !verify_hex(
            checkpoint_key,
            &cp.checkpoint.canonical_bytes(),
            &cp.signature,
        )
    {
        return Err(problem(
            1,
            None,
            "the checkpoint is not signed by the server key",
        ));
    }
    let mut digest = EventDigest::default();
    let mut count = 0u64;
    // Per chain, the (seq, prev_hash) of the last event seen: the file is newest first, so
    // an event at seq-1 must have the hash that one names.
    let mut later: HashMap<Uuid, (u64, Hash32)> = HashMap::new();
    let mut leaves = std::collections::HashSet::new();
    while let Some((i, raw)) = lines.next() {
        let n = i as u64 + 1;
        let raw = raw.map_err(|_| problem(n, None, "unreadable"))?;
        if raw.is_empty() {
            continue;
        }
        match serde_json::from_slice::<ExportLine>(&raw) {
            Ok(ExportLine::Event(x)) => {
                let e = &x.event;
                let here = Some(e.id);
                if e.clinic_id != header.clinic_id {
                    return Err(problem(n, here, "the event is another clinic's"));
                }
                let Some(chain) = keys.chains.get(&e.device_id) else {
                    return Err(problem(n, here, "no key for the event's chain"));
                };
                if chain.recorded_by != e.recorded_by {
                    return Err(problem(n, here, "the event claims another recorder"));
                }
                // The server chain's events: the server key of the event's time.
                let key =
                    match e.recorded_by {
                        Recorder::Server => *server_keys.at(e.occurred_at_ms),
                        Recorder::Device => PublicKey::from_hex(&chain.public_key)
                            .ok_or(problem(n, here, "the chain's key is malformed"))?,
                    };
                let bytes = e.canonical_bytes();
                if !verify_hex(&key, &bytes, &x.signature) {
                    return Err(problem(n, here, "the signature does not verify"));
                }
                let hash = e.hash();
                if verify_inclusion(
                    &cp.checkpoint.root_hash,
                    cp.checkpoint.tree_size,
                    x.leaf_index,
                    &hash,
                    &x.inclusion,
                )
                .is_err()
                {
                    return Err(problem(n, here, "the event is not in the signed log"));
                }
                if !leaves.insert(x.leaf_index) {
                    return Err(problem(n, here, "the event appears twice"));
                }
                if let Some((seq, prev)) = later.get(&e.device_id)
                    && e.device_seq + 1 == *seq
                    && *prev != hash
                {
                    return Err(problem(
                        n,
                        here,
                        "its chain link to the next event is broken",
                    ));
                }
                later.insert(e.device_id, (e.device_seq, e.prev_hash));
                digest.push(&hash);
                count += 1;
            }
            Ok(ExportLine::End(end)) => {
                let signed = ExportEnd::signed_bytes(&header_line, count, &digest.finish());
                let end_key = server_keys.at(header.exported_at_ms);
                if end.events != count || !verify_hex(end_key, &signed, &end.signature) {
                    return Err(problem(
                        n,
                        None,
                        "the signed end does not match the lines before it (lines added, removed or reordered)",
                    ));
                }
                // What the end signs is all there is: a line after it is not part of it.
                for (j, rest) in lines.by_ref() {
                    let rest = rest.map_err(|_| problem(j as u64 + 1, None, "unreadable"))?;
                    if !rest.is_empty() {
                        return Err(problem(j as u64 + 1, None, "a line follows the signed end"));
                    }
                }
                // Unfiltered, the export is the whole log at the checkpoint: the end line's
                // signature alone cannot promise that (the key's holder signs any subset).
                if header.filters == ExportFilters::default() && count != cp.checkpoint.tree_size {
                    return Err(problem(
                        n,
                        None,
                        "an unfiltered export must hold every leaf of the signed log, and some are missing",
                    ));
                }
                return Ok(ExportSummary {
                    clinic_id: header.clinic_id,
                    events: count,
                    tree_size: cp.checkpoint.tree_size,
                    checkpoint_issued_at_ms: cp.checkpoint.issued_at_ms,
                    self_keyed: trusted.is_none(),
                });
            }
            _ => return Err(problem(n, None, "not an event or end line")),
        }
    }
    Err(problem(
        count + 2,
        None,
        "the file ends without the server's signed end line (truncated)",
    ))
}
