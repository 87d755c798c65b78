"""Where the expected values in tests/random_test.ts and tests/synth_test.ts come from.

Not a dependency of the project or its tests: run by hand (python3, standard library only) when the
expected values need to be traced or regenerated, and paste its output into the tests.

  python3 tests/gen_notebook_data.py random          # PyRandom sequences as JSON
  python3 tests/gen_notebook_data.py data OUTDIR     # the notebook's gpt2_sft_*.jsonl + sha256

`data` runs the notebook's own code: it cuts `ISSUE_LABELS`, `_rand_order_id`, `_generate_records` and
`_write_jsonl` out of ../shared/seed/ch8_sft_notebook.txt and execs them unchanged. It also writes the
JSON-extraction variant (custom_sft_*.jsonl) of src/data/synth.ts, re-implemented here in Python from
the same notebook functions, as a cross-check of the TypeScript port.
"""
import hashlib
import json
import os
import random
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
NOTEBOOK = os.path.join(HERE, "..", "..", "shared", "seed", "ch8_sft_notebook.txt")


def random_expectations():
    out = {}
    r = random.Random(42)
    out["randint_1000_9999_seed42"] = [r.randint(1000, 9999) for _ in range(20)]
    r = random.Random(42)
    out["random_seed42"] = [r.random() for _ in range(10)]
    r = random.Random(0)
    out["getrandbits32_seed0"] = [r.getrandbits(32) for _ in range(10)]
    r = random.Random(7)
    out["getrandbits_mixed_seed7"] = [r.getrandbits(k) for k in (1, 5, 31, 32, 33, 40, 53)]
    r = random.Random(7)
    out["getrandbits_big_seed7"] = [str(r.getrandbits(k)) for k in (64, 100, 200)]
    for seed in (2**40 + 5, 2**64 + 3, -12345, 0, 2**32, 2**53 - 1):
        r = random.Random(seed)
        out[f"random_seed_{seed}"] = [r.random() for _ in range(3)] + [r.getrandbits(32) for _ in range(3)]
    r = random.Random(123)
    seq = ["延迟发货", "退款申请", "地址修改", "物流异常", "售后咨询", "发票问题"]
    out["choice_labels_seed123"] = [r.choice(seq) for _ in range(20)]
    r = random.Random(5)
    out["randrange_seed5"] = [r.randrange(10), r.randrange(3, 100), r.randrange(0, 100, 7), r.randrange(50, 0, -3),
                              r.randrange(2**40), r.randrange(-5, 5), r.randint(1, 28), r.randrange(2**53 - 1)]
    r = random.Random(9)
    xs = list(range(20))
    r.shuffle(xs)
    out["shuffle20_seed9"] = xs
    r = random.Random(1042)
    xs = list(range(8000))
    r.shuffle(xs)
    out["shuffle8000_seed1042_head"] = xs[:20]
    out["shuffle8000_seed1042_sum_weighted"] = sum(i * v for i, v in enumerate(xs))
    r = random.Random(11)
    out["sample_seed11"] = [r.sample(range(10), 4), r.sample(range(1000), 10), r.sample(range(30), 30)]
    r = random.Random(3)
    out["uniform_seed3"] = [r.uniform(-1.5, 2.5) for _ in range(3)]
    r = random.Random(42)
    [r.random() for _ in range(700)]  # crosses the 624-word regeneration more than once
    out["random_seed42_after700"] = [r.random() for _ in range(3)]
    print(json.dumps(out, ensure_ascii=False, indent=1))


def notebook_namespace():
    src = open(NOTEBOOK, encoding="utf-8").read()
    labels = re.search(r"^    ISSUE_LABELS = (\[.*\])$", src, re.M).group(1)
    start = src.index("def _rand_order_id(rng):")
    end = src.index("if REGEN_SFT_DATA and SFT_TASK")
    ns = {"json": json, "os": os}
    exec("ISSUE_LABELS = " + labels + "\n" + src[start:end], ns)
    # build_plain_* for the extraction cross-check
    start = src.index("def build_plain_instruction(record):")
    end = src.index("def to_messages(record):")
    exec(src[start:end], ns)
    return ns


def extraction_records(ns, count, seed):
    """Mirror of generateExtractionRecords in src/data/synth.ts (same draws as the notebook's generator)."""
    # the extraction records draw exactly what the notebook's generator draws, so run it and read the
    # name, email and order id back out of each text
    out = []
    for r in ns["_generate_records"](count, seed):
        text = r["instruction"].split("文本：", 1)[1]
        name = re.search(r"(陈洁|孙悦|张强|周凯|刘洋|王伟|吴磊|李娜|赵敏|黄涛|郭婷|马超)", text).group(1)
        email = re.search(r"[a-z.]+@example\.com", text).group(0)
        order_id = re.search(r"OD\d{8}-\d{4}", text).group(0)
        response = json.dumps({"name": name, "email": email, "order_id": order_id}, ensure_ascii=False, separators=(",", ":"))
        out.append({
            "instruction": "请从文本中抽取姓名、邮箱、订单号，只输出JSON（字段：name/email/order_id）。" + f"文本：{text}",
            "response": response, "category": "信息抽取", "metric": "json", "expected": response,
        })
    return out


def sha256(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def data(outdir):
    os.makedirs(outdir, exist_ok=True)
    ns = notebook_namespace()
    result = {}
    for split, count, seed in (("train", 8000, 42), ("val", 1000, 43), ("test", 1000, 44)):
        path = os.path.join(outdir, f"gpt2_sft_{split}.jsonl")
        ns["_write_jsonl"](path, ns["_generate_records"](count, seed))
        result[os.path.basename(path)] = sha256(path)
        path = os.path.join(outdir, f"custom_sft_{split}.jsonl")
        recs = extraction_records(ns, count, seed)
        ns["_write_jsonl"](path, recs)
        result[os.path.basename(path)] = sha256(path)
        if split == "test":
            plain = [{**r, "instruction": ns["build_plain_instruction"](r), "response": ns["build_plain_response"](r)} for r in recs]
            path = os.path.join(outdir, f"custom_sft_plain_{split}.jsonl")
            ns["_write_jsonl"](path, plain)
            result[os.path.basename(path)] = sha256(path)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    if sys.argv[1:2] == ["random"]:
        random_expectations()
    elif sys.argv[1:2] == ["data"] and len(sys.argv) == 3:
        data(sys.argv[2])
    else:
        sys.exit(__doc__)
