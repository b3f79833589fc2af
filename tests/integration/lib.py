"""Helpers for gretel's integration tests: real servers on loopback ports, each in its own
temp dir, started and stopped by the tests. Standard library only (run with /usr/bin/python3).

- Nginx: the origin for most tests (plain and TLS), with an access log that proves what it saw.
- EchoOrigin: a small raw-socket HTTP/1.1 origin for protocol corners nginx cannot produce on
  demand (chunked trailers, close-delimited bodies, 1xx, mid-body resets, slow answers); it
  reports the exact head it received.
- FakeDNS: a UDP name server answering NXDOMAIN/SERVFAIL/A records, so evdns is exercised
  without any traffic leaving the machine.
- Gretel: the proxy under test, with its stderr captured.
"""
import hashlib
import json
import os
import signal
import socket
import socketserver
import struct
import subprocess
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=10.0, host="127.0.0.1"):
    end = time.time() + timeout
    while time.time() < end:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on {host}:{port}")


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class Nginx:
    """nginx with its own prefix dir; `tls` adds a TLS server with the given cert/key."""

    def __init__(self, tmp, tls=None):
        self.dir = tempfile.mkdtemp(prefix="nginx-", dir=tmp)
        self.port = free_port()
        self.tls_port = free_port() if tls else None
        self.www = os.path.join(self.dir, "www")
        os.makedirs(self.www)
        self.log = os.path.join(self.dir, "access.log")
        tls_block = ""
        if tls:
            tls_block = f"""
  server {{
    listen 127.0.0.1:{self.tls_port} ssl;
    ssl_certificate {tls[0]};
    ssl_certificate_key {tls[1]};
    root {self.www};
    location /hello {{ return 200 "hello over tls\\n"; }}
  }}"""
        user = "user root root;" if os.geteuid() == 0 else ""
        conf = f"""
{user}
daemon off;
worker_processes 1;
error_log {self.dir}/error.log warn;
pid {self.dir}/nginx.pid;
events {{ worker_connections 4096; }}
http {{
  log_format t '$request_method $request_uri $status $request_length $bytes_sent '
               'conn=$connection req=$connection_requests '
               'via="$http_via" xff="$http_x_forwarded_for" pc="$http_proxy_connection" '
               'pa="$http_proxy_authorization" te="$http_te" up="$http_upgrade" '
               'ka="$http_keep_alive" host="$http_host" x="$http_x_drop_me" '
               'ref="$http_referer" ck="$http_cookie" xg="$http_x_gretel" dnt="$http_dnt" '
               'trk="$http_x_track"';
  access_log {self.log} t;
  client_body_temp_path {self.dir}/cb;
  proxy_temp_path {self.dir}/pt;
  fastcgi_temp_path {self.dir}/ft;
  uwsgi_temp_path {self.dir}/ut;
  scgi_temp_path {self.dir}/st;
  client_max_body_size 0;
  keepalive_requests 100000;
  sendfile on;
  server {{
    listen 127.0.0.1:{self.port};
    root {self.www};
    etag on;
    location /hello {{ return 200 "hello\\n"; }}
    location /gz/ {{ gzip on; gzip_types text/plain; gzip_min_length 1; }}
    location /dav/ {{ dav_methods PUT DELETE; create_full_put_path on; }}
    location /empty {{ return 204; }}
  }}{tls_block}
}}
"""
        self.conf = os.path.join(self.dir, "nginx.conf")
        with open(self.conf, "w") as f:
            f.write(conf)
        self.proc = subprocess.Popen(["nginx", "-c", self.conf, "-p", self.dir],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wait_port(self.port)
        if tls:
            wait_port(self.tls_port)

    def write(self, name, data):
        path = os.path.join(self.www, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)
        return path

    def access_log(self):
        # nginx writes the log line after the response; give it a moment
        time.sleep(0.05)
        try:
            with open(self.log) as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class EchoOrigin:
    """Raw HTTP/1.1 origin. Paths:
    /echo...          JSON of the head and body it received (body as sha256 + length)
    /chunked          chunked body with a trailer
    /eof              HTTP/1.0-style body delimited by close
    /early-hints      103 then 200
    /continue         honours Expect: 100-continue, then echoes
    /reset-mid        promises 100000 bytes, sends 1000, closes
    /slow?ms=N        waits N ms before answering
    /close            answers with Connection: close
    /drop-after       answers as keep-alive, then closes the connection at once
    """

    def __init__(self):
        self.port = free_port()
        self.requests = []
        self.lock = threading.Lock()
        origin = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self):
                origin._serve(self.request)

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True

        self.server = Server(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

    @staticmethod
    def _read_head(f):
        lines = []
        while True:
            line = f.readline(65537)
            if not line:
                return None
            if line in (b"\r\n", b"\n"):
                if not lines:
                    continue
                return lines
            lines.append(line.rstrip(b"\r\n").decode("latin-1"))

    @staticmethod
    def _read_body(f, headers):
        h = {k.lower(): v for k, v in headers}
        sha = hashlib.sha256()
        n = 0
        if "chunked" in h.get("transfer-encoding", "").lower():
            while True:
                size = int(f.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while f.readline() not in (b"\r\n", b""):
                        pass
                    break
                left = size
                while left:
                    chunk = f.read(min(left, 1 << 20))
                    if not chunk:
                        raise ConnectionError("eof in chunk")
                    sha.update(chunk)
                    n += len(chunk)
                    left -= len(chunk)
                f.readline()
        elif "content-length" in h:
            left = int(h["content-length"])
            while left:
                chunk = f.read(min(left, 1 << 20))
                if not chunk:
                    raise ConnectionError("eof in body")
                sha.update(chunk)
                n += len(chunk)
                left -= len(chunk)
        return n, sha.hexdigest()

    def _serve(self, sock):
        f = sock.makefile("rb")
        try:
            while True:
                head = self._read_head(f)
                if head is None:
                    return
                method, target, version = head[0].split(" ", 2)
                headers = [tuple(x.split(": ", 1)) if ": " in x else (x.rstrip(":"), "")
                           for x in head[1:]]
                hl = {k.lower(): v for k, v in headers}
                rec = {"method": method, "target": target, "version": version,
                       "headers": headers}
                path = target.split("?")[0]
                if path == "/continue" and hl.get("expect", "").lower() == "100-continue":
                    sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
                try:
                    n, sha = self._read_body(f, headers)
                except (ConnectionError, ValueError) as e:
                    rec["body_error"] = str(e)
                    with self.lock:
                        self.requests.append(rec)
                    return
                rec["body_len"], rec["body_sha256"] = n, sha
                with self.lock:
                    self.requests.append(rec)
                if path == "/chunked":
                    sock.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
                                 b"Trailer: X-Sum\r\n\r\n5\r\nhello\r\n7\r\n, world\r\n"
                                 b"0\r\nX-Sum: 12\r\n\r\n")
                    continue
                if path == "/eof":
                    sock.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n"
                                 + b"x" * 5000)
                    sock.shutdown(socket.SHUT_WR)
                    return
                if path == "/early-hints":
                    sock.sendall(b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n"
                                 b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                    continue
                if path == "/reset-mid":
                    sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"y" * 1000)
                    time.sleep(0.1)
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    sock.close()
                    return
                if path == "/slow":
                    ms = int(target.split("ms=")[1]) if "ms=" in target else 3000
                    time.sleep(ms / 1000)
                body = json.dumps(rec).encode()
                if path == "/drop-after":
                    # keep-alive as far as the headers say, then gone: a stale pooled connection
                    sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                    return
                extra = b"Connection: close\r\n" if path == "/close" else b""
                sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                             + extra + b"Content-Length: " + str(len(body)).encode()
                             + b"\r\n\r\n" + body)
                if extra:
                    return
        except (ConnectionError, OSError):
            return
        finally:
            try:
                f.close()
                sock.close()
            except OSError:
                pass


class FakeDNS:
    """Answers A queries from `records` ({name: ip}); NXDOMAIN for other names, SERVFAIL for
    names starting with 'servfail.', and no answer at all for 'silent.' names."""

    def __init__(self, records=None):
        self.records = records or {}
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.queries = []
        self.running = True
        threading.Thread(target=self._loop, daemon=True).start()

    def _loop(self):
        while self.running:
            try:
                data, addr = self.sock.recvfrom(4096)
            except OSError:
                return
            if len(data) < 12:
                continue
            qid, flags, qd = struct.unpack(">HHH", data[:6])
            pos, labels = 12, []
            while pos < len(data) and data[pos]:
                ln = data[pos]
                labels.append(data[pos + 1:pos + 1 + ln].decode("latin-1"))
                pos += 1 + ln
            qend = pos + 5
            name = ".".join(labels).lower()
            qtype = struct.unpack(">H", data[pos + 1:pos + 3])[0] if qend <= len(data) else 0
            self.queries.append((name, qtype))
            if name.startswith("silent."):
                continue
            question = data[12:qend]
            rcode, answers = 3, b""
            if name.startswith("servfail."):
                rcode = 2
            elif name in self.records:
                rcode = 0
                if qtype == 1:
                    ip = socket.inet_aton(self.records[name])
                    answers = b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 60, 4) + ip
            ancount = 1 if answers else 0
            hdr = struct.pack(">HHHHHH", qid, 0x8180 | rcode, 1, ancount, 0, 0)
            self.sock.sendto(hdr + question + answers, addr)

    def stop(self):
        self.running = False
        self.sock.close()


class Socks5Server:
    """A minimal SOCKS5 server (no authentication, CONNECT only) that records the targets
    it was asked for and relays bytes; names are resolved through `resolve` (dict) or as
    IP literals, so nothing leaves loopback."""

    def __init__(self, resolve=None):
        self.resolve = resolve or {}
        self.targets = []
        self.port = free_port()
        srv = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self):
                srv._serve(self.request)

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True

        self.server = Server(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @staticmethod
    def _recv(sock, n):
        buf = b""
        while len(buf) < n:
            chunk = sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("eof")
            buf += chunk
        return buf

    def _serve(self, c):
        try:
            ver, nmeth = self._recv(c, 2)
            methods = self._recv(c, nmeth)
            if ver != 5 or 0 not in methods:
                c.sendall(b"\x05\xff")
                return
            c.sendall(b"\x05\x00")
            ver, cmd, _, atyp = self._recv(c, 4)
            if atyp == 3:
                host = self._recv(c, self._recv(c, 1)[0]).decode()
            elif atyp == 1:
                host = socket.inet_ntoa(self._recv(c, 4))
            else:
                c.sendall(b"\x05\x08\x00\x01" + b"\x00" * 6)
                return
            port = struct.unpack(">H", self._recv(c, 2))[0]
            self.targets.append((host, port))
            try:
                up = socket.create_connection((self.resolve.get(host, host), port), timeout=5)
            except OSError:
                c.sendall(b"\x05\x05\x00\x01" + b"\x00" * 6)
                return
            c.sendall(b"\x05\x00\x00\x01" + b"\x7f\x00\x00\x01" + struct.pack(">H", port))
            up.settimeout(None)
            c.settimeout(None)

            def pipe(a, b):
                try:
                    while True:
                        d = a.recv(65536)
                        if not d:
                            break
                        b.sendall(d)
                except OSError:
                    pass
                finally:
                    try:
                        b.shutdown(socket.SHUT_WR)
                    except OSError:
                        pass

            t = threading.Thread(target=pipe, args=(up, c), daemon=True)
            t.start()
            pipe(c, up)
            t.join(10)
            up.close()
        except (ConnectionError, OSError, ValueError):
            pass
        finally:
            c.close()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


class Gretel:
    def __init__(self, binary, tmp, conf_text=None, opts=(), port=None, env=None, nofile=None,
                 listen=None):
        self.binary = binary
        self.dir = tempfile.mkdtemp(prefix="gretel-", dir=tmp)
        self.port = port or free_port()
        self.conf = os.path.join(self.dir, "gretel.conf")
        with open(self.conf, "w") as f:
            f.write(conf_text if conf_text is not None else "")
        self.stderr_path = os.path.join(self.dir, "stderr.log")
        self.host = "::1" if listen == "v6" else "127.0.0.1"
        laddr = f"[::1]:{self.port}" if listen == "v6" else f"127.0.0.1:{self.port}"
        args = [binary, "run", "-c", self.conf, "-o", f"listen={laddr}",
                "-o", f"store={self.dir}/store", "-o", "workers=2"]
        for o in opts:
            args += ["-o", o]
        e = dict(os.environ)
        e.update(env or {})
        self.errf = open(self.stderr_path, "wb")
        def limit():
            if nofile:
                import resource
                resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=self.errf, env=e,
                                     preexec_fn=limit)
        try:
            wait_port(self.port, host=self.host)
        except RuntimeError:
            self.proc.kill()
            raise RuntimeError("gretel did not start: " + self.log())
        self.proxy = f"http://[::1]:{self.port}" if listen == "v6" else f"http://127.0.0.1:{self.port}"

    def log(self):
        with open(self.stderr_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def wait_log(self, needle, timeout=5.0):
        end = time.time() + timeout
        while time.time() < end:
            if needle in self.log():
                return True
            time.sleep(0.05)
        return False

    def rewrite_conf(self, text):
        with open(self.conf, "w") as f:
            f.write(text)

    def signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self, timeout=15):
        """SIGTERM and wait; returns the exit code. Sanitizer reports fail the test."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                self.errf.close()
                raise AssertionError("gretel did not exit within %ss after SIGTERM" % timeout)
        self.errf.close()
        log = self.log()
        for bad in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:"):
            if bad in log:
                raise AssertionError("sanitizer report in gretel's stderr:\n" + log[-4000:])
        return self.proc.returncode


def curl(*args, proxy=None, timeout=60):
    """Runs curl; returns (exit code, stdout bytes, stderr text)."""
    cmd = ["curl", "-sS", "--max-time", str(timeout), "--noproxy", ""]
    if proxy:
        cmd += ["-x", proxy]
    cmd += list(args)
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    p = subprocess.run(cmd, capture_output=True, env=env, timeout=timeout + 10)
    return p.returncode, p.stdout, p.stderr.decode("utf-8", "replace")


def raw_exchange(port, data, read_timeout=3.0, until_close=True, max_bytes=1 << 24):
    """Sends raw bytes to gretel and reads until it closes (or the timeout)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=read_timeout)
    try:
        s.sendall(data)
        out = b""
        while len(out) < max_bytes:
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                break
            if not chunk:
                break
            out += chunk
            if not until_close and b"\r\n\r\n" in out:
                break
        return out
    finally:
        s.close()


def make_tls_certs(tmp):
    """A test CA and a server certificate for 'tls.test' signed by it (openssl CLI)."""
    d = tempfile.mkdtemp(prefix="pki-", dir=tmp)
    def run(*a):
        subprocess.run(a, check=True, capture_output=True, cwd=d)
    run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
        "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=gretel test CA")
    run("openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", "srv.key", "-out", "srv.csr", "-subj", "/CN=tls.test")
    with open(os.path.join(d, "ext.cnf"), "w") as f:
        f.write("subjectAltName=DNS:tls.test\n")
    run("openssl", "x509", "-req", "-in", "srv.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "srv.pem", "-days", "2", "-extfile", "ext.cnf")
    return os.path.join(d, "ca.pem"), os.path.join(d, "srv.pem"), os.path.join(d, "srv.key")


def make_origin_certs(pki):
    """Certificates for the interception tests, in the test CA's directory `pki` (from
    make_tls_certs): shop.test (+ads.test, good), expired.test (expired in 2020), a cert for
    other.test served as wrong.test, and a self-signed unknown.test. `openssl ca` is the one
    CLI that sets arbitrary dates on OpenSSL 3.0."""
    def run(*a):
        subprocess.run(a, check=True, capture_output=True, cwd=pki)
    with open(os.path.join(pki, "ca.cnf"), "w") as f:
        f.write("[ca]\ndefault_ca=d\n[d]\ndatabase=index.txt\nnew_certs_dir=.\ncertificate=ca.pem\n"
                "private_key=ca.key\ndefault_md=sha256\npolicy=p\nserial=serial.txt\n"
                "[p]\ncommonName=supplied\n")
    open(os.path.join(pki, "index.txt"), "w").close()
    with open(os.path.join(pki, "serial.txt"), "w") as f:
        f.write("1000\n")
    out = {}
    for name, sans, dates in (("shop", "DNS:shop.test,DNS:ads.test,DNS:cdn.test", None),
                              ("expired", "DNS:expired.test", ("20200101000000Z", "20200201000000Z")),
                              ("wrong", "DNS:other.test", None)):
        run("openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}.test")
        with open(os.path.join(pki, f"{name}.ext"), "w") as f:
            f.write(f"subjectAltName={sans}\nextendedKeyUsage=serverAuth\n")
        start, end = dates or ("20240101000000Z", "20991231000000Z")
        run("openssl", "ca", "-batch", "-config", "ca.cnf", "-startdate", start, "-enddate", end,
            "-in", f"{name}.csr", "-out", f"{name}.pem", "-extfile", f"{name}.ext", "-notext")
        out[name] = (os.path.join(pki, f"{name}.pem"), os.path.join(pki, f"{name}.key"))
    run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", "unknown.key", "-out", "unknown.pem", "-days", "2", "-subj", "/CN=unknown.test",
        "-addext", "subjectAltName=DNS:unknown.test")
    out["unknown"] = (os.path.join(pki, "unknown.pem"), os.path.join(pki, "unknown.key"))
    return out


class TlsOrigins:
    """nginx with one TLS server per certificate of make_origin_certs, on its own ports.
    The good one serves `www` and answers /hello and /post; its log records the Host, the
    request length and the connection, like Nginx's."""

    def __init__(self, tmp, certs):
        self.dir = tempfile.mkdtemp(prefix="nginx-tls-", dir=tmp)
        self.www = os.path.join(self.dir, "www")
        os.makedirs(self.www)
        self.log = os.path.join(self.dir, "access.log")
        # "shop-h2": the good certificate again, on a listener that also speaks HTTP/2
        certs = dict(certs, **{"shop-h2": certs["shop"]}) if "shop" in certs else certs
        self.ports = {name: free_port() for name in certs}
        servers = []
        for name, (cert, key) in certs.items():
            h2 = " http2" if name.endswith("-h2") else ""
            servers.append(f"""
  server {{
    listen 127.0.0.1:{self.ports[name]} ssl{h2};
    ssl_certificate {cert};
    ssl_certificate_key {key};
    root {self.www};
    keepalive_requests {100 if h2 else 100000};
    location /hello {{ return 200 "hello from {name}\\n"; }}
    location /post {{ return 200 "posted\\n"; }}
    location /dav/ {{ dav_methods PUT; create_full_put_path on; }}
    location /altsvc {{ add_header Alt-Svc 'h3=":443"; ma=86400'; return 200 "alt\\n"; }}
    location /gzpage/ {{ gzip on; gzip_min_length 1; }}
  }}""")
        user = "user root root;" if os.geteuid() == 0 else ""
        conf = f"""
{user}
daemon off;
worker_processes 1;
error_log {self.dir}/error.log warn;
pid {self.dir}/nginx.pid;
events {{ worker_connections 4096; }}
http {{
  log_format t '$request_method $request_uri $status $request_length host="$http_host" '
               'conn=$connection req=$connection_requests proto=$server_protocol '
               'ref="$http_referer" xg="$http_x_gretel" ae="$http_accept_encoding"';
  access_log {self.log} t;
  client_body_temp_path {self.dir}/cb;
  proxy_temp_path {self.dir}/pt;
  fastcgi_temp_path {self.dir}/ft;
  uwsgi_temp_path {self.dir}/ut;
  scgi_temp_path {self.dir}/st;
  client_max_body_size 0;
  # long URLs (16 KB queries, as real sites send) reach the origin, over h1 and h2
  large_client_header_buffers 4 64k;
  types {{ text/html html; image/gif gif; application/javascript js; }}
  {''.join(servers)}
}}
"""
        self.conf = os.path.join(self.dir, "nginx.conf")
        with open(self.conf, "w") as f:
            f.write(conf)
        self.proc = subprocess.Popen(["nginx", "-c", self.conf, "-p", self.dir],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        for p in self.ports.values():
            wait_port(p)

    def write(self, rel, data):
        path = os.path.join(self.www, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)

    def access_log(self):
        try:
            with open(self.log) as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# --- a raw HTTP/2 client for the abuse tests: frames by hand, HPACK literals only ----------

H2_DATA, H2_HEADERS, H2_RST, H2_SETTINGS, H2_PING, H2_GOAWAY, H2_WINDOW, H2_CONT = 0, 1, 3, 4, 6, 7, 8, 9


def h2_frame(ftype, flags, sid, payload=b""):
    return len(payload).to_bytes(3, "big") + bytes([ftype, flags]) + sid.to_bytes(4, "big") + payload


def _hpack_len(n):
    if n < 127:
        return bytes([n])
    out, n = bytearray([127]), n - 127
    while n >= 128:
        out.append((n & 127) | 128)
        n >>= 7
    out.append(n)
    return bytes(out)


def hpack_fields(fields):
    """A header block of 'literal without indexing, new name' entries (RFC 7541 §6.2.2)."""
    out = bytearray()
    for name, value in fields:
        n, v = name.encode(), value.encode()
        out += b"\x00" + _hpack_len(len(n)) + n + _hpack_len(len(v)) + v
    return bytes(out)


def h2_request_block(authority, path, method="GET", extra=()):
    return hpack_fields([(":method", method), (":scheme", "https"), (":authority", authority),
                         (":path", path)] + list(extra))


class H2Raw:
    """One TLS connection through gretel's CONNECT that speaks HTTP/2 frame by frame."""

    def __init__(self, proxy_port, host, port, cafile, timeout=5.0):
        import ssl
        s = socket.create_connection(("127.0.0.1", proxy_port), timeout=timeout)
        s.sendall(f"CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
        head = b""
        while b"\r\n\r\n" not in head:
            c = s.recv(1)
            if not c:
                raise RuntimeError("proxy closed during CONNECT")
            head += c
        if not head.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(head.decode("latin-1"))
        ctx = ssl.create_default_context(cafile=cafile)
        ctx.set_alpn_protocols(["h2"])
        self.t = ctx.wrap_socket(s, server_hostname=host)
        if self.t.selected_alpn_protocol() != "h2":
            raise RuntimeError(f"ALPN {self.t.selected_alpn_protocol()}")
        self.buf = b""
        self.send(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + h2_frame(H2_SETTINGS, 0, 0))

    def send(self, data):
        self.t.sendall(data)

    def frames(self, timeout=3.0, until=None):
        """Reads frames until `until(frame)` is true, the peer closes, or the timeout.
        Returns (frames, closed)."""
        out, closed = [], False
        end = time.time() + timeout
        self.t.settimeout(0.2)
        while time.time() < end:
            while len(self.buf) >= 9:
                n = int.from_bytes(self.buf[:3], "big")
                if len(self.buf) < 9 + n:
                    break
                f = (self.buf[3], self.buf[4], int.from_bytes(self.buf[5:9], "big") & 0x7fffffff,
                     self.buf[9:9 + n])
                self.buf = self.buf[9 + n:]
                out.append(f)
                if until and until(f):
                    return out, False
            try:
                chunk = self.t.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                closed = True
                break
            if not chunk:
                closed = True
                break
            self.buf += chunk
        return out, closed

    def close(self):
        try:
            self.t.close()
        except OSError:
            pass


def h2_goaway_code(frames):
    for f in frames:
        if f[0] == H2_GOAWAY and len(f[3]) >= 8:
            return int.from_bytes(f[3][4:8], "big")
    return None



class WsEcho:
    """A WebSocket echo origin (RFC 6455, standard library only), plain or TLS: answers the
    opening handshake with 101, then echoes every text or binary message, and answers a
    close. Records the request heads it got."""

    GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

    def __init__(self, cert=None, key=None):
        import ssl
        self.ctx = None
        if cert:
            self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.ctx.load_cert_chain(cert, key)
            self.ctx.set_alpn_protocols(["http/1.1"])
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.heads = []
        self.running = True
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while self.running:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    _recv_exact = staticmethod(lambda c, n: Socks5Server._recv(c, n))

    def _serve(self, c):
        import base64
        try:
            if self.ctx:
                c = self.ctx.wrap_socket(c, server_side=True)
            c.settimeout(10)
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = c.recv(4096)
                if not chunk:
                    return
                head += chunk
            text = head.split(b"\r\n\r\n")[0].decode("latin-1")
            self.heads.append(text)
            fields = {l.split(":", 1)[0].strip().lower(): l.split(":", 1)[1].strip()
                      for l in text.split("\r\n")[1:] if ":" in l}
            if fields.get("upgrade", "").lower() != "websocket" or "sec-websocket-key" not in fields:
                c.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                return
            accept = base64.b64encode(hashlib.sha1(
                (fields["sec-websocket-key"] + self.GUID).encode()).digest()).decode()
            c.sendall(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                       f"Connection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n").encode())
            while True:
                b0, b1 = self._recv_exact(c, 2)
                op, n = b0 & 0x0f, b1 & 0x7f
                if n == 126:
                    n = int.from_bytes(self._recv_exact(c, 2), "big")
                elif n == 127:
                    n = int.from_bytes(self._recv_exact(c, 8), "big")
                mask = self._recv_exact(c, 4) if b1 & 0x80 else b"\0\0\0\0"
                data = bytes(x ^ mask[i % 4] for i, x in enumerate(self._recv_exact(c, n)))
                if op == 8:
                    c.sendall(b"\x88\x00")
                    return
                if op in (1, 2):
                    c.sendall(ws_frame(op, data, masked=False))
        except (OSError, ConnectionError, ValueError):
            return
        finally:
            try:
                c.close()
            except OSError:
                pass

    def stop(self):
        self.running = False
        self.sock.close()


def ws_frame(op, data, masked=True):
    """One final WebSocket frame; clients mask (RFC 6455 §5.3)."""
    n = len(data)
    head = bytes([0x80 | op])
    mbit = 0x80 if masked else 0
    if n < 126:
        head += bytes([mbit | n])
    elif n < 65536:
        head += bytes([mbit | 126]) + n.to_bytes(2, "big")
    else:
        head += bytes([mbit | 127]) + n.to_bytes(8, "big")
    if not masked:
        return head + data
    mask = os.urandom(4)
    return head + mask + bytes(x ^ mask[i % 4] for i, x in enumerate(data))


class Chromium:
    """Headless Debian Chromium driven over the DevTools protocol (a WebSocket on loopback;
    the client below is the standard library's sockets and RFC 6455 framing), so tests can
    fill forms, click, run page scripts and take screenshots. Proxy settings come from the
    arguments only (the environment's *_proxy variables are dropped)."""

    def __init__(self, tmp, args=()):
        import shutil
        exe = shutil.which("chromium") or shutil.which("chromium-browser")
        if not exe:
            raise RuntimeError("chromium is not installed (scripts/deps.sh test installs it)")
        self.prof = tempfile.mkdtemp(prefix="chromium-cdp-", dir=tmp)
        cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={self.prof}",
               "--remote-debugging-port=0", "--no-first-run", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--disable-default-apps",
               "--window-size=1100,900", *args, "about:blank"]
        env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
        self.errf = open(os.path.join(self.prof, "stderr.log"), "wb")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=self.errf, env=env)
        portfile = os.path.join(self.prof, "DevToolsActivePort")
        end = time.time() + 30
        while time.time() < end and not os.path.exists(portfile):
            time.sleep(0.05)
        time.sleep(0.1)
        with open(portfile) as f:
            self.port = int(f.read().split()[0])
        page = None
        while time.time() < end and not page:
            with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
                s.sendall(b"GET /json/list HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                data = b""
                while b"\r\n\r\n" not in data:
                    data += s.recv(65536)
                head, body = data.split(b"\r\n\r\n", 1)
                m = [l for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:")]
                want = int(m[0].split(b":")[1]) if m else 0
                while len(body) < want:
                    body += s.recv(65536)
            targets = json.loads(body or b"[]")
            page = next((t for t in targets if t.get("type") == "page"), None)
            if not page:
                time.sleep(0.1)
        self._ws_connect(page["webSocketDebuggerUrl"])
        self.next_id = 0
        self.events = []
        self.call("Page.enable")
        self.call("Runtime.enable")

    # --- RFC 6455, client side ---
    def _ws_connect(self, url):
        import base64
        rest = url.split("://", 1)[1]
        hostport, path = rest.split("/", 1)
        self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=60)
        hostport = f"127.0.0.1:{self.port}"
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET /{path} HTTP/1.1\r\nHost: {hostport}\r\nUpgrade: websocket\r\n"
                           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                           "Sec-WebSocket-Version: 13\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            head += self.sock.recv(1)
        if b" 101 " not in head.split(b"\r\n", 1)[0]:
            raise RuntimeError(f"DevTools refused the WebSocket: {head[:200]!r}")
        self.rbuf = b""

    def _send(self, text):
        data = text.encode()
        mask = os.urandom(4)
        n = len(data)
        hdr = bytes([0x81])
        if n < 126:
            hdr += bytes([0x80 | n])
        elif n < 65536:
            hdr += bytes([0x80 | 126]) + struct.pack("!H", n)
        else:
            hdr += bytes([0x80 | 127]) + struct.pack("!Q", n)
        self.sock.sendall(hdr + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))

    def _read(self, n):
        while len(self.rbuf) < n:
            b = self.sock.recv(1 << 20)
            if not b:
                raise RuntimeError("DevTools closed the WebSocket")
            self.rbuf += b
        out, self.rbuf = self.rbuf[:n], self.rbuf[n:]
        return out

    def _recv(self):
        msg = b""
        while True:
            b0, b1 = self._read(2)
            n = b1 & 0x7F
            if n == 126:
                n = struct.unpack("!H", self._read(2))[0]
            elif n == 127:
                n = struct.unpack("!Q", self._read(8))[0]
            payload = self._read(n)
            op = b0 & 0x0F
            if op == 0x9:  # ping
                continue
            msg += payload
            if b0 & 0x80:
                return json.loads(msg)

    # --- the protocol ---
    def call(self, method, **params):
        self.next_id += 1
        mid = self.next_id
        self._send(json.dumps({"id": mid, "method": method, "params": params}))
        while True:
            m = self._recv()
            if m.get("id") == mid:
                if "error" in m:
                    raise RuntimeError(f"{method}: {m['error']}")
                return m.get("result", {})
            self.events.append(m)

    def eval(self, expr):
        r = self.call("Runtime.evaluate", expression=expr, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in r:
            raise RuntimeError(f"{expr[:80]}: {r['exceptionDetails']}")
        return r.get("result", {}).get("value")

    def wait(self, expr, timeout=15.0):
        """Polls a page expression until it is truthy; returns its value."""
        end = time.time() + timeout
        last = None
        while time.time() < end:
            try:
                last = self.eval(expr)
                if last:
                    return last
            except RuntimeError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"timed out waiting for {expr!r} (last {last!r})")

    def goto(self, url, timeout=20.0):
        self.events = [e for e in self.events if e.get("method") != "Page.loadEventFired"]
        self.call("Page.navigate", url=url)
        self.wait_load(timeout)

    def wait_load(self, timeout=20.0):
        end = time.time() + timeout
        while time.time() < end:
            if any(e.get("method") == "Page.loadEventFired" for e in self.events):
                self.events = [e for e in self.events if e.get("method") != "Page.loadEventFired"]
                return
            self.sock.settimeout(max(0.1, end - time.time()))
            try:
                self.events.append(self._recv())
            except socket.timeout:
                break
            finally:
                self.sock.settimeout(60)
        raise RuntimeError("the page did not finish loading")

    def screenshot(self, path):
        import base64
        data = self.call("Page.captureScreenshot", format="png")["data"]
        with open(path, "wb") as f:
            f.write(base64.b64decode(data))

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.errf.close()
