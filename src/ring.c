/*
 * ring.c - the per-thread single-producer/single-consumer event ring.
 * See ring.h for the protocol.
 */
#include "ring.h"

#include "mem.h"

#include <errno.h>
#include <string.h>

int ht_ring_init(struct ht_ring *r, size_t size)
{
	memset(r, 0, sizeof(*r));
	if (size < 4096 || (size & (size - 1)))
		return -EINVAL;
	r->data = ht_mem_alloc(size + HT_RING_SCRATCH);
	if (!r->data)
		return -ENOMEM;
	r->size = size;
	r->scratch = r->data + size;
	return 0;
}

void ht_ring_destroy(struct ht_ring *r)
{
	ht_mem_free(r->data);
	r->data = NULL;
	r->scratch = NULL;
	r->size = 0;
}

size_t ht_ring_drain(struct ht_ring *r, void (*fn)(const struct ht_ev_hdr *, void *), void *arg)
{
	return ht_ring_drain_batch(r, fn, NULL, arg);
}
