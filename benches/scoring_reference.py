"""PyTorch reference for benches/scoring.rs: the same shapes and work with torch.mm + torch.topk.

    python benches/scoring_reference.py [--device cuda] [--users N] [--items I] [--shards S]
                                        [--dim d] [--top-k K] [--batch B] [--seen M]

Prints users/s for (a) mm + topk with results copied to the host, and (b) the same with the
seen-item mask applied (index_fill_ with -inf), which is what eemu's kernel does (mask indices
prepared before timing).
"""
import argparse
import time

import torch


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--device", default="cuda")
    p.add_argument("--users", type=int, default=100_000)
    p.add_argument("--items", type=int, default=50_000)
    p.add_argument("--shards", type=int, default=8)
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--top-k", type=int, default=100)
    p.add_argument("--batch", type=int, default=8192)
    p.add_argument("--seen", type=int, default=50)
    a = p.parse_args()
    dev = torch.device(a.device)
    torch.manual_seed(0)
    width = a.shards * a.dim
    x = torch.randn(a.users, width, device=dev) / a.shards
    y = torch.randn(a.items, width, device=dev)
    yt = y.t().contiguous()
    seen = [sorted({(u * 7919 + j * 104_729) % a.items for j in range(a.seen)}) for u in range(a.users)]
    # The mask index tensors are built on the host before timing (eemu builds its masks inside
    # the timed loop): (b) measures only the upload, index_fill_, mm and topk.
    masks = [
        torch.tensor([r * a.items + i for r, items in enumerate(seen[b : b + a.batch]) for i in items], dtype=torch.int64)
        for b in range(0, a.users, a.batch)
    ]

    def run(mask):
        out = 0
        for n, b in enumerate(range(0, a.users, a.batch)):
            rows = x[b : b + a.batch]
            s = rows @ yt
            if mask:
                s.view(-1).index_fill_(0, masks[n].to(dev), float("-inf"))
            v, i = s.topk(a.top_k, dim=1)
            v, i = v.cpu(), i.cpu()
            out += v.shape[0]
        return out

    for mask in (False, True):
        x_w = x[: a.batch]  # warm-up
        (x_w @ yt).topk(a.top_k, dim=1)[0].cpu()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        n = run(mask)
        sec = time.perf_counter() - t
        label = "mm+mask+topk" if mask else "mm+topk"
        print(f"reference {label} device={a.device} users={n} items={a.items} width={width} k={a.top_k} batch={a.batch}: {sec:.2f} s, {n / sec:.0f} users/s")


if __name__ == "__main__":
    main()
