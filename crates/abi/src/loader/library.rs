//! Opening one plugin library and checking what it declares: the frozen header prefix first,
//! the version, then the rest of the header and the kind's function table, every function
//! pointer checked. What passes is kept as plain values and function pointers, so nothing
//! reads the plugin's header again.

use std::ffi::{CStr, CString, c_char, c_void};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use libloading::Library;

use super::LoadError;
use super::handles::{
    BackendFns, DynBackend, DynExtractor, DynMetric, DynPatchStrategy, Instance, call,
};
use crate::{
    ABI_CURRENT, BackendVTable, CreateFn, DestroyFn, ENTRY_SYMBOL, EntryFn, ExtractCombineFn,
    ExtractVTable, KeyValue, MetricComputeFn, MetricVTable, ModelInfo, PatchApplyFn, PatchVTable,
    PluginError, PluginHeader, PluginHeaderPrefix, PluginKind,
};

/// The kind's function table, each entry checked non-NULL in [`PluginLibrary::open`].
#[derive(Clone, Copy)]
enum Table {
    Patch(PatchApplyFn),
    Extract(ExtractCombineFn),
    Metric(MetricComputeFn),
    Backend(BackendFns),
}

/// An opened, checked plugin library.
pub struct PluginLibrary {
    path: PathBuf,
    name: String,
    version: String,
    description: String,
    kind: PluginKind,
    create: CreateFn,
    destroy: DestroyFn,
    table: Table,
    // Declared last: dropped after everything that points into it.
    lib: Arc<Library>,
}

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

/// `Some(f)`, or the refusal naming `slot`.
fn present<F>(f: Option<F>, slot: &'static str, path: &Path, name: &str) -> Result<F, LoadError> {
    f.ok_or_else(|| LoadError::NullFunction {
        path: path.to_path_buf(),
        name: name.to_string(),
        slot,
    })
}

/// # Safety
/// `vtable` points to at least `size_of::<T>()` readable bytes holding a `T`.
unsafe fn read_table<T: Copy>(vtable: *const c_void) -> T {
    // SAFETY: by the contract above; the plugin's static need not be aligned for `T` as
    // far as we can check, so read it unaligned.
    unsafe { vtable.cast::<T>().read_unaligned() }
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
        if header_ptr.is_null() {
            return Err(LoadError::BadHeader {
                path: path.to_path_buf(),
                what: "the entry point returned null".to_string(),
            });
        }
        // Until the version is known, only the frozen prefix may be read: a plugin of another
        // ABI version may lay out (or end) its header differently after it.
        // SAFETY: every ABI version's header begins with the prefix, in static data of `lib`.
        let prefix = unsafe { &*header_ptr.cast::<PluginHeaderPrefix>() };
        // SAFETY: the prefix's strings are NUL-terminated and live as long as `lib`.
        let name = unsafe { header_str(prefix.name, "name", path)? };
        // SAFETY: as above.
        let version = unsafe { header_str(prefix.version, "version", path)? };
        if prefix.abi_version != ABI_CURRENT {
            return Err(LoadError::AbiMismatch {
                path: path.to_path_buf(),
                name,
                version,
                found: prefix.abi_version,
            });
        }
        // SAFETY: the version matched, so the pointer is to a whole header of this layout.
        let header = unsafe { &*header_ptr };
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
        // SAFETY: the ABI v2 part of the header, valid now that the version matched.
        let description = unsafe { header_str(header.description, "description", path)? };
        let create = present(header.create, "XlpPluginHeader.create", path, &name)?;
        let destroy = present(header.destroy, "XlpPluginHeader.destroy", path, &name)?;
        let table = Self::table(header, kind, path, &name)?;
        Ok(PluginLibrary {
            path: path.to_path_buf(),
            name,
            version,
            description,
            kind,
            create,
            destroy,
            table,
            lib: Arc::new(lib),
        })
    }

    /// Reads the kind's function table once, refusing a short table or a NULL entry.
    fn table(
        header: &PluginHeader,
        kind: PluginKind,
        path: &Path,
        name: &str,
    ) -> Result<Table, LoadError> {
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
                    "the {kind} function table is null or has {} bytes where ABI v{ABI_CURRENT} \
                     needs {needed}",
                    header.vtable_size
                ),
            });
        }
        let vt = header.vtable;
        // SAFETY (each read below): the table is non-null and at least `needed` bytes, the
        // size of the kind's table, in static data of the library.
        Ok(match kind {
            PluginKind::PatchStrategy => {
                // SAFETY: see above.
                let t: PatchVTable = unsafe { read_table(vt) };
                Table::Patch(present(t.apply, "XlpPatchVTable.apply", path, name)?)
            }
            PluginKind::Extractor => {
                // SAFETY: see above.
                let t: ExtractVTable = unsafe { read_table(vt) };
                Table::Extract(present(t.combine, "XlpExtractVTable.combine", path, name)?)
            }
            PluginKind::Metric => {
                // SAFETY: see above.
                let t: MetricVTable = unsafe { read_table(vt) };
                Table::Metric(present(t.compute, "XlpMetricVTable.compute", path, name)?)
            }
            PluginKind::Backend => {
                // SAFETY: see above.
                let t: BackendVTable = unsafe { read_table(vt) };
                Table::Backend(BackendFns {
                    info: present(t.info, "XlpBackendVTable.info", path, name)?,
                    embed: present(t.embed, "XlpBackendVTable.embed", path, name)?,
                    layer: present(t.layer, "XlpBackendVTable.layer", path, name)?,
                    head: present(t.head, "XlpBackendVTable.head", path, name)?,
                })
            }
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

    fn wrong_kind(&self, expected: PluginKind) -> LoadError {
        LoadError::WrongKind {
            path: self.path.clone(),
            name: self.name.clone(),
            found: self.kind,
            expected,
        }
    }

    /// A new instance built from `params` (the kind was checked by the caller).
    fn instantiate(&self, params: &[(&str, &str)]) -> Result<Instance, LoadError> {
        let create_err = |message: String| LoadError::Create {
            name: self.name.clone(),
            error: PluginError::invalid(message),
        };
        let owned: Vec<(CString, CString)> = params
            .iter()
            .map(|(k, v)| {
                Ok((
                    CString::new(*k)
                        .map_err(|_| create_err(format!("parameter name {k:?} contains NUL")))?,
                    CString::new(*v)
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
        let name: Arc<str> = self.name.as_str().into();
        let create = self.create;
        call(&name, |err| {
            // SAFETY: `kvs` and the strings it points to live across the call; `ptr` is a
            // valid output slot.
            unsafe { create(kvs.as_ptr(), kvs.len(), &mut ptr, err) }
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
        Ok(Instance::new(ptr, self.destroy, name, self.lib.clone()))
    }

    /// A patch strategy instance; fails if this is another kind of plugin.
    pub fn patch_strategy(&self, params: &[(&str, &str)]) -> Result<DynPatchStrategy, LoadError> {
        let Table::Patch(apply) = self.table else {
            return Err(self.wrong_kind(PluginKind::PatchStrategy));
        };
        Ok(DynPatchStrategy::new(self.instantiate(params)?, apply))
    }

    /// An extractor instance; fails if this is another kind of plugin.
    pub fn extractor(&self, params: &[(&str, &str)]) -> Result<DynExtractor, LoadError> {
        let Table::Extract(combine) = self.table else {
            return Err(self.wrong_kind(PluginKind::Extractor));
        };
        Ok(DynExtractor::new(self.instantiate(params)?, combine))
    }

    /// A metric instance; fails if this is another kind of plugin.
    pub fn metric(&self, params: &[(&str, &str)]) -> Result<DynMetric, LoadError> {
        let Table::Metric(compute) = self.table else {
            return Err(self.wrong_kind(PluginKind::Metric));
        };
        Ok(DynMetric::new(self.instantiate(params)?, compute))
    }

    /// A backend instance; fails if this is another kind of plugin, or if the instance
    /// cannot report the model's sizes.
    pub fn backend(&self, params: &[(&str, &str)]) -> Result<DynBackend, LoadError> {
        let Table::Backend(fns) = self.table else {
            return Err(self.wrong_kind(PluginKind::Backend));
        };
        let inst = self.instantiate(params)?;
        let mut info = ModelInfo::default();
        let room = info.struct_size;
        call(inst.name(), |err| {
            // SAFETY: live instance; `info` is a valid output slot of `struct_size` bytes.
            unsafe { (fns.info)(inst.ptr(), &mut info, err) }
        })
        .and_then(|()| {
            if info.struct_size < ModelInfo::V2_SIZE || info.struct_size > room {
                Err(PluginError::invalid(format!(
                    "plugin \"{}\": info filled {} bytes of ModelInfo, where ABI v2 needs {} \
                     and {room} were given",
                    self.name,
                    info.struct_size,
                    ModelInfo::V2_SIZE
                )))
            } else {
                Ok(())
            }
        })
        .map_err(|error| LoadError::Create {
            name: self.name.clone(),
            error,
        })?;
        Ok(DynBackend::new(inst, fns, info))
    }
}
