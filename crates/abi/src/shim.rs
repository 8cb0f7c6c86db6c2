//! Plugin side of the boundary: generic `extern "C"` shims that turn C calls into trait calls,
//! and [`declare_plugin!`](crate::declare_plugin), which a plugin crate invokes to export its entry symbol.
//!
//! Every shim runs its body under `catch_unwind`, so a panic in plugin code becomes
//! [`StatusCode::PANIC`] with the panic message instead of unwinding into the host (which
//! would abort it).

use std::any::Any;
use std::ffi::{CStr, c_char, c_void};
use std::panic::{AssertUnwindSafe, catch_unwind};

use crate::{
    Backend, BackendVTable, Create, DestroyFn, ErrorBuf, ExtractVTable, Extractor, KeyValue,
    LayerIoC, LayerRun, Metric, MetricVTable, ModelInfo, Params, PatchSite, PatchStrategy,
    PatchVTable, PluginError, PluginHeader, PluginKind, StatusCode, TensorMut, TensorRef,
    TensorView, TensorViewMut,
};

/// Exports a plugin: `declare_plugin!(kind: patch, name: "patch-add", description: "...",
/// type: PatchAdd)`, where the type implements [`Create`] and the kind's trait (`backend` →
/// [`Backend`], `extractor` → [`Extractor`], `patch` → [`PatchStrategy`], `metric` →
/// [`Metric`]). The plugin's version is its crate's `CARGO_PKG_VERSION`.
#[macro_export]
macro_rules! declare_plugin {
    (kind: patch, name: $name:literal, description: $desc:literal, type: $ty:ty $(,)?) => {
        $crate::declare_plugin!(@emit $ty, $crate::PluginKind::PatchStrategy, $name, $desc,
            $crate::PatchVTable, $crate::__shim::patch_vtable::<$ty>());
    };
    (kind: extractor, name: $name:literal, description: $desc:literal, type: $ty:ty $(,)?) => {
        $crate::declare_plugin!(@emit $ty, $crate::PluginKind::Extractor, $name, $desc,
            $crate::ExtractVTable, $crate::__shim::extract_vtable::<$ty>());
    };
    (kind: metric, name: $name:literal, description: $desc:literal, type: $ty:ty $(,)?) => {
        $crate::declare_plugin!(@emit $ty, $crate::PluginKind::Metric, $name, $desc,
            $crate::MetricVTable, $crate::__shim::metric_vtable::<$ty>());
    };
    (kind: backend, name: $name:literal, description: $desc:literal, type: $ty:ty $(,)?) => {
        $crate::declare_plugin!(@emit $ty, $crate::PluginKind::Backend, $name, $desc,
            $crate::BackendVTable, $crate::__shim::backend_vtable::<$ty>());
    };
    (@emit $ty:ty, $kind:expr, $name:literal, $desc:literal, $vt:ty, $vtable:expr) => {
        /// The plugin's entry point, as defined by `xlpatch-abi`.
        // The workspace denies `unsafe_code`, and `no_mangle` is an unsafe attribute: it is
        // allowed here only, for the one symbol the ABI needs, so a plugin crate holds no
        // unsafe code of its own.
        // SAFETY: `xlpatch_plugin_entry` is the one symbol the ABI reserves; a plugin library
        // declares exactly one plugin, so no other definition of it exists.
        #[allow(unsafe_code)]
        #[unsafe(no_mangle)]
        pub extern "C" fn xlpatch_plugin_entry() -> *const $crate::PluginHeader {
            static VTABLE: $vt = $vtable;
            static HEADER: $crate::PluginHeader = $crate::__shim::header::<$ty>(
                $kind,
                concat!($name, "\0"),
                concat!(env!("CARGO_PKG_VERSION"), "\0"),
                concat!($desc, "\0"),
                &VTABLE as *const $vt as *const ::std::ffi::c_void,
                ::std::mem::size_of::<$vt>(),
            );
            &HEADER
        }
    };
}

/// The header of a plugin of type `T`; the strings must end in NUL.
pub const fn header<T: Create>(
    kind: PluginKind,
    name: &'static str,
    version: &'static str,
    description: &'static str,
    vtable: *const c_void,
    vtable_size: usize,
) -> PluginHeader {
    PluginHeader {
        abi_version: crate::ABI_CURRENT,
        kind: kind as u32,
        name: name.as_ptr().cast(),
        version: version.as_ptr().cast(),
        description: description.as_ptr().cast(),
        create: Some(create::<T>),
        destroy: Some(destroy::<T> as DestroyFn),
        vtable,
        vtable_size,
    }
}

/// The function table of patch strategy `T`.
pub const fn patch_vtable<T: Create + PatchStrategy>() -> PatchVTable {
    PatchVTable {
        apply: Some(patch_apply::<T>),
    }
}

/// The function table of extractor `T`.
pub const fn extract_vtable<T: Create + Extractor>() -> ExtractVTable {
    ExtractVTable {
        combine: Some(extract_combine::<T>),
    }
}

/// The function table of metric `T`.
pub const fn metric_vtable<T: Create + Metric>() -> MetricVTable {
    MetricVTable {
        compute: Some(metric_compute::<T>),
    }
}

/// The function table of backend `T`.
pub const fn backend_vtable<T: Create + Backend>() -> BackendVTable {
    BackendVTable {
        info: Some(backend_info::<T>),
        embed: Some(backend_embed::<T>),
        layer: Some(backend_layer::<T>),
        head: Some(backend_head::<T>),
    }
}

/// The message of a panic payload.
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic with a non-string payload".to_string())
}

/// Runs `f`, catching panics, and reports its error through `err`.
fn guard(err: *mut ErrorBuf, f: impl FnOnce() -> Result<(), PluginError>) -> StatusCode {
    let (code, message) = match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => return StatusCode::OK,
        Ok(Err(e)) => (e.code, e.message),
        Err(payload) => (
            StatusCode::PANIC,
            format!("plugin panicked: {}", panic_message(&*payload)),
        ),
    };
    // SAFETY: the host passes a buffer valid for `cap` bytes, or null.
    unsafe { write_error(err, &message) };
    code
}

/// Writes `message`, truncated at a character boundary and NUL-terminated, into `err`.
///
/// # Safety
/// `err` is null or points to an `ErrorBuf` whose `ptr` is null or valid for `cap` bytes.
unsafe fn write_error(err: *mut ErrorBuf, message: &str) {
    // SAFETY: `err` is null or valid, by the contract above.
    let Some(buf) = (unsafe { err.as_ref() }) else {
        return;
    };
    if buf.ptr.is_null() || buf.cap == 0 {
        return;
    }
    let mut n = message.len().min(buf.cap - 1);
    while !message.is_char_boundary(n) {
        n -= 1;
    }
    // SAFETY: `n + 1 <= cap` bytes are written into the caller's buffer, which cannot overlap
    // the freshly formatted message.
    unsafe {
        std::ptr::copy_nonoverlapping(message.as_ptr(), buf.ptr.cast::<u8>(), n);
        *buf.ptr.add(n) = 0;
    }
}

/// # Safety
/// `s` must be a valid NUL-terminated string.
unsafe fn c_str<'a>(s: *const c_char, what: &str) -> Result<&'a str, PluginError> {
    if s.is_null() {
        return Err(PluginError::invalid(format!("{what} is a null pointer")));
    }
    // SAFETY: non-null and NUL-terminated by the caller's contract.
    unsafe { CStr::from_ptr(s) }
        .to_str()
        .map_err(|_| PluginError::invalid(format!("{what} is not UTF-8")))
}

unsafe extern "C" fn create<T: Create>(
    params: *const KeyValue,
    n_params: usize,
    out: *mut *mut c_void,
    err: *mut ErrorBuf,
) -> StatusCode {
    guard(err, || {
        if out.is_null() {
            return Err(PluginError::invalid(
                "create was given a null output pointer",
            ));
        }
        let pairs: &[KeyValue] = if n_params == 0 {
            &[]
        } else if params.is_null() {
            return Err(PluginError::invalid("create was given null parameters"));
        } else {
            // SAFETY: the host passes `n_params` valid key-values.
            unsafe { std::slice::from_raw_parts(params, n_params) }
        };
        let mut owned = Vec::with_capacity(pairs.len());
        for kv in pairs {
            // SAFETY: keys and values are NUL-terminated strings valid for this call.
            let key = unsafe { c_str(kv.key, "parameter name")? };
            // SAFETY: as above.
            let value = unsafe { c_str(kv.value, "parameter value")? };
            owned.push((key.to_string(), value.to_string()));
        }
        let instance = T::create(&Params::new(owned))?;
        // SAFETY: `out` was checked to be non-null; the host owns it for this call.
        unsafe { *out = Box::into_raw(Box::new(instance)).cast() };
        Ok(())
    })
}

unsafe extern "C" fn destroy<T>(instance: *mut c_void) {
    if instance.is_null() {
        return;
    }
    // A panic in a destructor cannot be reported: swallow it rather than abort the host.
    let _ = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: `instance` came from `create::<T>` and the host destroys it exactly once.
        drop(unsafe { Box::from_raw(instance.cast::<T>()) });
    }));
}

/// # Safety
/// `instance` came from `create::<T>` and is still alive.
unsafe fn instance<'a, T>(instance: *mut c_void) -> Result<&'a mut T, PluginError> {
    // SAFETY: by the contract above; the host never calls one instance from two threads
    // through `&mut` (backends) and only shares `&T` for `Sync` kinds.
    unsafe { instance.cast::<T>().as_mut() }
        .ok_or_else(|| PluginError::invalid("null plugin instance"))
}

/// # Safety
/// `p` is null or valid for reads for this call.
unsafe fn deref<'a, V>(p: *const V, what: &str) -> Result<&'a V, PluginError> {
    // SAFETY: by the contract above.
    unsafe { p.as_ref() }.ok_or_else(|| PluginError::invalid(format!("{what} is a null pointer")))
}

unsafe extern "C" fn patch_apply<T: PatchStrategy>(
    inst: *mut c_void,
    layer: u32,
    hidden: *const TensorViewMut,
    sites: *const PatchSite,
    n_sites: usize,
    source: *const TensorView,
    err: *mut ErrorBuf,
) -> StatusCode {
    guard(err, || {
        // SAFETY: the host passes live pointers valid for this call, as the `PatchVTable::apply` documentation requires.
        let (this, hidden, source) = unsafe {
            let this = instance::<T>(inst)?;
            let hidden = TensorMut::from_view(deref(hidden, "hidden")?)?;
            let source = TensorRef::from_view(deref(source, "source")?)?;
            (this, hidden, source)
        };
        let sites = if n_sites == 0 {
            &[]
        } else {
            // SAFETY: non-null (checked by `deref`) and valid for `n_sites` sites.
            unsafe { std::slice::from_raw_parts(deref(sites, "sites")?, n_sites) }
        };
        this.apply(layer, hidden, sites, source)
    })
}

unsafe extern "C" fn extract_combine<T: Extractor>(
    inst: *mut c_void,
    latents: *const TensorView,
    out: *const TensorViewMut,
    err: *mut ErrorBuf,
) -> StatusCode {
    guard(err, || {
        // SAFETY: live pointers valid for this call, per `ExtractVTable`.
        let (this, latents, out) = unsafe {
            let this = instance::<T>(inst)?;
            let latents = TensorRef::from_view(deref(latents, "latents")?)?;
            let out = TensorMut::from_view(deref(out, "out")?)?;
            (this, latents, out)
        };
        this.combine(latents, out)
    })
}

unsafe extern "C" fn metric_compute<T: Metric>(
    inst: *mut c_void,
    probs: *const TensorView,
    token_ids: *const u32,
    n_ids: usize,
    out: *const TensorViewMut,
    err: *mut ErrorBuf,
) -> StatusCode {
    guard(err, || {
        // SAFETY: live pointers valid for this call, per `MetricVTable`.
        let (this, probs, out) = unsafe {
            let this = instance::<T>(inst)?;
            let probs = TensorRef::from_view(deref(probs, "probs")?)?;
            let out = TensorMut::from_view(deref(out, "out")?)?;
            (this, probs, out)
        };
        let ids = if n_ids == 0 {
            &[]
        } else {
            // SAFETY: non-null (checked by `deref`) and valid for `n_ids` ids.
            unsafe { std::slice::from_raw_parts(deref(token_ids, "token ids")?, n_ids) }
        };
        this.compute(probs, ids, out)
    })
}

unsafe extern "C" fn backend_info<T: Backend>(
    inst: *mut c_void,
    out: *mut ModelInfo,
    err: *mut ErrorBuf,
) -> StatusCode {
    guard(err, || {
        // SAFETY: live instance, per `BackendVTable::info`.
        let this = unsafe { instance::<T>(inst)? };
        if out.is_null() {
            return Err(PluginError::invalid("null output"));
        }
        // The caller's struct may be smaller or larger than ours: read only its size field
        // (frozen at offset 0), then write no more than it has room for.
        // SAFETY: `out` is non-null and points to at least the `struct_size` field.
        let room = unsafe { out.cast::<u32>().read_unaligned() };
        if room < ModelInfo::V2_SIZE {
            return Err(PluginError::invalid(format!(
                "ModelInfo.struct_size is {room}, but ABI v2 needs {} bytes",
                ModelInfo::V2_SIZE
            )));
        }
        let n = (room as usize).min(size_of::<ModelInfo>());
        let mut info = this.info();
        info.struct_size = n as u32;
        // SAFETY: the caller's struct has `room >= n` bytes; `info` is a local of at least
        // `n` bytes, so the two cannot overlap.
        unsafe {
            std::ptr::copy_nonoverlapping((&raw const info).cast::<u8>(), out.cast::<u8>(), n)
        };
        Ok(())
    })
}

unsafe extern "C" fn backend_embed<T: Backend>(
    inst: *mut c_void,
    ids: *const TensorView,
    hidden: *const TensorViewMut,
    err: *mut ErrorBuf,
) -> StatusCode {
    guard(err, || {
        // SAFETY: live pointers valid for this call, per `BackendVTable::embed`.
        let (this, ids, hidden) = unsafe {
            let this = instance::<T>(inst)?;
            let ids = TensorRef::from_view(deref(ids, "ids")?)?;
            let hidden = TensorMut::from_view(deref(hidden, "hidden")?)?;
            (this, ids, hidden)
        };
        this.embed(ids, hidden)
    })
}

/// # Safety
/// `view` is valid for this call; a null `data` pointer means "not wanted".
unsafe fn optional_out<'a>(
    view: &TensorViewMut,
) -> Result<Option<TensorMut<'a, f32>>, PluginError> {
    if view.data.is_null() {
        return Ok(None);
    }
    // SAFETY: by the contract above.
    unsafe { TensorMut::from_view(view) }.map(Some)
}

unsafe extern "C" fn backend_layer<T: Backend>(
    inst: *mut c_void,
    index: u32,
    io: *const LayerIoC,
    err: *mut ErrorBuf,
) -> StatusCode {
    guard(err, || {
        // SAFETY: live pointers valid for this call, per `BackendVTable::layer`.
        let (this, io) = unsafe {
            let this = instance::<T>(inst)?;
            let io = deref(io, "layer io")?;
            (this, io)
        };
        // SAFETY: every view in `io` describes caller memory valid for this call, with the
        // outputs exclusively ours, per `LayerIoC`.
        let run = unsafe {
            LayerRun {
                hidden_in: TensorRef::from_view(&io.hidden_in)?,
                position_ids: TensorRef::from_view(&io.position_ids)?,
                attention_mask: TensorRef::from_view(&io.attention_mask)?,
                past_key: TensorRef::from_view(&io.past_key)?,
                past_value: TensorRef::from_view(&io.past_value)?,
                hidden_out: TensorMut::from_view(&io.hidden_out)?,
                present_key: TensorMut::from_view(&io.present_key)?,
                present_value: TensorMut::from_view(&io.present_value)?,
                attn_out: optional_out(&io.attn_out)?,
                mlp_out: optional_out(&io.mlp_out)?,
            }
        };
        this.layer(index, run)
    })
}

unsafe extern "C" fn backend_head<T: Backend>(
    inst: *mut c_void,
    hidden: *const TensorView,
    logits: *const TensorViewMut,
    err: *mut ErrorBuf,
) -> StatusCode {
    guard(err, || {
        // SAFETY: live pointers valid for this call, per `BackendVTable::head`.
        let (this, hidden, logits) = unsafe {
            let this = instance::<T>(inst)?;
            let hidden = TensorRef::from_view(deref(hidden, "hidden")?)?;
            let logits = TensorMut::from_view(deref(logits, "logits")?)?;
            (this, hidden, logits)
        };
        this.head(hidden, logits)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_truncated_at_char_boundaries_and_terminated() {
        let mut bytes = [0x55u8; 6];
        let mut buf = ErrorBuf {
            ptr: bytes.as_mut_ptr().cast(),
            cap: bytes.len(),
        };
        // "aaaé" is 5 bytes; with room for 5 bytes plus NUL it fits exactly.
        // SAFETY: `buf` describes the live array above.
        unsafe { write_error(&mut buf, "aaaéb") };
        assert_eq!(&bytes, b"aaa\xc3\xa9\0");
        let mut small = [0x55u8; 5];
        let mut buf = ErrorBuf {
            ptr: small.as_mut_ptr().cast(),
            cap: small.len(),
        };
        // Four bytes of room would split the é: stop before it.
        // SAFETY: as above.
        unsafe { write_error(&mut buf, "aaaéb") };
        assert_eq!(&small[..4], b"aaa\0");
        // SAFETY: a null buffer is allowed and ignored.
        unsafe { write_error(std::ptr::null_mut(), "ignored") };
    }

    struct Sizes;

    impl Backend for Sizes {
        fn info(&self) -> ModelInfo {
            ModelInfo {
                n_layers: 3,
                vocab: 11,
                has_sublayer_outputs: 1,
                ..ModelInfo::default()
            }
        }
        fn embed(
            &mut self,
            _: TensorRef<'_, i64>,
            _: TensorMut<'_, f32>,
        ) -> Result<(), PluginError> {
            Ok(())
        }
        fn layer(&mut self, _: u32, _: LayerRun<'_>) -> Result<(), PluginError> {
            Ok(())
        }
        fn head(
            &mut self,
            _: TensorRef<'_, f32>,
            _: TensorMut<'_, f32>,
        ) -> Result<(), PluginError> {
            Ok(())
        }
    }

    /// `info` through the shim, into a caller struct of `room` bytes (plus a guard word).
    fn info_into(room: u32) -> (StatusCode, [u32; 10]) {
        let mut backend = Sizes;
        let mut words = [0xAAAA_AAAAu32; 10];
        words[0] = room;
        let mut bytes = [0u8; 128];
        let mut buf = ErrorBuf {
            ptr: bytes.as_mut_ptr().cast(),
            cap: bytes.len(),
        };
        // SAFETY: a live instance and a caller struct of 40 bytes, at least `room`.
        let code = unsafe {
            backend_info::<Sizes>(
                (&raw mut backend).cast(),
                words.as_mut_ptr().cast(),
                &mut buf,
            )
        };
        (code, words)
    }

    #[test]
    fn model_info_is_written_up_to_the_callers_size() {
        // A caller of exactly v2's size gets every field and the size it was filled to.
        let (code, words) = info_into(ModelInfo::V2_SIZE);
        assert_eq!(code, StatusCode::OK);
        assert_eq!(&words[..7], &[28, 3, 0, 0, 0, 11, 1]);
        assert_eq!(words[7], 0xAAAA_AAAA, "wrote past the caller's struct");
        // A newer caller with a larger struct learns how much was filled; the rest is untouched.
        let (code, words) = info_into(40);
        assert_eq!(code, StatusCode::OK);
        assert_eq!(words[0], 28);
        assert!(words[7..].iter().all(|w| *w == 0xAAAA_AAAA));
        // A caller whose struct lacks v2's fields is refused, and nothing is written.
        let (code, words) = info_into(24);
        assert_eq!(code, StatusCode::INVALID_ARGUMENT);
        assert_eq!(&words[..2], &[24, 0xAAAA_AAAA]);
    }

    #[test]
    fn panics_become_status_codes() {
        let mut bytes = [0u8; 128];
        let mut buf = ErrorBuf {
            ptr: bytes.as_mut_ptr().cast(),
            cap: bytes.len(),
        };
        let code = guard(&mut buf, || panic!("boom {}", 7));
        assert_eq!(code, StatusCode::PANIC);
        let msg = CStr::from_bytes_until_nul(&bytes)
            .unwrap()
            .to_str()
            .unwrap();
        assert_eq!(msg, "plugin panicked: boom 7");
    }
}
