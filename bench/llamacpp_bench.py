"""The CPU engine against llama.cpp itself, in one run: in-process llama-cpp-python, the
replica's own HTTP endpoint, and the gateway in front of it.

    .venv/bin/python -u bench/llamacpp_bench.py [--rounds 5] [--tokens 64] [--reuse-rounds 1]
        [--system-tokens 1000] [--throughput-rounds 3]

Starts ``modelyard serve`` (the llama.cpp engine, ``smollm2-135m``), provisions one
instance, and loads the same GGUF in this process with the backend's own arguments
(``n_ctx=2048``, ``n_threads=2``, ``chatml-function-calling``). Prints, each a median of
rounds taken in turn so that the machine's noise falls on every path alike:

- decode tokens/s and time to first token of one streamed answer at temperature 0;
- prompt reuse: the time to first token of a conversation's second turn (a 1,000-token
  system prompt) after another conversation's turn, against its first turn's; in-process
  without a cache and with llama-cpp-python's RAM cache as the references;
- throughput (tokens/s over all answers) of 4 concurrent clients on the one replica,
  against one client sending the same requests one after another.

Against in-process llama.cpp, a path's decode ratio and added time to first token are the
medians of each round's own, so that drift over the run does not fall between paths (the
decode ratio's quartiles show how far the rounds spread); the ratio of the decode medians
follows in brackets.
Every time to first token runs from the call, the in-process one's included: its chat
template and tokenization happen before llama-cpp-python returns the stream, as they do
inside the replica. Asserts nothing. Client, gateway and replica share this machine's cores.
"""

from __future__ import annotations

import argparse
import http.client
import statistics
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit

import msgspec
from serving import provision_running, served

from modelyard.adapters.engines.models import gguf_paths
from modelyard.adapters.eventstore.env import store_env
from modelyard.domain.deployments import events as ev
from modelyard.domain.shared import ids
from modelyard.domain.shared.store import Store
from modelyard.settings import load_settings

MODEL = "smollm2-135m"
QUESTION = "Explain in three sentences why the sky is blue."
# Enough words to say for a whole answer of --tokens: the throughput runs want full-length answers.
LONG = "Write a long story about a lighthouse keeper and a storm, with many details."
# A system prompt's sentence; repeated, with a conversation's own name first, to ~1,000 tokens.
RULE = (
    "Rule {n}: the assistant answers in plain words, keeps its answers short, never invents "
    "facts, says when it does not know, and uses the metric system for every measurement."
)
SYSTEM_TOKENS = 1000

# (seconds to the first content token, seconds to the last, content chunks)
Timing = tuple[float, float, int]
Turn = Callable[[list[dict[str, str]], int], Timing]


def _timed(chunks: Iterator[str | None]) -> Timing:
    """Time a stream of content pieces (None for a chunk without content)."""
    started = time.perf_counter()
    first = last = 0.0
    count = 0
    for content in chunks:
        if not content:
            continue
        last = time.perf_counter() - started
        if count == 0:
            first = last
        count += 1
    return first, last, count


def _rate(t: Timing) -> float:
    first, last, count = t
    return (count - 1) / (last - first) if count > 1 and last > first else 0.0


class InProcess:
    """llama-cpp-python in this process, with the backend's arguments."""

    def __init__(self, path: str) -> None:
        from llama_cpp import Llama

        self.llm = Llama(
            model_path=path, n_ctx=2048, n_threads=2, verbose=False, chat_format="chatml-function-calling"
        )

    def turn(self, messages: list[dict[str, str]], max_tokens: int) -> Timing:
        return _timed(self._pieces(messages, max_tokens))

    def _pieces(self, messages: list[dict[str, str]], max_tokens: int) -> Iterator[str | None]:
        # A generator, so the clock starts before the call: the handler renders the chat
        # template and tokenizes the prompt before it returns its stream.
        stream = self.llm.create_chat_completion(
            messages=messages,  # type: ignore[arg-type]
            max_tokens=max_tokens,
            temperature=0,
            stream=True,
        )
        for chunk in stream:
            yield chunk["choices"][0]["delta"].get("content")  # type: ignore[index,union-attr]

    def cached(self, on: bool) -> None:
        from llama_cpp import LlamaRAMCache

        self.llm.set_cache(LlamaRAMCache() if on else None)


class Http:
    """An OpenAI chat endpoint, streamed over one kept-alive connection.

    Read with the standard library's ``http.client``: httpx's ``iter_lines`` took about 250 us
    of CPU per event against its 75, and a client's CPU comes out of llama.cpp's two threads
    as the server's does. The server's overhead is what this measures, not the client's.
    """

    def __init__(self, base: str, key: str, model: str) -> None:
        url = urlsplit(base)
        self.host, self.port, self.path = url.hostname or "127.0.0.1", url.port or 80, url.path
        self.headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        self.model = model
        # One connection a thread: the throughput runs call from several at once.
        self.local = threading.local()

    def turn(self, messages: list[dict[str, str]], max_tokens: int) -> Timing:
        body = {
            "model": self.model,
            "messages": messages,
            "max_tokens": max_tokens,
            "temperature": 0,
            "stream": True,
        }
        return _timed(self._pieces(body))

    def _pieces(self, body: dict[str, Any]) -> Iterator[str | None]:
        response = self._post(msgspec.json.encode(body))
        if response.status != 200:
            raise RuntimeError(f"{response.status}: {response.read()[:300]!r}")
        while line := response.readline():
            if not line.startswith(b"data: ") or line.startswith(b"data: [DONE]"):
                continue
            chunk = msgspec.json.decode(line[6:])
            choices = chunk.get("choices") or []
            yield choices[0]["delta"].get("content") if choices else None

    def _post(self, data: bytes) -> http.client.HTTPResponse:
        try:
            return self._send(data)
        except (ConnectionError, http.client.HTTPException):
            # The server closes a connection left idle for seconds, and the in-process runs are long.
            self.local.connection.close()
            self.local.connection = None
            return self._send(data)

    def _send(self, data: bytes) -> http.client.HTTPResponse:
        if getattr(self.local, "connection", None) is None:
            self.local.connection = http.client.HTTPConnection(self.host, self.port, timeout=600)
        self.local.connection.request("POST", f"{self.path}/chat/completions", data, self.headers)
        return self.local.connection.getresponse()


def _system(name: str, count: Callable[[str], int], size: int) -> str:
    """A system prompt of about ``size`` tokens that starts with ``name``."""
    text, n = f"You are {name}.", 1
    while count(text) < size:
        text += " " + RULE.format(n=n)
        n += 1
    return text


def _reuse(turn: Turn, count: Callable[[str], int], size: int) -> tuple[float, float]:
    """(first turn's TTFT, second turn's TTFT) of conversation A, with B's turn in between."""
    a = [{"role": "system", "content": _system(f"assistant {uuid.uuid4().hex[:8]}", count, size)}]
    b = [{"role": "system", "content": _system(f"helper {uuid.uuid4().hex[:8]}", count, size)}]
    a.append({"role": "user", "content": "What is the capital of France?"})
    first = turn(a, 8)[0]
    b.append({"role": "user", "content": "Name a colour."})
    turn(b, 8)
    a += [{"role": "assistant", "content": "Paris."}, {"role": "user", "content": "And of Italy?"}]
    return first, turn(a, 8)[0]


def _throughput(turn: Turn, clients: int, requests: int, max_tokens: int) -> float:
    """Tokens/s over ``requests`` answers sent by ``clients`` at once."""
    messages = [{"role": "user", "content": LONG}]
    tokens: list[int] = []
    lock = threading.Lock()

    def one(_: int) -> None:
        got = turn(messages, max_tokens)[2]
        with lock:
            tokens.append(got)

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=clients) as pool:
        list(pool.map(one, range(requests)))
    return sum(tokens) / (time.perf_counter() - started)


def _ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:7.1f} ms"


def _replica(env: dict[str, str], instance: dict[str, Any]) -> tuple[str, str]:
    """(base URL, token) of the instance's replica, from its ReplicaStarted event."""
    store = Store(env=store_env(load_settings(env)))
    try:
        started = next(
            e
            for e in store.events.get(ids.parse_deployment_id(str(instance["id"])))
            if isinstance(e, ev.ReplicaStarted)
        )
    finally:
        store.close()
    return started.base_url, started.token


def _print_throughput(paths: dict[str, Turn], rounds: int, tokens: int) -> None:
    """Throughput of 1 and 4 clients on each HTTP path (every path but the first)."""
    print(f"\nthroughput on one replica, 8 answers of up to {tokens} tokens, median of {rounds}:")
    # Rounds, each one client then four: one run of 8 answers is a few seconds, and the
    # machine's speed drifts by more than the target's margin over a few seconds.
    runs: dict[str, list[tuple[float, float]]] = {name: [] for name in list(paths)[1:]}
    for _ in range(rounds):
        for name, pairs in runs.items():
            alone = _throughput(paths[name], 1, 8, tokens)
            pairs.append((alone, _throughput(paths[name], 4, 8, tokens)))
    for name, pairs in runs.items():
        alone, together = statistics.median(p[0] for p in pairs), statistics.median(p[1] for p in pairs)
        ratio = statistics.median(t / a for a, t in pairs)
        print(f"  {name:<28} 1 client {alone:6.1f} tok/s   4 clients {together:6.1f} tok/s ({ratio:4.2f}x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--reuse-rounds", type=int, default=1, help="rounds of the prompt-reuse runs")
    parser.add_argument(
        "--system-tokens", type=int, default=SYSTEM_TOKENS, help="the reuse runs' system prompt"
    )
    parser.add_argument(
        "--throughput-rounds", type=int, default=3, help="rounds of the 1- and 4-client throughput runs"
    )
    args = parser.parse_args()
    local = InProcess(gguf_paths("")[MODEL])

    def count(text: str) -> int:
        return len(local.llm.tokenize(text.encode()))

    with served(MODELYARD_RATE_LIMIT_RPM="100000000") as (base, key, env):
        instance = provision_running(base, key, MODEL)
        replica_url, token = _replica(env, instance)
        paths: dict[str, Turn] = {
            "in-process llama.cpp": local.turn,
            "replica endpoint": Http(f"{replica_url}/v1", token, MODEL).turn,
            "through the gateway": Http(
                str(instance["openai_base_url"]), str(instance["api_key"]), MODEL
            ).turn,
        }
        question = [{"role": "user", "content": QUESTION}]
        for turn in paths.values():  # warm every path once: connections, caches, lazy imports
            turn(question, 8)

        single: dict[str, list[Timing]] = {name: [] for name in paths}
        for _ in range(args.rounds):
            for name, turn in paths.items():
                single[name].append(turn(question, args.tokens))
        print(f"one streamed answer, temperature 0, {args.tokens} tokens at most, median of {args.rounds}:")
        print("  (vs in-process: the median of each round's ratio and difference; [the ratio of medians])")
        own = single["in-process llama.cpp"]
        own_rate = statistics.median(_rate(t) for t in own)
        for name, runs in single.items():
            rate, ttft = statistics.median(_rate(t) for t in runs), statistics.median(t[0] for t in runs)
            # Per round: the paths of one round run within seconds of each other, and the
            # machine's speed drifts by more than the targets' margins over a whole run.
            ratios = [_rate(t) / _rate(o) for t, o in zip(runs, own, strict=True)]
            low, ratio, high = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else ratios * 3
            added = statistics.median(t[0] - o[0] for t, o in zip(runs, own, strict=True))
            print(
                f"  {name:<28} decode {rate:6.1f} tok/s ({ratio:4.2f}x, quartiles {low:4.2f}-{high:4.2f}) "
                f"[{rate / own_rate:4.2f}x]   TTFT {ttft * 1000:7.1f} ms ({added * 1000:+6.1f} ms)   "
                f"[{min(t[2] for t in runs)}-{max(t[2] for t in runs)} tokens]"
            )

        reuse_rounds = args.reuse_rounds
        print(
            f"\nsecond turn of a conversation ({args.system_tokens}-token system prompt) after another's "
            f"turn, median of {reuse_rounds}:"
        )
        reuse: dict[str, list[tuple[float, float]]] = {
            name: [] for name in ["in-process, no cache", "in-process, RAM cache", *list(paths)[1:]]
        }
        for _ in range(reuse_rounds):
            for name, pairs in reuse.items():
                if name.startswith("in-process"):
                    local.cached(name.endswith("RAM cache"))
                    pairs.append(_reuse(local.turn, count, args.system_tokens))
                else:
                    pairs.append(_reuse(paths[name], count, args.system_tokens))
        local.cached(False)
        for name, pairs in reuse.items():
            first, second = [p[0] for p in pairs], [p[1] for p in pairs]
            ratio = statistics.median(s / f for f, s in pairs)
            print(f"  {name:<28} first turn {_ms(first)}   second turn {_ms(second)}   ({ratio:4.2f}x)")

        _print_throughput(paths, args.throughput_rounds, args.tokens)


if __name__ == "__main__":
    main()
