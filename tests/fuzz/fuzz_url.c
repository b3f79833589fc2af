/* libFuzzer entry for URL and request-context parsing (src/rules/context.c): the host of an
 * absolute URL must lie inside the input, and type/party derivation must accept any header
 * bytes without crashing. The input is split at NUL bytes into the view's fields. */
#include <assert.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "gretel/rules.h"
#include "gretel/util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static gt_psl *psl; /* loaded once per fuzzing process, read-only afterwards */
    if (!psl)
        psl = gt_rules_psl_load();
    const char *p = (const char *)data;
    gt_slice h = gt_rules_url_host(gt_slice_make(p, size));
    if (h.len)
        assert(h.p >= p && h.p + h.len <= p + size);
    gt_slice f[8] = {{0}};
    size_t nf = 0, start = 0;
    for (size_t i = 0; i <= size && nf < 8; i++)
        if (i == size || data[i] == 0) {
            f[nf++] = gt_slice_make(p + start, i - start);
            start = i + 1;
        }
    gt_reqview v = {.method = f[0], .host = f[1], .path = f[2], .sec_fetch_dest = f[3],
                    .sec_fetch_site = f[4], .accept = f[5], .referer = f[6], .origin = f[7]};
    gt_reqtype t = gt_rules_type_of(&v);
    assert(t >= 0 && t < GT_TYPE_COUNT);
    gt_party party = gt_rules_party_of(psl, &v);
    assert(party == GT_PARTY_UNKNOWN || party == GT_PARTY_FIRST || party == GT_PARTY_THIRD);
    char out[256];
    size_t n = gt_rules_registrable_domain(psl, f[1], out, sizeof(out));
    assert(n < sizeof(out));
    return 0;
}
