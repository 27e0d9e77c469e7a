/*
 * json.h - a streaming JSON writer for the command's --json output.
 *
 * The writer tracks nesting and commas itself, so callers emit keys and
 * values in order and never think about separators. Strings are escaped per
 * RFC 8259 (control characters as \u00XX; invalid UTF-8 bytes are written as
 * U+FFFD so the output always parses). Numbers that are not finite are
 * written as null.
 */
#ifndef HC_JSON_H
#define HC_JSON_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

struct hc_json {
	FILE *f;
	int depth;
	bool first[64];
	bool after_key;
};

void hc_json_init(struct hc_json *j, FILE *f);
void hc_json_obj(struct hc_json *j);
void hc_json_obj_end(struct hc_json *j);
void hc_json_arr(struct hc_json *j);
void hc_json_arr_end(struct hc_json *j);
void hc_json_key(struct hc_json *j, const char *k);
void hc_json_str(struct hc_json *j, const char *s);
void hc_json_int(struct hc_json *j, int64_t v);
void hc_json_num(struct hc_json *j, double v);
void hc_json_bool(struct hc_json *j, bool v);
void hc_json_null(struct hc_json *j);
/* A key and its value in one call. */
void hc_json_kstr(struct hc_json *j, const char *k, const char *s);
void hc_json_kint(struct hc_json *j, const char *k, int64_t v);
void hc_json_knum(struct hc_json *j, const char *k, double v);
void hc_json_kbool(struct hc_json *j, const char *k, bool v);
/* Finish with a newline. */
void hc_json_end(struct hc_json *j);

#endif
