#!/usr/bin/env python3
"""Checks what the Go tests exported (QWEN2_EXPORT_DIR) against the reference
implementation: for each model folder <export>/<name>/, the Go-written PEFT
adapter must load with peft's PeftModel.from_pretrained on top of the fixture
base and give the Go model's logits, and the Go-merged checkpoint must load
with transformers alone and give them too.

    python3 ml/qwen2/testdata/check_export.py <export dir> ml/qwen2/testdata/fixtures
"""
import os
import sys

import torch
from peft import PeftModel
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

TOL = 1e-4


def rel(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


def main(export, fixtures):
    ok = True
    for name in sorted(os.listdir(export)):
        d = os.path.join(export, name)
        go = load_file(os.path.join(d, "go_logits.safetensors"))
        tokens = go["tokens"].long()
        base = AutoModelForCausalLM.from_pretrained(os.path.join(fixtures, name, "base"), dtype=torch.float32,
                                                    attn_implementation="eager").eval()
        pm = PeftModel.from_pretrained(base, os.path.join(d, "adapter")).eval()
        with torch.no_grad():
            lp = pm(input_ids=tokens).logits
        merged = AutoModelForCausalLM.from_pretrained(os.path.join(d, "merged"), dtype=torch.float32,
                                                      attn_implementation="eager").eval()
        with torch.no_grad():
            lm = merged(input_ids=tokens).logits
        r1, r2 = rel(go["logits"], lp), rel(go["logits"], lm)
        print(f"{name}: Go adapter via peft: rel err {r1:.3g}; Go merged via transformers: rel err {r2:.3g}")
        with torch.no_grad():
            plain = AutoModelForCausalLM.from_pretrained(os.path.join(fixtures, name, "base"), dtype=torch.float32,
                                                         attn_implementation="eager").eval()(input_ids=tokens).logits
        print(f"{name}: (the adapter changes the logits by rel {rel(plain, lp):.3g})")
        ok = ok and r1 <= TOL and r2 <= TOL
    print("EXPORT CHECK", "PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
