"""A small MediaWiki-API look-alike on 127.0.0.1 that misbehaves on purpose.

It answers the three queries the crawler sends (list=search, list=categorymembers,
prop=extracts) from articles the test gives it, and on chosen request numbers it fails instead:

  "429"       429 with Retry-After (the `retry_after` value)
  "500"/"503" server errors
  "hang"      sleeps `hang_s` before answering (longer than the client's timeout)
  "truncated" promises more bytes than it sends, then closes
  "nonjson"   200 with an HTML page
  "maxlag"    200 with {"error": {"code": "maxlag"}} and Retry-After
  "redirect"  302 to `redirect_to` (another server)
  "block"     holds the request until the server stops (a test kills the client meanwhile)

It is bounded: past `max_requests` it answers 503, and it shuts itself down after `max_seconds`.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import opencc


@dataclass
class Article:
    pageid: int
    title: str
    text: str
    categories: tuple = ()


@dataclass
class FaultPlan:
    faults: dict = field(default_factory=dict)  # request number (1-based) -> fault name
    retry_after: str = "1"
    hang_s: float = 1.0
    redirect_to: str = ""


class FaultServer:
    def __init__(self, articles, plan: FaultPlan | None = None, max_requests: int = 2000, max_seconds: float = 60.0,
                 split_extracts: bool = False, page_cap: int = 2):
        self.articles = list(articles)
        self.plan = plan or FaultPlan()
        self.max_requests = max_requests
        self.max_seconds = max_seconds
        self.split_extracts = split_extracts  # serve each extract in two parts via excontinue
        self.page_cap = page_cap  # list results per answer at most (as a real wiki caps srlimit), so continuation is used
        self._release = threading.Event()
        self.requests: list[dict] = []  # the query of every request, in arrival order
        self.user_agents: list[str] = []
        self._to_simplified = opencc.OpenCC("t2s")  # built once: search is variant-insensitive
        self._lock = threading.Lock()
        self._lock_convert = threading.Lock()  # one OpenCC converter shared by handler threads
        self._stopped = threading.Event()
        self.request_arrived = threading.Condition(self._lock)
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep test output quiet
                pass

            def do_GET(self):
                owner._handle(self)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/api.php"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._timer = threading.Timer(max_seconds, self.stop)
        self._timer.daemon = True

    def __enter__(self):
        self._thread.start()
        self._timer.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def stop(self):
        if not self._stopped.is_set():
            self._stopped.set()
            self._release.set()
            self._timer.cancel()
            self.httpd.shutdown()
            self.httpd.server_close()

    def release_blocked(self):
        """Let a "block"ed request answer (its client has been killed by then)."""
        self._release.set()

    def wait_for_request(self, number: int, timeout: float = 30.0) -> bool:
        """Block until request `number` (1-based) has arrived."""
        with self.request_arrived:
            return self.request_arrived.wait_for(lambda: len(self.requests) >= number, timeout)

    # -- answering ---------------------------------------------------------------------------
    def _handle(self, handler):
        query = {k: v[0] for k, v in parse_qs(urlsplit(handler.path).query).items()}
        with self.request_arrived:
            self.requests.append(query)
            self.user_agents.append(handler.headers.get("User-Agent", ""))
            number = len(self.requests)
            self.request_arrived.notify_all()
        fault = self.plan.faults.get(number)
        if number > self.max_requests:
            fault = "503"
        if fault == "block":
            self._release.wait(self.max_seconds)
            self._release.clear()
            return self._send(handler, 503, b"released")
        if fault == "hang":
            time.sleep(self.plan.hang_s)
        elif fault in ("429", "500", "503"):
            headers = {"Retry-After": self.plan.retry_after} if fault == "429" else {}
            return self._send(handler, int(fault), b"<html>busy</html>", "text/html", headers)
        elif fault == "nonjson":
            return self._send(handler, 200, b"<html><body>Wikimedia error</body></html>", "text/html")
        elif fault == "maxlag":
            body = {"error": {"code": "maxlag", "info": "Waiting for a database server: 7 seconds lagged."}}
            return self._send(handler, 200, json.dumps(body).encode(), headers={"Retry-After": self.plan.retry_after})
        elif fault == "redirect":
            return self._send(handler, 302, b"", headers={"Location": self.plan.redirect_to})
        body = json.dumps(self._answer(query), ensure_ascii=False).encode("utf-8")
        if fault == "truncated":
            handler.send_response(200)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(body)))
            handler.send_header("Connection", "close")
            handler.end_headers()
            handler.wfile.write(body[: len(body) // 2])
            handler.wfile.flush()
            handler.close_connection = True
            return
        self._send(handler, 200, body)

    @staticmethod
    def _send(handler, status, body: bytes, content_type="application/json", headers=None):
        handler.send_response(status)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            handler.send_header(key, value)
        handler.end_headers()
        handler.wfile.write(body)

    def _answer(self, q: dict) -> dict:
        if q.get("list") == "search":
            # Chinese Wikipedia's search matches across script variants (中药 finds 中藥).
            term = self._simplify(q["srsearch"])
            hits = [a for a in self.articles if term in self._simplify(a.text) or term in self._simplify(a.title)]
            return self._page_of(hits, q, "search", "srlimit", "sroffset", lambda o: {"sroffset": o, "continue": "-||"})
        if q.get("list") == "categorymembers":
            name = q["cmtitle"].split(":", 1)[1]
            members = [a for a in self.articles if name in a.categories]
            return self._page_of(members, q, "categorymembers", "cmlimit", "cmcontinue", lambda o: {"cmcontinue": str(o), "continue": "-||"})
        if q.get("prop") == "extracts":
            pageid = int(q["pageids"])
            match = [a for a in self.articles if a.pageid == pageid]
            if not match:
                return {"query": {"pages": [{"pageid": pageid, "missing": True}]}}
            article = match[0]
            text = article.text
            if self.split_extracts:
                half = len(text) // 2
                if "excontinue" not in q:
                    return {"continue": {"excontinue": "1", "continue": "||"},
                            "query": {"pages": [{"pageid": pageid, "title": article.title, "extract": text[:half]}]}}
                text = text[half:]
            return {"batchcomplete": True, "query": {"pages": [{"pageid": pageid, "ns": 0, "title": article.title, "extract": text}]}}
        return {"error": {"code": "badvalue", "info": f"unsupported query {q}"}}

    def _simplify(self, text: str) -> str:
        with self._lock_convert:
            return self._to_simplified.convert(text)

    def _page_of(self, items, q, key, limit_key, offset_key, continuation):
        offset = int(q.get(offset_key, 0))
        limit = min(int(q.get(limit_key, 10)), self.page_cap)
        chunk = items[offset : offset + limit]
        answer = {"query": {key: [{"ns": 0, "title": a.title, "pageid": a.pageid} for a in chunk]}}
        if offset + limit < len(items):
            answer["continue"] = continuation(offset + limit)
        return answer
