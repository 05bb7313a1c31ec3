"""`<stage>-frontend`: private bucket behind CloudFront with OAC, caching, headers, `/api/*`, prod's domain.

Every assertion reads the synthesized JSON of each stage; the routing function's code is taken from
that JSON and run under Node.js, the same JavaScript CloudFront would run.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.infra.conftest import FRONTEND, STAGES, Document, data_sources, one, part, policy_statements, resources
from tests.support.config import fixture_project
from tools.requirements import PROJECT_ROOT

ACCOUNTS = {"beta": "111111111111", "gamma": "222222222222", "prod": "333333333333"}
DOMAIN = "canvalo.example.com"
CACHING_DISABLED = "4135ea2d-6df8-44a3-9df3-4b5a84be39ad"
ALL_VIEWER_EXCEPT_HOST_HEADER = "b689b0a8-53d0-40ab-baf2-68738e2966ac"
ONE_YEAR = 31536000


@pytest.fixture(scope="module")
def frontend(stacks: dict[str, Document]) -> dict[str, Document]:
    return {stage: part(stacks[stage], FRONTEND) for stage in STAGES}


def reference(document: Document, kind: str, attribute: str) -> str:
    """`${<kind>.<name>.<attribute>}` for the one resource of that kind in the stack."""
    (name,) = resources(document, kind)
    return f"${{{kind}.{name}.{attribute}}}"


def distribution(document: Document) -> Document:
    return one(document, "aws_cloudfront_distribution")


def behaviour(document: Document, path_pattern: str) -> Document:
    (found,) = [b for b in distribution(document)["ordered_cache_behavior"] if b["path_pattern"] == path_pattern]
    return dict(found)


def origin(document: Document, origin_id: str) -> Document:
    (found,) = [o for o in distribution(document)["origin"] if o["origin_id"] == origin_id]
    return dict(found)


def resource_by_reference(document: Document, ref: str) -> Document:
    """The resource a `${kind.name.attr}` reference points at."""
    kind, name, _ = ref.removeprefix("${").removesuffix("}").split(".")
    return dict(resources(document, kind)[name])


def bucket_name(stage: str) -> str:
    return f"canvalo-{stage}-frontend-{ACCOUNTS[stage]}"


@pytest.mark.req("R3.1", "R7.6")
@pytest.mark.parametrize("stage", STAGES)
def test_the_bucket_is_private_encrypted_versioned_and_tls_only(frontend: dict[str, Document], stage: str) -> None:
    document = frontend[stage]
    bucket = one(document, "aws_s3_bucket")
    assert bucket["bucket"] == bucket_name(stage)
    block = one(document, "aws_s3_bucket_public_access_block")
    assert all(block[flag] is True for flag in ("block_public_acls", "block_public_policy", "ignore_public_acls"))
    assert block["restrict_public_buckets"] is True
    assert one(document, "aws_s3_bucket_versioning")["versioning_configuration"]["status"] == "Enabled"
    encryption = one(document, "aws_s3_bucket_server_side_encryption_configuration")["rule"][0]
    assert encryption["apply_server_side_encryption_by_default"]["sse_algorithm"] in ("AES256", "aws:kms")
    # Private means no website endpoint: that endpoint is public by design (SPEC.md's R3.1 row).
    assert not resources(document, "aws_s3_bucket_website_configuration")
    assert not resources(document, "aws_s3_bucket_acl")
    # Deletion protection is stage data: only prod keeps the bucket from `destroy` (R7.6).
    protected = bucket.get("lifecycle", {}).get("prevent_destroy") is True
    assert protected is (stage == "prod") and bucket["force_destroy"] is (stage != "prod")


@pytest.mark.req("R3.1", "R3.2")
@pytest.mark.parametrize("stage", STAGES)
def test_only_this_distribution_may_read_the_bucket(frontend: dict[str, Document], stage: str) -> None:
    document = frontend[stage]
    statements = policy_statements(document, one(document, "aws_s3_bucket_policy")["policy"])
    allowed = [s for s in statements if s["effect"] == "Allow"]
    assert allowed == [
        {
            "sid": "ReadByThisDistributionOnly",
            "effect": "Allow",
            "actions": ["s3:GetObject"],
            "resources": [f"arn:aws:s3:::{bucket_name(stage)}/*"],
            "principals": [{"type": "Service", "identifiers": ["cloudfront.amazonaws.com"]}],
            "condition": [
                {
                    "test": "StringEquals",
                    "variable": "AWS:SourceArn",
                    "values": [reference(document, "aws_cloudfront_distribution", "arn")],
                }
            ],
        }
    ]
    (deny,) = [s for s in statements if s["effect"] == "Deny"]
    assert deny["condition"] == [{"test": "Bool", "variable": "aws:SecureTransport", "values": ["false"]}]


@pytest.mark.req("R3.2", "R3.1")
@pytest.mark.parametrize("stage", STAGES)
def test_cloudfront_reads_the_bucket_through_origin_access_control(frontend: dict[str, Document], stage: str) -> None:
    document = frontend[stage]
    site = origin(document, "site-bucket")
    # The REST endpoint, which pipelines/deploy_frontend.py also recognises as "serves this bucket".
    assert site["domain_name"] == f"{bucket_name(stage)}.s3.eu-west-1.amazonaws.com"
    assert site["origin_access_control_id"] == reference(document, "aws_cloudfront_origin_access_control", "id")
    assert "s3_origin_config" not in site and "custom_origin_config" not in site
    control = one(document, "aws_cloudfront_origin_access_control")
    assert (control["origin_access_control_origin_type"], control["signing_behavior"], control["signing_protocol"]) == (
        "s3",
        "always",
        "sigv4",
    )
    cdn = distribution(document)
    assert cdn["enabled"] is True and cdn["default_root_object"] == "index.html"
    assert cdn["default_cache_behavior"]["target_origin_id"] == "site-bucket"
    assert behaviour(document, "/assets/*")["target_origin_id"] == "site-bucket"
    assert not resources(document, "aws_cloudfront_origin_access_identity"), "OAI is the legacy mechanism"


@pytest.mark.req("R3.3")
@pytest.mark.parametrize("stage", STAGES)
def test_pages_are_cached_a_day_by_default_and_hashed_assets_a_year(frontend: dict[str, Document], stage: str) -> None:
    document = frontend[stage]
    default = distribution(document)["default_cache_behavior"]
    pages = resource_by_reference(document, default["cache_policy_id"])
    # Without Cache-Control an object stays 24 hours at the edge; min 0 honours index.html's no-cache.
    assert (pages["default_ttl"], pages["min_ttl"]) == (86400, 0)
    assets = resource_by_reference(document, behaviour(document, "/assets/*")["cache_policy_id"])
    assert (assets["default_ttl"], assets["max_ttl"]) == (ONE_YEAR, ONE_YEAR)
    for policy in (pages, assets):
        key = policy["parameters_in_cache_key_and_forwarded_to_origin"]
        assert key["cookies_config"]["cookie_behavior"] == "none"
        assert key["headers_config"]["header_behavior"] == "none"
        assert key["query_strings_config"]["query_string_behavior"] == "none"
        assert key["enable_accept_encoding_brotli"] is True and key["enable_accept_encoding_gzip"] is True
    for cached in (default, behaviour(document, "/assets/*")):
        assert cached["compress"] is True
        assert cached["viewer_protocol_policy"] == "redirect-to-https"
        assert "forwarded_values" not in cached, "legacy cache settings would override the cache policy"


@pytest.mark.req("R3.2")
@pytest.mark.parametrize("stage", STAGES)
def test_viewers_get_https_http2_and_3_ipv6_and_the_stages_price_class(
    frontend: dict[str, Document], stage: str
) -> None:
    cdn = distribution(frontend[stage])
    assert cdn["http_version"] == "http2and3" and cdn["is_ipv6_enabled"] is True
    assert cdn["price_class"] == {"beta": "PriceClass_100", "gamma": "PriceClass_100", "prod": "PriceClass_All"}[stage]
    behaviours = [cdn["default_cache_behavior"], *cdn["ordered_cache_behavior"]]
    assert {b["viewer_protocol_policy"] for b in behaviours} <= {"redirect-to-https", "https-only"}


def run_routing_function(code: str, uris: list[str]) -> list[dict[str, Any]]:
    """Run CloudFront Function `code` under Node.js for a viewer request to each uri."""
    runner = """
const code = require('fs').readFileSync(0, 'utf8');
const handler = new Function(code + '\\nreturn handler;')();
const uris = JSON.parse(process.argv[1]);
const results = uris.map((uri) => handler({
  version: '1.0', context: {eventType: 'viewer-request'}, viewer: {ip: '127.0.0.1'},
  request: {method: 'GET', uri: uri, querystring: {}, headers: {}, cookies: {}},
}));
process.stdout.write(JSON.stringify(results));
"""
    node = Path(sys.executable).parent / "node"
    completed = subprocess.run(
        [str(node), "-e", runner, json.dumps(uris)],
        input=code,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    results: list[dict[str, Any]] = json.loads(completed.stdout)
    return results


@pytest.mark.req("R3.1")
def test_the_routing_function_serves_the_app_for_its_routes_and_leaves_files_alone(
    frontend: dict[str, Document],
) -> None:
    function = one(frontend["beta"], "aws_cloudfront_function")
    assert function["runtime"] == "cloudfront-js-2.0" and function["publish"] is True
    cases = {
        "/": "/index.html",
        "/settings": "/index.html",
        "/projects/42/edit": "/index.html",
        "/index.html": "/index.html",
        "/assets/index-BhyA_RoW.js": "/assets/index-BhyA_RoW.js",
        "/robots.txt": "/robots.txt",
        "/v1.2/notes": "/index.html",
    }
    results = run_routing_function(function["code"], [*cases, "/.deploy/releases.json", "/a/.env"])
    assert [r["uri"] for r in results[: len(cases)]] == list(cases.values())
    # The uploader's bookkeeping and any dotfile never leave the bucket.
    assert results[len(cases) :] == [{"statusCode": 404, "statusDescription": "Not Found"}] * 2


@pytest.mark.req("R3.1", "R8.2")
@pytest.mark.parametrize("stage", STAGES)
def test_only_the_default_behaviour_rewrites_paths_so_api_errors_pass_through(
    frontend: dict[str, Document], stage: str
) -> None:
    document = frontend[stage]
    cdn = distribution(document)
    assert cdn["default_cache_behavior"]["function_association"] == [
        {"event_type": "viewer-request", "function_arn": reference(document, "aws_cloudfront_function", "arn")}
    ]
    assert all("function_association" not in b for b in cdn["ordered_cache_behavior"])
    # Error pages would turn the API's own 403/404 answers into index.html with 200.
    assert "custom_error_response" not in cdn


@pytest.mark.req("R8.2", "R8.4")
@pytest.mark.parametrize("stage", ["beta", "gamma"])
def test_api_calls_go_over_the_frontends_origin_to_the_stages_alb(stacks: dict[str, Document], stage: str) -> None:
    """`/api/*` reaches the stage's internal ALB through a VPC origin of this stack, over HTTP on 80 on the
    ALB's own DNS name (R8.4); no custom origin, so CloudFront never calls it over the internet."""
    document = stacks[stage]
    api = origin(document, "api")
    # A plain reference to the load balancer of the same state: no remote state between the stage's parts.
    assert api["domain_name"] == reference(document, "aws_lb", "dns_name")
    assert "custom_origin_config" not in api and "s3_origin_config" not in api
    assert api["vpc_origin_config"] == {"vpc_origin_id": reference(document, "aws_cloudfront_vpc_origin", "id")}
    vpc_origin = one(document, "aws_cloudfront_vpc_origin")
    (endpoint,) = vpc_origin["vpc_origin_endpoint_config"]
    assert endpoint["arn"] == reference(document, "aws_lb", "arn")
    assert (endpoint["origin_protocol_policy"], endpoint["http_port"]) == ("http-only", 80)
    assert endpoint["origin_ssl_protocols"] == [{"items": ["TLSv1.2"], "quantity": 1}]
    # CloudFront refuses to delete a VPC origin a distribution still uses: a replacement comes first.
    assert vpc_origin["lifecycle"]["create_before_destroy"] is True
    assert vpc_origin["timeouts"] == {"create": "30m", "update": "30m", "delete": "30m"}
    assert_api_behaviour_forwards_everything_uncached(document)


@pytest.mark.req("R8.2", "R10.5", "R10.6", "R10.7")
@pytest.mark.parametrize("stage", STAGES)
def test_each_stage_declares_one_backend_url_and_beta_and_gamma_test_through_cloudfront(
    stacks: dict[str, Document], stage: str
) -> None:
    """The post-deploy tests take BACKEND_URL from the one stack of the stage that outputs `backend_url`:
    CloudFront's `/api` where the ALB is internal (the tests' `/health` is then the app's `/api/health`),
    prod's `https://api.<domain>` otherwise."""
    declared = stacks[stage]["output"]["backend_url"]["value"]
    if stage == "prod":
        assert declared == f"https://api.{DOMAIN}"
    else:
        domain = reference(stacks[stage], "aws_cloudfront_distribution", "domain_name")
        assert declared == f"https://{domain}/api"
        assert behaviour(stacks[stage], "/api/*")["target_origin_id"] == "api"


@pytest.mark.req("R8.3")
def test_prod_api_calls_go_to_the_api_domain_over_https(frontend: dict[str, Document]) -> None:
    document = frontend["prod"]
    api = origin(document, "api")
    assert api["domain_name"] == f"api.{DOMAIN}"
    # The public HTTPS name, not a VPC origin: prod's ALB is internet-facing by design.
    assert "vpc_origin_config" not in api and not resources(document, "aws_cloudfront_vpc_origin")
    config = api["custom_origin_config"]
    assert config["origin_protocol_policy"] == "https-only" and config["https_port"] == 443
    assert config["origin_ssl_protocols"] == ["TLSv1.2"]
    assert_api_behaviour_forwards_everything_uncached(document)


def assert_api_behaviour_forwards_everything_uncached(document: Document) -> None:
    cdn = distribution(document)
    patterns = [b["path_pattern"] for b in cdn["ordered_cache_behavior"]]
    assert patterns.index("/api/*") == 0, "the API behaviour must match before any other"
    api = behaviour(document, "/api/*")
    assert api["target_origin_id"] == "api"
    assert set(api["allowed_methods"]) == {"GET", "HEAD", "OPTIONS", "PUT", "POST", "PATCH", "DELETE"}
    assert api["cache_policy_id"] == CACHING_DISABLED
    assert api["origin_request_policy_id"] == ALL_VIEWER_EXCEPT_HOST_HEADER
    assert api["viewer_protocol_policy"] == "https-only", "a redirect would turn a POST into a GET"
    assert "forwarded_values" not in api


@pytest.mark.req("R8.6")
@pytest.mark.parametrize("stage", STAGES)
def test_the_site_sends_security_headers_and_a_csp_that_allows_the_stages_api(
    frontend: dict[str, Document], stage: str
) -> None:
    document = frontend[stage]
    cdn = distribution(document)
    site_policy_ref = cdn["default_cache_behavior"]["response_headers_policy_id"]
    assert behaviour(document, "/assets/*")["response_headers_policy_id"] == site_policy_ref
    headers = resource_by_reference(document, site_policy_ref)["security_headers_config"]
    assert headers["strict_transport_security"]["access_control_max_age_sec"] >= ONE_YEAR
    hsts = headers["strict_transport_security"]
    assert hsts["override"] is True and hsts["include_subdomains"] is True and hsts["preload"] is True
    assert headers["content_type_options"]["override"] is True
    assert headers["frame_options"]["frame_option"] == "DENY"
    assert headers["referrer_policy"]["referrer_policy"] == "strict-origin-when-cross-origin"
    csp = headers["content_security_policy"]["content_security_policy"]
    directives = {name: value for name, _, value in (part.partition(" ") for part in csp.split("; "))}
    assert directives["default-src"] == "'self'" and directives["frame-ancestors"] == "'none'"
    assert "'unsafe-inline'" not in " ".join(directives.values())
    expected_connect = {"beta": "'self'", "gamma": "'self'", "prod": f"'self' https://api.{DOMAIN}"}[stage]
    assert directives["connect-src"] == expected_connect


@pytest.mark.req("R8.6")
@pytest.mark.parametrize("stage", STAGES)
def test_cors_allows_exactly_the_stages_frontend_origin(frontend: dict[str, Document], stage: str) -> None:
    document = frontend[stage]
    cdn = distribution(document)
    site = resource_by_reference(document, cdn["default_cache_behavior"]["response_headers_policy_id"])
    api = resource_by_reference(document, behaviour(document, "/api/*")["response_headers_policy_id"])
    # The backend's own CORS middleware answers for the API; CloudFront must not widen it.
    assert "cors_config" not in api
    assert api["security_headers_config"]["strict_transport_security"]["override"] is True
    if stage == "prod":
        cors = site["cors_config"]
        assert cors["access_control_allow_origins"]["items"] == [f"https://{DOMAIN}"]
        assert set(cors["access_control_allow_methods"]["items"]) == {"GET", "HEAD", "OPTIONS"}
        assert cors["access_control_allow_credentials"] is False
    else:
        # Beta and gamma serve the page and /api/* from one origin: the browser makes no cross-origin call.
        assert "cors_config" not in site
        assert "aliases" not in cdn


@pytest.mark.req("R8.7")
def test_prod_serves_its_domain_with_a_us_east_1_certificate_and_alias_records(frontend: dict[str, Document]) -> None:
    document = frontend["prod"]
    cdn = distribution(document)
    assert cdn["aliases"] == [DOMAIN]
    validation = one(document, "aws_acm_certificate_validation")
    assert cdn["viewer_certificate"] == {
        "acm_certificate_arn": reference(document, "aws_acm_certificate_validation", "certificate_arn"),
        "ssl_support_method": "sni-only",
        "minimum_protocol_version": "TLSv1.2_2021",
    }
    providers = {p.get("alias"): p for p in document["provider"]["aws"]}
    assert providers["us_east_1"]["region"] == "us-east-1"
    assert providers["us_east_1"]["allowed_account_ids"] == [ACCOUNTS["prod"]]
    certificate = one(document, "aws_acm_certificate")
    assert certificate["provider"] == validation["provider"] == "aws.us_east_1"
    assert certificate["domain_name"] == DOMAIN and certificate["validation_method"] == "DNS"
    assert certificate["lifecycle"] == {"create_before_destroy": True}

    (zone_name,) = data_sources(document, "aws_route53_zone")
    zone = data_sources(document, "aws_route53_zone")[zone_name]
    assert zone["name"] == DOMAIN and zone["private_zone"] is False
    zone_id = f"${{data.aws_route53_zone.{zone_name}.zone_id}}"
    records = resources(document, "aws_route53_record")
    validation_records = [r for r in records.values() if "for_each" in r]
    (validation_record,) = validation_records
    assert "domain_validation_options" in validation_record["for_each"]
    assert validation_record["zone_id"] == zone_id
    (validation_name,) = [n for n, r in records.items() if "for_each" in r]
    assert validation_name in validation["validation_record_fqdns"]
    aliases = {r["type"]: r for r in records.values() if "alias" in r}
    assert set(aliases) == {"A", "AAAA"}
    for record in aliases.values():
        assert record["name"] == DOMAIN and record["zone_id"] == zone_id
        assert record["alias"] == {
            "name": reference(document, "aws_cloudfront_distribution", "domain_name"),
            "zone_id": reference(document, "aws_cloudfront_distribution", "hosted_zone_id"),
            "evaluate_target_health": False,
        }


@pytest.mark.req("R8.7")
@pytest.mark.parametrize("stage", ["beta", "gamma"])
def test_stages_without_a_domain_use_the_cloudfront_name(frontend: dict[str, Document], stage: str) -> None:
    document = frontend[stage]
    assert distribution(document)["viewer_certificate"] == {"cloudfront_default_certificate": True}
    for kind in ("aws_acm_certificate", "aws_route53_record"):
        assert not resources(document, kind), f"{stage} has no domain, so no {kind}"
    assert [p.get("alias") for p in document["provider"]["aws"]] == [None]


@pytest.mark.parametrize("stage", STAGES)
def test_outputs_give_the_deploy_its_bucket_distribution_and_url(frontend: dict[str, Document], stage: str) -> None:
    document = frontend[stage]
    outputs = {name: output["value"] for name, output in document["output"].items()}
    assert outputs["frontend_bucket"] == reference(document, "aws_s3_bucket", "bucket")
    assert outputs["frontend_distribution_id"] == reference(document, "aws_cloudfront_distribution", "id")
    domain = reference(document, "aws_cloudfront_distribution", "domain_name")
    assert outputs["frontend_url"] == (f"https://{DOMAIN}" if stage == "prod" else f"https://{domain}")


@pytest.mark.req("R4.6")
@pytest.mark.parametrize("stage", ["gamma", "prod"])
def test_the_deploy_role_may_manage_certificates_only_in_us_east_1_beyond_its_region(
    stacks: dict[str, Document], stage: str
) -> None:
    document = stacks[f"bootstrap-{stage}"]
    (deploy,) = [p for p in resources(document, "aws_iam_role_policy").values() if p["name"] == "deploy"]
    statements = policy_statements(document, deploy["policy"])
    acm = [s for s in statements if any(action.startswith("acm:") for action in s["actions"])]
    regions = sorted(s["condition"][0]["values"][0] for s in acm)
    assert regions == ["eu-west-1", "us-east-1"]
    assert all(s["condition"][0]["variable"] == "aws:RequestedRegion" for s in acm)


def test_the_csp_admits_the_built_page() -> None:
    """Vite's index.html has no inline script or style, which the CSP's 'self'-only sources require."""
    from modules.static_site import content_security_policy

    page = (PROJECT_ROOT / "frontend" / "index.html").read_text()
    assert "script-src 'self'" in content_security_policy()
    inline_scripts = [line for line in page.splitlines() if "<script" in line and "src=" not in line]
    assert not inline_scripts and "<style" not in page and " style=" not in page


def test_a_price_class_cloudfront_does_not_have_is_refused_with_the_setting_to_fix() -> None:
    from stacks.config import ConfigError

    with pytest.raises(ConfigError) as refused:
        fixture_project({"CANVALO_GAMMA_CDN_PRICE_CLASS": "PriceClass_50"})
    message = str(refused.value)
    assert "\n" not in message
    assert "cdn_price_class='PriceClass_50'" in message and "CANVALO_GAMMA_CDN_PRICE_CLASS" in message
    assert "PriceClass_100, PriceClass_200, PriceClass_All" in message
