"""The `uservlm train` and `uservlm export` subcommands (registered by uservlm_ros.cli).

uservlm train profiler|align|sft|dpo --config config/training/<stage>.yaml [--set KEY=VALUE ...]
uservlm train sft --help-config          every key of a stage's config, default and meaning
uservlm export profiler --checkpoint runs/profiler/best --name profiler [--format torch]
                       [--quantize int8]
uservlm export vlm --checkpoint runs/sft/final --name user-vlm-sft [--merge] [--base PATH]
"""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path

# stage -> (module, config class); modules are imported only when the stage runs
STAGES = {
    "profiler": ("uservlm_ros.training.profiler", "ProfilerConfig"),
    "align": ("uservlm_ros.training.align", "AlignConfig"),
    "sft": ("uservlm_ros.training.sft", "SftConfig"),
    "dpo": ("uservlm_ros.training.dpo", "DpoConfig"),
}


def _cmd_train(args: argparse.Namespace) -> int:
    from uservlm_ros.training.config import config_help, load_config

    module_name, class_name = STAGES[args.stage]
    module = importlib.import_module(module_name)
    config_class = getattr(module, class_name)
    if args.help_config:
        print(config_help(config_class))
        return 0
    return module.main(load_config(config_class, args.config, args.overrides))


def _cmd_export(args: argparse.Namespace) -> int:
    from uservlm_ros.training import export

    out = args.out or Path("models") / args.name
    if args.what == "profiler":
        path = export.export_profiler(
            args.checkpoint,
            out,
            args.name,
            args.version,
            args.format,
            tolerance=args.tolerance,
            quantize=args.quantize,
            min_cosine=args.min_cosine,
        )
    else:
        path = export.export_vlm(
            args.checkpoint, out, args.name, args.version, args.merge, args.base
        )
    print(f"exported {out} (manifest {path})")
    return 0


def add_commands(commands) -> None:
    """Add `train` and `export` to the `uservlm` subcommands."""
    train = commands.add_parser("train", help="train the profiler or a User-VLM stage")
    train.add_argument("stage", choices=tuple(STAGES))
    train.add_argument("--config", type=Path, help="flat YAML config (config/training/*.yaml)")
    train.add_argument("--help-config", action="store_true", help="list the config keys")
    train.add_argument(
        "--set",
        dest="overrides",
        action="extend",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="override config keys, e.g. --set epochs=2 lr=1e-4",
    )
    train.set_defaults(func=_cmd_train)

    export = commands.add_parser("export", help="export a trained model to models/<name>/")
    export.add_argument("what", choices=("profiler", "vlm"))
    export.add_argument("--checkpoint", type=Path, required=True, help="e.g. runs/sft/final")
    export.add_argument("--name", required=True, help="model name (folder models/<name>)")
    export.add_argument("--out", type=Path, help="target folder (default models/<name>)")
    export.add_argument("--version", default="0.1.0")
    export.add_argument("--format", choices=("onnx", "torch"), default="onnx", help="profiler")
    export.add_argument("--tolerance", type=float, default=1e-4, help="ONNX parity limit")
    export.add_argument(
        "--quantize",
        choices=("int8",),
        default="",
        help="profiler, onnx: int8 weights (dynamic quantization, ~5x faster on CPU)",
    )
    export.add_argument(
        "--min-cosine",
        type=float,
        default=0.99,
        help="int8: least cosine of int8 vs fp32 embeddings on real face crops",
    )
    export.add_argument("--merge", action="store_true", help="vlm: merge LoRA into the base")
    export.add_argument("--base", default="", help="vlm: base model folder of an adapter")
    export.set_defaults(func=_cmd_export)
