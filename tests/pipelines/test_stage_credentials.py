"""`python -m pipelines.stage_credentials`: boto3 scripts reach gamma and prod only through their deploy role."""

from __future__ import annotations

import configparser
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from pipelines.stage_credentials import main
from tests.support.config import action_environment

GAMMA_DEPLOY_ROLE = "arn:aws:iam::222222222222:role/canvalo/canvalo-deploy"


def exports(output: str) -> dict[str, str]:
    return dict(line.removeprefix("export ").split("=", 1) for line in output.splitlines())


@pytest.mark.req("R4.6")
def test_a_cross_account_stage_gets_a_profile_that_assumes_its_deploy_role(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config_file = tmp_path / "stage-config"
    assert main(["--stage", "gamma", "--config-file", str(config_file)], environ=action_environment()) == 0
    variables = exports(capsys.readouterr().out)
    assert variables == {"AWS_CONFIG_FILE": str(config_file.resolve()), "AWS_PROFILE": "canvalo-gamma-deploy"}
    written = configparser.ConfigParser()
    written.read(config_file)
    assert dict(written["profile canvalo-gamma-deploy"]) == {
        "role_arn": GAMMA_DEPLOY_ROLE,
        "role_session_name": "canvalo-gamma-deploy-pipeline",
        "region": "eu-west-1",
        "credential_source": "EcsContainer",
    }


@pytest.mark.req("R4.6")
def test_boto3_with_that_profile_acts_as_the_stages_deploy_role(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config_file = tmp_path / "stage-config"
    config_file.write_text("[profile pipeline]\naws_access_key_id = testing\naws_secret_access_key = testing\n")
    argv = ["--stage", "prod", "--config-file", str(config_file), "--source-profile", "pipeline"]
    assert main(argv, environ=action_environment()) == 0
    variables = exports(capsys.readouterr().out)
    with mock_aws(), pytest.MonkeyPatch.context() as patch:
        patch.setenv("AWS_CONFIG_FILE", variables["AWS_CONFIG_FILE"])
        for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
            patch.delenv(name, raising=False)
        identity = boto3.session.Session(profile_name=variables["AWS_PROFILE"]).client("sts").get_caller_identity()
    assert identity["Arn"].startswith("arn:aws:sts::333333333333:assumed-role/canvalo-deploy/canvalo-prod-deploy")
    assert "pipeline" in config_file.read_text(), "the profiles already in the file are kept"


@pytest.mark.req("R4.8")
def test_beta_uses_the_pipeline_accounts_own_credentials(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config_file = tmp_path / "stage-config"
    assert main(["--stage", "beta", "--config-file", str(config_file)], environ=action_environment()) == 0
    assert capsys.readouterr().out == ""
    assert not config_file.exists()


def test_an_unknown_stage_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--stage", "qa", "--config-file", str(tmp_path / "c")], environ=action_environment()) == 2
    assert capsys.readouterr().err == "error: unknown stage 'qa': the stages are beta, gamma, prod\n"


@pytest.mark.req("R4.6")
@pytest.mark.parametrize(("stage", "account"), [("gamma", "222222222222"), ("prod", "333333333333")])
def test_plan_selects_the_stages_read_only_plan_role_and_apply_its_deploy_role(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], stage: str, account: str
) -> None:
    config_file = tmp_path / "stage-config"
    for role, role_name in (("plan", "canvalo-plan"), ("deploy", "canvalo-deploy")):
        argv = ["--stage", stage, "--config-file", str(config_file), "--role", role]
        assert main(argv, environ=action_environment()) == 0
        variables = exports(capsys.readouterr().out)
        assert variables["AWS_PROFILE"] == f"canvalo-{stage}-{role}"
        written = configparser.ConfigParser()
        written.read(config_file)
        assert (
            written[f"profile canvalo-{stage}-{role}"]["role_arn"] == f"arn:aws:iam::{account}:role/canvalo/{role_name}"
        )
    # Both profiles stay in the file: Apply selects its own after Plan's.
    assert {"profile canvalo-" + stage + "-plan", "profile canvalo-" + stage + "-deploy"} <= set(written.sections())


@pytest.mark.req("R4.8")
def test_beta_plans_and_applies_as_the_actions_own_role(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--stage", "beta", "--config-file", str(tmp_path / "c"), "--role", "plan"]
    assert main(argv, environ=action_environment()) == 0
    assert capsys.readouterr().out == ""
    assert not (tmp_path / "c").exists()


@pytest.mark.req("R4.6")
def test_arn_prints_the_stage_role_and_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config_file = tmp_path / "stage-config"
    for stage, expected in (("prod", "arn:aws:iam::333333333333:role/canvalo/canvalo-plan"), ("beta", "")):
        argv = ["--stage", stage, "--role", "plan", "--arn", "--config-file", str(config_file)]
        assert main(argv, environ=action_environment()) == 0
        assert capsys.readouterr().out == expected + "\n"
    assert not config_file.exists()
