"""A throwaway, real MediaWiki (Debian's 1.39 package) for tests: installed into a temp folder
with SQLite, TextExtracts and Cite, filled with pages the test writes, served by `php -S` on a
free loopback port in its own process group, and stopped (the whole group) afterwards.

What it relies on (measured on Debian 12, MediaWiki 1.39):
- `MW_CONFIG_FILE` points both the web entry points and the maintenance scripts at the temp
  LocalSettings.php, so nothing outside the temp folder is read or written. Debian's platform
  settings put caches and logs under /var; LocalSettings overrides them below.
- importDump.php accepts a hand-written export-0.11 XML without ids or timestamps; imports fill
  the search index and the category tables (runJobs.php finishes the deferred updates).
- `php -S` with PHP_CLI_SERVER_WORKERS forks workers: only killing the process group frees the port.
- list=search without srwhat searches titles only on the SQLite backend; the crawler sends srwhat=text.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

MEDIAWIKI_DIR = Path("/usr/share/mediawiki")
ADMIN_PASSWORD = "throwaway-test-pass-2026"  # install.php wants 10+ characters; the wiki lives for one test module
START_TIMEOUT_S = 20.0  # php -S answers in well under a second; a loaded CI box may be slower
SCRIPT_TIMEOUT_S = 120.0  # install/import/dump each take a few seconds


def unavailable_reason() -> str | None:
    """Why a real wiki cannot be built here (the caller skips with this reason), or None."""
    if not (MEDIAWIKI_DIR / "maintenance" / "install.php").exists():
        return f"MediaWiki is not installed at {MEDIAWIKI_DIR} (scripts/install_system_deps.sh --test installs it)"
    if shutil.which("php") is None:
        return "php is not on PATH (scripts/install_system_deps.sh --test installs it)"
    return None


@dataclass
class WikiPage:
    title: str
    wikitext: str


def export_xml(pages: list[WikiPage]) -> str:
    """A minimal export-0.11 document importDump.php accepts."""
    body = "".join(
        f"<page><title>{escape(page.title)}</title><ns>0</ns><revision><model>wikitext</model>"
        f"<format>text/x-wiki</format><text xml:space=\"preserve\">{escape(page.wikitext)}</text></revision></page>\n"
        for page in pages
    )
    return f'<mediawiki xmlns="http://www.mediawiki.org/xml/export-0.11/" version="0.11" xml:lang="zh">\n{body}</mediawiki>\n'


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class MediaWiki:
    """Build with `MediaWiki(folder, pages)`, use as a context manager; `api_url` while it runs."""

    def __init__(self, folder: Path, pages: list[WikiPage]):
        self.folder = Path(folder)
        self.pages = pages
        self.port = _free_port()
        self.api_url = f"http://127.0.0.1:{self.port}/api.php"
        self.settings = self.folder / "LocalSettings.php"
        self.env = {**os.environ, "MW_CONFIG_FILE": str(self.settings), "PHP_CLI_SERVER_WORKERS": "4"}
        self._server: subprocess.Popen | None = None

    def _php(self, script: str, *args: str, stdout=subprocess.PIPE) -> subprocess.CompletedProcess:
        command = ["php", str(MEDIAWIKI_DIR / "maintenance" / script), *args]
        result = subprocess.run(command, env=self.env, cwd=self.folder, stdout=stdout, stderr=subprocess.PIPE,
                                timeout=SCRIPT_TIMEOUT_S)
        if result.returncode != 0:
            raise RuntimeError(f"{script} failed ({result.returncode}): {result.stderr.decode(errors='replace')[-2000:]}")
        return result

    def install(self) -> None:
        data = self.folder / "data"
        data.mkdir(parents=True, exist_ok=True)
        self._php("install.php", "--dbtype", "sqlite", "--dbpath", str(data), "--dbname", "wiki",
                  "--server", f"http://127.0.0.1:{self.port}", "--scriptpath", "", "--lang", "zh",
                  "--pass", ADMIN_PASSWORD, "--confpath", str(self.folder), "--extensions", "TextExtracts,Cite",
                  "--skins", "Vector", "--quiet", "testwiki", "admin")
        with open(self.settings, "a", encoding="utf-8") as settings:
            settings.write(  # keep Debian's /var locations out of it: everything stays in the temp folder
                f'\n$wgCacheDirectory = "{self.folder}/cache";\n'
                f'$wgUploadDirectory = "{self.folder}/images";\n'
                f'$wgDBerrorLog = "{self.folder}/dberror.log";\n'
                "$wgDebugLogGroups = [];\n"
                "$wgShowExceptionDetails = true;\n"
            )
        pages_xml = self.folder / "pages.xml"
        pages_xml.write_text(export_xml(self.pages), encoding="utf-8")
        self._php("importDump.php", str(pages_xml))
        self._php("runJobs.php")

    def serve(self) -> None:
        log = open(self.folder / "server.log", "wb")
        self._server = subprocess.Popen(["php", "-S", f"127.0.0.1:{self.port}", "-t", str(MEDIAWIKI_DIR)],
                                        env=self.env, cwd=self.folder, stdout=log, stderr=subprocess.STDOUT,
                                        start_new_session=True)  # its own group: stop() kills the workers too
        log.close()
        deadline = time.monotonic() + START_TIMEOUT_S
        probe = f"{self.api_url}?action=query&meta=siteinfo&format=json"
        while True:
            try:
                with urllib.request.urlopen(probe, timeout=2) as answer:
                    if answer.status == 200:
                        return
            except OSError:
                pass
            if self._server.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"php -S did not serve {probe}; see {self.folder / 'server.log'}")
            time.sleep(0.1)

    def dump(self, path: Path) -> Path:
        """The wiki's current revisions as MediaWiki writes them (dumpBackup.php --current)."""
        with open(path, "wb") as out:
            self._php("dumpBackup.php", "--current", "--quiet", stdout=out)
        return path

    def stop(self) -> None:
        if self._server is None:
            return
        try:
            os.killpg(self._server.pid, signal.SIGTERM)
            self._server.wait(timeout=5)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(self._server.pid, signal.SIGKILL)
            self._server.wait(timeout=5)
        # workers that outlive the master still hold the group id; make sure none is left
        try:
            os.killpg(self._server.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self._server = None

    def __enter__(self) -> "MediaWiki":
        self.install()
        self.serve()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
