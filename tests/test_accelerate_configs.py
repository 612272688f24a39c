"""The shipped Accelerate launch configs parse with Accelerate's own loader and describe what their comments say."""

from pathlib import Path

import pytest
from accelerate.commands.config.config_args import load_config_from_file

CONFIGS = Path(__file__).resolve().parents[1] / "scripts" / "accelerate"


@pytest.mark.parametrize(
    "name, distributed_type, machines",
    [
        ("ddp.yaml", "MULTI_GPU", 1),
        ("ddp-multinode.yaml", "MULTI_GPU", 2),
        ("fsdp.yaml", "FSDP", 1),
        ("cpu-2proc.yaml", "MULTI_GPU", 1),
    ],
)
def test_config_parses(name, distributed_type, machines):
    config = load_config_from_file(str(CONFIGS / name))
    assert config.distributed_type.value == distributed_type
    assert config.num_machines == machines
    # Precision is the run config's (train.mixed_precision); the launcher must not impose another.
    assert config.mixed_precision == "no"
    if distributed_type == "FSDP":
        assert config.fsdp_config["fsdp_transformer_layer_cls_to_wrap"] == "VaswaniEncoderLayer,VaswaniDecoderLayer"
        import vaswani_hf.modeling_vaswani as modeling

        for cls in config.fsdp_config["fsdp_transformer_layer_cls_to_wrap"].split(","):
            assert hasattr(modeling, cls)


def test_the_multinode_template_takes_the_main_address_at_launch():
    """The several-node config ships without an address of anyone's network: each node's `accelerate launch` gives it
    (`--main_process_ip`) with its own `--machine_rank`, as the file's comment says, and the launcher merges both with
    the file."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser

    path = CONFIGS / "ddp-multinode.yaml"
    assert load_config_from_file(str(path)).main_process_ip is None
    assert "--main_process_ip $MAIN_IP --machine_rank $RANK" in path.read_text()
    argv = ["--config_file", str(path), "--main_process_ip", "192.0.2.1", "--machine_rank", "1"]
    args, _, _ = _validate_launch_command(launch_command_parser().parse_args([*argv, "-m", "vaswani_hf.cli.train"]))
    assert (args.main_process_ip, args.machine_rank, args.num_machines, args.multi_gpu) == ("192.0.2.1", 1, 2, True)
