/* Regex conditions: compiling with PCRE2 (JIT when the platform has it), and reading a
 * pattern's text for what the index and lint need: a literal token every match must
 * contain, and the shapes that backtrack catastrophically. Pure functions of the pattern. */
#include <ctype.h>
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
    char *lit;         /* longest literal byte run any match contains, or NULL */
    size_t lit_cap, lit_len;
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
    if (i < start)
        return false;
    char c = pat[i];
    size_t bs = 0; /* backslashes right before c: an odd count escapes it */
    while (i - bs > start && pat[i - bs - 1] == '\\')
        bs++;
    if (bs % 2)
        return !is_alnum((unsigned char)c); /* \. \/ \- */
    /* '>' and '\'' may close a back reference such as \k<n>: not claimed */
    return !is_alnum((unsigned char)c) && !strchr(".[](){}|*+?^$\\>'", c);
}

static size_t scan(const char *pat, size_t len, char *out, size_t cap, bool *is_prefix,
                   char *lit_out, size_t lit_cap, size_t *lit_len);

size_t gt_rules_required_token(const char *pat, size_t len, char *out, size_t cap,
                               bool *is_prefix)
{
    return scan(pat, len, out, cap, is_prefix, NULL, 0, NULL);
}

size_t gt_rules_required_literal(const char *pat, size_t len, char *out, size_t cap)
{
    /* Option settings change what bytes mean ((?i) caseless, (?x) extended): then no
     * byte-exact literal is promised. Groups of other kinds are skipped by the scan. */
    for (size_t i = 0; i + 2 < len; i++)
        if (pat[i] == '(' && pat[i + 1] == '?' && !strchr(":<=!>|P'#", pat[i + 2]))
            return 0;
    if (len >= 2 && pat[0] == '(' && pat[1] == '*')
        return 0; /* leading verbs such as (*UTF) */
    char tok[128];
    bool pre;
    size_t n = 0;
    scan(pat, len, tok, sizeof(tok), &pre, out, cap, &n);
    return n;
}

/* Index just past the escape starting at pat[i] ('\\'), arguments included. */
static size_t skip_escape(const char *pat, size_t len, size_t i)
{
    char e = pat[i + 1];
    i += 2;
    if (i < len && pat[i] == '{' && strchr("xopPNgk", e)) {
        while (i < len && pat[i] != '}')
            i++;
        return i + 1;
    }
    switch (e) {
    case 'x':
        for (int k = 0; k < 2 && i < len && isxdigit((unsigned char)pat[i]); k++)
            i++;
        break;
    case 'c':
        i++;
        break;
    case 'p':
    case 'P':
        i++;
        break;
    case 'k':
        if (i < len && (pat[i] == '<' || pat[i] == '\'')) {
            char close = pat[i] == '<' ? '>' : '\'';
            while (i < len && pat[i] != close)
                i++;
            i++;
        }
        break;
    case 'g':
        if (i < len && (pat[i] == '<' || pat[i] == '\'')) {
            char close = pat[i] == '<' ? '>' : '\'';
            while (i < len && pat[i] != close)
                i++;
            i++;
        } else {
            if (i < len && (pat[i] == '+' || pat[i] == '-'))
                i++;
            while (i < len && isdigit((unsigned char)pat[i]))
                i++;
        }
        break;
    default:
        if (e >= '0' && e <= '9')
            while (i < len && isdigit((unsigned char)pat[i]))
                i++;
    }
    return i;
}

/* Index just past any escape at pat[i] ('\\'): one byte for punctuation, the whole
 * escape with its arguments (\x41, \cX, \p{L}) for letters and digits. */
static size_t esc_end(const char *pat, size_t len, size_t i)
{
    if (i + 1 >= len)
        return len;
    return is_alnum((unsigned char)pat[i + 1]) ? skip_escape(pat, len, i) : i + 2;
}

/* Index just past the character class that starts at pat[i] ('['): a ']' right after the
 * '[' (or "[^") is a literal, POSIX names such as [:alpha:] carry their own ']', and
 * escapes hide the next byte. */
static size_t class_end(const char *pat, size_t len, size_t i)
{
    size_t j = i + 1;
    if (j < len && pat[j] == '^')
        j++;
    if (j < len && pat[j] == ']')
        j++;
    while (j < len && pat[j] != ']') {
        if (pat[j] == '\\') {
            /* inside a class only \x \o \p \P \N \c and octal escapes take arguments */
            char e = j + 1 < len ? pat[j + 1] : 0;
            j = (strchr("xopPNc", e) || (e >= '0' && e <= '7')) ? esc_end(pat, len, j)
                                                                  : j + 2;
            continue;
        }
        if (pat[j] == '[' && j + 1 < len && pat[j + 1] == ':') {
            /* only a well-formed [:name:] (or [:^name:]) is a POSIX class */
            size_t k = j + 2;
            if (k < len && pat[k] == '^')
                k++;
            while (k < len && isalpha((unsigned char)pat[k]))
                k++;
            if (k + 1 < len && pat[k] == ':' && pat[k + 1] == ']') {
                j = k + 2;
                continue;
            }
        }
        j++;
    }
    return j + 1;
}

/* Length of the quantifier at pat[i] (?, *, +, {n}, {n,}, {n,m}, each maybe followed by a
 * lazy '?' or possessive '+'), 0 when there is none; a '{' that is not a valid quantifier
 * is a literal in PCRE2. *optional: the minimum count is 0. */
static size_t quant_len(const char *pat, size_t len, size_t i, bool *optional)
{
    size_t j = i;
    *optional = false;
    if (i >= len)
        return 0;
    if (pat[i] == '?' || pat[i] == '*') {
        *optional = true;
        j++;
    } else if (pat[i] == '+') {
        j++;
    } else if (pat[i] == '{') {
        j++;
        size_t d0 = j;
        while (j < len && isdigit((unsigned char)pat[j]))
            j++;
        if (j == d0)
            return 0; /* "{," or "{x": a literal brace (PCRE2 10.42) */
        bool zero = true;
        for (size_t k = d0; k < j; k++)
            zero = zero && pat[k] == '0';
        if (j < len && pat[j] == ',') {
            j++;
            while (j < len && isdigit((unsigned char)pat[j]))
                j++;
        }
        if (j >= len || pat[j] != '}')
            return 0;
        j++;
        *optional = zero;
    } else {
        return 0;
    }
    if (j < len && (pat[j] == '?' || pat[j] == '+'))
        j++;
    return j - i;
}

/* A branch pat[b..e) of a group ends in a byte known not to be alphanumeric: a literal
 * one, or the branch is a lone '^' (the subject's start, which follows a delimiter). */
static bool branch_bounded(const char *pat, size_t b, size_t e)
{
    if (e == b + 1 && pat[b] == '^')
        return true;
    return e > b && literal_nonalnum_at(pat, b, e - 1);
}

/* Where the pattern inside the group starting at pat[i] ('(') begins: after "(", "(?:",
 * "(?|", "(?>", "(?=", "(?!", "(?<=", "(?<!", "(?<name>", "(?P<name>", "(?'name'",
 * "(?i-s:" and the like. */
static size_t group_content_start(const char *pat, size_t len, size_t i)
{
    size_t j = i + 1;
    if (j >= len || pat[j] != '?')
        return j;
    j++;
    if (j < len && strchr(":|>=!*", pat[j]))
        return j + 1;
    if (j + 1 < len && pat[j] == '<' && strchr("=!*", pat[j + 1]))
        return j + 2;
    if (j < len && (pat[j] == '<' || pat[j] == '\'' || pat[j] == 'P')) {
        char close = pat[j] == '\'' ? '\'' : '>';
        while (++j < len && pat[j] != close)
            ;
        return j + 1;
    }
    while (j < len && (isalpha((unsigned char)pat[j]) || pat[j] == '-' || pat[j] == '^'))
        j++;
    return j + 1; /* past the ':' of "(?i:" */
}

/* Patterns whose bytes do not mean what they look like, for this simple reading: quoting
 * (\Q..\E), comments, verbs such as (*ACCEPT), extended mode (x) that drops whitespace
 * and turns '#' into a comment. For those, no token and no literal is claimed. */
static bool analyzable(const char *pat, size_t len)
{
    for (size_t i = 0; i + 1 < len; i++) {
        if (pat[i] == '\\') {
            /* \E outside \Q..\E is ignored by PCRE2: a quantifier after it applies to
             * what came before, which this reading would get wrong */
            if (pat[i + 1] == 'Q' || pat[i + 1] == 'E')
                return false;
            i = esc_end(pat, len, i) - 1;
            continue;
        }
        if (pat[i] != '(')
            continue;
        if (pat[i + 1] == '*')
            return false;
        if (pat[i + 1] != '?' || i + 2 >= len)
            continue;
        if (pat[i + 2] == '#')
            return false;
        /* conditional groups (?(cond)yes|no): which branch a subject takes is not visible
         * to this reading, so neither branch's literals are required */
        if (pat[i + 2] == '(')
            return false;
        /* option letters up to ':' or ')' */
        for (size_t j = i + 2; j < len && pat[j] != ':' && pat[j] != ')'; j++) {
            if (pat[j] == 'x' || pat[j] == 'X')
                return false;
            if (!isalpha((unsigned char)pat[j]) && pat[j] != '-' && pat[j] != '^')
                break;
        }
    }
    return true;
}

static size_t scan(const char *pat, size_t len, char *out, size_t cap, bool *is_prefix,
                   char *lit_out, size_t lit_cap, size_t *lit_len)
{
    *is_prefix = false;
    if (!analyzable(pat, len))
        return 0;
    /* A top-level alternation means no single literal is required. */
    int depth = 0;
    for (size_t i = 0; i < len; i++) {
        char c = pat[i];
        if (c == '\\') {
            i = esc_end(pat, len, i) - 1;
            continue;
        }
        if (c == '[') {
            i = class_end(pat, len, i) - 1;
            continue;
        }
        if (c == '(')
            depth++;
        else if (c == ')')
            depth--;
        else if (c == '|' && depth == 0)
            return 0;
    }
    run r = {.len = 0, .open_left = true};
    found f = {.out = out, .cap = cap, .best = 0, .pre_len = 0, .lit = lit_out,
               .lit_cap = lit_cap};
    size_t i = 0;
    /* The run is flushed whenever the next byte is not a required literal; the flush knows
     * whether the byte after it is a known boundary (anchor). */
#define FLUSH(open_right)                                                                          \
    do {                                                                                           \
        best_token(&r, (open_right), &f);                                                          \
        if (f.lit && r.len > f.lit_len && r.len <= f.lit_cap) {                                    \
            memcpy(f.lit, r.buf, r.len);                                                           \
            f.lit_len = r.len;                                                                     \
        }                                                                                          \
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
                /* \d \w \s \b \x41 \cJ \p{L} \k<n> and friends: not a literal we can use;
                 * skip the whole escape, arguments included */
                FLUSH(true);
                i = skip_escape(pat, len, i);
                continue;
            }
        } else if (strchr(".[](){}|*+?", c)) {
            if (c == '(' && i + 2 < len && pat[i + 1] == '?' && pat[i + 2] != ':' &&
                pat[i + 2] != '<' && pat[i + 2] != 'P' && pat[i + 2] != '=' &&
                pat[i + 2] != '!' && pat[i + 2] != '>' && pat[i + 2] != '|') {
                /* inline option setting such as (?i) or (?-s): skip it, it consumes
                 * nothing; anything else starting "(?" is a group, skipped below */
                size_t j = i + 2;
                while (j < len && (isalpha((unsigned char)pat[j]) || pat[j] == '-' ||
                                   pat[j] == '^'))
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
                bool alternation = false, branches_bounded = true;
                size_t branch_start = group_content_start(pat, len, i);
                while (j < len && dpt) {
                    if (pat[j] == '\\') {
                        j = esc_end(pat, len, j);
                        continue;
                    }
                    if (pat[j] == '[') {
                        j = class_end(pat, len, j);
                        continue;
                    }
                    if (pat[j] == '(') {
                        dpt++;
                    } else if (pat[j] == ')') {
                        dpt--;
                    } else if (pat[j] == '|' && dpt == 1) {
                        /* then the last byte depends on the branch: each must end in a
                         * non-alphanumeric literal or be a lone ^ (start of subject) */
                        alternation = true;
                        branches_bounded = branches_bounded &&
                                           branch_bounded(pat, branch_start, j);
                        branch_start = j + 1;
                    }
                    j++;
                }
                if (alternation && j >= 1)
                    branches_bounded = branches_bounded && branch_bounded(pat, branch_start, j - 1);
                /* j is past the ')'; pat[j - 2] is the group's last byte, unless the group
                 * is empty (its header runs up to the ')') */
                size_t cs = group_content_start(pat, len, i);
                bool empty = j - 1 <= cs;
                bool end_nonalnum =
                    !empty && j >= 2 &&
                    (alternation ? branches_bounded : literal_nonalnum_at(pat, cs, j - 2));
                bool optional;
                j += quant_len(pat, len, j, &optional);
                bool lookaround =
                    i + 2 < len && pat[i + 1] == '?' &&
                    (pat[i + 2] == '=' || pat[i + 2] == '!' || pat[i + 2] == '*' ||
                     (pat[i + 2] == '<' && i + 3 < len &&
                      (pat[i + 3] == '=' || pat[i + 3] == '!' || pat[i + 3] == '*')));
                i = j;
                if (lookaround || empty) /* consumes nothing: the byte before comes next */
                    r.open_left = !before_nonalnum;
                else
                    r.open_left = !(end_nonalnum && (!optional || before_nonalnum));
                continue;
            }
            bool qopt;
            size_t q = quant_len(pat, len, i, &qopt);
            if (c == '{' && q == 0) {
                lit = '{'; /* not a quantifier: a literal brace */
                goto literal;
            }
            /* a quantifier here follows something that is not a literal (a class, '.', an
             * escape class): the run was flushed already; '.' and the like end it */
            FLUSH(true);
            if (q) {
                i += q;
                continue;
            }
            /* skip a class entirely: nothing inside is required for sure */
            if (c == '[') {
                i = class_end(pat, len, i);
                continue;
            }
            i++;
            continue;
        } else {
            lit = c;
        }
    literal:;
        /* a literal with a quantifier: optional ones are not required; repeated ones are,
         * once, but what follows is not adjacent to them */
        size_t nx = i + adv;
        bool lopt;
        size_t lq = quant_len(pat, len, nx, &lopt);
        if (lq) {
            if (!lopt && r.len < sizeof(r.buf))
                r.buf[r.len++] = lit;
            FLUSH(true);
            i = nx + lq;
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
    if (lit_len)
        *lit_len = f.lit_len;
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
    for (size_t i = 0; i < len; i++) {
        char c = pat[i];
        if (c == '\\') {
            i = esc_end(pat, len, i) - 1;
            continue;
        }
        if (c == '[') {
            i = class_end(pat, len, i) - 1;
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
