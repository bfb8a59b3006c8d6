"""Label sets of the profiler (FairFace + facial emotion), their prompt texts, and profile_text.

The papers classify a face by comparing it with text prompts built from these labels, and
describe a user as "The person appears to be a White Male, approximately 50 to 59 years old."
"""

from __future__ import annotations

from collections.abc import Mapping

AGE_GROUPS = ("0-2", "3-9", "10-19", "20-29", "30-39", "40-49", "50-59", "60-69", "70+")
GENDERS = ("Male", "Female")
ETHNICITIES = (
    "White",
    "Black",
    "Latino_Hispanic",
    "East Asian",
    "Southeast Asian",
    "Indian",
    "Middle Eastern",
)
EMOTIONS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")

LABEL_SETS: Mapping[str, tuple[str, ...]] = {
    "age_group": AGE_GROUPS,
    "gender": GENDERS,
    "ethnicity": ETHNICITIES,
    "emotion": EMOTIONS,
}
ATTRIBUTES = tuple(LABEL_SETS)
UNKNOWN = "unknown"

# FairFace's CSV spells the oldest bin differently; data readers map it to ours.
FAIRFACE_AGE_ALIASES = {"more than 70": "70+"}

# Representative age (years) of each bin, for an age estimate from bin probabilities.
AGE_GROUP_CENTRES = (1.0, 6.0, 15.0, 25.0, 35.0, 45.0, 55.0, 65.0, 75.0)

# How each class is said in a sentence.
_SPOKEN = {
    "age_group": {
        group: (f"{group[:-1]} or more" if group.endswith("+") else group.replace("-", " to "))
        for group in AGE_GROUPS
    },
    "gender": {"Male": "man", "Female": "woman"},
    "ethnicity": {e: e.replace("_", "/") for e in ETHNICITIES},
    "emotion": {
        "angry": "angry",
        "disgust": "disgusted",
        "fear": "fearful",
        "happy": "happy",
        "sad": "sad",
        "surprise": "surprised",
        "neutral": "neutral",
    },
}

# Prompt templates per attribute ({} is the spoken class). FLYP-style zero-shot heads average
# the normalised text embeddings over all templates of a class.
PROMPT_TEMPLATES: Mapping[str, tuple[str, ...]] = {
    "age_group": (
        "a photo of a person aged {} years.",
        "a face of someone who is {} years old.",
        "a close-up photo of the face of a person aged {}.",
    ),
    "gender": (
        "a photo of a {}.",
        "a face of a {}.",
        "a close-up photo of the face of a {}.",
    ),
    "ethnicity": (
        "a photo of a {} person.",
        "a face of a {} person.",
        "a close-up photo of the face of a {} person.",
    ),
    "emotion": (
        "a photo of a {} looking face.",
        "a face of a person who looks {}.",
        "a close-up photo of a {} person.",
    ),
}


def spoken(attribute: str, label: str) -> str:
    """How a class label reads in a sentence, e.g. ("age_group", "50-59") -> "50 to 59"."""
    return _SPOKEN[attribute][label]


def class_prompts(attribute: str) -> list[list[str]]:
    """For each class of the attribute (in label order), its prompts over every template."""
    return [
        [template.format(spoken(attribute, label)) for template in PROMPT_TEMPLATES[attribute]]
        for label in LABEL_SETS[attribute]
    ]


def age_bin(years: float) -> str:
    """The FairFace bin an age in years falls into."""
    bounds = [(0, 2), (3, 9), (10, 19), (20, 29), (30, 39), (40, 49), (50, 59), (60, 69)]
    for group, (_, high) in zip(AGE_GROUPS, bounds, strict=False):
        if years < high + 1:
            return group
    return AGE_GROUPS[-1]


def _article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


def profile_text(
    age_group: str = UNKNOWN,
    gender: str = UNKNOWN,
    ethnicity: str = UNKNOWN,
    emotion: str = UNKNOWN,
) -> str:
    """The papers' description of a user from known labels; unknown ones are left out.

    >>> profile_text("50-59", "Male", "White")
    'The person appears to be a White Male, approximately 50 to 59 years old.'
    """
    known = [spoken("ethnicity", ethnicity)] if ethnicity != UNKNOWN else []
    known += [gender] if gender != UNKNOWN else []
    descriptor = " ".join(known)
    parts = [f"{_article(descriptor)} {descriptor}"] if descriptor else []
    if age_group != UNKNOWN:
        parts.append(f"approximately {spoken('age_group', age_group)} years old")
    sentences = [f"The person appears to be {', '.join(parts)}."] if parts else []
    if emotion != UNKNOWN:
        sentences.append(f"They look {spoken('emotion', emotion)}.")
    return " ".join(sentences)
