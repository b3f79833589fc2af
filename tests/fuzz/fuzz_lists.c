/* libFuzzer entry for list lines (src/lists/abp.c): any line parses to a kind without
 * crashing, and a network filter can be matched against a request built from the rest of
 * the input. Input: LINE NUL URL NUL SOURCE. */
#include <assert.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "gretel/lists.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *p = (const char *)data;
    gt_slice f[3] = {{0}};
    size_t nf = 0, start = 0;
    for (size_t i = 0; i <= size && nf < 3; i++)
        if (i == size || data[i] == 0) {
            f[nf++] = gt_slice_make(p + start, i - start);
            start = i + 1;
        }
    gt_abp_filter flt;
    const char *why;
    gt_abp_kind k = gt_abp_parse(f[0], &flt, &why);
    assert(k < GT_ABP_KIND_COUNT);
    if (k == GT_ABP_NETWORK) {
        gt_abp_request rq = {.url = f[1], .host = gt_rules_url_host(f[1]),
                             .source_host = gt_rules_url_host(f[2]),
                             .type = (gt_reqtype)(size % GT_TYPE_COUNT),
                             .party = (gt_party)(size % 3)};
        (void)gt_abp_match(&flt, &rq);
    }
    gt_abp_filter_free(&flt);
    char host[256];
    size_t hl = gt_hosts_line(f[0], host, sizeof(host));
    assert(hl < sizeof(host) && (hl == 0 || strlen(host) == hl));
    return 0;
}
