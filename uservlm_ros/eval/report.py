"""Human-readable reports (Markdown + PNG plots) for `uservlm eval` and the demo."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def latency_chart(stages: Mapping[str, Mapping[str, float]], path: Path, title: str) -> Path:
    """Horizontal bars of p50 with p95 whiskers, one per stage."""
    plt = _pyplot()
    names = [n for n, v in stages.items() if v.get("n", 0)]
    p50 = [stages[n]["p50"] for n in names]
    p95 = [stages[n]["p95"] for n in names]
    figure, axis = plt.subplots(figsize=(7, 0.45 * len(names) + 1.2))
    positions = np.arange(len(names))
    axis.barh(positions, p50, color="#4C72B0", label="p50")
    axis.errorbar(p95, positions, fmt="|", color="#C44E52", markersize=12, label="p95")
    axis.set_yticks(positions, names)
    axis.invert_yaxis()
    axis.set_xlabel("milliseconds")
    axis.set_title(title)
    axis.legend(loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def confusion_chart(matrix: list[list[int]], labels: list[str], path: Path, title: str) -> Path:
    plt = _pyplot()
    data = np.asarray(matrix)
    figure, axis = plt.subplots(figsize=(0.55 * len(labels) + 2.5, 0.55 * len(labels) + 2))
    axis.imshow(data, cmap="Blues")
    axis.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    axis.set_yticks(range(len(labels)), labels)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    for (row, col), value in np.ndenumerate(data):
        if value:
            axis.text(col, row, str(value), ha="center", va="center", fontsize=8)
    axis.set_title(title)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def latency_table(stages: Mapping[str, Mapping[str, float]]) -> list[str]:
    rows = ["| stage | n | p50 ms | p95 ms | mean ms |", "|---|---|---|---|---|"]
    rows += [
        f"| {name} | {v['n']} | {v['p50']:.1f} | {v['p95']:.1f} | {v['mean']:.1f} |"
        for name, v in stages.items()
        if v.get("n", 0)
    ]
    return rows


def write_eval_report(report: Mapping[str, Any], out_dir: Path) -> tuple[Path, Path]:
    """report.json and report.md (with PNG plots) in out_dir; returns both paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / "report.json"
    json_path.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")

    det = report["detection"]
    lines = [
        f"# uservlm eval: {Path(report['bag']).name}",
        "",
        f"{report['frames']} camera frames, {report['labelled_frames']} labelled; detector "
        f"`{report['detector']}`, profiler `{report['profiler']}`.",
        "",
        "## Detection",
        "",
        f"IoU >= {det['iou_threshold']}: precision **{det['precision']:.3f}**, recall "
        f"**{det['recall']:.3f}** ({det['true_positives']} found, {det['false_positives']} "
        f"false, {det['false_negatives']} missed).",
        "",
        "## Attributes",
        "",
        "An abstention (`unknown`) counts as a wrong answer in accuracy.",
        "",
        "| attribute | n | accuracy | macro-F1 | abstained |",
        "|---|---|---|---|---|",
    ]
    for name, entry in report["attributes"].items():
        lines.append(
            f"| {name} | {entry['n']} | {entry['accuracy']:.3f} | "
            f"{entry['macro_f1']:.3f} | {entry['abstained']:.0%} |"
        )
    lines.append("")
    for name, entry in report["attributes"].items():
        image = confusion_chart(
            entry["confusion"],
            entry["labels"],
            out_dir / f"confusion_{name}.png",
            f"{name} (rows: true)",
        )
        lines.append(f"![{name} confusion]({image.name})")
    lines += [
        "",
        "## Fairness",
        "",
        "Accuracy of each attribute within each true group, and the largest gap.",
        "",
        "| attribute | by gender | gap | by ethnicity | gap |",
        "|---|---|---|---|---|",
    ]
    for name, entry in report["fairness"].items():

        def groups(values: Mapping[str, float]) -> str:
            return ", ".join(f"{g} {a:.2f}" for g, a in values.items()) or "-"

        lines.append(
            f"| {name} | {groups(entry['accuracy_by_gender'])} | "
            f"{entry['largest_gap_gender']:.2f} | "
            f"{groups(entry['accuracy_by_ethnicity'])} | "
            f"{entry['largest_gap_ethnicity']:.2f} |"
        )
    latency = report["latency_ms"]
    lines += [
        "",
        "## Latency",
        "",
        "Offline (this evaluation, per frame):",
        "",
        *latency_table(latency["offline"]),
    ]
    chart = latency_chart(
        latency["offline"], out_dir / "latency_offline.png", "per-stage latency (offline)"
    )
    lines += ["", f"![offline latency]({chart.name})"]
    if latency["recorded"]:
        lines += [
            "",
            "Recorded by the live nodes (stage timings in the bag):",
            "",
            *latency_table(latency["recorded"]),
        ]
        chart = latency_chart(
            latency["recorded"], out_dir / "latency_recorded.png", "per-stage latency (recorded)"
        )
        lines += ["", f"![recorded latency]({chart.name})"]
    if "answers" in report:
        answers = report["answers"]
        rouge = answers["rouge1"]
        lines += [
            "",
            "## Answers",
            "",
            f"{answers['n']} questions, responder `{answers['responder']}`: ROUGE-1 "
            f"P {rouge.get('precision', 0):.3f} / R {rouge.get('recall', 0):.3f} / "
            f"F1 {rouge.get('f1', 0):.3f}.",
            "",
            "| frame | mode | question | answer | ROUGE-1 F1 |",
            "|---|---|---|---|---|",
        ]
        lines += [
            f"| {a['frame']} | {a['mode']} | {a['question']} | {a['answer']} | "
            f"{a['rouge1']['f1']:.3f} |"
            for a in answers["items"]
        ]
    if "speech" in report:
        speech = report["speech"]
        lines += [
            "",
            "## Speech",
            "",
            f"{speech['n']} labelled utterances in {speech['audio_s']:.1f} s of recorded audio, "
            f"recognised by `{speech['model']}` after the speech node's VAD: WER "
            f"{speech['wer']:.1%}; {speech['extra']} detected utterance(s) matched no label; "
            f"ASR p50 {speech['asr_ms']['p50']:.0f} ms, p95 {speech['asr_ms']['p95']:.0f} ms "
            f"(real-time factor {speech['real_time_factor']:.2f}); the live node recorded "
            f"p50 {speech['recorded_asr_ms']['p50']:.0f} ms.",
            "",
            "| start s | end s | said | heard | WER | ASR ms |",
            "|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {u['start_s']:.1f} | {u['end_s']:.1f} | {u['reference']} | "
            f"{u['heard'] or '(nothing)'} | {u['wer']:.2f} | {u['asr_ms']:.0f} |"
            for u in speech["items"]
        ]
    md_path = out_dir / "report.md"
    md_path.write_text("\n".join(lines) + "\n")
    return json_path, md_path
