//! The typed causes behind [`crate::Error`]'s config and tokenizer variants: each names the
//! file or entry it is about and keeps the underlying error as its source.

use std::path::PathBuf;

/// What is wrong with a sweep's configuration.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("cannot read {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The TOML does not parse, or names an unknown key.
    #[error("{}{error}", path.as_ref().map(|p| format!("{}: ", p.display())).unwrap_or_default())]
    Syntax {
        /// The file, when the text came from one.
        path: Option<PathBuf>,
        /// What the TOML parser reported (in the message, not a source: it is the whole
        /// message).
        error: Box<toml::de::Error>,
    },
    /// A config that parses but does not describe a sweep.
    #[error("{}", path.display())]
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
    #[error("concept_list: cannot read {}", path.display())]
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
    #[error("concept_list {}", path.display())]
    ConceptListIds {
        /// The file.
        path: PathBuf,
        /// What the table said.
        source: Box<xlpatch_concepts::Error>,
    },
    /// A glob's directory could not be listed.
    #[error("models {entry:?}: cannot list {}", dir.display())]
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
    /// A checkpoint that does not belong to the series of the first one: another
    /// architecture, another size, or another tokenizer.
    #[error(
        "{} does not belong to the series of {}: its {field} is {value}, not {first_value}; a \
         series must share architecture, sizes and tokenizer: move it out of the series (or \
         re-export it from the right checkpoint, with the series' tokenizer)",
        dir.display(),
        first.display()
    )]
    NotOneSeries {
        /// The checkpoint that differs.
        dir: PathBuf,
        /// The first checkpoint of the series.
        first: PathBuf,
        /// The manifest field that differs.
        field: &'static str,
        /// Its value in `dir`.
        value: String,
        /// Its value in `first`.
        first_value: String,
    },
    /// A directory a glob matches has no manifest (an interrupted or missing export).
    #[error(
        "models {entry:?}: {} has no manifest.json (an interrupted export?): export it again, \
         or move it out of the series",
        dir.display()
    )]
    NoManifest {
        /// The `models` entry.
        entry: String,
        /// The directory.
        dir: PathBuf,
    },
    /// A checkpoint of a series whose training step cannot be known, so the series has no
    /// order.
    #[error(
        "{} has no training step in its manifest and no number in its name, so the series \
         cannot be ordered: export it with --step N (or name its directory step_N)",
        dir.display()
    )]
    NoStep {
        /// The checkpoint.
        dir: PathBuf,
    },
    /// A prompt longer than a checkpoint's context length.
    #[error(
        "prompt {prompt} has {tokens} tokens{} but {} was trained on {limit} positions (its \
         manifest's context_length): positions past them were never trained; use fewer shots \
         (n_shots), a shorter template or fewer max_new_tokens, or set allow_beyond_context = \
         true (--allow-beyond-context) to run it anyway",
        if *generated > 0 { format!(" (+{generated} generated)") } else { String::new() },
        checkpoint.display()
    )]
    BeyondContext {
        /// The checkpoint.
        checkpoint: PathBuf,
        /// The prompt (a sweep's item key and role).
        prompt: String,
        /// Its tokens.
        tokens: usize,
        /// Tokens generated after it.
        generated: usize,
        /// The checkpoint's context length.
        limit: u64,
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
    /// `start_layers` is not a list of layers or a range `"a..b"` within the model.
    #[error(
        "start_layers {value}: {problem} (write a list such as [0, 2, 4], or a range such as \
         \"2..8\", \"2..=7\" or \"4..\")"
    )]
    StartLayers {
        /// The value as written.
        value: String,
        /// What is wrong with it.
        problem: String,
    },
}

/// What went wrong with a tokenizer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TokenizerError {
    /// The model directory has none.
    #[error("the model directory has no tokenizer (export with --tokenizer)")]
    Missing,
    /// It could not be loaded.
    #[error("cannot load")]
    Load(#[source] tokenizers::Error),
    /// It failed on a text.
    #[error("cannot tokenize {text:?}")]
    Encode {
        /// The text.
        text: String,
        /// What the tokenizer reported.
        source: tokenizers::Error,
    },
    /// It failed on a token.
    #[error("cannot decode token {id}")]
    Decode {
        /// The token id.
        id: u32,
        /// What the tokenizer reported.
        source: tokenizers::Error,
    },
    /// It failed on a run of tokens.
    #[error("cannot decode tokens")]
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

/// Sizes or shapes that do not fit together: a caller's mistake, or a backend that disagrees
/// with the manifest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ShapeError {
    /// A prompt without tokens.
    #[error("an empty prompt cannot be run")]
    EmptyPrompt,
    /// A prompt that does not begin with the prefix it is said to continue.
    #[error("a prompt of {len} tokens does not continue a shared prefix of {prefix} tokens")]
    NotAContinuation {
        /// The prompt's length.
        len: usize,
        /// The prefix's length.
        prefix: usize,
    },
    /// A position to compute that is inside the prefix or past the prompt.
    #[error(
        "position {position} is not after the {prefix}-token prefix of a prompt of {len} tokens"
    )]
    NotAfterPrefix {
        /// The position.
        position: usize,
        /// The prefix's length.
        prefix: usize,
        /// The prompt's length.
        len: usize,
    },
    /// A position past the prompt.
    #[error("position {position} is outside a prompt of {len} tokens")]
    Outside {
        /// The position.
        position: usize,
        /// The prompt's length.
        len: usize,
    },
    /// Source latents of the wrong sizes.
    #[error("{} source latents of sizes {sizes:?} cannot be combined as [n, {layers}, {d}]", sizes.len())]
    Latents {
        /// Each latent's size.
        sizes: Vec<usize>,
        /// Blocks.
        layers: usize,
        /// Width.
        d: usize,
    },
    /// A patch that does not fit its prompt or model.
    #[error(
        "patch at position {position} of a {len}-token prompt with a latent of {latent} values \
         ([{layers}, {d}] expected)"
    )]
    Patch {
        /// The patched position.
        position: usize,
        /// The prompt's length.
        len: usize,
        /// The latent's size.
        latent: usize,
        /// Blocks.
        layers: usize,
        /// Width.
        d: usize,
    },
    /// The backend's sizes differ from the manifest's.
    #[error(
        "backend reports {backend_layers} layers of width {backend_d} for {}, the manifest \
         {layers} of width {d}",
        dir.display()
    )]
    Backend {
        /// The model directory.
        dir: PathBuf,
        /// The backend's block count.
        backend_layers: u64,
        /// The backend's width.
        backend_d: u64,
        /// The manifest's block count.
        layers: u64,
        /// The manifest's width.
        d: u64,
    },
    /// Inputs of a block range that do not fit together.
    #[error(
        "run_layers: {caches} caches for {layers} layers, mask of {mask} for [{batch}, {total}], \
         {positions} positions for [{batch}, {seq}]"
    )]
    Blocks {
        /// Caches given.
        caches: usize,
        /// Blocks run.
        layers: usize,
        /// Mask length.
        mask: usize,
        /// Rows.
        batch: usize,
        /// Past plus new columns.
        total: usize,
        /// Positions given.
        positions: usize,
        /// New columns.
        seq: usize,
    },
    /// A run to generate from that does not fit the model.
    #[error(
        "cannot generate from a run of {len} tokens with {caches} block caches and a \
         vocabulary of {vocab} ({layers} blocks, {model_vocab} tokens expected)"
    )]
    Generation {
        /// The run's length.
        len: usize,
        /// Its caches.
        caches: usize,
        /// Its vocabulary.
        vocab: usize,
        /// The model's blocks.
        layers: usize,
        /// The model's vocabulary.
        model_vocab: usize,
    },
}

/// Why a prompt, a template or a set of concept pairs cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PromptError {
    /// A template line that is not well-formed.
    #[error("template {line:?}: {problem}")]
    Template {
        /// The line.
        line: String,
        /// What is wrong with it.
        problem: TemplateProblem,
    },
    /// Too few concepts for the demonstrations.
    #[error(
        "{} has only {available} concepts in {in_lang} and {out_lang} besides the {} \
         excluded, {wanted} demonstrations asked for",
        table.display(),
        excluded.len()
    )]
    TooFewDemos {
        /// The concept table.
        table: PathBuf,
        /// Concepts available.
        available: usize,
        /// The input language.
        in_lang: String,
        /// The output language.
        out_lang: String,
        /// The concepts excluded.
        excluded: Vec<String>,
        /// Demonstrations per prompt.
        wanted: usize,
    },
    /// Too few concepts left for the demonstrations a language pair shares.
    #[error(
        "{in_lang}-{out_lang}: {available} concepts are left for the shared demonstrations, \
         {wanted} needed (n_shots): demos = \"per_pair\" draws them from the concepts no \
         concept pair of the sweep uses, and the concept pairs use {used} of the {complete} \
         concepts with a form in {in_lang} and {out_lang}; set demos = \"per_prompt\" (each \
         prompt then avoids only its own pair), or ask for fewer concept_pairs or n_shots"
    )]
    TooFewSharedDemos {
        /// The input language.
        in_lang: String,
        /// The output language.
        out_lang: String,
        /// Concepts left.
        available: usize,
        /// Demonstrations per prompt.
        wanted: usize,
        /// Concepts with forms in both languages that the concept pairs use.
        used: usize,
        /// Concepts with forms in both languages.
        complete: usize,
    },
    /// A query concept among its own demonstrations.
    #[error("the query concept {0:?} is among its own demonstrations")]
    QueryInDemos(String),
    /// No token ends the query word.
    #[error("no token covers the end of the word {word:?} (bytes {start}..{end}) in {text:?}")]
    WordEnd {
        /// The word.
        word: String,
        /// Its first byte.
        start: usize,
        /// One past its last byte.
        end: usize,
        /// The prompt text.
        text: String,
    },
    /// Fewer usable concept pairs than asked for.
    #[error(
        "only {found} concept pairs without a shared first token exist among {concepts} \
         concepts, {wanted} asked for"
    )]
    TooFewPairs {
        /// Pairs found.
        found: usize,
        /// Concepts considered.
        concepts: usize,
        /// Pairs asked for.
        wanted: usize,
    },
}

/// What is wrong with a template line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TemplateProblem {
    /// A `{` without its `}`.
    #[error("unclosed `{{`")]
    Unclosed,
    /// A placeholder other than the four.
    #[error("unknown placeholder {{{0}}} (known: in_lang, in_word, out_lang, out_word)")]
    UnknownPlaceholder(String),
    /// A placeholder missing or repeated.
    #[error("{{{name}}} must occur exactly once, found {count} times")]
    NotOnce {
        /// The placeholder.
        name: &'static str,
        /// How often it occurs.
        count: usize,
    },
    /// The answer before the query word.
    #[error("{{in_word}} must come before {{out_word}}")]
    Order,
}
