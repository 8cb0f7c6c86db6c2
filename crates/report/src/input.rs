//! Reading a results directory through `xlpatch-results`: the rows, `run.json` (the models
//! and the study), `prompts.jsonl` (the prompts behind each row), the stored config's text,
//! and the concept table the study names.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use xlpatch_concepts::ConceptTable;
use xlpatch_results::{
    CONFIG_FILE, Dropped, JSONL_FILE, ModelEntry, PROMPTS_FILE, PromptRecord, RUN_FILE, Role, Row,
    RunFile, Setting, Study, read_prompts, read_rows_noting_dropped,
};

/// The record a hub series sweep writes beside its results (`crates/series`): the
/// checkpoints with identical weights are read from it.
const SERIES_FILE: &str = "series.json";

use crate::Error;

/// The prompts of a sweep, by item (`fr-de/source>target`).
#[derive(Debug, Default)]
pub(crate) struct Prompts {
    targets: HashMap<String, PromptRecord>,
    sources: HashMap<(String, Setting), Vec<PromptRecord>>,
}

impl Prompts {
    /// The target prompt of `item`.
    pub fn target(&self, item: &str) -> Option<&PromptRecord> {
        self.targets.get(item)
    }

    /// The source prompts of `item` under `setting`.
    pub fn sources(&self, item: &str, setting: Setting) -> &[PromptRecord] {
        self.sources
            .get(&(item.to_string(), setting))
            .map_or(&[], Vec::as_slice)
    }
}

/// A results directory, read.
#[derive(Debug)]
pub(crate) struct Results {
    pub dir: PathBuf,
    pub rows: Vec<Row>,
    /// What the report needs of the sweep's config.
    pub study: Study,
    pub config_text: String,
    /// The models in training order (step, then name).
    pub models: Vec<ModelEntry>,
    pub prompts: Prompts,
    /// Settings in report order ([`Setting::ALL`]'s).
    pub settings: Vec<Setting>,
    /// Target pairs `(in, out)` in config order, then any other found in the rows.
    pub pairs: Vec<(String, String)>,
    /// The number of start layers (one more than the largest in the rows).
    pub layers: usize,
    /// What `results.jsonl` held that is not in `rows` (an interrupted unit, a torn line).
    pub dropped: Dropped,
    /// Checkpoints with the same weights as an earlier one: (checkpoint, the earlier one).
    pub identical: Vec<(String, String)>,
}

fn input_err(path: &Path, what: impl Into<String>) -> Error {
    Error::Input {
        path: path.to_path_buf(),
        what: what.into(),
    }
}

fn read_text(path: &Path) -> Result<String, Error> {
    std::fs::read_to_string(path).map_err(|e| {
        let hint = if e.kind() == std::io::ErrorKind::NotFound {
            " (is this the --out directory of `xlpatch sweep`?)"
        } else {
            ""
        };
        input_err(path, format!("cannot read: {e}{hint}"))
    })
}

impl Results {
    /// Reads the results directory `dir`.
    pub fn read(dir: &Path) -> Result<Results, Error> {
        if !dir.is_dir() {
            return Err(input_err(dir, "not a directory"));
        }
        let jsonl = dir.join(JSONL_FILE);
        if !jsonl.is_file() {
            return Err(input_err(
                &jsonl,
                "missing (is this the --out directory of `xlpatch sweep`?)",
            ));
        }
        let (rows, dropped) = read_rows_noting_dropped(dir)?;
        if rows.is_empty() {
            return Err(input_err(&jsonl, "holds no complete unit of rows"));
        }
        let config_path = dir.join(CONFIG_FILE);
        let config_text = read_text(&config_path)?;
        let run = RunFile::read(dir)?;
        // Results written before run.json recorded the study: read it from the config.
        let study = match run.study {
            Some(study) => study,
            None => Study::from_config_toml(&config_text).ok_or_else(|| {
                input_err(
                    &config_path,
                    format!(
                        "{RUN_FILE} does not record the study and this config does not name \
                         `concepts` and `pairs` on top-level lines"
                    ),
                )
            })?,
        };
        let mut models = run.models;
        // Checkpoints that have rows but no entry in run.json still get a place.
        for r in &rows {
            if !models.iter().any(|m| m.checkpoint == r.checkpoint) {
                models.push(ModelEntry {
                    architecture: String::new(),
                    checkpoint: r.checkpoint.clone(),
                    hash: r.model_hash.clone(),
                    step: r.step,
                });
            }
        }
        models.retain(|m| rows.iter().any(|r| r.checkpoint == m.checkpoint));
        models.sort_by(|a, b| (a.step, &a.checkpoint).cmp(&(b.step, &b.checkpoint)));

        let prompts = index_prompts(&dir.join(PROMPTS_FILE))?;

        // Report order: the order of `Setting::ALL`.
        let mut settings: Vec<Setting> = rows.iter().map(|r| r.setting).collect();
        settings.sort();
        settings.dedup();

        let mut pairs: Vec<(String, String)> = study
            .pairs
            .iter()
            .map(|[a, b]| (a.clone(), b.clone()))
            .filter(|p| {
                rows.iter()
                    .any(|r| (&r.in_lang, &r.out_lang) == (&p.0, &p.1))
            })
            .collect();
        for r in &rows {
            let p = (r.in_lang.clone(), r.out_lang.clone());
            if !pairs.contains(&p) {
                pairs.push(p);
            }
        }
        // Start layers come from the file and size what the report allocates per layer. A
        // sweep may select start layers (`start_layers`), so a unit's row count does not bound
        // them; no model has anywhere near MAX_LAYERS blocks.
        const MAX_LAYERS: usize = 1 << 14;
        if let Some(r) = rows.iter().find(|r| r.start_layer >= MAX_LAYERS) {
            return Err(input_err(
                &jsonl,
                format!(
                    "unit {}: start_layer {} is not a layer of a model (at most {MAX_LAYERS})",
                    r.unit, r.start_layer
                ),
            ));
        }
        let layers = rows.iter().map(|r| r.start_layer).max().unwrap_or(0) + 1;
        let identical = identical_checkpoints(dir, &models)?;
        Ok(Results {
            dir: dir.to_path_buf(),
            rows,
            study,
            config_text,
            models,
            prompts,
            settings,
            pairs,
            layers,
            dropped,
            identical,
        })
    }

    /// The concept table: `explicit` if given, else the study's `concepts` taken from the
    /// current directory, then from the results directory.
    pub fn concept_table(&self, explicit: Option<&Path>) -> Result<ConceptTable, Error> {
        let named = Path::new(&self.study.concepts);
        let path = match explicit {
            Some(p) => p.to_path_buf(),
            None => [named.to_path_buf(), self.dir.join(named)]
                .into_iter()
                .find(|p| p.is_dir())
                .ok_or_else(|| {
                    input_err(
                        &self.dir.join(CONFIG_FILE),
                        format!(
                            "the concept table {:?} it names is found neither in the current \
                             directory nor in the results directory; pass --concepts <dir>",
                            self.study.concepts
                        ),
                    )
                })?,
        };
        ConceptTable::load(&path).map_err(|source| Error::Concepts {
            path,
            source: Box::new(source),
        })
    }

    /// The model of checkpoint `name`.
    pub fn model(&self, name: &str) -> Option<&ModelEntry> {
        self.models.iter().find(|m| m.checkpoint == name)
    }

    /// Checkpoint names in training order.
    pub fn checkpoints(&self) -> Vec<&str> {
        self.models.iter().map(|m| m.checkpoint.as_str()).collect()
    }

    /// A checkpoint's short label: `step N`, or its name when the step is unknown.
    pub fn checkpoint_label(&self, name: &str) -> String {
        match self.model(name).and_then(|m| m.step) {
            Some(step) => format!("step {step}"),
            None => name.to_string(),
        }
    }
}

/// Checkpoints of `models` (in training order) whose weights equal an earlier one's, each
/// with the first of its group: as a hub series' `series.json` records them (by the hash of
/// the downloaded weights), and wherever two models of `run.json` have the same content hash.
fn identical_checkpoints(
    dir: &Path,
    models: &[ModelEntry],
) -> Result<Vec<(String, String)>, Error> {
    let known = |name: &str| models.iter().position(|m| m.checkpoint == name);
    let mut pairs: Vec<(String, String)> = Vec::new();
    let path = dir.join(SERIES_FILE);
    if path.is_file() {
        let text = read_text(&path)?;
        let series: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| input_err(&path, format!("not valid JSON: {e}")))?;
        let groups = series
            .get("duplicates")
            .and_then(|d| serde_json::from_value::<Vec<Vec<String>>>(d.clone()).ok())
            .ok_or_else(|| {
                input_err(
                    &path,
                    "no `duplicates` list of checkpoint groups (was it written by `xlpatch series`?)",
                )
            })?;
        for group in groups {
            // Only checkpoints with rows are shown; the earliest of them is the reference.
            let mut group: Vec<String> = group.into_iter().filter(|c| known(c).is_some()).collect();
            group.sort_by_key(|c| known(c));
            if let Some((first, rest)) = group.split_first() {
                pairs.extend(rest.iter().map(|c| (c.clone(), first.clone())));
            }
        }
    }
    for (i, m) in models.iter().enumerate() {
        if let Some(first) = models[..i]
            .iter()
            .find(|e| !m.hash.is_empty() && e.hash == m.hash)
            && !pairs.iter().any(|(c, _)| *c == m.checkpoint)
        {
            // The first of the group, whichever way it was found.
            let first = pairs
                .iter()
                .find(|(c, _)| *c == first.checkpoint)
                .map_or(first.checkpoint.clone(), |(_, f)| f.clone());
            pairs.push((m.checkpoint.clone(), first));
        }
    }
    pairs.sort_by_key(|(c, _)| known(c));
    Ok(pairs)
}

/// The item (`fr-de/source>target`) a row belongs to: its unit without the checkpoint.
pub(crate) fn item_of(row: &Row) -> String {
    row.unit
        .strip_prefix(&format!("{}/", row.checkpoint))
        .map(str::to_string)
        .unwrap_or_else(|| {
            format!(
                "{}-{}/{}>{}",
                row.in_lang, row.out_lang, row.source, row.target
            )
        })
}

fn index_prompts(path: &Path) -> Result<Prompts, Error> {
    if !path.is_file() {
        // Read it anyway for the error, with a hint.
        read_text(path)?;
    }
    let mut prompts = Prompts::default();
    let mut sources: BTreeMap<(String, Setting), Vec<PromptRecord>> = BTreeMap::new();
    for (_, rec) in read_prompts(path)? {
        match (rec.role, rec.setting) {
            (Role::Source, Some(s)) => sources.entry((rec.item.clone(), s)).or_default().push(rec),
            // `read_prompts` checked that only a source names a setting.
            _ => {
                prompts.targets.insert(rec.item.clone(), rec);
            }
        }
    }
    prompts.sources = sources.into_iter().collect();
    Ok(prompts)
}
