"""pipelines/install_terraform.sh against a local fake release (file:// URLs): it installs only a verified zip.

A zip must match both the checksum pinned in the repository (pipelines/terraform.sha256sums, replaced here by
TERRAFORM_PINNED_SHA256SUMS, since the fake zip is not HashiCorp's) and the release's own SHA256SUMS.
"""

from __future__ import annotations

import hashlib
import subprocess
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from modules.pipeline import TERRAFORM_VERSION
from tools.requirements import PROJECT_ROOT

SCRIPT = PROJECT_ROOT / "pipelines" / "install_terraform.sh"
PINNED = PROJECT_ROOT / "pipelines" / "terraform.sha256sums"
VERSION = "1.13.4"
ZIP = f"terraform_{VERSION}_linux_amd64.zip"


@dataclass
class Release:
    root: Path
    zip_sha256: str
    install_dir: Path
    pinned: Path

    def write_sums(self, path: Path, sha256: str, name: str = ZIP) -> Path:
        path.write_text(f"{'0' * 64}  terraform_{VERSION}_darwin_arm64.zip\n{sha256}  {name}\n")
        return path

    def install(self, **overrides: str) -> subprocess.CompletedProcess[str]:
        environment = {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "TERRAFORM_VERSION": VERSION,
            "TERRAFORM_RELEASES_URL": self.root.as_uri(),
            "TERRAFORM_PINNED_SHA256SUMS": str(self.pinned),
            "TERRAFORM_INSTALL_DIR": str(self.install_dir),
            "TERRAFORM_ARCH": "x86_64",
        }
        environment.update(overrides)
        return subprocess.run(
            ["bash", str(SCRIPT)], env=environment, capture_output=True, text=True, timeout=60, check=False
        )

    @property
    def installed(self) -> Path:
        return self.install_dir / "terraform"

    @property
    def sums(self) -> Path:
        return self.root / VERSION / f"terraform_{VERSION}_SHA256SUMS"


@pytest.fixture
def release(tmp_path: Path) -> Release:
    directory = tmp_path / "releases" / VERSION
    directory.mkdir(parents=True)
    with zipfile.ZipFile(directory / ZIP, "w") as archive:
        archive.writestr("terraform", f'#!/bin/sh\necho "Terraform v{VERSION}"\necho "on linux_amd64"\n')
    digest = hashlib.sha256((directory / ZIP).read_bytes()).hexdigest()
    made = Release(tmp_path / "releases", digest, tmp_path / "bin", tmp_path / "pinned.sha256sums")
    made.write_sums(made.sums, digest)
    made.write_sums(made.pinned, digest)
    return made


def one_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def test_a_zip_matching_the_releases_checksum_is_installed_and_runs(release: Release) -> None:
    result = release.install()
    assert result.returncode == 0, result.stderr
    assert f"SHA-256 {release.zip_sha256} checked" in result.stdout
    version = subprocess.run([str(release.installed), "version"], capture_output=True, text=True, check=True)
    assert version.stdout.splitlines()[0] == f"Terraform v{VERSION}"
    again = release.install(TERRAFORM_RELEASES_URL="file:///nonexistent")
    assert again.returncode == 0 and "already installed" in again.stdout, "an installed version is not fetched again"


def test_a_zip_that_disagrees_with_the_releases_sha256sums_is_refused(release: Release) -> None:
    release.write_sums(release.sums, "f" * 64)
    error = one_error(release.install())
    assert f"{ZIP} has SHA-256 {release.zip_sha256} but {release.sums.as_uri()} says {'f' * 64}" in error
    assert "not installing it" in error
    release.write_sums(release.sums, release.zip_sha256, name=f"terraform_{VERSION}_linux_arm64.zip")
    assert f"{release.sums.as_uri()} lists no SHA-256 for {ZIP}" in one_error(release.install())
    assert not release.installed.exists()


def test_a_zip_matching_sha256sums_but_not_the_pinned_checksum_is_refused(release: Release) -> None:
    """A release (or mirror) that serves another zip with a SHA256SUMS to match still does not get installed."""
    release.write_sums(release.pinned, "e" * 64)
    error = one_error(release.install())
    assert f"{ZIP} has SHA-256 {release.zip_sha256} but {release.pinned} pins {'e' * 64}" in error
    assert "not installing it" in error
    assert not release.installed.exists()


def test_a_zip_the_repository_does_not_pin_is_refused_before_anything_is_downloaded(release: Release) -> None:
    release.write_sums(release.pinned, release.zip_sha256, name=f"terraform_{VERSION}_linux_arm64.zip")
    error = one_error(release.install(TERRAFORM_RELEASES_URL="file:///nonexistent"))
    assert f"{release.pinned} pins no SHA-256 for {ZIP}" in error
    release.pinned.unlink()
    assert f"{release.pinned} does not exist" in one_error(release.install())
    assert not release.installed.exists()


def test_the_repositorys_pinned_checksums_are_the_default_and_refuse_any_other_zip(release: Release) -> None:
    """Without the override the committed file decides, and the fake zip is not HashiCorp's."""
    result = release.install(TERRAFORM_PINNED_SHA256SUMS="")
    assert f"but {PINNED} pins " in one_error(result)
    assert not release.installed.exists()


def test_the_repository_pins_the_installed_version_for_both_codebuild_architectures() -> None:
    pinned = {name: sha256 for sha256, name in (line.split("  ") for line in PINNED.read_text().splitlines())}
    assert set(pinned) == {f"terraform_{TERRAFORM_VERSION}_linux_{arch}.zip" for arch in ("amd64", "arm64")}
    assert all(len(sha256) == 64 and set(sha256) <= set("0123456789abcdef") for sha256 in pinned.values())


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"TERRAFORM_VERSION": ""}, "TERRAFORM_VERSION is not set"),
        ({"TERRAFORM_VERSION": "latest"}, "is not a release version"),
        ({"TERRAFORM_VERSION": "9.9.9"}, "pins no SHA-256 for terraform_9.9.9_linux_amd64.zip"),
        ({"TERRAFORM_RELEASES_URL": "file:///nonexistent"}, "cannot download"),
        ({"TERRAFORM_ARCH": "sparc"}, "set TERRAFORM_ARCH to amd64 or arm64"),
        ({"TERRAFORM_ARCH": "arm64"}, f"pins no SHA-256 for terraform_{VERSION}_linux_arm64.zip"),
    ],
)
def test_bad_settings_fail_with_one_line(release: Release, overrides: dict[str, str], message: str) -> None:
    assert message in one_error(release.install(**overrides))
    assert not release.installed.exists()


def test_the_fake_release_uses_the_pinned_version() -> None:
    assert VERSION == TERRAFORM_VERSION, "keep this test's release at the version the pipeline installs"
