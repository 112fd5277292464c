"""An OpenAI chat request's fields in the terms llama-cpp-python's ChatML handler takes.

The ``chatml-function-calling`` handler renders messages with a strict template that knows
only system, user and assistant messages with a ``content`` key: an assistant message that
carries ``tool_calls`` and no ``content`` (what OpenAI clients send back in a tool round
trip) made it raise, and a tool's answer was dropped from the prompt. ``engine_messages``
hands it messages it renders: developer as system, a tool's answer as a user turn naming
the function it answers, content parts joined into text. ``response_grammar`` enforces
``response_format`` with a grammar; ``PromptCounter`` counts the prompt the engine really
evaluated with the model's own tokenizer.
"""

from __future__ import annotations

import json
from typing import Any

from modelyard.adapters.engines.backends import Refused


def engine_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The conversation as the ChatML template renders it, nothing of it dropped."""
    called: dict[str, str] = {}
    out: list[dict[str, Any]] = []
    for message in messages:
        role, text = str(message.get("role")), _text(message.get("content"))
        if role == "assistant":
            calls = message.get("tool_calls") or []
            called |= {str(c.get("id")): str(c["function"]["name"]) for c in calls}
            out.append({"role": "assistant", "content": text} | ({"tool_calls": calls} if calls else {}))
        elif role == "tool":
            name = called.get(str(message.get("tool_call_id")), "the function")
            out.append({"role": "user", "content": f"{name} returned:\n{text}"})
        else:
            out.append({"role": "system" if role == "developer" else role, "content": text})
    return out


def _text(content: Any) -> str:
    """A message's content as text; a part this text-only engine cannot read is refused."""
    if content is None or isinstance(content, str):
        return content or ""
    texts = []
    for part in content:
        kind = part.get("type")
        if kind == "text":
            texts.append(str(part.get("text") or ""))
        elif kind == "refusal":
            texts.append(str(part.get("refusal") or ""))
        else:
            raise Refused(f"This model reads text only; it cannot take a '{kind}' content part.")
    return "\n".join(texts)


def response_grammar(request: dict[str, Any]) -> Any:
    """The grammar that makes the answer JSON (of the given schema), or None for free text.

    Built here rather than by the handler, which would fall back to any JSON, silently,
    for a schema llama.cpp's converter cannot express: that is refused instead.
    """
    wanted = request.get("response_format") or {}
    kind = wanted.get("type", "text")
    if kind == "text":
        return None
    from llama_cpp.llama_grammar import JSON_GBNF, LlamaGrammar

    schema = (wanted.get("json_schema") or {}).get("schema") if kind == "json_schema" else None
    if schema is None:
        return LlamaGrammar.from_string(JSON_GBNF, verbose=False)
    try:
        return LlamaGrammar.from_json_schema(json.dumps(schema), verbose=False)
    except Exception as exc:  # the converter's errors are of many kinds; each means "cannot"
        raise Refused(f"This engine cannot enforce that JSON schema: {exc}") from exc


def refuse_logprobs(request: dict[str, Any]) -> None:
    """llama.cpp returns log-probabilities only when every position's logits are kept (a
    vocabulary-sized row per context token, hundreds of MB a replica): refused, not faked."""
    if request.get("logprobs"):
        raise Refused("logprobs are not served by this model's engine (llama.cpp); leave logprobs out.")


class PromptCounter:
    """The model, as the chat handler sees it, counting the prompt it is asked to complete.

    The handler renders the conversation (tools included) into one prompt and calls
    ``create_completion`` with it; this counts that prompt with the model's tokenizer, as
    the model tokenizes it, so usage reports the tokens the engine evaluated.
    """

    def __init__(self, llm: Any) -> None:
        self._llm = llm
        self.prompt_tokens: int | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._llm, name)

    def create_completion(self, prompt: str, **options: Any) -> Any:
        """Count ``prompt``, then complete it as the model does."""
        self.prompt_tokens = len(self._llm.tokenize(prompt.encode(), add_bos=True, special=True))
        return self._llm.create_completion(prompt=prompt, **options)
