/* Shared between the files of src/control only. */
#ifndef GT_CONTROL_INTERNAL_H
#define GT_CONTROL_INTERNAL_H

#include <event2/buffer.h>
#include <pthread.h>
#include <stdint.h>

#include "gretel/control.h"
#include "gretel/store.h"

#define TOP_HOSTS 64

typedef struct {
    char host[128];
    uint64_t count;
} top_host;

#define PAGES 128
#define PAGE_KEYS 4

/* Product keys a page declared (schema.org data seen in its response), by a hash of its
 * URL: the URL itself is not kept. */
typedef struct {
    uint64_t url_hash, stamp;
    unsigned n;
    char keys[PAGE_KEYS][128];
} page_keys;

struct gt_control {
    char token[65]; /* hex */
    pthread_mutex_t lock; /* guards top, pages, clock */
    top_host top[TOP_HOSTS];
    page_keys pages[PAGES];
    uint64_t clock;
};

/* What a page needs besides the request. */
typedef struct {
    gt_control *c;
    gt_shared *sh;
    const gt_snapshot *snap;
    const gt_ctl_request *rq;
    gt_ctl_response *out;
} ctl_ctx;

/* HTML-escaped text into out. */
void ctl_html(struct evbuffer *out, gt_slice s);
void ctl_htmlz(struct evbuffer *out, const char *s);
/* A form or query field, percent-decoded ('+' as space) into out (cap bytes, NUL-ended);
 * false when absent. */
bool ctl_field(gt_slice form, const char *name, char *out, size_t cap);
/* The start and end of every page: head, navigation (active: "overview", "bought",
 * "setup"), main. */
void ctl_page_start(ctl_ctx *x, const char *title, const char *active);
void ctl_page_end(ctl_ctx *x);
/* A page that says what went wrong, with a way back. */
void ctl_error_page(ctl_ctx *x, int status, const char *msg, const char *back);

/* pages.c */
void ctl_overview(ctl_ctx *x);
void ctl_bought(ctl_ctx *x, const char *notice);
void ctl_setup(ctl_ctx *x);
void ctl_mark_confirm(ctl_ctx *x);
void ctl_style(ctl_ctx *x);
void ctl_script(ctl_ctx *x);
/* metrics.c */
void ctl_metrics(ctl_ctx *x);
void ctl_pac(ctl_ctx *x);
void ctl_status(ctl_ctx *x); /* the plain-text status of earlier versions */

/* The product keys a shop page URL names: the shop rules (rules/shops.rules) on the URL,
 * then what the page itself declared when gretel saw it load. Up to cap, each NUL-ended in
 * keys[i]; returns how many. *from_page: how many came from the page. */
size_t ctl_keys_of_url(gt_control *c, const gt_snapshot *snap, gt_slice url,
                       char keys[][GT_STORE_KEY_MAX + 1], size_t cap, size_t *from_page);

#endif
