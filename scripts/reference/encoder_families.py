#!/usr/bin/env python3
"""Tiny sentence-transformers encoders of every supported BERT family, for parity tests.

What: for each kind below, a small random-weight model (hidden 32, 4 heads, 2 layers,
feed-forward 64) with a tokenizer trained here on a built-in multilingual corpus, saved
as sentence-transformers saves a model (Transformer + Pooling [+ Normalize]), and the
embeddings sentence-transformers computes for SENTENCES. Output:

    crates/mdsa-models/tests/fixtures/encoders/<kind>/
        config.json, model.safetensors, tokenizer.json, tokenizer_config.json,
        modules.json, 1_Pooling/config.json, [2_Normalize/], sentence_bert_config.json,
        config_sentence_transformers.json
    crates/mdsa-models/tests/fixtures/encoders/reference.json
        per kind: the prompt used, the sentences' token ids and embeddings

Kinds, each exercising one family, one pooling mode and one tokenizer model:

    bert-mean        BertModel, WordPiece, mean pooling, Normalize, E5-style prompts
                     ("query: ", "passage: "; embedded with prompt_name="query")
    roberta-cls      RobertaModel (positions start at pad_token_id + 1), byte-level
                     BPE, CLS pooling, no Normalize
    xlm-roberta-max  XLMRobertaModel, Unigram (SentencePiece-style Metaspace), max
                     pooling, Normalize, default_prompt_name "query"
    distilbert-last  DistilBertModel (its own tensor names, no token types), WordPiece,
                     last-token pooling, Normalize

Why: real weights of these families cannot be fetched here (the Hub is unreachable),
and a parity test needs only the computation to be the same: every tensor, position
offset, pooling mode and prompt matters to the output, so the weights are random with
a large initializer range (0.3) and LayerNorm weights and biases drawn around their
neutral values, so that attention is far from uniform and a wrong name, offset or
norm shows.

How (CPU, seconds):

    /work/refs-ort/bin/python scripts/reference/encoder_families.py

Pinned (the venv of scripts/reference/install.sh with the ONNX extras): torch 2.15.0,
transformers 5.24.0, sentence-transformers 6.2.0, tokenizers 0.23.3, safetensors 0.8.0.
"""

import json
import os
import shutil
import sys

import torch
import sentence_transformers
import transformers
import tokenizers
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import (
    BertConfig,
    BertModel,
    DistilBertConfig,
    DistilBertModel,
    PreTrainedTokenizerFast,
    RobertaConfig,
    RobertaModel,
    XLMRobertaConfig,
    XLMRobertaModel,
)
from sentence_transformers import SentenceTransformer
from sentence_transformers.models import Normalize, Pooling, Transformer

ROOT = os.path.join(os.path.dirname(__file__), "..", "..", "crates", "mdsa-models", "tests", "fixtures", "encoders")

SENTENCES = [
    "hi",
    "What's my account balance?",
    "I want to transfer money to my friend.",
    "My package never arrived and I want a refund.",
    "How do I fix a segmentation fault in C?",
    "I have had a fever and a headache since yesterday.",
    "¿Cuál es el saldo de mi cuenta?",
    "Ich habe seit gestern Kopfschmerzen und Fieber.",
    "मेरा पासवर्ड काम नहीं कर रहा है",
    "我的订单什么时候到？",
    "A much longer query that goes on about a laptop that will not boot after an update, "
    "a printer that jams, a router that drops the wifi every evening, and a spreadsheet that "
    "crashes whenever a large file is opened, well past the model's limit of tokens.",
]

CORPUS = SENTENCES + [
    "the quick brown fox jumps over the lazy dog",
    "please reset my password and unlock my account",
    "send money abroad with a low exchange fee",
    "take two tablets every six hours after meals",
    "git push was rejected because the remote has new commits",
    "el paquete llegó dañado y quiero devolverlo",
    "wie kann ich mein Abonnement kündigen",
    "मुझे बुखार है और सिर में दर्द है",
    "我想取消我的订阅并申请退款",
]

MAX_SEQ_LENGTH = 40
HIDDEN, HEADS, LAYERS, FFN, POSITIONS = 32, 4, 2, 64, 64


def wordpiece():
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok.train_from_iterator(CORPUS * 4, trainers.WordPieceTrainer(vocab_size=600, special_tokens=specials))
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        special_tokens=[("[CLS]", tok.token_to_id("[CLS]")), ("[SEP]", tok.token_to_id("[SEP]"))],
    )
    tok.decoder = decoders.WordPiece()
    return tok, dict(unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")


def byte_bpe():
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    tok.train_from_iterator(
        CORPUS * 4,
        trainers.BpeTrainer(vocab_size=700, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()),
    )
    tok.post_processor = processors.RobertaProcessing(("</s>", tok.token_to_id("</s>")), ("<s>", tok.token_to_id("<s>")))
    tok.decoder = decoders.ByteLevel()
    return tok, dict(bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>", cls_token="<s>", sep_token="</s>", mask_token="<mask>")


def unigram():
    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    tok.train_from_iterator(CORPUS * 4, trainers.UnigramTrainer(vocab_size=500, special_tokens=specials, unk_token="<unk>"))
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>",
        special_tokens=[("<s>", tok.token_to_id("<s>")), ("</s>", tok.token_to_id("</s>"))],
    )
    tok.decoder = decoders.Metaspace()
    return tok, dict(bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>", cls_token="<s>", sep_token="</s>", mask_token="<mask>")


def bert_model(vocab, pad):
    return BertModel(BertConfig(
        vocab_size=vocab, hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
        intermediate_size=FFN, max_position_embeddings=POSITIONS, type_vocab_size=2,
        initializer_range=0.3, pad_token_id=pad), add_pooling_layer=False)


def roberta_model(cls):
    def build(vocab, pad):
        return cls(cls.config_class(
            vocab_size=vocab, hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
            intermediate_size=FFN, max_position_embeddings=POSITIONS + pad + 1, type_vocab_size=1,
            initializer_range=0.3, pad_token_id=pad, bos_token_id=0, eos_token_id=2), add_pooling_layer=False)
    return build


def distilbert_model(vocab, pad):
    return DistilBertModel(DistilBertConfig(
        vocab_size=vocab, dim=HIDDEN, n_layers=LAYERS, n_heads=HEADS, hidden_dim=FFN,
        max_position_embeddings=POSITIONS, activation="gelu", initializer_range=0.3, pad_token_id=pad))


KINDS = {
    # name: (tokenizer, model builder, pooling mode, normalize, prompts, default prompt, prompt used)
    "bert-mean": (wordpiece, bert_model, "mean", True, {"query": "query: ", "passage": "passage: "}, None, "query"),
    "roberta-cls": (byte_bpe, roberta_model(RobertaModel), "cls", False, {}, None, None),
    "xlm-roberta-max": (unigram, roberta_model(XLMRobertaModel), "max", True, {"query": "query: "}, "query", None),
    "distilbert-last": (wordpiece, distilbert_model, "lasttoken", True, {}, None, None),
}


def perturb_norms(model, generator):
    """LayerNorm weights around 1 and biases around 0, so a wrong norm shows."""
    for name, param in model.named_parameters():
        lowered = name.lower()
        if "layernorm" in lowered or "layer_norm" in lowered:
            with torch.no_grad():
                if name.endswith("weight"):
                    param.copy_(1.0 + 0.3 * torch.randn(param.shape, generator=generator))
                else:
                    param.copy_(0.3 * torch.randn(param.shape, generator=generator))


def build(kind, seed):
    make_tokenizer, make_model, mode, normalize, prompts, default_prompt, prompt_used = KINDS[kind]
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    tok, specials = make_tokenizer()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, model_max_length=MAX_SEQ_LENGTH, **specials)
    model = make_model(tok.get_vocab_size(), fast.pad_token_id)
    perturb_norms(model, generator)
    model.eval()
    hf_dir = os.path.join("/tmp", f"encoder-{kind}-hf")
    shutil.rmtree(hf_dir, ignore_errors=True)
    model.save_pretrained(hf_dir)
    fast.save_pretrained(hf_dir)
    transformer = Transformer(hf_dir, max_seq_length=MAX_SEQ_LENGTH)
    modules = [transformer, Pooling(HIDDEN, pooling_mode=mode)]
    if normalize:
        modules.append(Normalize())
    st = SentenceTransformer(modules=modules, prompts=prompts, default_prompt_name=default_prompt, device="cpu")
    out = os.path.join(ROOT, kind)
    shutil.rmtree(out, ignore_errors=True)
    st.save(out)
    # Read back, as a user would load it.
    st = SentenceTransformer(out, device="cpu")
    kwargs = {"prompt_name": prompt_used} if prompt_used else {}
    embeddings = st.encode(SENTENCES, batch_size=4, convert_to_numpy=True, **kwargs)
    prompt = prompts.get(prompt_used or default_prompt or "", "")
    ids = [st.tokenizer(prompt + s, truncation=True, max_length=MAX_SEQ_LENGTH)["input_ids"] for s in SENTENCES]
    return {
        "pooling": mode,
        "normalize": normalize,
        "prompt_name": prompt_used,
        "prompt": prompt,
        "vocab_size": tok.get_vocab_size(),
        "sentences": [
            {"text": s, "ids": i, "embedding": [float(v) for v in e]}
            for s, i, e in zip(SENTENCES, ids, embeddings)
        ],
    }


def main():
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    os.makedirs(ROOT, exist_ok=True)
    kinds = sys.argv[1:] or list(KINDS)
    reference_path = os.path.join(ROOT, "reference.json")
    reference = {}
    if os.path.exists(reference_path):
        with open(reference_path) as f:
            reference = json.load(f)
    reference.setdefault("kinds", {})
    for i, kind in enumerate(KINDS):
        if kind in kinds:
            reference["kinds"][kind] = build(kind, seed=1000 + i)
            print(kind, "done")
    reference["versions"] = {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "sentence_transformers": sentence_transformers.__version__,
        "tokenizers": tokenizers.__version__,
    }
    reference["max_seq_length"] = MAX_SEQ_LENGTH
    with open(reference_path, "w") as f:
        json.dump(reference, f, indent=1, ensure_ascii=False)
        f.write("\n")


if __name__ == "__main__":
    main()
