"""The ``aragog`` command line: simulate, sweep, and time the scheduling core."""

from __future__ import annotations

import json
import logging
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.logging import RichHandler
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

from aragog.errors import AragogError

logger = logging.getLogger(__name__)

DEFAULT_RATE_RPS = 6.0
DEFAULT_DURATION_S = 300.0
DEFAULT_SWEEP_REQUESTS = 600

console = Console()
err_console = Console(stderr=True)


def _experiment_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Options that simulate and sweep share."""
    options = [
        click.option(
            "--workflow",
            default="self-refine",
            show_default=True,
            help="Shipped workflow (self-refine, text-to-sql, voting, "
            "task-decomposition) or a workflow YAML path.",
        ),
        click.option(
            "--family",
            default="qwen2.5",
            show_default=True,
            help="Shipped model family (qwen2.5, llama3) or a family YAML path.",
        ),
        click.option(
            "--trace",
            default="azure-conv",
            show_default=True,
            help="Trace file (Azure CSV, BurstGPT CSV, Mooncake JSONL) or azure-conv "
            "for the shipped Azure conversation trace.",
        ),
        click.option(
            "--requests",
            "num_requests",
            type=int,
            default=None,
            help="Number of requests per run (overrides --duration).",
        ),
        click.option(
            "--arrivals",
            type=click.Choice(["trace", "poisson"]),
            default="trace",
            show_default=True,
            help="Keep the trace's burstiness (rescaled) or draw Poisson arrivals.",
        ),
        click.option(
            "--policy",
            type=click.Choice(["all", "aragog", "per-input", "per-workflow"]),
            default="all",
            show_default=True,
            help="Binding policy to simulate.",
        ),
        click.option(
            "--beam-width",
            type=int,
            default=4,
            show_default=True,
            help="Beam width B of the scheduler (1 is greedy).",
        ),
        click.option(
            "--profile",
            type=click.Path(dir_okay=False),
            default=None,
            help="Accuracy profile (.npz); by default one is generated with --seed.",
        ),
        click.option(
            "--router",
            default="oracle",
            show_default=True,
            help="Where viable sets come from: oracle (the profile's labels), learned "
            "(routers trained on the profile's features, each input routed by one that "
            "never saw it), or a router file from 'aragog router train'.",
        ),
        click.option(
            "--throughput-profile",
            type=click.Path(dir_okay=False),
            default=None,
            help="Measured throughput curves (scripts/gpu_check.sh writes them): "
            "engines they cover run at the measured speed instead of the latency "
            "model's.",
        ),
        click.option("--seed", type=int, default=0, show_default=True, help="Seed."),
        click.option(
            "--json",
            "json_path",
            type=click.Path(dir_okay=False, writable=True),
            default=None,
            help="Also write the results as JSON to this path.",
        ),
        click.option(
            "--log-level",
            type=click.Choice(["debug", "info", "warning", "error"]),
            default="warning",
            show_default=True,
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="aragog")
def cli() -> None:
    """aragog: just-in-time model routing and scheduling for agentic workflows."""


def _register_router_commands() -> None:
    # The router group imports no heavy library until one of its commands runs.
    from aragog.routing.cli import router as router_group

    cli.add_command(router_group)


_register_router_commands()


@cli.command()
@_experiment_options
@click.option(
    "--rate",
    type=float,
    default=DEFAULT_RATE_RPS,
    show_default=True,
    help="Mean arrival rate, workflow requests/s.",
)
@click.option(
    "--duration",
    type=float,
    default=DEFAULT_DURATION_S,
    show_default=True,
    help="Seconds of arrivals to simulate.",
)
def simulate(rate: float, duration: float, **opts: Any) -> None:
    """Replay a trace through a workflow on a simulated node, per policy."""
    from aragog.sim.experiment import Experiment, summarize
    from aragog.sim.report import simulate_table

    # Prepare the shared inputs once, then run each policy on them.
    spec = _spec(opts, duration_s=duration)
    experiment = Experiment(spec)
    records = {}
    with _progress() as progress:
        task = progress.add_task("simulating", total=len(spec.policies))
        for policy in spec.policies:
            progress.update(task, description=f"{policy} @ {rate:g} req/s")
            records[policy] = summarize(experiment.run(policy, rate), rate)
            progress.advance(task)

    # Print the table and write the JSON.
    title = _title(experiment, f"{rate:g} req/s")
    console.print(simulate_table(title, records))
    _write_json(opts["json_path"], experiment, {"rate_rps": rate}, records)


@cli.command()
@_experiment_options
@click.option(
    "--rate",
    "rates",
    type=float,
    multiple=True,
    help="A rate of the ladder (repeat it); by default 10 rates from light load to "
    "overload, derived from the node's capacity.",
)
@click.option(
    "--duration",
    type=float,
    default=None,
    help=f"Seconds of arrivals per run (default: {DEFAULT_SWEEP_REQUESTS} requests).",
)
@click.option(
    "--plot",
    "plot_path",
    type=click.Path(dir_okay=False, writable=True),
    default="aragog-sweep.png",
    show_default=True,
    help="Where to draw latency versus rate.",
)
@click.option(
    "--workers", type=int, default=None, help="Processes to use (default: all cores)."
)
def sweep(
    rates: tuple[float, ...],
    duration: float | None,
    plot_path: str,
    workers: int | None,
    **opts: Any,
) -> None:
    """Sweep the request rate and find each policy's maximum throughput."""
    from aragog.sim.experiment import Experiment
    from aragog.sim.report import plot_latency_vs_rate, sweep_table
    from aragog.sim.sweep import (
        DEFAULT_NUM_REFINEMENTS,
        default_rates,
        highest_common_rate,
        max_throughput,
        run_sweep,
    )

    # The rate ladder, unless given.
    if duration is None and opts["num_requests"] is None:
        opts["num_requests"] = DEFAULT_SWEEP_REQUESTS
    spec = _spec(opts, duration_s=duration)
    experiment = Experiment(spec)
    ladder = sorted(rates) if rates else default_rates(experiment)
    if any(r <= 0 or not math.isfinite(r) for r in ladder):
        raise AragogError(f"--rate: rates must be positive, found {list(ladder)}")

    # Every (policy, rate) run, with a progress bar.
    with _progress() as progress:
        num_runs = (len(ladder) + DEFAULT_NUM_REFINEMENTS) * len(spec.policies)
        task = progress.add_task("simulating", total=num_runs)
        grid = run_sweep(
            spec,
            ladder,
            workers,
            on_done=lambda p, r: progress.update(
                task, advance=1, description=f"{p} @ {r:g} req/s"
            ),
        )
        progress.update(task, completed=num_runs)

    # Summaries per policy, at the highest rate every policy kept up with.
    common = highest_common_rate(grid, ladder)
    summaries = {}
    for policy, records in grid.items():
        at_common = next(r for r in records if r["offered_rate_rps"] == common)
        summaries[policy] = {
            **at_common,
            "rates": records,
            "max_throughput_rps": max_throughput(records),
        }
    title = _title(experiment, "rate sweep")
    console.print(sweep_table(title, summaries))
    plot_latency_vs_rate(Path(plot_path), title, grid)
    console.print(f"latency versus rate: {plot_path}")
    _write_json(opts["json_path"], experiment, {"common_rate_rps": common}, summaries)


@cli.command("bench-core")
@click.option(
    "--queue",
    "num_items",
    type=click.IntRange(min=1),
    default=64,
    show_default=True,
    help="Ready (request, stage) items in the round.",
)
@click.option(
    "--beam",
    "beam_width",
    type=click.IntRange(min=1),
    default=4,
    show_default=True,
    help="Beam width B.",
)
@click.option(
    "--models",
    "num_models",
    type=click.IntRange(1, 6),
    default=3,
    show_default=True,
    help="Models (one engine each, plus a replica of the smallest).",
)
@click.option(
    "--json",
    "json_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Also write the figures as JSON to this path.",
)
def bench_core_command(
    num_items: int, beam_width: int, num_models: int, json_path: str | None
) -> None:
    """Time one scheduling round in the C++ core and in the Python reference."""
    from aragog.scheduling.bench import bench_core

    figures = bench_core(num_items, beam_width, num_models)
    click.echo(
        f"one round, {num_items} items, B={beam_width}, {num_models} models: "
        f"C++ {figures['cxx_us_median']:.2f} us, Python reference "
        f"{figures['python_us_median']:.1f} us (medians), "
        f"speedup {figures['speedup']:.0f}x"
    )
    if json_path:
        Path(json_path).write_text(json.dumps(figures, indent=2) + "\n")


@cli.command("serve")
@click.option(
    "--config",
    "config_path",
    required=True,
    type=click.Path(dir_okay=False),
    help="Deployment file (YAML): workflows, model family, engines, router.",
)
@click.option(
    "--host", default="127.0.0.1", show_default=True, help="Address to listen on."
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8000,
    show_default=True,
    help="Port to listen on.",
)
@click.option(
    "--router",
    "routers",
    multiple=True,
    type=click.Path(dir_okay=False),
    help="A learned router file (`aragog router train`) that routes its workflow's "
    "runs in place of the oracle; repeat for more workflows.",
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="info",
    show_default=True,
)
def serve_command(
    config_path: str, host: str, port: int, routers: tuple[str, ...], log_level: str
) -> None:
    """Serve a deployment's workflows over HTTP until SIGINT or SIGTERM."""
    from aragog.server.serve import serve

    _setup_logging(log_level)
    serve(config_path, host, port, routers)


@cli.command("bench")
@click.option(
    "--url",
    default="http://127.0.0.1:8000",
    show_default=True,
    help="Base URL of a running `aragog serve`.",
)
@click.option(
    "--workflow",
    default="self-refine",
    show_default=True,
    help="Workflow to run: a shipped name or a workflow YAML path (the server must "
    "serve a workflow of that name).",
)
@click.option(
    "--trace",
    default="azure-conv",
    show_default=True,
    help="Trace file (Azure CSV, BurstGPT CSV, Mooncake JSONL) or azure-conv.",
)
@click.option(
    "--rate",
    type=float,
    default=DEFAULT_RATE_RPS,
    show_default=True,
    help="Mean arrival rate, workflow requests/s.",
)
@click.option(
    "--duration",
    type=float,
    default=DEFAULT_DURATION_S,
    show_default=True,
    help="Seconds of arrivals to send.",
)
@click.option(
    "--requests",
    "num_requests",
    type=int,
    default=None,
    help="Number of requests (overrides --duration).",
)
@click.option(
    "--arrivals",
    type=click.Choice(["trace", "poisson"]),
    default="trace",
    show_default=True,
    help="Keep the trace's burstiness (rescaled) or draw Poisson arrivals.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed.")
@click.option(
    "--timeout",
    "timeout_s",
    type=float,
    default=600.0,
    show_default=True,
    help="Seconds one run may take before it counts as not completed.",
)
@click.option(
    "--max-context-tokens",
    type=int,
    default=None,
    help="Cap each request's own text (short-context engines); the run then no "
    "longer matches `aragog simulate`.",
)
@click.option(
    "--max-output-tokens",
    type=int,
    default=None,
    help="Cap each stage's output, likewise.",
)
@click.option(
    "--json",
    "json_path",
    type=click.Path(dir_okay=False, writable=True),
    default=None,
    help="Also write the results as JSON (the schema of `aragog simulate --json`).",
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="warning",
    show_default=True,
)
def bench_command(
    url: str,
    workflow: str,
    trace: str,
    rate: float,
    duration: float,
    num_requests: int | None,
    arrivals: str,
    seed: int,
    timeout_s: float,
    max_context_tokens: int | None,
    max_output_tokens: int | None,
    json_path: str | None,
    log_level: str,
) -> None:
    """Replay a trace against a running deployment, as `aragog simulate` would."""
    import asyncio

    from aragog.server.bench import BenchSpec, run_bench
    from aragog.sim.report import simulate_table

    # Send the requests, then report them like a simulated run.
    _setup_logging(log_level)
    spec = BenchSpec(
        url=url,
        workflow=workflow,
        trace=trace,
        rate_rps=rate,
        num_requests=num_requests,
        duration_s=duration,
        arrivals=arrivals,
        seed=seed,
        timeout_s=timeout_s,
        max_context_tokens=max_context_tokens,
        max_output_tokens=max_output_tokens,
    )
    header, record = asyncio.run(run_bench(spec))
    title = f"{header['workflow']} on {header['family']} at {url}, {rate:g} req/s"
    console.print(simulate_table(title, {"aragog": record}))
    if header["errors"]:
        failed = ", ".join(f"{k}: {v}" for k, v in header["errors"].items())
        err_console.print(f"runs not completed, by cause: {failed}")
    if json_path:
        document = {**header, "policies": {"aragog": record}}
        text = json.dumps(_finite(document), indent=2, allow_nan=False)
        Path(json_path).write_text(text + "\n")


def main() -> None:
    """Entry point: turn every aragog error into one line and a non-zero exit."""
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        err_console.print("aborted")
        sys.exit(130)
    except click.exceptions.NoArgsIsHelpError as exc:
        click.echo(exc.format_message())
        sys.exit(0)
    except click.UsageError as exc:
        command = exc.ctx.command_path if exc.ctx else "aragog"
        click.echo(f"error: {exc.format_message()} (see {command} --help)", err=True)
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        click.echo(f"error: {exc.format_message()}", err=True)
        sys.exit(exc.exit_code)
    except (AragogError, OSError) as exc:
        # One line, never wrapped: scripts grep it and users read it whole.
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)


def _progress() -> Progress:
    """A progress bar on stderr that disappears when done (stdout stays clean)."""
    return Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
    )


def _spec(opts: dict[str, Any], duration_s: float | None) -> Any:
    from aragog.sim.experiment import ExperimentSpec

    _setup_logging(opts["log_level"])
    policy = opts["policy"]
    policies = ("aragog", "per-input", "per-workflow") if policy == "all" else (policy,)
    return ExperimentSpec(
        workflow=opts["workflow"],
        family=opts["family"],
        trace=opts["trace"],
        num_requests=opts["num_requests"],
        duration_s=duration_s,
        arrivals=opts["arrivals"],
        seed=opts["seed"],
        beam_width=opts["beam_width"],
        profile=opts["profile"],
        router=opts["router"],
        throughput_profile=opts["throughput_profile"],
        policies=policies,
    )


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(name)s: %(message)s",
        handlers=[RichHandler(console=err_console, show_path=False)],
    )


def _title(experiment: Any, what: str) -> str:
    hardware = f"{experiment.family.num_gpus}x {experiment.family.gpu.name}"
    if experiment.spec.throughput_profile:
        hardware += f", curves of {Path(experiment.spec.throughput_profile).name}"
    return (
        f"{experiment.space.workflow.name} on {experiment.family.name} "
        f"({hardware}), trace {experiment.trace.name}, {what}"
    )


def _write_json(
    path: str | None, experiment: Any, extra: dict[str, Any], policies: dict
) -> None:
    if not path:
        return
    document = {
        "workflow": experiment.space.workflow.name,
        "family": experiment.family.name,
        "trace": experiment.trace.name,
        "seed": experiment.spec.seed,
        "beam_width": experiment.spec.beam_width,
        "router": experiment.spec.router,
        "throughput_profile": experiment.spec.throughput_profile,
        **extra,
        "policies": policies,
    }
    text = json.dumps(_finite(document), indent=2, allow_nan=False)
    Path(path).write_text(text + "\n")
    logger.info("wrote %s", path)


def _finite(value: Any) -> Any:
    """NaN (no completed request to measure) becomes JSON null, not invalid JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


if __name__ == "__main__":
    main()
