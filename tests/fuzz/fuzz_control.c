/* libFuzzer entry for gretel's own pages (src/control): any method, target, Host, Origin,
 * Authorization, X-CSRF-Token, Accept and form body reaches gt_control_handle without
 * crashing, answers with a real status, and changes the store only through a request that
 * carries the install's token and gretel's Origin (the token is fixed here, in the dict, so
 * the fuzzer reaches the mark/unmark paths too). Input: the fields NUL-separated in that
 * order. The store is a real LMDB in /dev/shm (tmpfs: its syncs cost nothing). */
#include <assert.h>
#include <event2/buffer.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gretel/control.h"
#include "gretel/store.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define TOKEN "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

static gt_shared sh;
static gt_snapshot snap;
static gt_control *ctl;

static void setup(void)
{
    static char dir[80];
    snprintf(dir, sizeof(dir), "/dev/shm/gretel-fuzzctl-%ld", (long)getpid());
    char path[200];
    snprintf(path, sizeof(path), "mkdir -p %s", dir);
    assert(system(path) == 0);
    snprintf(path, sizeof(path), "%s/control.token", dir);
    FILE *f = fopen(path, "w");
    assert(f);
    fputs(TOKEN, f);
    fclose(f);
    gt_diags d;
    gt_diags_init(&d);
    static const gt_config_override ov[] = {{"admin_password", 14, ""}};
    assert(gt_config_load(&snap.cfg, NULL, ov, 1, &d) == 0);
    gt_psl *psl = gt_rules_psl_load();
    const char *files[] = {"rules/shops.rules"};
    const char *groups[] = {"+shops"};
    gt_rules_source src = {files, 1, groups, 1, false, false};
    if (gt_ruleset_load(&snap.shops, &src, psl, &d) < 0)
        snap.shops = NULL; /* run from elsewhere: no shop rules, the rest still fuzzed */
    gt_rules_source none = {NULL, 0, NULL, 0, false, false};
    assert(gt_ruleset_load(&snap.rules, &none, psl, &d) == 0);
    char err[256];
    gt_store *st = NULL;
    assert(gt_store_open(&st, dir, err, sizeof(err)) == 0);
    sh.store = st;
    sh.psl = psl;
    ctl = gt_control_new(dir);
    sh.control = ctl;
    assert(strcmp(gt_control_token(ctl), TOKEN) == 0);
    gt_diags_free(&d);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!ctl)
        setup();
    gt_slice f[8] = {{0}};
    size_t nf = 0, start = 0;
    for (size_t i = 0; i <= size && nf < 8; i++)
        if (i == size || data[i] == 0) {
            f[nf++] = gt_slice_make((const char *)data + start, i - start);
            start = i + 1;
        }
    gt_slice target = f[1].len ? f[1] : GT_S("/");
    const char *q = memchr(target.p, '?', target.len);
    gt_ctl_request rq = {
        .method = f[0],
        .path = q ? gt_slice_make(target.p, (size_t)(q - target.p)) : target,
        .query = q ? gt_slice_make(q + 1, (size_t)(target.p + target.len - q - 1)) : GT_S(""),
        .host = f[2],
        .origin = f[3],
        .authorization = f[4],
        .csrf_header = f[5],
        .accept = f[6],
        .body = f[7],
        .local = "127.0.0.1:8119",
    };
    long before = gt_store_count(sh.store);
    bool may_change = gt_slice_eq(f[0], GT_S("POST")) &&
                      (memmem(f[7].p ? f[7].p : "", f[7].len, TOKEN, 64) ||
                       gt_slice_eq(f[5], GT_S(TOKEN)));
    gt_ctl_response resp = {.body = evbuffer_new()};
    gt_control_handle(ctl, &sh, &snap, &rq, &resp);
    assert(resp.status >= 200 && resp.status < 600 && resp.content_type);
    assert(strlen(resp.headers) < sizeof(resp.headers));
    if (!may_change)
        assert(gt_store_count(sh.store) == before);
    evbuffer_free(resp.body);
    return 0;
}
