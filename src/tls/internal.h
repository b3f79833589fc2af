/* Shared between the files of src/tls only. */
#ifndef GT_TLS_INTERNAL_H
#define GT_TLS_INTERNAL_H

#include <openssl/evp.h>

#include "gretel/tls.h"

EVP_PKEY *gt_ca_leaf_key(const gt_ca *ca); /* borrowed */

#endif
