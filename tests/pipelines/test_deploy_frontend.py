"""`python -m pipelines.deploy_frontend` against S3 and CloudFront in moto (in-process, no network)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from io import StringIO
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import boto3
import pytest
from moto import mock_aws
from moto.core.authorization import enable_iam_authentication

from pipelines.deploy_frontend import (
    HASHED_ASSET_CACHE_CONTROL,
    RELEASES_KEY,
    UNHASHED_CACHE_CONTROL,
    DeployError,
    deploy,
    dist_sha256,
    main,
    pending_release,
    scan_dist,
)

if TYPE_CHECKING:
    from mypy_boto3_cloudfront import CloudFrontClient
    from mypy_boto3_s3 import S3Client

REGION: Final = "eu-west-1"
BUCKET = "canvalo-beta-frontend-111111111111"
OTHER_BUCKET = "canvalo-gamma-frontend-222222222222"
JS = "assets/index-Db1jn9Nm.js"
CSS = "assets/index-BM8Fqtpo.css"
INDEX = f'<!doctype html><script type="module" src="/{JS}"></script><link rel="stylesheet" href="/{CSS}">'


@dataclass
class Aws:
    s3: S3Client
    cloudfront: CloudFrontClient
    distribution_id: str
    puts: list[str] = field(default_factory=list)

    def objects(self) -> dict[str, bytes]:
        listing = self.s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])
        return {o["Key"]: self.s3.get_object(Bucket=BUCKET, Key=o["Key"])["Body"].read() for o in listing}

    def invalidations(self) -> list[list[str]]:
        summaries = self.cloudfront.list_invalidations(DistributionId=self.distribution_id)["InvalidationList"]
        found = []
        for summary in summaries.get("Items", []):
            batch = self.cloudfront.get_invalidation(DistributionId=self.distribution_id, Id=summary["Id"])
            found.append(sorted(batch["Invalidation"]["InvalidationBatch"]["Paths"].get("Items", [])))
        return found


def create_distribution(cloudfront: CloudFrontClient, bucket: str) -> str:
    origin_id = "frontend-bucket"
    config: Any = {
        "CallerReference": bucket,
        "Comment": "frontend",
        "Enabled": True,
        "Origins": {
            "Quantity": 1,
            "Items": [
                {
                    "Id": origin_id,
                    "DomainName": f"{bucket}.s3.{REGION}.amazonaws.com",
                    "S3OriginConfig": {"OriginAccessIdentity": ""},
                }
            ],
        },
        "DefaultCacheBehavior": {
            "TargetOriginId": origin_id,
            "ViewerProtocolPolicy": "redirect-to-https",
            "MinTTL": 0,
            "ForwardedValues": {"QueryString": False, "Cookies": {"Forward": "none"}},
        },
    }
    return cloudfront.create_distribution(DistributionConfig=config)["Distribution"]["Id"]


@pytest.fixture
def aws() -> Iterator[Aws]:
    with mock_aws():
        s3 = boto3.client("s3", region_name=REGION)
        for bucket in (BUCKET, OTHER_BUCKET):
            s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
        cloudfront = boto3.client("cloudfront", region_name="us-east-1")
        env = Aws(s3=s3, cloudfront=cloudfront, distribution_id=create_distribution(cloudfront, BUCKET))
        s3.meta.events.register(
            "before-parameter-build.s3.PutObject", lambda params, **_: env.puts.append(params["Key"])
        )
        yield env


def write_build(dist: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (dist / name).parent.mkdir(parents=True, exist_ok=True)
        (dist / name).write_text(text)
    return dist


@pytest.fixture
def build(tmp_path: Path) -> Path:
    return write_build(
        tmp_path / "dist-beta",
        {"index.html": INDEX, JS: "console.log('v1')", CSS: "body{}", "favicon.svg": "<svg/>"},
    )


def run(aws: Aws, dist: Path, **options: Any) -> str:
    out = StringIO()
    deploy(
        dist=dist, bucket=BUCKET, distribution_id=aws.distribution_id, s3=aws.s3, cloudfront=aws.cloudfront,
        out=out, **options,
    )  # fmt: skip
    return out.getvalue()


def cli(aws: Aws, dist: Path, *extra: str, bucket: str = BUCKET, distribution_id: str | None = None) -> int:
    return main(
        ["--bucket", bucket, "--distribution-id", distribution_id or aws.distribution_id, "--dist", str(dist), *extra]
    )


def one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


@pytest.mark.req("R3.4")
def test_first_deploy_uploads_every_file_with_its_type_and_caching_assets_before_index(aws: Aws, build: Path) -> None:
    output = run(aws, build)

    assert aws.puts[:2] == [CSS, JS], "hashed assets go up before anything that references them"
    assert aws.puts[2:] == ["favicon.svg", "index.html", RELEASES_KEY]
    expected = {
        JS: ("text/javascript; charset=utf-8", HASHED_ASSET_CACHE_CONTROL),
        CSS: ("text/css; charset=utf-8", HASHED_ASSET_CACHE_CONTROL),
        "index.html": ("text/html; charset=utf-8", UNHASHED_CACHE_CONTROL),
        "favicon.svg": ("image/svg+xml", UNHASHED_CACHE_CONTROL),
    }
    for key, (content_type, cache_control) in expected.items():
        head = aws.s3.head_object(Bucket=BUCKET, Key=key)
        assert (head["ContentType"], head["CacheControl"]) == (content_type, cache_control), key
        assert aws.s3.get_object(Bucket=BUCKET, Key=key)["Body"].read() == (build / key).read_bytes()
    assert HASHED_ASSET_CACHE_CONTROL == "public, max-age=31536000, immutable"
    assert aws.invalidations() == [["/", "/favicon.svg", "/index.html"]], "one invalidation, unhashed paths only"
    assert "deployed: 4 uploaded" in output


@pytest.mark.req("R3.4")
def test_a_deploy_where_only_index_html_changed_uploads_and_invalidates_only_it(aws: Aws, build: Path) -> None:
    run(aws, build)
    aws.puts.clear()
    (build / "index.html").write_text(INDEX + "<!-- new title -->")

    output = run(aws, build)

    assert aws.puts == ["index.html"]
    assert aws.objects()["index.html"].endswith(b"<!-- new title -->")
    assert aws.invalidations()[-1] == ["/", "/index.html"]
    assert len(aws.invalidations()) == 2
    assert "skip    3 unchanged file(s)" in output


@pytest.mark.req("R3.4")
def test_a_deploy_where_nothing_changed_uploads_nothing_and_creates_no_invalidation(aws: Aws, build: Path) -> None:
    run(aws, build)
    aws.puts.clear()

    output = run(aws, build)

    assert aws.puts == []
    assert len(aws.invalidations()) == 1, "only the first deploy's invalidation"
    assert "nothing changed: no upload, no invalidation" in output


@pytest.mark.req("R3.4")
def test_a_changed_cache_policy_counts_as_a_change_even_with_the_same_bytes(aws: Aws, build: Path) -> None:
    run(aws, build)
    aws.s3.copy_object(
        Bucket=BUCKET, Key="favicon.svg", CopySource={"Bucket": BUCKET, "Key": "favicon.svg"},
        MetadataDirective="REPLACE", ContentType="image/svg+xml", CacheControl="max-age=86400",
    )  # fmt: skip
    aws.puts.clear()

    run(aws, build)

    assert aws.puts == ["favicon.svg"]
    assert aws.invalidations()[-1] == ["/favicon.svg"]


@pytest.mark.req("R3.4")
def test_a_new_release_keeps_the_previous_assets_for_open_tabs_and_removes_them_after_the_retention(
    aws: Aws, build: Path
) -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    run(aws, build, now=start)
    new_js = "assets/index-Zq82mN0p.js"
    (build / JS).unlink()
    write_build(build, {new_js: "console.log('v2')", "index.html": INDEX.replace(JS, new_js)})

    output = run(aws, build, now=start + timedelta(days=30), keep_old_assets_days=7)
    assert JS in aws.objects(), "the previous release was live until just now: its chunk stays"
    assert "keep    1 asset(s) of previous releases" in output
    assert aws.puts[-3:] == [new_js, "index.html", RELEASES_KEY]
    assert aws.invalidations()[-1] == ["/", "/index.html"], "new hashed files need no invalidation"

    output = run(aws, build, now=start + timedelta(days=36), keep_old_assets_days=7)
    assert JS in aws.objects() and "invalidate nothing" in output

    run(aws, build, now=start + timedelta(days=38), keep_old_assets_days=7)
    assert JS not in aws.objects(), "no release that used it was live in the last 7 days"
    assert new_js in aws.objects()
    history = json.loads(aws.objects()[RELEASES_KEY])["releases"]
    assert [r["assets"] for r in history] == [[CSS, JS], [CSS, new_js]]


@pytest.mark.req("R3.4")
def test_without_a_retention_old_assets_are_never_deleted(aws: Aws, build: Path) -> None:
    run(aws, build, now=datetime(2026, 1, 1, tzinfo=UTC))
    (build / JS).unlink()
    write_build(build, {"assets/index-Zq82mN0p.js": "v2", "index.html": "<!doctype html>v2"})

    run(aws, build, now=datetime(2027, 1, 1, tzinfo=UTC))

    assert JS in aws.objects()


@pytest.mark.req("R3.4")
def test_an_unhashed_file_the_build_no_longer_has_is_removed_and_invalidated(aws: Aws, build: Path) -> None:
    run(aws, build)
    (build / "favicon.svg").unlink()

    run(aws, build)

    assert "favicon.svg" not in aws.objects()
    assert aws.invalidations()[-1] == ["/favicon.svg"]


@pytest.mark.req("R3.4")
def test_dry_run_prints_the_plan_and_changes_nothing(aws: Aws, build: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(aws, build, "--dry-run") == 0

    out = capsys.readouterr().out
    assert f"upload  {JS} (new; text/javascript; charset=utf-8; {HASHED_ASSET_CACHE_CONTROL})" in out
    assert "invalidate / /favicon.svg /index.html" in out
    assert "dry run: nothing was changed" in out
    assert aws.objects() == {}
    assert aws.invalidations() == []


@pytest.mark.req("R3.4")
@pytest.mark.parametrize(
    ("layout", "message"),
    [
        (None, "is not a directory: build it first with `make frontend STAGE=<stage>`"),
        ({}, "is empty: the build produced nothing"),
        ({JS: "x"}, "has no index.html"),
    ],
    ids=["missing dist", "empty build", "no index.html"],
)
def test_a_bad_build_is_refused_before_any_aws_call(
    aws: Aws, tmp_path: Path, capsys: pytest.CaptureFixture[str], layout: dict[str, str] | None, message: str
) -> None:
    dist = tmp_path / "dist-beta"
    if layout is not None:
        dist.mkdir()
        write_build(dist, layout)

    assert cli(aws, dist) == 1

    assert message in one_error_line(capsys)
    assert aws.objects() == {}


@pytest.mark.req("R3.4")
def test_an_unknown_bucket_is_refused_with_nothing_uploaded(
    aws: Aws, build: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(aws, build, bucket="canvalo-beta-no-such-bucket") == 1
    assert "bucket 'canvalo-beta-no-such-bucket' does not exist" in one_error_line(capsys)
    assert aws.puts == []


@pytest.mark.req("R3.4")
def test_an_unknown_distribution_is_refused_before_uploading(
    aws: Aws, build: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(aws, build, distribution_id="E0000000000000") == 1
    assert "CloudFront distribution 'E0000000000000' does not exist" in one_error_line(capsys)
    assert aws.objects() == {}


@pytest.mark.req("R3.4")
def test_a_bucket_that_the_distribution_does_not_serve_is_refused(
    aws: Aws, build: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(aws, build, bucket=OTHER_BUCKET) == 1
    assert f"does not serve bucket '{OTHER_BUCKET}'" in one_error_line(capsys)
    assert aws.s3.list_objects_v2(Bucket=OTHER_BUCKET).get("KeyCount") == 0


def use_user_with(aws: Aws, monkeypatch: pytest.MonkeyPatch, actions: list[str]) -> None:
    """Switch the process's credentials to an IAM user that may only do `actions`."""
    iam = boto3.client("iam", region_name=REGION)
    iam.create_user(UserName="deployer")
    document = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": actions, "Resource": "*"}]}
    iam.put_user_policy(UserName="deployer", PolicyName="deploy", PolicyDocument=json.dumps(document))
    key = iam.create_access_key(UserName="deployer")["AccessKey"]
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key["AccessKeyId"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", key["SecretAccessKey"])
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)


@pytest.mark.req("R3.4")
def test_access_denied_to_the_bucket_is_one_clear_line(
    aws: Aws, build: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    use_user_with(aws, monkeypatch, ["cloudfront:GetDistribution"])
    with enable_iam_authentication():
        assert cli(aws, build) == 1
    assert f"access denied to bucket '{BUCKET}'" in one_error_line(capsys)
    assert aws.objects() == {}


def refuse_put_object(aws: Aws, code: str, message: str, *, key: str | None = None) -> None:
    """PutObject fails as S3 would answer it (for `key`, or for every key)."""

    def refuse(params: dict[str, Any], **_: object) -> None:
        if key is None or params["Key"] == key:
            raise aws.s3.exceptions.ClientError({"Error": {"Code": code, "Message": message}}, "PutObject")

    aws.s3.meta.events.register("before-parameter-build.s3.PutObject", refuse)


@pytest.mark.req("R3.4")
def test_when_the_first_upload_is_denied_nothing_is_uploaded(aws: Aws, build: Path) -> None:
    # Reading is allowed, writing is not (a role without s3:PutObject). moto's IAM simulation cannot
    # authorize CloudFront calls in-process, so the refusal is S3's answer injected before the request.
    refuse_put_object(aws, "AccessDenied", "Access Denied")

    with pytest.raises(DeployError) as refused:
        run(aws, build)

    assert str(refused.value).startswith(f"uploading {CSS} failed (AccessDenied: Access Denied) after 0 of 4 upload(s)")
    assert "index.html was not replaced" in str(refused.value)
    assert aws.objects() == {}
    assert aws.invalidations() == []


@pytest.mark.req("R3.4")
def test_a_failed_upload_midway_leaves_the_previous_index_html_in_place(aws: Aws, build: Path) -> None:
    run(aws, build)
    new_js = "assets/index-Zq82mN0p.js"
    write_build(build, {new_js: "v2", "favicon.svg": "<svg>v2</svg>", "index.html": INDEX.replace(JS, new_js)})

    refuse_put_object(aws, "SlowDown", "Please reduce your request rate.", key="favicon.svg")
    with pytest.raises(DeployError, match=r"uploading favicon.svg failed \(SlowDown.*after 1 of 3 upload"):
        run(aws, build)

    assert aws.objects()["index.html"] == INDEX.encode(), "visitors still get the previous, complete release"
    assert len(aws.invalidations()) == 1


@pytest.mark.req("R3.4")
def test_access_denied_to_the_distribution_is_refused_before_uploading(aws: Aws, build: Path) -> None:
    def refuse(**_: object) -> None:
        raise aws.cloudfront.exceptions.ClientError(
            {"Error": {"Code": "AccessDenied", "Message": "User is not authorized"}}, "GetDistribution"
        )

    aws.cloudfront.meta.events.register("before-parameter-build.cloudfront.GetDistribution", refuse)
    with pytest.raises(DeployError, match=r"access denied to CloudFront distribution .*cloudfront:CreateInvalidation"):
        run(aws, build)
    assert aws.objects() == {}


@pytest.mark.req("R3.4")
def test_a_retention_below_one_day_is_refused(aws: Aws, build: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli(aws, build, "--keep-old-assets-days", "0")
    assert exited.value.code == 2
    assert "use at least 1 day, so open tabs of the previous release keep working" in capsys.readouterr().err
    assert aws.objects() == {}


def pending(aws: Aws, dist: Path, bucket: str | None = BUCKET) -> dict[str, object]:
    return pending_release(
        dist=dist, bucket=bucket, distribution_id=aws.distribution_id, s3=aws.s3, cloudfront=aws.cloudfront
    )


@pytest.mark.req("R4.3")
def test_a_plan_knows_whether_releasing_the_build_changes_the_live_site(aws: Aws, build: Path) -> None:
    digest = dist_sha256(scan_dist(build))
    assert pending(aws, build) == {
        "dist_sha256": digest,
        "changes": True,
        "detail": "4 file(s) to upload, 0 to delete",
    }
    assert aws.puts == [], "comparing writes nothing"
    run(aws, build)
    assert pending(aws, build) == {"dist_sha256": digest, "changes": False, "detail": "the live release is this build"}
    (build / "index.html").write_text(INDEX + "<!-- v2 -->")
    changed = pending(aws, build)
    assert changed["changes"] is True and changed["dist_sha256"] != digest
    assert changed["detail"] == "1 file(s) to upload, 0 to delete"


@pytest.mark.req("R4.3")
def test_what_cannot_be_compared_counts_as_a_change(aws: Aws, build: Path) -> None:
    assert pending(aws, build, bucket=None)["detail"] == "first release: the frontend bucket is created now"
    unreadable = pending(aws, build, bucket="canvalo-beta-frontend-gone")
    assert unreadable["changes"] is True
    assert str(unreadable["detail"]).startswith("could not compare with the live release (bucket")
