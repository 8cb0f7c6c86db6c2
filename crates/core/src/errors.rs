//! The typed causes behind [`crate::Error`]'s config and tokenizer variants: each names the
//! file or entry it is about and keeps the underlying error as its source.

use std::path::PathBuf;

/// What is wrong with a sweep's configuration.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The TOML does not parse, or names an unknown key.
    #[error("{}{source}", path.as_ref().map(|p| format!("{}: ", p.display())).unwrap_or_default())]
    Syntax {
        /// The file, when the text came from one.
        path: Option<PathBuf>,
        /// What the TOML parser reported.
        source: Box<toml::de::Error>,
    },
    /// A config that parses but does not describe a sweep.
    #[error("{}: {source}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        source: Box<ConfigError>,
    },
    /// A language code xlpatch does not know.
    #[error("{key}: unknown language {code:?}")]
    UnknownLanguage {
        /// The key (`languages`, `seen`, `pairs`).
        key: &'static str,
        /// The code.
        code: String,
    },
    /// A target pair uses a language outside the study.
    #[error("pair {pair}: {code} is not a study language")]
    PairOutsideStudy {
        /// The pair, `in-out`.
        pair: String,
        /// The code.
        code: String,
    },
    /// `target_batch = 0`.
    #[error("target_batch must be at least 1")]
    TargetBatch,
    /// No pair, setting or concept pair.
    #[error("a sweep needs at least one pair, one setting and one concept pair")]
    NothingToRun,
    /// The concept list could not be read.
    #[error("concept_list: cannot read {}: {source}", path.display())]
    ConceptListRead {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The concept list names no concept.
    #[error("concept_list: {} lists no concept", path.display())]
    ConceptListEmpty {
        /// The file.
        path: PathBuf,
    },
    /// The concept list names concepts the table lacks.
    #[error("concept_list {}: {source}", path.display())]
    ConceptListIds {
        /// The file.
        path: PathBuf,
        /// What the table said.
        source: Box<xlpatch_concepts::Error>,
    },
    /// A glob's directory could not be listed.
    #[error("models {entry:?}: cannot list {}: {source}", dir.display())]
    ListModels {
        /// The `models` entry.
        entry: String,
        /// The directory.
        dir: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A glob matches no model directory.
    #[error("models {entry:?}: no model directory matches in {}", dir.display())]
    NoMatch {
        /// The `models` entry.
        entry: String,
        /// The directory.
        dir: PathBuf,
    },
    /// `models` is empty.
    #[error("no model directory given")]
    NoModels,
    /// Two checkpoints of a series with different tokenizers.
    #[error(
        "{} has another tokenizer than {}: a series must share its tokenizer",
        dir.display(),
        first.display()
    )]
    OtherTokenizer {
        /// The checkpoint that differs.
        dir: PathBuf,
        /// The first checkpoint.
        first: PathBuf,
    },
    /// Two checkpoints with one directory name.
    #[error("two checkpoints are named {0:?}: results name checkpoints by directory")]
    DuplicateCheckpoint(String),
    /// A replayed item uses a language outside the study.
    #[error("prompts {}: item {item} uses {lang}, which is not a study language", path.display())]
    ReplayLanguage {
        /// The prompt set.
        path: PathBuf,
        /// The item.
        item: String,
        /// The language.
        lang: String,
    },
    /// A replayed item's concept is not in the table.
    #[error(
        "prompts {}: concept {concept:?} of item {item} is not in the concept table (or has no \
         form in a study language)",
        path.display()
    )]
    ReplayConcept {
        /// The prompt set.
        path: PathBuf,
        /// The concept.
        concept: String,
        /// The item.
        item: String,
    },
    /// No pair of seen languages is left for setting `seen`.
    #[error("setting seen: no pair of seen languages avoids {in_lang}, {out_lang} and en")]
    NoSeenPair {
        /// The target's input language.
        in_lang: String,
        /// The target's output language.
        out_lang: String,
    },
    /// A shard that is not `k/n`.
    #[error("shard {0:?} is not k/n with 0 <= k < n")]
    Shard(String),
}

/// What went wrong with a tokenizer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TokenizerError {
    /// The model directory has none.
    #[error("the model directory has no tokenizer (export with --tokenizer)")]
    Missing,
    /// It could not be loaded.
    #[error("cannot load: {0}")]
    Load(#[source] tokenizers::Error),
    /// It failed on a text.
    #[error("cannot tokenize {text:?}: {source}")]
    Encode {
        /// The text.
        text: String,
        /// What the tokenizer reported.
        source: tokenizers::Error,
    },
    /// It failed on a token.
    #[error("cannot decode token {id}: {source}")]
    Decode {
        /// The token id.
        id: u32,
        /// What the tokenizer reported.
        source: tokenizers::Error,
    },
    /// It failed on a run of tokens.
    #[error("cannot decode tokens: {0}")]
    DecodeText(#[source] tokenizers::Error),
    /// Its ids do not fit the model's embeddings.
    #[error(
        "the tokenizer produces ids up to {max_id} but the model has only {embeddings} \
         embeddings: it belongs to another model"
    )]
    ForeignVocabulary {
        /// The largest id it produces.
        max_id: u64,
        /// The model's vocabulary.
        embeddings: u64,
    },
}
