"""A real S3-protocol server on 127.0.0.1 (moto's standalone server) and a fault-injecting
loopback proxy in front of it, for the store tests (fixtures ``moto_endpoint`` and ``proxy`` in
conftest.py). Nothing leaves loopback."""

from __future__ import annotations

import http.client
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit


def s3_environment(endpoint: str) -> dict[str, str]:
    """Environment for the S3 backend on the loopback server: dummy credentials, fast retries."""
    return {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
            "AIISCAN_STORE_ATTEMPTS": "3", "AIISCAN_STORE_BACKOFF": "0.01",
            "AIISCAN_STORE_TIMEOUT": "1"}


class FaultProxy:
    """Forwards to the server, except for keys with queued faults: "503" (SlowDown), "429",
    "403" (AccessDenied), "drop" (close without a response), "stall" (sleep, then forward).
    A fault named with a trailing "*" repeats for ever. ``hits`` counts requests per key."""

    def __init__(self, upstream: str):
        self.upstream = urlsplit(upstream)
        self.faults: dict[str, list[str]] = {}
        self.hits: Counter = Counter()
        self.lists = 0
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def _handle(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                parts = urlsplit(self.path)
                key = unquote(parts.path).split("/", 2)[-1] if parts.path.count("/") >= 2 else ""
                if "list-type=2" in parts.query:
                    proxy.lists += 1
                proxy.hits[key] += 1
                fault = proxy._next_fault(key)
                if fault == "drop":
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                if fault == "stall":
                    time.sleep(3)
                if fault in ("503", "429", "403"):
                    code = {"503": "SlowDown", "429": "TooManyRequests", "403": "AccessDenied"}[fault]
                    payload = (f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code>"
                               f"<Message>injected</Message></Error>").encode()
                    self.send_response(int(fault))
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(payload)
                    return
                conn = http.client.HTTPConnection(proxy.upstream.hostname, proxy.upstream.port,
                                                  timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() != "connection"}
                conn.request(self.command, self.path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(k, v)
                length = resp.getheader("Content-Length") if self.command == "HEAD" else None
                self.send_header("Content-Length", length or str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                conn.close()

            do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def _next_fault(self, key: str) -> str | None:
        queue = self.faults.get(key)
        if not queue:
            return None
        if queue[0].endswith("*"):
            return queue[0][:-1]
        return queue.pop(0)

    def close(self):
        self.server.shutdown()
        self.server.server_close()


