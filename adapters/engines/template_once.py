"""The chat template compiled once per replica, not once per request.

llama-cpp-python's ``chatml-function-calling`` handler (the one the backend uses, for its
tool calls) builds a sandboxed Jinja environment and compiles its template from source on
every request: several milliseconds to tens of them on a busy 2-core host, all of it
before the first token. ``compile_templates_once`` hands that module an environment class
that keeps what it compiled, by source and settings; rendering is unchanged.
"""

from __future__ import annotations

from typing import Any

from llama_cpp import llama_chat_format

_Sandboxed: Any = llama_chat_format.ImmutableSandboxedEnvironment  # type: ignore[attr-defined]


class _CompilingOnce(_Sandboxed):  # type: ignore[misc]
    """The handlers' sandboxed environment, remembering each template it compiled."""

    _compiled: dict[tuple[str, Any, Any], Any] = {}

    def from_string(self, source: Any, globals: Any = None, template_class: Any = None) -> Any:
        if globals is not None or template_class is not None or not isinstance(source, str):
            return super().from_string(source, globals, template_class)
        key = (source, self.undefined, self.autoescape)
        found = self._compiled.get(key)
        if found is None:
            found = self._compiled[key] = super().from_string(source)
        return found


def compile_templates_once() -> None:
    """Make llama-cpp-python's chat handlers reuse their compiled templates (idempotent)."""
    llama_chat_format.ImmutableSandboxedEnvironment = _CompilingOnce  # type: ignore[attr-defined]
