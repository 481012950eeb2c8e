"""Peer for ml/eval's TestGenerateThroughput: transformers' greedy generate()
on the Qwen2.5-Coder-3B architecture with random weights (bf16, batch 1,
the default dynamic KV cache, SDPA attention), same prompt and output
lengths, timed the same way (warm-up, then best of two runs of 1 and N new
tokens, min_new_tokens=N so random weights cannot stop early).

Usage: python3 hf_generate_bench.py [prompt_tokens=512] [new_tokens=128] [out.jsonl]
"""
import json
import sys
import time

import torch
from transformers import Qwen2Config, Qwen2ForCausalLM


def main():
    p = int(sys.argv[1]) if len(sys.argv) > 1 else 512
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 128
    out = sys.argv[3] if len(sys.argv) > 3 else None
    cfg = Qwen2Config(vocab_size=151936, hidden_size=2048, intermediate_size=11008, num_hidden_layers=36,
                      num_attention_heads=16, num_key_value_heads=2, max_position_embeddings=32768,
                      rope_theta=1e6, rms_norm_eps=1e-6, tie_word_embeddings=True, torch_dtype="bfloat16")
    torch.manual_seed(0)
    t0 = time.time()
    with torch.device("cuda"):
        model = Qwen2ForCausalLM(cfg).to(torch.bfloat16)
    model.eval()
    load = time.time() - t0
    g = torch.Generator().manual_seed(1)
    prompt = torch.randint(0, 151643, (1, p), generator=g).cuda()
    mask = torch.ones_like(prompt)

    def run(k):
        torch.cuda.synchronize()
        s = time.time()
        with torch.no_grad():
            ids = model.generate(prompt, attention_mask=mask, max_new_tokens=k, min_new_tokens=k,
                                 do_sample=False, pad_token_id=0)
        torch.cuda.synchronize()
        assert ids.shape[1] == p + k, ids.shape
        return time.time() - s

    s = time.time()
    run(n)
    run(1)
    warm = time.time() - s
    one = full = None
    for _ in range(2):
        a, b = run(1), run(n)
        one = a if one is None else min(one, a)
        full = b if full is None else min(full, b)
    res = {"peer": "transformers generate", "torch": torch.__version__, "device": torch.cuda.get_device_name(),
           "prompt_tokens": p, "new_tokens": n, "load_seconds": load, "warmup_seconds": warm,
           "prefill_seconds": one, "generate_seconds": full, "tokens_per_second": n / full,
           "decode_tokens_per_second": (n - 1) / (full - one),
           "peak_memory_bytes": torch.cuda.max_memory_allocated()}
    print(json.dumps(res), flush=True)
    if out:
        with open(out, "a") as f:
            f.write(json.dumps(res) + "\n")


if __name__ == "__main__":
    main()
