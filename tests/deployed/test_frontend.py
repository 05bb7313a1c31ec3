"""The deployed frontend: served, with the caching the deploy sets, and client-side routes falling back."""

from __future__ import annotations

import re

import httpx
import pytest

from pipelines.deploy_frontend import HASHED_ASSET_CACHE_CONTROL, UNHASHED_CACHE_CONTROL
from tests.deployed.local_stage import Target

ASSET_REFERENCE = re.compile(r"""(?:src|href)="(/assets/[^"]+)\"""")
CONTENT_TYPES = {".js": "javascript", ".css": "text/css"}


def index(target: Target) -> httpx.Response:
    return httpx.get(f"{target.frontend_url}/", timeout=10, follow_redirects=True)


@pytest.mark.smoke
@pytest.mark.req("R10.5", "R10.6", "R10.7")
def test_the_frontend_serves_index_html_revalidated_on_every_visit(target: Target) -> None:
    response = index(target)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    # A new release shows at once: browsers and CloudFront revalidate index.html every time.
    assert response.headers.get("cache-control") == UNHASHED_CACHE_CONTROL
    assert ASSET_REFERENCE.search(response.text), "index.html references no built asset"


@pytest.mark.req("R10.5")
def test_the_content_hashed_assets_are_served_with_their_type_and_cached_for_a_year(target: Target) -> None:
    assets = ASSET_REFERENCE.findall(index(target).text)
    assert assets
    for path in assets:
        response = httpx.get(f"{target.frontend_url}{path}", timeout=10)
        assert response.status_code == 200, path
        assert response.headers.get("cache-control") == HASHED_ASSET_CACHE_CONTROL, path
        expected = next((kind for suffix, kind in CONTENT_TYPES.items() if path.endswith(suffix)), None)
        if expected:
            assert expected in response.headers["content-type"], path


@pytest.mark.req("R10.5")
def test_a_client_side_route_is_answered_with_the_app(target: Target) -> None:
    response = httpx.get(f"{target.frontend_url}/settings/profile", timeout=10, follow_redirects=True)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert response.text == index(target).text
