/* libFuzzer entry for the HTTP/1.1-head to HTTP/2-fields translation (src/proxy/heads.c,
 * gt_proxy_h2_request_fields): for any bytes, either 0 fields, or four pseudo-fields first
 * and then only lower-case names that are not connection-specific (RFC 9113 §8.2.2), with
 * every value inside the input. */
#include <nghttp2/nghttp2.h>
#include <assert.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "gretel/proxy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int is(const nghttp2_nv *nv, const char *name)
{
    return nv->namelen == strlen(name) && memcmp(nv->name, name, nv->namelen) == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    nghttp2_nv nv[64];
    char lower[4096];
    const char *head = (const char *)data;
    size_t n = gt_proxy_h2_request_fields(head, size, nv, 64, lower, sizeof(lower));
    if (n == 0)
        return 0;
    assert(n >= 4 && is(&nv[0], ":method") && is(&nv[1], ":scheme") && is(&nv[2], ":authority") &&
           is(&nv[3], ":path"));
    for (size_t i = 0; i < n; i++) {
        if (i >= 4) {
            for (size_t k = 0; k < nv[i].namelen; k++)
                assert(!(nv[i].name[k] >= 'A' && nv[i].name[k] <= 'Z'));
            assert(!is(&nv[i], "host") && !is(&nv[i], "connection") &&
                   !is(&nv[i], "transfer-encoding") && !is(&nv[i], "keep-alive") &&
                   !is(&nv[i], "upgrade") && !is(&nv[i], "te") && nv[i].name[0] != ':');
        }
        if (nv[i].valuelen && !(i == 1))
            assert((const char *)nv[i].value >= head &&
                   (const char *)nv[i].value + nv[i].valuelen <= head + size);
    }
    return 0;
}
