#!/usr/bin/python3
"""Writes the seed inputs of fuzz_proxy and fuzz_proxy_h2 (tests/fuzz/proxy_driver.h gives
the format): the issue 14 reproductions and the integration suite's kinds of exchange.
Usage: proxy_seeds.py OUTDIR_PROXY OUTDIR_PROXY_H2"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
from lib import h2_frame, hpack_fields, h2_request_block  # noqa: E402

MITM, RULES, FORWARD, LAN, HTTP2_OFF, DEBUG = 1, 2, 4, 8, 16, 32
ORIGIN_H1, CLIENT_H1 = 0x40, 0x80
H2_DATA, H2_HEADERS, H2_RST, H2_SETTINGS, H2_GOAWAY = 0, 1, 3, 4, 7


def rec(tag, data):
    out = b""
    while True:  # records hold at most 65535 bytes; longer data is split
        part, data = data[:65535], data[65535:]
        out += bytes([tag]) + len(part).to_bytes(2, "big") + part
        if not data:
            return out


def C(d): return rec(0, d)
def O(d): return rec(1, d)
def CSHUT(): return rec(2, b"")
def OCLOSE(): return rec(3, b"")


def get(url, host, extra=b""):
    return f"GET {url} HTTP/1.1\r\nHost: {host}\r\n".encode() + extra + b"\r\n"


OK5 = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
WS_HEAD = (b"Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
           b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n")
WS_101 = (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
          b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n")
CHUNKED = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-T: 1\r\n\r\n"
HTML = (b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 96\r\n\r\n"
        b'<html><script type="application/ld+json">{"@type":"Product","gtin13":"4006381333931"}'
        b"</script>")[:170]

proxy = {
    # issue 14, defect 1: 400 pipelined local answers in one write
    "repro-pipelined-local": bytes([0]) + C(get("http://gretel.proxy/nope", "gretel.proxy") * 400),
    "repro-pipelined-blocked": bytes([RULES]) + C(get("http://ads.test/p.gif", "ads.test") * 400),
    # defect 2: CONNECT and a bad TLS record in one segment; half a hello then EOF
    "repro-connect-bad-record": bytes([MITM]) + C(
        b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"
        b"\x16\x03\x01\x00\x05\x02\x00\x00\x01\x00"),
    "repro-connect-half-hello": bytes([MITM]) + C(
        b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03") + CSHUT(),
    # defect 3: trim-referer and a 20,000-byte userinfo
    "repro-trim-referer": bytes([RULES]) + C(get(
        "http://news.test/x", "news.test",
        b"Referer: http://" + b"u" * 20000 + b"@news.test/x\r\nCookie: tid=1; a=2\r\n")) + O(OK5),
    "get-ok": bytes([0]) + C(get("http://a.test/", "a.test")) + O(OK5),
    "get-pipelined-chunked": bytes([0]) + C(get("http://a.test/1", "a.test") +
                                             get("http://a.test/2", "a.test")) + O(OK5 + CHUNKED),
    "get-forward": bytes([FORWARD]) + C(get("http://a.test/", "a.test")) + O(CHUNKED),
    "get-lan-loopback-denied": bytes([LAN]) + C(get("http://a.test/", "a.test")),
    "get-debug-document": bytes([DEBUG]) + C(get("http://a.test/p", "a.test",
                                                  b"Sec-Fetch-Dest: document\r\n")) + O(HTML),
    "post-body-rule": bytes([RULES]) + C(
        b"POST http://shop.test/collect HTTP/1.1\r\nHost: shop.test\r\nContent-Length: 11\r\n\r\n"
        b"item_id=123" + get("http://shop.test/next", "shop.test")) + O(OK5),
    "post-chunked-early-answer": bytes([0]) + C(
        b"POST http://a.test/up HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n") + O(OK5) + C(b"0\r\n\r\n"),
    "expect-continue": bytes([0]) + C(
        b"POST http://a.test/c HTTP/1.1\r\nHost: a.test\r\nExpect: 100-continue\r\n"
        b"Content-Length: 3\r\n\r\n") + O(b"HTTP/1.1 100 Continue\r\n\r\n") + C(b"abc") + O(OK5),
    "origin-cut-mid-body": bytes([0]) + C(get("http://a.test/", "a.test")) + O(
        b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort") + OCLOSE(),
    "origin-eof-body": bytes([0]) + C(get("http://a.test/", "a.test")) + O(
        b"HTTP/1.0 200 OK\r\n\r\nuntil close") + OCLOSE(),
    "setup-bad-host": bytes([0]) + C(b'GET /setup HTTP/1.1\r\nHost: a"><img src=x>\r\n\r\n'),
    "control-post": bytes([0]) + C(
        b"POST http://gretel.proxy/bought HTTP/1.1\r\nHost: gretel.proxy\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 9\r\n\r\nkey=gtin:"),
    "connect-raw-tunnel": bytes([0]) + C(b"CONNECT a.test:443 HTTP/1.1\r\nHost: a.test:443\r\n\r\n"
                                         b"ping") + O(b"pong") + OCLOSE(),
    "connect-mitm-not-tls": bytes([MITM]) + C(
        b"CONNECT a.test:443 HTTP/1.1\r\nHost: a.test:443\r\n\r\nSSH-2.0-x\r\n") + O(b"x"),
    "half-close-after-request": bytes([0]) + C(get("http://a.test/", "a.test")) + CSHUT() + O(OK5),
    # a WebSocket upgrade: 101, then frames both ways through the tunnel it becomes
    "websocket-upgrade": bytes([0]) + C(get("http://a.test/ws", "a.test", WS_HEAD)) + O(WS_101) +
                         C(b"\x81\x85\x00\x00\x00\x00hello") + O(b"\x81\x05hello") + OCLOSE(),
    "websocket-refused": bytes([0]) + C(get("http://a.test/ws", "a.test", WS_HEAD)) + O(OK5),
}

SETTINGS = h2_frame(H2_SETTINGS, 0, 0)
SACK = h2_frame(H2_SETTINGS, 1, 0)


def hdrs(sid, fields, end=True):
    return h2_frame(H2_HEADERS, 4 | (1 if end else 0), sid, hpack_fields(fields))


def req(sid, path="/", method="GET", extra=(), end=True):
    return h2_frame(H2_HEADERS, 4 | (1 if end else 0), sid,
                    h2_request_block("a.test", path, method, extra))


proxy_h2 = {
    "h2-get": bytes([0]) + C(req(1)) + O(SETTINGS + SACK + hdrs(1, [(":status", "200")])),
    "h2-get-data": bytes([0]) + C(req(1)) + O(
        SETTINGS + SACK + hdrs(1, [(":status", "200"), ("content-length", "5")], end=False) +
        h2_frame(H2_DATA, 1, 1, b"hello")),
    # an RST_STREAM(NO_ERROR) before END_STREAM is a cut response, not a whole one
    "h2-origin-rst-no-error": bytes([0]) + C(req(1)) + O(
        SETTINGS + SACK + hdrs(1, [(":status", "200")], end=False) +
        h2_frame(H2_DATA, 0, 1, b"part") + h2_frame(H2_RST, 0, 1, b"\x00\x00\x00\x00")),
    "h2-origin-goaway": bytes([0]) + C(req(1) + req(3, "/b")) + O(
        SETTINGS + h2_frame(H2_GOAWAY, 0, 0, b"\x00\x00\x00\x01\x00\x00\x00\x00")),
    "h2-post-body": bytes([RULES]) + C(req(1, "/p", "POST", (("content-length", "6"),), end=False)
                                        + h2_frame(H2_DATA, 1, 1, b"secret")) + O(SETTINGS),
    "h2-trim-referer": bytes([RULES]) + C(req(1, "/r", extra=(
        ("referer", "https://" + "u" * 20000 + "@a.test/x"),))) + O(
        SETTINGS + SACK + hdrs(1, [(":status", "204")])),
    "h2-blocked": bytes([RULES]) + C(req(1, "/block") + req(3, "/block2")),
    "h2-bad-authority": bytes([0]) + C(h2_frame(H2_HEADERS, 5, 1, hpack_fields(
        [(":method", "GET"), (":scheme", "https"), (":authority", "a.test/x"), (":path", "/")]))),
    "h2-origin-h1": bytes([ORIGIN_H1]) + C(req(1)) + O(OK5),
    "h1-inside-h2-origin": bytes([CLIENT_H1]) + C(get("/", "a.test")) + O(
        SETTINGS + SACK + hdrs(1, [(":status", "200")])),
    "h1-inside-h1-origin": bytes([CLIENT_H1 | ORIGIN_H1]) + C(get("/", "a.test") + get("/2", "a.test"))
                           + O(OK5 + CHUNKED),
    "h1-inside-websocket": bytes([CLIENT_H1 | ORIGIN_H1]) + C(get("/ws", "a.test", WS_HEAD)) + O(WS_101)
                           + C(b"\x81\x85\x00\x00\x00\x00hello") + O(b"\x81\x05hello"),
    "h1-inside-host-mismatch": bytes([CLIENT_H1 | ORIGIN_H1 | RULES]) + C(
        get("/", "ads.test") + get("/", "a.test/x")) + O(OK5),
}

# the integration suite's smuggling and framing cases (tests/integration/cases/*.case), each
# as the client's bytes with an origin ready to answer
cases = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration", "cases")
for name in sorted(os.listdir(cases)):
    if not name.endswith(".case"):
        continue
    with open(os.path.join(cases, name), encoding="utf-8") as f:
        raw = f.read().split("---\n", 1)[1].strip("\n")
    data = (raw.replace("{origin}", "a.test").encode("latin-1").decode("unicode_escape")
            .encode("latin-1"))
    proxy["case-" + name[:-5]] = bytes([0]) + C(data) + O(OK5)

for outdir, seeds in ((sys.argv[1], proxy), (sys.argv[2], proxy_h2)):
    os.makedirs(outdir, exist_ok=True)
    for name, data in seeds.items():
        with open(os.path.join(outdir, name), "wb") as f:
            f.write(data)
print(f"{len(proxy)} + {len(proxy_h2)} seeds")
