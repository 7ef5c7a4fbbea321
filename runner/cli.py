"""The `rayeval` command: vf-eval's flags, plus Ray's; one clear line for every bad input.

    rayeval gsm8k -n 16 -r 128 -c -1 -m MODEL -b URL      run an eval
    rayeval sim-server --port 18000 -a '{...}'             serve the simulated model

Exit codes: 0 done, 1 the run failed (unreachable endpoint, unreadable dataset, nothing
succeeded), 2 bad usage (flags, JSON, values out of range), 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, NoReturn

from .config import DEFAULT_API_KEY_VAR, PROVIDERS, EvalConfig, merge_sampling_args
from .errors import ConfigError, RayevalError

DEFAULT_MODEL = "gpt-4.1-mini"


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
    p.add_argument("env_id", help="environment id, e.g. gsm8k")
    p.add_argument("--env-args", "-a", type=_json_object, default={}, help="environment args as JSON")
    p.add_argument("--provider", "-p", choices=sorted(PROVIDERS), help="endpoint shorthand")
    p.add_argument("--model", "-m", default=DEFAULT_MODEL, help="model name; 'sim' = simulator")
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
    base_url, key_var = args.api_base_url, args.api_key_var
    if args.provider:
        provider_url, provider_key = PROVIDERS[args.provider]
        base_url = base_url or provider_url
        key_var = key_var or provider_key
    return EvalConfig(
        env_id=args.env_id,
        model=args.model,
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
        verbose=args.verbose,
        show_progress=not args.disable_tui and sys.stderr.isatty(),
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
    try:
        config = config_from_args(args)
    except ConfigError as exc:
        return _fail(2, str(exc))

    from rayeval.envs import EnvError

    from .api import evaluate
    from .summary import format_summary

    try:
        result = evaluate(config)
    except ConfigError as exc:
        return _fail(2, str(exc))
    except (RayevalError, EnvError) as exc:
        return _fail(1, str(exc))
    except KeyboardInterrupt:
        return _fail(130, "interrupted; rows written so far are in the run folder")
    print(format_summary(result.metadata))
    counts = result.counts
    if counts["lost"] != 0:
        return _fail(1, f"{counts['lost']} rollouts unaccounted for")
    if counts["sent"] and counts["succeeded"] == 0:
        return _fail(1, "every rollout failed; see the error records in results.jsonl")
    return 0


if __name__ == "__main__":
    sys.exit(main())
