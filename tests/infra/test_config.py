"""StageConfig and the configuration loader: defaults, overrides and every kind of bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from stacks.config import (
    FARGATE_MEMORY_BY_CPU,
    PROJECT_SETTINGS,
    SHORT_NAME_LIMIT,
    ConfigError,
    load_from_environment,
)
from tests.support.config import fixture_context, fixture_project, hermetic_environment
from tools.requirements import PROJECT_ROOT

STAGES_CONTEXT: dict[str, Any] = fixture_context()["stages"]


@pytest.mark.req("R7.1")
def test_beta_is_small_with_one_task() -> None:
    beta = fixture_project().stage("beta")
    assert (beta.cpu, beta.memory, beta.min_tasks, beta.max_tasks) == (256, 512, 1, 1)
    assert not beta.autoscaling


@pytest.mark.req("R7.2")
def test_gamma_is_medium_with_two_tasks_scaling_to_ten() -> None:
    gamma = fixture_project().stage("gamma")
    assert (gamma.cpu, gamma.memory, gamma.min_tasks, gamma.max_tasks) == (512, 1024, 2, 10)


@pytest.mark.req("R7.3")
def test_prod_is_large_with_two_tasks_and_autoscaling() -> None:
    prod = fixture_project().stage("prod")
    assert (prod.cpu, prod.memory, prod.min_tasks, prod.max_tasks) == (1024, 2048, 2, 10)
    assert prod.autoscaling and prod.https and prod.deletion_protection


@pytest.mark.req("R6.3")
def test_the_committed_context_loads_and_validates() -> None:
    """Whatever an administrator committed to cdktf.json (real accounts, another branch) must be a valid config."""
    project = load_from_environment({}, PROJECT_ROOT)
    assert [stage.name for stage in project.stages] == ["beta", "gamma", "prod"]


def test_the_fixture_is_what_the_tests_assume() -> None:
    project = fixture_project()
    assert [s.account_id for s in project.stages] == ["111111111111", "222222222222", "333333333333"]
    assert {s.region for s in project.stages} == {"eu-west-1"}
    assert (project.app_name, project.branch, project.repository) == ("canvalo", "main", "canvalo/canvalo")
    assert (project.image_tag, project.bootstrap_state) == ("unreleased", "local")
    # Claude Sonnet 4.5 through the EU cross-region inference profile: Claude 4 models are invoked in
    # eu-west-1 through an inference profile only.
    assert project.bedrock_model_id == "eu.anthropic.claude-sonnet-4-5-20250929-v1:0"
    assert project.codestar_connection_arn is None and project.notification_email is None
    assert project.stage("prod").domain_name == "canvalo.example.com"
    assert project.stage("beta").domain_name is None and project.stage("gamma").domain_name is None


def test_a_process_given_the_hermetic_environment_sees_the_fixture_whatever_cdktf_json_says(tmp_path: Path) -> None:
    # Every key the loader reads: a key the fixture left out would let cdktf.json's value through.
    assert {"region", "stages", *PROJECT_SETTINGS} <= set(fixture_context())
    administrators = {
        "appName": "shop",
        "region": "us-east-2",
        "branch": "release",
        "repository": "acme/shop",
        "codestarConnectionArn": "arn:aws:codeconnections:us-east-2:444444444444:connection/abc",
        "notificationEmail": "ops@example.com",
        "imageTag": "v1",
        "bedrockModelId": "other-model",
        "bootstrapState": "s3",
        "stages": {
            "beta": {"account_id": "444444444444", "domain_name": "beta.example.org"},
            "gamma": {"account_id": "555555555555", "min_tasks": 3},
            "prod": {"account_id": "666666666666", "domain_name": "shop.example.org"},
        },
    }
    (tmp_path / "cdktf.json").write_text(json.dumps({"context": administrators}))
    assert load_from_environment({}, tmp_path).branch == "release", "the administrator's file is read"
    assert load_from_environment(hermetic_environment({}), tmp_path) == fixture_project()


def test_settings_a_developer_exported_do_not_reach_the_tests() -> None:
    script = (
        "import os\n"
        "def settings(): return sorted(k for k in os.environ if k.startswith('CANVALO_'))\n"
        "print(settings())\n"
        "import tests.conftest\n"
        "print(settings())\n"
    )
    environ = {**os.environ, "CANVALO_BETA_ACCOUNT_ID": "444444444444", "CANVALO_BRANCH": "release"}
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=PROJECT_ROOT, env=environ, capture_output=True, text=True, timeout=60
    )
    assert result.stdout.splitlines() == ["['CANVALO_BETA_ACCOUNT_ID', 'CANVALO_BRANCH']", "[]"], result.stderr


@pytest.mark.req("R6.3")
def test_environment_overrides_context() -> None:
    project = fixture_project(
        {
            "CANVALO_GAMMA_ACCOUNT_ID": "444444444444",
            "CANVALO_REGION": "us-east-2",
            "CANVALO_BRANCH": "release/2026-11",
            "CANVALO_PROD_MAX_TASKS": "20",
            "CANVALO_BETA_DASHBOARD": "true",
        }
    )
    assert project.stage("gamma").account_id == "444444444444"
    assert {s.region for s in project.stages} == {"us-east-2"}
    assert project.branch == "release/2026-11"
    assert project.stage("prod").max_tasks == 20
    assert project.stage("beta").dashboard


@pytest.mark.req("R6.3")
def test_context_overrides_defaults() -> None:
    project = fixture_project(stages={**STAGES_CONTEXT, "beta": {"account_id": "555555555555", "nat_gateways": 2}})
    assert project.stage("beta").account_id == "555555555555"
    assert project.stage("beta").nat_gateways == 2


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        (
            {"CANVALO_BETA_ACCOUNT_ID": "12345"},
            "stage beta: account_id='12345' is invalid: an AWS account id is exactly 12 digits",
        ),
        ({"CANVALO_BETA_ACCOUNT_ID": "12345678901a"}, "account_id='12345678901a'"),
        ({"CANVALO_GAMMA_CPU": "300"}, "stage gamma: cpu=300 is invalid: Fargate cpu is one of 256, 512"),
        (
            {"CANVALO_PROD_MEMORY": "1024"},
            "stage prod: memory=1024 is invalid: Fargate cpu 1024 takes memory 2048 to 8192",
        ),
        (
            {"CANVALO_BETA_MEMORY": "4096"},
            "stage beta: memory=4096 is invalid: Fargate cpu 256 takes memory 512 to 2048",
        ),
        (
            {"CANVALO_PROD_MIN_TASKS": "5", "CANVALO_PROD_MAX_TASKS": "3"},
            "stage prod: min_tasks=5 is greater than max_tasks=3",
        ),
        ({"CANVALO_GAMMA_VPC_CIDR": "10.20.0.0/33"}, "stage gamma: vpc_cidr='10.20.0.0/33' is invalid"),
        ({"CANVALO_GAMMA_VPC_CIDR": "10.20.1.0/16"}, "stage gamma: vpc_cidr='10.20.1.0/16' is invalid"),
        ({"CANVALO_GAMMA_VPC_CIDR": "not-a-cidr"}, "vpc_cidr='not-a-cidr'"),
        ({"CANVALO_BRANCH": "feature..x"}, "branch='feature..x' is not a valid git branch name"),
        ({"CANVALO_BRANCH": "bad branch"}, "branch='bad branch' is not a valid git branch name"),
        ({"CANVALO_BRANCH": "ends/"}, "branch='ends/'"),
        ({"CANVALO_STAGING_ACCOUNT_ID": "444444444444"}, "CANVALO_STAGING_ACCOUNT_ID names unknown stage 'staging'"),
        ({"CANVALO_BETA_CPU": "big"}, "stage beta: cpu='big' from CANVALO_BETA_CPU is not a whole number"),
        (
            {"CANVALO_PROD_DASHBOARD": "maybe"},
            "stage prod: dashboard='maybe' from CANVALO_PROD_DASHBOARD is not true or false",
        ),
        (
            {"CANVALO_PROD_HTTPS": "true"},
            "CANVALO_PROD_HTTPS is no longer a setting: it follows domain_name (set a domain_name for HTTPS on the ALB)",
        ),
        (
            {"CANVALO_GAMMA_STOP_TIMEOUT_SECONDS": "60"},
            "CANVALO_GAMMA_STOP_TIMEOUT_SECONDS is no longer a setting: the shutdown timings are",
        ),
        ({"CANVALO_PROD_NAT_GATEWAYS": "3"}, "stage prod: nat_gateways=3 is invalid: use 1 to 2"),
        ({"CANVALO_BETA_REGION": "europe"}, "stage beta: region='europe' is invalid"),
        ({"CANVALO_IMAGE_TAG": "latest"}, "image_tag='latest' is invalid"),
        ({"CANVALO_REPOSITORY": "no-slash"}, "repository='no-slash' is invalid"),
        ({"CANVALO_PROD_DOMAIN_NAME": "Not A Domain"}, "stage prod: domain_name='Not A Domain' is invalid"),
        ({"CANVALO_CODESTAR_CONNECTION_ARN": "arn:aws:s3:::x"}, "is not a CodeStar connection ARN"),
        ({"CANVALO_APP_NAME": "Canvalo"}, "app_name='Canvalo' is invalid: use lowercase letters, digits and hyphens"),
        ({"CANVALO_APP_NAME": "9lives"}, "app_name='9lives' is invalid"),
        ({"CANVALO_APP_NAME": "my_app"}, "app_name='my_app' is invalid"),
        ({"CANVALO_APP_NAME": "internal"}, "app_name='internal' is invalid"),
        ({"CANVALO_APP_NAME": "a" * 19}, f"app_name='{'a' * 19}' is too long"),
        (
            {"CANVALO_GAMMA_BAKE_MINUTES": "121"},
            "stage gamma: bake_minutes=121 is invalid: use 0 (promote at once) to 120",
        ),
        ({"CANVALO_GAMMA_BAKE_MINUTES": "-1"}, "bake_minutes=-1 is invalid"),
        # Five fields (a Unix cron), both day fields set, a letter in the hours, seconds other than `*`.
        ({"CANVALO_PROD_DEPLOYMENT_WINDOW": "* 8-16 * * MON-FRI"}, "deployment_window='* 8-16 * * MON-FRI' is invalid"),
        ({"CANVALO_PROD_DEPLOYMENT_WINDOW": "* * 8-16 * * MON-FRI"}, "one day field '?'"),
        ({"CANVALO_PROD_DEPLOYMENT_WINDOW": "* * 8h ? * MON-FRI"}, "deployment_window='* * 8h ? * MON-FRI'"),
        ({"CANVALO_PROD_DEPLOYMENT_WINDOW": "0 * 8-16 ? * MON-FRI *"}, "seconds first"),
        ({"CANVALO_PROD_DEPLOYMENT_WINDOW_TIME_ZONE": "Berlin"}, "deployment_window_time_zone='Berlin' is invalid"),
    ],
)
@pytest.mark.req("R6.3")
def test_bad_values_name_the_setting_and_the_value(environ: dict[str, str], expected: str) -> None:
    with pytest.raises(ConfigError) as raised:
        fixture_project(environ)
    message = str(raised.value)
    assert expected in message
    assert "\n" not in message


@pytest.mark.req("R6.3")
def test_an_app_name_too_long_for_aws_names_is_refused_with_the_name_it_would_make() -> None:
    with pytest.raises(ConfigError) as raised:
        fixture_project(appName="canvalo-enterprises")
    assert str(raised.value) == (
        "app_name='canvalo-enterprises' is too long: the gamma load balancer and target group would be named "
        "'canvalo-enterprises-gamma-backend', 33 characters, and AWS allows 32; use at most 18 characters "
        "(set CANVALO_APP_NAME or context appName in cdktf.json)"
    )


@pytest.mark.req("R6.3")
def test_the_longest_accepted_app_name_gives_names_aws_accepts(tmp_path: Path) -> None:
    from main import synthesize

    app_name = "canvalo-enterprise"
    project = fixture_project(appName=app_name)
    synthesize(project, tmp_path)
    limited = {"aws_lb", "aws_lb_target_group", "aws_codestarconnections_connection"}
    names = [
        body["name"]
        for path in sorted((tmp_path / "stacks").glob("*/cdk.tf.json"))
        for kind, instances in json.loads(path.read_text()).get("resource", {}).items()
        if kind in limited
        for body in instances.values()
    ]
    assert len(names) == 7, "a load balancer and a target group per stage, and the connection"
    assert all(name.startswith(f"{app_name}-") for name in names)
    assert max(len(name) for name in names) == SHORT_NAME_LIMIT
    assert sorted(set(names)) == sorted(set(project.short_names().values()))


@pytest.mark.req("R6.3")
def test_unknown_stage_in_context_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"unknown stage .staging. in cdktf\.json context stages"):
        fixture_project(stages={**STAGES_CONTEXT, "staging": {"account_id": "444444444444"}})
    with pytest.raises(ConfigError, match="unknown stage 'dev'"):
        fixture_project().stage("dev")


@pytest.mark.req("R6.3")
def test_unknown_stage_field_in_context_is_refused() -> None:
    with pytest.raises(ConfigError, match="stage beta: unknown field 'cpus'"):
        fixture_project(stages={**STAGES_CONTEXT, "beta": {"account_id": "111111111111", "cpus": 256}})


def test_every_fargate_pair_is_accepted_and_its_neighbours_refused() -> None:
    for cpu, sizes in FARGATE_MEMORY_BY_CPU.items():
        for memory in sizes:
            fixture_project({"CANVALO_GAMMA_CPU": str(cpu), "CANVALO_GAMMA_MEMORY": str(memory)})
        with pytest.raises(ConfigError):
            fixture_project({"CANVALO_GAMMA_CPU": str(cpu), "CANVALO_GAMMA_MEMORY": str(sizes[-1] + 1024 * 8)})


def test_placeholder_accounts_are_refused_before_a_real_deploy() -> None:
    with pytest.raises(ConfigError, match=r"placeholder account ids beta=111111111111"):
        fixture_project().require_real_accounts()
    fixture_project(
        {
            "CANVALO_BETA_ACCOUNT_ID": "123456789012",
            "CANVALO_GAMMA_ACCOUNT_ID": "223456789012",
            "CANVALO_PROD_ACCOUNT_ID": "323456789012",
        }
    ).require_real_accounts()


@pytest.mark.req("R6.3")
def test_synth_with_a_bad_override_exits_with_one_line_and_no_traceback() -> None:
    environ = hermetic_environment({**os.environ, "CANVALO_PROD_MEMORY": "3000"})
    result = subprocess.run(
        [sys.executable, "main.py"], cwd=PROJECT_ROOT, env=environ, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: stage prod: memory=3000 is invalid: Fargate cpu 1024 takes memory 2048 to 8192 in the steps "
        "2048, 3072, 4096... (set CANVALO_PROD_MEMORY or context stages.prod.memory in cdktf.json)"
    ]
    assert "Traceback" not in result.stderr


SSO_ADMINISTRATORS = (
    "arn:aws:iam::222222222222:role/aws-reserved/sso.amazonaws.com/*/AWSReservedSSO_AdministratorAccess_*"
)


@pytest.mark.req("R6.3")
def test_break_glass_principals_come_from_a_context_list_or_a_comma_separated_string() -> None:
    assert {s.name: s.break_glass_principals for s in fixture_project().stages} == {"beta": (), "gamma": (), "prod": ()}
    admin = "arn:aws:iam::222222222222:role/Admin"
    for raw in ([SSO_ADMINISTRATORS, admin], f"{SSO_ADMINISTRATORS}, {admin}"):
        stages = {**STAGES_CONTEXT, "gamma": {"account_id": "222222222222", "break_glass_principals": raw}}
        assert fixture_project(stages=stages).stage("gamma").break_glass_principals == (SSO_ADMINISTRATORS, admin)
    project = fixture_project({"CANVALO_PROD_BREAK_GLASS_PRINCIPALS": "arn:aws:iam::333333333333:role/Admin,"})
    assert project.stage("prod").break_glass_principals == ("arn:aws:iam::333333333333:role/Admin",)
    assert project.stage("gamma").break_glass_principals == ()
    assert fixture_project({"CANVALO_GAMMA_BREAK_GLASS_PRINCIPALS": ""}).stage("gamma").break_glass_principals == ()


BREAK_GLASS_FIX = (
    "(set CANVALO_{stage}_BREAK_GLASS_PRINCIPALS or context stages.{name}.break_glass_principals in cdktf.json)"
)


@pytest.mark.req("R4.6")
@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (
            "arn:aws:iam::333333333333:role/Admin",
            "stage gamma: break_glass_principals='arn:aws:iam::333333333333:role/Admin' is invalid: a role in "
            "another account cannot break glass here: use arn:aws:iam::222222222222:role/<path/name>",
        ),
        (
            "arn:aws:iam::222222222222:user/alice",
            "stage gamma: break_glass_principals='arn:aws:iam::222222222222:user/alice' is invalid: IAM users are "
            "refused, people should use roles (an SSO permission set or an admin role): "
            "arn:aws:iam::222222222222:role/<path/name>",
        ),
        (
            "arn:aws:iam::*:role/Admin",
            "stage gamma: break_glass_principals='arn:aws:iam::*:role/Admin' is invalid: no wildcard in the account "
            "part: name this stage's own account, arn:aws:iam::222222222222:role/<path/name>",
        ),
        (
            "*",
            "stage gamma: break_glass_principals='*' is invalid: expected an IAM role ARN pattern "
            "arn:aws:iam::222222222222:role/<path/name>",
        ),
        (
            "arn:aws:iam::222222222222:role/*",
            "stage gamma: break_glass_principals='arn:aws:iam::222222222222:role/*' is invalid: that matches every "
            "role in the account, automation included: name the administrators' roles",
        ),
        (
            "arn:aws:iam::222222222222:policy/Admin",
            "stage gamma: break_glass_principals='arn:aws:iam::222222222222:policy/Admin' is invalid: expected an IAM "
            "role ARN pattern arn:aws:iam::222222222222:role/<path/name>",
        ),
    ],
)
def test_break_glass_principals_outside_the_stages_own_roles_are_refused(value: str, expected: str) -> None:
    """Only roles of the stage's own account: never another account's, a user, or any account or role at all."""
    with pytest.raises(ConfigError) as raised:
        fixture_project({"CANVALO_GAMMA_BREAK_GLASS_PRINCIPALS": f"arn:aws:iam::222222222222:role/Admin,{value}"})
    assert str(raised.value) == f"{expected} {BREAK_GLASS_FIX.format(stage='GAMMA', name='gamma')}"


@pytest.mark.req("R4.8")
def test_beta_takes_no_break_glass_principals_because_it_has_no_deploy_role() -> None:
    stages = {
        **STAGES_CONTEXT,
        "beta": {"account_id": "111111111111", "break_glass_principals": ["arn:aws:iam::111111111111:role/Admin"]},
    }
    with pytest.raises(ConfigError) as raised:
        fixture_project(stages=stages)
    assert str(raised.value) == (
        "stage beta: break_glass_principals='arn:aws:iam::111111111111:role/Admin' is invalid: beta is deployed "
        "with the caller's own credentials; break-glass principals apply to cross-account stages, so leave it "
        f"empty {BREAK_GLASS_FIX.format(stage='BETA', name='beta')}"
    )


@pytest.mark.req("R6.3")
def test_promotion_timing_defaults_and_overrides() -> None:
    project = fixture_project({})
    assert [s.bake_minutes for s in project.stages] == [0, 15, 0], "only gamma holds a promotion, to prod"
    assert [s.deployment_window for s in project.stages] == [None, None, "* * 8-16 ? * MON-FRI *"]
    changed = fixture_project(
        {
            "CANVALO_GAMMA_BAKE_MINUTES": "30",
            "CANVALO_PROD_DEPLOYMENT_WINDOW": "* 0-30 9-11 ? * TUE,THU 2027",
            "CANVALO_PROD_DEPLOYMENT_WINDOW_TIME_ZONE": "Europe/Berlin",
        }
    )
    assert changed.stage("gamma").bake_minutes == 30
    prod = changed.stage("prod")
    assert (prod.deployment_window, prod.deployment_window_time_zone) == (
        "* 0-30 9-11 ? * TUE,THU 2027",
        "Europe/Berlin",
    )
    assert fixture_project({"CANVALO_PROD_DEPLOYMENT_WINDOW": ""}).stage("prod").deployment_window is None


@pytest.mark.req("R6.3")
def test_a_retired_stage_field_in_cdktf_json_is_one_line_saying_what_replaced_it() -> None:
    prod = {**STAGES_CONTEXT["prod"], "approval_before_apply": False}
    with pytest.raises(ConfigError) as refused:
        fixture_project(stages={**STAGES_CONTEXT, "prod": prod})
    message = str(refused.value)
    assert "\n" not in message
    assert message == (
        "stage prod: approval_before_apply in cdktf.json context stages.prod is no longer a setting: "
        "a person approves every change of prod, the last stage; remove it"
    )


@pytest.mark.req("R4.3", "R4.6", "R4.8", "R8.3", "R8.5")
def test_the_derived_values_follow_their_data() -> None:
    """HTTPS and a public ALB exactly where a domain is set; cross-account everywhere but the pipeline's own
    stage; a person approves every change of the last stage only."""
    project = fixture_project()
    assert [(s.https, s.private_load_balancer) for s in project.stages] == [(False, True), (False, True), (True, False)]
    given_a_domain = fixture_project({"CANVALO_BETA_DOMAIN_NAME": "beta.example.org"}).stage("beta")
    assert given_a_domain.https and not given_a_domain.private_load_balancer
    assert [s.cross_account_deploy for s in project.stages] == [False, True, True]
    assert project.pipeline_stage.name == "beta" and not project.pipeline_stage.cross_account_deploy
    assert [s.approval_before_apply for s in project.stages] == [False, False, True]
