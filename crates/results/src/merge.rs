//! Joining the results directories of a sweep's shards into one.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::run::TIMINGS_FILE;
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

/// Joins the results of `inputs` (shards of one sweep) into `out`: every file other than the
/// results must be equal in all inputs (the config, the run description, the prompt set) and
/// is copied; units are taken once each (a unit in two inputs must have equal rows), in the
/// order of the inputs. Returns how many rows were written.
pub fn merge(inputs: &[PathBuf], out: &Path) -> Result<usize, Error> {
    let Some(first) = inputs.first() else {
        return Err(Error::NothingToMerge);
    };
    std::fs::create_dir_all(out).map_err(io_err(out))?;
    if out.join(JSONL_FILE).exists() {
        return Err(Error::MergeTargetExists {
            path: out.join(JSONL_FILE),
        });
    }
    let expected = side_files(first)?;
    let mut units: Vec<Unit> = Vec::new();
    let mut index: BTreeMap<String, usize> = BTreeMap::new();
    for dir in inputs {
        if side_files(dir)? != expected {
            return Err(Error::NotOneSweep {
                dir: dir.clone(),
                first: first.clone(),
            });
        }
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
