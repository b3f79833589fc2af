/* /metrics (Prometheus text format 0.0.4: process-wide counters, no per-user data — no
 * hosts, URLs or clients), /proxy.pac (and /wpad.dat) and the plain-text /status. */
#include <stdio.h>
#include <string.h>

#include "gretel/lists.h"
#include "gretel/tls.h"
#include "internal.h"

static unsigned long long ld(atomic_ullong *c)
{
    return (unsigned long long)atomic_load_explicit(c, memory_order_relaxed);
}

static void family(struct evbuffer *b, const char *name, const char *type, const char *help)
{
    evbuffer_add_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

void ctl_metrics(ctl_ctx *x)
{
    struct evbuffer *b = x->out->body;
    gt_counters *c = &x->sh->counters;
    x->out->content_type = "text/plain; version=0.0.4; charset=utf-8";
    family(b, "gretel_requests_total", "counter", "Requests finished, by decision.");
    for (int i = 0; i < GT_CTR_DECISIONS; i++)
        evbuffer_add_printf(b, "gretel_requests_total{decision=\"%s\"} %llu\n",
                            gt_counters_decision_names[i], ld(&c->decisions[i]));
    family(b, "gretel_connects_total", "counter", "CONNECT requests accepted.");
    evbuffer_add_printf(b, "gretel_connects_total %llu\n", ld(&c->connects));
    family(b, "gretel_client_errors_total", "counter", "Malformed client requests (4xx).");
    evbuffer_add_printf(b, "gretel_client_errors_total %llu\n", ld(&c->client_errors));
    family(b, "gretel_denied_total", "counter", "Connections refused by allow_clients.");
    evbuffer_add_printf(b, "gretel_denied_total %llu\n", ld(&c->denied));
    family(b, "gretel_upstream_errors_total", "counter",
           "Origins that could not be reached, by kind.");
    for (int i = 0; i < GT_UPERR_KINDS; i++)
        evbuffer_add_printf(b, "gretel_upstream_errors_total{kind=\"%s\"} %llu\n",
                            gt_counters_upstream_names[i], ld(&c->upstream_kind[i]));
    family(b, "gretel_bodies_not_inspected_total", "counter",
           "Request bodies body~ rules did not see (chunked, over body_inspect_max, ...).");
    evbuffer_add_printf(b, "gretel_bodies_not_inspected_total %llu\n",
                        ld(&c->bodies_not_inspected));
    family(b, "gretel_reloads_total", "counter", "Configuration, rule and list reloads.");
    evbuffer_add_printf(b, "gretel_reloads_total{result=\"ok\"} %llu\n", ld(&c->reloads_ok));
    evbuffer_add_printf(b, "gretel_reloads_total{result=\"failed\"} %llu\n",
                        ld(&c->reloads_failed));
    family(b, "gretel_tls_handshakes_total", "counter", "Intercepted TLS handshakes completed.");
    evbuffer_add_printf(b, "gretel_tls_handshakes_total %llu\n", ld(&c->tls_handshakes));
    family(b, "gretel_tls_client_failures_total", "counter",
           "Client TLS handshakes that failed (for example an untrusted CA).");
    evbuffer_add_printf(b, "gretel_tls_client_failures_total %llu\n", ld(&c->tls_client_failures));
    family(b, "gretel_tls_origin_rejected_total", "counter",
           "Origins whose certificate failed verification.");
    evbuffer_add_printf(b, "gretel_tls_origin_rejected_total %llu\n", ld(&c->tls_origin_rejected));
    gt_certs_stats cs = {0};
    if (x->sh->tls)
        gt_certs_get_stats(x->sh->tls->certs, &cs);
    family(b, "gretel_cert_cache_hits_total", "counter",
           "Leaf certificates served from the memory cache.");
    evbuffer_add_printf(b, "gretel_cert_cache_hits_total %llu\n", (unsigned long long)cs.hits);
    family(b, "gretel_cert_cache_loads_total", "counter",
           "Leaf certificates read back from the disk cache.");
    evbuffer_add_printf(b, "gretel_cert_cache_loads_total %llu\n", (unsigned long long)cs.loaded);
    family(b, "gretel_certs_minted_total", "counter", "Leaf certificates minted.");
    evbuffer_add_printf(b, "gretel_certs_minted_total %llu\n", (unsigned long long)cs.minted);
    family(b, "gretel_connections_open", "gauge", "Client connections open now.");
    evbuffer_add_printf(b, "gretel_connections_open %u\n",
                        atomic_load_explicit(&c->open_conns, memory_order_relaxed));
    family(b, "gretel_bytes_to_clients_total", "counter", "Bytes sent to clients.");
    evbuffer_add_printf(b, "gretel_bytes_to_clients_total %llu\n", ld(&c->bytes_to_clients));
    long nb = x->sh->store ? gt_store_count(x->sh->store) : -1;
    if (nb >= 0) {
        family(b, "gretel_bought_products", "gauge", "Products in the bought store.");
        evbuffer_add_printf(b, "gretel_bought_products %ld\n", nb);
    }
    family(b, "gretel_rules", "gauge", "Rules loaded.");
    evbuffer_add_printf(b, "gretel_rules %zu\n", gt_ruleset_count(x->snap->rules));
    family(b, "gretel_list_filters", "gauge", "Network filters loaded from lists.");
    evbuffer_add_printf(b, "gretel_list_filters %zu\n",
                        x->snap->lists ? gt_abp_set_count(x->snap->lists) : 0);
    family(b, "gretel_uptime_seconds", "gauge", "Seconds since start.");
    evbuffer_add_printf(b, "gretel_uptime_seconds %llu\n",
                        (unsigned long long)((gt_now_ms() - x->sh->started_ms) / 1000));
}

/* The PAC file: everything through the address this client reached gretel on, except
 * plain names, loopback and the private and link-local ranges. IP ranges are tested only on
 * IP literals, so the browser never resolves a name just to evaluate the file. No DIRECT
 * fallback: with gretel down, pages fail visibly instead of quietly going unfiltered. */
void ctl_pac(ctl_ctx *x)
{
    x->out->content_type = "application/x-ns-proxy-autoconfig";
    evbuffer_add_printf(
        x->out->body,
        "// gretel %s: proxy auto-configuration\n"
        "function FindProxyForURL(url, host) {\n"
        "  host = host.toLowerCase();\n"
        "  if (isPlainHostName(host) || host === \"localhost\" || dnsDomainIs(host, \".localhost\") ||\n"
        "      dnsDomainIs(host, \".local\") || host === \"::1\" || host === \"[::1]\")\n"
        "    return \"DIRECT\";\n"
        "  if (/^\\d+\\.\\d+\\.\\d+\\.\\d+$/.test(host) &&\n"
        "      (isInNet(host, \"127.0.0.0\", \"255.0.0.0\") || isInNet(host, \"10.0.0.0\", \"255.0.0.0\") ||\n"
        "       isInNet(host, \"172.16.0.0\", \"255.240.0.0\") ||\n"
        "       isInNet(host, \"192.168.0.0\", \"255.255.0.0\") ||\n"
        "       isInNet(host, \"169.254.0.0\", \"255.255.0.0\")))\n"
        "    return \"DIRECT\";\n"
        "  if (/^\\[?(fc|fd|fe8|fe9|fea|feb)[0-9a-f]*:/.test(host))\n"
        "    return \"DIRECT\";\n"
        "  return \"PROXY %s\";\n"
        "}\n",
        GT_VERSION, x->rq->local);
}

void ctl_status(ctl_ctx *x)
{
    gt_shared *sh = x->sh;
    x->out->content_type = "text/plain; charset=utf-8";
    evbuffer_add_printf(x->out->body,
                        "gretel %s\nuptime_s %llu\nworkers %u\nopen_connections %u\n"
                        "requests %llu\nlocal_responses %llu\nupstream_errors %llu\n",
                        GT_VERSION, (unsigned long long)((gt_now_ms() - sh->started_ms) / 1000),
                        sh->nworkers,
                        atomic_load_explicit(&sh->counters.open_conns, memory_order_relaxed),
                        ld(&sh->counters.requests), ld(&sh->counters.local_responses),
                        ld(&sh->counters.upstream_errors));
}
