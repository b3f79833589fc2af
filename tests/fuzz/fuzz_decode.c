/* libFuzzer entry for the product id decoders (src/rules/decode.c): percent (once and
 * until stable), form, JSON, split with escapes, base64url, unquote. The first byte picks a
 * pipeline of up to four steps; every output value must lie inside the work buffer and no
 * step may grow the data past the documented bound. */
#include <assert.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/rules/decode.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2 || size > 16384)
        return 0;
    static const uint8_t kinds[] = {D_PERCENT, D_PERCENT_ALL, D_FORM,  D_JSON,
                                    D_SPLIT,   D_BASE64,      D_UNQUOTE, D_LOWER};
    rule_decoder decs[4];
    size_t nd = (size_t)(data[0] & 3) + 1;
    for (size_t i = 0; i < nd; i++) {
        decs[i].kind = kinds[(data[1] >> (i * 2)) & 7 ^ (i & 1)];
        decs[i].arg = (char *)(i & 1 ? "%2C" : ",");
    }
    gt_slice in = gt_slice_make((const char *)data + 2, size - 2);
    size_t cap = (nd + 1) * in.len + 16;
    char *buf = malloc(cap);
    gt_slice vals[GT_DECODE_MAX_VALUES];
    size_t n = gt_rules_decode_run(decs, nd, in, buf, cap, vals, GT_DECODE_MAX_VALUES);
    assert(n <= GT_DECODE_MAX_VALUES);
    for (size_t i = 0; i < n; i++) {
        assert(vals[i].len > 0);
        bool in_buf = vals[i].p >= buf && vals[i].p + vals[i].len <= buf + cap;
        bool in_input = vals[i].p >= in.p && vals[i].p + vals[i].len <= in.p + in.len;
        assert(in_buf || in_input);
    }
    char *out = malloc(in.len + 1);
    assert(gt_rules_percent_decode(in, out, true) <= in.len);
    size_t b = gt_rules_base64_decode(in, out);
    assert(b == (size_t)-1 || b <= in.len);
    free(out);
    free(buf);
    return 0;
}
