"""pipelines/publish_image.sh with stand-ins for `aws` and `docker` that record what they were asked to do."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tools.requirements import PROJECT_ROOT

SCRIPT = PROJECT_ROOT / "pipelines" / "publish_image.sh"
REPOSITORY = "111111111111.dkr.ecr.eu-west-1.amazonaws.com/canvalo-backend"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


DIGEST = "sha256:" + "ab" * 32


def shims(directory: Path, *, image_exists: bool) -> Path:
    """`aws` and `docker` that append their arguments to calls.log; describe-images finds the tag once it is
    there (before, or after `docker push`), and with --query prints the digest ECR would give it."""
    directory.mkdir()
    log = directory / "calls.log"
    pushed = directory / "pushed"
    if image_exists:
        pushed.touch()
    (directory / "aws").write_text(
        f'#!/bin/sh\necho "aws $*" >> {log}\n'
        f'case "$2" in\n'
        f'  describe-images) [ -e {pushed} ] || exit 254; case "$*" in *--query*) echo {DIGEST} ;; esac ;;\n'
        f"  get-login-password) echo token ;;\n"
        f"esac\n"
    )
    (directory / "docker").write_text(
        f'#!/bin/sh\necho "docker $*" >> {log}\ncat > /dev/null\n[ "$1" != push ] || touch {pushed}\n'
    )
    for tool in ("aws", "docker"):
        (directory / tool).chmod(0o755)
    return log


def publish(bin_dir: Path, **environment: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPT)],
        env={"PATH": f"{bin_dir}:/usr/bin:/bin", **environment},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        stdin=subprocess.DEVNULL,
    )


def test_a_new_commit_is_built_from_the_dockerfile_and_pushed_with_its_tag(tmp_path: Path) -> None:
    log = shims(tmp_path / "bin", image_exists=False)
    result = publish(tmp_path / "bin", ECR_REPOSITORY_URI=REPOSITORY, IMAGE_TAG=COMMIT)
    assert result.returncode == 0, result.stderr
    calls = log.read_text().splitlines()
    login = "docker login --username AWS --password-stdin 111111111111.dkr.ecr.eu-west-1.amazonaws.com"
    # `aws ecr get-login-password | docker login` run side by side: only their relative order is open.
    assert calls[0] == (
        f"aws ecr describe-images --region eu-west-1 --repository-name canvalo-backend --image-ids imageTag={COMMIT}"
    )
    assert set(calls[1:3]) == {"aws ecr get-login-password --region eu-west-1", login}
    assert calls[3:] == [
        f"docker build --file {PROJECT_ROOT}/app/Dockerfile --tag {REPOSITORY}:{COMMIT} {PROJECT_ROOT}",
        f"docker push {REPOSITORY}:{COMMIT}",
        f"{calls[0]} --query imageDetails[0].imageDigest --output text",
    ]
    assert result.stdout.splitlines()[-1] == f"{REPOSITORY}@{DIGEST}"


@pytest.mark.req("R4.2")
@pytest.mark.parametrize("image_exists", [False, True], ids=["pushed now", "pushed before"])
def test_the_digest_ecr_gave_the_image_is_handed_to_the_build(tmp_path: Path, image_exists: bool) -> None:
    shims(tmp_path / "bin", image_exists=image_exists)
    digest_file = tmp_path / "image.digest"
    result = publish(
        tmp_path / "bin", ECR_REPOSITORY_URI=REPOSITORY, IMAGE_TAG=COMMIT, IMAGE_DIGEST_FILE=str(digest_file)
    )
    assert result.returncode == 0, result.stderr
    assert digest_file.read_text() == f"{DIGEST}\n"


def test_an_image_ecr_gives_no_digest_for_fails_the_build(tmp_path: Path) -> None:
    shims(tmp_path / "bin", image_exists=True)
    (tmp_path / "bin" / "aws").write_text("#!/bin/sh\necho None\n")
    result = publish(tmp_path / "bin", ECR_REPOSITORY_URI=REPOSITORY, IMAGE_TAG=COMMIT)
    assert result.returncode == 1
    assert result.stderr.strip() == f"error: ECR gave no digest for {REPOSITORY}:{COMMIT} (got 'None')"


def test_a_commit_released_again_keeps_its_image(tmp_path: Path) -> None:
    log = shims(tmp_path / "bin", image_exists=True)
    result = publish(tmp_path / "bin", ECR_REPOSITORY_URI=REPOSITORY, IMAGE_TAG=COMMIT)
    assert result.returncode == 0, result.stderr
    assert "already exists" in result.stdout
    assert not [line for line in log.read_text().splitlines() if line.startswith("docker")]


@pytest.mark.parametrize(
    ("environment", "message"),
    [
        ({"IMAGE_TAG": COMMIT}, "ECR_REPOSITORY_URI='' is not an ECR repository URI"),
        ({"ECR_REPOSITORY_URI": "docker.io/canvalo", "IMAGE_TAG": COMMIT}, "is not an ECR repository URI"),
        ({"ECR_REPOSITORY_URI": REPOSITORY, "IMAGE_TAG": "latest"}, "IMAGE_TAG='latest' is not an immutable tag"),
        ({"ECR_REPOSITORY_URI": REPOSITORY}, "IMAGE_TAG='' is not an immutable tag"),
    ],
)
def test_bad_settings_fail_with_one_line_before_any_call(
    tmp_path: Path, environment: dict[str, str], message: str
) -> None:
    log = shims(tmp_path / "bin", image_exists=False)
    result = publish(tmp_path / "bin", **environment)
    assert result.returncode == 1
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    assert message in result.stderr
    assert not log.exists()


def test_a_pinned_base_image_reaches_the_build_and_the_default_is_not_docker_hub(tmp_path: Path) -> None:
    log = shims(tmp_path / "bin", image_exists=False)
    pinned = "public.ecr.aws/docker/library/python@sha256:" + "a" * 64
    result = publish(tmp_path / "bin", ECR_REPOSITORY_URI=REPOSITORY, IMAGE_TAG=COMMIT, BASE_IMAGE=pinned)
    assert result.returncode == 0, result.stderr
    assert f"docker build --file {PROJECT_ROOT}/app/Dockerfile --build-arg BASE_IMAGE={pinned} --tag" in log.read_text()
    (default,) = [
        line for line in (PROJECT_ROOT / "app" / "Dockerfile").read_text().splitlines() if "ARG BASE_IMAGE=" in line
    ]
    registry = default.split("=", 1)[1].split("/", 1)[0]
    assert "." in registry and registry != "docker.io", (
        f"{default}: a registry host, not Docker Hub's rate-limited default"
    )
