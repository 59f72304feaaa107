/* ctl_ca: `cinchctl token create` and `cinchctl bundle show`, both
 * answered by cinch-control over its root-only admin socket. */
#include "ctl.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "duration.h"

static const char *ctl_token_usage =
	"usage: cinchctl token create --identity NS/SA [--ttl 10m] [--state-dir DIR] [--json]\n"
	"\n"
	"Prints a single-use join token bound to spiffe://<td>/ns/NS/sa/SA. It works\n"
	"once, within its lifetime (1s..7d, default 10m). cinch-control keeps only its\n"
	"hash. Needs root: the request goes over <state-dir>/admin.sock\n"
	"(default " CTL_DEFAULT_STATE_DIR ").\n";

int ctl_token(int argc, char **argv)
{
	static const struct option opts[] = {
		{"identity", required_argument, NULL, 'i'},
		{"ttl", required_argument, NULL, 't'},
		{"state-dir", required_argument, NULL, 's'},
		{"json", no_argument, NULL, 'j'},
		{"help", no_argument, NULL, 'h'},
		{0},
	};
	const char *identity = NULL, *state = CTL_DEFAULT_STATE_DIR;
	long long ttl_ms = 600000;
	int json = 0, c;

	if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
		fputs(ctl_token_usage, stdout);
		return 0;
	}
	if (argc < 2 || strcmp(argv[1], "create") != 0)
		return argc < 2 ? ctl_usage_error("token", "missing a verb (create)")
				: ctl_usage_error("token", "unknown verb \"%s\"", argv[1]);
	optind = 2;
	while ((c = ctl_getopt("token create", argc, argv, opts)) != -1) {
		switch (c) {
		case 'i':
			identity = optarg;
			break;
		case 's':
			state = optarg;
			break;
		case 'j':
			json = 1;
			break;
		case 't':
			ttl_ms = duration_ms(optarg);
			if (ttl_ms < 1000 || ttl_ms % 1000)
				return ctl_usage_error("token create",
						       "--ttl: not a duration in whole seconds "
						       "(30s, 10m, 1h): %s",
						       optarg);
			break;
		case 'h':
			fputs(ctl_token_usage, stdout);
			return 0;
		default:
			return 2;
		}
	}
	if (optind < argc)
		return ctl_usage_error("token create", "unexpected argument %s", argv[optind]);
	if (!identity)
		return ctl_usage_error("token create", "missing --identity");
	json_t *req = json_pack("{s:s, s:s, s:I}", "op", "token_create", "identity", identity,
				"ttl", (json_int_t)(ttl_ms / 1000));
	json_t *r = req ? ctl_admin_call(state, req) : NULL;
	json_decref(req);
	if (!r)
		return 2;
	if (json)
		json_dumpf(r, stdout, JSON_INDENT(2));
	else
		fputs(json_string_value(json_object_get(r, "token")), stdout);
	fputc('\n', stdout);
	if (!json) {
		time_t at = (time_t)json_integer_value(json_object_get(r, "expires_at"));
		struct tm tm;
		char when[32] = "?";
		if (gmtime_r(&at, &tm))
			strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
		fprintf(stderr, "for %s, single use, until %s\n",
			json_string_value(json_object_get(r, "identity")), when);
	}
	json_decref(r);
	return 0;
}

static const char *ctl_bundle_usage =
	"usage: cinchctl bundle show [--pem] [--state-dir DIR]\n"
	"\n"
	"Prints the mesh's trust bundle: the SPIFFE bundle document (a JWK set,\n"
	"use x509-svid, with spiffe_sequence), or the roots as PEM with --pem.\n";

int ctl_bundle(int argc, char **argv)
{
	static const struct option opts[] = {
		{"pem", no_argument, NULL, 'p'},
		{"state-dir", required_argument, NULL, 's'},
		{"help", no_argument, NULL, 'h'},
		{0},
	};
	const char *state = CTL_DEFAULT_STATE_DIR;
	int pem = 0, c;

	if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
		fputs(ctl_bundle_usage, stdout);
		return 0;
	}
	if (argc < 2 || strcmp(argv[1], "show") != 0)
		return argc < 2 ? ctl_usage_error("bundle", "missing a verb (show)")
				: ctl_usage_error("bundle", "unknown verb \"%s\"", argv[1]);
	optind = 2;
	while ((c = ctl_getopt("bundle show", argc, argv, opts)) != -1) {
		switch (c) {
		case 'p':
			pem = 1;
			break;
		case 's':
			state = optarg;
			break;
		case 'h':
			fputs(ctl_bundle_usage, stdout);
			return 0;
		default:
			return 2;
		}
	}
	if (optind < argc)
		return ctl_usage_error("bundle show", "unexpected argument %s", argv[optind]);
	json_t *req = json_pack("{s:s}", "op", "bundle");
	json_t *r = req ? ctl_admin_call(state, req) : NULL;
	json_decref(req);
	if (!r)
		return 2;
	if (pem)
		fputs(json_string_value(json_object_get(r, "pem")), stdout);
	else {
		json_dumpf(json_object_get(r, "spiffe"), stdout, JSON_INDENT(2));
		fputc('\n', stdout);
	}
	json_decref(r);
	return 0;
}
