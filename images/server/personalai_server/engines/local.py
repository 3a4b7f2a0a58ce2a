"""The in-process engine: transformers + peft, base model plus LoRA adapters, token by token.

Generation runs in worker threads (one decoding loop per request, checking a stop flag before every
token, so a client that leaves stops its generation at once). Adapters are verified against their
manifest, loaded beside each other in one PeftModel, and the least recently used one is unloaded
past `engine.maxLoadedAdapters`. Requests for the same adapter decode together; a request for
another adapter waits until the model is idle, then switches (peft's active adapter is global).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from personalai_contracts import precision

from ..config import ServerConfig
from .base import AdapterError, EngineError, GenerationParams, GenerationStats, GenerationTimeoutError, Message
from .detokenize import IncrementalDetokenizer
from .held import AdapterHoldingEngine
from .tokenizers import ChatTokenizer, resolve_base_model

log = logging.getLogger(__name__)

_END = object()
_NOTHING_YET = object()  # the gate's key before any generation: not None, which means the base model


class AdapterGate:
    """Lets generations with the same adapter run together; a switch waits until no one generates."""

    def __init__(self) -> None:
        self.current: object = _NOTHING_YET
        self.users = 0
        self._waiters: list[asyncio.Future] = []

    async def enter(self, key: object, switch: Callable[[object], None]) -> None:
        while not (self.users == 0 or self.current == key):
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            finally:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
        if self.current != key:
            switch(key)
            self.current = key
        self.users += 1

    def leave(self) -> None:
        self.users -= 1
        if self.users == 0:
            waiters, self._waiters = self._waiters, []
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)


class LocalEngine(AdapterHoldingEngine):
    kind = "local"
    streams_token_ids = True

    def __init__(self, config: ServerConfig):
        super().__init__(config)
        self.model = None
        self._peft = False
        self._gate = AdapterGate()
        self._slots = asyncio.Semaphore(config.engine.max_concurrent_generations)
        self._executor = ThreadPoolExecutor(
            max_workers=config.engine.max_concurrent_generations, thread_name_prefix="generate"
        )

    async def start(self, adapter_version: str | None) -> None:
        loop = asyncio.get_running_loop()
        if self.model is None:  # a retry after the adapter failed keeps the base model it loaded
            await loop.run_in_executor(self._executor, self._load_base)
        await self.activate_adapter(adapter_version)
        self.ready = True

    def _load_base(self) -> None:
        import torch
        from transformers import AutoModelForCausalLM

        engine = self.config.engine
        source = resolve_base_model(engine.base_model, engine.model_cache)
        on_gpu = torch.cuda.is_available()
        # The trainer's rule (personalai_contracts.precision): served as it was validated.
        dtype = precision.compute_dtype(cuda=on_gpu, bf16_fast=precision.bf16_is_fast(on_gpu),
                                        quantization=engine.quantization)
        kwargs: dict = {"dtype": getattr(torch, dtype)}
        if engine.quantization == "nf4":
            from transformers import BitsAndBytesConfig

            kwargs["quantization_config"] = BitsAndBytesConfig(
                load_in_4bit=True,
                bnb_4bit_quant_type="nf4",
                bnb_4bit_use_double_quant=True,
                bnb_4bit_compute_dtype=kwargs["dtype"],
            )
        if on_gpu:
            kwargs["device_map"] = {"": 0}
        self.tokenizer = ChatTokenizer.load(engine.base_model, engine.model_cache, engine.context_length)
        model = AutoModelForCausalLM.from_pretrained(source, **kwargs)
        model.eval()
        limit = getattr(model.config, "max_position_embeddings", None)
        if limit:
            self.tokenizer.context_length = min(self.tokenizer.context_length, limit)
        self.model = model

    async def load_verified_adapter(self, version: str, path: Path) -> None:
        exclusive = object()
        await self._gate.enter(exclusive, lambda key: None)
        try:
            await asyncio.get_running_loop().run_in_executor(self._executor, self._load_adapter, version, str(path))
        finally:
            self._gate.leave()

    def _load_adapter(self, version: str, path: str) -> None:
        from peft import PeftModel

        while (unused := self.least_recently_used()) is not None:
            self.model.delete_adapter(unused)
            del self._adapters[unused]
            log.info("adapter %s unloaded (least recently used)", unused)
        try:
            if not self._peft:
                self.model = PeftModel.from_pretrained(self.model, path, adapter_name=version, is_trainable=False)
                self._peft = True
            else:
                self.model.load_adapter(path, adapter_name=version, is_trainable=False)
        except Exception as error:
            raise AdapterError(f"adapter {version} could not be loaded: {type(error).__name__}") from None
        self.model.eval()
        # The gate believes the last adapter is still active; loading may have changed that.
        self._gate.current = None

    async def unload_adapter(self, version: str) -> bool:
        if version not in self._adapters or version == self.active_adapter:
            return False
        async with self._adapter_lock:
            exclusive = object()
            await self._gate.enter(exclusive, lambda key: None)
            try:
                self.model.delete_adapter(version)
                del self._adapters[version]
                self._gate.current = _NOTHING_YET  # peft's active adapter after a delete: unknown
            finally:
                self._gate.leave()
        return True

    def _switch_to(self, key: object) -> None:
        """Make `key` (an adapter version, or None for the base model) the one the model runs."""
        if not self._peft:
            return
        if key is None:
            self.model.base_model.disable_adapter_layers()
        else:
            self.model.base_model.enable_adapter_layers()
            self.model.set_adapter(key)

    async def stream(self, messages: list[Message], params: GenerationParams, stats: GenerationStats) -> AsyncIterator[str]:
        if not self.ready:
            raise EngineError("model is not loaded yet")
        prompt_ids = self.tokenizer.encode_chat(messages)
        async for _token_id, text in self.stream_ids(prompt_ids, params, stats):
            if text:
                yield text

    async def stream_ids(
        self, prompt_ids: list[int], params: GenerationParams, stats: GenerationStats
    ) -> AsyncIterator[tuple[int | None, str]]:
        """(token id, new text) for every generated token; the text is "" while a character is
        incomplete. Text still held back when generation ends comes last, as (None, text)."""
        adapter = self.pick_adapter(params)
        if adapter is not None:
            await self.ensure_adapter(adapter)
        stats.adapter_version = adapter
        stats.prompt_tokens = len(prompt_ids)
        await self._slots.acquire()
        try:
            await self._gate.enter(adapter, self._switch_to)
        except BaseException:
            self._slots.release()
            raise
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()
        stop = threading.Event()

        def emit(item) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, item)

        def finished(done) -> None:
            # Runs on the loop once the thread is done, even if the consumer was cancelled.
            if not done.cancelled() and done.exception() is None and stats.finish_reason is None:
                stats.finish_reason = done.result()
            self._gate.leave()
            self._slots.release()
            queue.put_nowait(_END)

        future = loop.run_in_executor(self._executor, self._generate, prompt_ids, params, stop, emit,
                                      stats.record_probability)
        future.add_done_callback(finished)
        try:
            while True:
                item = await queue.get()
                if item is _END:
                    break
                if item[0] is not None:  # the held-back tail is no token of its own
                    stats.mark_token()
                yield item
            failure = future.exception()
            if isinstance(failure, EngineError):
                raise failure
            if failure is not None:
                raise EngineError(f"generation failed: {type(failure).__name__}")
            stats.finish_reason = future.result()
        finally:
            stop.set()
            stats.finished_at = stats.finished_at or time.perf_counter()

    def _generate(self, prompt_ids: list[int], params: GenerationParams, stop: threading.Event, emit,
                  record_probability: Callable[[float], None]) -> str:
        import torch
        from transformers import DynamicCache

        device = next(self.model.parameters()).device
        generator = torch.Generator(device="cpu")
        if params.seed is not None:
            generator.manual_seed(params.seed)
        else:
            generator.seed()
        eos_ids = self.tokenizer.eos_ids
        # A byte-level token can end mid-character; the detokenizer holds text until it completes.
        detokenizer = IncrementalDetokenizer(self.tokenizer.decode)
        cache = DynamicCache()
        ids = torch.tensor([prompt_ids], device=device)
        timeout = self.config.engine.generation_timeout_seconds
        deadline = time.monotonic() + timeout
        with torch.inference_mode():
            for _ in range(params.max_tokens):
                if stop.is_set():
                    return "stopped"
                if time.monotonic() > deadline:
                    raise GenerationTimeoutError(f"generation stopped after engine.generationTimeoutSeconds ({timeout:g})")
                logits = self.model(input_ids=ids, past_key_values=cache, use_cache=True).logits[0, -1].float().cpu()
                token = sample_token(logits, params.temperature, params.top_p, generator)
                if token in eos_ids:
                    return emit_tail(detokenizer, emit, "eos_token")
                record_probability(token_probability(logits, token))
                emit((token, detokenizer.push(token)))
                ids = torch.tensor([[token]], device=device)
        return emit_tail(detokenizer, emit, "length")

    async def close(self) -> None:
        await super().close()
        self._executor.shutdown(wait=False, cancel_futures=True)


def emit_tail(detokenizer: IncrementalDetokenizer, emit, finish_reason: str) -> str:
    """Send what the detokenizer still holds (the reply ended mid-character); returns finish_reason."""
    tail = detokenizer.flush()
    if tail:
        emit((None, tail))
    return finish_reason


def token_probability(logits, token: int) -> float:
    """The model's own probability of `token` (softmax at temperature 1): what reply confidence averages."""
    import torch

    return float(torch.softmax(logits, dim=-1)[token])


def sample_token(logits, temperature: float, top_p: float, generator) -> int:
    """Greedy at temperature 0, else nucleus sampling over the softmax at that temperature."""
    import torch

    if temperature <= 0:
        return int(torch.argmax(logits))
    probs = torch.softmax(logits / temperature, dim=-1)
    if top_p < 1.0:
        sorted_probs, order = torch.sort(probs, descending=True)
        keep = torch.cumsum(sorted_probs, dim=-1) - sorted_probs < top_p
        sorted_probs = sorted_probs * keep
        choice = torch.multinomial(sorted_probs / sorted_probs.sum(), 1, generator=generator)
        return int(order[choice])
    return int(torch.multinomial(probs, 1, generator=generator))
