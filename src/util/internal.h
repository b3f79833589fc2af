/* Shared between config.c and config_keys.c only. */
#ifndef GT_UTIL_INTERNAL_H
#define GT_UTIL_INTERNAL_H

#include "gretel/config.h"

/* A setter parses one value (already trimmed) into cfg; on error writes a message into
 * err and returns GT_EINVAL. For list keys it appends; `clear` empties the list. */
typedef int (*cfg_setter)(gt_config *cfg, gt_slice v, char *err, size_t errlen);
typedef void (*cfg_clearer)(gt_config *cfg);

typedef struct {
    const char *name;
    const char *type; /* for docs: "address list", "duration", ... */
    const char *def;  /* embedded default, fed through the setter */
    cfg_setter set;
    cfg_clearer clear; /* non-NULL: a list key */
    const char *doc;
} cfg_key;

extern const cfg_key gt_config_keys[];
extern const size_t gt_config_nkeys;

const cfg_key *gt_config_key_find(gt_slice name);
void gt_config_free_fields(gt_config *cfg);
void gt_config_strlist_add(gt_strlist *l, gt_slice v);

#endif
