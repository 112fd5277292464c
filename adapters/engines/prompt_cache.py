"""Prompt reuse across conversations: the KV state of recent prompts, kept in RAM.

llama.cpp keeps in its context only what the previous request left there, so a second
conversation speaking in between makes the first evaluate its whole prompt again.
``CachingLlama`` saves the context's state after a generation (prompt and answer) into a
``PromptCache``, bounded in bytes and least-recently-used first out, and before the next
generation restores the saved state that shares the longest prefix with the new prompt
when that is longer than what the context holds: only the tokens after it are evaluated.

The library has a RAM cache of its own (``Llama.set_cache``), but each of its entries
also copies the model's logits buffer (``n_batch`` x vocabulary floats, ~100 MB for
SmolLM2), which its capacity does not count and which a restore does not need (the last
prompt token is evaluated again anyway); the entries here hold llama.cpp's own state only.
"""

from __future__ import annotations

import ctypes
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from llama_cpp import Llama
from llama_cpp import llama_cpp as native

# Prompts shorter than this are not kept: evaluating them again costs less than a copy.
MIN_TOKENS = 128


def common_prefix(a: npt.NDArray[np.intc], b: npt.NDArray[np.intc]) -> int:
    """How many leading tokens ``a`` and ``b`` share."""
    n = min(len(a), len(b))
    differ = np.flatnonzero(a[:n] != b[:n])
    return int(differ[0]) if len(differ) else n


class SavedState:
    """The tokens a context held and llama.cpp's serialized state of it."""

    __slots__ = ("data", "size", "tokens")

    def __init__(self, tokens: npt.NDArray[np.intc], data: Any, size: int) -> None:
        self.tokens, self.data, self.size = tokens, data, size


class PromptCache:
    """Saved states by their tokens, at most ``capacity_bytes`` of them; not thread-safe
    (the backend generates one request at a time)."""

    def __init__(self, capacity_bytes: int, min_tokens: int = MIN_TOKENS) -> None:
        self.capacity_bytes, self.min_tokens = capacity_bytes, min_tokens
        self._states: OrderedDict[int, SavedState] = OrderedDict()
        self._next = 0

    @property
    def size_bytes(self) -> int:
        """Bytes of state held."""
        return sum(s.size for s in self._states.values())

    def __len__(self) -> int:
        return len(self._states)

    def best(self, tokens: npt.NDArray[np.intc]) -> tuple[int, SavedState | None]:
        """The saved state sharing the longest prefix with ``tokens``, and that prefix's length."""
        found: tuple[int, int, SavedState | None] = (0, -1, None)
        for key, state in self._states.items():
            shared = common_prefix(state.tokens, tokens)
            if shared > found[0]:
                found = (shared, key, state)
        if found[2] is not None:
            self._states.move_to_end(found[1])
        return found[0], found[2]

    def put(self, state: SavedState) -> None:
        """Keep ``state``; states it extends go, and the least recently used while over capacity."""
        if state.size > self.capacity_bytes:
            return
        for key in [
            k for k, s in self._states.items() if common_prefix(s.tokens, state.tokens) == len(s.tokens)
        ]:
            del self._states[key]
        self._states[self._next] = state
        self._next += 1
        while self.size_bytes > self.capacity_bytes:
            self._states.popitem(last=False)


class CachingLlama(Llama):
    """``Llama`` that reuses the longest saved prefix of a prompt and saves what it generated.

    ``reused`` is how many tokens of the last generation's prompt were not evaluated (the
    prefix the context already held, or restored).
    """

    prompt_cache: PromptCache | None = None
    reused = 0
    _counting = False

    def generate(self, tokens: Sequence[int], *args: Any, **kwargs: Any) -> Iterator[int]:  # type: ignore[override]
        """The library's generation, between a restore of the longest saved prefix and a save."""
        cache = self.prompt_cache
        wanted = np.asarray(tokens, dtype=np.intc)
        if cache is not None:
            shared, state = cache.best(wanted)
            # The last prompt token is always evaluated again (its logits are not saved).
            if state is not None and min(shared, len(wanted) - 1) > common_prefix(self._input_ids, wanted):
                self._restore(state)
        self.reused, self._counting = len(wanted), True
        try:
            yield from super().generate(tokens, *args, **kwargs)
        finally:
            self._counting = False
            if cache is not None and self.n_tokens >= cache.min_tokens:
                cache.put(self._snapshot())

    def eval(self, tokens: Sequence[int]) -> None:
        """The library's evaluation; its first call in a generation tells how much was reused."""
        if self._counting:
            self.reused, self._counting = self.n_tokens, False
        super().eval(tokens)

    def _snapshot(self) -> SavedState:
        ctx = self._ctx.ctx
        size = native.llama_state_get_size(ctx)
        data = (ctypes.c_uint8 * size)()
        written = native.llama_state_get_data(ctx, data, size)
        return SavedState(self.input_ids[: self.n_tokens].copy(), data, int(written))

    def _restore(self, state: SavedState) -> None:
        if native.llama_state_set_data(self._ctx.ctx, state.data, state.size) != state.size:
            raise RuntimeError("llama.cpp refused a saved state")
        n = len(state.tokens)
        self.input_ids[:n] = state.tokens
        self.n_tokens = n
        # Logits are not part of the saved state: generate evaluates at least one token.
        self._requires_eval = True
