/* The whole proxy under libFuzzer, in the spirit of h2o's fuzz driver: one gretel worker
 * runs in-process on the fuzzer's thread (gt_worker_init_detached), a client connection is
 * handed to it with gt_session_accept over a socketpair, and a scripted origin listens on
 * 127.0.0.1 (every name resolves there, `resolve = *=127.0.0.1:PORT`). Both peers say what
 * the fuzz input says. Shared by fuzz_proxy.c (HTTP/1.1 bytes, CONNECT and anything after)
 * and fuzz_proxy_h2.c (HTTP/2 frames inside an intercepted TLS connection).
 *
 * Input: byte 0 picks the configuration (see fp_variant), then records
 *   [tag][len_hi][len_lo][len bytes]
 * tag & 3: 0 client sends, 1 origin sends (on its newest connection; queued until one is
 * accepted), 2 client half-closes, 3 origin closes its newest connection. The loop runs a
 * few passes after each record, and until quiet at the end. Nothing here leaves 127.0.0.1. */
#ifndef GT_FUZZ_PROXY_DRIVER_H
#define GT_FUZZ_PROXY_DRIVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum {
    FP_MITM = 1,       /* mitm = on (fuzz_proxy; always on in fuzz_proxy_h2) */
    FP_RULES = 2,      /* rules with block, redirect, rewrite, trim-referer, body~ */
    FP_FORWARD = 4,    /* a parent HTTP proxy (the scripted origin) instead of resolve */
    FP_LAN = 8,        /* the client is on another host: loopback_upstream applies */
    FP_HTTP2_OFF = 16, /* http2 = off */
    FP_DEBUG = 32,     /* log_level = debug (full URLs kept per request) */
    FP_VARIANTS = 64,
};

typedef struct {
    bool h2_client;  /* fuzz_proxy_h2: CONNECT + TLS (ALPN h2) + preface by the driver */
    bool tls_origin; /* the origin speaks TLS (verified with the driver's test CA) */
} fp_mode;

int fp_run(const fp_mode *mode, const uint8_t *data, size_t size);

#endif
