/*
 * rel_sigview.c - heaptap's signal handler is invisible, and every dump
 * trigger is answered.
 *
 * heaptap installs a handler on its dump signal (SIGUSR2 unless
 * HEAPTAP_SIGNAL says otherwise) only where the disposition is SIG_DFL. A
 * program must not be able to tell: asked through sigaction(sig, NULL,
 * &old), signal(), sigset(), bsd_signal() or sysv_signal(), the disposition
 * is SIG_DFL, as it would be without heaptap. A program that sets SIG_DFL
 * itself changes nothing (heaptap's handler stays, the signal still dumps);
 * one that installs its own handler or SIG_IGN wins (the old value it gets
 * back is SIG_DFL); one that restores SIG_DFL afterwards gives heaptap its
 * handler back. sigset, bsd_signal and sysv_signal matter because glibc
 * implements them with its internal __sigaction: an interposed sigaction
 * or signal never sees those calls.
 *
 * Modes (each in a fresh process; HOW is sigaction, signal, sigset,
 * bsd_signal or sysv_signal; --sig=USR1 or a number picks the signal,
 * SIGUSR2 by default):
 *   rel_sigview [--sig=S] dfl HOW
 *       query= (sigaction(sig, NULL, &old)), then set SIG_DFL through HOW:
 *       old= is what that returned; after= is a query again. Then "ready";
 *       the program keeps allocating until stdin closes, then says alive=1.
 *   rel_sigview [--sig=S] own HOW handler|ign
 *       Install its own handler (or SIG_IGN) through HOW: old=, query=.
 *       "ready"; each signal its handler sees is counted (handled=N). On
 *       "restore" from stdin: restore SIG_DFL through HOW (restored_old=),
 *       query again (after=), "ready2"; at the end of stdin, alive=1 count=N.
 *   rel_sigview [--sig=S] hold
 *       sigset(sig, SIG_HOLD): old= (it must be SIG_DFL), query=.
 *   rel_sigview [--sig=S] idle pause|sleep [thread] [fork]
 *       Allocate a few hundred bytes, then idle, single-threaded unless
 *       "thread" (one more thread that only sleeps), in pause() or in a
 *       sleep loop, until a signal ends the process. "fork": the idling is
 *       done by a forked child (its pid in the ready line); the parent
 *       waits for it and prints how it ended.
 *
 * Dispositions print as dfl, ign, hold, err, mine (the program's handler)
 * or other (anything else: heaptap's handler showing through).
 */
#include "rel_common.h"

#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/wait.h>

/* Declared by <signal.h> only under old X/Open feature macros. */
extern __sighandler_t bsd_signal(int sig, __sighandler_t handler);
/* sigset is deprecated (and still used by old System V code): testing it
 * is the point. */
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"

static int sig = SIGUSR2;
static volatile sig_atomic_t handled;

static void app_handler(int s)
{
	(void)s;
	handled++;
}

static const char *disp_name(__sighandler_t h)
{
	if (h == SIG_DFL)
		return "dfl";
	if (h == SIG_IGN)
		return "ign";
	if (h == SIG_ERR)
		return "err";
	if (h == SIG_HOLD)
		return "hold";
	if (h == app_handler)
		return "mine";
	return "other";
}

/* The current disposition, asked the way most programs ask. */
static const char *query(unsigned long *flags)
{
	struct sigaction old;
	memset(&old, 0, sizeof(old));
	if (sigaction(sig, NULL, &old) != 0)
		return "err";
	if (flags)
		*flags = (unsigned long)old.sa_flags;
	if (old.sa_flags & SA_SIGINFO)
		return "other";
	return disp_name(old.sa_handler);
}

/* Set a disposition through HOW; the previous one as HOW reports it. */
static __sighandler_t set_via(const char *how, __sighandler_t h)
{
	if (strcmp(how, "sigaction") == 0) {
		struct sigaction sa, old;
		memset(&sa, 0, sizeof(sa));
		memset(&old, 0, sizeof(old));
		sa.sa_handler = h;
		sa.sa_flags = SA_RESTART;
		sigemptyset(&sa.sa_mask);
		if (sigaction(sig, &sa, &old) != 0)
			return SIG_ERR;
		/* An SA_SIGINFO handler is never the program's here: "other".
		 * (The cast through void (*)(void) keeps -Wcast-function-type
		 * quiet.) */
		return (old.sa_flags & SA_SIGINFO)
		               ? (__sighandler_t)(void (*)(void))old.sa_sigaction
		               : old.sa_handler;
	}
	if (strcmp(how, "signal") == 0)
		return signal(sig, h);
	if (strcmp(how, "sigset") == 0)
		return sigset(sig, h);
	if (strcmp(how, "bsd_signal") == 0)
		return bsd_signal(sig, h);
	if (strcmp(how, "sysv_signal") == 0)
		return sysv_signal(sig, h);
	fprintf(stderr, "rel_sigview: unknown HOW %s\n", how);
	exit(2);
}

static NOINLINE void *sv_alloc(size_t n)
{
	void *p = malloc(n);
	rel_touch(p, n);
	return p;
}

/* One line from stdin, allocating while waiting: a program that keeps
 * allocating gives heaptap every chance to serve a dump request, so these
 * modes test what the program sees, not how fast an idle one is served.
 * NULL at the end of stdin. */
static int handled_said; /* the count last printed (a signal may come at any time) */

static char *next_command(char *buf, size_t n)
{
	size_t len = 0;
	for (;;) {
		if (handled != handled_said) {
			handled_said = handled;
			say("handled=%d", handled_said);
		}
		struct pollfd pfd = {0, POLLIN, 0};
		int r = poll(&pfd, 1, 10);
		if (r < 0 && errno != EINTR)
			return NULL;
		if (r > 0) {
			char c;
			ssize_t k = read(0, &c, 1);
			if (k <= 0)
				return NULL;
			if (c == '\n') {
				buf[len] = '\0';
				return buf;
			}
			if (len + 1 < n)
				buf[len++] = c;
			continue;
		}
		free(sv_alloc(1000));
	}
}

static void drain_stdin(void)
{
	char line[64];
	while (next_command(line, sizeof(line)))
		;
}

static int mode_dfl(const char *how)
{
	free(malloc(100)); /* heaptap is up */
	unsigned long flags = 0;
	const char *q = query(&flags);
	say("query=%s query_flags=%#lx", q, flags);
	say("old=%s", disp_name(set_via(how, SIG_DFL)));
	say("after=%s", query(NULL));
	say("ready pid=%d", (int)getpid());
	drain_stdin();
	say("alive=1 handled=%d after_all=%s", (int)handled, query(NULL));
	return 0;
}

static int mode_own(const char *how, int ign)
{
	free(malloc(100));
	__sighandler_t mine = ign ? SIG_IGN : app_handler;
	say("old=%s", disp_name(set_via(how, mine)));
	say("query=%s", query(NULL));
	say("ready pid=%d", (int)getpid());
	char line[64];
	while (next_command(line, sizeof(line)) && strcmp(line, "restore") != 0)
		;
	say("count=%d", (int)handled);
	say("restored_old=%s", disp_name(set_via(how, SIG_DFL)));
	say("after=%s", query(NULL));
	say("ready2");
	drain_stdin();
	say("alive=1 count=%d after_all=%s", (int)handled, query(NULL));
	return 0;
}

static int mode_hold(void)
{
	free(malloc(100));
	say("old=%s", disp_name(sigset(sig, SIG_HOLD)));
	say("query=%s", query(NULL));
	sigset_t cur;
	sigprocmask(SIG_BLOCK, NULL, &cur);
	say("blocked=%d", sigismember(&cur, sig));
	return 0;
}

static void *sleeper(void *arg)
{
	(void)arg;
	for (;;)
		pause();
	return NULL;
}

static void *kept[3];

static NOINLINE void idle_alloc(void)
{
	for (int i = 0; i < 3; i++)
		kept[i] = sv_alloc(100);
}

static void idle_loop(int use_pause)
{
	for (;;) {
		if (use_pause)
			pause();
		else
			rel_msleep(100);
	}
}

static int mode_idle(int use_pause, int thread, int do_fork)
{
	idle_alloc();
	if (thread) {
		pthread_t t;
		if (pthread_create(&t, NULL, sleeper, NULL) != 0)
			return 3;
		pthread_detach(t);
	}
	if (!do_fork) {
		say("ready pid=%d threads=%d", (int)getpid(), rel_task_count());
		idle_loop(use_pause);
	}
	pid_t child = fork();
	if (child < 0)
		return 4;
	if (child == 0)
		idle_loop(use_pause);
	say("ready pid=%d child=%d", (int)getpid(), (int)child);
	int st = 0;
	while (waitpid(child, &st, 0) < 0 && errno == EINTR)
		;
	say("child_exited=%d child_signal=%d", WIFEXITED(st), WIFSIGNALED(st) ? WTERMSIG(st) : 0);
	return 0;
}

int main(int argc, char **argv)
{
	int a = 1;
	if (argc > a && strncmp(argv[a], "--sig=", 6) == 0) {
		const char *s = argv[a++] + 6;
		if (strncmp(s, "SIG", 3) == 0)
			s += 3;
		sig = strcmp(s, "USR1") == 0 ? SIGUSR1 : strcmp(s, "USR2") == 0 ? SIGUSR2 : atoi(s);
	}
	const char *mode = argc > a ? argv[a] : "";
	if (strcmp(mode, "dfl") == 0 && argc > a + 1)
		return mode_dfl(argv[a + 1]);
	if (strcmp(mode, "own") == 0 && argc > a + 2)
		return mode_own(argv[a + 1], strcmp(argv[a + 2], "ign") == 0);
	if (strcmp(mode, "hold") == 0)
		return mode_hold();
	if (strcmp(mode, "idle") == 0 && argc > a + 1) {
		int thread = 0, do_fork = 0;
		for (int i = a + 2; i < argc; i++) {
			thread |= strcmp(argv[i], "thread") == 0;
			do_fork |= strcmp(argv[i], "fork") == 0;
		}
		return mode_idle(strcmp(argv[a + 1], "pause") == 0, thread, do_fork);
	}
	fprintf(stderr, "usage: rel_sigview [--sig=S] dfl HOW | own HOW handler|ign | hold | "
	                "idle pause|sleep [thread] [fork]\n");
	return 2;
}
