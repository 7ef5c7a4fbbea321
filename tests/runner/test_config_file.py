"""TOML eval configs and the endpoints registry: parsing, layering, errors, and real CLI runs.

The CLI tests run the installed `rayeval` command against the session's Ray (real actors,
real ZeroMQ, the real simulator over HTTP), as a user would.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rayeval.runner.config_file import (
    Endpoint,
    load_config_file,
    load_endpoints,
    resolve_endpoint,
)
from rayeval.runner.errors import ConfigError
from rayeval.runner.hub import default_dataset_name

PROJECT_ROOT = Path(__file__).resolve().parents[2]

ENDPOINTS = """
[[endpoint]]
endpoint_id = "qwen"
model = "Qwen/Qwen3-4B"
url = "http://localhost:8000/v1"
key = "VLLM_API_KEY"

[[endpoint]]
endpoint_id = "sim"
model = "sim"
"""


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.fixture
def endpoints(tmp_path) -> Path:
    return write(tmp_path / "endpoints.toml", ENDPOINTS)


# --- parsing and layering -------------------------------------------------------------------


def test_top_level_defaults_merge_into_each_eval(tmp_path, endpoints):
    cfg = write(tmp_path / "c.toml", """
model = "qwen"
num_examples = 4
temperature = 0.5
env_args = { data_path = "data", split = "test" }

[[eval]]
env_id = "gsm8k"

[[eval]]
env_id = "gsm8k"
num_examples = 2
max_tokens = 64
sampling_args = { temperature = 0.9 }
env_args = { split = "train" }
""")
    first, second = load_config_file(cfg, endpoints_path=endpoints)
    assert (first.model, first.base_url, first.api_key_var) == (
        "Qwen/Qwen3-4B", "http://localhost:8000/v1", "VLLM_API_KEY")
    assert first.num_examples == 4 and second.num_examples == 2
    assert first.sampling_args == {"temperature": 0.5}
    assert second.sampling_args == {"temperature": 0.9, "max_tokens": 64}  # later layer wins
    assert first.env_args == {"data_path": "data", "split": "test"}
    assert second.env_args == {"data_path": "data", "split": "train"}  # merged key by key


def test_vf_eval_spellings_and_single_eval_without_tables(tmp_path):
    cfg = write(tmp_path / "c.toml", """
env_id = "gsm8k"
model = "my-model"
api_base_url = "http://127.0.0.1:9/v1"
api_key_var = "MY_KEY"
output_dir = "out/run"
rollouts_per_example = 2
max_concurrent = -1
save_results = true
disable_tui = true
""")
    (only,) = load_config_file(cfg, endpoints_path=write(tmp_path / "e.toml", ""))
    assert only.env_id == "gsm8k" and only.model == "my-model"
    assert only.base_url == "http://127.0.0.1:9/v1" and only.api_key_var == "MY_KEY"
    assert only.run_dir == "out/run" and only.show_progress is False
    assert (only.rollouts_per_example, only.max_concurrent) == (2, -1)


def test_overrides_from_the_command_line_win(tmp_path):
    cfg = write(tmp_path / "c.toml", """
model = "sim"
num_examples = 8
sampling_args = { temperature = 0.2 }
[[eval]]
env_id = "gsm8k"
""")
    (only,) = load_config_file(
        cfg, endpoints_path=write(tmp_path / "e.toml", ""),
        overrides={"num_examples": 3, "temperature": 1.0, "ray_address": "127.0.0.1:1"},
    )
    assert only.num_examples == 3
    assert only.sampling_args == {"temperature": 1.0}
    assert only.ray_address == "127.0.0.1:1"


@pytest.mark.parametrize(
    "text, needle",
    [
        ('[[eval]]\nenv_id = "gsm8k"\n[[eval]]\nenv_id = "gsm8k"\nnum_exampels = 3\n',
         "[[eval]] #2: unknown key 'num_exampels' (did you mean 'num_examples'?)"),
        ('[[eval]]\nenv_id = "gsm8k"\nnum_examples = "3"\n',
         "[[eval]] #1: 'num_examples' must be an integer, got str '3'"),
        ('rollouts = 4\n[[eval]]\nenv_id = "gsm8k"\n', "top level: unknown key 'rollouts'"),
        ('[[eval]]\nenv_id = "gsm8k"\nenv_args = "x"\n', "'env_args' must be a table"),
        ('[[eval]]\nenv_id = "gsm8k"\nverbose = 1\n', "'verbose' must be true or false"),
        ('[[eval]]\nenv_id = "gsm8k"\nnum_examples = 0\n', "[[eval]] #1: -n/--num-examples"),
        ('[[eval]]\nmodel = "sim"\n', "[[eval]] #1: missing key 'env_id'"),
        ('[eval]\nenv_id = "gsm8k"\n', "[[eval]] tables (double brackets)"),
        ('model = "sim"\n', "no [[eval]] table and no top-level env_id"),
        ('[[eval]\n', "not valid TOML"),
    ],
)
def test_mistakes_name_the_table_and_key(tmp_path, text, needle):
    cfg = write(tmp_path / "bad.toml", text)
    with pytest.raises(ConfigError) as info:
        load_config_file(cfg, endpoints_path=write(tmp_path / "e.toml", ""))
    assert needle in str(info.value)
    assert str(info.value).startswith(str(cfg))
    assert "\n" not in str(info.value)


def test_two_evals_may_not_share_a_run_dir(tmp_path):
    cfg = write(tmp_path / "c.toml", 'model = "sim"\nrun_dir = "x"\n[[eval]]\nenv_id = "gsm8k"\n'
                                     '[[eval]]\nenv_id = "gsm8k"\n')
    with pytest.raises(ConfigError, match="same run_dir"):
        load_config_file(cfg, endpoints_path=write(tmp_path / "e.toml", ""))


def test_shipped_configs_load_and_point_at_the_data(monkeypatch, gsm8k_dir):
    monkeypatch.chdir(PROJECT_ROOT)  # relative paths in configs are relative to the cwd
    configs = load_config_file("configs/gsm8k.toml")
    assert len(configs) == 2
    for config in configs:
        assert (config.env_id, config.model) == ("gsm8k", "sim")
        assert config.num_examples * config.rollouts_per_example <= 256
        assert Path(config.env_args["data_path"]).resolve() == gsm8k_dir
    assert configs[0] != configs[1]
    aliases = load_endpoints("configs/endpoints.toml")
    assert aliases["sim"].model == "sim"
    assert any(e.base_url == "http://localhost:8000/v1" for e in aliases.values())
    assert any(e.base_url == "https://api.openai.com/v1" for e in aliases.values())


# --- endpoints registry ---------------------------------------------------------------------


def test_endpoint_alias_supplies_model_url_and_key(endpoints):
    registry = load_endpoints(endpoints)
    assert registry["qwen"] == Endpoint("Qwen/Qwen3-4B", "http://localhost:8000/v1", "VLLM_API_KEY")
    assert resolve_endpoint("qwen", None, None, registry) == (
        "Qwen/Qwen3-4B", "http://localhost:8000/v1", "VLLM_API_KEY")
    # explicit -b / -k win over the alias
    assert resolve_endpoint("qwen", "http://h:1/v1", "K", registry) == ("Qwen/Qwen3-4B", "http://h:1/v1", "K")
    # a name that is not an alias passes through untouched
    assert resolve_endpoint("gpt-x", None, None, registry) == ("gpt-x", None, None)


def test_endpoint_id_key_must_be_an_alias(tmp_path, endpoints):
    ok = write(tmp_path / "ok.toml", 'endpoint_id = "qwen"\n[[eval]]\nenv_id = "gsm8k"\n')
    assert load_config_file(ok, endpoints_path=endpoints)[0].model == "Qwen/Qwen3-4B"
    bad = write(tmp_path / "bad.toml", 'endpoint_id = "nope"\n[[eval]]\nenv_id = "gsm8k"\n')
    with pytest.raises(ConfigError, match="endpoint_id 'nope' is not in the endpoints registry"):
        load_config_file(bad, endpoints_path=endpoints)


@pytest.mark.parametrize(
    "text, needle",
    [
        ('[[endpoint]]\nendpoint_id = "a"\nmodel = "m"\nurll = "http://x"\n', "unknown key 'urll'"),
        ('[[endpoint]]\nendpoint_id = "a"\n', "missing key 'model'"),
        ('[[endpoint]]\nendpoint_id = "a"\nmodel = "m"\n[[endpoint]]\nendpoint_id = "a"\nmodel = "n"\n',
         "defined twice"),
        ('[[endpoint]]\nendpoint_id = "a"\nmodel = 3\n', "'model' must be a non-empty string"),
    ],
)
def test_bad_registry_entries_are_named(tmp_path, text, needle):
    with pytest.raises(ConfigError, match=needle.replace("(", r"\(")):
        load_endpoints(write(tmp_path / "e.toml", text))


def test_hub_default_name_is_a_valid_repo_id():
    from huggingface_hub.utils import validate_repo_id

    name = default_dataset_name("gsm8k", "Qwen/Qwen3-4B", "20250101-120000-abc123")
    assert name == "gsm8k-Qwen-Qwen3-4B-20250101-120000-abc123"
    validate_repo_id(name)
    validate_repo_id(default_dataset_name("--x..", "a" * 200, "--"))


# --- through the CLI ------------------------------------------------------------------------


def test_cli_runs_every_eval_of_a_config_file(run_cli, ray_address, gsm8k_dir, tmp_path):
    cfg = write(tmp_path / "two.toml", f"""
model = "sim"
num_examples = 8
rollouts_per_example = 4
max_concurrent = -1
env_args = {{ data_path = {json.dumps(str(gsm8k_dir))} }}

[[eval]]
env_id = "gsm8k"
run_dir = {json.dumps(str(tmp_path / "a"))}

[[eval]]
env_id = "gsm8k"
rollouts_per_example = 8
sim_args = {{ seed = 7 }}
run_dir = {json.dumps(str(tmp_path / "b"))}
""")
    # -n on the command line overrides the file's num_examples for every eval
    proc = run_cli(str(cfg), "--ray-address", ray_address, "-n", "6", timeout=300)
    assert proc.returncode == 0, proc.stderr
    for name, r in (("a", 4), ("b", 8)):
        meta = json.loads((tmp_path / name / "metadata.json").read_text())
        assert meta["num_examples"] == 6 and meta["rollouts_per_example"] == r
        assert meta["counts"]["sent"] == 6 * r
        assert meta["counts"]["succeeded"] == 6 * r and meta["counts"]["lost"] == 0
        rows = (tmp_path / name / "results.jsonl").read_text().splitlines()
        keys = {(json.loads(x)["example_id"], json.loads(x)["rollout_idx"]) for x in rows}
        assert keys == {(e, i) for e in range(6) for i in range(r)}
    assert json.loads((tmp_path / "b" / "metadata.json").read_text())["sim_args"] == {"seed": 7}
    assert proc.stdout.count("lost 0") == 2


@pytest.mark.parametrize(
    "text, needle",
    [
        ('model = "sim"\n[[eval]]\nenv_id = "gsm8k"\nnum_exampels = 3\n', "unknown key 'num_exampels'"),
        ('model = "sim"\n[[eval]]\nenv_id = "gsm8k"\nrollouts_per_example = "8"\n',
         "'rollouts_per_example' must be an integer"),
    ],
)
def test_cli_bad_config_exits_2_with_one_line(run_cli, tmp_path, text, needle):
    cfg = write(tmp_path / "bad.toml", text)
    proc = run_cli(str(cfg), timeout=60)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and str(cfg) in lines[0], proc.stderr


def test_cli_explicit_endpoints_path_must_exist(run_cli, tmp_path):
    missing = tmp_path / "nope.toml"
    for args in (["gsm8k", "-m", "sim"], [str(PROJECT_ROOT / "configs" / "gsm8k.toml")]):
        proc = run_cli(*args, "-e", str(missing), timeout=60)
        assert proc.returncode == 2
        assert proc.stderr.strip() == f"rayeval: error: -e/--endpoints-path: no such file: {missing}"


@pytest.mark.parametrize("flag", ["-H", "--push-to-hub", "--save-to-hf-hub"])
def test_push_to_hub_without_a_token_fails_before_the_run(run_cli, tmp_path, monkeypatch, flag):
    """No token -> exit 2 at once, before Ray or any rollout. Pushing for real needs the Hub."""
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    monkeypatch.delenv("HF_TOKEN_PATH", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-hf-home"))
    for args in (["gsm8k", "-m", "sim", "-o", str(tmp_path / "run")],
                 [str(PROJECT_ROOT / "configs" / "gsm8k.toml")]):
        proc = run_cli(*args, flag, timeout=60)
        assert proc.returncode == 2, proc.stderr
        assert "no Hugging Face token: run `hf auth login` or set HF_TOKEN" in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert not (tmp_path / "run").exists()


def test_invalid_hub_dataset_name_is_refused_before_the_run(run_cli, tmp_path):
    proc = run_cli("gsm8k", "-m", "sim", "-H", "-D", "bad--name", "-o", str(tmp_path / "run"),
                   env={"HF_TOKEN": "hf_not_a_real_token"}, timeout=60)
    assert proc.returncode == 2
    assert "-D/--hf-hub-dataset-name 'bad--name' is not a valid repo id" in proc.stderr
    assert not (tmp_path / "run").exists()
