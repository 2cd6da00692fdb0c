/* tok_regex: the regular expressions of tokenizer.json (Split patterns, Replace normalizers,
 * the ByteLevel pattern) through Oniguruma, the engine the reference library uses, with its
 * match iteration (an empty match right after the previous match is skipped). */
#ifndef SM_TOK_REGEX_H
#define SM_TOK_REGEX_H

#include <stddef.h>

typedef struct sm_tok_regex sm_tok_regex;

typedef struct sm_tok_span {
    size_t start, end;
} sm_tok_span;

/* Compile; NULL with the engine's message in err on failure. */
sm_tok_regex *sm_tok_regex_new(const char *pattern, size_t len, char *err, size_t errn);
void sm_tok_regex_free(sm_tok_regex *re);
/* All matches in s[0..n), in order, into *spans (grown as needed; *cap is its capacity).
 * Returns the count, or -1 when the engine fails (message set). */
long sm_tok_regex_find_all(sm_tok_regex *re, const char *s, size_t n, sm_tok_span **spans, size_t *cap);

#endif
