//! The one error type of the exporter: every variant names the file it is about.

use std::path::PathBuf;

/// What went wrong while reading a checkpoint, writing graphs or loading a model directory.
///
/// Messages are lower-case, have no trailing dot, and always name the file concerned.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExportError {
    /// A file could not be read, written or created.
    #[error("{}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// What was given as the checkpoint is neither a checkpoint directory nor a GGUF file.
    #[error(
        "{} {problem}: the model to export is a Hugging Face checkpoint directory (config.json \
         and *.safetensors) or a .gguf file",
        path.display()
    )]
    NotAModel {
        /// The path given.
        path: PathBuf,
        /// What it is instead (`does not exist`, `is not a .gguf file`, ...).
        problem: String,
    },
    /// A file ends before its own header says it should.
    #[error("{} is truncated: {detail}", path.display())]
    Truncated {
        /// The file.
        path: PathBuf,
        /// What was expected and what was found.
        detail: String,
    },
    /// A file's structure could not be parsed.
    #[error("{} is malformed: {detail}", path.display())]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// A tensor the architecture needs is not in the checkpoint.
    #[error("tensor \"{tensor}\" is missing from {}", path.display())]
    MissingTensor {
        /// The checkpoint file (or index) searched.
        path: PathBuf,
        /// The tensor's name.
        tensor: String,
    },
    /// A tensor has another shape than the config implies.
    #[error("tensor \"{tensor}\" in {} has shape {found:?}, expected {expected:?}", path.display())]
    ShapeMismatch {
        /// The file holding the tensor.
        path: PathBuf,
        /// The tensor's name.
        tensor: String,
        /// The shape the config implies.
        expected: Vec<usize>,
        /// The shape in the file.
        found: Vec<usize>,
    },
    /// A tensor is stored in a type the exporter cannot read.
    #[error("tensor \"{tensor}\" in {} has unsupported dtype {dtype}", path.display())]
    UnsupportedDtype {
        /// The file holding the tensor.
        path: PathBuf,
        /// The tensor's name.
        tensor: String,
        /// The dtype as the file spells it.
        dtype: String,
    },
    /// `architectures[0]` of a config is not one the exporter knows.
    #[error("unsupported architecture \"{name}\" in {} (supported: {})", path.display(), supported.join(", "))]
    UnsupportedArchitecture {
        /// The config file.
        path: PathBuf,
        /// The architecture it names.
        name: String,
        /// The architectures the exporter knows.
        supported: Vec<&'static str>,
    },
    /// A config value is missing, inconsistent or not supported.
    #[error("{}: {detail}", path.display())]
    Config {
        /// The config file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// A tokenizer has ids the model has no embedding for.
    #[error("tokenizer {} has ids up to {max_id}, but the model's vocabulary has only {vocab_size} entries", path.display())]
    TokenizerVocab {
        /// The tokenizer file.
        path: PathBuf,
        /// The largest id the tokenizer can produce.
        max_id: u64,
        /// The model's vocabulary size.
        vocab_size: usize,
    },
    /// A model directory (the manifest or its files) is not valid.
    #[error(transparent)]
    Model(#[from] xlpatch_model::ModelError),
}

impl ExportError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        ExportError::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn malformed(path: impl Into<PathBuf>, detail: impl Into<String>) -> Self {
        ExportError::Malformed {
            path: path.into(),
            detail: detail.into(),
        }
    }

    pub(crate) fn config(path: impl Into<PathBuf>, detail: impl Into<String>) -> Self {
        ExportError::Config {
            path: path.into(),
            detail: detail.into(),
        }
    }
}

/// The exporter's result type.
pub type Result<T, E = ExportError> = std::result::Result<T, E>;
