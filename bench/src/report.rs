//! The benchmark report: `report.json` (an array of metric objects, the format the audit
//! and desktop issues share) and `report.md` (the same as a table).

use std::path::Path;

use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct Metric {
    pub name: &'static str,
    pub value: f64,
    pub unit: &'static str,
    pub baseline_name: &'static str,
    pub baseline_value: f64,
    /// `value / baseline_value`.
    pub ratio: f64,
    /// The target, in words (e.g. `>= 10000`).
    pub target: &'static str,
    pub met: bool,
}

impl Metric {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        name: &'static str,
        value: f64,
        unit: &'static str,
        baseline_name: &'static str,
        baseline_value: f64,
        target: &'static str,
        met: bool,
    ) -> Self {
        Self {
            name,
            value,
            unit,
            baseline_name,
            baseline_value,
            ratio: if baseline_value == 0.0 {
                0.0
            } else {
                value / baseline_value
            },
            target,
            met,
        }
    }
}

pub fn table(metrics: &[Metric]) -> String {
    let mut out = String::from(
        "| metric | value | unit | baseline | baseline value | ratio | target | met |\n|---|---:|---|---|---:|---:|---|---|\n",
    );
    for m in metrics {
        out.push_str(&format!(
            "| {} | {:.2} | {} | {} | {:.2} | {:.3} | {} | {} |\n",
            m.name,
            m.value,
            m.unit,
            m.baseline_name,
            m.baseline_value,
            m.ratio,
            m.target,
            if m.met { "yes" } else { "no" }
        ));
    }
    out
}

pub fn write(dir: &Path, metrics: &[Metric]) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("report.json"), serde_json::to_vec_pretty(metrics)?)?;
    std::fs::write(dir.join("report.md"), table(metrics))?;
    Ok(())
}
