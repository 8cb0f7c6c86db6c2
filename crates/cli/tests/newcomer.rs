//! The README's "First steps" run the way a newcomer runs them: `xlpatch` copied out of the
//! build as `cargo install` does (so it must find the plugins and ONNX Runtime of its
//! checkout by itself), on the PATH, each command line of the README given to `sh` in a
//! directory laid out like the checkout after `cargo xtask sweep`; the figures the README
//! quotes must be what the commands print. Also: the annotated example study is a valid
//! study, `--print-config` prints the default config, and `--help` says shards are 0-based.

use std::path::PathBuf;
use std::process::{Command, Output};

use xlpatch_core::config::SweepConfig;
use xlpatch_testkit::repo_root;

/// The `xlpatch` lines of the README's first `sh` block after "## First steps".
fn readme_commands() -> Vec<String> {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let section = readme
        .split_once("\n## First steps\n")
        .expect("README.md has a \"## First steps\" section")
        .1;
    let block = section
        .split_once("```sh\n")
        .and_then(|(_, rest)| rest.split_once("\n```"))
        .expect("a ```sh block in First steps")
        .0;
    let lines: Vec<String> = block
        .lines()
        .filter(|l| l.starts_with("xlpatch "))
        .map(str::to_string)
        .collect();
    assert!(lines.len() >= 5, "{block}");
    lines
}

/// A checkout after `cargo xtask sweep` and `cargo install --path crates/cli`: `bin/xlpatch`
/// a copy of the binary, `work/` with the repository's fixtures and examples.
struct Newcomer {
    _dir: tempfile::TempDir,
    bin: PathBuf,
    work: PathBuf,
}

impl Newcomer {
    fn new() -> Newcomer {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        let work = dir.path().join("work");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::create_dir_all(&work).unwrap();
        std::fs::copy(env!("CARGO_BIN_EXE_xlpatch"), bin.join("xlpatch")).unwrap();
        for d in ["fixtures", "examples"] {
            std::os::unix::fs::symlink(repo_root().join(d), work.join(d)).unwrap();
        }
        Newcomer {
            _dir: dir,
            bin,
            work,
        }
    }

    /// `line` run by `sh` in `work/`, with only `bin/` added to the PATH: no plugin path, no
    /// ONNX Runtime variable.
    fn sh(&self, line: &str) -> Output {
        let path = std::env::var_os("PATH").unwrap_or_default();
        let mut dirs = vec![self.bin.clone()];
        dirs.extend(std::env::split_paths(&path));
        Command::new("sh")
            .arg("-c")
            .arg(line)
            .current_dir(&self.work)
            .env("PATH", std::env::join_paths(dirs).unwrap())
            .env_remove("XLPATCH_PLUGIN_PATH")
            .env_remove("ORT_DYLIB_PATH")
            .output()
            .unwrap()
    }

    fn ok(&self, line: &str) -> String {
        let out = self.sh(line);
        assert!(
            out.status.success(),
            "`{line}` failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }
}

fn line_starting<'a>(lines: &'a [String], start: &str) -> &'a str {
    lines
        .iter()
        .find(|l| l.starts_with(start))
        .unwrap_or_else(|| panic!("no README line starts with {start:?}: {lines:?}"))
}

#[test]
fn the_readme_first_steps_work_with_an_installed_binary() {
    let lines = readme_commands();
    let n = Newcomer::new();

    // The main job's sweep, as `cargo xtask sweep` runs it; its summary ends with the
    // README's report command.
    let summary = n.ok("xlpatch sweep --out target/sweep/default");
    let report = line_starting(&lines, "xlpatch report ");
    assert_eq!(
        summary.lines().last().unwrap(),
        format!("see the report: {report}"),
        "{summary}"
    );

    let listed = n.ok(line_starting(&lines, "xlpatch plugins list"));
    assert_eq!(listed.lines().count(), 9, "{listed}");
    for name in [
        "backend-ort",
        "backend-candle",
        "extract-mean",
        "patch-replace",
    ] {
        assert!(listed.contains(name), "{listed}");
    }

    // The README quotes what predict and patch print.
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let predicted = n.ok(line_starting(&lines, "xlpatch predict "));
    let top = predicted.lines().nth(1).unwrap();
    assert!(top.contains("0.9585  \"Fisch\""), "{predicted}");
    assert!(readme.contains("`\"Fisch\"` at 0.9585"));
    let patched = n.ok(line_starting(&lines, "xlpatch patch "));
    let row = patched.lines().nth(2).unwrap();
    assert!(
        row.contains("0.9585  \"Fisch\"") && row.contains("0.9897  \"Brot\""),
        "{patched}"
    );
    assert!(patched.contains("P(Fisch): 0.9585 -> 0.0000"), "{patched}");
    assert!(
        patched.contains("generation: \"Fisch\\\"\" -> \"Brot\\\"\""),
        "{patched}"
    );
    assert!(readme.contains("(`\"Brot\"` at 0.9897"));

    n.ok(report);
    assert!(
        n.work
            .join("target/sweep/default-report/index.html")
            .is_file()
    );

    // The printed config is the default study.
    let print = line_starting(&lines, "xlpatch sweep --print-config");
    n.ok(print);
    let file = print.rsplit_once("> ").unwrap().1.trim();
    assert_eq!(
        SweepConfig::read(&n.work.join(file)).unwrap(),
        SweepConfig::default()
    );

    // The example study runs, and its summary says how to see its report.
    let study = n.ok(line_starting(
        &lines,
        "xlpatch sweep --config examples/study.toml",
    ));
    assert!(
        study.starts_with("70 units run, 0 resumed, 70 in shard 0/1"),
        "{study}"
    );
    assert_eq!(
        study.lines().last().unwrap(),
        "see the report: xlpatch report study --out study-report"
    );
}

#[test]
fn the_example_study_is_a_valid_study_of_the_fixture_series() {
    let path = repo_root().join("examples/study.toml");
    let config = SweepConfig::read(&path).unwrap();
    let base = path.parent().unwrap();
    let dirs = config.model_dirs(base).unwrap();
    assert_eq!(dirs.len(), 7);
    assert_eq!(config.layers(4).unwrap(), [0, 1, 2, 3]);
    assert_eq!(config.concept_ids(base).unwrap().unwrap().len(), 80);
    // Every line that is not a comment or blank sits under a comment saying what it is.
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    for (i, l) in lines.iter().enumerate() {
        let key = l.split_once(" = ").map(|(k, _)| k);
        if let Some(key) = key.filter(|_| !l.starts_with('#')) {
            let above = lines[..i]
                .iter()
                .rev()
                .take_while(|p| !p.is_empty())
                .any(|p| p.starts_with('#'));
            assert!(above, "examples/study.toml: {key} has no comment");
        }
    }
    // Planned and run on one unit (of 70): the checkpoints, concepts and plugins it names
    // are all there.
    let out = tempfile::tempdir().unwrap();
    let run = Command::new(env!("CARGO_BIN_EXE_xlpatch"))
        .args([
            "sweep",
            "--config",
            path.to_str().unwrap(),
            "--shard",
            "0/70",
            "--out",
        ])
        .arg(out.path())
        .env_remove("XLPATCH_PLUGIN_PATH")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(
        stdout.starts_with("1 units run, 0 resumed, 1 in shard 0/70"),
        "{stdout}"
    );
    // A shard's summary points to merging, not to a partial report.
    assert!(
        stdout.trim_end().ends_with("report the merged one"),
        "{stdout}"
    );
}

fn stdout_of(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_xlpatch"))
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn help_says_shards_are_zero_based_and_prints_the_config() {
    let sweep = stdout_of(&["sweep", "--help"]);
    assert!(sweep.contains("0-based"), "{sweep}");
    assert!(sweep.contains("--print-config"), "{sweep}");
    assert!(stdout_of(&["--help"]).contains("0-based"));
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    assert!(readme.contains("Shards are 0-based"));
    let printed = stdout_of(&["sweep", "--print-config"]);
    assert_eq!(
        SweepConfig::from_toml(&printed).unwrap(),
        SweepConfig::default()
    );
    assert!(printed.contains("\n# The start layers run and reported"));
    // With --config: that file, the defaults filled in.
    let printed = stdout_of(&[
        "sweep",
        "--config",
        repo_root().join("examples/study.toml").to_str().unwrap(),
        "--print-config",
    ]);
    assert!(printed.contains("\nstart_layers = \"0..4\"\n"), "{printed}");
    assert!(printed.contains("\nconcept_pairs = 5\n"), "{printed}");
}

/// `cargo xtask sweep` runs `examples/deep.toml`: the study must plan (enough concepts for 30
/// concept pairs per language pair, the demonstrations drawn per prompt) and run. One shard of
/// 60 runs 9 of its 540 units (9 checkpoints × 2 language pairs × 30 concept pairs).
#[test]
fn the_main_jobs_study_plans_and_runs_a_shard() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("deep");
    let config = repo_root().join("examples/deep.toml");
    let o = Command::new(env!("CARGO_BIN_EXE_xlpatch"))
        .args([
            "sweep",
            "--config",
            config.to_str().unwrap(),
            "--shard",
            "0/60",
        ])
        .args(["--out", out.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mut units = std::collections::BTreeSet::new();
    let mut reader = csv::Reader::from_path(out.join("results.csv")).unwrap();
    let headers = reader.headers().unwrap().clone();
    let col = |name: &str| headers.iter().position(|h| h == name).unwrap();
    let (unit, in_lang, out_lang) = (col("unit"), col("in_lang"), col("out_lang"));
    for row in reader.records() {
        let row = row.unwrap();
        units.insert(row[unit].to_string());
        let pair = format!("{}-{}", &row[in_lang], &row[out_lang]);
        assert!(pair == "fr-de" || pair == "de-it", "{pair}");
    }
    assert_eq!(units.len(), 9, "{units:?}");
}
