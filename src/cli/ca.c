/* `gretel ca init|show|export`: the local interception CA. init creates it on this machine
 * (the key never leaves ca_dir and is never printed); show prints where it is, its
 * fingerprint and the SPKI hash; export writes the certificate for trust stores. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "gretel/tls.h"
#include "gretel/util.h"

static int load_cfg(gt_cli_opts *o, gt_config **cfg)
{
    gt_diags d;
    gt_diags_init(&d);
    int rv = gt_cli_load_config(o, cfg, &d);
    gt_diags_print(&d, stderr);
    gt_diags_free(&d);
    return rv < 0 ? 2 : 0;
}

static void fmt_time(time_t t, char *buf, size_t cap)
{
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, cap, "%Y-%m-%d %H:%M:%S UTC", &tm);
}

static int ca_init(gt_config *cfg, gt_cli_opts *o)
{
    bool force = false;
    unsigned bits = 256;
    for (size_t i = 1; i < o->nargs; i++) {
        if (strcmp(o->args[i], "--force") == 0)
            force = true;
        else if (strcmp(o->args[i], "--p384") == 0)
            bits = 384;
        else {
            fprintf(stderr, "gretel ca init: unknown argument '%s' (--force, --p384)\n",
                    o->args[i]);
            return 2;
        }
    }
    char err[600];
    if (gt_ca_init(cfg->ca_dir, bits, force, err, sizeof(err)) < 0) {
        fprintf(stderr, "gretel ca init: %s\n", err);
        return 2;
    }
    gt_ca *ca = NULL;
    if (gt_ca_load(&ca, cfg->ca_dir, err, sizeof(err)) < 0) {
        fprintf(stderr, "gretel ca init: created, but cannot load it back: %s\n", err);
        return 2;
    }
    char fp[128];
    gt_ca_fingerprint(ca, fp, sizeof(fp));
    printf("created a new local CA in %s (P-%u, key mode 0600)\n"
           "sha256 fingerprint: %s\n"
           "next: `gretel ca export gretel-ca.pem`, trust it in your browser (docs/HTTPS.md),\n"
           "then set mitm = on\n",
           cfg->ca_dir, bits, fp);
    gt_ca_free(ca);
    return 0;
}

static int ca_open(gt_config *cfg, gt_ca **ca, const char *cmd)
{
    char err[600];
    int rv = gt_ca_load(ca, cfg->ca_dir, err, sizeof(err));
    if (rv == GT_ENOTFOUND) {
        fprintf(stderr, "gretel ca %s: no CA in %s yet; create one with `gretel ca init`\n", cmd,
                cfg->ca_dir);
        return 2;
    }
    if (rv < 0) {
        fprintf(stderr, "gretel ca %s: %s\n", cmd, err);
        return 2;
    }
    return 0;
}

static int ca_show(gt_config *cfg)
{
    gt_ca *ca = NULL;
    int code = ca_open(cfg, &ca, "show");
    if (code)
        return code;
    char fp[128], spki[64], subj[300], nb[40], na[40];
    time_t tnb, tna;
    gt_ca_fingerprint(ca, fp, sizeof(fp));
    gt_ca_spki_sha256(ca, spki, sizeof(spki));
    gt_ca_describe(ca, subj, sizeof(subj), &tnb, &tna);
    fmt_time(tnb, nb, sizeof(nb));
    fmt_time(tna, na, sizeof(na));
    printf("path: %s/%s\n"
           "subject: %s\n"
           "valid: %s to %s\n"
           "sha256 fingerprint: %s\n"
           "spki sha256 (base64): %s\n",
           cfg->ca_dir, GT_CA_CERT, subj, nb, na, fp, spki);
    gt_ca_free(ca);
    return 0;
}

static int ca_export(gt_config *cfg, gt_cli_opts *o)
{
    gt_ca *ca = NULL;
    int code = ca_open(cfg, &ca, "export");
    if (code)
        return code;
    size_t len;
    char *pem = gt_ca_pem(ca, &len);
    gt_ca_free(ca);
    const char *file = o->nargs > 1 ? o->args[1] : NULL;
    FILE *f = file && strcmp(file, "-") ? fopen(file, "w") : stdout;
    if (!f) {
        fprintf(stderr, "gretel ca export: %s: %s\n", file, strerror(errno));
        free(pem);
        return 2;
    }
    bool ok = fwrite(pem, 1, len, f) == len;
    if (f != stdout)
        ok = (fclose(f) == 0) && ok;
    else
        ok = (fflush(f) == 0) && ok;
    free(pem);
    if (!ok) {
        fprintf(stderr, "gretel ca export: write failed\n");
        return 2;
    }
    if (f != stdout)
        fprintf(stderr, "wrote %s (the certificate only; the key stays in %s)\n", file,
                cfg->ca_dir);
    return 0;
}

int gt_cmd_ca(int argc, char **argv)
{
    gt_cli_opts o;
    gt_config *cfg = NULL;
    int code = gt_cli_parse(argc, argv, &o);
    if (code)
        goto out;
    if (o.nargs < 1) {
        fprintf(stderr, "usage: gretel ca init [--force] [--p384] | show | export [FILE]\n");
        code = 2;
        goto out;
    }
    if ((code = load_cfg(&o, &cfg)) != 0)
        goto out;
    if (strcmp(o.args[0], "init") == 0)
        code = ca_init(cfg, &o);
    else if (strcmp(o.args[0], "show") == 0)
        code = ca_show(cfg);
    else if (strcmp(o.args[0], "export") == 0)
        code = ca_export(cfg, &o);
    else {
        fprintf(stderr, "gretel ca: unknown subcommand '%s' (init, show, export)\n", o.args[0]);
        code = 2;
    }
out:
    gt_config_free(cfg);
    gt_cli_opts_free(&o);
    return code;
}
