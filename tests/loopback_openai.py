"""An OpenAI-compatible chat-completions server on loopback, for the tests of API B (no real
endpoint is reachable here; this one speaks the same protocol to the official `openai`
client). The `endpoint` fixture starts it in a thread."""

import threading
import time

import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from tests.factories import free_port


class Endpoint:
    """What the loopback server does with each request, in order: "ok", "slow" (answers after
    `slow_seconds`), "429", "500"; once the script is used up, "ok"."""

    def __init__(self):
        self.script: list[str] = []
        self.calls = 0
        self.slow_seconds = 1.5
        self.seen: list[dict] = []
        # The answer's text from the request body; None: "the teacher says hello".
        self.reply = None


def loopback_app(endpoint: Endpoint) -> FastAPI:
    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def completions(request: Request):
        import asyncio

        body = await request.json()
        endpoint.calls += 1
        endpoint.seen.append({"body": body, "auth": request.headers.get("authorization")})
        behaviour = endpoint.script.pop(0) if endpoint.script else "ok"
        if behaviour == "429":
            return JSONResponse({"error": {"message": "slow down"}}, 429)
        if behaviour == "500":
            return JSONResponse({"error": {"message": "broken"}}, 500)
        if behaviour == "slow":
            await asyncio.sleep(endpoint.slow_seconds)
        text = endpoint.reply(body) if endpoint.reply else "the teacher says hello"
        return {
            "id": f"chatcmpl-{endpoint.calls}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body["model"],
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "stop",
                    "logprobs": {
                        "content": [
                            {"token": word, "logprob": -0.105, "bytes": None, "top_logprobs": []}
                            for word in text.split()
                        ]
                    },
                }
            ],
            "usage": {"prompt_tokens": 5, "completion_tokens": 4, "total_tokens": 9},
        }

    return app


@pytest.fixture
def endpoint():
    """The loopback server in a thread; yields its Endpoint with the base URL on it."""
    state = Endpoint()
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(loopback_app(state), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "the loopback endpoint did not start"
        time.sleep(0.02)
    state.base_url = f"http://127.0.0.1:{port}/v1"
    yield state
    server.should_exit = True
    thread.join(timeout=10)
