/* Product keys: the canonical "SCOPE:ID" form shared by the rule engine (keys extracted
 * from pixels), the store (marks) and the CLI. Global namespaces are normalised so that one
 * product has one key whichever form names it: `gtin` as 14 digits with a valid check digit
 * (UPC-A, EAN-8, EAN-13 are padded), `isbn` as ISBN-13 (ISBN-10 converted), `asin` upper-case.
 * Shop scopes are registrable domains, lower-case; their ids are kept as they are. Pure. */
#ifndef GT_PRODUCTS_H
#define GT_PRODUCTS_H

#include <stddef.h>

#include "gretel/slice.h"

/* Writes the canonical key for scope and id into out (NUL-terminated) and returns its
 * length, or 0 with *why set (a static string) when the id is not valid in its namespace
 * or the key does not fit. */
size_t gt_products_key(gt_slice scope, gt_slice id, char *out, size_t cap, const char **why);

/* Other canonical keys of the same product, for namespaces that share numbers: an ISBN-13
 * (978/979) is also a GTIN (0 + the 13 digits), a 978 ISBN is also the ISBN-10 a book's ASIN
 * is, and back. Writes up to max keys (each of cap bytes) into out and returns how many. */
size_t gt_products_aliases(gt_slice key, char (*out)[64], size_t max);

/* --- product ids a page declares (src/products/sniff.c) --- */

#include <stdbool.h>

#define GT_SNIFF_KEY_MAX 401

typedef struct gt_sniff gt_sniff;

/* A reader of one HTML response's body for its schema.org Product data (JSON-LD). NULL
 * when the response is not HTML, or is encoded in a way it cannot undo (it takes identity,
 * gzip and deflate). chunked: the bytes fed keep their chunked framing. */
gt_sniff *gt_sniff_new(gt_slice content_type, gt_slice content_encoding, bool chunked);
/* The body's bytes as they pass, in order (the first MiB of HTML is kept). */
void gt_sniff_feed(gt_sniff *s, const void *data, size_t n);
/* After the body: the product keys the page declares (canonical; shop ids scoped to site,
 * the page's registrable domain), up to cap; returns how many. */
size_t gt_sniff_keys(gt_sniff *s, gt_slice site, char (*keys)[GT_SNIFF_KEY_MAX], size_t cap);
void gt_sniff_free(gt_sniff *s); /* NULL-safe */

#endif
