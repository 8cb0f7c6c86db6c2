//! `results.jsonl` and `results.csv`: rows appended a unit at a time, read back, repaired.
//!
//! **Units and crash safety.** Rows are written a *unit* at a time (every row of one target
//! prompt on one checkpoint: all settings and start layers), each unit's rows in one
//! `write_all` to `results.jsonl` followed by `sync_data`, then to `results.csv`. Every row
//! carries its unit's key and row count. Opening a results directory repairs what a kill can
//! leave: a last line without its newline is cut, the rows of a unit with fewer rows than its
//! count are dropped, and `results.csv` is rewritten from `results.jsonl` (through a
//! temporary file and a rename), so a killed sweep loses at most its in-flight unit and never
//! leaves a torn or duplicated row. A rerun skips the units already complete.

use std::collections::BTreeSet;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::row::{Row, columns, csv_bytes};
use crate::{Error, io_err};

/// The JSONL file of a results directory.
pub const JSONL_FILE: &str = "results.jsonl";
/// The CSV file of a results directory.
pub const CSV_FILE: &str = "results.csv";
/// The lock file of a results directory (empty; locked while a sweep writes).
pub const LOCK_FILE: &str = ".lock";

/// One complete unit as read: its key and its rows as JSON values (exactly as written).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Unit {
    pub(crate) key: String,
    pub(crate) rows: Vec<Value>,
    /// The line of its first row (1-based; its rows are consecutive lines).
    pub(crate) line: usize,
}

/// What [`read_units`] found.
#[derive(Debug)]
pub(crate) struct Units {
    /// The complete units, in file order.
    pub(crate) complete: Vec<Unit>,
    /// Whether anything (a torn last line, an incomplete or repeated unit) was dropped.
    pub(crate) dropped: bool,
    /// What was dropped.
    pub(crate) what: Dropped,
}

/// What reading `results.jsonl` left out: what an interrupted run (or a copy made while a
/// sweep wrote) leaves, which opening the directory for writing repairs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Dropped {
    /// The bytes of a last line without its newline (half a row).
    pub torn_tail_bytes: usize,
    /// Units with fewer (or more) rows than their `unit_rows`: (unit, rows found, rows
    /// the unit should have, when its first row says).
    pub incomplete: Vec<(String, usize, Option<usize>)>,
    /// Units found a second time (only the first is kept).
    pub repeated: Vec<String>,
}

impl Dropped {
    /// Whether nothing was dropped.
    pub fn is_empty(&self) -> bool {
        self.torn_tail_bytes == 0 && self.incomplete.is_empty() && self.repeated.is_empty()
    }
}

/// The complete units of a `results.jsonl` (none if the file does not exist).
pub(crate) fn read_units(path: &Path) -> Result<Units, Error> {
    let text = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Units {
                complete: Vec::new(),
                dropped: false,
                what: Dropped::default(),
            });
        }
        Err(e) => return Err(io_err(path)(e)),
    };
    let complete = text.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let mut what = Dropped {
        torn_tail_bytes: text.len() - complete,
        ..Dropped::default()
    };
    let text = String::from_utf8_lossy(&text[..complete]);
    let mut units: Vec<Unit> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let row: Value = serde_json::from_str(line).map_err(|source| Error::Json {
            path: path.to_path_buf(),
            line: i + 1,
            source,
        })?;
        let key = row
            .get("unit")
            .and_then(Value::as_str)
            .ok_or_else(|| Error::NoUnit {
                path: path.to_path_buf(),
                line: i + 1,
            })?
            .to_string();
        match units.last_mut() {
            Some(u) if u.key == key => u.rows.push(row),
            _ => units.push(Unit {
                key,
                rows: vec![row],
                line: i + 1,
            }),
        }
    }
    let mut seen = BTreeSet::new();
    units.retain(|u| {
        let want = u.rows[0].get("unit_rows").and_then(Value::as_u64);
        if want != Some(u.rows.len() as u64) {
            what.incomplete.push((
                u.key.clone(),
                u.rows.len(),
                want.and_then(|w| usize::try_from(w).ok()),
            ));
            false
        } else if !seen.insert(u.key.clone()) {
            what.repeated.push(u.key.clone());
            false
        } else {
            true
        }
    });
    Ok(Units {
        complete: units,
        dropped: !what.is_empty(),
        what,
    })
}

/// Writes `bytes` to `path` through a temporary file and a rename.
pub(crate) fn replace_file(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let tmp = path.with_extension("tmp");
    let mut f = File::create(&tmp).map_err(io_err(&tmp))?;
    f.write_all(bytes).map_err(io_err(&tmp))?;
    f.sync_data().map_err(io_err(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io_err(path))
}

/// The row of `v`, line `line` of `path`.
fn row_of(path: &Path, line: usize, v: &Value) -> Result<Row, Error> {
    serde_json::from_value(v.clone()).map_err(|source| Error::Row {
        path: path.to_path_buf(),
        line,
        unit: v
            .get("unit")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
        // `step` alone may be null (a checkpoint without one).
        null: v
            .as_object()
            .is_some_and(|o| o.iter().any(|(k, x)| x.is_null() && k != "step")),
        source,
    })
}

/// Rewrites `dir`'s `results.jsonl` (when `jsonl` is set) and `results.csv` from `rows`;
/// returns the CSV's columns (none without rows).
pub(crate) fn rewrite(
    dir: &Path,
    rows: &[Value],
    jsonl: bool,
) -> Result<Option<Vec<String>>, Error> {
    let jsonl_path = dir.join(JSONL_FILE);
    if jsonl {
        let mut text = String::new();
        for row in rows {
            text.push_str(&row.to_string());
            text.push('\n');
        }
        replace_file(&jsonl_path, text.as_bytes())?;
    }
    let columns = match rows.first() {
        // The first row is line 1: a file with a dropped unit was rewritten.
        Some(first) => Some(columns(&row_of(&jsonl_path, 1, first)?)),
        None => None,
    };
    let csv = match &columns {
        Some(cols) => csv_bytes(rows, cols, true),
        None => Vec::new(),
    };
    replace_file(&dir.join(CSV_FILE), &csv)?;
    Ok(columns)
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
                return Err(Error::Locked {
                    dir: dir.to_path_buf(),
                });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io_err(&lock_path)(e)),
        }
        let jsonl_path = dir.join(JSONL_FILE);
        let units = read_units(&jsonl_path)?;
        let rows: Vec<Value> = units
            .complete
            .iter()
            .flat_map(|u| u.rows.iter().cloned())
            .collect();
        let columns = rewrite(dir, &rows, units.dropped)?;
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
            csv: open(&dir.join(CSV_FILE))?,
            columns,
            done: units.complete.into_iter().map(|u| u.key).collect(),
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
            return Err(Error::UnitConflict {
                unit: first.unit.clone(),
            });
        }
        // JSON has no NaN: serde would write null, which no reader takes for a number.
        for r in rows {
            if let Some((column, value)) = r.non_finite() {
                return Err(Error::NonFinite {
                    unit: r.unit.clone(),
                    column,
                    value,
                });
            }
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
        let cols = self.columns.get_or_insert_with(|| columns(first));
        let csv_path = self.dir.join(CSV_FILE);
        self.csv
            .write_all(&csv_bytes(&values, cols, header))
            .map_err(io_err(&csv_path))?;
        self.done.insert(first.unit.clone());
        Ok(())
    }
}

/// Reads the complete rows of a results directory.
pub fn read_rows(dir: &Path) -> Result<Vec<Row>, Error> {
    read_rows_noting_dropped(dir).map(|(rows, _)| rows)
}

/// Reads the complete rows of a results directory, with what was left out (so a reader can
/// say so: the rows of an interrupted unit are not lost silently).
pub fn read_rows_noting_dropped(dir: &Path) -> Result<(Vec<Row>, Dropped), Error> {
    let path = dir.join(JSONL_FILE);
    let units = read_units(&path)?;
    let rows = units
        .complete
        .iter()
        .flat_map(|u| u.rows.iter().enumerate().map(|(k, v)| (u.line + k, v)))
        .map(|(line, v)| row_of(&path, line, v))
        .collect::<Result<_, _>>()?;
    Ok((rows, units.what))
}
