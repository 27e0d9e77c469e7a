/*
 * prof.h - a profile.proto profile as the heaptap command reads it.
 *
 * hc_prof_load() reads one file (gzip or plain), decodes it with the
 * command's own protobuf reader (pbread.c) and resolves every sample into a
 * stack of frames, leaf first, with inlined frames expanded as pprof does.
 * It accepts any perftools.profiles.Profile: heaptap's heap and thread
 * profiles, and Go's heap profiles (which carry no comments). The figures
 * heaptap writes into its comment lines are parsed into struct hc_figures;
 * a profile without them (Go's) has figures.have == false.
 */
#ifndef HC_PROF_H
#define HC_PROF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* One frame of a resolved stack. */
struct hc_frame {
	const char *name; /* function name, or "0x<addr>" when unsymbolized */
	const char *func; /* as pprof -top groups frames: name, or "[object file]" or
	                     "<unknown>" when unsymbolized */
	const char *file; /* source file or "" */
	int64_t line;     /* 0 when unknown */
	uint64_t address;
};

struct hc_label {
	const char *key;
	const char *str; /* NULL for numeric labels */
	int64_t num;
};

struct hc_sample {
	int64_t *values; /* one per sample type */
	struct hc_frame *frames;
	size_t nframes;
	struct hc_label *labels;
	size_t nlabels;
	char *key; /* frame names joined by '\n', leaf first: the stack's identity */
};

/* Process figures from heaptap's comments; -1 where absent. */
struct hc_figures {
	bool have; /* a heaptap comment block was found */
	int pid;
	int64_t rate;
	int64_t rss, in_use, free_held, mmap_bytes, releasable;
	int64_t live_estimate, live_objects, live_samples;
	int64_t live_threads, unjoined_threads, running_threads;
	int64_t samples_dropped, events_dropped, table_overflow;
	int64_t small_stack, busy_resets;
	int64_t own_bytes, own_resident;
	char allocator[32]; /* "" when not named */
	char version[32];
};

struct hc_prof {
	char *path;
	int kind;              /* HC_HEAP, HC_THREADS, HC_OTHER */
	char **types, **units; /* sample types */
	size_t ntypes;
	char *default_type;
	char *period_type, *period_unit;
	int64_t period;
	int64_t time_nanos, duration_nanos;
	char **comments;
	size_t ncomments;
	struct hc_sample *samples;
	size_t nsamples;
	struct hc_figures fig;
	int seq; /* from a heaptap file name, else 0 */
	int name_pid;
	/* Everything above points into these. */
	void *arena;
};

enum { HC_OTHER = 0, HC_HEAP = 1, HC_THREADS = 2 };

/* Load a file. On failure returns NULL and writes one line naming the file
 * and the reason into err. */
struct hc_prof *hc_prof_load(const char *path, char *err, size_t errlen);

/* The same for a command that cannot go on without the file: one line
 * naming it and exit 2 when it cannot be read. */
struct hc_prof *hc_prof_load_or_die(const char *path);
/* Decode from memory (already decompressed or gzip): the fuzz entry. */
struct hc_prof *hc_prof_parse(const uint8_t *data, size_t len, const char *path, char *err,
                              size_t errlen);
void hc_prof_free(struct hc_prof *p);

/* Index of a sample type by name, or -1. */
int hc_prof_type(const struct hc_prof *p, const char *name);
/* Sum of one value over all samples. */
int64_t hc_prof_total(const struct hc_prof *p, int type);
/* The string label of a sample, or NULL. */
const char *hc_sample_label(const struct hc_sample *s, const char *key);
/* The numeric label of a sample, or -1. */
int64_t hc_sample_num(const struct hc_sample *s, const char *key);

#endif
