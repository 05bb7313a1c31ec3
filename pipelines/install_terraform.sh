#!/usr/bin/env bash
# Install the pinned Terraform release into TERRAFORM_INSTALL_DIR, refusing a zip whose SHA-256 is wrong.
#
#   TERRAFORM_VERSION=1.13.4 pipelines/install_terraform.sh
#
# TERRAFORM_VERSION is pinned in modules/pipeline.py and passed to every CodeBuild project that runs
# Terraform. The expected checksum comes from pipelines/terraform.sha256sums when that file lists the zip
# (a checksum pinned in the repository, reviewed like code), else from HashiCorp's SHA256SUMS of that
# release over HTTPS. Nothing is installed unless the zip matches.
# Overrides, for tests and mirrors: TERRAFORM_RELEASES_URL (any URL curl reads, file:// included),
# TERRAFORM_PINNED_SHA256SUMS, TERRAFORM_INSTALL_DIR, TERRAFORM_ARCH.
set -euo pipefail

fail() { echo "error: $*" >&2; exit 1; }
download() {
  local reason
  reason="$(curl --fail --silent --show-error --location --retry 3 --output "$2" "$1" 2>&1)" ||
    fail "cannot download $1 (${reason//$'\n'/ }): check the network or TERRAFORM_RELEASES_URL"
}

version="${TERRAFORM_VERSION:-}"
[[ -n "$version" ]] || fail "TERRAFORM_VERSION is not set: pass the version pinned in modules/pipeline.py"
[[ "$version" =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || fail "TERRAFORM_VERSION=$version is not a release version such as 1.13.4"
releases="${TERRAFORM_RELEASES_URL:-https://releases.hashicorp.com/terraform}"
pinned="${TERRAFORM_PINNED_SHA256SUMS:-$(dirname "$0")/terraform.sha256sums}"
install_dir="${TERRAFORM_INSTALL_DIR:-/usr/local/bin}"
case "${TERRAFORM_ARCH:-$(uname -m)}" in
  x86_64 | amd64) arch=amd64 ;;
  aarch64 | arm64) arch=arm64 ;;
  *) fail "no Terraform build for machine $(uname -m): set TERRAFORM_ARCH to amd64 or arm64" ;;
esac
zip="terraform_${version}_linux_${arch}.zip"

# sed reads all of the output: `head -n 1` would close the pipe early, and under pipefail the writer's
# SIGPIPE would make an installed Terraform look missing, at random.
if [[ -x "$install_dir/terraform" ]] &&
  [[ "$("$install_dir/terraform" version 2>/dev/null | sed -n 1p)" == "Terraform v$version" ]]; then
  echo "Terraform $version is already installed in $install_dir"
  exit 0
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
if [[ -f "$pinned" ]] && grep -q "  $zip\$" "$pinned"; then
  source_of_sum="$pinned"
  cp "$pinned" "$work/SHA256SUMS"
else
  source_of_sum="$releases/$version/terraform_${version}_SHA256SUMS"
  download "$source_of_sum" "$work/SHA256SUMS"
fi
expected="$(awk -v zip="$zip" '$2 == zip { print $1 }' "$work/SHA256SUMS")"
[[ "$expected" =~ ^[0-9a-f]{64}$ ]] || fail "$source_of_sum lists no SHA-256 for $zip: is $version a Terraform release?"

download "$releases/$version/$zip" "$work/$zip"
actual="$(sha256sum "$work/$zip" | cut -d ' ' -f 1)"
[[ "$actual" == "$expected" ]] ||
  fail "$zip has SHA-256 $actual but $source_of_sum says $expected: not installing it (a corrupt or tampered download)"

# Python's zipfile: present wherever the rest of the pipeline runs, unlike unzip.
python3 -m zipfile -e "$work/$zip" "$work/unpacked"
[[ -f "$work/unpacked/terraform" ]] || fail "$zip holds no terraform binary"
mkdir -p "$install_dir"
install -m 0755 "$work/unpacked/terraform" "$install_dir/terraform"
echo "installed Terraform $version ($zip, SHA-256 $actual checked against $source_of_sum) into $install_dir"
