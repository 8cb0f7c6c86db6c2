/* Prints the size and field offsets of every ABI struct, as `name value` lines, for the
 * layout test to compare with the Rust definitions. */
#include <stddef.h>
#include <stdio.h>

#include "xlpatch_plugin.h"

#define SIZE(t) printf("sizeof %s %zu\n", #t, sizeof(t))
#define OFF(t, f) printf("offsetof %s.%s %zu\n", #t, #f, offsetof(t, f))

int main(void) {
    SIZE(XlpErrorBuf);
    SIZE(XlpKeyValue);
    SIZE(XlpTensorView);
    OFF(XlpTensorView, shape);
    OFF(XlpTensorView, ndim);
    OFF(XlpTensorView, dtype);
    SIZE(XlpTensorViewMut);
    SIZE(XlpPatchSite);
    SIZE(XlpPluginHeaderPrefix);
    OFF(XlpPluginHeaderPrefix, version);
    SIZE(XlpPluginHeader);
    OFF(XlpPluginHeader, abi_version);
    OFF(XlpPluginHeader, kind);
    OFF(XlpPluginHeader, name);
    OFF(XlpPluginHeader, version);
    OFF(XlpPluginHeader, description);
    OFF(XlpPluginHeader, create);
    OFF(XlpPluginHeader, destroy);
    OFF(XlpPluginHeader, vtable);
    OFF(XlpPluginHeader, vtable_size);
    SIZE(XlpPatchVTable);
    SIZE(XlpExtractVTable);
    SIZE(XlpMetricVTable);
    SIZE(XlpModelInfo);
    OFF(XlpModelInfo, struct_size);
    OFF(XlpModelInfo, n_layers);
    OFF(XlpModelInfo, vocab);
    OFF(XlpModelInfo, has_sublayer_outputs);
    SIZE(XlpLayerIo);
    OFF(XlpLayerIo, position_ids);
    OFF(XlpLayerIo, hidden_out);
    OFF(XlpLayerIo, attn_out);
    OFF(XlpLayerIo, mlp_out);
    SIZE(XlpBackendVTable);
    OFF(XlpBackendVTable, embed);
    OFF(XlpBackendVTable, layer);
    OFF(XlpBackendVTable, head);
    printf("value XLP_ABI_CURRENT %u\n", XLP_ABI_CURRENT);
    printf("value XLP_KIND_METRIC %u\n", XLP_KIND_METRIC);
    printf("value XLP_DTYPE_I64 %u\n", XLP_DTYPE_I64);
    printf("value XLP_STATUS_PANIC %d\n", XLP_STATUS_PANIC);
    return 0;
}
