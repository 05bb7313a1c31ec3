"""A single-page app served from a private bucket through CloudFront, with `/api/*` sent to the backend.

The bucket is never public: CloudFront reads it through Origin Access Control (SigV4-signed requests)
and the bucket policy lets exactly this distribution read (SPEC.md's R3.1 row). A viewer-request
CloudFront Function on the default behaviour turns the app's own routes (paths without a file
extension) into `/index.html`; `/assets/*` and `/api/*` are left alone, so a missing chunk stays a
miss and the API's 404s reach the browser unchanged. `/api/*` goes to a public HTTPS name, or to an
internal ALB through a CloudFront VPC origin, which nothing else on the internet can reach.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from cdktn import Fn, TerraformIterator, TerraformProvider, TerraformResourceLifecycle, Token
from cdktn_provider_aws.acm_certificate import AcmCertificate
from cdktn_provider_aws.acm_certificate_validation import AcmCertificateValidation
from cdktn_provider_aws.cloudfront_cache_policy import (
    CloudfrontCachePolicy,
    CloudfrontCachePolicyParametersInCacheKeyAndForwardedToOrigin,
    CloudfrontCachePolicyParametersInCacheKeyAndForwardedToOriginCookiesConfig,
    CloudfrontCachePolicyParametersInCacheKeyAndForwardedToOriginHeadersConfig,
    CloudfrontCachePolicyParametersInCacheKeyAndForwardedToOriginQueryStringsConfig,
)
from cdktn_provider_aws.cloudfront_distribution import (
    CloudfrontDistribution,
    CloudfrontDistributionDefaultCacheBehavior,
    CloudfrontDistributionDefaultCacheBehaviorFunctionAssociation,
    CloudfrontDistributionOrderedCacheBehavior,
    CloudfrontDistributionOrigin,
    CloudfrontDistributionOriginCustomOriginConfig,
    CloudfrontDistributionOriginVpcOriginConfig,
    CloudfrontDistributionRestrictions,
    CloudfrontDistributionRestrictionsGeoRestriction,
    CloudfrontDistributionViewerCertificate,
)
from cdktn_provider_aws.cloudfront_function import CloudfrontFunction
from cdktn_provider_aws.cloudfront_origin_access_control import CloudfrontOriginAccessControl
from cdktn_provider_aws.cloudfront_response_headers_policy import (
    CloudfrontResponseHeadersPolicy,
    CloudfrontResponseHeadersPolicyCorsConfig,
    CloudfrontResponseHeadersPolicyCorsConfigAccessControlAllowHeaders,
    CloudfrontResponseHeadersPolicyCorsConfigAccessControlAllowMethods,
    CloudfrontResponseHeadersPolicyCorsConfigAccessControlAllowOrigins,
    CloudfrontResponseHeadersPolicySecurityHeadersConfig,
    CloudfrontResponseHeadersPolicySecurityHeadersConfigContentSecurityPolicy,
    CloudfrontResponseHeadersPolicySecurityHeadersConfigContentTypeOptions,
    CloudfrontResponseHeadersPolicySecurityHeadersConfigFrameOptions,
    CloudfrontResponseHeadersPolicySecurityHeadersConfigReferrerPolicy,
    CloudfrontResponseHeadersPolicySecurityHeadersConfigStrictTransportSecurity,
)
from cdktn_provider_aws.cloudfront_vpc_origin import (
    CloudfrontVpcOrigin,
    CloudfrontVpcOriginTimeouts,
    CloudfrontVpcOriginVpcOriginEndpointConfig,
    CloudfrontVpcOriginVpcOriginEndpointConfigOriginSslProtocols,
)
from cdktn_provider_aws.lb import Lb
from cdktn_provider_aws.route53_record import Route53Record, Route53RecordAlias
from constructs import Construct

from modules.iam import statement
from modules.private_bucket import PrivateBucket

# AWS managed policies (the same ids in every account): no caching at all, and every viewer header,
# cookie and query string forwarded except Host, which must name the origin for the ALB or its certificate.
MANAGED_CACHING_DISABLED = "4135ea2d-6df8-44a3-9df3-4b5a84be39ad"
MANAGED_ALL_VIEWER_EXCEPT_HOST_HEADER = "b689b0a8-53d0-40ab-baf2-68738e2966ac"
ONE_DAY = 86400
ONE_YEAR = 31536000
ALL_METHODS = ["DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT"]
READ_METHODS = ["GET", "HEAD", "OPTIONS"]
CACHED_METHODS = ["GET", "HEAD"]
# HSTS for two years with includeSubDomains and preload (the preload list's terms): once a browser has seen
# the site, it never tries plain HTTP on the domain or any name under it, so every such name must serve HTTPS.
HSTS_SECONDS = 2 * ONE_YEAR

SITE_ORIGIN_ID = "site-bucket"
API_ORIGIN_ID = "api"
ORIGIN_PROTOCOLS = ("https-only", "http-only")
# The provider waits 15 minutes by default for a VPC origin to deploy, and creations have been reported
# to time out at that (terraform-aws-modules/terraform-aws-cloudfront#163); a timeout taints it and
# fails the frontend's apply.
VPC_ORIGIN_WAIT = "30m"

# cloudfront-js-2.0, run at every edge on each viewer request of the default behaviour. A path whose
# last segment has no dot is one of the app's own routes (/, /settings/profile): serve the app. A path
# with a segment starting with a dot (the uploader's /.deploy/releases.json) is bookkeeping, not site.
SPA_ROUTING_FUNCTION = """\
function handler(event) {
  var request = event.request;
  var uri = request.uri;
  if (uri.indexOf('/.') !== -1) {
    return { statusCode: 404, statusDescription: 'Not Found' };
  }
  var lastSegment = uri.substring(uri.lastIndexOf('/') + 1);
  if (lastSegment.indexOf('.') === -1) {
    request.uri = '/index.html';
  }
  return request;
}
"""


def content_security_policy(*, connect_sources: Sequence[str] = ()) -> str:
    """The site's CSP: only its own scripts, styles and fonts; fetch to itself and `connect_sources`.

    Vite emits no inline script or style, so none is allowed; `data:` images cover the inline favicon.
    """
    connect = " ".join(["'self'", *connect_sources])
    return "; ".join(
        [
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self' data:",
            "font-src 'self'",
            f"connect-src {connect}",
            "object-src 'none'",
            "base-uri 'self'",
            "form-action 'self'",
            "frame-ancestors 'none'",
            "upgrade-insecure-requests",
        ]
    )


# An API answer is JSON: it may load nothing and be framed by nobody.
API_CONTENT_SECURITY_POLICY = "default-src 'none'; frame-ancestors 'none'"


@dataclass(frozen=True, kw_only=True)
class ApiOrigin:
    """Where CloudFront sends `/api/*`: `domain_name` over `protocol` (`https-only` where the backend has
    a certificate for that name, else `http-only`). With `vpc_origin_load_balancer`, that internal
    ALB is reached through a CloudFront VPC origin (from inside its VPC), and `domain_name` is its DNS name."""

    domain_name: str
    protocol: str
    vpc_origin_load_balancer: Lb | None = None

    def __post_init__(self) -> None:
        if self.protocol not in ORIGIN_PROTOCOLS:
            raise ValueError(f"ApiOrigin protocol={self.protocol!r}: use {' or '.join(ORIGIN_PROTOCOLS)}")


@dataclass(frozen=True, kw_only=True)
class CustomDomain:
    """Names the distribution answers to, the us-east-1 certificate covering them, and their hosted zone."""

    names: Sequence[str]
    certificate_arn: str
    zone_id: str


class DnsValidatedCertificate(Construct):
    """An ACM certificate validated through records in a Route53 zone; `arn` is usable once validated.

    For CloudFront, `provider` must be an AWS provider in us-east-1: CloudFront takes certificates
    only from there.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        domain_name: str,
        zone_id: str,
        provider: TerraformProvider,
        alternative_names: Sequence[str] = (),
    ) -> None:
        super().__init__(scope, construct_id)
        self.certificate = AcmCertificate(
            self,
            "certificate",
            provider=provider,
            domain_name=domain_name,
            subject_alternative_names=list(alternative_names) or None,
            validation_method="DNS",
            key_algorithm="EC_prime256v1",
            # A replaced certificate must exist before the distribution lets go of the old one.
            lifecycle=TerraformResourceLifecycle(create_before_destroy=True),
        )
        validation_options = TerraformIterator.from_complex_list(
            self.certificate.domain_validation_options, "domain_name"
        )
        self.validation_records = Route53Record(
            self,
            "validation-record",
            for_each=validation_options,
            zone_id=zone_id,
            name=validation_options.get_string("resource_record_name"),
            type=validation_options.get_string("resource_record_type"),
            records=[validation_options.get_string("resource_record_value")],
            ttl=300,
            # The same validation record serves a renewal or a replacement certificate for the same name.
            allow_overwrite=True,
        )
        self.validation = AcmCertificateValidation(
            self,
            "validation",
            provider=provider,
            certificate_arn=self.certificate.arn,
            validation_record_fqdns=Token.as_list(
                TerraformIterator.from_resources(self.validation_records).pluck_property("fqdn")
            ),
        )
        self.arn = self.validation.certificate_arn


class StaticSite(Construct):
    """Private bucket + CloudFront distribution for a Vite single-page app, with `/api/*` to the backend.

    Caching: the default behaviour (index.html and the app's routes) keeps objects without
    Cache-Control for `default_ttl_seconds` and honours the uploader's `no-cache` on index.html
    (minimum TTL 0); content-hashed `/assets/*` are kept a year; `/api/*` is never cached and gets
    every viewer header, cookie and query string but Host, at `api_origin`.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        name: str,
        bucket_name: str,
        region: str,
        protected: bool,
        api_origin: ApiOrigin,
        price_class: str,
        content_security_policy: str,
        cors_allowed_origins: Sequence[str] = (),
        custom_domain: CustomDomain | None = None,
        default_ttl_seconds: int = ONE_DAY,
        asset_ttl_seconds: int = ONE_YEAR,
    ) -> None:
        super().__init__(scope, construct_id)
        self.origin_access_control = CloudfrontOriginAccessControl(
            self,
            "origin-access-control",
            name=name,
            description=f"CloudFront signs its reads of {bucket_name}",
            origin_access_control_origin_type="s3",
            signing_behavior="always",
            signing_protocol="sigv4",
        )
        self.routing_function = CloudfrontFunction(
            self,
            "spa-routing",
            name=f"{name}-spa-routing",
            comment="Serves /index.html for the single-page app's routes",
            runtime="cloudfront-js-2.0",
            code=SPA_ROUTING_FUNCTION,
            publish=True,
        )
        self.page_cache_policy = self._cache_policy(
            "page-cache-policy", name=f"{name}-pages", default_ttl=default_ttl_seconds, max_ttl=ONE_YEAR
        )
        self.asset_cache_policy = self._cache_policy(
            "asset-cache-policy", name=f"{name}-assets", default_ttl=asset_ttl_seconds, max_ttl=asset_ttl_seconds
        )
        self.site_headers_policy = CloudfrontResponseHeadersPolicy(
            self,
            "site-headers",
            name=f"{name}-site-headers",
            comment="Security headers and CORS for the static site",
            security_headers_config=_security_headers(content_security_policy),
            cors_config=_site_cors(cors_allowed_origins),
        )
        # The backend answers CORS itself (its middleware knows the stage's origins): only security headers here.
        self.api_headers_policy = CloudfrontResponseHeadersPolicy(
            self,
            "api-headers",
            name=f"{name}-api-headers",
            comment="Security headers for the API; its CORS comes from the backend",
            security_headers_config=_security_headers(API_CONTENT_SECURITY_POLICY),
        )
        self.distribution = self._distribution(
            name=name,
            bucket_name=bucket_name,
            region=region,
            price_class=price_class,
            api_origin=api_origin,
            custom_domain=custom_domain,
        )
        self.bucket = self._bucket(bucket_name=bucket_name, protected=protected)
        self.alias_records = self._alias_records(custom_domain)

    def _distribution(
        self,
        *,
        name: str,
        bucket_name: str,
        region: str,
        price_class: str,
        api_origin: ApiOrigin,
        custom_domain: CustomDomain | None,
    ) -> CloudfrontDistribution:
        return CloudfrontDistribution(
            self,
            "distribution",
            comment=f"{name}: single-page app and /api/*",
            enabled=True,
            is_ipv6_enabled=True,
            http_version="http2and3",
            price_class=price_class,
            default_root_object="index.html",
            aliases=list(custom_domain.names) if custom_domain else None,
            origin=[self._site_origin(bucket_name, region), self._api_origin(name, api_origin)],
            default_cache_behavior=self._default_cache_behaviour(),
            ordered_cache_behavior=[self._api_cache_behaviour(), self._asset_cache_behaviour()],
            restrictions=CloudfrontDistributionRestrictions(
                geo_restriction=CloudfrontDistributionRestrictionsGeoRestriction(restriction_type="none")
            ),
            viewer_certificate=_viewer_certificate(custom_domain),
        )

    def _site_origin(self, bucket_name: str, region: str) -> CloudfrontDistributionOrigin:
        return CloudfrontDistributionOrigin(
            origin_id=SITE_ORIGIN_ID,
            # The bucket's REST endpoint (OAC cannot sign for the website endpoint); written out
            # rather than read from the bucket so that the bucket policy can name the distribution.
            domain_name=f"{bucket_name}.s3.{region}.amazonaws.com",
            origin_access_control_id=self.origin_access_control.id,
        )

    def _api_origin(self, name: str, api_origin: ApiOrigin) -> CloudfrontDistributionOrigin:
        """The `/api/*` origin: a custom origin on a public name, or a VPC origin for an internal ALB."""
        self.vpc_origin: CloudfrontVpcOrigin | None = None
        if api_origin.vpc_origin_load_balancer is None:
            return CloudfrontDistributionOrigin(
                origin_id=API_ORIGIN_ID,
                domain_name=api_origin.domain_name,
                custom_origin_config=CloudfrontDistributionOriginCustomOriginConfig(
                    origin_protocol_policy=api_origin.protocol,
                    http_port=80,
                    https_port=443,
                    origin_ssl_protocols=["TLSv1.2"],
                ),
            )
        # CloudFront connects from network interfaces it places in the ALB's subnets. It refuses to
        # change or delete a VPC origin that a distribution uses (CannotUpdateEntityWhileInUse, 409), and the
        # provider would update the endpoint's `arn` and `name` in place (terraform-provider-aws,
        # internal/service/cloudfront/vpc_origin.go: no RequiresReplace on either; Update calls
        # UpdateVpcOrigin). So a replaced load balancer (a new ARN) replaces the VPC origin instead
        # (replace_triggered_by on the ARN: an in-place change of the ALB keeps its ARN and triggers
        # nothing), created before the old one is destroyed: the distribution moves to the new origin,
        # named after the new ALB's id so that both exist at once, and only then is the old one deleted.
        load_balancer = api_origin.vpc_origin_load_balancer
        load_balancer_arn = load_balancer.arn
        # arn:aws:elasticloadbalancing:<region>:<account>:loadbalancer/app/<name>/<id>: the id is new with each ALB.
        load_balancer_id = Fn.element(Fn.split("/", load_balancer_arn), 3)
        self.vpc_origin = CloudfrontVpcOrigin(
            self,
            "api-vpc-origin",
            vpc_origin_endpoint_config=[
                CloudfrontVpcOriginVpcOriginEndpointConfig(
                    name=f"{name}-api-{load_balancer_id}",
                    arn=load_balancer_arn,
                    http_port=80,
                    https_port=443,
                    origin_protocol_policy=api_origin.protocol,
                    # Required by the API even for http-only: used only if the policy is https.
                    origin_ssl_protocols=[
                        CloudfrontVpcOriginVpcOriginEndpointConfigOriginSslProtocols(items=["TLSv1.2"], quantity=1)
                    ],
                )
            ],
            timeouts=CloudfrontVpcOriginTimeouts(
                create=VPC_ORIGIN_WAIT, update=VPC_ORIGIN_WAIT, delete=VPC_ORIGIN_WAIT
            ),
            lifecycle=TerraformResourceLifecycle(create_before_destroy=True),
        )
        # Terraform's JSON syntax takes replace_triggered_by as bare references ("aws_lb.x.arn"); cdktn writes
        # a token as "${aws_lb.x.arn}", which `terraform init` refuses ("Invalid character"; the real engine
        # found it: tests/infra/test_engine_validate.py; hashicorp/terraform-cdk#3645). So the escape hatch.
        self.vpc_origin.add_override(
            "lifecycle.replace_triggered_by",
            [f"{load_balancer.terraform_resource_type}.{load_balancer.friendly_unique_id}.arn"],
        )
        return CloudfrontDistributionOrigin(
            origin_id=API_ORIGIN_ID,
            # The internal ALB's own DNS name, which resolves to its private addresses.
            domain_name=api_origin.domain_name,
            vpc_origin_config=CloudfrontDistributionOriginVpcOriginConfig(vpc_origin_id=self.vpc_origin.id),
        )

    def _default_cache_behaviour(self) -> CloudfrontDistributionDefaultCacheBehavior:
        """index.html and the app's routes, which the routing function maps to it."""
        return CloudfrontDistributionDefaultCacheBehavior(
            target_origin_id=SITE_ORIGIN_ID,
            viewer_protocol_policy="redirect-to-https",
            allowed_methods=READ_METHODS,
            cached_methods=CACHED_METHODS,
            compress=True,
            cache_policy_id=self.page_cache_policy.id,
            response_headers_policy_id=self.site_headers_policy.id,
            function_association=[
                CloudfrontDistributionDefaultCacheBehaviorFunctionAssociation(
                    event_type="viewer-request", function_arn=self.routing_function.arn
                )
            ],
        )

    def _api_cache_behaviour(self) -> CloudfrontDistributionOrderedCacheBehavior:
        return CloudfrontDistributionOrderedCacheBehavior(
            path_pattern="/api/*",
            target_origin_id=API_ORIGIN_ID,
            # A redirect would turn a POST into a GET: plain HTTP gets a 403 instead.
            viewer_protocol_policy="https-only",
            allowed_methods=ALL_METHODS,
            cached_methods=CACHED_METHODS,
            cache_policy_id=MANAGED_CACHING_DISABLED,
            origin_request_policy_id=MANAGED_ALL_VIEWER_EXCEPT_HOST_HEADER,
            response_headers_policy_id=self.api_headers_policy.id,
        )

    def _asset_cache_behaviour(self) -> CloudfrontDistributionOrderedCacheBehavior:
        return CloudfrontDistributionOrderedCacheBehavior(
            path_pattern="/assets/*",
            target_origin_id=SITE_ORIGIN_ID,
            viewer_protocol_policy="redirect-to-https",
            allowed_methods=READ_METHODS,
            cached_methods=CACHED_METHODS,
            compress=True,
            cache_policy_id=self.asset_cache_policy.id,
            response_headers_policy_id=self.site_headers_policy.id,
        )

    def _bucket(self, *, bucket_name: str, protected: bool) -> PrivateBucket:
        return PrivateBucket(
            self,
            "bucket",
            bucket_name=bucket_name,
            protected=protected,
            policy_statements=[
                statement(
                    sid="ReadByThisDistributionOnly",
                    actions=["s3:GetObject"],
                    resources=[f"arn:aws:s3:::{bucket_name}/*"],
                    principals={"Service": ["cloudfront.amazonaws.com"]},
                    conditions=[("StringEquals", "AWS:SourceArn", [self.distribution.arn])],
                )
            ],
        )

    def _alias_records(self, custom_domain: CustomDomain | None) -> list[Route53Record]:
        """An A and an AAAA record for each of the custom domain's names, aliases of the distribution."""
        if not custom_domain:
            return []
        return [
            Route53Record(
                self,
                f"alias-{record_type.lower()}-{index}",
                zone_id=custom_domain.zone_id,
                name=domain,
                type=record_type,
                alias=Route53RecordAlias(
                    name=self.distribution.domain_name,
                    zone_id=self.distribution.hosted_zone_id,
                    evaluate_target_health=False,
                ),
            )
            for index, domain in enumerate(custom_domain.names)
            for record_type in ("A", "AAAA")
        ]

    def _cache_policy(self, construct_id: str, *, name: str, default_ttl: int, max_ttl: int) -> CloudfrontCachePolicy:
        """Keyed on the path alone (no cookie, header or query string), compressed variants cached apart."""
        return CloudfrontCachePolicy(
            self,
            construct_id,
            name=name,
            # 0 lets the origin's Cache-Control (no-cache on index.html) decide; default_ttl applies without one.
            min_ttl=0,
            default_ttl=default_ttl,
            max_ttl=max_ttl,
            parameters_in_cache_key_and_forwarded_to_origin=CloudfrontCachePolicyParametersInCacheKeyAndForwardedToOrigin(
                cookies_config=CloudfrontCachePolicyParametersInCacheKeyAndForwardedToOriginCookiesConfig(
                    cookie_behavior="none"
                ),
                headers_config=CloudfrontCachePolicyParametersInCacheKeyAndForwardedToOriginHeadersConfig(
                    header_behavior="none"
                ),
                query_strings_config=CloudfrontCachePolicyParametersInCacheKeyAndForwardedToOriginQueryStringsConfig(
                    query_string_behavior="none"
                ),
                enable_accept_encoding_brotli=True,
                enable_accept_encoding_gzip=True,
            ),
        )


def _security_headers(csp: str) -> CloudfrontResponseHeadersPolicySecurityHeadersConfig:
    return CloudfrontResponseHeadersPolicySecurityHeadersConfig(
        strict_transport_security=CloudfrontResponseHeadersPolicySecurityHeadersConfigStrictTransportSecurity(
            access_control_max_age_sec=HSTS_SECONDS, include_subdomains=True, preload=True, override=True
        ),
        content_type_options=CloudfrontResponseHeadersPolicySecurityHeadersConfigContentTypeOptions(override=True),
        frame_options=CloudfrontResponseHeadersPolicySecurityHeadersConfigFrameOptions(
            frame_option="DENY", override=True
        ),
        referrer_policy=CloudfrontResponseHeadersPolicySecurityHeadersConfigReferrerPolicy(
            referrer_policy="strict-origin-when-cross-origin", override=True
        ),
        content_security_policy=CloudfrontResponseHeadersPolicySecurityHeadersConfigContentSecurityPolicy(
            content_security_policy=csp, override=True
        ),
    )


def _site_cors(allowed_origins: Sequence[str]) -> CloudfrontResponseHeadersPolicyCorsConfig | None:
    """CORS for reads of the site by `allowed_origins`; None (no CORS headers at all) without any."""
    if not allowed_origins:
        return None
    return CloudfrontResponseHeadersPolicyCorsConfig(
        access_control_allow_origins=CloudfrontResponseHeadersPolicyCorsConfigAccessControlAllowOrigins(
            items=list(allowed_origins)
        ),
        access_control_allow_methods=CloudfrontResponseHeadersPolicyCorsConfigAccessControlAllowMethods(
            items=READ_METHODS
        ),
        access_control_allow_headers=CloudfrontResponseHeadersPolicyCorsConfigAccessControlAllowHeaders(items=["*"]),
        access_control_allow_credentials=False,
        access_control_max_age_sec=600,
        origin_override=True,
    )


def _viewer_certificate(custom_domain: CustomDomain | None) -> CloudfrontDistributionViewerCertificate:
    if custom_domain:
        return CloudfrontDistributionViewerCertificate(
            acm_certificate_arn=custom_domain.certificate_arn,
            ssl_support_method="sni-only",
            minimum_protocol_version="TLSv1.2_2021",
        )
    # The *.cloudfront.net certificate: CloudFront fixes its TLS policy, no other field applies.
    return CloudfrontDistributionViewerCertificate(cloudfront_default_certificate=True)
