/*
 * xlpatch plugin ABI, version 2: the C declarations of crates/abi (src/lib.rs documents the
 * contract). A test compiles this header and checks every size and offset below against the
 * Rust definitions, so the two cannot drift apart.
 *
 * A plugin is a shared library exporting
 *     const XlpPluginHeader *xlpatch_plugin_entry(void);
 * which returns a pointer to a static header. Strings are NUL-terminated UTF-8. Tensors are
 * dense and row-major; the caller owns all memory and allocates outputs. Every fallible call
 * returns 0 on success, or a nonzero XLP_STATUS_* code after writing a message (at most
 * err->cap bytes, NUL included) to err->ptr. Every function pointer in the header and in the
 * kind's table must be set: the host refuses a plugin that leaves one NULL, naming the slot.
 *
 * The host reads only the frozen prefix (XlpPluginHeaderPrefix) until it has checked
 * abi_version; what follows belongs to that version. v2 differs from v1 only in XlpModelInfo,
 * which now begins with struct_size.
 */
#ifndef XLPATCH_PLUGIN_H
#define XLPATCH_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#define XLP_ABI_V1 1u
#define XLP_ABI_V2 2u
#define XLP_ABI_CURRENT XLP_ABI_V2

/* Plugin kinds (XlpPluginHeader.kind). */
#define XLP_KIND_BACKEND 1u
#define XLP_KIND_EXTRACTOR 2u
#define XLP_KIND_PATCH 3u
#define XLP_KIND_METRIC 4u

/* Status codes. */
#define XLP_STATUS_OK 0
#define XLP_STATUS_INVALID_ARGUMENT 1
#define XLP_STATUS_UNSUPPORTED 2
#define XLP_STATUS_IO 3
#define XLP_STATUS_INTERNAL 4
#define XLP_STATUS_PANIC 5

/* Element types, numbered as ONNX's TensorProto.DataType. */
#define XLP_DTYPE_F32 1u
#define XLP_DTYPE_I32 6u
#define XLP_DTYPE_I64 7u
#define XLP_DTYPE_F16 10u
#define XLP_DTYPE_U32 12u
#define XLP_DTYPE_BF16 16u

typedef int32_t XlpStatus;

typedef struct XlpErrorBuf {
    char *ptr;
    size_t cap;
} XlpErrorBuf;

typedef struct XlpKeyValue {
    const char *key;
    const char *value;
} XlpKeyValue;

typedef struct XlpTensorView {
    const void *data;
    const size_t *shape;
    uint32_t ndim;
    uint32_t dtype;
} XlpTensorView;

typedef struct XlpTensorViewMut {
    void *data; /* NULL: an output the caller does not want */
    const size_t *shape;
    uint32_t ndim;
    uint32_t dtype;
} XlpTensorViewMut;

typedef struct XlpPatchSite {
    size_t batch;
    size_t position;
} XlpPatchSite;

typedef XlpStatus (*XlpCreateFn)(const XlpKeyValue *params, size_t n_params, void **out,
                                 XlpErrorBuf *err);
typedef void (*XlpDestroyFn)(void *instance);

/* The first fields of every ABI version's header, and all a host reads before the version
 * check. */
typedef struct XlpPluginHeaderPrefix {
    uint32_t abi_version;
    uint32_t kind;
    const char *name;
    const char *version;
} XlpPluginHeaderPrefix;

typedef struct XlpPluginHeader {
    /* Frozen in every ABI version (XlpPluginHeaderPrefix). */
    uint32_t abi_version;
    uint32_t kind;
    const char *name;
    const char *version;
    /* ABI v1 and v2. */
    const char *description;
    XlpCreateFn create;
    XlpDestroyFn destroy;
    const void *vtable;
    size_t vtable_size;
    /* end of ABI v1 and v2 */
} XlpPluginHeader;

/* kind XLP_KIND_PATCH: patch hidden [batch, seq, d] (f32, in place) at each site with the
 * matching row of source [n_sites, d]; layer is the block whose output hidden is. */
typedef struct XlpPatchVTable {
    XlpStatus (*apply)(void *instance, uint32_t layer, const XlpTensorViewMut *hidden,
                       const XlpPatchSite *sites, size_t n_sites, const XlpTensorView *source,
                       XlpErrorBuf *err);
    /* end of ABI v1 and v2 */
} XlpPatchVTable;

/* kind XLP_KIND_EXTRACTOR: latents [n_sources, n_layers, d] -> out [n_layers, d], f32. */
typedef struct XlpExtractVTable {
    XlpStatus (*combine)(void *instance, const XlpTensorView *latents,
                         const XlpTensorViewMut *out, XlpErrorBuf *err);
    /* end of ABI v1 and v2 */
} XlpExtractVTable;

/* kind XLP_KIND_METRIC: probs [batch, vocab] and a token-id set -> out [batch], f32. */
typedef struct XlpMetricVTable {
    XlpStatus (*compute)(void *instance, const XlpTensorView *probs, const uint32_t *token_ids,
                         size_t n_ids, const XlpTensorViewMut *out, XlpErrorBuf *err);
    /* end of ABI v1 and v2 */
} XlpMetricVTable;

/* Grows at its end. The host zeroes it and sets struct_size to its sizeof before calling
 * info(); the plugin writes at most struct_size bytes and sets struct_size to the number it
 * wrote (at least up to has_sublayer_outputs). */
typedef struct XlpModelInfo {
    uint32_t struct_size;
    uint32_t n_layers;
    uint32_t d_model;
    uint32_t n_kv_heads;
    uint32_t head_dim;
    uint32_t vocab;
    uint32_t has_sublayer_outputs;
    /* end of ABI v2 */
} XlpModelInfo;

typedef struct XlpLayerIo {
    XlpTensorView hidden_in;         /* f32 [batch, seq, d] */
    XlpTensorView position_ids;      /* i64 [batch, seq] */
    XlpTensorView attention_mask;    /* i64 [batch, past + seq], 0 = left padding */
    XlpTensorView past_key;          /* f32 [batch, kv_heads, past, head_dim] */
    XlpTensorView past_value;        /* f32 [batch, kv_heads, past, head_dim] */
    XlpTensorViewMut hidden_out;     /* f32 [batch, seq, d] */
    XlpTensorViewMut present_key;    /* f32 [batch, kv_heads, past + seq, head_dim] */
    XlpTensorViewMut present_value;  /* f32 [batch, kv_heads, past + seq, head_dim] */
    XlpTensorViewMut attn_out;       /* f32 [batch, seq, d] or data == NULL */
    XlpTensorViewMut mlp_out;        /* f32 [batch, seq, d] or data == NULL */
} XlpLayerIo;

/* kind XLP_KIND_BACKEND: one instance is called from one thread at a time. */
typedef struct XlpBackendVTable {
    XlpStatus (*info)(void *instance, XlpModelInfo *out, XlpErrorBuf *err);
    XlpStatus (*embed)(void *instance, const XlpTensorView *ids, const XlpTensorViewMut *hidden,
                       XlpErrorBuf *err);
    XlpStatus (*layer)(void *instance, uint32_t index, const XlpLayerIo *io, XlpErrorBuf *err);
    XlpStatus (*head)(void *instance, const XlpTensorView *hidden, const XlpTensorViewMut *logits,
                      XlpErrorBuf *err);
    /* end of ABI v1 and v2 */
} XlpBackendVTable;

#endif /* XLPATCH_PLUGIN_H */
