"""Every real-model path of the `mlalign` CLI once on a CUDA GPU, and `mlalign eval` against plain `lm_eval` there.

On a random-weight Qwen2.5-0.5B-shaped model with mlalign's tiny tokenizer (bench/random_model.py), as a user runs
them: ``mlalign train`` with the 12 GB recipe (NF4, paged 8-bit AdamW, gradient checkpointing), killed (SIGKILL)
after its first checkpoint and rerun to resume; ``mlalign eval --load-in-4bit --peft``; ``mlalign analyze
logit-lens`` and ``pca`` with ``--load-in-4bit``; ``mlalign merge``, a bf16 PCA of the merged model and one in 4 bits
under the papers' preset (``--nf4-preset paper``); the whole study with the recipe (``mlalign run --recipe ...
--load-in-4bit``). Each command's exit code, seconds, checks and the end of its output go to ``--json`` as soon as
it ends (full logs in ``--work``/logs).

``--section eval-speed``: ``mlalign eval --label-scoring label`` and ``lm_eval --model hf`` on the same bf16 model,
tasks, limit, batch size and generation budget, alternated (A B A B); wall seconds, lm-eval's own evaluation
seconds and generated tokens per second of each.

``--smoke`` runs the same commands on the CPU (tiny Qwen2 shape, the cpu-smoke recipe, no 4-bit): the tests use it.
Needs the data (MLALIGN_DATA_DIR, or the cache) for German and English.

Usage: python bench/gpu_cli_check.py --work DIR --json PATH [--section cli|eval-speed] [--smoke]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from mlalign_tasks.files.atomic import write_json_atomic

BIN = Path(sys.executable).parent
TAIL = 1500  # characters of a failed command's output kept in the JSON


class Recorder:
    """Runs commands with a log file each and writes every result to the JSON file at once."""

    def __init__(self, work: Path, json_path: Path, header: dict) -> None:
        self.logs = work / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.json_path = json_path
        self.doc = {**header, "steps": []}
        self.save()

    def save(self) -> None:
        write_json_atomic(self.json_path, self.doc)

    def command(self, name: str, argv: list[str], timeout: float, check=None, env=None) -> dict:
        """Run `argv`; record rc, seconds, the check's findings (a dict, or an exception's text)."""
        log = self.logs / f"{name}.log"
        start = time.perf_counter()
        with log.open("w") as f:
            try:
                rc = subprocess.run(argv, stdout=f, stderr=subprocess.STDOUT, timeout=timeout, env=env).returncode
            except subprocess.TimeoutExpired:
                rc = "timeout"
        return self.record(name, argv, rc, time.perf_counter() - start, check)

    def record(self, name: str, argv: list[str], rc, seconds: float, check=None) -> dict:
        log = self.logs / f"{name}.log"
        step = {"step": name, "command": " ".join(str(a) for a in argv), "rc": rc, "seconds": round(seconds, 1)}
        if rc == 0 and check is not None:
            try:
                step["checks"] = check()
                step["ok"] = True
            except Exception as e:  # a failed check is a finding to report, not a crash of the whole run
                step["ok"], step["error"] = False, f"{type(e).__name__}: {e}"
        else:
            step["ok"] = rc == 0
        if not step["ok"]:
            step["output_tail"] = log.read_text(errors="replace")[-TAIL:] if log.exists() else ""
        self.doc["steps"].append(step)
        self.save()
        print(f"{name:22s} rc={rc!s:8s} {step['seconds']:7.1f}s {'ok' if step['ok'] else 'FAILED'}", flush=True)
        return step


def tool(name: str, module: str) -> list[str]:
    """A console script beside this Python or on PATH, else ``python -m module`` (e.g. after pip --target)."""
    found = str(BIN / name) if (BIN / name).exists() else shutil.which(name)
    return [found] if found else [sys.executable, "-m", module]


def mlalign(*args: str) -> list[str]:
    return [*tool("mlalign", "mlalign_tasks.cli"), *args]


def read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def results_file(folder: Path) -> Path:
    found = sorted(folder.glob("*/results_*.json"))
    if len(found) != 1:
        raise AssertionError(f"expected one results file under {folder}, found {len(found)}")
    return found[0]


def kill_after_checkpoint(rec: Recorder, name: str, argv: list[str], checkpoint: Path, timeout: float) -> dict:
    """Start `argv`, SIGKILL it once `checkpoint` is complete (trainer_state.json written), record it."""
    log = rec.logs / f"{name}.log"
    start = time.perf_counter()
    with log.open("w") as f:
        proc = subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
        while proc.poll() is None and time.perf_counter() - start < timeout:
            if (checkpoint / "trainer_state.json").is_file():
                os.killpg(proc.pid, signal.SIGKILL)
                break
            time.sleep(0.2)
        else:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
        rc = proc.wait()
    killed = rc == -signal.SIGKILL and (checkpoint / "trainer_state.json").is_file()
    seconds = time.perf_counter() - start
    return rec.record(name, argv, 0 if killed else rc, seconds, lambda: {"killed_at": checkpoint.name})


def cli_section(rec: Recorder, work: Path, smoke: bool) -> None:
    model = work / "model"
    adapter = work / "adapter"
    recipe = "cpu-smoke" if smoke else "qwen2.5-1.5b-12gb"
    four_bit = [] if smoke else ["--load-in-4bit"]
    batch = "4" if smoke else "auto"
    shape = "tiny-qwen2" if smoke else "qwen2.5-0.5b"
    argv = [sys.executable, str(Path(__file__).with_name("random_model.py")), shape, str(model)]
    rec.command("model", argv, 300, check=lambda: {"config": {k: read_json(model / "config.json")[k]
                                                              for k in ("model_type", "num_hidden_layers")}})  # fmt: skip

    train = mlalign(
        "train", "--config", recipe, "--model_name_or_path", str(model), "--languages", "de",
        "--examples_per_language", "64", "--max_steps", "6", "--save_steps", "3", "--logging_steps", "1",
        "--output_dir", str(adapter), "--report_to", "none",
    )  # fmt: skip
    kill_after_checkpoint(rec, "train-killed", train, adapter / "checkpoint-3", 300)

    def trained() -> dict:
        meta = read_json(adapter / "mlalign_training.json")
        if meta.get("resumed_from") != "checkpoint-3" or meta.get("global_step") != 6:
            raise AssertionError(f"expected a resume from checkpoint-3 to step 6, got {meta}")
        hp = meta["hyperparameters"] if "hyperparameters" in meta else meta.get("settings", {}).get("hyperparameters")
        return {k: meta.get(k) for k in ("resumed_from", "global_step", "final_loss")} | {"hyperparameters": hp}

    rec.command("train-resumed", train, 300, check=trained)

    def evaluated(folder: Path) -> dict:
        results = read_json(results_file(folder))
        scores = {t: {k: v for k, v in r.items() if "stderr" not in k and isinstance(v, float)}
                  for t, r in results["results"].items()}  # fmt: skip
        return {"scores": scores, "batch_size": results["config"].get("batch_size"),
                "batch_sizes": results["config"].get("batch_sizes"), "mlalign": results.get("mlalign")}  # fmt: skip

    argv = mlalign("eval", "-m", str(model), *four_bit, "--peft", str(adapter), "--tasks",
                   "mgsm_aligned:de,paper_aligned:de", "--limit", "4", "--batch-size", batch,
                   "--gen-kwargs", "max_gen_toks=64", "--out", str(work / "eval"))  # fmt: skip
    rec.command("eval-4bit-peft", argv, 300, check=lambda: evaluated(work / "eval"))
    argv = mlalign("analyze", "logit-lens", "--model", str(model), "--peft", str(adapter), "--task", "sentiment",
                   "--langs", "de", "--limit", "4", *four_bit, "--out", str(work / "lens"))  # fmt: skip
    rec.command("logit-lens-4bit", argv, 300, check=lambda: files(work / "lens"))
    argv = mlalign("analyze", "pca", "--model", str(model), "--peft", str(adapter), "--langs", "de", "--limit", "8",
                   *four_bit, "--out", str(work / "pca"))  # fmt: skip
    rec.command("pca-4bit", argv, 300, check=lambda: files(work / "pca"))
    argv = mlalign("merge", "--peft", str(adapter), "--out", str(work / "merged"), "--dtype", "bfloat16")
    rec.command("merge", argv, 300, check=lambda: files(work / "merged"))
    argv = mlalign("analyze", "pca", "--model", str(work / "merged"), "--langs", "de", "--limit", "8",
                   "--out", str(work / "pca-merged"))  # fmt: skip
    rec.command("pca-merged-bf16", argv, 300, check=lambda: files(work / "pca-merged"))
    if four_bit:  # the papers' NF4 preset: no double quantisation, fp16 compute, on the merged model
        argv = mlalign("analyze", "pca", "--model", str(work / "merged"), "--langs", "de", "--limit", "8",
                       *four_bit, "--nf4-preset", "paper", "--out", str(work / "pca-paper-nf4"))  # fmt: skip
        rec.command("pca-4bit-paper-preset", argv, 300, check=lambda: files(work / "pca-paper-nf4"))
    argv = mlalign("run", "--recipe", recipe, "--model", str(model), "--langs", "de", "--examples-per-language", "32",
                   "--train-flag=--max_steps=4", "--tasks", "mgsm_aligned:de,paper_aligned:de", "--limit", "4",
                   "--max-gen-toks", "32", "--batch-size", batch, *four_bit, "--analysis-limit", "4",
                   "--out", str(work / "study"), "--board", str(work / "board"))  # fmt: skip
    rec.command("run-recipe", argv, 600, check=lambda: files(work / "board"))


def files(folder: Path) -> dict:
    """The names of the files a command wrote into `folder`."""
    return {"files": sorted(p.name for p in folder.iterdir())}


def count_generated(samples: Path, tokenizer) -> int:
    """Tokens generated in a samples file (the raw responses, re-tokenised)."""
    total = 0
    for line in samples.read_text(encoding="utf-8").splitlines():
        for resp in json.loads(line)["resps"]:
            total += sum(len(tokenizer(r, add_special_tokens=False)["input_ids"]) for r in resp if isinstance(r, str))
    return total


def eval_speed_section(rec: Recorder, work: Path, smoke: bool, repeats: int) -> None:
    from transformers import AutoTokenizer

    from mlalign_tasks.pipeline.evaluate import tasks_dir

    model = work / "model"
    if not (model / "config.json").is_file():
        shape = "tiny-qwen2" if smoke else "qwen2.5-0.5b"
        rec.command("model", [sys.executable, str(Path(__file__).with_name("random_model.py")), shape, str(model)], 300)
    tokenizer = AutoTokenizer.from_pretrained(model)
    limit, batch, toks = ("4", "4", "16") if smoke else ("32", "16", "128")
    device = ["--device", "cpu"] if smoke else []

    def measured(folder: Path) -> dict:
        results_path = results_file(folder)
        results = read_json(results_path)
        samples = sorted(results_path.parent.glob("samples_mgsm_aligned_de_*.jsonl"))
        generated = count_generated(samples[0], tokenizer)
        seconds = float(results["total_evaluation_time_seconds"])
        return {"eval_seconds": round(seconds, 2), "generated_tokens": generated,
                "scores": {t: r.get("acc,none", r.get("exact_match,last_number")) for t, r in results["results"].items()}}  # fmt: skip

    runs = []
    for i in range(repeats):
        out = work / f"speed-mlalign-{i}"
        a = rec.command(
            f"speed-mlalign-{i}",
            mlalign("eval", "-m", str(model), "--tasks", "mgsm_aligned:de,paper_aligned:de", "--limit", limit,
                    "--batch-size", batch, "--gen-kwargs", f"max_gen_toks={toks}", *device, "--out", str(out),
                    "--label-scoring", "label"),  # plain lm_eval's scoring, so the scores must agree
            300, check=lambda out=out: measured(out),
        )  # fmt: skip
        out = work / f"speed-lmeval-{i}"
        tasks = ",".join(f"{f}_aligned_de" for f in ("mgsm", "snli", "paws", "sentiment"))
        b = rec.command(
            f"speed-lmeval-{i}",
            [*tool("lm_eval", "lm_eval"), "--model", "hf", "--model_args", f"pretrained={model}", "--tasks", tasks,
             "--include_path", str(tasks_dir()), "--limit", limit, "--batch_size", batch, "--gen_kwargs",
             f"max_gen_toks={toks}", "--device", "cpu" if smoke else "cuda", "--output_path", str(out),
             "--log_samples"],
            300, check=lambda out=out: measured(out),
        )  # fmt: skip
        runs.append((a, b))
    ok = [(a, b) for a, b in runs if a["ok"] and b["ok"]]
    if ok:
        best = {k: min(s["seconds"] for s in side) for k, side in (("mlalign", [a for a, _ in ok]), ("lm_eval", [b for _, b in ok]))}  # fmt: skip
        a, b = ok[-1]
        rec.doc["eval_speed"] = {
            "limit": int(limit), "batch_size": int(batch), "max_gen_toks": int(toks), "repeats": len(ok),
            "wall_s_best": best, "wall_ratio_mlalign_over_lm_eval": round(best["mlalign"] / best["lm_eval"], 3),
            "eval_s": {"mlalign": a["checks"]["eval_seconds"], "lm_eval": b["checks"]["eval_seconds"]},
            "generated_tokens": {"mlalign": a["checks"]["generated_tokens"], "lm_eval": b["checks"]["generated_tokens"]},
            "generated_tokens_per_eval_s": {
                "mlalign": round(a["checks"]["generated_tokens"] / a["checks"]["eval_seconds"], 1),
                "lm_eval": round(b["checks"]["generated_tokens"] / b["checks"]["eval_seconds"], 1),
            },
            "same_scores": a["checks"]["scores"] == b["checks"]["scores"],
        }  # fmt: skip
        rec.save()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", type=Path, required=True, help="Scratch folder (model, adapters, logs).")
    p.add_argument("--json", type=Path, required=True)
    p.add_argument("--section", choices=("cli", "eval-speed"), default="cli")
    p.add_argument("--repeats", type=int, default=2, help="eval-speed: A/B pairs.")
    p.add_argument("--smoke", action="store_true", help="On the CPU: tiny shape, cpu-smoke recipe, no 4-bit.")
    a = p.parse_args()
    import torch

    if not a.smoke and not torch.cuda.is_available():
        sys.exit("gpu_cli_check.py needs a CUDA GPU; --smoke runs the same commands on the CPU")
    if a.section == "cli" and a.work.exists():
        shutil.rmtree(a.work)  # a scratch folder: every run starts from nothing
    a.work.mkdir(parents=True, exist_ok=True)
    device = torch.cuda.get_device_name() if torch.cuda.is_available() and not a.smoke else "cpu"
    rec = Recorder(a.work, a.json, {"section": a.section, "device": device, "smoke": a.smoke})
    if a.section == "cli":
        cli_section(rec, a.work, a.smoke)
    else:
        eval_speed_section(rec, a.work, a.smoke, a.repeats)
    failed = [s["step"] for s in rec.doc["steps"] if not s["ok"]]
    print(
        f"{len(rec.doc['steps']) - len(failed)} of {len(rec.doc['steps'])} steps ok",
        f"failed: {failed}" if failed else "",
    )
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
