"""A polite JSON-over-HTTP client for the MediaWiki API: a rate limit, retries with exponential
backoff on 429/5xx/timeouts/connection errors/unreadable bodies and on the API's own `maxlag`
error, `Retry-After` honoured, and no redirect followed to another host.

The clock and the sleep are injected, so the timing rules are tested without waiting.
"""

from __future__ import annotations

import email.utils
import time
from dataclasses import dataclass
from typing import Callable
from urllib.parse import urljoin, urlsplit

import requests

from bertstudy.base.errors import StudyError

RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
MAX_REDIRECTS = 5  # same-host redirects followed before giving up


@dataclass
class HttpConfig:
    user_agent: str  # Wikimedia asks for "name/version (contact)"; see wiki_api.user_agent
    timeout_s: float = 30.0  # connect and read timeout per request
    max_retries: int = 6  # retries after the first try; 1 + 6 tries span ~1 min with the defaults
    retry_base_delay_s: float = 1.0  # first backoff; doubled each retry
    retry_max_delay_s: float = 60.0  # cap on one wait, Retry-After included
    max_rps: float = 2.0  # request starts per second at most (Wikimedia: be gentle, go serial)


class TransientError(Exception):
    """A failure worth retrying; `retry_after` is the server's requested wait, if it gave one."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Retry-After as seconds (either delta-seconds or an HTTP date); None when absent or invalid."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - now)


def same_origin(a: str, b: str) -> bool:
    first, second = urlsplit(a), urlsplit(b)
    return (first.scheme, first.hostname, first.port) == (second.scheme, second.hostname, second.port)


class ApiClient:
    """GET JSON with retries. `get_json` returns the decoded object or raises StudyError."""

    def __init__(self, config: HttpConfig, session: requests.Session | None = None,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
                 wall_clock: Callable[[], float] = time.time):
        self.config = config
        self.session = session or requests.Session()
        self.session.headers["User-Agent"] = config.user_agent
        self.session.headers["Accept"] = "application/json"
        self._clock = clock
        self._sleep = sleep
        self._wall_clock = wall_clock  # for Retry-After given as an HTTP date
        self._last_start: float | None = None
        self.requests_sent = 0
        self.retries = 0

    def _wait_for_rate_limit(self) -> None:
        interval = 1.0 / self.config.max_rps
        if self._last_start is not None:
            wait = self._last_start + interval - self._clock()
            if wait > 0:
                self._sleep(wait)
        self._last_start = self._clock()

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        delay = self.config.retry_base_delay_s * (2 ** attempt)
        if retry_after is not None:
            delay = max(delay, retry_after)
        return min(delay, self.config.retry_max_delay_s)

    def _send_once(self, url: str, params: dict) -> dict:
        """One request (following same-host redirects); TransientError for anything retryable."""
        for _hop in range(MAX_REDIRECTS + 1):
            self._wait_for_rate_limit()
            self.requests_sent += 1
            try:
                response = self.session.get(url, params=params, timeout=self.config.timeout_s, allow_redirects=False)
                body = response.content  # reads the whole body; a cut connection raises here
            except requests.Timeout as exc:
                raise TransientError(f"timed out after {self.config.timeout_s:g} s ({type(exc).__name__})") from None
            except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError,
                    requests.exceptions.ContentDecodingError) as exc:
                raise TransientError(f"connection failed ({type(exc).__name__})") from None
            if response.is_redirect:
                target = urljoin(response.url, response.headers.get("Location", ""))
                if not same_origin(url, target):
                    raise StudyError(f"{url}: the server redirected to another host ({target}); not followed")
                url, params = target, None  # the Location already carries the query
                continue
            retry_after = parse_retry_after(response.headers.get("Retry-After"), self._wall_clock())
            if response.status_code in RETRY_STATUS:
                raise TransientError(f"HTTP {response.status_code}", retry_after)
            if response.status_code != 200:
                raise StudyError(f"{url}: HTTP {response.status_code} (not retried)")
            try:
                data = response.json() if body else None
            except ValueError:
                raise TransientError("the body is not JSON (truncated or an HTML error page)", retry_after) from None
            if not isinstance(data, dict):
                raise TransientError("the body is not a JSON object", retry_after)
            error = data.get("error")
            if isinstance(error, dict):
                code = error.get("code", "?")
                if code in ("maxlag", "ratelimited", "readonly", "internal_api_error_DBQueryError"):
                    raise TransientError(f"API error {code}: {error.get('info', '')}", retry_after)
                raise StudyError(f"{url}: API error {code}: {error.get('info', '')}")
            return data
        raise StudyError(f"{url}: more than {MAX_REDIRECTS} redirects")

    def get_json(self, url: str, params: dict) -> dict:
        last = None
        for attempt in range(self.config.max_retries + 1):
            try:
                return self._send_once(url, params)
            except TransientError as exc:
                last = exc
                if attempt == self.config.max_retries:
                    break
                self.retries += 1
                self._sleep(self._backoff(attempt, exc.retry_after))
        raise StudyError(f"{url}: gave up after {self.config.max_retries + 1} tries (last: {last}); rerun to resume")
