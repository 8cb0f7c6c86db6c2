//! What a series needs on disk, estimated before anything is downloaded.

use std::path::Path;

use xlpatch_export::Dtype;
use xlpatch_hub::{Checkpoint, Hub};

use crate::error::*;
use crate::options::*;
use crate::plan::*;

/// Disk needs of a series, estimated before starting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Needs {
    /// The largest download of one checkpoint.
    pub download: u64,
    /// The largest export of one checkpoint (estimated from sizes and config).
    pub export: u64,
    /// One checkpoint at a time: its download and its export.
    pub sequential: u64,
    /// Pipelined: one export being swept, the next being downloaded and exported.
    pub pipelined: u64,
    /// Every download and export of the series kept.
    pub all: u64,
}

/// Bytes per element of a `config.json` dtype name.
pub(crate) fn elem_bytes(name: &str) -> u64 {
    match name {
        "float16" | "bfloat16" | "half" => 2,
        "float64" | "double" => 8,
        _ => 4,
    }
}

pub(crate) fn config_dtype(config: &serde_json::Value) -> String {
    config["torch_dtype"]
        .as_str()
        .or(config["dtype"].as_str())
        .or(config["text_config"]["torch_dtype"].as_str())
        .or(config["text_config"]["dtype"].as_str())
        .unwrap_or("float32")
        .to_string()
}

/// The export dtype of a checkpoint: its own precision, which loses nothing (f16 and bf16
/// weights stay as they are, computed in f32); anything else becomes f32.
pub(crate) fn export_dtype(opts: &SeriesOptions, config: &serde_json::Value) -> Dtype {
    opts.dtype.unwrap_or(match config_dtype(config).as_str() {
        "float16" => Dtype::F16,
        "bfloat16" => Dtype::Bf16,
        _ => Dtype::F32,
    })
}

/// Estimates the export's bytes from the download's and the config.
pub(crate) fn export_estimate(ck: &Checkpoint, config: &serde_json::Value, dtype: Dtype) -> u64 {
    let src = elem_bytes(&config_dtype(config));
    let out = match dtype {
        Dtype::F16 | Dtype::Bf16 => 2,
        Dtype::F32 => 4,
    };
    let c = if config["text_config"].is_object() {
        &config["text_config"]
    } else {
        config
    };
    let tied = c["tie_word_embeddings"]
        .as_bool()
        .or(config["tie_word_embeddings"].as_bool())
        .unwrap_or(false);
    let embed = c["vocab_size"].as_u64().unwrap_or(0) * c["hidden_size"].as_u64().unwrap_or(0);
    let tok: u64 = ck
        .files
        .iter()
        .filter(|f| f.path == "tokenizer.json")
        .map(|f| f.size)
        .sum();
    let weights = ck.weight_bytes() / src * out + if tied { embed * out } else { 0 };
    // Graph structure and manifest: a few percent.
    weights + weights / 20 + tok + (64 << 10)
}

pub(crate) fn read_json(path: &Path) -> Result<serde_json::Value, SeriesError> {
    let text = std::fs::read_to_string(path).map_err(io_err(path))?;
    serde_json::from_str(&text)
        .map_err(|e| SeriesError::Inconsistent(format!("{}: {e}", path.display())))
}

pub(crate) fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|l| {
            l.flatten()
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => dir_bytes(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}

/// The disk the checkpoints of `plan` not in `done` need (downloads each one's
/// `config.json`, a few kB, unless its export is there already).
pub fn needs(
    hub: &Hub,
    plan: &Plan,
    opts: &SeriesOptions,
    done: &[String],
) -> Result<(Needs, String), SeriesError> {
    let mut n = Needs {
        download: 0,
        export: 0,
        sequential: 0,
        pipelined: 0,
        all: 0,
    };
    let mut largest = String::new();
    for p in plan.checkpoints.iter().filter(|p| !done.contains(&p.name)) {
        let export = opts.work.join("export").join(&p.name);
        let (dl, ex) = if export.join("manifest.json").is_file() {
            (0, dir_bytes(&export))
        } else {
            let config =
                read_json(&hub.download_file(&p.checkpoint, "config.json", &mut |_| {})?)?;
            let ex = export_estimate(&p.checkpoint, &config, export_dtype(opts, &config));
            (p.checkpoint.download_bytes(), ex)
        };
        if dl + ex > n.sequential {
            n.sequential = dl + ex;
            largest = p.name.clone();
        }
        n.download = n.download.max(dl);
        n.export = n.export.max(ex);
        n.all += dl + ex;
    }
    n.pipelined = n.download + 2 * n.export;
    Ok((n, largest))
}
