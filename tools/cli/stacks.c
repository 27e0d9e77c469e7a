/*
 * stacks.c - merging samples by stack (stacks.h).
 */
#include "stacks.h"

#include "trend.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>

#undef uthash_fatal
#define uthash_fatal(msg) hc_die(2, "out of memory")

void hc_stacks_init(struct hc_stacks *t, size_t nslots)
{
	t->map = NULL;
	t->nslots = nslots;
	t->n = 0;
}

struct hc_row *hc_stacks_row(struct hc_stacks *t, const struct hc_sample *s)
{
	struct hc_row *r;
	size_t len = strlen(s->key);
	HASH_FIND(hh, t->map, s->key, len, r);
	if (r)
		return r;
	r = hc_xcalloc(1, sizeof(*r));
	r->key = s->key;
	r->rep = s;
	r->v = hc_xcalloc(t->nslots ? t->nslots : 1, sizeof(double));
	r->order = t->n++;
	HASH_ADD_KEYPTR(hh, t->map, r->key, len, r);
	return r;
}

void hc_stacks_noise(struct hc_row *r, const struct hc_sample *s, double b, double rate)
{
	if (b <= 0)
		return;
	int64_t size = hc_sample_num(s, "bytes");
	r->noise_sum += b * hc_noise_per_byte(rate, size > 0 ? (double)size : 0);
	r->noise_bytes += b;
}

double hc_row_noise(const struct hc_row *r, double rate)
{
	if (rate <= 1)
		return 0;
	if (r->noise_bytes <= 0)
		return rate;
	return r->noise_sum / r->noise_bytes;
}

static int by_order(const void *a, const void *b)
{
	const struct hc_row *x = *(struct hc_row *const *)a, *y = *(struct hc_row *const *)b;
	return x->order < y->order ? -1 : x->order > y->order;
}

struct hc_row **hc_stacks_list(struct hc_stacks *t)
{
	struct hc_row **l = hc_xcalloc(t->n + 1, sizeof(*l));
	size_t i = 0;
	for (struct hc_row *r = t->map; r; r = r->hh.next)
		l[i++] = r;
	qsort(l, i, sizeof(*l), by_order);
	return l;
}

void hc_stacks_free(struct hc_stacks *t)
{
	struct hc_row *r, *tmp;
	HASH_ITER(hh, t->map, r, tmp)
	{
		HASH_DEL(t->map, r);
		free(r->v);
		free(r);
	}
	t->n = 0;
}
