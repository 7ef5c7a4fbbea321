"""Environments resolve by id: built-ins, and plugins from real installed entry points."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from rayeval.envs import (
    GSM8K,
    EnvArgsError,
    EnvError,
    EnvironmentNotFound,
    available_environments,
    load_environment,
)

DATA = (Path(__file__).resolve().parents[2] / "../shared/data/gsm8k").resolve()
PLUGIN_MODULE = "rayeval_test_plugin_envs"

PLUGIN_SOURCE = textwrap.dedent(
    '''
    from rayeval.envs import Environment, Row


    class EchoEnv(Environment):
        env_id = "echo-test"

        def __init__(self, size: int = 2) -> None:
            super().__init__(
                [Row(example_id=i, prompt=[{"role": "user", "content": str(i)}], answer=str(i)) for i in range(size)]
            )

        def score(self, completion, row):
            return float(completion == row.answer), {}


    class Gsm8kImpostor(EchoEnv):
        env_id = "gsm8k"


    def not_an_env(**kwargs):
        return "not an environment"
    '''
)

ENTRY_POINTS = textwrap.dedent(
    f"""
    [rayeval.envs]
    echo-test = {PLUGIN_MODULE}:EchoEnv
    gsm8k = {PLUGIN_MODULE}:Gsm8kImpostor
    returns-junk = {PLUGIN_MODULE}:not_an_env
    broken-import = {PLUGIN_MODULE}_missing:Thing
    """
)


@pytest.fixture
def installed_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A real distribution (dist-info with entry_points.txt) on sys.path."""
    (tmp_path / f"{PLUGIN_MODULE}.py").write_text(PLUGIN_SOURCE, encoding="utf-8")
    dist_info = tmp_path / "rayeval_test_plugin-0.1.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: rayeval-test-plugin\nVersion: 0.1\n", encoding="utf-8"
    )
    (dist_info / "entry_points.txt").write_text(ENTRY_POINTS, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield
    sys.modules.pop(PLUGIN_MODULE, None)


def test_builtin_gsm8k_by_name() -> None:
    env = load_environment("gsm8k", {"data_path": str(DATA)})
    assert isinstance(env, GSM8K) and env.env_id == "gsm8k" and len(env) == 1319
    assert "gsm8k" in available_environments()


def test_unknown_id_lists_available_environments() -> None:
    with pytest.raises(EnvironmentNotFound, match=r"unknown environment 'gsm9k'; available environments: .*gsm8k"):
        load_environment("gsm9k")


def test_entry_point_environment_is_found_and_built(installed_plugin: None) -> None:
    assert {"echo-test", "gsm8k", "returns-junk", "broken-import"} <= set(available_environments())
    env = load_environment("echo-test", {"size": 3})
    assert env.env_id == "echo-test" and len(env) == 3
    with pytest.raises(EnvArgsError, match=r"'sise'.*accepted arguments: size"):
        load_environment("echo-test", {"sise": 3})


def test_builtin_wins_over_entry_point_of_same_name(installed_plugin: None) -> None:
    assert isinstance(load_environment("gsm8k", {"data_path": str(DATA)}), GSM8K)


def test_broken_entry_points_raise_env_error(installed_plugin: None) -> None:
    with pytest.raises(EnvError, match=r"'broken-import': cannot import entry point"):
        load_environment("broken-import")
    with pytest.raises(EnvError, match=r"returned str, not an Environment"):
        load_environment("returns-junk")


def test_env_args_must_be_an_object() -> None:
    with pytest.raises(EnvArgsError, match="expected a JSON object"):
        load_environment("gsm8k", ["test"])  # type: ignore[arg-type]
