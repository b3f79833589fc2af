/* libFuzzer entry for the lists' compiled cache (src/lists/cache.c), the one binary file
 * gretel reads back: a valid cache of a small list is written once, then each input is
 * XORed over its bytes after the 8-byte magic (header fields and payload alike) and the
 * result is offered to gt_abp_set_load_cached. Whatever it accepts must decide requests
 * without reading out of bounds; what it refuses must fall back to a rebuilt set. */
#include <assert.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gretel/lists.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char list_path[64], cache_path[80], scratch_path[80];
static uint8_t *valid;
static size_t valid_len;

static const char *const urls[][3] = {
    {"https://x.ads.example/a.js?utm_source=1&b=2", "https://news.example/", "script"},
    {"https://cdn.example/banner/9/img.png", "https://site.example/", "image"},
    {"https://site.example/x-ad-unit-1.js", "https://www.imgs.example/", "script"},
    {"https://metrics.example/p?id=1", "", "ping"},
};

static void setup(void)
{
    snprintf(list_path, sizeof(list_path), "/tmp/gretel-fuzzcache-%ld.txt", (long)getpid());
    snprintf(cache_path, sizeof(cache_path), "%s.cache", list_path);
    snprintf(scratch_path, sizeof(scratch_path), "%s.mut", list_path);
    FILE *f = fopen(list_path, "w");
    assert(f);
    fputs("[Adblock Plus 2.0]\n||ads.example^\n@@||ads.example/ok/$image\n"
          "||ads.example/f/$important\n/banner/*/img^$image\n-ad-unit-\n"
          "$image,domain=imgs.example\n/^https?:\\/\\/[a-z]+\\.example\\/p\\?/$ping\n"
          "||ads.example^$removeparam=utm_source\n$removeparam=gclid\n"
          "||metrics.example^$third-party\n",
          f);
    fclose(f);
    const char *files[] = {list_path};
    gt_abp_set *s;
    gt_diags d;
    gt_diags_init(&d);
    gt_abp_set_load(&s, files, 1, &d);
    char err[256];
    assert(gt_abp_set_save(s, cache_path, err, sizeof(err)) == 0);
    gt_abp_set_free(s);
    gt_diags_free(&d);
    f = fopen(cache_path, "rb");
    assert(f);
    fseek(f, 0, SEEK_END);
    valid_len = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    valid = malloc(valid_len);
    assert(fread(valid, 1, valid_len, f) == valid_len);
    fclose(f);
    unlink(cache_path);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!valid)
        setup();
    uint8_t *buf = malloc(valid_len);
    memcpy(buf, valid, valid_len);
    for (size_t i = 0; i < size && 8 + i < valid_len; i++)
        buf[8 + i] ^= data[i];
    /* a torn file too: the input's first byte, when odd, cuts the tail */
    size_t len = valid_len;
    if (size && (data[0] & 1))
        len -= (data[0] >> 1) % 64;
    FILE *f = fopen(scratch_path, "wb");
    assert(f);
    fwrite(buf, 1, len, f);
    fclose(f);
    free(buf);
    const char *files[] = {list_path};
    gt_abp_set *s = NULL;
    gt_diags d;
    gt_diags_init(&d);
    bool hit = false;
    /* the cache path given is the mutated file: a rebuild rewrites it, which is fine */
    gt_abp_set_load_cached(&s, files, 1, scratch_path, &d, &hit);
    for (size_t i = 0; i < sizeof(urls) / sizeof(urls[0]); i++) {
        gt_slice u = gt_slice_cstr(urls[i][0]), src = gt_slice_cstr(urls[i][1]);
        gt_abp_request rq = {.url = u, .host = gt_rules_url_host(u),
                             .source_host = gt_rules_url_host(src), .method = GT_S("GET"),
                             .type = (gt_reqtype)gt_rules_type_parse(gt_slice_cstr(urls[i][2])),
                             .party = GT_PARTY_THIRD};
        (void)gt_abp_set_decide(s, &rq, NULL, NULL);
        gt_rules_request rr = {.method = GT_S("GET"), .scheme = GT_S("https"),
                               .host = rq.host, .path = gt_slice_cstr(strchr(urls[i][0] + 8, '/')),
                               .source = src, .type = rq.type, .party = GT_PARTY_THIRD};
        gt_rules_scratch *sc = gt_rules_scratch_new();
        gt_decision dec;
        gt_rules_decide(NULL, sc, &rr, NULL, NULL, &dec);
        gt_lists_apply(s, &rr, NULL, sc, &dec);
        gt_rules_scratch_free(sc);
    }
    gt_abp_set_free(s);
    gt_diags_free(&d);
    unlink(scratch_path);
    return 0;
}
