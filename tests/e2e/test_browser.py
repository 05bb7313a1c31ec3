"""The built frontend in headless Chromium against the real backend, everything on 127.0.0.1.

One backend runs as a development server whose CORS allows exactly one page origin. The same build
(VITE_API_URL = the backend) is served from that origin and from a second one it does not allow; a
same-origin build (VITE_API_URL = "", as in beta and gamma) is served by a site that sends `/api/*` to
the backend, as CloudFront does. Screenshots are kept in .reports/e2e/.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.support.servers import LOOPBACK, run_backend
from tools.requirements import PROJECT_ROOT

FRONTEND = PROJECT_ROOT / "frontend"
CHROMIUM = Path(os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium"))
SCREENSHOTS = PROJECT_ROOT / ".reports" / "e2e"
BIN = Path(sys.executable).parent
FORWARDED_HEADERS = ("Authorization", "Accept", "Content-Type")


class SiteHandler(SimpleHTTPRequestHandler):
    """Static files; with an API origin, `/api/*` goes to it like CloudFront's `/api/*` behaviour."""

    def __init__(self, *args: Any, directory: str, api_origin: str | None, **kwargs: Any) -> None:
        self.api_origin = api_origin
        super().__init__(*args, directory=directory, **kwargs)

    def do_GET(self) -> None:
        if self.api_origin is not None and self.path.startswith("/api/"):
            self._forward()
        else:
            super().do_GET()

    def _forward(self) -> None:
        assert self.api_origin is not None
        headers = {name: value for name in FORWARDED_HEADERS if (value := self.headers.get(name))}
        request = urllib.request.Request(self.api_origin + self.path, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                status, content_type, body = response.status, response.headers.get("Content-Type"), response.read()
        except urllib.error.HTTPError as error:
            status, content_type, body = error.code, error.headers.get("Content-Type"), error.read()
        self.send_response(status)
        self.send_header("Content-Type", content_type or "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def serve(directory: Path, *, api_origin: str | None = None) -> Iterator[str]:
    """Serve `directory` on 127.0.0.1 (a free port) in a thread; yields the site's origin."""
    server = ThreadingHTTPServer(
        (LOOPBACK, 0),
        lambda *args: SiteHandler(*args, directory=str(directory), api_origin=api_origin),
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{LOOPBACK}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def build(dist: Path, *, api_url: str, stage: str) -> None:
    environ = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "VITE_API_URL": api_url,
        "VITE_STAGE": stage,
    }
    result = subprocess.run(
        [str(BIN / "npx"), "vite", "build", "--logLevel", "warn", "--emptyOutDir", "--outDir", str(dist)],
        cwd=FRONTEND, env=environ, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]


@dataclass(frozen=True)
class Site:
    api: str
    allowed_origin: str
    refused_origin: str
    same_origin_site: str


def require_browser() -> None:
    if not (FRONTEND / "node_modules" / "playwright-core").is_dir():
        pytest.fail("frontend/node_modules is not installed: run `make frontend-deps` (make test does it first)")
    if not CHROMIUM.exists():
        reason = f"{CHROMIUM} is missing: install Debian's Chromium with `apt-get install -y chromium`"
        if os.environ.get("CI"):
            pytest.fail(f"{reason} (CI must have it: .ci/run installs it)")
        pytest.skip(reason)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    require_browser()
    cross_origin_build = tmp_path_factory.mktemp("dist-e2e")
    same_origin_build = tmp_path_factory.mktemp("dist-same-origin")
    with (
        serve(cross_origin_build) as allowed_origin,
        serve(cross_origin_build) as refused_origin,
        run_backend({"ENVIRONMENT": "development", "CORS_ORIGINS": allowed_origin}) as api,
        serve(same_origin_build, api_origin=api) as same_origin_site,
    ):
        build(cross_origin_build, api_url=api, stage="e2e")
        build(same_origin_build, api_url="", stage="beta")
        yield Site(api, allowed_origin, refused_origin, same_origin_site)


def open_page(url: str, screenshot: str, token: str | None = None) -> dict[str, Any]:
    """What a person sees once the page has its answers (frontend/e2e/page_check.mjs drives Chromium)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{screenshot}.png"
    node = shutil.which("node", path=str(BIN)) or "node"
    command = [node, "e2e/page_check.mjs", f"{url}/", str(path), *([token] if token else [])]
    result = subprocess.run(command, cwd=FRONTEND, capture_output=True, text=True, timeout=90, check=False)
    assert result.returncode == 0, result.stderr[-4000:]
    assert path.stat().st_size > 0
    page: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return page


@pytest.mark.req("R8.1", "R8.6")
def test_the_page_shows_the_backend_healthy_when_the_api_allows_its_origin(site: Site) -> None:
    page = open_page(site.allowed_origin, "healthy")

    assert page["health"] == "Healthy (environment: development)"
    assert page["healthState"] == "healthy"
    assert (page["stage"], page["apiUrl"]) == ("e2e", site.api)
    assert f"{site.api}/api/health" in page["requests"], "the API URL baked in at build time is the one called"
    assert page["alerts"] == [] and page["consoleErrors"] == []


@pytest.mark.req("R8.6")
def test_a_page_on_an_origin_the_api_does_not_allow_shows_the_cors_failure(site: Site) -> None:
    page = open_page(site.refused_origin, "cors-refused")

    assert page["healthState"] == "unhealthy"
    assert page["health"].startswith(f"Unavailable: Could not reach {site.api}/api/health")
    assert "CORS" in page["health"] and "Failed to fetch" in page["health"]
    assert page["alerts"] == [page["health"]], "shown to the person as an alert, not swallowed"
    assert any("blocked by CORS policy" in error for error in page["consoleErrors"]), page["consoleErrors"]


@pytest.mark.req("R8.1", "R8.6")
def test_a_token_reaches_api_v1_me_through_the_cors_preflight(site: Site) -> None:
    # The Authorization header makes the browser send a CORS preflight first; development runs without
    # Supabase, so the backend answers with its development user whatever the token.
    page = open_page(site.allowed_origin, "me", token="e2e-token")

    assert page["meState"] == "ok", page["me"]
    me = json.loads(page["me"])
    assert me["environment"] == "development" and me["anonymous"] is True


@pytest.mark.req("R8.2", "R3.5")
def test_a_same_origin_build_calls_the_api_on_its_own_site_as_beta_and_gamma_do(site: Site) -> None:
    page = open_page(site.same_origin_site, "same-origin")

    assert page["health"] == "Healthy (environment: development)"
    assert (page["stage"], page["apiUrl"]) == ("beta", "this site (/api/*)")
    assert f"{site.same_origin_site}/api/health" in page["requests"]
    assert not any(url.startswith(site.api) for url in page["requests"]), "no cross-origin call at all"
