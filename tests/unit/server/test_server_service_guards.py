"""The service's guards of issue 13, on a clock the test moves: the context check every route shares,
the WebSocket caps, liveness of an engine that failed to start, the drain on SIGTERM, and the
reloader starting a failed engine again when its config changes."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from personalai_server.auth import Principal
from personalai_server.config import parse_config
from personalai_server.engines import Engine, GenerationStats
from personalai_server.engines.base import AdapterError
from personalai_server.engines.tokenizers import EstimatingTokenizer
from personalai_server.errors import APIError
from personalai_server.metrics import ServerMetrics
from personalai_server.reloader import keep_restart_only, retry_start
from personalai_server.service import ChatService
from personalai_server.storage import SessionStore

pytestmark = pytest.mark.unit

ALICE, BOB = Principal("owner-alice"), Principal("owner-bob")
CONTEXT = 2048


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class StartingEngine(Engine):
    """Counts like an engine; `start` fails (as a refused adapter does) until `fail_with` is cleared."""

    kind = "starting"

    def __init__(self) -> None:
        super().__init__()
        self.tokenizer = EstimatingTokenizer(CONTEXT)
        self.fail_with: Exception | None = None
        self.started_with: list[str | None] = []

    async def start(self, adapter_version):
        self.started_with.append(adapter_version)
        if self.fail_with is not None:
            raise self.fail_with
        self.active_adapter, self.ready = adapter_version, True

    def stream(self, messages, params, stats):
        raise NotImplementedError("no turn is generated here")

    async def ensure_adapter(self, version):
        pass

    def loaded_adapters(self):
        return [self.active_adapter] if self.active_adapter else []


def config_with(tmp_path, **sections):
    return parse_config({"persona": {"displayName": "Luke", "personalAI": "luke"},
                         "engine": {"baseModel": "/models/tiny", "unhealthyAfterSeconds": 60},
                         "storage": {"dataDir": str(tmp_path / "data")},
                         "adapter": {"dir": str(tmp_path / "artifacts")}, **sections})


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def service(tmp_path, clock) -> ChatService:
    config = config_with(tmp_path, limits={"websocketsPerToken": 2, "maxWebsockets": 3, "shutdownGraceSeconds": 10})
    return ChatService(config, SessionStore(config.storage.data_dir), StartingEngine(), ServerMetrics(), clock=clock)


def rejections(service: ChatService, limit: str) -> float:
    return service.metrics.registry.get_sample_value("personalai_server_rejected_requests_total", {"limit": limit}) or 0


# --- check_context ---------------------------------------------------------------------------------

def test_a_reply_that_fits_is_left_as_asked(service):
    assert service.check_context(1000, CONTEXT - 1000, "messages", requested=True) == CONTEXT - 1000
    assert service.check_context(10, 256, "message", requested=False) == 256


def test_a_configured_reply_is_cut_to_the_room_left(service):
    assert service.check_context(1500, 1024, "message", requested=False) == CONTEXT - 1500
    assert service.check_context(CONTEXT - 1, 1024, "message", requested=False) == 1


def test_a_requested_reply_that_does_not_fit_is_refused_naming_the_prompt(service):
    with pytest.raises(APIError) as refused:
        service.check_context(1500, 1024, "inputs", requested=True)
    assert (refused.value.status, refused.value.code, refused.value.field) == (422, "context_length_exceeded", "inputs")
    assert "1500" in refused.value.message and "1024" in refused.value.message and str(CONTEXT) in refused.value.message


def test_a_prompt_that_leaves_no_room_is_refused_even_from_config(service):
    for prompt_tokens in (CONTEXT, 24_002):
        with pytest.raises(APIError) as refused:
            service.check_context(prompt_tokens, 8, "message", requested=False)
        assert refused.value.status == 422 and refused.value.field == "message"


# --- socket_slot -----------------------------------------------------------------------------------

def hold_sockets(service: ChatService, *principals: Principal | None) -> APIError | None:
    """Open a socket slot for each of `principals` in turn, all held at once; the refusal, if one was."""

    async def scenario() -> APIError | None:
        async with contextlib.AsyncExitStack() as held:
            for principal in principals:
                try:
                    await held.enter_async_context(service.socket_slot(principal))
                except APIError as error:
                    return error
        return None

    return asyncio.run(scenario())


def test_sockets_per_token_are_capped_and_given_back(service):
    refused = hold_sockets(service, ALICE, BOB, ALICE, ALICE)
    assert (refused.status, refused.code) == (429, "too_many_connections")
    assert "limits.websocketsPerToken" in refused.message
    assert rejections(service, "websocketsPerToken") == 1
    # Every slot came back when its socket closed, so the cap starts afresh.
    assert service.sockets.active() == 0
    assert hold_sockets(service, ALICE, ALICE, BOB, BOB) is None


def test_a_slot_is_given_back_however_the_socket_ends(service):
    async def failing_socket() -> None:
        async with service.socket_slot(ALICE):
            raise ConnectionResetError

    with pytest.raises(ConnectionResetError):
        asyncio.run(failing_socket())
    assert service.sockets.active() == 0


def test_all_open_sockets_are_capped_before_authentication(service):
    refused = hold_sockets(service, None, None, None, None)
    assert refused.status == 429 and "limits.maxWebsockets" in refused.message
    assert rejections(service, "maxWebsockets") == 1
    # A token's own sockets are counted apart from the total of those not authenticated yet.
    assert hold_sockets(service, None, None, None, ALICE, ALICE) is None


# --- stuck (liveness) ------------------------------------------------------------------------------

def test_a_loading_engine_is_never_stuck(service, clock):
    assert not service.engine.ready
    clock.now += 10 * 3600
    assert not service.stuck()


def test_an_engine_failing_to_start_is_stuck_after_unhealthy_after_seconds(service, clock):
    service.engine.fail_with = AdapterError("adapter v2 cannot be loaded")
    asyncio.run(service.start_engine())
    assert service.not_ready_reason == "adapter v2 cannot be loaded"
    clock.now += 59
    asyncio.run(service.start_engine())  # failing again keeps the first failure's time
    clock.now += 1
    assert not service.stuck()
    clock.now += 0.5
    assert service.stuck()
    # Starting at last (the reloader retries on a config change) clears it.
    service.engine.fail_with = None
    asyncio.run(service.start_engine())
    assert service.engine.ready and service.not_ready_reason is None and not service.stuck()


def test_an_unexpected_start_failure_gives_its_type_not_its_message(service):
    service.engine.fail_with = OSError("/models/luke/private-notes is unreadable")
    asyncio.run(service.start_engine())
    assert service.not_ready_reason == "engine failed to start (OSError)"


# --- begin_shutdown / check_not_stopping -----------------------------------------------------------

def test_replies_go_on_for_the_grace_then_stop(service, clock):
    service.check_not_stopping()  # not shutting down: nothing to refuse
    service.begin_shutdown()
    clock.now += 9.9
    service.check_not_stopping()
    clock.now += 0.1
    with pytest.raises(APIError) as stopped:
        service.check_not_stopping()
    assert (stopped.value.status, stopped.value.code) == (503, "server_shutting_down")
    assert stopped.value.headers == {"Retry-After": "1"}


def test_a_new_request_past_the_grace_is_refused(service, clock):
    service.engine.ready = True
    service.require_ready()
    service.begin_shutdown()
    clock.now += 10
    with pytest.raises(APIError) as stopped:
        service.require_ready()
    assert stopped.value.code == "server_shutting_down"


def test_a_stream_cut_off_by_shutdown_ends_with_the_error(service, clock):
    async def pieces():
        for piece in ("one", "two", "three"):
            yield piece
            clock.now += 6  # each piece takes six seconds of the ten-second grace

    async def read(got: list[str]) -> None:
        async for piece in service.generation(pieces(), GenerationStats()):
            got.append(piece)

    service.begin_shutdown()
    got: list[str] = []
    with pytest.raises(APIError) as stopped:
        asyncio.run(read(got))
    assert got == ["one", "two"] and stopped.value.code == "server_shutting_down"
    assert service.metrics.registry.get_sample_value("personalai_server_cancelled_generations_total") == 1


# --- reloader: keep_restart_only / retry_start ------------------------------------------------------

def test_sections_that_need_a_restart_keep_their_old_values(tmp_path, caplog):
    old = config_with(tmp_path)
    new = config_with(tmp_path, engine={"baseModel": "/models/other", "unhealthyAfterSeconds": 60},
                      storage={"dataDir": str(tmp_path / "elsewhere")}, conversation={"maxTokens": 99})
    with caplog.at_level("WARNING", logger="personalai_server.reloader"):
        kept = keep_restart_only(old, new)
    assert kept.engine == old.engine and kept.storage == old.storage
    assert kept.conversation.max_tokens == 99  # applies to the next request
    warned = " ".join(record.getMessage() for record in caplog.records)
    assert "section engine changed" in warned and "section storage changed" in warned and "conversation" not in warned
    assert keep_restart_only(old, old) is old


def serving(config, version: str):
    """`config` with adapter.version `version`, as the operator's next ConfigMap would have it."""
    return config.model_copy(update={"adapter": config.adapter.model_copy(update={"version": version})})


def failed_on(service: ChatService, version: str) -> ChatService:
    service.config = serving(service.config, version)
    service.engine.fail_with = AdapterError(f"adapter {version} cannot be loaded")
    asyncio.run(service.start_engine())
    assert service.not_ready_reason is not None
    return service


def test_a_rollback_starts_the_failed_engine_again_in_place(service):
    failed_on(service, "v2-broken")
    service.engine.fail_with = None  # v1 loads
    assert asyncio.run(retry_start(service, serving(service.config, "v1-good")))
    assert service.engine.started_with == ["v2-broken", "v1-good"]
    assert service.engine.ready and service.engine.active_adapter == "v1-good" and service.not_ready_reason is None
    assert service.config.adapter.version == "v1-good"


def test_an_unchanged_config_is_not_retried(service):
    failed_on(service, "v2-broken")
    assert not asyncio.run(retry_start(service, service.config))
    # A change only to a section that needs a restart is no change here either.
    restart_only = service.config.model_copy(update={"engine": service.config.engine.model_copy(update={"base_model": "/other"})})
    assert not asyncio.run(retry_start(service, restart_only))
    assert service.engine.started_with == ["v2-broken"] and service.config.engine.base_model == "/models/tiny"


def test_a_retry_that_fails_again_keeps_the_pod_not_ready_with_the_new_reason(service, clock):
    failed_on(service, "v2-broken")
    first_failure = service.failing_since
    clock.now += 30
    service.engine.fail_with = AdapterError("adapter v3-broken cannot be loaded")
    assert asyncio.run(retry_start(service, serving(service.config, "v3-broken")))
    assert service.not_ready_reason == "adapter v3-broken cannot be loaded" and not service.engine.ready
    assert service.failing_since == first_failure  # liveness counts from the first failure
