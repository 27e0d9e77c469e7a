/*
 * rel_signals.c - heaptap's dump signal next to the application's.
 *
 *   rel_signals apphandler sigaction|signal N
 *       The program installs its own SIGUSR2 handler (after heaptap's
 *       start-up), then counts until it has seen N signals (the driver sends
 *       them) or 20 s pass. heaptap must leave the handler alone.
 *   rel_signals storm
 *       Three threads allocate while the driver sends a storm of SIGUSR2;
 *       on "done" from stdin the program waits until no dump has been
 *       written for a while, makes one last dump through the API and exits.
 *   rel_signals busy
 *       Allocates until stdin closes (the driver signals it meanwhile).
 */
#include "rel_common.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>

static volatile sig_atomic_t app_count;
static _Atomic int stop;

static void app_handler(int sig)
{
	(void)sig;
	app_count++;
}

static int mode_apphandler(const char *how, int n)
{
	free(malloc(100)); /* heaptap is up */
	if (strcmp(how, "signal") == 0) {
		signal(SIGUSR2, app_handler);
	} else {
		struct sigaction sa;
		memset(&sa, 0, sizeof(sa));
		sa.sa_handler = app_handler;
		sa.sa_flags = SA_RESTART;
		sigaction(SIGUSR2, &sa, NULL);
	}
	say("ready pid=%d", (int)getpid());
	double t0 = rel_now();
	while (app_count < n && rel_now() - t0 < 20) {
		free(malloc(1000));
		rel_msleep(1);
	}
	struct sigaction cur;
	sigaction(SIGUSR2, NULL, &cur);
	say("app_count=%d handler_kept=%d", (int)app_count, cur.sa_handler == app_handler);
	return app_count == n && cur.sa_handler == app_handler ? 0 : 1;
}

static NOINLINE void *storm_alloc(size_t n)
{
	void *p = malloc(n);
	rel_touch(p, n);
	return p;
}

static void *alloc_thread(void *arg)
{
	void *slots[128] = {0};
	rel_churn(&stop, (unsigned)(uintptr_t)arg, slots, 128, 20000, storm_alloc);
	return NULL;
}

static int mode_storm(void)
{
	pthread_t th[3];
	for (int i = 0; i < 3; i++)
		pthread_create(&th[i], NULL, alloc_thread, (void *)(uintptr_t)(i + 7));
	say("ready pid=%d", (int)getpid());
	char line[64];
	while (fgets(line, sizeof(line), stdin) && strncmp(line, "done", 4) != 0)
		;
	/* Let requested dumps finish: wait until the count stops moving. */
	struct heaptap_stats s;
	uint64_t last = (uint64_t)-1;
	int still = 0;
	for (int i = 0; i < 300 && still < 3; i++) {
		rel_stats(&s);
		still = s.dumps == last ? still + 1 : 0;
		last = s.dumps;
		rel_msleep(200);
	}
	atomic_store(&stop, 1);
	for (int i = 0; i < 3; i++)
		pthread_join(th[i], NULL);
	int r = rel_dump();
	rel_stats(&s);
	say("final_dump=%d dumps=%llu failures=%llu", r, (unsigned long long)s.dumps,
	    (unsigned long long)s.dump_failures);
	return 0;
}

static int mode_busy(void)
{
	pthread_t th[2];
	for (int i = 0; i < 2; i++)
		pthread_create(&th[i], NULL, alloc_thread, (void *)(uintptr_t)(i + 3));
	say("ready pid=%d", (int)getpid());
	char line[64];
	while (fgets(line, sizeof(line), stdin))
		;
	atomic_store(&stop, 1);
	for (int i = 0; i < 2; i++)
		pthread_join(th[i], NULL);
	say("done");
	return 0;
}

int main(int argc, char **argv)
{
	if (argc >= 4 && strcmp(argv[1], "apphandler") == 0)
		return mode_apphandler(argv[2], atoi(argv[3]));
	if (argc >= 2 && strcmp(argv[1], "storm") == 0)
		return mode_storm();
	if (argc >= 2 && strcmp(argv[1], "busy") == 0)
		return mode_busy();
	fprintf(stderr, "usage: rel_signals apphandler sigaction|signal N | storm | busy\n");
	return 2;
}
