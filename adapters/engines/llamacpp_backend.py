"""The llama.cpp backend: a GGUF model on the CPU through llama-cpp-python, one generation at a time.

Tool calls go through llama-cpp's ``chatml-function-calling`` chat format, because
SmolLM2 is a ChatML model and that format constrains a named call's arguments with a
grammar built from the tool's JSON schema, so even a 135M model emits arguments that
parse. That format's own ``auto`` mode cannot stream and, for a message, its follow-up
grammar admits only the end token (an empty answer), and it has no ``required``; so the
decision is ours: one short grammar-constrained completion picks among the tool names
(plus "answer" under ``auto``), then the call streams as a named one or the answer
streams as plain chat. Every path streams token by token and stops on cancel.
"""

from __future__ import annotations

import threading
from collections.abc import Generator, Iterator
from typing import Any

from modelyard.adapters.engines.backends import ContextOverflow, prompt_text, usage
from modelyard.adapters.engines.llamacpp_fields import (
    PromptCounter,
    engine_messages,
    refuse_logprobs,
    response_grammar,
)

# llama-cpp repeats the legacy ``function_call`` beside ``tool_calls``; OpenAI streams carry only the latter.
_LEGACY_KEYS = ("function_call",)
# The word the tool decision uses for "no call, answer in words".
ANSWER = "answer"


class LlamaCppBackend:
    """A GGUF model on the CPU through llama-cpp-python; one generation at a time."""

    def __init__(
        self,
        *,
        model: str,
        path: str,
        context_window: int = 2048,
        threads: int = 2,
        batch: int = 512,
        kv_cache: str = "",
        draft_tokens: int = 0,
        prompt_cache_bytes: int = 0,
    ) -> None:
        from modelyard.adapters.engines.prompt_cache import CachingLlama, PromptCache
        from modelyard.adapters.engines.template_once import compile_templates_once

        compile_templates_once()
        self.model, self.context_window = model, context_window
        self._llm = CachingLlama(
            model_path=path,
            n_ctx=context_window,
            n_threads=threads,
            n_batch=batch,
            verbose=False,
            chat_format="chatml-function-calling",
            **_preset_options(kv_cache, draft_tokens),
        )
        # Recent prompts' KV state, so a conversation's next turn evaluates only its new tokens
        # even after other conversations spoke in between (0 bytes: only the last prompt's).
        self._llm.prompt_cache = PromptCache(prompt_cache_bytes) if prompt_cache_bytes > 0 else None
        self._lock = threading.Lock()

    def count_tokens(self, request: dict[str, Any]) -> int:
        """Prompt tokens: the messages' text plus ChatML's few tokens of framing per message."""
        text = prompt_text(request)
        return len(self._llm.tokenize(text.encode(), add_bos=True)) + 4 * len(request.get("messages", []))

    def generate(self, request: dict[str, Any], cancel: threading.Event) -> Iterator[dict[str, Any]]:
        """Chunks of one chat completion; stops between tokens once ``cancel`` is set."""
        refuse_logprobs(request)
        messages = engine_messages(request["messages"])
        prompt_tokens = self.count_tokens(request)
        # Like vLLM, no max_tokens means whatever room the context window has left.
        max_tokens = int(request.get("max_tokens") or self.context_window - prompt_tokens)
        if prompt_tokens + max_tokens > self.context_window:
            raise _overflow(prompt_tokens, max_tokens, self.context_window)
        # No repetition penalty, as in OpenAI's API, vLLM and llama-cpp-python's own chat
        # completion: the tool handler called directly defaults to 1.1, which changes the
        # answer and costs about 0.2 ms a token (a pass over the whole vocabulary).
        options: dict[str, Any] = {"repeat_penalty": 1.0} | {
            k: request[k] for k in ("temperature", "top_p", "stop", "seed") if request.get(k) is not None
        }
        if (grammar := response_grammar(request)) is not None:
            options["grammar"] = grammar
        with self._lock:
            if request.get("seed") is not None:
                # The chatml-function-calling handler drops ``seed``; the sampler's next seed is
                # drawn from the model's, so setting that makes the draw repeatable.
                self._llm.set_seed(int(request["seed"]))
            call = self._tool_choice(request, messages)
            if call is not None:
                options |= {"tools": request["tools"], "tool_choice": call}
            counter = PromptCounter(self._llm)
            try:
                pieces = self._pieces(counter, messages, max_tokens, options, cancel)
                completion = yield from pieces
            except ValueError as exc:
                if "context window" in str(exc):
                    raise _overflow(prompt_tokens, max_tokens, self.context_window) from exc
                raise
            # Prompt tokens the engine did not evaluate: the prefix its context held or restored.
            evaluated = counter.prompt_tokens or prompt_tokens
            cached = min(self._llm.reused, evaluated)
        yield {"usage": usage(evaluated, completion, cached=cached)}

    def _pieces(
        self,
        counter: PromptCounter,
        messages: list[Any],
        max_tokens: int,
        options: dict[str, Any],
        cancel: threading.Event,
    ) -> Generator[dict[str, Any], None, int]:
        from llama_cpp.llama_chat_format import chatml_function_calling

        # The handler called with the counter for a model, so usage counts its real prompt.
        chunks = chatml_function_calling(
            llama=counter,
            messages=messages,
            max_tokens=max_tokens,
            stream=True,
            **options,
        )
        completion, named = 0, set[int]()
        for chunk in chunks:
            if cancel.is_set():
                return completion
            choice: dict[str, Any] = chunk["choices"][0]
            delta = openai_delta(choice.get("delta", {}), named)
            if delta.get("content") or delta.get("tool_calls"):
                completion += 1
            yield {"delta": delta, "finish_reason": choice.get("finish_reason")}
        return completion

    def _tool_choice(self, request: dict[str, Any], messages: list[dict[str, Any]]) -> dict[str, Any] | None:
        """The function this answer calls, or None for an answer in words."""
        tools, choice = request.get("tools") or [], request.get("tool_choice") or "auto"
        if not tools or choice == "none":
            return None
        if isinstance(choice, dict):
            return {"type": "function", "function": {"name": choice["function"]["name"]}}
        names = [str(tool["function"]["name"]) for tool in tools]
        options = names if choice == "required" else [*names, ANSWER]
        picked = options[0] if len(options) == 1 else self._pick(messages, tools, options)
        return None if picked == ANSWER else {"type": "function", "function": {"name": picked}}

    def _pick(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]], options: list[str]) -> str:
        from llama_cpp.llama_grammar import LlamaGrammar

        listing = "\n".join(
            f"- {t['function']['name']}: {t['function'].get('description', '')}" for t in tools
        )
        system = f"Functions you may call:\n{listing}\nReply with a function's name, or '{ANSWER}'."
        chat = "".join(f"<|im_start|>{m['role']}\n{m.get('content') or ''}<|im_end|>\n" for m in messages)
        prompt = f"<|im_start|>system\n{system}<|im_end|>\n{chat}<|im_start|>assistant\n"
        grammar = LlamaGrammar.from_string("root ::= " + " | ".join(f'"{o}"' for o in options), verbose=False)
        out = self._llm.create_completion(prompt, grammar=grammar, max_tokens=32, temperature=0)
        picked = str(out["choices"][0]["text"]).strip()  # type: ignore[index]
        return picked if picked in options else options[0]


def _overflow(prompt_tokens: int, max_tokens: int, window: int) -> ContextOverflow:
    return ContextOverflow(
        f"This model's maximum context length is {window} tokens; the prompt has about "
        f"{prompt_tokens} tokens and {max_tokens} more were requested for the completion."
    )


def openai_delta(delta: dict[str, Any], named: set[int]) -> dict[str, Any]:
    """A llama-cpp delta as OpenAI streams it: id, type and name only in a call's first fragment."""
    out = {k: v for k, v in delta.items() if v is not None and k not in _LEGACY_KEYS}
    if "tool_calls" not in out:
        return out
    calls = []
    for call in out["tool_calls"]:
        index = int(call.get("index", 0))
        function = call.get("function") or {}
        if index in named:
            calls.append({"index": index, "function": {"arguments": function.get("arguments", "")}})
            continue
        named.add(index)
        calls.append(
            {
                "index": index,
                "id": call.get("id") or f"call_{index}",
                "type": "function",
                "function": {"name": function.get("name"), "arguments": function.get("arguments", "")},
            }
        )
    return out | {"tool_calls": calls}


# llama.cpp's GGML type ids of the KV cache types a preset may ask for.
_KV_TYPES = {"f16": 1, "q8_0": 8}


def _preset_options(kv_cache: str, draft_tokens: int) -> dict[str, Any]:
    """Llama's options for a preset's KV cache type and n-gram speculative decoding."""
    options: dict[str, Any] = {}
    if kv_cache:
        # The K cache only: a quantized V cache needs flash attention, which CPU builds may lack.
        options["type_k"] = _KV_TYPES[kv_cache]
    if draft_tokens:
        from llama_cpp.llama_speculative import LlamaPromptLookupDecoding

        options["draft_model"] = LlamaPromptLookupDecoding(num_pred_tokens=draft_tokens)
    return options
