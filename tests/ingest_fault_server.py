#!/usr/bin/env python3
"""A misbehaving HTTP image server for test_ingest_faults: serves the good images of a folder
under /data/ as an nginx-like listing, next to every fault imagenet_ingest must survive (404,
500, stalls mid-body, hangs, lying Content-Length, truncated / corrupt / non-image / empty files,
huge dimensions, redirect loops, redirects and links leaving the start URL, '..' links, HTML that
is not a listing). Prints "PORT <n>" once listening.  Usage: ingest_fault_server.py IMAGE_DIR"""
import http.server
import os
import struct
import sys
import time
import zlib

ROOT = os.path.abspath(sys.argv[1])


def listing(title, names):
    rows = "".join('<a href="%s">%s</a>    26-Nov-2026 11:02    -\n' % (n, n) for n in names)
    return ('<html><head><title>Index of %s</title></head><body><h1>Index of %s</h1><hr><pre>'
            '<a href="../">../</a>\n%s</pre><hr></body></html>' % (title, title, rows)).encode()


def huge_png():
    ihdr = struct.pack(">IIBBBBB", 100000, 100000, 8, 2, 0, 0, 0)
    chunk = struct.pack(">I", len(ihdr)) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return b"\x89PNG\r\n\x1a\n" + chunk + b"\x00" * 64


CAT_FAULTS = ["missing.jpg", "error.jpg", "stall.jpg", "hang.jpg", "cut.jpg", "truncated.jpg",
              "corrupt.jpg", "notimage.jpg", "empty.jpg", "huge.png", "loop.jpg", "away.jpg", "moved.jpg",
              "http://127.0.0.2:9/data/cat/x.jpg", "/secret/x.jpg", "sub/../../../x.jpg"]


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def send(self, code, body=b"", ctype="text/html", headers=()):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def redirect(self, where):
        self.send(302, b"", headers=[("Location", where)])

    def good(self, rel):
        path = os.path.join(ROOT, rel)
        with open(path, "rb") as f:
            return f.read()

    def files(self, rel):
        d = os.path.join(ROOT, rel)
        return sorted(n + ("/" if os.path.isdir(os.path.join(d, n)) else "") for n in os.listdir(d))

    def do_GET(self):
        p = self.path.split("?")[0]
        first_cat = self.files("cat")[0]
        if p == "/data":
            return self.send(301, b"", headers=[("Location", "/data/")])
        if p == "/data/":
            return self.send(200, listing(p, ["broken/", "cat/", "dog/", "missing/", "nolisting/",
                                              "http://evil.example/x/", "/other/", "../../etc/"]))
        if p == "/data/broken/":
            return self.send(500, b"<html>Internal Server Error</html>")
        if p == "/data/nolisting/":
            return self.send(200, b"<html><head><title>Welcome</title></head><body><p>Please log in.</p>"
                                  b"<a href='https://login.example/'>sign in</a></body></html>")
        if p == "/data/cat/":
            return self.send(200, listing(p, self.files("cat") + CAT_FAULTS))
        if p.startswith("/data/") and p.endswith("/") and os.path.isdir(os.path.join(ROOT, p[6:])):
            return self.send(200, listing(p, self.files(p[6:])))
        name = p.rsplit("/", 1)[-1]
        if name == "error.jpg":
            return self.send(500, b"oops")
        if name == "stall.jpg":  # headers, a little body, then nothing
            body = self.good("cat/" + first_cat)
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(body) + 100000))
            self.end_headers()
            self.wfile.write(body[:100])
            self.wfile.flush()
            time.sleep(60)
            return
        if name == "hang.jpg":  # never answers
            time.sleep(60)
            return
        if name == "cut.jpg":  # Content-Length larger than what is sent, then the connection closes
            body = self.good("cat/" + first_cat)
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        if name == "truncated.jpg":
            return self.send(200, self.good("cat/" + first_cat)[:300], "image/png")
        if name == "corrupt.jpg":
            return self.send(200, b"\xff\xd8\xff\xe0" + os.urandom(3000), "image/jpeg")
        if name == "notimage.jpg":
            return self.send(200, b"<html><body>File not found (but 200)</body></html>", "image/jpeg")
        if name == "empty.jpg":
            return self.send(200, b"", "image/jpeg")
        if name == "huge.png":
            return self.send(200, huge_png(), "image/png")
        if name == "loop.jpg":
            return self.redirect("/data/cat/loop2.jpg")
        if name == "loop2.jpg":
            return self.redirect("/data/cat/loop.jpg")
        if name == "away.jpg":
            return self.redirect("http://evil.example/away.jpg")
        if name == "moved.jpg":
            return self.redirect("/data/cat/" + first_cat)
        rel = p[len("/data/"):] if p.startswith("/data/") else None
        if rel and os.path.isfile(os.path.join(ROOT, rel)):
            return self.send(200, self.good(rel), "image/png")
        return self.send(404, b"<html>404 Not Found</html>")


http.server.ThreadingHTTPServer.request_queue_size = 128  # the default 5 drops SYNs under load
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
server.daemon_threads = True
print("PORT %d" % server.server_address[1], flush=True)
server.serve_forever()
