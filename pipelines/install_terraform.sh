#!/usr/bin/env bash
# Install the pinned Terraform release into TERRAFORM_INSTALL_DIR, refusing a zip whose SHA-256 is wrong.
#
#   TERRAFORM_VERSION=1.13.4 pipelines/install_terraform.sh
#
# TERRAFORM_VERSION is pinned in modules/pipeline.py and passed to every CodeBuild project that runs
# Terraform. The zip must match two checksums, or nothing is installed:
# - the one pinned in the repository, pipelines/terraform.sha256sums (`<sha256>  <zip>` lines, reviewed like
#   code): a version or architecture it does not list is refused, so bumping TERRAFORM_VERSION means
#   committing that release's linux_amd64 and linux_arm64 lines from its signed terraform_<version>_SHA256SUMS;
# - the release's own terraform_<version>_SHA256SUMS, downloaded next to the zip.
# Overrides: TERRAFORM_RELEASES_URL (a mirror; any URL curl reads, file:// included), TERRAFORM_INSTALL_DIR,
# TERRAFORM_ARCH, and TERRAFORM_PINNED_SHA256SUMS, a path replacing pipelines/terraform.sha256sums: for the
# rehearsal's fake release and this script's tests only, never in a buildspec.
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
sha256_listed() { awk -v zip="$zip" '$2 == zip || $2 == "*" zip { print $1 }' "$1"; }
[[ -f "$pinned" ]] || fail "$pinned does not exist: commit the pinned SHA-256 lines of Terraform $version"
pinned_sum="$(sha256_listed "$pinned")"
[[ "$pinned_sum" =~ ^[0-9a-f]{64}$ ]] ||
  fail "$pinned pins no SHA-256 for $zip: commit its line from the signed terraform_${version}_SHA256SUMS"

release_sums="$releases/$version/terraform_${version}_SHA256SUMS"
download "$release_sums" "$work/SHA256SUMS"
release_sum="$(sha256_listed "$work/SHA256SUMS")"
[[ "$release_sum" =~ ^[0-9a-f]{64}$ ]] || fail "$release_sums lists no SHA-256 for $zip: is $version a Terraform release?"

download "$releases/$version/$zip" "$work/$zip"
actual="$(sha256sum "$work/$zip" | cut -d ' ' -f 1)"
[[ "$actual" == "$pinned_sum" ]] ||
  fail "$zip has SHA-256 $actual but $pinned pins $pinned_sum: not installing it (a tampered or corrupt download, or a release the repository does not pin)"
[[ "$actual" == "$release_sum" ]] ||
  fail "$zip has SHA-256 $actual but $release_sums says $release_sum: not installing it (a corrupt or tampered download)"

# Python's zipfile: present wherever the rest of the pipeline runs, unlike unzip.
python3 -m zipfile -e "$work/$zip" "$work/unpacked"
[[ -f "$work/unpacked/terraform" ]] || fail "$zip holds no terraform binary"
mkdir -p "$install_dir"
install -m 0755 "$work/unpacked/terraform" "$install_dir/terraform"
# Terraform refuses a TF_PLUGIN_CACHE_DIR that does not exist; the buildspecs set it so providers are cached.
[[ -z "${TF_PLUGIN_CACHE_DIR:-}" ]] || mkdir -p "$TF_PLUGIN_CACHE_DIR"
echo "installed Terraform $version ($zip, SHA-256 $actual checked against $pinned and the release's SHA256SUMS) into $install_dir"
