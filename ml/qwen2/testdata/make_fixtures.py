#!/usr/bin/env python3
"""Builds the Hugging Face reference fixtures for package qwen2's parity tests.

Run on a machine with torch, transformers, peft and safetensors (the GPU
machine; everything here runs on the CPU in float32):

    python3 ml/qwen2/testdata/make_fixtures.py ml/qwen2/testdata/fixtures

For each small random model it writes <out>/<name>/:
  base/      config.json + model.safetensors (save_pretrained, float32)
  adapter/   adapter_config.json + adapter_model.safetensors (peft, B != 0)
  expect.safetensors
      <batch>.tokens/.positions/.segments/.targets (int64), <batch>.weights (f32)
      <batch>.logits_base, <batch>.logits_lora   [B, S, V] float32
      <batch>.loss                               scalar: sum of weighted token CE (with adapter)
      <batch>.grad.<peft key>                    d loss / d lora weight
      gen.prompt, gen.greedy                     greedy generate() with the adapter
Batches: "plain" ([2, 12], one document per row) and "packed" ([1, 16], two
documents with restarting position ids; the reference runs each document on
its own and concatenates, and the script checks that a block-diagonal 4D
mask gives the same logits).
"""
import json
import os
import sys

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM
from peft import LoraConfig, get_peft_model

ALL = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def model_specs():
    common = dict(vocab_size=384, hidden_size=64, intermediate_size=112, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                  rms_norm_eps=1e-6, rope_theta=50000.0, initializer_range=0.08,
                  bos_token_id=None, eos_token_id=None, pad_token_id=0, attn_implementation="eager")
    return [
        # Qwen2: q/k/v biases, tied head, LoRA on all seven, alpha/r.
        ("qwen2_bias_tied", Qwen2Config(tie_word_embeddings=True, **common), Qwen2ForCausalLM,
         dict(r=4, lora_alpha=8, target_modules=ALL, use_rslora=False)),
        # Llama: no biases, untied head, LoRA on a subset, rsLoRA.
        ("llama_nobias_untied", LlamaConfig(tie_word_embeddings=False, attention_bias=False, **common),
         LlamaForCausalLM, dict(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj", "down_proj"], use_rslora=True)),
    ]


def batches(vocab, g):
    plain_tokens = torch.randint(3, vocab, (2, 12), generator=g)
    plain = dict(tokens=plain_tokens,
                 positions=torch.arange(12).repeat(2, 1),
                 segments=torch.zeros(2, 12, dtype=torch.long),
                 targets=torch.randint(3, vocab, (2, 12), generator=g),
                 weights=(torch.rand(2, 12, generator=g) > 0.25).float())
    lens = [7, 9]
    packed = dict(tokens=torch.randint(3, vocab, (1, 16), generator=g),
                  positions=torch.cat([torch.arange(n) for n in lens]).unsqueeze(0),
                  segments=torch.cat([torch.full((n,), i) for i, n in enumerate(lens)]).unsqueeze(0),
                  targets=torch.randint(3, vocab, (1, 16), generator=g),
                  weights=(torch.rand(1, 16, generator=g) > 0.2).float())
    return {"plain": plain, "packed": packed}


def forward_docs(model, b):
    """Logits of a batch whose rows may hold several documents: each document
    runs on its own (positions from 0), and the results are concatenated."""
    rows = []
    for r in range(b["tokens"].shape[0]):
        seg = b["segments"][r]
        parts = []
        for s in torch.unique_consecutive(seg):
            idx = (seg == s).nonzero().flatten()
            ids = b["tokens"][r, idx].unsqueeze(0)
            pos = b["positions"][r, idx].unsqueeze(0)
            parts.append(model(input_ids=ids, position_ids=pos).logits[0])
        rows.append(torch.cat(parts, 0))
    return torch.stack(rows, 0)


def forward_mask4d(model, b):
    seg = b["segments"]
    s = seg.shape[1]
    causal = torch.tril(torch.ones(s, s, dtype=torch.bool))
    allowed = (seg[:, :, None] == seg[:, None, :]) & causal[None]
    mask = torch.zeros(allowed.shape, dtype=torch.float32).masked_fill(~allowed, torch.finfo(torch.float32).min)
    return model(input_ids=b["tokens"], position_ids=b["positions"], attention_mask=mask[:, None]).logits


def normalise_config(path, name):
    """Writes the rotary settings as Qwen2.5's own config.json does (a top-level
    rope_theta, no rope_scaling): transformers 5 may write them as
    rope_parameters or rope_scaling {"rope_type": "default", "rope_theta": ...},
    and reads either form the same way."""
    cj = json.load(open(path))
    theta = cj.get("rope_theta")
    for key in ("rope_parameters", "rope_scaling"):
        v = cj.get(key)
        if isinstance(v, dict):
            if v.get("rope_type", "default") != "default":
                raise SystemExit(f"{name}: unexpected {key} {v}")
            theta = v.get("rope_theta", theta)
            del cj[key]
    cj["rope_theta"] = theta if theta is not None else 50000.0
    json.dump(cj, open(path, "w"), indent=2, sort_keys=True)
    print(f"{name}: config.json rope_theta = {cj['rope_theta']}")


def main(out):
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1234)
    for name, cfg, cls, lcfg in model_specs():
        d = os.path.join(out, name)
        os.makedirs(d, exist_ok=True)
        model = cls(cfg).float().eval()
        model.generation_config.eos_token_id = None
        model.generation_config.bos_token_id = None
        with torch.no_grad():  # norms away from 1 and non-zero biases, so that they matter
            for n, p in model.named_parameters():
                if n.endswith("norm.weight"):
                    p.copy_(1 + 0.1 * torch.randn(p.shape, generator=g))
                elif n.endswith(".bias"):
                    p.copy_(0.1 * torch.randn(p.shape, generator=g))
        model.save_pretrained(os.path.join(d, "base"))
        normalise_config(os.path.join(d, "base", "config.json"), name)
        # The reference is the checkpoint as transformers reads it back.
        model = cls.from_pretrained(os.path.join(d, "base"), dtype=torch.float32, attn_implementation="eager").eval()
        model.generation_config.eos_token_id = None
        model.generation_config.bos_token_id = None
        bs = batches(cfg.vocab_size, g)
        expect = {}
        with torch.no_grad():
            for bn, b in bs.items():
                expect[bn + ".logits_base"] = forward_docs(model, b)

        lora = LoraConfig(task_type="CAUSAL_LM", lora_dropout=0.0, bias="none", **lcfg)
        pm = get_peft_model(model, lora).eval()
        with torch.no_grad():
            for n, p in pm.named_parameters():
                if "lora_B" in n:
                    p.copy_(0.05 * torch.randn(p.shape, generator=g))
        pm.save_pretrained(os.path.join(d, "adapter"))
        params = {n: p for n, p in pm.named_parameters() if "lora_" in n}

        for bn, b in bs.items():
            for k, v in b.items():
                expect[f"{bn}.{k}"] = v.contiguous()
            pm.zero_grad()
            logits = forward_docs(pm, b)
            if bn == "packed":
                with torch.no_grad():
                    try:
                        l4 = forward_mask4d(pm, b)
                        print(f"{name}: packed 4D-mask vs per-document max |diff| = {(l4 - logits).abs().max().item():.3g}")
                    except Exception as e:  # the reference does not depend on it
                        print(f"{name}: 4D-mask forward failed: {e!r}")
            ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), b["targets"].reshape(-1), reduction="none")
            loss = (ce * b["weights"].reshape(-1)).sum()
            loss.backward()
            expect[bn + ".logits_lora"] = logits.detach().contiguous()
            expect[bn + ".loss"] = loss.detach().reshape(())
            for n, p in params.items():
                key = n.replace(".default", "")  # PEFT's saved key names
                expect[f"{bn}.grad.{key}"] = p.grad.detach().clone().contiguous()

        prompt = torch.randint(3, cfg.vocab_size, (1, 6), generator=g)
        with torch.no_grad():
            gen = pm.generate(input_ids=prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=12,
                              do_sample=False, pad_token_id=0)
        expect["gen.prompt"] = prompt.contiguous()
        expect["gen.greedy"] = gen[0, prompt.shape[1]:].contiguous()
        expect["rope.inv_freq"] = pm.base_model.model.model.rotary_emb.inv_freq.float().contiguous()
        save_file(expect, os.path.join(d, "expect.safetensors"), metadata={"format": "pt"})
        print(f"{name}: wrote {len(expect)} tensors; config: {json.load(open(os.path.join(d, 'base', 'config.json')))}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "fixtures"))
