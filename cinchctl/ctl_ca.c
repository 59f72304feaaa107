/* ctl_ca: `cinchctl token create` and `cinchctl bundle show`, both
 * answered by cinch-control over its root-only admin socket. */
#include "ctl.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

	if (argc < 2 || strcmp(argv[1], "create") != 0) {
		fputs(ctl_token_usage, argc >= 2 && !strcmp(argv[1], "--help") ? stdout : stderr);
		return argc >= 2 && !strcmp(argv[1], "--help") ? 0 : 2;
	}
	optind = 2;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
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
			if (ttl_ms < 1000 || ttl_ms % 1000) {
				fprintf(stderr, "cinchctl: --ttl: not a duration in seconds: %s\n",
					optarg);
				return 2;
			}
			break;
		case 'h':
			fputs(ctl_token_usage, stdout);
			return 0;
		default:
			fputs(ctl_token_usage, stderr);
			return 2;
		}
	}
	if (!identity || optind < argc) {
		fputs(ctl_token_usage, stderr);
		return 2;
	}
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
	if (!json)
		fprintf(stderr, "for %s, single use, until %lld (Unix time)\n",
			json_string_value(json_object_get(r, "identity")),
			(long long)json_integer_value(json_object_get(r, "expires_at")));
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

	if (argc < 2 || strcmp(argv[1], "show") != 0) {
		fputs(ctl_bundle_usage, stderr);
		return 2;
	}
	optind = 2;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
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
			fputs(ctl_bundle_usage, stderr);
			return 2;
		}
	}
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
