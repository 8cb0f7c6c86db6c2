//! The sweep configuration: a TOML file (every key optional, unknown keys refused) naming the
//! checkpoint series, the languages, the target language pairs, the settings, how many
//! concept pairs, the seed and the plugins. Relative paths are taken from the
//! directory of the file.
//!
//! ```toml
//! models = ["fixtures/series/export/step_*"] # model dirs or globs (`*` in the last component)
//! concepts = "fixtures/concepts"                # or another format, with concepts_from:
//! # concepts_from = "clap"                       # multisimlex, dumas, wendler or clap
//! concept_list = "fixtures/series/concepts.txt" # the concept ids to use ("": all)
//! languages = ["en", "de", "fr", "es", "it", "pt", "nl", "pl"]
//! pairs = [["fr", "de"], ["de", "it"]]   # (input, output) of the target prompts
//! settings = ["tgt", "seen", "en_en", "self", "tgt_tgt", "unpatched"]
//! start_layers = "0..4"                  # or a list, [0, 2]; omitted: every layer
//! concept_pairs = 10                     # per target pair
//! demos = "per_pair"                     # or "per_prompt"
//! # prompts = "earlier/prompts.jsonl"    # replay a prompt set instead of building one
//! seed = 0
//! max_new_tokens = 10
//! stop = "quote"                         # or "eos", or "max_new_tokens"
//!
//! [plugins]
//! patch = "patch-replace"
//! extractor = "extract-mean"
//! backend = "backend-ort"                # or "backend-candle"
//!
//! [plugins.backend_params]               # passed to the plugin as strings
//! opt_level = "all"                      # numbers and booleans are accepted too
//! ```
//!
//! `xlpatch sweep --print-config` prints every key with its default and what it means
//! ([`SweepConfig::annotated_toml`], from [`KEY_DOCS`]); `examples/study.toml` is an annotated
//! study of the fixture series.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use xlpatch_concepts::Lang;

use crate::pairs::Collision;
use crate::patch::Scope;
use crate::prompt::{DEFAULT_SHOTS, Template};
use crate::{ConfigError, Error};

pub use xlpatch_results::{Setting, Variant};

impl From<Variant> for Scope {
    fn from(v: Variant) -> Scope {
        match v {
            Variant::FromLayer => Scope::FromLayer,
            Variant::SingleLayer => Scope::SingleLayer,
        }
    }
}

/// How patched runs are computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// Reuse the unpatched run (docs/method.md, "Incremental patching").
    #[default]
    Incremental,
    /// Recompute the whole prompt for every start layer.
    Naive,
}

/// How demonstrations are chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Demos {
    /// One set per language pair, shared by every prompt of that pair and drawn from the
    /// concepts that no concept pair of the sweep uses: prompts of a pair then share their
    /// few-shot prefix, which is computed once per checkpoint (docs/method.md, "Shared
    /// prefixes").
    #[default]
    PerPair,
    /// A fresh draw for every prompt, avoiding only its own concept pair.
    PerPrompt,
}

/// When greedy generation stops (besides `max_new_tokens`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stop {
    /// At the answer's closing quote: the first token whose text holds `"`, or an
    /// end-of-sequence token.
    #[default]
    Quote,
    /// At an end-of-sequence token only.
    Eos,
    /// Never: exactly `max_new_tokens` tokens, as the reference pipeline generates.
    MaxNewTokens,
}

impl Stop {
    fn is_default(&self) -> bool {
        *self == Stop::default()
    }
}

/// The format of a concept table that is not in the project's own (`concepts_from`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConceptsFrom {
    /// Multi-SimLex: `translation.csv`, per-language files, or a folder of them.
    Multisimlex,
    /// Dumas et al.'s `word_translation.csv`, or their `data/` folder.
    Dumas,
    /// Wendler et al.'s `clean.csv`, or their `data/langs/` folder.
    Wendler,
    /// The processed Multi-SimLex CSV of the seed paper's code.
    Clap,
}

impl ConceptsFrom {
    /// The importer's format.
    pub fn format(self) -> xlpatch_concepts::import::Format {
        use xlpatch_concepts::import::Format;
        match self {
            ConceptsFrom::Multisimlex => Format::MultiSimLex,
            ConceptsFrom::Dumas => Format::Dumas,
            ConceptsFrom::Wendler => Format::Wendler,
            ConceptsFrom::Clap => Format::Clap,
        }
    }
}

/// The concept-pair collision rule as written in configs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CollisionRule {
    /// See [`Collision::AnyLanguage`].
    #[default]
    AnyLanguage,
    /// See [`Collision::SameLanguage`].
    SameLanguage,
}

impl From<CollisionRule> for Collision {
    fn from(r: CollisionRule) -> Collision {
        match r {
            CollisionRule::AnyLanguage => Collision::AnyLanguage,
            CollisionRule::SameLanguage => Collision::SameLanguage,
        }
    }
}

/// The prompt template.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TemplateConfig {
    /// The line, with `{in_lang}`, `{in_word}`, `{out_lang}`, `{out_word}`.
    pub line: String,
    /// What separates lines.
    pub sep: String,
}

impl Default for TemplateConfig {
    fn default() -> Self {
        TemplateConfig {
            line: Template::DEFAULT_LINE.to_string(),
            sep: "\n".to_string(),
        }
    }
}

/// The plugins a sweep uses, by name, each kind with its `<kind>_params` table, passed to the
/// plugin as strings (a TOML number or boolean is written as its text). The host adds only
/// what it alone knows (the backend's `model` directory), so a new plugin needs no change here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PluginsConfig {
    /// The backend.
    pub backend: String,
    /// Its parameters (e.g. `backend-ort`'s `opt_level`, `provider`; `backend-candle`'s
    /// `device`, `dtype`).
    #[serde(deserialize_with = "param_table")]
    pub backend_params: BTreeMap<String, String>,
    /// The patch strategy.
    pub patch: String,
    /// Its parameters.
    #[serde(deserialize_with = "param_table")]
    pub patch_params: BTreeMap<String, String>,
    /// The extractor combining source latents.
    pub extractor: String,
    /// Its parameters.
    #[serde(deserialize_with = "param_table")]
    pub extractor_params: BTreeMap<String, String>,
    /// The metric giving P(concept) from a token set.
    pub metric: String,
    /// Its parameters.
    #[serde(deserialize_with = "param_table")]
    pub metric_params: BTreeMap<String, String>,
}

impl Default for PluginsConfig {
    fn default() -> Self {
        PluginsConfig {
            backend: "backend-ort".into(),
            backend_params: BTreeMap::new(),
            patch: "patch-replace".into(),
            patch_params: BTreeMap::new(),
            extractor: "extract-mean".into(),
            extractor_params: BTreeMap::new(),
            metric: "metric-concept-prob".into(),
            metric_params: BTreeMap::new(),
        }
    }
}

/// A plugin parameter as TOML may spell it.
#[derive(Deserialize)]
#[serde(untagged)]
enum ParamValue {
    Text(String),
    Int(i64),
    Float(f64),
    Bool(bool),
}

/// A `<kind>_params` table: strings, numbers and booleans, kept as the plugin reads them.
fn param_table<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, String>, D::Error> {
    let raw = BTreeMap::<String, ParamValue>::deserialize(d)?;
    Ok(raw
        .into_iter()
        .map(|(k, v)| {
            let v = match v {
                ParamValue::Text(s) => s,
                ParamValue::Int(i) => i.to_string(),
                ParamValue::Float(x) => x.to_string(),
                ParamValue::Bool(b) => b.to_string(),
            };
            (k, v)
        })
        .collect())
}

/// `concept_list` as written: `""` for none, since TOML has no null and an absent key means
/// the default list.
fn list_to_toml<S: serde::Serializer>(list: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(list.as_deref().unwrap_or(""))
}

/// `concept_list` as read: `""` is none.
fn list_from_toml<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let s = String::deserialize(d)?;
    Ok((!s.is_empty()).then_some(s))
}

/// Which start layers a sweep runs and reports (`start_layers` in a config): a list, or a
/// range written as text, `"a..b"` (b excluded), `"a..=b"`, `"a.."` or `"..b"`. Unset: every
/// layer of the model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum StartLayers {
    /// These layers.
    List(Vec<usize>),
    /// A range of layers.
    Range(String),
}

impl StartLayers {
    fn error(&self, problem: impl Into<String>) -> ConfigError {
        ConfigError::StartLayers {
            value: match self {
                StartLayers::List(l) => format!("{l:?}"),
                StartLayers::Range(r) => format!("{r:?}"),
            },
            problem: problem.into(),
        }
    }

    /// A range's first layer and its end (excluded; none: the model's last layer).
    fn range(&self, text: &str) -> Result<(usize, Option<usize>), ConfigError> {
        let bad = || self.error("not a range of layers");
        let (a, b) = text.trim().split_once("..").ok_or_else(bad)?;
        let number = |t: &str| t.trim().parse::<usize>().map_err(|_| bad());
        let start = if a.trim().is_empty() { 0 } else { number(a)? };
        let end = match b.trim() {
            "" => None,
            t => match t.strip_prefix('=') {
                Some(last) => Some(number(last)? + 1),
                None => Some(number(t)?),
            },
        };
        if end.is_some_and(|e| e <= start) {
            return Err(self.error("the range is empty"));
        }
        Ok((start, end))
    }

    /// Checks what can be checked without a model.
    fn check(&self) -> Result<(), ConfigError> {
        match self {
            StartLayers::List(l) if l.is_empty() => Err(self.error("the list is empty")),
            StartLayers::List(_) => Ok(()),
            StartLayers::Range(r) => self.range(r).map(|_| ()),
        }
    }

    /// The selected layers of a model with `n_layers` decoder blocks, ascending, each once.
    pub fn resolve(&self, n_layers: usize) -> Result<Vec<usize>, ConfigError> {
        self.check()?;
        let outside = |l: usize| {
            self.error(format!(
                "layer {l} is not a start layer of a model with {n_layers} layers (0..{n_layers})"
            ))
        };
        let mut layers = match self {
            StartLayers::List(l) => l.clone(),
            StartLayers::Range(r) => {
                let (start, end) = self.range(r)?;
                let end = end.unwrap_or(n_layers);
                if end > n_layers {
                    return Err(outside(end - 1));
                }
                if start >= end {
                    return Err(outside(start));
                }
                (start..end).collect()
            }
        };
        layers.sort_unstable();
        layers.dedup();
        match layers.iter().find(|&&l| l >= n_layers) {
            Some(&l) => Err(outside(l)),
            None => Ok(layers),
        }
    }
}

/// `target_batch` of the default config: one target at a time (see
/// [`SweepConfig::target_batch`]).
pub const DEFAULT_TARGET_BATCH: usize = 1;

/// A sweep as configured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SweepConfig {
    /// Model directories or globs; the series is ordered by training step.
    pub models: Vec<String>,
    /// The concept table: a directory in the project's format, or with
    /// [`SweepConfig::concepts_from`] a file or folder of another format.
    pub concepts: String,
    /// The format of `concepts` when it is not the project's table: it is then imported
    /// when the sweep starts (as `xlpatch concepts import` would).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concepts_from: Option<ConceptsFrom>,
    /// A file listing the concept ids the study uses, one per line (`#` starts a comment);
    /// none (written `concept_list = ""`): every concept of the table. A model trained on a
    /// few concepts (the fixture series) is studied on those. The default names the fixture
    /// series' list, so an empty config file is the same study as no config file; a config
    /// that names another `concepts` table and omits the key uses every concept of it.
    #[serde(serialize_with = "list_to_toml", deserialize_with = "list_from_toml")]
    pub concept_list: Option<String>,
    /// The study languages (ISO codes).
    pub languages: Vec<String>,
    /// The languages the model saw in training, for the `seen` setting (default: all study
    /// languages).
    pub seen: Option<Vec<String>>,
    /// Target language pairs `[input, output]`.
    pub pairs: Vec<[String; 2]>,
    /// The settings run.
    pub settings: Vec<Setting>,
    /// The start layers run and reported (none: every layer).
    #[serde(default)]
    pub start_layers: Option<StartLayers>,
    /// Concept pairs per target language pair.
    pub concept_pairs: usize,
    /// Demonstrations per prompt.
    pub n_shots: usize,
    /// How demonstrations are drawn.
    pub demos: Demos,
    /// A prompt set to replay (the `prompts.jsonl` of an earlier sweep, or one written by
    /// another tool in that format) instead of building prompts: `pairs`, `concept_pairs`,
    /// `n_shots`, `demos`, `template` and `seed` are then not used, and every setting run
    /// must have its source prompts in the file (format: `docs/prompts.md`).
    #[serde(default)]
    pub prompts: Option<String>,
    /// The seed of every random choice.
    pub seed: u64,
    /// Greedy tokens generated per patched run (0: none).
    pub max_new_tokens: usize,
    /// When generation stops before `max_new_tokens`.
    #[serde(default, skip_serializing_if = "Stop::is_default")]
    pub stop: Stop,
    /// Which concept pairs are refused.
    pub collision: CollisionRule,
    /// Which patch.
    pub variant: Variant,
    /// How patched runs are computed.
    pub method: Method,
    /// Intra-op threads of the backend (0: the runtime decides).
    pub threads: usize,
    /// Targets (units) whose block calls are shared: their unpatched runs, source latents and
    /// greedy generations run as one batch per block (fewer, larger calls; the results equal
    /// those of one target at a time to float tolerance), bounded by memory. Head calls are
    /// shared by the units of a batch whatever this is (enough units to fill
    /// [`crate::model::HEAD_BYTES`] of logits; see the sweep's `units`). Default 1: on CPU every
    /// block call copies its rows' whole KV caches in and out, so larger calls cost what the
    /// calls they replace did, and a batch generates until its slowest row stops (measured
    /// slower on the fixture series, no consistent gain on Gemma-3-270M at 1.6× the memory);
    /// it is meant for backends whose calls have a large fixed cost.
    pub target_batch: usize,
    /// Run prompts longer than a checkpoint's context length (its manifest's
    /// `context_length`) with a warning instead of refusing them: positions past it were never
    /// trained, so what a model computes there is not what the study means to measure.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_beyond_context: bool,
    /// Read every byte of every model file to check it against its manifest, instead of
    /// trusting hashes verified earlier for files whose size and modification time are
    /// unchanged (`--verify`). Does not change results, so it is not part of the stored
    /// config.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub verify: bool,
    /// The prompt template.
    pub template: TemplateConfig,
    /// The plugins.
    pub plugins: PluginsConfig,
}

impl Default for SweepConfig {
    fn default() -> Self {
        SweepConfig {
            models: vec!["fixtures/series/export/step_*".into()],
            concepts: "fixtures/concepts".into(),
            concepts_from: None,
            concept_list: Some("fixtures/series/concepts.txt".into()),
            // The fixture series' languages; fr→de is a trained pair, de→it is held out of
            // training entirely (reachable only through a shared space).
            languages: ["en", "de", "fr", "es", "it", "pt", "nl", "pl"]
                .map(String::from)
                .to_vec(),
            seen: None,
            pairs: vec![["fr".into(), "de".into()], ["de".into(), "it".into()]],
            settings: Setting::ALL.to_vec(),
            start_layers: None,
            concept_pairs: 10,
            n_shots: DEFAULT_SHOTS,
            demos: Demos::default(),
            prompts: None,
            seed: 0,
            max_new_tokens: 10,
            stop: Stop::default(),
            collision: CollisionRule::default(),
            variant: Variant::default(),
            method: Method::default(),
            threads: 0,
            target_batch: DEFAULT_TARGET_BATCH,
            allow_beyond_context: false,
            verify: false,
            template: TemplateConfig::default(),
            plugins: PluginsConfig::default(),
        }
    }
}

/// A TOML value on one line (toml writes a string with a newline as a multi-line string).
fn inline(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s)
            if s.contains('"') && !s.chars().any(|c| c == '\'' || c.is_control()) =>
        {
            format!("'{s}'")
        }
        toml::Value::String(s) => {
            let mut out = String::from("\"");
            for c in s.chars() {
                match c {
                    '"' => out.push_str("\\\""),
                    '\\' => out.push_str("\\\\"),
                    '\n' => out.push_str("\\n"),
                    '\t' => out.push_str("\\t"),
                    '\r' => out.push_str("\\r"),
                    c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
                    c => out.push(c),
                }
            }
            out.push('"');
            out
        }
        toml::Value::Array(a) => {
            let items: Vec<String> = a.iter().map(inline).collect();
            format!("[{}]", items.join(", "))
        }
        other => other.to_string(),
    }
}

/// A key of the config file and what it means (`xlpatch sweep --print-config`).
#[derive(Debug, Clone, Copy)]
pub struct KeyDoc {
    /// The key, with its table: `models`, `template.line`, `plugins.backend_params`.
    pub key: &'static str,
    /// What it means, one or more lines.
    pub doc: &'static str,
    /// A value shown, commented out, when the config has none; for a parameter table,
    /// `[table]` then example lines.
    pub example: &'static str,
}

/// Every key of [`SweepConfig`], in the order `--print-config` prints them (a test checks
/// that no key is missing).
pub const KEY_DOCS: &[KeyDoc] = &[
    KeyDoc {
        key: "models",
        doc: "The checkpoint series: exported model directories (`xlpatch export`), a `*` in the\n\
              last component matching several; hub series as `hf://ORG/NAME@REV...`. Ordered by\n\
              the training step in each manifest, else the number after step/iter in the name.",
        example: "[\"export/step_*\"]",
    },
    KeyDoc {
        key: "concepts",
        doc: "The concept table's directory (one TSV per language).",
        example: "\"fixtures/concepts\"",
    },
    KeyDoc {
        key: "concepts_from",
        doc: "The format of `concepts` when it is not the project's table (a file or folder of\n\
              multisimlex, dumas, wendler or clap): it is imported when the sweep starts, as\n\
              `xlpatch concepts import` would.",
        example: "\"clap\"",
    },
    KeyDoc {
        key: "concept_list",
        doc: "A file of the concept ids to study, one per line; left out: every concept of the\n\
              table (the default here is the fixture series' 80 trained concepts).",
        example: "\"fixtures/series/concepts.txt\"",
    },
    KeyDoc {
        key: "languages",
        doc: "The study languages (ISO codes): concepts need a form in each, and P(C_S) is\n\
              measured in each.",
        example: "[\"en\", \"de\", \"fr\", \"it\"]",
    },
    KeyDoc {
        key: "seen",
        doc: "The languages the model saw in training, for the `seen` setting; left out: every\n\
              study language.",
        example: "[\"en\", \"de\", \"fr\", \"es\", \"it\"]",
    },
    KeyDoc {
        key: "pairs",
        doc: "The target language pairs, [input, output]: target prompts translate C_T from the\n\
              first to the second.",
        example: "[[\"fr\", \"de\"]]",
    },
    KeyDoc {
        key: "settings",
        doc: "Which source prompts feed the patched latent: tgt (the target's own pair), seen\n\
              (pairs of seen languages other than the target's and English), en_en (English\n\
              copy prompts), self (copy prompts in the output language), tgt_tgt (the target's\n\
              own residuals: identity control), unpatched (no patch).",
        example: "[\"self\", \"unpatched\"]",
    },
    KeyDoc {
        key: "start_layers",
        doc: "The start layers run and reported: a list, or a range \"a..b\" (b excluded),\n\
              \"a..=b\", \"a..\"; left out: every layer of the model.",
        example: "\"0..4\"",
    },
    KeyDoc {
        key: "concept_pairs",
        doc: "Concept pairs (C_S, C_T) drawn per target pair.",
        example: "10",
    },
    KeyDoc {
        key: "n_shots",
        doc: "Demonstrations before the query in every prompt.",
        example: "5",
    },
    KeyDoc {
        key: "demos",
        doc: "per_pair: the prompts of a language pair share their demonstrations (their prefix\n\
              is computed once per checkpoint); per_prompt: drawn for every prompt.",
        example: "\"per_pair\"",
    },
    KeyDoc {
        key: "prompts",
        doc: "Replay this prompt set (an earlier sweep's prompts.jsonl) instead of building one;\n\
              pairs, concept_pairs, n_shots, demos, template and seed are then not used.",
        example: "\"earlier/prompts.jsonl\"",
    },
    KeyDoc {
        key: "seed",
        doc: "The seed of every random choice (concept pairs, demonstrations).",
        example: "0",
    },
    KeyDoc {
        key: "max_new_tokens",
        doc: "Greedy tokens generated per patched run, at most (see stop; 0: no generation).",
        example: "10",
    },
    KeyDoc {
        key: "stop",
        doc: "When generation stops before max_new_tokens: quote (at the answer's closing\n\
              quote), eos (at an end-of-sequence token) or max_new_tokens (never: exactly\n\
              max_new_tokens tokens, as the reference pipeline generates).",
        example: "\"quote\"",
    },
    KeyDoc {
        key: "collision",
        doc: "Which concept pairs are refused: any_language (a first token of C_S equals one of\n\
              C_T in any study language) or same_language (only within one language).",
        example: "\"any_language\"",
    },
    KeyDoc {
        key: "variant",
        doc: "from_layer: patch the target word's last token in every block from the start\n\
              layer on; single_layer: patch only the start layer's block, at the prompt's last\n\
              token, with latents of whole translation prompts (Dumas et al.'s HeteroPatch).",
        example: "\"from_layer\"",
    },
    KeyDoc {
        key: "method",
        doc: "incremental (reuses the unpatched run) or naive (recomputes the whole prompt for\n\
              every start layer: the reference, slow).",
        example: "\"incremental\"",
    },
    KeyDoc {
        key: "threads",
        doc: "Intra-op threads of the backend (0: the runtime decides).",
        example: "0",
    },
    KeyDoc {
        key: "target_batch",
        doc: "Targets computed together in shared backend calls (1 is fastest on CPU).",
        example: "1",
    },
    KeyDoc {
        key: "allow_beyond_context",
        doc: "Run prompts longer than a checkpoint's context length (its manifest's\n\
              context_length) with a warning instead of refusing them.",
        example: "false",
    },
    KeyDoc {
        key: "verify",
        doc: "Read every byte of every model file to check it against its manifest, instead\n\
              of trusting hashes verified earlier for unchanged files (--verify); not stored.",
        example: "false",
    },
    KeyDoc {
        key: "template.line",
        doc: "The prompt line, with {in_lang}, {in_word}, {out_lang} and {out_word} once each.",
        example: "'{in_lang}: \"{in_word}\" - {out_lang}: \"{out_word}\"'",
    },
    KeyDoc {
        key: "template.sep",
        doc: "What separates the lines of a prompt.",
        example: "\"\\n\"",
    },
    KeyDoc {
        key: "plugins.backend",
        doc: "The backend plugin running the exported graphs: backend-ort or backend-candle\n\
              (`xlpatch plugins list` shows what is installed).",
        example: "\"backend-ort\"",
    },
    KeyDoc {
        key: "plugins.patch",
        doc: "The patch strategy: patch-replace, patch-add (alpha * v) or patch-interpolate.",
        example: "\"patch-replace\"",
    },
    KeyDoc {
        key: "plugins.extractor",
        doc: "How the latents of several source prompts are combined: extract-mean or\n\
              extract-first (the control).",
        example: "\"extract-mean\"",
    },
    KeyDoc {
        key: "plugins.metric",
        doc: "The metric giving P(concept) from a token set.",
        example: "\"metric-concept-prob\"",
    },
    KeyDoc {
        key: "plugins.backend_params",
        doc: "The backend's parameters (strings, numbers or booleans), e.g. backend-ort's\n\
              opt_level and provider, backend-candle's device and dtype.",
        example: "[table]\nopt_level = \"all\"",
    },
    KeyDoc {
        key: "plugins.patch_params",
        doc: "The patch strategy's parameters, e.g. alpha of patch-add and patch-interpolate.",
        example: "[table]\nalpha = 0.5",
    },
    KeyDoc {
        key: "plugins.extractor_params",
        doc: "The extractor's parameters (the built-in extractors take none).",
        example: "[table]\nname = \"value\"",
    },
    KeyDoc {
        key: "plugins.metric_params",
        doc: "The metric's parameters (the built-in metric takes none).",
        example: "[table]\nname = \"value\"",
    },
];

fn langs(codes: &[String], what: &'static str) -> Result<Vec<Lang>, Error> {
    codes
        .iter()
        .map(|c| {
            Lang::from_code(c).ok_or_else(|| {
                Error::Config(ConfigError::UnknownLanguage {
                    key: what,
                    code: c.clone(),
                })
            })
        })
        .collect()
}

impl SweepConfig {
    /// Parses a config from TOML text.
    pub fn from_toml(text: &str) -> Result<SweepConfig, Error> {
        let syntax = |e| ConfigError::Syntax {
            path: None,
            error: Box::new(e),
        };
        let mut config: SweepConfig = toml::from_str(text).map_err(syntax)?;
        // The default concept list is the fixture table's: a config naming another table
        // without a list studies every concept of that table.
        let keys: toml::Table = toml::from_str(text).map_err(syntax)?;
        if !keys.contains_key("concept_list") && config.concepts != SweepConfig::default().concepts
        {
            config.concept_list = None;
        }
        config.validate()?;
        Ok(config)
    }

    /// Reads a config file.
    pub fn read(path: &Path) -> Result<SweepConfig, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        SweepConfig::from_toml(&text).map_err(|e| match e {
            Error::Config(ConfigError::Syntax { path: None, error }) => {
                Error::Config(ConfigError::Syntax {
                    path: Some(path.to_path_buf()),
                    error,
                })
            }
            Error::Config(e) => Error::Config(ConfigError::Invalid {
                path: path.to_path_buf(),
                source: Box::new(e),
            }),
            e => e,
        })
    }

    /// The config as TOML, as stored beside the results. A replay says so first, since the
    /// keys that build prompts (`pairs`, `concept_pairs`, `n_shots`, `demos`, `template`,
    /// `seed`) are stored with the rest but are not used.
    pub fn to_toml(&self) -> String {
        let text = toml::to_string(self).expect("a config always serializes");
        match &self.prompts {
            Some(file) => format!(
                "# replayed_from: the prompt set {file:?} (its copy is prompts.jsonl); pairs, \
                 concept_pairs, n_shots, demos, template and seed are not used\n{text}"
            ),
            None => text,
        }
    }

    /// Checks what can be checked without files: languages, pairs, sizes, the template.
    /// A replayed prompt set does not use `pairs`, `concept_pairs` and `template`, so they
    /// are not checked then (defaults need not fit the study).
    pub fn validate(&self) -> Result<(), Error> {
        let study = self.study_languages()?;
        self.seen_languages()?;
        if self.target_batch == 0 {
            return Err(Error::Config(ConfigError::TargetBatch));
        }
        if self.prompts.is_some() {
            if self.settings.is_empty() {
                return Err(Error::Config(ConfigError::NothingToRun));
            }
            return Ok(());
        }
        for [a, b] in &self.pairs {
            for code in [a, b] {
                let lang = langs(std::slice::from_ref(code), "pairs")?[0];
                if !study.contains(&lang) {
                    return Err(Error::Config(ConfigError::PairOutsideStudy {
                        pair: format!("{a}-{b}"),
                        code: code.clone(),
                    }));
                }
            }
        }
        if self.target_batch == 0 {
            return Err(Error::Config(ConfigError::TargetBatch));
        }
        if self.pairs.is_empty() || self.settings.is_empty() || self.concept_pairs == 0 {
            return Err(Error::Config(ConfigError::NothingToRun));
        }
        self.template()?;
        if let Some(layers) = &self.start_layers {
            layers.check()?;
        }
        Ok(())
    }

    /// The start layers of a model with `n_layers` decoder blocks that the sweep runs:
    /// [`SweepConfig::start_layers`], or all of them.
    pub fn layers(&self, n_layers: usize) -> Result<Vec<usize>, Error> {
        match &self.start_layers {
            None => Ok((0..n_layers).collect()),
            Some(sel) => Ok(sel.resolve(n_layers)?),
        }
    }

    /// The config as a commented TOML file: every key of [`KEY_DOCS`] with its value here
    /// and what it means; a key without a value is shown commented out, with an example.
    /// Parses back to `self` (what `xlpatch sweep --print-config` prints).
    pub fn annotated_toml(&self) -> String {
        let values = toml::Table::try_from(self).expect("a config always serializes");
        let mut out = String::from(
            "# An xlpatch sweep config (`xlpatch sweep --config FILE --out DIR`). Every key is\n\
             # optional; a key left out takes the value shown here. Relative paths are taken from\n\
             # this file's directory.\n",
        );
        let mut section = "";
        for doc in KEY_DOCS {
            let (table, name) = doc.key.rsplit_once('.').unwrap_or(("", doc.key));
            let mut value: Option<&toml::Value> = None;
            let mut at = &values;
            for part in doc.key.split('.') {
                value = at.get(part);
                match value {
                    Some(toml::Value::Table(t)) => at = t,
                    _ => break,
                }
            }
            let is_table = doc.example.starts_with("[table]");
            if !is_table && table != section {
                out.push_str(&format!("\n[{table}]\n"));
                section = table;
            }
            out.push('\n');
            for line in doc.doc.lines() {
                out.push_str(&format!("# {line}\n"));
            }
            if is_table {
                out.push_str(&format!("[{}]\n", doc.key));
                section = doc.key;
                let entries = value.and_then(toml::Value::as_table);
                match entries {
                    Some(t) if !t.is_empty() => {
                        for (k, v) in t {
                            let bare = !k.is_empty()
                                && k.chars()
                                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
                            let k = if bare {
                                k.clone()
                            } else {
                                toml::Value::String(k.clone()).to_string()
                            };
                            out.push_str(&format!("{k} = {}\n", inline(v)));
                        }
                    }
                    _ => {
                        for line in doc.example.lines().skip(1) {
                            out.push_str(&format!("# {line}\n"));
                        }
                    }
                }
                continue;
            }
            match value {
                Some(v) => out.push_str(&format!("{name} = {}\n", inline(v))),
                None => out.push_str(&format!("# {name} = {}\n", doc.example)),
            }
        }
        out
    }

    /// The study languages.
    pub fn study_languages(&self) -> Result<Vec<Lang>, Error> {
        langs(&self.languages, "languages")
    }

    /// The languages the model saw (default: the study languages).
    pub fn seen_languages(&self) -> Result<Vec<Lang>, Error> {
        match &self.seen {
            None => self.study_languages(),
            Some(codes) => langs(codes, "seen"),
        }
    }

    /// The target pairs.
    pub fn target_pairs(&self) -> Result<Vec<(Lang, Lang)>, Error> {
        self.pairs
            .iter()
            .map(|[a, b]| {
                let l = langs(&[a.clone(), b.clone()], "pairs")?;
                Ok((l[0], l[1]))
            })
            .collect()
    }

    /// The concept ids of [`SweepConfig::concept_list`], read from the file resolved against
    /// `base`; `None` when the config names no list.
    pub fn concept_ids(&self, base: &Path) -> Result<Option<Vec<String>>, Error> {
        let Some(list) = &self.concept_list else {
            return Ok(None);
        };
        let path = base.join(list);
        let text =
            std::fs::read_to_string(&path).map_err(|source| ConfigError::ConceptListRead {
                path: path.clone(),
                source,
            })?;
        let ids: Vec<String> = text
            .lines()
            .map(|l| l.split('#').next().unwrap_or("").trim())
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect();
        if ids.is_empty() {
            return Err(Error::Config(ConfigError::ConceptListEmpty { path }));
        }
        Ok(Some(ids))
    }

    /// The config with its paths resolved against `base` ([`resolve_path`]): the same study
    /// spelled with relative or absolute paths, from any directory, is one config.
    pub fn resolved(&self, base: &Path) -> SweepConfig {
        let r = |p: &str| resolve(base, p, false);
        SweepConfig {
            models: self.models.iter().map(|m| resolve(base, m, true)).collect(),
            concepts: r(&self.concepts),
            concept_list: self.concept_list.as_deref().map(r),
            prompts: self.prompts.as_deref().map(r),
            ..self.clone()
        }
    }

    /// The template.
    pub fn template(&self) -> Result<Template, Error> {
        Template::new(&self.template.line, &self.template.sep)
    }

    /// The model directories: each entry resolved against `base`, a `*` in the last
    /// component expanded to the matching directories (each must hold a `manifest.json`);
    /// ordered by training step: the manifest's, else the last number in the directory's
    /// name (so `step_16` comes before `step_1024`). A series of several checkpoints with a
    /// checkpoint whose step is unknown is refused: it has no order.
    pub fn model_dirs(&self, base: &Path) -> Result<Vec<PathBuf>, Error> {
        let mut dirs = Vec::new();
        for entry in &self.models {
            let path = base.join(entry);
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if let Some((pre, post)) = name.split_once('*') {
                let parent = path.parent().unwrap_or(base);
                let listing =
                    std::fs::read_dir(parent).map_err(|source| ConfigError::ListModels {
                        entry: entry.clone(),
                        dir: parent.to_path_buf(),
                        source,
                    })?;
                let mut found: Vec<PathBuf> = listing
                    .filter_map(|e| e.ok())
                    .map(|e| e.path())
                    .filter(|p| {
                        let n = p.file_name().map(|n| n.to_string_lossy().into_owned());
                        n.is_some_and(|n| {
                            n.len() >= pre.len() + post.len()
                                && n.starts_with(pre)
                                && n.ends_with(post)
                        }) && p.is_dir()
                    })
                    .collect();
                if found.is_empty() {
                    return Err(Error::Config(ConfigError::NoMatch {
                        entry: entry.clone(),
                        dir: parent.to_path_buf(),
                    }));
                }
                found.sort();
                // Skipping one silently would leave a hole in the emergence curve.
                if let Some(dir) = found.iter().find(|p| !p.join("manifest.json").is_file()) {
                    return Err(Error::Config(ConfigError::NoManifest {
                        entry: entry.clone(),
                        dir: dir.clone(),
                    }));
                }
                found.sort();
                dirs.extend(found);
            } else {
                dirs.push(path);
            }
        }
        let mut keyed = Vec::with_capacity(dirs.len());
        for dir in dirs {
            let step = xlpatch_model::Manifest::read(&dir)?
                .step
                .or_else(|| step_in_name(&dir));
            keyed.push((step, dir));
        }
        keyed.sort();
        keyed.dedup();
        if keyed.len() > 1
            && let Some((_, dir)) = keyed.iter().find(|(step, _)| step.is_none())
        {
            return Err(Error::Config(ConfigError::NoStep { dir: dir.clone() }));
        }
        Ok(keyed.into_iter().map(|(_, d)| d).collect())
    }
}

/// `path` (relative to `base`) as one spelling of the file it names: canonical (absolute,
/// `.`, `..` and symbolic links resolved). A `models` entry keeps its last component (a glob,
/// or a checkpoint named by a link: results name checkpoints by it) and has only its
/// directory resolved. Paths that do not resolve are made absolute only.
pub fn resolve_path(base: &Path, path: &str) -> String {
    resolve(base, path, false)
}

fn resolve(base: &Path, path: &str, keep_name: bool) -> String {
    let joined = base.join(path);
    let abs = std::path::absolute(&joined).unwrap_or(joined);
    let resolved = match (abs.parent(), abs.file_name()) {
        (Some(dir), Some(name)) if keep_name => dir.canonicalize().map(|d| d.join(name)).ok(),
        _ => abs.canonicalize().ok(),
    };
    resolved.unwrap_or(abs).display().to_string()
}

/// The training step a checkpoint directory's name gives: the number after its last `step`
/// or `iter` (`step_1024`, `iter_0002000`, `stage1-step10000-tokens21B` → 10000), else its
/// only number (`ckpt_300`); none when the name has no number, or several and no marker.
fn step_in_name(dir: &Path) -> Option<u64> {
    let name = dir.file_name()?.to_string_lossy().to_lowercase();
    let number_after = |at: usize| {
        let digits: String = name[at..]
            .trim_start_matches(['_', '-'])
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        digits.parse().ok()
    };
    for marker in ["step", "iter"] {
        if let Some(at) = name.rfind(marker)
            && let Some(n) = number_after(at + marker.len())
        {
            return Some(n);
        }
    }
    let mut numbers = name
        .split(|c: char| !c.is_ascii_digit())
        .filter(|part| !part.is_empty());
    match (numbers.next(), numbers.next()) {
        (Some(only), None) => only.parse().ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_file_is_the_default_and_round_trips() {
        // Every key is optional: an empty file is the study of no file, concept list
        // included (it was dropped, studying 23 concepts the fixture series never saw).
        let c = SweepConfig::from_toml("").unwrap();
        assert_eq!(c, SweepConfig::default());
        assert!(c.concept_list.is_some());
        let d = SweepConfig::default();
        assert_eq!(SweepConfig::from_toml(&d.to_toml()).unwrap(), d);
        // No list (every concept) and another table round-trip too.
        for c in [
            SweepConfig {
                concept_list: None,
                ..SweepConfig::default()
            },
            SweepConfig {
                concepts: "elsewhere".into(),
                concept_list: None,
                ..SweepConfig::default()
            },
            SweepConfig {
                concepts: "elsewhere".into(),
                concept_list: Some("list.txt".into()),
                ..SweepConfig::default()
            },
        ] {
            assert_eq!(SweepConfig::from_toml(&c.to_toml()).unwrap(), c);
        }
        // Another table without a list: every concept of it.
        let other = SweepConfig::from_toml("concepts = \"elsewhere\"").unwrap();
        assert_eq!(other.concept_list, None);
        assert_eq!(
            SweepConfig::from_toml("concept_list = \"\"")
                .unwrap()
                .concept_list,
            None
        );
        assert_eq!(c.settings.len(), 6);
        assert_eq!(c.template().unwrap(), Template::default());
    }

    #[test]
    fn keys_are_read_and_mistakes_refused() {
        let c = SweepConfig::from_toml(
            r#"
            languages = ["en", "de", "fr"]
            pairs = [["fr", "de"]]
            settings = ["self", "unpatched"]
            variant = "single_layer"
            [plugins]
            patch = "patch-interpolate"
            patch_params = { alpha = "0.5" }
            "#,
        )
        .unwrap();
        assert_eq!(c.settings, [Setting::SelfCopy, Setting::Unpatched]);
        assert_eq!(Scope::from(c.variant), Scope::SingleLayer);
        assert_eq!(c.plugins.patch_params["alpha"], "0.5");
        assert_eq!(c.plugins.extractor, "extract-mean");
        let c = SweepConfig::from_toml(
            r#"
            [plugins]
            backend = "backend-candle"
            patch_params = { alpha = 0.25 }
            [plugins.backend_params]
            device = "cpu"
            threads = 2
            verify = false
            [plugins.metric_params]
            scale = 1.5
            "#,
        )
        .unwrap();
        assert_eq!(c.plugins.backend, "backend-candle");
        let p = &c.plugins.backend_params;
        assert_eq!((&p["device"][..], &p["threads"][..]), ("cpu", "2"));
        assert_eq!(p["verify"], "false");
        assert_eq!(c.plugins.patch_params["alpha"], "0.25");
        assert_eq!(c.plugins.metric_params["scale"], "1.5");
        assert!(c.plugins.extractor_params.is_empty());
        assert_eq!(SweepConfig::from_toml(&c.to_toml()).unwrap(), c);
        assert!(SweepConfig::from_toml("[plugins.backend_params]\nx = [1]").is_err());
        let err = |t: &str| SweepConfig::from_toml(t).unwrap_err().to_string();
        assert!(
            err("setings = []").contains("unknown field"),
            "{}",
            err("setings = []")
        );
        assert!(err(r#"languages = ["en", "xx"]"#).contains("unknown language \"xx\""));
        assert!(err(r#"pairs = [["en", "ja"]]"#).contains("not a study language"));
        assert!(err(r#"settings = ["tgt", "other"]"#).contains("unknown variant"));
        assert!(err("[template]\nline = \"{in_word}\"").contains("exactly once"));
        assert!(err("target_batch = 0").contains("target_batch must be at least 1"));
        assert_eq!(
            SweepConfig::from_toml("target_batch = 4")
                .unwrap()
                .target_batch,
            4
        );
    }

    /// The field names a derived `Deserialize` asks for (serde passes them to
    /// `deserialize_struct`), so that a new key cannot be left out of [`KEY_DOCS`].
    fn fields<T: for<'de> Deserialize<'de>>() -> Vec<&'static str> {
        struct Grab<'a>(&'a mut Vec<&'static str>);
        #[derive(Debug)]
        struct Stop;
        impl std::fmt::Display for Stop {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("stop")
            }
        }
        impl std::error::Error for Stop {}
        impl serde::de::Error for Stop {
            fn custom<M: std::fmt::Display>(_: M) -> Self {
                Stop
            }
        }
        impl<'de> serde::Deserializer<'de> for Grab<'_> {
            type Error = Stop;
            fn deserialize_any<V: serde::de::Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
                Err(Stop)
            }
            fn deserialize_struct<V: serde::de::Visitor<'de>>(
                self,
                _: &'static str,
                fields: &'static [&'static str],
                _: V,
            ) -> Result<V::Value, Stop> {
                self.0.extend_from_slice(fields);
                Err(Stop)
            }
            serde::forward_to_deserialize_any! {
                bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
                byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map enum
                identifier ignored_any
            }
        }
        let mut out = Vec::new();
        let _ = T::deserialize(Grab(&mut out));
        assert!(!out.is_empty(), "no fields found");
        out
    }

    #[test]
    fn the_printed_config_is_the_default_and_documents_every_key() {
        let mut keys: Vec<String> = Vec::new();
        for f in fields::<SweepConfig>() {
            match f {
                "template" => keys.extend(
                    fields::<TemplateConfig>()
                        .iter()
                        .map(|k| format!("template.{k}")),
                ),
                "plugins" => keys.extend(
                    fields::<PluginsConfig>()
                        .iter()
                        .map(|k| format!("plugins.{k}")),
                ),
                k => keys.push(k.to_string()),
            }
        }
        let documented: Vec<&str> = KEY_DOCS.iter().map(|d| d.key).collect();
        for k in &keys {
            assert!(
                documented.contains(&k.as_str()),
                "config key {k} has no entry in KEY_DOCS (crates/core/src/config.rs), so \
                 `xlpatch sweep --print-config` does not show it"
            );
        }
        assert_eq!(documented.len(), keys.len(), "KEY_DOCS: {documented:?}");

        let d = SweepConfig::default();
        let text = d.annotated_toml();
        assert_eq!(SweepConfig::from_toml(&text).unwrap(), d, "{text}");
        let lines: Vec<&str> = text.lines().collect();
        for doc in KEY_DOCS {
            let (table, name) = doc.key.rsplit_once('.').unwrap_or(("", doc.key));
            let shown = if doc.example.starts_with("[table]") {
                lines.contains(&format!("[{}]", doc.key).as_str())
            } else {
                lines.iter().any(|l| {
                    l.starts_with(&format!("{name} = ")) || l.starts_with(&format!("# {name} = "))
                })
            };
            assert!(shown, "{} is not in the printed config:\n{text}", doc.key);
            assert!(!text.contains("\"\"\""), "{text}");
            // Its comment sits right above it (the table's header for a nested key).
            let first = doc.doc.lines().next().unwrap();
            assert!(
                lines.contains(&format!("# {first}").as_str()),
                "{}: no comment",
                doc.key
            );
            if !table.is_empty() && !doc.example.starts_with("[table]") {
                assert!(lines.contains(&format!("[{table}]").as_str()), "[{table}]");
            }
        }
        // Unset keys are shown as commented-out examples that parse and validate.
        for doc in KEY_DOCS.iter().filter(|d| !d.example.starts_with('[')) {
            let (table, name) = doc.key.rsplit_once('.').unwrap_or(("", doc.key));
            let line = format!("{name} = {}", doc.example);
            let one = if table.is_empty() {
                line
            } else {
                format!("[{table}]\n{line}")
            };
            if let Err(e) = SweepConfig::from_toml(&one) {
                panic!("the example of {}: {e}", doc.key);
            }
        }
        // A config with values everywhere prints them, and parses back to itself.
        let full = SweepConfig::from_toml(
            r#"
            seen = ["en", "de", "fr"]
            prompts = "p.jsonl"
            start_layers = [1, 3]
            [plugins.patch_params]
            alpha = 0.25
            [plugins.backend_params]
            "odd key" = "x"
            "#,
        )
        .unwrap();
        let text = full.annotated_toml();
        assert!(
            text.contains("\nseen = [\"en\", \"de\", \"fr\"]\n"),
            "{text}"
        );
        assert_eq!(SweepConfig::from_toml(&text).unwrap(), full, "{text}");
    }

    #[test]
    fn start_layers_are_lists_or_ranges_within_the_model() {
        let layers = |t: &str, n: usize| {
            SweepConfig::from_toml(t)
                .map_err(|e| e.to_string())
                .and_then(|c| c.layers(n).map_err(|e| e.to_string()))
        };
        assert_eq!(layers("", 4).unwrap(), [0, 1, 2, 3]);
        assert_eq!(layers("start_layers = [3, 1, 1]", 4).unwrap(), [1, 3]);
        assert_eq!(layers(r#"start_layers = "1..3""#, 4).unwrap(), [1, 2]);
        assert_eq!(layers(r#"start_layers = "1..=3""#, 4).unwrap(), [1, 2, 3]);
        assert_eq!(layers(r#"start_layers = "2..""#, 4).unwrap(), [2, 3]);
        assert_eq!(layers(r#"start_layers = "..2""#, 4).unwrap(), [0, 1]);
        // Wrong before any model is read.
        for bad in [r#""3..1""#, r#""a..b""#, r#""2""#, "[]"] {
            let e = layers(&format!("start_layers = {bad}"), 4).unwrap_err();
            assert!(
                e.contains("start_layers") && e.contains("\"2..8\""),
                "{bad}: {e}"
            );
        }
        // Outside the model: named with the model's layer count.
        for bad in ["[0, 4]", r#""2..6""#, r#""4..""#] {
            let e = layers(&format!("start_layers = {bad}"), 4).unwrap_err();
            assert!(e.contains("with 4 layers"), "{bad}: {e}");
        }
        let c = SweepConfig::from_toml(r#"start_layers = "1..=2""#).unwrap();
        assert_eq!(SweepConfig::from_toml(&c.to_toml()).unwrap(), c);
    }

    #[test]
    fn a_replay_checks_only_the_keys_it_uses() {
        // The default pairs (fr-de, de-it) do not fit these languages; a replay does not
        // use them.
        let text = "languages = [\"en\", \"fr\", \"es\"]\n";
        let err = SweepConfig::from_toml(text).unwrap_err().to_string();
        assert!(err.contains("not a study language"), "{err}");
        let c = SweepConfig::from_toml(&format!("{text}prompts = \"p.jsonl\"\n")).unwrap();
        assert_eq!(c.prompts.as_deref(), Some("p.jsonl"));
        let err = SweepConfig::from_toml(&format!("{text}prompts = \"p.jsonl\"\nsettings = []"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("at least one pair, one setting"), "{err}");
        // The stop rule and an imported table's format, as written.
        let c = SweepConfig::from_toml("stop = \"eos\"\nconcepts_from = \"clap\"").unwrap();
        assert_eq!(
            (c.stop, c.concepts_from),
            (Stop::Eos, Some(ConceptsFrom::Clap))
        );
        assert!(SweepConfig::from_toml("stop = \"never\"").is_err());
        // Defaults are not written, so stored configs of earlier sweeps still match.
        let d = SweepConfig::default().to_toml();
        assert!(!d.contains("stop") && !d.contains("concepts_from"), "{d}");
    }

    #[test]
    fn steps_are_read_from_the_names_of_every_series() {
        let step = |n: &str| step_in_name(Path::new(n));
        assert_eq!(step("step_1024"), Some(1024));
        assert_eq!(step("iter_0002000"), Some(2000));
        assert_eq!(step("stage1-step10000-tokens21B"), Some(10000));
        assert_eq!(step("global_step300"), Some(300));
        assert_eq!(step("ckpt_042"), Some(42));
        assert_eq!(step("final"), None);
        assert_eq!(step("v2-run3"), None);
    }

    #[test]
    fn model_globs_expand_and_order_by_step() {
        let dir = tempfile::tempdir().unwrap();
        use xlpatch_model::{AttentionType, Dtype, MANIFEST_VERSION, Manifest};
        let files = ["embed.onnx", "layer_0.onnx", "head.onnx"]
            .map(|f| (f.to_string(), "0".repeat(64)))
            .into_iter()
            .collect();
        let mut m = Manifest {
            format_version: MANIFEST_VERSION,
            architecture: "LlamaForCausalLM".into(),
            num_layers: 1,
            hidden_size: 8,
            num_heads: 2,
            num_kv_heads: 1,
            head_dim: 4,
            vocab_size: 16,
            intermediate_size: 16,
            layer_types: vec![AttentionType::FullAttention],
            sliding_window: None,
            context_length: None,
            dtype: Dtype::F32,
            source: "somewhere".into(),
            revision: None,
            step: None,
            tokenizer: None,
            extra_outputs: false,
            ops: Default::default(),
            bos_token_id: None,
            eos_token_id: None,
            pad_token_id: None,
            files,
        };
        for (name, step) in [("step_10", 10), ("step_2", 2), ("other", 1)] {
            let d = dir.path().join(name);
            std::fs::create_dir_all(&d).unwrap();
            m.step = Some(step);
            m.save(&d).unwrap();
        }
        let c = SweepConfig {
            models: vec!["step_*".into()],
            ..SweepConfig::default()
        };
        let dirs = c.model_dirs(dir.path()).unwrap();
        let names: Vec<_> = dirs
            .iter()
            .map(|d| d.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["step_2", "step_10"]);

        // Without steps in the manifests, the numbers in the names order the series
        // naturally (a path sort put step_1024 before step_16).
        for name in ["step_16", "step_1024", "step_0"] {
            let d = dir.path().join("nostep").join(name);
            std::fs::create_dir_all(&d).unwrap();
            m.step = None;
            m.save(&d).unwrap();
        }
        let c = SweepConfig {
            models: vec!["nostep/step_*".into()],
            ..SweepConfig::default()
        };
        let names: Vec<_> = c
            .model_dirs(dir.path())
            .unwrap()
            .iter()
            .map(|d| d.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["step_0", "step_16", "step_1024"]);

        // A checkpoint with neither a step nor a number: no order, refused, named.
        let d = dir.path().join("nostep").join("step_final");
        std::fs::create_dir_all(&d).unwrap();
        m.save(&d).unwrap();
        let err = c.model_dirs(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("step_final") && err.contains("--step"),
            "{err}"
        );
        std::fs::remove_dir_all(&d).unwrap();

        // A matching directory without a manifest (an interrupted export) is an error
        // naming it, not a silent hole in the series.
        std::fs::create_dir_all(dir.path().join("step_empty")).unwrap();
        let c = SweepConfig {
            models: vec!["step_*".into()],
            ..SweepConfig::default()
        };
        let err = c.model_dirs(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("step_empty") && err.contains("no manifest.json"),
            "{err}"
        );
        let none = SweepConfig {
            models: vec!["nope_*".into()],
            ..SweepConfig::default()
        };
        assert!(none.model_dirs(dir.path()).is_err());
    }
}
