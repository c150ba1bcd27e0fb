"""A TCP proxy on loopback that holds each read from the client side for a fixed delay before
passing it on: a model of a remote S3's per-request latency in front of the local emulator, so
that request patterns (one GET after another against several in flight) can be compared on
one machine. Usage: delay-proxy.py LISTEN_PORT UPSTREAM_PORT DELAY_MS SECONDS; it stops by
itself after SECONDS."""
import asyncio
import sys

listen_port, upstream_port = int(sys.argv[1]), int(sys.argv[2])
delay, lifetime = float(sys.argv[3]) / 1000, float(sys.argv[4])


async def pipe(reader, writer, delay):
    try:
        while data := await reader.read(1 << 20):
            if delay:
                await asyncio.sleep(delay)
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


async def connect(client_reader, client_writer):
    upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", upstream_port)
    await asyncio.gather(pipe(client_reader, upstream_writer, delay), pipe(upstream_reader, client_writer, 0))


async def main():
    server = await asyncio.start_server(connect, "127.0.0.1", listen_port)
    async with server:
        await asyncio.sleep(lifetime)


asyncio.run(main())
