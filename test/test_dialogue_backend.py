"""VLM backends: the static-cache decode loop equals model.generate; adapters; cancel; errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from dialogue_fixtures import tiny_vlm_with_adapters

from uservlm_ros.backends.fallback_responder import (
    RESPONDER_ID,
    FallbackOptions,
    FallbackResponder,
)
from uservlm_ros.backends.fast_decode import (
    CANCELLED,
    LENGTH,
    DecodeRequest,
    GreedyDecoder,
    plain_generate,
)
from uservlm_ros.backends.paligemma import PaliGemmaBackend
from uservlm_ros.backends.vlm import GenerationRequest, UserContext, VlmOptions, parse_adapters
from uservlm_ros.backends.vlm_registry import RESPONDERS
from uservlm_ros.core.bias_guard import BiasGuard
from uservlm_ros.core.errors import ConfigError, ModelLoadError, UservlmError
from uservlm_ros.core.prompt import PROFILE_PROMPT, USER_AWARE, build_prompt

IMAGE = np.random.default_rng(3).integers(0, 256, (48, 64, 3), dtype=np.uint8)
PROFILE = "The person appears to be a Female, approximately 30 to 39 years old."
PROMPTS = {
    USER_AWARE: build_prompt("What am I wearing today?", USER_AWARE),
    PROFILE_PROMPT: build_prompt("What am I wearing today?", PROFILE_PROMPT, PROFILE),
}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_vlm_with_adapters(tmp_path_factory.mktemp("vlm"))


@pytest.fixture(scope="module")
def backend(tiny):
    model_dir, adapters = tiny
    options = VlmOptions(path=str(model_dir), adapters={k: str(v) for k, v in adapters.items()})
    loaded = PaliGemmaBackend(options, log=lambda _: None)
    loaded.load()
    return loaded


def reference_tokens(model, processor, prompt: str, max_new_tokens: int) -> list[int]:
    inputs = processor(images=IMAGE, text=prompt, return_tensors="pt")
    inputs.pop("labels")
    with torch.inference_mode():
        out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
    tokens = out[0, inputs["input_ids"].shape[1] :].tolist()
    eos = model.generation_config.eos_token_id
    return tokens[:-1] if tokens and tokens[-1] == eos else tokens


@pytest.mark.parametrize("mode", [USER_AWARE, PROFILE_PROMPT])
@pytest.mark.parametrize("max_new_tokens", [1, 7, 70])  # 70: past the 64-token sliding window
def test_static_cache_decoder_equals_generate(tiny, mode, max_new_tokens):
    from transformers import PaliGemmaForConditionalGeneration, PaliGemmaProcessor

    model_dir, _ = tiny
    model = PaliGemmaForConditionalGeneration.from_pretrained(model_dir, local_files_only=True)
    processor = PaliGemmaProcessor.from_pretrained(model_dir, local_files_only=True)
    expected = reference_tokens(model.eval(), processor, PROMPTS[mode], max_new_tokens)
    inputs = processor(images=IMAGE, text=PROMPTS[mode], return_tensors="pt")
    inputs.pop("labels")
    eos = [model.generation_config.eos_token_id]
    decoder = GreedyDecoder(model)
    request = DecodeRequest(inputs, max_new_tokens, eos)
    for _ in range(2):  # the second run re-uses (and must reset) the static cache
        output = decoder.generate(request)
        assert output.tokens == expected
        assert output.prompt_tokens == inputs["input_ids"].shape[1]
    assert plain_generate(model, request).tokens == expected


def test_decoders_stream_every_token_and_stop_on_request(tiny):
    from transformers import PaliGemmaForConditionalGeneration, PaliGemmaProcessor

    model_dir, _ = tiny
    model = PaliGemmaForConditionalGeneration.from_pretrained(model_dir, local_files_only=True)
    processor = PaliGemmaProcessor.from_pretrained(model_dir, local_files_only=True)
    inputs = processor(images=IMAGE, text=PROMPTS[USER_AWARE], return_tensors="pt")
    inputs.pop("labels")
    eos = [model.generation_config.eos_token_id]
    for decode in (
        GreedyDecoder(model.eval()).generate,
        lambda request: plain_generate(model, request),
    ):
        seen: list[list[int]] = []
        output = decode(DecodeRequest(inputs, 20, eos, lambda t, seen=seen: seen.append(list(t))))
        assert output.finish_reason == LENGTH
        assert [len(s) for s in seen] == list(range(1, 21))
        assert seen[-1] == output.tokens
        stopped = decode(DecodeRequest(inputs, 20, eos, should_stop=lambda: True))
        assert stopped.finish_reason == CANCELLED
        assert stopped.tokens == output.tokens[:1]


def test_adapters_switch_per_request_and_match_peft_reference(tiny, backend):
    from peft import PeftModel
    from transformers import PaliGemmaForConditionalGeneration

    model_dir, adapters = tiny
    texts = {}
    for adapter in ("base", "instruct", "dpo", "base"):
        result = backend.generate(GenerationRequest(IMAGE, PROMPTS[USER_AWARE], 12, adapter))
        assert result.responder == f"paligemma:tiny-paligemma@{adapter}"
        assert result.new_tokens == 12 and result.finish_reason == LENGTH
        assert texts.setdefault(adapter, result.text) == result.text  # switching back is exact
    assert len({texts["base"], texts["instruct"], texts["dpo"]}) == 3

    base = PaliGemmaForConditionalGeneration.from_pretrained(model_dir, local_files_only=True)
    reference = PeftModel.from_pretrained(base, adapters["dpo"], adapter_name="dpo").eval()
    tokens = reference_tokens(reference, backend.processor, PROMPTS[USER_AWARE], 12)
    assert (
        backend.processor.tokenizer.decode(tokens, skip_special_tokens=True).strip()
        == (texts["dpo"])
    )


def test_backend_streams_text_and_cancels(backend):
    partial: list[tuple[str, int]] = []
    result = backend.generate(
        GenerationRequest(
            IMAGE,
            PROMPTS[PROFILE_PROMPT],
            30,
            "instruct",
            on_token=lambda text, count: partial.append((text, count)),
            should_stop=lambda: len(partial) >= 5,
        )
    )
    assert result.finish_reason == CANCELLED
    assert result.new_tokens == 5 == partial[-1][1]
    assert partial[-1][0] == result.text
    assert set(result.timings_ms) == {"preprocess", "first_token", "decode"}
    assert result.prompt_tokens > 16  # 16 image tokens + the prompt


def test_backend_rejects_bad_requests(backend):
    with pytest.raises(UservlmError, match="unknown adapter 'sft'"):
        backend.generate(GenerationRequest(IMAGE, PROMPTS[USER_AWARE], 3, "sft"))
    with pytest.raises(UservlmError, match="needs a camera image"):
        backend.generate(GenerationRequest(None, PROMPTS[USER_AWARE], 3))


def test_missing_weights_fail_with_a_clear_message(tmp_path, tiny):
    with pytest.raises(ModelLoadError, match="no VLM weights configured"):
        PaliGemmaBackend(VlmOptions(path="")).load()
    with pytest.raises(ModelLoadError, match="hf download someone/not-cached"):
        PaliGemmaBackend(VlmOptions(path="someone/not-cached")).load()
    model_dir, _ = tiny
    options = VlmOptions(path=str(model_dir), adapters={"dpo": str(tmp_path / "nothing")})
    with pytest.raises(ModelLoadError, match=r"adapter_config\.json not found"):
        PaliGemmaBackend(options, log=lambda _: None).load()


def test_adapter_parameter_parsing():
    assert parse_adapters(["instruct=/a", " dpo = /b "]) == {"instruct": "/a", "dpo": "/b"}
    for bad in (["instruct"], ["=/a"], ["base=/a"], ["x=/a", "x=/b"]):
        with pytest.raises(ConfigError):
            parse_adapters(bad)
    with pytest.raises(ConfigError, match="unknown responder backend 'llava'; known: paligemma"):
        RESPONDERS.create("llava", VlmOptions())


@pytest.mark.parametrize(
    "question",
    ["Hello!", "How are you?", "What am I wearing?", "Tell me a joke", "What should I do?", "Why?"],
)
@pytest.mark.parametrize("emotion", ["happy", "sad", "angry", "neutral", ""])
def test_fallback_answers_are_personal_streamed_and_pass_the_guard(question, emotion):
    responder = RESPONDERS.create("fallback", FallbackOptions(), print, print)
    assert isinstance(responder, FallbackResponder)
    user = UserContext(question, {"age_group": "3-9", "emotion": emotion} if emotion else {})
    streamed: list[str] = []
    request = GenerationRequest(None, "", 100, user=user, on_token=lambda t, n: streamed.append(t))
    result = responder.generate(request)
    assert result.responder == RESPONDER_ID
    assert result.text and streamed[-1] == result.text
    assert len(streamed) == result.new_tokens == len(result.text.split())
    assert BiasGuard().check(question, result.text).allowed
    if question == "Hello!":
        assert ("my young friend" in result.text) == bool(emotion)  # a child when labels known
    if emotion == "sad" and question == "How are you?":
        assert "sad" in result.text


def test_fallback_refuses_adapters_and_cancels():
    responder = FallbackResponder()
    with pytest.raises(UservlmError, match="no adapter"):
        responder.generate(GenerationRequest(None, "", adapter="dpo"))
    request = GenerationRequest(None, "", user=UserContext("hi"), should_stop=lambda: True)
    result = responder.generate(request)
    assert result.finish_reason == "cancelled" and result.new_tokens == 1


def test_fixture_folders_exist(tiny):
    model_dir, adapters = tiny
    assert (Path(model_dir) / "config.json").is_file()
    assert all((Path(p) / "adapter_config.json").is_file() for p in adapters.values())
