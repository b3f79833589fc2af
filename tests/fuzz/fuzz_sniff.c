/* libFuzzer entry for the page product sniffer (src/products/sniff.c): any body, fed in
 * pieces, as plain, chunked or gzip-declared HTML, yields keys that are canonical and
 * NUL-ended, without reading out of bounds. Input: one mode byte, then the body. */
#include <assert.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "gretel/products.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t mode = data[0];
    data++;
    size--;
    static const char *const enc[] = {"", "gzip", "deflate", "identity"};
    gt_sniff *s = gt_sniff_new(GT_S("text/html; charset=utf-8"), gt_slice_cstr(enc[mode & 3]),
                               (mode & 4) != 0);
    assert(s);
    size_t step = (size_t)(mode >> 3) + 1;
    for (size_t i = 0; i < size; i += step)
        gt_sniff_feed(s, data + i, size - i < step ? size - i : step);
    char keys[8][GT_SNIFF_KEY_MAX];
    size_t n = gt_sniff_keys(s, GT_S("shop.example"), keys, 8);
    assert(n <= 8);
    for (size_t i = 0; i < n; i++)
        assert(strlen(keys[i]) < GT_SNIFF_KEY_MAX && strchr(keys[i], ':'));
    gt_sniff_free(s);
    return 0;
}
