//! Joining the results directories of a sweep's shards into one.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::run::{PROMPTS_FILE, RUN_FILE, RunFile, ShardRecord, TIMINGS_FILE};
use crate::store::{CSV_FILE, JSONL_FILE, LOCK_FILE, Unit, read_units, rewrite};
use crate::{Error, io_err};

/// The files of a results directory besides the results (the config, the run description,
/// the prompt set), by name.
fn side_files(dir: &Path) -> Result<BTreeMap<String, Vec<u8>>, Error> {
    let mut files = BTreeMap::new();
    for e in std::fs::read_dir(dir).map_err(io_err(dir))? {
        let p = e.map_err(io_err(dir))?.path();
        let name = p
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let ours = [JSONL_FILE, CSV_FILE, TIMINGS_FILE, LOCK_FILE].contains(&name.as_str());
        if p.is_file() && !ours && !name.ends_with(".tmp") {
            files.insert(name, std::fs::read(&p).map_err(io_err(&p))?);
        }
    }
    Ok(files)
}

/// A results directory's side files by name.
type Files = BTreeMap<String, Vec<u8>>;

/// The side files with `run.json`'s shard record taken out (it is what shards differ in),
/// and that record.
fn sweep_files(dir: &Path) -> Result<(Files, Option<ShardRecord>), Error> {
    let mut files = side_files(dir)?;
    let mut shard = None;
    if files.contains_key(RUN_FILE) {
        let mut run = RunFile::read(dir)?;
        shard = run.shard.take();
        if shard.is_some() {
            files.insert(RUN_FILE.into(), run.to_text().into_bytes());
        }
    }
    Ok((files, shard))
}

/// The unit keys of the sweep's plan (`<checkpoint>/<item>`: every checkpoint of `run.json`,
/// every target of `prompts.jsonl`); none when either file is absent.
fn planned_units(files: &BTreeMap<String, Vec<u8>>) -> Option<Vec<String>> {
    let run: RunFile = serde_json::from_slice(files.get(RUN_FILE)?).ok()?;
    let prompts = String::from_utf8_lossy(files.get(PROMPTS_FILE)?).into_owned();
    let items: Vec<String> = prompts
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["role"] == "target")
        .filter_map(|v| v["item"].as_str().map(str::to_string))
        .collect();
    Some(
        run.models
            .iter()
            .flat_map(|m| items.iter().map(move |i| format!("{}/{i}", m.checkpoint)))
            .collect(),
    )
}

fn describe_shard(shard: Option<ShardRecord>) -> String {
    shard.map_or(
        "a whole sweep (or results written before shards were recorded)".into(),
        |s| format!("shard {s}"),
    )
}

/// Joins the results of `inputs` (shards of one sweep) into `out`. The inputs must be the
/// sweep's shards, each once: every `k/n` their `run.json` records, none twice (results
/// written before shards were recorded carry no `k/n`; they are merged when, together,
/// they hold every unit of the plan). Every file other than the results must be equal in all
/// inputs (the config, the run description but for its shard, the prompt set) and is copied;
/// every unit of the plan (every checkpoint of `run.json` by every target of
/// `prompts.jsonl`) must be complete in an input; units are taken once each (a unit in two
/// inputs must have equal rows), in the order of the inputs. Returns how many rows were
/// written.
pub fn merge(inputs: &[PathBuf], out: &Path) -> Result<usize, Error> {
    let Some(first) = inputs.first() else {
        return Err(Error::NothingToMerge);
    };
    if out.join(JSONL_FILE).exists() {
        return Err(Error::MergeTargetExists {
            path: out.join(JSONL_FILE),
        });
    }
    let (expected, first_shard) = sweep_files(first)?;
    let mut seen: Vec<(PathBuf, PathBuf, Option<ShardRecord>)> = Vec::new();
    let mut units: Vec<Unit> = Vec::new();
    let mut index: BTreeMap<String, usize> = BTreeMap::new();
    for dir in inputs {
        let (files, shard) = sweep_files(dir)?;
        if let Some(name) = expected
            .keys()
            .chain(files.keys())
            .find(|n| expected.get(*n) != files.get(*n))
        {
            let text = |f: &BTreeMap<String, Vec<u8>>| {
                f.get(name)
                    .map_or(String::new(), |b| String::from_utf8_lossy(b).into_owned())
            };
            return Err(Error::NotOneSweep {
                dir: dir.clone(),
                first: first.clone(),
                file: name.clone(),
                differences: crate::diff::describe(name, &text(&expected), &text(&files)),
            });
        }
        if shard.map(|s| s.count) != first_shard.map(|s| s.count) {
            return Err(Error::OtherSplit {
                first: first.clone(),
                first_shard: describe_shard(first_shard),
                dir: dir.clone(),
                shard: describe_shard(shard),
            });
        }
        let canonical = dir.canonicalize().map_err(io_err(dir))?;
        for (earlier, c, s) in &seen {
            let what = if *c == canonical {
                "the same directory".to_string()
            } else if let Some(s) = s.filter(|_| *s == shard) {
                format!("both hold shard {s}")
            } else {
                continue;
            };
            return Err(Error::DuplicateShard {
                first: earlier.clone(),
                dir: dir.clone(),
                what,
            });
        }
        seen.push((dir.clone(), canonical, shard));
        for unit in read_units(&dir.join(JSONL_FILE))?.complete {
            match index.get(&unit.key) {
                Some(&i) if units[i].rows != unit.rows => {
                    return Err(Error::UnitDiffers {
                        dir: dir.clone(),
                        unit: unit.key,
                    });
                }
                Some(_) => {}
                None => {
                    index.insert(unit.key.clone(), units.len());
                    units.push(unit);
                }
            }
        }
    }
    if let Some(count) = first_shard.map(|s| s.count) {
        let given: Vec<usize> = seen
            .iter()
            .filter_map(|(_, _, s)| Some(s.as_ref()?.index))
            .collect();
        let missing: Vec<String> = (0..count)
            .filter(|k| !given.contains(k))
            .map(|k| format!("{k}/{count}"))
            .collect();
        if !missing.is_empty() {
            let mut given: Vec<String> = given.iter().map(|k| format!("{k}/{count}")).collect();
            given.sort();
            return Err(Error::MissingShards {
                missing,
                count,
                given,
            });
        }
    }
    if let Some(planned) = planned_units(&expected) {
        let absent: Vec<&String> = planned.iter().filter(|u| !index.contains_key(*u)).collect();
        if let Some(u) = absent.first() {
            return Err(Error::IncompleteMerge {
                missing: absent.len(),
                total: planned.len(),
                first: (*u).clone(),
                hint: if first_shard.is_some() {
                    ": a shard is incomplete; resume it (the same `xlpatch sweep` with its \
                     --shard and --out) and merge again"
                        .into()
                } else {
                    ": these results record no shard (written before shards were recorded, \
                     or a whole sweep): give every shard, each complete"
                        .into()
                },
            });
        }
    }
    std::fs::create_dir_all(out).map_err(io_err(out))?;
    for (name, bytes) in &expected {
        let p = out.join(name);
        std::fs::write(&p, bytes).map_err(io_err(&p))?;
    }
    let rows: Vec<Value> = units.into_iter().flat_map(|u| u.rows).collect();
    rewrite(out, &rows, true)?;
    let mut timings = Vec::new();
    for dir in inputs {
        let path = dir.join(TIMINGS_FILE);
        match std::fs::read(&path) {
            Ok(bytes) => timings.extend(bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&path)(e)),
        }
    }
    if !timings.is_empty() {
        let path = out.join(TIMINGS_FILE);
        std::fs::write(&path, timings).map_err(io_err(&path))?;
    }
    Ok(rows.len())
}
