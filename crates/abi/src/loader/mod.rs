//! Host side of the boundary (feature `loader`): opening plugin libraries, checking what they
//! declare, and handles that implement the kind traits by calling through the C tables.
//!
//! A library is refused, with a [`LoadError`] naming the file and the reason, when it is not a
//! loadable library, lacks [`ENTRY_SYMBOL`](crate::ENTRY_SYMBOL), was built for another ABI
//! version, declares an unknown kind or a malformed header, leaves a function pointer NULL, is
//! asked for as the wrong kind, or reuses the name of a plugin already loaded.
//!
//! The fence, in the order [`PluginLibrary::open`] applies it: only the frozen
//! [`PluginHeaderPrefix`](crate::PluginHeaderPrefix) is read until the version matches; then
//! the header and the kind's table are read once, every function pointer is checked, and the
//! library keeps plain function pointers. Nothing reads the plugin's header after `open`.
//!
//! One idea per module: `error` (why a library is refused), `library` (opening and
//! checking one library), `handles` (live instances behind the kind traits), `registry`
//! (the plugins of a search path by name).

mod error;
mod handles;
mod library;
mod registry;

pub use error::LoadError;
pub use handles::{DynBackend, DynExtractor, DynMetric, DynPatchStrategy};
pub use library::PluginLibrary;
pub use registry::Registry;
