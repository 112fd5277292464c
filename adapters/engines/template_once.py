"""The chat template compiled once per replica, not once per request.

llama-cpp-python's ``chatml-function-calling`` handler (the one the backend uses, for its
tool calls) builds a sandboxed Jinja environment and compiles its template from source on
every request: several milliseconds to tens of them on a busy 2-core host, all of it
before the first token. ``compile_templates_once`` hands that module an environment class
that keeps what it compiled, by source and settings; rendering is unchanged.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from llama_cpp import llama_chat_format

_Sandboxed: Any = llama_chat_format.ImmutableSandboxedEnvironment  # type: ignore[attr-defined]
# Templates kept at most: the handlers have a handful; a bound keeps any miss from growing.
KEPT = 32


class _CompilingOnce(_Sandboxed):  # type: ignore[misc]
    """The handlers' sandboxed environment, remembering each template it compiled."""

    _compiled: OrderedDict[tuple[Any, ...], Any] = OrderedDict()

    def from_string(self, source: Any, globals: Any = None, template_class: Any = None) -> Any:
        if globals is not None or template_class is not None or not isinstance(source, str):
            return super().from_string(source, globals, template_class)
        key = (source, *self._settings())
        found = self._compiled.get(key)
        if found is None:
            found = self._compiled[key] = super().from_string(source)
            while len(self._compiled) > KEPT:
                self._compiled.popitem(last=False)
        return found

    def _settings(self) -> tuple[Any, ...]:
        """What the compiled template depends on besides its source. Autoescape as it applies
        to a template from a string: the handler passes a ``select_autoescape`` function, a new
        one each request, so the function itself would never match (and the cache would grow
        by one template a request)."""
        autoescape = self.autoescape(None) if callable(self.autoescape) else self.autoescape
        return (
            autoescape,
            self.undefined,
            self.trim_blocks,
            self.lstrip_blocks,
            self.keep_trailing_newline,
            self.newline_sequence,
            self.block_start_string,
            self.variable_start_string,
            self.comment_start_string,
            self.line_statement_prefix,
            tuple(sorted(self.extensions)),
        )


def compile_templates_once() -> None:
    """Make llama-cpp-python's chat handlers reuse their compiled templates (idempotent)."""
    llama_chat_format.ImmutableSandboxedEnvironment = _CompilingOnce  # type: ignore[attr-defined]
