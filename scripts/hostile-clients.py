#!/usr/bin/env python3
"""Slowloris and idle connections against one running service, with normal clients beside.

Usage: hostile-clients.py HOST:PORT PID [--slow 1000] [--idle 2000] [--seconds 45] [--path /health]

Opens --slow connections that send one header byte every 3 s and --idle ones that send
nothing, for --seconds; meanwhile a normal client opens a new connection every 100 ms
(10 req/s) for GET --path (2 s limit). Prints: failed normal requests, their p50/p99,
how long the server took to close the slow and idle connections, and the service's RSS
(VmRSS of PID) before, during and after. Every attacker is counted once, as closed by
the server (EOF or reset), still open at the end, or never connected (5 s limit), so the
three add up to the number opened. Raises its own soft file limit to the hard one; if that
is too low for slow + idle + 100, it opens fewer and says so.
"""
import argparse, asyncio, resource, time

def rss_kb(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1

async def hold(host, port, slow, seconds, closed_after, refused, open_at_end):
    start = time.monotonic()
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 5)
    except Exception:
        refused.append(1)
        return
    request = b"GET / HTTP/1.1\r\nhost: x\r\nx-slow: " + b"a" * 100
    i = 0
    end = start + seconds
    while time.monotonic() < end:
        if slow:
            try:
                writer.write(request[i % len(request):i % len(request) + 1]); i += 1
                await writer.drain()
            except Exception:
                break
        try:
            data = await asyncio.wait_for(reader.read(1024), 3 if slow else end - time.monotonic())
            if not data:
                break
        except asyncio.TimeoutError:
            continue
        except Exception:
            break
    else:
        open_at_end.append(1)
        writer.close()
        return
    closed_after.append(time.monotonic() - start)
    writer.close()

async def normal(host, port, path, seconds, latencies, failures):
    end = time.monotonic() + seconds
    async def one():
        start = time.monotonic()
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 2)
            writer.write(f"GET {path} HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n\r\n".encode())
            answer = await asyncio.wait_for(reader.read(), 2)
            writer.close()
            if answer.startswith(b"HTTP/1.1 200"):
                latencies.append(time.monotonic() - start)
            else:
                failures.append(answer[:40])
        except Exception as error:
            failures.append(repr(error))
    tasks = []
    while time.monotonic() < end:
        tasks.append(asyncio.create_task(one()))
        await asyncio.sleep(0.1)
    await asyncio.gather(*tasks)

async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("target"); parser.add_argument("pid", type=int)
    parser.add_argument("--slow", type=int, default=1000)
    parser.add_argument("--idle", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=45)
    parser.add_argument("--path", default="/health")
    args = parser.parse_args()
    host, port = args.target.rsplit(":", 1); port = int(port)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    room = hard - 100
    if args.slow + args.idle > room:
        scale = room / (args.slow + args.idle)
        args.slow, args.idle = int(args.slow * scale), int(args.idle * scale)
        print(f"file limit {hard}: opening only {args.slow} slow + {args.idle} idle")
    rss_before = rss_kb(args.pid)
    slow_closed, idle_closed, latencies, failures = [], [], [], []
    slow_refused, idle_refused, slow_open, idle_open = [], [], [], []
    attack = [hold(host, port, True, args.seconds, slow_closed, slow_refused, slow_open)
              for _ in range(args.slow)]
    attack += [hold(host, port, False, args.seconds, idle_closed, idle_refused, idle_open)
               for _ in range(args.idle)]
    async def sample_rss(out):
        await asyncio.sleep(min(5, args.seconds / 3)); out.append(rss_kb(args.pid))
    during = []
    await asyncio.gather(normal(host, port, args.path, args.seconds, latencies, failures),
                         sample_rss(during), *attack)
    await asyncio.sleep(2)
    rss_after = rss_kb(args.pid)
    latencies.sort()
    pct = lambda p: latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000 if latencies else float("nan")
    def closed(label, times, total, still_open, refused):
        times.sort()
        line = f"{label}: {len(times)}/{total} closed by the server"
        if times:
            line += f", after {times[0]:.1f}..{times[-1]:.1f} s (median {times[len(times)//2]:.1f} s)"
        print(f"{line}; {len(still_open)} still open at the end; {len(refused)} never connected")
    print(f"normal: {len(latencies) + len(failures)} requests, {len(failures)} failed, p50 {pct(0.5):.1f} ms, p99 {pct(0.99):.1f} ms")
    if failures: print("  first failures:", failures[:3])
    closed("slowloris", slow_closed, args.slow, slow_open, slow_refused)
    closed("idle", idle_closed, args.idle, idle_open, idle_refused)
    print(f"RSS kB: before {rss_before}, during {during[0] if during else -1}, after {rss_after}")

asyncio.run(main())
