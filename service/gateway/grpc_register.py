"""Registering the Propagation servicer with tolerant request decoding.

grpc's generated registration answers INTERNAL when a request is not a valid protobuf message. Here a
request that does not parse becomes a placeholder whose first use raises InvalidInput, so the handlers'
one error table answers INVALID_ARGUMENT instead, for unary and streaming calls alike.
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import Any

import grpc
from google.protobuf.message import DecodeError

from service.errors import InvalidInput

SERVICE = "imos.v1.Propagation"


class Malformed:
    """Stands in for a request that did not parse; any use of it is bad input."""

    def __getattr__(self, name: str) -> Any:
        raise InvalidInput("the request is not a valid imos.v1 protobuf message")


def _tolerant(parse: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    def decode(data: bytes) -> Any:
        try:
            return parse(data)
        except (DecodeError, ValueError, TypeError):
            return Malformed()
    return decode


def register(servicer: Any, server: grpc.aio.Server, pb2: ModuleType) -> None:
    """Add every method of the Propagation service, as declared in the proto, to the server."""
    register_service(servicer, server, pb2, "Propagation", SERVICE)


def register_service(servicer: Any, server: grpc.aio.Server, pb2: ModuleType, name: str, full_name: str) -> None:
    """Add every method of service ``name`` of a generated proto module, as declared, to the server."""
    kinds = {(False, False): grpc.unary_unary_rpc_method_handler, (False, True): grpc.unary_stream_rpc_method_handler,
             (True, False): grpc.stream_unary_rpc_method_handler, (True, True): grpc.stream_stream_rpc_method_handler}
    handlers = {}
    for method in pb2.DESCRIPTOR.services_by_name[name].methods:
        request_cls = getattr(pb2, method.input_type.name)
        response_cls = getattr(pb2, method.output_type.name)
        make = kinds[(method.client_streaming, method.server_streaming)]
        handlers[method.name] = make(getattr(servicer, method.name),
                                     request_deserializer=_tolerant(request_cls.FromString),
                                     response_serializer=response_cls.SerializeToString)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(full_name, handlers),))
