"""The agent's gRPC interceptors: the bearer token's check, and request bodies parsed in words.

Both act before a handler runs: a call with a missing or wrong token is refused before a byte of
its body is read (`TokenAuthInterceptor`), and a body that is not its message is answered with
INVALID_ARGUMENT rather than gRPC's INTERNAL (`DecodeGuard`).
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Iterator
from typing import Any

import grpc
from google.protobuf.message import DecodeError

from edgeopt.agent.tls import TokenHolder
from edgeopt.proto import auth
from edgeopt.proto.v1 import agent_pb2

__all__ = ["SERVICE_NAME", "DecodeGuard", "TokenAuthInterceptor"]

SERVICE_NAME = agent_pb2.DESCRIPTOR.services_by_name["Agent"].full_name


class TokenAuthInterceptor(grpc.ServerInterceptor):
    """Reject calls without the right bearer token, except health and reflection."""

    def __init__(self, token: str | TokenHolder) -> None:
        # A holder, so that SIGHUP can swap the token under running calls (rotation).
        self._token = token if isinstance(token, TokenHolder) else TokenHolder(token)

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler[Any, Any] | None],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        """Pass the call on when its token matches; else answer UNAUTHENTICATED."""
        method = str(details.method)
        if method.startswith(auth.UNAUTHENTICATED_PATHS):
            return continuation(details)
        presented = None
        for key, value in details.invocation_metadata or ():
            if key == auth.METADATA_KEY:
                presented = auth.token_from_header(str(value))
        handler = continuation(details)
        if handler is None:
            return None
        expected = self._token.expected
        if presented is not None and hmac.compare_digest(presented.encode(), expected):
            return handler
        message = (
            "missing bearer token: send metadata 'authorization: Bearer <token>'"
            if presented is None
            else "wrong token: check the device's token_file in the inventory"
        )
        return _refusal(handler, grpc.StatusCode.UNAUTHENTICATED, message)


class DecodeGuard(grpc.ServerInterceptor):
    """Answer INVALID_ARGUMENT, not INTERNAL, for a request body that is not its message.

    gRPC turns an exception from a handler's deserializer into INTERNAL ("Exception
    deserializing request!"), which agent.proto reserves for the agent's own bugs. So the
    Agent's handlers take the raw bytes, and this parses them, aborting in words on garbage.
    """

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler[Any, Any] | None],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        """The method's handler, parsing its requests itself."""
        handler = continuation(details)
        if handler is None or not str(details.method).startswith(f"/{SERVICE_NAME}/"):
            return handler
        parse = handler.request_deserializer
        what = str(details.method).rsplit("/", 1)[-1]

        def decoded(data: bytes, context: grpc.ServicerContext) -> Any:
            try:
                return parse(data) if parse is not None else data
            except DecodeError:
                context.abort(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"the {what} request is not a valid edgeopt.v1 message (protobuf would not "
                    "parse it)",
                )

        kwargs = {"request_deserializer": None, "response_serializer": handler.response_serializer}
        if handler.request_streaming:
            behavior = handler.stream_stream or handler.stream_unary

            def streaming(requests: Iterator[bytes], context: grpc.ServicerContext) -> Any:
                return behavior(  # type: ignore[misc]
                    (decoded(r, context) for r in requests), context
                )

            if handler.response_streaming:
                return grpc.stream_stream_rpc_method_handler(streaming, **kwargs)
            return grpc.stream_unary_rpc_method_handler(streaming, **kwargs)
        unary = handler.unary_stream or handler.unary_unary

        def single(request: bytes, context: grpc.ServicerContext) -> Any:
            return unary(decoded(request, context), context)  # type: ignore[misc]

        if handler.response_streaming:
            return grpc.unary_stream_rpc_method_handler(single, **kwargs)
        return grpc.unary_unary_rpc_method_handler(single, **kwargs)


def _refusal(
    handler: grpc.RpcMethodHandler[Any, Any], code: grpc.StatusCode, message: str
) -> grpc.RpcMethodHandler[Any, Any]:
    """A handler that aborts with `code` before it reads a byte of the request.

    It is request-streaming whatever the method's shape: gRPC reads a unary request's whole
    message before its handler runs, but hands a streaming handler an iterator it never
    pulls, so a refused caller costs at most what the transport buffered, not its body. On
    the wire both shapes are one stream, so the caller sees its status either way.
    """

    def abort(_requests: Any, context: grpc.ServicerContext) -> None:
        context.abort(code, message)

    kwargs = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(abort, **kwargs)
    return grpc.stream_unary_rpc_method_handler(abort, **kwargs)
