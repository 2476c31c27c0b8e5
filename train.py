"""Train a radiodiff model: ``python train.py model=unet_attn data=lotss`` (Hydra; ``-m`` sweeps).

Thin entry point: Hydra composes ``conf/`` onto the typed configs and saves the resolved
config in the run folder under ``outputs/``; :func:`radiodiff.training.fit.train` does the work.
"""

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from radiodiff.config import register_configs
from radiodiff.training.fit import train

register_configs()


@hydra.main(config_path="conf", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    summary = train(cfg, run_dir=HydraConfig.get().runtime.output_dir)
    print(f"trained {summary['steps']} steps ({summary['images_seen']} images); "
          f"checkpoint {summary['checkpoint']}")


if __name__ == "__main__":
    main()
