/*
 * rel_exec.c - exec, posix_spawn, vfork and raw clone under heaptap.
 *
 *   rel_exec spawn N        phase 1, single-threaded: N raw clone(SIGCHLD)
 *                           children (no atfork handlers run) that malloc,
 *                           free and _exit; phase 2, with 2 allocating
 *                           threads: N posix_spawn and N vfork+execve of
 *                           /bin/true, and vfork children that setenv (which
 *                           mallocs) before _exit. Everything must be reaped.
 *   rel_exec forkexec       dump (.0001), fork+exec self as "execchild" and
 *                           posix_spawn self as "execchild", then dump again.
 *   rel_exec execchild      allocate in exec_child_alloc, dump, print pid.
 *   rel_exec execself 0|1   image 1 allocates in image1_alloc and dumps, then
 *                           execs itself in place (same pid) as image 2, which
 *                           allocates in image2_alloc and dumps.
 *   rel_exec execfail       execv of a missing file fails; heaptap still works.
 *   rel_exec daemon FILE    daemonize: fork, setsid, fork, chdir("/"),
 *                           close_range(3, ~0); then a pipe (it takes the
 *                           lowest free fds, which heaptap may have used
 *                           before) holds a sentinel while the daemon
 *                           allocates 100k times and dumps twice; the
 *                           sentinel must read back intact. The daemon writes
 *                           "sentinel=.. dumps=.. pid=.." to FILE; the
 *                           parent waits for it and prints it.
 */
#include "rel_common.h"

#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <stdatomic.h>
#include <sys/syscall.h>
#include <sys/wait.h>

extern char **environ;
static _Atomic int stop;
static const char *self;

static NOINLINE void *keep_alloc(size_t n)
{
	void *p = malloc(n);
	rel_touch(p, n);
	return p;
}

static void *alloc_loop(void *arg)
{
	void *slots[32] = {0};
	rel_churn(&stop, (unsigned)(uintptr_t)arg, slots, 32, 5000, malloc);
	return NULL;
}

static int reap(pid_t pid, int want)
{
	int st;
	if (waitpid(pid, &st, 0) != pid)
		return 0;
	return WIFEXITED(st) && WEXITSTATUS(st) == want;
}

/* One vfork child: exec /bin/true, or (setenv) call setenv and _exit(3). */
static NOINLINE int vfork_once(int setenv_child)
{
	static char *targv[] = {"true", NULL};
	pid_t pid = vfork();
	if (pid == 0) {
		if (setenv_child) {
			/* Undefined behaviour, but real programs do it (gperftools #1570). */
			setenv("REL_EXEC_VFORK", "1", 1);
			_exit(3);
		}
		execve("/bin/true", targv, environ);
		_exit(127);
	}
	return pid > 0 && reap(pid, setenv_child ? 3 : 0);
}

static int mode_spawn(int n)
{
	int bad = 0;
	double t0 = rel_now();
	/* Phase 1: raw clone, like systemd's raw_clone(): no atfork handlers. */
	for (int i = 0; i < n; i++) {
		free(keep_alloc(100 + i % 1000));
		long pid = syscall(SYS_clone, (long)SIGCHLD, 0L, 0L, 0L, 0L);
		if (pid == 0) {
			void *p = malloc(200);
			free(malloc(5000));
			free(p);
			syscall(SYS_exit_group, 7);
		}
		if (pid < 0 || !reap((pid_t)pid, 7))
			bad++;
	}
	say("raw_clone=%d bad=%d secs=%.1f", n, bad, rel_now() - t0);

	pthread_t th[2];
	for (int i = 0; i < 2; i++)
		pthread_create(&th[i], NULL, alloc_loop, (void *)(uintptr_t)(i + 1));
	char *targv[] = {"true", NULL};
	t0 = rel_now();
	for (int i = 0; i < n; i++) {
		pid_t pid;
		if (posix_spawn(&pid, "/bin/true", NULL, NULL, targv, environ) != 0 ||
		    !reap(pid, 0))
			bad++;
	}
	say("posix_spawn=%d bad=%d secs=%.1f", n, bad, rel_now() - t0);
	t0 = rel_now();
	for (int i = 0; i < n; i++)
		bad += !vfork_once(0);
	say("vfork_exec=%d bad=%d secs=%.1f", n, bad, rel_now() - t0);
	for (int i = 0; i < n / 10; i++)
		bad += !vfork_once(1);
	atomic_store(&stop, 1);
	for (int i = 0; i < 2; i++)
		pthread_join(th[i], NULL);
	say("vfork_setenv=%d bad=%d", n / 10, bad);
	int r = rel_dump();
	say("dump=%d", r);
	return bad ? 1 : 0;
}

static NOINLINE void *exec_child_alloc(size_t n)
{
	return keep_alloc(n);
}

static int mode_execchild(void)
{
	for (int i = 0; i < 100; i++)
		exec_child_alloc(777);
	int r = rel_dump();
	say("execchild pid=%d dump=%d", (int)getpid(), r);
	return 0;
}

static NOINLINE void *forkexec_parent_alloc(size_t n)
{
	return keep_alloc(n);
}

static int mode_forkexec(void)
{
	for (int i = 0; i < 100; i++)
		forkexec_parent_alloc(555);
	say("parent pid=%d dump1=%d", (int)getpid(), rel_dump());
	pid_t pid = fork();
	if (pid == 0) {
		execl(self, self, "execchild", (char *)NULL);
		_exit(127);
	}
	int ok = reap(pid, 0);
	char *cargv[] = {(char *)self, "execchild", NULL};
	pid_t spid;
	int sok = posix_spawn(&spid, self, NULL, NULL, cargv, environ) == 0 && reap(spid, 0);
	say("children fork_exec_ok=%d spawn_ok=%d", ok, sok);
	say("parent pid=%d dump2=%d", (int)getpid(), rel_dump());
	return ok && sok ? 0 : 1;
}

static NOINLINE void *image1_alloc(size_t n)
{
	return keep_alloc(n);
}

static NOINLINE void *image2_alloc(size_t n)
{
	return keep_alloc(n);
}

static int mode_execself(int stage)
{
	if (stage == 0) {
		for (int i = 0; i < 100; i++)
			image1_alloc(1111);
		say("image1 pid=%d dump=%d", (int)getpid(), rel_dump());
		execl(self, self, "execself", "1", (char *)NULL);
		perror("execl");
		return 1;
	}
	for (int i = 0; i < 100; i++)
		image2_alloc(2222);
	say("image2 pid=%d dump=%d", (int)getpid(), rel_dump());
	return 0;
}

static NOINLINE void *after_fail_alloc(size_t n)
{
	return keep_alloc(n);
}

static int mode_execfail(void)
{
	free(keep_alloc(100));
	execl("/nonexistent/rel_exec_missing", "missing", (char *)NULL);
	int e = errno;
	for (int i = 0; i < 50; i++)
		after_fail_alloc(4321);
	say("exec_errno=%d dump=%d", e, rel_dump());
	return 0;
}

/* ----------------------------------------------------------- daemon mode */

static NOINLINE void daemon_alloc(void **slots, int i)
{
	free(slots[i % 64]);
	slots[i % 64] = malloc(16 + (size_t)(i % 500));
}

static int mode_daemon(const char *file)
{
	void *before[16];
	for (int i = 0; i < 16; i++)
		before[i] = malloc(1000);
	pid_t c = fork();
	if (c < 0)
		return 1;
	if (c == 0) {
		setsid();
		if (fork() != 0)
			_exit(0);
		if (chdir("/") != 0 || close_range(3, ~0U, 0) != 0)
			_exit(3);
		static const char sentinel[] = "heaptap-sentinel-0123456789";
		int fds[2];
		if (pipe(fds) != 0 ||
		    write(fds[1], sentinel, sizeof(sentinel)) != (ssize_t)sizeof(sentinel))
			_exit(4);
		void *slots[64] = {0};
		int dumps = 0;
		for (int i = 0; i < 100000; i++) {
			daemon_alloc(slots, i);
			if (i == 50000 || i == 99999)
				dumps += rel_dump() == 0;
		}
		char back[sizeof(sentinel)] = "";
		ssize_t n = read(fds[0], back, sizeof(back));
		int ok =
		        n == (ssize_t)sizeof(sentinel) && memcmp(back, sentinel, sizeof(back)) == 0;
		char line[128];
		int len = snprintf(line, sizeof(line), "sentinel=%s dumps=%d pid=%d\n",
		                   ok ? "intact" : "changed", dumps, (int)getpid());
		char tmp[4096];
		snprintf(tmp, sizeof(tmp), "%s.tmp", file);
		int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		if (fd < 0 || write(fd, line, (size_t)len) != len || close(fd) != 0 ||
		    rename(tmp, file) != 0)
			_exit(5);
		_exit(0);
	}
	int st;
	waitpid(c, &st, 0);
	for (int i = 0; i < 16; i++)
		free(before[i]);
	for (int waited = 0; waited < 30000; waited += 10) {
		FILE *f = fopen(file, "r");
		if (f) {
			char line[128] = "";
			if (!fgets(line, sizeof(line), f))
				line[0] = 0;
			fclose(f);
			line[strcspn(line, "\n")] = 0;
			say("%s", line);
			return 0;
		}
		rel_msleep(10);
	}
	say("daemon=timeout");
	return 1;
}

int main(int argc, char **argv)
{
	self = argv[0];
	if (argc >= 3 && strcmp(argv[1], "spawn") == 0)
		return mode_spawn(atoi(argv[2]));
	if (argc >= 2 && strcmp(argv[1], "forkexec") == 0)
		return mode_forkexec();
	if (argc >= 2 && strcmp(argv[1], "execchild") == 0)
		return mode_execchild();
	if (argc >= 3 && strcmp(argv[1], "execself") == 0)
		return mode_execself(atoi(argv[2]));
	if (argc >= 2 && strcmp(argv[1], "execfail") == 0)
		return mode_execfail();
	if (argc >= 3 && strcmp(argv[1], "daemon") == 0)
		return mode_daemon(argv[2]);
	fprintf(stderr, "usage: rel_exec spawn N | forkexec | execself 0 | execfail\n");
	return 2;
}
