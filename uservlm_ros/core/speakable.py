"""Only text a robot can say: no tokenizer specials, no undecodable bytes, no control characters.

A VLM's decoded output can carry what is meant for machines, not people: PaliGemma's detection
and segmentation tokens (`<loc0970>`, `<seg012>`), special tokens that were not skipped
(`<eos>`, `<pad>`, `<image>`, `<|im_end|>`, `<start_of_turn>`, byte-fallback `<0xE2>`),
sentencepiece word markers, U+FFFD from a multi-byte character cut in half, and control
characters. A text-to-speech engine reads them out or chokes on them.

`speakable(text)` removes all of it and collapses whitespace. Text like "3 < 5" or "<3" stays:
a special token has no spaces inside its brackets and starts with a letter, `|`, `/` or `0x`.
"""

from __future__ import annotations

import re
import unicodedata

# PaliGemma's location (<loc0000>..<loc1023>) and segmentation (<seg000>..<seg127>) tokens.
_LOC_SEG = re.compile(r"<(?:loc\d{4}|seg\d{3})>")
# Byte-fallback tokens as some decoders print them.
_BYTE = re.compile(r"<0x[0-9A-Fa-f]{2}>")
# Chat-template specials like <|im_start|>, <|endoftext|>.
_PIPE = re.compile(r"<\|[^<>|\s]{1,40}\|>")
# Word-like specials: <eos>, </s>, <pad>, <image>, <unused12>, <start_of_turn>, <mask_1>.
_WORD = re.compile(r"</?[A-Za-z_][A-Za-z0-9_.:\-]{0,40}>")
# A token cut off at the end of a streamed partial text: "... <loc09".
_TRAILING = re.compile(r"<[|/]?[A-Za-z0-9_.:\-|]{0,45}$")
# Terminal escape sequences (colour codes) would leave "[0m" behind once ESC is dropped.
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
# Sentencepiece's word-boundary marker, when a decoder leaves it in.
_SP_SPACE = "\u2581"
# Unicode categories nobody can say: control, format (zero-width, BOM), surrogates (undecodable
# bytes under surrogateescape), private use, unassigned.
_UNSAYABLE = {"Cc", "Cf", "Cs", "Co", "Cn"}
_SPACE_BEFORE_PUNCT = re.compile(r"\s+([.,!?;:])")


def _say_char(ch: str) -> str:
    if ch in "\t\n\r\v\f":
        return " "
    if ch == "\ufffd" or unicodedata.category(ch) in _UNSAYABLE:
        return ""
    return ch


def speakable(text: str | bytes, partial: bool = False) -> str:
    """`text` with only what can be said; "" when nothing is left.

    bytes are decoded as UTF-8 and what is not valid UTF-8 is dropped. With `partial` (text
    still being generated) a special token cut off at the end is dropped too.
    """
    if isinstance(text, bytes | bytearray):
        text = bytes(text).decode("utf-8", errors="replace")
    text = _ANSI.sub("", text.replace(_SP_SPACE, " "))
    # Tokens may sit between characters that need removing first (e.g. "<e\x00os>" is no token).
    text = "".join(_say_char(ch) for ch in text)
    for pattern in (_LOC_SEG, _BYTE, _PIPE, _WORD):
        text = pattern.sub(" ", text)
    if partial:
        text = _TRAILING.sub("", text)
    # A partial text keeps one trailing space: "Hello there. " tells a sentence detector that
    # the sentence is over.
    tail = " " if partial and text[-1:].isspace() else ""
    text = _SPACE_BEFORE_PUNCT.sub(r"\1", " ".join(text.split()))
    return text + tail if text else ""
