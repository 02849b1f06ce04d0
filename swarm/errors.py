"""The errors a user of swarm can meet. Each says what went wrong and where, in one line."""

from __future__ import annotations


class SwarmError(Exception):
    """Base class of every error swarm raises on purpose."""


class UnknownAgent(SwarmError):
    """A swarm has no agent of that name (to remove, kill or describe)."""


class AgentExists(SwarmError):
    """A swarm already has a live agent of that name (to add)."""


class FileError(SwarmError):
    """A user's file that cannot be used: names the file (and line), the path inside it, the problem."""

    def __init__(self, source: str, path: str, problem: str, line: int | None = None) -> None:
        self.source, self.path, self.problem, self.line = source, path, problem, line
        where = f"{source}:{line}" if line is not None else source
        super().__init__(f"{where}: {path}: {problem}" if path else f"{where}: {problem}")


class TopologyError(FileError):
    """A topology or agent-spec file that cannot be used."""


class RecipeError(FileError):
    """A training recipe that cannot be used."""


class OutcomesError(FileError, ValueError):
    """An outcome matrix (per query, each model's correctness, answer and cost) that cannot be used."""


class ProtocolError(SwarmError):
    """A message that cannot be decoded or does not match its schema."""

    def __init__(self, code: str, message: str) -> None:
        self.code, self.message = code, message
        super().__init__(f"{code}: {message}")


class Oversize(ProtocolError):
    """A message we built is larger than any receiver accepts: our own fault, not the peer's."""

    def __init__(self, message: str) -> None:
        super().__init__("oversize", message)


class QueryError(SwarmError):
    """A query the swarm accepted but could not answer; `code` says why."""

    code = "query_failed"

    def __init__(self, message: str, query_id: str = "", trace: list | None = None) -> None:
        self.query_id = query_id
        self.trace = trace or []
        super().__init__(message)


class NoCapableAgent(QueryError):
    """Every agent that could take the query rejected it or was unreachable, and none could be forced to answer."""

    code = "no_capable_agent"


class DeadlineExceeded(QueryError):
    """The query's deadline passed before an agent answered."""

    code = "deadline_exceeded"


class QueryTooLarge(SwarmError):
    """A query longer than the swarm's limit; refused before it is sent anywhere."""


class PeerUnreachable(SwarmError):
    """A transport could not deliver to a peer (it died, left, or never existed)."""

    def __init__(self, peer: str, reason: str = "", permanent: bool = True) -> None:
        self.peer, self.permanent = peer, permanent
        super().__init__(f"peer {peer!r} unreachable" + (f": {reason}" if reason else ""))


QUERY_ERRORS: dict[str, type[QueryError]] = {
    cls.code: cls for cls in (QueryError, NoCapableAgent, DeadlineExceeded)
}


class BackendError(SwarmError):
    """A backend could not serve a request: a prompt longer than the context, an endpoint that is
    down or answers garbage. `fatal` means it will not serve again (its engine died): the agent
    then leaves the swarm instead of failing every query."""

    def __init__(self, message: str, fatal: bool = False) -> None:
        self.fatal = fatal
        super().__init__(message)
