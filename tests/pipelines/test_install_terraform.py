"""pipelines/install_terraform.sh against a local fake release (file:// URLs): it installs only a verified zip."""

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
VERSION = "1.13.4"
ZIP = f"terraform_{VERSION}_linux_amd64.zip"


@dataclass
class Release:
    root: Path
    zip_sha256: str
    install_dir: Path

    def write_sums(self, path: Path, sha256: str, name: str = ZIP) -> Path:
        path.write_text(f"{'0' * 64}  terraform_{VERSION}_darwin_arm64.zip\n{sha256}  {name}\n")
        return path

    def install(self, **overrides: str) -> subprocess.CompletedProcess[str]:
        environment = {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "TERRAFORM_VERSION": VERSION,
            "TERRAFORM_RELEASES_URL": self.root.as_uri(),
            "TERRAFORM_PINNED_SHA256SUMS": str(self.root / "no-pinned-sums"),
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


@pytest.fixture
def release(tmp_path: Path) -> Release:
    directory = tmp_path / "releases" / VERSION
    directory.mkdir(parents=True)
    with zipfile.ZipFile(directory / ZIP, "w") as archive:
        archive.writestr("terraform", f'#!/bin/sh\necho "Terraform v{VERSION}"\necho "on linux_amd64"\n')
    digest = hashlib.sha256((directory / ZIP).read_bytes()).hexdigest()
    made = Release(tmp_path / "releases", digest, tmp_path / "bin")
    made.write_sums(directory / f"terraform_{VERSION}_SHA256SUMS", digest)
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


def test_a_zip_with_another_checksum_is_refused_and_nothing_is_installed(release: Release) -> None:
    release.write_sums(release.root / VERSION / f"terraform_{VERSION}_SHA256SUMS", "f" * 64)
    error = one_error(release.install())
    assert f"{ZIP} has SHA-256 {release.zip_sha256} but" in error and "not installing it" in error
    assert not release.installed.exists()


def test_a_pinned_checksum_in_the_repository_wins_over_the_download(release: Release, tmp_path: Path) -> None:
    pinned = release.write_sums(tmp_path / "terraform.sha256sums", "e" * 64)
    error = one_error(release.install(TERRAFORM_PINNED_SHA256SUMS=str(pinned)))
    assert str(pinned) in error
    assert not release.installed.exists()
    release.write_sums(pinned, release.zip_sha256)
    assert release.install(TERRAFORM_PINNED_SHA256SUMS=str(pinned)).returncode == 0


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"TERRAFORM_VERSION": ""}, "TERRAFORM_VERSION is not set"),
        ({"TERRAFORM_VERSION": "latest"}, "is not a release version"),
        ({"TERRAFORM_VERSION": "9.9.9"}, "cannot download"),
        ({"TERRAFORM_ARCH": "sparc"}, "set TERRAFORM_ARCH to amd64 or arm64"),
        ({"TERRAFORM_ARCH": "arm64"}, f"lists no SHA-256 for terraform_{VERSION}_linux_arm64.zip"),
    ],
)
def test_bad_settings_fail_with_one_line(release: Release, overrides: dict[str, str], message: str) -> None:
    assert message in one_error(release.install(**overrides))
    assert not release.installed.exists()


def test_the_fake_release_uses_the_pinned_version() -> None:
    assert VERSION == TERRAFORM_VERSION, "keep this test's release at the version the pipeline installs"
