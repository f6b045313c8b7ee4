"""Terminal tables and JSON documents for ``router train`` and ``router eval``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich import box
from rich.table import Table

from aragog.routing.calibrate import CurvePoint
from aragog.routing.quality import RoutingQuality

# Short headers: the table must fit the 80 columns a pipe gets. "kept" is accuracy
# kept, "cheap" the cheap share, "flex." the flexibility, "evals" the classifier
# evaluations per request out of the configurations.
_COLUMNS = (
    "router",
    "tau",
    "kept",
    "cheap",
    "flex.",
    "evals",
    "rand. cheap",
    "x rand.",
)


def setting_table(
    title: str, point: CurvePoint, oracle: RoutingQuality | None = None
) -> Table:
    """The learned router at one setting, the random router at the same accuracy
    (its share opened is its cheap share) and, when given, the oracle."""
    table = _table(title)
    q = point.quality
    table.add_row(*_row("learned", point))
    table.add_row(
        "random",
        "",
        f"{q.accuracy_kept:.2%}",
        f"{q.random_cheap_share:.1%}",
        f"{q.random_flexibility:.1%}",
        "",
        "",
        "",
    )
    if oracle is not None:
        table.add_row(
            "oracle",
            "",
            f"{oracle.accuracy_kept:.2%}",
            f"{oracle.cheap_share:.1%}",
            f"{oracle.flexibility:.1%}",
            "",
            "",
            "",
        )
    return table


def curve_table(title: str, curve: Sequence[CurvePoint]) -> Table:
    """One row per setting of the knob, strictest first."""
    table = _table(title)
    for point in curve:
        table.add_row(*_row("", point))
    return table


def point_document(point: CurvePoint) -> dict[str, Any]:
    """A setting and its figures, for JSON (``inf`` becomes ``null``)."""
    logit = point.threshold_logit
    return {
        "tau": point.probability,
        "threshold_logit": logit if logit != float("inf") else None,
        **point.quality.to_dict(),
        "cheap_share_over_random": _over_random(point.quality),
    }


def _row(name: str, point: CurvePoint) -> tuple[str, ...]:
    q = point.quality
    ratio = _over_random(q)
    return (
        name,
        f"{point.probability:.4f}",
        f"{q.accuracy_kept:.2%}",
        f"{q.cheap_share:.1%}",
        f"{q.flexibility:.1%}",
        f"{q.mean_evaluations:.1f}/{q.num_configs}",
        f"{q.random_cheap_share:.1%}",
        f"{ratio:.2f}" if ratio is not None else "-",
    )


def _over_random(q: RoutingQuality) -> float | None:
    if q.random_cheap_share <= 0.0:
        return None
    return q.cheap_share / q.random_cheap_share


def _table(title: str) -> Table:
    table = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False)
    for column in _COLUMNS:
        table.add_column(
            column, justify="left" if column == "router" else "right", no_wrap=True
        )
    return table
