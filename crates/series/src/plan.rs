//! Listing and selecting a series before anything is downloaded, and fetching it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use xlpatch_hub::{Checkpoint, Hub, Selection, SeriesSpec};

use crate::error::*;

/// One checkpoint of a series.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Planned {
    /// The checkpoint's name in results (its revision, `/` as `_`).
    pub name: String,
    /// Where it comes from.
    pub checkpoint: Checkpoint,
    /// The earlier checkpoint of the series with the same weights, if any.
    pub duplicate_of: Option<String>,
}

/// A series: the specs, what each selected, and the checkpoints in step order.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The specs as given.
    pub specs: Vec<String>,
    /// What each spec selected (skipped names included).
    pub selections: Vec<(SeriesSpec, Selection)>,
    /// The checkpoints, in series order.
    pub checkpoints: Vec<Planned>,
}

/// Lists and selects the series of `specs` (each `hf://…`).
pub fn plan(hub: &Hub, specs: &[String]) -> Result<Plan, SeriesError> {
    let mut selections = Vec::new();
    let mut checkpoints: Vec<Planned> = Vec::new();
    for text in specs {
        let spec = SeriesSpec::parse(text)?;
        let (sel, cks) = hub.resolve(&spec)?;
        for ck in cks {
            let name = ck.revision.replace('/', "_");
            if checkpoints.iter().any(|p| p.name == name) {
                return Err(SeriesError::Inconsistent(format!(
                    "two checkpoints are named {name:?} (results name checkpoints by revision); list each revision once"
                )));
            }
            checkpoints.push(Planned {
                name,
                checkpoint: ck,
                duplicate_of: None,
            });
        }
        selections.push((spec, sel));
    }
    // Series order across specs: by step where every checkpoint has one.
    if checkpoints.iter().all(|p| p.checkpoint.step.is_some()) {
        checkpoints.sort_by_key(|p| p.checkpoint.step);
    }
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    for p in &mut checkpoints {
        match seen.get(&p.checkpoint.weights_hash) {
            Some(first) => p.duplicate_of = Some(first.clone()),
            None => {
                seen.insert(p.checkpoint.weights_hash.clone(), p.name.clone());
            }
        }
    }
    Ok(Plan {
        specs: specs.to_vec(),
        selections,
        checkpoints,
    })
}

pub(crate) fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

/// `series list`: what the specs select, by step, with what was skipped and why.
pub fn format_plan(plan: &Plan) -> String {
    let mut s = String::new();
    for (spec, sel) in &plan.selections {
        s.push_str(&format!("{spec}: {} selected", sel.selected.len()));
        if sel.thinned > 0 {
            s.push_str(&format!(", {} left out by the policy", sel.thinned));
        }
        if sel.out_of_range > 0 {
            s.push_str(&format!(", {} outside the step range", sel.out_of_range));
        }
        s.push('\n');
        if !sel.unparsed.is_empty() {
            s.push_str(&format!(
                "  skipped (no step in the name): {}\n",
                sel.unparsed.join(", ")
            ));
        }
    }
    s.push_str(&format!(
        "{:<36} {:>12} {:>10} {:<12} {:>12}  note\n",
        "revision", "step", "tokens", "commit", "download"
    ));
    for p in &plan.checkpoints {
        let ck = &p.checkpoint;
        let tokens = ck
            .tokens
            .map(|t| format!("{:.1}B", t as f64 / 1e9))
            .unwrap_or("-".into());
        let note = p
            .duplicate_of
            .as_ref()
            .map(|d| format!("same weights as {d}"))
            .unwrap_or_default();
        s.push_str(&format!(
            "{:<36} {:>12} {:>10} {:<12} {:>12}  {note}\n",
            ck.revision,
            ck.step.map(|x| x.to_string()).unwrap_or("-".into()),
            tokens,
            &ck.commit[..ck.commit.len().min(12)],
            mb(ck.download_bytes()),
        ));
    }
    let total: u64 = plan
        .checkpoints
        .iter()
        .map(|p| p.checkpoint.download_bytes())
        .sum();
    s.push_str(&format!(
        "{} checkpoints, {} to download in all\n",
        plan.checkpoints.len(),
        mb(total)
    ));
    s
}

/// The groups of checkpoints with identical weights (by content hash), each in series order.
pub fn duplicates(plan: &Plan) -> Vec<Vec<String>> {
    let mut groups: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for p in &plan.checkpoints {
        let first = p.duplicate_of.as_deref().unwrap_or(&p.name);
        groups.entry(first).or_default().push(p.name.clone());
    }
    let mut out: Vec<Vec<String>> = groups.into_values().filter(|g| g.len() > 1).collect();
    out.sort();
    out
}

/// `series fetch`: downloads (and checks) every checkpoint into the cache.
pub fn fetch(hub: &Hub, plan: &Plan, log: &(dyn Fn(&str) + Sync)) -> Result<(), SeriesError> {
    for p in &plan.checkpoints {
        hub.download(&p.checkpoint, &mut |m| log(m))?;
        log(&format!("fetched {}", p.name));
    }
    Ok(())
}
