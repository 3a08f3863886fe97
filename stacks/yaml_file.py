"""Read a YAML input file (a stack file, a catalog file) as Pulumi's own reader does, or refuse it naming the file and line.

The Pulumi CLI reads a stack file with gopkg.in/yaml.v3 into untyped values (sdk/go/common/encoding/marshal.go and
workspace/loaders.go LoadProjectStackBytes, pulumi v3.274.1) and keeps what config can hold: strings, numbers, booleans,
null, lists and maps (sdk/go/common/resource/config/object.go unmarshalObject, v3.274.1). PyYAML's YAML 1.1 rules differ
from yaml.v3's, so the plain scalars are resolved here as yaml.v3 resolves them (gopkg.in/yaml.v3 v3.0.1 resolve.go):
`yes`, `on`, `1:30` stay strings; `1e3`, `0o17` are numbers; only true/True/TRUE and false/False/FALSE are booleans.

Refused, each with the file and line: explicit tags other than the JSON ones (`!!binary`, `!!set`, `!!omap`,
`!!python/...`, local tags), unquoted dates and times (yaml.v3 makes them timestamps and Pulumi hands the program Go's
rendering of them, object.go `v.String()`), keys that are not strings, a key given twice, nesting deeper than
MAX_DEPTH, more than MAX_NODES values once aliases are expanded (alias bombs) and files over MAX_BYTES. Merge keys
(`<<: *base`, `<<: [*a, *b]`) work as in yaml.v3 (decode.go `merge`): keys of the mapping itself win over merged
ones, and an earlier merged mapping over a later one.
"""

from __future__ import annotations

import datetime
import math
import re
from pathlib import Path
from typing import Any

import yaml
from yaml.composer import Composer
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.parser import Parser
from yaml.reader import Reader
from yaml.resolver import BaseResolver
from yaml.scanner import Scanner

MAX_BYTES = 1 << 20
"""A stack file or catalog file is a few KiB; 1 MiB is far beyond any real one."""
MAX_DEPTH = 64
"""Nesting levels (the deepest stack key is about 8 levels down)."""
MAX_NODES = 100_000
"""Values after alias expansion: stops an alias bomb ("billion laughs") long before it fills memory."""

STACK_FILE_KEYS = ("config", "secretsprovider", "encryptedkey", "encryptionsalt", "environment")
"""The top-level keys of a stack file Pulumi reads (sdk/go/common/workspace/project.go ProjectStack, v3.274.1)."""

_TAG = "tag:yaml.org,2002:"
_REFUSED_TAGS = {
    "binary": "Pulumi config holds text; give the text itself",
    "set": "use a list",
    "omap": "use a mapping",
    "pairs": "use a mapping",
    "timestamp": "quote the date to keep it as text",
}
_NULLS = {"", "~", "null", "Null", "NULL"}
_BOOLS = {"true": True, "True": True, "TRUE": True, "false": False, "False": False, "FALSE": False}
_SPECIAL_FLOATS = {".nan": math.nan, ".NaN": math.nan, ".NAN": math.nan,
                   **{f"{s}{inf}": (-math.inf if s == "-" else math.inf)
                      for s in ("", "+", "-") for inf in (".inf", ".Inf", ".INF")}}
_DOT_FLOAT = re.compile(r"^\.[0-9]+([eE][-+]?[0-9]+)?$")
_YAML_FLOAT = re.compile(r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$")  # resolve.go yamlStyleFloat
_GO_INT = re.compile(r"^([-+]?)(0[xX][0-9a-fA-F]+|0[oO][0-7]+|0[bB][01]+|0[0-7]*|[1-9][0-9]*)$")  # strconv base 0
_DATE = r"(\d{4})-(\d{1,2})-(\d{1,2})"
_TIMESTAMPS = (  # resolve.go allowedTimestampFormats, as Go's time.Parse reads them
    re.compile(rf"^{_DATE}$"),
    re.compile(rf"^{_DATE}[Tt](\d{{1,2}}):(\d{{1,2}}):(\d{{1,2}})(\.\d+)?(Z|[+-]\d{{2}}:\d{{2}})$"),
    re.compile(rf"^{_DATE} (\d{{1,2}}):(\d{{1,2}}):(\d{{1,2}})(\.\d+)?$"),
)


class YamlFileError(Exception):
    """A file that is not YAML, or holds what Pulumi config cannot: one line naming the file (and line)."""


class _Timestamp(str):
    """A plain scalar yaml.v3 reads as a timestamp."""


def _go_int(plain: str) -> int | None:
    """strconv.ParseInt(plain, 0, 64), else strconv.ParseUint (no sign): what resolve.go tries first."""
    m = _GO_INT.match(plain)
    if not m:
        return None
    sign, body = m.groups()
    prefix = body[:2].lower()
    if prefix in ("0x", "0o", "0b"):
        value = int(body[2:], {"0x": 16, "0o": 8, "0b": 2}[prefix])
    else:
        value = int(body, 8 if body.startswith("0") else 10)  # a leading 0 is octal to Go, as in YAML 1.1
    value = -value if sign == "-" else value
    if -2**63 <= value < 2**63 or (not sign and 0 <= value < 2**64):
        return value
    return None


def _is_timestamp(s: str) -> bool:
    for pattern in _TIMESTAMPS:
        m = pattern.match(s)
        if m:
            y, mo, d, *rest = m.groups()
            try:
                datetime.date(int(y), int(mo), int(d))
            except ValueError:
                return False
            return not rest or (int(rest[0]) < 24 and int(rest[1]) < 60 and int(rest[2]) < 60)
    return False


def resolve_plain(s: str) -> Any:
    """A plain (unquoted, untagged) scalar as yaml.v3 resolves it into an untyped value (resolve.go `resolve`)."""
    if s in _NULLS:
        return None
    if s in _BOOLS:
        return _BOOLS[s]
    if s in _SPECIAL_FLOATS:
        return _SPECIAL_FLOATS[s]
    if s[0] == ".":
        return float(s) if _DOT_FLOAT.match(s) else s
    if s[0] in "+-0123456789":
        if _is_timestamp(s):
            return _Timestamp(s)
        plain = s.replace("_", "")
        number = _go_int(plain)
        if number is not None:
            return number
        if _YAML_FLOAT.match(plain) and not math.isinf(float(plain)):
            return float(plain)
    return s


class _Composer(Reader, Scanner, Parser, Composer, BaseResolver):
    """PyYAML's parser and composer with no implicit typing (done by _Builder) and a bound on nesting."""

    def __init__(self, text: str, shown: str) -> None:
        Reader.__init__(self, text)
        self.name = shown
        Scanner.__init__(self)
        Parser.__init__(self)
        Composer.__init__(self)
        BaseResolver.__init__(self)
        self.depth = 0

    def compose_node(self, parent, index):
        if self.depth >= MAX_DEPTH:
            raise YamlFileError(f"{self.name} line {self.peek_event().start_mark.line + 1}: nested deeper than {MAX_DEPTH} "
                                "levels; no stack or catalog file needs that: flatten it")
        self.depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1

    def compose_scalar_node(self, anchor):
        event = self.get_event()  # the tag stays as written (None when untagged): _Builder tells plain from quoted
        node = ScalarNode(event.tag, event.value, event.start_mark, event.end_mark, style=event.style)
        if anchor is not None:
            self.anchors[anchor] = node
        return node


def _short(tag: str) -> str:
    return "!!" + tag[len(_TAG):] if tag.startswith(_TAG) else tag


class _Builder:
    """Composed nodes -> JSON values, counting every value an alias brings in again."""

    def __init__(self, shown: str) -> None:
        self.shown = shown
        self.nodes = 0

    def fail(self, node: Node, text: str) -> YamlFileError:
        return YamlFileError(f"{self.shown} line {node.start_mark.line + 1}: {text}")

    def build(self, node: Node, depth: int = 1) -> Any:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise YamlFileError(f"{self.shown}: more than {MAX_NODES} values once its aliases are expanded (an alias bomb?); "
                                "write the values out instead of nesting aliases")
        if depth > MAX_DEPTH:
            raise self.fail(node, f"nested deeper than {MAX_DEPTH} levels once its aliases are expanded (an anchor that "
                                  "holds its own alias nests forever); write the values out")
        if isinstance(node, ScalarNode):
            return self.scalar(node)
        if node.tag not in (f"{_TAG}seq", f"{_TAG}map"):
            raise self.refused(node)
        if isinstance(node, SequenceNode):
            return [self.build(item, depth + 1) for item in node.value]
        return self.mapping(node, depth)

    def refused(self, node: Node) -> YamlFileError:
        name = node.tag[len(_TAG):] if node.tag.startswith(_TAG) else ""
        fix = _REFUSED_TAGS.get(name, "remove the tag")
        return self.fail(node, f"the tag {_short(node.tag)} makes a value Pulumi config cannot hold (it holds strings, numbers, "
                               f"booleans, null, lists and mappings): {fix}")

    def scalar(self, node: ScalarNode) -> Any:
        tag, text = node.tag, node.value
        if tag is None and node.style is None:
            value = resolve_plain(text)
            if isinstance(value, _Timestamp):
                raise self.fail(node, f"{text} is an unquoted date: Pulumi's YAML reader (yaml.v3) makes it a timestamp and "
                                      f"hands the program Go's rendering of it (2024-01-01 becomes '2024-01-01 00:00:00 "
                                      f"+0000 UTC'), not the text; quote it: '{text}'")
            return value
        if tag in (None, "!", f"{_TAG}str"):
            return text
        expected = {f"{_TAG}int": int, f"{_TAG}float": float, f"{_TAG}bool": bool, f"{_TAG}null": type(None)}.get(tag)
        if expected is None:
            raise self.refused(node)
        value = resolve_plain(text) if text else None
        if expected is float and type(value) is int:
            return float(value)
        if type(value) is not expected:
            raise self.fail(node, f"{text!r} is not a valid {_short(tag)}; fix the value or remove the tag")
        return value

    def key(self, node: Node, depth: int) -> str:
        if not isinstance(node, ScalarNode):
            raise self.fail(node, "a list or mapping used as a key; keys are strings")
        value = self.build(node, depth)
        if not isinstance(value, str):
            kind = "null" if value is None else "a boolean" if isinstance(value, bool) else "a number"
            raise self.fail(node, f"the key {node.value or '(empty)'} is read as {kind}, not a string; config keys are "
                                  f"strings: quote it ('{node.value}')")
        return value

    def mapping(self, node: MappingNode, depth: int) -> dict[str, Any]:
        out: dict[str, Any] = {}
        lines: dict[str, int] = {}
        merge: Node | None = None
        merge_key: Node = node
        for key_node, value_node in node.value:
            line = key_node.start_mark.line + 1
            if _is_merge(key_node):
                if merge is not None:
                    raise self.fail(key_node, "`<<` is given twice in one mapping; merge several with `<<: [*a, *b]`")
                merge, merge_key = value_node, key_node
                continue
            k = self.key(key_node, depth + 1)
            if k in lines:
                raise self.fail(key_node, f"key {k!r} is given twice (first at line {lines[k]}); the second would silently "
                                          "replace the first: merge them or delete one")
            lines[k] = line
            out[k] = self.build(value_node, depth + 1)
        if merge is not None:
            sources = merge.value if isinstance(merge, SequenceNode) else [merge]
            for source in sources:
                if not isinstance(source, MappingNode):
                    raise self.fail(merge_key, "`<<` merges mappings: give an alias of one (`<<: *base`) or a list of them "
                                            "(`<<: [*a, *b]`)")
                for k, v in self.mapping(source, depth + 1).items():
                    out.setdefault(k, v)  # the mapping's own keys, then earlier merged mappings, win
        return out


def _is_merge(node: Node) -> bool:
    """yaml.v3 decode.go isMerge: a `<<` key, untagged, `!` or `!!merge`."""
    return (isinstance(node, ScalarNode) and node.value == "<<"
            and (node.tag in ("!", f"{_TAG}merge") or node.tag is None and node.style is None))


def load(path: Path, shown: str | None = None) -> Any:
    """The file's one document as JSON values; `shown` names the file in errors (default: the path)."""
    name = shown or str(path)
    data = path.read_bytes()
    if len(data) > MAX_BYTES:
        raise YamlFileError(f"{name} is {len(data)} bytes, more than the {MAX_BYTES} (1 MiB) read of a stack or catalog "
                            "file; is it the right file?")
    try:
        text = data.decode("utf-8-sig")  # Pulumi strips a byte order mark too (loaders.go readFileStripUTF8BOM)
    except UnicodeDecodeError as exc:
        raise YamlFileError(f"{name} is not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
    loader = _Composer(text, name)
    try:
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" line {mark.line + 1}" if mark is not None else ""
        what = "; ".join(p for p in (exc.context, exc.problem) if p)
        raise YamlFileError(f"{name}{where} is not valid YAML: {what}") from None
    except yaml.YAMLError as exc:
        raise YamlFileError(f"{name} is not valid YAML: {exc}") from None
    finally:
        loader.dispose()
    return None if node is None else _Builder(name).build(node)


def load_stack_file(path: Path, shown: str | None = None) -> dict[str, Any]:
    """A stack file (`Pulumi.<stack>.yaml`): a mapping with a `config:` mapping, and only keys Pulumi reads."""
    name = shown or str(path)
    data = load(path, name)
    if data is None:
        raise YamlFileError(f"{name} is empty: a stack file holds a `config:` mapping of the stack's settings "
                            "(config:\\n  llm-infra:nodes: ...); see Pulumi.dev.yaml")
    if not isinstance(data, dict):
        raise YamlFileError(f"{name}: expected a mapping with a 'config:' mapping, not a {type(data).__name__}")
    unread = [k for k in data if k not in STACK_FILE_KEYS]
    if unread:
        raise YamlFileError(f"{name}: top-level key {unread[0]!r} is not read by Pulumi (it reads only "
                            f"{', '.join(STACK_FILE_KEYS)}): put the stack's settings under `config:`")
    if not isinstance(data.get("config"), dict):
        raise YamlFileError(f"{name}: expected a mapping with a 'config:' mapping"
                            + ("; `config:` is empty" if "config" in data else "; there is no `config:`"))
    return data
