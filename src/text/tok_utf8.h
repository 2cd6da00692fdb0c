/* tok_utf8: UTF-8 decoding, repair and the character classes the tokenizer components use.
 *
 * Invalid UTF-8 is replaced the way Python's bytes.decode("utf-8", "replace") does (one U+FFFD
 * per maximal ill-formed subpart), so our ids match those of the reference given the same text. */
#ifndef SM_TOK_UTF8_H
#define SM_TOK_UTF8_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Decode the code point at s[0..n) (n >= 1, text already valid UTF-8); *len gets its length. */
int32_t sm_tok_utf8_next(const char *s, size_t n, size_t *len);
/* Encode cp into out (4 bytes of room); returns the length. */
size_t sm_tok_utf8_put(int32_t cp, char *out);
/* Length of the valid UTF-8 sequence at s[0..n), or 0 if it is ill-formed (its maximal ill-formed
 * subpart length goes to *bad when bad is not NULL). */
size_t sm_tok_utf8_valid_len(const unsigned char *s, size_t n, size_t *bad);
/* A valid copy of s[0..n) with U+FFFD for each ill-formed subpart (malloc'ed, NUL-terminated).
 * *first_bad gets the byte offset of the first ill-formed byte (SIZE_MAX when none), *n_bad the
 * number of replacements. */
char *sm_tok_utf8_repair(const char *s, size_t n, size_t *out_len, size_t *first_bad, size_t *n_bad);

/* Character classes, as Rust's char methods and the regex crate define them. */
bool sm_tok_is_whitespace(int32_t cp); /* White_Space property (char::is_whitespace, \s) */
bool sm_tok_is_numeric(int32_t cp);    /* Nd, Nl, No (char::is_numeric) */
bool sm_tok_is_punctuation(int32_t cp); /* ASCII punctuation or a P* category */
bool sm_tok_is_word(int32_t cp);       /* the regex crate's Unicode \w (Alphabetic, M, Nd, Pc, Join_Control) */

#endif
