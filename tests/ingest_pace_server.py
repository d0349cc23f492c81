#!/usr/bin/env python3
"""Servers of known capacity for test_ingest_pace, serving a folder (listings as Python's
http.server writes them). Prints "PORT <n>" once listening.  Usage: ingest_pace_server.py MODE DIR

  small  like `python3 -m http.server`, only smaller: one thread, listen backlog 1, 2 ms per
         answer, a connection per request (HTTP/1.0). Connection attempts beyond the accept
         queue are dropped by the kernel and wait for TCP's retransmissions.
  fast   a thread per connection, backlog 1024, keep-alive, every answer 20 ms late (like a
         distant server): throughput grows with the number of connections.
  busy   like fast (5 ms late), but answers 503 while more than 3 requests are in progress.
  hiccup like fast (2 ms late), but every 30th request from the 30th on gets its answer only
         after 4 s (a request lost in a server queue); asked again, the same file comes at once.

GET /_stats answers JSON: requests, max_active (most requests in progress at once), busy (503s
sent), hiccups, arrivals (seconds since start of each request, in order)."""
import functools
import http.server
import json
import sys
import threading
import time

MODE, ROOT = sys.argv[1], sys.argv[2]
START = time.monotonic()
LOCK = threading.Lock()
STATS = {"requests": 0, "max_active": 0, "busy": 0, "hiccups": 0, "arrivals": []}
HUNG = set()
ACTIVE = [0]
BUSY_LIMIT = 3


class Handler(http.server.SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.0" if MODE == "small" else "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms delayed-ACK wait

    def log_message(self, *args):
        pass

    def do_GET(self):
        if self.path == "/_stats":
            with LOCK:
                body = json.dumps(STATS).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        with LOCK:
            ACTIVE[0] += 1
            STATS["requests"] += 1
            STATS["max_active"] = max(STATS["max_active"], ACTIVE[0])
            STATS["arrivals"].append(round(time.monotonic() - START, 4))
            busy = MODE == "busy" and ACTIVE[0] > BUSY_LIMIT
            if busy:
                STATS["busy"] += 1
            hiccup = MODE == "hiccup" and STATS["requests"] % 30 == 0 and self.path not in HUNG
            if hiccup:
                HUNG.add(self.path)
                STATS["hiccups"] += 1
        try:
            if busy:
                self.send_response(503)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            time.sleep(4 if hiccup else {"small": 0.002, "fast": 0.020, "busy": 0.005, "hiccup": 0.002}[MODE])
            super().do_GET()
        except OSError:
            pass  # the client gave up on this answer
        finally:
            with LOCK:
                ACTIVE[0] -= 1


class Small(http.server.HTTPServer):
    request_queue_size = 1


class Threaded(http.server.ThreadingHTTPServer):
    request_queue_size = 1024
    daemon_threads = True


server_class = Small if MODE == "small" else Threaded
server = server_class(("127.0.0.1", 0), functools.partial(Handler, directory=ROOT))
print("PORT %d" % server.server_address[1], flush=True)
server.serve_forever()
