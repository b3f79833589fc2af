#!/usr/bin/python3
"""Benchmark driver behind scripts/bench/proxy.sh (standard library only).

Starts one nginx origin (1 worker, access log off) and each proxy on loopback ports with
temp dirs, then runs wrk in interleaved rounds: every round runs every scenario against every
target, so drift on the machine hits all targets alike. wrk talks absolute-form to proxies
(a Lua script sets the request target to the full URL), as browsers do.
"""
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ROUNDS = int(os.environ.get("ROUNDS", "3"))
DURATION = int(os.environ.get("DURATION", "5"))
PEERS = os.environ.get("PEERS", "privoxy tinyproxy squid").split()
GRETEL = os.environ.get("GRETEL", os.path.join(ROOT, "build/gretel"))
# GRETEL_BASE: another gretel binary (say, the previous main's) measured in the same run as
# the target "base"; the table then gives gretel's req/s as a ratio to it ("x base")
GRETEL_BASE = os.environ.get("GRETEL_BASE")

# name, path, connections, keep-alive
SCENARIOS = [
    ("ka-1k-c32", "/1k", 32, True),
    ("ka-1k-c256", "/1k", 256, True),
    ("ka-64k-c32", "/64k", 32, True),
    ("ka-64k-c256", "/64k", 256, True),
    ("close-1k-c32", "/1k", 32, False),
]
if os.environ.get("SCENARIOS"):
    SCENARIOS = [s for s in SCENARIOS if s[0] in os.environ["SCENARIOS"].split()]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=30):
    end = time.time() + timeout
    while time.time() < end:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"port {port} never opened")


def tree_pids(pid):
    pids = [pid]
    try:
        out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True,
                             text=True).stdout
        for p in out.split():
            pids += tree_pids(int(p))
    except Exception:
        pass
    return pids


def rss_kb(pid):
    total = 0
    for p in tree_pids(pid):
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


class Proc:
    def __init__(self, name, args, port, tmp, env=None, user_ok=True):
        self.name, self.port = name, port
        self.log = open(os.path.join(tmp, f"{name}.log"), "wb")
        self.p = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT, env=env,
                                  start_new_session=True)
        wait_port(port)
        self.peak = 0

    def sample(self):
        self.peak = max(self.peak, rss_kb(self.p.pid))

    def stop(self):
        try:
            os.killpg(self.p.pid, signal.SIGTERM)
            self.p.wait(10)
        except Exception:
            try:
                os.killpg(self.p.pid, signal.SIGKILL)
            except Exception:
                pass


def start_nginx(tmp):
    d = os.path.join(tmp, "nginx")
    os.makedirs(os.path.join(d, "www"))
    with open(os.path.join(d, "www/1k"), "wb") as f:
        f.write(os.urandom(1024))
    with open(os.path.join(d, "www/64k"), "wb") as f:
        f.write(os.urandom(65536))
    port = free_port()
    user = "user root root;" if os.geteuid() == 0 else ""
    conf = f"""{user}
daemon off; worker_processes 1; pid {d}/nginx.pid; error_log {d}/error.log warn;
events {{ worker_connections 8192; }}
http {{ access_log off; keepalive_requests 1000000; keepalive_timeout 120s; sendfile on;
  client_body_temp_path {d}/cb; proxy_temp_path {d}/pt; fastcgi_temp_path {d}/ft;
  uwsgi_temp_path {d}/ut; scgi_temp_path {d}/st;
  server {{ listen 127.0.0.1:{port} backlog=4096; root {d}/www; }} }}
"""
    with open(os.path.join(d, "nginx.conf"), "w") as f:
        f.write(conf)
    return Proc("nginx", ["nginx", "-c", f"{d}/nginx.conf", "-p", d], port, tmp)


def start_gretel(tmp, origin_port, binary=None, name="gretel"):
    port = free_port()
    d = os.path.join(tmp, name)
    os.makedirs(d)
    # Default settings (log_level info, one line per request, to a file like the peers' logs).
    # GRETEL_OPTS: extra KEY=VALUE overrides, space-separated (e.g. another rule set)
    extra = []
    for kv in os.environ.get("GRETEL_OPTS", "").split():
        extra += ["-o", kv]
    return Proc(name, [binary or GRETEL, "run", "-o", f"listen=127.0.0.1:{port}", "-o",
                       f"store={d}", "-o", "max_connections=8192"] + extra, port, tmp)


def start_privoxy(tmp, origin_port):
    port = free_port()
    d = os.path.join(tmp, "privoxy")
    os.makedirs(d)
    conf = os.path.join(d, "config")
    with open(conf, "w") as f:
        f.write(f"""confdir /etc/privoxy
logdir {d}
listen-address 127.0.0.1:{port}
toggle 0
enable-remote-toggle 0
enable-edit-actions 0
keep-alive-timeout 300
default-server-timeout 60
connection-sharing 1
socket-timeout 300
max-client-connections 4096
""")
    return Proc("privoxy", ["privoxy", "--no-daemon", conf], port, tmp)


def start_tinyproxy(tmp, origin_port):
    port = free_port()
    d = os.path.join(tmp, "tinyproxy")
    os.makedirs(d)
    conf = os.path.join(d, "tinyproxy.conf")
    user = "User root\nGroup root\n" if os.geteuid() == 0 else ""
    with open(conf, "w") as f:
        f.write(f"""{user}Port {port}
Listen 127.0.0.1
Timeout 600
MaxClients 4096
LogLevel Error
LogFile "{d}/tinyproxy.log"
Allow 127.0.0.1
DisableViaHeader Yes
""")
    return Proc("tinyproxy", ["tinyproxy", "-d", "-c", conf], port, tmp)


def start_squid(tmp, origin_port):
    port = free_port()
    d = os.path.join(tmp, "squid")
    os.makedirs(d)
    shutil.chown(d, "proxy", "proxy")
    conf = os.path.join(d, "squid.conf")
    with open(conf, "w") as f:
        f.write(f"""http_port 127.0.0.1:{port}
http_access allow localhost
http_access deny all
cache deny all
cache_mem 0 MB
access_log none
cache_log {d}/cache.log
pid_filename {d}/squid.pid
coredump_dir {d}
cache_effective_user proxy
max_filedescriptors 16384
client_persistent_connections on
server_persistent_connections on
shutdown_lifetime 1 seconds
workers 1
""")
    return Proc("squid", ["squid", "-N", "-f", conf], port, tmp)


LUA = """
local target = os.getenv("TARGET_URL")
local close = os.getenv("CLOSE") == "1"
wrk.headers["Host"] = os.getenv("TARGET_HOST")
if close then wrk.headers["Connection"] = "close" end
if target then wrk.path = target end
"""


def run_wrk(port, url_path, origin_port, conns, keepalive, via_proxy, tmp):
    script = os.path.join(tmp, "abs.lua")
    if not os.path.exists(script):
        with open(script, "w") as f:
            f.write(LUA)
    env = dict(os.environ)
    env["TARGET_HOST"] = f"127.0.0.1:{origin_port}"
    env["CLOSE"] = "0" if keepalive else "1"
    if via_proxy:
        env["TARGET_URL"] = f"http://127.0.0.1:{origin_port}{url_path}"
        url = f"http://127.0.0.1:{port}{url_path}"
    else:
        env.pop("TARGET_URL", None)
        url = f"http://127.0.0.1:{origin_port}{url_path}"
    out = subprocess.run(["wrk", "-t1", f"-c{conns}", f"-d{DURATION}s", "--latency", "-s", script,
                          url], capture_output=True, text=True, env=env).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))

    def pct(p):
        m = re.search(rf"^\s+{p}%\s+([\d.]+)(us|ms|s)", out, re.M)
        if not m:
            return float("nan")
        v, unit = float(m.group(1)), m.group(2)
        return v / 1000 if unit == "us" else v * 1000 if unit == "s" else v

    errs = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock_err = re.search(r"Socket errors: (.*)", out)
    return {"rps": rps, "p50": pct(50), "p99": pct(99),
            "non2xx": int(errs.group(1)) if errs else 0,
            "sockerr": sock_err.group(1) if sock_err else ""}


def idle_conns_rss(proc, origin_port, n=1000):
    """Opens n keep-alive client connections, one request each, then measures RSS idle."""
    socks = []
    req = (f"GET http://127.0.0.1:{origin_port}/1k HTTP/1.1\r\n"
           f"Host: 127.0.0.1:{origin_port}\r\n\r\n").encode()
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", proc.port))
        s.sendall(req)
        socks.append(s)
    for s in socks:
        s.settimeout(5)
        got = b""
        try:
            while len(got) < 1024 or b"\r\n\r\n" not in got:
                chunk = s.recv(65536)
                if not chunk:
                    break
                got += chunk
        except OSError:
            pass
    time.sleep(1)
    alive = 0
    for s in socks:
        s.setblocking(False)
        try:
            if s.recv(1) == b"":
                continue
        except BlockingIOError:
            alive += 1
        except OSError:
            continue
    rss = rss_kb(proc.p.pid)
    for s in socks:
        s.close()
    return rss, alive


def main():
    tmp = tempfile.mkdtemp(prefix="gretel-bench-")
    os.chmod(tmp, 0o755)
    nginx = start_nginx(tmp)
    starters = {"gretel": start_gretel, "privoxy": start_privoxy, "tinyproxy": start_tinyproxy,
                "squid": start_squid,
                "base": lambda t, o: start_gretel(t, o, GRETEL_BASE, "base")}
    targets = {}
    try:
        for name in ["gretel"] + (["base"] if GRETEL_BASE else []) + PEERS:
            try:
                targets[name] = starters[name](tmp, nginx.port)
            except Exception as e:  # a missing peer is reported, not fatal
                print(f"# {name}: could not start ({e})", file=sys.stderr)
        stop = threading.Event()

        def sampler():
            while not stop.is_set():
                for t in targets.values():
                    t.sample()
                time.sleep(0.2)

        th = threading.Thread(target=sampler, daemon=True)
        th.start()
        names = ["direct"] + list(targets)
        results = {(n, s[0]): [] for n in names for s in SCENARIOS}
        print(f"# {ROUNDS} rounds x {len(SCENARIOS)} scenarios x {len(names)} targets, "
              f"{DURATION}s each, wrk -t1, nginx 1 worker, {os.cpu_count()} cores", flush=True)
        for r in range(ROUNDS):
            for sc in SCENARIOS:
                for n in names:
                    port = nginx.port if n == "direct" else targets[n].port
                    res = run_wrk(port, sc[1], nginx.port, sc[2], sc[3], n != "direct", tmp)
                    results[(n, sc[0])].append(res)
                    print(f"round {r + 1} {sc[0]:13s} {n:9s} {res['rps']:10.0f} req/s "
                          f"p50 {res['p50']:.2f} ms p99 {res['p99']:.2f} ms"
                          + (f" non2xx={res['non2xx']}" if res['non2xx'] else "")
                          + (f" sockerr: {res['sockerr']}" if res['sockerr'] else ""),
                          flush=True)
        stop.set()
        th.join()
        idle = {}
        for n, t in targets.items():
            try:
                idle[n] = idle_conns_rss(t, nginx.port)
            except Exception as e:
                idle[n] = (float("nan"), f"error: {e}")
        print()
        print(f"{'scenario':13s} {'target':9s} {'req/s':>9s} {'x direct':>8s} {'x squid':>8s} "
              f"{'p50 ms':>7s} {'p99 ms':>7s}" + ("  x base" if GRETEL_BASE else ""))
        for sc in SCENARIOS:
            med = {n: statistics.median(x["rps"] for x in results[(n, sc[0])]) for n in names}
            for n in names:
                rs = results[(n, sc[0])]
                p50 = statistics.median(x["p50"] for x in rs)
                p99 = statistics.median(x["p99"] for x in rs)
                xs = f"{med[n] / med['squid']:.2f}" if "squid" in med and med["squid"] else "-"
                xb = (f"  {med[n] / med['base']:6.3f}" if GRETEL_BASE and med.get("base")
                      else "")
                print(f"{sc[0]:13s} {n:9s} {med[n]:9.0f} {med[n] / med['direct']:8.2f} {xs:>8s} "
                      f"{p50:7.2f} {p99:7.2f}{xb}")
        print()
        print(f"{'target':9s} {'peak RSS during bench':>22s} {'RSS with 1000 idle keep-alive conns':>36s}")
        for n, t in targets.items():
            rss, alive = idle[n]
            print(f"{n:9s} {t.peak / 1024:19.1f} MiB {rss / 1024:22.1f} MiB ({alive} still open)")
    finally:
        for t in targets.values():
            t.stop()
        nginx.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
