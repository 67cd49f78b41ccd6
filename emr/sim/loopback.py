"""The in-process hub as a synchronous httpx transport that runs the ASGI app in this thread.

Starlette's ``TestClient`` runs the app on an event loop in a second thread and hands
every request across to it and back; for a simulation that sends one request at a time
that hand-over cost as much as a small request's work. ``Loopback`` keeps a private
event loop in the calling thread and drives httpx's own ``ASGITransport`` on it, so a
request is still real HTTP semantics through the hub's full middleware stack (the one
wire format), only without the thread hop. The app's lifespan runs as with
``TestClient``: started on entry, shut down on exit.

Requests are served by one task that lives as long as the transport. AnyIO ties the
worker threads that run the hub's blocking work to the task at the root of the call:
were each request its own ``run_until_complete``, every request would start a worker
thread and stop it again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import httpx

Message = MutableMapping[str, Any]
ASGIApp = Callable[[MutableMapping[str, Any], Callable[[], Awaitable[Message]],
                    Callable[[Message], Awaitable[None]]], Awaitable[None]]


class Loopback(httpx.BaseTransport):
    """Send each request to ``app`` on an event loop owned by this transport."""

    def __init__(self, app: ASGIApp) -> None:
        self._asgi = httpx.ASGITransport(app=app)
        self._loop = asyncio.new_event_loop()
        self._lifespan = _Lifespan(app)
        self._loop.run_until_complete(self._lifespan.start())
        self._queue: asyncio.Queue[tuple[httpx.Request, asyncio.Future[httpx.Response]] | None] = asyncio.Queue()
        self._server = self._loop.create_task(self._serve())

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        answer: asyncio.Future[httpx.Response] = self._loop.create_future()
        self._queue.put_nowait((request, answer))
        return self._loop.run_until_complete(answer)

    def close(self) -> None:
        if self._loop.is_closed():
            return
        try:
            self._queue.put_nowait(None)
            self._loop.run_until_complete(self._server)
            self._loop.run_until_complete(self._lifespan.stop())
            self._loop.run_until_complete(self._loop.shutdown_default_executor())
        finally:
            self._loop.close()

    async def _serve(self) -> None:
        while (item := await self._queue.get()) is not None:
            request, answer = item
            try:
                answer.set_result(await self._exchange(request))
            except Exception as error:  # the caller's run_until_complete raises it
                answer.set_exception(error)

    async def _exchange(self, request: httpx.Request) -> httpx.Response:
        response = await self._asgi.handle_async_request(request)
        content = await response.aread()
        return httpx.Response(response.status_code, headers=response.headers, content=content,
                              extensions=response.extensions)


class _Lifespan:
    """The ASGI lifespan protocol: startup before the first request, shutdown after the last."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app
        self._inbox: asyncio.Queue[Message] = asyncio.Queue()
        self._outbox: asyncio.Queue[Message] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())
        await self._exchange("startup")

    async def stop(self) -> None:
        if self._task is not None and not self._task.done():
            await self._exchange("shutdown")
            await self._task

    async def _exchange(self, phase: str) -> None:
        await self._inbox.put({"type": f"lifespan.{phase}"})
        answer = await self._outbox.get()
        if answer["type"] == f"lifespan.{phase}.failed":
            raise RuntimeError(f"the hub's lifespan {phase} failed: {answer.get('message', '')}")

    async def _run(self) -> None:
        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}, "state": {}}
        try:
            await self._app(scope, self._inbox.get, self._outbox.put)
        except BaseException as error:  # an app without lifespan support may raise; it then needs none
            await self._outbox.put({"type": "lifespan.unsupported", "message": str(error)})
