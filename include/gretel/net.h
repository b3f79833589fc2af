/* The event-loop side of gretel: worker threads with one event_base each, listeners, the
 * per-worker upstream pool, connects (DNS via evdns, `resolve` overrides, parent proxies)
 * and raw tunnels. Owns sockets; knows nothing about rules. What threads share is gt_shared:
 * the config snapshot, counters and the connection count. */
#ifndef GT_NET_H
#define GT_NET_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>

#include "gretel/config.h"
#include "gretel/http1.h"
#include "gretel/log.h"
#include "gretel/rules.h"
#include "gretel/slice.h"

struct event_base;
struct evdns_base;
struct event;
struct gt_stream;
struct evconnlistener;
struct evbuffer;

/* An immutable, refcounted generation of config and ruleset. A request keeps the snapshot
 * it started with; the last release frees it. */
struct gt_abp_set;

typedef struct gt_snapshot {
    atomic_uint refs;
    gt_config *cfg;
    gt_ruleset *rules; /* never NULL once running (an empty ruleset has no rules) */
    struct gt_abp_set *lists; /* the `lists` files compiled (src/lists), or NULL */
    gt_ruleset *shops; /* the rules with the `shops` group on: product keys of shop pages
                          for the control page's "I bought this" (or NULL) */
} gt_snapshot;

/* Takes ownership of cfg, of the reference on rules and of lists (may be NULL); returns a
 * snapshot holding one reference. */
gt_snapshot *gt_snapshot_new(gt_config *cfg, gt_ruleset *rules, struct gt_abp_set *lists);
gt_snapshot *gt_snapshot_ref(gt_snapshot *s);
void gt_snapshot_release(gt_snapshot *s); /* NULL-safe */

/* What a finished request was, for /metrics (gt_counters_decision maps the log's word). */
enum { GT_CTR_PASS, GT_CTR_BLOCK, GT_CTR_REDIRECT, GT_CTR_ALLOW, GT_CTR_REWRITE, GT_CTR_LOCAL,
       GT_CTR_ERROR, GT_CTR_DENY, GT_CTR_TUNNEL, GT_CTR_INTERCEPT, GT_CTR_ABORTED, GT_CTR_OTHER,
       GT_CTR_DECISIONS };
/* Why an origin could not be reached (gt_counters_upstream_error). */
enum { GT_UPERR_DNS, GT_UPERR_REFUSED, GT_UPERR_TIMEOUT, GT_UPERR_TLS, GT_UPERR_OTHER,
       GT_UPERR_KINDS };

/* Process-wide counters, updated with relaxed atomics by workers (reloads: main thread). */
typedef struct {
    atomic_ullong requests, connects, local_responses, upstream_errors, client_errors,
        denied, bytes_to_clients, blocked;
    /* TLS interception */
    atomic_ullong tls_handshakes, tls_client_failures, tls_origin_rejected, certs_minted;
    atomic_uint open_conns;
    atomic_ullong decisions[GT_CTR_DECISIONS];
    atomic_ullong upstream_kind[GT_UPERR_KINDS];
    atomic_ullong reloads_ok, reloads_failed;
    /* requests with a body that body~ rules wanted but did not see (chunked or HTTP/2
     * without Content-Length, larger than body_inspect_max, Expect: 100-continue) */
    atomic_ullong bodies_not_inspected;
} gt_counters;

/* Counts a finished request under its log word ("pass", "block", ...). */
void gt_counters_decision(gt_counters *c, const char *decision);
/* Counts an upstream failure by kind, from its status and reason. */
void gt_counters_upstream_error(gt_counters *c, int status, const char *why);
extern const char *const gt_counters_decision_names[GT_CTR_DECISIONS];
extern const char *const gt_counters_upstream_names[GT_UPERR_KINDS];

typedef struct gt_worker gt_worker;
struct gt_tls;
typedef struct gt_session gt_session;
typedef struct gt_upstream gt_upstream;

typedef struct gt_shared {
    pthread_mutex_t snap_lock;
    gt_snapshot *snap; /* current generation, guarded by snap_lock */
    gt_counters counters;
    atomic_bool stopping;
    uint64_t started_ms;
    unsigned nworkers;
    const gt_psl *psl; /* read-only; outlives every snapshot */
    struct gt_store *store; /* bought products (LMDB, thread-safe reads), or NULL */
    struct gt_store_writer *writer; /* auto-marks of purchases seen, or NULL */
    struct gt_tls *tls; /* local CA, leaf cache and TLS contexts, or NULL without a CA */
    struct gt_control *control; /* gretel's own pages (src/control): token, top hosts */
} gt_shared;

/* Returns the current snapshot with a reference the caller must release. */
gt_snapshot *gt_shared_acquire(gt_shared *sh);

typedef struct gt_tunnel gt_tunnel;
typedef struct gt_h2conn gt_h2conn;
typedef struct gt_h2origin gt_h2origin;
LIST_HEAD(gt_h2_list, gt_h2conn);
LIST_HEAD(gt_h2origin_list, gt_h2origin);
LIST_HEAD(gt_session_list, gt_session);
LIST_HEAD(gt_tunnel_list, gt_tunnel);
TAILQ_HEAD(gt_upstream_lru, gt_upstream);
LIST_HEAD(gt_upstream_bucket, gt_upstream);

#define GT_POOL_BUCKETS 256

/* One worker thread: everything here is touched only by that thread, except `notify`
 * which the main thread activates and `pending` (guarded by `lock`). */
struct gt_worker {
    gt_shared *sh;
    unsigned id;
    pthread_t thread;
    struct event_base *base;
    struct evdns_base *dns;
    struct evconnlistener **listeners;
    size_t nlisteners;
    int *listen_fds;
    gt_snapshot *snap; /* this worker's view of the current generation */
    struct gt_session_list sessions;
    unsigned nsessions;
    struct gt_tunnel_list tunnels;
    unsigned ntunnels;
    struct gt_h2_list h2conns; /* intercepted connections speaking HTTP/2 */
    unsigned nh2;
    struct gt_h2origin_list h2origins; /* shared HTTP/2 sessions to origins (and h1 marks) */
    unsigned next_id;
    /* upstream keep-alive pool: hash by "host:port" plus an LRU across all keys */
    struct gt_upstream_bucket pool[GT_POOL_BUCKETS];
    struct gt_upstream_lru lru;
    unsigned pool_size;
    /* cross-thread messages */
    struct event *notify;
    pthread_mutex_t lock;
    bool pending_reload, pending_stop, pending_force;
    struct event *done_ev; /* main-thread event a worker activates when it has finished */
    bool draining;
    struct event *drain_timer;
    struct event *accept_pause; /* re-enables listeners after an accept failure */
    gt_logbuf logbuf;         /* request log lines, flushed by log_timer */
    struct event *log_timer;
    gt_rules_scratch *scratch; /* rule engine working memory for this thread */
    /* Parsed fields of the request head and of the response head being read, kept here
     * rather than on the stack (GT_MAX_FIELDS_CAP each). Used only for the length of one
     * call that does not re-enter itself (the session rule in ARCHITECTURE.md). */
    gt_http1_header *req_fields, *resp_fields;
    char *url_buf; /* an intercepted request's full URL, while it is decided */
    size_t url_cap;
    gt_decision decision;      /* the decision of the request being dispatched */
};

/* The most header fields any head may have (config max_headers is capped here). */
#define GT_MAX_FIELDS_CAP 1000

/* A worker run on the caller's thread, without listeners: for in-process drivers (the
 * whole-proxy fuzzers) that hand it connections with gt_session_accept and run its
 * event_base themselves. sh->snap must be set. Fini ends every connection it holds. */
int gt_worker_init_detached(gt_worker *w, gt_shared *sh, unsigned id);
void gt_worker_fini_detached(gt_worker *w);

/* The worker's URL buffer, grown to at least n bytes. */
char *gt_worker_url_buf(gt_worker *w, size_t n);

/* --- upstream connections (src/net/upstream.c) --- */

/* A connection to an origin or to the parent proxy, owned by one session or by the pool. */
struct gt_upstream {
    gt_worker *w;
    struct gt_stream *st;
    bool reused;   /* taken from the pool for this request */
    bool via_http_proxy; /* requests go in absolute-form to a parent HTTP proxy */
    bool guarded_loopback; /* reaches this machine by name (loopback_upstream applies) */
    bool h2;       /* TLS with ALPN h2 (only when the caller offered it) */
    char peer[64]; /* address text, for logs and error pages */
    char key[540]; /* pool key */
    unsigned key_hash;
    LIST_ENTRY(gt_upstream) bucket_link;
    TAILQ_ENTRY(gt_upstream) lru_link;
};

typedef struct gt_connect gt_connect;

/* Completion of gt_upstream_connect: on success `up` is a new connection the callee now
 * owns and status is 0; else up is NULL, status is the HTTP status to answer (502 or 504)
 * and why a short static-or-copied message valid only during the call. */
typedef void (*gt_connect_cb)(void *arg, gt_upstream *up, int status, const char *why);

/* Starts a non-blocking connect to host:port from worker w, honouring cfg's `resolve`
 * overrides and `forward` parent proxy. With deny_loopback, a name that resolves to this
 * machine (gt_sockaddr_is_loopback) fails with 403; overrides and parents are exempt. For a tunnel (CONNECT), a parent HTTP proxy gets a
 * CONNECT of its own and the callback fires after its 200. The whole attempt (DNS, TCP,
 * parent handshake) is bounded by connect_timeout. The callback is called exactly once,
 * never from within this call; *handle lets the caller cancel before that. */
void gt_upstream_connect(gt_worker *w, const gt_config *cfg, gt_slice host, uint16_t port,
                         bool tunnel, bool deny_loopback, gt_connect_cb cb, void *arg,
                         gt_connect **handle);
/* Like gt_upstream_connect, then TLS towards host:port with SNI and verification for sni
 * (w->sh->tls must be set); ALPN offers h2 too when offer_h2 (then up->h2 says which). A certificate that fails verification reports
 * GT_STATUS_CERT_FAILED and why ("...: certificate has expired (...)"). */
void gt_upstream_connect_tls(gt_worker *w, const gt_config *cfg, gt_slice host, uint16_t port,
                             const char *sni, bool offer_h2, bool deny_loopback,
                             gt_connect_cb cb, void *arg, gt_connect **handle);
/* Internal status of a connect whose origin certificate failed verification; clients see
 * 502 (the number is Cloudflare's "invalid SSL certificate"). */
#define GT_STATUS_CERT_FAILED 526
/* Cancels a pending connect: its callback will not run. NULL-safe. */
void gt_upstream_connect_cancel(gt_connect *c);

/* The pool key for a plain-HTTP request to host:port under cfg (a parent proxy shares one). */
void gt_upstream_key(const gt_config *cfg, gt_slice host, uint16_t port, char *key, size_t len);
/* The pool key of a verified TLS connection to host:port for the name sni. */
void gt_upstream_key_tls(gt_slice host, uint16_t port, const char *sni, char *key, size_t len);
/* Takes an idle connection for key from w's pool, or NULL. */
gt_upstream *gt_pool_take(gt_worker *w, const char *key);
/* Returns a connection to w's pool (or frees it when the pool is full or disabled). The
 * caller must have drained its input and finished its request. */
void gt_pool_put(gt_worker *w, gt_upstream *up, const gt_config *cfg);
/* Frees every idle pooled connection of w. */
void gt_pool_clear(gt_worker *w);
void gt_upstream_free(gt_upstream *up); /* NULL-safe; closes the socket */

/* --- workers and the server (src/net/server.c) --- */

/* Reads a new config, ruleset and lists (on SIGHUP, or when a rule file changed); returns 0
 * with all three (lists may be NULL: none configured), or an error with diags and none. */
typedef int (*gt_reload_fn)(void *arg, const gt_psl *psl, gt_config **out, gt_ruleset **rules,
                            struct gt_abp_set **lists, gt_ruleset **shops, gt_diags *diags);

/* Runs the proxy until SIGTERM/SIGINT: binds cfg's listeners (errors are printed and the
 * function returns 2), starts the workers, handles SIGHUP by calling reload and swapping the
 * snapshot when it succeeds. Takes ownership of cfg, rules, lists and shops (the rules with
 * the `shops` group on, or NULL); borrows control. Returns the process exit code. */
struct gt_control;
int gt_server_run(gt_config *cfg, gt_ruleset *rules, struct gt_abp_set *lists, gt_ruleset *shops,
                  struct gt_control *control, const gt_psl *psl,
                  struct gt_store *store, struct gt_tls *tls, gt_reload_fn reload,
                  void *reload_arg);

/* Called by a worker when its session count drops, to finish a drain. */
void gt_worker_session_gone(gt_worker *w);

/* Runs the rules on one request (src/proxy/decide.c): type and party from its head
 * (Sec-Fetch-*, Accept, Referer/Origin), products checked against the store, purchases
 * queued for auto-marking, log rules logged. *type gets the request type. */
void gt_proxy_decide(gt_worker *w, const gt_snapshot *snap, const gt_http1_request *req,
                     gt_slice host, const gt_http1_uri *uri, gt_slice body,
                     unsigned conn_id, gt_decision *d, gt_reqtype *type);

/* Protocol handler for a freshly accepted client connection (src/proxy/session.c). */
void gt_session_accept(gt_worker *w, int fd, const struct sockaddr *sa, int salen);
/* Asks every session of w to finish its current request and close. */
void gt_sessions_drain(gt_worker *w);
/* Destroys every session of w at once (end of drain time, or exit). */
void gt_sessions_destroy_all(gt_worker *w);

/* An intercepted client connection that negotiated h2, as the session hands it over. */
typedef struct {
    char client[64];
    bool client_is_loopback;
    char sni[256];       /* the name the leaf was minted for */
    char mitm_host[256]; /* the CONNECT target */
    uint16_t mitm_port;
    unsigned id;
} gt_h2_peer;

/* Serves HTTP/2 on an intercepted client connection (src/proxy/h2.c). Takes ownership of cs
 * (TLS done, ALPN h2) and of the client's connection slot. */
void gt_h2_start(gt_worker *w, struct gt_stream *cs, const gt_h2_peer *peer);
/* GOAWAY to every HTTP/2 connection of w (on shutdown and on reload); each closes when its
 * open streams are done. */
void gt_h2_drain(gt_worker *w);
void gt_h2_destroy_all(gt_worker *w);

/* Raw bidirectional relay between two connected streams (src/net/tunnel.c). Takes
 * ownership of both (their callbacks are replaced); logs one line when it ends, frees both
 * and gives back the client's connection slot. `label` is "client=... host=..." for logs. */
void gt_tunnel_start(gt_worker *w, struct gt_stream *client, struct gt_stream *origin,
                     unsigned idle_ms, const char *label, uint64_t t0_ms);
/* Shortens every tunnel's idle timeout so that a drain finishes once they go quiet. */
void gt_tunnels_drain(gt_worker *w);
void gt_tunnels_destroy_all(gt_worker *w);

#endif
