#!/usr/bin/env python3
"""tls_front: a TLS terminator for tests, in front of a cleartext ringcast engine.

Listens with TLS on 127.0.0.1 and pipes each connection's decrypted bytes to the upstream engine
(and back), so wss:// clients (ringcast-load, ringcast-cli) are tested against the real engine's
protocol until the engine speaks TLS itself. Prints "listening on 127.0.0.1:PORT" on stderr.

  --fault none           terminate TLS and proxy (default)
  --fault mid-handshake  read the ClientHello, then close the TCP connection (a truncated
                         handshake, as a server that dies or a middlebox that drops it)
  --fault plaintext      answer the ClientHello with an HTTP 400 in cleartext (a ws:// server
                         on the port a wss:// URL names)
"""
import argparse
import asyncio
import signal
import ssl
import sys


async def pipe(reader, writer):
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except (ConnectionError, ssl.SSLError, OSError):
        pass
    finally:
        try:
            writer.close()
        except Exception:  # noqa: BLE001 - already gone
            pass


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--cert")
    ap.add_argument("--key")
    ap.add_argument("--upstream-port", type=int, default=0)
    ap.add_argument("--fault", default="none", choices=["none", "mid-handshake", "plaintext"])
    a = ap.parse_args()

    async def proxy(reader, writer):
        try:
            ur, uw = await asyncio.open_connection("127.0.0.1", a.upstream_port)
        except OSError:
            writer.close()
            return
        await asyncio.gather(pipe(reader, uw), pipe(ur, writer))

    async def faulty(reader, writer):
        try:
            await reader.read(5)  # the record header of the ClientHello: the handshake started
            if a.fault == "plaintext":
                writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                await writer.drain()
        finally:
            writer.close()

    if a.fault == "none":
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(a.cert, a.key)
        ctx.set_alpn_protocols(["http/1.1"])
        server = await asyncio.start_server(proxy, "127.0.0.1", a.port, ssl=ctx, backlog=4096)
    else:
        server = await asyncio.start_server(faulty, "127.0.0.1", a.port, backlog=4096)
    port = server.sockets[0].getsockname()[1]
    print("listening on 127.0.0.1:%d" % port, file=sys.stderr, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(main())
