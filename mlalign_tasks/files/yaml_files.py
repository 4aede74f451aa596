"""Reading the YAML files users hand us (trainer recipes, `train --config`, leaderboard manifests), safely.

`read_yaml` is PyYAML's safe loader with limits: a document that expands (aliases repeating what their anchors
name, as in an alias bomb) to more than `MAX_NODES` values, nests deeper than `MAX_DEPTH`, or a file larger than
`MAX_BYTES` or not UTF-8 is refused. Each refusal is one line naming the file and what to change.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from mlalign_tasks.errors import MlalignError

MAX_BYTES = 1 << 20  # a recipe or manifest is a few KiB
MAX_DEPTH = 32  # recipes and manifests nest three or four levels
MAX_NODES = 1 << 20  # values once aliases are expanded: a generous manifest has thousands


class _LimitedLoader(yaml.SafeLoader):
    """SafeLoader that counts each node's expanded size and depth while it composes the document."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.depth = 0
        self.sizes: dict[int, int] = {}  # id of a composed node -> its values once expanded

    def compose_node(self, parent: Any, index: Any) -> Any:
        mark = self.peek_event().start_mark
        if self.check_event(yaml.AliasEvent):
            node = super().compose_node(parent, index)
            if id(node) not in self.sizes:  # still being composed
                raise yaml.composer.ComposerError(None, None, "an alias names a value that contains it", mark)
            return node
        if self.depth >= MAX_DEPTH:
            raise yaml.composer.ComposerError(None, None, f"nests deeper than {MAX_DEPTH} levels", mark)
        self.depth += 1
        try:
            node = super().compose_node(parent, index)
        finally:
            self.depth -= 1
        if isinstance(node, yaml.MappingNode):
            children = [part for pair in node.value for part in pair]
        else:
            children = node.value if isinstance(node, yaml.SequenceNode) else []
        self.sizes[id(node)] = size = 1 + sum(self.sizes[id(child)] for child in children)
        if size > MAX_NODES:
            raise yaml.composer.ComposerError(
                None, None, f"expands to more than {MAX_NODES} values (aliases repeat what they name)", mark
            )
        return node


def read_yaml(path: Path, what: str) -> Any:
    """The document in the YAML file `path` (None when it is empty); `what` names the file in errors ("recipe").

    Refused with an MlalignError: an unreadable or non-UTF-8 file, one over MAX_BYTES, invalid YAML, a document
    that expands to more than MAX_NODES values or nests deeper than MAX_DEPTH.
    """
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_BYTES + 1)
    except OSError as e:
        raise MlalignError(f"cannot read {what} {path}: {e.strerror or e}") from None
    if len(raw) > MAX_BYTES:
        raise MlalignError(f"{what} {path} is larger than {MAX_BYTES >> 20} MiB; a {what} is a short YAML file")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise MlalignError(f"{what} {path} is not UTF-8 text (byte {e.start}); save it as UTF-8") from None
    try:
        return yaml.load(text, Loader=_LimitedLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = " ".join(str(getattr(e, "problem", None) or e).split())
        raise MlalignError(f"{what} {path} is not valid YAML: {problem}{where}") from None
