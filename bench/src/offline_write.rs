//! `offline_write_ms`: the p99 of one change made offline at the front desk (a patient
//! registered: the signed audit event in the outbox, then the queue row and the change's
//! effect on the cached copy in one cache transaction, each commit durable), through the
//! real app core with its SQLCipher files and keychain. Against the p99 of one audited read
//! of the same cache offline (the registration record read back: one signed event, one
//! commit). The server is gone before the first write: its runtime is dropped, and with it
//! every connection, so the core unlocks offline as a workstation does when the network is.

use std::time::Instant;

use clinicdesk_protocol::app::ChangeState;
use clinicdesk_protocol::wire::{HumanName, PatientFields};

use crate::app_core::{enroll_and_sign_in, new_core};
use crate::audit::{runtime, served};
use crate::cache_search::p99_ms;
use crate::metrics::Scale;
use crate::report::Metric;

fn walk_in(i: usize) -> PatientFields {
    PatientFields {
        name: Some(HumanName {
            given: "Bench".into(),
            family: format!("Offline{i:05}"),
            preferred: String::new(),
        }),
        birth_date: Some(format!("19{:02}-0{}-1{}", 40 + i % 60, 1 + i % 9, i % 10)),
        phone: Some(format!("555-{:04}", i % 10_000)),
        ..PatientFields::default()
    }
}

pub fn offline_write_ms(scale: Scale) -> anyhow::Result<Vec<Metric>> {
    let writes = scale.pick(100, 1_000);
    let dir = tempfile::tempdir()?;
    let (core, password) = {
        let rt = runtime()?;
        let s = rt.block_on(served())?;
        let core = new_core(&s, dir.path(), None)?;
        rt.block_on(async {
            enroll_and_sign_in(&core, &s, "frontdesk", &s.front_desk_password).await?;
            core.lock();
            anyhow::Ok(())
        })?;
        (core, s.front_desk_password.clone())
        // The server's runtime ends here, and every connection with it.
    };
    let rt = runtime()?;
    let (written, read) = rt.block_on(async {
        let status = core.unlock(&password).await?;
        anyhow::ensure!(status.offline_session, "the unlock reached a server");
        let mut written = Vec::with_capacity(writes);
        let mut ids = Vec::with_capacity(writes);
        for i in 0..writes {
            let started = Instant::now();
            let change = core.register_patient(walk_in(i)).await?;
            written.push(started.elapsed());
            anyhow::ensure!(change.state == ChangeState::Waiting, "not queued");
            ids.push(change.record_id);
        }
        let mut read = Vec::with_capacity(writes);
        for id in ids {
            let started = Instant::now();
            core.patient_record(id).await?;
            read.push(started.elapsed());
        }
        anyhow::Ok((written, read))
    })?;
    let (write, read) = (p99_ms(written), p99_ms(read));
    Ok(vec![Metric::new(
        "offline_write_ms",
        write,
        "ms",
        "offline_audited_read_ms",
        read,
        "<= 20",
        write <= 20.0,
    )])
}
