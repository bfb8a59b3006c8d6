"""Responder latency: time to first token, decode speed and question -> first sentence.

Builds a PaliGemma-2-3B-shaped model with random weights (SigLIP So400m/14 at 224 px, 256 image
tokens, Gemma-2 2B decoder) -- or a tiny one with `--tiny` for a CPU -- and answers the same
question in both prompt modes with plain `model.generate` (the baseline) and with the project's
static-cache decode loop (`uservlm_ros.backends.fast_decode`, CUDA graphs on CUDA), in one run:

    .venv/bin/python bench/responder.py --tiny                 # CPU, seconds
    .venv/bin/python bench/responder.py --device cuda          # 3B shape, bf16, needs a GPU

Timings start at the question: prompt building and image preprocessing are included. Random
weights write no sentences, so "first sentence" is the time to the `--sentence-tokens`-th new
token (12 by default, a typical first sentence). Generation ignores end-of-sequence so every run
produces the same number of tokens; "same tokens" checks both decoders agree under greedy.
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass

import numpy as np
import torch

from uservlm_ros.backends.fast_decode import DecodeRequest, GreedyDecoder, plain_generate
from uservlm_ros.core.prompt import MODES, build_prompt

QUESTION = "What am I wearing today, and does it suit the weather?"
PROFILE = "The person appears to be a Female, approximately 30 to 39 years old."


def build_model(tiny: bool, device: torch.device, dtype: torch.dtype):
    """A random-weight PaliGemma 2 and a processor with an offline-built tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import (
        Gemma2Config,
        PaliGemmaConfig,
        PaliGemmaForConditionalGeneration,
        PaliGemmaProcessor,
        PreTrainedTokenizerFast,
        SiglipImageProcessorPil,
        SiglipVisionConfig,
    )

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    backend.train_from_iterator(
        [build_prompt(QUESTION, mode, PROFILE) for mode in MODES] * 4,
        trainers.BpeTrainer(
            vocab_size=512,
            special_tokens=["<pad>", "<eos>", "<bos>", "<unk>", "<image>"],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        ),
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>"
    )
    image_size, patch = (32, 8) if tiny else (224, 14)
    image_processor = SiglipImageProcessorPil(size={"height": image_size, "width": image_size})
    image_processor.image_seq_length = (image_size // patch) ** 2
    processor = PaliGemmaProcessor(image_processor=image_processor, tokenizer=tokenizer)
    if tiny:
        text = Gemma2Config(
            vocab_size=len(processor.tokenizer),
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=4,
            num_attention_heads=4,
            num_key_value_heads=2,
            head_dim=16,
            sliding_window=64,
        )
        vision = SiglipVisionConfig(
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            image_size=image_size,
            patch_size=patch,
            vision_use_head=False,
        )
    else:
        from shapes import PALIGEMMA2_3B_TEXT, PALIGEMMA2_3B_VISION

        text = Gemma2Config(**PALIGEMMA2_3B_TEXT)
        vision = SiglipVisionConfig(
            **{**PALIGEMMA2_3B_VISION, "image_size": image_size, "patch_size": patch}
        )
    config = PaliGemmaConfig(
        vision_config=vision.to_dict(),
        text_config=text.to_dict(),
        image_token_index=processor.image_token_id,
        projection_dim=text.hidden_size,
    )
    torch.manual_seed(0)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with device:
            model = PaliGemmaForConditionalGeneration(config).eval()
    finally:
        torch.set_default_dtype(previous)
    model.generation_config.eos_token_id = None  # every run generates max_new_tokens
    model.generation_config.pad_token_id = processor.tokenizer.pad_token_id
    return model, processor


@dataclass
class Run:
    ttft_ms: float
    sentence_ms: float
    decode_tok_s: float
    tokens: list[int]


def answer(
    decode,
    processor,
    mode: str,
    image: np.ndarray,
    device,
    dtype,
    new_tokens: int,
    sentence_tokens: int,
) -> Run:
    """One question, timed from the question to each streamed token."""
    marks: list[float] = []
    started = time.perf_counter()
    prompt = build_prompt(QUESTION, mode, PROFILE)
    batch = processor(images=image, text=prompt, return_tensors="pt")
    inputs = {k: v.to(device) for k, v in batch.items() if k != "labels"}
    inputs["pixel_values"] = inputs["pixel_values"].to(dtype)
    output = decode(
        DecodeRequest(inputs, new_tokens, [], lambda tokens: marks.append(time.perf_counter()))
    )
    decode_s = marks[-1] - marks[0]
    return Run(
        ttft_ms=(marks[0] - started) * 1e3,
        sentence_ms=(marks[min(sentence_tokens, len(marks)) - 1] - started) * 1e3,
        decode_tok_s=(len(marks) - 1) / decode_s if decode_s > 0 else float("nan"),
        tokens=output.tokens,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="tiny model (CPU smoke run)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="", help="default: bfloat16 on CUDA, float32 on CPU")
    parser.add_argument("--new-tokens", type=int, default=100, help="tokens per answer")
    parser.add_argument("--sentence-tokens", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per row (median)")
    parser.add_argument(
        "--compile",
        choices=("auto", "on", "off"),
        default="auto",
        help="CUDA graphs for the decode step: auto = on CUDA only",
    )
    args = parser.parse_args()
    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype or ("bfloat16" if device.type == "cuda" else "float32"))
    compile_step = args.compile == "on" or (args.compile == "auto" and device.type == "cuda")

    started = time.perf_counter()
    model, processor = build_model(args.tiny, device, dtype)
    size = sum(p.numel() for p in model.parameters())
    print(
        f"model: PaliGemma-2 {'tiny' if args.tiny else '3B'} shape, {size / 1e6:.1f} M "
        f"parameters, random weights, {dtype}, {device}; built in "
        f"{time.perf_counter() - started:.1f} s"
    )
    image = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    decoder = GreedyDecoder(model, compile_step=compile_step)
    decoders = {
        "model.generate": lambda request: plain_generate(model, request),
        "static cache" + (" + CUDA graphs" if compile_step else " (eager)"): decoder.generate,
    }
    rows = []
    for mode in MODES:
        baseline = None
        for name, decode in decoders.items():
            for _ in range(2):  # warm-up: allocation, compilation, graph capture
                answer(
                    decode,
                    processor,
                    mode,
                    image,
                    device,
                    dtype,
                    args.new_tokens,
                    args.sentence_tokens,
                )
            runs = [
                answer(
                    decode,
                    processor,
                    mode,
                    image,
                    device,
                    dtype,
                    args.new_tokens,
                    args.sentence_tokens,
                )
                for _ in range(args.repeats)
            ]
            row = {
                "mode": mode,
                "decoder": name,
                "ttft": statistics.median(r.ttft_ms for r in runs),
                "sentence": statistics.median(r.sentence_ms for r in runs),
                "tok_s": statistics.median(r.decode_tok_s for r in runs),
                "tokens": runs[0].tokens,
            }
            baseline = baseline or row
            row["speedup"] = row["tok_s"] / baseline["tok_s"]
            row["same"] = "yes" if row["tokens"] == baseline["tokens"] else "NO"
            rows.append(row)
    print(
        f"\n{args.new_tokens} new tokens per answer, median of {args.repeats} runs, first "
        f"sentence = token {args.sentence_tokens}\n"
    )
    header = (
        "| mode | decoder | TTFT ms | question->first sentence ms | decode tok/s | "
        "decode vs generate | same tokens |"
    )
    print(header)
    print("|---|---|---:|---:|---:|---:|---|")
    for row in rows:
        print(
            f"| {row['mode']} | {row['decoder']} | {row['ttft']:.1f} | {row['sentence']:.1f} | "
            f"{row['tok_s']:.1f} | {row['speedup']:.2f}x | {row['same']} |"
        )


if __name__ == "__main__":
    main()
