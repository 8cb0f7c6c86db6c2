//! Reading a results directory: the rows, the stored config, `run.json` (the models) and
//! `prompts.jsonl` (the prompts behind each row), plus the concept table the config names.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use xlpatch_concepts::ConceptTable;
use xlpatch_core::config::{Setting, SweepConfig};
use xlpatch_core::results::{JSONL_FILE, Row, read_rows};

use crate::Error;

/// One model of `run.json`.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct ModelInfo {
    pub checkpoint: String,
    pub step: Option<u64>,
    pub hash: String,
    #[serde(default)]
    pub architecture: String,
}

#[derive(Debug, Deserialize)]
struct RunFile {
    format_version: u32,
    models: Vec<ModelInfo>,
}

/// One record of `prompts.jsonl` (the fields the report uses).
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct PromptRecord {
    pub item: String,
    pub role: String,
    pub setting: Option<String>,
    pub concept: String,
    pub in_lang: String,
    pub word: String,
    pub text: String,
}

/// The prompts of a sweep, by item (`fr-de/source>target`).
#[derive(Debug, Default)]
pub(crate) struct Prompts {
    targets: HashMap<String, PromptRecord>,
    sources: HashMap<(String, String), Vec<PromptRecord>>,
}

impl Prompts {
    /// The target prompt of `item`.
    pub fn target(&self, item: &str) -> Option<&PromptRecord> {
        self.targets.get(item)
    }

    /// The source prompts of `item` under `setting`.
    pub fn sources(&self, item: &str, setting: &str) -> &[PromptRecord] {
        self.sources
            .get(&(item.to_string(), setting.to_string()))
            .map_or(&[], Vec::as_slice)
    }
}

/// A results directory, read.
#[derive(Debug)]
pub(crate) struct Results {
    pub dir: PathBuf,
    pub rows: Vec<Row>,
    pub config: SweepConfig,
    pub config_text: String,
    /// The models in training order (step, then name).
    pub models: Vec<ModelInfo>,
    pub prompts: Prompts,
    /// Settings in report order ([`Setting::ALL`], then any other name).
    pub settings: Vec<String>,
    /// Target pairs `(in, out)` in config order, then any other found in the rows.
    pub pairs: Vec<(String, String)>,
    /// The number of start layers (one more than the largest in the rows).
    pub layers: usize,
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
        let rows = read_rows(dir)?;
        if rows.is_empty() {
            return Err(input_err(&jsonl, "holds no complete unit of rows"));
        }
        let config_path = dir.join("config.toml");
        let config_text = read_text(&config_path)?;
        let config = SweepConfig::read(&config_path)?;

        let run_path = dir.join("run.json");
        let run: RunFile = serde_json::from_str(&read_text(&run_path)?)
            .map_err(|e| input_err(&run_path, e.to_string()))?;
        if run.format_version != 1 {
            return Err(input_err(
                &run_path,
                format!(
                    "format_version {} is not supported (this xlpatch reads 1)",
                    run.format_version
                ),
            ));
        }
        let mut models = run.models;
        // Checkpoints that have rows but no entry in run.json still get a place.
        for r in &rows {
            if !models.iter().any(|m| m.checkpoint == r.checkpoint) {
                models.push(ModelInfo {
                    checkpoint: r.checkpoint.clone(),
                    step: r.step,
                    hash: r.model_hash.clone(),
                    architecture: String::new(),
                });
            }
        }
        models.retain(|m| rows.iter().any(|r| r.checkpoint == m.checkpoint));
        models.sort_by(|a, b| (a.step, &a.checkpoint).cmp(&(b.step, &b.checkpoint)));

        let prompts = read_prompts(&dir.join("prompts.jsonl"))?;

        let place = |s: &str| {
            Setting::ALL
                .iter()
                .position(|x| x.name() == s)
                .unwrap_or(Setting::ALL.len())
        };
        let mut settings: Vec<String> = Vec::new();
        for r in &rows {
            if !settings.contains(&r.setting) {
                settings.push(r.setting.clone());
            }
        }
        settings.sort_by(|a, b| (place(a), a).cmp(&(place(b), b)));

        let mut pairs: Vec<(String, String)> = config
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
        // Start layers come from the file. A unit has a row per setting and start layer, so a
        // valid one is below its unit's row count (which `read_rows` checked); that also bounds
        // what the report allocates per layer.
        if let Some(r) = rows.iter().find(|r| r.start_layer >= r.unit_rows) {
            return Err(input_err(
                &jsonl,
                format!(
                    "unit {}: start_layer {} is not below its unit_rows {}",
                    r.unit, r.start_layer, r.unit_rows
                ),
            ));
        }
        let layers = rows.iter().map(|r| r.start_layer).max().unwrap_or(0) + 1;
        Ok(Results {
            dir: dir.to_path_buf(),
            rows,
            config,
            config_text,
            models,
            prompts,
            settings,
            pairs,
            layers,
        })
    }

    /// The concept table: `explicit` if given, else the config's `concepts` taken from the
    /// current directory, then from the results directory.
    pub fn concept_table(&self, explicit: Option<&Path>) -> Result<ConceptTable, Error> {
        let named = Path::new(&self.config.concepts);
        let path = match explicit {
            Some(p) => p.to_path_buf(),
            None => [named.to_path_buf(), self.dir.join(named)]
                .into_iter()
                .find(|p| p.is_dir())
                .ok_or_else(|| {
                    input_err(
                        &self.dir.join("config.toml"),
                        format!(
                            "the concept table {:?} it names is found neither in the current \
                             directory nor in the results directory; pass --concepts <dir>",
                            self.config.concepts
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
    pub fn model(&self, name: &str) -> Option<&ModelInfo> {
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

fn read_prompts(path: &Path) -> Result<Prompts, Error> {
    let text = read_text(path)?;
    let mut prompts = Prompts::default();
    let mut sources: BTreeMap<(String, String), Vec<PromptRecord>> = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let rec: PromptRecord = serde_json::from_str(line)
            .map_err(|e| input_err(path, format!("line {}: {e}", i + 1)))?;
        match (rec.role.as_str(), &rec.setting) {
            ("target", _) => {
                prompts.targets.insert(rec.item.clone(), rec);
            }
            ("source", Some(s)) => sources
                .entry((rec.item.clone(), s.clone()))
                .or_default()
                .push(rec),
            _ => {
                return Err(input_err(
                    path,
                    format!(
                        "line {}: role {:?} (expected target, or source with a setting)",
                        i + 1,
                        rec.role
                    ),
                ));
            }
        }
    }
    prompts.sources = sources.into_iter().collect();
    Ok(prompts)
}
