"""The Redis transport of the workers: a malformed queue item is set aside, not fatal.

Kombu's Redis transport pops a queue item and decodes it inside the worker's event loop;
an item that is not JSON (`LPUSH training garbage`) raises there and stops the worker
("Unrecoverable error"), and a JSON item that is not a message envelope fails the same
way further in. Anyone who can write to the broker could stop every worker with one item.

This transport checks each item before it is delivered: one that is not a kombu message
envelope (a JSON object with `body`, `headers`, `content-type` and `properties` holding a
`delivery_tag` and `delivery_info`) is logged as an error and pushed, with the reason,
onto the Redis list `REJECTED_LIST` (the newest `REJECTED_KEEP` are kept), and the worker
goes on. Envelopes whose content Celery refuses (a pickled body, an unknown task) are
Celery's to reject, as before. `worker.app` selects the transport for redis:// brokers.
"""

from __future__ import annotations

import binascii
import json
import logging
from datetime import UTC, datetime
from typing import Any

from kombu.transport import redis

log = logging.getLogger(__name__)

TRANSPORT = "worker.redis_transport:Transport"  # the `broker_transport` setting (worker.app)
REJECTED_LIST = "styledrop.rejected"
REJECTED_KEEP = 1000
_RAW_LIMIT = 64 * 1024  # characters of a rejected item kept in the list
_ENVELOPE = {"body": str, "headers": dict, "content-type": str, "properties": dict}


class MalformedMessageError(ValueError):
    """A queue item that is not a message envelope.

    Attributes:
        raw: The item as received (decoded JSON, text or bytes).
    """

    def __init__(self, reason: str, raw: Any):
        super().__init__(reason)
        self.raw = raw


def envelope_problem(payload: Any) -> str | None:
    """Why `payload` (a decoded queue item) is not a kombu message envelope, or None."""
    if not isinstance(payload, dict):
        return f"a JSON {type(payload).__name__}, not an object"
    for key, kind in _ENVELOPE.items():
        if not isinstance(payload.get(key), kind):
            return f"no {kind.__name__} {key!r}"
    properties = payload["properties"]
    if not isinstance(properties.get("delivery_tag"), str):
        return "no delivery tag"
    if not isinstance(properties.get("delivery_info"), dict):
        return "no delivery info"
    return None


class Message(redis.Channel.Message):
    """A kombu message, made only from a well-formed envelope."""

    def __init__(self, payload: Any, channel: Any = None, **kwargs: Any):
        problem = envelope_problem(payload)
        if problem is not None:
            raise MalformedMessageError(problem, payload)
        try:
            super().__init__(payload, channel=channel, **kwargs)
        except (binascii.Error, ValueError, TypeError, KeyError) as error:
            raise MalformedMessageError(f"undecodable body ({error})", payload) from error


class Channel(redis.Channel):
    """Kombu's Redis channel, setting aside items it cannot deliver (see the module)."""

    Message = Message

    def _brpop_read(self, **options: Any) -> bool:
        try:
            return super()._brpop_read(**options)
        except MalformedMessageError as error:
            self._set_aside(str(error), error.raw)
        except json.JSONDecodeError as error:  # raised decoding the item, before delivery
            self._set_aside(f"not JSON ({error.msg})", error.doc)
        except UnicodeDecodeError as error:
            self._set_aside("not UTF-8 text", error.object)
        return True  # an item was taken off the queue: poll again

    def _set_aside(self, reason: str, raw: Any) -> None:
        """Logs the item and keeps it, with the reason, on `REJECTED_LIST`."""
        if isinstance(raw, bytes | bytearray):
            text = bytes(raw).decode("utf-8", errors="replace")
        elif isinstance(raw, str):
            text = raw
        else:
            text = json.dumps(raw, default=repr)
        log.error(
            "Set aside a malformed queue item (%s): %.200r. The worker goes on; the item is"
            " kept in the Redis list %r.", reason, text, REJECTED_LIST,
        )  # fmt: skip
        record = {
            "reason": reason,
            "item": text[:_RAW_LIMIT],
            "time": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        try:
            with self.conn_or_acquire() as client:
                client.lpush(REJECTED_LIST, json.dumps(record))
                client.ltrim(REJECTED_LIST, 0, REJECTED_KEEP - 1)
        except Exception:  # the log line above is the record of last resort
            log.exception("Could not keep the malformed item in %r.", REJECTED_LIST)


class Transport(redis.Transport):
    """Kombu's Redis transport with `Channel` (see the module)."""

    Channel = Channel
