"""The limit: a receive-only uvloop receiver, one UDP socket per call, that counts packets, nothing else.

Run: python -m bench.load.limit --base 40000 --calls N --out limit.json (SIGTERM ends it)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
from pathlib import Path


class Counter(asyncio.DatagramProtocol):
    """Counts the datagrams of one socket into a shared one-element list."""

    def __init__(self, total: list[int]) -> None:
        self.total = total

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        self.total[0] += 1


async def serve(host: str, base: int, calls: int, out: Path) -> None:
    loop = asyncio.get_running_loop()
    total = [0]
    transports = []
    for i in range(calls):
        transport, _ = await loop.create_datagram_endpoint(
            lambda: Counter(total), local_addr=(host, base + i)
        )
        transports.append(transport)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    print("ready", flush=True)
    await stop.wait()
    for transport in transports:
        transport.close()
    out.write_text(json.dumps({"received": total[0]}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--base", type=int, required=True)
    parser.add_argument("--calls", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    import uvloop

    uvloop.run(serve(args.host, args.base, args.calls, args.out))


if __name__ == "__main__":
    main()
