# Checks, on the GPU machine, that the training stage's outputs load in the
# reference tools: every TensorBoard event folder under the given root with
# TensorBoard's EventAccumulator, and every exported adapter with peft's
# PeftModel.from_pretrained on a random Qwen2.5-Coder-3B-shaped model
# (the benchmark's adapters are for that shape), comparing the loaded LoRA
# weights with the file's. Prints one JSON object.
import glob, json, os, sys
root = sys.argv[1]
out = {"tensorboard": {}, "peft": {}}
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
for d in sorted(glob.glob(os.path.join(root, "*", "tensorboard"))):
    ea = EventAccumulator(d); ea.Reload()
    tags = ea.Tags()["scalars"]
    out["tensorboard"][d] = {t: [len(ea.Scalars(t)), ea.Scalars(t)[-1].value] for t in tags}
adapters = sorted(glob.glob(os.path.join(root, "*", "last")))[:1]
if adapters:
    import torch
    from safetensors.torch import load_file
    from transformers import Qwen2Config, Qwen2ForCausalLM
    from peft import PeftModel
    cfg = Qwen2Config(hidden_size=2048, intermediate_size=11008, num_hidden_layers=36, num_attention_heads=16,
                      num_key_value_heads=2, vocab_size=151936, max_position_embeddings=32768, rope_theta=1e6,
                      rms_norm_eps=1e-6, tie_word_embeddings=True)
    with torch.device("cuda"):
        base = Qwen2ForCausalLM(cfg).to(torch.bfloat16)
    for a in adapters:
        m = PeftModel.from_pretrained(base, a)
        ref = load_file(os.path.join(a, "adapter_model.safetensors"))
        params = dict(m.named_parameters())
        matched, nonzero_b = 0, 0
        for k, v in ref.items():
            pk = k.replace(".lora_A.weight", ".lora_A.default.weight").replace(".lora_B.weight", ".lora_B.default.weight")
            if pk in params and torch.equal(params[pk].detach().float().cpu(), v.float()):
                matched += 1
                if "lora_B" in k and v.abs().sum() > 0:
                    nonzero_b += 1
        with torch.no_grad():
            logits = m(input_ids=torch.arange(16, device="cuda")[None]).logits
        out["peft"][a] = {"tensors": len(ref), "loaded_equal": matched, "trained_lora_B_nonzero": nonzero_b,
                          "config": json.load(open(os.path.join(a, "adapter_config.json")))["target_modules"],
                          "forward_ok": bool(torch.isfinite(logits).all())}
print(json.dumps(out, indent=1))
