/* libFuzzer: the whole proxy inside TLS interception. The driver sends CONNECT, completes a
 * real TLS handshake with gretel's minted leaf (ALPN h2, or http/1.1 when byte 0 has bit 7
 * set), sends the HTTP/2 preface, then the input's client bytes (HTTP/2 frames, or
 * HTTP/1.1 requests) over it; the origin is a scripted TLS server that gretel verifies
 * against the driver's test CA and that answers with the input's origin bytes, choosing h2
 * (HTTP/2 frames: SETTINGS, HEADERS, DATA, RST_STREAM, GOAWAY) or http/1.1 by bit 6.
 * tests/fuzz/proxy_driver.h gives the input format. */
#include <stddef.h>
#include <stdint.h>

#include "proxy_driver.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const fp_mode mode = {.h2_client = true, .tls_origin = true};
    return fp_run(&mode, data, size);
}
