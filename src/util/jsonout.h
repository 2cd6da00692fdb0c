/* jsonout: JSON results that are printed complete or not at all.
 *
 * jansson drops what it cannot represent without a word: json_real(NaN) and a json_pack with a
 * NaN or Inf return NULL, and json_object_set_new(obj, key, NULL) just fails, so a result could
 * silently lose a field or print as `{}`. JSON has no NaN or Inf, and submoe never writes null
 * in their place: a writer builds with sm_json_set (which turns a value that could not be built
 * into an error naming the key) and prints with sm_json_print (which refuses a NULL document),
 * so a non-finite number in a result is an error and nothing is printed. */
#ifndef SM_JSONOUT_H
#define SM_JSONOUT_H

#include <jansson.h>
#include <stdio.h>

/* json_real(v), or NULL when v is Inf or NaN (sm_json_set then reports it). */
json_t *sm_json_number(double v);
/* obj[key] = v, taking v. -1 with a message naming key when v is NULL (a non-finite number, a
 * failed json_pack) or cannot be stored; v is released either way. */
int sm_json_set(json_t *obj, const char *key, json_t *v);
/* Append v to array arr, taking v; -1 naming `what` (e.g. "files") when v is NULL. */
int sm_json_append(json_t *arr, json_t *v, const char *what);
/* Encode j with flags and print it and a newline to out in one write. -1 with a message naming
 * `what` when j is NULL or cannot be encoded; nothing is printed then. */
int sm_json_print(FILE *out, const json_t *j, size_t flags, const char *what);

#endif
