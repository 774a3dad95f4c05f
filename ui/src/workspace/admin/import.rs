//! The admin's import of the clinic's patients from its old system: the `Patient` lines of a
//! FHIR R4 export (NDJSON, as Bulk Data and Synthea write it). The file goes to the server
//! in parts it takes (split on line boundaries), one after another, each part a job the
//! server runs; the screen shows how far it is, and then what was imported, what was there
//! already (an import again changes nothing) and what was skipped, by source id or line and
//! reason: the server's answers carry no value of any record. The file's text (PHI) lives
//! only in the task that sends it, never in a signal, and nothing of it is shown; a lock
//! stops the task at its next call (the core refuses it), and what was imported stays.

use clinicdesk_protocol::wire::{ImportJob, ImportSkip, ImportStatus};
use leptos::prelude::*;
use leptos::task::spawn_local;
use serde::Serialize;
use wasm_bindgen::JsCast;

use crate::bridge::call;
use crate::state::Ui;
use crate::widgets::ErrorLine;

/// The most one part holds: under the server's 2 MiB body limit, with room to spare.
const PART_MAX: usize = 1_900_000;

/// One part of the file: the number of the first line it holds, and its lines.
#[derive(Debug, PartialEq, Eq)]
struct Part {
    first_line: usize,
    text: String,
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

/// A skip as the whole file numbers its lines: the server counts a part's lines from 1.
fn in_file(mut skip: ImportSkip, first_line: usize) -> ImportSkip {
    if let Some(n) = skip
        .resource
        .strip_prefix("line ")
        .and_then(|n| n.parse::<usize>().ok())
    {
        skip.resource = format!("line {}", n + first_line - 1);
    }
    skip
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
    skipped: Vec<ImportSkip>,
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

/// The text of the file chosen in the input `id`, if one is.
async fn chosen_file(id: &str) -> Option<Result<String, String>> {
    let input = document()
        .get_element_by_id(id)?
        .dyn_into::<web_sys::HtmlInputElement>()
        .ok()?;
    let file = input.files()?.get(0)?;
    let text = wasm_bindgen_futures::JsFuture::from(file.text()).await;
    Some(
        text.ok()
            .and_then(|t| t.as_string())
            .ok_or_else(|| "The file could not be read as text.".to_owned()),
    )
}

/// Runs every part in turn, following each job to its end.
async fn run(ui: Ui, parts: Vec<Part>, progress: RwSignal<Option<Progress>>) {
    let mut p = Progress {
        parts: parts.len(),
        lines: parts
            .iter()
            .map(|part| part.text.lines().count() as u64)
            .sum(),
        ..Progress::default()
    };
    let mut before = 0;
    for (i, part) in parts.into_iter().enumerate() {
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
        p.skipped
            .extend(job.skipped.into_iter().map(|s| in_file(s, part.first_line)));
        if job.status != ImportStatus::Done {
            p.stopped = Some(
                "The server stopped the import. What was imported stays: import the same file \
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

#[component]
pub(super) fn ImportView() -> impl IntoView {
    let ui = expect_context::<Ui>();
    ui.error.set(None);
    let progress = RwSignal::new(None::<Progress>);
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
            let text = match chosen_file("import-file").await {
                None => return refuse("Choose the export file first.".into()),
                Some(Err(why)) => return refuse(why),
                Some(Ok(text)) => text,
            };
            match split_parts(&text, PART_MAX) {
                Ok(parts) if parts.is_empty() => refuse("The file is empty.".into()),
                Ok(parts) => run(ui, parts, progress).await,
                Err(line) => refuse(format!(
                    "Line {line} is longer than the server takes (about 1.9 MB): is this an NDJSON export?"
                )),
            }
        });
    };
    view! {
        <div class="card wide" id="admin-import">
            <h1>"Import patients"</h1>
            <p class="lead">"Bring the clinic's patients in from its old system: choose the "
                <code>"Patient.ndjson"</code>" file of a FHIR R4 export (Bulk Data, Synthea). "
                "Each patient's record keeps the old system's id, so importing the same file again adds nothing."</p>
            <label for="import-file">"Export file"</label>
            <input id="import-file" type="file" accept=".ndjson,.jsonl,.json,.txt"/>
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
            reason: "not a Patient".into(),
        };
        assert_eq!(in_file(skip("line 2"), 41).resource, "line 42");
        assert_eq!(in_file(skip("Patient/abc"), 41).resource, "Patient/abc");
    }
}
