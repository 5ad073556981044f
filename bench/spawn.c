/*
 * spawn.c - run a program N times as a given uid and report, per run,
 * the wall time from fork to reaped exit, the child's peak RSS and its
 * exit status: the cost a credential_process client (the AWS CLI, a
 * shell) pays for one call, without an interpreter in between.
 *
 *   spawn UID GID N PROGRAM [ARG...]
 *
 * Prints one line per run: "<microseconds> <maxrss_kib> <status>".  The
 * child's stdout and stderr go to /dev/null; its environment is ours.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static long long
now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000000LL + ts.tv_nsec / 1000;
}

int
main(int argc, char **argv)
{
	uid_t uid;
	gid_t gid;
	long n, i;

	if (argc < 5) {
		fprintf(stderr, "usage: spawn UID GID N PROGRAM [ARG...]\n");
		return 2;
	}
	uid = (uid_t)strtoul(argv[1], NULL, 10);
	gid = (gid_t)strtoul(argv[2], NULL, 10);
	n = strtol(argv[3], NULL, 10);
	for (i = 0; i < n; i++) {
		struct rusage ru;
		long long t0 = now_us(), t1;
		int st = 0;
		pid_t pid = fork();

		if (pid < 0) {
			perror("fork");
			return 1;
		}
		if (pid == 0) {
			int null = open("/dev/null", O_RDWR);

			if (null < 0 || dup2(null, 1) < 0 || dup2(null, 2) < 0 ||
			    setgroups(0, NULL) != 0 || setgid(gid) != 0 ||
			    setuid(uid) != 0)
				_exit(126);
			execv(argv[4], argv + 4);
			_exit(127);
		}
		if (wait4(pid, &st, 0, &ru) != pid) {
			perror("wait4");
			return 1;
		}
		t1 = now_us();
		printf("%lld %ld %d\n", t1 - t0, ru.ru_maxrss,
		       WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
	}
	return 0;
}
