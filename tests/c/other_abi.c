/*
 * A plugin of another ABI version whose header is laid out differently: a hypothetical v99
 * keeps the frozen prefix (abi_version, kind, name, version) and moves everything else behind
 * a second exported function, as ONNX Runtime's GetApi(version) does. Its header is therefore
 * only the 24-byte prefix, and it is placed at the very end of a readable page, followed by a
 * page that cannot be read: a host that reads one byte of a v2 header past the prefix before
 * checking the version crashes, instead of reading garbage silently.
 */
#define _DEFAULT_SOURCE
#include <stddef.h>
#include <stdint.h>
#include <sys/mman.h>
#include <unistd.h>

#include "xlpatch_plugin.h"

typedef struct V99Header {
    uint32_t abi_version;
    uint32_t kind;
    const char *name;
    const char *version;
} V99Header;

_Static_assert(sizeof(V99Header) == sizeof(XlpPluginHeaderPrefix), "v99 header is the prefix");

/* v99's second export: the rest of its interface. The host under test must never call it. */
const void *xlpatch_plugin_api_v99(uint32_t version) {
    (void)version;
    return NULL;
}

const V99Header *xlpatch_plugin_entry(void) {
    static V99Header *header;
    if (header) {
        return header;
    }
    long page = sysconf(_SC_PAGESIZE);
    unsigned char *pages =
        mmap(NULL, (size_t)page * 2, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (pages == MAP_FAILED) {
        return NULL;
    }
    if (mprotect(pages + page, (size_t)page, PROT_NONE) != 0) {
        return NULL;
    }
    header = (V99Header *)(pages + page - sizeof(V99Header));
    header->abi_version = 99u;
    header->kind = XLP_KIND_METRIC;
    header->name = "metric-abi-v99";
    header->version = "9.9.0";
    return header;
}
