/*
 * log.h - heaptap's diagnostics.
 *
 * One line per message on stderr, always starting with "heaptap: ", formatted
 * into a stack buffer and written with write(2): no stdio, no malloc, safe from
 * any heaptap thread. Messages are capped so a misbehaving loop cannot flood
 * the application's stderr.
 */
#ifndef HT_LOG_H
#define HT_LOG_H

__attribute__((format(printf, 1, 2))) void ht_log(const char *fmt, ...);

/* Tests may silence or count messages. */
extern int ht_log_fd;         /* default 2 */
extern unsigned ht_log_count; /* messages written so far */

#endif
