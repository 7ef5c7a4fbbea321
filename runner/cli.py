"""The `rayeval` command: vf-eval's flags, plus Ray's; one clear line for every bad input.

    rayeval gsm8k -n 16 -r 128 -c -1 -m MODEL -b URL      run an eval
    rayeval sim-server --port 18000 -a '{...}'             serve the simulated model
    rayeval configs/gsm8k.toml [flags]                     every [[eval]] of a config file, at once

A positional argument ending in `.toml` is a config file (runner/config_file.py): flags given
explicitly on the command line override its values for every eval in it.

Exit codes: 0 done, 1 the run failed (unreachable endpoint, unreadable dataset, nothing
succeeded), 2 bad usage (flags, JSON, values out of range), 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, NoReturn

from .config import DEFAULT_API_KEY_VAR, PROVIDERS, EvalConfig, merge_sampling_args
from .config_file import DEFAULT_ENDPOINTS_PATH, DEFAULT_MODEL, registry_for, resolve_endpoint
from .errors import ConfigError, RayevalError


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error as one line, without the usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON ({exc.msg} at char {exc.pos}): {text!r}")
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="rayeval", description="Ray-distributed evals of LLM environments.")
    p.add_argument("env_id", help="environment id, e.g. gsm8k, or a config file (.toml)")
    p.add_argument("--env-args", "-a", type=_json_object, default={}, help="environment args as JSON")
    p.add_argument("--provider", "-p", choices=sorted(PROVIDERS), help="endpoint shorthand")
    p.add_argument("--model", "-m", default=DEFAULT_MODEL,
                   help="model or endpoint alias; 'sim' = simulator")
    p.add_argument(
        "--endpoints-path", "-e", default=None,
        help=f"endpoints registry of model aliases (default {DEFAULT_ENDPOINTS_PATH}, if present)",
    )
    p.add_argument("--save-to-hf-hub", "--push-to-hub", "-H", action="store_true",
                   help="push results.jsonl to the Hugging Face Hub as a dataset")
    p.add_argument("--hf-hub-dataset-name", "-D", default=None,
                   help="Hub dataset repo id (default <env>-<model>-<run_id>)")
    p.add_argument("--api-key-var", "-k", default=None, help="NAME of the API-key env variable")
    p.add_argument("--api-base-url", "-b", default=None, help="OpenAI-compatible base URL")
    p.add_argument("--num-examples", "-n", type=int, default=5, help="examples (-1 = all)")
    p.add_argument("--rollouts-per-example", "-r", type=int, default=3)
    p.add_argument("--max-concurrent", "-c", type=int, default=32, help="-1 = unlimited")
    p.add_argument("--max-tokens", "-t", type=int, default=None)
    p.add_argument("--temperature", "-T", type=float, default=None)
    p.add_argument("--sampling-args", "-S", type=_json_object, default=None)
    p.add_argument("--output-dir", "-o", dest="run_dir", default=None, help="write exactly here")
    p.add_argument("--verbose", "-v", action="store_true")
    p.add_argument("--save-results", "-s", action="store_true", help="accepted; results are always saved")
    p.add_argument("--disable-tui", "-d", action="store_true", help="no progress bar")
    p.add_argument(
        "--independent-scoring", "-i", action="store_true",
        help="accepted; every rollout is scored on its own already",
    )
    p.add_argument("--num-servers", type=int, default=2, help="env-server actors")
    p.add_argument("--server-cpus", type=float, default=0.25, help="CPUs reserved per env server")
    p.add_argument("--ray-address", default=None, help="Ray cluster (default: RAY_ADDRESS, else local)")
    p.add_argument("--sim-args", type=_json_object, default={}, help="simulator options as JSON (-m sim)")
    p.add_argument("--request-timeout", type=float, default=600.0, help="seconds per model call")
    p.add_argument("--max-retries", type=int, default=3, help="model-call retries (429/5xx/network)")
    p.add_argument(
        "--resume", "-R", nargs="?", const=True, default=None, metavar="RUN_DIR",
        help="resume a run: missing and errored rollouts only (no path = newest incomplete run)",
    )
    p.add_argument("--max-server-restarts", type=int, default=3, help="restarts per env server")
    p.add_argument("--server-hang-timeout", type=float, default=30.0,
                   help="seconds a live but silent env server may go unanswered before a restart")
    p.add_argument("--server-resources", type=_json_object, default={},
                   help='custom Ray resources per env server, e.g. {"envworker": 1}')
    p.add_argument("--ship-code", action=argparse.BooleanOptionalAction, default=None,
                   help="ship rayeval's code to cluster nodes (default: when joining a cluster)")
    return p


def build_sim_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="rayeval sim-server", description="Serve the simulated model (not a model).")
    p.add_argument("--env", default="gsm8k", help="environment whose questions it answers")
    p.add_argument("--env-args", "-a", type=_json_object, default={})
    p.add_argument("--sim-args", type=_json_object, default={})
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=18000)
    p.add_argument("--ready-file", default=None)
    return p


def config_from_args(args: argparse.Namespace) -> EvalConfig:
    model, base_url, key_var = resolve_endpoint(
        args.model, args.api_base_url, args.api_key_var, registry_for(args.endpoints_path)
    )
    if args.provider:
        provider_url, provider_key = PROVIDERS[args.provider]
        base_url = base_url or provider_url
        key_var = key_var or provider_key
    return EvalConfig(
        env_id=args.env_id,
        model=model,
        env_args=args.env_args,
        base_url=base_url,
        api_key_var=key_var or DEFAULT_API_KEY_VAR,
        num_examples=args.num_examples,
        rollouts_per_example=args.rollouts_per_example,
        max_concurrent=args.max_concurrent,
        sampling_args=merge_sampling_args(args.sampling_args, args.max_tokens, args.temperature),
        run_dir=args.run_dir,
        num_servers=args.num_servers,
        server_cpus=args.server_cpus,
        ray_address=args.ray_address,
        sim_args=args.sim_args,
        request_timeout=args.request_timeout,
        max_retries=args.max_retries,
        resume=args.resume,
        max_server_restarts=args.max_server_restarts,
        server_resources=args.server_resources,
        server_hang_timeout=args.server_hang_timeout,
        ship_code=args.ship_code,
        verbose=args.verbose,
        show_progress=not args.disable_tui and sys.stderr.isatty(),
        save_to_hf_hub=args.save_to_hf_hub,
        hf_hub_dataset_name=args.hf_hub_dataset_name,
    )


def _fail(code: int, message: str) -> int:
    print(f"rayeval: error: {message}", file=sys.stderr)
    return code


def _sim_main(argv: list[str]) -> int:
    from rayeval.envs import EnvError

    from .simulator import serve_forever

    args = build_sim_parser().parse_args(argv)
    try:
        serve_forever(args.env, args.env_args, args.sim_args, args.host, args.port, args.ready_file)
    except (EnvError, ValueError, OSError) as exc:
        return _fail(1, str(exc))
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["sim-server"]:
        return _sim_main(argv[1:])
    args = build_parser().parse_args(argv)
    if args.env_id.endswith(".toml"):
        return _config_file_main(argv, args)
    try:
        config = config_from_args(args)
    except ConfigError as exc:
        return _fail(2, str(exc))

    from rayeval.envs import EnvError

    from . import cluster
    from .api import evaluate
    from .summary import format_summary

    cluster.defer_local_shutdown()
    try:
        result = evaluate(config)
    except ConfigError as exc:
        return _fail(2, str(exc))
    except (RayevalError, EnvError) as exc:
        return _fail(1, str(exc))
    except KeyboardInterrupt:
        return _fail(130, "interrupted; rows written so far are in the run folder")
    print(format_summary(result.metadata))
    return cluster.exit_now(_exit_code(result.counts))


def _exit_code(counts: dict[str, int]) -> int:
    if counts["lost"] != 0:
        return _fail(1, f"{counts['lost']} rollouts unaccounted for")
    if counts["sent"] and counts["succeeded"] == 0:
        return _fail(1, "every rollout failed; see the error records in results.jsonl")
    return 0


def _explicit_flags(argv: list[str]) -> dict[str, Any]:
    """Only the options the user typed (argparse defaults suppressed), as config-file keys."""
    from .config_file import allowed_keys

    parser = build_parser()
    for action in parser._actions:
        action.default = argparse.SUPPRESS
    given = vars(parser.parse_args(argv))
    return {k: v for k, v in given.items() if k in allowed_keys() and k != "env_id"}


def _config_file_main(argv: list[str], args: argparse.Namespace) -> int:
    """Run every [[eval]] of a config file concurrently on one Ray; exit 1 if any failed."""
    import asyncio

    from rayeval.envs import EnvError

    from . import cluster
    from .api import aevaluate
    from .config_file import load_config_file
    from .summary import format_summary

    try:
        configs = load_config_file(
            args.env_id, endpoints_path=args.endpoints_path, overrides=_explicit_flags(argv)
        )
        if len({c.ray_address for c in configs}) > 1:
            raise ConfigError(f"{args.env_id}: every eval must use the same ray_address")
        if len(configs) > 1 and any(c.hf_hub_dataset_name for c in configs):
            raise ConfigError("-D/--hf-hub-dataset-name names one dataset: use it with one eval")
        if any(c.save_to_hf_hub for c in configs):  # before Ray starts, not after the runs
            from .hub import check_hub_ready

            check_hub_ready(configs[0].hf_hub_dataset_name)
    except ConfigError as exc:
        return _fail(2, str(exc))
    single = len(configs) == 1  # one bar is readable; several interleaved bars are not
    configs = [c.replace(show_progress=single and c.show_progress and sys.stderr.isatty())
               for c in configs]

    async def run_all() -> list[Any]:
        return await asyncio.gather(*(aevaluate(c) for c in configs), return_exceptions=True)

    started_ray = False
    try:
        started_ray = cluster.connect(configs[0])  # one Ray for all: each run then joins it
        outcomes = asyncio.run(run_all())
    except KeyboardInterrupt:
        return _fail(130, "interrupted; rows written so far are in the run folders")
    except Exception as exc:  # ray.init's own errors: one line, not a traceback
        return _fail(1, f"cannot start or join Ray: {type(exc).__name__}: {exc}")
    finally:
        if started_ray:
            cluster.shutdown()
    code = 0
    for i, (config, outcome) in enumerate(zip(configs, outcomes), start=1):
        print(f"== [[eval]] #{i}: {config.env_id} / {config.model}")
        if isinstance(outcome, ConfigError):
            code = max(code, _fail(2, f"[[eval]] #{i}: {outcome}"))
        elif isinstance(outcome, (RayevalError, EnvError)):
            code = max(code, _fail(1, f"[[eval]] #{i}: {outcome}"))
        elif isinstance(outcome, BaseException):
            code = max(code, _fail(1, f"[[eval]] #{i}: {type(outcome).__name__}: {outcome}"))
        else:
            print(format_summary(outcome.metadata))
            code = max(code, _exit_code(outcome.counts))
    return code


if __name__ == "__main__":
    sys.exit(main())
