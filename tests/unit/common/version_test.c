/* version_test: the TLS library in this process is BoringSSL (headers and
 * the library actually mapped), libcurl uses GnuTLS rather than OpenSSL,
 * and --version names every linked library. This is the guard against the
 * "two libssl in one process" failure described in third_party/README.md. */
#include <dlfcn.h>
#include <link.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/crypto.h>
#include <openssl/ssl.h>

#include "httpc.h"
#include "version.h"

#ifndef OPENSSL_IS_BORINGSSL
#error "built against OpenSSL headers"
#endif

/* Which shared object a function lives in. */
static const char *object_of(const void *fn)
{
	Dl_info info;
	assert_true(dladdr(fn, &info) != 0);
	return info.dli_fname;
}

static void test_boringssl_linked(void **state)
{
	assert_non_null(strstr(OpenSSL_version(OPENSSL_VERSION), "BoringSSL"));
	assert_non_null(strstr(object_of((const void *)SSL_CTX_new), "/android/libssl.so"));
	assert_non_null(strstr(object_of((const void *)EVP_sha256), "/android/libcrypto.so"));
}

static int find_openssl_ssl(struct dl_phdr_info *info, size_t size, void *data)
{
	/* OpenSSL's TLS library is libssl.so.3 (BoringSSL's is android/libssl.so.0). */
	if (strstr(info->dlpi_name, "/libssl.so.") && !strstr(info->dlpi_name, "/android/"))
		*(const char **)data = info->dlpi_name;
	return 0;
}

/* OpenSSL's libcrypto.so.3 does get mapped (libcurl-gnutls -> libssh2 ->
 * libcrypto.so.3), but its TLS library must never be: that is the pairing
 * whose unversioned-symbol clashes send TLS calls to the wrong library. */
static void test_no_openssl_libssl_mapped(void **state)
{
	const char *found = NULL;
	dl_iterate_phdr(find_openssl_ssl, &found);
	if (found)
		fail_msg("OpenSSL's libssl is mapped into the process: %s", found);
}

static void test_curl_uses_gnutls(void **state)
{
	assert_int_equal(strncmp(httpc_curl_tls(), "GnuTLS/", 7), 0);
}

static void test_version_lists_libraries(void **state)
{
	static const char *const want[] = { "BoringSSL", "libuv", "protobuf-c", "jansson",
					    "libcurl", "GnuTLS", "nghttp2", "libyaml" };
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	version_print(f, "cinch-test");
	httpc_version_print(f);
	fclose(f);
	assert_int_equal(strncmp(buf, "cinch-test ", 11), 0);
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		if (!strstr(buf, want[i]))
			fail_msg("--version lacks %s:\n%s", want[i], buf);
	}
	free(buf);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_boringssl_linked),
		cmocka_unit_test(test_no_openssl_libssl_mapped),
		cmocka_unit_test(test_curl_uses_gnutls),
		cmocka_unit_test(test_version_lists_libraries),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
