"""Bank memory per format: bytes per sample per bank, and totals for CIFAR-100, ImageNet-1k and -21k.

The bytes are read off real banks (one row of each format, its buffers' element sizes), not a
formula: dense fp32 / fp16 (N × C probabilities) and top-k (k fp16 probabilities + k class ids,
int16 up to 32,767 classes, else int32), plus the 1-byte "recorded" flag. LSTSD keeps two banks.

    python benchmarks/bank_memory.py
"""

from __future__ import annotations

from lstsd.bank import make_bank

DATASETS = [("CIFAR-100", 50_000, 100), ("ImageNet-1k", 1_281_167, 1000), ("ImageNet-21k", 14_197_122, 21_841)]
FORMATS = [("dense fp32", dict(dtype="float32")), ("dense fp16", dict(dtype="float16")),
           ("top-5", dict(bank_format="topk", bank_topk=5)), ("top-10", dict(bank_format="topk", bank_topk=10)),
           ("top-20", dict(bank_format="topk", bank_topk=20))]


def human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000:
            return f"{n:.3g} {unit}"
        n /= 1000
    return f"{n:.3g} PB"


def main() -> None:
    classes = sorted({c for _, _, c in DATASETS})
    per_sample = {(f, c): make_bank(1, c, **kw).nbytes_per_sample() for f, kw in FORMATS for c in classes}
    print("Bytes per sample per bank\n")
    print("| format | " + " | ".join(f"C = {c:,}" for c in classes) + " |")
    print("|---|" + "---:|" * len(classes))
    for f, _ in FORMATS:
        print(f"| {f} | " + " | ".join(f"{per_sample[(f, c)]:,}" for c in classes) + " |")
    print("\nOne bank for the whole training set (LSTSD keeps two)\n")
    print("| data set | N | C | " + " | ".join(f for f, _ in FORMATS) + " |")
    print("|---|---:|---:|" + "---:|" * len(FORMATS))
    for name, n, c in DATASETS:
        print(f"| {name} | {n:,} | {c:,} | " + " | ".join(human(n * per_sample[(f, c)]) for f, _ in FORMATS) + " |")


if __name__ == "__main__":
    main()
