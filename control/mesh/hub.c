/* hub: see hub.h.
 *
 * A generation is an array of entries plus a jansson object mapping the
 * workload key to its index (jansson's hash table is the map; nothing
 * else in it). Watches live in one list, independent of generations: on
 * publish each watch looks its workload up in the new generation. Reports
 * live in a jansson object keyed by workload that survives generations
 * (and drops workloads that left the registry), so a policy push does not
 * erase what agents said. */
#include "hub.h"
#include "log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grpcc.h" /* enum grpc_code */
#include "list.h"

struct hub_entry {
	char *workload, *spiffe_id, *version;
	char **addresses;
	size_t n_addresses;
	uint8_t *snap;
	size_t snap_len;
};

struct hub_gen {
	struct hub_entry *e;
	size_t n;
	json_t *index; /* workload -> index into e */
};

struct hub_watch {
	struct hub *h;
	struct list_node link; /* on h->watches */
	char *workload, *peer_id;
	char version[128]; /* what was last sent ("" before) */
	hub_send_cb send;
	hub_gone_cb gone;
	void *arg;
};

struct hub {
	struct hub_gen gen;
	struct list_node watches; /* struct hub_watch, newest first */
	json_t *reports;	  /* workload -> last report */
};

static void hub_gen_free(struct hub_gen *g)
{
	for (size_t i = 0; i < g->n; i++) {
		struct hub_entry *e = &g->e[i];
		free(e->workload);
		free(e->spiffe_id);
		free(e->version);
		for (size_t j = 0; j < e->n_addresses; j++)
			free(e->addresses[j]);
		free(e->addresses);
		free(e->snap);
	}
	free(g->e);
	json_decref(g->index);
	memset(g, 0, sizeof(*g));
}

int hub_new(struct hub **out)
{
	struct hub *h = calloc(1, sizeof(*h));

	if (!h)
		return -ENOMEM;
	list_init(&h->watches);
	h->gen.index = json_object();
	h->reports = json_object();
	if (!h->gen.index || !h->reports) {
		hub_free(h);
		return -ENOMEM;
	}
	*out = h;
	return 0;
}

void hub_free(struct hub *h)
{
	if (!h)
		return;
	hub_gen_free(&h->gen);
	json_decref(h->reports);
	free(h);
}

static const struct hub_entry *hub_find(const struct hub_gen *g, const char *workload)
{
	json_t *i = json_object_get(g->index, workload);

	return i ? &g->e[json_integer_value(i)] : NULL;
}

/* Copies one slice into `e`; -EINVAL or -ENOMEM. */
static int hub_entry_copy(struct hub_entry *e, const struct hub_slice *s)
{
	if (!s->workload || !*s->workload || !s->spiffe_id || !*s->spiffe_id || !s->version ||
	    !*s->version || strlen(s->version) >= sizeof(((struct hub_watch *)0)->version) ||
	    !s->snapshot || !s->snapshot_len)
		return -EINVAL;
	e->workload = strdup(s->workload);
	e->spiffe_id = strdup(s->spiffe_id);
	e->version = strdup(s->version);
	e->snap = malloc(s->snapshot_len);
	e->addresses = calloc(s->n_addresses ? s->n_addresses : 1, sizeof(char *));
	if (!e->workload || !e->spiffe_id || !e->version || !e->snap || !e->addresses)
		return -ENOMEM;
	memcpy(e->snap, s->snapshot, s->snapshot_len);
	e->snap_len = s->snapshot_len;
	for (size_t j = 0; j < s->n_addresses; j++) {
		e->addresses[j] = strdup(s->addresses[j]);
		if (!e->addresses[j])
			return -ENOMEM;
		e->n_addresses = j + 1;
	}
	return 0;
}

static int hub_send(struct hub_watch *w, const struct hub_entry *e)
{
	snprintf(w->version, sizeof(w->version), "%s", e->version);
	return w->send(w->arg, e->snap, e->snap_len);
}

static void hub_unlink(struct hub_watch *w)
{
	list_del(&w->link);
	free(w->workload);
	free(w->peer_id);
}

int hub_publish(struct hub *h, const struct hub_slice *slices, size_t n)
{
	struct hub_gen g = {.e = calloc(n ? n : 1, sizeof(struct hub_entry)),
			    .index = json_object()};
	int rc = g.e && g.index ? 0 : -ENOMEM;

	for (size_t i = 0; i < n && rc == 0; i++) {
		g.n = i + 1;
		rc = hub_entry_copy(&g.e[i], &slices[i]);
		if (rc == 0 && json_object_get(g.index, slices[i].workload))
			rc = -EINVAL;
		if (rc == 0 &&
		    json_object_set_new(g.index, slices[i].workload, json_integer((json_int_t)i)))
			rc = -ENOMEM;
	}
	if (rc < 0) {
		hub_gen_free(&g);
		return rc;
	}
	hub_gen_free(&h->gen);
	h->gen = g;

	/* Reports of workloads that left go with them. */
	const char *key;
	json_t *val;
	void *tmp;
	json_object_foreach_safe(h->reports, tmp, key, val)
	{
		if (!hub_find(&h->gen, key))
			json_object_del(h->reports, key);
	}

	struct list_node *wn, *wnext;
	list_for_each_safe(wn, wnext, &h->watches)
	{
		struct hub_watch *w = list_entry(wn, struct hub_watch, link);
		const struct hub_entry *e = hub_find(&h->gen, w->workload);
		if (!e || strcmp(e->spiffe_id, w->peer_id) != 0) {
			hub_gone_cb gone = w->gone;
			void *arg = w->arg;
			hub_unlink(w);
			free(w);
			gone(arg);
		} else if (strcmp(e->version, w->version) != 0) {
			hub_send(w, e); /* a failed send ends the stream in the transport */
		}
	}
	return 0;
}

/* The workload a caller may see. A gRPC status, *why on refusal. */
static int hub_resolve(const struct hub *h, const char *peer_id, const char *peer_addr,
		       const char *workload, const struct hub_entry **out, const char **why)
{
	const struct hub_entry *found = NULL;
	size_t same_id = 0;

	if (!peer_id || !*peer_id) {
		*why = "a client certificate is required";
		return GRPC_PERMISSION_DENIED;
	}
	if (workload && *workload) {
		found = hub_find(&h->gen, workload);
		if (!found) {
			*why = "no such workload in the registry";
			return GRPC_NOT_FOUND;
		}
		if (strcmp(found->spiffe_id, peer_id) != 0) {
			*why = "that workload runs under another identity";
			return GRPC_PERMISSION_DENIED;
		}
		*out = found;
		return GRPC_OK;
	}
	for (size_t i = 0; i < h->gen.n; i++) {
		const struct hub_entry *e = &h->gen.e[i];
		if (strcmp(e->spiffe_id, peer_id) != 0)
			continue;
		same_id++;
		for (size_t j = 0; peer_addr && j < e->n_addresses; j++)
			if (strcmp(e->addresses[j], peer_addr) == 0)
				found = e;
		if (!found && same_id == 1)
			*out = e;
	}
	if (found) {
		*out = found;
		return GRPC_OK;
	}
	if (same_id == 1)
		return GRPC_OK;
	*why = same_id ? "several workloads share this identity: name yours"
		       : "no workload in the registry has this identity";
	return GRPC_NOT_FOUND;
}

/* An agent that reconnects holding the current version is told nothing,
 * so it has nothing new to Report: its WatchRequest's known_version is
 * what it enforces, and stands as its report (after a control-plane
 * restart, status would otherwise show it out of sync until its next
 * change). Best effort: status is informational. */
static void hub_confirm(struct hub *h, const char *workload, const char *version)
{
	json_t *rep = json_object_get(h->reports, workload);

	rep = rep ? json_copy(rep)
		  : json_pack("{s:I, s:s, s:I, s:s}", "bundle_sequence", (json_int_t)0,
			      "cert_serial_hex", "", "cert_expires_at", (json_int_t)0, "error", "");
	if (rep && json_object_set_new(rep, "applied_version", json_string(version)) == 0 &&
	    json_object_set_new(rep, "reported_at", json_integer((json_int_t)time(NULL))) == 0) {
		json_object_set_new(h->reports, workload, rep);
		return;
	}
	json_decref(rep);
}

int hub_watch_open(struct hub *h, const char *peer_id, const char *peer_addr, const char *workload,
		   const char *known_version, hub_send_cb send, hub_gone_cb gone, void *arg,
		   struct hub_watch **out, const char **why)
{
	const struct hub_entry *e = NULL;
	struct hub_watch *w;
	int code;

	if (!send || !gone) {
		*why = "internal: no transport callbacks";
		return GRPC_INVALID_ARGUMENT;
	}
	code = hub_resolve(h, peer_id, peer_addr, workload, &e, why);
	if (code != GRPC_OK)
		return code;
	w = calloc(1, sizeof(*w));
	if (w) {
		w->workload = strdup(e->workload);
		w->peer_id = strdup(peer_id);
	}
	if (!w || !w->workload || !w->peer_id) {
		if (w) {
			free(w->workload);
			free(w->peer_id);
		}
		free(w);
		*why = "out of memory";
		return GRPC_INTERNAL;
	}
	w->h = h;
	w->send = send;
	w->gone = gone;
	w->arg = arg;
	list_add_head(&h->watches, &w->link);
	*out = w;
	if (!known_version || strcmp(known_version, e->version) != 0) {
		hub_send(w, e);
		return GRPC_OK;
	}
	snprintf(w->version, sizeof(w->version), "%s", e->version);
	hub_confirm(h, e->workload, known_version);
	return GRPC_OK;
}

void hub_watch_close(struct hub_watch *w)
{
	if (!w)
		return;
	hub_unlink(w);
	free(w);
}

int hub_report(struct hub *h, const char *peer_id, const char *peer_addr, const char *workload,
	       const struct hub_report *r, time_t now, const char **why)
{
	const struct hub_entry *e = NULL;
	int code = hub_resolve(h, peer_id, peer_addr, workload, &e, why);

	if (code != GRPC_OK)
		return code;
	if (!r->applied_version || !*r->applied_version) {
		*why = "applied_version is empty";
		return GRPC_INVALID_ARGUMENT;
	}
	/* proto3 strings are UTF-8 (protobuf-c does not check): refused as
	 * the caller's error, never stored for an operator's terminal */
	const char *strs[] = {r->applied_version, r->cert_serial_hex, r->error};
	for (size_t i = 0; i < sizeof(strs) / sizeof(strs[0]); i++)
		if (strs[i] && !log_utf8_valid(strs[i])) {
			*why = "a string field is not valid UTF-8";
			return GRPC_INVALID_ARGUMENT;
		}
	json_t *rep =
		json_pack("{s:s, s:I, s:s, s:I, s:s, s:I}", "applied_version", r->applied_version,
			  "bundle_sequence", (json_int_t)r->bundle_sequence, "cert_serial_hex",
			  r->cert_serial_hex ? r->cert_serial_hex : "", "cert_expires_at",
			  (json_int_t)r->cert_expires_at, "error", r->error ? r->error : "",
			  "reported_at", (json_int_t)now);
	if (!rep || json_object_set_new(h->reports, e->workload, rep)) {
		*why = "out of memory";
		return GRPC_INTERNAL;
	}
	return GRPC_OK;
}

json_t *hub_status(const struct hub *h)
{
	json_t *out = json_array(), *conns = json_object();

	for (const struct list_node *wn = h->watches.next; conns && wn != &h->watches;
	     wn = wn->next) {
		const struct hub_watch *w = list_entry(wn, const struct hub_watch, link);
		json_int_t n = json_integer_value(json_object_get(conns, w->workload));
		json_object_set_new(conns, w->workload, json_integer(n + 1));
	}
	for (size_t i = 0; out && conns && i < h->gen.n; i++) {
		const struct hub_entry *e = &h->gen.e[i];
		json_t *rep = json_object_get(h->reports, e->workload);
		const char *applied = json_string_value(json_object_get(rep, "applied_version"));
		json_t *o = json_pack("{s:s, s:s, s:s, s:I, s:b, s:O?}", "workload", e->workload,
				      "spiffe_id", e->spiffe_id, "version", e->version, "connected",
				      json_integer_value(json_object_get(conns, e->workload)),
				      "in_sync", applied && strcmp(applied, e->version) == 0,
				      "report", rep);
		if (!o || json_array_append_new(out, o)) {
			json_decref(out);
			out = NULL;
		}
	}
	json_decref(conns);
	return out;
}

uint64_t hub_min_bundle_sequence(const struct hub *h)
{
	uint64_t min = UINT64_MAX;

	for (const struct list_node *wn = h->watches.next; wn != &h->watches; wn = wn->next) {
		const struct hub_watch *w = list_entry(wn, const struct hub_watch, link);
		json_t *rep = json_object_get(h->reports, w->workload);
		uint64_t seq =
			(uint64_t)json_integer_value(json_object_get(rep, "bundle_sequence"));
		if (seq < min)
			min = seq;
	}
	return min;
}
