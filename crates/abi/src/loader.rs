//! Host side of the boundary (feature `loader`): opening plugin libraries, checking what they
//! declare, and handles that implement the kind traits by calling through the C tables.
//!
//! A library is refused, with a [`LoadError`] naming the file and the reason, when it is not a
//! loadable library, lacks [`ENTRY_SYMBOL`], was built for another ABI version, declares an
//! unknown kind or a malformed header, is asked for as the wrong kind, or reuses the name of a
//! plugin already loaded.

use std::ffi::{CStr, c_char, c_void};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use libloading::Library;

use crate::{
    ABI_CURRENT, Backend, BackendVTable, ENTRY_SYMBOL, EntryFn, ErrorBuf, ExtractVTable, Extractor,
    KeyValue, LayerIoC, LayerRun, Metric, MetricVTable, ModelInfo, PatchSite, PatchStrategy,
    PatchVTable, PluginError, PluginHeader, PluginKind, StatusCode, TensorMut, TensorRef,
    TensorViewMut,
};

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

impl std::error::Error for LoadError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            LoadError::Create { error, .. } => Some(error),
            LoadError::Io { error, .. } => Some(error),
            _ => None,
        }
    }
}

/// An opened, checked plugin library.
pub struct PluginLibrary {
    path: PathBuf,
    name: String,
    version: String,
    description: String,
    kind: PluginKind,
    header: *const PluginHeader,
    // Declared last: dropped after everything that points into it.
    lib: Arc<Library>,
}

// SAFETY: the header pointer refers to immutable static data inside `lib`, which is kept alive
// by the `Arc`; reading it from any thread is sound.
unsafe impl Send for PluginLibrary {}
// SAFETY: as above; nothing in a `PluginLibrary` is mutated after `open`.
unsafe impl Sync for PluginLibrary {}

impl fmt::Debug for PluginLibrary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PluginLibrary")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("version", &self.version)
            .field("path", &self.path)
            .finish()
    }
}

/// # Safety
/// `p` is null or a NUL-terminated string that stays valid while the library is loaded.
unsafe fn header_str(p: *const c_char, field: &str, path: &Path) -> Result<String, LoadError> {
    if p.is_null() {
        return Err(LoadError::BadHeader {
            path: path.to_path_buf(),
            what: format!("`{field}` is a null pointer"),
        });
    }
    // SAFETY: by the contract above.
    let s = unsafe { CStr::from_ptr(p) };
    s.to_str()
        .map(str::to_string)
        .map_err(|_| LoadError::BadHeader {
            path: path.to_path_buf(),
            what: format!("`{field}` is not UTF-8"),
        })
}

impl PluginLibrary {
    /// Opens the library at `path` and checks its header.
    pub fn open(path: &Path) -> Result<PluginLibrary, LoadError> {
        // SAFETY: loading a library runs its initialisers. Plugins are code the user chose to
        // run, like the xlpatch binary itself; Rust and C plugins have no initialisers with
        // preconditions.
        let lib = unsafe { Library::new(path) }.map_err(|e| LoadError::NotALibrary {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        // SAFETY: the ABI defines the symbol's type as `EntryFn`; a library that exports the
        // name with another type violates the ABI it claims.
        let entry = unsafe { lib.get::<EntryFn>(ENTRY_SYMBOL.as_bytes()) }
            .map(|f| *f)
            .map_err(|_| LoadError::MissingEntry {
                path: path.to_path_buf(),
            })?;
        // SAFETY: `entry` is the plugin's entry point and takes no arguments.
        let header_ptr = unsafe { entry() };
        // SAFETY: the entry returns null or a pointer to a static header in the library.
        let Some(header) = (unsafe { header_ptr.as_ref() }) else {
            return Err(LoadError::BadHeader {
                path: path.to_path_buf(),
                what: "the entry point returned null".to_string(),
            });
        };
        // Only the frozen prefix (abi_version, kind, name, version) is read before the
        // version check: the rest of the layout belongs to the plugin's ABI version.
        // SAFETY: the frozen prefix is valid in every ABI version; strings live as long as
        // `lib`.
        let name = unsafe { header_str(header.name, "name", path)? };
        // SAFETY: as above.
        let version = unsafe { header_str(header.version, "version", path)? };
        if header.abi_version != ABI_CURRENT {
            return Err(LoadError::AbiMismatch {
                path: path.to_path_buf(),
                name,
                version,
                found: header.abi_version,
            });
        }
        let Some(kind) = PluginKind::from_code(header.kind) else {
            return Err(LoadError::UnknownKind {
                path: path.to_path_buf(),
                name,
                code: header.kind,
            });
        };
        if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(LoadError::BadHeader {
                path: path.to_path_buf(),
                what: format!("plugin name {name:?} is empty or contains whitespace"),
            });
        }
        // SAFETY: the ABI v1 part of the header, valid now that the version matched.
        let description = unsafe { header_str(header.description, "description", path)? };
        let needed = match kind {
            PluginKind::Backend => size_of::<BackendVTable>(),
            PluginKind::Extractor => size_of::<ExtractVTable>(),
            PluginKind::PatchStrategy => size_of::<PatchVTable>(),
            PluginKind::Metric => size_of::<MetricVTable>(),
        };
        if header.vtable.is_null() || header.vtable_size < needed {
            return Err(LoadError::BadHeader {
                path: path.to_path_buf(),
                what: format!(
                    "the {kind} function table is null or has {} bytes where ABI v1 needs {needed}",
                    header.vtable_size
                ),
            });
        }
        Ok(PluginLibrary {
            path: path.to_path_buf(),
            name,
            version,
            description,
            kind,
            header: header_ptr,
            lib: Arc::new(lib),
        })
    }

    /// The plugin's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The plugin's own version.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// What the plugin says it does.
    pub fn description(&self) -> &str {
        &self.description
    }

    /// Its kind.
    pub fn kind(&self) -> PluginKind {
        self.kind
    }

    /// The file it was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn header(&self) -> &PluginHeader {
        // SAFETY: checked non-null in `open`; static data kept alive by `self.lib`.
        unsafe { &*self.header }
    }

    fn expect_kind(&self, expected: PluginKind) -> Result<(), LoadError> {
        if self.kind == expected {
            Ok(())
        } else {
            Err(LoadError::WrongKind {
                path: self.path.clone(),
                name: self.name.clone(),
                found: self.kind,
                expected,
            })
        }
    }

    fn instantiate(
        &self,
        kind: PluginKind,
        params: &[(&str, &str)],
    ) -> Result<Instance, LoadError> {
        self.expect_kind(kind)?;
        let create_err = |message: String| LoadError::Create {
            name: self.name.clone(),
            error: PluginError::invalid(message),
        };
        let owned: Vec<(std::ffi::CString, std::ffi::CString)> = params
            .iter()
            .map(|(k, v)| {
                Ok((
                    std::ffi::CString::new(*k)
                        .map_err(|_| create_err(format!("parameter name {k:?} contains NUL")))?,
                    std::ffi::CString::new(*v)
                        .map_err(|_| create_err(format!("parameter {k} contains NUL")))?,
                ))
            })
            .collect::<Result<_, LoadError>>()?;
        let kvs: Vec<KeyValue> = owned
            .iter()
            .map(|(k, v)| KeyValue {
                key: k.as_ptr(),
                value: v.as_ptr(),
            })
            .collect();
        let mut ptr: *mut c_void = std::ptr::null_mut();
        let header = self.header();
        let name: Arc<str> = self.name.as_str().into();
        call(&name, |err| {
            // SAFETY: `kvs` and the strings it points to live across the call; `ptr` is a
            // valid output slot.
            unsafe { (header.create)(kvs.as_ptr(), kvs.len(), &mut ptr, err) }
        })
        .map_err(|error| LoadError::Create {
            name: self.name.clone(),
            error,
        })?;
        if ptr.is_null() {
            return Err(create_err(
                "create succeeded but returned no instance".into(),
            ));
        }
        Ok(Instance {
            ptr,
            destroy: header.destroy,
            name,
            _lib: self.lib.clone(),
        })
    }

    /// A patch strategy instance; fails if this is another kind of plugin.
    pub fn patch_strategy(&self, params: &[(&str, &str)]) -> Result<DynPatchStrategy, LoadError> {
        let inst = self.instantiate(PluginKind::PatchStrategy, params)?;
        // SAFETY: kind and table size were checked in `open` and `instantiate`.
        let vt = unsafe { *self.header().vtable.cast::<PatchVTable>() };
        Ok(DynPatchStrategy { inst, vt })
    }

    /// An extractor instance; fails if this is another kind of plugin.
    pub fn extractor(&self, params: &[(&str, &str)]) -> Result<DynExtractor, LoadError> {
        let inst = self.instantiate(PluginKind::Extractor, params)?;
        // SAFETY: kind and table size were checked in `open` and `instantiate`.
        let vt = unsafe { *self.header().vtable.cast::<ExtractVTable>() };
        Ok(DynExtractor { inst, vt })
    }

    /// A metric instance; fails if this is another kind of plugin.
    pub fn metric(&self, params: &[(&str, &str)]) -> Result<DynMetric, LoadError> {
        let inst = self.instantiate(PluginKind::Metric, params)?;
        // SAFETY: kind and table size were checked in `open` and `instantiate`.
        let vt = unsafe { *self.header().vtable.cast::<MetricVTable>() };
        Ok(DynMetric { inst, vt })
    }

    /// A backend instance; fails if this is another kind of plugin.
    pub fn backend(&self, params: &[(&str, &str)]) -> Result<DynBackend, LoadError> {
        let inst = self.instantiate(PluginKind::Backend, params)?;
        // SAFETY: kind and table size were checked in `open` and `instantiate`.
        let vt = unsafe { *self.header().vtable.cast::<BackendVTable>() };
        let mut info = ModelInfo::default();
        call(&inst.name, |err| {
            // SAFETY: live instance; `info` is a valid output slot.
            unsafe { (vt.info)(inst.ptr, &mut info, err) }
        })
        .map_err(|error| LoadError::Create {
            name: self.name.clone(),
            error,
        })?;
        Ok(DynBackend { inst, vt, info })
    }
}

/// Size of the error buffer handed to every call.
const ERROR_CAP: usize = 4096;

/// Calls a plugin function with a fresh error buffer and turns its status into a result.
fn call(name: &str, f: impl FnOnce(*mut ErrorBuf) -> StatusCode) -> Result<(), PluginError> {
    let mut bytes = [0u8; ERROR_CAP];
    let mut buf = ErrorBuf {
        ptr: bytes.as_mut_ptr().cast(),
        cap: ERROR_CAP,
    };
    let code = f(&mut buf);
    if code == StatusCode::OK {
        return Ok(());
    }
    // Never trust the plugin to have terminated the string.
    bytes[ERROR_CAP - 1] = 0;
    let msg = CStr::from_bytes_until_nul(&bytes)
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let msg = if msg.is_empty() {
        "no message".to_string()
    } else {
        msg
    };
    Err(PluginError::new(code, format!("plugin \"{name}\": {msg}")))
}

/// A live plugin instance; destroyed on drop, and keeps its library loaded.
struct Instance {
    ptr: *mut c_void,
    destroy: crate::DestroyFn,
    name: Arc<str>,
    _lib: Arc<Library>,
}

// SAFETY: the ABI requires extractor, patch and metric instances to be callable from any
// thread concurrently, and backend instances from one thread at a time (which `DynBackend`'s
// `&mut self` methods enforce).
unsafe impl Send for Instance {}
// SAFETY: as above.
unsafe impl Sync for Instance {}

impl Drop for Instance {
    fn drop(&mut self) {
        // SAFETY: `ptr` came from this plugin's `create` and is destroyed exactly once, while
        // `_lib` still keeps the code loaded.
        unsafe { (self.destroy)(self.ptr) }
    }
}

impl fmt::Debug for Instance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Instance({})", self.name)
    }
}

/// A loaded patch strategy.
#[derive(Debug)]
pub struct DynPatchStrategy {
    inst: Instance,
    vt: PatchVTable,
}

impl PatchStrategy for DynPatchStrategy {
    fn apply(
        &self,
        layer: u32,
        mut hidden: TensorMut<'_, f32>,
        sites: &[PatchSite],
        source: TensorRef<'_, f32>,
    ) -> Result<(), PluginError> {
        let hidden = hidden.as_view_mut();
        let source = source.as_view();
        call(&self.inst.name, |err| {
            // SAFETY: views and sites borrow live data for the whole call.
            unsafe {
                (self.vt.apply)(
                    self.inst.ptr,
                    layer,
                    &hidden,
                    sites.as_ptr(),
                    sites.len(),
                    &source,
                    err,
                )
            }
        })
    }
}

/// A loaded extractor.
#[derive(Debug)]
pub struct DynExtractor {
    inst: Instance,
    vt: ExtractVTable,
}

impl Extractor for DynExtractor {
    fn combine(
        &self,
        latents: TensorRef<'_, f32>,
        mut out: TensorMut<'_, f32>,
    ) -> Result<(), PluginError> {
        let latents = latents.as_view();
        let out = out.as_view_mut();
        call(&self.inst.name, |err| {
            // SAFETY: views borrow live data for the whole call.
            unsafe { (self.vt.combine)(self.inst.ptr, &latents, &out, err) }
        })
    }
}

/// A loaded metric.
#[derive(Debug)]
pub struct DynMetric {
    inst: Instance,
    vt: MetricVTable,
}

impl Metric for DynMetric {
    fn compute(
        &self,
        probs: TensorRef<'_, f32>,
        token_ids: &[u32],
        mut out: TensorMut<'_, f32>,
    ) -> Result<(), PluginError> {
        let probs = probs.as_view();
        let out = out.as_view_mut();
        call(&self.inst.name, |err| {
            // SAFETY: views and ids borrow live data for the whole call.
            unsafe {
                (self.vt.compute)(
                    self.inst.ptr,
                    &probs,
                    token_ids.as_ptr(),
                    token_ids.len(),
                    &out,
                    err,
                )
            }
        })
    }
}

/// A loaded backend with a model open.
#[derive(Debug)]
pub struct DynBackend {
    inst: Instance,
    vt: BackendVTable,
    info: ModelInfo,
}

fn opt_view(t: &mut Option<TensorMut<'_, f32>>) -> TensorViewMut {
    t.as_mut()
        .map(TensorMut::as_view_mut)
        .unwrap_or(TensorViewMut::absent())
}

impl Backend for DynBackend {
    fn info(&self) -> ModelInfo {
        self.info
    }

    fn embed(
        &mut self,
        ids: TensorRef<'_, i64>,
        mut hidden: TensorMut<'_, f32>,
    ) -> Result<(), PluginError> {
        let ids = ids.as_view();
        let hidden = hidden.as_view_mut();
        call(&self.inst.name, |err| {
            // SAFETY: views borrow live data for the whole call.
            unsafe { (self.vt.embed)(self.inst.ptr, &ids, &hidden, err) }
        })
    }

    fn layer(&mut self, index: u32, mut run: LayerRun<'_>) -> Result<(), PluginError> {
        let io = LayerIoC {
            hidden_in: run.hidden_in.as_view(),
            position_ids: run.position_ids.as_view(),
            attention_mask: run.attention_mask.as_view(),
            past_key: run.past_key.as_view(),
            past_value: run.past_value.as_view(),
            hidden_out: run.hidden_out.as_view_mut(),
            present_key: run.present_key.as_view_mut(),
            present_value: run.present_value.as_view_mut(),
            attn_out: opt_view(&mut run.attn_out),
            mlp_out: opt_view(&mut run.mlp_out),
        };
        call(&self.inst.name, |err| {
            // SAFETY: every view borrows `run`, alive for the whole call.
            unsafe { (self.vt.layer)(self.inst.ptr, index, &io, err) }
        })
    }

    fn head(
        &mut self,
        hidden: TensorRef<'_, f32>,
        mut logits: TensorMut<'_, f32>,
    ) -> Result<(), PluginError> {
        let hidden = hidden.as_view();
        let logits = logits.as_view_mut();
        call(&self.inst.name, |err| {
            // SAFETY: views borrow live data for the whole call.
            unsafe { (self.vt.head)(self.inst.ptr, &hidden, &logits, err) }
        })
    }
}

/// The plugins found on a search path, by unique name.
#[derive(Debug, Default)]
pub struct Registry {
    plugins: Vec<PluginLibrary>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Registry {
        Registry::default()
    }

    /// Loads every library (files ending in the platform's library extension) in `dirs`, in
    /// order, each directory sorted by file name. Directories that do not exist are skipped.
    /// Returns the registry and what was refused; a refusal does not stop the others.
    pub fn discover(dirs: &[PathBuf]) -> (Registry, Vec<LoadError>) {
        let mut registry = Registry::new();
        let mut refused = Vec::new();
        for dir in dirs {
            let entries = match std::fs::read_dir(dir) {
                Ok(entries) => entries,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(error) => {
                    refused.push(LoadError::Io {
                        path: dir.clone(),
                        error,
                    });
                    continue;
                }
            };
            let mut files: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.is_file()
                        && p.extension().and_then(|e| e.to_str())
                            == Some(std::env::consts::DLL_EXTENSION)
                })
                .collect();
            files.sort();
            for file in files {
                if let Err(e) = PluginLibrary::open(&file).and_then(|lib| registry.add(lib)) {
                    refused.push(e);
                }
            }
        }
        (registry, refused)
    }

    /// Adds a library; refuses a second plugin with the same name.
    pub fn add(&mut self, lib: PluginLibrary) -> Result<(), LoadError> {
        if let Some(first) = self.plugins.iter().find(|p| p.name == lib.name) {
            return Err(LoadError::Duplicate {
                name: lib.name.clone(),
                path: lib.path.clone(),
                first: first.path.clone(),
            });
        }
        self.plugins.push(lib);
        Ok(())
    }

    /// The plugin called `name`.
    pub fn get(&self, name: &str) -> Result<&PluginLibrary, LoadError> {
        self.plugins
            .iter()
            .find(|p| p.name == name)
            .ok_or_else(|| LoadError::NotFound {
                name: name.to_string(),
                available: self.plugins.iter().map(|p| p.name.clone()).collect(),
            })
    }

    /// Every plugin, in load order.
    pub fn iter(&self) -> impl Iterator<Item = &PluginLibrary> {
        self.plugins.iter()
    }

    /// How many plugins are loaded.
    pub fn len(&self) -> usize {
        self.plugins.len()
    }

    /// Whether none are.
    pub fn is_empty(&self) -> bool {
        self.plugins.is_empty()
    }
}
