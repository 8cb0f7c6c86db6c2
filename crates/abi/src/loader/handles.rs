//! Live plugin instances behind the kind traits: each handle owns an instance (destroyed on
//! drop, keeping its library loaded) and the checked function pointers of its kind, and turns
//! every call's status and message into a [`PluginError`].

use std::ffi::{CStr, c_void};
use std::fmt;
use std::sync::Arc;

use libloading::Library;

use crate::{
    Backend, BackendEmbedFn, BackendHeadFn, BackendInfoFn, BackendLayerFn, DestroyFn, ErrorBuf,
    ExtractCombineFn, Extractor, LayerIoC, LayerRun, Metric, MetricComputeFn, ModelInfo,
    PatchApplyFn, PatchSite, PatchStrategy, PluginError, StatusCode, TensorMut, TensorRef,
    TensorViewMut,
};

/// Size of the error buffer handed to every call.
const ERROR_CAP: usize = 4096;

/// Calls a plugin function with a fresh error buffer and turns its status into a result.
pub(super) fn call(
    name: &str,
    f: impl FnOnce(*mut ErrorBuf) -> StatusCode,
) -> Result<(), PluginError> {
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
pub(super) struct Instance {
    ptr: *mut c_void,
    destroy: DestroyFn,
    name: Arc<str>,
    _lib: Arc<Library>,
}

impl Instance {
    /// Takes ownership of `ptr`, which the plugin's `create` returned.
    pub(super) fn new(
        ptr: *mut c_void,
        destroy: DestroyFn,
        name: Arc<str>,
        lib: Arc<Library>,
    ) -> Instance {
        Instance {
            ptr,
            destroy,
            name,
            _lib: lib,
        }
    }

    pub(super) fn ptr(&self) -> *mut c_void {
        self.ptr
    }

    pub(super) fn name(&self) -> &str {
        &self.name
    }
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
    apply: PatchApplyFn,
}

impl DynPatchStrategy {
    pub(super) fn new(inst: Instance, apply: PatchApplyFn) -> DynPatchStrategy {
        DynPatchStrategy { inst, apply }
    }
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
                (self.apply)(
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
    combine: ExtractCombineFn,
}

impl DynExtractor {
    pub(super) fn new(inst: Instance, combine: ExtractCombineFn) -> DynExtractor {
        DynExtractor { inst, combine }
    }
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
            unsafe { (self.combine)(self.inst.ptr, &latents, &out, err) }
        })
    }
}

/// A loaded metric.
#[derive(Debug)]
pub struct DynMetric {
    inst: Instance,
    compute: MetricComputeFn,
}

impl DynMetric {
    pub(super) fn new(inst: Instance, compute: MetricComputeFn) -> DynMetric {
        DynMetric { inst, compute }
    }
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
                (self.compute)(
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

/// The checked function table of a backend.
#[derive(Debug, Clone, Copy)]
pub(super) struct BackendFns {
    pub(super) info: BackendInfoFn,
    pub(super) embed: BackendEmbedFn,
    pub(super) layer: BackendLayerFn,
    pub(super) head: BackendHeadFn,
}

/// A loaded backend with a model open.
#[derive(Debug)]
pub struct DynBackend {
    inst: Instance,
    fns: BackendFns,
    info: ModelInfo,
}

impl DynBackend {
    pub(super) fn new(inst: Instance, fns: BackendFns, info: ModelInfo) -> DynBackend {
        DynBackend { inst, fns, info }
    }
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
            unsafe { (self.fns.embed)(self.inst.ptr, &ids, &hidden, err) }
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
            unsafe { (self.fns.layer)(self.inst.ptr, index, &io, err) }
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
            unsafe { (self.fns.head)(self.inst.ptr, &hidden, &logits, err) }
        })
    }
}
