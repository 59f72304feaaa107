/* intercept: see intercept.h. The text work (rules, merge) is pure and
 * unit-tested; intercept_apply() only runs the iptables tools around it. */
#include "intercept.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

void intercept_config_defaults(struct intercept_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->uid = 1337;
	cfg->inbound_port = 15006;
	cfg->outbound_port = 15001;
	cfg->admin_port = 15000;
}

/* Calls item(arg, text, len) for each comma-separated item of list. */
static int each_item(const char *list, int (*item)(void *, const char *, size_t), void *arg)
{
	const char *p = list;
	while (*p) {
		const char *comma = strchr(p, ',');
		size_t len = comma ? (size_t)(comma - p) : strlen(p);
		int rc = item(arg, p, len);
		if (rc < 0)
			return rc;
		p += len + (comma ? 1 : 0);
		if (comma && !*p)
			return -EINVAL; /* a trailing comma */
	}
	return 0;
}

struct port_list {
	uint16_t *out;
	size_t *n;
};

static int port_item(void *arg, const char *s, size_t len)
{
	struct port_list *l = arg;
	unsigned long v = 0;
	if (len == 0 || len > 5 || *l->n == INTERCEPT_MAX_LIST)
		return -EINVAL;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -EINVAL;
		v = v * 10 + (unsigned long)(s[i] - '0');
	}
	if (v < 1 || v > 65535)
		return -EINVAL;
	l->out[(*l->n)++] = (uint16_t)v;
	return 0;
}

int intercept_parse_ports(const char *list, uint16_t *out, size_t *n, const char **why)
{
	struct port_list l = {out, n};
	*n = 0;
	if (each_item(list, port_item, &l) < 0) {
		*why = "expected ports 1-65535 separated by commas (at most 64)";
		return -EINVAL;
	}
	return 0;
}

struct cidr_list {
	struct intercept_cidr *out;
	size_t *n;
};

static int cidr_item(void *arg, const char *s, size_t len)
{
	struct cidr_list l = *(struct cidr_list *)arg;
	struct intercept_cidr *c = &l.out[*l.n];
	char addr[64];
	uint8_t bin[16];
	const char *slash = memchr(s, '/', len);
	size_t alen = slash ? (size_t)(slash - s) : len;
	char *end;

	if (len == 0 || len >= sizeof(c->text) || alen >= sizeof(addr) ||
	    *l.n == INTERCEPT_MAX_LIST)
		return -EINVAL;
	memcpy(addr, s, alen);
	addr[alen] = '\0';
	if (inet_pton(AF_INET, addr, bin) == 1)
		c->family = AF_INET;
	else if (inet_pton(AF_INET6, addr, bin) == 1)
		c->family = AF_INET6;
	else
		return -EINVAL;
	if (slash) {
		char pfx[8];
		size_t plen = len - alen - 1;
		if (plen == 0 || plen >= sizeof(pfx))
			return -EINVAL;
		memcpy(pfx, slash + 1, plen);
		pfx[plen] = '\0';
		long v = strtol(pfx, &end, 10);
		if (*end || v < 0 || v > (c->family == AF_INET ? 32 : 128) || pfx[0] == '-' ||
		    pfx[0] == '+')
			return -EINVAL;
	}
	memcpy(c->text, s, len);
	c->text[len] = '\0';
	(*l.n)++;
	return 0;
}

int intercept_parse_cidrs(const char *list, struct intercept_cidr *out, size_t *n, const char **why)
{
	struct cidr_list l = {out, n};
	*n = 0;
	if (each_item(list, cidr_item, &l) < 0) {
		*why = "expected addresses or CIDRs (IPv4 or IPv6) separated by commas (at most "
		       "64)";
		return -EINVAL;
	}
	return 0;
}

char *intercept_rules(const struct intercept_config *cfg, int family)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	if (!f)
		return NULL;
	fprintf(f, ":CINCH_INBOUND - [0:0]\n:CINCH_IN_REDIRECT - [0:0]\n"
		   ":CINCH_OUTPUT - [0:0]\n:CINCH_OUT_REDIRECT - [0:0]\n");
	/* Inbound: the agent's own ports and the exclusions stay direct. */
	fprintf(f, "-A CINCH_IN_REDIRECT -p tcp -j REDIRECT --to-ports %u\n", cfg->inbound_port);
	fprintf(f, "-A CINCH_INBOUND -p tcp --dport %u -j RETURN\n", cfg->inbound_port);
	fprintf(f, "-A CINCH_INBOUND -p tcp --dport %u -j RETURN\n", cfg->outbound_port);
	fprintf(f, "-A CINCH_INBOUND -p tcp --dport %u -j RETURN\n", cfg->admin_port);
	for (size_t i = 0; i < cfg->n_exclude_in; i++)
		fprintf(f, "-A CINCH_INBOUND -p tcp --dport %u -j RETURN\n", cfg->exclude_in[i]);
	fprintf(f, "-A CINCH_INBOUND -p tcp -j CINCH_IN_REDIRECT\n");
	/* Outbound: first the agent's self-probes (intercept.h), then the
	 * agent's own connections, loopback, the exclusions. */
	fprintf(f, "-A CINCH_OUT_REDIRECT -p tcp -j REDIRECT --to-ports %u\n", cfg->outbound_port);
	for (int in = 0; in < 2; in++)
		fprintf(f,
			"-A CINCH_OUTPUT -d %s/%d -p tcp --dport %u -m owner --uid-owner %u "
			"-j %s\n",
			family == AF_INET ? INTERCEPT_PROBE_ADDR4 : INTERCEPT_PROBE_ADDR6,
			family == AF_INET ? 32 : 128,
			in ? INTERCEPT_PROBE_PORT_IN : INTERCEPT_PROBE_PORT_OUT, cfg->uid,
			in ? "CINCH_IN_REDIRECT" : "CINCH_OUT_REDIRECT");
	fprintf(f, "-A CINCH_OUTPUT -m owner --uid-owner %u -j RETURN\n", cfg->uid);
	fprintf(f, "-A CINCH_OUTPUT -d %s -j RETURN\n",
		family == AF_INET ? "127.0.0.0/8" : "::1/128");
	for (size_t i = 0; i < cfg->n_exclude_out; i++)
		fprintf(f, "-A CINCH_OUTPUT -p tcp --dport %u -j RETURN\n", cfg->exclude_out[i]);
	for (size_t i = 0; i < cfg->n_exclude_cidrs; i++)
		if (cfg->exclude_cidrs[i].family == family)
			fprintf(f, "-A CINCH_OUTPUT -d %s -j RETURN\n", cfg->exclude_cidrs[i].text);
	fprintf(f, "-A CINCH_OUTPUT -p tcp -j CINCH_OUT_REDIRECT\n");
	/* The jumps from the built-in chains. */
	fprintf(f, "-A PREROUTING -p tcp -j CINCH_INBOUND\n");
	fprintf(f, "-A OUTPUT -p tcp -j CINCH_OUTPUT\n");
	if (fclose(f) != 0) {
		free(buf);
		return NULL;
	}
	return buf;
}

char *intercept_guard_rules(const struct intercept_config *cfg)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	if (!f)
		return NULL;
	fprintf(f, ":CINCH_GUARD - [0:0]\n");
	for (int in = 0; in < 2; in++)
		fprintf(f,
			"-A CINCH_GUARD -p tcp --dport %u -m conntrack ! --ctstate DNAT "
			"-j REJECT --reject-with tcp-reset\n",
			in ? cfg->inbound_port : cfg->outbound_port);
	fprintf(f, "-A INPUT -p tcp -j CINCH_GUARD\n");
	if (fclose(f) != 0) {
		free(buf);
		return NULL;
	}
	return buf;
}

/* Writes the rule lines of `rules` (NULL: none) to f. */
static void merge_put_rules(FILE *f, const char *rules)
{
	for (const char *p = rules; p && *p;) {
		const char *nl = strchr(p, '\n');
		size_t n = nl ? (size_t)(nl - p) + 1 : strlen(p);
		if (*p == '-')
			fwrite(p, 1, n, f);
		p += n;
	}
}

char *intercept_merge(const char *saved, const char *table, const char *rules)
{
	static const char *const nat_builtins[] = {"PREROUTING", "INPUT", "OUTPUT", "POSTROUTING",
						   NULL};
	static const char *const filter_builtins[] = {"INPUT", "FORWARD", "OUTPUT", NULL};
	const char *const *builtins = strcmp(table, "nat") ? filter_builtins : nat_builtins;
	int ours_first = strcmp(table, "nat") != 0;
	char *buf = NULL, *decls = NULL, *body = NULL;
	size_t len = 0, dlen = 0, blen = 0;
	FILE *f = open_memstream(&buf, &len), *d = open_memstream(&decls, &dlen),
	     *b = open_memstream(&body, &blen);
	int in_table = 0, have[4] = {0};
	char header[16];

	snprintf(header, sizeof(header), "*%s", table);

	if (!f || !d || !b)
		goto fail;
	for (const char *p = saved; *p;) {
		const char *nl = strchr(p, '\n');
		size_t n = nl ? (size_t)(nl - p) : strlen(p);
		char line[4096];
		if (n < sizeof(line)) {
			memcpy(line, p, n);
			line[n] = '\0';
			if (line[0] == '*')
				in_table = !strcmp(line, header);
			else if (in_table && line[0] == ':') {
				for (int i = 0; builtins[i]; i++)
					if (!strncmp(line + 1, builtins[i], strlen(builtins[i])) &&
					    line[1 + strlen(builtins[i])] == ' ')
						have[i] = 1;
				if (!strstr(line, INTERCEPT_CHAIN_PREFIX))
					fprintf(d, "%s\n", line);
			} else if (in_table && line[0] == '-' &&
				   !strstr(line, INTERCEPT_CHAIN_PREFIX)) {
				fprintf(b, "%s\n", line);
			}
		}
		p += n + (nl ? 1 : 0);
	}
	for (int i = 0; builtins[i]; i++)
		if (!have[i])
			fprintf(d, ":%s ACCEPT [0:0]\n", builtins[i]);
	if (fclose(d) != 0 || fclose(b) != 0) {
		d = b = NULL;
		goto fail;
	}
	d = b = NULL;
	/* Declarations first (built-ins, others', ours), then the rules. */
	fprintf(f, "%s\n%s", header, decls);
	if (rules) {
		for (const char *p = rules; *p;) {
			const char *nl = strchr(p, '\n');
			size_t n = nl ? (size_t)(nl - p) + 1 : strlen(p);
			if (*p == ':')
				fwrite(p, 1, n, f);
			p += n;
		}
	}
	if (ours_first)
		merge_put_rules(f, rules);
	fputs(body, f);
	if (!ours_first)
		merge_put_rules(f, rules);
	fputs("COMMIT\n", f);
	free(decls);
	free(body);
	if (fclose(f) != 0) {
		free(buf);
		return NULL;
	}
	return buf;
fail:
	if (d)
		fclose(d);
	if (b)
		fclose(b);
	if (f)
		fclose(f);
	free(decls);
	free(body);
	free(buf);
	return NULL;
}

/* Runs argv with `in` on its stdin (or NULL) and its stdout into *out (or
 * discarded). The exit status, or -errno. */
static int run_tool(char *const argv[], const char *in, char **out)
{
	int pin[2] = {-1, -1}, pout[2] = {-1, -1}, status = 0;
	char *buf = NULL;
	size_t len = 0, cap = 0;
	pid_t pid;

	if (pipe2(pin, O_CLOEXEC) < 0 || pipe2(pout, O_CLOEXEC) < 0)
		goto fail;
	pid = fork();
	if (pid < 0)
		goto fail;
	if (pid == 0) {
		dup2(pin[0], 0);
		dup2(pout[1], 1);
		execvp(argv[0], argv);
		_exit(127);
	}
	close(pin[0]);
	close(pout[1]);
	pin[0] = pout[1] = -1;
	if (in) {
		size_t off = 0, n = strlen(in);
		while (off < n) {
			ssize_t w = write(pin[1], in + off, n - off);
			if (w <= 0)
				break;
			off += (size_t)w;
		}
	}
	close(pin[1]);
	pin[1] = -1;
	for (;;) {
		if (len + 4096 + 1 > cap) {
			char *g = realloc(buf, cap = cap ? 2 * cap : 8192);
			if (!g)
				break;
			buf = g;
		}
		ssize_t r = read(pout[0], buf + len, cap - len - 1);
		if (r <= 0)
			break;
		len += (size_t)r;
	}
	close(pout[0]);
	pout[0] = -1;
	if (buf)
		buf[len] = '\0';
	if (waitpid(pid, &status, 0) < 0)
		goto fail;
	if (out)
		*out = buf ? buf : strdup("");
	else
		free(buf);
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
fail:;
	int e = -errno;
	for (int i = 0; i < 2; i++) {
		if (pin[i] >= 0)
			close(pin[i]);
		if (pout[i] >= 0)
			close(pout[i]);
	}
	free(buf);
	return e ? e : -EIO;
}

/* The restore input for one table: its saved state merged with `rules`. */
static int merge_table(const char *save, const char *table, const char *rules, FILE *input)
{
	char *saved = NULL, *merged = NULL;
	char *save_argv[] = {(char *)save, "-t", (char *)table, NULL};
	int rc = run_tool(save_argv, NULL, &saved);

	if (rc != 0) {
		fprintf(stderr, "cinch-agent init: %s -t %s failed (%d)\n", save, table, rc);
		rc = rc < 0 ? rc : -EIO;
	} else if (!(merged = intercept_merge(saved, table, rules))) {
		rc = -ENOMEM;
	} else {
		fputs(merged, input);
	}
	free(saved);
	free(merged);
	return rc;
}

static int apply_family(const struct intercept_config *cfg, int family, int remove)
{
	const char *save = family == AF_INET ? "iptables-save" : "ip6tables-save";
	const char *restore = family == AF_INET ? "iptables-restore" : "ip6tables-restore";
	char *rules = NULL, *guard = NULL, *input = NULL;
	size_t input_len = 0;
	FILE *in = NULL;
	int rc;

	if (!remove && (!(rules = intercept_rules(cfg, family)) ||
			!(guard = intercept_guard_rules(cfg)))) {
		rc = -ENOMEM;
		goto out;
	}
	if (!(in = open_memstream(&input, &input_len))) {
		rc = -ENOMEM;
		goto out;
	}
	if ((rc = merge_table(save, "nat", rules, in)) != 0 ||
	    (rc = merge_table(save, "filter", guard, in)) != 0)
		goto out;
	if (fclose(in) != 0) {
		in = NULL;
		rc = -ENOMEM;
		goto out;
	}
	in = NULL;
	char *restore_argv[] = {(char *)restore, "-w", "5", NULL};
	rc = run_tool(restore_argv, input, NULL);
	if (rc != 0) {
		fprintf(stderr, "cinch-agent init: %s refused the rules (%d); nothing changed\n",
			restore, rc);
		rc = rc < 0 ? rc : -EIO;
	}
out:
	if (in)
		fclose(in);
	free(rules);
	free(guard);
	free(input);
	return rc;
}

int intercept_apply(const struct intercept_config *cfg, int remove)
{
	int rc = apply_family(cfg, AF_INET, remove);

	/* IPv6 rules wherever IPv6 exists: a pod reachable over IPv6 without
	 * them would bypass the mesh. */
	if (rc == 0 && access("/proc/net/if_inet6", F_OK) == 0)
		rc = apply_family(cfg, AF_INET6, remove);
	return rc;
}
