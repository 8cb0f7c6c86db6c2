//! Why a plugin library was refused: one variant per refusal, each naming the file or the
//! plugin and, where there is one, the fix.

use std::fmt;
use std::path::PathBuf;

use crate::{ABI_CURRENT, ENTRY_SYMBOL, PluginError, PluginKind};

/// Why a plugin library was refused.
#[derive(Debug)]
#[non_exhaustive]
pub enum LoadError {
    /// The file could not be opened as a dynamic library.
    NotALibrary {
        /// The file.
        path: PathBuf,
        /// The dynamic loader's message.
        reason: String,
    },
    /// The library does not export [`ENTRY_SYMBOL`].
    MissingEntry {
        /// The file.
        path: PathBuf,
    },
    /// The header is null or malformed.
    BadHeader {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        what: String,
    },
    /// The plugin was built for another ABI version.
    AbiMismatch {
        /// The file.
        path: PathBuf,
        /// The plugin's name.
        name: String,
        /// The plugin's version.
        version: String,
        /// The ABI version it declares.
        found: u32,
    },
    /// The header's kind code is not a known kind.
    UnknownKind {
        /// The file.
        path: PathBuf,
        /// The plugin's name.
        name: String,
        /// The code found.
        code: u32,
    },
    /// A function pointer of the header or of the kind's table is NULL.
    NullFunction {
        /// The file.
        path: PathBuf,
        /// The plugin's name.
        name: String,
        /// The slot, as `include/xlpatch_plugin.h` spells it (`XlpPluginHeader.create`).
        slot: &'static str,
    },
    /// The plugin is of another kind than the one asked for.
    WrongKind {
        /// The file.
        path: PathBuf,
        /// The plugin's name.
        name: String,
        /// Its kind.
        found: PluginKind,
        /// The kind asked for.
        expected: PluginKind,
    },
    /// Another plugin of the same name is already loaded.
    Duplicate {
        /// The name.
        name: String,
        /// The library refused.
        path: PathBuf,
        /// The library loaded first.
        first: PathBuf,
    },
    /// No plugin of that name was found.
    NotFound {
        /// The name asked for.
        name: String,
        /// The names that are loaded.
        available: Vec<String>,
    },
    /// The plugin's `create` failed.
    Create {
        /// The plugin's name.
        name: String,
        /// What it reported.
        error: PluginError,
    },
    /// A plugin directory could not be read.
    Io {
        /// The directory.
        path: PathBuf,
        /// The error.
        error: std::io::Error,
    },
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::NotALibrary { path, reason } => write!(
                f,
                "{} is not a loadable plugin library: {reason}",
                path.display()
            ),
            LoadError::MissingEntry { path } => write!(
                f,
                "{} is a library but not an xlpatch plugin: it does not export `{ENTRY_SYMBOL}`",
                path.display()
            ),
            LoadError::BadHeader { path, what } => {
                write!(
                    f,
                    "{} has a malformed plugin header: {what}",
                    path.display()
                )
            }
            LoadError::AbiMismatch {
                path,
                name,
                version,
                found,
            } => write!(
                f,
                "plugin \"{name}\" {version} ({}) was built for plugin ABI v{found}, but this \
                 xlpatch speaks ABI v{ABI_CURRENT}: rebuild it against this xlpatch",
                path.display()
            ),
            LoadError::UnknownKind { path, name, code } => write!(
                f,
                "plugin \"{name}\" ({}) declares unknown kind code {code} (known: 1 backend, \
                 2 extractor, 3 patch, 4 metric)",
                path.display()
            ),
            LoadError::NullFunction { path, name, slot } => write!(
                f,
                "plugin \"{name}\" ({}) leaves `{slot}` NULL: the ABI needs every function \
                 of the header and of the kind's table, so set it and rebuild the plugin",
                path.display()
            ),
            LoadError::WrongKind {
                path,
                name,
                found,
                expected,
            } => write!(
                f,
                "plugin \"{name}\" ({}) is a {found} plugin, not a {expected} plugin",
                path.display()
            ),
            LoadError::Duplicate { name, path, first } => write!(
                f,
                "two plugins are named \"{name}\": {} was refused because {} was loaded first",
                path.display(),
                first.display()
            ),
            LoadError::NotFound { name, available } => write!(
                f,
                "no plugin named \"{name}\" (found: {})",
                if available.is_empty() {
                    "none; run `cargo xtask build-plugins` or pass --plugin-dir".to_string()
                } else {
                    available.join(", ")
                }
            ),
            LoadError::Create { name, error } => {
                write!(f, "plugin \"{name}\" refused its parameters: {error}")
            }
            LoadError::Io { path, error } => {
                write!(
                    f,
                    "cannot read plugin directory {}: {error}",
                    path.display()
                )
            }
        }
    }
}

/// The plugin's message and the directory's i/o error are part of the message, so they are
/// not also a source (a chain would say them twice).
impl std::error::Error for LoadError {}
