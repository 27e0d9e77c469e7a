/*
 * json.c - the streaming JSON writer (json.h).
 */
#include "json.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>

void hc_json_init(struct hc_json *j, FILE *f)
{
	j->f = f;
	j->depth = 0;
	j->first[0] = true;
	j->after_key = false;
}

static void sep(struct hc_json *j)
{
	if (j->after_key) {
		j->after_key = false;
		return;
	}
	if (!j->first[j->depth])
		fputc(',', j->f);
	j->first[j->depth] = false;
}

static void open(struct hc_json *j, char c)
{
	sep(j);
	fputc(c, j->f);
	if (j->depth < 63)
		j->depth++;
	j->first[j->depth] = true;
}

static void close_(struct hc_json *j, char c)
{
	fputc(c, j->f);
	if (j->depth > 0)
		j->depth--;
}

void hc_json_obj(struct hc_json *j)
{
	open(j, '{');
}

void hc_json_obj_end(struct hc_json *j)
{
	close_(j, '}');
}

void hc_json_arr(struct hc_json *j)
{
	open(j, '[');
}

void hc_json_arr_end(struct hc_json *j)
{
	close_(j, ']');
}

static void raw_str(struct hc_json *j, const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	fputc('"', j->f);
	while (*p) {
		unsigned c = *p;
		if (c == '"' || c == '\\') {
			fputc('\\', j->f);
			fputc((int)c, j->f);
			p++;
		} else if (c < 0x20) {
			fprintf(j->f, "\\u%04x", c);
			p++;
		} else if (c < 0x80) {
			fputc((int)c, j->f);
			p++;
		} else {
			/* Pass a well-formed UTF-8 sequence through; replace anything else. */
			int n = c >= 0xf0 && c < 0xf5   ? 4
			        : c >= 0xe0 && c < 0xf0 ? 3
			        : c >= 0xc2 && c < 0xe0 ? 2
			                                : 0;
			int ok = n > 0;
			for (int i = 1; ok && i < n; i++)
				ok = (p[i] & 0xc0) == 0x80;
			if (ok) {
				fwrite(p, 1, (size_t)n, j->f);
				p += n;
			} else {
				fputs("\\ufffd", j->f);
				p++;
			}
		}
	}
	fputc('"', j->f);
}

void hc_json_key(struct hc_json *j, const char *k)
{
	sep(j);
	raw_str(j, k);
	fputc(':', j->f);
	j->after_key = true;
}

void hc_json_str(struct hc_json *j, const char *s)
{
	sep(j);
	raw_str(j, s ? s : "");
}

void hc_json_int(struct hc_json *j, int64_t v)
{
	sep(j);
	fprintf(j->f, "%" PRId64, v);
}

void hc_json_num(struct hc_json *j, double v)
{
	sep(j);
	if (!isfinite(v))
		fputs("null", j->f);
	else if (v == (double)(int64_t)v && fabs(v) < 9e15)
		fprintf(j->f, "%" PRId64, (int64_t)v);
	else {
		/* The shortest form that reads back as the same double. */
		char buf[40];
		for (int prec = 15; prec <= 17; prec++) {
			snprintf(buf, sizeof(buf), "%.*g", prec, v);
			if (strtod(buf, NULL) == v)
				break;
		}
		fputs(buf, j->f);
	}
}

void hc_json_bool(struct hc_json *j, bool v)
{
	sep(j);
	fputs(v ? "true" : "false", j->f);
}

void hc_json_null(struct hc_json *j)
{
	sep(j);
	fputs("null", j->f);
}

void hc_json_end(struct hc_json *j)
{
	fputc('\n', j->f);
}

void hc_json_kstr(struct hc_json *j, const char *k, const char *s)
{
	hc_json_key(j, k);
	hc_json_str(j, s);
}

void hc_json_kint(struct hc_json *j, const char *k, int64_t v)
{
	hc_json_key(j, k);
	hc_json_int(j, v);
}

void hc_json_knum(struct hc_json *j, const char *k, double v)
{
	hc_json_key(j, k);
	hc_json_num(j, v);
}

void hc_json_kbool(struct hc_json *j, const char *k, bool v)
{
	hc_json_key(j, k);
	hc_json_bool(j, v);
}
