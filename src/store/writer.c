/* The store's writer thread (see gt_store_writer in store.h): a bounded queue of marks that
 * workers fill without blocking, written in batches of one transaction each. Owns its
 * thread and queue; borrows the store. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gretel/log.h"
#include "gretel/store.h"
#include "gretel/util.h"

#define QUEUE_CAP 1024

struct gt_store_writer {
    gt_store *store;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    gt_store_rec queue[QUEUE_CAP];
    size_t head, count;
    bool stopping;
    unsigned long written, dropped;
};

static void *run(void *arg)
{
    gt_store_writer *w = arg;
    gt_store_rec *batch = gt_xcalloc(QUEUE_CAP, sizeof(*batch));
    pthread_mutex_lock(&w->lock);
    for (;;) {
        while (w->count == 0 && !w->stopping)
            pthread_cond_wait(&w->wake, &w->lock);
        if (w->count == 0 && w->stopping)
            break;
        size_t n = 0;
        while (w->count) {
            batch[n++] = w->queue[w->head];
            w->head = (w->head + 1) % QUEUE_CAP;
            w->count--;
        }
        pthread_mutex_unlock(&w->lock);
        char err[512];
        /* one transaction (one fsync) for everything that queued up meanwhile */
        if (gt_store_mark_all(w->store, batch, n, err, sizeof(err)) < 0)
            gt_log(GT_LOG_WARN, "auto-mark: %zu products not recorded: %s", n, err);
        else
            gt_log(GT_LOG_INFO, "auto-mark: %zu product%s recorded as bought (%s)", n,
                   n == 1 ? "" : "s", batch[0].source);
        pthread_mutex_lock(&w->lock);
        if (n)
            w->written += n;
    }
    pthread_mutex_unlock(&w->lock);
    free(batch);
    return NULL;
}

gt_store_writer *gt_store_writer_start(gt_store *s)
{
    if (!s)
        return NULL;
    gt_store_writer *w = gt_xcalloc(1, sizeof(*w));
    w->store = s;
    pthread_mutex_init(&w->lock, NULL);
    pthread_cond_init(&w->wake, NULL);
    if (pthread_create(&w->thread, NULL, run, w) != 0) {
        pthread_mutex_destroy(&w->lock);
        pthread_cond_destroy(&w->wake);
        free(w);
        return NULL;
    }
    return w;
}

bool gt_store_writer_put(gt_store_writer *w, gt_slice key, gt_slice source)
{
    if (!w || key.len > GT_STORE_KEY_MAX)
        return false;
    pthread_mutex_lock(&w->lock);
    bool ok = w->count < QUEUE_CAP && !w->stopping;
    if (ok) {
        gt_store_rec *r = &w->queue[(w->head + w->count) % QUEUE_CAP];
        memset(r, 0, sizeof(*r));
        memcpy(r->key, key.p, key.len);
        snprintf(r->source, sizeof(r->source), "%.*s", (int)source.len, source.p);
        r->added = (uint64_t)time(NULL);
        w->count++;
        pthread_cond_signal(&w->wake);
    } else {
        w->dropped++;
    }
    pthread_mutex_unlock(&w->lock);
    return ok;
}

unsigned long gt_store_writer_stop(gt_store_writer *w, unsigned long *dropped)
{
    if (!w)
        return 0;
    pthread_mutex_lock(&w->lock);
    w->stopping = true;
    pthread_cond_signal(&w->wake);
    pthread_mutex_unlock(&w->lock);
    pthread_join(w->thread, NULL);
    unsigned long n = w->written;
    if (dropped)
        *dropped = w->dropped;
    pthread_mutex_destroy(&w->lock);
    pthread_cond_destroy(&w->wake);
    free(w);
    return n;
}
