/* libFuzzer entry for the ClientHello reader (src/tls/hello.c): any bytes a client sends
 * after CONNECT. Checks that an accepted hello is consistent: the SNI is printable
 * lower-case ASCII, and the records it spans lie inside the input. */
#include <assert.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "gretel/tls.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    gt_client_hello h;
    int rc = gt_tls_parse_client_hello(data, size, &h);
    assert(rc >= GT_HELLO_OK && rc <= GT_HELLO_BAD);
    if (rc == GT_HELLO_OK) {
        assert(h.record_len >= 5 + 4 && h.record_len <= size);
        size_t n = strlen(h.sni);
        assert(h.has_sni == (n > 0));
        for (size_t i = 0; i < n; i++)
            assert(h.sni[i] > 0x20 && h.sni[i] < 0x7f && !(h.sni[i] >= 'A' && h.sni[i] <= 'Z'));
        /* a prefix of an accepted hello is never accepted */
        assert(gt_tls_parse_client_hello(data, h.record_len - 1, &h) == GT_HELLO_INCOMPLETE);
    }
    return 0;
}
