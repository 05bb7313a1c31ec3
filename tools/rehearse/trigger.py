"""The pipeline's push trigger as the rehearsal plays it: which pushes start an execution (R4.1).

A V2 pipeline's trigger (`trigger[].git_configuration.push[]`) filters a push by the branch it moves and the
files it changes, each with `includes` and `excludes` glob patterns, the excludes taking priority
(https://docs.aws.amazon.com/codepipeline/latest/APIReference/API_GitFilePathFilterCriteria.html). The glob
syntax is AWS's (https://docs.aws.amazon.com/codepipeline/latest/userguide/syntax-glob.html): `**` crosses
directories, `*` and `?` stay within one path component, `[...]` is one character of a set (`[!...]` negates),
`{a,b}` either subpattern (groups do not nest), `\\` escapes.

What AWS does not spell out, and the rehearsal assumes: a file counts when it matches an include (any file,
when there are none) and no exclude; a push starts an execution when one of its changed files counts, in one of
the trigger's push filters whose branches admit the branch. Tag filters are not modelled: the rehearsal only
pushes branches.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@functools.lru_cache(maxsize=256)
def glob_regex(glob: str) -> re.Pattern[str]:
    """AWS's trigger glob as a regular expression over a whole repository path (`a/b/c.md`, no leading `/`)."""
    parts: list[str] = []
    in_group = False
    index = 0
    while index < len(glob):
        char = glob[index]
        if char == "\\" and index + 1 < len(glob):
            parts.append(re.escape(glob[index + 1]))
            index += 2
            continue
        if glob.startswith("**", index):
            parts.append(".*")
            index += 2
            continue
        if char == "[":
            bracket, index = _bracket(glob, index)
            parts.append(bracket)
            continue
        if char == "{":
            if in_group:
                raise ValueError(f"glob {glob!r}: groups cannot be nested")
            in_group = True
            parts.append("(?:")
        elif char == "}" and in_group:
            in_group = False
            parts.append(")")
        elif char == "," and in_group:
            parts.append("|")
        else:
            parts.append({"*": "[^/]*", "?": "[^/]"}.get(char) or re.escape(char))
        index += 1
    if in_group:
        raise ValueError(f"glob {glob!r}: a group opened with {{ is never closed")
    return re.compile("".join(parts), re.DOTALL)


def _bracket(glob: str, start: int) -> tuple[str, int]:
    """The bracket expression at `glob[start] == "["`, as a regex class, and the index after its `]`. Inside it
    `*`, `?` and `\\` match themselves and a leading `-` is literal, as in a regex class; like `*`, it never
    matches the `/` between path components."""
    body_start = start + 1
    negated = glob.startswith("!", body_start)
    if negated:
        body_start += 1
    end = glob.find("]", body_start)
    if end < 0 or end == body_start:
        raise ValueError(f"glob {glob!r}: the bracket expression at {start} is empty or never closed")
    body = "".join("\\" + c if c in "\\^[]" else c for c in glob[body_start:end])
    return f"(?!/)[{'^' if negated else ''}{body}]", end + 1


def glob_matches(glob: str, path: str) -> bool:
    return glob_regex(glob).fullmatch(path) is not None


@dataclass(frozen=True)
class Patterns:
    """A filter's `includes` and `excludes`: a name passes when it matches an include (any name, when there are
    none) and no exclude."""

    includes: tuple[str, ...] = ()
    excludes: tuple[str, ...] = ()

    def admits(self, name: str) -> bool:
        included = not self.includes or any(glob_matches(glob, name) for glob in self.includes)
        return included and not any(glob_matches(glob, name) for glob in self.excludes)

    def __str__(self) -> str:
        return f"includes {list(self.includes)}, excludes {list(self.excludes)}"


@dataclass(frozen=True)
class PushFilter:
    """One `push` entry of the trigger: its branches, and its file paths (None: any change starts it)."""

    branches: Patterns
    file_paths: Patterns | None = None

    def starts(self, branch: str, files: Sequence[str]) -> bool:
        if not self.branches.admits(branch):
            return False
        return self.file_paths is None or any(self.file_paths.admits(path) for path in files)

    def __str__(self) -> str:
        paths = f"; file_paths {self.file_paths}" if self.file_paths else ""
        return f"branches {self.branches}{paths}"


def blocks(value: Any) -> list[dict[str, Any]]:
    """A nested block as the state holds it: cdktf's JSON writes one block as an object, several as a list."""
    if not value:
        return []
    return [dict(block) for block in value] if isinstance(value, list) else [dict(value)]


def _patterns(block: dict[str, Any]) -> Patterns:
    return Patterns(tuple(block.get("includes") or ()), tuple(block.get("excludes") or ()))


def read_push_filters(pipeline: dict[str, Any]) -> tuple[PushFilter, ...] | None:
    """The push filters of an aws_codepipeline's `trigger`; None when it has no trigger, which AWS reads as its
    default: every push to the Source action's branch starts an execution."""
    triggers = blocks(pipeline.get("trigger"))
    if not triggers:
        return None
    filters = []
    for trigger in triggers:
        for git in blocks(trigger.get("git_configuration")):
            for push in blocks(git.get("push")):
                # A push entry without branches filters tags, which a branch push never matches.
                for branches in blocks(push.get("branches")):
                    paths = blocks(push.get("file_paths"))
                    filters.append(PushFilter(_patterns(branches), _patterns(paths[0]) if paths else None))
    return tuple(filters)


def trigger_refusal(filters: tuple[PushFilter, ...] | None, branch: str, files: Sequence[str]) -> str:
    """Why a push of `branch` that changes `files` starts no execution; "" when it starts one."""
    if filters is None or any(push.starts(branch, files) for push in filters):
        return ""
    shown = ", ".join(files[:3]) + (f" and {len(files) - 3} more" if len(files) > 3 else "")
    return (
        f"the push to {branch} changes {shown or 'no file'}, which no push filter of the trigger starts an "
        f"execution for ({'; '.join(map(str, filters)) or 'no push filter'})"
    )
