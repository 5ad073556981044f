/*
 * iam.c - `pmpgate iam trust-policy ROLE` and `pmpgate iam scp`: the IAM
 * documents that make pmpgate the only way into the two roles, written
 * from pmpgate.conf (read offline, see cli.h) with Jansson.
 *
 * trust-policy: trusts only [aws] base_principal, for sts:AssumeRole,
 * sts:TagSession and sts:SetSourceIdentity, and only when the request
 * sets a SourceIdentity and the pmpgate:ticket tag, sets no tag keys but
 * pmpgate's own, and (when [role] external_id is set) carries the
 * ExternalId.
 *
 * scp: a service control policy for the organisation that denies
 *   - private-marketplace administration (the legacy actions and the
 *     Catalog API change types of private-marketplace experiences) to
 *     every principal but the pmp-administrator role,
 *   - subscription actions (accepting offers) to every principal but the
 *     procurement-manager role,
 *   - every AWS Marketplace action to sessions of either role that carry
 *     no SourceIdentity (not issued by pmpgate).
 * The role ARNs come from the config's [role pmp-administrator] and
 * [role procurement-manager] (other names with --admin-role and
 * --subscriber-role).
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admincmd.h"
#include "cli.h"

static const char *const pm_admin_actions[] = {
	"aws-marketplace:AssociateProductsWithPrivateMarketplace",
	"aws-marketplace:DisassociateProductsFromPrivateMarketplace",
	"aws-marketplace:CreatePrivateMarketplace",
	"aws-marketplace:CreatePrivateMarketplaceProfile",
	"aws-marketplace:UpdatePrivateMarketplaceSettings",
	"aws-marketplace:StartPrivateMarketplace",
	"aws-marketplace:StopPrivateMarketplace",
	NULL,
};

/* Catalog API change types of private-marketplace experiences. */
static const char *const pm_change_types[] = {
	"CreateExperience", "UpdateExperience", "RestrictExperience",
	"ReviveExperience", "CreateProcurementPolicy",
	"UpdateProcurementPolicy", "CreateBrandingSettings",
	"UpdateBrandingSettings", "AllowProductProcurement",
	"DenyProductProcurement", "AssociateAudience", "DisassociateAudience",
	NULL,
};

static const char *const subscribe_actions[] = {
	"aws-marketplace:Subscribe",
	"aws-marketplace:Unsubscribe",
	"aws-marketplace:CreatePrivateMarketplaceRequests",
	NULL,
};

/* The session tags pmpgate sets (DESIGN.md, "Issuing"). */
static const char *const tag_keys[] = {
	"pmpgate:ticket", "pmpgate:user", "pmpgate:approvers", NULL,
};

static void
iam_help(void)
{
	printf("Usage: pmpgate iam trust-policy ROLE [-c CONF]\n"
	       "       pmpgate iam scp [-c CONF] [--admin-role NAME] "
	       "[--subscriber-role NAME]\n\n"
	       "Write IAM policy JSON from the configuration (read offline):\n"
	       "  trust-policy ROLE  the trust policy of ROLE's IAM role: only "
	       "[aws] base_principal\n"
	       "                     may assume it, with a SourceIdentity and "
	       "the pmpgate:ticket tag\n"
	       "  scp                a service control policy: private "
	       "marketplace administration\n"
	       "                     only by pmp-administrator, subscriptions "
	       "only by\n"
	       "                     procurement-manager, neither role without "
	       "a SourceIdentity\n\n"
	       "  -c, --config CONF  the configuration (default "
	       "$PMPGATE_CONFIG or %s)\n\n"
	       "Exit: 0 written, 2 usage or configuration error, 4 internal.\n",
	       pg_cli_config_path(NULL));
}

static json_t *
strings(const char *const *v)
{
	json_t *a = json_array();

	for (; a != NULL && *v != NULL; v++)
		if (json_array_append_new(a, json_string(*v)) != 0) {
			json_decref(a);
			return NULL;
		}
	return a;
}

static int
emit(json_t *doc)
{
	int ex;

	if (doc == NULL) {
		pg_cli_error("out of memory");
		return PG_EXIT_INTERNAL;
	}
	ex = json_dumpf(doc, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER) ==
		0 && putchar('\n') != EOF ? pg_cli_flush() : PG_EXIT_INTERNAL;
	json_decref(doc);
	return ex;
}

/* A value the config reader found but that is unfit for a policy: the
 * daemon's loader would refuse it too, so say so. */
static int
conf_error(const char *path, const char *what)
{
	char msg[1024];

	snprintf(msg, sizeof(msg), "%s: %s (pmpgated -t -c %s shows every "
		 "problem)", path, what, path);
	pg_cli_error(msg);
	return PG_EXIT_USAGE;
}

/* An ARN may go into a policy: printable ASCII without quotes, blanks
 * or wildcards, starting "arn:". */
static int
arn_ok(const char *s)
{
	if (s == NULL || strncmp(s, "arn:", 4) != 0)
		return 0;
	for (; *s; s++)
		if (*s <= ' ' || *s > '~' || strchr("\"\\*?", *s) != NULL)
			return 0;
	return 1;
}

static int
trust_policy(const pg_ini *ini, const char *path, const char *role)
{
	char section[128], msg[256];
	const char *base, *ext;
	json_t *cond;

	base = pg_ini_get(ini, "aws", "base_principal");
	if (base == NULL)
		return conf_error(path, "[aws] base_principal is not set: it "
				  "names the principal the trust policy trusts");
	if (!arn_ok(base))
		return conf_error(path, "[aws] base_principal is not an ARN");
	snprintf(section, sizeof(section), "role %s", role);
	if (pg_ini_get(ini, section, "role_arn") == NULL) {
		snprintf(msg, sizeof(msg), "no [role %s] with a role_arn",
			 role);
		return conf_error(path, msg);
	}
	ext = pg_ini_get(ini, section, "external_id");
	cond = json_pack("{s:{s:s, s:s}, s:{s:o}}",
			 "Null", "sts:SourceIdentity", "false",
			 "aws:RequestTag/pmpgate:ticket", "false",
			 "ForAllValues:StringEquals", "aws:TagKeys",
			 strings(tag_keys));
	if (cond != NULL && ext != NULL &&
	    json_object_set_new(cond, "StringEquals",
				json_pack("{s:s}", "sts:ExternalId", ext)) != 0) {
		json_decref(cond);
		cond = NULL;
	}
	if (cond == NULL)
		return emit(NULL);
	return emit(json_pack(
		"{s:s, s:[{s:s, s:s, s:{s:s}, s:[s, s, s], s:o}]}",
		"Version", "2012-10-17", "Statement",
		"Sid", "PmpgateOnly", "Effect", "Allow",
		"Principal", "AWS", base,
		"Action", "sts:AssumeRole", "sts:TagSession",
		"sts:SetSourceIdentity",
		"Condition", cond));
}

static int
scp(const pg_ini *ini, const char *path, const char *admin_role,
    const char *sub_role)
{
	char a[128], s[128], msg[256];
	const char *admin_arn, *sub_arn;

	snprintf(a, sizeof(a), "role %s", admin_role);
	snprintf(s, sizeof(s), "role %s", sub_role);
	admin_arn = pg_ini_get(ini, a, "role_arn");
	sub_arn = pg_ini_get(ini, s, "role_arn");
	if (admin_arn == NULL || sub_arn == NULL) {
		snprintf(msg, sizeof(msg), "no [role %s] with a role_arn (use "
			 "--%s-role NAME for another name)",
			 admin_arn == NULL ? admin_role : sub_role,
			 admin_arn == NULL ? "admin" : "subscriber");
		return conf_error(path, msg);
	}
	if (!arn_ok(admin_arn) || !arn_ok(sub_arn))
		return conf_error(path, "a role_arn is not an ARN");
	return emit(json_pack(
		"{s:s, s:["
		"{s:s, s:s, s:o, s:s, s:{s:{s:s}}},"
		"{s:s, s:s, s:s, s:s, s:{s:{s:o}, s:{s:s}}},"
		"{s:s, s:s, s:o, s:s, s:{s:{s:s}}},"
		"{s:s, s:s, s:s, s:s, s:{s:{s:[s, s]}, s:{s:s}}}]}",
		"Version", "2012-10-17", "Statement",
		"Sid", "PrivateMarketplaceOnlyByPmpAdministrator",
		"Effect", "Deny", "Action", strings(pm_admin_actions),
		"Resource", "*",
		"Condition", "ArnNotLike", "aws:PrincipalArn", admin_arn,
		"Sid", "PrivateMarketplaceChangeSetsOnlyByPmpAdministrator",
		"Effect", "Deny", "Action", "aws-marketplace:StartChangeSet",
		"Resource", "*",
		"Condition", "StringEquals", "catalog:ChangeType",
		strings(pm_change_types),
		"ArnNotLike", "aws:PrincipalArn", admin_arn,
		"Sid", "SubscriptionsOnlyByProcurementManager",
		"Effect", "Deny", "Action", strings(subscribe_actions),
		"Resource", "*",
		"Condition", "ArnNotLike", "aws:PrincipalArn", sub_arn,
		"Sid", "MarketplaceRolesOnlyThroughPmpgate",
		"Effect", "Deny", "Action", "aws-marketplace:*",
		"Resource", "*",
		"Condition", "ArnLike", "aws:PrincipalArn", admin_arn, sub_arn,
		"Null", "aws:SourceIdentity", "true"));
}

int
pg_cmd_iam(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "admin-role", required_argument, NULL, 'a' },
		{ "subscriber-role", required_argument, NULL, 'b' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *conf = NULL, *admin_role = "pmp-administrator";
	const char *sub_role = "procurement-manager", *what, *path;
	pg_ini *ini = NULL;
	char err[512];
	int c, ex, names = 0;

	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":c:h", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			conf = optarg;
			break;
		case 'a':
			admin_role = optarg;
			names = 1;
			break;
		case 'b':
			sub_role = optarg;
			names = 1;
			break;
		case 'h':
			iam_help();
			return pg_cli_flush();
		case ':':
			return pg_cli_usage("iam", "iam: an option is missing "
					    "its argument");
		default:
			return pg_cli_usage("iam", "iam: unknown option");
		}
	}
	if (optind >= argc)
		return pg_cli_usage("iam", "iam trust-policy ROLE | iam scp");
	what = argv[optind];
	if (strcmp(what, "trust-policy") == 0) {
		if (argc - optind != 2 || names)
			return pg_cli_usage("iam", "iam trust-policy ROLE");
		if (!pg_proto_role_valid(argv[optind + 1]))
			return pg_cli_usage("iam", "a role name is 1-64 "
					    "characters of a-z, 0-9 and '-'");
	} else if (strcmp(what, "scp") == 0) {
		if (argc - optind != 1)
			return pg_cli_usage("iam", "iam scp takes no arguments");
		if (!pg_proto_role_valid(admin_role) ||
		    !pg_proto_role_valid(sub_role))
			return pg_cli_usage("iam", "a role name is 1-64 "
					    "characters of a-z, 0-9 and '-'");
	} else {
		return pg_cli_usage("iam", "iam trust-policy ROLE | iam scp");
	}
	path = pg_cli_config_path(conf);
	if (pg_ini_load(path, &ini, err, sizeof(err)) != PG_OK) {
		pg_cli_error(err);
		return PG_EXIT_USAGE;
	}
	ex = strcmp(what, "scp") == 0 ? scp(ini, path, admin_role, sub_role) :
		trust_policy(ini, path, argv[optind + 1]);
	pg_ini_free(ini);
	return ex;
}
