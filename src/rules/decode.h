/* The decoder pipeline shared by extraction (decide.c) and the fuzzer. */
#ifndef GT_RULES_DECODE_H
#define GT_RULES_DECODE_H

#include "internal.h"

#define GT_DECODE_MAX_VALUES 64

/* Runs decs over in; writes decoded bytes into buf (cap must be at least
 * (ndecs + 1) * in.len) and up to maxv non-empty, trimmed values into outv. Returns how
 * many. With no decoders the value is in itself. */
size_t gt_rules_decode_run(const rule_decoder *decs, size_t ndecs, gt_slice in, char *buf,
                           size_t cap, gt_slice *outv, size_t maxv);

#endif
