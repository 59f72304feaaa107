/* ctl_rotate: `cinchctl ca rotate|retire|status`, the operator's side of
 * trust-bundle rotation (docs/control.md), over cinch-control's admin
 * socket (ops ca_rotate and ca_status).
 *
 * rotate = prepare (a new root joins the bundle, signing unchanged), wait
 * until every connected agent reports that bundle (each does once it has
 * renewed its certificate since: then both its peers and its control-plane
 * client trust the new root), then activate (the new root signs). A
 * timeout leaves the new root prepared and nothing else changed; running
 * rotate again resumes the wait. retire is a separate, later command: the
 * control refuses it until nothing the old root signed can still be valid.
 *
 * Polls once a second: cinchctl is a short-lived command, not a daemon. */
#include "ctl.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "duration.h"

#define CTL_ROTATE_WAIT_DEFAULT_MS (3600 * 1000LL)

static const char *ctl_ca_usage =
	"usage: cinchctl ca rotate [--wait DURATION] [--state-dir DIR]\n"
	"       cinchctl ca retire [--force] [--state-dir DIR]\n"
	"       cinchctl ca status [--json] [--state-dir DIR]\n"
	"\n"
	"Rotates the mesh's root certificate with no failed connection:\n"
	"  rotate  adds a new root to the trust bundle, waits (at most --wait, 1h)\n"
	"          until every connected agent reports that bundle (each one does\n"
	"          after its next certificate renewal, at about half its lifetime),\n"
	"          then makes the new root sign. On timeout the new root stays in\n"
	"          the bundle and nothing else changes: run rotate again to go on.\n"
	"  retire  removes the old root from the bundle. Refused until every\n"
	"          certificate it signed has expired (activation + the longest\n"
	"          lifetime, cinch-control --svid-ttl-max); --force overrides\n"
	"          (agents still holding such a certificate then fail).\n"
	"  status  the bundle's roots, the rotation's state, what agents report.\n"
	"Exit status: 0 done; 1 refused or timed out; 2 usage error, or rotate/status\n"
	"could not reach cinch-control.\n";

static json_int_t ctl_int(const json_t *o, const char *key)
{
	return json_integer_value(json_object_get(o, key));
}

/* RFC 3339: "2026-11-30T13:45:50Z" */
static const char *ctl_time(json_int_t t, char *buf, size_t len)
{
	time_t tt = (time_t)t;
	struct tm tm;

	if (!gmtime_r(&tt, &tm) || !strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm))
		snprintf(buf, len, "%lld", (long long)t);
	return buf;
}

static json_t *ctl_ca_call(const char *state, const char *op, const char *step, int force)
{
	json_t *req = step ? json_pack("{s:s, s:s, s:b}", "op", op, "step", step, "force", force)
			   : json_pack("{s:s}", "op", op);
	json_t *r = req ? ctl_admin_call(state, req) : NULL;

	json_decref(req);
	return r;
}

static void ctl_ca_print_status(const json_t *st)
{
	const json_t *roots = json_object_get(st, "roots"), *root;
	const json_t *min = json_object_get(st, "agents_min_sequence");
	json_int_t now = (json_int_t)time(NULL), safe_at = ctl_int(st, "retire_safe_at");
	char t[64];
	size_t i;

	printf("trust domain     %s\n", json_string_value(json_object_get(st, "trust_domain")));
	printf("bundle sequence  %lld, %zu root(s)\n", (long long)ctl_int(st, "sequence"),
	       json_array_size(roots));
	json_array_foreach(roots, i, root)
	{
		printf("  %-7s valid until %s  %s\n",
		       json_string_value(json_object_get(root, "role")),
		       ctl_time(ctl_int(root, "not_after"), t, sizeof(t)),
		       json_string_value(json_object_get(root, "subject")));
	}
	printf("prepared         %s\n", json_is_true(json_object_get(st, "prepared"))
						? "yes: a new root waits to sign"
						: "no");
	if (json_is_integer(min))
		printf("agents           lowest reported bundle sequence %lld (%s)\n",
		       (long long)json_integer_value(min),
		       json_is_true(json_object_get(st, "agents_current"))
			       ? "all current"
			       : "some have not renewed since the bundle changed");
	else
		printf("agents           none connected\n");
	if (!ctl_int(st, "activated_at"))
		printf("retire           nothing to retire\n");
	else if (json_is_true(json_object_get(st, "retire_safe")))
		printf("retire           safe now (the new root signs since %s)\n",
		       ctl_time(ctl_int(st, "activated_at"), t, sizeof(t)));
	else
		printf("retire           safe from %s (in %lld s)\n",
		       ctl_time(safe_at, t, sizeof(t)), (long long)(safe_at - now));
}

static int ctl_ca_rotate(const char *state, long long wait_ms)
{
	json_t *st = ctl_ca_call(state, "ca_status", NULL, 0), *r;
	struct timespec start, now, tick = {.tv_sec = 1};
	json_int_t seq, last_min = -1;
	char t[64];
	int rc = 1, settling = 0;

	if (!st)
		return 2;
	if (json_is_true(json_object_get(st, "prepared"))) {
		printf("a new root is already prepared (bundle sequence %lld): waiting for the "
		       "agents\n",
		       (long long)ctl_int(st, "sequence"));
	} else {
		json_decref(st);
		if (!(st = ctl_ca_call(state, "ca_rotate", "prepare", 0)))
			return 2;
		printf("prepared: a new root joined the trust bundle (sequence %lld, %zu roots); "
		       "the old root still signs\n",
		       (long long)ctl_int(st, "sequence"),
		       json_array_size(json_object_get(st, "roots")));
	}
	seq = ctl_int(st, "sequence");
	clock_gettime(CLOCK_MONOTONIC, &start);
	for (;;) {
		const json_t *min = json_object_get(st, "agents_min_sequence");
		if (json_is_true(json_object_get(st, "agents_current"))) {
			printf("%s\n", json_is_integer(min)
					       ? "every connected agent reports the new bundle"
					       : "no agent connected: nobody to wait for");
			break;
		}
		if (ctl_int(st, "agents_settled_at") > (json_int_t)time(NULL)) {
			if (!settling++)
				printf("waiting: cinch-control started recently, agents are "
				       "reconnecting (until %s)\n",
				       ctl_time(ctl_int(st, "agents_settled_at"), t, sizeof(t)));
		} else if (json_is_integer(min) && json_integer_value(min) != last_min) {
			last_min = json_integer_value(min);
			printf("waiting: the lowest bundle sequence agents report is %lld, want "
			       "%lld (agents report it after their next renewal)\n",
			       (long long)last_min, (long long)seq);
		}
		fflush(stdout);
		clock_gettime(CLOCK_MONOTONIC, &now);
		if ((now.tv_sec - start.tv_sec) * 1000LL +
			    (now.tv_nsec - start.tv_nsec) / 1000000 >=
		    wait_ms) {
			fprintf(stderr,
				"cinchctl: timed out: not every connected agent reports bundle "
				"sequence %lld yet (`cinchctl status` shows each one). The new "
				"root "
				"stays prepared and does not sign: nothing changed for the agents. "
				"Run `cinchctl ca rotate` again to keep waiting.\n",
				(long long)seq);
			goto out;
		}
		nanosleep(&tick, NULL);
		json_decref(st);
		if (!(st = ctl_ca_call(state, "ca_status", NULL, 0)))
			return 2;
		if (ctl_int(st, "sequence") != seq ||
		    !json_is_true(json_object_get(st, "prepared"))) {
			fprintf(stderr, "cinchctl: the rotation changed meanwhile (another "
					"cinchctl?): see `cinchctl ca status`\n");
			goto out;
		}
	}
	if (!(r = ctl_ca_call(state, "ca_rotate", "activate", 0))) {
		rc = 2;
		goto out;
	}
	printf("activated: the new root signs since %s; agents move to it as they renew.\n"
	       "Retire the old root with `cinchctl ca retire` from %s on.\n",
	       ctl_time(ctl_int(r, "activated_at"), t, sizeof(t)),
	       ctl_time(ctl_int(r, "retire_safe_at"), t + 32, sizeof(t) - 32));
	json_decref(r);
	rc = 0;
out:
	json_decref(st);
	return rc;
}

int ctl_ca(int argc, char **argv)
{
	static const struct option opts[] = {
		{"wait", required_argument, NULL, 'w'}, {"force", no_argument, NULL, 'f'},
		{"json", no_argument, NULL, 'j'},	{"state-dir", required_argument, NULL, 's'},
		{"help", no_argument, NULL, 'h'},	{0},
	};
	const char *state = CTL_DEFAULT_STATE_DIR, *cmd = argc >= 2 ? argv[1] : "";
	long long wait_ms = CTL_ROTATE_WAIT_DEFAULT_MS;
	int force = 0, json = 0, c;
	json_t *r;

	if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h")) {
		fputs(ctl_ca_usage, stdout);
		return 0;
	}
	if (strcmp(cmd, "rotate") && strcmp(cmd, "retire") && strcmp(cmd, "status"))
		return !*cmd ? ctl_usage_error("ca", "missing a verb (rotate, retire, status)")
			     : ctl_usage_error("ca", "unknown verb \"%s\"", cmd);
	char name[16];
	snprintf(name, sizeof(name), "ca %s", cmd);
	optind = 2;
	while ((c = ctl_getopt(name, argc, argv, opts)) != -1) {
		switch (c) {
		case 'w':
			if ((wait_ms = duration_ms(optarg)) < 0)
				return ctl_usage_error(name,
						       "--wait: not a duration (300ms, 5s, "
						       "10m, 1h): %s",
						       optarg);
			break;
		case 'f':
			force = 1;
			break;
		case 'j':
			json = 1;
			break;
		case 's':
			state = optarg;
			break;
		case 'h':
			fputs(ctl_ca_usage, stdout);
			return 0;
		default:
			return 2;
		}
	}
	/* each flag belongs to one command */
	if (optind < argc)
		return ctl_usage_error(name, "unexpected argument %s", argv[optind]);
	if ((force && strcmp(cmd, "retire")) || (json && strcmp(cmd, "status")) ||
	    (wait_ms != CTL_ROTATE_WAIT_DEFAULT_MS && strcmp(cmd, "rotate")))
		return ctl_usage_error(name, "%s belongs to ca %s",
				       force  ? "--force"
				       : json ? "--json"
					      : "--wait",
				       force  ? "retire"
				       : json ? "status"
					      : "rotate");
	if (!strcmp(cmd, "rotate"))
		return ctl_ca_rotate(state, wait_ms);
	if (!strcmp(cmd, "status")) {
		if (!(r = ctl_ca_call(state, "ca_status", NULL, 0)))
			return 2;
		if (json) {
			json_dumpf(r, stdout, JSON_INDENT(2));
			fputc('\n', stdout);
		} else
			ctl_ca_print_status(r);
		json_decref(r);
		return 0;
	}
	if (force)
		fprintf(stderr, "cinchctl: warning: --force retires the old root even if "
				"certificates it signed are still valid: agents holding one fail "
				"until they renew\n");
	/* a refusal (not safe yet) is printed by ctl_admin_call */
	if (!(r = ctl_ca_call(state, "ca_rotate", "retire", force)))
		return 1;
	printf("retired: the trust bundle holds %zu root(s), sequence %lld; agents get it with "
	       "their next snapshot\n",
	       json_array_size(json_object_get(r, "roots")), (long long)ctl_int(r, "sequence"));
	json_decref(r);
	return 0;
}
