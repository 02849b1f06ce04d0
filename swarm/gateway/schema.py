"""The OpenAI wire shapes the gateway speaks: the chat request it accepts, the completion, the
stream chunks and the error body it returns. Unknown request fields are accepted and ignored,
as OpenAI-compatible servers do; sampling fields (temperature, max_tokens, ...) are accepted but
each agent's own backend block decides them.
"""

from __future__ import annotations

import math
import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from swarm.client import Answer
from swarm.prompts import SCENARIOS


class TextPart(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart] | None = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(p.text for p in self.content)
        return self.content or ""


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")
    include_usage: bool = False


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="allow")
    model: str = Field(min_length=1)
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int = 1
    # swarm's own optional fields (the openai client sends them with `extra_body`)
    alpha: float | None = Field(None, ge=0, le=1, description="cost weight; overrides the scenario in `model`")
    deadline_s: float | None = Field(None, gt=0, description="shorter than the gateway's deadline, never longer")


class BadRequest(Exception):
    """A client mistake: becomes a JSON error with this status, type, code and param."""

    def __init__(self, status: int, message: str, code: str, param: str | None = None, kind: str = "invalid_request_error",
                 headers: dict[str, str] | None = None) -> None:
        self.status, self.message, self.code, self.param, self.kind = status, message, code, param, kind
        self.headers = headers or {}
        super().__init__(message)


def parse_request(data: Any) -> ChatRequest:
    try:
        req = ChatRequest.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise BadRequest(400, f"{where}: {first['msg']}" if where else first["msg"], "invalid_request", where or None) from None
    if req.n != 1:
        raise BadRequest(400, "n must be 1: the swarm gives one answer per query", "invalid_request", "n")
    if req.messages[-1].role != "user":
        raise BadRequest(400, "the last message must come from the user", "invalid_request", "messages")
    return req


def split_model(model: str, swarm_name: str) -> tuple[str, str | None]:
    """'swarm' or 'swarm:scenario' -> (swarm, scenario); BadRequest(404) for anything else."""
    name, _, scenario = model.partition(":")
    if name != swarm_name or (scenario and scenario not in SCENARIOS):
        known = ", ".join(model_ids(swarm_name))
        raise BadRequest(404, f"the model {model[:100]!r} does not exist (this gateway serves: {known})", "model_not_found", "model")
    return name, scenario or None


def model_ids(swarm_name: str) -> list[str]:
    return [swarm_name, *(f"{swarm_name}:{s}" for s in SCENARIOS)]


def query_text(messages: list[ChatMessage]) -> str:
    """The swarm answers one question: the last user message. Earlier turns (system prompts, history)
    travel with it as a plain transcript in front, so no part of the request is silently dropped."""
    *earlier, last = messages
    if not earlier:
        return last.text()
    history = "\n".join(f"{m.role}: {m.text()}" for m in earlier)
    return f"Conversation so far:\n{history}\n\nuser: {last.text()}"


def estimate_tokens(text: str) -> int:
    """A tokenizer-free upper estimate (about 4 characters a token for English BPE vocabularies)."""
    return math.ceil(len(text) / 4)


def routing_trace(a: Answer) -> dict[str, Any]:
    """The extra `swarm` field of every completion: who answered, how the query got there, what it cost."""
    return {
        "query_id": a.query_id, "agent": a.agent, "entry": a.entry, "hops": a.hops, "path": a.path,
        "cost": a.cost, "model_seconds": round(a.model_seconds, 6), "latency_s": round(a.latency_s, 6),
        "trace": [h.model_dump() for h in a.trace],
    }


def usage(a: Answer) -> dict[str, int]:
    """Tokens over the whole path (rejections included), as the backends counted them."""
    prompt = sum(h.tokens_in for h in a.trace)
    completion = sum(h.tokens_out for h in a.trace)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def completion(a: Answer, model: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-" + a.query_id, "object": "chat.completion", "created": int(time.time()), "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": a.text}, "finish_reason": "stop", "logprobs": None}],
        "usage": usage(a), "system_fingerprint": None, "swarm": routing_trace(a),
    }


def chunks(a: Answer, model: str, include_usage: bool, piece_chars: int = 32) -> list[dict[str, Any]]:
    """The answer as a chat.completion.chunk stream: a role chunk, content pieces, a final chunk
    (finish_reason and the routing trace), and the usage chunk when asked for."""
    base = {"id": "chatcmpl-" + a.query_id, "object": "chat.completion.chunk", "created": int(time.time()), "model": model,
            "system_fingerprint": None}

    def chunk(delta: dict, finish: str | None = None, **extra: Any) -> dict[str, Any]:
        return {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}], **extra}

    out = [chunk({"role": "assistant", "content": ""})]
    out += [chunk({"content": a.text[i:i + piece_chars]}) for i in range(0, len(a.text), piece_chars)]
    out.append(chunk({}, "stop", swarm=routing_trace(a)))
    if include_usage:
        out.append({**base, "choices": [], "usage": usage(a)})
    return out


def error_body(message: str, kind: str, code: str | None, param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}
