/*
 * fuzz_prof.c - libFuzzer target for the heaptap command's profile reader
 * (tools/cli/prof.c and pbread.c).
 *
 * Each input goes to hc_prof_parse() as a file's bytes would: gzip when it
 * starts with the gzip magic, raw protobuf otherwise (the raw path is where
 * the mutations reach the decoder; the gzip seeds mostly test inflate). A
 * rejected input must come back as one non-empty error line. An accepted one
 * is walked completely, every string read to its end and every total taken,
 * so the sanitizers see any pointer the decoder got wrong; then it is freed
 * (LeakSanitizer checks nothing stays behind).
 *
 * Built by tests/fuzz/CMakeLists.txt with -DHT_FUZZ=ON and clang; run by
 * scripts/fuzz.sh (and so by the soak tier, scripts/soak.sh).
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "prof.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static volatile size_t sink;

static size_t touch(const char *s)
{
	return s ? strlen(s) : 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[512];
	err[0] = 0;
	struct hc_prof *p =
	        hc_prof_parse(data, size, "fuzz/heaptap.1.2.heap.pb.gz", err, sizeof(err));
	if (!p) {
		/* One line, naming the file. */
		if (!err[0] || strchr(err, '\n') || strncmp(err, "fuzz/", 5) != 0)
			__builtin_trap();
		return 0;
	}
	size_t n = touch(p->path) + touch(p->default_type) + touch(p->period_type) +
	           touch(p->period_unit);
	n += strnlen(p->fig.allocator, sizeof(p->fig.allocator)) +
	     strnlen(p->fig.version, sizeof(p->fig.version));
	if (p->ntypes == 0)
		__builtin_trap();
	for (size_t i = 0; i < p->ntypes; i++)
		n += touch(p->types[i]) + touch(p->units[i]);
	for (size_t i = 0; i < p->ncomments; i++)
		n += touch(p->comments[i]);
	for (size_t i = 0; i < p->nsamples; i++) {
		const struct hc_sample *s = &p->samples[i];
		size_t keylen = 0;
		for (size_t t = 0; t < p->ntypes; t++)
			n += (size_t)s->values[t];
		for (size_t j = 0; j < s->nframes; j++) {
			const struct hc_frame *f = &s->frames[j];
			/* Every frame has a name: unsymbolized ones are 0x<addr>. */
			if (!f->name || !f->name[0] || !f->file)
				__builtin_trap();
			keylen += strlen(f->name) + 1;
			n += touch(f->file) + (size_t)f->line + (size_t)f->address;
		}
		/* The key is the frame names joined by '\n'. */
		if (!s->key || strlen(s->key) != keylen)
			__builtin_trap();
		for (size_t j = 0; j < s->nlabels; j++)
			n += touch(s->labels[j].key) + touch(s->labels[j].str) +
			     (size_t)s->labels[j].num;
		n += touch(hc_sample_label(s, "thread")) + (size_t)hc_sample_num(s, "bytes");
	}
	for (size_t i = 0; i < p->ntypes; i++)
		n += (size_t)hc_prof_total(p, (int)i);
	n += (size_t)hc_prof_total(p, hc_prof_type(p, "inuse_space"));
	sink = n;
	hc_prof_free(p);
	return 0;
}
