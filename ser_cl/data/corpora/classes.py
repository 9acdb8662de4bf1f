"""Class selection / mapping: the ``--classes`` spec (``parse_classes``) and the ``ClassMap`` it
gives, which turns corpus labels into training classes after a reader has listed them."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, Optional

from ser_cl.data.corpora.base import CorpusError


@dataclass(frozen=True)
class ClassMap:
    """Which corpus labels become which training class, and the class order.

    ``classes`` is the ordered list of class names (the model's output order);
    ``mapping`` maps each kept corpus label to its class. Labels not in ``mapping`` are dropped.
    """

    classes: tuple[str, ...]
    mapping: dict[str, str]
    spec: str

    def class_of(self, label: str) -> Optional[str]:
        return self.mapping.get(label)

    def sources(self, class_name: str) -> list[str]:
        return [label for label, c in self.mapping.items() if c == class_name]


_BAD_NAME = re.compile(r"[,+=\s]")


def parse_classes(spec: str, available: Optional[Iterable[str]] = None) -> ClassMap:
    """Parse a ``--classes`` spec into a ClassMap.

    Syntax: comma-separated items, each ``LABEL[+LABEL...][=NAME]``:

    - ``neu,hap,sad,ang``                  keep these four labels, in this order, under their own names
    - ``hap+exc=happy``                    merge labels hap and exc into class "happy"
    - ``neu=neutral,hap+exc=happy,sad,ang=angry``  select, merge and rename at once
    - ``hap+exc``                          merge under the first label's name ("hap")
    - ``all``                              every label in ``available``, sorted, unchanged

    Class order is the order of first appearance; two items with the same NAME merge into one
    class. A label may appear only once. Labels not named are dropped.
    """
    spec = (spec or "").strip()
    if not spec:
        raise CorpusError("empty --classes spec")
    if spec.lower() in ("all", "*"):
        if available is None:
            raise CorpusError("--classes all needs the corpus' labels")
        labels = sorted(set(available))
        return ClassMap(tuple(labels), {label: label for label in labels}, spec)
    classes: list[str] = []
    mapping: dict[str, str] = {}
    for item in spec.split(","):
        item = item.strip()
        if not item:
            raise CorpusError(f"--classes {spec!r}: empty item (two commas in a row?)")
        if item.count("=") > 1:
            raise CorpusError(f"--classes {spec!r}: item {item!r} has more than one '='")
        sources_part, _, name = item.partition("=")
        sources = [s.strip() for s in sources_part.split("+")]
        name = name.strip() if "=" in item else sources[0]
        for token in sources + [name]:
            if not token or _BAD_NAME.search(token):
                raise CorpusError(f"--classes {spec!r}: bad label or class name in item {item!r}")
        for source in sources:
            if source in mapping:
                raise CorpusError(f"--classes {spec!r}: label {source!r} appears twice")
            mapping[source] = name
        if name not in classes:
            classes.append(name)
    return ClassMap(tuple(classes), mapping, spec)
