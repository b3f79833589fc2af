#!/usr/bin/python3
"""Driver for scripts/bench/h2page.sh (see there)."""
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import cpu_s, free_port, make_pki, rss_kb, run, wait_port  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
GRETEL = os.environ.get("GRETEL", os.path.join(ROOT, "build", "gretel"))
# GRETEL_BASE: another gretel binary (the previous main's, say) measured in the same run as
# "base-h2"; both then run with `lists =`, so the comparison is of the same configuration
GRETEL_BASE = os.environ.get("GRETEL_BASE")
ROUNDS = int(os.environ.get("ROUNDS", "7"))
REQUESTS = int(os.environ.get("REQUESTS", "2000"))
# Emulated round-trip time to the origin: on bare loopback six HTTP/1.1 connections cost
# nothing, which no real network allows. The origin sits behind a relay that holds every
# chunk RTT/2 in each direction (this kernel has no netem); gretel, like the browser in
# the direct mode, reaches the origin only through it. gretel itself stays next to the
# browser, as it does on a user's machine.
RTT_MS = float(os.environ.get("RTT_MS", "40"))
NIMG = 100


def spki_of(pem_path):
    pub = run("openssl", "x509", "-in", pem_path, "-noout", "-pubkey").stdout
    der = run("openssl", "pkey", "-pubin", "-outform", "DER", input=pub).stdout
    dig = run("openssl", "dgst", "-sha256", "-binary", input=der).stdout
    return run("openssl", "base64", "-A", input=dig).stdout.decode().strip()


def chromium():
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if not exe:
        sys.exit("chromium not found (scripts/deps.sh test installs it)")
    return exe


def load_ms(tmp, url, flags):
    prof = tempfile.mkdtemp(prefix="prof-", dir=tmp)
    cmd = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={prof}",
           "--no-first-run", "--disable-background-networking", "--disable-component-update",
           "--disable-sync", "--disable-default-apps", *flags, "--dump-dom", url]
    p = subprocess.run(cmd, capture_output=True, timeout=120,
                       env={k: v for k, v in os.environ.items() if "proxy" not in k.lower()})
    shutil.rmtree(prof, ignore_errors=True)
    m = re.search(r'data-load="([0-9.]+)" data-n="(\d+)"', p.stdout.decode("utf-8", "replace"))
    if not m or int(m.group(2)) != NIMG:
        raise RuntimeError(f"page did not load: {p.stdout[-300:]!r} {p.stderr[-300:]!r}")
    return float(m.group(1))


def start_delay_relay(target_port, delay_s):
    """A TCP relay on a free port to 127.0.0.1:target_port that delivers every chunk
    delay_s after it arrived, in order, both ways. Runs in a daemon thread."""
    import asyncio
    import threading
    port = free_port()
    ready = threading.Event()

    async def pipe(reader, writer):
        q = asyncio.Queue()

        async def out():
            while True:
                t, data = await q.get()
                wait = t + delay_s - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                if data is None:
                    try:
                        writer.write_eof()
                    except OSError:
                        pass
                    return
                writer.write(data)
                await writer.drain()

        task = asyncio.ensure_future(out())
        try:
            while True:
                data = await reader.read(65536)
                q.put_nowait((time.monotonic(), data or None))
                if not data:
                    break
        except OSError:
            pass
        try:
            await task
        except OSError:
            pass

    async def handle(cr, cw):
        try:
            ur, uw = await asyncio.open_connection("127.0.0.1", target_port)
        except OSError:
            cw.close()
            return
        await asyncio.gather(pipe(cr, uw), pipe(ur, cw), return_exceptions=True)
        cw.close()
        uw.close()

    def run_loop():
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        srv = loop.run_until_complete(asyncio.start_server(handle, "127.0.0.1", port))
        ready.set()
        loop.run_forever()
        srv.close()

    threading.Thread(target=run_loop, daemon=True).start()
    ready.wait(10)
    return port


def main():
    tmp = tempfile.mkdtemp(prefix="gretel-h2page-")
    procs = []
    try:
        make_pki(tmp, "shop.test", ["shop.test"])
        www = os.path.join(tmp, "www")
        os.makedirs(os.path.join(www, "img"))
        gif = b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
        for i in range(NIMG):
            with open(os.path.join(www, "img", f"{i}.gif"), "wb") as f:
                f.write(gif + os.urandom(2000))  # ~2 KB each, trailing bytes ignored
        with open(os.path.join(www, "page.html"), "w") as f:
            f.write('<html><body id="b">' +
                    "".join(f'<img src="/img/{i}.gif">' for i in range(NIMG)) +
                    '<script>addEventListener("load", () => setTimeout(() => {'
                    ' const t = performance.getEntriesByType("navigation")[0];'
                    ' const n = [...document.images].filter(i => i.complete).length;'
                    ' document.body.dataset.load = (t.loadEventStart - t.startTime).toFixed(1);'
                    ' document.body.dataset.n = n; }, 0));</script></body></html>')
        with open(os.path.join(www, "small"), "wb") as f:
            f.write(os.urandom(1024))
        port = free_port()
        user = "user root root;" if os.geteuid() == 0 else ""
        with open(os.path.join(tmp, "nginx.conf"), "w") as f:
            f.write(f"""{user}
daemon off; worker_processes 1; error_log {tmp}/error.log warn; pid {tmp}/nginx.pid;
events {{ worker_connections 4096; }}
http {{ access_log off; keepalive_requests 1000000; http2_max_concurrent_streams 256;
  types {{ text/html html; image/gif gif; }}
  client_body_temp_path {tmp}/cb; proxy_temp_path {tmp}/pt; fastcgi_temp_path {tmp}/ft;
  uwsgi_temp_path {tmp}/ut; scgi_temp_path {tmp}/st;
  server {{ listen 127.0.0.1:{port} ssl http2; ssl_certificate {tmp}/srv.pem;
           ssl_certificate_key {tmp}/srv.key; root {www}; }}
}}
""")
        procs.append(subprocess.Popen(["nginx", "-c", f"{tmp}/nginx.conf", "-p", tmp],
                                      stderr=subprocess.DEVNULL))
        wait_port(port)
        relay = start_delay_relay(port, RTT_MS / 2000.0) if RTT_MS > 0 else port
        ca_dir = os.path.join(tmp, "gca")
        run(GRETEL, "ca", "-o", f"ca_dir={ca_dir}", "init")
        gca = os.path.join(tmp, "gca.pem")
        run(GRETEL, "ca", "-o", f"ca_dir={ca_dir}", "export", gca)
        gports = {}
        gretels = [("gretel-h2", "on", GRETEL), ("gretel-h1", "off", GRETEL)]
        if GRETEL_BASE:
            gretels.append(("base-h2", "on", GRETEL_BASE))
        for name, h2, binary in gretels:
            gp = free_port()
            extra = ["-o", "lists="] if GRETEL_BASE else []
            procs.append(subprocess.Popen(
                [binary, "run", *extra, "-o", f"listen=127.0.0.1:{gp}", "-o", "mitm=on",
                 "-o", f"ca_dir={ca_dir}", "-o", f"store={tmp}/store-{name}",
                 "-o", f"upstream_ca_file={tmp}/ca.pem", "-o", f"connect_ports={port}",
                 "-o", f"resolve=shop.test=127.0.0.1:{relay}", "-o", f"http2={h2}",
                 "-o", "log_level=warn"], stderr=subprocess.DEVNULL))
            wait_port(gp)
            gports[name] = gp
        url = f"https://shop.test:{port}/page.html"
        modes = {
            "direct-h2": [f"--host-resolver-rules=MAP shop.test:{port} 127.0.0.1:{relay}",
                          f"--ignore-certificate-errors-spki-list={spki_of(os.path.join(tmp, 'srv.pem'))}"],
            "gretel-h2": [f"--proxy-server=http://127.0.0.1:{gports['gretel-h2']}",
                          f"--ignore-certificate-errors-spki-list={spki_of(gca)}"],
            "gretel-h1": [f"--proxy-server=http://127.0.0.1:{gports['gretel-h1']}",
                          f"--ignore-certificate-errors-spki-list={spki_of(gca)}"],
        }
        if GRETEL_BASE:
            modes["base-h2"] = [f"--proxy-server=http://127.0.0.1:{gports['base-h2']}",
                                f"--ignore-certificate-errors-spki-list={spki_of(gca)}"]
        for flags in modes.values():  # warm: leaf minted
            load_ms(tmp, url, flags)
        res = {k: [] for k in modes}
        print(f"== page of {NIMG} images (~2 KB each), headless Chromium, cold profile per load, "
              f"{ROUNDS} rounds, origin {RTT_MS:g} ms away; loadEventStart - startTime in ms")
        for r in range(ROUNDS):
            row = []
            for k, flags in modes.items():
                ms = load_ms(tmp, url, flags)
                res[k].append(ms)
                row.append(f"{k}={ms:.0f}")
            print(f"round {r + 1}: " + "  ".join(row), flush=True)
        med = {k: statistics.median(v) for k, v in res.items()}
        print("median: " + "  ".join(f"{k}={v:.0f} ms" for k, v in med.items()))
        print(f"gretel-h2 / direct-h2 = {med['gretel-h2'] / med['direct-h2']:.2f} (target <= 1.5)")
        print(f"gretel-h1 / gretel-h2 = {med['gretel-h1'] / med['gretel-h2']:.2f} (target >= 2)")
        if GRETEL_BASE:
            print(f"gretel-h2 / base-h2 = {med['gretel-h2'] / med['base-h2']:.2f} (lower is faster)")

        print(f"== {REQUESTS} requests of 1 KiB in one h2 connection (curl --parallel, 100 at once; "
              f"origin behind the same {RTT_MS:g} ms relay)")
        cfg = os.path.join(tmp, "urls.cfg")
        with open(cfg, "w") as f:
            for _ in range(REQUESTS):
                f.write(f'url = "https://shop.test:{port}/small"\noutput = "/dev/null"\n')
        cells = {
            "direct-h2": ["--connect-to", f"shop.test:{port}:127.0.0.1:{relay}", "--cacert",
                          f"{tmp}/ca.pem"],
            "gretel-h2": ["-x", f"http://127.0.0.1:{gports['gretel-h2']}", "--cacert", gca],
        }
        if GRETEL_BASE:
            cells["base-h2"] = ["-x", f"http://127.0.0.1:{gports['base-h2']}", "--cacert", gca]
        rps = {k: [] for k in cells}
        for r in range(3):
            for k, args in cells.items():
                t0 = time.time()
                p = subprocess.run(["curl", "-sS", "--http2", "-Z", "--parallel-max", "100",
                                    "--noproxy", "", *args, "-K", cfg, "-w", "%{num_connects}\n"],
                                   capture_output=True, timeout=300)
                el = time.time() - t0
                conns = sum(int(x) for x in p.stdout.split())
                if p.returncode != 0:
                    raise RuntimeError(p.stderr[-300:])
                rps[k].append(REQUESTS / el)
                print(f"round {r + 1}: {k} {REQUESTS / el:.0f} req/s over {conns} connection(s)",
                      flush=True)
        m2 = {k: statistics.median(v) for k, v in rps.items()}
        print("median: " + "  ".join(f"{k}={v:.0f} req/s" for k, v in m2.items()) +
              f"  gretel/direct = {m2['gretel-h2'] / m2['direct-h2']:.2f}" +
              (f"  gretel/base = {m2['gretel-h2'] / m2['base-h2']:.2f}" if GRETEL_BASE else ""))
    finally:
        for p in reversed(procs):
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
