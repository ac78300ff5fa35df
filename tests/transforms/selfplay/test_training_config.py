from pathlib import Path

from training.config import load_config

CONFIG = Path(__file__).resolve().parents[3] / "training" / "configs" / "self_play.yaml"


def test_self_play_config_loads_with_the_references_settings():
    config = load_config(CONFIG)
    assert (config.optimizer.name, config.optimizer.lr, config.optimizer.weight_decay) == ("adamw_torch", 5e-6, 0.0)
    assert (config.lr_scheduler, config.warmup_steps, config.max_grad_norm) == ("constant_with_warmup", 10, 1.0)
    assert (config.max_length, config.global_batch_size, config.per_device_batch_size) == (1024, 4, 4)
    assert config.accumulation_steps(world_size=1) == 1 and config.gradient_checkpointing and config.seed == 42
    assert [s.name for s in config.stages] == [f"epoch_{i}" for i in range(1, 11)]
    assert all(s.epochs == 1 and s.init_from is None for s in config.stages)


def test_its_optimizer_and_scheduler_names_are_ones_transformers_accepts():
    from transformers import SchedulerType
    from transformers.training_args import OptimizerNames

    config = load_config(CONFIG)
    assert OptimizerNames(config.optimizer.name) and SchedulerType(config.lr_scheduler)
