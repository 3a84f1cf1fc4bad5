"""What a Label Studio labelling config asks for: the one control iMOS Serve answers, and its media.

Two kinds of project are served:

- video: ``<Video name=V value="$video"/>`` with ``<VideoRectangle name=R toName=V/>`` (and usually
  ``<Labels toName=V>``): the user boxes an object on one frame; the answer is a box per frame;
- image sequence / volume: ``<Image name=I valueList="$images"/>`` (one page per frame or slice) with
  ``<BrushLabels name=B toName=I>`` (or ``<Brush>`` + ``<Labels>``): the user paints one page; the
  answer is a brush mask per page. A single ``<Image value="$image"/>`` is a one-frame sequence.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal
from xml.etree import ElementTree

from service.errors import InvalidInput

Kind = Literal["video", "images"]
_BRUSH = ("brushlabels", "brush")


@dataclass(frozen=True)
class Target:
    """The control to answer: from_name / to_name as in the config, the task data field holding the media
    (without "$"), whether that field is a list of pages, and the label values the config offers."""

    kind: Kind
    from_name: str
    to_name: str
    data_key: str
    paged: bool
    labels: tuple[str, ...]
    labels_from: str  # the control whose label names a region carries ("" when none)


def parse(config: str) -> Target:
    """The first served control of a labelling config; InvalidInput naming what is missing otherwise."""
    try:
        root = ElementTree.fromstring(config)
    except ElementTree.ParseError as exc:
        raise InvalidInput(f"the labelling config is not XML ({exc})") from None
    objects = {el.get("name"): el for el in root.iter() if el.tag.lower() in ("video", "image") and el.get("name")}
    for el in root.iter():
        tag = el.tag.lower()
        if tag not in ("videorectangle",) + _BRUSH:
            continue
        to = objects.get(el.get("toName", ""))
        if to is None:
            continue
        kind: Kind = "video" if tag == "videorectangle" else "images"
        if (kind == "video") != (to.tag.lower() == "video"):
            continue
        return _target(root, el, to, kind)
    raise InvalidInput("the labelling config has no control iMOS Serve answers: use <VideoRectangle> on a "
                       "<Video>, or <BrushLabels> on an <Image> (valueList=\"$images\" for a sequence)")


def _target(root: ElementTree.Element, control: ElementTree.Element, obj: ElementTree.Element,
            kind: Kind) -> Target:
    to_name = obj.get("name", "")
    paged = obj.get("valueList") is not None
    field = (obj.get("valueList") if paged else obj.get("value")) or ""
    if not field.startswith("$"):
        raise InvalidInput(f"<{obj.tag} name={to_name!r}> must read its media from task data (value=\"$field\")")
    label_el = control if control.tag.lower() == "brushlabels" else _labels_for(root, to_name)
    labels = (tuple(lb.get("value", "") for lb in label_el.iter() if lb.tag.lower() == "label")
              if label_el is not None else ())
    return Target(kind, control.get("name", ""), to_name, field[1:], paged, labels,
                  label_el.get("name", "") if label_el is not None else "")


def _labels_for(root: ElementTree.Element, to_name: str) -> ElementTree.Element | None:
    for el in root.iter():
        if el.tag.lower() == "labels" and el.get("toName") == to_name:
            return el
    return None
