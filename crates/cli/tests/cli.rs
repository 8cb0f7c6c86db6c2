//! The `xlpatch` binary as a user runs it.

use std::process::{Command, Output};

fn xlpatch(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xlpatch"))
        .args(args)
        .env_remove("XLPATCH_PLUGIN_PATH")
        .output()
        .expect("the xlpatch binary runs")
}

#[test]
fn plugins_list_shows_every_builtin_from_its_library() {
    let out = xlpatch(&["plugins", "list", "--json"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "xlpatch plugins list failed (build the plugins with `cargo xtask build-plugins`): {stderr}"
    );
    assert!(stderr.is_empty(), "unexpected warnings: {stderr}");
    let rows: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mut found: Vec<(String, String)> = rows
        .iter()
        .map(|r| {
            let path = std::path::Path::new(r["path"].as_str().unwrap());
            assert!(path.is_file(), "{} is not a file", path.display());
            assert_eq!(r["version"], env!("CARGO_PKG_VERSION"));
            (
                r["name"].as_str().unwrap().to_string(),
                r["kind"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    found.sort();
    let expected: Vec<(String, String)> = [
        ("backend-candle", "backend"),
        ("backend-ort", "backend"),
        ("extract-first", "extractor"),
        ("extract-mean", "extractor"),
        ("metric-concept-prob", "metric"),
        ("patch-add", "patch"),
        ("patch-interpolate", "patch"),
        ("patch-replace", "patch"),
    ]
    .iter()
    .map(|(n, k)| (n.to_string(), k.to_string()))
    .collect();
    assert_eq!(found, expected);

    // The table form has a header and one line per plugin.
    let table = xlpatch(&["plugins", "list"]);
    let text = String::from_utf8(table.stdout).unwrap();
    assert!(text.starts_with("NAME"), "{text}");
    assert_eq!(text.lines().count(), 9, "{text}");
}

#[test]
fn refused_libraries_are_reported_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join(format!(
        "{}junk{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    ));
    std::fs::write(&junk, "not a library").unwrap();
    let out = xlpatch(&[
        "--plugin-dir",
        dir.path().to_str().unwrap(),
        "plugins",
        "list",
    ]);
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("warning:"), "{stderr}");
    assert!(
        stderr.contains("is not a loadable plugin library"),
        "{stderr}"
    );
    assert!(stderr.contains(&junk.display().to_string()), "{stderr}");
}

/// Every subcommand `xlpatch` has; a new one is added here with its help test.
const SUBCOMMANDS: &[&str] = &[
    "export", "inspect", "predict", "patch", "sweep", "merge", "plugins",
];

#[test]
fn help_documents_every_subcommand() {
    let out = xlpatch(&["--help"]);
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for cmd in SUBCOMMANDS {
        assert!(help.contains(cmd), "--help does not mention {cmd}:\n{help}");
    }
    let out = xlpatch(&["plugins", "--help"]);
    let help = String::from_utf8(out.stdout).unwrap();
    assert!(help.contains("list"), "{help}");
    let out = xlpatch(&["no-such-command"]);
    assert_eq!(out.status.code(), Some(2));
}

/// `inspect` names each architecture and what its blocks do, and the context length.
#[test]
fn inspect_shows_the_architecture_and_its_features() {
    let fixtures = xlpatch_testkit::repo_root().join("fixtures/tiny");
    for (arch, class, feature) in [
        (
            "gpt_neox",
            "GPTNeoXForCausalLM",
            "parallel attention and MLP",
        ),
        ("bloom", "BloomForCausalLM", "ALiBi"),
        ("olmo2", "Olmo2ForCausalLM", "no pre-norm"),
    ] {
        let out = tempfile::tempdir().unwrap();
        let src = fixtures.join(arch);
        let dst = out.path().join("m");
        let export = xlpatch(&[
            "export",
            "--model",
            src.to_str().unwrap(),
            "--out",
            dst.to_str().unwrap(),
        ]);
        assert!(export.status.success(), "{arch}: {export:?}");
        let shown = xlpatch(&["inspect", dst.to_str().unwrap()]);
        let text = String::from_utf8_lossy(&shown.stdout);
        assert!(shown.status.success(), "{arch}: {shown:?}");
        assert!(text.contains(&format!("architecture  {class}")), "{text}");
        assert!(text.contains(feature), "{arch}: {text}");
        // The fixtures' configs record 128 positions, except BLOOM's (ALiBi), which has none.
        assert_eq!(
            text.contains("context       128 tokens"),
            arch != "bloom",
            "{text}"
        );
    }
}

/// `xlpatch` with `args`, its hash cache in `cache` (not the user's).
fn xlpatch_cached(args: &[&str], cache: &std::path::Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xlpatch"))
        .args(args)
        .env_remove("XLPATCH_PLUGIN_PATH")
        .env("XDG_CACHE_HOME", cache)
        .output()
        .expect("the xlpatch binary runs")
}

/// Sets the modification time of `path` to `t`.
fn set_mtime(path: &std::path::Path, t: std::time::SystemTime) {
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(t)
        .unwrap();
}

/// Opening a model trusts a hash verified before while a file's size and modification time
/// are unchanged; `--verify` reads every byte, and a changed file is hashed again.
#[test]
fn verified_hashes_are_reused_until_a_file_changes_and_verify_reads_everything() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let model = dir.path().join("m");
    let tok = xlpatch_testkit::char_tokenizer("abc ");
    xlpatch_testkit::export_into("llama", &model, &tok, 1);
    let then = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    for e in std::fs::read_dir(&model).unwrap() {
        set_mtime(&e.unwrap().path(), then);
    }
    let m = model.to_str().unwrap();
    let run = |args: &[&str]| {
        let out = xlpatch_cached(args, &cache);
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, err) = run(&["inspect", m]);
    assert!(ok, "{err}");
    assert!(cache.join("xlpatch/hashes.json").is_file());

    // Other bytes, same size and time: the cached hash is trusted, --verify is not fooled.
    let layer = model.join("layer_1.onnx");
    let mut bytes = std::fs::read(&layer).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&layer, &bytes).unwrap();
    set_mtime(&layer, then);
    let (ok, err) = run(&["inspect", m]);
    assert!(ok, "the cached hash was not used: {err}");
    let (ok, err) = run(&["inspect", "--verify", m]);
    assert!(
        !ok && err.contains("layer_1.onnx does not match its manifest"),
        "{err}"
    );

    // A new modification time: hashed again, the change caught without --verify.
    set_mtime(&layer, then + std::time::Duration::from_secs(60));
    let (ok, err) = run(&["inspect", m]);
    assert!(
        !ok && err.contains("layer_1.onnx does not match its manifest"),
        "{err}"
    );
}

/// `predict` on a model with NaN weights fails naming the model, the prompt and the first
/// block whose output is not finite (it printed NaN probabilities).
#[test]
fn predict_refuses_nan_logits_naming_the_layer() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("m");
    let tok = xlpatch_testkit::char_tokenizer("abc ");
    xlpatch_testkit::export_with_nan(
        "llama",
        "model.layers.1.mlp.down_proj.weight",
        &model,
        &tok,
        1,
    );
    let out = xlpatch_cached(
        &[
            "predict",
            "--model",
            model.to_str().unwrap(),
            "--prompt",
            "abc ab",
        ],
        &dir.path().join("cache"),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        err.contains(model.to_str().unwrap())
            && err.contains("is NaN for prompt \"abc ab\" at layer 1")
            && err.contains("export the checkpoint again"),
        "{err}"
    );
}

/// `predict` refuses a prompt longer than the model's context length (the tiny Llama: 128
/// positions), naming the length, the limit and the fix; `--allow-beyond-context` runs it
/// with a warning.
#[test]
fn predict_refuses_prompts_beyond_the_context_length() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("m");
    let tok = xlpatch_testkit::char_tokenizer("abc ");
    xlpatch_testkit::export_into("llama", &model, &tok, 1);
    let m = model.to_str().unwrap();
    let cache = dir.path().join("cache");
    let long = "abc ".repeat(40);
    let args = [
        "predict",
        "--model",
        m,
        "--prompt",
        &long,
        "--max-new-tokens",
        "3",
    ];
    let out = xlpatch_cached(&args, &cache);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("has 161 tokens (+2 generated) but")
            && err.contains("trained on 128 positions")
            && err.contains("--allow-beyond-context"),
        "{err}"
    );
    let out = xlpatch_cached(&[&args[..], &["--allow-beyond-context"]].concat(), &cache);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("warning: ") && err.contains("128 positions"),
        "{err}"
    );
    // A short prompt runs without a word.
    let out = xlpatch_cached(&["predict", "--model", m, "--prompt", "abc"], &cache);
    assert!(out.status.success() && out.stderr.is_empty(), "{out:?}");
}
