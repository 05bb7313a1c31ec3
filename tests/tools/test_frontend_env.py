"""`python -m tools.frontend_env <stage>`: the build environment of a stage's frontend, from its config."""

from __future__ import annotations

import pytest

from tests.support.config import hermetic_environment
from tools.frontend_env import main


def exports(capsys: pytest.CaptureFixture[str], *argv: str, **environ: str) -> tuple[int, str, str]:
    code = main(list(argv), hermetic_environment(environ))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.req("R3.5", "R8.1", "R8.2", "R8.3")
def test_each_stage_gets_its_api_url_from_the_stage_config(capsys: pytest.CaptureFixture[str]) -> None:
    assert exports(capsys, "beta") == (0, "export VITE_API_URL=''\nexport VITE_STAGE=beta\n", "")
    assert exports(capsys, "gamma")[1] == "export VITE_API_URL=''\nexport VITE_STAGE=gamma\n"
    code, out, _ = exports(capsys, "prod", CANVALO_PROD_DOMAIN_NAME="shop.example.net")
    assert (code, out) == (0, "export VITE_API_URL=https://api.shop.example.net\nexport VITE_STAGE=prod\n")


@pytest.mark.req("R3.5")
def test_an_unknown_stage_is_refused_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = exports(capsys, "staging")
    assert (code, out) == (2, "")
    assert err == "error: unknown stage 'staging': the stages are beta, gamma, prod\n"


@pytest.mark.req("R3.5")
def test_a_bad_stage_configuration_is_refused_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = exports(capsys, "prod", CANVALO_PROD_DOMAIN_NAME="Not A Domain")
    assert (code, out) == (2, "")
    assert err.startswith("error: stage prod: domain_name='Not A Domain' is invalid") and err.count("\n") == 1
