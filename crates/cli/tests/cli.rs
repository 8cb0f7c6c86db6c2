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
