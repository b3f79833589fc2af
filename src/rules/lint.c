/* `gretel check`'s deeper checks, run only when asked (they cost O(rules x allow rules)):
 * duplicate rules, block rules an allow rule always overrides, and conditions that
 * contradict each other so the rule can never match. Warnings, never errors: the rules
 * still work as written. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

typedef struct {
    uint64_t h;
    uint32_t idx;
} keyed;

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int cmp_keyed(const void *a, const void *b)
{
    const keyed *x = a, *y = b;
    if (x->h != y->h)
        return x->h < y->h ? -1 : 1;
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

/* The rule's tokens after the action, sorted: order of conditions does not matter. */
static char **sorted_tokens(const gt_rule *r, size_t *n, char **copy)
{
    *copy = gt_xstrdup(r->text);
    size_t cap = 1;
    for (char *p = *copy; *p; p++)
        cap += *p == ' ';
    char **v = gt_xcalloc(cap, sizeof(char *));
    *n = 0;
    char *save = NULL;
    for (char *t = strtok_r(*copy, " ", &save); t; t = strtok_r(NULL, " ", &save))
        v[(*n)++] = t;
    if (*n > 1)
        qsort(v + 1, *n - 1, sizeof(char *), cmp_str);
    return v;
}

static uint64_t rule_key(const gt_rule *r)
{
    size_t n;
    char *copy;
    char **v = sorted_tokens(r, &n, &copy);
    uint64_t h = 0;
    for (size_t i = 0; i < n; i++)
        h = h * 1000003u ^ gt_rules_host_hash(v[i], strlen(v[i]));
    free(v);
    free(copy);
    return h ? h : 1;
}

static bool same_tokens(const gt_rule *a, const gt_rule *b)
{
    size_t na, nb;
    char *ca, *cb;
    char **va = sorted_tokens(a, &na, &ca), **vb = sorted_tokens(b, &nb, &cb);
    bool same = na == nb;
    for (size_t i = 0; same && i < na; i++)
        same = strcmp(va[i], vb[i]) == 0;
    free(va);
    free(vb);
    free(ca);
    free(cb);
    return same;
}

/* True if every condition of a also appears in b: a matches whatever b matches. */
static bool conds_subset(const gt_rule *a, const gt_rule *b)
{
    for (size_t i = 0; i < a->nconds; i++) {
        bool found = false;
        for (size_t k = 0; k < b->nconds && !found; k++)
            found = strcmp(a->conds[i].text, b->conds[k].text) == 0;
        if (!found)
            return false;
    }
    return true;
}

static void contradictions(const gt_rule *r, gt_diags *d)
{
    uint32_t pos = (1u << GT_TYPE_COUNT) - 1, neg = 0;
    int party = -1;
    for (size_t i = 0; i < r->nconds; i++) {
        const rule_cond *c = &r->conds[i];
        if (c->kind == C_TYPE) {
            if (c->neg)
                neg |= c->typemask;
            else
                pos &= c->typemask;
        }
        if (c->kind == C_PARTY && !c->neg) {
            if (party >= 0 && party != c->party) {
                gt_diags_add(d, 1, r->file, r->line, c->col,
                             "unreachable: party=first and party=third together never match");
                return;
            }
            party = c->party;
        }
    }
    if ((pos & ~neg) == 0)
        gt_diags_add(d, 1, r->file, r->line, 1,
                     "unreachable: the type conditions exclude every request type");
}

void gt_rules_lint(const gt_ruleset *rs, gt_diags *d)
{
    keyed *k = gt_xcalloc(rs->nrules ? rs->nrules : 1, sizeof(keyed));
    for (size_t i = 0; i < rs->nrules; i++) {
        k[i].h = rule_key(&rs->rules[i]);
        k[i].idx = (uint32_t)i;
        contradictions(&rs->rules[i], d);
    }
    qsort(k, rs->nrules, sizeof(keyed), cmp_keyed);
    for (size_t i = 1; i < rs->nrules; i++) {
        if (k[i].h != k[i - 1].h)
            continue;
        /* find the first rule of this hash run that really has the same tokens */
        size_t j = i;
        while (j > 0 && k[j - 1].h == k[i].h)
            j--;
        for (; j < i; j++) {
            const gt_rule *a = &rs->rules[k[j].idx], *b = &rs->rules[k[i].idx];
            if (same_tokens(a, b)) {
                gt_diags_add(d, 1, b->file, b->line, 1, "duplicate of %s:%u", a->file, a->line);
                break;
            }
        }
    }
    free(k);
    /* block and redirect rules that an allow rule always overrides */
    size_t nallow = 0;
    uint32_t *allow = gt_xcalloc(rs->nrules ? rs->nrules : 1, sizeof(uint32_t));
    for (size_t i = 0; i < rs->nrules; i++)
        if (rs->rules[i].action == A_ALLOW)
            allow[nallow++] = (uint32_t)i;
    for (size_t i = 0; i < rs->nrules; i++) {
        const gt_rule *b = &rs->rules[i];
        if ((b->action != A_BLOCK && b->action != A_REDIRECT) || b->important)
            continue;
        for (size_t j = 0; j < nallow; j++) {
            const gt_rule *a = &rs->rules[allow[j]];
            if (conds_subset(a, b)) {
                gt_diags_add(d, 1, b->file, b->line, 1,
                             "unreachable: allow rule %s:%u matches every request this rule "
                             "matches, and allow beats block (add 'important' if this rule "
                             "must win)",
                             a->file, a->line);
                break;
            }
        }
    }
    free(allow);
}
