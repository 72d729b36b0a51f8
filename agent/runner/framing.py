"""How the agent and its runner child talk: length-prefixed pickled dicts over a pipe.

Both ends are this package; nothing else speaks this protocol. A frame is a header (`HEADER`: the
pickle's length and the number of out-of-band buffers), each buffer's length (`BUFFER`), the
pickle (protocol 5), then the buffers' bytes. Tensor bytes travel out of band: written from the
sender's buffer and read into one buffer on the other side, never copied through a pickle.
"""

from __future__ import annotations

import pickle
import struct
from typing import IO, Any, Tuple

__all__ = [
    "BUFFER",
    "HEADER",
    "OUTPUT_LIMIT",
    "TensorTuple",
    "out_of_band",
    "receive",
    "receive_head",
    "send",
]

HEADER = struct.Struct("<QI")
"""A frame: the pickle's length and the number of out-of-band buffers (each length follows)."""
BUFFER = struct.Struct("<Q")
# typing.Tuple: a module-level alias is evaluated, and tuple[...] needs Python 3.9 (the agent
# runs on 3.8).
TensorTuple = Tuple[str, str, Tuple[int, ...], Any]
"""(name, wire dtype name, shape, buffer of the wire bytes): how tensors cross the pipe."""
OUTPUT_LIMIT = 256 << 20
"""Default cap on the bytes of one request's outputs (the agent passes its own)."""


def out_of_band(data: Any) -> Any:
    """Wrap a buffer so that `send` writes it as it is instead of copying it into the pickle."""
    return pickle.PickleBuffer(data)


def send(stream: IO[bytes], message: dict[str, Any]) -> None:
    """Write one frame holding `message`, its out-of-band buffers after the pickle."""
    buffers: list[pickle.PickleBuffer] = []
    payload = pickle.dumps(message, protocol=5, buffer_callback=buffers.append)
    views = [b.raw() for b in buffers]
    stream.write(
        HEADER.pack(len(payload), len(views)) + b"".join(BUFFER.pack(v.nbytes) for v in views)
    )
    stream.write(payload)
    for view in views:
        stream.write(view)
    stream.flush()


def _read_into(stream: IO[bytes], buffer: bytearray) -> bool:
    view, got = memoryview(buffer), 0
    while got < len(buffer):
        n = stream.readinto(view[got:])  # type: ignore[attr-defined]
        if not n:
            return False
        got += n
    return True


def _read_head(stream: IO[bytes]) -> tuple[bytearray, list[int]] | None:
    """A frame's pickle and the sizes of the buffers that follow it (None at EOF)."""
    head = bytearray(HEADER.size)
    if not _read_into(stream, head):
        return None
    size, count = HEADER.unpack(head)
    sizes = bytearray(BUFFER.size * count)
    payload = bytearray(size)
    if not _read_into(stream, sizes) or not _read_into(stream, payload):
        return None
    return payload, [length for (length,) in BUFFER.iter_unpack(sizes)]


def receive(stream: IO[bytes]) -> dict[str, Any] | None:
    """Read one frame whole, its buffers included (None at EOF)."""
    read = _read_head(stream)
    if read is None:
        return None
    payload, sizes = read
    buffers = []
    for length in sizes:
        buffers.append(bytearray(length))
        if not _read_into(stream, buffers[-1]):
            return None
    message: dict[str, Any] = pickle.loads(payload, buffers=buffers)
    return message


def receive_head(stream: IO[bytes]) -> tuple[dict[str, Any], list[int]] | None:
    """A frame's message with each buffer replaced by its size; the bytes are left unread."""
    read = _read_head(stream)
    if read is None:
        return None
    payload, sizes = read
    # Empty stand-ins: the message keeps its shape; its buffers are streamed afterwards.
    message: dict[str, Any] = pickle.loads(payload, buffers=[bytearray() for _ in sizes])
    return message, sizes
