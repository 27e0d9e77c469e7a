/*
 * signals.c - the dump signal: heaptap's handler, and the disposition the
 * program is shown while it is in place. See signals.h.
 *
 * The handler only asks heaptap's thread for a dump (an atomic store and a
 * futex wake, both async-signal-safe). The program's view is one struct
 * sigaction, `view`: what the program last set (or the default it found),
 * reported by every query while heaptap's handler is installed. Python's
 * test_threadsignals saves the SIGUSR2 disposition and restores it later;
 * had it been shown heaptap's C handler it could not restore it (a
 * TypeError). No lock: sigaction() is async-signal-safe and may be called
 * from a handler, and two threads racing to set the dump signal's
 * disposition race without heaptap too.
 */
#include "signals.h"

#include "flusher.h"
#include "log.h"
#include "options.h"
#include "real.h"
#include "tls.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#ifndef SA_RESTORER
#define SA_RESTORER 0x04000000 /* the kernel reports it on glibc's handlers */
#endif

static int dump_sig;                /* HEAPTAP_SIGNAL once set up; 0: none */
static _Atomic bool installed;      /* heaptap's handler is the kernel's */
static _Atomic bool stepped_logged; /* the "leaves it alone" line was said */
static struct sigaction view;       /* what the program sees meanwhile */
static void (*restorer)(void);      /* glibc's, as reported with our handler */

static void on_signal(int sig)
{
	(void)sig;
	int saved = errno;
	ht_flusher_request_dump();
	errno = saved;
}

static const char *sig_name(int sig, char *buf, size_t n)
{
	const char *abbrev = sigabbrev_np(sig);
	if (abbrev)
		snprintf(buf, n, "SIG%s", abbrev);
	else
		snprintf(buf, n, "signal %d", sig);
	return buf;
}

static void say_stepping_aside(const char *how)
{
	bool expect = false;
	char name[32];
	if (atomic_compare_exchange_strong(&stepped_logged, &expect, true))
		ht_log("the program %s %s handler; heaptap leaves it alone (set HEAPTAP_SIGNAL to another signal, or call heaptap_dump())",
		       how, sig_name(dump_sig, name, sizeof(name)));
}

/* Put heaptap's handler in place; *old gets what was there. */
static int install(struct sigaction *old)
{
	struct sigaction sa, mine;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sa.sa_flags = SA_RESTART | SA_ONSTACK; /* SA_ONSTACK: cgo requires it */
	sigemptyset(&sa.sa_mask);
	if (ht_real.sigaction(dump_sig, &sa, old) != 0)
		return -errno;
	if (ht_real.sigaction(dump_sig, NULL, &mine) == 0)
		restorer = mine.sa_restorer;
	atomic_store(&installed, true);
	return 0;
}

/* What the kernel would report back for act, had it been installed. */
static void remember(const struct sigaction *act)
{
	view = *act;
	view.sa_flags |= SA_RESTORER;
	view.sa_restorer = restorer;
}

void ht_signal_setup(void)
{
	int sig = ht_opt.signal;
	if (sig <= 0 || !ht_real.sigaction)
		return;
	struct sigaction old;
	if (ht_real.sigaction(sig, NULL, &old) != 0)
		return;
	dump_sig = sig;
	if ((old.sa_flags & SA_SIGINFO) || old.sa_handler != SIG_DFL) {
		say_stepping_aside("already has its own");
		return;
	}
	view = old;
	install(NULL);
}

bool ht_signal_watched(int sig)
{
	return sig > 0 && sig == dump_sig;
}

bool ht_signal_installed(void)
{
	return atomic_load_explicit(&installed, memory_order_relaxed);
}

static bool is_default(const struct sigaction *act)
{
	return !(act->sa_flags & SA_SIGINFO) && act->sa_handler == SIG_DFL;
}

int ht_signal_action(int sig, const struct sigaction *act, struct sigaction *old)
{
	if (!ht_signal_watched(sig))
		return ht_real.sigaction(sig, act, old);
	if (atomic_load(&installed)) {
		struct sigaction prev = view;
		if (act && !is_default(act)) {
			/* The program's own handler (or SIG_IGN) wins. */
			if (ht_real.sigaction(sig, act, NULL) != 0)
				return -1;
			atomic_store(&installed, false);
			say_stepping_aside("installs its own");
		} else if (act) {
			remember(act);
		}
		if (old)
			*old = prev;
		return 0;
	}
	if (act && is_default(act)) {
		/* The program goes back to the default: the signal means "dump"
		 * again, as preloading heaptap asked. */
		struct sigaction prev;
		int r = install(&prev);
		if (r != 0) {
			errno = -r;
			return -1;
		}
		remember(act);
		if (old)
			*old = prev;
		return 0;
	}
	return ht_real.sigaction(sig, act, old);
}

/* signal()-style calls as glibc builds them on sigaction: the handler with
 * these flags (and the signal itself masked while it runs, for BSD
 * semantics); the old handler back. */
static __sighandler_t set_handler(int sig, __sighandler_t handler, int flags, bool mask_self)
{
	if (handler == SIG_ERR || sig < 1 || sig >= NSIG) {
		errno = EINVAL;
		return SIG_ERR;
	}
	struct sigaction act, old;
	memset(&act, 0, sizeof(act));
	act.sa_handler = handler;
	sigemptyset(&act.sa_mask);
	if (mask_self)
		sigaddset(&act.sa_mask, sig);
	act.sa_flags = flags;
	if (ht_signal_action(sig, &act, &old) != 0)
		return SIG_ERR;
	return old.sa_handler;
}

/* glibc's signal()/bsd_signal() (sysdeps/posix/signal.c); siginterrupt() is
 * not tracked here (it changes the flags only). */
__sighandler_t ht_signal_bsd(int sig, __sighandler_t handler)
{
	return set_handler(sig, handler, SA_RESTART, true);
}

/* sysv_signal(): one-shot, not masked while it runs, no restart. */
__sighandler_t ht_signal_sysv(int sig, __sighandler_t handler)
{
	return set_handler(sig, handler, SA_RESETHAND | SA_NODEFER, false);
}

/* sigset(): SIG_HOLD blocks the signal, anything else sets the disposition
 * and unblocks it; the result is SIG_HOLD if it was blocked before. */
__sighandler_t ht_signal_sigset(int sig, __sighandler_t disp)
{
	sigset_t set, oset;
	sigemptyset(&set);
	if (sigaddset(&set, sig) < 0)
		return SIG_ERR;
	struct sigaction old;
	if (disp == SIG_HOLD) {
		if (sigprocmask(SIG_BLOCK, &set, &oset) < 0)
			return SIG_ERR;
		if (sigismember(&oset, sig))
			return SIG_HOLD;
		if (ht_signal_action(sig, NULL, &old) < 0)
			return SIG_ERR;
		return old.sa_handler;
	}
	struct sigaction act;
	memset(&act, 0, sizeof(act));
	act.sa_handler = disp;
	sigemptyset(&act.sa_mask);
	if (ht_signal_action(sig, &act, &old) < 0)
		return SIG_ERR;
	if (sigprocmask(SIG_UNBLOCK, &set, &oset) < 0)
		return SIG_ERR;
	return sigismember(&oset, sig) ? SIG_HOLD : old.sa_handler;
}
