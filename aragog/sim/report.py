"""Human-readable output of experiments: tables for the terminal, plots to PNG."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

from rich import box
from rich.table import Table

logger = logging.getLogger(__name__)


def simulate_table(title: str, policies: Mapping[str, dict]) -> Table:
    """One row per policy: requests served, throughput, latency, accuracy."""
    table = _table(
        title,
        (
            "policy",
            "done",
            "req/s",
            "mean s",
            "p25 s",
            "p50 s",
            "p95 s",
            "acc.",
            "max acc.",
        ),
    )
    for name, rec in policies.items():
        lat = rec["latency_s"]
        table.add_row(
            name,
            f"{rec['completed']}/{rec['num_requests']}",
            f"{rec['throughput_rps']:.2f}",
            *(f"{lat[k]:.1f}" for k in ("mean", "p25", "p50", "p95")),
            f"{rec['accuracy']:.1%}",
            f"{rec['accuracy_max_config']:.1%}",
        )
    return table


def sweep_table(title: str, policies: Mapping[str, dict]) -> Table:
    """One row per policy and rate, with each policy's maximum throughput."""
    table = _table(
        title, ("policy", "offered", "req/s", "p50 s", "p95 s", "acc.", "max req/s")
    )
    for name, summary in policies.items():
        for i, rec in enumerate(summary["rates"]):
            lat = rec["latency_s"]
            table.add_row(
                name if i == 0 else "",
                f"{rec['offered_rate_rps']:.2f}",
                f"{rec['throughput_rps']:.2f}",
                f"{lat['p50']:.1f}",
                f"{lat['p95']:.1f}",
                f"{rec['accuracy']:.1%}",
                f"{summary['max_throughput_rps']:.2f}" if i == 0 else "",
            )
        table.add_section()
    return table


def _table(title: str, columns: tuple[str, ...]) -> Table:
    # A light box keeps the table within 80 columns, which is what a pipe gets.
    table = Table(
        title=title, box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True
    )
    for column in columns:
        table.add_column(
            column, justify="left" if column == "policy" else "right", no_wrap=True
        )
    return table


def plot_latency_vs_rate(
    path: Path, title: str, policies: Mapping[str, Sequence[dict]]
) -> None:
    """Draw P50 (solid) and P95 (dashed) latency against offered rate, per policy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    for name, records in policies.items():
        rates = [r["offered_rate_rps"] for r in records]
        (line,) = ax.plot(
            rates, [r["latency_s"]["p50"] for r in records], "o-", label=f"{name} P50"
        )
        ax.plot(
            rates,
            [r["latency_s"]["p95"] for r in records],
            "s--",
            color=line.get_color(),
            alpha=0.6,
            label=f"{name} P95",
        )
    ax.set_xlabel("offered rate (workflow requests/s)")
    ax.set_ylabel("end-to-end latency (s)")
    ax.set_yscale("log")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    logger.info("wrote latency plot %s", path)
