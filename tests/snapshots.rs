//! Snapshot tests of translations: for a fixed prompt set, the greedy translations
//! of every checkpoint of the fixture series, unpatched and patched, one snapshot per
//! checkpoint in `tests/snapshots/<checkpoint>.snap` (the deep series of the default sweep,
//! `fixtures/series-deep`, in `tests/snapshots/deep_<checkpoint>.snap`). A change in the exporter, the backend
//! or the engine that changes a translation fails here until the new snapshot is reviewed
//! (`cargo insta review`, or `INSTA_UPDATE=always cargo xtask snapshots` to accept).
//!
//! Each prompt is patched as a sweep's `tgt` setting does: `patch-replace` from start layer
//! `j` on, at the target's concept word, with the latent of a cut source prompt of the same
//! language pair and another concept (`extract-mean` of one). Snapshots hold text only, no
//! probabilities. A greedy token decided by a hair would make a snapshot depend on float
//! rounding, so every decision is recomputed without the KV cache and must win by a logit
//! margin of at least [`MIN_LOGIT_GAP`].

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use xlpatch_abi::loader::Registry;
use xlpatch_abi::{Extractor, PatchStrategy};
use xlpatch_concepts::{Concept, ConceptTable, Lang};
use xlpatch_core::latents::{combine, prompt_latent};
use xlpatch_core::model::{BackendOptions, Model};
use xlpatch_core::patch::{
    Baseline, Batching, Generation, Patch, Scope, answer_stops, generate_many, patched,
};
use xlpatch_core::prompt::{DEFAULT_SHOTS, PromptBuilder, PromptKind, Template};
use xlpatch_core::rng::Rng;

use crate::support::{builtins, root};

/// The seed of the demonstrations.
const SEED: u64 = 6;

/// Greedy tokens at most, as in a sweep.
const MAX_NEW: usize = 10;

/// The smallest logit margin of the chosen token over the runner-up that a snapshot accepts.
/// Backends on other CPUs round differently by about 1e-5; a margin 100 times that keeps the
/// snapshots machine-independent.
const MIN_LOGIT_GAP: f32 = 1e-3;

/// A prompt: (input language, output language, target concept, source concept).
type Case = (&'static str, &'static str, &'static str, &'static str);

/// The prompt set: (input language, output language, target concept, source concept). The
/// concepts are among those the series was trained on; fr→de and en→nl are held-in pairs,
/// de→it is held out (checked against `training.json`).
const CASES: [Case; 8] = [
    ("fr", "de", "bird", "butter"),
    ("fr", "de", "horse", "key"),
    ("fr", "de", "tree", "hat"),
    ("de", "it", "sun", "door"),
    ("de", "it", "head", "honey"),
    ("de", "it", "king", "flower"),
    ("en", "nl", "fish", "salt"),
    ("en", "nl", "lake", "wheel"),
];

/// The deep series' prompt set: [`CASES`] but for the last, whose patched answer at one
/// early checkpoint of that series is decided by less than [`MIN_LOGIT_GAP`].
const DEEP_CASES: [Case; 8] = {
    let mut cases = CASES;
    cases[7] = ("en", "nl", "lake", "tent");
    cases
};

/// The 4-layer series of the exactness tests, and the deep series of the default sweep.
const SERIES: &str = "fixtures/series";
const DEEP: &str = "fixtures/series-deep";

/// One test per checkpoint, so that a failure names it, and the list they cover.
macro_rules! snapshot_tests {
    ($series:expr, $prefix:literal, $cases:expr, $list:ident, $($name:ident: $checkpoint:literal,)*) => {
        const $list: &[&str] = &[$($checkpoint),*];
        $(
            #[test]
            fn $name() {
                check($series, $prefix, &$cases, $checkpoint);
            }
        )*
    };
}

snapshot_tests! {
    SERIES, "", CASES, CHECKPOINTS,
    snapshot_step_0: "step_0",
    snapshot_step_16: "step_16",
    snapshot_step_64: "step_64",
    snapshot_step_256: "step_256",
    snapshot_step_512: "step_512",
    snapshot_step_1024: "step_1024",
    snapshot_step_2000: "step_2000",
}

snapshot_tests! {
    DEEP, "deep_", DEEP_CASES, DEEP_CHECKPOINTS,
    deep_snapshot_step_0: "step_0",
    deep_snapshot_step_32: "step_32",
    deep_snapshot_step_64: "step_64",
    deep_snapshot_step_128: "step_128",
    deep_snapshot_step_256: "step_256",
    deep_snapshot_step_512: "step_512",
    deep_snapshot_step_1024: "step_1024",
    deep_snapshot_step_2048: "step_2048",
    deep_snapshot_step_2400: "step_2400",
}

#[test]
fn snapshot_tests_cover_every_checkpoint() {
    covers(SERIES, CHECKPOINTS);
}

#[test]
fn deep_snapshot_tests_cover_every_checkpoint() {
    covers(DEEP, DEEP_CHECKPOINTS);
}

fn covers(series: &str, checkpoints: &[&str]) {
    let series = root().join(series).join("export");
    let mut found: Vec<String> = std::fs::read_dir(&series)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", series.display()))
        .map(|entry| entry.expect("a directory entry").file_name())
        .map(|name| name.to_string_lossy().into_owned())
        .filter(|name| name.starts_with("step_"))
        .collect();
    found.sort_by_key(|name| name["step_".len()..].parse::<u64>().unwrap_or(u64::MAX));
    assert_eq!(
        found,
        checkpoints,
        "the checkpoints in {} and the snapshot tests differ: add or remove a line \
         of `snapshot_tests!`",
        series.display()
    );
}

/// Renders the snapshot of `checkpoint` of `series` and compares it with the committed one,
/// `tests/snapshots/<prefix><checkpoint>.snap`.
fn check(series: &str, prefix: &str, cases: &[Case], checkpoint: &str) {
    let text = render(series, cases, checkpoint);
    let mut settings = insta::Settings::clone_current();
    // `tests/snapshots/step_0.snap` rather than `tests__snapshots__step_0.snap`.
    settings.set_prepend_module_to_snapshot(false);
    settings.set_omit_expression(true);
    let name = format!("{prefix}{checkpoint}");
    settings.bind(|| insta::assert_snapshot!(name.as_str(), text));
}

/// What a series was trained on (its `training.json`).
struct Training {
    languages: Vec<Lang>,
    concepts: BTreeSet<String>,
    held_in: BTreeSet<String>,
    held_out: BTreeSet<String>,
}

fn training(series: &str) -> Training {
    let path = root().join(series).join("training.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read {}: {e} (the fixture series is committed; `cargo xtask fixtures` \
             rebuilds it)",
            path.display()
        )
    });
    let json: serde_json::Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()));
    let strings = |v: &serde_json::Value, what: &str| -> Vec<String> {
        v.as_array()
            .unwrap_or_else(|| panic!("{}: `{what}` is not a list", path.display()))
            .iter()
            .map(|s| {
                s.as_str()
                    .unwrap_or_else(|| panic!("{}: `{what}` holds a non-string", path.display()))
                    .to_string()
            })
            .collect()
    };
    let languages = json["languages"]
        .as_object()
        .unwrap_or_else(|| panic!("{}: `languages` is not an object", path.display()))
        .keys()
        .map(|code| {
            Lang::from_code(code)
                .unwrap_or_else(|| panic!("{}: unknown language {code:?}", path.display()))
        })
        .collect();
    Training {
        languages,
        concepts: strings(&json["corpus"]["concept_ids"], "corpus.concept_ids")
            .into_iter()
            .collect(),
        held_in: strings(&json["held_in_pairs"], "held_in_pairs")
            .into_iter()
            .collect(),
        held_out: strings(&json["held_out_pairs"], "held_out_pairs")
            .into_iter()
            .collect(),
    }
}

/// The concept table cut to the trained languages and concepts, so that demonstrations use
/// only what the model saw.
fn trained_table(training: &Training) -> ConceptTable {
    let table = ConceptTable::load(root().join("fixtures/concepts"))
        .and_then(|t| t.subset(&training.languages))
        .unwrap_or_else(|e| panic!("{e}"));
    let concepts: Vec<Concept> = table
        .concepts()
        .iter()
        .filter(|c| training.concepts.contains(&c.id))
        .cloned()
        .collect();
    assert_eq!(
        concepts.len(),
        training.concepts.len(),
        "some trained concepts are missing from {}",
        table.source().display()
    );
    ConceptTable::new(
        table.source(),
        training.languages.clone(),
        concepts,
        vec![],
        vec![],
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

fn lang(code: &str) -> Lang {
    Lang::from_code(code).unwrap_or_else(|| panic!("unknown language {code:?}"))
}

/// The model directory of `checkpoint`, or a failure saying how to get it.
fn checkpoint_dir(series: &str, checkpoint: &str) -> PathBuf {
    let dir = root().join(series).join("export").join(checkpoint);
    assert!(
        dir.join("manifest.json").is_file(),
        "{} is not an exported model: the fixture series is committed; `cargo xtask fixtures` \
         rebuilds it",
        dir.display()
    );
    dir
}

fn open(registry: &Registry, dir: &Path) -> Model {
    // One thread: the same arithmetic order on every machine.
    let options = BackendOptions {
        threads: 1,
        ..BackendOptions::default()
    };
    Model::open(registry, dir, &options)
        .unwrap_or_else(|e| panic!("cannot open {}: {e}", dir.display()))
}

/// The snapshot text of one checkpoint.
fn render(series: &str, cases: &[Case], checkpoint: &str) -> String {
    let training = training(series);
    let table = trained_table(&training);
    let registry = builtins();
    let mut model = open(&registry, &checkpoint_dir(series, checkpoint));
    let strategy = registry
        .get("patch-replace")
        .and_then(|p| p.patch_strategy(&[]))
        .unwrap_or_else(|e| panic!("{e}"));
    let extractor = registry
        .get("extract-mean")
        .and_then(|p| p.extractor(&[]))
        .unwrap_or_else(|e| panic!("{e}"));
    let n_layers = model.info().n_layers as usize;
    let mut starts = vec![0, 2.min(n_layers - 1), n_layers - 1];
    starts.dedup();
    let step = model
        .manifest()
        .step
        .map_or("unknown".to_string(), |s| s.to_string());
    let mut out = format!(
        "{checkpoint} (training step {step}), {n_layers} layers. Greedy answers (up to \
         {MAX_NEW} tokens, text before the closing quote), unpatched and patched with \
         patch-replace from start layer j on at the target word, with the latent of a cut \
         source prompt of the same pair and another concept. = C_T / = C_S: the answer is a \
         form of the target / source concept in the output language.\n"
    );
    for &case in cases {
        out.push('\n');
        out.push_str(&render_case(
            &mut model, &table, &training, &strategy, &extractor, case, &starts,
        ));
    }
    out
}

/// One prompt's lines: what is asked, then the answer of each run.
fn render_case(
    model: &mut Model,
    table: &ConceptTable,
    training: &Training,
    strategy: &dyn PatchStrategy,
    extractor: &dyn Extractor,
    (in_code, out_code, target, source): (&str, &str, &str, &str),
    starts: &[usize],
) -> String {
    let (in_lang, out_lang) = (lang(in_code), lang(out_code));
    for concept in [target, source] {
        assert!(
            training.concepts.contains(concept),
            "{concept:?} is not among the concepts the series was trained on"
        );
    }
    let template = Template::default();
    let builder = PromptBuilder::new(table, &template, DEFAULT_SHOTS);
    let key = format!("snapshots/{in_code}-{out_code}/{source}>{target}");
    let exclude = [source, target];
    let prompt = |kind: PromptKind, concept: &str, role: &str| {
        let mut rng = Rng::stream(SEED, &format!("{key}/{role}"));
        let demos = builder
            .draw_demos(&mut rng, in_lang, out_lang, &exclude)
            .unwrap_or_else(|e| panic!("{e}"));
        builder
            .build(kind, concept, in_lang, out_lang, &demos)
            .unwrap_or_else(|e| panic!("{e}"))
    };
    let target_prompt = prompt(PromptKind::Translation, target, "target");
    let source_prompt = prompt(PromptKind::Cut, source, "source");
    let fail = |e: xlpatch_core::Error| -> ! { panic!("{key}: {e}") };
    let tokens = target_prompt
        .tokenize(model.tokenizer().unwrap_or_else(|e| fail(e)))
        .unwrap_or_else(|e| fail(e));
    let info = model.info();
    let (latent, _) = prompt_latent(model, &source_prompt).unwrap_or_else(|e| fail(e));
    let latent = combine(
        extractor,
        &[latent],
        info.n_layers as usize,
        info.d_model as usize,
    )
    .unwrap_or_else(|e| fail(e));
    let patch = Patch {
        position: tokens.word_end.token,
        latent: &latent,
        scope: Scope::FromLayer,
    };
    let stops = answer_stops(model).unwrap_or_else(|e| fail(e));
    let stop = |id: u32| stops.get(id as usize).copied().unwrap_or(true);
    let generation = Generation {
        max_new: MAX_NEW,
        stop: &stop,
    };
    let base = Baseline::run(model, &tokens.ids).unwrap_or_else(|e| fail(e));
    let run =
        patched(model, &base, &patch, strategy, Batching::Layers, true).unwrap_or_else(|e| fail(e));
    let mut gens = generate_many(model, &[&base.unpatched(), &run], &generation)
        .unwrap_or_else(|e| fail(e))
        .into_iter();
    let unpatched = gens
        .next()
        .and_then(|g| g.into_iter().next())
        .unwrap_or_default();
    let by_layer = gens.next().unwrap_or_default();

    let pair = format!("{in_code}-{out_code}");
    let held = if training.held_out.contains(&pair) {
        "held-out"
    } else {
        assert!(
            training.held_in.contains(&pair),
            "{pair} is neither a held-in nor a held-out pair of the series"
        );
        "held-in"
    };
    let query = target_prompt
        .text
        .rsplit(template.sep())
        .next()
        .unwrap_or_default();
    let source_query = source_prompt
        .text
        .rsplit(template.sep())
        .next()
        .unwrap_or_default();
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{pair} ({held}): target {target}, source {source}; demos {}",
        target_prompt.demos.join(", ")
    );
    let _ = writeln!(s, "  prompt: {query}");
    let _ = writeln!(s, "  source: {source_query}");
    let forms = |concept: &str| table.forms(concept, out_lang).unwrap_or(&[]).to_vec();
    let (target_forms, source_forms) = (forms(target), forms(source));
    let mut line = |label: &str, ids: &[u32], row: Option<usize>| {
        assert_decided(model, &key, label, &tokens.ids, &patch, strategy, row, ids);
        // Special tokens stay visible: an answer of `</s>` is not an empty answer.
        let text = model
            .tokenizer()
            .unwrap_or_else(|e| fail(e))
            .decode(ids, false)
            .unwrap_or_else(|e| panic!("{key} {label}: cannot decode {ids:?}: {e}"));
        let (answer, closed) = match text.split_once('"') {
            Some((answer, _)) => (answer, true),
            None => (text.as_str(), false),
        };
        let mut l = format!("  {label}: {answer:?}");
        if !closed {
            let n = ids.len();
            let _ = write!(
                l,
                " (no closing quote, {n} token{})",
                if n == 1 { "" } else { "s" }
            );
        }
        if target_forms.iter().any(|f| f == answer) {
            l.push_str(" = C_T");
        } else if source_forms.iter().any(|f| f == answer) {
            l.push_str(" = C_S");
        }
        let _ = writeln!(s, "{l}");
    };
    line("unpatched", &unpatched, None);
    for &j in starts {
        let ids = by_layer.get(j).map_or(&[][..], Vec::as_slice);
        line(&format!("j={j}"), ids, Some(j));
    }
    s
}

/// Recomputes every greedy decision of `generated` without the KV cache (the prompt plus the
/// tokens so far, patched at start layer `row`, or unpatched for `None`) and fails unless
/// each generated token is the argmax there by at least [`MIN_LOGIT_GAP`].
#[allow(clippy::too_many_arguments)]
fn assert_decided(
    model: &mut Model,
    key: &str,
    label: &str,
    prompt: &[u32],
    patch: &Patch<'_>,
    strategy: &dyn PatchStrategy,
    row: Option<usize>,
    generated: &[u32],
) {
    let fail = |e: xlpatch_core::Error| -> ! { panic!("{key} {label}: {e}") };
    let mut ids = prompt.to_vec();
    for (i, &token) in generated.iter().enumerate() {
        let base = Baseline::run(model, &ids).unwrap_or_else(|e| fail(e));
        let probs = match row {
            None => base.probs(),
            Some(j) => {
                let run = patched(model, &base, patch, strategy, Batching::Layers, false)
                    .unwrap_or_else(|e| fail(e));
                let vocab = run.probs().len() / run.rows();
                run.probs()[j * vocab..(j + 1) * vocab].to_vec()
            }
        };
        let chosen = probs[token as usize];
        let rival = probs
            .iter()
            .enumerate()
            .filter(|&(id, _)| id != token as usize)
            .map(|(_, &p)| p)
            .fold(0.0, f32::max);
        // The logit gap from probabilities: the softmax's normaliser cancels.
        let gap = chosen.ln() - rival.ln();
        assert!(
            gap >= MIN_LOGIT_GAP,
            "{key} {label}: generated token {i} (id {token}) wins by a logit margin of {gap:e} \
             when recomputed, less than {MIN_LOGIT_GAP:e}: the snapshot would depend on float \
             rounding; choose other concepts in CASES"
        );
        ids.push(token);
    }
}
