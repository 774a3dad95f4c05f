//! The admin's import of the clinic's records from its old system: the `Patient`,
//! `Practitioner`, `Coverage` and `Appointment` files of a FHIR R4 export (NDJSON, as Bulk
//! Data and Synthea write them), sent in that order whatever order they were chosen in,
//! since each refers to those before it; an export's other files are named and not sent.
//! Each file goes to the server in parts it takes (split on line boundaries), one after
//! another, each part a job the server runs; the screen shows how far it is, and then what
//! was imported, what was there already (an import again changes nothing) and what was
//! skipped, by source id or file and line and reason: the server's answers carry no value
//! of any record. The files' text (PHI) lives only in the task that sends it, never in a
//! signal, and nothing of it is shown; a lock stops the task at its next call (the core
//! refuses it), and what was imported stays. Below it, the practitioner directory the
//! imports fill ([`super::directory`]).

use clinicdesk_protocol::wire::{ImportJob, ImportSkip, ImportStatus, ImportTally};
use leptos::prelude::*;
use leptos::task::spawn_local;
use serde::Serialize;
use wasm_bindgen::JsCast;

use super::directory::DirectoryView;
use crate::bridge::call;
use crate::state::Ui;
use crate::widgets::ErrorLine;

/// The most one part holds: under the server's 2 MiB body limit, with room to spare.
const PART_MAX: usize = 1_900_000;

/// One part of a file: the number of the first line it holds, and its lines.
#[derive(Debug, PartialEq, Eq)]
struct Part {
    first_line: usize,
    text: String,
}

/// The resource types imported, in the order they go: each refers to those before it.
const TYPES: [&str; 4] = ["Patient", "Practitioner", "Coverage", "Appointment"];

/// Where a file goes in the order, by the type its name starts with (`Coverage.ndjson`,
/// `Coverage.000.ndjson`): `None` for an export's other types, which are not sent. A file
/// named otherwise goes first, with the patients: the server sorts the lines of one part.
fn import_order(name: &str) -> Option<usize> {
    let kind = name.split('.').next().unwrap_or_default();
    match TYPES.iter().position(|t| *t == kind) {
        Some(at) => Some(at),
        None if kind.starts_with(|c: char| c.is_ascii_uppercase()) => None,
        None => Some(0),
    }
}

/// Splits `text` into parts of at most `max` bytes on line boundaries; a single line longer
/// than that is refused by its number (the server could not take it either way).
fn split_parts(text: &str, max: usize) -> Result<Vec<Part>, usize> {
    let mut parts = Vec::new();
    let mut current = Part {
        first_line: 1,
        text: String::new(),
    };
    for (i, line) in text.lines().enumerate() {
        let number = i + 1;
        if line.len() + 1 > max {
            return Err(number);
        }
        if current.text.len() + line.len() + 1 > max {
            let next = Part {
                first_line: number,
                text: String::new(),
            };
            parts.push(std::mem::replace(&mut current, next));
        }
        current.text.push_str(line);
        current.text.push('\n');
    }
    if !current.text.trim().is_empty() {
        parts.push(current);
    }
    Ok(parts)
}

/// A skip as the file numbers its lines: the server counts a part's lines from 1.
fn in_file(mut skip: ImportSkip, file: &str, first_line: usize) -> ImportSkip {
    if let Some(n) = skip
        .resource
        .strip_prefix("line ")
        .and_then(|n| n.parse::<usize>().ok())
    {
        skip.resource = format!("{file} line {}", n + first_line - 1);
    }
    skip
}

/// Adds a job's counts by type to the running ones.
fn add_tallies(to: &mut Vec<ImportTally>, from: Vec<ImportTally>) {
    for t in from {
        match to.iter_mut().find(|have| have.resource == t.resource) {
            Some(have) => {
                have.imported += t.imported;
                have.unchanged += t.unchanged;
            }
            None => to.push(t),
        }
    }
}

/// "120 patients · 5 practitioners": what was imported, by type, in import order.
fn tally_text(tallies: &[ImportTally]) -> String {
    let named = |t: &ImportTally| {
        let n = t.imported + t.unchanged;
        let word = t.resource.to_lowercase();
        if n == 1 {
            format!("1 {word}")
        } else {
            format!("{n} {word}s")
        }
    };
    TYPES
        .iter()
        .filter_map(|kind| tallies.iter().find(|t| t.resource == *kind))
        .map(named)
        .collect::<Vec<_>>()
        .join(" · ")
}

/// Where the whole import stands.
#[derive(Clone, Default)]
struct Progress {
    /// How many parts the file makes; 0 while it is being read.
    parts: usize,
    /// The part running (from 1); all done when `finished`.
    part: usize,
    lines: u64,
    done: u64,
    imported: u64,
    unchanged: u64,
    by_type: Vec<ImportTally>,
    skipped: Vec<ImportSkip>,
    /// Files of the export's other types, not sent.
    not_sent: Vec<String>,
    finished: bool,
    /// Why it stopped before the end (the server's job failed or stalled).
    stopped: Option<String>,
}

#[derive(Serialize)]
struct PartArgs {
    ndjson: String,
}

#[derive(Serialize)]
struct JobArgs {
    import_id: String,
}

/// Waits `ms` milliseconds without holding the page.
async fn pause(ms: i32) {
    let promise = js_sys::Promise::new(&mut |resolve, _| {
        let _ = window().set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, ms);
    });
    let _ = wasm_bindgen_futures::JsFuture::from(promise).await;
}

/// The names and texts of the files chosen in the input `id`, if any are.
async fn chosen_files(id: &str) -> Option<Result<Vec<(String, String)>, String>> {
    let input = document()
        .get_element_by_id(id)?
        .dyn_into::<web_sys::HtmlInputElement>()
        .ok()?;
    let files = input.files()?;
    if files.length() == 0 {
        return None;
    }
    let mut out = Vec::new();
    for i in 0..files.length() {
        let Some(file) = files.get(i) else { continue };
        let text = wasm_bindgen_futures::JsFuture::from(file.text()).await;
        match text.ok().and_then(|t| t.as_string()) {
            Some(text) => out.push((file.name(), text)),
            None => return Some(Err(format!("{} could not be read as text.", file.name()))),
        }
    }
    Some(Ok(out))
}

/// The parts to send, file by file in import order, with the files not sent.
type Plan = (Vec<(String, Part)>, Vec<String>);

/// Orders the chosen files and splits each into parts of at most `max` bytes; a line
/// longer than that is refused by its file and number.
fn plan(mut files: Vec<(String, String)>, max: usize) -> Result<Plan, String> {
    let mut not_sent = Vec::new();
    files.retain(|(name, _)| {
        let sent = import_order(name).is_some();
        if !sent {
            not_sent.push(name.clone());
        }
        sent
    });
    files.sort_by_key(|(name, _)| (import_order(name), name.clone()));
    let mut parts = Vec::new();
    for (name, text) in files {
        let split = split_parts(&text, max).map_err(|line| {
            format!(
                "{name}: line {line} is longer than the server takes (about 1.9 MB): is this an NDJSON export?"
            )
        })?;
        parts.extend(split.into_iter().map(|p| (name.clone(), p)));
    }
    Ok((parts, not_sent))
}

/// Runs every part in turn, following each job to its end.
async fn run(
    ui: Ui,
    (parts, not_sent): Plan,
    progress: RwSignal<Option<Progress>>,
    finished: WriteSignal<u32>,
) {
    let mut p = Progress {
        parts: parts.len(),
        lines: parts
            .iter()
            .map(|(_, part)| part.text.lines().count() as u64)
            .sum(),
        not_sent,
        ..Progress::default()
    };
    // Whatever happens, the directory shows what the imports put in it.
    let _reload = OnDrop(move || {
        let _ = finished.try_update(|n| *n += 1);
    });
    let mut before = 0;
    for (i, (file, part)) in parts.into_iter().enumerate() {
        p.part = i + 1;
        progress.set(Some(p.clone()));
        let args = PartArgs { ndjson: part.text };
        let mut job = match call::<_, ImportJob>("start_import", &args).await {
            Ok(job) => job,
            Err(e) => {
                ui.fail(&e);
                p.stopped = Some(format!("Part {} of {} was not taken.", i + 1, p.parts));
                progress.set(Some(p));
                return;
            }
        };
        while job.status == ImportStatus::Running {
            p.done = before + job.done;
            progress.set(Some(p.clone()));
            pause(500).await;
            let args = JobArgs {
                import_id: job.id.to_string(),
            };
            match call::<_, ImportJob>("import_job", &args).await {
                Ok(next) => job = next,
                Err(e) => {
                    ui.fail(&e);
                    p.stopped = Some("The import's progress could not be read.".into());
                    progress.set(Some(p));
                    return;
                }
            }
        }
        before += job.total;
        p.done = before;
        p.imported += job.imported;
        p.unchanged += job.unchanged;
        add_tallies(&mut p.by_type, job.by_resource);
        p.skipped.extend(
            job.skipped
                .into_iter()
                .map(|s| in_file(s, &file, part.first_line)),
        );
        if job.status != ImportStatus::Done {
            p.stopped = Some(
                "The server stopped the import. What was imported stays: import the same files \
                 again to bring in the rest (nothing is imported twice)."
                    .into(),
            );
            progress.set(Some(p));
            return;
        }
    }
    p.finished = true;
    progress.set(Some(p));
}

/// Runs its closure when dropped: at the end of the import task, however it ends.
struct OnDrop<F: FnMut()>(F);

impl<F: FnMut()> Drop for OnDrop<F> {
    fn drop(&mut self) {
        (self.0)();
    }
}

#[component]
pub(super) fn ImportView() -> impl IntoView {
    let ui = expect_context::<Ui>();
    ui.error.set(None);
    let progress = RwSignal::new(None::<Progress>);
    let (imports, imports_done) = signal(0u32);
    let busy = move || {
        progress.with(|p| {
            p.as_ref()
                .is_some_and(|p| !p.finished && p.stopped.is_none())
        })
    };
    let start = move |_| {
        ui.error.set(None);
        // At once, before the file is read: the last import's result goes, and the button
        // waits.
        progress.set(Some(Progress::default()));
        let refuse = move |why: String| {
            progress.set(None);
            ui.error.set(Some(why));
        };
        spawn_local(async move {
            let files = match chosen_files("import-file").await {
                None => return refuse("Choose the export's files first.".into()),
                Some(Err(why)) => return refuse(why),
                Some(Ok(files)) => files,
            };
            match plan(files, PART_MAX) {
                Ok((parts, not_sent)) if parts.is_empty() => refuse(if not_sent.is_empty() {
                    "The files are empty.".into()
                } else {
                    format!(
                        "None of these files holds patients, practitioners, coverages or appointments: {}.",
                        not_sent.join(", ")
                    )
                }),
                Ok(plan) => run(ui, plan, progress, imports_done).await,
                Err(why) => refuse(why),
            }
        });
    };
    view! {
        <div class="card wide" id="admin-import">
            <h1>"Import records"</h1>
            <p class="lead">"Bring the clinic in from its old system: choose the "
                <code>"Patient"</code>", "<code>"Practitioner"</code>", "<code>"Coverage"</code>" and "
                <code>"Appointment"</code>" files of a FHIR R4 export (Bulk Data, Synthea), in any order. "
                "Each record keeps the old system's id, so importing the same files again adds nothing."</p>
            <label for="import-file">"Export files"</label>
            <input id="import-file" type="file" multiple=true accept=".ndjson,.jsonl,.json,.txt"/>
            <div class="actions">
                <button id="import-start" on:click=start disabled=busy>"Import"</button>
            </div>
            {move || progress.get().map(|p| {
                let state = if p.finished {
                    "Done.".to_owned()
                } else if p.stopped.is_some() {
                    "Stopped.".to_owned()
                } else if p.parts == 0 {
                    "Reading the file…".to_owned()
                } else {
                    format!("Importing part {} of {}…", p.part, p.parts)
                };
                view! {
                    <div class="import-progress" role="status" aria-live="polite">
                        <p id="import-state">{state}</p>
                        <progress id="import-progress" max=p.lines.to_string() value=p.done.to_string()></progress>
                        <p class="muted">{format!("{} of {} lines", p.done, p.lines)}</p>
                        <p id="import-counts">{format!("Imported {} · already here {} · skipped {}", p.imported, p.unchanged, p.skipped.len())}</p>
                        {(!p.by_type.is_empty()).then(|| view! {
                            <p class="muted" id="import-by-type">{tally_text(&p.by_type)}</p>
                        })}
                        {(!p.not_sent.is_empty()).then(|| view! {
                            <p class="muted" id="import-not-sent">{format!("Not imported (other types): {}", p.not_sent.join(", "))}</p>
                        })}
                        {p.stopped.map(|why| view! { <p class="notice warning" id="import-stopped">{why}</p> })}
                        {(!p.skipped.is_empty()).then(|| view! {
                            <table class="schedule" id="import-skips">
                                <thead><tr><th>"Not imported"</th><th>"Why"</th></tr></thead>
                                <tbody>
                                    {p.skipped.into_iter().map(|s| view! {
                                        <tr class="import-skip"><td>{s.resource}</td><td>{s.reason}</td></tr>
                                    }).collect_view()}
                                </tbody>
                            </table>
                        })}
                    </div>
                }
            })}
            <ErrorLine/>
        </div>
        <DirectoryView imports=imports/>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_split_on_lines_and_number_them() {
        let text = "aaaa\nbbbb\ncccc\n\ndd";
        let parts = split_parts(text, 10).unwrap();
        assert_eq!(
            parts,
            [
                Part {
                    first_line: 1,
                    text: "aaaa\nbbbb\n".into()
                },
                Part {
                    first_line: 3,
                    text: "cccc\n\ndd\n".into()
                },
            ]
        );
        assert_eq!(split_parts("short\nmuch too long a line\n", 10), Err(2));
        assert_eq!(split_parts("\n\n", 10), Ok(Vec::new()));
    }

    #[test]
    fn a_parts_skipped_line_is_numbered_in_the_file() {
        let skip = |resource: &str| ImportSkip {
            resource: resource.into(),
            reason: "not a Patient resource".into(),
        };
        assert_eq!(
            in_file(skip("line 2"), "Patient.ndjson", 41).resource,
            "Patient.ndjson line 42"
        );
        assert_eq!(
            in_file(skip("Patient/abc"), "Patient.ndjson", 41).resource,
            "Patient/abc"
        );
    }

    #[test]
    fn files_go_patients_first_and_other_types_are_not_sent() {
        let file = |name: &str| (name.to_owned(), "{}\n".to_owned());
        let (parts, not_sent) = plan(
            vec![
                file("Appointment.ndjson"),
                file("Encounter.000.ndjson"),
                file("Coverage.ndjson"),
                file("PractitionerRole.000.ndjson"),
                file("Patient.001.ndjson"),
                file("Practitioner.000.ndjson"),
                file("Patient.000.ndjson"),
                file("export.ndjson"),
            ],
            100,
        )
        .unwrap();
        let names: Vec<&str> = parts.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "Patient.000.ndjson",
                "Patient.001.ndjson",
                "export.ndjson",
                "Practitioner.000.ndjson",
                "Coverage.ndjson",
                "Appointment.ndjson",
            ]
        );
        assert_eq!(
            not_sent,
            ["Encounter.000.ndjson", "PractitionerRole.000.ndjson"]
        );
        assert!(
            plan(vec![("Patient.ndjson".into(), "x".repeat(200))], 100)
                .unwrap_err()
                .starts_with("Patient.ndjson: line 1")
        );
    }

    #[test]
    fn tallies_add_up_and_read_in_import_order() {
        let t = |resource: &str, imported, unchanged| ImportTally {
            resource: resource.into(),
            imported,
            unchanged,
        };
        let mut all = vec![t("Coverage", 1, 0)];
        add_tallies(&mut all, vec![t("Patient", 2, 1), t("Coverage", 0, 2)]);
        all.push(t("Practitioner", 1, 0));
        assert_eq!(
            tally_text(&all),
            "3 patients · 1 practitioner · 3 coverages"
        );
    }
}
