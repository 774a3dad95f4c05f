//! Finding a patient in a user's encrypted cache by what the front desk has at hand: the
//! start of a name (any of its words: "quill" finds "Testa Quillfeather"), a date of birth
//! (`1961-04-12` or `04/12/1961`), or a medical record number (any text with a digit:
//! `MRN-100001`, `mrn 100001`, or only its digits). The search keys live in indexed columns of the same SQLCipher file as the
//! records, so nothing about a patient is ever outside the encryption.

use clinicdesk_protocol::app::PatientHit;
use clinicdesk_protocol::wire::Patient;
use rusqlite::{Connection, Transaction, params};

use super::db::DbError;

/// The most hits one search returns.
pub const MAX_HITS: usize = 20;

/// What the user typed, as one of the three kinds of search.
#[derive(Clone, PartialEq, Eq)]
pub enum PatientQuery {
    /// Lowercased words; each must start a word of the name.
    Name(Vec<String>),
    /// `YYYY-MM-DD`.
    BirthDate(String),
    /// Letters and digits of an MRN, uppercased (`MRN100001`).
    Mrn(String),
    /// The digits of an MRN (`100001`).
    MrnDigits(String),
}

/// Debug without the query: what was typed may be a name.
impl std::fmt::Debug for PatientQuery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PatientQuery::Name(_) => "PatientQuery::Name(<redacted>)",
            PatientQuery::BirthDate(_) => "PatientQuery::BirthDate(<redacted>)",
            PatientQuery::Mrn(_) | PatientQuery::MrnDigits(_) => "PatientQuery::Mrn(<redacted>)",
        })
    }
}

impl PatientQuery {
    /// `None` for text that is not a search (empty, or too short to mean anything).
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        if let Some(date) = iso_date(text).or_else(|| us_date(text)) {
            return Some(PatientQuery::BirthDate(date));
        }
        // Names have no digits; record numbers do, whatever the clinic's format.
        if text.chars().any(|c| c.is_ascii_digit()) {
            return if text.chars().all(|c| c.is_ascii_digit()) {
                (text.len() >= 3).then(|| PatientQuery::MrnDigits(text.to_owned()))
            } else {
                Some(PatientQuery::Mrn(mrn_key(text)))
            };
        }
        let words = name_words(text);
        (!words.is_empty()).then_some(PatientQuery::Name(words))
    }
}

fn iso_date(text: &str) -> Option<String> {
    let b = text.as_bytes();
    let shape = b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit());
    shape.then(|| text.to_owned())
}

/// `MM/DD/YYYY`, as US front desks write it.
fn us_date(text: &str) -> Option<String> {
    let mut parts = text.split('/');
    let (m, d, y) = (parts.next()?, parts.next()?, parts.next()?);
    let digits = |s: &str, n: std::ops::RangeInclusive<usize>| {
        n.contains(&s.len()) && s.chars().all(|c| c.is_ascii_digit())
    };
    (parts.next().is_none() && digits(m, 1..=2) && digits(d, 1..=2) && digits(y, 4..=4))
        .then(|| format!("{y}-{m:0>2}-{d:0>2}"))
}

/// The words of a name, lowercased: the keys a name prefix is matched against.
pub fn name_words(name: &str) -> Vec<String> {
    name.split(|c: char| c.is_whitespace() || c == ',')
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// An MRN's letters and digits, uppercased.
pub fn mrn_key(mrn: &str) -> String {
    mrn.chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

fn mrn_digits(mrn: &str) -> String {
    mrn.chars().filter(char::is_ascii_digit).collect()
}

/// The cache schema's search keys (a cache migration).
pub const MIGRATION: &str = "
-- Search keys of cached patients. Copies cached before they existed are dropped: the cache
-- is only a copy, and each chart comes back on its next online view.
DELETE FROM patients;
ALTER TABLE patients ADD COLUMN birth_date TEXT NOT NULL DEFAULT '';
ALTER TABLE patients ADD COLUMN mrn_key TEXT NOT NULL DEFAULT '';
ALTER TABLE patients ADD COLUMN mrn_digits TEXT NOT NULL DEFAULT '';
ALTER TABLE patients ADD COLUMN sort_name TEXT NOT NULL DEFAULT '';
CREATE INDEX patients_birth_date ON patients (birth_date);
CREATE INDEX patients_mrn_key ON patients (mrn_key);
CREATE INDEX patients_mrn_digits ON patients (mrn_digits);
CREATE TABLE patient_name_words (
    word TEXT NOT NULL,
    patient_id TEXT NOT NULL REFERENCES patients(id) ON DELETE CASCADE,
    PRIMARY KEY (word, patient_id)
) WITHOUT ROWID;
CREATE INDEX patient_name_words_patient ON patient_name_words (patient_id);
";

/// Writes the search keys of a patient just stored in `patients`.
pub fn index(tx: &Transaction<'_>, patient: &Patient) -> Result<(), DbError> {
    let id = patient.id.to_string();
    let mrn = patient.mrn.expose();
    tx.execute(
        "UPDATE patients SET birth_date = ?2, mrn_key = ?3, mrn_digits = ?4, sort_name = ?5
         WHERE id = ?1",
        params![
            id,
            patient.birth_date.expose(),
            mrn_key(mrn),
            mrn_digits(mrn),
            patient.name.expose().to_lowercase()
        ],
    )?;
    tx.execute(
        "DELETE FROM patient_name_words WHERE patient_id = ?1",
        [&id],
    )?;
    let mut insert = tx.prepare_cached(
        "INSERT OR IGNORE INTO patient_name_words (word, patient_id) VALUES (?1, ?2)",
    )?;
    for word in name_words(patient.name.expose()) {
        insert.execute(params![word, id])?;
    }
    Ok(())
}

/// Drops the search keys of a patient taken out of the cache.
pub fn forget(tx: &Transaction<'_>, id: uuid::Uuid) -> Result<(), DbError> {
    tx.execute(
        "DELETE FROM patient_name_words WHERE patient_id = ?1",
        [id.to_string()],
    )?;
    Ok(())
}

/// At most [`MAX_HITS`] cached patients matching `query`, listed by name.
pub fn search(conn: &Connection, query: &PatientQuery) -> Result<Vec<PatientHit>, DbError> {
    // Each kind of search is one indexed lookup; names are then checked word by word.
    let (sql, key) = match query {
        PatientQuery::BirthDate(d) => (
            "SELECT json FROM patients WHERE birth_date = ?1 ORDER BY sort_name LIMIT ?2",
            d.clone(),
        ),
        PatientQuery::Mrn(m) => (
            "SELECT json FROM patients WHERE mrn_key = ?1 ORDER BY sort_name LIMIT ?2",
            m.clone(),
        ),
        PatientQuery::MrnDigits(m) => (
            "SELECT json FROM patients WHERE mrn_digits = ?1 ORDER BY sort_name LIMIT ?2",
            m.clone(),
        ),
        PatientQuery::Name(words) => (
            // The longest word narrows most. A prefix range on the primary key, read in its
            // order, stops after the page instead of sorting every match: common prefixes
            // ("sa") cost no more than rare ones.
            "SELECT p.json FROM patient_name_words w JOIN patients p ON p.id = w.patient_id
             WHERE w.word >= ?1 AND w.word < ?1 || char(1114111)
             ORDER BY w.word, w.patient_id LIMIT ?2",
            words
                .iter()
                .max_by_key(|w| w.len())
                .cloned()
                .unwrap_or_default(),
        ),
    };
    // Name searches read more rows than they return: the other words filter them.
    let fetch = match query {
        PatientQuery::Name(words) if words.len() > 1 => MAX_HITS * 50,
        PatientQuery::Name(_) => MAX_HITS * 2,
        _ => MAX_HITS,
    };
    let mut stmt = conn.prepare_cached(sql)?;
    let rows = stmt.query_map(params![key, fetch as i64], |r| r.get::<_, String>(0))?;
    let mut hits: Vec<PatientHit> = Vec::new();
    for json in rows {
        let patient: Patient = serde_json::from_str(&json?).map_err(|_| DbError::Malformed)?;
        // Two words of one name can share the prefix ("Quill Quillon").
        if hits.iter().any(|h| h.id == patient.id) {
            continue;
        }
        if let PatientQuery::Name(words) = query {
            let have = name_words(patient.name.expose());
            if !words
                .iter()
                .all(|w| have.iter().any(|h| h.starts_with(w.as_str())))
            {
                continue;
            }
        }
        hits.push(PatientHit {
            id: patient.id,
            name: patient.name,
            birth_date: patient.birth_date,
            mrn: patient.mrn,
        });
        if hits.len() == MAX_HITS {
            break;
        }
    }
    hits.sort_by_cached_key(|h| h.name.expose().to_lowercase());
    Ok(hits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_text_becomes_the_right_kind_of_search() {
        assert_eq!(
            PatientQuery::parse(" 1961-04-12 "),
            Some(PatientQuery::BirthDate("1961-04-12".into()))
        );
        assert_eq!(
            PatientQuery::parse("4/12/1961"),
            Some(PatientQuery::BirthDate("1961-04-12".into()))
        );
        assert_eq!(
            PatientQuery::parse("mrn-100001"),
            Some(PatientQuery::Mrn("MRN100001".into()))
        );
        assert_eq!(
            PatientQuery::parse("100001"),
            Some(PatientQuery::MrnDigits("100001".into()))
        );
        assert_eq!(
            PatientQuery::parse("Quill, Tes"),
            Some(PatientQuery::Name(vec!["quill".into(), "tes".into()]))
        );
        assert_eq!(
            PatientQuery::parse("A-77/31"),
            Some(PatientQuery::Mrn("A7731".into()))
        );
        assert_eq!(PatientQuery::parse("   "), None);
        assert_eq!(PatientQuery::parse("12"), None);
        assert!(!format!("{:?}", PatientQuery::parse("Quill").unwrap()).contains("quill"));
    }
}
