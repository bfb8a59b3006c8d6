"""Only speakable text reaches the robot: crafted token sequences as VLM decoders produce them."""

from __future__ import annotations

import pytest

from uservlm_ros.core.speakable import speakable


@pytest.mark.parametrize(
    ("raw", "said"),
    [
        # A tiny PaliGemma export answering with detection tokens only.
        ("<loc0970><loc0970><loc0970><loc0970>", ""),
        ("<loc0000><loc0512><loc1023><loc0001> cat", "cat"),
        (
            "A dog <loc0100><loc0200><loc0300><loc0400> and <seg012><seg127> a ball.",
            "A dog and a ball.",
        ),
        # Specials a decoder did not skip.
        ("Hello there!<eos>", "Hello there!"),
        ("<bos>Hello<pad><pad><pad>", "Hello"),
        ("<image><image>What a sunny day.", "What a sunny day."),
        ("Sure.<|im_end|>", "Sure."),
        ("<|im_start|>ASSISTANT: Fine, thanks<|endoftext|>", "ASSISTANT: Fine, thanks"),
        ("<start_of_turn>model\nYes<end_of_turn>", "model Yes"),
        ("You look happy</s>", "You look happy"),
        ("<unused12><mask_1>Ok", "Ok"),
        ("caf<0xC3><0xA9> time", "caf time"),
        # Undecodable bytes and replacement characters.
        ("Bonjour \ufffd\ufffd mon ami", "Bonjour mon ami"),
        ("half a char: \udce2\udc82", "half a char:"),
        # Control and format characters; whitespace collapsed.
        ("Hi\x00 there\x07\x1b[0m!", "Hi there!"),
        ("zero\u200bwidth\ufeff", "zerowidth"),
        ("line one\nline two\t\ttab   spaces  ", "line one line two tab spaces"),
        ("\u2581Hello\u2581world", "Hello world"),
        # Text that only looks like tokens stays.
        ("3 < 5 and 7 > 2", "3 < 5 and 7 > 2"),
        ("I <3 robots", "I <3 robots"),
        ("Cost: <10 euros", "Cost: <10 euros"),
        ("Grüße, 你好, ¿qué tal? 😊", "Grüße, 你好, ¿qué tal? 😊"),
        # Nothing speakable.
        ("", ""),
        ("   \n\t ", ""),
        ("<eos><pad>\ufffd\x00", ""),
    ],
)
def test_speakable(raw, said):
    assert speakable(raw) == said


def test_bytes_are_decoded_and_invalid_utf8_dropped():
    assert speakable("Très bien".encode()) == "Très bien"
    assert speakable(b"ok \xe2\x82 then \xff<eos>") == "ok then"
    assert speakable(bytearray(b"\xc3")) == ""


def test_a_token_cut_off_at_the_end_of_a_partial_text_is_dropped():
    assert speakable("A cat <loc09", partial=True) == "A cat "
    assert speakable("Sure<|im_", partial=True) == "Sure"
    assert speakable("Sure</", partial=True) == "Sure"
    assert speakable("A cat <loc09") == "A cat <loc09"  # a final text keeps what it says
    assert speakable("Yes. <eos>", partial=True) == "Yes. "  # the sentence is over
    assert speakable("Yes. How", partial=True) == "Yes. How"
    assert speakable(" <pad> ", partial=True) == ""


def test_speakable_is_idempotent():
    raw = "<bos> Hi <loc0001>!\x00 How\ufffd are you?<eos>"
    once = speakable(raw)
    assert once == "Hi! How are you?"
    assert speakable(once) == once
