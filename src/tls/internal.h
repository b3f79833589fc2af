/* Shared between the files of src/tls only. */
#ifndef GT_TLS_INTERNAL_H
#define GT_TLS_INTERNAL_H

#include <openssl/evp.h>

#include "gretel/tls.h"

EVP_PKEY *gt_ca_leaf_key(const gt_ca *ca); /* borrowed */
/* "what: OpenSSL's first queued error" into err, and clears the queue. */
void gt_tls_ssl_err(char *err, size_t errlen, const char *what);

#endif
