"""Training throughput and peak memory: profiler FLYP (CLIP) and User-VLM LoRA sft (PaliGemma-2).

    .venv/bin/python bench/training.py                 # tiny models (CPU figures)
    .venv/bin/python bench/training.py --size full     # ViT-B/16 CLIP at batch 256 bf16 and a
                                                       # PaliGemma-2-3B-shaped model (GPU)

Random weights and random inputs (no image decoding): the numbers are the model step alone.
Each table row is one optimizer step type; `ratio` compares it with the baseline of its group
measured in the same run (a forward pass without gradients of the same model and batch).
Peak memory is torch.cuda.max_memory_allocated on a GPU; on CPU it is the process's peak RSS
so far (it only grows, so later rows include earlier ones).
"""

from __future__ import annotations

import argparse
import contextlib
import resource
import time
from collections.abc import Callable

import torch

from uservlm_ros.backends.mole import apply_mole
from uservlm_ros.training.profiler import MaskedImageModelling, flyp_loss
from uservlm_ros.training.vlm import LoraOptions, lora_config

SIZES = {
    # CLIP: (vision hidden, layers, heads, patch, image, text hidden, text layers, batch)
    "tiny": {"clip": (32, 2, 4, 8, 32, 32, 2, 32), "vlm_batch": 4, "vlm_text": 32},
    "full": {"clip": (768, 12, 12, 16, 224, 512, 12, 256), "vlm_batch": 4, "vlm_text": 128},
}


def build_clip(size: str):
    from transformers import CLIPConfig, CLIPModel

    vision, layers, heads, patch, image, text, text_layers, _ = SIZES[size]["clip"]
    config = CLIPConfig(
        vision_config=dict(
            hidden_size=vision,
            intermediate_size=4 * vision,
            num_hidden_layers=layers,
            num_attention_heads=heads,
            patch_size=patch,
            image_size=image,
        ),
        text_config=dict(
            hidden_size=text,
            intermediate_size=4 * text,
            num_hidden_layers=text_layers,
            num_attention_heads=max(1, text // 64) if size == "full" else 4,
            max_position_embeddings=77,
            vocab_size=49408 if size == "full" else 400,
            bos_token_id=1,
            eos_token_id=2,
        ),
        projection_dim=512 if size == "full" else 32,
    )
    return CLIPModel(config)


def build_paligemma(size: str):
    from transformers import (
        Gemma2Config,
        PaliGemmaConfig,
        PaliGemmaForConditionalGeneration,
        SiglipVisionConfig,
    )

    if size == "full":
        from shapes import PALIGEMMA2_3B_TEXT, PALIGEMMA2_3B_VISION

        vision = SiglipVisionConfig(**PALIGEMMA2_3B_VISION)
        text = Gemma2Config(**PALIGEMMA2_3B_TEXT)
    else:
        vision = SiglipVisionConfig(
            hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
            patch_size=8, image_size=32, vision_use_head=False,
        )  # fmt: skip
        text = Gemma2Config(
            vocab_size=1024, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, head_dim=8,
        )  # fmt: skip
    config = PaliGemmaConfig(
        vision_config=vision.to_dict(),
        text_config=text.to_dict(),
        image_token_index=text.vocab_size - 1,
        vocab_size=text.vocab_size,
        projection_dim=text.hidden_size,
        hidden_size=text.hidden_size,
    )
    return PaliGemmaForConditionalGeneration(config)


def peak_memory_mib(device: str) -> float:
    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(step: Callable[[], None], batch: int, steps: int, device: str) -> tuple[float, float]:
    """(samples/s, peak MiB) over `steps` steps after one warm-up step."""
    step()
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device == "cuda":
        torch.cuda.synchronize()
    return batch * steps / (time.perf_counter() - start), peak_memory_mib(device)


def clip_rows(size: str, device: str, steps: int, autocast) -> list[tuple]:
    model = build_clip(size).to(device)
    vision = model.config.vision_config
    batch = SIZES[size]["clip"][-1]
    pixels = torch.randn(batch, 3, vision.image_size, vision.image_size, device=device)
    ids = torch.randint(3, model.config.text_config.vocab_size, (batch, 20), device=device)
    ids[:, -1] = 2
    captions = [f"caption {i % 7}" for i in range(batch)]
    mim = MaskedImageModelling(model.vision_model, vision.patch_size, 0.4).to(device)
    optimizer = torch.optim.AdamW(list(model.parameters()) + list(mim.parameters()), lr=1e-5)

    def forward_only():
        with torch.no_grad(), autocast():
            model.get_image_features(pixel_values=pixels)
            model.get_text_features(input_ids=ids)

    def flyp_step(with_mim: bool):
        def run():
            with autocast():
                images = torch.nn.functional.normalize(
                    model.get_image_features(pixel_values=pixels).pooler_output.float(), dim=-1
                )
                texts = torch.nn.functional.normalize(
                    model.get_text_features(input_ids=ids).pooler_output.float(), dim=-1
                )
                loss = flyp_loss(images, texts, model.logit_scale.exp(), captions)
                if with_mim:
                    loss = loss + mim(pixels)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

        return run

    name = "ViT-B/16 CLIP" if size == "full" else "tiny CLIP"
    rows = []
    for label, step in (
        ("forward, no grad (baseline)", forward_only),
        ("FLYP step", flyp_step(False)),
        ("FLYP + MIM step", flyp_step(True)),
    ):
        rate, memory = measure(step, batch, steps, device)
        rows.append((f"profiler {name}", label, batch, rate, memory))
    return rows


def vlm_rows(size: str, device: str, steps: int, autocast) -> list[tuple]:
    from peft import get_peft_model

    batch, text_length = SIZES[size]["vlm_batch"], SIZES[size]["vlm_text"]
    rows = []
    name = "PaliGemma-2-3B-shaped" if size == "full" else "tiny PaliGemma-2"
    for label in ("forward, no grad (baseline)", "LoRA sft step", "MoLE sft step"):
        model = build_paligemma(size)
        if device == "cuda":
            model = model.to(device=device, dtype=torch.bfloat16)
        config = model.config
        image_tokens = config.text_config.num_image_tokens
        ids = torch.randint(10, config.vocab_size - 2, (batch, image_tokens + text_length))
        ids[:, :image_tokens] = config.image_token_index
        labels = ids.clone()
        labels[:, : image_tokens + text_length // 2] = -100  # the answer half is scored
        token_types = (labels != -100).long()
        side = config.vision_config.image_size
        pixels = torch.randn(batch, 3, side, side, dtype=next(model.parameters()).dtype)
        inputs = {
            "input_ids": ids.to(device),
            "pixel_values": pixels.to(device),
            "token_type_ids": token_types.to(device),
            "labels": labels.to(device),
        }
        if label.startswith("forward"):
            model.eval()

            def step(model=model, inputs=inputs):
                with torch.no_grad(), autocast():
                    model(**inputs)
        else:
            options = LoraOptions()
            names = ("q_proj", "k_proj", "v_proj", "o_proj") if "MoLE" in label else None
            model = get_peft_model(model.to(device), lora_config(options, names))
            if "MoLE" in label:
                apply_mole(model, 3, options.lora_r, options.lora_alpha, options.lora_dropout)
            model.train()
            trainable = [p for p in model.parameters() if p.requires_grad]
            optimizer = torch.optim.AdamW(trainable, lr=2e-5)

            def step(model=model, inputs=inputs, optimizer=optimizer):
                with autocast():
                    loss = model(**inputs).loss
                loss.backward()
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)

        rate, memory = measure(step, batch, steps, device)
        rows.append((f"vlm {name}", label, batch, rate, memory))
        del model
        if device == "cuda":
            torch.cuda.empty_cache()
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=tuple(SIZES), default="tiny")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per row")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--only", choices=("profiler", "vlm"), help="one group only")
    args = parser.parse_args(argv)
    device = (
        args.device if args.device != "auto" else "cuda" if torch.cuda.is_available() else "cpu"
    )
    torch.manual_seed(0)

    def autocast():
        if device == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    rows = []
    if args.only in (None, "profiler"):
        rows += clip_rows(args.size, device, args.steps, autocast)
    if args.only in (None, "vlm"):
        rows += vlm_rows(args.size, device, args.steps, autocast)
    where = (
        torch.cuda.get_device_name()
        if device == "cuda"
        else f"CPU ({torch.get_num_threads()} threads)"
    )
    print(f"training benchmark, size {args.size}, {where}, {args.steps} timed steps per row")
    print(f"{'group':<32} {'step':<30} {'batch':>5} {'samples/s':>10} {'ratio':>6} {'peak MiB':>9}")
    baseline = {}
    for group, label, batch, rate, memory in rows:
        baseline.setdefault(group, rate)
        ratio = rate / baseline[group]
        print(f"{group:<32} {label:<30} {batch:>5} {rate:>10.1f} {ratio:>6.2f} {memory:>9.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
