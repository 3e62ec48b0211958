"""The Python peer, for scale: aio-pika doing what amqp-bench's variants do.

    python peer.py publish --queue Q --n N --body B --window W [--url URL]
    python peer.py consume --queue Q --n N --prefetch P [--url URL]

Prints one JSON line with the same fields as the Rust variants: wall time and this
process's own user + system CPU (getrusage RUSAGE_SELF) over the measured part.
"""

import argparse
import asyncio
import json
import os
import resource
import time

import aio_pika


def snapshot():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return time.perf_counter(), usage.ru_utime, usage.ru_stime


def result(bench, count, start, end):
    wall = end[0] - start[0]
    user = end[1] - start[1]
    sys_ = end[2] - start[2]
    return {
        "bench": bench,
        "impl": "aio-pika",
        "count": count,
        "wall_s": wall,
        "user_s": user,
        "sys_s": sys_,
        "cpu_s": user + sys_,
        "per_s": count / wall,
        "cpu_us_per_op": (user + sys_) * 1e6 / count,
    }


async def publish(args):
    """W coroutines, each publishing (persistent, mandatory, with a message id) and
    waiting for the broker's confirm before the next: at most W in flight."""
    connection = await aio_pika.connect(args.url)
    channel = await connection.channel(publisher_confirms=True)
    exchange = channel.default_exchange
    body = b"x" * args.body
    prefix = int.from_bytes(os.urandom(8), "little")
    state = {"next": 0}

    async def publisher():
        while True:
            i = state["next"]
            if i >= args.n:
                return
            state["next"] = i + 1
            message = aio_pika.Message(
                body,
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                message_id=f"{prefix:016x}-{i:x}",
            )
            await exchange.publish(message, routing_key=args.queue, mandatory=True)

    await asyncio.sleep(0.2)
    start = snapshot()
    await asyncio.gather(*(publisher() for _ in range(args.window)))
    end = snapshot()
    await connection.close()
    return result("publish", args.n, start, end)


async def consume(args):
    """basic.qos(P), one consumer; each message looked at and acked. Measured from the
    first delivery to the last ack."""
    connection = await aio_pika.connect(args.url)
    channel = await connection.channel()
    await channel.set_qos(prefetch_count=args.prefetch)
    queue = await channel.get_queue(args.queue, ensure=True)
    start = None
    count = 0
    async with queue.iterator() as messages:
        async for message in messages:
            if start is None:
                start = snapshot()
            len(message.body)
            await message.ack()
            count += 1
            if count == args.n:
                break
    end = snapshot()
    await connection.close()
    return result("consume", args.n, start, end)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("command", choices=["publish", "consume"])
    parser.add_argument("--url", default="amqp://guest:guest@127.0.0.1:5672/%2f")
    parser.add_argument("--queue", required=True)
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--body", type=int, default=256)
    parser.add_argument("--window", type=int, default=256)
    parser.add_argument("--prefetch", type=int, default=64)
    args = parser.parse_args()
    run = publish if args.command == "publish" else consume
    print(json.dumps(asyncio.run(run(args))), flush=True)


if __name__ == "__main__":
    main()
