/*
 * signals.h - heaptap's dump signal, and what the program sees of it.
 *
 * heaptap installs its handler on the dump signal (HEAPTAP_SIGNAL, SIGUSR2 by
 * default) only where the disposition is still the default. While it is in
 * place the program is shown the default: sigaction(), signal(), sigset(),
 * bsd_signal() and sysv_signal() report SIG_DFL, and the program's own
 * SIG_DFL is recorded rather than installed, so the signal keeps meaning
 * "dump" (that is what preloading heaptap asked for). A handler of the
 * program's own, or SIG_IGN, always wins: heaptap steps aside with one line,
 * and takes the signal back if the program later restores SIG_DFL.
 */
#ifndef HT_SIGNALS_H
#define HT_SIGNALS_H

#include <signal.h>
#include <stdbool.h>

/* At start-up: install heaptap's handler if the disposition is the default. */
void ht_signal_setup(void);

/* Is sig heaptap's dump signal (installed or not)? The wrappers below are
 * only needed for it. */
bool ht_signal_watched(int sig);

/* Is heaptap's handler in place now? */
bool ht_signal_installed(void);

/* sigaction() for the dump signal, as the program sees it: 0, or -1 with
 * errno, exactly like sigaction(). */
int ht_signal_action(int sig, const struct sigaction *act, struct sigaction *old);

/* glibc's signal()/bsd_signal(), sysv_signal() and sigset() for the dump
 * signal, built on ht_signal_action as glibc builds them on sigaction. */
__sighandler_t ht_signal_bsd(int sig, __sighandler_t handler);
__sighandler_t ht_signal_sysv(int sig, __sighandler_t handler);
__sighandler_t ht_signal_sigset(int sig, __sighandler_t disp);

#endif
