"""Messages on the worker's own topics carry a keyed MAC, so nobody else can write them.

Curated batches, dead letters and checked heartbeats are written by the worker alone; on a
real cluster ACLs say so, but the embedded broker has none, and a CSS able to write to
``deadletter`` could claim 999,999 refused records for another CSS. The worker signs what it
sends (HMAC-SHA256 over topic and value, a subkey of the pseudonym key, in a Kafka header)
and its sinks store only what verifies.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

MAC_HEADER = "vigie-mac"


@dataclass(frozen=True)
class Signer:
    """Signs and verifies the worker's messages; ``key`` is the pseudonym key (never logged)."""

    key: bytes = field(repr=False)

    def __post_init__(self) -> None:
        # A subkey: a MAC never equals a pseudonym or id computed with the key itself.
        object.__setattr__(self, "_subkey", hmac.digest(self.key, b"vigie-internal-topics", "sha256"))

    def mac(self, topic: str, value: bytes) -> bytes:
        """The MAC of ``value`` sent on ``topic`` (a message replayed onto another topic fails)."""
        subkey: bytes = self._subkey  # type: ignore[attr-defined]
        return hmac.digest(subkey, topic.encode() + b"\x00" + value, hashlib.sha256)

    def headers(self, topic: str, value: bytes) -> dict[str, bytes]:
        """The headers to send ``value`` on ``topic`` with."""
        return {MAC_HEADER: self.mac(topic, value)}

    def verify(
        self,
        topic: str,
        value: bytes | None,
        headers: Mapping[str, bytes] | Iterable[tuple[str, bytes]] | None,
    ) -> bool:
        """True when the message carries this worker network's MAC for that topic and value."""
        if value is None or not headers:
            return False
        pairs = headers.items() if isinstance(headers, Mapping) else headers
        macs = [v for k, v in pairs if k == MAC_HEADER]
        return (
            len(macs) == 1
            and isinstance(macs[0], bytes)
            and hmac.compare_digest(macs[0], self.mac(topic, value))
        )
