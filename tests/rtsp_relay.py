"""A minimal RTSP relay for tests: ffmpeg publishes into it, RTSP clients play from it.

ffmpeg can push a stream over RTSP but cannot itself serve one to a client, and no RTSP
server (MediaMTX, GStreamer's) installs from PyPI. This relay speaks just enough RTSP/1.0
for ffmpeg on both sides — ANNOUNCE/SETUP/RECORD from a publisher, DESCRIBE/SETUP/PLAY from
a reader, RTP interleaved over TCP — and forwards the publisher's packets to the readers.
When the publisher goes away its readers are disconnected, as a camera going down would do.

Run: ``python tests/rtsp_relay.py PORT`` (prints ``ready`` when listening).
"""

from __future__ import annotations

import asyncio
import itertools
import sys

_sessions = itertools.count(1000)


class Path_:
    def __init__(self) -> None:
        self.sdp: bytes | None = None
        self.readers: set[asyncio.StreamWriter] = set()


PATHS: dict[str, Path_] = {}


async def _read_request(reader: asyncio.StreamReader) -> tuple[str, str, dict[str, str], bytes]:
    line = ""
    while line == "":
        raw = await reader.readline()
        if not raw:  # the peer closed the connection
            raise ConnectionError("closed")
        line = raw.decode("latin-1").strip()
    method, url, _ = line.split(" ", 2)
    headers = {}
    while True:
        header = (await reader.readline()).decode("latin-1").rstrip("\r\n")
        if not header:
            break
        key, _, value = header.partition(":")
        headers[key.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", 0)))
    return method, url, headers, body


def _reply(writer: asyncio.StreamWriter, cseq: str, status: str = "200 OK",
           headers: dict[str, str] | None = None, body: bytes = b"") -> None:
    lines = [f"RTSP/1.0 {status}", f"CSeq: {cseq}"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    if body:
        lines.append(f"Content-Length: {len(body)}")
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)


def _path_of(url: str) -> str:
    after_host = url.split("://", 1)[-1].split("/", 1)
    return "/" + after_host[1].split("/")[0] if len(after_host) > 1 else "/"


async def _handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    session = str(next(_sessions))
    role, path = None, None
    try:
        while True:
            if role == "publisher-recording":
                head = await reader.readexactly(1)
                if head == b"$":
                    channel_and_size = await reader.readexactly(3)
                    size = int.from_bytes(channel_and_size[1:], "big")
                    packet = head + channel_and_size + await reader.readexactly(size)
                    for client in list(PATHS[path].readers):
                        if client.transport.get_write_buffer_size() < 4_000_000:
                            client.write(packet)
                    continue
                rest = await reader.readline()  # an RTSP request mid-stream (e.g. TEARDOWN)
                if (head + rest).startswith(b"TEARDOWN"):
                    break
                continue
            method, url, headers, body = await _read_request(reader)
            cseq = headers.get("cseq", "0")
            if method == "OPTIONS":
                _reply(writer, cseq, headers={"Public": "OPTIONS, DESCRIBE, ANNOUNCE, SETUP, "
                                                        "PLAY, RECORD, TEARDOWN, GET_PARAMETER"})
            elif method == "ANNOUNCE":
                path = _path_of(url)
                PATHS.setdefault(path, Path_()).sdp = body
                role = "publisher"
                _reply(writer, cseq)
            elif method == "DESCRIBE":
                path = _path_of(url)
                entry = PATHS.get(path)
                if entry is None or entry.sdp is None:
                    _reply(writer, cseq, "404 Not Found")
                else:
                    _reply(writer, cseq, headers={"Content-Type": "application/sdp",
                                                  "Content-Base": url.rstrip("/") + "/"},
                           body=entry.sdp)
            elif method == "SETUP":
                transport = headers.get("transport", "")
                if "TCP" not in transport.upper():
                    _reply(writer, cseq, "461 Unsupported Transport")
                else:
                    _reply(writer, cseq, headers={"Transport": transport, "Session": session})
            elif method == "RECORD":
                _reply(writer, cseq, headers={"Session": session})
                role = "publisher-recording"
            elif method == "PLAY":
                _reply(writer, cseq, headers={"Session": session})
                role = "reader"
                PATHS[path].readers.add(writer)
            elif method == "TEARDOWN":
                _reply(writer, cseq, headers={"Session": session})
                break
            else:  # GET_PARAMETER keep-alives and the rest
                _reply(writer, cseq, headers={"Session": session})
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError, ValueError):
        pass
    finally:
        if role == "publisher-recording" and path in PATHS:
            for client in PATHS[path].readers:
                client.close()
            del PATHS[path]
        elif role == "reader" and path in PATHS:
            PATHS[path].readers.discard(writer)
        writer.close()


async def main(port: int) -> None:
    server = await asyncio.start_server(_handle, "127.0.0.1", port)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
