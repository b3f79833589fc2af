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

#endif
