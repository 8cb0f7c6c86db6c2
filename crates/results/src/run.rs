//! `run.json` (what a sweep ran on), `timings.jsonl` (how long each unit took), and the rule
//! that a results directory holds one sweep: a file written by the first run must be
//! byte-equal when a resume or another shard writes it again.

use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::{Error, io_err};

/// The run description of a results directory.
pub const RUN_FILE: &str = "run.json";
/// The stored sweep config.
pub const CONFIG_FILE: &str = "config.toml";
/// The prompt set.
pub const PROMPTS_FILE: &str = "prompts.jsonl";
/// Per-unit wall times beside the results (for benchmarks; not part of them, so shards
/// differ in it and a merge concatenates it).
pub const TIMINGS_FILE: &str = "timings.jsonl";

/// The `format_version` of `run.json` this crate reads and writes.
pub const RUN_FORMAT_VERSION: u32 = 1;

/// `run.json`. Fields are declared in alphabetical order, so the bytes are those earlier
/// versions wrote from a sorted JSON map.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunFile {
    /// [`RUN_FORMAT_VERSION`].
    pub format_version: u32,
    /// The checkpoints, in the order the sweep ran them.
    pub models: Vec<ModelEntry>,
    /// The part of the sweep this directory holds: absent for a whole sweep, and in results
    /// written before shards were recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<ShardRecord>,
    /// What the report needs of the config (absent in results written before it was
    /// recorded: then [`Study::from_config_toml`] reads it from the stored config).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub study: Option<Study>,
}

/// Shard `index` of `count` (`k/n` on the command line), as `run.json` records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ShardRecord {
    /// How many shards the sweep has.
    pub count: usize,
    /// Which one this is (`0 <= index < count`).
    pub index: usize,
}

impl std::fmt::Display for ShardRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// One checkpoint of `run.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelEntry {
    /// The architecture the manifest names.
    #[serde(default)]
    pub architecture: String,
    /// The checkpoint's directory name.
    pub checkpoint: String,
    /// The model's content hash.
    pub hash: String,
    /// Its training step, if the manifest records one.
    pub step: Option<u64>,
}

/// What a reader of the results needs of the sweep's config, without parsing it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Study {
    /// The concept table's directory, as the config names it.
    pub concepts: String,
    /// The target language pairs `[input, output]`, in config order.
    pub pairs: Vec<[String; 2]>,
}

impl Study {
    /// The study of a `config.toml` written by `xlpatch sweep` (top-level `concepts = "…"`
    /// and `pairs = [[…]]` lines, values in TOML's JSON-compatible subset): for results
    /// directories whose `run.json` predates [`RunFile::study`]. `None` when either line is
    /// missing or not of that form.
    pub fn from_config_toml(text: &str) -> Option<Study> {
        let mut concepts = None;
        let mut pairs = None;
        for line in text
            .lines()
            .take_while(|l| !l.trim_start().starts_with('['))
        {
            let Some((key, value)) = line.split_once('=') else {
                continue;
            };
            match key.trim() {
                "concepts" => concepts = serde_json::from_str(value.trim()).ok(),
                "pairs" => pairs = serde_json::from_str(value.trim()).ok(),
                _ => {}
            }
        }
        Some(Study {
            concepts: concepts?,
            pairs: pairs?,
        })
    }
}

impl RunFile {
    /// The file's text.
    pub fn to_text(&self) -> String {
        serde_json::to_string_pretty(self).expect("run.json serializes") + "\n"
    }

    /// Reads `dir/run.json`, refusing another format version.
    pub fn read(dir: &Path) -> Result<RunFile, Error> {
        let path = dir.join(RUN_FILE);
        let text = std::fs::read_to_string(&path).map_err(io_err(&path))?;
        let run: RunFile = serde_json::from_str(&text).map_err(|source| Error::Json {
            path: path.clone(),
            line: source.line(),
            source,
        })?;
        if run.format_version != RUN_FORMAT_VERSION {
            return Err(Error::FormatVersion {
                path,
                found: run.format_version,
                supported: RUN_FORMAT_VERSION,
            });
        }
        Ok(run)
    }

    /// Writes `dir/run.json`, or checks that the one there describes the same run (or one
    /// of `also_accepted`, earlier spellings of it). A file without [`RunFile::study`]
    /// (written before it was recorded) is the same run when everything else is equal.
    pub fn write_or_check(&self, dir: &Path, also_accepted: &[RunFile]) -> Result<(), Error> {
        let texts: Vec<String> = std::iter::once(self)
            .chain(also_accepted)
            .flat_map(|r| {
                let legacy = RunFile {
                    study: None,
                    ..r.clone()
                };
                [r.to_text(), legacy.to_text()]
            })
            .collect();
        let others: Vec<&str> = texts[1..].iter().map(String::as_str).collect();
        store_or_check(dir, RUN_FILE, &texts[0], &others)
    }
}

/// Writes `text` to `dir/name`, or checks that the file there holds it (or one of
/// `also_accepted`): a results directory belongs to one sweep.
pub fn store_or_check(
    dir: &Path,
    name: &str,
    text: &str,
    also_accepted: &[&str],
) -> Result<(), Error> {
    let path = dir.join(name);
    match std::fs::read_to_string(&path) {
        Ok(old) if old == text || also_accepted.contains(&old.as_str()) => Ok(()),
        Ok(old) => Err(Error::OtherSweep {
            differences: crate::diff::describe(name, &old, text),
            path,
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::write(&path, text).map_err(io_err(&path))
        }
        Err(e) => Err(io_err(&path)(e)),
    }
}

/// One line of [`TIMINGS_FILE`]: the wall times of one unit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Timing {
    /// How many units were computed together.
    pub batch: usize,
    /// Its share of its batch's model work and metrics (the model load excluded): the
    /// batch's wall time over the units computed together.
    pub seconds: f64,
    /// The unit.
    pub unit: String,
    /// Writing and syncing its rows.
    pub write_seconds: f64,
}

impl Timing {
    /// Appends the timing to `dir`'s [`TIMINGS_FILE`].
    pub fn append(&self, dir: &Path) -> Result<(), Error> {
        let path = dir.join(TIMINGS_FILE);
        let line = serde_json::to_string(self).expect("timings serialize") + "\n";
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut f| f.write_all(line.as_bytes()))
            .map_err(io_err(&path))
    }
}
