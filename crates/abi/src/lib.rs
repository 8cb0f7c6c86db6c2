//! The stable plugin interface of xlpatch: a plain C ABI, plus safe Rust on both sides of it.
//!
//! Every extension point of xlpatch (the model backend, how source latents are combined, how a
//! residual stream is patched, what is measured) is a *plugin*: a dynamic library that exports
//! one symbol. Plugins built by other people, in other languages and against other releases of
//! xlpatch must keep loading, so the boundary is C, not Rust: `#[repr(C)]` structs, `extern "C"`
//! function tables, integers for enums, and errors as codes plus a message.
//!
//! # The ABI, for a C author
//!
//! A plugin exports `const XlpPluginHeader *xlpatch_plugin_entry(void)` returning a pointer to a
//! header that lives as long as the library (a `static`). The header begins with four fields
//! that never change, in any ABI version, so that a host can always tell what it is refusing:
//!
//! | field | C type | meaning |
//! |---|---|---|
//! | `abi_version` | `uint32_t` | [`ABI_CURRENT`] when built; the host refuses any other value |
//! | `kind` | `uint32_t` | a [`PluginKind`]: 1 backend, 2 extractor, 3 patch strategy, 4 metric |
//! | `name` | `const char *` | NUL-terminated UTF-8, unique among loaded plugins, e.g. `patch-add` |
//! | `version` | `const char *` | the plugin's own version, e.g. `0.1.0` |
//!
//! The host reads only this prefix ([`PluginHeaderPrefix`]) until the version matches: the
//! rest of the header belongs to the plugin's ABI version and may be laid out differently, or
//! be absent. ABI v2 continues with `description` (`const char *`), `create`, `destroy`,
//! `vtable` (a pointer to the kind's function table) and `vtable_size` (its `sizeof`). Function
//! tables are append-only within an ABI version: a host checks `vtable_size` before calling a
//! function it knows is newer than the table it was given. Every function pointer of the
//! header and of the table must be set: the host refuses a plugin that leaves one NULL, naming
//! the slot. The authoritative C declarations are in `include/xlpatch_plugin.h` of this crate;
//! a test compiles that header and checks every size and offset against the Rust definitions
//! below.
//!
//! **Versions.** v1 was the first release. v2 put a `struct_size` first in [`ModelInfo`], so
//! that it can grow; the header and the function tables are the same as in v1, but a v1
//! backend would write its model sizes where a v2 host reads `struct_size`, so v1 plugins are
//! refused and must be rebuilt.
//!
//! **Instances.** `create(params, n_params, &instance, err)` builds an instance from string
//! key-value parameters ([`KeyValue`]); `destroy(instance)` frees it. Every other function takes
//! the instance as its first argument.
//!
//! **Tensors.** A [`TensorView`] (read-only) or [`TensorViewMut`] (written by the callee) is a
//! pointer to dense, row-major (C-contiguous) data, a pointer to `ndim` dimensions (`size_t`),
//! and a [`Dtype`] code (ONNX's `TensorProto.DataType` numbering: 1 = f32, 7 = i64, ...). The
//! caller owns all memory and allocates outputs at their documented shapes; the callee never
//! keeps a pointer past the call.
//!
//! **Errors.** Every fallible function returns an [`StatusCode`] (0 = ok) and takes a last
//! argument `XlpErrorBuf *err` ([`ErrorBuf`]): on failure the plugin writes a NUL-terminated
//! UTF-8 message into `err->ptr` (at most `err->cap` bytes including the NUL, truncated if
//! longer). Rust plugins declared with [`declare_plugin!`] catch panics at the boundary and
//! report them as [`StatusCode::PANIC`]; a C plugin must not let a C++ exception or `longjmp`
//! cross it.
//!
//! **Threads.** Extractor, patch and metric instances may be called from several threads at
//! once (they are pure functions of their parameters); a backend instance is called from one
//! thread at a time.
//!
//! # The Rust side
//!
//! A plugin author implements [`Create`] and one kind trait ([`PatchStrategy`], [`Extractor`],
//! [`Metric`], [`Backend`]) and invokes [`declare_plugin!`]. The host (with the `loader`
//! feature) opens libraries with [`loader::PluginLibrary::open`] or a whole search path with
//! [`loader::Registry::discover`], and gets back handles that implement the *same* kind traits,
//! so the engine cannot tell an in-process implementation from a loaded one. All `unsafe` code
//! of xlpatch lives in this crate.
#![deny(missing_docs)]
// The workspace denies `unsafe_code`; this crate is the one exemption, since crossing a C ABI
// cannot be done without it. Every unsafe block here carries a `// SAFETY:` comment (clippy's
// `undocumented_unsafe_blocks` is denied), and tidy checks no other crate allows it.
#![allow(unsafe_code)]

use std::ffi::{c_char, c_void};

#[doc(hidden)]
#[path = "shim.rs"]
pub mod __shim;
mod plugin;
mod tensor;

#[cfg(feature = "loader")]
pub mod loader;

pub use plugin::{
    Backend, Create, Extractor, LayerRun, Metric, Params, PatchSite, PatchStrategy, PluginError,
    extract_shapes,
};
pub use tensor::{Dtype, Element, TensorMut, TensorRef, TensorView, TensorViewMut};

/// ABI version 1: the first release.
pub const ABI_V1: u32 = 1;
/// ABI version 2: [`ModelInfo`] starts with `struct_size`. Header and tables as in v1.
pub const ABI_V2: u32 = 2;
/// The ABI version this build speaks; a plugin built for another one is refused.
pub const ABI_CURRENT: u32 = ABI_V2;
/// The one symbol a plugin library exports.
pub const ENTRY_SYMBOL: &str = "xlpatch_plugin_entry";

/// The type of [`ENTRY_SYMBOL`]: returns the plugin's static header.
pub type EntryFn = unsafe extern "C" fn() -> *const PluginHeader;

/// What a plugin does; the `kind` field of [`PluginHeader`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum PluginKind {
    /// Runs model graphs: embed, decoder blocks with a KV cache, head ([`Backend`]).
    Backend = 1,
    /// Combines the source latents of several prompts into one per layer ([`Extractor`]).
    Extractor = 2,
    /// Writes a latent into the residual stream ([`PatchStrategy`]).
    PatchStrategy = 3,
    /// Measures a next-token distribution ([`Metric`]).
    Metric = 4,
}

impl PluginKind {
    /// Every kind, in code order.
    pub const ALL: [PluginKind; 4] = [
        PluginKind::Backend,
        PluginKind::Extractor,
        PluginKind::PatchStrategy,
        PluginKind::Metric,
    ];

    /// The kind for a header's `kind` code, if it is one.
    pub fn from_code(code: u32) -> Option<PluginKind> {
        PluginKind::ALL.into_iter().find(|k| *k as u32 == code)
    }

    /// The kind's name as users write it (`backend`, `extractor`, `patch`, `metric`).
    pub fn as_str(self) -> &'static str {
        match self {
            PluginKind::Backend => "backend",
            PluginKind::Extractor => "extractor",
            PluginKind::PatchStrategy => "patch",
            PluginKind::Metric => "metric",
        }
    }
}

impl std::fmt::Display for PluginKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The result of a plugin call: 0 is success, anything else an error whose message is in the
/// call's [`ErrorBuf`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(transparent)]
pub struct StatusCode(pub i32);

impl StatusCode {
    /// Success.
    pub const OK: StatusCode = StatusCode(0);
    /// A parameter, shape, dtype or index the plugin cannot accept.
    pub const INVALID_ARGUMENT: StatusCode = StatusCode(1);
    /// Valid but not supported by this plugin.
    pub const UNSUPPORTED: StatusCode = StatusCode(2);
    /// A file could not be read or written.
    pub const IO: StatusCode = StatusCode(3);
    /// A failure inside the plugin.
    pub const INTERNAL: StatusCode = StatusCode(4);
    /// The plugin panicked; the panic was caught at the boundary.
    pub const PANIC: StatusCode = StatusCode(5);

    /// A short name for the code, for messages.
    pub fn name(self) -> &'static str {
        match self.0 {
            0 => "ok",
            1 => "invalid argument",
            2 => "unsupported",
            3 => "i/o error",
            4 => "internal error",
            5 => "panic",
            _ => "unknown error",
        }
    }
}

/// Where a plugin writes an error message: `cap` bytes at `ptr`, owned by the caller.
#[derive(Debug)]
#[repr(C)]
pub struct ErrorBuf {
    /// Start of the buffer.
    pub ptr: *mut c_char,
    /// Its size in bytes, including room for the terminating NUL.
    pub cap: usize,
}

/// One string parameter of [`PluginHeader::create`]; both strings NUL-terminated UTF-8.
#[derive(Debug, Clone, Copy)]
#[repr(C)]
pub struct KeyValue {
    /// Parameter name.
    pub key: *const c_char,
    /// Parameter value, as text (numbers are parsed by the plugin).
    pub value: *const c_char,
}

/// `create(params, n_params, out_instance, err)`; never NULL in a header the host accepts.
pub type CreateFn = unsafe extern "C" fn(
    params: *const KeyValue,
    n_params: usize,
    out: *mut *mut c_void,
    err: *mut ErrorBuf,
) -> StatusCode;

/// `destroy(instance)`; never fails.
pub type DestroyFn = unsafe extern "C" fn(instance: *mut c_void);

/// The part of [`PluginHeader`] that is the same in every ABI version, and the only part a
/// host reads before it knows the plugin's version. A pointer returned by [`ENTRY_SYMBOL`]
/// always points to at least these 24 bytes (on 64-bit targets); a plugin of another ABI
/// version may put anything, or nothing, after them.
#[derive(Debug)]
#[repr(C)]
pub struct PluginHeaderPrefix {
    /// The ABI version the plugin was built for.
    pub abi_version: u32,
    /// A [`PluginKind`] code.
    pub kind: u32,
    /// The plugin's name, NUL-terminated UTF-8.
    pub name: *const c_char,
    /// The plugin's own version, NUL-terminated UTF-8.
    pub version: *const c_char,
}

/// What [`ENTRY_SYMBOL`] returns. The first four fields are frozen for every ABI version
/// ([`PluginHeaderPrefix`]). Function pointers are `Option`s, which have the layout of a C
/// function pointer with NULL as `None`, so a NULL from a C plugin is a value the host can
/// check rather than undefined behaviour.
#[derive(Debug)]
#[repr(C)]
pub struct PluginHeader {
    /// [`ABI_CURRENT`] of the xlpatch-abi the plugin was built with. Frozen.
    pub abi_version: u32,
    /// A [`PluginKind`] code. Frozen.
    pub kind: u32,
    /// The plugin's name, NUL-terminated UTF-8. Frozen.
    pub name: *const c_char,
    /// The plugin's own version, NUL-terminated UTF-8. Frozen.
    pub version: *const c_char,
    // ---- end of the frozen prefix; ABI v1 and v2 from here ----
    /// One line saying what the plugin does, NUL-terminated UTF-8.
    pub description: *const c_char,
    /// Builds an instance.
    pub create: Option<CreateFn>,
    /// Frees an instance.
    pub destroy: Option<DestroyFn>,
    /// The kind's function table: [`PatchVTable`], [`ExtractVTable`], [`MetricVTable`] or
    /// [`BackendVTable`].
    pub vtable: *const c_void,
    /// `size_of` the table at `vtable`, so that tables can grow at their end.
    pub vtable_size: usize,
    // ---- end of ABI v1 and v2 ----
}

// SAFETY: a header is immutable static data (string literals and function pointers) that a
// plugin never writes after returning it, so sharing it between threads is sound.
unsafe impl Sync for PluginHeader {}

/// [`PatchVTable::apply`].
pub type PatchApplyFn = unsafe extern "C" fn(
    instance: *mut c_void,
    layer: u32,
    hidden: *const TensorViewMut,
    sites: *const PatchSite,
    n_sites: usize,
    source: *const TensorView,
    err: *mut ErrorBuf,
) -> StatusCode;

/// [`ExtractVTable::combine`].
pub type ExtractCombineFn = unsafe extern "C" fn(
    instance: *mut c_void,
    latents: *const TensorView,
    out: *const TensorViewMut,
    err: *mut ErrorBuf,
) -> StatusCode;

/// [`MetricVTable::compute`].
pub type MetricComputeFn = unsafe extern "C" fn(
    instance: *mut c_void,
    probs: *const TensorView,
    token_ids: *const u32,
    n_ids: usize,
    out: *const TensorViewMut,
    err: *mut ErrorBuf,
) -> StatusCode;

/// [`BackendVTable::info`].
pub type BackendInfoFn = unsafe extern "C" fn(
    instance: *mut c_void,
    out: *mut ModelInfo,
    err: *mut ErrorBuf,
) -> StatusCode;

/// [`BackendVTable::embed`].
pub type BackendEmbedFn = unsafe extern "C" fn(
    instance: *mut c_void,
    ids: *const TensorView,
    hidden: *const TensorViewMut,
    err: *mut ErrorBuf,
) -> StatusCode;

/// [`BackendVTable::layer`].
pub type BackendLayerFn = unsafe extern "C" fn(
    instance: *mut c_void,
    index: u32,
    io: *const LayerIoC,
    err: *mut ErrorBuf,
) -> StatusCode;

/// [`BackendVTable::head`].
pub type BackendHeadFn = unsafe extern "C" fn(
    instance: *mut c_void,
    hidden: *const TensorView,
    logits: *const TensorViewMut,
    err: *mut ErrorBuf,
) -> StatusCode;

/// Function table of a [`PluginKind::PatchStrategy`] plugin.
#[derive(Debug, Clone, Copy)]
#[repr(C)]
pub struct PatchVTable {
    /// `apply(instance, layer, hidden, sites, n_sites, source, err)`: patch `hidden`
    /// (f32 `[batch, seq, d]`, in place) at each site with the matching row of `source`
    /// (f32 `[n_sites, d]`); `layer` is the decoder block whose output `hidden` is.
    pub apply: Option<PatchApplyFn>,
    // ---- end of ABI v1 and v2 ----
}

/// Function table of a [`PluginKind::Extractor`] plugin.
#[derive(Debug, Clone, Copy)]
#[repr(C)]
pub struct ExtractVTable {
    /// `combine(instance, latents, out, err)`: from f32 `latents` `[n_sources, n_layers, d]`
    /// write f32 `out` `[n_layers, d]`.
    pub combine: Option<ExtractCombineFn>,
    // ---- end of ABI v1 and v2 ----
}

/// Function table of a [`PluginKind::Metric`] plugin.
#[derive(Debug, Clone, Copy)]
#[repr(C)]
pub struct MetricVTable {
    /// `compute(instance, probs, token_ids, n_ids, out, err)`: from f32 next-token
    /// probabilities `[batch, vocab]` and a set of token ids, write f32 `out` `[batch]`.
    pub compute: Option<MetricComputeFn>,
    // ---- end of ABI v1 and v2 ----
}

/// Sizes of the model a backend instance has open ([`BackendVTable::info`]).
///
/// It can grow at its end. The caller sets `struct_size` to the `sizeof` of the struct it
/// allocated (zeroed) and passes it to `info`; the plugin writes no more than `struct_size`
/// bytes, and sets `struct_size` to the number it wrote. Fields past that stay zero, so a
/// field added later must mean "unknown" at zero. Build one with [`ModelInfo::default`], which
/// sets `struct_size`, and struct-update syntax (`ModelInfo { n_layers: 4, ..Default::default() }`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub struct ModelInfo {
    /// Size of the struct in bytes: the space given (caller) or filled (plugin). Frozen at
    /// offset 0.
    pub struct_size: u32,
    /// Number of decoder blocks.
    pub n_layers: u32,
    /// Width of the residual stream.
    pub d_model: u32,
    /// Key/value heads.
    pub n_kv_heads: u32,
    /// Size of one head.
    pub head_dim: u32,
    /// Vocabulary size (columns of the logits).
    pub vocab: u32,
    /// Whether the layer graphs have `attn_out` and `mlp_out` outputs (0 or 1).
    pub has_sublayer_outputs: u32,
    // ---- end of ABI v2 ----
}

impl ModelInfo {
    /// The size of the fields ABI v2 defines: a plugin that fills less is refused.
    pub const V2_SIZE: u32 = 28;

    /// Refuses a token id outside the vocabulary, before a backend indexes its embedding with
    /// it (every backend's `embed` starts with this).
    pub fn check_token_ids(&self, ids: &[i64]) -> Result<(), PluginError> {
        match ids.iter().find(|&&i| i < 0 || i >= i64::from(self.vocab)) {
            Some(bad) => Err(PluginError::invalid(format!(
                "token id {bad} is outside the model's vocabulary of {}",
                self.vocab
            ))),
            None => Ok(()),
        }
    }
}

impl Default for ModelInfo {
    /// All sizes zero, `struct_size` this build's `sizeof`.
    fn default() -> ModelInfo {
        ModelInfo {
            struct_size: size_of::<ModelInfo>() as u32,
            n_layers: 0,
            d_model: 0,
            n_kv_heads: 0,
            head_dim: 0,
            vocab: 0,
            has_sublayer_outputs: 0,
        }
    }
}

/// Inputs and caller-allocated outputs of one decoder block ([`BackendVTable::layer`]).
#[derive(Debug)]
#[repr(C)]
pub struct LayerIoC {
    /// f32 `[batch, seq, d]`.
    pub hidden_in: TensorView,
    /// i64 `[batch, seq]`.
    pub position_ids: TensorView,
    /// i64 `[batch, past + seq]`, 0 marks (left) padding.
    pub attention_mask: TensorView,
    /// f32 `[batch, kv_heads, past, head_dim]`; `past` may be 0.
    pub past_key: TensorView,
    /// f32 `[batch, kv_heads, past, head_dim]`.
    pub past_value: TensorView,
    /// f32 `[batch, seq, d]`.
    pub hidden_out: TensorViewMut,
    /// f32 `[batch, kv_heads, past + seq, head_dim]`.
    pub present_key: TensorViewMut,
    /// f32 `[batch, kv_heads, past + seq, head_dim]`.
    pub present_value: TensorViewMut,
    /// f32 `[batch, seq, d]`, or a null `data` pointer when not wanted.
    pub attn_out: TensorViewMut,
    /// f32 `[batch, seq, d]`, or a null `data` pointer when not wanted.
    pub mlp_out: TensorViewMut,
}

/// Function table of a [`PluginKind::Backend`] plugin.
#[derive(Debug, Clone, Copy)]
#[repr(C)]
pub struct BackendVTable {
    /// `info(instance, out, err)`.
    pub info: Option<BackendInfoFn>,
    /// `embed(instance, ids, hidden, err)`: i64 `[batch, seq]` to f32 `[batch, seq, d]`.
    pub embed: Option<BackendEmbedFn>,
    /// `layer(instance, index, io, err)`: run decoder block `index`.
    pub layer: Option<BackendLayerFn>,
    /// `head(instance, hidden, logits, err)`: f32 `[batch, seq, d]` to `[batch, seq, vocab]`.
    pub head: Option<BackendHeadFn>,
    // ---- end of ABI v1 and v2 ----
}

// The layout of ABI v2 is frozen: these are the offsets `include/xlpatch_plugin.h` promises on
// 64-bit targets, and a change here breaks every plugin already built. (`Option` of a function
// pointer has the pointer's size, NULL being `None`.)
#[cfg(target_pointer_width = "64")]
const _: () = {
    use std::mem::{offset_of, size_of};
    assert!(offset_of!(PluginHeader, abi_version) == 0);
    assert!(offset_of!(PluginHeader, kind) == 4);
    assert!(offset_of!(PluginHeader, name) == 8);
    assert!(offset_of!(PluginHeader, version) == 16);
    assert!(offset_of!(PluginHeader, description) == 24);
    assert!(offset_of!(PluginHeader, create) == 32);
    assert!(offset_of!(PluginHeader, destroy) == 40);
    assert!(offset_of!(PluginHeader, vtable) == 48);
    assert!(offset_of!(PluginHeader, vtable_size) == 56);
    assert!(size_of::<PluginHeader>() == 64);
    assert!(offset_of!(PluginHeaderPrefix, abi_version) == offset_of!(PluginHeader, abi_version));
    assert!(offset_of!(PluginHeaderPrefix, kind) == offset_of!(PluginHeader, kind));
    assert!(offset_of!(PluginHeaderPrefix, name) == offset_of!(PluginHeader, name));
    assert!(offset_of!(PluginHeaderPrefix, version) == offset_of!(PluginHeader, version));
    assert!(size_of::<PluginHeaderPrefix>() == 24);
    assert!(size_of::<Option<CreateFn>>() == size_of::<*const c_void>());
    assert!(size_of::<TensorView>() == 24);
    assert!(size_of::<TensorViewMut>() == 24);
    assert!(size_of::<PatchSite>() == 16);
    assert!(size_of::<PatchVTable>() == 8);
    assert!(size_of::<ExtractVTable>() == 8);
    assert!(size_of::<MetricVTable>() == 8);
    assert!(size_of::<BackendVTable>() == 32);
    assert!(offset_of!(ModelInfo, struct_size) == 0);
    assert!(offset_of!(ModelInfo, n_layers) == 4);
    assert!(size_of::<ModelInfo>() == ModelInfo::V2_SIZE as usize);
    assert!(size_of::<LayerIoC>() == 240);
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_codes_round_trip_and_unknown_codes_are_rejected() {
        for kind in PluginKind::ALL {
            assert_eq!(PluginKind::from_code(kind as u32), Some(kind));
        }
        assert_eq!(PluginKind::from_code(0), None);
        assert_eq!(PluginKind::from_code(5), None);
    }

    #[test]
    fn status_names() {
        assert_eq!(StatusCode::OK.name(), "ok");
        assert_eq!(StatusCode::PANIC.name(), "panic");
        assert_eq!(StatusCode(77).name(), "unknown error");
    }
}
