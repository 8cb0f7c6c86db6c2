/*
 * A metric plugin written in C against include/xlpatch_plugin.h: the sum of next-token
 * probabilities over a token-id set, like metric-concept-prob. It shows the ABI is usable
 * from C, and, compiled with the macros below, it is the "bad library" of the loader tests:
 *   XLP_TEST_ABI=n      declare ABI version n
 *   XLP_TEST_KIND=k     declare kind code k
 *   XLP_TEST_NAME="s"   use another plugin name
 *   XLP_TEST_NO_ENTRY   export no entry symbol at all
 *   XLP_TEST_NULL_NAME  put a null name in the header
 *   XLP_TEST_NULL_CREATE     leave the header's `create` NULL
 *   XLP_TEST_NULL_COMPUTE    leave the table's `compute` NULL
 */
#include <stdio.h>

#include "xlpatch_plugin.h"

#ifndef XLP_TEST_ABI
#define XLP_TEST_ABI XLP_ABI_CURRENT
#endif
#ifndef XLP_TEST_KIND
#define XLP_TEST_KIND XLP_KIND_METRIC
#endif
#ifndef XLP_TEST_NAME
#define XLP_TEST_NAME "metric-c-sum"
#endif

/* The NULL variants leave `create` or `compute` unreferenced. */
#define XLP_MAYBE_UNUSED __attribute__((unused))

static int the_instance;

static XlpStatus fail(XlpErrorBuf *err, XlpStatus code, const char *message) {
    if (err && err->ptr && err->cap) {
        snprintf(err->ptr, err->cap, "%s", message);
    }
    return code;
}

XLP_MAYBE_UNUSED static XlpStatus create(const XlpKeyValue *params, size_t n_params, void **out,
                        XlpErrorBuf *err) {
    (void)params;
    if (n_params != 0) {
        return fail(err, XLP_STATUS_INVALID_ARGUMENT, "metric-c-sum takes no parameters");
    }
    *out = &the_instance;
    return XLP_STATUS_OK;
}

static void destroy(void *instance) { (void)instance; }

XLP_MAYBE_UNUSED static XlpStatus compute(void *instance, const XlpTensorView *probs, const uint32_t *token_ids,
                         size_t n_ids, const XlpTensorViewMut *out, XlpErrorBuf *err) {
    (void)instance;
    if (probs->dtype != XLP_DTYPE_F32 || probs->ndim != 2 || out->dtype != XLP_DTYPE_F32 ||
        out->ndim != 1 || out->shape[0] != probs->shape[0]) {
        return fail(err, XLP_STATUS_INVALID_ARGUMENT, "expected f32 probs [batch, vocab], out [batch]");
    }
    size_t batch = probs->shape[0], vocab = probs->shape[1];
    const float *p = (const float *)probs->data;
    float *o = (float *)out->data;
    for (size_t b = 0; b < batch; b++) {
        double sum = 0.0;
        for (size_t i = 0; i < n_ids; i++) {
            if (token_ids[i] >= vocab) {
                return fail(err, XLP_STATUS_INVALID_ARGUMENT, "token id outside the vocabulary");
            }
            sum += p[b * vocab + token_ids[i]];
        }
        o[b] = (float)sum;
    }
    return XLP_STATUS_OK;
}

#ifdef XLP_TEST_NULL_COMPUTE
static const XlpMetricVTable vtable = {NULL};
#else
static const XlpMetricVTable vtable = {compute};
#endif

static const XlpPluginHeader header = {
    XLP_TEST_ABI,
    XLP_TEST_KIND,
#ifdef XLP_TEST_NULL_NAME
    NULL,
#else
    XLP_TEST_NAME,
#endif
    "0.0.1",
    "sum of next-token probabilities over a token-id set, written in C",
#ifdef XLP_TEST_NULL_CREATE
    NULL,
#else
    create,
#endif
    destroy,
    &vtable,
    sizeof vtable,
};

#ifndef XLP_TEST_NO_ENTRY
const XlpPluginHeader *xlpatch_plugin_entry(void) { return &header; }
#else
const XlpPluginHeader *some_other_symbol(void) { return &header; }
#endif
