/*
 * fuzz_config.c - libFuzzer harness for the configuration parser
 * (core/config.c, pg_config_load).
 *
 * pg_config_load reads a file by name and checks the open descriptor, so
 * each input is written to one private temporary file (mode 0600, owned
 * by us, as the loader demands) and loaded from there.  Invariants: the
 * loader returns PG_OK with a config or an error with a message and no
 * config; a loaded config has the fields the contract promises.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../core/config.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char path[64];
static int fd = -1;

static void
remove_file(void)
{
	if (path[0] != '\0')
		(void)unlink(path);
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	const char *tmp = getenv("TMPDIR");
	struct stat st;

	(void)argc;
	(void)argv;
	/* tmpfs when there is one: a file system that flushes a truncated
	 * file on close would make every input cost a disk write */
	if (tmp == NULL || strlen(tmp) >= 32)
		tmp = stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) ?
		      "/dev/shm" : "/tmp";
	snprintf(path, sizeof(path), "%s/pmpgate-fuzz-config-XXXXXX", tmp);
	umask(077);
	fd = mkstemp(path);
	if (fd < 0) {
		perror("mkstemp");
		abort();
	}
	if (fchmod(fd, 0600) != 0)
		abort();
	atexit(remove_file);
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	pg_config *cfg = (pg_config *)0x1;
	char err[512];
	pg_err e;
	size_t i;

	if (size > 256 * 1024)
		return 0;
	if (ftruncate(fd, 0) != 0 ||
	    (size > 0 && pwrite(fd, data, size, 0) != (ssize_t)size))
		abort();
	err[0] = '\0';
	e = pg_config_load(path, &cfg, err, sizeof(err));
	if (e != PG_OK) {
		/* fail closed: no config, and a message saying why */
		if (cfg != NULL || err[0] == '\0' ||
		    memchr(err, '\0', sizeof(err)) == NULL)
			abort();
		return 0;
	}
	if (cfg == NULL || cfg->n_roles < 1 || cfg->n_roles > PG_MAX_ROLES ||
	    cfg->directory.uri.n < 1 || cfg->directory.base == NULL ||
	    cfg->tickets.url == NULL || cfg->tickets.id_pattern == NULL ||
	    cfg->aws.region == NULL || cfg->daemon.socket == NULL ||
	    cfg->daemon.workers < 1 || cfg->daemon.workers > 64)
		abort();
	for (i = 0; i < cfg->n_roles; i++) {
		const pg_role_cfg *r = &cfg->roles[i];

		if (r->name == NULL || r->group == NULL ||
		    r->role_arn == NULL || r->max_duration < 900 ||
		    r->max_duration > 43200 ||
		    pg_config_role(cfg, r->name) != r)
			abort();
		(void)pg_role_min_approvals(r, "x");
	}
	pg_config_free(cfg);
	return 0;
}
