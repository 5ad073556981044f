"""A TCP proxy that delays what the server sends by a fixed time: a link
with that much latency (each chunk leaves DELAY after it arrived, in
order, without holding up the chunks behind it), so every request and
answer round trip through it costs DELAY more.  It also counts the
connections it accepted and the chunks clients sent, for the benchmark
to see how many connections and round trips a request used.

    python3 tcpproxy.py --target HOST:PORT --delay-ms 100 \
        --port-file F --stats-file S

Stats (JSON, rewritten on every change): {"connections": N, "chunks": M}.
"""
import argparse
import asyncio
import json
import os
import socket
import sys
import time


class Stats:
    def __init__(self, path):
        self.path = path
        self.connections = 0
        self.chunks = 0

    def save(self):
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"connections": self.connections,
                       "chunks": self.chunks}, f)
        os.replace(tmp, self.path)


def nodelay(writer):
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


async def pump(reader, writer, delay, stats=None):
    """Copy reader to writer, each chunk DELAY seconds after it came."""
    queue = asyncio.Queue()

    async def sender():
        while True:
            due, data = await queue.get()
            if data is None:
                break
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            writer.write(data)
            await writer.drain()
        writer.close()

    task = asyncio.ensure_future(sender())
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            if stats is not None:
                stats.chunks += 1
                stats.save()
            await queue.put((time.monotonic() + delay, data))
    except (ConnectionError, OSError):
        pass
    await queue.put((0, None))
    try:
        await task
    except (ConnectionError, OSError):
        pass


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--target", required=True)
    ap.add_argument("--delay-ms", type=float, default=0.0)
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--stats-file", required=True)
    a = ap.parse_args()
    host, port = a.target.rsplit(":", 1)
    delay = a.delay_ms / 1000.0
    stats = Stats(a.stats_file)
    stats.save()

    async def handle(creader, cwriter):
        stats.connections += 1
        stats.save()
        try:
            sreader, swriter = await asyncio.open_connection(host, int(port))
        except OSError:
            cwriter.close()
            return
        nodelay(cwriter)
        nodelay(swriter)
        await asyncio.gather(pump(creader, swriter, 0.0, stats),
                             pump(sreader, cwriter, delay))

    async def run():
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        p = server.sockets[0].getsockname()[1]
        with open(a.port_file + ".tmp", "w") as f:
            f.write(str(p))
        os.replace(a.port_file + ".tmp", a.port_file)
        async with server:
            await server.serve_forever()

    asyncio.run(run())


if __name__ == "__main__":
    sys.exit(main())
