/* libFuzzer entry for the config parser (inih plus gretel's key table): any file must give
 * either a config or diagnostics with positions inside the file, never a crash or a leak. */
#include <assert.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "gretel/config.h"
#include "gretel/util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int inited; /* process-wide library option, set once */
    if (!inited) {
        gt_config_global_init();
        inited = 1;
    }
    char path[64];
    snprintf(path, sizeof(path), "/tmp/gretel-fuzz-conf-%d", (int)getpid());
    FILE *f = fopen(path, "wb");
    if (!f)
        return 0;
    fwrite(data, 1, size, f);
    fclose(f);
    size_t lines = 1;
    for (size_t i = 0; i < size; i++)
        lines += data[i] == '\n';
    gt_config *cfg = NULL;
    gt_diags d;
    gt_diags_init(&d);
    int r = gt_config_load(&cfg, path, NULL, 0, &d);
    if (r == 0) {
        assert(cfg && cfg->nlisten > 0);
        assert(d.errors == 0);
    } else {
        assert(cfg == NULL && d.errors > 0);
        for (size_t i = 0; i < d.n; i++)
            assert(d.v[i].line <= lines);
    }
    gt_config_free(cfg);
    gt_diags_free(&d);
    unlink(path);
    return 0;
}
