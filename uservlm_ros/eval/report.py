"""Human-readable reports (Markdown + PNG plots) for `uservlm eval` and the demo."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np


def number(value: float | None, spec: str = ".3f") -> str:
    """A metric as text; None (not defined: nothing to count) is `n/a`, never 0."""
    return "n/a" if value is None else format(value, spec)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


# Latency panels: perception stages take a few ms, dialogue and end-to-end times hundreds, so
# each group gets its own axis (on one axis the short bars vanish).
END_TO_END = "end to end"
PANELS = ("perception (per frame)", "dialogue (per answer)", END_TO_END)
P50_COLOUR = "#5B9BD5"  # light enough for black numbers beside it
P95_COLOUR = "#B2182B"


def latency_panel(stage: str) -> str:
    """Which panel of the latency chart a stage belongs to."""
    name = stage.lower()
    if "->" in name or "_to_" in name or "end to end" in name:
        return END_TO_END
    if name.startswith(("response/", "respond", "dialogue/")):
        return PANELS[1]
    return PANELS[0]


def _ms(value: float) -> str:
    return f"{value:.1f}" if value < 10 else f"{value:.0f}"


def latency_figure(stages: Mapping[str, Mapping[str, float]], title: str):
    """The latency chart as a matplotlib Figure: one panel per group of stages, p50 bars with a
    whisker to p95, both numbers printed at the end of each bar; the legend sits above the
    panels, outside every axis."""
    plt = _pyplot()
    groups: dict[str, list[str]] = {panel: [] for panel in PANELS}
    for name, values in stages.items():
        if values.get("n", 0):
            groups[latency_panel(name)].append(name)
    panels = [(panel, names) for panel, names in groups.items() if names]
    if not panels:
        figure, axis = plt.subplots(figsize=(8, 1.6), layout="constrained")
        axis.set_axis_off()
        axis.text(0.5, 0.5, "no stage was timed", ha="center", va="center", fontsize=11)
        figure.suptitle(title, fontsize=12)
        return figure
    heights = [len(names) + 1.2 for _, names in panels]
    figure, axes = plt.subplots(
        len(panels),
        1,
        figsize=(8, 0.34 * sum(heights) + 0.9),
        height_ratios=heights,
        layout="constrained",
        squeeze=False,
    )
    for axis, (panel, names) in zip(axes[:, 0], panels, strict=True):
        p50 = np.array([stages[n]["p50"] for n in names], dtype=float)
        p95 = np.array([stages[n].get("p95", stages[n]["p50"]) for n in names], dtype=float)
        positions = np.arange(len(names))
        axis.barh(positions, p50, height=0.62, color=P50_COLOUR, label="p50 (median)")
        axis.errorbar(
            p95,
            positions,
            xerr=[np.maximum(p95 - p50, 0), np.zeros_like(p95)],
            fmt="|",
            markersize=13,
            markeredgewidth=2,
            elinewidth=1.2,
            color=P95_COLOUR,
            label="p95 (whisker from p50)",
        )
        right = float(max(p95.max(), p50.max(), 1e-3))
        for y, low, high in zip(positions, p50, p95, strict=True):
            axis.text(
                max(low, high) + right * 0.02,
                y,
                f"{_ms(low)} ms  (p95 {_ms(high)})",
                va="center",
                fontsize=9,
                color="black",
            )
        axis.set_xlim(0, right * 1.42)  # room for the numbers
        axis.set_ylim(len(names) - 0.4, -0.6)
        axis.set_yticks(positions, names, fontsize=9)
        axis.tick_params(axis="x", labelsize=8)
        axis.set_xlabel("milliseconds", fontsize=8)
        axis.set_title(panel, loc="left", fontsize=10, fontweight="bold")
        axis.grid(axis="x", color="#DDDDDD", linewidth=0.6)
        axis.set_axisbelow(True)
        for side in ("top", "right"):
            axis.spines[side].set_visible(False)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="outside upper right", ncols=2, fontsize=9, frameon=False)
    figure.suptitle(title, fontsize=12, x=0.02, ha="left")
    return figure


def latency_chart(stages: Mapping[str, Mapping[str, float]], path: Path, title: str) -> Path:
    """latency_figure() saved as a PNG (readable at its native size, 880 px wide)."""
    plt = _pyplot()
    figure = latency_figure(stages, title)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


UNKNOWN_LABEL = "unknown"
CONFUSION_CMAP = "Blues"
CONFUSION_CMAP_RANGE = (0.0, 0.75)  # the light part of the map: cells stay light to mid blue


ZERO_GREY = "#666666"  # zeros step back; still 5:1 or more on the lightest cell


def _text_colour(background, muted: bool = False) -> str:
    """Black (grey when muted) or white text for a matplotlib RGBA cell colour."""
    from uservlm_ros.core.overlay import BLACK, text_colour_on

    rgb = [round(255 * c) for c in background[:3]]
    if text_colour_on(rgb) == BLACK:
        return ZERO_GREY if muted else "black"
    return "white"


def confusion_figure(matrix: list[list[int]], labels: list[str], title: str):
    """A confusion matrix (rows: true, columns: predicted) as a matplotlib Figure.

    The true "unknown" row is left out when it is empty (labels never say unknown; the
    predicted "unknown" column stays: abstentions matter). Every count is printed in black
    or white, whichever contrasts more with its cell.
    """
    plt = _pyplot()
    from matplotlib.colors import LinearSegmentedColormap

    data = np.asarray(matrix, dtype=int).reshape(len(labels), len(labels))
    rows = [
        i for i, label in enumerate(labels) if not (label == UNKNOWN_LABEL and not data[i].any())
    ]
    shown = data[rows]
    base = plt.get_cmap(CONFUSION_CMAP)
    cmap = LinearSegmentedColormap.from_list(
        "uservlm_light", base(np.linspace(*CONFUSION_CMAP_RANGE, 256))
    )
    figure, axis = plt.subplots(
        figsize=(0.5 * len(labels) + 2.4, 0.5 * len(rows) + 1.9), layout="constrained"
    )
    image = axis.imshow(shown, cmap=cmap, vmin=0, vmax=max(int(shown.max()), 1))
    axis.set_xticks(range(len(labels)), labels, rotation=45, ha="right", fontsize=9)
    axis.set_yticks(range(len(rows)), [labels[i] for i in rows], fontsize=9)
    axis.set_xlabel("predicted", fontsize=10)
    axis.set_ylabel("true", fontsize=10)
    for (row, col), value in np.ndenumerate(shown):
        axis.text(
            col,
            row,
            str(value),
            ha="center",
            va="center",
            fontsize=9,
            fontweight="bold" if value else "normal",
            color=_text_colour(image.cmap(image.norm(value)), muted=not value),
        )
    axis.set_title(title, fontsize=11)
    figure.colorbar(image, ax=axis, shrink=0.8, label="faces")
    return figure


def confusion_chart(matrix: list[list[int]], labels: list[str], path: Path, title: str) -> Path:
    plt = _pyplot()
    figure = confusion_figure(matrix, labels, title)
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


def identity_summary(entry: Mapping[str, Any]) -> str:
    """One line on identity (`uservlm eval` prints it; report.md starts its section with it)."""
    if not entry["profiles"]:
        return "identity: n/a (the bag has no recorded profiles: record the live graph)"
    if not entry["named_faces"]:
        return "identity: n/a (no labelled face names its person)"
    switches = entry["switches"]
    return (
        f"identity: IDF1 {number(entry['idf1'])} (IDP {number(entry['idp'])}, IDR "
        f"{number(entry['idr'])}), {switches} identity switch{'es' * (switches != 1)} over "
        f"{entry['observations']} observations, "
        f"{number(entry['persons_per_real_person'], '.2f')} person ids per real person "
        f"({number(entry['identified_per_real_person'], '.2f')} identified)"
    )


def identity_section(entry: Mapping[str, Any], iou_threshold: float) -> list[str]:
    lines = ["", "## Identity", "", identity_summary(entry) + "."]
    if not entry["profiles"] or not entry["named_faces"]:
        return lines
    lines += [
        "",
        f"From the {entry['profiles']} recorded profiles: a profile stamped with a labelled "
        f"frame's camera stamp whose roi overlaps a labelled face (IoU >= {iou_threshold}) is an "
        "observation of that person; a switch is a change of person id between two of a "
        "person's observations (anonymous -> identified included).",
        "",
        "| person | switches | person ids | identified ids |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {name} | {entry['switches_by_person'][name]} | {', '.join(ids) or '-'} | "
        f"{len(entry['known_persons'][name])} |"
        for name, ids in entry["persons"].items()
    ]
    return lines


LATENCY_INTROS = {
    "offline": "Offline (this evaluation, per frame):",
    "recorded": "Recorded by the live nodes (stage timings in the bag):",
}


def latency_section(latency: Mapping[str, Any], kind: str, out_dir: Path) -> list[str]:
    """The report.md lines of one kind of latency (a LATENCY_INTROS key): table, then chart."""
    stages = latency[kind]
    chart = latency_chart(stages, out_dir / f"latency_{kind}.png", f"per-stage latency ({kind})")
    return [
        "",
        LATENCY_INTROS[kind],
        "",
        *latency_table(stages),
        "",
        f"![{kind} latency]({chart.name})",
    ]


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
        f"IoU >= {det['iou_threshold']}: precision **{number(det['precision'])}**, recall "
        f"**{number(det['recall'])}** ({det['true_positives']} found, {det['false_positives']} "
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
    if not report["attributes"]:
        lines.append("| (no labelled face was detected) | 0 | n/a | n/a | n/a |")
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
            f"{number(entry['largest_gap_gender'], '.2f')} | "
            f"{groups(entry['accuracy_by_ethnicity'])} | "
            f"{number(entry['largest_gap_ethnicity'], '.2f')} |"
        )
    lines += identity_section(report["identity"], report["detection"]["iou_threshold"])
    latency = report["latency_ms"]
    lines += ["", "## Latency"]
    lines += latency_section(latency, "offline", out_dir)
    if latency["recorded"]:
        lines += latency_section(latency, "recorded", out_dir)
    if "answers" in report:
        answers = report["answers"]
        rouge = answers["rouge1"]
        lines += [
            "",
            "## Answers",
            "",
            f"{answers['n']} questions, responder `{answers['responder']}`: ROUGE-1 "
            f"P {number(rouge.get('precision'))} / R {number(rouge.get('recall'))} / "
            f"F1 {number(rouge.get('f1'))}.",
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
