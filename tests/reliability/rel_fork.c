/*
 * rel_fork.c - fork under heaptap.
 *
 *   rel_fork child  DIR   a thread is alive and allocating; the process
 *                          forks; the child frees parent blocks, allocates,
 *                          creates a thread, calls heaptap_dump() (must
 *                          write heaptap.<childpid>.0001.*), then raises the
 *                          dump signal and allocates until its flusher wrote
 *                          .0002; the parent dumps afterwards (its own .0001).
 *   rel_fork deadlock SECS  glibc tst-malloc-fork-deadlock shape: fork
 *                          threads, malloc threads, a getline thread and an
 *                          fflush(NULL) thread, for SECS seconds; every child
 *                          mallocs and exits 17.
 *   rel_fork sigfork N      glibc tst-mallocfork2 shape: single-threaded; a
 *                          sender process signals us N times; the handler
 *                          forks (the child _exits) and reaps, while the
 *                          main loop mallocs and frees.
 *   rel_fork nestfork N    N times: fork a child that signals us at once
 *                          and exits; the signal mostly lands while our own
 *                          fork() is still running its handlers, and the
 *                          handler forks again (a fork nested in a fork on
 *                          one thread). Prints signals=, handler_failures= and tasks=.
 */
#include "rel_common.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/stat.h>
#include <sys/wait.h>

static _Atomic int stop;

/* ------------------------------------------------------------ child mode */

static NOINLINE void *parent_alloc(size_t n)
{
	void *p = malloc(n);
	rel_touch(p, n);
	return p;
}

static NOINLINE void *child_alloc(size_t n)
{
	void *p = malloc(n);
	rel_touch(p, n);
	return p;
}

static void *spinner(void *arg)
{
	(void)arg;
	while (!atomic_load(&stop))
		free(parent_alloc(100 + (rand() & 1023)));
	return NULL;
}

static void *child_thread(void *arg)
{
	(void)arg;
	for (int i = 0; i < 100; i++)
		child_alloc(3000);
	return NULL;
}

static int exists(const char *dir, int pid, int seq, const char *kind)
{
	char path[4200];
	snprintf(path, sizeof(path), "%s/heaptap.%d.%04d.%s.pb.gz", dir, pid, seq, kind);
	struct stat st;
	return stat(path, &st) == 0;
}

static int mode_child(const char *dir)
{
	enum { N = 200 };
	void *blocks[N];
	for (int i = 0; i < N; i++)
		blocks[i] = parent_alloc(1000 + i);
	pthread_t th;
	pthread_create(&th, NULL, spinner, NULL);
	rel_msleep(100);
	pid_t pid = fork();
	if (pid < 0) {
		perror("fork");
		return 1;
	}
	if (pid == 0) {
		/* The child: only this thread exists here. */
		for (int i = 0; i < N; i += 2)
			free(blocks[i]);
		/* 10 MB: at the default rate (one sample per 512 KiB on average)
		 * the chance of no sample at all is e^-20. */
		for (int i = 0; i < 5000; i++)
			child_alloc(2000);
		pthread_t ct;
		if (pthread_create(&ct, NULL, child_thread, NULL) == 0)
			pthread_join(ct, NULL);
		int r = rel_dump();
		say("child pid=%d dump1=%d", (int)getpid(), r);
		/* The signal path in the child: its flusher starts afresh. */
		raise(SIGUSR2);
		double t0 = rel_now();
		int ok = 0;
		while (rel_now() - t0 < 20) {
			free(child_alloc(4096));
			if (exists(dir, getpid(), 2, "threads")) {
				ok = 1;
				break;
			}
			rel_msleep(1);
		}
		say("child signal_dump=%d", ok);
		_exit(0);
	}
	int st = 0;
	waitpid(pid, &st, 0);
	atomic_store(&stop, 1);
	pthread_join(th, NULL);
	say("parent child_status=%d", WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
	int r = rel_dump();
	say("parent pid=%d dump=%d", (int)getpid(), r);
	for (int i = 1; i < N; i += 2)
		free(blocks[i]);
	return 0;
}

/* --------------------------------------------------------- deadlock mode */

static FILE *line_file;
static _Atomic long forks_done, bad_children;

static void *fork_thread(void *arg)
{
	(void)arg;
	while (!atomic_load(&stop)) {
		pid_t pid = fork();
		if (pid < 0) {
			rel_msleep(1);
			continue;
		}
		if (pid == 0) {
			void *p = malloc(100);
			free(malloc(70000));
			free(p);
			_exit(17);
		}
		int st;
		if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 17)
			atomic_fetch_add(&bad_children, 1);
		atomic_fetch_add(&forks_done, 1);
	}
	return NULL;
}

static void *malloc_thread(void *arg)
{
	void *slots[64] = {0};
	rel_churn(&stop, (unsigned)(uintptr_t)arg, slots, 64, 20000, malloc);
	return NULL;
}

static void *getline_thread(void *arg)
{
	(void)arg;
	char *line = NULL;
	size_t cap = 0;
	while (!atomic_load(&stop)) {
		flockfile(line_file);
		rewind(line_file);
		while (getline(&line, &cap, line_file) > 0)
			;
		funlockfile(line_file);
		free(line);
		line = NULL;
		cap = 0;
	}
	return NULL;
}

static void *fflush_thread(void *arg)
{
	(void)arg;
	while (!atomic_load(&stop))
		fflush(NULL);
	return NULL;
}

static int mode_deadlock(int secs)
{
	line_file = tmpfile();
	if (!line_file) {
		perror("tmpfile");
		return 1;
	}
	for (int i = 0; i < 4; i++) {
		for (int j = 0; j < 50000; j++)
			fputc('a' + (j % 26), line_file);
		fputc('\n', line_file);
	}
	fflush(line_file);
	pthread_t th[16];
	int n = 0;
	for (int i = 0; i < 3; i++)
		pthread_create(&th[n++], NULL, fork_thread, NULL);
	for (int i = 0; i < 4; i++)
		pthread_create(&th[n++], NULL, malloc_thread, (void *)(uintptr_t)(i + 1));
	for (int i = 0; i < 2; i++)
		pthread_create(&th[n++], NULL, getline_thread, NULL);
	pthread_create(&th[n++], NULL, fflush_thread, NULL);
	say("ready");
	rel_msleep(secs * 1000L);
	atomic_store(&stop, 1);
	for (int i = 0; i < n; i++)
		pthread_join(th[i], NULL);
	say("forks=%ld bad_children=%ld", atomic_load(&forks_done), atomic_load(&bad_children));
	return atomic_load(&bad_children) ? 1 : 0;
}

/* ---------------------------------------------------------- sigfork mode */

static volatile sig_atomic_t sigs_seen, handler_failures;

static void fork_handler(int sig)
{
	(void)sig;
	int saved = errno;
	pid_t pid = fork();
	if (pid == 0)
		_exit(0);
	if (pid < 0)
		handler_failures++;
	else {
		int st;
		if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
			handler_failures++;
	}
	sigs_seen++;
	errno = saved;
}

static int mode_sigfork(int nsig)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = fork_handler;
	sa.sa_flags = SA_RESTART;
	sigaction(SIGUSR1, &sa, NULL);
	pid_t me = getpid();
	pid_t sender = fork();
	if (sender == 0) {
		for (int i = 0; i < nsig; i++) {
			kill(me, SIGUSR1);
			rel_msleep(1);
		}
		_exit(0);
	}
	enum { SLOTS = 1009 };
	static void *slots[SLOTS];
	unsigned seed = 1;
	double t0 = rel_now();
	long iters = 0;
	while (1) {
		int st;
		if (waitpid(sender, &st, WNOHANG) == sender)
			break;
		unsigned i = rand_r(&seed) % SLOTS;
		free(slots[i]);
		slots[i] = malloc(rand_r(&seed) % 70000 + 1);
		iters++;
		if (rel_now() - t0 > 60) {
			say("timeout");
			return 1;
		}
	}
	for (int i = 0; i < SLOTS; i++)
		free(slots[i]);
	say("iterations=%ld signals=%d handler_failures=%d tasks=%d", iters, (int)sigs_seen,
	    (int)handler_failures, rel_task_count());
	return handler_failures ? 1 : 0;
}

/* ---------------------------------------------------------- nestfork mode */

static int mode_nestfork(int n)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = fork_handler;
	sigaction(SIGUSR1, &sa, NULL);
	pid_t me = getpid();
	for (int i = 0; i < n; i++) {
		free(malloc(100 + (size_t)i));
		pid_t c = fork();
		if (c == 0) {
			kill(me, SIGUSR1);
			_exit(0);
		}
		int st;
		while (c > 0 && waitpid(c, &st, 0) < 0 && errno == EINTR)
			;
	}
	rel_msleep(50);
	say("signals=%d handler_failures=%d tasks=%d", (int)sigs_seen, (int)handler_failures,
	    rel_task_count());
	return handler_failures != 0;
}

int main(int argc, char **argv)
{
	if (argc >= 3 && strcmp(argv[1], "child") == 0)
		return mode_child(argv[2]);
	if (argc >= 3 && strcmp(argv[1], "deadlock") == 0)
		return mode_deadlock(atoi(argv[2]));
	if (argc >= 3 && strcmp(argv[1], "nestfork") == 0)
		return mode_nestfork(atoi(argv[2]));
	if (argc >= 3 && strcmp(argv[1], "sigfork") == 0)
		return mode_sigfork(atoi(argv[2]));
	fprintf(stderr, "usage: rel_fork child DIR | deadlock SECS | sigfork N\n");
	return 2;
}
