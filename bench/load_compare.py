"""`longvec serve` against a peer server (infinity) under the same load, and against longvec's own library.

Both servers run on 127.0.0.1, serve the same model and are driven by the same lean async HTTP/1.1 clients
(harness/http1.py: httpx cost more CPU per request than the server it measured); each server is
alone on the machine while it is measured (started, warmed, measured, stopped), and repeats alternate the order.
Workloads:
- `query`: one search query (~10 tokens) per request;
- `doc-2k`: one 2,048-token document per request. longvec embeds it whole (its half-overlapping windows of the
  model's trained length, pooled into one vector); a peer truncates at that length, so it is sent the text of
  exactly those windows as a list in the same request: the same encoder tokens, counted as 2,048 document tokens.
Clients: closed loop at concurrency 1, 8, 32 (each client sends its next request when the last one is answered)
and open loop at fixed rates (a request every 1/rate s whatever the answers; latency runs from the scheduled send,
so a server that falls behind is charged its backlog). Each level stops issuing after `--seconds` or `--requests`,
waits as long again for requests in flight and cancels the rest ("unfinished"). Server RSS: the server process
tree's resident memory, sampled every 0.2 s during the level (peak). The library: the same texts through
`Embedder.embed` in one call per repeat (all requests merged), in a fresh process with the server's threads.

Run through `bench/load.py --against infinity` (see there); raw samples go to `--out`.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx  # readiness polls only; the load itself goes through harness.http1
import numpy as np
from harness.http1 import FAILURES, Http1Pool

HOST = "127.0.0.1"  # never anything else
ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class ServerSpec:
    """How to start one server and ask it for embeddings."""

    name: str
    command: Callable[[int], list[str]]  # port -> argv
    env: dict[str, str]
    ready_path: str
    embed_path: str
    model: str | None  # the model name a request names (None: left out)
    whole_documents: bool  # True: a long text is embedded whole; False: it is sent as its windows' texts

    def body(self, texts: list[str]) -> dict[str, Any]:
        return {"input": texts, **({"model": self.model} if self.model else {})}


def longvec_spec(bundle: Path, threads: int) -> ServerSpec:
    code = "import sys; from longvec.runtime.cli.main import main; sys.exit(main())"
    return ServerSpec(
        name="longvec",
        command=lambda port: (
            [
                *[sys.executable, "-c", code, "serve", str(bundle), "--host", HOST, "--port", str(port)],
                *["--threads", str(threads), "--log-level", "warning", "--no-auth"],
            ]
        ),
        env=dict(os.environ),
        ready_path="/ready",
        embed_path="/v1/embeddings",
        model=None,
        whole_documents=True,
    )


def infinity_spec(venv: Path, model_dir: Path, threads: int, engine: str, batch_size: int) -> ServerSpec:
    """infinity-emb from its private venv, the model from a local directory, no hub and no telemetry."""
    hub = tempfile.mkdtemp(prefix="longvec-infinity-hub-")  # an empty cache: nothing downloaded can be used
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_HOME=hub, DO_NOT_TRACK="1")
    env.update(INFINITY_ANONYMOUS_USAGE_STATS="0", OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    env.pop("PYTHONPATH", None)
    return ServerSpec(
        name=f"infinity ({engine})",
        command=lambda port: (
            [
                *[str(venv / "bin" / "infinity_emb"), "v2", "--model-id", str(model_dir)],
                *["--served-model-name", "minilm", "--host", HOST, "--port", str(port), "--engine", engine],
                *["--device", "cpu", "--batch-size", str(batch_size), "--url-prefix", "", "--no-model-warmup"],
            ]
        ),
        env=env,
        ready_path="/health",
        embed_path="/embeddings",
        model="minilm",
        whole_documents=False,
    )


@dataclass
class Level:
    server: str
    workload: str
    mode: str  # "c=8" (closed loop) or "rate=50/s" (open loop)
    repeat: int
    completed: int
    unfinished: int
    errors: dict[str, int]
    seconds: float
    texts_per_s: float
    tokens_per_s: float
    p50_ms: float
    p99_ms: float
    rss_peak_mb: float
    server_cpu_ms_per_text: float
    latencies_ms: list[float] = field(repr=False, default_factory=list)


def _tree(pid: int) -> list[int]:
    """A process and its descendants (Linux /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        todo += children.get(p, [])
    return found


def tree_rss_mb(pid: int) -> float:
    """Resident memory of a process and its descendants."""
    total = 0
    for p in _tree(pid):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


def tree_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a process and its descendants have used: per request, a figure that a busy
    machine delays but does not inflate much, unlike latency."""
    ticks = 0
    for p in _tree(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            pass
    return ticks / os.sysconf("SC_CLK_TCK")


def wait_ready(proc: subprocess.Popen[bytes], url: str, seconds: float, why: Callable[[], str]) -> None:
    """Poll `url` until it answers 200; RuntimeError (with `why()`, e.g. the log's tail) when the process exits
    first or `seconds` pass. Both load scripts start their servers through this."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with {proc.returncode} before it was ready:\n{why()}")
        try:
            if httpx.get(url, timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"not ready after {seconds:.0f} s: {why()}")


def start(spec: ServerSpec, port: int, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        proc = subprocess.Popen(spec.command(port), stdout=out, stderr=subprocess.STDOUT, env=spec.env)
    try:
        wait_ready(proc, f"http://{HOST}:{port}{spec.ready_path}", 300, lambda: log.read_text(errors="replace")[-3000:])
    except RuntimeError as e:
        raise RuntimeError(f"{spec.name} {e}") from None
    return proc


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


async def run_level(
    http: Http1Pool,
    spec: ServerSpec,
    pid: int,
    bodies: list[bytes],
    texts_per_request: int,
    tokens_per_request: float,
    mode: tuple[str, float],
    seconds: float,
    max_requests: int,
) -> dict[str, Any]:
    kind, value = mode
    latencies: list[float] = []
    errors: dict[str, int] = {}
    issued = 0
    rss = [tree_rss_mb(pid)]
    cpu0 = tree_cpu_s(pid)
    t0 = time.perf_counter()
    deadline = t0 + seconds

    async def one(scheduled: float) -> None:
        body = bodies[len(latencies) % len(bodies)]
        try:
            r = await http.post(spec.embed_path, body)
            status = str(r.status_code)
        except FAILURES as e:
            status = type(e).__name__
        if status == "200":
            latencies.append(time.perf_counter() - scheduled)
        else:
            errors[status] = errors.get(status, 0) + 1

    async def closed_client() -> None:
        nonlocal issued
        while issued < max_requests and time.perf_counter() < deadline:
            issued += 1
            await one(time.perf_counter())

    async def sampler() -> None:
        while True:
            await asyncio.sleep(0.2)
            rss.append(tree_rss_mb(pid))

    sampling = asyncio.create_task(sampler())
    tasks: list[asyncio.Task[None]] = []
    if kind == "c":
        tasks = [asyncio.create_task(closed_client()) for _ in range(int(value))]
    else:  # open loop: one request every 1/rate s, answered or not
        while issued < max_requests and (at := t0 + issued / value) < deadline:
            await asyncio.sleep(max(0.0, at - time.perf_counter()))
            issued += 1
            tasks.append(asyncio.create_task(one(at)))
    _, pending = await asyncio.wait(tasks, timeout=max(1.0, deadline + seconds - time.perf_counter()))
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    elapsed = time.perf_counter() - t0
    cpu = tree_cpu_s(pid) - cpu0
    sampling.cancel()
    ms = np.percentile(np.array(latencies) * 1000, [50, 99]) if latencies else np.full(2, np.nan)
    ok = len(latencies)
    return {
        "completed": ok,
        "unfinished": len(pending) if kind != "c" else issued - ok - sum(errors.values()),
        "errors": errors,
        "seconds": round(elapsed, 2),
        "texts_per_s": round(ok * texts_per_request / elapsed, 2),
        "tokens_per_s": round(ok * tokens_per_request / elapsed),
        "p50_ms": round(float(ms[0]), 1),
        "p99_ms": round(float(ms[1]), 1),
        "rss_peak_mb": round(max(rss), 1),
        "server_cpu_ms_per_text": round(1000 * cpu / max(ok * texts_per_request, 1), 2),
        "latencies_ms": [round(x * 1000, 2) for x in latencies],
    }


@dataclass(frozen=True)
class Workload:
    name: str
    texts: list[str]  # one per request (what longvec is sent)
    windows: list[list[str]]  # per text, the texts of longvec's windows (what a truncating peer is sent)
    tokens: list[int]  # content tokens of each text


async def measure_server(
    spec: ServerSpec,
    workloads: list[Workload],
    modes: list[tuple[str, float]],
    repeat: int,
    args: Any,
    log_dir: Path,
) -> list[Level]:
    port = _free_port()
    proc = start(spec, port, log_dir / f"{spec.name.split()[0]}-{repeat}.log")
    levels = []
    try:
        async with Http1Pool(HOST, port) as http:
            for w in workloads:
                bodies = [
                    json.dumps(spec.body([t] if spec.whole_documents else ws)).encode()
                    for t, ws in zip(w.texts, w.windows)
                ]
                for body in bodies[:4]:  # warm up: connections, the model's first batches
                    r = await http.post(spec.embed_path, body)
                    r.raise_for_status()
                for mode in modes:
                    got = await run_level(
                        http,
                        spec,
                        proc.pid,
                        bodies,
                        1,
                        float(np.mean(w.tokens)),
                        mode,
                        args.seconds,
                        args.requests,
                    )
                    level = Level(spec.name, w.name, f"{mode[0]}={mode[1]:g}", repeat, **got)
                    levels.append(level)
                    print(json.dumps({k: v for k, v in asdict(level).items() if k != "latencies_ms"}), flush=True)
    finally:
        stop(proc)
    return levels


LIBRARY = """
import json, sys, time
from longvec.runtime import Embedder
texts = json.loads(open(sys.argv[3]).read())
e = Embedder.load(sys.argv[1], threads=int(sys.argv[2]))
e.embed(texts[:8])
got = {}
for group in sys.argv[4].split(","):
    size = int(group) or len(texts)
    t0, c0 = time.perf_counter(), time.process_time()
    for i in range(0, len(texts), size):
        e.embed(texts[i : i + size])
    got[group] = {"seconds": time.perf_counter() - t0, "cpu_seconds": time.process_time() - c0}
print(json.dumps(got))
"""


def library_rates(
    bundle: Path, threads: int, texts: list[str], groups: list[int], folder: Path
) -> dict[int, tuple[float, float]]:
    """Per group size: texts per second and CPU ms per text of `Embedder.embed` on the texts in calls of that many
    (0: one call on all of them, every request merged), in a fresh process. A server with c clients can merge at
    most c requests into one call: calls of c texts are the library doing the server's work without HTTP."""
    path = folder / "library_texts.json"
    path.write_text(json.dumps(texts))
    cmd = [sys.executable, "-c", LIBRARY, str(bundle), str(threads), str(path), ",".join(map(str, groups))]
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    got = json.loads(done.stdout.strip().splitlines()[-1])
    timed = {int(group): t for group, t in got.items()}
    return {g: (len(texts) / t["seconds"], 1000 * t["cpu_seconds"] / len(texts)) for g, t in timed.items()}


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def summarize(levels: list[Level], library: dict[str, list[float]]) -> dict[str, Any]:
    """Medians over repeats per (workload, mode, server), and the ratios the issue asks for."""
    groups: dict[tuple[str, str, str], list[Level]] = {}
    for lv in levels:
        groups.setdefault((lv.workload, lv.mode, lv.server), []).append(lv)
    rows = {}
    for key, lvs in groups.items():
        rows["|".join(key)] = {
            "n": len(lvs),
            **{
                k: float(np.median([getattr(lv, k) for lv in lvs]))
                for k in ("texts_per_s", "tokens_per_s", "p50_ms", "p99_ms", "rss_peak_mb", "server_cpu_ms_per_text")
            },
            "unfinished": sum(lv.unfinished for lv in lvs),
            "errors": sum(sum(lv.errors.values()) for lv in lvs),
        }
    ratios = {}
    servers = sorted({lv.server for lv in levels})
    peers = [s for s in servers if s != "longvec"]
    for workload in sorted({lv.workload for lv in levels}):
        for mode in sorted({lv.mode for lv in levels if lv.workload == workload}):
            mine = rows.get(f"{workload}|{mode}|longvec")
            for peer in peers:
                theirs = rows.get(f"{workload}|{mode}|{peer}")
                if mine and theirs and theirs["texts_per_s"] > 0:
                    ratios[f"{workload} {mode}: longvec / {peer} texts/s"] = mine["texts_per_s"] / theirs["texts_per_s"]
                    ratios[f"{workload} {mode}: longvec / {peer} p99"] = mine["p99_ms"] / max(theirs["p99_ms"], 1e-9)
            lib = library.get(workload)
            if mine and lib:
                ratios[f"{workload} {mode}: longvec server / library texts/s"] = mine["texts_per_s"] / float(
                    np.median(lib)
                )
            same_merge = library.get(f"{workload} in calls of {mode.removeprefix('c=')}")
            if mine and same_merge and mode.startswith("c="):
                ratios[f"{workload} {mode}: longvec server / library in calls of as many texts"] = mine[
                    "texts_per_s"
                ] / float(np.median(same_merge))
    return {"rows": rows, "ratios": ratios, "library_texts_per_s": {k: float(np.median(v)) for k, v in library.items()}}


def markdown(summary: dict[str, Any]) -> str:
    lines = [
        "| workload | clients | server | n | texts/s | tokens/s | p50 ms | p99 ms | RSS MB | CPU ms/text | unfinished |"
        " failed |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for key, r in sorted(summary["rows"].items()):
        workload, mode, server = key.split("|")
        lines.append(
            f"| {workload} | {mode} | {server} | {r['n']} | {r['texts_per_s']:.1f} | {r['tokens_per_s']:,.0f} | "
            f"{r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['rss_peak_mb']:.0f} | {r['server_cpu_ms_per_text']:.2f} | "
            f"{r['unfinished']} | {r['errors']} |"
        )
    lines += ["", "| ratio | value |", "|---|---|"]
    lines += [f"| {k} | {v:.2f} |" for k, v in summary["ratios"].items()]
    lines += ["", "Library (one embed call, every request merged; or in calls of c texts), texts/s: "]
    lines[-1] += ", ".join(f"{k} {v:.1f}" for k, v in summary["library_texts_per_s"].items())
    if "library_cpu_ms_per_text" in summary:
        lines[-1] += "; CPU ms per text: "
        lines[-1] += ", ".join(f"{k} {v:.2f}" for k, v in summary["library_cpu_ms_per_text"].items())
    return "\n".join(lines)


def build_workloads(args: Any) -> list[Workload]:
    """Queries from the query file (else short synthetic ones) and 2k-token documents cut from the corpus."""
    from harness.workloads import WorkloadBuilder, read_corpus, read_queries

    from longvec.runtime.bundle.reader import Bundle
    from longvec.runtime.core.text import TextTokenizer

    bundle = Bundle.open(args.bundle, verify=False)
    tokenizer = TextTokenizer.from_file(bundle.path(bundle.manifest.tokenizer_file))
    builder = WorkloadBuilder(tokenizer, bundle.manifest, read_corpus(args.corpus))
    queries = read_queries(args.queries, args.n_queries)
    plan = builder._embedder.plan()  # the windows `embed` plans for a long text (half-overlapping)
    docs = [builder.text_of_tokens(args.doc_tokens, skip=k) for k in range(args.n_docs)]
    windows = []
    for doc, tok in zip(docs, tokenizer.encode(docs)):
        off = tok.offsets
        starts = plan.starts(len(tok))
        ends = np.minimum(starts + plan.content, len(tok))
        windows.append([doc[int(off[s, 0]) : int(off[e - 1, 1])] for s, e in zip(starts, ends)])
    return [
        Workload("query", queries, [[q] for q in queries], [len(t) for t in tokenizer.encode(queries)]),
        Workload(f"doc-{args.doc_tokens // 1024}k", docs, windows, [len(t) for t in tokenizer.encode(docs)]),
    ]


def run_compare(args: Any) -> dict[str, Any]:
    from harness.machine import machine

    load_before = os.getloadavg()
    out: Path = args.out
    (out / "logs").mkdir(parents=True, exist_ok=True)
    specs = [longvec_spec(args.bundle, args.threads)] + [
        infinity_spec(args.infinity_venv, args.model_dir, args.threads, engine, args.infinity_batch_size)
        for engine in args.infinity_engines
    ]
    # --workloads queries,documents (load.py's names) picks the query and the doc-Nk workloads
    prefixes = tuple({"queries": "query", "documents": "doc-"}.get(w, w) for w in args.workloads)
    workloads = [w for w in build_workloads(args) if w.name.startswith(prefixes)]
    levels: list[Level] = []
    library: dict[str, list[float]] = {}  # "query" (all merged), "query in calls of 32", ...
    library_cpu: dict[str, list[float]] = {}
    per_repeat = []
    for r in range(args.repeats):
        shift = r % len(specs)
        for spec in specs[shift:] + specs[:shift]:  # each server alone on the machine, the order rotated
            for w in workloads:
                rates = args.query_rates if w.name == "query" else args.doc_rates
                modes = [("c", float(c)) for c in args.concurrency] + [("rate", float(x)) for x in rates]
                seconds = args.query_seconds if w.name == "query" else args.doc_seconds
                sub = type(args)(**{**vars(args), "seconds": seconds})
                levels += asyncio.run(measure_server(spec, [w], modes, r, sub, out / "logs"))
        for w in workloads:
            groups = [0, *args.concurrency]
            for group, (rate, cpu_ms) in library_rates(args.bundle, args.threads, w.texts, groups, out).items():
                key = w.name if group == 0 else f"{w.name} in calls of {group}"
                library.setdefault(key, []).append(rate)
                library_cpu.setdefault(key, []).append(cpu_ms)
        per_repeat.append(os.getloadavg()[0])
    summary = summarize(levels, library)
    result = {
        "machine": machine(),
        "load_average": {"before": load_before, "after": os.getloadavg(), "per_repeat": per_repeat},
        "config": {k: str(v) for k, v in vars(args).items()},
        "workloads": {
            w.name: {"requests": len(w.texts), "tokens_per_text": float(np.mean(w.tokens))} for w in workloads
        },
        "library_cpu_ms_per_text": {k: float(np.median(v)) for k, v in library_cpu.items()},
        "levels": [asdict(lv) for lv in levels],
        **summary,
    }
    (out / "results.json").write_text(json.dumps(result, indent=1))
    return result
