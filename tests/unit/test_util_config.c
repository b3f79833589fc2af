/* Unit tests for src/util/config.c and config_keys.c: defaults, file parsing with
 * FILE:LINE:COL diagnostics, -o override semantics, addresses, CIDRs, resolve lookups. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <cmocka.h>

#include "gretel/config.h"
#include "gretel/util.h"

static char *write_tmp(const char *text)
{
    char *path = strdup("/tmp/gretel-test-conf-XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    return path;
}

static void test_defaults(void **st)
{
    (void)st;
    gt_config *c;
    gt_diags d;
    gt_diags_init(&d);
    setenv("XDG_DATA_HOME", "/xdg", 1);
    assert_int_equal(gt_config_load(&c, NULL, NULL, 0, &d), 0);
    assert_int_equal(c->nlisten, 1);
    assert_string_equal(c->listen[0].text, "127.0.0.1:8119");
    assert_int_equal(c->nallow_clients, 2);
    assert_int_equal(c->nconnect_ports, 1);
    assert_int_equal(c->connect_ports[0], 443);
    assert_false(c->mitm);
    assert_true(c->auto_mark_purchases);
    assert_string_equal(c->store, "/xdg/gretel");
    assert_string_equal(c->ca_dir, "/xdg/gretel/ca");
    assert_int_equal(c->max_header_size, 65536);
    assert_int_equal(c->header_timeout_ms, 10000);
    gt_config_free(c);
    gt_diags_free(&d);
}

static void test_file_and_overrides(void **st)
{
    (void)st;
    char *p = write_tmp("# comment\n"
                        "listen = 127.0.0.1:9000, [::1]:9000\n"
                        "connect_ports = 443\n"
                        "connect_ports = 8443   # inline comment\n"
                        "resolve = *.test=127.0.0.1\n"
                        "idle_timeout = 500ms\n"
                        "forward = http://parent.example:3128\n");
    gt_config_override ov[] = {
        {"connect_ports", 13, "563"}, /* first -o replaces the file's list */
        {"connect_ports", 13, "8080"}, /* later ones add */
        {"resolve", 7, ""},           /* empty clears */
        {"log_level", 9, "debug"},
    };
    gt_config *c;
    gt_diags d;
    gt_diags_init(&d);
    assert_int_equal(gt_config_load(&c, p, ov, 4, &d), 0);
    assert_int_equal(c->nlisten, 2);
    assert_string_equal(c->listen[1].text, "[::1]:9000");
    assert_int_equal(c->nconnect_ports, 2);
    assert_int_equal(c->connect_ports[0], 563);
    assert_int_equal(c->connect_ports[1], 8080);
    assert_int_equal(c->nresolve, 0);
    assert_int_equal(c->idle_timeout_ms, 500);
    assert_int_equal(c->forward_kind, GT_FORWARD_HTTP);
    assert_string_equal(c->forward_host, "parent.example");
    assert_int_equal(c->forward_port, 3128);
    assert_int_equal(c->log_level, 3);
    gt_config_free(c);
    gt_diags_free(&d);
    unlink(p);
    free(p);
}

static void test_file_list_replaces_default(void **st)
{
    (void)st;
    char *p = write_tmp("connect_ports = 8443\n");
    gt_config *c;
    gt_diags d;
    gt_diags_init(&d);
    assert_int_equal(gt_config_load(&c, p, NULL, 0, &d), 0);
    assert_int_equal(c->nconnect_ports, 1);
    assert_int_equal(c->connect_ports[0], 8443);
    gt_config_free(c);
    gt_diags_free(&d);
    unlink(p);
    free(p);
}

static void test_errors_have_positions(void **st)
{
    (void)st;
    char *p = write_tmp("listen = 127.0.0.1:8119\n"
                        "bogus_key = 1\n"
                        "allow_clients = 10.0.0.0/8, 300.1.1.1/8\n"
                        "this line has no equals\n"
                        "workers = lots\n"
                        "[section]\n"
                        "idle_timeout = 5 parsecs\n");
    gt_config *c = (gt_config *)1;
    gt_diags d;
    gt_diags_init(&d);
    assert_int_equal(gt_config_load(&c, p, NULL, 0, &d), GT_EINVAL);
    assert_null(c);
    assert_int_equal(d.errors, 6);
    assert_int_equal(d.v[0].line, 2);
    assert_int_equal(d.v[0].col, 1);
    assert_non_null(strstr(d.v[0].msg, "unknown key 'bogus_key'"));
    assert_int_equal(d.v[1].line, 3);
    assert_int_equal(d.v[1].col, 29); /* the second item */
    assert_int_equal(d.v[2].line, 4);
    assert_int_equal(d.v[3].line, 5);
    assert_int_equal(d.v[3].col, 11);
    assert_int_equal(d.v[4].line, 6);
    assert_int_equal(d.v[5].line, 7);
    for (size_t i = 0; i < d.n; i++)
        assert_string_equal(d.v[i].file, p);
    gt_diags_free(&d);
    unlink(p);
    free(p);
}

static void test_bad_override_and_missing_file(void **st)
{
    (void)st;
    gt_config_override ov[] = {{"listen", 6, "nope"}};
    gt_config *c;
    gt_diags d;
    gt_diags_init(&d);
    assert_int_equal(gt_config_load(&c, NULL, ov, 1, &d), GT_EINVAL);
    assert_string_equal(d.v[0].file, "-o");
    gt_diags_free(&d);
    gt_diags_init(&d);
    assert_true(gt_config_load(&c, "/nonexistent/gretel.conf", NULL, 0, &d) < 0);
    assert_non_null(strstr(d.v[0].msg, "cannot open"));
    gt_diags_free(&d);
    gt_config_override none[] = {{"listen", 6, ""}};
    gt_diags_init(&d);
    assert_int_equal(gt_config_load(&c, NULL, none, 1, &d), GT_EINVAL); /* no listen left */
    gt_diags_free(&d);
}

static void test_cidr(void **st)
{
    (void)st;
    gt_cidr c;
    struct sockaddr_in v4 = {.sin_family = AF_INET};
    struct sockaddr_in6 v6 = {.sin6_family = AF_INET6};
    assert_int_equal(gt_cidr_parse(GT_S("192.168.1.0/24"), &c), 0);
    inet_pton(AF_INET, "192.168.1.77", &v4.sin_addr);
    assert_true(gt_cidr_match(&c, (struct sockaddr *)&v4));
    inet_pton(AF_INET, "192.168.2.1", &v4.sin_addr);
    assert_false(gt_cidr_match(&c, (struct sockaddr *)&v4));
    inet_pton(AF_INET6, "::ffff:192.168.1.9", &v6.sin6_addr);
    assert_true(gt_cidr_match(&c, (struct sockaddr *)&v6)); /* v4-mapped */
    assert_int_equal(gt_cidr_parse(GT_S("fd00::/8"), &c), 0);
    inet_pton(AF_INET6, "fd12::1", &v6.sin6_addr);
    assert_true(gt_cidr_match(&c, (struct sockaddr *)&v6));
    assert_int_equal(gt_cidr_parse(GT_S("10.1.2.3"), &c), 0);
    assert_int_equal(c.prefix, 32);
    assert_int_equal(gt_cidr_parse(GT_S("10.0.0.0/33"), &c), GT_EINVAL);
    assert_int_equal(gt_cidr_parse(GT_S("10.0.0.0/"), &c), GT_EINVAL);
    assert_int_equal(gt_cidr_parse(GT_S("host/8"), &c), GT_EINVAL);
    assert_int_equal(gt_cidr_parse(GT_S("0.0.0.0/0"), &c), 0);
    inet_pton(AF_INET, "8.8.8.8", &v4.sin_addr);
    assert_true(gt_cidr_match(&c, (struct sockaddr *)&v4));
}

static void test_resolve_lookup(void **st)
{
    (void)st;
    gt_config_override ov[] = {
        {"resolve", 7, "*=10.0.0.1"},
        {"resolve", 7, "*.example=10.0.0.2"},
        {"resolve", 7, "*.a.example=10.0.0.3:8080"},
        {"resolve", 7, "exact.a.example=[::1]"},
    };
    gt_config *c;
    gt_diags d;
    gt_diags_init(&d);
    assert_int_equal(gt_config_load(&c, NULL, ov, 4, &d), 0);
    const gt_resolve_rule *r;
    r = gt_config_resolve_lookup(c, GT_S("Exact.A.Example"));
    assert_string_equal(r->addr.text, "[::1]:0");
    r = gt_config_resolve_lookup(c, GT_S("x.a.example"));
    assert_string_equal(r->addr.text, "10.0.0.3:8080");
    r = gt_config_resolve_lookup(c, GT_S("b.example"));
    assert_string_equal(r->addr.text, "10.0.0.2:0");
    r = gt_config_resolve_lookup(c, GT_S("example"));
    assert_string_equal(r->addr.text, "10.0.0.1:0"); /* *.example needs a label */
    r = gt_config_resolve_lookup(c, GT_S("other.org"));
    assert_string_equal(r->addr.text, "10.0.0.1:0");
    gt_config_free(c);
    gt_diags_free(&d);
}

/* Found by fuzz_config: spaces around the name of a resolve override made the address
 * slice run past the end of the value. */
static void test_resolve_with_spaces(void **st)
{
    (void)st;
    char *p = write_tmp("resolve = i      ,,,,:,:,,      4444444444444444444444444444444\n"
                        "resolve =  a.example  =  127.0.0.1 \n");
    gt_config *c;
    gt_diags d;
    gt_diags_init(&d);
    assert_int_equal(gt_config_load(&c, p, NULL, 0, &d), GT_EINVAL);
    gt_diags_free(&d);
    unlink(p);
    free(p);
    p = write_tmp("resolve =  a.example  =  127.0.0.1 \n");
    gt_diags_init(&d);
    assert_int_equal(gt_config_load(&c, p, NULL, 0, &d), 0);
    assert_string_equal(c->resolve[0].name, "a.example");
    assert_string_equal(c->resolve[0].addr.text, "127.0.0.1:0");
    gt_config_free(c);
    gt_diags_free(&d);
    unlink(p);
    free(p);
}

static void test_sockaddr(void **st)
{
    (void)st;
    gt_sockaddr a;
    assert_int_equal(gt_sockaddr_parse(GT_S("0.0.0.0:8119"), false, &a), 0);
    assert_int_equal(gt_sockaddr_parse(GT_S("[::]:1"), false, &a), 0);
    assert_int_equal(gt_sockaddr_parse(GT_S("127.0.0.1"), false, &a), GT_EINVAL);
    assert_int_equal(gt_sockaddr_parse(GT_S("127.0.0.1"), true, &a), 0);
    assert_int_equal(gt_sockaddr_parse(GT_S("127.0.0.1:65536"), false, &a), GT_EINVAL);
    assert_int_equal(gt_sockaddr_parse(GT_S("localhost:80"), false, &a), GT_EINVAL);
    assert_int_equal(gt_sockaddr_parse(GT_S("[::1"), false, &a), GT_EINVAL);
}

static void test_loopback_classifier(void **st)
{
    (void)st;
    const char *yes[] = {"127.0.0.1", "127.255.0.9", "0.0.0.0", "::1", "::", "::ffff:127.0.0.2",
                         "::ffff:0.0.0.0"};
    const char *no[] = {"10.0.0.1", "192.168.1.1", "128.0.0.1", "::2", "fe80::1",
                        "::ffff:10.1.1.1", "2001:db8::1"};
    for (int pass = 0; pass < 2; pass++) {
        const char **v = pass ? no : yes;
        size_t n = pass ? sizeof(no) / sizeof(no[0]) : sizeof(yes) / sizeof(yes[0]);
        for (size_t i = 0; i < n; i++) {
            gt_sockaddr a;
            assert_int_equal(gt_sockaddr_parse(gt_slice_cstr(v[i]), true, &a), 0);
            if (gt_sockaddr_is_loopback((struct sockaddr *)&a.ss) != !pass)
                fail_msg("%s misclassified", v[i]);
        }
    }
}

static void test_key_table(void **st)
{
    (void)st;
    gt_config_key_info k;
    const char *contract[] = {"listen", "allow_clients", "store", "rules", "lists", "resolve",
                              "forward", "mitm", "mitm_bypass", "ca_dir", "upstream_ca_file",
                              "connect_ports", "auto_mark_purchases", "log_level"};
    for (size_t j = 0; j < sizeof(contract) / sizeof(contract[0]); j++) {
        bool found = false;
        for (size_t i = 0; gt_config_key_get(i, &k) == 0; i++)
            if (strcmp(k.name, contract[j]) == 0)
                found = true;
        if (!found)
            fail_msg("contract key %s missing", contract[j]);
    }
}

int main(void)
{
    gt_config_global_init();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_file_and_overrides),
        cmocka_unit_test(test_file_list_replaces_default),
        cmocka_unit_test(test_errors_have_positions),
        cmocka_unit_test(test_bad_override_and_missing_file),
        cmocka_unit_test(test_cidr),
        cmocka_unit_test(test_resolve_lookup),
        cmocka_unit_test(test_resolve_with_spaces),
        cmocka_unit_test(test_sockaddr),
        cmocka_unit_test(test_loopback_classifier),
        cmocka_unit_test(test_key_table),
    };
    return cmocka_run_group_tests_name("util_config", tests, NULL, NULL);
}
