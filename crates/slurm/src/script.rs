//! The sbatch scripts: an array per chunk of the job table, and the merge job.

use std::fmt::Write as _;
use std::path::Path;

use crate::plan::{Array, Study, TASKS_FILE};

/// A word for bash: single-quoted, with `'` spelled `'\''`.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn quote_path(p: &Path) -> String {
    quote(&p.display().to_string())
}

/// The `#SBATCH` lines shared by tasks and merge, and the environment of every job.
fn header(out: &mut String, study: &Study, job: &str, task: bool) {
    let s = &study.slurm;
    let _ = writeln!(out, "#!/bin/bash");
    let _ = writeln!(out, "#SBATCH --job-name={job}");
    if let Some(p) = &s.partition {
        let _ = writeln!(out, "#SBATCH --partition={p}");
    }
    if let Some(a) = &s.account {
        let _ = writeln!(out, "#SBATCH --account={a}");
    }
    if let Some(t) = &s.time {
        let _ = writeln!(out, "#SBATCH --time={t}");
    }
    if task {
        let _ = writeln!(out, "#SBATCH --cpus-per-task={}", s.cpus_per_task);
        if let Some(m) = &s.mem {
            let _ = writeln!(out, "#SBATCH --mem={m}");
        }
        if let Some(g) = s.gpus {
            let _ = writeln!(out, "#SBATCH --gpus={g}");
        }
    }
    for e in &s.extra {
        let _ = writeln!(out, "#SBATCH {e}");
    }
}

/// The environment every job sets: compute nodes are often offline, so everything a task
/// reads must be on the shared filesystem beforehand (`xlpatch series fetch` for hub series).
fn environment(out: &mut String, study: &Study) {
    let _ = writeln!(out, "set -euo pipefail");
    let _ = writeln!(out, "export HF_HUB_OFFLINE=1");
    if let Some(ort) = &study.runtime.ort_dylib {
        let _ = writeln!(out, "export ORT_DYLIB_PATH={}", quote_path(ort));
    }
}

/// The script of one array job: its task reads its line of the job table and runs
/// `xlpatch sweep` on it (a rerun of the same index resumes the task's results).
pub(crate) fn array(study: &Study, a: &Array) -> String {
    let mut out = String::new();
    header(&mut out, study, &study.name, true);
    let _ = writeln!(
        out,
        "#SBATCH --array=0-{}%{}",
        a.len - 1,
        study.slurm.concurrency
    );
    let log = study.dir.join("logs").join("task-%A_%a.out");
    let _ = writeln!(out, "#SBATCH --output={}", log.display());
    // A requeued (preempted) task appends to its log and resumes its results.
    let _ = writeln!(out, "#SBATCH --open-mode=append");
    let _ = writeln!(out, "#SBATCH --requeue");
    environment(&mut out, study);
    let _ = writeln!(out, "task=$(( {} + SLURM_ARRAY_TASK_ID ))", a.offset);
    let _ = writeln!(
        out,
        "line=$(awk -F'\\t' -v t=\"$task\" '$1 == t' {})",
        quote_path(&study.dir.join(TASKS_FILE))
    );
    let _ = writeln!(
        out,
        "IFS=$'\\t' read -r index checkpoint shard config results <<< \"$line\""
    );
    let _ = writeln!(
        out,
        "[ \"${{index:-}}\" = \"$task\" ] || {{ echo \"task $task is not in the job table\" >&2; exit 1; }}"
    );
    let _ = writeln!(
        out,
        "echo \"xlpatch task $task: $checkpoint shard $shard on $(hostname) from $(date -u +%FT%TZ)\""
    );
    let mut cmd = quote_path(&study.runtime.xlpatch);
    for d in &study.runtime.plugin_dirs {
        cmd.push_str(" --plugin-dir ");
        cmd.push_str(&quote_path(d));
    }
    let _ = writeln!(
        out,
        "exec {cmd} sweep --config \"$config\" --shard \"$shard\" --out \"$results\" \
         --threads \"${{SLURM_CPUS_PER_TASK:-{}}}\"",
        study.slurm.cpus_per_task
    );
    out
}

/// The merge job's script: joins the tasks' results once every array has succeeded.
pub(crate) fn merge(study: &Study) -> String {
    let mut out = String::new();
    header(&mut out, study, &format!("{}-merge", study.name), false);
    let log = study.dir.join("logs").join("merge-%j.out");
    let _ = writeln!(out, "#SBATCH --output={}", log.display());
    environment(&mut out, study);
    let _ = writeln!(
        out,
        "exec {} slurm merge --study {}",
        quote_path(&study.runtime.xlpatch),
        quote_path(&study.dir)
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{Runtime, SlurmConfig, plan};
    use xlpatch_core::config::SweepConfig;

    #[test]
    fn scripts_carry_resources_offsets_and_absolute_paths() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let slurm = SlurmConfig {
            shards: 2,
            concurrency: 3,
            partition: Some("gpu".into()),
            account: Some("proj-1".into()),
            time: Some("01:30:00".into()),
            mem: Some("16G".into()),
            cpus_per_task: 4,
            gpus: Some(1),
            extra: vec!["--qos=normal".into()],
        };
        let runtime = Runtime {
            xlpatch: "/sw/it's/xlpatch".into(),
            plugin_dirs: vec!["/sw/plugins".into()],
            ort_dylib: Some("/sw/ort/libonnxruntime.so".into()),
        };
        let study = plan(
            &SweepConfig::default(),
            &repo,
            dir.path(),
            &slurm,
            &runtime,
            10,
        )
        .unwrap();
        assert_eq!(study.arrays.len(), 2);
        let second = array(&study, &study.arrays[1]);
        for line in [
            "#SBATCH --partition=gpu",
            "#SBATCH --account=proj-1",
            "#SBATCH --time=01:30:00",
            "#SBATCH --mem=16G",
            "#SBATCH --cpus-per-task=4",
            "#SBATCH --gpus=1",
            "#SBATCH --qos=normal",
            "#SBATCH --array=0-3%3",
            "export HF_HUB_OFFLINE=1",
            "export ORT_DYLIB_PATH='/sw/ort/libonnxruntime.so'",
            "task=$(( 10 + SLURM_ARRAY_TASK_ID ))",
        ] {
            assert!(
                second.lines().any(|l| l == line),
                "no {line:?} in\n{second}"
            );
        }
        assert!(
            second.contains(r"exec '/sw/it'\''s/xlpatch' --plugin-dir '/sw/plugins' sweep"),
            "{second}"
        );
        let m = merge(&study);
        assert!(m.contains("slurm merge --study '/"), "{m}");
        assert!(!m.contains("--gpus"), "the merge needs no GPU:\n{m}");
    }
}
