"""Answers from the documents: the instruct base's ONNX graph against llama.cpp on the same GGUF
file, answer quality on the sample agent's question set, and the server's memory with 20 chat
agents.

    .venv/bin/python bench/answers.py [--no-llama] [--no-generator] [--agents 20]
                                      [--sections speed,quality,memory,upload]

1. Speed, both sides on the same file, the same token ids and two threads: prefill tokens per
   second for a grounded question of about 600 prompt tokens, decode tokens per second at
   batch 1 over 64 greedy tokens (the end-of-turn token forbidden on both sides, so both
   produce all 64), and the time to the first token. llama.cpp runs through
   llama-cpp-python, built from PyPI's source distribution into its own environment
   (.venv-llama; the build's minutes are printed the run that makes it). Three rounds each,
   alternated; medians, and the spread (max - min) beside them.
2. Quality on samples/questions.json (34 questions about the sample bakery, each with the
   facts a right answer states), scored the same way for every arm: the product (retrieval,
   supporting sentences, the base, the faithfulness check); the bare base given the
   paragraph that holds the fact; the best retrieved sentence alone; and the character-level
   generator the generation task trains (`thunder demo` budget, grounded). Off-topic
   questions: how many the product refuses.
3. Memory: `thunder serve` with the base and `--agents` chat agents, each indexed and asked
   once; the process's resident set.
4. Upload to answer, as a user sees it: with `dagster-daemon run` and `thunder serve` up (the
   base already built, as after `make run`), a new chat agent's folder with its agent.json and
   the sample's files is written, and the OpenAI route is asked every second until it answers
   from the documents with sources; the seconds from the files landing to that answer.
"""

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SAMPLES = REPO / "samples"
LLAMA_ENV = REPO / ".venv-llama"
LLAMA_VERSION = "0.3.36"
THREADS = 2
DECODE_TOKENS = 64
ROUNDS = 3


def sample_texts() -> dict[str, str]:
    paths = sorted(SAMPLES.glob("src/*.txt")) + sorted(SAMPLES.glob("agent/*/*.txt"))
    return {path.name: path.read_text() for path in paths}


def right(text: str, facts: list[list[str]]) -> bool:
    lowered = text.lower()
    return all(
        any(
            re.search(rf"(?<!\w){re.escape(spelling.lower())}(?!\w)", lowered) for spelling in group
        )
        for group in facts
    )


def ensure_llama() -> float | None:
    """The llama-cpp-python environment; the build's seconds when this run made it."""
    python = LLAMA_ENV / "bin" / "python"
    if python.exists():
        return None
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "venv", str(LLAMA_ENV)], check=True)
    subprocess.run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-binary",
            "llama-cpp-python",
            f"llama-cpp-python=={LLAMA_VERSION}",
            "numpy",
        ],
        check=True,
        env={**os.environ, "CMAKE_BUILD_PARALLEL_LEVEL": str(THREADS)},
    )
    return time.perf_counter() - started


LLAMA_SCRIPT = """
import json, sys, time
from llama_cpp import Llama
path, ids = sys.argv[1], json.loads(sys.argv[2])
tokens, threads = int(sys.argv[3]), int(sys.argv[4])
llm = Llama(model_path=path, n_threads=threads, n_threads_batch=threads, n_ctx=2048,
            n_batch=1024, verbose=False)
forbid = {0: -1000.0, 2: -1000.0}
llm.create_completion(ids[:16], max_tokens=2, temperature=0)  # warm-up, as the graph is warm
llm.reset()
started = time.perf_counter()
llm.create_completion(ids, max_tokens=1, temperature=0, logit_bias=forbid)
first = time.perf_counter() - started
llm.reset()
started = time.perf_counter()
llm.create_completion(ids, max_tokens=tokens + 1, temperature=0, logit_bias=forbid)
whole = time.perf_counter() - started
print(json.dumps({"first": first, "whole": whole}))
"""


def llama_round(gguf: Path, ids: list[int]) -> dict:
    out = subprocess.run(
        [
            str(LLAMA_ENV / "bin" / "python"),
            "-c",
            LLAMA_SCRIPT,
            str(gguf),
            json.dumps(ids),
            str(DECODE_TOKENS),
            str(THREADS),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    timing = json.loads(out.stdout.strip().splitlines()[-1])
    return {
        "ttft": timing["first"],
        "prefill": len(ids) / timing["first"],
        "decode": DECODE_TOKENS / (timing["whole"] - timing["first"]),
    }


def onnx_round(model, ids: list[int]) -> dict:
    import numpy as np

    started = time.perf_counter()
    logits, cache = model._run(ids, model._empty_cache(len(ids) + DECODE_TOKENS + 1), 0)
    logits[[0, 2]] = -np.inf
    token = int(np.argmax(logits))
    first = time.perf_counter() - started
    past = len(ids)
    started = time.perf_counter()
    for _ in range(DECODE_TOKENS):
        logits, cache = model._run([token], cache, past)
        logits[[0, 2]] = -np.inf
        token, past = int(np.argmax(logits)), past + 1
    return {
        "ttft": first,
        "prefill": len(ids) / first,
        "decode": DECODE_TOKENS / (time.perf_counter() - started),
    }


def grounded_prompt(model) -> list[int]:
    """About 600 tokens: a question with passages of the sample's text as its facts."""
    from thunder_dagster.instruct.tokens import Message

    text = " ".join(sample_texts()["production_plan.txt"].split())
    facts = model.tokenizer.decode(model.tokenizer.encode(text)[:540])
    question = f"Facts:\n{facts}\n\nQuestion: At what temperature are the croissants baked?"
    return model.tokenizer.chat_prompt([Message("user", question)])


def speed(model, gguf: Path, llama: bool) -> None:
    ids = grounded_prompt(model)
    rounds = {"onnxruntime (thunder-dagster)": [], "llama.cpp (llama-cpp-python)": []}
    for _ in range(ROUNDS):
        rounds["onnxruntime (thunder-dagster)"].append(onnx_round(model, ids))
        if llama:
            rounds["llama.cpp (llama-cpp-python)"].append(llama_round(gguf, ids))
    print(
        f"\n1. Speed: {len(ids)} prompt tokens, {DECODE_TOKENS} decoded, {THREADS} threads, "
        f"{ROUNDS} rounds (median, spread)"
    )
    print(f"{'':32} {'prefill tok/s':>20} {'decode tok/s':>20} {'first token s':>20}")
    medians = {}
    for name, measured in rounds.items():
        if not measured:
            print(f"{name:32} not run (--no-llama)")
            continue
        row = []
        for key in ("prefill", "decode", "ttft"):
            values = [m[key] for m in measured]
            medians[(name, key)] = statistics.median(values)
            row.append(f"{statistics.median(values):10.3f} ({max(values) - min(values):6.3f})")
        print(f"{name:32} {row[0]:>20} {row[1]:>20} {row[2]:>20}")
    if llama:
        ours, theirs = "onnxruntime (thunder-dagster)", "llama.cpp (llama-cpp-python)"
        for key in ("prefill", "decode"):
            print(f"ratio {key}: {medians[(ours, key)] / medians[(theirs, key)]:.2f}x llama.cpp")


def quality(model, generator: bool) -> None:
    import numpy as np

    from tests.factories import sentence_encoder
    from thunder_dagster.instruct.answers import answer_from_documents
    from thunder_dagster.instruct.decoding import Sampling
    from thunder_dagster.instruct.grounding import GroundingPolicy, supporting
    from thunder_dagster.instruct.tokens import Message
    from thunder_dagster.retrieval.index import RetrievalIndex, build_index
    from thunder_dagster.retrieval.vectors import chunks_of

    data = json.loads((SAMPLES / "questions.json").read_text())
    texts = sample_texts()
    paragraphs = [p for text in texts.values() for p in re.split(r"\n\s*\n", text)]
    chunks = [c for name, text in texts.items() for c in chunks_of(text, name)]
    work = Path(tempfile.mkdtemp())
    encoder = sentence_encoder(str(work / "encoders"))
    vectors = encoder.encode([chunk.text for chunk in chunks])
    build_index(work / "index", "bakery", encoder.version, chunks, vectors, encoder.encode)
    index = RetrievalIndex(work / "index")
    sampling, policy = Sampling(max_tokens=48), GroundingPolicy()
    arms = {"product": [], "bare base + right paragraph": [], "best sentence alone": []}

    def product(question: str):
        """The product's answer, as a chat agent gives it, with what it was grounded in."""
        vector = encoder.encode([question])[0]
        hits = [hit.chunk for hit in index.search(question, vector, 5)]
        conversation = [Message("user", question)]
        answer = answer_from_documents(
            model, "bakery", conversation, vector, hits, encoder.encode, policy, sampling
        )
        return vector, hits, answer

    for item in data["questions"]:
        question, facts = item["question"], item["facts"]
        vector, hits, answer = product(question)
        arms["product"].append(right(answer.text, facts))
        paragraph = next(p for p in paragraphs if item["paragraph"] in p)
        bare = model.complete(
            model.tokenizer.chat_prompt([Message("user", f"{paragraph}\n\n{question}")]), sampling
        )
        arms["bare base + right paragraph"].append(right(bare.text, facts))
        best = supporting(question, vector, hits, encoder.encode, GroundingPolicy(sentences=1))
        arms["best sentence alone"].append(bool(best) and right(best[0].sentence, facts))
    if generator:
        arms["character-level generator (demo budget, grounded)"] = generator_arm(data, texts)
    refused = 0
    for question in data["off_topic"]:
        _, _, answer = product(question)
        refused += not answer.covered
    print(
        f"\n2. Quality: {len(data['questions'])} questions about the sample agent, greedy, "
        "48 tokens; right = every fact of the question stated"
    )
    for name, scores in arms.items():
        print(f"{name:52} {sum(scores):3d} of {len(scores)}  ({np.mean(scores):.0%})")
    print(f"off-topic questions the product refuses: {refused} of {len(data['off_topic'])}")


def generator_arm(data, texts) -> list[bool]:
    """The generation task's model: `thunder demo` trains the sample agent, then each question
    goes to `thunder generate --grounded` at temperature 0."""
    home = Path(tempfile.mkdtemp()) / "thunder"
    env = {**os.environ, "THUNDER_HOME": str(home), "DAGSTER_HOME": str(home / "dagster")}
    (home / "dagster").mkdir(parents=True)
    thunder = str(Path(sys.executable).parent / "thunder")
    subprocess.run(
        [thunder, "demo", "--trials", "2", "--minutes", "3"],
        env=env,
        check=True,
        capture_output=True,
    )
    scores = []
    for item in data["questions"]:
        out = subprocess.run(
            [
                thunder,
                "generate",
                "sample",
                item["question"],
                "--grounded",
                "--temperature",
                "0",
                "--tokens",
                "120",
            ],
            env=env,
            capture_output=True,
            text=True,
        )
        scores.append(right(out.stdout[len(item["question"]) :], item["facts"]))
    return scores


def memory(agents: int) -> None:
    import httpx
    import psutil

    from tests.factories import free_port, index_agent
    from thunder_dagster.home import Home
    from thunder_dagster.tasks.agents import write_task

    root = Path(tempfile.mkdtemp()) / "thunder"
    home = Home(root)
    env = {**os.environ, "THUNDER_HOME": str(root), "DAGSTER_HOME": str(root / "dagster")}
    os.environ.update({"THUNDER_HOME": str(root)})
    texts = sample_texts()
    for number in range(agents):
        agent = f"chat{number:02d}"
        home.create_agent(agent)
        write_task(home.agent_dir(agent), "chat")
        index_agent(home, agent, texts)
    port = free_port()
    thunder = str(Path(sys.executable).parent / "thunder")
    server = subprocess.Popen(
        [thunder, "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(240):
            try:
                if httpx.get(f"{url}/livez", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        body = {
            "messages": [{"role": "user", "content": "When is the staff meeting?"}],
            "max_tokens": 16,
        }
        for number in range(agents):
            answer = httpx.post(
                f"{url}/v1/chat/completions",
                json=body | {"model": f"chat{number:02d}"},
                timeout=120,
            )
            answer.raise_for_status()
        rss = psutil.Process(server.pid).memory_info().rss
    finally:
        server.terminate()
        server.wait(30)
    print(
        f"\n3. Memory: thunder serve with the base and {agents} chat agents, each asked once: "
        f"{rss / 2**20:.0f} MiB resident (goal: at most 800 MB = 763 MiB)"
    )


def upload_to_answer(bases: Path) -> None:
    import shutil

    import httpx

    from tests.factories import free_port
    from tests.processes import start_daemon, stop_daemon
    from thunder_dagster.home import Home
    from thunder_dagster.tasks.agents import write_task

    root = Path(tempfile.mkdtemp()) / "thunder"
    (root / "dagster").mkdir(parents=True)
    shutil.copyfile(REPO / "dagster.yaml", root / "dagster" / "dagster.yaml")
    env = {
        "THUNDER_HOME": str(root),
        "DAGSTER_HOME": str(root / "dagster"),
        "THUNDER_BASE_CACHE": str(bases),
        "THUNDER_SENSOR_INTERVAL": "2",
    }
    os.environ.update(env)
    port = free_port()
    thunder = str(Path(sys.executable).parent / "thunder")
    server = subprocess.Popen(
        [thunder, "serve", "--port", str(port)],
        env={**os.environ},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    daemon = start_daemon(root / "daemon.log", env)
    url = f"http://127.0.0.1:{port}"
    body = {
        "model": "newdesk",
        "max_tokens": 32,
        "messages": [{"role": "user", "content": "On which day is the staff meeting?"}],
    }
    try:
        time.sleep(20)  # both up and idle: the daemon's sensors ticking, the server listening
        home = Home(root)
        home.create_agent("newdesk")
        write_task(home.agent_dir("newdesk"), "chat")
        landed = time.perf_counter()
        for source in sorted((SAMPLES / "agent").glob("*/*.*")):
            target = home.category_dir("newdesk", source.parent.name) / source.name
            shutil.copyfile(source, target)
        answer, waited = None, 0.0
        while waited < 600:
            try:
                reply = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=60)
                if reply.status_code == 200 and reply.json()["sources"]:
                    answer = reply.json()
                    break
            except httpx.HTTPError:
                pass
            time.sleep(1)
            waited = time.perf_counter() - landed
        seconds = time.perf_counter() - landed
    finally:
        stop_daemon(daemon)
        server.terminate()
        server.wait(30)
    if answer is None:
        print("\n4. Upload to answer: no grounded answer within 600 s")
        return
    print(
        f"\n4. Upload to answer: {seconds:.0f} s from the files landing to a grounded answer "
        f"(goal: 90 s): {answer['choices'][0]['message']['content']!r} "
        f"[{answer['sources'][0]['filename']}]"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--no-llama", action="store_true")
    parser.add_argument("--no-generator", action="store_true")
    parser.add_argument("--agents", type=int, default=20)
    parser.add_argument(
        "--sections", default="speed,quality,memory,upload", help="which parts to run, in order"
    )
    args = parser.parse_args()
    sections = set(args.sections.split(","))
    from thunder_dagster.instruct.base import BaseFile
    from thunder_dagster.instruct.builds import load_base

    print(
        f"bench/answers.py, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
        f"{os.cpu_count()} CPUs"
    )
    if not args.no_llama:
        built = ensure_llama()
        if built is not None:
            print(f"llama-cpp-python {LLAMA_VERSION} built from source in {built / 60:.1f} min")
    bases = Path(tempfile.mkdtemp()) / "bases"
    model, card = load_base(bases, threads=THREADS)
    print(
        f"base: {card.provenance.describe()}; graph {card.model_bytes / 1e6:.0f} MB, "
        f"built and checked in {card.build_seconds:.0f} s"
    )
    if "speed" in sections:
        speed(model, BaseFile().path, not args.no_llama)
    if "quality" in sections:
        quality(model, not args.no_generator)
    if "memory" in sections:
        memory(args.agents)
    if "upload" in sections:
        upload_to_answer(bases)


if __name__ == "__main__":
    main()
