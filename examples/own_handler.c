/*
 * own_handler.c - an application with its own SIGUSR2 handler.
 *
 * nginx, PostgreSQL and the JVM use SIGUSR2 for their own purposes. heaptap
 * must never take such a handler away: when the application installs its own
 * handler, the application's handler runs and heaptap says (in one line) that
 * SIGUSR2 no longer requests a dump; heaptap_dump() and HEAPTAP_INTERVAL
 * still work.
 *
 * The program installs its handler, prints "ready", then waits up to
 * --wait seconds (default 5) for SIGUSR2 (send it with kill -USR2, or pass
 * --raise to send it to itself), prints how many times its handler ran, and
 * exits 0 if it ran at least once.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "heaptap.h"

static volatile sig_atomic_t handled;

static void on_usr2(int sig)
{
	(void)sig;
	handled++;
}

int main(int argc, char **argv)
{
	double wait = 5.0;
	int self = 0;

	setvbuf(stdout, NULL, _IOLBF, 0);
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--raise"))
			self = 1;
		else if (!strcmp(argv[i], "--wait") && i + 1 < argc)
			wait = strtod(argv[++i], NULL);
	}

	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_usr2;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGUSR2, &sa, NULL) != 0) {
		perror("sigaction");
		return 1;
	}
	/* Something to allocate, so a profile has content. */
	void *keep = malloc(100000);
	printf("ready pid %d\n", (int)getpid());
	if (self)
		kill(getpid(), SIGUSR2);

	struct timespec tick = {0, 10 * 1000 * 1000};
	for (int i = 0; i < (int)(wait * 100) && !handled; i++)
		nanosleep(&tick, NULL);

	int rc = HEAPTAP_CALL(heaptap_dump);
	printf("handler ran %d times; dump rc=%d\n", (int)handled, rc);
	free(keep);
	return handled ? 0 : 1;
}
