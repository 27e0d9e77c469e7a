/*
 * rel_lastthread.c - heaptap never keeps a process alive, and never holds
 * back its signals.
 *
 * glibc ends a process when the count of its threads drops to zero: the
 * last thread to end (pthread_exit, return from its start routine, or
 * cancellation) calls exit(0) from start_thread. A thread heaptap started
 * is in that count, so while it lives on, a program whose main thread
 * called pthread_exit never ends; and since heaptap's thread blocks every
 * signal, a SIGTERM sent to such a process stays pending for ever. Each
 * mode ends the program's last thread another way; the driver
 * (test_lastthread.py) compares the exit status and the time taken with a
 * run without heaptap.
 *
 *   rel_lastthread mainexit
 *       main calls pthread_exit(NULL) while a worker allocates, sleeps
 *       200 ms and returns: the worker's return ends the process, status 0.
 *   rel_lastthread forkthread
 *       A thread (not main) forks; in the child that thread allocates for a
 *       while and returns from its start routine, which ends the child with
 *       status 0. The parent waits and prints the child's status.
 *   rel_lastthread cancel
 *       main calls pthread_exit; worker B allocates, sleeps 200 ms, cancels
 *       worker A and returns; A, which held cancellation off until B had
 *       ended, then acts on the request: the last thread ends cancelled.
 *   rel_lastthread sigterm
 *       main calls pthread_exit; a worker sleeps in a loop for ever, SIGTERM
 *       at its default disposition: the driver's SIGTERM must kill the
 *       process at once.
 *   rel_lastthread sigterm_late
 *       As mainexit (the worker returns after 200 ms); the driver sends
 *       SIGTERM a second later, when the process should have exited by
 *       itself: a process kept alive by heaptap's thread alone never dies of
 *       it either, since heaptap's thread blocks it.
 *
 * Every line is key=value on stdout; the worker of mainexit prints an
 * "expect worker_alloc ..." line for an exact check of the at-exit dump.
 */
#include "rel_common.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/wait.h>

#define WORKER_BLOCKS 300
#define WORKER_FREED  100
#define WORKER_SIZE   64

static void *live[WORKER_BLOCKS];
static void *keep[64];

static NOINLINE void *worker_alloc(size_t n)
{
	void *p = malloc(n);
	rel_touch(p, n);
	return p;
}

static NOINLINE void *main_alloc(size_t n)
{
	void *p = malloc(n);
	rel_touch(p, n);
	return p;
}

/* Some work that heaptap samples (at rate 1: every block), so that its
 * thread has a reason to be there. */
static void main_work(void)
{
	for (int i = 0; i < 64; i++)
		keep[i] = main_alloc(32 + (size_t)i * 8);
}

/* WORKER_BLOCKS blocks from worker_alloc, WORKER_FREED of them freed again:
 * the at-exit dump at rate 1 must show exactly the rest in use. */
static void worker_work(void)
{
	for (int i = 0; i < WORKER_BLOCKS; i++)
		live[i] = worker_alloc(WORKER_SIZE);
	for (int i = 0; i < WORKER_FREED; i++) {
		free(live[i]);
		live[i] = NULL;
	}
	say("expect worker_alloc %d %d %d %d", (WORKER_BLOCKS - WORKER_FREED) * WORKER_SIZE,
	    WORKER_BLOCKS - WORKER_FREED, WORKER_BLOCKS * WORKER_SIZE, WORKER_BLOCKS);
}

/* Churn for a while: samples keep coming, so heaptap (in a fork child) has
 * every chance to start its thread before this one ends. */
static void churn(long ms)
{
	double until = rel_now() + ms / 1000.0;
	while (rel_now() < until) {
		for (int i = 0; i < 50; i++)
			free(worker_alloc(16 + (size_t)i * 24));
		rel_msleep(5);
	}
}

/* ---------------------------------------------------------------- mainexit */

static void *returning_worker(void *arg)
{
	(void)arg;
	worker_work();
	rel_msleep(200);
	say("worker_done=1");
	return NULL;
}

static int mode_mainexit(void)
{
	main_work();
	pthread_t t;
	if (pthread_create(&t, NULL, returning_worker, NULL) != 0)
		return 3;
	say("ready pid=%d", (int)getpid());
	pthread_exit(NULL);
}

/* -------------------------------------------------------------- forkthread */

static _Atomic pid_t forked;

static void *forking_thread(void *arg)
{
	(void)arg;
	worker_work();
	pid_t pid = fork();
	if (pid < 0) {
		say("fork_failed=%d", errno);
		return NULL;
	}
	if (pid == 0) {
		/* The child: this thread is its only one. Returning from the
		 * start routine must end the child with status 0. */
		churn(150);
		say("child_returning=1 child=%d", (int)getpid());
		return NULL;
	}
	atomic_store(&forked, pid);
	return NULL;
}

static int mode_forkthread(void)
{
	main_work();
	pthread_t t;
	if (pthread_create(&t, NULL, forking_thread, NULL) != 0)
		return 3;
	pthread_join(t, NULL);
	pid_t child = atomic_load(&forked);
	if (child <= 0)
		return 4;
	say("ready pid=%d child=%d", (int)getpid(), (int)child);
	/* No time limit here: a child that never ends keeps this waitpid
	 * waiting, and the driver's watchdog then prints the backtraces of
	 * both processes. */
	int st = 0;
	while (waitpid(child, &st, 0) < 0 && errno == EINTR)
		;
	say("child_exited=%d child_status=%d child_signal=%d", WIFEXITED(st),
	    WIFEXITED(st) ? WEXITSTATUS(st) : -1, WIFSIGNALED(st) ? WTERMSIG(st) : 0);
	return 0;
}

/* ------------------------------------------------------------------ cancel */

static pthread_t thread_a, thread_b;
static _Atomic int handles_set;

static void note_cancelled(void *arg)
{
	(void)arg;
	say("cancelled=1");
}

static void *cancelled_thread(void *arg)
{
	(void)arg;
	int old;
	/* Cancellation off until B has ended, so that the cancellation B asks
	 * for is, for certain, the last thread's ending. */
	pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &old);
	pthread_cleanup_push(note_cancelled, NULL);
	while (!atomic_load(&handles_set))
		rel_msleep(1);
	pthread_join(thread_b, NULL);
	pthread_setcancelstate(PTHREAD_CANCEL_ENABLE, &old);
	/* The pending request is acted on here (a cancellation point). */
	for (;;)
		pause();
	pthread_cleanup_pop(0);
	return NULL;
}

static void *cancelling_thread(void *arg)
{
	(void)arg;
	worker_work();
	while (!atomic_load(&handles_set))
		rel_msleep(1);
	rel_msleep(200);
	pthread_cancel(thread_a);
	say("cancel_sent=1");
	return NULL;
}

static int mode_cancel(void)
{
	main_work();
	if (pthread_create(&thread_a, NULL, cancelled_thread, NULL) != 0 ||
	    pthread_create(&thread_b, NULL, cancelling_thread, NULL) != 0)
		return 3;
	atomic_store(&handles_set, 1);
	say("ready pid=%d", (int)getpid());
	pthread_exit(NULL);
}

/* ----------------------------------------------------------------- sigterm */

static void *sleeping_worker(void *arg)
{
	(void)arg;
	worker_work();
	say("worker_ready=1");
	for (;;) {
		rel_msleep(50);
		free(worker_alloc(100));
	}
	return NULL;
}

static int mode_sigterm(int late)
{
	main_work();
	/* The default disposition, whatever the caller left us. */
	signal(SIGTERM, SIG_DFL);
	sigset_t s;
	sigemptyset(&s);
	sigaddset(&s, SIGTERM);
	pthread_sigmask(SIG_UNBLOCK, &s, NULL);
	pthread_t t;
	if (pthread_create(&t, NULL, late ? returning_worker : sleeping_worker, NULL) != 0)
		return 3;
	say("ready pid=%d", (int)getpid());
	pthread_exit(NULL);
}

int main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "";
	if (strcmp(mode, "mainexit") == 0)
		return mode_mainexit();
	if (strcmp(mode, "forkthread") == 0)
		return mode_forkthread();
	if (strcmp(mode, "cancel") == 0)
		return mode_cancel();
	if (strcmp(mode, "sigterm") == 0)
		return mode_sigterm(0);
	if (strcmp(mode, "sigterm_late") == 0)
		return mode_sigterm(1);
	fprintf(stderr, "usage: rel_lastthread mainexit|forkthread|cancel|sigterm|sigterm_late\n");
	return 2;
}
