/* testkube: the fake Kubernetes API server of tests/lib/kube_api.py,
 * started with certificates made at test time (a root and a server
 * certificate for 127.0.0.1) and the files a pod would have: the CA and
 * the control plane's bearer token ("control-token"), plus a token the
 * server refuses. Everything lives in a temporary directory that
 * testkube_stop removes. */
#ifndef CINCH_TESTKUBE_H
#define CINCH_TESTKUBE_H

#include "testproc.h"

struct testkube {
	char dir[64];
	char server[64];    /* https://127.0.0.1:<port> */
	char ca[128];       /* the server's CA, PEM */
	char token[128];    /* a token file the server accepts */
	char bad_token[128];/* one it refuses */
	struct testproc proc;
};

/* 0, or -1 when something could not be made or started. */
int testkube_start(struct testkube *tk, const char *script);
void testkube_stop(struct testkube *tk);

#endif
