"""Streaming responses whose chunks are bytes already, and the mark of a body's last chunk."""

from collections.abc import AsyncIterator

from django.http import StreamingHttpResponse


class LastChunk(bytes):
    """A streaming body's last chunk. The handler (`deerflow_site.asgi.RunServerHandler`)
    closes the body's iterator when it gets one, then sends it as the response's end: one ASGI
    message (`more_body: False`) instead of the chunk and an empty closing message. Chunks after
    it are never asked for. Only a `BytesStreamingResponse` hands it over as it is (Django's own
    streaming response copies each chunk into plain bytes)."""

    __slots__ = ()


class BytesStreamingResponse(StreamingHttpResponse):
    """A streaming response over an async iterator of bytes, handed to the server as they come.

    Django's async iteration wraps the stream in two generators of its own (one converts each
    chunk to bytes), resumed at every chunk; here the stream is the iterator.
    """

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._iterator
