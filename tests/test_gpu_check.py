"""benchmarks/gpu_check.sh is ready for a GPU machine: its bash parses, and the runs it plans launch the configs and
flags that exist (checked by accelerate's and our own parsers, without a GPU)."""

import shlex
import subprocess
import sys

from accelerate.commands.launch import launch_command_parser

from tests.conftest import ROOT
from utils.core.arguments import ModelArguments
from utils.core.parsing import parse_args
from utils.tasks.ner.arguments import NerDataArguments
from utils.training.arguments import FinetuneTrainingArguments


def test_gpu_check_plans_valid_runs(tmp_path):
    assert subprocess.run(["bash", "-n", str(ROOT / "benchmarks" / "gpu_check.sh")]).returncode == 0
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--dry_run"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert [line.split(":")[0] for line in lines] == [
        "minilm-single_gpu-packed",
        "minilm-single_gpu-buckets",
        "minilm-fsdp_one_gpu-packed",
        "bert_base_sized-single_gpu-packed",
        "bert_base_sized-single_gpu-buckets",
    ]
    for line in lines:
        command = shlex.split(line.split(": ", 1)[1])
        launch = launch_command_parser().parse_args(command[2:])
        assert (ROOT / "configs" / "accelerate").joinpath(launch.config_file).is_file()
        script_args = list(launch.training_script_args)
        script_args[script_args.index("--output_dir") + 1] = str(tmp_path / "out")
        types = (ModelArguments, NerDataArguments, FinetuneTrainingArguments)
        (_, _, training), _ = parse_args(types, [a for a in script_args if a != "--bf16"])  # bf16 needs the GPU
        assert training.max_steps == 60 and training.save_strategy == "no"
