/*
 * rel_unjoined.c - threads that ended but were never joined or detached.
 *
 * glibc keeps such a thread's stack until it is joined: "exited but never
 * joined" is a thread leak too. heaptap's thread profile counts them under
 * their creation stack with the label state=unjoined, live threads with
 * state=running, and gives both totals in the comments. Threads that were
 * joined (pthread_join, tryjoin, timedjoin, clockjoin) or detached (at
 * creation, by their creator, by themselves) count nowhere once ended.
 *
 * Dump 1: UNJOINED ended threads from spawn_unjoined, RUNNING blocked ones
 * from spawn_running, every other kind ended and settled. Then the unjoined
 * ones are joined and the running ones released and joined: dump 2 has
 * neither. Prints "dump1=", "dump2=" and "done=1".
 */
#include "rel_common.h"

#include <pthread.h>
#include <stdatomic.h>

#define UNJOINED 5
#define RUNNING  3

static _Atomic int ended, release;

static void *quick(void *arg)
{
	(void)arg;
	atomic_fetch_add(&ended, 1);
	return NULL;
}

static void *self_detach(void *arg)
{
	pthread_detach(pthread_self());
	return quick(arg);
}

static void *blocked(void *arg)
{
	(void)arg;
	while (!atomic_load(&release))
		rel_msleep(5);
	return NULL;
}

NOINLINE static void spawn_unjoined(pthread_t *t)
{
	for (int i = 0; i < UNJOINED; i++)
		pthread_create(&t[i], NULL, quick, NULL);
}

NOINLINE static void spawn_running(pthread_t *t)
{
	for (int i = 0; i < RUNNING; i++)
		pthread_create(&t[i], NULL, blocked, NULL);
}

/* Every way of settling a thread; each ends before the dump. */
NOINLINE static int spawn_settled(void)
{
	pthread_t t[6];
	pthread_attr_t det;
	pthread_attr_init(&det);
	pthread_attr_setdetachstate(&det, PTHREAD_CREATE_DETACHED);
	pthread_create(&t[0], NULL, quick, NULL);
	pthread_create(&t[1], &det, quick, NULL);
	pthread_create(&t[2], NULL, self_detach, NULL);
	pthread_create(&t[3], NULL, quick, NULL);
	pthread_create(&t[4], NULL, quick, NULL);
	pthread_create(&t[5], NULL, quick, NULL);
	pthread_attr_destroy(&det);
	pthread_detach(t[3]);
	int bad = pthread_join(t[0], NULL) != 0;
	while (atomic_load(&ended) < 6)
		rel_msleep(2);
	rel_msleep(20);
	bad += pthread_tryjoin_np(t[4], NULL) != 0;
	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += 5;
	bad += pthread_timedjoin_np(t[5], NULL, &until) != 0;
	return bad;
}

int main(void)
{
	pthread_t unj[UNJOINED], run[RUNNING];
	int bad = spawn_settled();
	atomic_store(&ended, 0);
	spawn_unjoined(unj);
	spawn_running(run);
	while (atomic_load(&ended) < UNJOINED)
		rel_msleep(2);
	rel_msleep(50); /* let them finish ending */
	say("expect_unjoined=%d expect_running=%d settle_failures=%d", UNJOINED, RUNNING, bad);
	say("dump1=%d", rel_dump());
	for (int i = 0; i < UNJOINED; i++)
		pthread_join(unj[i], NULL);
	atomic_store(&release, 1);
	for (int i = 0; i < RUNNING; i++)
		pthread_join(run[i], NULL);
	say("dump2=%d", rel_dump());
	say("done=1");
	return 0;
}
