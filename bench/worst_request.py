"""The worst requests `longvec serve` admits with its default limits: peak memory and time of each.

Each case runs on a fresh server (127.0.0.1, default limits, --threads 2) so its peak RSS (VmHWM from /proc) is
its own; the baseline is the same server's peak after load and warm-up, before the request.

- encoder-bound: the largest document the encoder-token limit admits in the default mode (auto), found with the
  library's own cost (`Embedder.document_call` / `prepare_documents`)
- output-bound: blend mode (three encoder tokens per text token) with sparse vectors at the smallest allowed
  chunk size, sized to return the most chunks allowed, as float JSON
- body-bound: a body at the byte cap of one-letter words, refused by the token limit (counted from its characters)
- one word: a body at the byte cap without whitespace or punctuation (a long word is cut before tokenizing)
- marks: one word of letters and combining accents at the byte cap (the normalizer drops the accents)
- punct: non-ASCII punctuation at the byte cap (one token per character, counted before tokenizing)

    python bench/worst_request.py bundles/all-MiniLM-L6-v2 [--out bench/out/worst_request.json]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from longvec.runtime import Embedder
from longvec.runtime.core.chunking import make_chunks
from longvec.runtime.server.settings import ServeSettings

HOST = "127.0.0.1"
WORDS = "the keeper lit the lamp at dusk and watched the ships pass the rocks while storms rolled in from the west "


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM")


def text_of_tokens(emb: Embedder, n_tokens: int) -> str:
    per = emb.count_tokens([WORDS])[0]
    text = WORDS * (n_tokens // per + 1)
    while emb.count_tokens([text])[0] > n_tokens:
        text = text[: -len(WORDS)]
    return text


def run_case(bundle: Path, name: str, body: dict[str, Any], path: str) -> dict[str, Any]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LONGVEC_")}
    cmd = [sys.executable, "-m", "longvec.runtime.cli", "serve", str(bundle), "--port", str(port), "--threads", "2"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://{HOST}:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/ready", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        baseline = peak_rss_mb(proc.pid)
        payload = json.dumps(body).encode()
        started = time.monotonic()
        r = httpx.post(f"{url}{path}", content=payload, headers={"content-type": "application/json"}, timeout=900)
        seconds = time.monotonic() - started
        peak = peak_rss_mb(proc.pid)
        out = {
            "case": name,
            "status": r.status_code,
            "body_bytes": len(payload),
            "response_bytes": len(r.content),
            "seconds": round(seconds, 2),
            "baseline_peak_rss_mb": round(baseline, 1),
            "peak_rss_mb": round(peak, 1),
            "usage": r.json().get("usage") if r.status_code == 200 else r.json()["error"]["message"],
        }
        if r.status_code == 200 and path == "/v1/documents":
            out["chunks"] = sum(len(d["chunks"]) for d in r.json()["data"])
        return out
    finally:
        proc.terminate()
        proc.wait(60)


def at_cap(unit: str, max_body_bytes: int) -> str:
    """`unit` repeated to fill a JSON body of `max_body_bytes` (as json.dumps escapes it)."""
    return unit * ((max_body_bytes - 64) // (len(json.dumps(unit)) - 2))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bundle", type=Path)
    p.add_argument("--cases", default="encoder,output,body,word")
    p.add_argument("--out", type=Path, default=Path("bench/out/worst_request.json"))
    args = p.parse_args()
    s = ServeSettings(model_name="")
    with Embedder.load(args.bundle, threads=2) as emb:
        # the server's default call (mode auto: the bundle's mode and stride): the largest document whose cost, as
        # the library counts it before any work (encoder positions), stays under the encoder-token limit
        call, lo, hi = emb.document_call(), 1, s.max_request_tokens
        while lo < hi:
            mid = (lo + hi + 1) // 2
            cost = emb.prepare_documents(call, [text_of_tokens(emb, mid)]).cost
            lo, hi = (mid, hi) if cost.encoder_tokens <= s.max_request_encoder_tokens else (lo, mid - 1)
        n_encoder = lo
        # blend: ~3 encoder tokens per text token, chunks of the smallest size allowed, at most max_chunks of them
        n_blend = s.max_chunks * s.min_chunk_tokens
        output = text_of_tokens(emb, n_blend)
        while len(make_chunks(output, emb.tokenizer.encode([output])[0], "tokens", s.min_chunk_tokens, None)) > (
            s.max_chunks
        ):  # chunks end at word breaks, so some are shorter than chunk_tokens: trim to the chunk limit
            output = output[: -len(WORDS) * 4]
        texts = {"encoder": text_of_tokens(emb, n_encoder), "output": output}
    cases = {
        "encoder": ("/v1/documents", {"documents": [{"id": "book", "text": texts["encoder"]}]}),
        "output": (
            "/v1/documents",
            {
                "documents": [{"id": "book", "text": texts["output"]}],
                "mode": "blend",
                "chunk_tokens": s.min_chunk_tokens,
                "sparse": True,
            },
        ),
        "body": ("/v1/embeddings", {"input": "a " * ((s.max_body_bytes - 64) // 2)}),
        # one word at the byte cap: no whitespace or punctuation to count tokens from (cut before tokenizing)
        "word": ("/v1/embeddings", {"input": "a" * (s.max_body_bytes - 64)}),
        # one word of letters with combining accents the normalizer drops (cut before tokenizing too)
        "marks": ("/v1/embeddings", {"input": at_cap("e\u0301", s.max_body_bytes)}),
        # non-ASCII punctuation, one token per character (counted before tokenizing)
        "punct": ("/v1/embeddings", {"input": at_cap("«", s.max_body_bytes)}),
    }
    load = os.getloadavg()
    results = []
    for name in args.cases.split(","):
        path, body = cases[name]
        result = run_case(args.bundle, name, body, path)
        results.append(result)
        print(json.dumps(result), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"load_average_before": load, "load_average_after": os.getloadavg(), "cpus": os.cpu_count()}
    args.out.write_text(json.dumps({"meta": meta, "results": results}, indent=1))
    print(json.dumps(meta))


if __name__ == "__main__":
    main()
