"""Figures from timings: statistics, ratios, geometric means, SPEC §9 checks, the table, the plot."""
from __future__ import annotations

import math
import statistics
from typing import Dict, List, Optional

from suite import BACKWARD, FORWARD

BASELINES = ("torch", "numpy")

# SPEC §9, CPU
CONV_GEOMEAN_TARGET = 1.3
CONV_ROW_FLOOR = 0.8
CONV3X3_PEAK_TARGET = 0.85
POOL_RATIO_TARGET = 3.0
POOL_BANDWIDTH_TARGET = 0.5


def summarize(times_s: List[float]) -> Dict[str, object]:
    """Median, minimum, quartiles; every repetition kept in the order it ran (group by group)."""
    ms = [t * 1e3 for t in times_s]
    quartiles = statistics.quantiles(ms, n=4) if len(ms) >= 2 else [ms[0]] * 3
    return {"median_ms": statistics.median(ms), "min_ms": min(ms), "q1_ms": quartiles[0],
            "q3_ms": quartiles[2], "reps": len(ms), "times_ms": [round(t, 4) for t in ms]}


def case_figures(row, phase: str, batch: int, timings: Dict[str, Dict[str, object]],
                 fma_peak_gflops: float, copy_gbs: float) -> Dict[str, object]:
    """Everything the report says about one (row, phase): rates, % of the limit, ratios."""
    figures: Dict[str, object] = {"row": row.name, "kind": row.kind, "phase": phase, "batch": batch,
                                  "shape": row.describe(), "libraries": timings}
    ours = timings.get("convkern")
    ours_s = ours["median_ms"] / 1e3 if ours else None
    if row.kind == "conv":
        figures["kernel"] = list(row.kernel)
        figures["gflop"] = row.flops(phase, batch) / 1e9
        figures["rates_gflops"] = {lib: figures["gflop"] / (t["median_ms"] / 1e3) for lib, t in timings.items()}
        if ours_s:
            figures["convkern_pct_fma_peak"] = 100.0 * figures["rates_gflops"]["convkern"] / fma_peak_gflops
    else:
        figures["gbytes"] = row.bytes_moved(phase, batch) / 1e9
        figures["rates_gbs"] = {lib: figures["gbytes"] / (t["median_ms"] / 1e3) for lib, t in timings.items()}
        if ours_s:
            figures["convkern_pct_copy_bandwidth"] = 100.0 * figures["rates_gbs"]["convkern"] / copy_gbs
    if ours_s:
        figures["ratio_vs"] = {lib: (t["median_ms"] / 1e3) / ours_s
                               for lib, t in timings.items() if lib != "convkern"}
    return figures


def geometric_mean(values: List[float]) -> Optional[float]:
    values = [v for v in values if v and v > 0 and math.isfinite(v)]
    return math.exp(sum(map(math.log, values)) / len(values)) if values else None


def geomeans(cases: List[dict]) -> Dict[str, Dict[str, object]]:
    """Per (kind, phase) and baseline: geometric mean of time_baseline / time_convkern."""
    out: Dict[str, Dict[str, object]] = {}
    for kind in ("conv", "pool"):
        for phase in (FORWARD, BACKWARD):
            group = [c for c in cases if c["kind"] == kind and c["phase"] == phase and "ratio_vs" in c]
            for baseline in BASELINES:
                ratios = [c["ratio_vs"][baseline] for c in group if baseline in c["ratio_vs"]]
                if ratios:
                    out.setdefault(f"{kind} {phase}", {})[baseline] = {
                        "geomean": geometric_mean(ratios), "rows": len(ratios), "min": min(ratios)}
    return out


def target_checks(cases: List[dict], means: Dict[str, Dict[str, object]]) -> List[Dict[str, object]]:
    """SPEC §9 (CPU) on the rows that ran; a partial run (--filter) checks what it measured."""
    checks = []

    def check(target: str, value: Optional[float], passed: bool, detail: str = ""):
        checks.append({"target": target, "value": value, "met": bool(passed), "detail": detail})

    for phase in (FORWARD, BACKWARD):
        mean = means.get(f"conv {phase}", {}).get("torch")
        if mean:
            check(f"conv {phase}: geomean vs torch >= {CONV_GEOMEAN_TARGET}", mean["geomean"],
                  mean["geomean"] >= CONV_GEOMEAN_TARGET, f"n={mean['rows']}")
    conv = [c for c in cases if c["kind"] == "conv" and "torch" in c.get("ratio_vs", {})]
    if conv:
        worst = min(conv, key=lambda c: c["ratio_vs"]["torch"])
        check(f"conv: no row below {CONV_ROW_FLOOR}x torch", worst["ratio_vs"]["torch"],
              worst["ratio_vs"]["torch"] >= CONV_ROW_FLOOR, f"worst {worst['row']} {worst['phase']}")
    for c in cases:
        if c["kind"] == "conv" and c["kernel"] == [3, 3] and c["phase"] == FORWARD and "convkern_pct_fma_peak" in c:
            pct = c["convkern_pct_fma_peak"]
            check(f"{c['row']} forward >= {CONV3X3_PEAK_TARGET:.0%} of FMA peak", pct / 100.0,
                  pct >= 100.0 * CONV3X3_PEAK_TARGET)
    for c in cases:
        if c["kind"] != "pool" or "convkern_pct_copy_bandwidth" not in c:
            continue
        ratio = c.get("ratio_vs", {}).get("torch")
        if ratio is not None:
            check(f"{c['row']} {c['phase']} >= {POOL_RATIO_TARGET:g}x torch", ratio, ratio >= POOL_RATIO_TARGET)
        share = c["convkern_pct_copy_bandwidth"] / 100.0
        check(f"{c['row']} {c['phase']} >= {POOL_BANDWIDTH_TARGET:.0%} of copy bandwidth", share,
              share >= POOL_BANDWIDTH_TARGET)
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
    """One line per case; 'busy' shows the CPU share other processes took while it was timed,
    where that exceeded busy_pct."""
    baselines = [lib for lib in libraries if lib != "convkern"]
    header = (["row", "phase", "N"] + [f"{lib} ms" for lib in libraries]
              + ["convkern rate", "% limit"] + [f"vs {b}" for b in baselines] + ["busy"])
    lines = []
    for c in cases:
        timings = c["libraries"]
        cells = [c["row"], c["phase"], str(c["batch"])]
        cells += [_ms(timings[lib]["median_ms"]) if lib in timings else "-" for lib in libraries]
        if c["kind"] == "conv":
            rate = c["rates_gflops"].get("convkern")
            cells += ["-" if rate is None else f"{rate:.1f} GFLOP/s",
                      f"{c['convkern_pct_fma_peak']:.1f}% FMA" if "convkern_pct_fma_peak" in c else "-"]
        else:
            rate = c["rates_gbs"].get("convkern")
            cells += ["-" if rate is None else f"{rate:.1f} GB/s",
                      f"{c['convkern_pct_copy_bandwidth']:.1f}% copy" if "convkern_pct_copy_bandwidth" in c else "-"]
        cells += [_ratio(c.get("ratio_vs", {}).get(b)) for b in baselines]
        other = c.get("load_during_timing", {}).get("other_processes_pct", 0.0)
        cells.append(f"{other:.0f}%" if other > busy_pct else "")
        lines.append(cells)
    widths = [max(len(r[i]) for r in lines + [header]) for i in range(len(header))]
    left_aligned = 2  # row and phase names

    def render(cells):
        return "  ".join(cell.ljust(w) if i < left_aligned else cell.rjust(w)
                         for i, (cell, w) in enumerate(zip(cells, widths)))

    rule = "-" * len(render(header))
    body, previous_kind = [], None
    for c, cells in zip(cases, lines):
        if previous_kind is not None and c["kind"] != previous_kind:
            body.append(rule)
        body.append(render(cells))
        previous_kind = c["kind"]
    return "\n".join([render(header), rule] + body)


def format_geomeans(means: Dict[str, Dict[str, object]]) -> str:
    lines = ["Geometric mean of time_baseline / time_convkern (>1: convkern faster):"]
    for group, per_baseline in means.items():
        parts = [f"vs {b} {v['geomean']:.2f}x (min {v['min']:.2f}x, n={v['rows']})" for b, v in per_baseline.items()]
        lines.append(f"  {group:<14} " + "   ".join(parts))
    return "\n".join(lines)


def format_checks(checks: List[dict]) -> str:
    if not checks:
        return ""
    lines = ["SPEC §9 CPU targets (on the rows measured):"]
    for c in checks:
        value = c["value"]
        shown = "-" if value is None else (f"{value:.1%}" if "%" in c["target"] else f"{value:.2f}x")
        detail = f"  ({c['detail']})" if c["detail"] else ""
        lines.append(f"  [{'met ' if c['met'] else 'MISS'}] {c['target']}: {shown}{detail}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Plot
# ---------------------------------------------------------------------------------------------

def cache_resident_note(cases: List[dict]) -> str:
    """Pooling rows faster than the copy bandwidth: their operands stay in cache between calls."""
    above = [f"{c['row']} {c['phase']} ({1e3 * c['gbytes']:.0f} MB)" for c in cases
             if c.get("convkern_pct_copy_bandwidth", 0.0) > 100.0]
    if not above:
        return ""
    return ("Note: above 100% of copy bandwidth: " + ", ".join(above) + ". Their operands (MB read +"
            " written per call) stay in the last-level cache between repetitions; the copy bandwidth"
            " is measured out of cache.")


def plot_ratios(cases: List[dict], path, title: str, busy_pct: float) -> Optional[str]:
    """Bar plot of time_torch / time_convkern per row and phase, hatched where other processes
    took over busy_pct of the CPUs meanwhile; returns why there is no plot, or None."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        return f"matplotlib not importable ({exc}); pip install matplotlib"
    rows = list(dict.fromkeys(c["row"] for c in cases if "torch" in c.get("ratio_vs", {})))
    if not rows:
        return "no convkern/torch pair was measured"
    ratio = {(c["row"], c["phase"]): c["ratio_vs"]["torch"] for c in cases if "torch" in c.get("ratio_vs", {})}
    fig, ax = plt.subplots(figsize=(max(6.0, 0.6 * len(rows) + 2), 4.8))
    width = 0.4
    busy = {(c["row"], c["phase"]) for c in cases
            if c.get("load_during_timing", {}).get("other_processes_pct", 0.0) > busy_pct}
    for i, (phase, color) in enumerate(((FORWARD, "#4C72B0"), (BACKWARD, "#DD8452"))):
        keys = [(row, phase) for row in rows if (row, phase) in ratio]
        xs = [rows.index(row) + (i - 0.5) * width for row, _ in keys]
        bars = ax.bar(xs, [ratio[k] for k in keys], width, label=phase, color=color)
        for bar, key in zip(bars, keys):
            if key in busy:
                bar.set_hatch("///")
                bar.set_edgecolor("white")
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.axhline(CONV_GEOMEAN_TARGET, color="gray", linewidth=0.8, linestyle="--", label="conv target 1.3x")
    if any(c["kind"] == "pool" for c in cases):
        ax.axhline(POOL_RATIO_TARGET, color="gray", linewidth=0.8, linestyle=":", label="pool target 3x")
    ax.set_yscale("log")
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

    low, high = min(ratio.values()), max(list(ratio.values()) + [POOL_RATIO_TARGET])
    ticks = [t for t in (0.05, 0.1, 0.2, 0.3, 0.5, 0.8, 1, 1.3, 2, 3, 5, 10, 20, 50) if low / 1.5 <= t <= high * 1.5]
    ax.set_ylim(min(ticks + [low]) / 1.2, max(ticks + [high]) * 1.3)
    ax.yaxis.set_major_locator(FixedLocator(ticks))
    ax.yaxis.set_minor_locator(NullLocator())
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}x"))
    ax.set_xticks(range(len(rows)))
    ax.set_xticklabels(rows, rotation=60, ha="right", fontsize=8)
    ax.set_ylabel("time_torch / time_convkern  (>1: convkern faster)")
    ax.set_title(title, fontsize=9)
    handles, _ = ax.get_legend_handles_labels()
    if busy:
        from matplotlib.patches import Patch

        handles.append(Patch(facecolor="gray", hatch="///", edgecolor="white",
                             label=f"busy machine (>{busy_pct:.0f}% other load)"))
    ax.legend(handles=handles, fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return None
