/* The server: binds listeners, starts one worker thread per core (each with its own
 * event_base, evdns base, listener sockets with SO_REUSEPORT and upstream pool), and runs
 * the main thread's signal loop (SIGHUP reload, SIGTERM/SIGINT drain). Owns gt_shared and
 * the workers; the main thread talks to workers only through their `notify` event. */
#include <errno.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <event2/thread.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "gretel/log.h"
#include "gretel/net.h"
#include "gretel/tls.h"
#include "gretel/lists.h"
#include "gretel/store.h"
#include "gretel/util.h"

gt_snapshot *gt_snapshot_new(gt_config *cfg, gt_ruleset *rules, struct gt_abp_set *lists)
{
    gt_snapshot *s = gt_xcalloc(1, sizeof(*s));
    atomic_init(&s->refs, 1);
    s->cfg = cfg;
    s->rules = rules;
    s->lists = lists;
    return s;
}

const char *const gt_counters_decision_names[GT_CTR_DECISIONS] = {
    "pass",   "block",     "redirect", "allow",   "rewrite", "local",
    "error",  "deny",      "tunnel",   "intercept", "aborted", "other"};
const char *const gt_counters_upstream_names[GT_UPERR_KINDS] = {"dns", "refused", "timeout",
                                                                 "tls", "other"};

void gt_counters_decision(gt_counters *c, const char *decision)
{
    int k = GT_CTR_OTHER;
    for (int i = 0; decision && i < GT_CTR_OTHER; i++)
        if (strcmp(decision, gt_counters_decision_names[i]) == 0) {
            k = i;
            break;
        }
    atomic_fetch_add_explicit(&c->decisions[k], 1, memory_order_relaxed);
}

void gt_counters_upstream_error(gt_counters *c, int status, const char *why)
{
    int k = GT_UPERR_OTHER;
    why = why ? why : "";
    if (status == 504 || strstr(why, "timed out") || strstr(why, "timeout"))
        k = GT_UPERR_TIMEOUT;
    else if (status == GT_STATUS_CERT_FAILED || strstr(why, "TLS") || strstr(why, "certificate"))
        k = GT_UPERR_TLS;
    else if (strstr(why, "resolv") || strstr(why, "DNS"))
        k = GT_UPERR_DNS;
    else if (strstr(why, "refused"))
        k = GT_UPERR_REFUSED;
    atomic_fetch_add_explicit(&c->upstream_errors, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&c->upstream_kind[k], 1, memory_order_relaxed);
}

gt_snapshot *gt_snapshot_ref(gt_snapshot *s)
{
    atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
    return s;
}

void gt_snapshot_release(gt_snapshot *s)
{
    if (!s)
        return;
    if (atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) == 1) {
        gt_config_free(s->cfg);
        gt_ruleset_release(s->rules);
        gt_abp_set_free(s->lists);
        gt_ruleset_release(s->shops);
        free(s);
    }
}

gt_snapshot *gt_shared_acquire(gt_shared *sh)
{
    /* A mutex rather than a lock-free pointer: taken once per reload per worker, never per
     * request, and it makes load-then-increment race-free without hazard pointers. */
    pthread_mutex_lock(&sh->snap_lock);
    gt_snapshot *s = gt_snapshot_ref(sh->snap);
    pthread_mutex_unlock(&sh->snap_lock);
    return s;
}

typedef struct {
    gt_shared sh;
    gt_worker *workers;
    unsigned nworkers;
    struct event_base *base;
    gt_reload_fn reload;
    void *reload_arg;
    uint64_t rules_stamp; /* fingerprint of the rule and list files the current
                             generation came from (files_stamp) */
    int exit_code;
    unsigned workers_done;
} server;

/* --- worker side --- */

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
                      int salen, void *arg)
{
    (void)l;
    gt_worker *w = arg;
    gt_session_accept(w, fd, sa, salen);
}

static void on_accept_resume(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    gt_worker *w = arg;
    if (w->draining || !w->listeners)
        return;
    for (size_t i = 0; i < w->nlisteners; i++)
        if (w->listeners[i])
            evconnlistener_enable(w->listeners[i]);
}

static void on_accept_error(struct evconnlistener *l, void *arg)
{
    (void)l;
    gt_worker *w = arg;
    int e = EVUTIL_SOCKET_ERROR();
    /* EMFILE/ENFILE/ENOBUFS: the pending connection stays in the kernel queue and would
     * wake us again at once. Pause accepting for 100 ms instead of spinning (and logging)
     * until descriptors free up. */
    gt_log(GT_LOG_WARN, "worker=%u accept failed: %s; pausing accepts for 100ms", w->id,
           strerror(e));
    for (size_t i = 0; i < w->nlisteners; i++)
        if (w->listeners[i])
            evconnlistener_disable(w->listeners[i]);
    struct timeval tv = {0, 100000};
    evtimer_add(w->accept_pause, &tv);
}

/* Raises the descriptor limit to the hard limit: each proxied connection needs two, and
 * distributions start processes at 1024. Returns the limit now in force. */
static unsigned long raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return 1024;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        getrlimit(RLIMIT_NOFILE, &rl);
    }
    return (unsigned long)rl.rlim_cur;
}

static void close_listeners(gt_worker *w)
{
    if (!w->listeners)
        return;
    for (size_t i = 0; i < w->nlisteners; i++) {
        if (w->listeners[i])
            evconnlistener_free(w->listeners[i]);
        w->listeners[i] = NULL;
    }
}

void gt_worker_session_gone(gt_worker *w)
{
    if (w->draining && w->nsessions == 0 && w->ntunnels == 0 && w->nh2 == 0)
        event_base_loopexit(w->base, NULL);
}

static void on_drain_timeout(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    gt_worker *w = arg;
    gt_log(GT_LOG_WARN, "worker=%u drain time over: closing %u connections and %u tunnels",
           w->id, w->nsessions, w->ntunnels);
    event_base_loopexit(w->base, NULL);
}

static void on_notify(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    gt_worker *w = arg;
    pthread_mutex_lock(&w->lock);
    bool reload = w->pending_reload, stop = w->pending_stop, force = w->pending_force;
    w->pending_reload = w->pending_stop = w->pending_force = false;
    pthread_mutex_unlock(&w->lock);
    if (reload) {
        gt_snapshot *old = w->snap;
        w->snap = gt_shared_acquire(w->sh);
        gt_snapshot_release(old);
        /* New streams already use the new rules; GOAWAY makes HTTP/2 clients reconnect, so
         * that new SETTINGS (h2_* keys) and http2 = off apply to them too. Open streams
         * finish. */
        gt_h2_drain(w);
    }
    if (stop && !w->draining) {
        w->draining = true;
        close_listeners(w);
        gt_pool_clear(w);
        gt_sessions_drain(w);
        gt_tunnels_drain(w);
        gt_h2_drain(w);
        unsigned ms = w->snap->cfg->drain_timeout_ms;
        struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
        w->drain_timer = evtimer_new(w->base, on_drain_timeout, w);
        evtimer_add(w->drain_timer, &tv);
        gt_worker_session_gone(w);
    }
    if (force)
        event_base_loopexit(w->base, NULL);
}

char *gt_worker_url_buf(gt_worker *w, size_t n)
{
    if (n > w->url_cap) {
        w->url_cap = n < 4096 ? 4096 : n;
        w->url_buf = gt_xrealloc(w->url_buf, w->url_cap);
    }
    return w->url_buf;
}

static void on_log_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    gt_worker *w = arg;
    gt_logbuf_flush(&w->logbuf);
}

static void *worker_main(void *arg)
{
    gt_worker *w = arg;
    event_base_dispatch(w->base);
    gt_logbuf_flush(&w->logbuf);
    /* Whatever is left after the drain is closed now, so the process exits clean. */
    gt_sessions_destroy_all(w);
    gt_tunnels_destroy_all(w);
    gt_h2_destroy_all(w);
    gt_pool_clear(w);
    gt_logbuf_flush(&w->logbuf);
    event_active(w->done_ev, EV_READ, 0); /* tell the main thread */
    return NULL;
}

/* Everything of a worker but its listeners and thread. */
static int worker_core_init(gt_worker *w, gt_shared *sh, unsigned id, const gt_config *cfg)
{
    w->sh = sh;
    w->id = id;
    LIST_INIT(&w->sessions);
    LIST_INIT(&w->tunnels);
    LIST_INIT(&w->h2conns);
    LIST_INIT(&w->h2origins);
    TAILQ_INIT(&w->lru);
    for (size_t i = 0; i < GT_POOL_BUCKETS; i++)
        LIST_INIT(&w->pool[i]);
    w->base = event_base_new();
    if (!w->base)
        return GT_EIO;
    w->snap = gt_shared_acquire(sh);
    w->scratch = gt_rules_scratch_new();
    w->req_fields = gt_xcalloc(GT_MAX_FIELDS_CAP, sizeof(*w->req_fields));
    w->resp_fields = gt_xcalloc(GT_MAX_FIELDS_CAP, sizeof(*w->resp_fields));
    w->notify = event_new(w->base, -1, EV_PERSIST, on_notify, w);
    event_add(w->notify, NULL);
    w->accept_pause = evtimer_new(w->base, on_accept_resume, w);
    w->log_timer = event_new(w->base, -1, EV_PERSIST, on_log_timer, w);
    struct timeval log_tv = {0, 100000};
    event_add(w->log_timer, &log_tv);
    /* evdns: either the configured servers or /etc/resolv.conf (and /etc/hosts). */
    if (cfg->dns_servers.n) {
        w->dns = evdns_base_new(w->base, 0);
        for (size_t i = 0; i < cfg->dns_servers.n; i++)
            evdns_base_nameserver_ip_add(w->dns, cfg->dns_servers.v[i]);
        evdns_base_load_hosts(w->dns, NULL);
    } else {
        w->dns = evdns_base_new(w->base, EVDNS_BASE_INITIALIZE_NAMESERVERS |
                                             EVDNS_BASE_DISABLE_WHEN_INACTIVE);
        if (!w->dns)
            w->dns = evdns_base_new(w->base, 0);
    }
    if (!w->dns)
        return GT_EIO;
    evdns_base_set_option(w->dns, "timeout:", "2");
    evdns_base_set_option(w->dns, "attempts:", "2");
    /* 0x20 case randomisation breaks some home-router resolvers; the proxy gains little
     * from it since origins are verified by TLS anyway. */
    evdns_base_set_option(w->dns, "randomize-case:", "0");
    return GT_OK;
}

static int worker_init(gt_worker *w, server *s, unsigned id, const gt_config *cfg)
{
    int rv = worker_core_init(w, &s->sh, id, cfg);
    if (rv < 0)
        return rv;
    w->listeners = gt_xcalloc(cfg->nlisten, sizeof(*w->listeners));
    w->nlisteners = cfg->nlisten;
    for (size_t i = 0; i < cfg->nlisten; i++) {
        w->listeners[i] = evconnlistener_new(w->base, on_accept, w,
                                             LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, -1,
                                             w->listen_fds[i]);
        if (!w->listeners[i])
            return GT_EIO;
        w->listen_fds[i] = -1; /* the listener owns it now */
        evconnlistener_set_error_cb(w->listeners[i], on_accept_error);
    }
    return GT_OK;
}

static void worker_fini(gt_worker *w)
{
    close_listeners(w);
    gt_rules_scratch_free(w->scratch);
    w->scratch = NULL;
    gt_free(&w->req_fields);
    gt_free(&w->resp_fields);
    gt_free(&w->url_buf);
    gt_free(&w->listeners);
    if (w->listen_fds) {
        for (size_t i = 0; i < w->nlisteners; i++)
            if (w->listen_fds[i] >= 0)
                close(w->listen_fds[i]);
        gt_free(&w->listen_fds);
    }
    if (w->dns)
        evdns_base_free(w->dns, 0);
    if (w->notify)
        event_free(w->notify);
    if (w->drain_timer)
        event_free(w->drain_timer);
    if (w->done_ev)
        event_free(w->done_ev);
    if (w->log_timer)
        event_free(w->log_timer);
    if (w->accept_pause)
        event_free(w->accept_pause);
    gt_snapshot_release(w->snap);
    w->snap = NULL;
    if (w->base)
        event_base_free(w->base);
    pthread_mutex_destroy(&w->lock);
}

/* --- main thread --- */

int gt_worker_init_detached(gt_worker *w, gt_shared *sh, unsigned id)
{
    memset(w, 0, sizeof(*w));
    pthread_mutex_init(&w->lock, NULL);
    gt_snapshot *snap = gt_shared_acquire(sh);
    int rv = worker_core_init(w, sh, id, snap->cfg);
    gt_snapshot_release(snap);
    return rv;
}

void gt_worker_fini_detached(gt_worker *w)
{
    gt_sessions_destroy_all(w);
    gt_tunnels_destroy_all(w);
    gt_h2_destroy_all(w);
    gt_pool_clear(w);
    gt_logbuf_flush(&w->logbuf);
    worker_fini(w);
}

static int open_listener(const gt_sockaddr *a, int *fd_out)
{
    int fd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    /* One socket per worker on the same address: the kernel spreads connections across
     * them, so workers never contend on a shared accept queue. */
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0)
        goto fail;
    if (a->ss.ss_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    if (bind(fd, (const struct sockaddr *)&a->ss, a->len) < 0)
        goto fail;
    if (listen(fd, 1024) < 0)
        goto fail;
    *fd_out = fd;
    return 0;
fail:;
    int e = errno;
    close(fd);
    return -e;
}

static void on_worker_done(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    server *s = arg;
    /* the main loop keeps handling signals until every worker has drained */
    if (++s->workers_done == s->nworkers)
        event_base_loopexit(s->base, NULL);
}

static void notify_all(server *s, bool reload, bool stop, bool force)
{
    for (unsigned i = 0; i < s->nworkers; i++) {
        gt_worker *w = &s->workers[i];
        pthread_mutex_lock(&w->lock);
        w->pending_reload |= reload;
        w->pending_stop |= stop;
        w->pending_force |= force;
        pthread_mutex_unlock(&w->lock);
        event_active(w->notify, EV_READ, 0);
    }
}

/* The rule files' and the list files' fingerprints together: an edit of either reloads. */
static uint64_t files_stamp(const gt_config *cfg, const gt_ruleset *rules,
                            const struct gt_abp_set *lists)
{
    uint64_t r = gt_ruleset_stamp(rules);
    uint64_t l = gt_abp_set_stamp(lists, (const char *const *)cfg->lists.v, cfg->lists.n);
    return r ^ (l * 0x9e3779b97f4a7c15ull + (r << 6) + (r >> 2));
}

/* Builds a new generation on the main thread, which owns no connections: workers keep
 * serving on the old snapshot meanwhile and switch between two requests. */
static void do_reload(server *s, const char *why)
{
    gt_config *cfg = NULL;
    gt_ruleset *rules = NULL;
    struct gt_abp_set *lists = NULL;
    gt_ruleset *shops = NULL;
    gt_diags d;
    gt_diags_init(&d);
    uint64_t t0 = gt_now_ms();
    if (s->reload(s->reload_arg, s->sh.psl, &cfg, &rules, &lists, &shops, &d) < 0) {
        atomic_fetch_add_explicit(&s->sh.counters.reloads_failed, 1, memory_order_relaxed);
        for (size_t i = 0; i < d.n; i++)
            gt_log(d.v[i].is_warning ? GT_LOG_WARN : GT_LOG_ERROR, "reload: %s:%u:%u: %s",
                   d.v[i].file, d.v[i].line, d.v[i].col, d.v[i].msg);
        gt_log(GT_LOG_ERROR,
               "reload (%s) failed with %zu errors; keeping the running configuration and rules",
               why, d.errors);
        gt_diags_free(&d);
        /* the files as they are now were tried: the watcher waits for the next edit */
        pthread_mutex_lock(&s->sh.snap_lock);
        s->rules_stamp = files_stamp(s->sh.snap->cfg, s->sh.snap->rules, s->sh.snap->lists);
        pthread_mutex_unlock(&s->sh.snap_lock);
        return;
    }
    for (size_t i = 0; i < d.n; i++)
        gt_log(GT_LOG_WARN, "reload: %s:%u:%u: %s", d.v[i].file, d.v[i].line, d.v[i].col,
               d.v[i].msg);
    gt_diags_free(&d);
    gt_log_set_level((enum gt_log_level)cfg->log_level);
    s->rules_stamp = files_stamp(cfg, rules, lists);
    size_t nrules = gt_ruleset_count(rules);
    gt_snapshot *ns = gt_snapshot_new(cfg, rules, lists);
    ns->shops = shops;
    atomic_fetch_add_explicit(&s->sh.counters.reloads_ok, 1, memory_order_relaxed);
    pthread_mutex_lock(&s->sh.snap_lock);
    gt_snapshot *old = s->sh.snap;
    s->sh.snap = ns;
    pthread_mutex_unlock(&s->sh.snap_lock);
    gt_snapshot_release(old);
    notify_all(s, true, false, false);
    gt_log(GT_LOG_INFO,
           "reload (%s) ok: %zu rules in %llu ms; new configuration in use (listen, workers and "
           "dns_servers changes need a restart)",
           why, nrules, (unsigned long long)(gt_now_ms() - t0));
}

static void on_sighup(evutil_socket_t sig, short what, void *arg)
{
    (void)sig, (void)what;
    do_reload(arg, "SIGHUP");
}

/* Keeps the bought-keys filter in step with the store (src/store): a rebuild only when the
 * store changed, on this thread, never on a worker. */
static void on_store_refresh(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    server *s = arg;
    if (s->sh.store)
        gt_store_refresh(s->sh.store);
    if (s->sh.tls)
        gt_certs_flush(s->sh.tls->certs); /* leaves minted since the last tick, one commit */
}

/* Polls the rule files' fingerprint: inotify would miss files replaced by editors' rename
 * dance and by git checkouts of a directory, and a few stat(2) calls a second cost nothing.
 * A broken edit is reported once, then again only when the files change again. */
static void on_watch(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    server *s = arg;
    if (atomic_load(&s->sh.stopping))
        return;
    pthread_mutex_lock(&s->sh.snap_lock);
    gt_snapshot *cur = gt_snapshot_ref(s->sh.snap);
    pthread_mutex_unlock(&s->sh.snap_lock);
    bool watch = cur->cfg->rules_watch;
    uint64_t stamp = watch ? files_stamp(cur->cfg, cur->rules, cur->lists) : s->rules_stamp;
    gt_snapshot_release(cur);
    if (stamp == s->rules_stamp)
        return;
    s->rules_stamp = stamp;
    do_reload(s, "rule or list file changed");
}

static void on_sigterm(evutil_socket_t sig, short what, void *arg)
{
    (void)what;
    server *s = arg;
    if (atomic_exchange(&s->sh.stopping, true)) {
        gt_log(GT_LOG_WARN, "signal %d again: closing all connections now", (int)sig);
        notify_all(s, false, true, true);
        return;
    }
    gt_log(GT_LOG_INFO, "signal %d: draining connections", (int)sig);
    notify_all(s, false, true, false);
}

int gt_server_run(gt_config *cfg, gt_ruleset *rules, struct gt_abp_set *lists, gt_ruleset *shops,
                  struct gt_control *control, const gt_psl *psl,
                  struct gt_store *store, struct gt_tls *tls, gt_reload_fn reload,
                  void *reload_arg)
{
    server s;
    memset(&s, 0, sizeof(s));
    s.reload = reload;
    s.reload_arg = reload_arg;
    int code = 0;
    struct event *ev_hup = NULL, *ev_term = NULL, *ev_int = NULL, *ev_watch = NULL,
                 *ev_store = NULL;

    evthread_use_pthreads();
    signal(SIGPIPE, SIG_IGN);
    pthread_mutex_init(&s.sh.snap_lock, NULL);
    s.sh.snap = gt_snapshot_new(cfg, rules, lists);
    s.sh.snap->shops = shops;
    s.sh.control = control;
    s.sh.psl = psl;
    s.sh.store = store;
    s.sh.tls = tls;
    s.sh.writer = store ? gt_store_writer_start(store) : NULL;
    s.rules_stamp = files_stamp(cfg, rules, lists);
    s.sh.started_ms = gt_now_ms();
    gt_log_set_level((enum gt_log_level)cfg->log_level);

    unsigned long nofile = raise_nofile();
    if ((unsigned long)cfg->max_connections * 2 + 64 > nofile)
        gt_log(GT_LOG_WARN,
               "max_connections=%u needs about %u descriptors but the limit is %lu; "
               "accepts will pause when it is reached",
               cfg->max_connections, cfg->max_connections * 2 + 64, nofile);
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    s.nworkers = cfg->workers ? cfg->workers : (unsigned)(ncpu > 0 ? ncpu : 1);
    s.sh.nworkers = s.nworkers;
    s.workers = gt_xcalloc(s.nworkers, sizeof(*s.workers));
    for (unsigned i = 0; i < s.nworkers; i++) {
        pthread_mutex_init(&s.workers[i].lock, NULL);
        s.workers[i].listen_fds = gt_xcalloc(cfg->nlisten, sizeof(int));
        s.workers[i].nlisteners = cfg->nlisten;
        for (size_t j = 0; j < cfg->nlisten; j++)
            s.workers[i].listen_fds[j] = -1;
    }
    /* Bind everything before any thread starts, so a busy port is a clean startup error. */
    for (unsigned i = 0; i < s.nworkers; i++)
        for (size_t j = 0; j < cfg->nlisten; j++) {
            int r = open_listener(&cfg->listen[j], &s.workers[i].listen_fds[j]);
            if (r < 0) {
                fprintf(stderr, "gretel: cannot listen on %s: %s\n", cfg->listen[j].text,
                        strerror(-r));
                code = 2;
                goto out;
            }
        }
    s.base = event_base_new();
    for (unsigned i = 0; i < s.nworkers; i++) {
        s.workers[i].done_ev = event_new(s.base, -1, 0, on_worker_done, &s);
        if (worker_init(&s.workers[i], &s, i, cfg) < 0) {
            fprintf(stderr, "gretel: cannot start worker %u\n", i);
            code = 2;
            goto out;
        }
    }
    ev_hup = evsignal_new(s.base, SIGHUP, on_sighup, &s);
    ev_term = evsignal_new(s.base, SIGTERM, on_sigterm, &s);
    ev_int = evsignal_new(s.base, SIGINT, on_sigterm, &s);
    event_add(ev_hup, NULL);
    ev_watch = event_new(s.base, -1, EV_PERSIST, on_watch, &s);
    struct timeval one_s = {1, 0};
    event_add(ev_watch, &one_s);
    if (store || tls) {
        if (store)
            gt_store_refresh(store);
        ev_store = event_new(s.base, -1, EV_PERSIST, on_store_refresh, &s);
        struct timeval tenth = {0, 100000};
        event_add(ev_store, &tenth);
    }
    event_add(ev_term, NULL);
    event_add(ev_int, NULL);
    /* Workers must not receive process signals: block them before creating the threads. */
    sigset_t set, old;
    sigemptyset(&set);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, &old);
    unsigned started = 0;
    for (; started < s.nworkers; started++)
        if (pthread_create(&s.workers[started].thread, NULL, worker_main,
                           &s.workers[started]) != 0)
            break;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (started < s.nworkers) {
        fprintf(stderr, "gretel: cannot start worker threads\n");
        atomic_store(&s.sh.stopping, true);
        notify_all(&s, false, true, true);
        code = 2;
    } else {
        for (size_t j = 0; j < cfg->nlisten; j++)
            gt_log(GT_LOG_INFO, "listening on %s (workers=%u)", cfg->listen[j].text, s.nworkers);
        event_base_dispatch(s.base);
    }
    /* Past this point a late signal must not kill a process that is exiting cleanly. */
    signal(SIGTERM, SIG_IGN);
    signal(SIGINT, SIG_IGN);
    for (unsigned i = 0; i < started; i++)
        pthread_join(s.workers[i].thread, NULL);
    if (code == 0)
        gt_log(GT_LOG_INFO, "stopped");
out:
    if (ev_hup)
        event_free(ev_hup);
    if (ev_watch)
        event_free(ev_watch);
    if (ev_store)
        event_free(ev_store);
    if (ev_term)
        event_free(ev_term);
    if (ev_int)
        event_free(ev_int);
    for (unsigned i = 0; i < s.nworkers; i++)
        worker_fini(&s.workers[i]);
    free(s.workers);
    if (s.base)
        event_base_free(s.base);
    unsigned long dropped = 0;
    unsigned long marked = gt_store_writer_stop(s.sh.writer, &dropped);
    if (marked || dropped)
        gt_log(GT_LOG_INFO, "auto-mark: %lu products recorded this run, %lu dropped (queue full)",
               marked, dropped);
    if (tls) {
        gt_certs_flush(tls->certs);
        gt_certs_stats cs;
        gt_certs_get_stats(tls->certs, &cs);
        gt_log(GT_LOG_INFO,
               "tls: %llu client handshakes, %llu failed, %llu origins rejected; certificates: "
               "%llu minted (%.0f us each), %llu loaded from the cache, %llu memory hits, "
               "%llu stored",
               (unsigned long long)atomic_load(&s.sh.counters.tls_handshakes),
               (unsigned long long)atomic_load(&s.sh.counters.tls_client_failures),
               (unsigned long long)atomic_load(&s.sh.counters.tls_origin_rejected),
               (unsigned long long)cs.minted,
               cs.minted ? (double)cs.mint_us_total / (double)cs.minted : 0.0,
               (unsigned long long)cs.loaded, (unsigned long long)cs.hits,
               (unsigned long long)cs.stored);
    }
    gt_snapshot_release(s.sh.snap);
    pthread_mutex_destroy(&s.sh.snap_lock);
    libevent_global_shutdown();
    return code;
}
