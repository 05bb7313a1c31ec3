"""A stage on 127.0.0.1 for `make test`: the real backend, and the frontend published like the pipeline does.

The frontend goes through the same path as in a deployed stage: `pipelines.deploy_frontend` uploads the
build to an S3 bucket (moto_server on 127.0.0.1, with a CloudFront distribution serving that bucket), and
a small HTTP server stands in for CloudFront: it serves each object with the Content-Type and
Cache-Control the uploader stored, and index.html for paths that are no object (the single-page-app
fallback). So the deployed tests' header checks check what the deploy sets. The backend runs as a
deployed stage does (ENVIRONMENT=beta: auth required) against a local JWKS served over https, allowing the
frontend's origin.
"""

from __future__ import annotations

import io
import tempfile
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Final
from urllib.parse import unquote, urlsplit

import boto3
from moto.server import ThreadedMotoServer

from pipelines.deploy_frontend import deploy
from tests.app.tls import https_jwks_server
from tests.pipelines.test_deploy_frontend import create_distribution
from tests.support.servers import LOOPBACK, free_port, run_backend
from tests.support.tokens import SigningKey
from tools.requirements import PROJECT_ROOT

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

REGION: Final = "eu-west-1"
BUCKET = "canvalo-beta-frontend-111111111111"
BUILT_FRONTEND = PROJECT_ROOT / "frontend" / "dist-beta"
# A Vite-shaped build: content-hashed assets under assets/, index.html referencing them.
FIXTURE_FILES = {
    "index.html": (
        '<!doctype html><html><head><script type="module" crossorigin src="/assets/index-Q3m9xK2a.js"></script>'
        '<link rel="stylesheet" crossorigin href="/assets/index-Lp4Rt7Zw.css"></head>'
        '<body><div id="root"></div></body></html>'
    ),
    "assets/index-Q3m9xK2a.js": "document.getElementById('root').textContent = 'Canvalo';",
    "assets/index-Lp4Rt7Zw.css": "body { margin: 0 }",
    "favicon.svg": "<svg xmlns='http://www.w3.org/2000/svg'/>",
}


# The release the local stage's backend runs, as the task definition's APP_VERSION sets it in a stage.
LOCAL_VERSION = "local-0123abc"


@dataclass(frozen=True)
class Target:
    """What the deployed tests know about a stage: URLs only, and whether auth must be enforced."""

    backend_url: str
    frontend_url: str
    # The API base the frontend's pages call; the frontend's own origin in beta and gamma.
    api_url: str
    expect_auth: bool
    # The release the stage must run (the commit, the image tag); empty: not checked.
    expect_version: str = ""


def frontend_build(scratch: Path) -> Path:
    """The beta build when `make frontend STAGE=beta` made one, else a minimal build of the same shape."""
    if (BUILT_FRONTEND / "index.html").is_file():
        return BUILT_FRONTEND
    for name, text in FIXTURE_FILES.items():
        (scratch / name).parent.mkdir(parents=True, exist_ok=True)
        (scratch / name).write_text(text)
    return scratch


@contextmanager
def moto_endpoint() -> Iterator[str]:
    port = free_port()
    server = ThreadedMotoServer(ip_address=LOOPBACK, port=port, verbose=False)
    server.start()
    try:
        yield f"http://{LOOPBACK}:{port}"
    finally:
        server.stop()


def publish(endpoint: str, dist: Path) -> S3Client:
    """Create the bucket and distribution, and deploy the build with the pipeline's uploader."""
    s3 = boto3.client("s3", region_name=REGION, endpoint_url=endpoint)
    cloudfront = boto3.client("cloudfront", region_name="us-east-1", endpoint_url=endpoint)
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
    deploy(
        dist=dist,
        bucket=BUCKET,
        distribution_id=create_distribution(cloudfront, BUCKET),
        s3=s3,
        cloudfront=cloudfront,
        out=io.StringIO(),
    )
    return s3


@contextmanager
def cloudfront_like_site(s3: S3Client, port: int) -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            key = unquote(urlsplit(self.path).path).lstrip("/") or "index.html"
            try:
                found = s3.get_object(Bucket=BUCKET, Key=key)
            except s3.exceptions.NoSuchKey:
                # CloudFront's custom error response: a client-side route gets index.html with 200.
                found = s3.get_object(Bucket=BUCKET, Key="index.html")
            body = found["Body"].read()
            self.send_response(200)
            self.send_header("Content-Type", found.get("ContentType", "application/octet-stream"))
            if "CacheControl" in found:
                self.send_header("Cache-Control", found["CacheControl"])
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            return

    server = ThreadingHTTPServer((LOOPBACK, port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{LOOPBACK}:{port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@contextmanager
def local_stage(scratch: Path) -> Iterator[Target]:
    site_port = free_port()
    frontend_origin = f"http://{LOOPBACK}:{site_port}"
    with ExitStack() as stack:
        endpoint = stack.enter_context(moto_endpoint())
        frontend_url = stack.enter_context(cloudfront_like_site(publish(endpoint, frontend_build(scratch)), site_port))
        # Over https: a beta backend refuses an http:// SUPABASE_URL; it trusts this server's certificate only.
        supabase_url, _, supabase_ca = stack.enter_context(
            https_jwks_server(
                [SigningKey(kid="deployed-tests").public_jwk()],
                Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="canvalo-supabase-tls-"))),
            )
        )
        backend_url = stack.enter_context(
            run_backend(
                {
                    "ENVIRONMENT": "beta",
                    "SUPABASE_URL": supabase_url,
                    "SUPABASE_SERVICE_KEY": "local-service-key",
                    "SUPABASE_PUB_KEY": "local-pub-key",
                    "CORS_ORIGINS": frontend_origin,
                    "APP_VERSION": LOCAL_VERSION,
                    "SSL_CERT_FILE": str(supabase_ca),
                }
            )
        )
        yield Target(
            backend_url=backend_url,
            frontend_url=frontend_url,
            api_url=backend_url,
            expect_auth=True,
            expect_version=LOCAL_VERSION,
        )
