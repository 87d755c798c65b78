#!/usr/bin/env python3
"""The PyTorch side of the benchmark: the notebook's own training step, cuBLAS fp32 sgemm and the
notebook's label classifier, on the same GPU as bench/bench.ts (or the CPU when there is no CUDA).

Nothing is downloaded: the model is GPT2LMHeadModel(GPT2Config(...)) with the real shape (vocab
21128 + 63 SFT tokens = 21191, n_positions 1024, n_embd 768, 12 layers, 12 heads, ~102 M parameters)
and random init; token ids are random.

Measured:
- step: the notebook's loop body, fp32: model.train() (dropout 0.1, the HF config default),
  forward with labels (-100 except the last --supervised positions of each row), optimizer.zero_grad(),
  loss.backward(), clip_grad_norm_(1.0), AdamW(lr 5e-5, weight_decay 0.01).step(), LinearLR.step();
  CUDA-synchronised around each step; median over --steps after --warmup, for each T in --seqs.
- sgemm: torch.matmul at GPT-2's shapes with M = B*T (allow_tf32 = False, so true fp32 FMA), the
  forward layout A@B plus the backward layouts of c_fc (dy@W^T, x^T@dy); CUDA events, median of groups.
- classify: the notebook's _lm_classify: for each of --prompts prompts, 6 labels, one full forward of
  prompt + label per label (model.eval(), no_grad), mean log-prob of the label tokens, .item() per label.
  Prompts are random ids of --prompt-len tokens (about the ChatML classification prompt), labels 4 tokens.

With --lora the step trains a peft LoRA adapter instead (r --lora-r, alpha 16, dropout 0.05 on c_attn, c_proj and
c_fc, the 63 SFT tokens' embedding rows as trainable_token_indices), as `deno task bench --lora`.

Usage: python3 bench/pytorch_bench.py [--device auto|cuda|cpu] [--steps N] [--warmup N] [--seqs 256,128]
                                      [--batch 4] [--prompts N] [--skip step,sgemm,classify] [--quick]
                                      [--lora] [--lora-r R]
The last line printed is one JSON object with every figure.
"""

import argparse
import json
import platform
import statistics
import sys
import time

BASE_VOCAB = 21128
SFT_TOKENS = 63
N_LABELS = 6
LABEL_TOKENS = 4  # each label is four Chinese characters, one BERT token each


def log(msg):
    print(msg, flush=True)


def sync(torch, device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def peak_rss():
    """The process's peak resident set (VmHWM), bytes; None where /proc is not there."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def step_flops(cfg, B, T):
    """Model FLOPs of one training step as PyTorch runs it (head on all B*T rows): linears 2*N*12*C^2 per
    layer, attention 4*B*T^2*C per layer, head 2*N*C*V, all times 3 for forward + backward."""
    C, N, V, L = cfg.n_embd, B * T, cfg.vocab_size, cfg.n_layer
    return 3 * (L * (2 * N * 12 * C * C + 4 * B * T * T * C) + 2 * N * C * V)


def bench_step(torch, transformers, device, args, T):
    cfg = transformers.GPT2Config(
        vocab_size=BASE_VOCAB + SFT_TOKENS, n_positions=1024, n_embd=768, n_layer=args.layers, n_head=12
    )  # dropout 0.1 and gelu_new: the HF defaults, as the notebook's base model
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(cfg).to(device)
    if args.lora:
        # training's default LoRA (src/model/lora.ts): r, alpha 16, dropout 0.05 on every Conv1D, and the 63 SFT
        # tokens' embedding rows as trainable_token_indices
        import peft
        lora = peft.LoraConfig(r=args.lora_r, lora_alpha=16, lora_dropout=0.05, target_modules=["c_attn", "c_proj", "c_fc"],
                               fan_in_fan_out=True, task_type="CAUSAL_LM",
                               trainable_token_indices={"wte": list(range(BASE_VOCAB, BASE_VOCAB + SFT_TOKENS))})
        model = peft.get_peft_model(model, lora)
    model.train()
    n_params = sum(p.numel() for p in model.parameters())
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=5e-5, weight_decay=0.01)
    scheduler = torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=0.1, end_factor=1.0, total_iters=50)
    B = args.batch
    g = torch.Generator().manual_seed(11)
    input_ids = torch.randint(0, BASE_VOCAB, (B, T), generator=g).to(device)
    attention_mask = torch.ones(B, T, dtype=torch.long, device=device)
    labels = torch.full((B, T), -100, dtype=torch.long)
    tail = min(args.supervised, T - 1)
    labels[:, T - tail:] = input_ids[:, T - tail:].cpu()
    labels = labels.to(device)

    times, losses = [], []
    for i in range(args.warmup + args.steps):
        sync(torch, device)
        t0 = time.perf_counter()
        outputs = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels)
        loss = outputs.loss
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        scheduler.step()
        sync(torch, device)
        ms = (time.perf_counter() - t0) * 1000
        times.append(ms)
        losses.append(loss.item())  # after the timer, as the notebook reads it for its running sum
    timed = times[args.warmup:]
    ms = statistics.median(timed)
    flops = step_flops(cfg, B, T)
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
    res = {
        "B": B,
        "T": T,
        "layers": args.layers,
        "params": n_params,
        "trainable": sum(p.numel() for p in trainable),
        "lora_r": args.lora_r if args.lora else None,
        "peak_rss_bytes": peak_rss(),
        "ms": ms,
        "ms_each": timed,
        "warmup_ms": times[: args.warmup],
        "tokens_per_s": B * T / (ms / 1000),
        "gflop": flops / 1e9,
        "gflops": flops / (ms * 1e6),
        "loss_first": losses[0],
        "loss_last": losses[-1],
        "peak_cuda_bytes": peak,
    }
    log(
        f"step B={B} T={T}: median {ms:.2f} ms/step ({res['tokens_per_s']:.0f} tokens/s, "
        f"{res['gflops']:.0f} GFLOP/s of model FLOPs; {n_params / 1e6:.1f} M params; loss {losses[0]:.3f} -> "
        f"{losses[-1]:.3f}" + (f"; peak {peak / 2**20:.0f} MiB" if peak else "") + ")"
    )
    del model, optimizer, outputs, loss
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    return res


def time_matmul(torch, device, fn, budget_s):
    """Median ms per call over groups of back-to-back calls (CUDA events on a GPU, perf_counter on the CPU)."""
    fn()
    sync(torch, device)
    t0 = time.perf_counter()
    fn()
    sync(torch, device)
    first = max(time.perf_counter() - t0, 1e-6)
    inner = max(1, min(200, int(0.02 / first) + 1))
    groups = max(1, min(10, int(budget_s / (first * inner))))
    per_call = []
    for _ in range(groups):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(inner):
                fn()
            end.record()
            end.synchronize()
            per_call.append(start.elapsed_time(end) / inner)
        else:
            t0 = time.perf_counter()
            for _ in range(inner):
                fn()
            per_call.append((time.perf_counter() - t0) * 1000 / inner)
    return statistics.median(per_call), groups * inner


def bench_sgemm(torch, device, M, budget_s):
    C = 768
    cases = []
    for shape, K, N in [("c_attn", C, 3 * C), ("c_fc", C, 4 * C), ("mlp.c_proj", 4 * C, C), ("attn.c_proj", C, C)]:
        cases.append((shape, "forward", "AB", M, N, K))
        if shape == "c_fc":
            cases.append((shape, "backward dx", "ABt", M, K, N))
            cases.append((shape, "backward dW", "AtB", K, N, M))
    cases.append(("lm_head", "forward", "ABt", M, BASE_VOCAB, C))
    out = []
    g = torch.Generator(device=device).manual_seed(7)
    for shape, role, layout, m, n, k in cases:
        # stored as bench.ts stores them: AtB: a is [k, m]; ABt: b is [n, k]
        a = torch.randn(k, m, device=device, generator=g) if layout == "AtB" else torch.randn(m, k, device=device, generator=g)
        b = torch.randn(n, k, device=device, generator=g) if layout == "ABt" else torch.randn(k, n, device=device, generator=g)
        a_op = a.t() if layout == "AtB" else a
        b_op = b.t() if layout == "ABt" else b
        c = torch.empty(m, n, device=device)
        ms, reps = time_matmul(torch, device, lambda: torch.matmul(a_op, b_op, out=c), budget_s)
        gflops = 2 * m * n * k / (ms * 1e6)
        out.append({"shape": shape, "role": role, "layout": layout, "M": m, "N": n, "K": k, "ms": ms,
                    "gflops": gflops, "reps": reps})
        log(f"sgemm {shape:12s} {role:12s} {layout:4s} M={m} N={n} K={k}: {ms:.4f} ms, {gflops:.0f} GFLOP/s ({reps} calls)")
        del a, b, c, a_op, b_op
    return out


def bench_classify(torch, transformers, device, args):
    cfg = transformers.GPT2Config(
        vocab_size=BASE_VOCAB + SFT_TOKENS, n_positions=1024, n_embd=768, n_layer=args.layers, n_head=12
    )
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(cfg).to(device)
    model.eval()
    g = torch.Generator().manual_seed(44)
    prompts = [torch.randint(0, BASE_VOCAB, (args.prompt_len,), generator=g).tolist() for _ in range(args.prompts)]
    labels = [torch.randint(0, BASE_VOCAB, (LABEL_TOKENS,), generator=g).tolist() for _ in range(N_LABELS)]

    def lm_classify(prompt_ids):
        # the notebook's _lm_classify, with token ids instead of text
        best, best_score = 0, float("-inf")
        for li, label_ids in enumerate(labels):
            input_ids = torch.tensor([prompt_ids + label_ids]).to(device)
            with torch.no_grad():
                logits = model(input_ids).logits
            start = len(prompt_ids)
            log_probs = torch.log_softmax(logits[0, start - 1:start - 1 + len(label_ids)], dim=-1)
            target = input_ids[0, start:start + len(label_ids)]
            score = log_probs.gather(1, target.unsqueeze(1)).squeeze(1).mean().item()
            if score > best_score:
                best, best_score = li, score
        return best

    lm_classify(prompts[0])  # warm-up
    sync(torch, device)
    t0 = time.perf_counter()
    for p in prompts:
        lm_classify(p)
    sync(torch, device)
    total_ms = (time.perf_counter() - t0) * 1000
    res = {"prompts": args.prompts, "labels": N_LABELS, "prompt_len": args.prompt_len, "label_tokens": LABEL_TOKENS,
           "forwards": args.prompts * N_LABELS, "total_ms": total_ms, "ms_per_prompt": total_ms / args.prompts}
    log(f"classify: {args.prompts} prompts x {N_LABELS} labels = {res['forwards']} forwards in {total_ms:.0f} ms "
        f"({res['ms_per_prompt']:.2f} ms per prompt)")
    del model
    return res


def cpu_name():
    """The CPU's model name (Linux), else the machine type."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="auto", choices=["auto", "cuda", "cpu"])
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seqs", default="256,128", help="comma-separated sequence lengths for the step")
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--steps", type=int, default=None, help="timed steps (default 20 on CUDA, 2 on the CPU)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 3 on CUDA, 1 on the CPU)")
    ap.add_argument("--supervised", type=int, default=8, help="supervised label positions at the end of each row")
    ap.add_argument("--prompts", type=int, default=None, help="classifier prompts (default 100 on CUDA, 2 on the CPU)")
    ap.add_argument("--prompt-len", type=int, default=90)
    ap.add_argument("--skip", default="", help="comma-separated parts to skip: step, sgemm, classify")
    ap.add_argument("--quick", action="store_true", help="2 layers, T=128, 2 steps, 2 prompts (a smoke test)")
    ap.add_argument("--lora", action="store_true", help="the step trains a peft LoRA adapter (as deno task bench --lora)")
    ap.add_argument("--lora-r", type=int, default=8)
    args = ap.parse_args()

    try:
        import torch
        import transformers
    except ImportError as e:
        print(json.dumps({"error": f"Cannot run the PyTorch benchmark: {e}"}))
        return 2

    if args.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(args.device)
    cuda = device.type == "cuda"
    if args.quick:
        args.layers, args.seqs = 2, "128"
        args.steps = args.steps or 2
        args.prompts = args.prompts or 2
    args.steps = args.steps or (20 if cuda else 2)
    args.warmup = args.warmup if args.warmup is not None else (3 if cuda else 1)
    args.prompts = args.prompts or (100 if cuda else 2)
    seqs = [int(s) for s in args.seqs.split(",") if s.strip()]
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}

    # true fp32 everywhere (no TF32 in matmuls or convolutions)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")

    name = torch.cuda.get_device_name(device) if cuda else cpu_name()
    log(f"pytorch {torch.__version__}, transformers {transformers.__version__}, device {device} ({name}), "
        f"threads {torch.get_num_threads()}")
    result = {
        "backend": "pytorch-" + device.type,
        "device": name,
        "runtime": f"python {platform.python_version()}, torch {torch.__version__}, "
                   f"transformers {transformers.__version__}" + (f", cuda {torch.version.cuda}" if cuda else ""),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "argv": sys.argv[1:],
        "allow_tf32": torch.backends.cuda.matmul.allow_tf32,
    }
    if "step" not in skip:
        result["steps"] = [bench_step(torch, transformers, device, args, T) for T in seqs]
        result["step"] = result["steps"][0]
    if "sgemm" not in skip:
        result["matmul"] = bench_sgemm(torch, device, args.batch * seqs[0], 2.0 if cuda else 5.0)
    if "classify" not in skip:
        result["classify"] = bench_classify(torch, transformers, device, args)
    if cuda:
        result["peak_bytes"] = max((s.get("peak_cuda_bytes") or 0) for s in result.get("steps", [{}])) or None
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
