/* libFuzzer entry for the pattern analysis the rule index relies on (src/rules/pattern.c):
 * whatever a regex is, when it matches a subject, the literal token gretel files the rule
 * under must occur in that subject as a whole alphanumeric token (or, for a prefix token,
 * start one), case-insensitively, and the required literal must occur byte for byte.
 * A wrong answer here would make a rule silently never match, so this is the property the
 * index's correctness rests on. Input: PATTERN NUL SUBJECT. */
#include <assert.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "../../src/rules/internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool alnum(unsigned char c)
{
    return (c >= '0' && c <= '9') || ((c | 0x20) >= 'a' && (c | 0x20) <= 'z');
}

/* Does s contain tok as a whole token (prefix: as the start of a token)? */
static bool has_token(const char *s, size_t n, const char *tok, size_t tl, bool prefix)
{
    for (size_t i = 0; i + tl <= n; i++) {
        if (i > 0 && alnum((unsigned char)s[i - 1]))
            continue;
        size_t k = 0;
        while (k < tl && gt_ascii_lower(s[i + k]) == tok[k])
            k++;
        if (k < tl)
            continue;
        if (prefix || i + tl == n || !alnum((unsigned char)s[i + tl]))
            return true;
    }
    return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *nul = memchr(data, 0, size);
    if (!nul || size > 4096)
        return 0;
    const char *pat = (const char *)data, *subj = (const char *)nul + 1;
    size_t plen = (size_t)(nul - data), slen = size - plen - 1;
    int code;
    PCRE2_SIZE off;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pat, plen, PCRE2_DUPNAMES, &code, &off, NULL);
    if (!re)
        return 0;
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(re, NULL);
    pcre2_match_context *mc = pcre2_match_context_create(NULL);
    pcre2_set_match_limit(mc, 10000);
    int r = pcre2_match(re, (PCRE2_SPTR)subj, slen, 0, 0, md, mc);
    if (r > 0) {
        char tok[128], lit[256];
        bool prefix;
        size_t tl = gt_rules_required_token(pat, plen, tok, sizeof(tok), &prefix);
        if (tl >= 2)
            assert(has_token(subj, slen, tok, prefix ? (tl >= 8 ? 8 : 4) : tl, prefix));
        size_t ll = gt_rules_required_literal(pat, plen, lit, sizeof(lit));
        if (ll)
            assert(slen >= ll && memmem(subj, slen, lit, ll));
    }
    pcre2_match_context_free(mc);
    pcre2_match_data_free(md);
    pcre2_code_free(re);
    return 0;
}
