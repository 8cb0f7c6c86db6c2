//! One target per parser of a file a user hands xlpatch. Each writes the input where the
//! parser expects its file (beside fixed, valid companions from `fuzz/fixed/` and the
//! repository's fixtures) and calls the crate's public entry point. An `Err` is the expected
//! answer to bad input; a panic, an abort or a hang is a finding.
//!
//! Targets that go through a crate another crate will own later name it in `owner`
//! (prompts.jsonl and results.jsonl move to `xlpatch-results`).

use std::path::{Path, PathBuf};

use xlpatch_concepts::ConceptTable;
use xlpatch_concepts::import::{clap, dumas, multisimlex, wendler};
use xlpatch_core::abi::loader::Registry;
use xlpatch_core::config::SweepConfig;
use xlpatch_core::sweep::Shard;

use crate::Env;

/// A fuzz target.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    /// Its name, also the folder of its seeds in `fuzz/corpus/`.
    pub name: &'static str,
    /// The file format it reads, and through which function.
    pub about: &'static str,
    /// Runs the parser on one input: whether it accepted it.
    pub run: fn(&Env, &[u8]) -> bool,
}

/// Every target.
pub const TARGETS: &[Target] = &[
    Target {
        name: "manifest",
        about: "manifest.json of an exported model (xlpatch_model::Manifest::read)",
        run: manifest,
    },
    Target {
        name: "sweep-toml",
        about: "the sweep config TOML (SweepConfig::read, validate and its accessors)",
        run: sweep_toml,
    },
    Target {
        name: "concepts-nouns",
        about: "the concept table's nouns.tsv (ConceptTable::load)",
        run: concepts_nouns,
    },
    Target {
        name: "concepts-polysemy",
        about: "the concept table's polysemy.tsv (ConceptTable::load)",
        run: concepts_polysemy,
    },
    Target {
        name: "concepts-homographs",
        about: "the concept table's homographs.tsv (ConceptTable::load)",
        run: concepts_homographs,
    },
    Target {
        name: "import-multisimlex",
        about: "Multi-SimLex translation.csv (import::multisimlex::read_files)",
        run: import_multisimlex,
    },
    Target {
        name: "import-multisimlex-lang",
        about: "a Multi-SimLex per-language CSV, SPA.csv (import::multisimlex::read_files)",
        run: import_multisimlex_lang,
    },
    Target {
        name: "import-dumas",
        about: "Dumas et al.'s word_translation.csv (import::dumas::read_file)",
        run: import_dumas,
    },
    Target {
        name: "import-wendler",
        about: "Wendler et al.'s clean.csv (import::wendler::read_files)",
        run: import_wendler,
    },
    Target {
        name: "import-clap",
        about: "clap's processed Multi-SimLex CSV, cells as Python list literals \
                (import::clap::read_file)",
        run: import_clap,
    },
    Target {
        name: "results-merge",
        about: "results.jsonl of a shard (xlpatch_core::results::read_rows and merge)",
        run: results_merge,
    },
    Target {
        name: "report-results",
        about: "results.jsonl as the report reads it (xlpatch_report::build)",
        run: report_results,
    },
    Target {
        name: "report-prompts",
        about: "prompts.jsonl as the report reads it (xlpatch_report::build)",
        run: report_prompts,
    },
    Target {
        name: "prompts",
        about: "a prompt set to replay, prompts.jsonl (xlpatch_core::sweep::run, `prompts =`)",
        run: prompts,
    },
    Target {
        name: "export-safetensors",
        about: "model.safetensors: header and tensor table (xlpatch_export::export)",
        run: export_safetensors,
    },
    Target {
        name: "export-config",
        about: "config.json of a Hugging Face checkpoint (xlpatch_export::export)",
        run: export_config,
    },
    Target {
        name: "export-tokenizer",
        about: "tokenizer.json, checked against the vocabulary (xlpatch_export::export)",
        run: export_tokenizer,
    },
    Target {
        name: "export-gguf",
        about: "a GGUF file: header, metadata and tensor table (xlpatch_export::export)",
        run: export_gguf,
    },
];

/// The target called `name`.
pub fn target(name: &str) -> Option<&'static Target> {
    TARGETS.iter().find(|t| t.name == name)
}

fn write(path: &Path, bytes: &[u8]) {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).expect("create a scratch folder");
    }
    std::fs::write(path, bytes).expect("write a scratch file");
}

/// Whether the parser accepted the input. An error must say something: an empty message is
/// as unhelpful as a panic.
fn check_err<E: std::fmt::Display>(r: Result<impl Sized, E>) -> bool {
    match r {
        Ok(_) => true,
        Err(e) => {
            assert!(
                !e.to_string().trim().is_empty(),
                "an error with an empty message"
            );
            false
        }
    }
}

fn manifest(env: &Env, data: &[u8]) -> bool {
    let dir = env.fresh("model");
    write(&dir.join(xlpatch_model::MANIFEST_FILE), data);
    check_err(xlpatch_model::Manifest::read(&dir))
}

fn sweep_toml(env: &Env, data: &[u8]) -> bool {
    let dir = env.fresh("config");
    let path = dir.join("study.toml");
    write(&path, data);
    let Ok(config) = SweepConfig::read(&path) else {
        return false;
    };
    check_err(config.validate());
    check_err(config.study_languages());
    check_err(config.seen_languages());
    check_err(config.target_pairs());
    check_err(config.template());
    check_err(config.concept_ids(&dir));
    check_err(config.model_dirs(&dir));
    // What is stored beside the results must read back as the same config.
    let again = SweepConfig::from_toml(&config.to_toml())
        .unwrap_or_else(|e| panic!("the stored form of a valid config does not parse: {e}"));
    assert_eq!(
        again.to_toml(),
        config.to_toml(),
        "to_toml does not round-trip"
    );
    true
}

/// Loads a concept table whose `replace` file is `data` and the others the fixtures'.
fn concepts_with(env: &Env, replace: &str, data: &[u8], others: &[(&str, &[u8])]) -> bool {
    let dir = env.fresh("concepts");
    for (name, bytes) in others {
        write(&dir.join(name), bytes);
    }
    write(&dir.join(replace), data);
    check_err(ConceptTable::load(&dir))
}

fn concepts_nouns(env: &Env, data: &[u8]) -> bool {
    // Companions with headers only, so that a trimmed nouns.tsv can load.
    let poly = b"lang\tform\tconcept\tother_concept\tnote\n";
    let homo = b"form\tlang_a\tconcept_a\tlang_b\tmeaning_b\tnote\n";
    concepts_with(
        env,
        xlpatch_concepts::NOUNS_FILE,
        data,
        &[
            (xlpatch_concepts::POLYSEMY_FILE, poly),
            (xlpatch_concepts::HOMOGRAPHS_FILE, homo),
        ],
    )
}

fn concepts_polysemy(env: &Env, data: &[u8]) -> bool {
    let (nouns, homo) = (
        env.fixture("fixtures/concepts/nouns.tsv"),
        env.fixture("fixtures/concepts/homographs.tsv"),
    );
    concepts_with(
        env,
        xlpatch_concepts::POLYSEMY_FILE,
        data,
        &[
            (xlpatch_concepts::NOUNS_FILE, &nouns),
            (xlpatch_concepts::HOMOGRAPHS_FILE, &homo),
        ],
    )
}

fn concepts_homographs(env: &Env, data: &[u8]) -> bool {
    let (nouns, poly) = (
        env.fixture("fixtures/concepts/nouns.tsv"),
        env.fixture("fixtures/concepts/polysemy.tsv"),
    );
    concepts_with(
        env,
        xlpatch_concepts::HOMOGRAPHS_FILE,
        data,
        &[
            (xlpatch_concepts::NOUNS_FILE, &nouns),
            (xlpatch_concepts::POLYSEMY_FILE, &poly),
        ],
    )
}

fn import_multisimlex(env: &Env, data: &[u8]) -> bool {
    let path = env.fresh("msl").join("translation.csv");
    write(&path, data);
    check_err(multisimlex::read_files(&[path]))
}

fn import_multisimlex_lang(env: &Env, data: &[u8]) -> bool {
    // A per-language file is read beside English, whose words are the concept ids.
    let dir = env.fresh("msl");
    write(
        &dir.join("ENG.csv"),
        &env.fixture("crates/concepts/tests/data/multisimlex/languages/ENG.csv"),
    );
    let path = dir.join("SPA.csv");
    write(&path, data);
    check_err(multisimlex::read_files(&[dir.join("ENG.csv"), path]))
}

fn import_dumas(env: &Env, data: &[u8]) -> bool {
    let path = env.fresh("dumas").join("de/word_translation.csv");
    write(&path, data);
    check_err(dumas::read_file(&path))
}

fn import_wendler(env: &Env, data: &[u8]) -> bool {
    let path = env.fresh("wendler").join("fr/clean.csv");
    write(&path, data);
    check_err(wendler::read_files(&[path]))
}

fn import_clap(env: &Env, data: &[u8]) -> bool {
    let path = env.fresh("clap").join("multisimlex.csv");
    write(&path, data);
    check_err(clap::read_file(&path))
}

/// A results directory: the fixed run of `fuzz/fixed/run/` with `file` replaced by `data`.
fn run_dir(env: &Env, name: &str, file: &str, data: &[u8]) -> PathBuf {
    let dir = env.fresh(name);
    for f in ["config.toml", "run.json", "prompts.jsonl", "results.jsonl"] {
        write(&dir.join(f), &env.fixture(&format!("fuzz/fixed/run/{f}")));
    }
    write(&dir.join(file), data);
    dir
}

fn results_merge(env: &Env, data: &[u8]) -> bool {
    let shard = run_dir(env, "shard", "results.jsonl", data);
    let accepted = check_err(xlpatch_core::results::read_rows(&shard));
    // Merged with an intact copy of the same run: equal units must agree, others are added.
    let intact = run_dir(
        env,
        "intact",
        "results.jsonl",
        &env.fixture("fuzz/fixed/run/results.jsonl"),
    );
    let out = env.fresh("merged");
    std::fs::remove_dir(&out).expect("remove the empty output folder");
    check_err(xlpatch_core::results::merge(&[intact, shard], &out));
    accepted
}

fn report(env: &Env, file: &str, data: &[u8]) -> bool {
    let run = run_dir(env, "run", file, data);
    let out = env.fresh("report");
    let options = xlpatch_report::Options {
        concepts: Some(env.root().join("fixtures/concepts")),
        // Few resamples: the bootstrap's cost says nothing about the parser.
        resamples: 10,
        ..xlpatch_report::Options::default()
    };
    check_err(xlpatch_report::build(&run, &out, &options))
}

fn report_results(env: &Env, data: &[u8]) -> bool {
    report(env, "results.jsonl", data)
}

fn report_prompts(env: &Env, data: &[u8]) -> bool {
    report(env, "prompts.jsonl", data)
}

fn prompts(env: &Env, data: &[u8]) -> bool {
    let dir = env.fresh("replay");
    let file = dir.join("prompts.jsonl");
    write(&file, data);
    let text = String::from_utf8(env.fixture("fuzz/fixed/run/config.toml")).expect("UTF-8");
    let mut config = SweepConfig::from_toml(&text).expect("the fixed config parses");
    config.prompts = Some(file.display().to_string());
    // No plugins: a prompt set that parses stops at the first plugin the sweep looks up,
    // after the plan (where the prompt set is read and checked) and before any model runs.
    let out = dir.join("out");
    let result = xlpatch_core::sweep::run(
        &config,
        &Registry::new(),
        env.root(),
        &out,
        Shard::default(),
        &mut |_| {},
    );
    // Accepted: the sweep got past the prompt set to the plugins.
    match result {
        Ok(_) => true,
        Err(e) => {
            let message = e.to_string();
            assert!(!message.trim().is_empty(), "an error with an empty message");
            message.contains("no plugin named")
        }
    }
}

/// Exports a checkpoint directory made of the micro Llama of `fuzz/corpus/` with `replace`
/// swapped for `data`; `tokenizer` is passed as the tokenizer to check.
fn export_dir(env: &Env, replace: &str, data: &[u8], tokenizer: Option<&[u8]>) -> bool {
    let dir = env.fresh("checkpoint");
    write(
        &dir.join("config.json"),
        &env.fixture("fuzz/corpus/export-config/micro-llama.json"),
    );
    write(
        &dir.join("model.safetensors"),
        &env.fixture("fuzz/corpus/export-safetensors/micro-llama.safetensors"),
    );
    write(&dir.join(replace), data);
    let out = env.fresh("export");
    let mut opts = xlpatch_export::ExportOptions::new(&dir, &out);
    if let Some(t) = tokenizer {
        let file = env.fresh("tokenizer").join("tokenizer.json");
        write(&file, t);
        opts.tokenizer = Some(file);
    }
    check_err(xlpatch_export::export(&opts))
}

fn export_safetensors(env: &Env, data: &[u8]) -> bool {
    export_dir(env, "model.safetensors", data, None)
}

fn export_config(env: &Env, data: &[u8]) -> bool {
    export_dir(env, "config.json", data, None)
}

fn export_tokenizer(env: &Env, data: &[u8]) -> bool {
    let config = env.fixture("fuzz/corpus/export-config/micro-llama.json");
    export_dir(env, "config.json", &config, Some(data))
}

fn export_gguf(env: &Env, data: &[u8]) -> bool {
    let file = env.fresh("gguf").join("model.gguf");
    write(&file, data);
    let out = env.fresh("export");
    check_err(xlpatch_export::export(&xlpatch_export::ExportOptions::new(
        &file, &out,
    )))
}
