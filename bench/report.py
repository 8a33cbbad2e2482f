"""Turning results into a table, ratios, target checks, JSON and a PNG chart.

`summarize(results)` adds, from the per-round numbers:
- "best": {store: {phase: ops/s}}, the better of the rounds (the rounds
  themselves stay in "rounds" so drift between them is visible);
- "ratios": {peer: {phase: engine ops/s / peer ops/s}};
- "targets": the issue's targets, each {"target", "value", "threshold", "met"}
  ("met" is None when a side of the ratio was not measured);
- "memory": peak RSS and bytes on disk per store; "scale": cost per op vs N.
"""

from __future__ import annotations

import json
import os

__all__ = ["PHASES", "summarize", "format_report", "format_engine_only", "write_json",
           "write_chart"]

#: (phase, label) in table order; "reopen" is shown as a time, the rest as ops/s
PHASES = [
    ("insert", "insert, 1 commit"),
    ("batch", "batch of N puts"),
    ("reopen", "close + reopen (ms)"),
    ("get", "get, shuffled"),
    ("scan", "ordered scan"),
    ("get_threads", "get, {read_threads} threads"),
    ("get_pool64", "get, {small_pool}-page pool"),
    ("get_buffered", "get, buffered I/O"),
    ("overwrite", "overwrite 10%"),
    ("delete", "delete N/2"),
    ("commit", "durable single puts"),
    ("commit_threads", "durable puts, {commit_threads} thr"),
    ("big_put", "put 1 MiB, 1 commit"),
    ("big_get", "get 1 MiB"),
]
TIME_PHASES = {"reopen"}
FLOOR_PHASES = [
    ("pread_cached", "4 KiB pread, page cache"),
    ("pread_direct", "4 KiB pread, O_DIRECT"),
    ("pwrite_fsync", "pwrite + fsync, 1 page"),
    ("pwrite_fdatasync", "pwrite + fdatasync"),
    ("append_fsync", "append page + fsync"),
]
ENGINE = "engine"
DEFAULT_POOL_ENGINE = "engine-4MiB"
RSS_LIMIT_MIB = 150


def _labels(results: dict) -> dict[str, str]:
    wl = results.get("meta", {}).get("workload", {})
    fill = {"read_threads": wl.get("read_threads", 4), "small_pool": wl.get("small_pool", 64),
            "commit_threads": wl.get("commit_threads", 8)}
    return {p: label.format(**fill) for p, label in PHASES}


def _rounds_for(results: dict, store: str) -> list[dict]:
    out = []
    for rnd in results.get("rounds", []):
        res = rnd.get("floors") if store == "floors" else rnd.get("results", {}).get(store)
        out.append(res or {})
    return out


def _best(results: dict, store: str) -> dict[str, float]:
    best: dict[str, float] = {}
    for res in _rounds_for(results, store):
        for phase, rec in res.get("phases", {}).items():
            rate = rec.get("ops_per_s") or 0.0
            if rate > best.get(phase, 0.0):
                best[phase] = rate
    return best


def _targets(best: dict, scale: list[dict]) -> list[dict]:
    def ratio(a: tuple[str, str], b: tuple[str, str]) -> float | None:
        x = best.get(a[0], {}).get(a[1])
        y = best.get(b[0], {}).get(b[1])
        return x / y if x and y else None

    out: list[dict] = []

    def add(target: str, value: float | None, threshold: float, strict: bool = False,
            unit: str = "x") -> None:
        met = None if value is None else (value > threshold if strict else value >= threshold)
        out.append({"target": target, "value": value, "threshold": threshold, "met": met,
                    "unit": unit})

    e = ENGINE
    add("insert >= 20x bplustree", ratio((e, "insert"), ("bplustree", "insert")), 20)
    add("get >= 10x bplustree", ratio((e, "get"), ("bplustree", "get")), 10)
    for peer in ("diskcache", "dbm.dumb"):
        for phase, _ in PHASES:
            if phase in best.get(peer, {}) and phase in best.get(e, {}):
                add(f"{phase} faster than {peer}", ratio((e, phase), (peer, phase)), 1.0,
                    strict=True)
    add("get >= sqlite3", ratio((e, "get"), ("sqlite3", "get")), 1.0)
    add("scan >= sqlite3", ratio((e, "scan"), ("sqlite3", "scan")), 1.0)
    for phase in ("insert", "overwrite", "delete"):
        add(f"{phase} >= 1/2 sqlite3", ratio((e, phase), ("sqlite3", phase)), 0.5)
    add("batch >= sqlite3 (one transaction of inserts)", ratio((e, "batch"), ("sqlite3", "batch")), 1.0)
    add("durable single puts >= sqlite3", ratio((e, "commit"), ("sqlite3", "commit")), 1.0)
    add("group commit (threads) >= 3x single-thread commits",
        ratio((e, "commit_threads"), (e, "commit")), 3.0)
    add("durable puts >= 50% of pwrite+fsync", ratio((e, "commit"), ("floors", "pwrite_fsync")),
        0.5)
    add("get, small pool >= 50% of O_DIRECT 4 KiB reads",
        ratio((e, "get_pool64"), ("floors", "pread_direct")), 0.5)
    million = [s for s in scale if s.get("n") == 1_000_000 and not s.get("error")]
    # the RSS target is for a bounded pool (4 MiB); the default pool grows with the data to its cap
    million.sort(key=lambda s: s.get("store") != DEFAULT_POOL_ENGINE)
    if million:
        rss = million[0].get("peak_rss_mib")
        met = None if rss is None else rss < RSS_LIMIT_MIB
        out.append({"target": f"peak RSS at 1M keys < {RSS_LIMIT_MIB} MiB "
                              f"({million[0].get('store', ENGINE)})", "value": rss,
                    "threshold": RSS_LIMIT_MIB, "met": met, "unit": "MiB"})
    return out


def _scale_rows(results: dict) -> list[dict]:
    rows = []
    for res in results.get("scaling", []):
        ph = res.get("phases", {})

        def us(phase: str, ph=ph) -> float | None:
            rec = ph.get(phase)
            return rec["seconds"] / rec["ops"] * 1e6 if rec and rec.get("ops") else None

        rows.append({
            "store": res.get("store", ENGINE),
            "n": res.get("n"), "tree_height": res.get("tree_height"),
            "insert_us": us("insert"), "get_us": us("get"), "scan_us": us("scan"),
            "peak_rss_mib": res["peak_rss_kib"] / 1024 if res.get("peak_rss_kib") else None,
            "baseline_rss_mib": (res["rss_baseline_kib"] / 1024
                                 if res.get("rss_baseline_kib") else None),
            "disk_bytes": (res.get("disk_final") or {}).get("allocated"),
            "error": res.get("error") or "; ".join(
                f"{p} stopped at {rec['ops']:,} ops" + (f", {rec['missing']:,} missing"
                                                       if rec.get("missing") else "")
                for p, rec in ph.items() if rec.get("partial") or rec.get("missing")) or None,
        })
    return rows


def summarize(results: dict) -> dict:
    """Add best, ratios, targets, memory and scale to `results` (in place; returned)."""
    stores = list(results.get("stores", {}))
    best = {s: _best(results, s) for s in stores if results["stores"][s].get("available")}
    if any(r.get("floors") for r in results.get("rounds", [])):
        best["floors"] = _best(results, "floors")
    results["best"] = best
    ratios: dict = {}
    eng = best.get(ENGINE, {})
    for peer, rates in best.items():
        if peer in (ENGINE, "floors"):
            continue
        ratios[peer] = {p: eng[p] / rates[p] for p in rates if eng.get(p) and rates[p]}
    results["ratios"] = ratios
    memory: dict = {}
    for s in best:
        if s == "floors":
            continue
        rounds = _rounds_for(results, s)
        peaks = [r.get("peak_rss_kib") for r in rounds if r.get("peak_rss_kib")]
        base = [r.get("rss_baseline_kib") for r in rounds if r.get("rss_baseline_kib")]
        disk = [(r.get("disk_final") or {}).get("allocated") for r in rounds if r.get("disk_final")]
        after = [(r.get("disk_after_insert") or {}).get("allocated") for r in rounds
                 if r.get("disk_after_insert")]
        memory[s] = {
            "peak_rss_mib": max(peaks) / 1024 if peaks else None,
            "baseline_rss_mib": max(base) / 1024 if base else None,
            "disk_after_insert": max(after) if after else None,
            "disk_final": max(disk) if disk else None,
        }
    results["memory"] = memory
    results["scale"] = _scale_rows(results)
    results["targets"] = _targets(best, results["scale"])
    return results


# ---------------------------------------------------------------- formatting


def fmt_rate(x: float | None) -> str:
    if x is None:
        return "-"
    if x >= 1e6:
        return f"{x / 1e6:.2f}M"
    if x >= 1e4:
        return f"{x / 1e3:.0f}k"
    if x >= 1e3:
        return f"{x / 1e3:.1f}k"
    if x >= 10:
        return f"{x:.0f}"
    return f"{x:.1f}"


def fmt_bytes(x: float | None) -> str:
    if x is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if x < 1024 or unit == "GiB":
            return f"{x:.0f} {unit}" if unit == "B" else f"{x:.1f} {unit}"
        x /= 1024
    return "-"


def _cell(rec: dict | None, phase: str) -> str:
    if not rec:
        return "-"
    if phase in TIME_PHASES:
        s = f"{rec['seconds'] * 1e3:.0f}"
    else:
        s = fmt_rate(rec.get("ops_per_s"))
    if rec.get("partial"):
        s += "*"
    if rec.get("missing"):
        s += "!"
    return s


def _table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(headers)]

    def line(cells: list[str]) -> str:
        # first column left-aligned (labels), the rest right-aligned (numbers)
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths, strict=True)))

    return "\n".join([line(headers), "  ".join("-" * w for w in widths)] + [line(r) for r in rows])


def _fmt_ratio(r: float | None) -> str:
    if r is None:
        return "-"
    return f"{r:.2f}x" if r < 10 else f"{r:.1f}x"


def format_report(results: dict) -> str:  # noqa: C901 - one long template of report sections; split per section
    """The whole human-readable report: tables, footnotes, targets."""
    meta = results.get("meta", {})
    mach = meta.get("machine", {})
    fs = mach.get("filesystem", {})
    wl = meta.get("workload", {})
    labels = _labels(results)
    stores = [s for s, info in results.get("stores", {}).items() if info.get("available")]
    rounds = results.get("rounds", [])
    out = [
        f"DragonDB benchmark {meta.get('date', '')}  git {meta.get('git') or '-'}",
        f"machine: {mach.get('cpu')}, {mach.get('cores')} cores, {mach.get('mem_mib')} MiB RAM, "
        f"{mach.get('os')}, Python {mach.get('python')}",
        f"disk: {fs.get('fstype')} on {fs.get('device')} (bench dir {mach.get('bench_dir')})",
        f"N={wl.get('n'):,} random 16 B keys, 100 B values; {wl.get('commits')} durable commits; "
        f"{wl.get('big_count')} x 1 MiB values; {len(rounds)} rounds, order alternated "
        f"({' / '.join(','.join(r.get('order', [])) for r in rounds)})",
        "",
        "ops/s per store and phase (round 1 / round 2 ...); "
        "* = stopped at the time budget, ! = some gets came back missing",
    ]
    rows = []
    for phase, _ in PHASES:
        cells = []
        seen = False
        for s in stores:
            parts = []
            for res in _rounds_for(results, s):
                rec = res.get("phases", {}).get(phase)
                seen = seen or rec is not None
                parts.append(_cell(rec, phase))
            cells.append("/".join(parts))
        if seen:
            rows.append([labels[phase]] + cells)
    out.append(_table(["phase"] + stores, rows))

    ratios = results.get("ratios", {})
    peers = [s for s in stores if s != ENGINE and s in ratios]
    if ENGINE in stores and peers:
        out += ["", "engine / peer (best of rounds; > 1 means the engine is faster)"]
        rows = []
        for phase, _ in PHASES:
            cells = [_fmt_ratio(ratios[p].get(phase)) for p in peers]
            if any(c != "-" for c in cells):
                rows.append([labels[phase]] + cells)
        out.append(_table(["phase"] + peers, rows))

    if any(r.get("floors") for r in rounds):
        out += ["", "raw floors from Python (ops/s, round 1 / round 2 ...)"]
        rows = []
        for phase, label in FLOOR_PHASES:
            parts = [_cell((r.get("floors") or {}).get("phases", {}).get(phase), phase)
                     for r in rounds]
            rows.append([label, "/".join(parts)])
        out.append(_table(["floor", "ops/s"], rows))

    mem = results.get("memory", {})
    if mem:
        out += ["", "bytes on disk (allocated blocks) and peak RSS of the store's process"]
        rows = [[s, fmt_bytes(m.get("disk_after_insert")), fmt_bytes(m.get("disk_final")),
                 f"{m['peak_rss_mib']:.0f} MiB" if m.get("peak_rss_mib") else "-",
                 f"{m['baseline_rss_mib']:.0f} MiB" if m.get("baseline_rss_mib") else "-"]
                for s, m in mem.items()]
        out.append(_table(["store", "after insert", "at end", "peak RSS", "RSS before open"],
                          rows))

    scale = results.get("scale", [])
    if scale:
        out += ["", "engine cost per operation against N (it should follow tree height)"]
        rows = [[r.get("store", ENGINE), f"{r['n']:,}", str(r.get("tree_height") or "-"),
                 f"{r['insert_us']:.1f}" if r.get("insert_us") else "-",
                 f"{r['get_us']:.1f}" if r.get("get_us") else "-",
                 f"{r['scan_us']:.2f}" if r.get("scan_us") else "-",
                 f"{r['peak_rss_mib']:.0f} MiB" if r.get("peak_rss_mib") else "-",
                 f"{r['baseline_rss_mib']:.0f} MiB" if r.get("baseline_rss_mib") else "-",
                 fmt_bytes(r.get("disk_bytes")), r.get("error") or ""] for r in scale]
        out.append(_table(["store", "N", "height", "insert us/op", "get us/op", "scan us/item",
                           "peak RSS", "RSS before open", "disk", "error"], rows))

    targets = results.get("targets", [])
    if targets:
        out += ["", "targets (issue 8)"]
        rows = []
        for t in targets:
            mark = {True: "met", False: "MISSED", None: "not measured"}[t["met"]]
            val = "-" if t["value"] is None else (
                f"{t['value']:.0f} MiB" if t["unit"] == "MiB" else _fmt_ratio(t["value"]))
            rows.append([t["target"], val, mark])
        out.append(_table(["target", "value", "status"], rows))

    notes = []
    for s in stores:
        info = results["stores"][s]
        notes.append(f"{s} {info.get('version', '')}: {info.get('note', '')}")
        reasons: dict[str, str] = {}
        for res in _rounds_for(results, s):
            reasons.update(res.get("skipped", {}))
            for key in ("error", "error_big"):
                if res.get(key):
                    notes.append(f"  {s} FAILED ({key}): {res[key]}")
            for phase, err in res.get("errors", {}).items():
                notes.append(f"  {s} {phase}: {err}")
        for phase, why in reasons.items():
            notes.append(f"  {s} {phase}: n/a, {why}")
    for s, info in results.get("stores", {}).items():
        if not info.get("available"):
            notes.append(f"{s}: not run, {info.get('unavailable')}")
    for r in rounds:
        for phase, why in (r.get("floors") or {}).get("skipped", {}).items():
            notes.append(f"floors {phase}: n/a, {why}")
        if (r.get("floors") or {}).get("error"):
            notes.append(f"floors FAILED: {r['floors']['error']}")
    out += ["", "notes"] + notes

    prof = results.get("profile")
    if prof:
        out += ["", f"engine profile (cProfile, by own time; files in {prof.get('dir')})"]
        if prof.get("error"):
            out.append(f"  profiled run failed: {prof['error']}")
        for phase in ("insert", "get"):
            rows = prof.get("phases", {}).get(phase)
            if not rows:
                continue
            out.append(f"  {phase}:")
            table = _table(["function", "calls", "tottime s", "cumtime s"],
                           [[r["function"], str(r["calls"]), f"{r['tottime']:.3f}",
                             f"{r['cumtime']:.3f}"] for r in rows[:8]])
            out += ["    " + line for line in table.splitlines()]
    return "\n".join(out) + "\n"


def format_engine_only(result: dict) -> str:
    """A short table of `bench.engine_only`'s result, for `dragondb bench PATH`."""
    labels = _labels({"meta": {"workload": result.get("workload", {})}})
    mach = result.get("machine", {})
    fs = mach.get("filesystem", {})
    out = [f"DragonDB alone on {result.get('directory')} ({fs.get('fstype')} on "
           f"{fs.get('device')}), N={result.get('n'):,}"]
    rows = []
    for phase, _ in PHASES:
        rec = result.get("phases", {}).get(phase)
        if rec and phase in TIME_PHASES:
            rows.append([labels[phase], "-", f"{rec['seconds'] * 1e3:.1f} ms"])
        elif rec:
            us = rec["seconds"] / rec["ops"] * 1e6 if rec.get("ops") else 0.0
            rows.append([labels[phase], _cell(rec, phase), f"{us:.1f}"])
    for phase, label in FLOOR_PHASES:
        rec = result.get("floors", {}).get("phases", {}).get(phase)
        if rec:
            rows.append([f"floor: {label}", _cell(rec, phase),
                         f"{rec['seconds'] / rec['ops'] * 1e6:.1f}" if rec.get("ops") else "-"])
    out.append(_table(["phase", "ops/s", "us/op"], rows))
    for phase, why in result.get("skipped", {}).items():
        out.append(f"{phase}: n/a, {why}")
    if result.get("error"):
        out.append(f"FAILED: {result['error']}")
    disk = result.get("disk_final") or {}
    out.append(f"bytes on disk {fmt_bytes(disk.get('allocated'))}, peak RSS "
               f"{(result.get('peak_rss_kib') or 0) / 1024:.0f} MiB, direct I/O "
               f"{(result.get('stats_final') or {}).get('direct_io', '?')}")
    return "\n".join(out) + "\n"


def write_json(results: dict, path: str) -> None:
    """Write atomically (a reader never sees half a file)."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(results, f, indent=1, sort_keys=False, default=str)
        f.write("\n")
    os.replace(tmp, path)


def write_chart(results: dict, path: str) -> str | None:
    """Draw the chart to `path`; returns None, or why no chart was drawn."""
    try:
        import matplotlib

        matplotlib.use("Agg")  # no display needed
        import matplotlib.pyplot as plt
    except ImportError as exc:
        return f"matplotlib not installed ({exc}); pip install -e '.[bench]'"
    best = results.get("best", {})
    labels = _labels(results)
    stores = [s for s in best if s != "floors"]
    phases = [p for p, _ in PHASES if p not in TIME_PHASES and any(p in best[s] for s in stores)]
    if not stores or not phases:
        return "nothing measured"
    scale = [r for r in results.get("scale", []) if r.get("get_us")]
    ratios = results.get("ratios", {})
    panels = 1 + bool(ratios) + bool(scale)
    fig, axes = plt.subplots(panels, 1, figsize=(14, 5 * panels), squeeze=False)
    axes = [a[0] for a in axes]
    meta = results.get("meta", {})
    mach = meta.get("machine", {})
    fig.suptitle(f"DragonDB vs peers, N={meta.get('workload', {}).get('n'):,}; "
                 f"{mach.get('cpu')} x{mach.get('cores')}, "
                 f"{mach.get('filesystem', {}).get('fstype')}, Python {mach.get('python')}, "
                 f"{meta.get('date', '')[:10]}")
    ax = axes[0]
    width = 0.8 / len(stores)
    for i, s in enumerate(stores):
        xs = [j + i * width for j in range(len(phases))]
        ys = [best[s].get(p, 0) for p in phases]
        ax.bar(xs, ys, width, label=s)
    ax.set_yscale("log")
    ax.set_ylabel("ops/s (best of rounds, log)")
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(phases))])
    ax.set_xticklabels([labels[p] for p in phases], rotation=25, ha="right")
    ax.legend(ncol=min(len(stores), 5), fontsize="small")
    ax.grid(axis="y", which="major", alpha=0.3)
    k = 1
    if ratios:
        ax = axes[k]
        k += 1
        peers = [p for p in ratios if p not in ("dict", DEFAULT_POOL_ENGINE)] or list(ratios)  # the ceiling squashes the scale
        width = 0.8 / len(peers)
        for i, peer in enumerate(peers):
            xs = [j + i * width for j in range(len(phases))]
            ys = [ratios[peer].get(p, 0) for p in phases]
            ax.bar(xs, ys, width, label=f"engine / {peer}")
        ax.axhline(1.0, color="black", linewidth=0.8)
        ax.set_yscale("log")
        ax.set_ylabel("engine / peer (log; > 1: engine faster)")
        ax.set_xticks([j + 0.4 - width / 2 for j in range(len(phases))])
        ax.set_xticklabels([labels[p] for p in phases], rotation=25, ha="right")
        ax.legend(ncol=min(len(peers), 4), fontsize="small")
        ax.grid(axis="y", which="major", alpha=0.3)
    if scale:
        ax = axes[k]
        for store in dict.fromkeys(r.get("store", ENGINE) for r in scale):
            rows = [r for r in scale if r.get("store", ENGINE) == store]
            ns = [r["n"] for r in rows]
            for key, name in (("insert_us", "insert"), ("get_us", "get")):
                ax.plot(ns, [r.get(key) for r in rows], marker="o", label=f"{store} {name} us/op")
        for r in scale:
            if r.get("tree_height") and r.get("store", ENGINE) == ENGINE:
                ax.annotate(f"height {r['tree_height']}", (r["n"], r["get_us"]),
                            textcoords="offset points", xytext=(4, 6), fontsize="small")
        ax.set_xscale("log")
        ax.set_xlabel("N keys (log)")
        ax.set_ylabel("microseconds per operation")
        ax.set_title("engine: cost per operation against N")
        ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return None
