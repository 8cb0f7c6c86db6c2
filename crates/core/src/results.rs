//! Results files: one row per (checkpoint, setting, target pair, concept pair, start layer),
//! appended to `results.jsonl` (the record) and `results.csv` (the same rows for a
//! spreadsheet or pandas), resumable and mergeable.
//!
//! **Units and crash safety.** Rows are written a *unit* at a time (every row of one target
//! prompt on one checkpoint: all settings and start layers), each unit's rows in one
//! `write_all` to `results.jsonl` followed by `sync_data`, then to `results.csv`. Every row
//! carries its unit's key and row count. Opening a results directory repairs what a kill can
//! leave: a last line without its newline is cut, the rows of a unit with fewer rows than its
//! count are dropped, and `results.csv` is rewritten from `results.jsonl` (through a
//! temporary file and a rename), so a killed sweep loses at most its in-flight unit and never
//! leaves a torn or duplicated row. A rerun skips the units already complete.
//!
//! In the CSV, text fields escape `\`, newlines, carriage returns and tabs as `\\`, `\n`,
//! `\r`, `\t` so that one row is one line; `results.jsonl` keeps the exact text.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::Error;

/// The JSONL file of a results directory.
pub const JSONL_FILE: &str = "results.jsonl";
/// The CSV file of a results directory.
pub const CSV_FILE: &str = "results.csv";
/// The lock file of a results directory (empty; locked while a sweep writes).
pub const LOCK_FILE: &str = ".lock";
/// Per-unit wall times beside the results (for benchmarks; not part of them, so shards
/// differ in it and a merge concatenates it).
pub const TIMINGS_FILE: &str = "timings.jsonl";

/// One result row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    /// The unit (checkpoint, target pair, concept pair) the row belongs to.
    pub unit: String,
    /// How many rows the unit has.
    pub unit_rows: usize,
    /// The checkpoint's directory name.
    pub checkpoint: String,
    /// Its training step, if the manifest records one.
    pub step: Option<u64>,
    /// The model's content hash.
    pub model_hash: String,
    /// `from_layer` or `single_layer`.
    pub variant: String,
    /// The setting.
    pub setting: String,
    /// The target's input language.
    pub in_lang: String,
    /// The target's output language.
    pub out_lang: String,
    /// C_S.
    pub source: String,
    /// C_T.
    pub target: String,
    /// The start layer `j`.
    pub start_layer: usize,
    /// How many source prompts were combined (0 when unpatched).
    pub n_sources: usize,
    /// P(C_S in out_T).
    pub p_src_out: f32,
    /// P(C_T in out_T).
    pub p_tgt_out: f32,
    /// P(C_S in in_T).
    pub p_src_in: f32,
    /// P(C_T in in_T).
    pub p_tgt_in: f32,
    /// P(C_S in the other study languages): the union of their token sets.
    pub p_src_other: f32,
    /// P(C_T in the other study languages).
    pub p_tgt_other: f32,
    /// P(C_S in out_T) over the augmented token set (every vocabulary prefix of each form).
    pub p_src_out_aug: f32,
    /// P(C_T in out_T) over the augmented token set.
    pub p_tgt_out_aug: f32,
    /// Rank (1 = most likely) of the best token of C_S in out_T.
    pub rank_src_out: usize,
    /// Rank of the best token of C_T in out_T.
    pub rank_tgt_out: usize,
    /// Whether the generated answer is a form of C_S in out_T.
    pub gen_src: bool,
    /// Whether the generated answer is a form of C_T in out_T.
    pub gen_tgt: bool,
    /// The generated text.
    pub generation: String,
    /// The generated token ids.
    pub generation_ids: Vec<u32>,
    /// P(C_S in each study language), as columns `p_src_<code>`.
    #[serde(flatten)]
    pub per_lang: BTreeMap<String, f32>,
}

/// The columns of the CSV: the row's fields in declaration order, then the per-language
/// columns sorted.
fn columns(first: &Value) -> Vec<String> {
    const FIXED: [&str; 27] = [
        "unit",
        "unit_rows",
        "checkpoint",
        "step",
        "model_hash",
        "variant",
        "setting",
        "in_lang",
        "out_lang",
        "source",
        "target",
        "start_layer",
        "n_sources",
        "p_src_out",
        "p_tgt_out",
        "p_src_in",
        "p_tgt_in",
        "p_src_other",
        "p_tgt_other",
        "p_src_out_aug",
        "p_tgt_out_aug",
        "rank_src_out",
        "rank_tgt_out",
        "gen_src",
        "gen_tgt",
        "generation",
        "generation_ids",
    ];
    let fixed: Vec<String> = FIXED.iter().map(|c| c.to_string()).collect();
    let mut rest: Vec<String> = first
        .as_object()
        .map(|o| o.keys().filter(|k| !fixed.contains(k)).cloned().collect())
        .unwrap_or_default();
    rest.sort();
    fixed.into_iter().chain(rest).collect()
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    if out.contains([',', '"']) || out.starts_with(' ') || out.ends_with(' ') {
        format!("\"{}\"", out.replace('"', "\"\""))
    } else {
        out
    }
}

fn csv_cell(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => escape(s),
        Some(Value::Array(a)) => a
            .iter()
            .map(|x| x.to_string())
            .collect::<Vec<_>>()
            .join(" "),
        Some(Value::Bool(b)) => b.to_string(),
        Some(v) => v.to_string(),
    }
}

fn csv_text(rows: &[Value], cols: &[String], header: bool) -> String {
    let mut out = String::new();
    if header {
        out.push_str(&cols.join(","));
        out.push('\n');
    }
    for row in rows {
        let cells: Vec<String> = cols.iter().map(|c| csv_cell(row.get(c))).collect();
        out.push_str(&cells.join(","));
        out.push('\n');
    }
    out
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |e| Error::Results {
        path: path.to_path_buf(),
        what: e.to_string(),
    }
}

/// Writes `text` to `path` through a temporary file and a rename.
fn replace_file(path: &Path, text: &str) -> Result<(), Error> {
    let tmp = path.with_extension("tmp");
    let mut f = File::create(&tmp).map_err(io_err(&tmp))?;
    f.write_all(text.as_bytes()).map_err(io_err(&tmp))?;
    f.sync_data().map_err(io_err(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io_err(path))
}

/// Units in file order: each unit's key and its rows as JSON values.
type Units = Vec<(String, Vec<Value>)>;

/// The complete units of a `results.jsonl`, in file order: each unit's rows as JSON values.
/// Returns them with whether anything (a torn last line, an incomplete unit) was dropped.
fn read_units(path: &Path) -> Result<(Units, bool), Error> {
    let text = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), false)),
        Err(e) => return Err(io_err(path)(e)),
    };
    let complete = text.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let mut dropped = complete < text.len();
    let text = String::from_utf8_lossy(&text[..complete]);
    let mut units: Units = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let row: Value = serde_json::from_str(line).map_err(|e| Error::Results {
            path: path.to_path_buf(),
            what: format!("line {}: {e}", i + 1),
        })?;
        let unit = row
            .get("unit")
            .and_then(Value::as_str)
            .ok_or_else(|| Error::Results {
                path: path.to_path_buf(),
                what: format!("line {}: no unit", i + 1),
            })?
            .to_string();
        match units.last_mut() {
            Some((u, rows)) if *u == unit => rows.push(row),
            _ => units.push((unit, vec![row])),
        }
    }
    let before = units.len();
    let mut seen = BTreeSet::new();
    units.retain(|(unit, rows)| {
        let want = rows[0].get("unit_rows").and_then(Value::as_u64);
        want == Some(rows.len() as u64) && seen.insert(unit.clone())
    });
    dropped |= units.len() != before;
    Ok((units, dropped))
}

/// An open results directory, appending units.
#[derive(Debug)]
pub struct ResultsWriter {
    dir: PathBuf,
    /// Held locked while the writer lives: two sweeps appending to one directory would
    /// interleave their units.
    _lock: File,
    jsonl: File,
    csv: File,
    columns: Option<Vec<String>>,
    done: BTreeSet<String>,
}

impl ResultsWriter {
    /// Opens (creating it if needed) the results in `dir`, repairing what an interrupted
    /// run left (see the module documentation).
    pub fn open(dir: &Path) -> Result<ResultsWriter, Error> {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let lock_path = dir.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_err(&lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(Error::Results {
                    path: dir.to_path_buf(),
                    what: "another sweep is writing here; wait for it or use another --out".into(),
                });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io_err(&lock_path)(e)),
        }
        let jsonl_path = dir.join(JSONL_FILE);
        let csv_path = dir.join(CSV_FILE);
        let (units, dropped) = read_units(&jsonl_path)?;
        let rows: Vec<Value> = units.iter().flat_map(|(_, r)| r.iter().cloned()).collect();
        if dropped {
            let mut text = String::new();
            for row in &rows {
                text.push_str(&row.to_string());
                text.push('\n');
            }
            replace_file(&jsonl_path, &text)?;
        }
        let columns = rows.first().map(columns);
        let csv_text = match &columns {
            Some(cols) => csv_text(&rows, cols, true),
            None => String::new(),
        };
        replace_file(&csv_path, &csv_text)?;
        let open = |p: &Path| {
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .map_err(io_err(p))
        };
        Ok(ResultsWriter {
            dir: dir.to_path_buf(),
            _lock: lock,
            jsonl: open(&jsonl_path)?,
            csv: open(&csv_path)?,
            columns,
            done: units.into_iter().map(|(u, _)| u).collect(),
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether `unit` is already complete.
    pub fn is_done(&self, unit: &str) -> bool {
        self.done.contains(unit)
    }

    /// How many units are complete.
    pub fn n_done(&self) -> usize {
        self.done.len()
    }

    /// Appends the rows of one unit (all with the same `unit` and `unit_rows == rows.len()`).
    pub fn append_unit(&mut self, rows: &[Row]) -> Result<(), Error> {
        let Some(first) = rows.first() else {
            return Ok(());
        };
        if rows
            .iter()
            .any(|r| r.unit != first.unit || r.unit_rows != rows.len())
            || self.done.contains(&first.unit)
        {
            return Err(Error::Inconsistent(format!(
                "unit {} is already written or its rows disagree on their unit",
                first.unit
            )));
        }
        // Rows are written as serde writes them (f32 in its shortest form); the CSV is made
        // from the JSON text read back, as when it is rebuilt on open.
        let mut text = String::new();
        let mut values = Vec::with_capacity(rows.len());
        for r in rows {
            let line = serde_json::to_string(r).expect("rows serialize");
            values.push(serde_json::from_str::<Value>(&line).expect("a row reads back"));
            text.push_str(&line);
            text.push('\n');
        }
        let jsonl_path = self.dir.join(JSONL_FILE);
        self.jsonl
            .write_all(text.as_bytes())
            .map_err(io_err(&jsonl_path))?;
        self.jsonl.sync_data().map_err(io_err(&jsonl_path))?;
        let header = self.columns.is_none();
        let cols = self.columns.get_or_insert_with(|| columns(&values[0]));
        let csv_path = self.dir.join(CSV_FILE);
        self.csv
            .write_all(csv_text(&values, cols, header).as_bytes())
            .map_err(io_err(&csv_path))?;
        self.done.insert(first.unit.clone());
        Ok(())
    }
}

/// Reads the complete rows of a results directory.
pub fn read_rows(dir: &Path) -> Result<Vec<Row>, Error> {
    let path = dir.join(JSONL_FILE);
    let (units, _) = read_units(&path)?;
    units
        .into_iter()
        .flat_map(|(_, rows)| rows)
        .map(|v| {
            serde_json::from_value(v).map_err(|e| Error::Results {
                path: path.clone(),
                what: e.to_string(),
            })
        })
        .collect()
}

/// Joins the results of `inputs` (shards of one sweep) into `out`: every file other than the
/// results must be equal in all inputs (the config, the run description, the prompt set) and
/// is copied; units are taken once each (a unit in two inputs must have equal rows), in the
/// order of the inputs.
pub fn merge(inputs: &[PathBuf], out: &Path) -> Result<usize, Error> {
    let Some(first) = inputs.first() else {
        return Err(Error::Inconsistent("nothing to merge".into()));
    };
    std::fs::create_dir_all(out).map_err(io_err(out))?;
    if out.join(JSONL_FILE).exists() {
        return Err(Error::Results {
            path: out.join(JSONL_FILE),
            what: "already exists; merge into a new directory".into(),
        });
    }
    let side_files = |dir: &Path| -> Result<BTreeMap<String, Vec<u8>>, Error> {
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
    };
    let expected = side_files(first)?;
    let mut units: Units = Vec::new();
    let mut index: BTreeMap<String, usize> = BTreeMap::new();
    for dir in inputs {
        let files = side_files(dir)?;
        if files != expected {
            return Err(Error::Results {
                path: dir.clone(),
                what: format!(
                    "its config, run description or prompt set differs from {}",
                    first.display()
                ),
            });
        }
        for (unit, rows) in read_units(&dir.join(JSONL_FILE))?.0 {
            match index.get(&unit) {
                Some(&i) if units[i].1 != rows => {
                    return Err(Error::Results {
                        path: dir.clone(),
                        what: format!("unit {unit} differs from another input's"),
                    });
                }
                Some(_) => {}
                None => {
                    index.insert(unit.clone(), units.len());
                    units.push((unit, rows));
                }
            }
        }
    }
    for (name, bytes) in &expected {
        let p = out.join(name);
        std::fs::write(&p, bytes).map_err(io_err(&p))?;
    }
    let rows: Vec<Value> = units.into_iter().flat_map(|(_, r)| r).collect();
    let mut text = String::new();
    for row in &rows {
        text.push_str(&row.to_string());
        text.push('\n');
    }
    replace_file(&out.join(JSONL_FILE), &text)?;
    let csv = rows
        .first()
        .map(|r| csv_text(&rows, &columns(r), true))
        .unwrap_or_default();
    replace_file(&out.join(CSV_FILE), &csv)?;
    let mut timings = Vec::new();
    for dir in inputs {
        match std::fs::read(dir.join(TIMINGS_FILE)) {
            Ok(bytes) => timings.extend(bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&dir.join(TIMINGS_FILE))(e)),
        }
    }
    if !timings.is_empty() {
        let path = out.join(TIMINGS_FILE);
        std::fs::write(&path, timings).map_err(io_err(&path))?;
    }
    Ok(rows.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(unit: &str, n: usize, j: usize) -> Row {
        Row {
            unit: unit.into(),
            unit_rows: n,
            checkpoint: "step_1".into(),
            step: Some(1),
            model_hash: "abc".into(),
            variant: "from_layer".into(),
            setting: "tgt".into(),
            in_lang: "fr".into(),
            out_lang: "de".into(),
            source: "book".into(),
            target: "tree".into(),
            start_layer: j,
            n_sources: 1,
            p_src_out: 0.25,
            p_tgt_out: 0.5,
            p_src_in: 0.0,
            p_tgt_in: 0.0,
            p_src_other: 0.0,
            p_tgt_other: 0.0,
            p_src_out_aug: 0.3,
            p_tgt_out_aug: 0.55,
            rank_src_out: 2,
            rank_tgt_out: 1,
            gen_src: false,
            gen_tgt: true,
            generation: "Baum\"\n, x".into(),
            generation_ids: vec![3, 4],
            per_lang: [("p_src_de".to_string(), 0.25f32)].into_iter().collect(),
        }
    }

    fn unit(name: &str, n: usize) -> Vec<Row> {
        (0..n).map(|j| row(name, n, j)).collect()
    }

    #[test]
    fn a_directory_has_one_writer_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let first = ResultsWriter::open(dir.path()).unwrap();
        let err = ResultsWriter::open(dir.path()).unwrap_err();
        assert!(
            err.to_string().contains("another sweep is writing"),
            "{err}"
        );
        drop(first);
        ResultsWriter::open(dir.path()).unwrap();
    }

    #[test]
    fn rows_round_trip_and_the_csv_has_one_line_per_row() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = ResultsWriter::open(dir.path()).unwrap();
        w.append_unit(&unit("a", 2)).unwrap();
        w.append_unit(&unit("b", 3)).unwrap();
        assert!(w.append_unit(&unit("a", 2)).is_err(), "no duplicate unit");
        drop(w);
        assert_eq!(
            read_rows(dir.path()).unwrap(),
            [unit("a", 2), unit("b", 3)].concat()
        );
        let csv = std::fs::read_to_string(dir.path().join(CSV_FILE)).unwrap();
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines.len(), 6);
        assert!(lines[0].starts_with("unit,unit_rows,checkpoint,"));
        assert!(
            lines[0].ends_with(",generation_ids,p_src_de"),
            "{}",
            lines[0]
        );
        assert!(
            lines[1].contains(",\"Baum\"\"\\n, x\",3 4,0.25"),
            "{}",
            lines[1]
        );
    }

    #[test]
    fn a_torn_or_incomplete_unit_is_dropped_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = ResultsWriter::open(dir.path()).unwrap();
        w.append_unit(&unit("a", 2)).unwrap();
        drop(w);
        // A kill in the middle of unit b: one whole row, then half a row.
        let b = unit("b", 3);
        let mut tail = serde_json::to_string(&b[0]).unwrap() + "\n";
        tail.push_str(&serde_json::to_string(&b[1]).unwrap()[..40]);
        let path = dir.path().join(JSONL_FILE);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(tail.as_bytes()).unwrap();
        drop(f);
        let mut w = ResultsWriter::open(dir.path()).unwrap();
        assert!(w.is_done("a") && !w.is_done("b"));
        assert_eq!(read_rows(dir.path()).unwrap(), unit("a", 2));
        w.append_unit(&b).unwrap();
        drop(w);
        assert_eq!(read_rows(dir.path()).unwrap(), [unit("a", 2), b].concat());
        let csv = std::fs::read_to_string(dir.path().join(CSV_FILE)).unwrap();
        assert_eq!(csv.lines().count(), 1 + 5);
    }

    #[test]
    fn merge_joins_shards_and_refuses_mismatches() {
        let root = tempfile::tempdir().unwrap();
        let (s0, s1, s2) = (
            root.path().join("s0"),
            root.path().join("s1"),
            root.path().join("s2"),
        );
        for (dir, units) in [(&s0, ["a", "c"]), (&s1, ["b", "c"])] {
            let mut w = ResultsWriter::open(dir).unwrap();
            for u in units {
                w.append_unit(&unit(u, 2)).unwrap();
            }
            std::fs::write(dir.join("config.toml"), "seed = 1\n").unwrap();
        }
        let out = root.path().join("merged");
        assert_eq!(merge(&[s0.clone(), s1.clone()], &out).unwrap(), 6);
        assert_eq!(
            read_rows(&out).unwrap(),
            [unit("a", 2), unit("c", 2), unit("b", 2)].concat()
        );
        assert_eq!(
            std::fs::read_to_string(out.join("config.toml")).unwrap(),
            "seed = 1\n"
        );
        assert!(
            merge(&[s0.clone(), s1.clone()], &out).is_err(),
            "no overwrite"
        );
        // Another config.
        let mut w = ResultsWriter::open(&s2).unwrap();
        w.append_unit(&unit("d", 2)).unwrap();
        std::fs::write(s2.join("config.toml"), "seed = 2\n").unwrap();
        let err = merge(&[s0, s2], &root.path().join("m2")).unwrap_err();
        assert!(err.to_string().contains("differs"), "{err}");
    }
}
