"""Server-sent events that end cleanly: the one streaming response the gateway and the dashboard use."""

from __future__ import annotations

from starlette.responses import StreamingResponse


class ClosingStreamingResponse(StreamingResponse):
    """A StreamingResponse that closes its body however the response ends. Starlette's leaves the body
    generator suspended when the client goes away while a chunk is being sent (the send is cancelled,
    not the generator), so its `finally` would wait for the garbage collector: in an idle process, for
    as long as it likes. The gateway's cancels the query along its path (the answering agent would
    generate on) and frees its slot; the dashboard's frees its stream slot."""

    async def __call__(self, scope, receive, send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self.body_iterator.aclose()
