#!/usr/bin/env python3
"""Makes hf_fixtures.json, the Hugging Face reference for package tokenizer.

Run where `transformers` is installed (the project ran it on the GPU machine,
whose python3 has it), offline, on a folder holding the Qwen2.5
tokenizer.json and tokenizer_config.json (scripts/qwen-tokenizer.sh fetches
them):

    HF_HUB_OFFLINE=1 python3 tokenizer/testdata/make_fixtures.py \
        --tokenizer ~/.cache/pipe/tokenizers/qwen2.5 \
        --cases tokenizer/testdata/chat_cases.json \
        --out tokenizer/testdata/hf_fixtures.json

For every conversation in chat_cases.json it records:

  rendered  apply_chat_template(messages, tools=tools,
            add_generation_prompt=..., tokenize=False)
  ids       apply_chat_template(..., tokenize=True), checked to equal
            tokenizer(rendered, add_special_tokens=False).input_ids
  mask      the assistant-token mask (1 = trained on), computed twice and
            required to agree:
            (a) by transformers itself: the same conversation rendered with
                GENERATION_TEMPLATE below, the official Qwen2.5 template with
                {% generation %} tags around what the assistant produces
                (from just after "<|im_start|>assistant\\n" through its
                "<|im_end|>"), through apply_chat_template(...,
                return_assistant_tokens_mask=True); the tagged template must
                render the very same text as the official one;
            (b) from the rendered text alone: each "<|im_start|>assistant\\n"
                that has a closing "<|im_end|>" opens a span that ends after
                it, and tokens char_to_token(start) .. char_to_token(end-1)
                are set, which is how transformers turns generation spans
                into a token mask.
            The official template has no generation tags, so (a) needs the
            tagged copy.

For every text: tokenizer.encode(text, add_special_tokens=False) and
tokenizer.decode(ids). For every prompt/completion pair: the ids of the
prompt, of the completion, and of their concatenation. For every JSON
document in json_values: what the templates' tojson filter writes for it.
"""

import argparse
import hashlib
import json
import platform
import re
import sys

import tokenizers
import transformers
from transformers import AutoTokenizer
from transformers.utils.chat_template_utils import _compile_jinja_template

# The official Qwen2.5 chat template with {% generation %} tags added around
# the assistant-produced text; otherwise the same output.
GENERATION_TEMPLATE = """{%- if tools %}
    {{- '<|im_start|>system\\n' }}
    {%- if messages[0]['role'] == 'system' %}
        {{- messages[0]['content'] }}
    {%- else %}
        {{- 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.' }}
    {%- endif %}
    {{- "\\n\\n# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\nYou are provided with function signatures within <tools></tools> XML tags:\\n<tools>" }}
    {%- for tool in tools %}
        {{- "\\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\\n</tools>\\n\\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\\n<tool_call>\\n{\\"name\\": <function-name>, \\"arguments\\": <args-json-object>}\\n</tool_call><|im_end|>\\n" }}
{%- else %}
    {%- if messages[0]['role'] == 'system' %}
        {{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}
    {%- else %}
        {{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\\n' }}
    {%- endif %}
{%- endif %}
{%- for message in messages %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) %}
        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}
    {%- elif message.role == "assistant" and not message.tool_calls %}
        {{- '<|im_start|>assistant\\n' }}
        {%- generation %}
            {{- message.content + '<|im_end|>' }}
        {%- endgeneration %}
        {{- '\\n' }}
    {%- elif message.role == "assistant" %}
        {{- '<|im_start|>assistant\\n' }}
        {%- generation %}
            {%- if message.content %}
                {{- message.content }}
            {%- endif %}
            {%- for tool_call in message.tool_calls %}
                {%- if tool_call.function is defined %}
                    {%- set tool_call = tool_call.function %}
                {%- endif %}
                {%- if message.content or not loop.first %}
                    {{- '\\n' }}
                {%- endif %}
                {{- '<tool_call>\\n{"name": "' }}
                {{- tool_call.name }}
                {{- '", "arguments": ' }}
                {{- tool_call.arguments | tojson }}
                {{- '}\\n</tool_call>' }}
            {%- endfor %}
            {{- '<|im_end|>' }}
        {%- endgeneration %}
        {{- '\\n' }}
    {%- elif message.role == "tool" %}
        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\\n<tool_response>\\n' }}
        {{- message.content }}
        {{- '\\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\\n' }}
{%- endif %}
"""

HEADER = "<|im_start|>assistant\n"
END = "<|im_end|>"


def input_ids(out):
    """Returns the ids of an apply_chat_template(tokenize=True) result, a
    list or a BatchEncoding depending on the transformers version."""
    if isinstance(out, list):
        return out
    ids = out["input_ids"]
    return ids.tolist() if hasattr(ids, "tolist") else list(ids)


def span_mask(tok, rendered):
    """Mask (b): assistant spans found in the rendered text."""
    enc = tok(rendered, add_special_tokens=False)
    mask = [0] * len(enc["input_ids"])
    for m in re.finditer(re.escape(HEADER), rendered):
        start = m.end()
        end = rendered.find(END, start)
        if end < 0:
            continue  # the generation prompt: nothing produced yet
        end += len(END)
        first = enc.char_to_token(start)
        last = enc.char_to_token(end - 1)
        for i in range(first, last + 1):
            mask[i] = 1
    return enc["input_ids"], mask


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tokenizer", required=True, help="folder with tokenizer.json and tokenizer_config.json")
    ap.add_argument("--cases", required=True, help="chat_cases.json")
    ap.add_argument("--out", required=True, help="where to write hf_fixtures.json")
    args = ap.parse_args()

    with open(args.cases, encoding="utf-8") as f:
        cases = json.load(f)
    tok = AutoTokenizer.from_pretrained(args.tokenizer)
    template = tok.chat_template
    failures = []

    chats = []
    for case in cases["chats"]:
        name = case["name"]
        kw = dict(
            tools=case.get("tools") or None,
            add_generation_prompt=case.get("add_generation_prompt", False),
        )
        rendered = tok.apply_chat_template(case["messages"], tokenize=False, **kw)
        ids = input_ids(tok.apply_chat_template(case["messages"], tokenize=True, **kw))
        enc_ids, mask_b = span_mask(tok, rendered)
        if enc_ids != ids:
            failures.append(f"{name}: apply_chat_template ids differ from encoding the rendered text")

        tagged_rendered = tok.apply_chat_template(
            case["messages"], tokenize=False, chat_template=GENERATION_TEMPLATE, **kw)
        if tagged_rendered != rendered:
            failures.append(f"{name}: the generation-tagged template renders differently")
        out = tok.apply_chat_template(
            case["messages"], tokenize=True, return_dict=True, return_assistant_tokens_mask=True,
            chat_template=GENERATION_TEMPLATE, **kw)
        mask_a = list(out["assistant_masks"])
        if input_ids(out) != ids:
            failures.append(f"{name}: the generation-tagged template gives other ids")
        if mask_a != mask_b:
            failures.append(f"{name}: return_assistant_tokens_mask {mask_a} != span mask {mask_b}")
        chats.append({"name": name, "rendered": rendered, "ids": ids, "mask": mask_a})

    texts = []
    for case in cases["texts"]:
        ids = tok.encode(case["text"], add_special_tokens=False)
        texts.append({"name": case["name"], "ids": ids, "decoded": tok.decode(ids)})

    fim = []
    for case in cases["fim"]:
        fim.append({
            "name": case["name"],
            "prompt_ids": tok.encode(case["prompt"], add_special_tokens=False),
            "completion_ids": tok.encode(case["completion"], add_special_tokens=False),
            "concat_ids": tok.encode(case["prompt"] + case["completion"], add_special_tokens=False),
        })

    # JSON documents through the template's own tojson filter.
    render_tojson = _compile_jinja_template("{{ value | tojson }}").render
    json_values = [render_tojson(value=json.loads(v)) for v in cases["json_values"]]

    if failures:
        print("\n".join(failures), file=sys.stderr)
        sys.exit(1)

    meta = {
        "made_by": "tokenizer/testdata/make_fixtures.py",
        "transformers": transformers.__version__,
        "tokenizers": tokenizers.__version__,
        "python": platform.python_version(),
        "chat_template_sha256": hashlib.sha256(template.encode()).hexdigest(),
        "vocab_size": len(tok),
        "mask_method": "return_assistant_tokens_mask with the generation-tagged template, equal to the span mask",
    }
    # One entry a line keeps the file diffable.
    with open(args.out, "w", encoding="utf-8") as f:
        f.write("{\n\"meta\": " + json.dumps(meta, ensure_ascii=False) + ",\n")
        for key, items in (("chats", chats), ("texts", texts), ("fim", fim), ("json_values", json_values)):
            f.write(f"\"{key}\": [\n")
            f.write(",\n".join(json.dumps(it, ensure_ascii=False) for it in items))
            f.write("\n]" + ("\n" if key == "json_values" else ",\n"))
        f.write("}\n")
    print(f"wrote {args.out}: {len(chats)} chats, {len(texts)} texts, {len(fim)} prompt/completion pairs")


if __name__ == "__main__":
    main()
