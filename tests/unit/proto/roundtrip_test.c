/* roundtrip_test: every message of proto/ survives pack → unpack → pack
 * byte for byte, with every field set (each oneof in turn), and every
 * truncation of a packed message is either refused or decoded cleanly.
 *
 * It walks protobuf-c's descriptors rather than naming fields, so a message
 * or field added to proto/ is covered without touching this file. Under
 * AddressSanitizer the truncation loop doubles as a small decoder fuzz. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cinch/v1/config.pb-c.h"
#include "cinch/v1/identity.pb-c.h"
#include "cinch/v1/trust.pb-c.h"

static const ProtobufCMessageDescriptor *const all_messages[] = {
	&cinch__v1__trust_bundle__descriptor,
	&cinch__v1__credential__descriptor,
	&cinch__v1__sign_request__descriptor,
	&cinch__v1__sign_response__descriptor,
	&cinch__v1__watch_request__descriptor,
	&cinch__v1__snapshot__descriptor,
	&cinch__v1__workload__descriptor,
	&cinch__v1__label__descriptor,
	&cinch__v1__port_range__descriptor,
	&cinch__v1__source__descriptor,
	&cinch__v1__inbound_rule__descriptor,
	&cinch__v1__peer__descriptor,
	&cinch__v1__egress_rule__descriptor,
	&cinch__v1__service__descriptor,
	&cinch__v1__service_port__descriptor,
	&cinch__v1__endpoint__descriptor,
	&cinch__v1__report_request__descriptor,
	&cinch__v1__report_response__descriptor,
};

#define REPEAT 2 /* elements in each repeated field */

static size_t scalar_size(ProtobufCType t)
{
	switch (t) {
	case PROTOBUF_C_TYPE_INT32: case PROTOBUF_C_TYPE_SINT32: case PROTOBUF_C_TYPE_SFIXED32:
	case PROTOBUF_C_TYPE_UINT32: case PROTOBUF_C_TYPE_FIXED32: case PROTOBUF_C_TYPE_FLOAT:
	case PROTOBUF_C_TYPE_ENUM:
		return 4;
	case PROTOBUF_C_TYPE_INT64: case PROTOBUF_C_TYPE_SINT64: case PROTOBUF_C_TYPE_SFIXED64:
	case PROTOBUF_C_TYPE_UINT64: case PROTOBUF_C_TYPE_FIXED64: case PROTOBUF_C_TYPE_DOUBLE:
		return 8;
	case PROTOBUF_C_TYPE_BOOL:
		return sizeof(protobuf_c_boolean);
	case PROTOBUF_C_TYPE_STRING:
		return sizeof(char *);
	case PROTOBUF_C_TYPE_BYTES:
		return sizeof(ProtobufCBinaryData);
	case PROTOBUF_C_TYPE_MESSAGE:
		return sizeof(ProtobufCMessage *);
	}
	return 0;
}

static ProtobufCMessage *fill_message(const ProtobufCMessageDescriptor *d, unsigned seed,
				      int oneof_pick);

/* Writes one non-default value derived from `seed` at `p`. */
static void fill_value(const ProtobufCFieldDescriptor *f, void *p, unsigned seed)
{
	char text[64];

	switch (f->type) {
	case PROTOBUF_C_TYPE_ENUM: {
		const ProtobufCEnumDescriptor *e = f->descriptor;
		*(int32_t *)p = e->values[1 + seed % (e->n_values - 1)].value;
		break;
	}
	case PROTOBUF_C_TYPE_BOOL:
		*(protobuf_c_boolean *)p = 1;
		break;
	case PROTOBUF_C_TYPE_STRING:
		snprintf(text, sizeof(text), "%s-%u-\xc3\xa9", f->name, seed);
		*(char **)p = strdup(text);
		break;
	case PROTOBUF_C_TYPE_BYTES: {
		ProtobufCBinaryData *b = p;
		b->len = 3 + seed % 5;
		b->data = malloc(b->len);
		for (size_t i = 0; i < b->len; i++)
			b->data[i] = (uint8_t)(seed * 31 + i); /* includes 0x00 bytes */
		break;
	}
	case PROTOBUF_C_TYPE_MESSAGE:
		*(ProtobufCMessage **)p = fill_message(f->descriptor, seed + 1, 0);
		break;
	default: {
		/* Large enough to need a multi-byte varint, negative for signed. */
		uint64_t v = 0x8000000000000000ull | ((uint64_t)seed * 0x9e3779b97f4a7c15ull);
		memcpy(p, &v, scalar_size(f->type));
		break;
	}
	}
}

/* A new message with every field set; in each oneof only the member at
 * index `oneof_pick` (modulo the oneof's size) is set. */
static ProtobufCMessage *fill_message(const ProtobufCMessageDescriptor *d, unsigned seed,
				      int oneof_pick)
{
	ProtobufCMessage *m = calloc(1, d->sizeof_message);
	d->message_init(m);

	for (unsigned i = 0; i < d->n_fields; i++) {
		const ProtobufCFieldDescriptor *f = &d->fields[i];
		char *field = (char *)m + f->offset;

		if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
			/* Members of one oneof share quantifier_offset. */
			unsigned first = i, n = 0;
			while (first > 0 && (d->fields[first - 1].flags & PROTOBUF_C_FIELD_FLAG_ONEOF) &&
			       d->fields[first - 1].quantifier_offset == f->quantifier_offset)
				first--;
			for (unsigned j = first; j < d->n_fields &&
			     (d->fields[j].flags & PROTOBUF_C_FIELD_FLAG_ONEOF) &&
			     d->fields[j].quantifier_offset == f->quantifier_offset; j++)
				n++;
			if (i - first != (unsigned)oneof_pick % n)
				continue;
			*(uint32_t *)((char *)m + f->quantifier_offset) = f->id;
			fill_value(f, field, seed + i);
		} else if (f->label == PROTOBUF_C_LABEL_REPEATED) {
			size_t sz = scalar_size(f->type);
			char *arr = calloc(REPEAT, sz);
			for (unsigned k = 0; k < REPEAT; k++)
				fill_value(f, arr + k * sz, seed + i * 7 + k);
			*(size_t *)((char *)m + f->quantifier_offset) = REPEAT;
			*(void **)field = arr;
		} else {
			fill_value(f, field, seed + i);
		}
	}
	return m;
}

/* Packs into a new buffer; *len gets its size. */
static uint8_t *pack(const ProtobufCMessage *m, size_t *len)
{
	*len = protobuf_c_message_get_packed_size(m);
	uint8_t *buf = malloc(*len ? *len : 1);
	assert_int_equal(protobuf_c_message_pack(m, buf), *len);
	return buf;
}

/* Frees a message made by fill_message (allocated with malloc, so the
 * default allocator's free_unpacked releases it correctly). */
static void free_filled(ProtobufCMessage *m)
{
	protobuf_c_message_free_unpacked(m, NULL);
}

static int oneof_count(const ProtobufCMessageDescriptor *d)
{
	int most = 1;
	for (unsigned i = 0; i < d->n_fields; i++) {
		int n = 0;
		for (unsigned j = 0; j < d->n_fields; j++)
			if ((d->fields[i].flags & PROTOBUF_C_FIELD_FLAG_ONEOF) &&
			    (d->fields[j].flags & PROTOBUF_C_FIELD_FLAG_ONEOF) &&
			    d->fields[j].quantifier_offset == d->fields[i].quantifier_offset)
				n++;
		if (n > most)
			most = n;
	}
	return most;
}

static void test_roundtrip_every_message(void **state)
{
	size_t n = sizeof(all_messages) / sizeof(all_messages[0]);

	for (size_t i = 0; i < n; i++) {
		const ProtobufCMessageDescriptor *d = all_messages[i];
		for (int pick = 0; pick < oneof_count(d); pick++) {
			ProtobufCMessage *m = fill_message(d, (unsigned)i + 1, pick);
			size_t len1, len2;
			uint8_t *b1 = pack(m, &len1);

			ProtobufCMessage *u = protobuf_c_message_unpack(d, NULL, len1, b1);
			if (!u)
				fail_msg("%s (oneof %d) does not unpack", d->name, pick);
			assert_true(protobuf_c_message_check(u));
			uint8_t *b2 = pack(u, &len2);
			print_message("%s oneof=%d: %zu bytes\n", d->name, pick, len1);
			if (d->n_fields)
				assert_true(len1 > 0);
			assert_int_equal(len1, len2);
			assert_memory_equal(b1, b2, len1);

			/* Every strict prefix either fails or decodes to a valid message. */
			for (size_t cut = 0; cut < len1; cut++) {
				ProtobufCMessage *t = protobuf_c_message_unpack(d, NULL, cut, b1);
				if (t) {
					assert_true(protobuf_c_message_check(t));
					protobuf_c_message_free_unpacked(t, NULL);
				}
			}
			protobuf_c_message_free_unpacked(u, NULL);
			free(b1);
			free(b2);
			free_filled(m);
		}
	}
}

static void test_all_messages_listed(void **state)
{
	/* CMake counts the "message" declarations in proto/ (PROTO_MESSAGES),
	 * and every message used as a field type must be listed too, so a new
	 * message cannot be left out of the round trip. */
	size_t n = sizeof(all_messages) / sizeof(all_messages[0]);
	assert_int_equal(n, PROTO_MESSAGES);
	for (size_t i = 0; i < n; i++) {
		const ProtobufCMessageDescriptor *d = all_messages[i];
		for (unsigned f = 0; f < d->n_fields; f++) {
			if (d->fields[f].type != PROTOBUF_C_TYPE_MESSAGE)
				continue;
			int found = 0;
			for (size_t j = 0; j < n; j++)
				found |= all_messages[j] == d->fields[f].descriptor;
			if (!found)
				fail_msg("%s.%s uses an unlisted message", d->name, d->fields[f].name);
		}
	}
}

static void test_unknown_fields_kept_out(void **state)
{
	/* A newer peer's unknown field (number 99, varint) must not break an
	 * older decoder: it is skipped and the known fields survive. */
	static const uint8_t wire[] = {
		0x0a, 0x02, 'v', '1',   /* Snapshot.version = "v1" */
		0x98, 0x06, 0x2a,       /* field 99, varint 42 */
	};
	Cinch__V1__Snapshot *s = cinch__v1__snapshot__unpack(NULL, sizeof(wire), wire);
	assert_non_null(s);
	assert_string_equal(s->version, "v1");
	cinch__v1__snapshot__free_unpacked(s, NULL);
}

static void test_garbage_refused(void **state)
{
	/* A length prefix pointing past the end, and a bad wire type. */
	static const uint8_t overlong[] = { 0x0a, 0x7f, 'x' };
	static const uint8_t badtype[] = { 0x0f, 0x00 };
	assert_null(cinch__v1__snapshot__unpack(NULL, sizeof(overlong), overlong));
	assert_null(cinch__v1__sign_request__unpack(NULL, sizeof(badtype), badtype));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_roundtrip_every_message),
		cmocka_unit_test(test_all_messages_listed),
		cmocka_unit_test(test_unknown_fields_kept_out),
		cmocka_unit_test(test_garbage_refused),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
