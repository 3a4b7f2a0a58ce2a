"""Text Generation Inference through its `text-generation` client, one adapter chosen per request.

TGI serves several LoRA adapters beside one base model (launched with LORA_ADAPTERS) and picks one
per request from `parameters.adapter_id`. The client release that fits our pins (0.7.0) predates
that field, so `AdapterClient` adds it, using the client's own request, response and error types.
The prompt is rendered here with the base model's chat template, as TGI's /generate expects text.
TGI has no API to unload an adapter (it loads them at launch): erasure cannot unload them from a
running TGI (forget_remote_adapters answers 0); restarting TGI without them is the operator's step.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Optional

from aiohttp import ClientSession, ClientTimeout
from text_generation import AsyncClient
from text_generation.errors import parse_error
from text_generation.types import Parameters, Request, StreamResponse

from ..config import ServerConfig
from .base import EngineError, GenerationParams, GenerationStats, Message
from .detokenize import TextPieceJoiner
from .remote import RemoteEngine


class AdapterParameters(Parameters):
    adapter_id: Optional[str] = None  # noqa: UP045 - matches the client's own pydantic style


class AdapterClient(AsyncClient):
    """The client's `generate_stream` with TGI's per-request `adapter_id`."""

    async def generate_stream_with_adapter(
        self, prompt: str, adapter_id: str | None = None, **parameters
    ) -> AsyncIterator[StreamResponse]:
        params = AdapterParameters(adapter_id=adapter_id, **parameters)
        # Validated by the client's Request model; serialised from the subclass so adapter_id is kept.
        request = Request(inputs=prompt, stream=True, parameters=params)
        payload = {"inputs": request.inputs, "stream": True, "parameters": params.model_dump(exclude_none=True)}
        async with ClientSession(headers=self.headers, cookies=self.cookies, timeout=self.timeout) as session:
            async with session.post(f"{self.base_url}/generate_stream", json=payload) as response:
                if response.status != 200:
                    raise parse_error(response.status, await response.json())
                async for line in response.content:
                    text = line.decode("utf-8").strip()
                    if not text.startswith("data:"):
                        continue
                    event = json.loads(text[len("data:"):])
                    try:
                        yield StreamResponse(**event)
                    except Exception:
                        raise parse_error(response.status, event) from None


class TGIEngine(RemoteEngine):
    kind = "tgi"

    def __init__(self, config: ServerConfig):
        super().__init__(config)
        self.client = AdapterClient(self.url, headers=self.headers, timeout=int(config.engine.request_timeout_seconds))
        # The client's own timeout covers the whole stream; keep it as long as a full reply may take.
        self.client.timeout = ClientTimeout(total=config.engine.request_timeout_seconds)

    async def stream(self, messages: list[Message], params: GenerationParams, stats: GenerationStats) -> AsyncIterator[str]:
        if not self.ready:
            raise EngineError("engine is not reachable yet")
        prompt = self.tokenizer.render(messages)
        adapter = self.pick_adapter(params)
        stats.adapter_version = adapter
        stats.prompt_tokens = self.count_tokens(messages)
        sampling = params.temperature > 0
        # TGI sends whole characters per token (it holds back a partial one as ""); joined safely anyway.
        pieces = TextPieceJoiner()
        try:
            async for event in self.client.generate_stream_with_adapter(
                prompt,
                adapter_id=adapter,
                max_new_tokens=params.max_tokens,
                do_sample=sampling,
                temperature=params.temperature if sampling else None,
                top_p=params.top_p if sampling and 0 < params.top_p < 1 else None,
                seed=params.seed,
            ):
                if event.details is not None:
                    stats.finish_reason = event.details.finish_reason.value
                if event.token.special:
                    continue
                stats.mark_token()
                if text := pieces.push(event.token.text):
                    yield text
            if tail := pieces.flush():
                yield tail
        except EngineError:
            raise
        except Exception as error:
            raise EngineError(f"tgi request failed: {type(error).__name__}") from None
        finally:
            stats.finished_at = stats.finished_at or time.perf_counter()
