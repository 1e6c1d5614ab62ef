#!/usr/bin/env python3
"""fake_judge.py PORTFILE LOG [--key K] [--flaky] [--slow S] [--fail-status N]

A stand-in OpenAI-compatible judge for the error paths of `rmu mtbench judge` (retries,
authentication, resume after a kill). It is not the end-to-end judge: judge.sh also runs
against a real `rmu serve`. Replies "Rating: [[N]]" with N derived from the request (so a
rerun gets the same rating) and logs every request body as one JSON line to LOG.
--flaky answers 429 (Retry-After: 0) the first time it sees a request body, 200 after;
--fail-status N answers N to everything; --key K requires "Authorization: Bearer K".
"""
import hashlib, json, sys, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

args = sys.argv[1:]
portfile, log = args[0], args[1]
opt = {"--key": None, "--slow": "0", "--fail-status": None}
flaky = "--flaky" in args
for k in opt:
    if k in args:
        opt[k] = args[args.index(k) + 1]
seen, lock = set(), threading.Lock()


class H(BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def reply(self, status, obj, headers=()):
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        try:
            self.wfile.write(body)
        except BrokenPipeError:  # the client was killed (the resume test does that)
            pass

    def do_POST(self):
        raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.path != "/v1/chat/completions":
            return self.reply(404, {"error": {"message": "no route " + self.path, "type": "invalid_request_error"}})
        if opt["--key"] and self.headers.get("Authorization") != "Bearer " + opt["--key"]:
            return self.reply(401, {"error": {"message": "Incorrect API key provided", "type": "invalid_request_error"}})
        if opt["--fail-status"]:
            return self.reply(int(opt["--fail-status"]), {"error": {"message": "forced failure", "type": "server_error"}})
        h = hashlib.sha256(raw).hexdigest()
        with lock:
            first = h not in seen
            seen.add(h)
        if flaky and first:
            return self.reply(429, {"error": {"message": "rate limited", "type": "rate_limit"}}, [("Retry-After", "0")])
        req = json.loads(raw)
        with lock, open(log, "a") as f:
            f.write(json.dumps(req) + "\n")
        time.sleep(float(opt["--slow"]))
        n = int(h[:8], 16) % 10 + 1
        self.reply(200, {"id": "x", "object": "chat.completion", "model": req["model"],
                         "choices": [{"index": 0, "finish_reason": "stop",
                                      "message": {"role": "assistant", "content": "Fine work. Rating: [[%d]]" % n}}]})


srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
with open(portfile + ".tmp", "w") as f:
    f.write(str(srv.server_address[1]))
import os
os.rename(portfile + ".tmp", portfile)
srv.serve_forever()
