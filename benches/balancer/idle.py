#!/usr/bin/env python3
"""Opens N keep-alive client connections to HOST:PORT, sends one request on
each, reads its answer, then holds them all idle until stdin closes.
Prints "ready N" once every connection is open and answered.

    idle.py HOST PORT N                 # plain HTTP
    idle.py HOST PORT N CAFILE NAME     # HTTPS, SNI and Host NAME, trusting CAFILE
"""
import asyncio
import ssl
import sys

async def one(host, port, tls, name, sem, conns):
    async with sem:
        reader, writer = await asyncio.open_connection(
            host, port, ssl=tls, server_hostname=name if tls else None)
        writer.write(b"GET / HTTP/1.1\r\nHost: %s\r\n\r\n" % name.encode())
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        await reader.readexactly(length)
        conns.append(writer)

async def main():
    host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    tls, name = None, "bench"
    if len(sys.argv) > 5:
        tls = ssl.create_default_context(cafile=sys.argv[4])
        name = sys.argv[5]
    sem = asyncio.Semaphore(500)
    conns = []
    await asyncio.gather(*(one(host, port, tls, name, sem, conns) for _ in range(n)))
    print("ready", len(conns), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    for w in conns:
        w.close()

asyncio.run(main())
