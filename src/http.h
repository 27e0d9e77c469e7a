/*
 * http.h - the /debug/pprof listener (HEAPTAP_HTTP), on heaptap's thread.
 *
 * The listener and its connections are non-blocking descriptors that
 * heaptap's thread polls between its other work; nothing here runs on the
 * program's threads. What it serves comes from serve.c (profiles, symbols);
 * this file owns the protocol: addresses, limits, request parsing, routing,
 * Go's status codes and error strings, and the ?seconds= timers.
 */
#ifndef HT_HTTP_H
#define HT_HTTP_H

#include "pb.h"

#include <poll.h>
#include <stdbool.h>
#include <stdint.h>

/* Limits (README "Serving profiles"). */
#define HT_HTTP_MAX_CONN     16
#define HT_HTTP_MAX_HEADER   8192
#define HT_HTTP_MAX_BODY     65536
#define HT_HTTP_REQ_MS       10000 /* a request must arrive whole within this */
#define HT_HTTP_EVICT_MS     1000  /* ... and may lose its slot to a newcomer after this */
#define HT_HTTP_SEND_MS      30000 /* and its response leave within this */
#define HT_HTTP_MAX_SECONDS  300   /* longest ?seconds= window */
#define HT_HTTP_CACHE_MS     1000  /* a profile is built at most once per this */
#define HT_HTTP_POLL_ENTRIES (HT_HTTP_MAX_CONN + 1)

/* Parse HEAPTAP_HTTP: "127.0.0.1:6060", "[::1]:6060", ":0" or "localhost:P"
 * (loopback), "0.0.0.0:P" or any other numeric address (named, so allowed).
 * Fills a sockaddr; *loopback tells whether it is. 0 or -EINVAL. */
struct sockaddr_storage;
int ht_http_parse_addr(const char *spec, struct sockaddr_storage *sa, unsigned *salen,
                       bool *loopback);

/* Open the listener for spec (one "heaptap:" line on failure, or naming the
 * port for ":0", or warning for a non-loopback address). 0 or -errno. */
int ht_http_open(const char *spec);
bool ht_http_active(void);
/* Close the listener and every connection (exit, fork child: the child's
 * copies are closed so the port is not held by a child). */
void ht_http_close(void);
/* The port listened on, or 0. */
int ht_http_port(void);

/* Fill fds (at most HT_HTTP_POLL_ENTRIES) for poll(); *timeout_ms is
 * lowered to the next deadline. Returns the count. */
int ht_http_pollfds(struct pollfd *fds, int *timeout_ms);
/* Handle what poll() returned for those fds, and expired deadlines. */
void ht_http_service(const struct pollfd *fds, int n);

/* ---- What is served (serve.c) ----------------------------------------- */
enum ht_serve_kind { HT_SERVE_HEAP, HT_SERVE_ALLOCS, HT_SERVE_THREADS };
struct ht_serve_snap; /* heap values at one moment, for ?seconds= deltas */

/* A profile body: gzipped profile.proto (debug 0) or text (debug >= 1).
 * base: the earlier snapshot for a delta, or NULL. 0 or -errno. */
int ht_serve_profile(enum ht_serve_kind kind, int debug, const struct ht_serve_snap *base,
                     struct ht_buf *out);
int ht_serve_snap_take(struct ht_serve_snap **out);
void ht_serve_snap_free(struct ht_serve_snap *s);
/* "0xA+0xB..." -> "num_symbols: 1\n" + "0xA name\n" per resolved address. */
int ht_serve_symbols(const char *list, size_t len, struct ht_buf *out);

#endif
