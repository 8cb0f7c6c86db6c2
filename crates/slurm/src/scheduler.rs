//! Talking to Slurm: `scontrol show config` for `MaxArraySize`, `sbatch --parsable` to submit,
//! `squeue` for what is still queued and `scancel` for a merge job left waiting on a
//! dependency that can no longer be met. Nothing here reads Slurm's accounting.

use std::collections::BTreeSet;
use std::io::Write as _;
use std::path::Path;
use std::process::Command;

use serde::{Deserialize, Serialize};

use crate::plan::{JOBS_FILE, Study};
use crate::{Error, io};

/// The Slurm commands of the submitting machine (found on `PATH`; `SLURM_CONF` and the rest
/// of the environment pass through).
#[derive(Debug, Clone, Default)]
pub struct Slurm;

fn run(cmd: &mut Command) -> Result<String, Error> {
    let line = format!("{cmd:?}");
    let out = cmd.output().map_err(|e| Error::Slurm {
        command: line.clone(),
        what: format!(
            "cannot run it ({e}); is Slurm's client installed and on PATH? (on a test machine: \
             `cargo xtask slurm-up`)"
        ),
    })?;
    if !out.status.success() {
        return Err(Error::Slurm {
            command: line,
            what: format!(
                "{}: {}{}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim(),
                String::from_utf8_lossy(&out.stdout).trim()
            ),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `MaxArraySize` from `scontrol show config` output.
pub fn parse_max_array_size(text: &str) -> Option<usize> {
    text.lines().find_map(|l| {
        let (key, value) = l.split_once('=')?;
        (key.trim() == "MaxArraySize")
            .then(|| value.trim().parse().ok())
            .flatten()
    })
}

/// The job id `sbatch --parsable` prints (`id` or `id;cluster`).
pub fn parse_job_id(text: &str) -> Option<String> {
    let id = text.trim().split(';').next()?.trim();
    (!id.is_empty() && id.bytes().all(|b| b.is_ascii_digit())).then(|| id.to_string())
}

/// An `--array` index list: ranges of consecutive indices (`0-3,7,9-10`).
pub fn array_spec(indices: &[usize]) -> String {
    let mut sorted: Vec<usize> = indices.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut parts = Vec::new();
    let mut i = 0;
    while i < sorted.len() {
        let mut j = i;
        while j + 1 < sorted.len() && sorted[j + 1] == sorted[j] + 1 {
            j += 1;
        }
        parts.push(if i == j {
            sorted[i].to_string()
        } else {
            format!("{}-{}", sorted[i], sorted[j])
        });
        i = j + 1;
    }
    parts.join(",")
}

impl Slurm {
    /// The cluster's `MaxArraySize` (array indices run from 0 to one less).
    pub fn max_array_size(&self) -> Result<usize, Error> {
        let text = run(Command::new("scontrol").args(["show", "config"]))?;
        parse_max_array_size(&text).ok_or_else(|| Error::Slurm {
            command: "scontrol show config".into(),
            what: "no MaxArraySize in its output".into(),
        })
    }

    /// Submits `script` with extra options; returns the job id.
    pub fn sbatch(&self, options: &[String], script: &Path) -> Result<String, Error> {
        let mut cmd = Command::new("sbatch");
        cmd.arg("--parsable").args(options).arg(script);
        let out = run(&mut cmd)?;
        parse_job_id(&out).ok_or_else(|| Error::Slurm {
            command: format!("{cmd:?}"),
            what: format!("no job id in its output {out:?}"),
        })
    }

    /// Jobs still known to Slurm among `jobs` (array jobs by their id): `(job id, state,
    /// reason)` per job or array task.
    pub fn queued(&self, jobs: &[String]) -> Result<Vec<(String, String, String)>, Error> {
        // All jobs, not `--jobs=`: squeue fails on an id it has already forgotten.
        let text = run(Command::new("squeue").args(["-h", "-r", "-o", "%i|%T|%r"]))?;
        let wanted: BTreeSet<&str> = jobs.iter().map(String::as_str).collect();
        Ok(text
            .lines()
            .filter_map(|l| {
                let mut f = l.split('|');
                let (id, state, reason) = (f.next()?.trim(), f.next()?.trim(), f.next()?.trim());
                let base = id.split('_').next()?;
                wanted
                    .contains(base)
                    .then(|| (id.to_string(), state.to_string(), reason.to_string()))
            })
            .collect())
    }

    /// Cancels jobs.
    pub fn cancel(&self, jobs: &[String]) -> Result<(), Error> {
        if jobs.is_empty() {
            return Ok(());
        }
        run(Command::new("scancel").args(jobs)).map(|_| ())
    }
}

/// One submission of a study, as recorded in `jobs.jsonl`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Submission {
    /// The array jobs' ids.
    pub arrays: Vec<String>,
    /// The merge job's id.
    pub merge: String,
    /// The job-table indices submitted.
    pub tasks: Vec<usize>,
    /// The sbatch command lines (for the record, and what `--dry-run` prints).
    pub commands: Vec<String>,
}

impl Study {
    /// Every submission so far, oldest first.
    pub fn submissions(&self) -> Result<Vec<Submission>, Error> {
        let path = self.dir.join(JOBS_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io(&path)(e)),
        };
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                serde_json::from_str(l).map_err(|e| Error::Io {
                    path: path.clone(),
                    what: e.to_string(),
                })
            })
            .collect()
    }
}

/// Submits the job-table indices `tasks` of `study` (all of them on the first submission, the
/// missing ones on a resubmission) as one array job per array script they fall in, each
/// after the one before (`afterany`), then the merge job with `afterok` on every one of them. With `slurm` `None` (a dry run) nothing is
/// submitted and the commands are returned with placeholder ids.
pub fn submit(study: &Study, tasks: &[usize], slurm: Option<&Slurm>) -> Result<Submission, Error> {
    let mut arrays = Vec::new();
    let mut commands = Vec::new();
    for (i, a) in study.arrays.iter().enumerate() {
        let local: Vec<usize> = tasks
            .iter()
            .filter(|&&t| t >= a.offset && t < a.offset + a.len)
            .map(|t| t - a.offset)
            .collect();
        if local.is_empty() {
            continue;
        }
        let mut options = Vec::new();
        if local.len() != a.len {
            // The script's own `--array` covers all its tasks; the command line overrides it.
            options.push(format!(
                "--array={}%{}",
                array_spec(&local),
                study.slurm.concurrency
            ));
        }
        // Split arrays run one after another (whatever their tasks' outcome), so that the
        // study never runs more than `concurrency` tasks at once.
        if let Some(previous) = arrays.last() {
            options.push(format!("--dependency=afterany:{previous}"));
        }
        commands.push(format!(
            "sbatch --parsable {}{}",
            options.iter().map(|o| format!("{o} ")).collect::<String>(),
            a.script.display()
        ));
        arrays.push(match slurm {
            Some(s) => s.sbatch(&options, &a.script)?,
            None => format!("<array {i}>"),
        });
    }
    if arrays.is_empty() {
        return Err(Error::Config(format!(
            "nothing to submit: every task of {} is complete",
            study.dir.display()
        )));
    }
    let dependency = format!("--dependency=afterok:{}", arrays.join(":"));
    commands.push(format!(
        "sbatch --parsable {dependency} {}",
        study.merge_script.display()
    ));
    let merge = match slurm {
        Some(s) => s.sbatch(&[dependency], &study.merge_script)?,
        None => "<merge>".into(),
    };
    let submission = Submission {
        arrays,
        merge,
        tasks: tasks.to_vec(),
        commands,
    };
    if slurm.is_some() {
        let path = study.dir.join(JOBS_FILE);
        let line = serde_json::to_string(&submission).expect("a submission serializes") + "\n";
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut f| f.write_all(line.as_bytes()))
            .map_err(io(&path))?;
    }
    Ok(submission)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_of_slurm_parse() {
        // As printed by Slurm 22.05's `scontrol show config` and `sbatch --parsable`.
        let config = "Configuration data as of 2026-12-04T13:56:10\nAccountingStorageBackupHost = (null)\nMaxArraySize            = 5\nMaxDBDMsgs              = 20008\n";
        assert_eq!(parse_max_array_size(config), Some(5));
        assert_eq!(parse_max_array_size("MaxArraySizeX = 3\n"), None);
        assert_eq!(parse_job_id("42\n").as_deref(), Some("42"));
        assert_eq!(parse_job_id("42;cluster\n").as_deref(), Some("42"));
        assert_eq!(parse_job_id("sbatch: error\n"), None);
        assert_eq!(array_spec(&[7, 0, 1, 2, 3, 9, 10]), "0-3,7,9-10");
        assert_eq!(array_spec(&[4]), "4");
    }
}
