#!/usr/bin/env python3
"""Times mamba_ssm's Triton `mamba_chunk_scan_combined` (the anchor of bench_ssd_prefill) and
`selective_state_update` (the anchor of bench_mamba2_decode) on the Mamba2-2.7B layer shapes:
H=80, P=64, G=1, N=128, Q=256, bf16 inputs, fp32 decode state, dt_softplus, D per head.

The Triton files are NOT part of this repository: fetch state-spaces/mamba and extract only
mamba_ssm/ops/triton/*.py, keeping that path, under .fetched/mamba_ssm_triton/ (git-ignored:
.fetched/mamba_ssm_triton/mamba_ssm/ops/triton/ssd_combined.py and so on), then
    python3 bench/mamba_ssm_anchor.py [--root .fetched/mamba_ssm_triton] [--out anchor.txt]
The few helpers those files import from elsewhere in mamba_ssm (utils.determinism, utils.torch)
and einops (if it is not installed) are replaced here by minimal stand-ins that cover the
forward path only. Prints per shape "anchor <label> <ms>", the time of one call replayed from a
CUDA graph (the GPU work alone: no Python launch overhead, which at b=1 L=4K and in decode is
larger than the kernels), and "anchor_eager <label> <ms>", the median of calls launched one by
one from Python (the only form before 2026-12-07's twenty-fourth session; if the capture fails,
"anchor" falls back to it and says so). Decode lines also give GB/s. Decode rotates over enough
state slots (state_batch_indices) that consecutive calls touch >= 256 MiB, as
bench_mamba2_decode does, so neither side runs from L2. --decode_only skips the prefill.
"""
import argparse
import os
import statistics
import sys
import types


def install_shims():
    # mamba_ssm package skeleton (empty __init__s; the real ones import CUDA extensions).
    for name in ("mamba_ssm", "mamba_ssm.ops", "mamba_ssm.utils"):
        if name not in sys.modules:
            mod = types.ModuleType(name)
            mod.__path__ = []
            sys.modules[name] = mod
    det = types.ModuleType("mamba_ssm.utils.determinism")
    det.use_deterministic_mode = lambda: False
    det.autotune_configs = lambda configs: configs

    def _bwd_only(*args, **kwargs):
        raise NotImplementedError("backward helpers are not shimmed")

    det.alloc_tile_workspace = _bwd_only
    det.finalize_tile_workspace = _bwd_only
    sys.modules[det.__name__] = det
    tu = types.ModuleType("mamba_ssm.utils.torch")

    def _passthrough(fn=None, **kwargs):
        return fn if fn is not None else (lambda f: f)

    tu.custom_fwd = _passthrough
    tu.custom_bwd = _passthrough
    sys.modules[tu.__name__] = tu
    try:
        import einops  # noqa: F401
    except ImportError:
        ein = types.ModuleType("einops")

        def rearrange(t, pattern, **sizes):
            lhs, rhs = [s.strip() for s in pattern.split("->")]
            if lhs == "... p n" and rhs == "... (p n)":
                return t.reshape(*t.shape[:-2], t.shape[-2] * t.shape[-1])
            if lhs == "... (p n)" and rhs == "... p n":
                n = sizes["n"]
                return t.reshape(*t.shape[:-1], t.shape[-1] // n, n)
            raise NotImplementedError("einops stand-in: pattern " + pattern)

        def repeat(*args, **kwargs):
            raise NotImplementedError("einops stand-in: repeat")

        ein.rearrange = rearrange
        ein.repeat = repeat
        sys.modules["einops"] = ein


def event_ms(torch, fn):
    """Milliseconds of fn() between two CUDA events on the current stream."""
    s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    s.record()
    fn()
    e.record()
    e.synchronize()
    return s.elapsed_time(e)


def graph_ms(torch, calls, iters):
    """Median milliseconds per call of the list `calls` captured as one CUDA graph and replayed
    iters times, or None (with the reason printed) when the capture fails."""
    try:
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # warm up on a side stream before capture, as torch asks
            for c in calls:
                c()
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            for c in calls:
                c()
        graph.replay()
        torch.cuda.synchronize()
        times = [event_ms(torch, graph.replay) / len(calls) for _ in range(iters)]
        return statistics.median(times)
    except Exception as ex:  # noqa: BLE001 - any capture failure falls back to eager timing
        print(f"CUDA graph capture failed ({type(ex).__name__}: {ex}); eager timing only",
              flush=True)
        return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", default=os.path.join(os.path.dirname(__file__), "..", ".fetched",
                                                    "mamba_ssm_triton"))
    ap.add_argument("--out", default=None)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--decode_only", action="store_true")
    ap.add_argument("--decode_batches", default="1,16,64,256",
                    help="decode batch sizes, comma-separated (one, e.g. for a profiler)")
    args = ap.parse_args()
    import torch

    install_shims()
    root = os.path.abspath(args.root)
    sys.path.insert(0, root)
    ops = sys.modules["mamba_ssm.ops"]
    ops.__path__ = [os.path.join(root, "mamba_ssm", "ops")]
    sys.modules["mamba_ssm"].__path__ = [os.path.join(root, "mamba_ssm")]
    import triton
    from mamba_ssm.ops.triton.ssd_combined import mamba_chunk_scan_combined
    from mamba_ssm.ops.triton.selective_state_update import selective_state_update

    print(f"torch {torch.__version__} triton {triton.__version__} "
          f"device {torch.cuda.get_device_name(0)}", flush=True)
    H, P, G, N, Q = 80, 64, 1, 128, 256
    dev = "cuda"
    lines = []
    prefill_shapes = () if args.decode_only else (
        ("b1_L4096", 1, 4096), ("b1_L16384", 1, 16384), ("b1_L65536", 1, 65536),
        ("b8_L4096", 8, 4096))
    for label, b, L in prefill_shapes:
        g = torch.Generator(device=dev).manual_seed(0)
        x = torch.rand(b, L, H, P, device=dev, generator=g).mul_(2).sub_(1).to(torch.bfloat16)
        dt = torch.rand(b, L, H, device=dev, generator=g).mul_(3).sub_(4).to(torch.bfloat16)
        Bm = torch.rand(b, L, G, N, device=dev, generator=g).mul_(2).sub_(1).to(torch.bfloat16)
        Cm = torch.rand(b, L, G, N, device=dev, generator=g).mul_(2).sub_(1).to(torch.bfloat16)
        A = -torch.rand(H, device=dev, generator=g).add_(0.05)
        D = torch.rand(H, device=dev, generator=g)
        dt_bias = torch.rand(H, device=dev, generator=g).sub_(0.5)

        def run():
            return mamba_chunk_scan_combined(x, dt, A, Bm, Cm, Q, D=D, z=None, dt_bias=dt_bias,
                                             dt_softplus=True, return_final_states=True)

        with torch.inference_mode():
            for _ in range(3):  # warmup (includes Triton autotuning)
                run()
            torch.cuda.synchronize()
            eager = statistics.median(event_ms(torch, run) for _ in range(args.iters))
            replayed = graph_ms(torch, [run], args.iters)
        for line in (f"anchor {label} {replayed if replayed is not None else eager:.4f}"
                     + ("" if replayed is not None else " (eager: no graph)"),
                     f"anchor_eager {label} {eager:.4f}"):
            print(line, flush=True)
            lines.append(line)
        del x, dt, Bm, Cm
        torch.cuda.empty_cache()
    # Decode: one token per sequence, state updated in place in its slot.
    slot_bytes = H * P * N * 4
    for b in (int(v) for v in args.decode_batches.split(",")):
        g = torch.Generator(device=dev).manual_seed(1)
        rounds = max(1, -(-(256 << 20) // (b * slot_bytes)))  # launches before a slot repeats
        state = torch.zeros(b * rounds, H, P, N, device=dev, dtype=torch.float32)
        x = torch.rand(b, H, P, device=dev, generator=g).sub_(0.5).to(torch.bfloat16)
        dt = torch.rand(b, H, device=dev, generator=g).sub_(2).to(torch.bfloat16)
        dt = dt.unsqueeze(-1).expand(b, H, P)  # one dt per head, as Mamba-2 calls it
        A = (-torch.rand(H, device=dev, generator=g).add_(0.05))[:, None, None].expand(H, P, N)
        Bm = torch.rand(b, G, N, device=dev, generator=g).sub_(0.5).to(torch.bfloat16)
        Cm = torch.rand(b, G, N, device=dev, generator=g).sub_(0.5).to(torch.bfloat16)
        D = torch.rand(H, device=dev, generator=g)[:, None].expand(H, P)
        dt_bias = torch.rand(H, device=dev, generator=g).sub_(0.5)[:, None].expand(H, P)
        slots = [torch.arange(r * b, (r + 1) * b, device=dev, dtype=torch.int32)
                 for r in range(rounds)]
        def step(r):
            return lambda: selective_state_update(state, x, dt, A, Bm, Cm, D=D, dt_bias=dt_bias,
                                                  dt_softplus=True,
                                                  state_batch_indices=slots[r])

        calls = [step(r) for r in range(rounds)]
        with torch.inference_mode():
            for c in calls[:3]:
                c()
            torch.cuda.synchronize()
            eager = statistics.median(event_ms(torch, calls[i % rounds]) for i in range(100))
            # One graph holds a call per slot group, so replays still rotate over the slots.
            replayed = graph_ms(torch, calls, 20)
        # State read + written, inputs read, output written (as bench_mamba2_decode counts).
        moved = b * (2 * slot_bytes + (2 * H * P + 2 * G * N + H) * 2)  # x, y, B, C, dt
        ms = replayed if replayed is not None else eager
        for line in (f"anchor decode_B{b} {ms:.4f} ms {moved / ms / 1e6:.0f} GB/s"
                     + ("" if replayed is not None else " (eager: no graph)"),
                     f"anchor_eager decode_B{b} {eager:.4f} ms {moved / eager / 1e6:.0f} GB/s"):
            print(line, flush=True)
            lines.append(line)
        del state
        torch.cuda.empty_cache()
    if args.out:
        with open(args.out, "w") as f:
            f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
