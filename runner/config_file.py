"""TOML eval configs and the endpoints registry, in vf-eval's shapes, turned into `EvalConfig`s.

An eval config file (`rayeval configs/gsm8k.toml`):

    model = "sim"                    # top-level keys: defaults shared by every [[eval]]
    rollouts_per_example = 4
    env_args = { data_path = "../shared/data/gsm8k" }

    [[eval]]
    env_id = "gsm8k"
    num_examples = 8

    [[eval]]
    env_id = "gsm8k"
    env_args = { split = "train" }   # dicts merge key by key with the defaults

Keys are `EvalConfig` field names, plus vf-eval's spellings where they differ
(`api_base_url`, `max_tokens`, `temperature`, `provider`, `output_dir`, `endpoint_id`, ...).
Layers, later wins: EvalConfig defaults < top level < one `[[eval]]` < explicit CLI flags.
Within a layer, `sampling_args` wins over that layer's `max_tokens`/`temperature` (vf-eval's
-S rule). A file with no `[[eval]]` but a top-level `env_id` is one eval.

Relative paths inside a config (env_args.data_path, run_dir, output_root) are resolved against
the current working directory, like the same values given as flags, not against the file: one
rule for flags and files, and a file can be moved into configs/ without editing it.

The endpoints registry (`-e`, default ./configs/endpoints.toml) is vf-eval's:

    [[endpoint]]
    endpoint_id = "qwen3-4b"         # the alias given as -m
    model = "Qwen/Qwen3-4B"          # the model name sent to the endpoint
    url = "http://localhost:8000/v1"
    key = "VLLM_API_KEY"             # the NAME of the variable holding the key

When `-m` (or `model =` in a config) names an alias, the alias supplies model, base URL and
key variable; an explicit `-b`/`-k` (`base_url`/`api_key_var`) still wins.

Every mistake is a `ConfigError` naming the file, the table and the key, so the CLI can print
one line: `configs/x.toml: [[eval]] #2: unknown key 'num_exampels' (did you mean 'num_examples'?)`.
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the same parser, as a package
    import tomli as tomllib

from .config import DEFAULT_API_KEY_VAR, PROVIDERS, EvalConfig, merge_sampling_args
from .errors import ConfigError

DEFAULT_ENDPOINTS_PATH = "./configs/endpoints.toml"
DEFAULT_MODEL = "gpt-4.1-mini"
"""vf-eval's default model, used when neither the file nor the command line names one."""

# vf-eval's spellings -> how they are applied; every other key must be an EvalConfig field.
_EXTRA_KEYS: dict[str, type | tuple[type, ...]] = {
    "api_base_url": str,          # -> base_url
    "output_dir": str,            # -> run_dir
    "max_tokens": int,            # -> sampling_args
    "temperature": (int, float),  # -> sampling_args
    "provider": str,              # -> base_url / api_key_var defaults
    "endpoint_id": str,           # -> model, which must then be a registry alias
    "disable_tui": bool,          # -> show_progress = not disable_tui
    "save_results": bool,         # accepted: results are always saved
    "independent_scoring": bool,  # accepted: every rollout is scored on its own
}
_RENAMES = {"api_base_url": "base_url", "output_dir": "run_dir"}
_MERGED_DICTS = ("env_args", "sampling_args", "sim_args")


@dataclass(frozen=True)
class Endpoint:
    """One alias of the endpoints registry."""

    model: str
    base_url: str | None
    api_key_var: str | None


def load_endpoints(path: str | Path) -> dict[str, Endpoint]:
    """Read vf-eval's `[[endpoint]]` registry; a missing file is an error (callers decide)."""
    where = str(path)
    data = _read_toml(path)
    unknown = set(data) - {"endpoint"}
    if unknown:
        first = sorted(unknown)[0]
        raise ConfigError(f"{where}: unknown top-level key {first!r} (expected [[endpoint]] tables)")
    tables = data.get("endpoint", [])
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise ConfigError(f"{where}: 'endpoint' must be [[endpoint]] tables")
    fields = {"endpoint_id": str, "model": str, "url": str, "key": str}
    endpoints: dict[str, Endpoint] = {}
    for i, table in enumerate(tables, start=1):
        loc = f"{where}: [[endpoint]] #{i}"
        for key, value in table.items():
            if key not in fields:
                raise ConfigError(f"{loc}: unknown key {key!r}{_suggest(key, fields)}")
            if not isinstance(value, str) or not value:
                raise ConfigError(f"{loc}: {key!r} must be a non-empty string, got {value!r}")
        for key in ("endpoint_id", "model"):
            if key not in table:
                raise ConfigError(f"{loc}: missing key {key!r}")
        alias = table["endpoint_id"]
        if alias in endpoints:
            raise ConfigError(f"{loc}: endpoint_id {alias!r} is defined twice")
        endpoints[alias] = Endpoint(table["model"], table.get("url"), table.get("key"))
    return endpoints


def registry_for(endpoints_path: str | Path | None) -> dict[str, Endpoint]:
    """The registry to use: an explicit path must exist; the default path may be absent."""
    if endpoints_path is None:
        default = Path(DEFAULT_ENDPOINTS_PATH)
        return load_endpoints(default) if default.is_file() else {}
    if not Path(endpoints_path).is_file():
        raise ConfigError(f"-e/--endpoints-path: no such file: {endpoints_path}")
    return load_endpoints(endpoints_path)


def resolve_endpoint(
    model: str, base_url: str | None, api_key_var: str | None, endpoints: dict[str, Endpoint]
) -> tuple[str, str | None, str | None]:
    """(model, base_url, api_key_var) after alias lookup; explicit base_url/api_key_var win."""
    endpoint = endpoints.get(model)
    if endpoint is None:
        return model, base_url, api_key_var
    return endpoint.model, base_url or endpoint.base_url, api_key_var or endpoint.api_key_var


def load_config_file(
    path: str | Path,
    *,
    endpoints_path: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
) -> list[EvalConfig]:
    """One `EvalConfig` per `[[eval]]` table. `overrides` (explicit CLI flags) win over the file."""
    where = str(path)
    data = _read_toml(path)
    endpoints = registry_for(endpoints_path)
    evals = data.pop("eval", None)
    defaults = _checked(data, f"{where}: top level")
    if evals is None:
        if "env_id" not in defaults:
            raise ConfigError(f"{where}: no [[eval]] table and no top-level env_id")
        evals = [{}]
    if not isinstance(evals, list) or not all(isinstance(t, dict) for t in evals):
        raise ConfigError(f"{where}: 'eval' must be [[eval]] tables (double brackets), one per eval")
    if not evals:
        raise ConfigError(f"{where}: no [[eval]] tables")
    cli = _checked(dict(overrides or {}), "command line")
    configs = []
    for i, table in enumerate(evals, start=1):
        loc = f"{where}: [[eval]] #{i}"
        merged = _merge([defaults, _checked(table, loc), cli])
        try:
            configs.append(_build(merged, endpoints))
        except ConfigError as exc:
            raise ConfigError(f"{loc}: {exc}") from None
    run_dirs = [c.run_dir for c in configs if c.run_dir is not None]
    if len(run_dirs) != len(set(run_dirs)):
        raise ConfigError(
            f"{where}: two evals write to the same run_dir (-o/--output-dir, run_dir); "
            "give each its own"
        )
    return configs


def allowed_keys() -> set[str]:
    """Every key a config table may hold (the CLI passes its explicit flags through these)."""
    return set(_field_types()) | set(_EXTRA_KEYS)


def _read_toml(path: str | Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None


def _field_types() -> dict[str, Any]:
    hints = typing.get_type_hints(EvalConfig)
    return {f.name: hints[f.name] for f in dataclasses.fields(EvalConfig)}


def _checked(table: dict[str, Any], loc: str) -> dict[str, Any]:
    """Refuse unknown keys and wrong types, naming both; fold max_tokens/temperature in."""
    types = _field_types()
    allowed = set(types) | set(_EXTRA_KEYS)
    for key, value in table.items():
        if key not in allowed:
            raise ConfigError(f"{loc}: unknown key {key!r}{_suggest(key, allowed)}")
        expected = _EXTRA_KEYS.get(key) or types[key]
        if not _is_instance(value, expected):
            raise ConfigError(
                f"{loc}: {key!r} must be {_type_name(expected)}, got {type(value).__name__} {value!r}"
            )
    if "model" in table and "endpoint_id" in table:
        raise ConfigError(f"{loc}: give 'model' or 'endpoint_id', not both")
    out = {_RENAMES.get(k, k): v for k, v in table.items()}
    if "max_tokens" in out or "temperature" in out:
        out["sampling_args"] = merge_sampling_args(
            out.get("sampling_args"), out.pop("max_tokens", None), out.pop("temperature", None)
        )
    for key in ("save_results", "independent_scoring"):
        out.pop(key, None)
    if "disable_tui" in out:
        out["show_progress"] = not out.pop("disable_tui")
    return out


def _merge(layers: list[dict[str, Any]]) -> dict[str, Any]:
    """Later layers win; the dict-valued options merge key by key."""
    merged: dict[str, Any] = {}
    for layer in layers:
        for key, value in layer.items():
            if key in ("model", "endpoint_id"):  # two spellings of one choice: the later wins
                merged.pop("endpoint_id" if key == "model" else "model", None)
            if key in _MERGED_DICTS and isinstance(merged.get(key), dict):
                merged[key] = {**merged[key], **value}
            else:
                merged[key] = value
    return merged


def _build(merged: dict[str, Any], endpoints: dict[str, Endpoint]) -> EvalConfig:
    if "env_id" not in merged:
        raise ConfigError("missing key 'env_id'")
    alias = merged.pop("endpoint_id", None)
    if alias is not None:
        if alias not in endpoints:
            raise ConfigError(f"endpoint_id {alias!r} is not in the endpoints registry")
        merged["model"] = alias
    provider = merged.pop("provider", None)
    model, base_url, key_var = resolve_endpoint(
        merged.get("model", DEFAULT_MODEL), merged.get("base_url"), merged.get("api_key_var"), endpoints
    )
    if provider is not None:
        if provider not in PROVIDERS:
            raise ConfigError(f"'provider' must be one of {sorted(PROVIDERS)}, got {provider!r}")
        base_url = base_url or PROVIDERS[provider][0]
        key_var = key_var or PROVIDERS[provider][1]
    merged.update(model=model, base_url=base_url, api_key_var=key_var or DEFAULT_API_KEY_VAR)
    return EvalConfig(**merged)


def _is_instance(value: Any, expected: Any) -> bool:
    """isinstance for the annotations EvalConfig uses (int, float, str, bool, dict, X | None)."""
    if isinstance(expected, tuple):
        return any(_is_instance(value, t) for t in expected)
    args = typing.get_args(expected)
    if args and typing.get_origin(expected) is not dict:  # a union such as `str | None`
        return any(_is_instance(value, t) for t in args if t is not type(None))
    origin = typing.get_origin(expected) or expected
    if origin is bool:
        return isinstance(value, bool)
    if isinstance(value, bool):  # TOML true is not a number
        return False
    if origin is float:
        return isinstance(value, (int, float))
    return isinstance(value, origin)


def _type_name(expected: Any) -> str:
    if isinstance(expected, tuple):
        return "a number"
    args = [t for t in typing.get_args(expected) if t is not type(None)]
    if args and typing.get_origin(expected) is not dict:
        return " or ".join(_type_name(t) for t in args)
    origin = typing.get_origin(expected) or expected
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false",
            dict: "a table"}.get(origin, getattr(origin, "__name__", str(origin)))


def _suggest(key: str, allowed: Any) -> str:
    close = difflib.get_close_matches(key, sorted(allowed), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
