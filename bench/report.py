"""Figures from timings: statistics, ratios, geometric means, the performance-target checks, the table, the plot.

A case is one (row, layout, phase) that was timed, or the derived "backward (data + weight)" of a
convolution row (derived: true): per library, the sum of its backward-data and backward-weight
medians, the figure the backward target is about. Ratios are time_baseline / time_convkern:
above 1, convkern is faster.
"""

from __future__ import annotations

import math
import statistics
from typing import Dict, List, Optional

from suite import BACKWARD, BACKWARD_DATA, BACKWARD_DATA_WEIGHT, BACKWARD_WEIGHT, CHANNELS_FIRST, FORWARD, LAYOUTS

# The performance targets per device, checked on the channels-first (NCHW) cases, the layout they are set for.
TARGETS = {
    "cpu": {
        "conv_forward": 1.3,
        "conv_backward": 1.3,
        "conv_row_floor": 0.8,
        "conv3x3_forward_peak": 0.85,
        "pool_ratio": 3.0,
        "pool_bandwidth": 0.5,
    },
    "cuda": {
        "conv_forward": 1.0,
        "conv_backward": 0.8,
        "conv_row_floor": None,
        "conv3x3_forward_peak": None,
        "pool_ratio": 1.0,
        "pool_bandwidth": 0.7,
    },
}

# The groups of the geometric means, in the order they are printed.
MEAN_GROUPS = [
    ("conv", FORWARD),
    ("conv", BACKWARD_DATA),
    ("conv", BACKWARD_WEIGHT),
    ("conv", BACKWARD_DATA_WEIGHT),
    ("pool", FORWARD),
    ("pool", BACKWARD),
]
PHASE_LABELS = {
    FORWARD: "forward",
    BACKWARD_DATA: "bwd data",
    BACKWARD_WEIGHT: "bwd weight",
    BACKWARD_DATA_WEIGHT: "bwd data+weight",
    BACKWARD: "backward",
}


def summarize(times_s: List[float]) -> Dict[str, object]:
    """Median, minimum, quartiles; every repetition kept in the order it ran (group by group)."""
    ms = [t * 1e3 for t in times_s]
    quartiles = statistics.quantiles(ms, n=4) if len(ms) >= 2 else [ms[0]] * 3
    return {
        "median_ms": statistics.median(ms),
        "min_ms": min(ms),
        "q1_ms": quartiles[0],
        "q3_ms": quartiles[2],
        "reps": len(ms),
        "times_ms": [round(t, 4) for t in ms],
    }


def case_figures(
    row,
    layout: str,
    data_format: str,
    phase: str,
    batch: int,
    timings: Dict[str, Dict[str, object]],
    limits: Dict[str, object],
) -> Dict[str, object]:
    """Everything the report says about one case: rates, % of the machine's limit, ratios."""
    figures: Dict[str, object] = {
        "row": row.name,
        "kind": row.kind,
        "layout": layout,
        "data_format": data_format,
        "phase": phase,
        "batch": batch,
        "shape": row.describe(),
        "libraries": timings,
    }
    ours = timings.get("convkern")
    if row.kind == "conv":
        figures["kernel"] = list(row.kernel)
        figures["gflop"] = row.flops(phase, batch) / 1e9
        figures["rates_gflops"] = {lib: figures["gflop"] / (t["median_ms"] / 1e3) for lib, t in timings.items()}
        if ours and limits.get("fma_peak_gflops"):
            figures["convkern_pct_fma_peak"] = 100.0 * figures["rates_gflops"]["convkern"] / limits["fma_peak_gflops"]
    else:
        figures["gbytes"] = row.bytes_moved(phase, batch) / 1e9
        figures["rates_gbs"] = {lib: figures["gbytes"] / (t["median_ms"] / 1e3) for lib, t in timings.items()}
        if ours and limits.get("copy_gbs"):
            figures["convkern_pct_copy_bandwidth"] = 100.0 * figures["rates_gbs"]["convkern"] / limits["copy_gbs"]
    if ours:
        figures["ratio_vs"] = {
            lib: t["median_ms"] / ours["median_ms"] for lib, t in timings.items() if lib != "convkern"
        }
    return figures


def backward_sum_timings(data: Dict[str, Dict[str, object]], weight: Dict[str, Dict[str, object]]):
    """The derived backward (data + weight) of one row: per library timed in both, the sum of
    the two medians (and of the two minima)."""
    return {
        lib: {
            "median_ms": data[lib]["median_ms"] + weight[lib]["median_ms"],
            "min_ms": data[lib]["min_ms"] + weight[lib]["min_ms"],
            "derived_from": [BACKWARD_DATA, BACKWARD_WEIGHT],
        }
        for lib in data
        if lib in weight
    }


def geometric_mean(values: List[float]) -> Optional[float]:
    values = [v for v in values if v and v > 0 and math.isfinite(v)]
    return math.exp(sum(map(math.log, values)) / len(values)) if values else None


def geomeans(cases: List[dict], baselines: List[str]) -> Dict[str, Dict[str, Dict[str, object]]]:
    """{layout: {"conv forward": {baseline: {geomean, min, worst_row, rows}}, ...}}."""
    out: Dict[str, Dict[str, Dict[str, object]]] = {}
    for layout in LAYOUTS:
        for kind, phase in MEAN_GROUPS:
            group = [
                c
                for c in cases
                if c["layout"] == layout and c["kind"] == kind and c["phase"] == phase and "ratio_vs" in c
            ]
            for baseline in baselines:
                pairs = [(c["ratio_vs"][baseline], c["row"]) for c in group if baseline in c["ratio_vs"]]
                if pairs:
                    worst = min(pairs)
                    out.setdefault(layout, {}).setdefault(f"{kind} {phase}", {})[baseline] = {
                        "geomean": geometric_mean([r for r, _ in pairs]),
                        "rows": len(pairs),
                        "min": worst[0],
                        "worst_row": worst[1],
                    }
    return out


def target_checks(cases: List[dict], means: dict, device: str) -> List[Dict[str, object]]:
    """The performance targets for `device`, on the channels-first rows that ran (a --filter run checks what it measured)."""
    targets, checks = TARGETS[device], []
    nchw = [c for c in cases if c["layout"] == CHANNELS_FIRST]
    nchw_means = means.get(CHANNELS_FIRST, {})

    def check(target: str, value: Optional[float], passed: bool, detail: str = ""):
        checks.append({"target": target, "value": value, "met": bool(passed), "detail": detail})

    for phase, key in ((FORWARD, "conv_forward"), (BACKWARD_DATA_WEIGHT, "conv_backward")):
        mean = nchw_means.get(f"conv {phase}", {}).get("torch")
        if mean:
            check(
                f"conv {PHASE_LABELS[phase]}: geomean vs torch >= {targets[key]}",
                mean["geomean"],
                mean["geomean"] >= targets[key],
                f"n={mean['rows']}",
            )
    floor = targets["conv_row_floor"]
    conv = [
        c
        for c in nchw
        if c["kind"] == "conv" and c["phase"] in (FORWARD, BACKWARD_DATA_WEIGHT) and "torch" in c.get("ratio_vs", {})
    ]
    if conv and floor:
        worst = min(conv, key=lambda c: c["ratio_vs"]["torch"])
        check(
            f"conv forward, bwd data+weight: no row below {floor}x torch",
            worst["ratio_vs"]["torch"],
            worst["ratio_vs"]["torch"] >= floor,
            f"worst {worst['row']} {PHASE_LABELS[worst['phase']]}",
        )
    peak = targets["conv3x3_forward_peak"]
    for c in nchw:
        if (
            peak
            and c["kind"] == "conv"
            and c["kernel"] == [3, 3]
            and c["phase"] == FORWARD
            and "convkern_pct_fma_peak" in c
        ):
            pct = c["convkern_pct_fma_peak"]
            check(f"{c['row']} forward >= {peak:.0%} of FMA peak", pct / 100.0, pct >= 100.0 * peak)
    for c in nchw:
        if c["kind"] != "pool" or "ratio_vs" not in c:
            continue
        ratio = c["ratio_vs"].get("torch")
        if ratio is not None:
            check(f"{c['row']} {c['phase']} >= {targets['pool_ratio']:g}x torch", ratio, ratio >= targets["pool_ratio"])
        if "convkern_pct_copy_bandwidth" in c:
            share = c["convkern_pct_copy_bandwidth"] / 100.0
            check(
                f"{c['row']} {c['phase']} >= {targets['pool_bandwidth']:.0%} of copy bandwidth",
                share,
                share >= targets["pool_bandwidth"],
            )
    return checks


# ---------------------------------------------------------------------------------------------
# Text
# ---------------------------------------------------------------------------------------------


def _ms(value: Optional[float]) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}" if value < 10 else f"{value:.1f}" if value < 1000 else f"{value:.0f}"


def _ratio(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.2f}x"


def format_table(cases: List[dict], libraries: List[str], busy_pct: float) -> str:
    """One line per case, in the order they ran, with a rule between layouts and kinds;
    'busy' shows the CPU share other processes took while a case was timed, where that
    exceeded busy_pct; a case a library failed validation for shows FAIL in its column."""
    baselines = [lib for lib in libraries if lib != "convkern"]
    header = (
        ["row", "layout", "phase", "N"]
        + [f"{lib} ms" for lib in libraries]
        + ["convkern rate", "% limit"]
        + [f"vs {b}" for b in baselines]
        + ["busy"]
    )
    lines = []
    for c in cases:
        timings = c["libraries"]
        cells = [c["row"], c["data_format"], PHASE_LABELS[c["phase"]], str(c["batch"])]
        cells += [
            _ms(timings[lib]["median_ms"]) if lib in timings else "FAIL" if lib in c.get("invalid", {}) else "-"
            for lib in libraries
        ]
        if c["kind"] == "conv":
            rate = c["rates_gflops"].get("convkern")
            cells += [
                "-" if rate is None else f"{rate:.1f} GFLOP/s",
                f"{c['convkern_pct_fma_peak']:.1f}% FMA" if "convkern_pct_fma_peak" in c else "-",
            ]
        else:
            rate = c["rates_gbs"].get("convkern")
            cells += [
                "-" if rate is None else f"{rate:.1f} GB/s",
                f"{c['convkern_pct_copy_bandwidth']:.1f}% copy" if "convkern_pct_copy_bandwidth" in c else "-",
            ]
        cells += [_ratio(c.get("ratio_vs", {}).get(b)) for b in baselines]
        other = c.get("load_during_timing", {}).get("other_processes_pct", 0.0)
        cells.append(f"{other:.0f}%" if other > busy_pct else "")
        lines.append(cells)
    widths = [max(len(r[i]) for r in lines + [header]) for i in range(len(header))]
    left_aligned = 3  # row, layout and phase names

    def render(cells):
        return "  ".join(
            cell.ljust(w) if i < left_aligned else cell.rjust(w) for i, (cell, w) in enumerate(zip(cells, widths))
        )

    rule = "-" * len(render(header))
    body, previous = [], None
    for c, cells in zip(cases, lines):
        if previous is not None and (c["kind"], c["layout"]) != previous:
            body.append(rule)
        body.append(render(cells))
        previous = (c["kind"], c["layout"])
    return "\n".join([render(header), rule] + body)


def format_geomeans(means: dict) -> str:
    lines = ["Geometric mean of time_baseline / time_convkern (>1: convkern faster; min = worst row):"]
    for layout, groups in means.items():
        for group, per_baseline in groups.items():
            kind, phase = group.split(" ", 1)
            parts = [
                f"vs {b} {v['geomean']:.2f}x (min {v['min']:.2f}x, n={v['rows']})" for b, v in per_baseline.items()
            ]
            lines.append(f"  {layout:<5} {kind} {PHASE_LABELS[phase]:<16} " + "   ".join(parts))
    return "\n".join(lines)


def format_checks(checks: List[dict], device: str) -> str:
    if not checks:
        return ""
    lines = [f"Performance targets, {'GPU' if device == 'cuda' else 'CPU'} (NCHW, on the rows measured):"]
    for c in checks:
        value = c["value"]
        shown = "-" if value is None else (f"{value:.1%}" if "%" in c["target"] else f"{value:.2f}x")
        detail = f"  ({c['detail']})" if c["detail"] else ""
        lines.append(f"  [{'met ' if c['met'] else 'MISS'}] {c['target']}: {shown}{detail}")
    return "\n".join(lines)


def cache_resident_note(cases: List[dict]) -> str:
    """Pooling rows faster than the copy bandwidth: their operands stay in cache between calls."""
    above = [
        f"{c['row']} {c['data_format']} {c['phase']} ({1e3 * c['gbytes']:.0f} MB)"
        for c in cases
        if c.get("convkern_pct_copy_bandwidth", 0.0) > 100.0
    ]
    if not above:
        return ""
    return (
        "Note: above 100% of copy bandwidth: " + ", ".join(above) + ". Their operands (MB read +"
        " written per call) stay in the last-level cache between repetitions; the copy bandwidth"
        " is measured out of cache."
    )


# ---------------------------------------------------------------------------------------------
# Plot
# ---------------------------------------------------------------------------------------------

# Bar slot and colour of each phase; pooling's backward shares the backward-data slot.
PLOT_PHASES = [
    (FORWARD, 0, "#4C72B0"),
    (BACKWARD_DATA, 1, "#DD8452"),
    (BACKWARD, 1, "#8172B3"),
    (BACKWARD_WEIGHT, 2, "#55A868"),
    (BACKWARD_DATA_WEIGHT, 3, "#C44E52"),
]


def plot_ratios(
    cases: List[dict], path, title: str, busy_pct: float, targets: Dict[str, float], baseline: str = "torch"
) -> Optional[str]:
    """Bars of time_baseline / time_convkern per row and phase, one panel per layout, hatched
    where other processes took over busy_pct of the CPUs meanwhile; returns why there is no
    plot, or None."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.patches import Patch
        from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator
    except ImportError as exc:
        return f"matplotlib not importable ({exc}); pip install matplotlib"
    ratio = {
        (c["layout"], c["row"], c["phase"]): c["ratio_vs"][baseline] for c in cases if baseline in c.get("ratio_vs", {})
    }
    if not ratio:
        return f"no convkern/{baseline} pair was measured"
    layouts = [layout for layout in LAYOUTS if any(k[0] == layout for k in ratio)]
    rows = list(dict.fromkeys(c["row"] for c in cases if (c["layout"], c["row"], c["phase"]) in ratio))
    busy = {
        (c["layout"], c["row"], c["phase"])
        for c in cases
        if c.get("load_during_timing", {}).get("other_processes_pct", 0.0) > busy_pct
    }
    fig, axes = plt.subplots(
        len(layouts), 1, figsize=(max(8.0, 0.75 * len(rows) + 3), 4.2 * len(layouts)), squeeze=False, sharex=True
    )
    low, high = min(ratio.values()), max(list(ratio.values()) + [targets["pool_ratio"]])
    ticks = [
        t for t in (0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 1, 1.3, 2, 3, 5, 10, 20, 50) if low / 1.5 <= t <= high * 1.5
    ]
    width = 0.2
    for ax, layout in zip(axes[:, 0], layouts):
        phase_handles = []  # plain patches: a bar's own handle would carry its 'busy' hatching
        for phase, slot, color in PLOT_PHASES:
            keys = [(layout, row, phase) for row in rows if (layout, row, phase) in ratio]
            if not keys:
                continue
            xs = [rows.index(row) + (slot - 1.5) * width for _, row, _ in keys]
            bars = ax.bar(xs, [ratio[k] for k in keys], width, color=color)
            phase_handles.append(
                Patch(facecolor=color, label=PHASE_LABELS[phase] + (" (pool)" if phase == BACKWARD else ""))
            )
            for bar, key in zip(bars, keys):
                if key in busy:
                    bar.set_hatch("///")
                    bar.set_edgecolor("white")
        ax.axhline(1.0, color="black", linewidth=0.8)
        ax.axhline(
            targets["conv_forward"],
            color="gray",
            linewidth=0.8,
            linestyle="--",
            label=f"conv forward target {targets['conv_forward']:g}x",
        )
        if any(c["kind"] == "pool" for c in cases):
            ax.axhline(
                targets["pool_ratio"],
                color="gray",
                linewidth=0.8,
                linestyle=":",
                label=f"pool target {targets['pool_ratio']:g}x",
            )
        ax.set_yscale("log")
        ax.set_ylim(min(ticks + [low]) / 1.2, max(ticks + [high]) * 1.3)
        ax.yaxis.set_major_locator(FixedLocator(ticks))
        ax.yaxis.set_minor_locator(NullLocator())
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}x"))
        ax.set_ylabel(f"{layout}: time_{baseline} / time_convkern", fontsize=8)
        handles = phase_handles + ax.get_legend_handles_labels()[0]
        if any(k[0] == layout for k in busy):
            handles.append(
                Patch(
                    facecolor="gray",
                    hatch="///",
                    edgecolor="white",
                    label=f"busy machine (>{busy_pct:.0f}% other load)",
                )
            )
        ax.legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    bottom = axes[-1, 0]
    bottom.set_xticks(range(len(rows)))
    bottom.set_xticklabels(rows, rotation=60, ha="right", fontsize=8)
    axes[0, 0].set_title(title + "   (>1: convkern faster)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return None
