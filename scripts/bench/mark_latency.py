#!/usr/bin/python3
"""Mark latency: how long `gretel mark` takes (process, LMDB commit and fsync) and how long
until a running proxy answers the next request about that product from the new mark.
Starts nginx and gretel (build/gretel) on loopback in a temp dir. Usage: mark_latency.py"""
import os, subprocess, sys, tempfile, time, statistics
os.chdir(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
sys.path.insert(0, "tests/integration")
from lib import Nginx, Gretel, curl  # noqa: E402
tmp = tempfile.mkdtemp()
ng = Nginx(tmp)
rules = os.path.join(tmp, "r.rules")
open(rules, "w").write("block-if-bought domain=pixel.test query~(?:^|&)id=(?<id>[^&]+) scope=site:s.example respond=204\n")
g = Gretel("build/gretel", tmp, opts=[f"rules={rules}", f"resolve=*.test=127.0.0.1:{ng.port}"])
store = os.path.join(g.dir, "store")
marks, ends = [], []
for i in range(30):
    t0 = time.perf_counter()
    p = subprocess.run(["build/gretel", "mark", "-o", f"store={store}", f"s.example:K{i}"], capture_output=True)
    t1 = time.perf_counter()
    rc, out, err = curl("-s", "-o", "/dev/null", "-w", "%{http_code}", f"http://pixel.test/p?id=K{i}", proxy=g.proxy)
    t2 = time.perf_counter()
    assert out == b"204", out
    marks.append((t1 - t0) * 1000); ends.append((t2 - t0) * 1000)
print(f"gretel mark (process, commit+fsync): median {statistics.median(marks):.1f} ms, max {max(marks):.1f} ms")
print(f"mark then first request blocked (incl. curl process): median {statistics.median(ends):.1f} ms, max {max(ends):.1f} ms")
g.stop()
ng.stop()
import shutil  # noqa: E402
shutil.rmtree(tmp, ignore_errors=True)
