/*
 * membersprobe - drive pg_dir_group_members (core/directory.c) against a
 * real directory.
 *
 *   membersprobe [-m MAX] CONF GROUPDN
 *
 * Prints one line per member, sorted by key: "NAME<TAB>DN<TAB>VIA" (a
 * missing name or DN as "-"), then "skipped N".  Failures print
 * "error KIND: message" (KIND = pg_err_name) and exit with pg_err_exit().
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../core/config.h"
#include "../../core/deadline.h"
#include "../../core/directory.h"
#include "../../core/err.h"

int
main(int argc, char **argv)
{
	pg_config *cfg = NULL;
	pg_dir *d = NULL;
	pg_dir_members m = { NULL, 0, 0 };
	char err[1024];
	size_t max = 0, i;
	pg_err e;
	int c;

	signal(SIGPIPE, SIG_IGN);
	while ((c = getopt(argc, argv, "m:")) != -1) {
		if (c != 'm') {
			fprintf(stderr, "usage: membersprobe [-m MAX] CONF "
				"GROUPDN\n");
			return 2;
		}
		max = (size_t)strtoul(optarg, NULL, 10);
	}
	if (argc - optind != 2) {
		fprintf(stderr, "usage: membersprobe [-m MAX] CONF GROUPDN\n");
		return 2;
	}
	e = pg_config_load(argv[optind], &cfg, err, sizeof(err));
	if (e != PG_OK)
		goto fail;
	d = pg_dir_new(cfg);
	if (d == NULL) {
		e = PG_ENOMEM;
		snprintf(err, sizeof(err), "out of memory");
		goto fail;
	}
	e = pg_dir_group_members(d, argv[optind + 1], max, &m,
				 pg_deadline_in(cfg->daemon.deadline_ms), err,
				 sizeof(err));
	if (e != PG_OK)
		goto fail;
	for (i = 0; i < m.n; i++) {
		printf("%s\t%s\t%s\n", m.v[i].name ? m.v[i].name : "-",
		       m.v[i].dn ? m.v[i].dn : "-", m.v[i].via);
		if (pg_dir_members_find(&m, m.v[i].key) != &m.v[i]) {
			e = PG_EINTERNAL;
			snprintf(err, sizeof(err), "find(%s) is not itself",
				 m.v[i].key);
			goto fail;
		}
	}
	if (pg_dir_members_find(&m, "no such key") != NULL) {
		e = PG_EINTERNAL;
		snprintf(err, sizeof(err), "found a key that is not there");
		goto fail;
	}
	printf("skipped %zu\n", m.skipped);
	goto out;
fail:
	printf("error %s: %s\n", pg_err_name(e), err);
out:
	pg_dir_members_free(&m);
	pg_dir_free(d);
	pg_config_free(cfg);
	return pg_err_exit(e);
}
