"""People drawn on a camera frame: boxes, track ids and profile labels a person can read.

One drawing code for every picture of the scene: face_crop_node's /uservlm/debug_image, the demo
report's frames and the console. Pure numpy + OpenCV (no ROS): callers turn their messages into
`Person` values (ros/conversions.py does it for a UserProfile).

Readability rules: every label sits on a filled plate above its box (below when there is no
room, shifted when that would cover a neighbour's plate), always inside the image; the font
scales with the image; the text is black or white, whichever contrasts more with the plate
(WCAG contrast ratio >= 4.5 for every plate colour used); boxes have a dark outline so they
show on light and dark backgrounds. The engaged person gets a thicker box of its own colour and
"ENGAGED" on the plate.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

Colour = tuple[int, int, int]  # RGB, 0..255
Rect = tuple[int, int, int, int]  # x0, y0, x1, y1 in pixels, end exclusive

BLACK: Colour = (0, 0, 0)
WHITE: Colour = (255, 255, 255)
# Light plate colours with black text (contrast 9:1 or more, so anti-aliased strokes still read
# above 4.5:1), told apart by hue; orange is kept for the engaged person only.
TRACK_COLOURS: tuple[Colour, ...] = (
    (86, 180, 233),  # sky blue
    (40, 200, 160),  # green
    (230, 150, 195),  # pink
    (200, 170, 255),  # lavender
    (180, 220, 120),  # lime
)
ENGAGED_COLOUR: Colour = (230, 159, 0)  # orange
ENGAGED_MARK = "ENGAGED"
FONT = cv2.FONT_HERSHEY_DUPLEX

# How attributes are shown on a plate: pairs per line, short names for abstentions.
_LINES = (("gender", "age_group"), ("ethnicity", "emotion"))
_SHORT = {"age_group": "age"}


@dataclass(frozen=True)
class Person:
    box: tuple[float, float, float, float]  # xmin, ymin, xmax, ymax in pixels
    track_id: int
    lines: Sequence[str] = ()  # label lines under the "#id" line, e.g. from profile_lines()
    engaged: bool = False
    landmarks: Sequence[tuple[float, float]] = field(default_factory=tuple)  # pixels


@dataclass(frozen=True)
class Style:
    """Sizes derived from the image size, so labels read the same at 320 px and at 1080 p."""

    font_scale: float
    text_thickness: int
    ascent: int  # pixels above the baseline of a line
    descent: int  # pixels below it
    line_height: int
    padding: int
    box_thickness: int

    @staticmethod
    def for_image(height: int, width: int) -> Style:
        # Cap height about 2.5 % of the shorter side (12 px at 640x480), never under ~9 px.
        scale = float(np.clip(min(height, width) / 870.0, 0.4, 2.5))
        thickness = max(1, round(scale * 1.6))
        (_, ascent), descent = cv2.getTextSize("Ag", FONT, scale, thickness)
        return Style(
            font_scale=scale,
            text_thickness=thickness,
            ascent=ascent,
            descent=descent,
            line_height=ascent + descent + max(2, round(3 * scale)),
            padding=max(3, round(6 * scale)),
            box_thickness=max(2, round(3 * scale)),
        )


@dataclass(frozen=True)
class Plate:
    """Where one person's label goes, as drawn."""

    track_id: int
    rect: Rect
    colour: Colour
    text_colour: Colour
    lines: tuple[str, ...]  # as drawn: shortened to fit the image if it had to be
    box: Rect  # the person's box, clipped to the image
    engaged: bool = False


def relative_luminance(colour: Sequence[float]) -> float:
    """WCAG 2 relative luminance of an sRGB colour given as 0..255 values."""
    channels = np.asarray(colour[:3], dtype=np.float64) / 255.0
    linear = np.where(channels <= 0.04045, channels / 12.92, ((channels + 0.055) / 1.055) ** 2.4)
    return float(linear @ np.array([0.2126, 0.7152, 0.0722]))


def contrast_ratio(a: Sequence[float], b: Sequence[float]) -> float:
    """WCAG 2 contrast ratio of two sRGB colours (1 .. 21; text wants >= 4.5)."""
    la, lb = relative_luminance(a), relative_luminance(b)
    return (max(la, lb) + 0.05) / (min(la, lb) + 0.05)


def text_colour_on(background: Sequence[float]) -> Colour:
    """Black or white, whichever contrasts more with the background (always >= 4.58:1)."""
    return (
        BLACK if contrast_ratio(BLACK, background) >= contrast_ratio(WHITE, background) else WHITE
    )


def profile_lines(attributes: Mapping[str, str | None]) -> list[str]:
    """Plate lines from attribute name -> label (None when the profiler abstained).

    Known labels are shown as such ("Female", "age 30-39"), abstentions as "ethnicity: ?";
    attributes missing from the mapping are left out.
    """
    lines = []
    for names in _LINES:
        parts = []
        for name in names:
            if name not in attributes:
                continue
            label, short = attributes[name], _SHORT.get(name, name)
            if label is None:
                parts.append(f"{short}: ?")
            else:
                text = label.replace("_", "/")
                parts.append(f"age {text}" if name == "age_group" else text)
        if parts:
            lines.append(", ".join(parts))
    return lines


def _text_width(text: str, style: Style) -> int:
    return cv2.getTextSize(text, FONT, style.font_scale, style.text_thickness)[0][0]


def _fit_lines(lines: list[str], max_width: int, max_lines: int, style: Style) -> list[str]:
    """Lines shortened (with "..") to max_width pixels, at most max_lines of them."""
    fitted = []
    for line in lines[: max(max_lines, 0)]:
        if _text_width(line, style) > max_width:
            while line and _text_width(line + "..", style) > max_width:
                line = line[:-1]
            line = line.rstrip() + ".." if line else ""
        if line:
            fitted.append(line)
    return fitted


def _overlap(a: Rect, b: Rect) -> int:
    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    return max(width, 0) * max(height, 0)


def _clip_box(box: Sequence[float], height: int, width: int) -> Rect | None:
    values = [float(v) for v in box]
    if len(values) != 4 or not all(np.isfinite(values)):
        return None
    x0, y0 = (
        int(np.clip(np.floor(values[0]), 0, width - 1)),
        int(np.clip(np.floor(values[1]), 0, height - 1)),
    )
    x1, y1 = (
        int(np.clip(np.ceil(values[2]), x0 + 1, width)),
        int(np.clip(np.ceil(values[3]), y0 + 1, height)),
    )
    return x0, y0, x1, y1


def _colour_of(person: Person) -> Colour:
    if person.engaged:
        return ENGAGED_COLOUR
    return TRACK_COLOURS[(max(person.track_id, 1) - 1) % len(TRACK_COLOURS)]


def _candidates(box: Rect, size: tuple[int, int], shape: tuple[int, int], gap: int):
    """(rect, penalty) for each place a plate of `size` may go, the preferred ones first."""
    plate_w, plate_h = size
    height, width = shape
    x_left = min(max(box[0], 0), width - plate_w)
    x_right = min(max(box[2] - plate_w, 0), width - plate_w)
    above, below = box[1] - gap - plate_h, box[3] + gap
    step = max(plate_h // 3, 1)
    for x, x_penalty in ((x_left, 0), (x_right, 3)):
        yield (x, above), x_penalty
        yield (x, below), 5 + x_penalty
    # Further away (stacked above or below a neighbour's plate), nearer first.
    for shift in range(step, height, step):
        for y, base in ((above - shift, 0), (below + shift, 5)):
            for x, x_penalty in ((x_left, 0), (x_right, 3)):
                yield (x, y), base + x_penalty + shift


def layout(shape: tuple[int, ...], people: Sequence[Person]) -> list[Plate]:
    """Plates for the people on an image of this shape; each inside the image.

    The engaged person is placed first, then left to right. A plate goes where it overlaps
    neither an already placed plate nor any face (its own included), preferring above its box,
    then below, then further away; if nowhere is free, where the overlap is smallest.
    """
    height, width = int(shape[0]), int(shape[1])
    style = Style.for_image(height, width)
    boxes = {id(p): _clip_box(p.box, height, width) for p in people}
    drawable = [p for p in people if boxes[id(p)] is not None]
    order = sorted(drawable, key=lambda p: (not p.engaged, boxes[id(p)][0], p.track_id))
    plates: list[Plate] = []
    gap = style.box_thickness
    max_lines = (height - 2 * style.padding - style.ascent - style.descent) // style.line_height + 1
    for person in order:
        box = boxes[id(person)]
        header = f"#{person.track_id}" + (f"  {ENGAGED_MARK}" if person.engaged else "")
        lines = _fit_lines([header, *person.lines], width - 2 * style.padding, max_lines, style)
        if not lines:
            continue  # an image too small for any text: the box alone is drawn
        plate_w = max(_text_width(line, style) for line in lines) + 2 * style.padding
        plate_h = (len(lines) - 1) * style.line_height + style.ascent + style.descent
        plate_h = min(plate_h + 2 * style.padding, height)
        best: tuple[float, Rect] | None = None
        for (x, y), penalty in _candidates(box, (plate_w, plate_h), (height, width), gap):
            y = min(max(y, 0), height - plate_h)
            rect = (x, y, x + plate_w, y + plate_h)
            cost = 1000.0 * sum(_overlap(rect, p.rect) for p in plates)
            cost += 20.0 * sum(_overlap(rect, b) for b in boxes.values() if b is not None)
            cost += penalty
            if best is None or cost < best[0]:
                best = (cost, rect)
            if cost <= penalty:  # free spot; later candidates only cost more
                break
        colour = _colour_of(person)
        plates.append(
            Plate(
                person.track_id,
                best[1],
                colour,
                text_colour_on(colour),
                tuple(lines),
                box,
                person.engaged,
            )
        )
    return plates


def _draw_box(canvas: np.ndarray, box: Rect, colour: Colour, thickness: int) -> None:
    corners = (box[0], box[1]), (box[2] - 1, box[3] - 1)
    cv2.rectangle(canvas, *corners, BLACK, thickness + 2, cv2.LINE_AA)  # shows on light images
    cv2.rectangle(canvas, *corners, colour, thickness, cv2.LINE_AA)


def _draw_leader(canvas: np.ndarray, plate: Plate, gap: int) -> None:
    """A line from a plate that had to move away from its box back to the box."""
    x0, y0, x1, y1 = plate.rect
    bx0, by0, bx1, by1 = plate.box
    if y1 >= by0 - gap - 1 and y0 <= by1 + gap + 1:
        return  # next to (or on) its box
    x = int(np.clip((max(x0, bx0) + min(x1, bx1)) // 2, bx0, bx1 - 1))
    start, end = ((x, y1), (x, by0)) if y1 < by0 else ((x, y0), (x, by1))
    cv2.line(canvas, start, end, BLACK, 3, cv2.LINE_AA)
    cv2.line(canvas, start, end, plate.colour, 1, cv2.LINE_AA)


def draw_people(rgb: np.ndarray, people: Sequence[Person]) -> np.ndarray:
    """A copy of the (h, w, 3) uint8 RGB frame with the people drawn on it.

    Raises ValueError for a frame that is not (h, w, 3) uint8. A person whose box is not
    finite is left out of the drawing (the caller reports it); boxes are clipped to the image.
    """
    if not isinstance(rgb, np.ndarray) or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected an (h, w, 3) RGB frame, got shape {np.shape(rgb)}")
    if rgb.dtype != np.uint8:
        raise ValueError(f"expected a uint8 RGB frame, got {rgb.dtype}")
    if rgb.shape[0] < 1 or rgb.shape[1] < 1:
        raise ValueError(f"empty frame of shape {rgb.shape}")
    canvas = np.ascontiguousarray(rgb).copy()
    style = Style.for_image(*rgb.shape[:2])
    plates = layout(rgb.shape, people)
    # Boxes first, then every plate over them, so no box line crosses a label.
    for person in sorted(people, key=lambda p: p.engaged):  # the engaged box on top
        box = _clip_box(person.box, *rgb.shape[:2])
        if box is None:
            continue
        thickness = style.box_thickness * (2 if person.engaged else 1)
        _draw_box(canvas, box, _colour_of(person), thickness)
        radius = max(1, style.box_thickness // 2)  # landmarks: small, they sit on the face
        for x, y in person.landmarks:
            if np.isfinite(x) and np.isfinite(y):
                cv2.circle(canvas, (int(x), int(y)), radius + 1, BLACK, -1, cv2.LINE_AA)
                cv2.circle(canvas, (int(x), int(y)), radius, WHITE, -1, cv2.LINE_AA)
    for plate in plates:
        _draw_leader(canvas, plate, style.box_thickness)
    for plate in plates:
        x0, y0, x1, y1 = plate.rect
        cv2.rectangle(canvas, (x0, y0), (x1 - 1, y1 - 1), plate.colour, -1)
        for index, line in enumerate(plate.lines):
            baseline_y = y0 + style.padding + style.ascent + index * style.line_height
            cv2.putText(
                canvas,
                line,
                (x0 + style.padding, baseline_y),
                FONT,
                style.font_scale,
                plate.text_colour,
                style.text_thickness,
                cv2.LINE_AA,
            )
        # A dark frame sets a light plate off a light background; the engaged plate's is double.
        cv2.rectangle(canvas, (x0, y0), (x1 - 1, y1 - 1), BLACK, 2 if plate.engaged else 1)
    return canvas
