//! The C side of the ABI: `include/xlpatch_plugin.h` agrees with the Rust definitions field by
//! field, and a plugin written in C against it loads and computes what the Rust one does.

use std::collections::BTreeMap;
use std::mem::{offset_of, size_of};
use std::process::Command;

use xlpatch_abi::loader::PluginLibrary;
use xlpatch_abi::{
    ABI_CURRENT, BackendVTable, Dtype, ErrorBuf, ExtractVTable, KeyValue, LayerIoC, Metric,
    MetricVTable, ModelInfo, PatchSite, PatchVTable, PluginHeader, PluginHeaderPrefix, PluginKind,
    StatusCode, TensorMut, TensorRef, TensorView, TensorViewMut,
};

use crate::support::{compile_c_plugin, lib_path, open, root};

#[test]
fn the_c_header_matches_the_rust_layout() {
    let dir = tempfile::tempdir().unwrap();
    let exe = dir.path().join("layout");
    let status = Command::new(std::env::var("CC").unwrap_or_else(|_| "cc".into()))
        .args(["-std=c11", "-Wall", "-Werror", "-o"])
        .arg(&exe)
        .arg("-I")
        .arg(root().join("crates/abi/include"))
        .arg(root().join("tests/c/layout.c"))
        .status()
        .expect("cannot run the C compiler (`cc`, or $CC)");
    assert!(status.success());
    let out = Command::new(&exe).output().unwrap();
    let c: BTreeMap<String, usize> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let mut parts = l.split(' ');
            let key = format!("{} {}", parts.next().unwrap(), parts.next().unwrap());
            (key, parts.next().unwrap().parse().unwrap())
        })
        .collect();
    let rust: BTreeMap<String, usize> = [
        ("sizeof XlpErrorBuf", size_of::<ErrorBuf>()),
        ("sizeof XlpKeyValue", size_of::<KeyValue>()),
        ("sizeof XlpTensorView", size_of::<TensorView>()),
        (
            "offsetof XlpTensorView.shape",
            offset_of!(TensorView, shape),
        ),
        ("offsetof XlpTensorView.ndim", offset_of!(TensorView, ndim)),
        (
            "offsetof XlpTensorView.dtype",
            offset_of!(TensorView, dtype),
        ),
        ("sizeof XlpTensorViewMut", size_of::<TensorViewMut>()),
        ("sizeof XlpPatchSite", size_of::<PatchSite>()),
        (
            "sizeof XlpPluginHeaderPrefix",
            size_of::<PluginHeaderPrefix>(),
        ),
        (
            "offsetof XlpPluginHeaderPrefix.version",
            offset_of!(PluginHeaderPrefix, version),
        ),
        ("sizeof XlpPluginHeader", size_of::<PluginHeader>()),
        (
            "offsetof XlpPluginHeader.abi_version",
            offset_of!(PluginHeader, abi_version),
        ),
        (
            "offsetof XlpPluginHeader.kind",
            offset_of!(PluginHeader, kind),
        ),
        (
            "offsetof XlpPluginHeader.name",
            offset_of!(PluginHeader, name),
        ),
        (
            "offsetof XlpPluginHeader.version",
            offset_of!(PluginHeader, version),
        ),
        (
            "offsetof XlpPluginHeader.description",
            offset_of!(PluginHeader, description),
        ),
        (
            "offsetof XlpPluginHeader.create",
            offset_of!(PluginHeader, create),
        ),
        (
            "offsetof XlpPluginHeader.destroy",
            offset_of!(PluginHeader, destroy),
        ),
        (
            "offsetof XlpPluginHeader.vtable",
            offset_of!(PluginHeader, vtable),
        ),
        (
            "offsetof XlpPluginHeader.vtable_size",
            offset_of!(PluginHeader, vtable_size),
        ),
        ("sizeof XlpPatchVTable", size_of::<PatchVTable>()),
        ("sizeof XlpExtractVTable", size_of::<ExtractVTable>()),
        ("sizeof XlpMetricVTable", size_of::<MetricVTable>()),
        ("sizeof XlpModelInfo", size_of::<ModelInfo>()),
        (
            "offsetof XlpModelInfo.struct_size",
            offset_of!(ModelInfo, struct_size),
        ),
        (
            "offsetof XlpModelInfo.n_layers",
            offset_of!(ModelInfo, n_layers),
        ),
        ("offsetof XlpModelInfo.vocab", offset_of!(ModelInfo, vocab)),
        (
            "offsetof XlpModelInfo.has_sublayer_outputs",
            offset_of!(ModelInfo, has_sublayer_outputs),
        ),
        ("sizeof XlpLayerIo", size_of::<LayerIoC>()),
        (
            "offsetof XlpLayerIo.position_ids",
            offset_of!(LayerIoC, position_ids),
        ),
        (
            "offsetof XlpLayerIo.hidden_out",
            offset_of!(LayerIoC, hidden_out),
        ),
        (
            "offsetof XlpLayerIo.attn_out",
            offset_of!(LayerIoC, attn_out),
        ),
        ("offsetof XlpLayerIo.mlp_out", offset_of!(LayerIoC, mlp_out)),
        ("sizeof XlpBackendVTable", size_of::<BackendVTable>()),
        (
            "offsetof XlpBackendVTable.embed",
            offset_of!(BackendVTable, embed),
        ),
        (
            "offsetof XlpBackendVTable.layer",
            offset_of!(BackendVTable, layer),
        ),
        (
            "offsetof XlpBackendVTable.head",
            offset_of!(BackendVTable, head),
        ),
        ("value XLP_ABI_CURRENT", ABI_CURRENT as usize),
        ("value XLP_KIND_METRIC", PluginKind::Metric as usize),
        ("value XLP_DTYPE_I64", Dtype::I64 as usize),
        ("value XLP_STATUS_PANIC", StatusCode::PANIC.0 as usize),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    assert_eq!(c, rust);
}

#[test]
fn a_plugin_written_in_c_loads_and_matches_the_rust_one() {
    let dir = tempfile::tempdir().unwrap();
    let file = lib_path(dir.path(), "metric_c_sum");
    compile_c_plugin("plugin.c", &[], &file);
    let lib = PluginLibrary::open(&file).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(lib.name(), "metric-c-sum");
    assert_eq!(lib.kind(), PluginKind::Metric);
    assert_eq!(lib.version(), "0.0.1");
    let c = lib.metric(&[]).unwrap();
    let rust = open("metric-concept-prob").metric(&[]).unwrap();

    let (batch, vocab) = (3, 50);
    let probs: Vec<f32> = (0..batch * vocab)
        .map(|i| ((i * 7919) % 101) as f32 / 5050.0)
        .collect();
    let ids = [0u32, 3, 17, 49];
    let run = |m: &dyn Metric| {
        let mut out = vec![0f32; batch];
        m.compute(
            TensorRef::new(&probs, &[batch, vocab]).unwrap(),
            &ids,
            TensorMut::new(&mut out, &[batch]).unwrap(),
        )
        .unwrap();
        out
    };
    let (from_c, from_rust) = (run(&c), run(&rust));
    assert_eq!(from_c, from_rust);
    assert!(from_c.iter().all(|p| *p > 0.0));

    // Its errors come back as messages too.
    assert!(
        lib.metric(&[("x", "1")])
            .unwrap_err()
            .to_string()
            .contains("takes no parameters")
    );
    let mut out = [0f32; 1];
    let err = c
        .compute(
            TensorRef::new(&probs[..vocab], &[1, vocab]).unwrap(),
            &[vocab as u32],
            TensorMut::new(&mut out, &[1]).unwrap(),
        )
        .unwrap_err();
    assert_eq!(err.code, StatusCode::INVALID_ARGUMENT);
    assert!(
        err.message.contains("token id outside the vocabulary"),
        "{err}"
    );
}
