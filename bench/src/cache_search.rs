//! `cache_search_p99_ms`: finding a patient by the start of a name, a date of birth or an
//! MRN in one user's encrypted cache holding 100,000 patients (20,000 with `--quick`),
//! through the app's own `Cache::search_patients`, against reading one chart by id from the
//! same cache (the cheapest lookup there is).

use std::time::{Duration, Instant};

use clinicdesk_app::local::cache::{self, Cache};
use clinicdesk_app::local::patient_search::PatientQuery;
use clinicdesk_app::secrets::keychain::random_key;
use clinicdesk_protocol::Phi;
use clinicdesk_protocol::wire::{ClinicalAccess, Patient};
use uuid::Uuid;

use crate::metrics::Scale;
use crate::report::Metric;

const GIVEN: [&str; 12] = [
    "Testa",
    "Demo",
    "Sample",
    "Fictional",
    "Placeholder",
    "Mock",
    "Proxy",
    "Dummy",
    "Synth",
    "Example",
    "Stand",
    "Model",
];
const SYLLABLES: [&str; 16] = [
    "quil", "bright", "mar", "lind", "okon", "vale", "ash", "ford", "hal", "wick", "stone", "ber",
    "ton", "ley", "rid", "gard",
];

/// The i-th synthetic patient: 12 given names × 4096 family names, ~36,500 birth dates,
/// a unique MRN.
fn patient(i: usize) -> Patient {
    let family = format!(
        "{}{}{}",
        SYLLABLES[i % 16],
        SYLLABLES[(i / 16) % 16],
        SYLLABLES[(i / 256) % 16]
    );
    let mut family = family.chars();
    let family: String = family
        .next()
        .map(|c| c.to_ascii_uppercase())
        .into_iter()
        .chain(family)
        .collect();
    Patient {
        id: Uuid::now_v7(),
        name: Phi::new(format!("{} {family}", GIVEN[(i / 4096) % 12])),
        birth_date: Phi::new(birth_date(i)),
        mrn: Phi::new(format!("MRN-{:07}", 1_000_000 + i)),
        phone: Phi::new(format!("555-{:04}", i % 10_000)),
        clinical: None,
        clinical_access: ClinicalAccess::NotPermitted,
        break_glass: None,
    }
}

fn birth_date(i: usize) -> String {
    format!(
        "{}-{:02}-{:02}",
        1925 + (i * 7) % 100,
        1 + (i * 5) % 12,
        1 + (i * 3) % 28
    )
}

/// The 99th percentile of `samples`, in milliseconds.
pub(crate) fn p99_ms(mut samples: Vec<Duration>) -> f64 {
    samples.sort();
    let at = (samples.len() * 99).div_ceil(100).saturating_sub(1);
    samples[at].as_secs_f64() * 1000.0
}

pub fn cache_search_p99_ms(scale: Scale) -> anyhow::Result<Vec<Metric>> {
    let n = scale.pick(20_000, 100_000);
    let dir = tempfile::tempdir()?;
    let mut cache = Cache::open(&dir.path().join("cache.sqlite3"), &random_key()?)?;
    let ids: Vec<Uuid> = cache.transaction(|tx| {
        let mut ids = Vec::with_capacity(n);
        for i in 0..n {
            let p = patient(i);
            cache::put_patient(tx, &p, 1)?;
            ids.push(p.id);
        }
        Ok(ids)
    })?;

    // Queries as a front desk types them: 2 to 5 letters of a name (given or family), two
    // words, a date of birth in either form, an MRN with or without its prefix.
    let queries: Vec<String> = (0..3_000usize)
        .map(|k| {
            let i = (k * 7919) % n;
            let p = patient(i);
            let name = p.name.expose().to_lowercase();
            let words: Vec<&str> = name.split(' ').collect();
            match k % 6 {
                0 => words[1][..2 + k % 4].to_owned(),
                1 => words[0][..3].to_owned(),
                2 => format!("{} {}", &words[0][..3], &words[1][..3]),
                3 => birth_date(i),
                4 => format!("MRN-{:07}", 1_000_000 + i),
                _ => format!("{}", 1_000_000 + i),
            }
        })
        .collect();
    let mut search = Vec::with_capacity(queries.len());
    let mut found = 0usize;
    for text in &queries {
        let query = PatientQuery::parse(text).ok_or_else(|| anyhow::anyhow!("not a query"))?;
        let started = Instant::now();
        found += cache.search_patients(&query)?.len();
        search.push(started.elapsed());
    }
    anyhow::ensure!(
        found >= queries.len(),
        "searches found too little: the workload is wrong"
    );

    let mut by_id = Vec::with_capacity(queries.len());
    for k in 0..queries.len() {
        let id = ids[(k * 7919) % n];
        let started = Instant::now();
        anyhow::ensure!(
            cache.cached_patient(id)?.is_some(),
            "a cached chart is missing"
        );
        by_id.push(started.elapsed());
    }
    let value = p99_ms(search);
    Ok(vec![Metric::new(
        "cache_search_p99_ms",
        value,
        "ms",
        "cached_chart_by_id_p99_ms",
        p99_ms(by_id),
        "<= 10",
        value <= 10.0,
    )])
}
