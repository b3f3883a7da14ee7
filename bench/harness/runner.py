"""`longvec bench`: throughput, latency and cold start of longvec beside its peers, measured in one run.

Every system runs in its own worker process (bench/harness/worker.py), loaded once, so torch never enters the
longvec process and no system pays for another's imports. Cases are interleaved: each repeat runs every case on
every system, in an order rotated per repeat, so slow drift of a loaded machine spreads over all systems.
Medians over repeats are reported. Extras that need packages longvec does not depend on (the compute floor uses
onnx, the plot matplotlib, the peers torch and fastembed) are scripts in the repository's bench/ folder.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from harness.machine import machine
from harness.workloads import Case, build_cases, read_corpus, read_queries
from longvec.runtime.bundle.reader import Bundle
from longvec.runtime.core.text import TextTokenizer
from longvec.runtime.errors import BackendUnavailable, InputError

BENCH = Path(__file__).resolve().parents[1]  # the repository's bench/ folder: peers, compute floor, span pooling, plot
OWN_SYSTEMS = ("longvec", "longvec-nospin", "bare-ort")
PEER_SYSTEMS = ("sentence-transformers", "fastembed")
VARIANT_FREE = ("sentence-transformers",)  # torch runs the source model, not a bundle variant


@dataclass
class BenchConfig:
    bundle: Path
    variants: list[str]
    systems: list[str]
    repeats: int
    threads: int
    out: Path
    corpus: Path
    queries: Path
    model_dir: Path | None  # the source model directory (sentence-transformers, fastembed configs, FLOPs)
    n_queries: int = 64
    batches: list[tuple[int, int]] = field(default_factory=lambda: [(8, 512), (32, 128)])
    doc_tokens: list[int] = field(default_factory=lambda: [2048, 8192, 32768, 131072])
    big_doc_repeats: int = 3  # repeats for documents of >= 32k tokens (each is minutes of CPU per system)
    cold_repeats: int = 5
    extras: tuple[str, ...] = ("floor", "span", "plot")
    peer_path: str = ""  # extra PYTHONPATH for peer workers (e.g. a private fastembed install)
    device: str = "cpu"  # "cuda": longvec on onnxruntime-gpu, sentence-transformers on CUDA in fp16
    load_per_repeat: list[float] = field(default_factory=list)  # 1-minute load average after each repeat
    mixed_paragraphs: int = 256  # the mixed-length case (paragraphs of 19-170 words); 0 leaves it out


class Worker:
    """One loaded system in a subprocess, answering case requests."""

    def __init__(self, system: str, variant: str, cmd: list[str], env: dict[str, str], log: Path) -> None:
        self.system, self.variant = system, variant
        self.label = system if system in VARIANT_FREE else f"{system}/{variant}"
        self.log = log
        self._err: IO[str] = log.open("w")
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._err, text=True, env=env
        )
        self.ready = self._read()

    def _read(self) -> dict:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait()
            tail = self.log.read_text(errors="replace").strip().splitlines()[-6:]
            raise BackendUnavailable(f"{self.label} worker exited ({self.proc.returncode}): " + " | ".join(tail))
        return json.loads(line)

    def run(self, case: str) -> tuple[list[float], list[float]]:
        """Seconds per call, and for longvec the seconds of each call spent inside the encoder backend."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"case": case}) + "\n")
        self.proc.stdin.flush()
        reply = self._read()
        return [float(s) for s in reply["seconds"]], [float(s) for s in reply.get("encoder_seconds", [])]

    def close(self) -> None:
        if self.proc.poll() is None and self.proc.stdin is not None:
            self.proc.stdin.write('{"quit": 1}\n')
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self._err.close()


def _env(cfg: BenchConfig, system: str) -> dict[str, str]:
    env = dict(os.environ)
    # the harness and the peers import from bench/ (`harness.worker`), whatever the caller's working folder
    own = [str(BENCH), cfg.peer_path if system in PEER_SYSTEMS else "", env.get("PYTHONPATH", "")]
    paths = [p for p in own if p]
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env["HF_HUB_OFFLINE"] = env["TRANSFORMERS_OFFLINE"] = "1"
    # one knob for every system's thread pools (BLAS in numpy and torch included)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(cfg.threads)
    env["LONGVEC_BENCH_DEVICE"] = cfg.device  # read by the workers (harness/worker.py, peers.py)
    return env


CPU_ONLY = ("bare-ort", "fastembed")  # not run with --device cuda: they would compare a CPU run with a GPU one


def _script(name: str) -> Path:
    if not (BENCH / name).is_file():
        raise BackendUnavailable(f"needs the repository's bench/{name}, missing from {BENCH}")
    return BENCH / name


def _worker_cmd(cfg: BenchConfig, system: str, variant: str, workload: Path) -> list[str]:
    common = [system, "--bundle", str(cfg.bundle), "--variant", variant, "--threads", str(cfg.threads)]
    common += ["--workload", str(workload)]
    if system in OWN_SYSTEMS:
        return [sys.executable, "-m", "harness.worker", *common]
    if cfg.model_dir is None:
        raise BackendUnavailable(f"{system} needs the source model directory (--model-dir)")
    return [sys.executable, str(_script("peers.py")), *common, "--model-dir", str(cfg.model_dir)]


def start_workers(cfg: BenchConfig, workload: Path, log_dir: Path) -> tuple[list[Worker], dict[str, str]]:
    workers, unavailable = [], {}
    for system in cfg.systems:
        for variant in cfg.variants[:1] if system in VARIANT_FREE else cfg.variants:
            label = system if system in VARIANT_FREE else f"{system}/{variant}"
            if cfg.device != "cpu" and system in CPU_ONLY:
                unavailable[label] = f"runs on CPU only; not run with --device {cfg.device}"
                continue
            try:
                cmd = _worker_cmd(cfg, system, variant, workload)
                workers.append(
                    Worker(system, variant, cmd, _env(cfg, system), log_dir / f"{label.replace('/', '_')}.log")
                )
                print(f"  loaded {label} in {workers[-1].ready['load_seconds']:.2f} s", file=sys.stderr)
            except BackendUnavailable as e:
                unavailable[label] = str(e)
                print(f"  {label} unavailable: {e}", file=sys.stderr)
    return workers, unavailable


def repeats_for(case: Case, cfg: BenchConfig) -> int:
    if case.kind == "document" and case.tokens >= 32768:
        return min(cfg.repeats, cfg.big_doc_repeats)
    return cfg.repeats


Samples = dict[str, dict[str, list[list[float]]]]


def measure(workers: list[Worker], cases: list[Case], cfg: BenchConfig) -> tuple[Samples, Samples]:
    """samples[worker label][case name] = one list of per-call seconds per repeat; and the same for the seconds
    spent inside the encoder (longvec workers only). A case marked `loaded` runs while `cfg.threads` busy
    processes hold the cores (a service process among others); a case with `only` runs on those systems."""
    samples: Samples = {w.label: {c.name: [] for c in cases} for w in workers}
    inside: Samples = {w.label: {c.name: [] for c in cases} for w in workers if w.system == "longvec"}
    for r in range(cfg.repeats):
        for k, case in enumerate(cases):
            if r >= repeats_for(case, cfg):
                continue
            shift = (r + k) % len(workers)
            with busy_cores(cfg.threads if case.loaded else 0):
                for w in workers[shift:] + workers[:shift]:
                    if case.only is not None and w.system not in case.only:
                        continue
                    seconds, encoder = w.run(case.name)
                    samples[w.label][case.name].append(seconds)
                    if w.label in inside:
                        inside[w.label][case.name].append(encoder)
        cfg.load_per_repeat.append(os.getloadavg()[0])
        print(f"  repeat {r + 1}/{cfg.repeats} done (load {os.getloadavg()[0]:.1f})", file=sys.stderr)
    return samples, inside


@contextlib.contextmanager
def busy_cores(n: int) -> Iterator[None]:
    """`n` processes spinning in pure Python for the duration (each takes one core when it can)."""
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]
    try:
        yield
    finally:
        for p in procs:
            p.kill()
            p.wait()


def cold_start(cfg: BenchConfig) -> dict[str, dict[str, Any]]:
    """Fresh interpreter per run: import + load + first embedding, wall seconds and peak RSS, interleaved."""
    import peers  # keeps its imports inside functions: reading its snippets does not import torch here

    from harness.worker import COLD_START

    snippets = {**COLD_START, **peers.COLD_START}
    runs: list[tuple[str, str, list[str]]] = []
    for system in cfg.systems:
        if system not in snippets:
            continue
        for variant in cfg.variants[:1] if system in VARIANT_FREE else cfg.variants:
            arg = str(cfg.model_dir) if system in PEER_SYSTEMS else str(cfg.bundle)
            runs.append((system, variant, [arg, variant, str(cfg.threads), str(cfg.bundle), str(BENCH)]))
    results: dict[str, dict[str, Any]] = {}
    for _ in range(cfg.cold_repeats):
        for system, variant, argv in runs:
            label = system if system in VARIANT_FREE else f"{system}/{variant}"
            entry = results.setdefault(label, {"seconds": [], "peak_rss_mb": [], "process_seconds": []})
            t0 = time.perf_counter()
            done = subprocess.run(
                [sys.executable, "-c", snippets[system], *argv],
                capture_output=True,
                text=True,
                env=_env(cfg, system),
                timeout=600,
            )
            wall = time.perf_counter() - t0
            if done.returncode != 0:
                entry["error"] = done.stderr.strip().splitlines()[-1:] or ["failed"]
                continue
            out = json.loads(done.stdout.strip().splitlines()[-1])
            entry["seconds"].append(out["seconds"])
            entry["peak_rss_mb"].append(out["peak_rss_mb"])
            entry["process_seconds"].append(wall)
    return results


def _stage(name: str, cfg: BenchConfig, script: str, args: list[str]) -> dict[str, Any]:
    """An extra script, announced by one line that says how it ended (never a heading with nothing under it)."""
    t0 = time.perf_counter()
    result = run_extra(cfg, script, args)
    how = f"not measured: {result['error']}" if "error" in result else f"done in {time.perf_counter() - t0:.1f} s"
    print(f"{name}: {how}", file=sys.stderr)
    return result


def run_extra(cfg: BenchConfig, script: str, args: list[str]) -> dict[str, Any]:
    try:
        path = _script(script)
    except BackendUnavailable as e:
        return {"error": str(e)}
    done = subprocess.run(
        [sys.executable, str(path), *args], capture_output=True, text=True, env=_env(cfg, "extra"), timeout=900
    )
    if done.returncode != 0:
        return {"error": (done.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def run(cfg: BenchConfig) -> dict[str, Any]:
    from harness.report import summarize

    bundle = Bundle.open(cfg.bundle, verify=False)
    for v in cfg.variants:
        bundle.variant(v)  # an unknown variant fails before anything runs
    unknown = [s for s in cfg.systems if s not in OWN_SYSTEMS + PEER_SYSTEMS]
    if unknown:
        raise InputError(f"unknown systems {unknown}; known: {', '.join(OWN_SYSTEMS + PEER_SYSTEMS)}")
    cfg.out.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    started = time.time()
    tokenizer = TextTokenizer.from_file(bundle.path(bundle.manifest.tokenizer_file))
    print("building workloads", file=sys.stderr)
    cases = build_cases(
        tokenizer,
        bundle.manifest,
        read_corpus(cfg.corpus),
        read_queries(cfg.queries, cfg.n_queries),
        cfg.batches,
        cfg.doc_tokens,
        mixed=cfg.mixed_paragraphs,
    )
    workload = cfg.out / "workload.pkl"
    with workload.open("wb") as f:
        pickle.dump(cases, f)
    (cfg.out / "logs").mkdir(exist_ok=True)
    workers, unavailable = start_workers(cfg, workload, cfg.out / "logs")
    try:
        if not workers:
            raise BackendUnavailable(f"no system could be loaded: {unavailable}")
        samples, encoder_samples = measure(workers, cases, cfg)
        ready = {w.label: w.ready for w in workers}
    finally:
        for w in workers:
            w.close()
        workload.unlink(missing_ok=True)
    print("cold start", file=sys.stderr)
    cold = cold_start(cfg) if cfg.cold_repeats > 0 else {}
    extras: dict[str, Any] = {}
    if "floor" in cfg.extras:
        config = cfg.model_dir / "config.json" if cfg.model_dir else None
        extras["floor"] = _stage(
            "compute floor",
            cfg,
            "floor.py",
            ["--threads", str(cfg.threads)] + (["--model-config", str(config)] if config else []),
        )
    if "span" in cfg.extras:
        extras["span_pooling"] = _stage("span pooling", cfg, "span_pool.py", ["--repeats", str(max(cfg.repeats, 5))])
    results = {
        "machine": machine(),
        "load_average": {"before": load_before, "after": os.getloadavg()},
        "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "seconds": time.time() - started,
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in vars(cfg).items()},
        "versions": {label: r.get("versions", {}) for label, r in ready.items()},
        "load_seconds": {label: r.get("load_seconds") for label, r in ready.items()},
        "providers": {label: r.get("provider") for label, r in ready.items()},
        "unavailable": unavailable,
        "cases": {c.name: c.summary() for c in cases},
        "samples": samples,
        "encoder_samples": encoder_samples,
        "cold_start": cold,
        **extras,
    }
    results.update(summarize(results, [w.label for w in workers]))
    (cfg.out / "results.json").write_text(json.dumps(results, indent=1))
    if "plot" in cfg.extras:
        plotted = run_extra(cfg, "plot.py", [str(cfg.out / "results.json"), str(cfg.out / "throughput.png")])
        results["plot"] = plotted
        (cfg.out / "results.json").write_text(json.dumps(results, indent=1))
    return results
