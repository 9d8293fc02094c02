#!/usr/bin/env python3
"""Opens N keep-alive client connections to HOST:PORT, sends one request on
each, reads its answer, then holds them all idle until stdin closes.
Prints "ready N" once every connection is open and answered."""
import asyncio
import sys

async def one(host, port, sem, conns):
    async with sem:
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n")
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
    sem = asyncio.Semaphore(500)
    conns = []
    await asyncio.gather(*(one(host, port, sem, conns) for _ in range(n)))
    print("ready", len(conns), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    for w in conns:
        w.close()

asyncio.run(main())
