#!/usr/bin/env python3
"""Load for bench/faults.sh's SIGTERM phase: keep-alive clients that tell apart what
wrk cannot. Each thread sends GET /v1/gate as a US client behind the trusted proxy,
reusing its connection until the server says `Connection: close`.

    drain_client.py HOST PORT SECONDS THREADS [READY_FILE]

Prints one line: `answered failed refused p99_ms`, where
- answered: 200 answers;
- failed: a request on an accepted connection that got no answer or not a 200
  (what a drain must never cause);
- refused: a new connection that the closed listener refused or reset before any
  answer (expected once the listener has closed, by design).
READY_FILE is created at the first answer, so the caller can time its fault from there.
Standard library only; loopback only; stops by itself after SECONDS.
"""

import http.client
import sys
import threading
import time

host, port, seconds, threads = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
ready_file = sys.argv[5] if len(sys.argv) > 5 else None
deadline = time.monotonic() + seconds
lock = threading.Lock()
totals = {"answered": 0, "failed": 0, "refused": 0}
latencies = []
first_error = [None]


def worker():
    answered = failed = refused = 0
    lat = []
    conn = None
    fresh = True
    while time.monotonic() < deadline:
        if conn is None:
            conn = http.client.HTTPConnection(host, port, timeout=10)
            fresh = True
        start = time.monotonic()
        try:
            conn.request("GET", "/v1/gate", headers={"X-Forwarded-For": "8.8.8.8"})
            res = conn.getresponse()
            res.read()
        except (ConnectionRefusedError, ConnectionResetError, BrokenPipeError,
                http.client.RemoteDisconnected) as e:
            conn.close()
            conn = None
            if first_error[0] is None:
                first_error[0] = repr(e)
            if fresh or isinstance(e, ConnectionRefusedError):
                refused += 1
                time.sleep(0.01)
            else:
                failed += 1
            continue
        except OSError:
            conn.close()
            conn = None
            failed += 1
            continue
        lat.append(time.monotonic() - start)
        fresh = False
        if res.status == 200:
            answered += 1
            if answered == 1 and ready_file:
                open(ready_file, "a").close()
        else:
            failed += 1
        if res.will_close:
            conn.close()
            conn = None
    with lock:
        totals["answered"] += answered
        totals["failed"] += failed
        totals["refused"] += refused
        latencies.extend(lat)


ts = [threading.Thread(target=worker) for _ in range(threads)]
for t in ts:
    t.start()
for t in ts:
    t.join()
latencies.sort()
p99 = latencies[int(len(latencies) * 0.99) - 1] * 1000 if latencies else 0.0
if first_error[0] is not None:
    print("first error:", first_error[0], file=sys.stderr)
print(totals["answered"], totals["failed"], totals["refused"], "%.2f" % p99)
