/* version: see version.h. */
#include "version.h"

#include <jansson.h>
#include <nghttp2/nghttp2.h>
#include <openssl/crypto.h>
#include <protobuf-c/protobuf-c.h>
#include <uv.h>
#include <yaml.h>

#include "cinch_config.h"

#ifndef OPENSSL_IS_BORINGSSL
#error "Cinch must be built against BoringSSL, not OpenSSL"
#endif

void version_print(FILE *out, const char *prog)
{
	fprintf(out, "%s %s\n", prog, CINCH_VERSION);
	fprintf(out, "  BoringSSL   %s (API %d, %s)\n", OpenSSL_version(OPENSSL_VERSION),
		BORINGSSL_API_VERSION, CINCH_BORINGSSL_PACKAGE);
	fprintf(out, "  libuv       %s\n", uv_version_string());
	fprintf(out, "  protobuf-c  %s\n", protobuf_c_version());
	fprintf(out, "  jansson     %s\n", jansson_version_str());
	fprintf(out, "  nghttp2     %s\n", nghttp2_version(0)->version_str);
	fprintf(out, "  libyaml     %s\n", yaml_get_version_string());
}
