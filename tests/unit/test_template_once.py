"""The chat template compiled once per replica: the same settings reuse it, other settings do not."""

from __future__ import annotations

import uuid
from typing import Any

import jinja2
from llama_cpp import llama_chat_format

from modelyard.adapters.engines.template_once import KEPT, compile_templates_once


def _as_the_tool_handler_does(source: str) -> Any:
    """``chatml_function_calling``'s own environment: a new ``select_autoescape`` each request."""
    compile_templates_once()
    return llama_chat_format.ImmutableSandboxedEnvironment(  # type: ignore[attr-defined]
        autoescape=jinja2.select_autoescape(["html", "xml"]), undefined=jinja2.StrictUndefined
    ).from_string(source)


def _source() -> str:
    return f"{{% if x %}}\n{{{{ x }}}}<{uuid.uuid4().hex}>{{% endif %}}"


def test_the_tool_handlers_template_is_compiled_once() -> None:
    source = _source()
    first = _as_the_tool_handler_does(source)
    assert _as_the_tool_handler_does(source) is first
    # Still escaped as the handler asked (a template from a string, html/xml rules).
    assert first.render(x="<i>").startswith("\n&lt;i&gt;<")


def test_other_settings_compile_their_own() -> None:
    source = _source()
    escaped = _as_the_tool_handler_does(source)
    compile_templates_once()
    trimmed = llama_chat_format.ImmutableSandboxedEnvironment(trim_blocks=True).from_string(source)  # type: ignore[attr-defined]
    assert trimmed is not escaped
    assert trimmed.render(x="<i>").startswith("<i><")


def test_the_kept_templates_are_bounded() -> None:
    source = _source()
    first = _as_the_tool_handler_does(source)
    for _ in range(KEPT):
        _as_the_tool_handler_does(_source())
    # The oldest was dropped to make room: compiled again, a new template.
    assert _as_the_tool_handler_does(source) is not first
