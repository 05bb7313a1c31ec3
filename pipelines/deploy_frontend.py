"""Publish a built frontend to its stage's bucket and invalidate in CloudFront only what changed (R3.4).

    python -m pipelines.deploy_frontend --bucket B --distribution-id D --dist frontend/dist-beta \
        [--dry-run] [--keep-old-assets-days N]

The order makes a release atomic for visitors: everything is validated and every read permission
checked before the first write; content-hashed assets (`assets/<name>-<hash>.<ext>`, cached for a year)
go up first, other unhashed files next, `index.html` last, so a visitor never gets an index that points
at an asset that is not there. If an upload fails, `index.html` has not been replaced and the site keeps
serving the previous release. Unchanged files (same sha256, Content-Type and Cache-Control, compared
through object metadata because an SSE-KMS ETag is not an MD5) are not uploaded again, and only changed
unhashed paths are invalidated, in one invalidation, none when nothing changed.

The previous release's hashed assets stay, so open tabs keep loading their chunks. The bucket keeps a
small release history (`.deploy/releases.json`); with `--keep-old-assets-days N` an old asset is deleted
once no release that used it has been live in the last N days. Without the flag old assets are never
deleted (they are small and content-addressed).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import mimetypes
import re
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING, TextIO
from urllib.parse import quote

import boto3
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

if TYPE_CHECKING:
    from mypy_boto3_cloudfront import CloudFrontClient
    from mypy_boto3_s3 import S3Client

HASHED_ASSET_CACHE_CONTROL = "public, max-age=31536000, immutable"
# Revalidate on every use: browsers and CloudFront ask the bucket whether index.html changed.
UNHASHED_CACHE_CONTROL = "no-cache"
RELEASES_KEY = ".deploy/releases.json"
# Vite names emitted files `assets/<name>-<hash>.<ext>`: the hash is 8 url-safe base64 characters.
HASHED_ASSET = re.compile(r"^assets/(?:.+/)?[^/]+-[A-Za-z0-9_-]{8,}\.[A-Za-z0-9]+$")
# CloudFront takes up to 3000 paths in one invalidation; past that one wildcard is cheaper and simpler.
MAX_INVALIDATION_PATHS = 1000
RELEASES_KEPT = 50
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".map": "application/json",
    ".webmanifest": "application/manifest+json",
    ".svg": "image/svg+xml",
    ".txt": "text/plain; charset=utf-8",
    ".woff2": "font/woff2",
    ".woff": "font/woff",
    ".ico": "image/x-icon",
    ".wasm": "application/wasm",
}


class DeployError(Exception):
    """A deploy cannot go on; the message is one line saying what is wrong and what to do."""


@dataclass(frozen=True)
class LocalFile:
    key: str
    path: Path
    sha256: str
    content_type: str
    cache_control: str

    @property
    def hashed(self) -> bool:
        return is_hashed(self.key)


@dataclass(frozen=True)
class RemoteObject:
    key: str
    last_modified: datetime
    sha256: str | None = None
    content_type: str | None = None
    cache_control: str | None = None


@dataclass(frozen=True)
class Release:
    deployed_at: datetime
    assets: tuple[str, ...]

    def to_json(self) -> dict[str, object]:
        return {"deployed_at": self.deployed_at.isoformat(), "assets": list(self.assets)}


@dataclass
class Plan:
    uploads: list[tuple[LocalFile, str]] = field(default_factory=list)  # (file, "new" or "changed"), in order
    unchanged: list[LocalFile] = field(default_factory=list)
    deletes: list[str] = field(default_factory=list)
    kept_old_assets: list[str] = field(default_factory=list)
    invalidation_paths: list[str] = field(default_factory=list)
    releases: list[Release] | None = None  # the history to write, None when it does not change

    @property
    def changes_anything(self) -> bool:
        return bool(self.uploads or self.deletes or self.releases is not None)


def is_hashed(key: str) -> bool:
    return HASHED_ASSET.match(key) is not None


def content_type(key: str) -> str:
    suffix = Path(key).suffix.lower()
    return CONTENT_TYPES.get(suffix) or mimetypes.guess_type(key)[0] or "application/octet-stream"


def scan_dist(dist: Path) -> list[LocalFile]:
    if not dist.is_dir():
        raise DeployError(f"{dist} is not a directory: build it first with `make frontend STAGE=<stage>`")
    files = []
    for path in sorted(p for p in dist.rglob("*") if p.is_file()):
        key = path.relative_to(dist).as_posix()
        if key == RELEASES_KEY:
            continue
        files.append(
            LocalFile(
                key=key,
                path=path,
                sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
                content_type=content_type(key),
                cache_control=HASHED_ASSET_CACHE_CONTROL if is_hashed(key) else UNHASHED_CACHE_CONTROL,
            )
        )
    if not files:
        raise DeployError(f"{dist} is empty: the build produced nothing; run `make frontend STAGE=<stage>` again")
    if not any(f.key == "index.html" for f in files):
        raise DeployError(
            f"{dist} has no index.html: it is not a Vite build output; point --dist at frontend/dist-<stage>"
        )
    return files


def upload_order(file: LocalFile) -> tuple[int, str]:
    """Hashed assets, then other files, then index.html: whatever references a file goes up after it."""
    rank = 0 if file.hashed else 2 if file.key == "index.html" else 1
    return rank, file.key


def invalidation_path(key: str) -> list[str]:
    path = "/" + quote(key, safe="/~-._")
    # CloudFront caches the default root object under "/" as well as under "/index.html".
    return [path, "/"] if key == "index.html" else [path]


def plan_deploy(
    files: Sequence[LocalFile],
    remote: dict[str, RemoteObject],
    releases: Sequence[Release],
    *,
    now: datetime,
    keep_old_assets_days: int | None,
) -> Plan:
    """What to upload, delete and invalidate; pure, so every rule is testable without AWS."""
    plan = Plan()
    local_keys = {f.key for f in files}
    for file in sorted(files, key=upload_order):
        existing = remote.get(file.key)
        if existing is None:
            plan.uploads.append((file, "new"))
        elif (existing.sha256, existing.content_type, existing.cache_control) != (
            file.sha256,
            file.content_type,
            file.cache_control,
        ):
            plan.uploads.append((file, "changed"))
        else:
            plan.unchanged.append(file)

    current_assets = tuple(sorted(f.key for f in files if f.hashed))
    history = list(releases)
    if not history or history[-1].assets != current_assets:
        history.append(Release(deployed_at=now, assets=current_assets))
        plan.releases = history[-RELEASES_KEPT:]

    # A release was live until the next one was deployed; its assets stay while that is recent enough.
    cutoff = now - timedelta(days=keep_old_assets_days) if keep_old_assets_days is not None else None
    needed: set[str] = set()
    for release, successor in pairwise(history):
        if cutoff is None or successor.deployed_at > cutoff:
            needed.update(release.assets)
    known = {asset for release in history for asset in release.assets}
    for key in sorted(set(remote) - local_keys):
        if not is_hashed(key):
            # A file the new build no longer has (an old favicon, a renamed page): remove and invalidate.
            plan.deletes.append(key)
            plan.invalidation_paths.extend(invalidation_path(key))
        elif cutoff is None or key in needed or (key not in known and remote[key].last_modified > cutoff):
            plan.kept_old_assets.append(key)
        else:
            plan.deletes.append(key)

    for file, _ in plan.uploads:
        if not file.hashed:
            plan.invalidation_paths.extend(invalidation_path(file.key))
    plan.invalidation_paths = sorted(set(plan.invalidation_paths))
    if len(plan.invalidation_paths) > MAX_INVALIDATION_PATHS:
        plan.invalidation_paths = ["/*"]
    return plan


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def _status(error: ClientError) -> int:
    return int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))


def check_access(s3: S3Client, cloudfront: CloudFrontClient, bucket: str, distribution_id: str) -> None:
    """Read-only calls that fail the way the deploy would, before anything is written."""
    try:
        s3.head_bucket(Bucket=bucket)
    except ClientError as error:
        if _status(error) == 404 or _code(error) in ("404", "NoSuchBucket"):
            raise DeployError(
                f"bucket {bucket!r} does not exist: pass the <stage> stack's frontend_bucket output as --bucket"
            ) from None
        if _status(error) == 403 or _code(error) in ("403", "AccessDenied"):
            raise DeployError(
                f"access denied to bucket {bucket!r}: the caller needs s3:ListBucket, s3:GetObject, s3:PutObject "
                "and s3:DeleteObject on it"
            ) from None
        raise
    try:
        distribution = cloudfront.get_distribution(Id=distribution_id)["Distribution"]
    except ClientError as error:
        if _code(error) == "NoSuchDistribution":
            raise DeployError(
                f"CloudFront distribution {distribution_id!r} does not exist: pass the <stage> stack's "
                "distribution id as --distribution-id"
            ) from None
        if _code(error) == "AccessDenied" or _status(error) == 403:
            raise DeployError(
                f"access denied to CloudFront distribution {distribution_id!r}: the caller needs "
                "cloudfront:GetDistribution and cloudfront:CreateInvalidation on it"
            ) from None
        raise
    origins = [origin["DomainName"] for origin in distribution["DistributionConfig"]["Origins"]["Items"]]
    if not any(domain.startswith(f"{bucket}.s3.") for domain in origins):
        raise DeployError(
            f"distribution {distribution_id} does not serve bucket {bucket!r} (its origins: {', '.join(origins)}): "
            "--bucket and --distribution-id must belong to the same stage"
        )


def list_remote(s3: S3Client, bucket: str, local_keys: Iterable[str]) -> dict[str, RemoteObject]:
    """Every object in the bucket; those the build also has come with the metadata that decides a change."""
    wanted = set(local_keys)
    remote: dict[str, RemoteObject] = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for item in page.get("Contents", []):
            key = item["Key"]
            if key == RELEASES_KEY:
                continue
            if key in wanted:
                head = s3.head_object(Bucket=bucket, Key=key)
                remote[key] = RemoteObject(
                    key=key,
                    last_modified=item["LastModified"],
                    sha256=head.get("Metadata", {}).get("sha256"),
                    content_type=head.get("ContentType"),
                    cache_control=head.get("CacheControl"),
                )
            else:
                remote[key] = RemoteObject(key=key, last_modified=item["LastModified"])
    return remote


def read_releases(s3: S3Client, bucket: str) -> list[Release]:
    try:
        body = s3.get_object(Bucket=bucket, Key=RELEASES_KEY)["Body"].read()
    except ClientError as error:
        if _code(error) in ("NoSuchKey", "404"):
            return []
        raise
    try:
        document = json.loads(body)
        return [
            Release(deployed_at=datetime.fromisoformat(r["deployed_at"]), assets=tuple(r["assets"]))
            for r in document["releases"]
        ]
    except (ValueError, KeyError, TypeError) as error:
        raise DeployError(
            f"s3://{bucket}/{RELEASES_KEY} is not a release history ({error}): delete it to start a new history"
        ) from None


def describe(plan: Plan, bucket: str, distribution_id: str) -> str:
    lines = [f"plan for s3://{bucket} behind CloudFront {distribution_id}:"]
    lines += [f"  upload  {f.key} ({why}; {f.content_type}; {f.cache_control})" for f, why in plan.uploads]
    if plan.unchanged:
        lines.append(f"  skip    {len(plan.unchanged)} unchanged file(s)")
    if plan.kept_old_assets:
        lines.append(f"  keep    {len(plan.kept_old_assets)} asset(s) of previous releases for open tabs")
    lines += [f"  delete  {key}" for key in plan.deletes]
    if plan.releases is not None:
        lines.append(f"  record  this release in {RELEASES_KEY}")
    if plan.invalidation_paths:
        lines.append(f"  invalidate {' '.join(plan.invalidation_paths)}")
    else:
        lines.append("  invalidate nothing (no unhashed file changed)")
    return "\n".join(lines)


def execute(plan: Plan, s3: S3Client, cloudfront: CloudFrontClient, bucket: str, distribution_id: str) -> str | None:
    """Apply the plan in its safe order; returns the invalidation id, if one was needed."""
    for done, (file, _) in enumerate(plan.uploads):
        try:
            s3.put_object(
                Bucket=bucket,
                Key=file.key,
                Body=file.path.read_bytes(),
                ContentType=file.content_type,
                CacheControl=file.cache_control,
                Metadata={"sha256": file.sha256},
            )
        except ClientError as error:
            raise DeployError(
                f"uploading {file.key} failed ({_code(error)}: {error.response.get('Error', {}).get('Message', '')}) "
                f"after {done} of {len(plan.uploads)} upload(s); index.html was not replaced, the site still serves "
                "the previous release: fix the cause and run the deploy again"
            ) from None
    if plan.releases is not None:
        history = {"releases": [release.to_json() for release in plan.releases]}
        s3.put_object(
            Bucket=bucket,
            Key=RELEASES_KEY,
            Body=json.dumps(history, indent=1).encode(),
            ContentType="application/json",
            CacheControl="no-store",
        )
    for start in range(0, len(plan.deletes), 1000):
        s3.delete_objects(
            Bucket=bucket, Delete={"Objects": [{"Key": key} for key in plan.deletes[start : start + 1000]]}
        )
    if not plan.invalidation_paths:
        return None
    digest = hashlib.sha256("\n".join(plan.invalidation_paths).encode()).hexdigest()[:16]
    invalidation = cloudfront.create_invalidation(
        DistributionId=distribution_id,
        InvalidationBatch={
            "Paths": {"Quantity": len(plan.invalidation_paths), "Items": plan.invalidation_paths},
            "CallerReference": f"canvalo-frontend-{time.time_ns()}-{digest}",
        },
    )
    return invalidation["Invalidation"]["Id"]


def deploy(
    *,
    dist: Path,
    bucket: str,
    distribution_id: str,
    s3: S3Client,
    cloudfront: CloudFrontClient,
    dry_run: bool = False,
    keep_old_assets_days: int | None = None,
    now: datetime | None = None,
    out: TextIO | None = None,
) -> Plan:
    out = out or sys.stdout
    files = scan_dist(dist)
    check_access(s3, cloudfront, bucket, distribution_id)
    try:
        remote = list_remote(s3, bucket, (f.key for f in files))
        releases = read_releases(s3, bucket)
    except ClientError as error:
        if _status(error) != 403 and _code(error) != "AccessDenied":
            raise
        raise DeployError(
            f"access denied reading the objects of bucket {bucket!r}: the caller needs s3:ListBucket and s3:GetObject"
        ) from None
    plan = plan_deploy(files, remote, releases, now=now or datetime.now(UTC), keep_old_assets_days=keep_old_assets_days)
    print(describe(plan, bucket, distribution_id), file=out)
    if dry_run:
        print("dry run: nothing was changed", file=out)
        return plan
    if not plan.changes_anything:
        print("nothing changed: no upload, no invalidation", file=out)
        return plan
    invalidation_id = execute(plan, s3, cloudfront, bucket, distribution_id)
    print(
        f"deployed: {len(plan.uploads)} uploaded, {len(plan.unchanged)} unchanged, {len(plan.deletes)} deleted, "
        + (f"invalidation {invalidation_id}" if invalidation_id else "no invalidation"),
        file=out,
    )
    return plan


def dist_sha256(files: Sequence[LocalFile]) -> str:
    """One SHA-256 for a whole build: every key with its content's SHA-256, in order."""
    return hashlib.sha256("".join(f"{f.key}\0{f.sha256}\n" for f in files).encode()).hexdigest()


def pending_release(
    *, dist: Path, bucket: str | None, distribution_id: str | None, s3: S3Client, cloudfront: CloudFrontClient
) -> dict[str, object]:
    """What deploying `dist` would change, read-only, for a stage's plan: `dist_sha256` (what was compared),
    `changes` and a one-line `detail`. Anything unknown (no bucket yet, a read refused) counts as a change:
    a person then looks rather than a release going out unseen."""
    files = scan_dist(dist)
    digest = dist_sha256(files)
    if not bucket or not distribution_id:
        return {"dist_sha256": digest, "changes": True, "detail": "first release: the frontend bucket is created now"}
    try:
        plan = deploy(
            dist=dist,
            bucket=bucket,
            distribution_id=distribution_id,
            s3=s3,
            cloudfront=cloudfront,
            dry_run=True,
            out=io.StringIO(),
        )
    except (DeployError, ClientError, BotoCoreError) as error:
        return {"dist_sha256": digest, "changes": True, "detail": f"could not compare with the live release ({error})"}
    if not plan.changes_anything:
        return {"dist_sha256": digest, "changes": False, "detail": "the live release is this build"}
    return {
        "dist_sha256": digest,
        "changes": True,
        "detail": f"{len(plan.uploads)} file(s) to upload, {len(plan.deletes)} to delete",
    }


def _positive_days(text: str) -> int:
    try:
        days = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of days") from None
    if days < 1:
        raise argparse.ArgumentTypeError("use at least 1 day, so open tabs of the previous release keep working")
    return days


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.deploy_frontend", description=__doc__.splitlines()[0])
    parser.add_argument("--bucket", required=True, help="the stage's frontend bucket")
    parser.add_argument("--distribution-id", required=True, help="the stage's CloudFront distribution id")
    parser.add_argument("--dist", required=True, type=Path, help="the build, e.g. frontend/dist-beta")
    parser.add_argument("--dry-run", action="store_true", help="print the plan and change nothing")
    parser.add_argument(
        "--keep-old-assets-days",
        type=_positive_days,
        metavar="N",
        help="delete assets of earlier releases once no release that used them was live in the last N days",
    )
    args = parser.parse_args(argv)
    session = boto3.session.Session()
    try:
        deploy(
            dist=args.dist,
            bucket=args.bucket,
            distribution_id=args.distribution_id,
            s3=session.client("s3"),
            cloudfront=session.client("cloudfront"),
            dry_run=args.dry_run,
            keep_old_assets_days=args.keep_old_assets_days,
        )
    except DeployError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except NoCredentialsError:
        print("error: no AWS credentials: run in CodeBuild or set AWS_PROFILE / AWS_ACCESS_KEY_ID", file=sys.stderr)
        return 1
    except (ClientError, BotoCoreError) as error:
        print(f"error: AWS refused the deploy: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
