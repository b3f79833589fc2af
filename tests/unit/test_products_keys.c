/* Unit tests for src/products/keys.c: canonical product keys, table-driven: GTIN padding and
 * check digits, ISBN-10 to ISBN-13, ASIN case, shop scopes, and what is refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "gretel/products.h"

static void test_keys(void **st)
{
    (void)st;
    static const struct {
        const char *scope, *id, *want; /* want NULL: refused */
    } cases[] = {
        {"gtin", "4006381333931", "gtin:04006381333931"},     /* EAN-13 */
        {"gtin", "04006381333931", "gtin:04006381333931"},    /* GTIN-14 */
        {"GTIN", " 4006381 333931 ", "gtin:04006381333931"},  /* case, spaces */
        {"upc", "036000291452", "gtin:00036000291452"},       /* UPC-A */
        {"ean", "96385074", "gtin:00000096385074"},           /* EAN-8 */
        {"gtin", "4006381333932", NULL},                      /* check digit */
        {"gtin", "12345", NULL},                              /* length */
        {"gtin", "40063813339AB", NULL},                      /* letters */
        {"isbn", "0306406152", "isbn:9780306406157"},         /* ISBN-10 -> 13 */
        {"isbn", "0-306-40615-2", "isbn:9780306406157"},
        {"isbn", "080442957X", "isbn:9780804429573"},         /* X check digit */
        {"isbn", "978-0-306-40615-7", "isbn:9780306406157"},
        {"isbn", "0306406153", NULL},
        {"isbn", "9780306406158", NULL},
        {"isbn", "4006381333931", NULL},                      /* a GTIN, not an ISBN */
        {"asin", "b0abcdef12", "asin:B0ABCDEF12"},
        {"asin", "0306406152", "asin:0306406152"},            /* book ASIN = ISBN-10 */
        {"asin", "B0ABC", NULL},
        {"Shop.Example", "SKU-1", "shop.example:SKU-1"},      /* ids keep their case */
        {"shop.example", " a:b ", "shop.example:a:b"},
        {"shop.example", "", NULL},
        {"", "x", NULL},
        {"shop.example", "a\x01", NULL},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char out[256];
        const char *why = NULL;
        size_t n = gt_products_key(gt_slice_cstr(cases[i].scope), gt_slice_cstr(cases[i].id), out,
                                   sizeof(out), &why);
        if (cases[i].want) {
            if (n == 0 || strcmp(out, cases[i].want) != 0)
                fail_msg("case %zu %s:%s: got %s (%s), want %s", i, cases[i].scope, cases[i].id,
                         n ? out : "-", why ? why : "", cases[i].want);
        } else if (n != 0 || why == NULL) {
            fail_msg("case %zu %s:%s: accepted as %s", i, cases[i].scope, cases[i].id, out);
        }
    }
    char small[8];
    const char *why;
    assert_int_equal(gt_products_key(GT_S("shop.example"), GT_S("SKU-1"), small, sizeof(small),
                                     &why),
                     0);
}

static void test_aliases(void **st)
{
    (void)st;
    static const struct {
        const char *key, *want; /* aliases joined by ',' */
    } cases[] = {
        {"isbn:9780306406157", "gtin:09780306406157,asin:0306406152"},
        {"gtin:09780306406157", "isbn:9780306406157,asin:0306406152"},
        {"asin:0306406152", "gtin:09780306406157,isbn:9780306406157"},
        {"asin:080442957X", "gtin:09780804429573,isbn:9780804429573"},
        {"isbn:9791032300824", "gtin:09791032300824"}, /* 979: no ISBN-10 */
        {"gtin:04006381333931", ""},                  /* not a book */
        {"asin:B0ABCDEF12", ""},
        {"shop.example:9780306406157", ""},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char out[3][64], joined[256] = "";
        size_t n = gt_products_aliases(gt_slice_cstr(cases[i].key), out, 3), o = 0;
        for (size_t k = 0; k < n; k++)
            o += (size_t)snprintf(joined + o, sizeof(joined) - o, "%s%s", k ? "," : "", out[k]);
        if (strcmp(joined, cases[i].want) != 0)
            fail_msg("%s: aliases '%s', want '%s'", cases[i].key, joined, cases[i].want);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_keys),
                                       cmocka_unit_test(test_aliases)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
