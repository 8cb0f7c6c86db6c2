//! What a user is told, and what is refused or accepted as the same sweep: a study is checked
//! whole before its results directory is written; the other-sweep refusal names what
//! differs; a study spelled with relative or absolute paths is one sweep; a merge of a
//! missing or repeated shard is refused; errors say each cause once, name the fix, and start
//! their own line.

use std::path::Path;
use std::process::Command;

use xlpatch_testkit::{LANGS, repo_root, series};

fn xlpatch() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_xlpatch"));
    cmd.env_remove("XLPATCH_PLUGIN_PATH");
    cmd
}

/// Runs `cmd`, which must succeed; its stdout.
fn ok(cmd: &mut Command) -> String {
    let out = cmd.output().expect("xlpatch runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{cmd:?} failed: {stderr}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `cmd`, which must fail with exit code 1; its stderr.
fn fails(cmd: &mut Command) -> String {
    let out = cmd.output().expect("xlpatch runs");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{cmd:?}: {stderr}");
    stderr
}

/// A small study of the two-checkpoint series, paths as given.
fn config(models: &str, concepts: &str, extra: &str) -> String {
    format!(
        "models = [{models:?}]\nconcepts = {concepts:?}\nlanguages = {LANGS:?}\n\
         pairs = [[\"fr\", \"de\"]]\nconcept_pairs = 2\nsettings = [\"tgt\", \"unpatched\"]\n\
         max_new_tokens = 1\nthreads = 1\nallow_beyond_context = true\n{extra}"
    )
}

fn sweep(cfg: &Path, out: &Path) -> Command {
    let mut cmd = xlpatch();
    cmd.args(["sweep", "--config"])
        .arg(cfg)
        .arg("--out")
        .arg(out);
    cmd
}

#[test]
fn a_plugin_typo_writes_nothing_and_the_corrected_config_then_runs() {
    let root = tempfile::tempdir().unwrap();
    let series = series(root.path());
    let models = series.join("step_*").display().to_string();
    let concepts = repo_root().join("fixtures/concepts").display().to_string();
    let cfg = root.path().join("sweep.toml");
    let out = root.path().join("out");
    for (plugins, says) in [
        (
            "[plugins]\npatch = \"patch-replac\"\n",
            "no plugin named \"patch-replac\"",
        ),
        (
            "[plugins]\npatch = \"patch-interpolate\"\npatch_params = { alpha = \"half\" }\n",
            "plugin \"patch-interpolate\" refused its parameters",
        ),
        (
            "[plugins.backend_params]\nopt_level = \"fastest\"\n",
            "opt_level",
        ),
    ] {
        std::fs::write(&cfg, config(&models, &concepts, plugins)).unwrap();
        let err = fails(&mut sweep(&cfg, &out));
        assert!(err.contains(says), "{plugins}: {err}");
        assert!(
            !out.exists(),
            "{plugins}: the refused study wrote {}",
            out.display()
        );
    }
    std::fs::write(&cfg, config(&models, &concepts, "")).unwrap();
    let done = ok(&mut sweep(&cfg, &out));
    assert!(done.contains("4 units run"), "{done}");
}

#[test]
fn one_study_spelled_with_relative_and_absolute_paths_resumes_and_merges() {
    let root = tempfile::tempdir().unwrap();
    let series = series(root.path());
    assert_eq!(series, root.path().join("series"));
    let concepts = repo_root().join("fixtures/concepts");
    std::fs::create_dir(root.path().join("sub")).unwrap();
    // Relative to the config's directory, and absolute with a detour.
    let relative = root.path().join("relative.toml");
    std::fs::write(
        &relative,
        config("series/step_*", &concepts.display().to_string(), ""),
    )
    .unwrap();
    let absolute = root.path().join("sub/absolute.toml");
    let detour = |p: &Path| {
        let p = p.display().to_string();
        let (dir, name) = p.rsplit_once('/').unwrap();
        format!("{dir}/./{name}")
    };
    std::fs::write(
        &absolute,
        config(
            &format!("{}/../series/step_*", root.path().join("sub").display()),
            &detour(&concepts),
            "",
        ),
    )
    .unwrap();
    let shards: Vec<_> = (0..2)
        .map(|k| root.path().join(format!("shard{k}")))
        .collect();
    ok(sweep(&relative, &shards[0]).args(["--shard", "0/2"]));
    ok(sweep(&absolute, &shards[1]).args(["--shard", "1/2"]));
    // A resume with the other spelling finds its units done.
    let resumed = ok(sweep(&absolute, &shards[0]).args(["--shard", "0/2"]));
    assert!(resumed.contains("0 units run, 2 resumed"), "{resumed}");
    let merged = root.path().join("merged");
    let said = ok(xlpatch()
        .arg("merge")
        .args(&shards)
        .arg("--out")
        .arg(&merged));
    assert!(said.contains("merged 2 shards"), "{said}");

    // One shard of two, or one twice: refused, naming it.
    let never = root.path().join("never");
    let err = fails(
        xlpatch()
            .arg("merge")
            .arg(&shards[1])
            .arg("--out")
            .arg(&never),
    );
    assert!(err.contains("shard 0/2 of 2 is missing"), "{err}");
    let err = fails(
        xlpatch()
            .arg("merge")
            .args([&shards[0], &shards[0], &shards[1]])
            .arg("--out")
            .arg(&never),
    );
    assert!(
        err.contains("the same directory; give each shard once"),
        "{err}"
    );
    assert!(!never.exists());

    // Another study in the same directory: the refusal names the fields that differ.
    let other = root.path().join("other.toml");
    std::fs::write(
        &other,
        config(
            "series/step_*",
            &concepts.display().to_string(),
            "seed = 3\n",
        ),
    )
    .unwrap();
    let err = fails(sweep(&other, &shards[0]).args(["--shard", "0/2"]));
    assert!(
        err.contains("config.toml: belongs to another sweep (seed: 0 → 3)"),
        "{err}"
    );
    let err = fails(sweep(&relative, &shards[0]).args(["--shard", "1/2"]));
    assert!(
        err.contains("run.json: belongs to another sweep (shard.index: 0 → 1)"),
        "{err}"
    );
}

/// Each cause once; `--plugin-dir` that does not exist; an error on its own line after the
/// progress bar.
#[test]
fn errors_say_each_cause_once_and_start_their_own_line() {
    let root = tempfile::tempdir().unwrap();
    let missing = root.path().join("missing.toml");
    let err = fails(&mut sweep(&missing, &root.path().join("out")));
    assert_eq!(err.matches("No such file").count(), 1, "{err}");
    assert!(err.contains("missing.toml"), "{err}");

    let nowhere = root.path().join("no-plugins-here");
    let err = fails(
        xlpatch()
            .arg("--plugin-dir")
            .arg(&nowhere)
            .args(["plugins", "list"]),
    );
    assert!(
        err.contains(&format!(
            "--plugin-dir {} does not exist",
            nowhere.display()
        )),
        "{err}"
    );

    // A checkpoint whose graph is damaged after the sweep started: the first checkpoint's
    // progress is drawn, then the error, on a line of its own, the plugin's i/o cause once.
    let series = series(root.path());
    let cfg = root.path().join("sweep.toml");
    let concepts = repo_root().join("fixtures/concepts").display().to_string();
    std::fs::write(&cfg, config("series/step_*", &concepts, "")).unwrap();
    std::fs::remove_file(series.join("step_2/head.onnx")).unwrap();
    let err = fails(&mut sweep(&cfg, &root.path().join("out")));
    assert!(err.contains("units/s"), "no progress drawn: {err}");
    let line = err
        .lines()
        .find(|l| l.contains("error:"))
        .unwrap_or_else(|| panic!("no error line: {err}"));
    assert!(line.starts_with("error: "), "{err:?}");
    assert!(line.contains("head.onnx"), "{line}");
    assert_eq!(line.matches("No such file").count(), 1, "{line}");
    assert!(line.matches("(i/o error)").count() <= 1, "{line}");
}

/// `--model` given a file that is no checkpoint, or a mistyped path.
#[test]
fn export_says_what_model_it_expects() {
    let root = tempfile::tempdir().unwrap();
    let file = root.path().join("x.safetensors");
    std::fs::write(&file, b"not a checkpoint").unwrap();
    for model in [file, root.path().join("modle.gguf")] {
        let err = fails(
            xlpatch()
                .args(["export", "--model"])
                .arg(&model)
                .arg("--out")
                .arg(root.path().join("out")),
        );
        assert!(
            err.contains("a Hugging Face checkpoint directory (config.json and *.safetensors) or a .gguf file")
                && !err.contains("Not a directory"),
            "{err}"
        );
    }
}
