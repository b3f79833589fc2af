/* Regex conditions: compiling with PCRE2 (JIT when the platform has it), and reading a
 * pattern's text for what the index and lint need: a literal token every match must
 * contain, and the shapes that backtrack catastrophically. Pure functions of the pattern. */
#include <stdio.h>
#include <string.h>

#include "internal.h"

pcre2_code *gt_rules_compile_re(const char *pat, size_t len, const char *file, unsigned line,
                                unsigned col, gt_diags *d, bool *jit)
{
    int code;
    PCRE2_SIZE off;
    /* Bytes, not UTF-8: URLs are ASCII on the wire and a body may hold anything. DUPNAMES
     * lets alternatives each name their product capture `id`. */
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pat, len, PCRE2_DUPNAMES, &code, &off, NULL);
    if (!re) {
        PCRE2_UCHAR msg[160];
        pcre2_get_error_message(code, msg, sizeof(msg));
        gt_diags_add(d, 0, file, line, col + (unsigned)off, "invalid regex: %s (at offset %zu)",
                     (const char *)msg, (size_t)off);
        return NULL;
    }
    *jit = pcre2_jit_compile(re, PCRE2_JIT_COMPLETE) == 0;
    return re;
}

static bool is_alnum(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/* A run of literal bytes the pattern requires contiguously at top level. `open_left` says
 * whether the byte before the run is unknown (then a token touching that edge may be part of
 * a longer token in the subject). */
typedef struct {
    char buf[256];
    size_t len;
    bool open_left;
} run;

/* Tokens so common in URLs that a rule filed under one is tried on most requests. */
static bool common_token(const char *t, size_t n)
{
    static const char *const stop[] = {"http", "https", "www", "com", "net", "org", "js",
                                       "css", "html", "htm", "php", "png", "gif", "jpg",
                                       "jpeg", "svg", "webp", "json", "min", "static", "cdn",
                                       "img", "images", "assets", "id", "v1", "v2", "api"};
    for (size_t i = 0; i < sizeof(stop) / sizeof(stop[0]); i++)
        if (strlen(stop[i]) == n && memcmp(stop[i], t, n) == 0)
            return true;
    return false;
}

unsigned gt_rules_token_score(const char *t, size_t n, bool is_prefix)
{
    if (n == 0)
        return 0;
    if (common_token(t, n))
        return 1;
    return (unsigned)(2 * n) - (is_prefix ? 1u : 0u);
}

typedef struct {
    char *out;
    size_t cap, best;  /* best whole token so far (by score) */
    char pre[64];
    size_t pre_len;    /* best prefix token (left-bounded, right side unknown) */
} found;

static void best_token(const run *r, bool open_right, found *f)
{
    size_t i = 0;
    while (i < r->len) {
        if (!is_alnum((unsigned char)r->buf[i])) {
            i++;
            continue;
        }
        size_t s = i;
        while (i < r->len && is_alnum((unsigned char)r->buf[i]))
            i++;
        bool left_ok = s > 0 || !r->open_left;
        bool right_ok = i < r->len || !open_right;
        size_t l = i - s;
        char low[256];
        for (size_t k = 0; k < l && k < sizeof(low); k++)
            low[k] = gt_ascii_lower(r->buf[s + k]);
        if (left_ok && right_ok && l < f->cap && l < sizeof(low) &&
            gt_rules_token_score(low, l, false) > gt_rules_token_score(f->out, f->best, false)) {
            memcpy(f->out, low, l);
            f->out[l] = 0;
            f->best = l;
        } else if (left_ok && !right_ok && l > f->pre_len && l < sizeof(f->pre)) {
            for (size_t k = 0; k < l; k++)
                f->pre[k] = gt_ascii_lower(r->buf[s + k]);
            f->pre_len = l;
        }
    }
}

/* Is pat[i] (inside a group, just before its ')') a literal non-alphanumeric byte? */
static bool literal_nonalnum_at(const char *pat, size_t start, size_t i)
{
    if (i <= start)
        return false;
    char c = pat[i];
    if (i >= start + 1 && pat[i - 1] == '\\')
        return !is_alnum((unsigned char)c); /* \. \/ \- */
    return !is_alnum((unsigned char)c) && !strchr(".[](){}|*+?^$\\", c);
}

size_t gt_rules_required_token(const char *pat, size_t len, char *out, size_t cap,
                               bool *is_prefix)
{
    *is_prefix = false;
    /* A top-level alternation means no single literal is required. */
    int depth = 0;
    bool in_class = false;
    for (size_t i = 0; i < len; i++) {
        char c = pat[i];
        if (c == '\\') {
            i++;
            continue;
        }
        if (in_class) {
            if (c == ']')
                in_class = false;
            continue;
        }
        if (c == '[')
            in_class = true;
        else if (c == '(')
            depth++;
        else if (c == ')')
            depth--;
        else if (c == '|' && depth == 0)
            return 0;
    }
    run r = {.len = 0, .open_left = true};
    found f = {.out = out, .cap = cap, .best = 0, .pre_len = 0};
    size_t i = 0;
    /* The run is flushed whenever the next byte is not a required literal; the flush knows
     * whether the byte after it is a known boundary (anchor). */
#define FLUSH(open_right)                                                                          \
    do {                                                                                           \
        best_token(&r, (open_right), &f);                                                          \
        r.len = 0;                                                                                 \
        r.open_left = true;                                                                        \
    } while (0)
    while (i < len) {
        char c = pat[i];
        if (c == '^' && r.len == 0) {
            r.open_left = false;
            i++;
            continue;
        }
        if (c == '$') {
            FLUSH(false);
            i++;
            continue;
        }
        char lit;
        size_t adv = 1;
        if (c == '\\') {
            if (i + 1 >= len)
                break;
            char e = pat[i + 1];
            adv = 2;
            if (!is_alnum((unsigned char)e)) {
                lit = e;
            } else {
                /* \d \w \s \b \x.. and friends: not a literal we can use */
                FLUSH(true);
                i += 2;
                continue;
            }
        } else if (strchr(".[](){}|*+?", c)) {
            if (c == '(' && i + 2 < len && pat[i + 1] == '?' && pat[i + 2] != ':' &&
                pat[i + 2] != '<' && pat[i + 2] != 'P' && pat[i + 2] != '=' &&
                pat[i + 2] != '!' && pat[i + 2] != '>' && pat[i + 2] != '|') {
                /* inline option setting such as (?i): skip it, it consumes nothing */
                size_t j = i + 2;
                while (j < len && pat[j] != ')' && pat[j] != ':')
                    j++;
                if (j < len && pat[j] == ')') {
                    i = j + 1;
                    continue;
                }
            }
            if (c == '(') {
                /* What precedes the group and how the group ends decide whether the byte
                 * before the next run is known to be a non-alphanumeric one. */
                bool before_nonalnum = r.len ? !is_alnum((unsigned char)r.buf[r.len - 1])
                                             : !r.open_left;
                FLUSH(true);
                int dpt = 1;
                size_t j = i + 1;
                bool cls = false;
                while (j < len && dpt) {
                    if (pat[j] == '\\') {
                        j += 2;
                        continue;
                    }
                    if (cls) {
                        if (pat[j] == ']')
                            cls = false;
                    } else if (pat[j] == '[') {
                        cls = true;
                    } else if (pat[j] == '(') {
                        dpt++;
                    } else if (pat[j] == ')') {
                        dpt--;
                    }
                    j++;
                }
                /* j is past the ')'; pat[j - 2] is the group's last byte */
                bool end_nonalnum = j >= 2 && literal_nonalnum_at(pat, i + 1, j - 2);
                bool optional = j < len && (pat[j] == '?' || pat[j] == '*' ||
                                            (pat[j] == '{' && j + 1 < len && pat[j + 1] == '0'));
                if (j < len && (pat[j] == '?' || pat[j] == '*' || pat[j] == '+')) {
                    j++;
                    if (j < len && (pat[j] == '?' || pat[j] == '+'))
                        j++;
                } else if (j < len && pat[j] == '{') {
                    while (j < len && pat[j] != '}')
                        j++;
                    j++;
                }
                i = j;
                r.open_left = !(end_nonalnum && (!optional || before_nonalnum));
                continue;
            }
            if (c == '*' || c == '?' || (c == '{' && i + 1 < len && pat[i + 1] == '0')) {
                /* the previous literal is optional: drop it from the run */
                if (r.len)
                    r.len--;
                FLUSH(true);
            } else {
                FLUSH(true); /* '+' or '{n,}': what follows is not adjacent; '.' etc. */
            }
            /* skip a class entirely: nothing inside is required for sure */
            if (c == '[') {
                size_t j = i + 1;
                if (j < len && pat[j] == '^')
                    j++;
                if (j < len && pat[j] == ']')
                    j++;
                while (j < len && pat[j] != ']') {
                    if (pat[j] == '\\')
                        j++;
                    j++;
                }
                i = j + 1;
                continue;
            }
            if (c == '{') {
                size_t j = i;
                while (j < len && pat[j] != '}')
                    j++;
                i = j + 1;
                continue;
            }
            i++;
            continue;
        } else {
            lit = c;
        }
        /* a literal followed by an optional quantifier is not required */
        size_t nx = i + adv;
        if (nx < len && (pat[nx] == '?' || pat[nx] == '*' ||
                         (pat[nx] == '{' && nx + 1 < len && pat[nx + 1] == '0'))) {
            FLUSH(true);
            i = nx + 1;
            if (i < len && (pat[i] == '?' || pat[i] == '+'))
                i++;
            continue;
        }
        if (r.len < sizeof(r.buf))
            r.buf[r.len++] = lit;
        else
            FLUSH(true);
        i += adv;
    }
    FLUSH(true);
#undef FLUSH
    /* a prefix of at least 4 bytes narrows the search too (prefix index); it wins over a
     * shorter or very common whole token */
    bool pre_ok = f.pre_len >= GT_PREFIX_SHORT && f.pre_len < cap;
    if (f.best && (!pre_ok || gt_rules_token_score(out, f.best, false) >=
                                  gt_rules_token_score(f.pre, f.pre_len, true)))
        return f.best;
    if (pre_ok) {
        memcpy(out, f.pre, f.pre_len);
        out[f.pre_len] = 0;
        *is_prefix = true;
        return f.pre_len;
    }
    return 0;
}

bool gt_rules_re_risky(const char *pat, size_t len)
{
    /* For each group, note whether it contains an unbounded quantifier; if the group is
     * itself followed by an unbounded quantifier, the pattern is risky. */
    int stack_has[64];
    int depth = 0;
    bool in_class = false;
    for (size_t i = 0; i < len; i++) {
        char c = pat[i];
        if (c == '\\') {
            i++;
            continue;
        }
        if (in_class) {
            if (c == ']')
                in_class = false;
            continue;
        }
        if (c == '[') {
            in_class = true;
            continue;
        }
        if (c == '(') {
            if (depth < 64)
                stack_has[depth] = 0;
            depth++;
            continue;
        }
        bool unbounded = c == '*' || c == '+' ||
                         (c == '{' && memchr(pat + i, ',', len - i) &&
                          memchr(pat + i, '}', len - i) &&
                          ((const char *)memchr(pat + i, '}', len - i))[-1] == ',');
        if (c == ')') {
            depth--;
            if (depth < 0)
                return false;
            bool inner = depth < 64 && stack_has[depth];
            size_t j = i + 1;
            bool outer = j < len && (pat[j] == '*' || pat[j] == '+' ||
                                     (pat[j] == '{' && memchr(pat + j, ',', len - j)));
            if (inner && outer)
                return true;
            if (inner && depth > 0 && depth - 1 < 64)
                stack_has[depth - 1] = 1;
            continue;
        }
        if (unbounded && depth > 0 && depth - 1 < 64)
            stack_has[depth - 1] = 1;
    }
    return false;
}
