"""A TCP proxy that holds everything it forwards for a fixed time in each direction: a link with a
round trip of twice that, for `bench_pacs.py --delay-ms` (this machine has no netem).

    python bench/delay_proxy.py LISTEN_PORT TARGET_PORT DELAY_MS

It is Python on the same cores as what it measures, so it also adds a little CPU per chunk; compare
variants in one run, not across runs."""

import asyncio
import sys
import time


async def pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
    """Copy reader to writer, each chunk sent `delay` seconds after it arrived, in order."""
    queue: asyncio.Queue[tuple[float, bytes | None]] = asyncio.Queue()

    async def out() -> None:
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

    sender = asyncio.create_task(out())
    while True:
        data = await reader.read(1 << 20)
        queue.put_nowait((time.monotonic() + delay, data or None))
        if not data:
            break
    await sender


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, port: int, delay: float) -> None:
    target_reader, target_writer = await asyncio.open_connection("127.0.0.1", port)
    await asyncio.gather(pump(reader, target_writer, delay), pump(target_reader, writer, delay),
                         return_exceptions=True)


async def main(listen: int, target: int, delay: float) -> None:
    server = await asyncio.start_server(lambda r, w: handle(r, w, target, delay), "127.0.0.1", listen)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]) / 1000))
