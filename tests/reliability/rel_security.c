/*
 * rel_security.c - AT_SECURE, close-on-exec and hostile environment values.
 *
 *   rel_security inert          allocate a lot (heaptap would sample and
 *                               start its thread), wait, then print the
 *                               thread count, AT_SECURE, what the API
 *                               answers and whether SIGUSR2 is handled.
 *   rel_security cloexec LSFD   allocate, dump through the API and through
 *                               the signal (so heaptap's thread ran and
 *                               wrote), then exec LSFD, which lists the fds
 *                               it inherited.
 *   rel_security env            allocate, dump, print heaptap's rate.
 */
#include "rel_common.h"

#include <signal.h>
#include <sys/auxv.h>

static NOINLINE void *sec_alloc(size_t n)
{
	void *p = malloc(n);
	rel_touch(p, n);
	return p;
}

static int mode_inert(void)
{
	void *keep[2000];
	for (int i = 0; i < 2000; i++)
		keep[i] = sec_alloc(4096 + (size_t)i);
	for (int i = 0; i < 200; i++) {
		free(sec_alloc(100000));
		rel_msleep(2);
	}
	struct sigaction cur;
	sigaction(SIGUSR2, NULL, &cur);
	struct heaptap_stats s;
	int st = rel_stats(&s);
	int d = rel_dump();
	say("at_secure=%lu tasks=%d usr2_default=%d stats=%d dump=%d", getauxval(AT_SECURE),
	    rel_task_count(), cur.sa_handler == SIG_DFL, st, d);
	for (int i = 0; i < 2000; i++)
		free(keep[i]);
	return 0;
}

static int mode_cloexec(const char *lsfd, const char *dir)
{
	for (int i = 0; i < 2000; i++)
		free(sec_alloc(1000 + (size_t)i));
	int r = rel_dump();
	raise(SIGUSR2);
	char path[4200];
	snprintf(path, sizeof(path), "%s/heaptap.%d.0002.threads.pb.gz", dir, (int)getpid());
	double t0 = rel_now();
	while (access(path, F_OK) != 0 && rel_now() - t0 < 20) {
		free(sec_alloc(5000));
		rel_msleep(2);
	}
	say("dump=%d signal_dump=%d", r, access(path, F_OK) == 0);
	fflush(stdout);
	/* The lister runs without heaptap: what it sees is only what survived. */
	unsetenv("LD_PRELOAD");
	execl(lsfd, lsfd, (char *)NULL);
	perror("execl");
	return 1;
}

static int mode_env(void)
{
	for (int i = 0; i < 1000; i++)
		free(sec_alloc(100 + (size_t)i));
	struct heaptap_stats s;
	int st = rel_stats(&s);
	int d = rel_dump();
	say("stats=%d rate=%llu dump=%d", st, (unsigned long long)s.rate, d);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc >= 2 && strcmp(argv[1], "inert") == 0)
		return mode_inert();
	if (argc >= 4 && strcmp(argv[1], "cloexec") == 0)
		return mode_cloexec(argv[2], argv[3]);
	if (argc >= 2 && strcmp(argv[1], "env") == 0)
		return mode_env();
	fprintf(stderr, "usage: rel_security inert | cloexec LSFD DIR | env\n");
	return 2;
}
