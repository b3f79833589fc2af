/* libFuzzer: the whole proxy fed HTTP/1.1 from a client (pipelined runs, CONNECT and any
 * bytes after it, half-closes) and answered by a scripted origin (heads, chunked and
 * Content-Length bodies, early closes), one in-process worker per input, under every
 * configuration byte 0 picks (mitm, rules with rewrites and body~, a parent proxy, a LAN
 * client under loopback_upstream, http2 off, debug logging). tests/fuzz/proxy_driver.h
 * gives the input format. */
#include <stddef.h>
#include <stdint.h>

#include "proxy_driver.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const fp_mode mode = {.h2_client = false, .tls_origin = false};
    return fp_run(&mode, data, size);
}
