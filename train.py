"""Train a radiodiff model: ``python train.py model=unet_attn data=lotss`` (Hydra; ``-m`` sweeps).

Thin entry point: Hydra composes ``conf/`` onto the typed configs, the run folder under
``outputs/`` gets the resolved config, and the library does the work.
"""

import sys

import hydra
from omegaconf import DictConfig

from radiodiff.config import register_configs

register_configs()


@hydra.main(config_path="conf", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    try:
        from radiodiff.train import train  # arrives with the diffusion-core issue (#3)
    except ImportError:
        sys.exit("radiodiff: training is not implemented yet (diffusion-core issue #3); "
                 "`radiodiff prepare` and the DataModule are ready.")
    train(cfg)


if __name__ == "__main__":
    main()
