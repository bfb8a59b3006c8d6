"""The User-VLM prompt, in its two modes.

`user_aware` (the User-VLM way): the tuned model sees the image and the question only and infers
who is asking. `profile_prompt` (the papers' baseline): the asking user's profile_text is put in
front of the question, so the same model can be compared with and without it.
"""

from __future__ import annotations

USER_AWARE = "user_aware"
PROFILE_PROMPT = "profile_prompt"
MODES = (USER_AWARE, PROFILE_PROMPT)

TEMPLATE = "<image> <|im_start|>USER: {question}<|im_end|> ASSISTANT: "
IMAGE_TOKEN = "<image>"


def build_prompt(question: str, mode: str = USER_AWARE, profile_text: str = "") -> str:
    """The full prompt for one question; profile_text is used in profile_prompt mode only."""
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; expected one of {MODES}")
    question = " ".join(question.split())
    if mode == PROFILE_PROMPT and profile_text.strip():
        question = f"{profile_text.strip()} {question}"
    return TEMPLATE.format(question=question)
