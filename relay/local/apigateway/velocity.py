"""API Gateway's mapping-template language for `relay dev`: Velocity with `$input`, `$util`, `$context`.

Why: `relay dev` runs the stack's own mapping templates instead of a Python copy of what they do,
so a template that is wrong on AWS is wrong locally too. The engine is airspeed-ext, a Velocity
implementation made for AWS templates (undefined references render as nothing, as on AWS); this
module adds the variables API Gateway documents in its mapping template reference:

- `$input.body`, `$input.json(path)`, `$input.path(path)`, `$input.params()` / `params(name)`;
- `$util.escapeJavaScript`, `base64Encode`/`base64Decode`, `parseJson`, `urlEncode`/`urlDecode`;
- `$context` as the caller builds it (requestId, identity, authorizer, ...), with
  `$context.responseOverride.status` and `.header` read back after rendering.

Gateway responses are not Velocity on AWS (only `$context`/`$stageVariables` substitution), so
`substitute` does just that.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from urllib.parse import quote_plus, unquote_plus

import airspeed
from airspeed.operators import __additional_methods__ as VELOCITY_METHODS
from jsonpath_ng import parse as parse_jsonpath


class MappingError(Exception):
    """A template that API Gateway could not render (a configuration error: 500 on AWS)."""


class VelocityMap(dict[str, Any]):
    """A JSON object as Velocity sees it: a Java map, printed as `{key=value, ...}`."""

    def __str__(self) -> str:
        return "{" + ", ".join(f"{key}={_text(value)}" for key, value in self.items()) + "}"


class VelocityList(list[Any]):
    """A JSON array as `$input.path` gives it: printed as JSON, as API Gateway does."""

    def __str__(self) -> str:
        return json.dumps(_plain(self), separators=(",", ":"), ensure_ascii=False)


# Velocity's Java methods (`.size()`, `.keySet()`, `.get(...)`) on the wrapped values too.
VELOCITY_METHODS[VelocityMap] = VELOCITY_METHODS[dict]
VELOCITY_METHODS[VelocityList] = VELOCITY_METHODS[list]


def _velocity(value: Any) -> Any:
    if isinstance(value, dict):
        return VelocityMap({key: _velocity(item) for key, item in value.items()})
    if isinstance(value, list):
        return VelocityList(_velocity(item) for item in value)
    return value


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value


def _text(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


@lru_cache(maxsize=256)
def _jsonpath(expression: str) -> Any:
    return parse_jsonpath(expression)


class MappingInput:
    """`$input`: the payload (a request body, or an integration's response) and the request parameters."""

    def __init__(self, body: str, params: dict[str, dict[str, str]]) -> None:
        self._body = body
        self._params = params

    @property
    def body(self) -> str:
        return self._body

    def _select(self, path: str) -> Any:
        try:
            document = json.loads(self._body) if self._body.strip() else {}
            matches = [match.value for match in _jsonpath(path or "$").find(document)]
        except Exception as error:
            raise MappingError(f"$input could not evaluate {path!r}: {error}") from None
        if not matches:
            return None
        return matches[0] if len(matches) == 1 else matches

    def json(self, path: str = "$") -> str:
        """What `path` selects, as JSON text."""
        return json.dumps(self._select(path), separators=(",", ":"), ensure_ascii=False)

    def path(self, path: str) -> Any:
        """What `path` selects, as objects a template can walk (`$input.path('$').status`)."""
        return _velocity(self._select(path))

    def params(self, name: str | None = None) -> Any:
        """All parameters (`path`, `querystring`, `header`), or one by name, looked up in that order."""
        if name is None:
            return _velocity(self._params)
        for kind in ("path", "querystring", "header"):
            value = self._params.get(kind, {}).get(name)
            if value is not None:
                return value
        return None


def escape_javascript(value: Any) -> str:
    """Java's StringEscapeUtils.escapeJavaScript, which API Gateway's `$util.escapeJavaScript` is."""
    escaped = []
    for unit in _utf16_units(_text(value)):
        char = chr(unit)
        if char in _JAVASCRIPT_ESCAPES:
            escaped.append(_JAVASCRIPT_ESCAPES[char])
        elif unit < 0x20 or unit > 0x7E:
            escaped.append(f"\\u{unit:04X}")
        else:
            escaped.append(char)
    return "".join(escaped)


_JAVASCRIPT_ESCAPES = {
    "\b": "\\b",
    "\n": "\\n",
    "\t": "\\t",
    "\f": "\\f",
    "\r": "\\r",
    "'": "\\'",
    '"': '\\"',
    "\\": "\\\\",
    "/": "\\/",
}


def _utf16_units(text: str) -> list[int]:
    """Java strings are UTF-16: a character outside the BMP is escaped as its two surrogates."""
    data = text.encode("utf-16-be", "surrogatepass")
    return [int.from_bytes(data[index : index + 2], "big") for index in range(0, len(data), 2)]


class MappingUtil:
    """`$util`: the functions API Gateway offers mapping templates."""

    @staticmethod
    def escapeJavaScript(value: Any) -> str:
        return escape_javascript(value)

    @staticmethod
    def base64Encode(value: Any) -> str:
        # surrogateescape: `relay dev` hands the body over byte for byte, even when it is not UTF-8.
        return base64.b64encode(_text(value).encode("utf-8", "surrogateescape")).decode("ascii")

    @staticmethod
    def base64Decode(value: Any) -> str:
        return base64.b64decode(_text(value)).decode("utf-8", "replace")

    @staticmethod
    def parseJson(value: Any) -> Any:
        try:
            return _velocity(json.loads(_text(value)))
        except ValueError as error:
            raise MappingError(f"$util.parseJson: {error}") from None

    @staticmethod
    def urlEncode(value: Any) -> str:
        # application/x-www-form-urlencoded as Java's URLEncoder writes it ('~' encoded, '*' not).
        return quote_plus(_text(value), safe="*").replace("~", "%7E")

    @staticmethod
    def urlDecode(value: Any) -> str:
        return unquote_plus(_text(value))


@dataclass(frozen=True)
class Rendered:
    """A rendered template, and what it set in `$context.responseOverride`."""

    text: str
    status: int | None
    headers: dict[str, str]


@lru_cache(maxsize=64)
def _template(text: str) -> airspeed.Template:
    template = airspeed.Template(text)
    try:
        template.ensure_compiled()
    except airspeed.TemplateSyntaxError as error:
        raise MappingError(f"mapping template does not parse: {error}") from None
    return template


def render(template: str, *, body: str, params: dict[str, dict[str, str]], context: dict[str, Any]) -> Rendered:
    """Render one mapping template; `context` is `$context` (left untouched: a copy is rendered)."""
    velocity_context = _velocity(context)
    velocity_context.setdefault("responseOverride", VelocityMap(header=VelocityMap()))
    velocity_context["responseOverride"].setdefault("header", VelocityMap())
    namespace = {
        "input": MappingInput(body, params),
        "util": MappingUtil(),
        "context": velocity_context,
        "stageVariables": VelocityMap(),
    }
    try:
        text = _template(template).merge(namespace)
    except MappingError:
        raise
    except Exception as error:  # airspeed's execution errors, and ours from inside the template
        raise MappingError(f"mapping template failed: {error}") from None
    override = velocity_context["responseOverride"]
    status = override.get("status")
    return Rendered(
        text=text,
        status=int(status) if status not in (None, "") else None,
        headers={str(name): _text(value) for name, value in override["header"].items()},
    )


_SUBSTITUTION = re.compile(r"\$(context|stageVariables)((?:\.[A-Za-z0-9_]+)+)")


def substitute(template: str, context: dict[str, Any], stage_variables: dict[str, str] | None = None) -> str:
    """A gateway response template: `$context.x.y` and `$stageVariables.x` replaced, nothing else."""
    roots = {"context": context, "stageVariables": stage_variables or {}}

    def value_of(match: re.Match[str]) -> str:
        value: Any = roots[match.group(1)]
        for name in match.group(2).strip(".").split("."):
            value = value.get(name) if isinstance(value, dict) else None
        return "" if value is None else _text(value)

    return _SUBSTITUTION.sub(value_of, template)
