"""The OpenAI wire shapes the gateway speaks: the chat request it accepts, the completion, the
stream chunks and the error body it returns. Unknown request fields are accepted and ignored,
as OpenAI-compatible servers do; sampling fields (temperature, max_tokens, ...) are accepted but
each agent's own backend block decides them.
"""

from __future__ import annotations

import json
import math
import time
from typing import Annotated, Any, Literal

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
    content: str | Annotated[list[TextPart], Field(fail_fast=True)] | None = None  # None: an assistant's tool call

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
    # fail_fast: a list of a million bad items costs one error, not a million (pydantic builds them all otherwise)
    messages: list[ChatMessage] = Field(min_length=1, fail_fast=True)
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int = 1
    # swarm's own optional fields (the openai client sends them with `extra_body`)
    alpha: float | None = Field(None, ge=0, le=1, allow_inf_nan=False, description="cost weight; overrides the scenario in `model`")
    deadline_s: float | None = Field(None, gt=0, allow_inf_nan=False, description="shorter than the gateway's deadline, never longer")
    target_latency_s: float | None = Field(None, gt=0, allow_inf_nan=False,
                                           description="soft latency target: agents skip peers that would miss it; never fails a request")


class BadRequest(Exception):
    """A client mistake: becomes a JSON error with this status, type, code and param."""

    def __init__(self, status: int, message: str, code: str, param: str | None = None, kind: str = "invalid_request_error",
                 headers: dict[str, str] | None = None) -> None:
        self.status, self.message, self.code, self.param, self.kind = status, message, code, param, kind
        self.headers = headers or {}
        super().__init__(message)


def parse_json(body: bytes) -> Any:
    """The body's JSON, or BadRequest(400): not UTF-8, not JSON, nested too deep, an integer too long,
    NaN or Infinity."""
    try:
        return json.loads(body, parse_constant=_no_constant)
    except RecursionError:
        raise BadRequest(400, "the body is not valid JSON (nested too deep)", "invalid_json") from None
    except (UnicodeDecodeError, ValueError) as exc:  # JSONDecodeError, and Python's limit on integer digits
        raise BadRequest(400, f"the body is not valid JSON ({type(exc).__name__}: {str(exc)[:120]})", "invalid_json") from None


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not a JSON number")


def parse_request(data: Any) -> ChatRequest:
    if not isinstance(data, dict):
        raise BadRequest(400, f"the body must be a JSON object, got {_json_type(data)}", "invalid_request")
    try:
        req = ChatRequest.model_validate(data)
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        where = ".".join(str(p) for p in first["loc"])
        raise BadRequest(400, f"{where}: {first['msg']}" if where else first["msg"], "invalid_request", where or None) from None
    if req.n != 1:
        raise BadRequest(400, "n must be 1: the swarm gives one answer per query", "invalid_request", "n")
    if req.messages[-1].role != "user":
        raise BadRequest(400, "the last message must come from the user", "invalid_request", "messages")
    for i, m in enumerate(req.messages):
        where = f"messages.{i}.content"
        if m.content is None and m.role != "assistant":
            raise BadRequest(400, f"{where}: a {m.role} message needs content", "invalid_request", where)
        try:  # pydantic lets a lone surrogate through in a union's str (not in a plain str field)
            m.text().encode("utf-8")
        except UnicodeEncodeError:
            raise BadRequest(400, f"{where}: not valid Unicode (a lone surrogate)", "invalid_request", where) from None
    return req


def _json_type(data: Any) -> str:
    return {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(type(data), "a number")


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
    """The extra `swarm` field of every completion: who answered, how the query got there, what it cost.
    Each hop shows its agent, decision, seconds and tokens, never its `detail`: that can hold a
    backend's error text (internal URLs, hosts), which stays in the agents' logs."""
    return {
        "query_id": a.query_id, "agent": a.agent, "entry": a.entry, "hops": a.hops, "path": a.path,
        "cost": a.cost, "model_seconds": round(a.model_seconds, 6), "latency_s": round(a.latency_s, 6),
        "trace": [h.model_dump(exclude={"detail"}) for h in a.trace],
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


def chunk(query_id: str, model: str, delta: dict, finish: str | None = None, **extra: Any) -> dict[str, Any]:
    """One chat.completion.chunk of a stream: a role, a piece of content, or the final one (finish_reason)."""
    return {"id": "chatcmpl-" + query_id, "object": "chat.completion.chunk", "created": int(time.time()), "model": model,
            "system_fingerprint": None, "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}], **extra}


def last_chunks(a: Answer, model: str, include_usage: bool) -> list[dict[str, Any]]:
    """The end of a stream: the final chunk (finish_reason "stop" and, in its `swarm` field, the routing
    trace, as a completion carries it), then the usage chunk when asked for."""
    out = [chunk(a.query_id, model, {}, "stop", swarm=routing_trace(a))]
    if include_usage:
        out.append({**chunk(a.query_id, model, {}), "choices": [], "usage": usage(a)})
    return out


def error_body(message: str, kind: str, code: str | None, param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}
