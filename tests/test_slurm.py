"""The SLURM launch script, as far as it can be checked without SLURM: its bash parses, and for a given allocation
it builds the accelerate command that the multi-node test runs (machine rank from the node id, the main address
from the first host of the allocation, processes = nodes x GPUs), which accelerate's own parser accepts."""

import os
import shlex
import subprocess

import pytest
from accelerate.commands.launch import launch_command_parser

from tests.conftest import ROOT

SLURM = ROOT / "configs" / "slurm"


@pytest.fixture
def scontrol(tmp_path):
    """A stand-in for `scontrol show hostnames`: the expansion of gpu[07-08] is gpu07, gpu08."""
    fake = tmp_path / "bin" / "scontrol"
    fake.parent.mkdir()
    fake.write_text(
        '#!/usr/bin/env bash\n[ "$1 $2" = "show hostnames" ] && [ "$3" = "gpu[07-08]" ] && printf "gpu07\\ngpu08\\n"\n'
    )
    fake.chmod(0o755)
    return str(fake.parent)


def launch(scontrol: str, node: int, **extra: str) -> subprocess.CompletedProcess:
    env = {
        "PATH": f"{scontrol}:{os.environ['PATH']}",
        "FINETUNE_DRY_RUN": "1",
        "SLURM_JOB_NODELIST": "gpu[07-08]",
        "SLURM_NNODES": "2",
        "SLURM_NODEID": str(node),
        "SLURM_GPUS_ON_NODE": "4(IDX:0-3)",
        **extra,
    }
    return subprocess.run(
        ["bash", str(SLURM / "launch.sh"), "run_ner.py", "configs/ner/conll2003.yaml", "--bf16"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_scripts_are_valid_bash():
    for name in ("launch.sh", "finetune.sbatch"):
        assert subprocess.run(["bash", "-n", str(SLURM / name)], capture_output=True).returncode == 0, name
    assert "srun --kill-on-bad-exit=1 bash configs/slurm/launch.sh" in (SLURM / "finetune.sbatch").read_text()


@pytest.mark.parametrize("node", [0, 1])
def test_each_node_gets_its_rank_and_the_first_host_as_main(scontrol, node):
    proc = launch(scontrol, node)
    assert proc.returncode == 0, proc.stderr
    command = shlex.split(proc.stdout)
    assert command == [
        "accelerate",
        "launch",
        "--multi_gpu",
        "--num_machines",
        "2",
        "--machine_rank",
        str(node),
        "--num_processes",
        "8",
        "--main_process_ip",
        "gpu07",
        "--main_process_port",
        "29500",
        "--rdzv_backend",
        "static",
        "--mixed_precision",
        "no",
        "run_ner.py",
        "configs/ner/conll2003.yaml",
        "--bf16",
    ]
    args = launch_command_parser().parse_args(command[2:])
    assert (args.num_machines, args.machine_rank, args.num_processes, args.main_process_ip) == (2, node, 8, "gpu07")
    assert args.training_script == "run_ner.py" and args.training_script_args == [
        "configs/ner/conll2003.yaml",
        "--bf16",
    ]


def test_gpus_and_port_can_be_set_and_missing_slurm_variables_are_an_error(scontrol):
    command = shlex.split(launch(scontrol, 1, GPUS_PER_NODE="8", MAIN_PROCESS_PORT="29611").stdout)
    assert command[command.index("--num_processes") + 1] == "16"
    assert command[command.index("--main_process_port") + 1] == "29611"
    proc = subprocess.run(
        ["bash", str(SLURM / "launch.sh"), "run_ner.py"],
        env={"PATH": os.environ["PATH"]},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "error: SLURM_JOB_NODELIST is not set: run this through srun inside a SLURM allocation (see finetune.sbatch)."
    )


def test_a_long_host_list_gives_the_first_host_every_time(tmp_path):
    """20,000 hosts overflow the pipe buffer: reading only the first line would kill scontrol with SIGPIPE, which
    pipefail turns into exit 141 (the flake CI once showed with two hosts)."""
    fake = tmp_path / "bin" / "scontrol"
    fake.parent.mkdir()
    fake.write_text('#!/usr/bin/env bash\nfor i in $(seq -w 1 20000); do echo "node$i"; done\n')
    fake.chmod(0o755)
    for _ in range(3):
        proc = launch(str(fake.parent), 0, SLURM_JOB_NODELIST="node[00001-20000]")
        assert proc.returncode == 0, proc.stderr
        command = shlex.split(proc.stdout)
        assert command[command.index("--main_process_ip") + 1] == "node00001"
