"""Time to accuracy on PyTorch: the notebook's own training loop from the same start as bench/time_to_accuracy.ts.

    deno run -A bench/time_to_accuracy.ts --backend cpu --save-init /tmp/tta_init   # ours; writes the start
    python3 bench/pytorch_time_to_accuracy.py /tmp/tta_init [--pad max_length|longest] [--order torch|ours] \
        [--eval-every N] [--eval-n N] [--target X] [--max-steps N] [--threads 2] [--device cpu|cuda] [--json]

DIR holds what `--save-init` wrote: the initial weights as an HF model dir (`GPT2LMHeadModel.from_pretrained`),
the tokenizer files, `train.jsonl` / `val.jsonl` (token ids and labels, so nothing is re-tokenized here; val rows
also carry the classifier's `prompt_ids` and `expected` label) and `tta_settings.json` (batch size, lr, warm-up,
weight decay, clip, max length, seed, eval every, target, step cap, the labels' token ids, our trainer's data
order): the flags below default to those.

The loop is the notebook's (Part 5): every example padded to max_length 256 when the dataset is built
(`padding='max_length'`), `DataLoader(batch_size, shuffle=True)`, `model.train()`, forward with labels,
`zero_grad`, `backward`, `clip_grad_norm_(1.0)`, `AdamW(lr, weight_decay)`, `LinearLR(start_factor, 1.0,
total_iters=warmup)`, `loss.item()` every step. Every `--eval-every` steps the clock stops and the notebook's
`_lm_classify` (one forward of prompt + label per label, mean log-probability of the label's tokens) scores the
validation prompts; the run stops once the accuracy reaches `--target`, or at `--max-steps`. The notebook's
end-of-epoch validation loss is not run (it is evaluation, not training).

`--pad longest` pads each batch to its longest example instead; `--order ours` takes the batches in our
trainer's seeded order instead of torch's shuffle (the data order is then the same as the TypeScript run's).
The last line with `--json` is one JSON object with the fields of time_to_accuracy.ts's runs.
"""

import argparse
import json
import os
import sys
import time
from datetime import datetime, timezone


def load_jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dir", help="the directory time_to_accuracy.ts --save-init wrote")
    ap.add_argument("--pad", choices=["max_length", "longest"], default="max_length")
    ap.add_argument("--order", choices=["torch", "ours"], default="torch")
    ap.add_argument("--eval-every", type=int)
    ap.add_argument("--eval-n", type=int)
    ap.add_argument("--target", type=float)
    ap.add_argument("--max-steps", type=int)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--untimed-steps", type=int, default=10,
                    help="steps on a throwaway copy before the timed run (default 10)")
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    try:
        import torch
        import transformers
        from transformers import GPT2LMHeadModel
    except ImportError as e:  # pragma: no cover
        print(json.dumps({"error": f"needs torch and transformers: {e}"}))
        return 2
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    with open(os.path.join(args.dir, "tta_settings.json"), encoding="utf-8") as f:
        s = json.load(f)
    eval_every = args.eval_every or s["eval_every"]
    target = s["target"] if args.target is None else args.target
    max_steps = args.max_steps or s["max_steps"]
    B, max_length, pad_id = s["batch_size"], s["max_length"], s["pad_token_id"]
    labels = [(x["label"], x["ids"]) for x in s["labels"]]
    train_rows = load_jsonl(os.path.join(args.dir, "train.jsonl"))
    val_rows = load_jsonl(os.path.join(args.dir, "val.jsonl"))
    if args.eval_n:
        val_rows = val_rows[: args.eval_n]

    # The notebook's SFTDataset: every example padded to max_length when the dataset is built.
    def pad_rows(rows, T):
        ids = torch.full((len(rows), T), pad_id, dtype=torch.long)
        att = torch.zeros((len(rows), T), dtype=torch.long)
        lab = torch.full((len(rows), T), -100, dtype=torch.long)
        for i, r in enumerate(rows):
            n = len(r["input_ids"])
            ids[i, :n] = torch.tensor(r["input_ids"])
            att[i, :n] = 1
            lab[i, :n] = torch.tensor(r["labels"])
        return ids, att, lab

    n_train = len(train_rows)
    lengths = torch.tensor([len(r["input_ids"]) for r in train_rows])
    supervised = torch.tensor([sum(1 for x in r["labels"] if x != -100) for r in train_rows])
    if args.pad == "max_length":
        all_ids, all_att, all_lab = pad_rows(train_rows, max_length)

    class DS(torch.utils.data.Dataset):
        def __len__(self):
            return n_train

        def __getitem__(self, i):
            return i

    def make_batch(idx):
        idx = list(idx)
        if args.pad == "max_length":
            t = torch.tensor(idx)
            return all_ids[t], all_att[t], all_lab[t], t
        T = max(len(train_rows[i]["input_ids"]) for i in idx)
        ids, att, lab = pad_rows([train_rows[i] for i in idx], T)
        return ids, att, lab, torch.tensor(idx)

    def batches(seed):
        """Endless batches: torch's DataLoader(shuffle=True), or our trainer's order."""
        if args.order == "ours":
            per_epoch = -(-n_train // B)
            for order in s["epoch_orders"]:
                for b in range(per_epoch):
                    yield make_batch(order[b * B:(b + 1) * B])
            raise RuntimeError("ran out of the saved epoch orders")
        g = torch.Generator()
        g.manual_seed(seed)
        loader = torch.utils.data.DataLoader(DS(), batch_size=B, shuffle=True, generator=g,
                                             collate_fn=make_batch)
        while True:
            yield from loader

    def lm_classify(model, prompt_ids):
        """The notebook's _lm_classify: one forward of prompt + label per label."""
        if not prompt_ids:
            return labels[0][0]
        best_label, best_score = labels[0][0], float("-inf")
        for label, label_ids in labels:
            input_ids = torch.tensor([prompt_ids + label_ids]).to(device)
            with torch.no_grad():
                logits = model(input_ids).logits
            start = len(prompt_ids)
            if start == 0 or len(label_ids) == 0:
                continue
            log_probs = torch.log_softmax(logits[0, start - 1:start - 1 + len(label_ids)], dim=-1)
            tgt = input_ids[0, start:start + len(label_ids)]
            score = log_probs.gather(1, tgt.unsqueeze(1)).squeeze(1).mean().item()
            if score > best_score:
                best_score, best_label = score, label
        return best_label

    def accuracy(model):
        model.eval()
        ok = sum(lm_classify(model, r["prompt_ids"]) == r["expected"] for r in val_rows)
        model.train()
        return ok / len(val_rows)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    def train(model, steps_cap, evaluate, log=print):
        model.to(device)
        model.train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=s["lr"], weight_decay=s["weight_decay"])
        scheduler = torch.optim.lr_scheduler.LinearLR(
            optimizer, start_factor=s["warmup_start_factor"], end_factor=1.0, total_iters=s["warmup_steps"])
        step, train_s, eval_s, tokens, real, sup = 0, 0.0, 0.0, 0, 0, 0
        curve, reached = [], False
        it = batches(s["seed"])
        sync()
        t0 = time.perf_counter()
        while step < steps_cap:
            input_ids, attention_mask, lab, idx = next(it)
            input_ids, attention_mask, lab = input_ids.to(device), attention_mask.to(device), lab.to(device)
            outputs = model(input_ids=input_ids, attention_mask=attention_mask, labels=lab)
            loss = outputs.loss
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), s["max_grad_norm"])
            optimizer.step()
            scheduler.step()
            loss_value = loss.item()
            step += 1
            tokens += input_ids.numel()
            real += int(lengths[idx].sum())
            sup += int(supervised[idx].sum())
            if evaluate and (step % eval_every == 0 or step == steps_cap):
                sync()
                t1 = time.perf_counter()
                train_s += t1 - t0
                acc = accuracy(model)
                t0 = time.perf_counter()
                eval_s += t0 - t1
                curve.append({"step": step, "accuracy": acc, "loss": loss_value, "train_seconds": train_s})
                log(f"  step {step:5d}  loss {loss_value:.4f}  accuracy {100 * acc:5.1f} %  "
                    f"train {train_s:.2f} s  (eval {t0 - t1:.2f} s)")
                if acc >= target:
                    reached = True
                    break
        sync()
        if not curve or curve[-1]["step"] != step:
            train_s += time.perf_counter() - t0
        return {
            "pad": args.pad,
            "order": args.order,
            "reached": reached,
            "steps": step,
            "train_seconds": train_s,
            "eval_seconds": eval_s,
            "seconds_per_step": train_s / max(step, 1),
            "tokens": tokens,
            "real_tokens": real,
            "supervised_tokens": sup,
            "tokens_per_s": tokens / train_s if train_s else None,
            "final_accuracy": curve[-1]["accuracy"] if curve else None,
            "curve": curve,
        }

    def load():
        return GPT2LMHeadModel.from_pretrained(args.dir)

    model = load()
    cfg = model.config
    print(f"PyTorch {torch.__version__}, transformers {transformers.__version__}, {args.device}, "
          f"{torch.get_num_threads()} threads")
    print(f"Model from {args.dir}: {cfg.n_layer} layers, n_embd {cfg.n_embd}, vocab {cfg.vocab_size}, "
          f"n_positions {cfg.n_positions}, {sum(p.numel() for p in model.parameters()):,} parameters")
    print(f"Data: {n_train} train examples, {len(val_rows)} validation prompts; batch {B}, lr {s['lr']}, "
          f"warm-up {s['warmup_steps']}, padding {args.pad} ({max_length}), order {args.order}")
    if args.untimed_steps > 0:
        throwaway = load()
        train(throwaway, args.untimed_steps, evaluate=False)
        accuracy(throwaway.to(device))
        del throwaway
    print(f"\n--pad {args.pad}")
    run = train(model, max_steps, evaluate=True)
    verdict = f"reached {100 * target:g} %" if run["reached"] else f"did NOT reach {100 * target:g} %"
    print(f"  {verdict} after {run['steps']} steps: {run['train_seconds']:.2f} s training "
          f"({1000 * run['seconds_per_step']:.1f} ms/step), {run['eval_seconds']:.2f} s evaluation, "
          f"{run['tokens']:,} positions ({run['real_tokens']:,} real)")
    if args.json:
        print(json.dumps({
            "tool": "pytorch_time_to_accuracy",
            "runtime": f"python {sys.version.split()[0]}, torch {torch.__version__}, "
                       f"transformers {transformers.__version__}",
            "device": args.device,
            "threads": torch.get_num_threads(),
            "date": datetime.now(timezone.utc).isoformat(),
            "argv": sys.argv[1:],
            "model": {"layers": cfg.n_layer, "n_embd": cfg.n_embd, "n_head": cfg.n_head,
                      "n_positions": cfg.n_positions, "vocab": cfg.vocab_size},
            "settings": {
                "train_examples": n_train, "eval_n": len(val_rows), "eval_every": eval_every, "target": target,
                "max_steps": max_steps, "batch_size": B, "lr": s["lr"], "warmup_steps": s["warmup_steps"],
                "weight_decay": s["weight_decay"], "max_grad_norm": s["max_grad_norm"], "max_length": max_length,
                "seed": s["seed"], "order": args.order, "untimed_steps": args.untimed_steps,
            },
            "runs": [run],
        }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
