#!/usr/bin/python3
"""Driver for scripts/bench/tls.sh (see there). Starts nginx (TLS and plain, one worker),
gretel (release build, mitm = on, its own CA in a temp dir) and mitmdump on loopback ports,
then runs build/bench/tls_bench against each in interleaved rounds."""
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
BENCH = os.path.join(ROOT, "build", "bench", "tls_bench")
GRETEL = os.environ.get("GRETEL", os.path.join(ROOT, "build", "gretel"))
ROUNDS = int(os.environ.get("ROUNDS", "3"))
DURATION = int(os.environ.get("DURATION", "5"))
THREADS = int(os.environ.get("THREADS", "8"))


def bench(*args):
    p = subprocess.run([BENCH] + [str(a) for a in args], capture_output=True, text=True,
                       timeout=DURATION * 4 + 120)
    if p.returncode != 0:
        raise RuntimeError(f"tls_bench {' '.join(map(str, args))}: {p.stdout} {p.stderr}")
    return dict(kv.split("=", 1) for kv in p.stdout.split()[1:])


def children_cpu_s(pid):
    """CPU of pid and its direct children (nginx's workers)."""
    total = cpu_s(pid)
    try:
        for c in open(f"/proc/{pid}/task/{pid}/children").read().split():
            total += cpu_s(int(c))
    except OSError:
        pass
    return total


def main():
    tmp = tempfile.mkdtemp(prefix="gretel-tlsbench-")
    procs = []
    try:
        make_pki(tmp, "localhost", ["localhost", "*.bench.test"])
        www = os.path.join(tmp, "www")
        os.makedirs(www)
        with open(os.path.join(www, "small"), "wb") as f:
            f.write(os.urandom(1024))
        tls_port, plain_port = free_port(), free_port()
        user = "user root root;" if os.geteuid() == 0 else ""
        with open(os.path.join(tmp, "nginx.conf"), "w") as f:
            f.write(f"""{user}
daemon off; worker_processes 1; error_log {tmp}/error.log warn; pid {tmp}/nginx.pid;
events {{ worker_connections 4096; }}
http {{ access_log off; keepalive_requests 1000000;
  client_body_temp_path {tmp}/cb; proxy_temp_path {tmp}/pt; fastcgi_temp_path {tmp}/ft;
  uwsgi_temp_path {tmp}/ut; scgi_temp_path {tmp}/st;
  server {{ listen 127.0.0.1:{tls_port} ssl; ssl_certificate {tmp}/srv.pem;
           ssl_certificate_key {tmp}/srv.key; root {www}; }}
  server {{ listen 127.0.0.1:{plain_port}; root {www}; }}
}}
""")
        procs.append(subprocess.Popen(["nginx", "-c", f"{tmp}/nginx.conf", "-p", tmp],
                                      stderr=subprocess.DEVNULL))
        wait_port(tls_port)
        wait_port(plain_port)

        ca_dir = os.path.join(tmp, "gretel-ca")
        run(GRETEL, "ca", "-o", f"ca_dir={ca_dir}", "init")
        gca = os.path.join(tmp, "gretel-ca.pem")
        run(GRETEL, "ca", "-o", f"ca_dir={ca_dir}", "export", gca)
        gport = free_port()
        glog = open(os.path.join(tmp, "gretel.log"), "wb")
        gretel = subprocess.Popen(
            [GRETEL, "run", "-o", f"listen=127.0.0.1:{gport}", "-o", "mitm=on",
             "-o", f"ca_dir={ca_dir}", "-o", f"store={tmp}/store",
             "-o", f"upstream_ca_file={tmp}/ca.pem", "-o", f"connect_ports={tls_port}",
             "-o", "resolve=*.bench.test=127.0.0.1"],
            stderr=glog)
        procs.append(gretel)
        wait_port(gport)

        have_mitm = shutil.which("mitmdump") is not None
        mport = free_port()
        if have_mitm:
            mconf = os.path.join(tmp, "mitm")
            os.makedirs(mconf)
            mitm = subprocess.Popen(
                ["mitmdump", "-q", "--listen-host", "127.0.0.1", "--listen-port", str(mport),
                 "--set", f"confdir={mconf}", "--set", f"ssl_verify_upstream_trusted_ca={tmp}/ca.pem"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            procs.append(mitm)
            wait_port(mport, timeout=60)
            mca = os.path.join(mconf, "mitmproxy-ca-cert.pem")
        else:
            print("mitmdump not found: mitmproxy column skipped (scripts/deps.sh bench installs it)")

        common = ["--host", "localhost", "--port", tls_port, "--path", "/small"]
        # warm up: the leaf for localhost is minted (gretel) / generated (mitmproxy) here
        bench("--mode", "handshakes", "--seconds", 1, "--threads", 2, "--cafile", f"{tmp}/ca.pem", *common)
        bench("--mode", "handshakes", "--seconds", 1, "--threads", 2, "--cafile", gca, "--proxy", gport, *common)
        if have_mitm:
            bench("--mode", "handshakes", "--seconds", 1, "--threads", 2, "--cafile", mca, "--proxy", mport, *common)

        cols = {"direct": [], "gretel": [], "mitmproxy": []}
        cpu = {"direct": [], "gretel": [], "mitmproxy": []}
        nginx_pid = procs[0].pid
        server_of = {"direct": lambda: children_cpu_s(nginx_pid), "gretel": lambda: cpu_s(gretel.pid)}
        if have_mitm:
            server_of["mitmproxy"] = lambda: cpu_s(mitm.pid)
        peak = {"gretel": 0, "mitmproxy": 0}
        print(f"== new TLS connections per second ({THREADS} clients, {DURATION}s per cell, "
              f"{ROUNDS} rounds; full handshake + GET /small 1 KiB + close)")
        for r in range(ROUNDS):
            row = []
            cells = [("direct", [f"{tmp}/ca.pem"], []), ("gretel", [gca], ["--proxy", gport])]
            if have_mitm:
                cells.append(("mitmproxy", [mca], ["--proxy", mport]))
            for name, ca, extra in cells:
                c0 = server_of[name]()
                res = bench("--mode", "handshakes", "--seconds", DURATION, "--threads", THREADS,
                            "--cafile", ca[0], *extra, *common)
                c1 = server_of[name]()
                cols[name].append(float(res["conn_per_s"]))
                cpu[name].append((c1 - c0) / max(1, int(res["ok"])) * 1e6)
                if name == "gretel":
                    peak["gretel"] = max(peak["gretel"], rss_kb(gretel.pid))
                if name == "mitmproxy":
                    peak["mitmproxy"] = max(peak["mitmproxy"], rss_kb(mitm.pid))
                row.append(f"{name}={float(res['conn_per_s']):.0f}/s ({cpu[name][-1]:.0f} us CPU/conn, "
                           f"err {res['err']})")
            print(f"round {r + 1}: " + "  ".join(row), flush=True)
        med = {k: statistics.median(v) for k, v in cols.items() if v}
        print("median: " + "  ".join(f"{k}={v:.0f}/s" for k, v in med.items()))
        cmed = {k: statistics.median(v) for k, v in cpu.items() if v}
        print("median server CPU per connection: " +
              "  ".join(f"{k}={v:.0f} us" for k, v in cmed.items()) +
              "  (direct = nginx alone; gretel's figure excludes nginx behind it)")
        print(f"gretel/direct = {med['gretel'] / med['direct']:.2f} (target >= 0.40)")
        if "mitmproxy" in med:
            print(f"gretel/mitmproxy = {med['gretel'] / med['mitmproxy']:.1f}x connections/s "
                  f"(target >= 10x); {cmed['mitmproxy'] / cmed['gretel']:.1f}x less CPU per "
                  f"connection")
            print(f"peak RSS: gretel {peak['gretel'] // 1024} MiB, mitmproxy {peak['mitmproxy'] // 1024} MiB")

        print("== leaf minting (gretel's own code, in process, P-256 leaf signed by the CA)")
        res = bench("--mode", "mint", "--ca-dir", ca_dir, "--n", 2000)
        print(f"mint: median {res['median_us']} us, p99 {res['p99_us']} us, max {res['max_us']} us "
              f"(target <= 2000 us)")
        # first connections to hosts never seen: each costs a mint inside the proxy
        t0 = time.time()
        n_new = 200
        for i in range(n_new):
            subprocess.run([BENCH, "--mode", "keepalive", "--seconds", "0", "--host",
                            f"h{i}.bench.test", "--port", str(tls_port), "--proxy", str(gport),
                            "--cafile", gca], capture_output=True)
        first = (time.time() - t0) / n_new * 1000
        t0 = time.time()
        for i in range(n_new):
            subprocess.run([BENCH, "--mode", "keepalive", "--seconds", "0", "--host",
                            f"h{i}.bench.test", "--port", str(tls_port), "--proxy", str(gport),
                            "--cafile", gca], capture_output=True)
        again = (time.time() - t0) / n_new * 1000
        print(f"first connection to a new host: {first:.2f} ms, same host again: {again:.2f} ms "
              f"(incl. process start of the client; difference = minting + cache: "
              f"{first - again:.2f} ms)")

        print(f"== keep-alive requests/s inside one connection ({DURATION}s each, sequential GET /small)")
        ka = {}
        for r in range(ROUNDS):
            cells = {
                "gretel-intercepted-https": ["--cafile", gca, "--proxy", gport, *common],
                "gretel-plain-http": ["--plain", "--proxy", gport, "--host", "127.0.0.1",
                                      "--port", plain_port, "--path", "/small"],
                "direct-https": ["--cafile", f"{tmp}/ca.pem", *common],
                "direct-http": ["--plain", "--host", "127.0.0.1", "--port", plain_port,
                                "--path", "/small"],
            }
            row = []
            for name, args in cells.items():
                res = bench("--mode", "keepalive", "--seconds", DURATION, *args)
                ka.setdefault(name, []).append(float(res["req_per_s"]))
                row.append(f"{name}={float(res['req_per_s']):.0f}/s")
            print(f"round {r + 1}: " + "  ".join(row), flush=True)
        kmed = {k: statistics.median(v) for k, v in ka.items()}
        print("median: " + "  ".join(f"{k}={v:.0f}/s" for k, v in kmed.items()))
        print(f"intercepted/plain through gretel = "
              f"{kmed['gretel-intercepted-https'] / kmed['gretel-plain-http']:.2f}")
    finally:
        for p in reversed(procs):
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        try:
            with open(os.path.join(tmp, "gretel.log")) as f:
                tail = [l for l in f.read().splitlines() if "tls:" in l]
            if tail:
                print("gretel: " + tail[-1].split(" tls: ", 1)[-1])
        except OSError:
            pass
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
