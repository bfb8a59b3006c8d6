"""Perception benchmark 3: the clip profiler's image encoder per crop, torch vs onnxruntime.

    .venv/bin/python bench/perception_clip.py --threads 2
    .venv/bin/python bench/perception_clip.py --size tiny --repeats 3   # smoke

ViT-B/16-sized with RANDOM weights, on CPU: torch eager (the baseline) against onnxruntime fp32
and int8 (`uservlm export profiler --quantize int8`), one crop and a frame of 3 crops batched;
the int8 graph's fidelity to fp32 on real face crops (embedding cosine, top-1 agreement).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from perception_common import banner, header, percentile, row


def bench_clip(size: str, repeats: int, threads: int, fidelity_faces: int = 40) -> None:
    import onnxruntime as ort
    import torch
    from transformers import CLIPConfig, CLIPModel

    from uservlm_ros.backends import clip_profiler
    from uservlm_ros.core import labels

    vision = (
        {
            "hidden_size": 768,
            "intermediate_size": 3072,
            "num_hidden_layers": 12,
            "num_attention_heads": 12,
            "image_size": 224,
            "patch_size": 16,
        }
        if size == "vit-b16"
        else {
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "image_size": 224,
            "patch_size": 16,
        }
    )
    config = CLIPConfig(
        vision_config={**vision, "hidden_act": "quick_gelu"},
        text_config={
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 1,
            "num_attention_heads": 1,
            "vocab_size": 100,
        },
        projection_dim=512,
    )
    torch.manual_seed(0)
    torch.set_num_threads(threads)
    model = CLIPModel(config).eval()
    heads = {
        name: torch.nn.functional.normalize(torch.randn(len(classes), 512), dim=-1)
        for name, classes in labels.LABEL_SETS.items()
    }
    crop = [np.random.default_rng(0).integers(0, 256, (224, 224, 3), np.uint8)]
    pixels = clip_profiler.preprocess_crops(crop)
    torch_ms = []
    with torch.no_grad():
        for index in range(repeats + 2):
            start = time.perf_counter()
            clip_profiler.attribute_logits(model, pixels, heads)
            if index >= 2:
                torch_ms.append((time.perf_counter() - start) * 1e3)
    from uservlm_ros.sim.photos import face_crops
    from uservlm_ros.training.export import int8_fidelity, quantize_int8

    frame = [face_crops(lfw_faces=0)[index] for index in (0, 6, 1)]  # one frame of 3 people
    frame_pixels = clip_profiler.preprocess_crops(frame).numpy()

    def timed(session, pixels: np.ndarray) -> list[float]:
        values = []
        for index in range(repeats + 2):
            start = time.perf_counter()
            session.run(["gender"], {"pixel_values": pixels})
            if index >= 2:
                values.append((time.perf_counter() - start) * 1e3 / len(pixels))
        return values

    with tempfile.TemporaryDirectory() as folder:
        fp32, int8 = Path(folder) / clip_profiler.ONNX_FILE, Path(folder) / "int8.onnx"
        clip_profiler.export_onnx(model, heads, Path(folder), "bench-clip")
        quantize_int8(fp32, int8)
        rows = []
        for path, name in ((fp32, "fp32"), (int8, "int8")):
            options = ort.SessionOptions()
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            rows.append((f"onnxruntime {name}", timed(session, pixels.numpy())))
            rows.append((f"  {name}, 3 crops batched, per crop", timed(session, frame_pixels)))
        fidelity = int8_fidelity(fp32, int8, face_crops(lfw_faces=fidelity_faces))
    header(
        f"3. clip image encoder {size} (RANDOM weights) + 4 heads, per crop, {threads} thread(s)"
    )
    baseline = percentile(torch_ms, 50)
    print(row(f"torch {torch.__version__} eager fp32", torch_ms, baseline=baseline))
    for name, values in rows:
        print(row(name, values, baseline=baseline))
    agreement = ", ".join(f"{k} {v:.3f}" for k, v in fidelity["top1_agreement"].items())
    print(
        f"\nint8 vs fp32 on {fidelity['crops']} real face crops (random weights): embedding "
        f"cosine min {fidelity['embedding_cosine_min']:.4f}, mean "
        f"{fidelity['embedding_cosine_mean']:.4f}; top-1 agreement {agreement}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=("vit-b16", "tiny"), default="vit-b16")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1, help="torch / onnxruntime threads")
    parser.add_argument(
        "--fidelity-faces", type=int, default=40, help="LFW faces of the int8 fidelity check"
    )
    args = parser.parse_args(argv)
    banner("perception clip benchmark")
    bench_clip(args.size, args.repeats, args.threads, args.fidelity_faces)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
