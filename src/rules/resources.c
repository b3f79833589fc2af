/* Built-in local answers: the block response kinds and the redirect resources rules name
 * (noop.js, 1x1.gif, ...). Static data only. */
#include "gretel/rules.h"

/* GIF89a 1x1 transparent, 43 bytes */
static const char gif1x1[] = "GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff"
                             "!\xf9\x04\x01\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01"
                             "\x00\x00\x02\x02\x44\x01\x00;";
/* PNG 2x2 transparent (uBlock Origin's 2x2.png equivalent) */
static const char png2x2[] =
    "\x89\x50\x4e\x47\x0d\x0a\x1a\x0a\x00\x00\x00\x0d\x49\x48\x44\x52\x00\x00\x00\x02\x00\x00"
    "\x00\x02\x08\x06\x00\x00\x00\x72\xb6\x0d\x24\x00\x00\x00\x0b\x49\x44\x41\x54\x78\x9c"
    "\x63\x60\x40\x07\x00\x00\x12\x00\x01\x77\xf1\xfa\x00\x00\x00\x00\x00\x49\x45\x4e\x44"
    "\xae\x42\x60\x82";
static const char page403[] =
    "<!doctype html><meta charset=utf-8><title>Blocked by gretel</title>"
    "<p>gretel blocked this request on your machine. Run <code>gretel explain URL</code> "
    "to see which rule decided.</p>\n";

#define R(st, ct, b, n) {st, ct, b, sizeof(b) - 1, n}
static const gt_resource table[GT_RESP_COUNT] = {
    [GT_RESP_DEFAULT] = {204, NULL, "", 0, "204"},
    [GT_RESP_403] = R(403, "text/html; charset=utf-8", page403, "403"),
    [GT_RESP_204] = {204, NULL, "", 0, "204"},
    [GT_RESP_JS] = R(200, "application/javascript", "(function(){})();\n", "noop.js"),
    [GT_RESP_CSS] = R(200, "text/css", "", "noop.css"),
    [GT_RESP_JSON] = R(200, "application/json", "{}", "noop.json"),
    [GT_RESP_HTML] = R(200, "text/html; charset=utf-8", "<!doctype html>", "noop.html"),
    [GT_RESP_TEXT] = R(200, "text/plain", "", "noop.txt"),
    [GT_RESP_GIF] = R(200, "image/gif", gif1x1, "1x1.gif"),
    [GT_RESP_PNG] = R(200, "image/png", png2x2, "2x2.png"),
};

const gt_resource *gt_rules_resource(gt_resp_kind k, gt_reqtype type)
{
    if (k == GT_RESP_DEFAULT)
        k = (type == GT_TYPE_DOCUMENT) ? GT_RESP_403 : GT_RESP_204;
    if (k < 0 || k >= GT_RESP_COUNT)
        k = GT_RESP_204;
    return &table[k];
}
