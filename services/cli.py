"""``callstack``: run the chain, ask it something, and read its traces.

    callstack demo [--tls]              start every service, run one code prompt, print its trace, stop
    callstack up [--gatekeeper required] [--tls]
                                        start every service on its default port until Ctrl-C (--tls: the
                                        code session pools on https, with a local CA to trust)
    callstack ask "PROMPT"              submit through Core API as the portal does, print the answer
    callstack token                     print a bearer token for the Core API (the local issuer's)
    callstack trace TRACE_ID            a trace as a waterfall, critical path marked
    callstack latency                   where the time goes, over many traces
    callstack bench                     end-to-end latency, tracing overhead, throughput, per-hop cost
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import threading
from dataclasses import asdict
from pathlib import Path

from services.auth.client_tokens import BearerSource, bearer_source
from services.common.deployment_secrets import secrets_path
from services.common.settings import PortalSettings, Settings, deployed_name
from services.launcher import Chain, ChainError

DEMO_PROMPT = """Which squares add up to the total below?
```python
squares = [n * n for n in range(1, 11)]
print(squares)
print("total:", sum(squares))
```"""


def _data_dir(args: argparse.Namespace) -> Path:
    return Path(args.data_dir) if args.data_dir else Settings().data_dir


def cmd_up(args: argparse.Namespace) -> int:
    chain = Chain(_data_dir(args), gatekeeper=args.gatekeeper, tls=args.tls)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        chain.start()
    except ChainError as error:
        print(f"callstack up: {error}", file=sys.stderr)
        return 1
    chain.supervise(lambda line: print(f"callstack up: {line}", file=sys.stderr, flush=True))
    try:
        for package, service in chain.services.items():
            print(f"{deployed_name(package):18} {service.url}")
        print(f"\nportal: {chain.url('portal')}/   traces: {chain.data_dir / 'traces.jsonl'}")
        print(f"secrets: {secrets_path(chain.data_dir)} (0600; keys set in the environment are used instead)\n"
              f"Core API bearer token: callstack token --data-dir {chain.data_dir}")
        _print_tls(chain)
        print("Ctrl-C stops every service.", flush=True)
        stop.wait()
    finally:
        chain.stop()
    return 0


def _print_tls(chain: Chain) -> None:
    if chain.local_tls is not None:
        ca = chain.local_tls.ca_file
        print(f"https: the code session pools' certificate is signed by the local CA in {ca}\n"
              f"       trust it in a client, e.g. SSL_CERT_FILE={ca} or REQUESTS_CA_BUNDLE={ca}", flush=True)


async def _ask(core_url: str, instance_id: str, prompt: str, agent: str, traceparent: str | None,
               jaeger_url: str | None, timeout_s: float, bearer: BearerSource) -> dict:
    from services.portal.client import PortalClient

    async with PortalClient(core_url, instance_id, jaeger_url=jaeger_url, timeout_s=timeout_s,
                            bearer=bearer) as client:
        result = await client.ask(prompt, agent_name=agent, traceparent=traceparent)
    answer = asdict(result)
    answer.pop("operation", None)
    return answer


def ask(core_url: str, data_dir: Path, prompt: str, agent: str, traceparent: str | None = None,
        timeout_s: float = 300.0) -> dict:
    """Submit a prompt as the portal does; the portal's spans go where every service's go."""
    from services.common.service import start_telemetry
    from services.portal.errors import CoreApiError
    from telemetry.setup import shutdown_telemetry

    settings = Settings.from_env()
    bearer = bearer_source(data_dir)
    if bearer is None:
        raise CoreApiError(f"no token for the Core API: set FLLM_CORE_API_TOKEN, or use the data dir of "
                           f"`callstack up` (no local issuer key in {data_dir})", 401)
    os.environ.setdefault("FLLM_DATA_DIR", str(data_dir))
    start_telemetry("portal", settings.model_copy(update={"data_dir": data_dir}))
    try:
        return asyncio.run(_ask(core_url, settings.instance_id, prompt, agent, traceparent,
                                PortalSettings().jaeger_url, timeout_s, bearer))
    finally:
        shutdown_telemetry()


def _print_answer(answer: dict) -> None:
    print(answer["answer"].rstrip("\n"))
    print(f"\nstatus:     {answer['status']}" + (f" ({answer['status_message']})" if answer["status"] != "Completed"
                                                  else ""))
    print(f"operation:  {answer['operation_id']}")
    print(f"trace:      {answer['trace_id']}")
    if answer.get("jaeger_link"):
        print(f"jaeger:     {answer['jaeger_link']}")
    print(f"time:       {answer['total_ms']:.0f} ms ({answer['polls']} polls)")


def cmd_ask(args: argparse.Namespace) -> int:
    core_url = args.core_url or Settings.from_env().urls["core_api"]
    from services.portal.errors import CoreApiError, CoreUnavailableError

    try:
        answer = ask(core_url, _data_dir(args), args.prompt, args.agent, args.traceparent, args.timeout)
    except CoreUnavailableError as error:
        print(f"callstack ask: {error} (is `callstack up` running?)", file=sys.stderr)
        return 2
    except CoreApiError as error:
        if error.status_code != 401:
            raise
        print(f"callstack ask: {error}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(answer))
    else:
        _print_answer(answer)
    return 0 if answer["status"] == "Completed" else 1


def cmd_demo(args: argparse.Namespace) -> int:
    data_dir = _data_dir(args)
    print("Starting the chain (every service as its own process on 127.0.0.1)...", flush=True)
    try:
        chain = Chain(data_dir, gatekeeper=args.gatekeeper, ephemeral_ports=True, tls=args.tls).start()
    except ChainError as error:
        print(f"callstack demo: {error}", file=sys.stderr)
        return 1
    try:
        _print_tls(chain)
        print(f"Asking the code-interpreter agent:\n{DEMO_PROMPT}\n", flush=True)
        answer = ask(chain.url("core_api"), chain.data_dir, DEMO_PROMPT, "code-interpreter")
        _print_answer(answer)
    finally:
        chain.stop()
    from telemetry.analysis.cli import print_trace

    print("\nThe operation's trace (one trace across every hop):")
    print_trace(answer["trace_id"], str(chain.data_dir / "traces.jsonl"), sys.stdout)
    print(f"\nTraces of this run: {chain.data_dir / 'traces.jsonl'} (OTLP JSON lines; Jaeger's Upload tab loads it)")
    return 0 if answer["status"] == "Completed" else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="callstack", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name: str, handler, help_text: str) -> argparse.ArgumentParser:  # noqa: ANN001
        command = sub.add_parser(name, help=help_text, description=help_text)
        command.add_argument("--data-dir", help="where traces, logs and databases go (default .callstack)")
        command.set_defaults(func=handler)
        return command

    for name, handler, text in (("up", cmd_up, "start every service until Ctrl-C"),
                                ("demo", cmd_demo, "start the chain, run one code prompt, print its trace, stop")):
        command = add(name, handler, text)
        command.add_argument("--gatekeeper", choices=("bypass", "required"), default="bypass")
        command.add_argument("--tls", action="store_true",
                             help="the code session pools on https (a local CA and certificate in <data dir>/tls)")
    ask_command = add("ask", cmd_ask, "submit a prompt through Core API and print the answer")
    ask_command.add_argument("prompt")
    ask_command.add_argument("--agent", default="code-interpreter")
    ask_command.add_argument("--core-url", help="Core API base URL (default FLLM_CORE_API_URL or :63280)")
    ask_command.add_argument("--traceparent", help="join this W3C trace context instead of starting a trace")
    ask_command.add_argument("--timeout", type=float, default=300.0)
    ask_command.add_argument("--json", action="store_true", help="print the answer as JSON")
    from services.auth.token_cli import register as register_token
    from services.bench import register as register_bench
    from telemetry.analysis.cli import register

    register(sub)
    register_bench(sub)
    register_token(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if args.command == "bench":  # its own options are parsed when it runs (services/bench.py)
        args.bench_args = extra + args.bench_args
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
