"""The outputs of a benchmark run: the JSON of raw numbers, the markdown report, the PNG plots.

Everything is derived from the kept runs (``perf.runs.select_runs``) through one summary per
server (``perf.summary``), so the table, the plots and the JSON's summary agree.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from perf.ceiling import fraction_of_ceiling
from perf.multiturn import goal_verdict
from perf.plan import Plan
from perf.plots import write_plots
from perf.runs import ServerRun, select_runs
from perf.servers import DECODE, INTERLEAVED, MIXED, MULTITURN, PREFILL
from perf.summary import summarize
from perf.table import BASELINE, SUBJECT, TableShape, markdown_table

Summaries = dict[str, dict[str, float]]


def summaries_of(
    runs: Sequence[ServerRun], plan: Plan, ceiling_tok_s: float
) -> tuple[Summaries, list[str]]:
    """Each server's summary over its kept runs, and the notes on runs left out."""
    summaries: Summaries = {}
    notes: list[str] = []
    for name in plan.servers:
        kept: list[ServerRun] = []
        for workload in plan.workloads:  # quiet runs are chosen per workload
            of_workload = [r for r in runs if r.workload == workload]
            kept_here, unit_notes = select_runs(of_workload, name, plan.quiet_threshold)
            kept += kept_here
            notes += unit_notes
        summary = summarize(kept, plan.concurrency, plan.turns, plan.prefill_lengths)
        summary["runs_kept"] = float(len(kept))
        summary["single.ceiling_fraction"] = fraction_of_ceiling(
            summary["single.decode_tok_s_best"], ceiling_tok_s
        )
        summaries[name] = summary
    return summaries, notes


def write_outputs(
    out: Path,
    meta: dict[str, Any],
    runs: list[ServerRun],
    plan: Plan,
    results_dir: Path,
    plots_dir: Path | None = None,
) -> tuple[Summaries, str]:
    """Write the JSON at ``out``, ``latest.md`` and the plots; returns summaries and markdown."""
    ceiling = meta.get("ceiling") or {}
    summaries, notes = summaries_of(runs, plan, ceiling.get("tok_s", math.nan))
    shape = TableShape(plan.concurrency, plan.workloads, plan.turns, plan.prefill_lengths)
    table = markdown_table(summaries, plan.servers, shape)
    goals = (
        goal_verdict(summaries, SUBJECT, BASELINE, plan.turns)
        if MULTITURN in plan.workloads
        else []
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    plots = write_plots(
        summaries, plan.servers, plan.concurrency, plan.turns, out.parent, f"{out.stem}-"
    )
    document = {
        "meta": meta,
        "plan": asdict(plan),
        "summary": summaries,
        "goals": goals,
        "notes": notes,
        "plots": [str(p) for p in plots],
        "runs": [r.to_json() for r in runs],
    }
    out.write_text(json.dumps(document, indent=2, default=_json_default) + "\n")
    markdown = markdown_document(meta, plan, table, out, notes, goals, summaries)
    results_dir.mkdir(parents=True, exist_ok=True)
    (results_dir / "latest.md").write_text(markdown)
    for plot in plots:
        name = plot.name.removeprefix(f"{out.stem}-")
        shutil.copyfile(plot, results_dir / f"latest-{name}")
        if plots_dir is not None:
            plots_dir.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(plot, plots_dir / name)
    return summaries, markdown


def _json_default(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def markdown_document(
    meta: dict[str, Any],
    plan: Plan,
    table: str,
    out: Path,
    notes: list[str],
    goals: list[str],
    summaries: Summaries,
) -> str:
    model = Path(meta["model_path"]).name
    noisy = "".join(f"\n- {line}" for line in notes)
    verdicts = "".join(f"- {line}\n" for line in goals)
    ceiling = ceiling_line(meta.get("ceiling"), summaries.get(SUBJECT, {}))
    return (
        f"# llmserve benchmark — {meta['date']}\n\n"
        f"{meta['cpu_model']}, {meta['cpu_affinity']} cores usable; model `{model}`; "
        f"threads {meta['threads']}; llama-cpp-python {meta['llama_cpp_python']}; "
        f"llmserve {meta['git_commit'] or meta['llmserve']}.\n"
        f"{plan.rounds} quiet run(s) wanted per server and workload, {plan.retries} retry "
        f"round(s) allowed; each server started afresh for each workload.\n"
        f"{workload_description(plan)}\n\n"
        f"{ceiling}"
        f"{table}\n\n"
        f"{verdicts}{chr(10) if verdicts else ''}"
        f"Raw numbers: `{out}`. ↑ higher is better, ↓ lower is better; ratios are "
        f"llmserve / peer. Streams cut short: ended without a finish_reason and [DONE], or "
        f"failed.\n{noisy}\n"
    )


def ceiling_line(ceiling: dict[str, Any] | None, subject: dict[str, float]) -> str:
    """The physical reference in words, with llmserve's single-stream decode against it."""
    if not ceiling:
        return ""
    line = (
        f"Decode ceiling: memory read bandwidth {ceiling['bandwidth_gb_s']:.1f} GB/s "
        f"({ceiling['threads']} threads, best of 7) / {ceiling['bytes_per_token'] / 1e6:.1f} MB "
        f"of weights read per token = {ceiling['tok_s']:.1f} tok/s."
    )
    fraction = subject.get("single.ceiling_fraction", math.nan)
    if not math.isnan(fraction):
        line += (
            f" llmserve's best single-stream decode, "
            f"{subject['single.decode_tok_s_best']:.1f} tok/s, is {fraction:.2f} of it."
        )
    return line + "\n\n"


def workload_description(plan: Plan) -> str:
    parts = []
    if DECODE in plan.workloads:
        parts.append(
            f"decode: {plan.single_reps} single-stream requests, {plan.per_client} request(s) "
            f"per client at concurrency {', '.join(map(str, plan.concurrency))}, max_tokens "
            f"{plan.max_tokens}, streamed /v1/completions, --parallel {plan.parallel}"
        )
    if PREFILL in plan.workloads:
        parts.append(
            f"prefill: {plan.prefill_reps} distinct prompt(s) of each of "
            f"~{', ~'.join(map(str, plan.prefill_lengths))} tokens, one at a time"
        )
    chat = f"~700-token system prompt, {plan.turns} turns re-sending the history, "
    chat += f"answers of max_tokens {plan.answer_tokens}, streamed /v1/chat/completions, "
    chat += f"--parallel {plan.chat_parallel}"
    if MULTITURN in plan.workloads:
        parts.append(
            f"multi-turn chat: {plan.conversations} conversation(s) one after another, {chat}"
        )
    if INTERLEAVED in plan.workloads:
        parts.append(
            f"interleaved chat: {plan.interleaved} conversations taking turns round-robin "
            f"(one request at a time), {chat}"
        )
    if MIXED in plan.workloads:
        shape = plan.mixed
        parts.append(
            f"mixed load: {shape.short} short streams decoding continuously while "
            f"{shape.long} ~{shape.long_tokens}-token prompts arrive one after another"
        )
    return "Temperature 0. " + "; ".join(parts) + "."
