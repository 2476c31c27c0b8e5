"""The network ``F(x_in, c_noise, cond)``: a conditional U-Net that knows nothing about sigma.

Layout after the DDPM++ / ADM U-Nets in NVlabs/edm ``training/networks.py`` (``SongUNet``,
``DhariwalUNet``): residual blocks with GroupNorm + SiLU + 3x3 conv and a per-block
scale/shift from the embedding, self-attention at chosen feature-map sides or at levels
counted from the lowest (:func:`attention_sides`), stride-2 conv down-sampling, nearest +
conv up-sampling, one skip per encoder output concatenated in the decoder,
zero-initialised output conv (an untrained ``F`` is 0, so ``D = c_skip x``).

Conditioning is summed into the noise-level embedding (ADM style). The training loop
expresses classifier-free-guidance dropout as *null* values, which the network maps to
learned null embeddings: ``cond["label"] == -1`` (null class token) and ``NaN`` for a
continuous scalar (a learned null vector per scalar). A missing key or ``cond=None`` is
null for every sample. :func:`drop_conditions` applies that dropout.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["UNet", "attention_sides", "build_unet", "drop_conditions",
           "sinusoidal_embedding"]


def sinusoidal_embedding(x: Tensor, num_channels: int, max_freq: float = 1.0,
                         min_freq: float = 1e-4) -> Tensor:
    """``[cos(w_k x), sin(w_k x)]`` with angular frequencies ``w_k`` geometric in [min, max].

    EDM ``PositionalEmbedding`` (endpoint=True) with the default frequencies. Computed in
    float32 whatever the input dtype.

    Parameters
    ----------
    x : torch.Tensor
        Shape (N,).
    num_channels : int
        Even number of output features.

    Returns
    -------
    torch.Tensor
        Shape (N, num_channels), float32.
    """
    half = num_channels // 2
    k = torch.arange(half, dtype=torch.float32, device=x.device) / max(half - 1, 1)
    freqs = max_freq * (min_freq / max_freq) ** k                             # (half,)
    arg = x.float()[:, None] * freqs[None, :]                                 # (N, half)
    return torch.cat([arg.cos(), arg.sin()], dim=1)


def _groups(channels: int, max_groups: int = 32, min_per_group: int = 4) -> int:
    """Largest group count <= 32 dividing ``channels`` with >= 4 channels per group."""
    g = max(1, min(max_groups, channels // min_per_group))
    while channels % g:
        g -= 1
    return g


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(_groups(channels), channels, eps=1e-6)


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv, embedding scale/shift, GroupNorm-SiLU-dropout-conv, + skip."""

    def __init__(self, in_ch: int, out_ch: int, emb_dim: int, dropout: float) -> None:
        super().__init__()
        self.norm0 = _norm(in_ch)
        self.conv0 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.affine = nn.Linear(emb_dim, 2 * out_ch)
        self.norm1 = _norm(out_ch)
        self.dropout = nn.Dropout(dropout)
        self.conv1 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.skip = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.conv0(F.silu(self.norm0(x)))                                 # (N,out,H,W)
        scale, shift = self.affine(emb)[:, :, None, None].chunk(2, dim=1)     # (N,out,1,1)
        h = F.silu(torch.addcmul(shift, self.norm1(h), scale + 1))
        h = self.conv1(self.dropout(h))
        return (h + self.skip(x)) * math.sqrt(0.5)  # keeps the variance (EDM skip_scale)


class AttnBlock(nn.Module):
    """Multi-head self-attention over the H*W positions of one feature map, + skip."""

    def __init__(self, channels: int, num_heads: int, resolution: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.resolution = resolution  # feature-map side it runs at (for inspection/tests)
        self.norm = _norm(channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        n, c, h, w = x.shape
        qkv = self.qkv(self.norm(x)).reshape(n, 3, self.num_heads, c // self.num_heads, h * w)
        q, k, v = qkv.transpose(-1, -2).unbind(1)                             # (N,heads,HW,d)
        a = F.scaled_dot_product_attention(q, k, v)                           # (N,heads,HW,d)
        a = a.transpose(-1, -2).reshape(n, c, h, w)
        return (x + self.proj(a)) * math.sqrt(0.5)


class Level(nn.Module):
    """One U-Net stage: a residual block, optionally followed by attention."""

    def __init__(self, in_ch: int, out_ch: int, emb_dim: int, dropout: float,
                 attn: bool, num_heads: int, resolution: int) -> None:
        super().__init__()
        self.res = ResBlock(in_ch, out_ch, emb_dim, dropout)
        self.attn = AttnBlock(out_ch, num_heads, resolution) if attn else None

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        x = self.res(x, emb)
        return self.attn(x) if self.attn is not None else x


class UNet(nn.Module):
    """Conditional U-Net ``F(x, c_noise, cond)``; input and output shape (N, C, H, W).

    Parameters
    ----------
    img_resolution : int
        Side H = W of the images in pixels; divisible by ``2**(len(channel_mult) - 1)``.
    in_channels : int
        Image channels C (1 for radio intensity); the output has the same number.
    model_channels : int
        Channels at the first level; level i has ``model_channels * channel_mult[i]``.
    channel_mult : sequence of int
        One multiplier per level; each level after the first halves the side.
    num_blocks : int
        Residual blocks per encoder level (the decoder has one more, for the extra skip).
    attn_resolutions : sequence of int
        Where self-attention follows each residual block. An entry >= 1 is a feature-map
        side in pixels and must be one the U-Net reaches; an entry <= -1 counts levels up
        from the lowest, as a Python index: -1 is the lowest side, -2 the one above, so a
        preset means the same at any image size (see :func:`attention_sides`). The middle
        block has attention when the lowest side is chosen.
    dropout : float
        Dropout probability inside the residual blocks, in [0, 1).
    num_heads : int
        Attention heads; must divide the channel count at every attention level.
    emb_mult : int
        Embedding width = ``emb_mult * model_channels``.
    num_classes : int
        Number of class labels; 0 = no class conditioning.
    scalar_conditions : sequence of str
        Names of continuous conditions (already normalised to ~zero mean, unit std).
    """

    def __init__(self, img_resolution: int, in_channels: int = 1, model_channels: int = 64,
                 channel_mult: Sequence[int] = (1, 2, 2), num_blocks: int = 2,
                 attn_resolutions: Sequence[int] = (20,), dropout: float = 0.0,
                 num_heads: int = 1, emb_mult: int = 4, num_classes: int = 0,
                 scalar_conditions: Sequence[str] = ()) -> None:
        super().__init__()
        channel_mult = [int(m) for m in channel_mult]
        attn_resolutions = [int(r) for r in attn_resolutions]
        scalar_conditions = [str(s) for s in scalar_conditions]
        _validate(img_resolution, in_channels, model_channels, channel_mult, num_blocks,
                  attn_resolutions, dropout, num_heads, emb_mult, num_classes,
                  scalar_conditions)
        self.config = dict(
            img_resolution=int(img_resolution), in_channels=int(in_channels),
            model_channels=int(model_channels), channel_mult=channel_mult,
            num_blocks=int(num_blocks), attn_resolutions=attn_resolutions,
            dropout=float(dropout), num_heads=int(num_heads), emb_mult=int(emb_mult),
            num_classes=int(num_classes), scalar_conditions=scalar_conditions)
        self.img_resolution = img_resolution
        self.model_channels = model_channels
        self.num_classes = num_classes
        self.scalar_conditions = tuple(scalar_conditions)
        emb_dim = emb_mult * model_channels
        self.attn_sides = attention_sides(img_resolution, len(channel_mult), attn_resolutions)
        attn = set(self.attn_sides)
        sides = [img_resolution >> i for i in range(len(channel_mult))]
        widths = [model_channels * mult for mult in channel_mult]

        def level(in_ch: int, out_ch: int, side: int) -> Level:
            """A stage at feature-map ``side``, with attention where that side is chosen."""
            return Level(in_ch, out_ch, emb_dim, dropout, side in attn, num_heads, side)

        # Noise-level embedding: sinusoid of c_noise -> 2-layer MLP (EDM map_layer0/1).
        self.map_noise = nn.Sequential(nn.Linear(model_channels, emb_dim), nn.SiLU(),
                                       nn.Linear(emb_dim, emb_dim))
        # Class label: index num_classes is the learned null token (label -1).
        self.map_label = nn.Embedding(num_classes + 1, emb_dim) if num_classes > 0 else None
        # Continuous scalars: Fourier features -> linear; NaN -> a learned null vector.
        self.map_scalar = nn.ModuleDict({s: nn.Linear(model_channels, emb_dim)
                                         for s in scalar_conditions})
        self.scalar_null = nn.ParameterDict({s: nn.Parameter(torch.randn(emb_dim) * 0.1)
                                             for s in scalar_conditions})

        # Encoder; `skips` holds the channel count of every tensor pushed for the decoder.
        self.conv_in = nn.Conv2d(in_channels, model_channels, 3, padding=1)
        self.down, skips = _encoder(model_channels, widths, sides, num_blocks, level)
        ch, low = skips[-1], sides[-1]
        self.mid = nn.ModuleList([level(ch, ch, low),
                                  Level(ch, ch, emb_dim, dropout, False, num_heads, low)])
        self.up, ch = _decoder(skips, widths, sides, num_blocks, level)
        self.norm_out = _norm(ch)
        self.conv_out = nn.Conv2d(ch, in_channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)  # untrained F == 0 (EDM init_weight=0 on out)
        nn.init.zeros_(self.conv_out.bias)

    def embed(self, c_noise: Tensor, cond: Optional[Mapping[str, Any]], n: int) -> Tensor:
        """The block embedding (N, emb_dim) from the noise level and the conditions."""
        cond = {} if cond is None else cond
        unknown = set(cond) - {"label", *self.scalar_conditions}
        if "label" in cond and self.map_label is None:
            unknown.add("label")
        if unknown:
            expected = (["label"] if self.map_label is not None else []) \
                + list(self.scalar_conditions)
            raise ValueError(f"UNet got unknown condition(s) {sorted(unknown)}; this network "
                             f"takes {expected or 'no conditions'}")
        device = c_noise.device
        emb = self.map_noise(sinusoidal_embedding(c_noise.reshape(n), self.model_channels))
        if self.map_label is not None:
            label = cond.get("label")
            label = (torch.full((n,), -1, dtype=torch.long, device=device) if label is None
                     else torch.as_tensor(label, device=device).long().reshape(n))
            if bool(((label < -1) | (label >= self.num_classes)).any()):
                raise ValueError(f"labels must be in [-1, {self.num_classes - 1}] "
                                 f"(-1 = null), got {label.tolist()}")
            idx = torch.where(label < 0, self.num_classes, label)
            emb = emb + self.map_label(idx).to(emb.dtype)
        for name in self.scalar_conditions:
            v = cond.get(name)
            v = (torch.full((n,), math.nan, device=device) if v is None
                 else torch.as_tensor(v, device=device).float().reshape(n))
            null = torch.isnan(v)[:, None]                                    # (N,1)
            # Angular frequencies 0.1-10 per std: from ~linear to sub-std detail.
            e = self.map_scalar[name](sinusoidal_embedding(
                torch.where(null[:, 0], 0.0, v), self.model_channels, 10.0, 0.1))
            emb = emb + torch.where(null, self.scalar_null[name].to(e.dtype), e).to(emb.dtype)
        return F.silu(emb)

    def forward(self, x: Tensor, c_noise: Tensor, cond: Optional[Mapping[str, Any]] = None
                ) -> Tensor:
        """``F(x, c_noise, cond)``.

        Parameters
        ----------
        x : torch.Tensor
            Network input ``c_in * x_noisy``, shape (N, C, H, W).
        c_noise : torch.Tensor
            Noise-level input ``ln(sigma) / 4``, shape (N,) (or a scalar).
        cond : dict or None
            ``"label"``: LongTensor (N,), -1 = null; each scalar name: float tensor (N,) of
            normalised values, NaN = null. Missing keys or None = null for every sample.

        Returns
        -------
        torch.Tensor
            Shape (N, C, H, W), dtype of ``x``.
        """
        n = x.shape[0]
        c_noise = torch.as_tensor(c_noise, device=x.device).reshape(-1).expand(n)  # (N,)
        emb = self.embed(c_noise, cond, n).to(x.dtype)                      # (N, emb_dim)
        h = self.conv_in(x)                                                  # (N, ch, H, W)
        skips = [h]
        for layer in self.down:
            h = layer(h, emb) if isinstance(layer, Level) else layer(h)
            skips.append(h)
        for layer in self.mid:                                               # lowest side
            h = layer(h, emb)
        for layer in self.up:
            if isinstance(layer, Level):
                h = layer(torch.cat([h, skips.pop().to(h.dtype)], dim=1), emb)
            else:
                h = layer(h)                                                 # side * 2
        out = self.conv_out(F.silu(self.norm_out(h)))                        # (N, C, H, W)
        return out.to(x.dtype)


def _encoder(ch: int, widths: list[int], sides: list[int], num_blocks: int,
             level: Callable[[int, int, int], Level]) -> tuple[nn.ModuleList, list[int]]:
    """Encoder from ``ch`` channels: per level a stride-2 down-sampling conv (after the
    first) and ``num_blocks`` stages ``level(in_ch, out_ch, side)``. Also returns the
    channel count of every tensor pushed for the decoder, the input's first."""
    down = nn.ModuleList()
    skips = [ch]
    for i, (width, side) in enumerate(zip(widths, sides)):
        if i > 0:
            down.append(nn.Conv2d(ch, ch, 3, stride=2, padding=1))          # side*2 -> side
            skips.append(ch)
        for _ in range(num_blocks):
            down.append(level(ch, width, side))
            ch = width
            skips.append(ch)
    return down, skips


def _decoder(skips: list[int], widths: list[int], sides: list[int], num_blocks: int,
             level: Callable[[int, int, int], Level]) -> tuple[nn.ModuleList, int]:
    """Decoder from the lowest level up: ``num_blocks + 1`` stages per level, each eating
    one skip of :func:`_encoder`'s ``skips``, then nearest + conv up-sampling (except
    after the top level). Also returns its output channel count."""
    up = nn.ModuleList()
    skips = list(skips)
    ch = skips[-1]  # the middle blocks keep the lowest encoder output's channels
    for i in reversed(range(len(widths))):
        for _ in range(num_blocks + 1):
            up.append(level(ch + skips.pop(), widths[i], sides[i]))
            ch = widths[i]
        if i > 0:
            up.append(nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"),
                                    nn.Conv2d(ch, ch, 3, padding=1)))
    return up, ch


def _validate(img_resolution: int, in_channels: int, model_channels: int,
              channel_mult: list[int], num_blocks: int, attn_resolutions: list[int],
              dropout: float, num_heads: int, emb_mult: int, num_classes: int,
              scalar_conditions: list[str]) -> None:
    """Clear errors for impossible U-Net hyper-parameters."""
    if not channel_mult:
        raise ValueError("channel_mult must list at least one level multiplier, got []")
    if any(m < 1 for m in channel_mult):
        raise ValueError(f"channel_mult entries must be >= 1, got {channel_mult}")
    for name, value in (("img_resolution", img_resolution), ("in_channels", in_channels),
                        ("model_channels", model_channels), ("num_blocks", num_blocks),
                        ("num_heads", num_heads), ("emb_mult", emb_mult)):
        if int(value) < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    if model_channels % 2:
        raise ValueError(f"model_channels must be even (sinusoidal embedding), "
                         f"got {model_channels}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")
    if num_classes < 0:
        raise ValueError(f"num_classes must be >= 0, got {num_classes}")
    if "label" in scalar_conditions or len(set(scalar_conditions)) != len(scalar_conditions):
        raise ValueError(f"scalar_conditions must be distinct names other than 'label', "
                         f"got {scalar_conditions}")
    factor = 2 ** (len(channel_mult) - 1)
    if img_resolution % factor:
        raise ValueError(f"img_resolution {img_resolution} is not divisible by {factor}, "
                         f"needed for {len(channel_mult)} levels (channel_mult {channel_mult})")
    sides = [img_resolution >> i for i in range(len(channel_mult))]
    try:
        attn = attention_sides(img_resolution, len(channel_mult), attn_resolutions)
    except ValueError as exc:
        raise ValueError(f"{exc} (channel_mult {channel_mult})") from None
    for side, mult in zip(sides, channel_mult):
        if side in attn and (model_channels * mult) % num_heads:
            raise ValueError(f"num_heads {num_heads} does not divide the "
                             f"{model_channels * mult} channels at side {side}")


def attention_sides(img_resolution: int, num_levels: int,
                    attn_resolutions: Sequence[int]) -> list[int]:
    """Feature-map sides with self-attention, from sides (>= 1) and levels from the bottom.

    The sides of a U-Net with ``num_levels`` levels are ``img_resolution >> i``. An entry
    >= 1 names a side in pixels (what released configs record, e.g. ``[20]`` at 80 px);
    an entry <= -1 names a level counted from the lowest, as a Python index (``-1``: the
    lowest side, 20 at 80 px and 4 at 16 px with three levels). Presets use levels so
    that they fit every image size.

    Parameters
    ----------
    img_resolution : int
        Image side in pixels.
    num_levels : int
        Number of U-Net levels (``len(channel_mult)``).
    attn_resolutions : sequence of int
        Sides (>= 1) and/or levels from the bottom (<= -1); empty = no attention.

    Returns
    -------
    list of int
        The distinct sides, largest first.

    Raises
    ------
    ValueError
        For a 0, a side the U-Net does not reach or a level it does not have; the message
        names the sides there are.
    """
    sides = [int(img_resolution) >> i for i in range(int(num_levels))]
    entries = [int(r) for r in attn_resolutions]
    missing = [r for r in entries if r >= 0 and r not in sides]
    if missing:
        raise ValueError(f"attn_resolutions {missing} not reached: with img_resolution "
                         f"{img_resolution} the feature-map sides are {sides} (or give "
                         f"levels from the lowest: -1 = {sides[-1]})")
    deep = [r for r in entries if r < -len(sides)]
    if deep:
        raise ValueError(f"attn_resolutions {deep}: only {len(sides)} levels (-1 .. "
                         f"-{len(sides)}); with img_resolution {img_resolution} the "
                         f"feature-map sides are {sides}")
    chosen = {r if r > 0 else sides[r] for r in entries}
    return [s for s in sides if s in chosen]


def build_unet(model_cfg: Any, img_resolution: int, in_channels: int = 1,
               num_classes: int = 0, scalar_conditions: Sequence[str] = ()) -> UNet:
    """A :class:`UNet` from a ``ModelConfig`` (dataclass, DictConfig or mapping).

    Parameters
    ----------
    model_cfg : ModelConfig, DictConfig or mapping
        Reads ``model_channels``, ``channel_mult``, ``num_blocks``, ``attn_resolutions``,
        ``dropout``, ``num_heads`` and ``emb_mult`` (the last two default to 1 and 4).
    img_resolution : int
        Image side in pixels.
    in_channels : int
        Image channels.
    num_classes : int
        Class count of the data (0 = no class conditioning).
    scalar_conditions : sequence of str
        Continuous condition names, e.g. ``("peak_flux", "las_arcsec")``.
    """
    def get(key: str, default: Any = None) -> Any:
        value = model_cfg.get(key, default) if isinstance(model_cfg, Mapping) \
            else getattr(model_cfg, key, default)
        if value is None:
            raise ValueError(f"model config has no value for {key!r}")
        return value

    return UNet(img_resolution=int(img_resolution), in_channels=int(in_channels),
                model_channels=int(get("model_channels")),
                channel_mult=list(get("channel_mult")), num_blocks=int(get("num_blocks")),
                attn_resolutions=list(get("attn_resolutions")),
                dropout=float(get("dropout", 0.0)), num_heads=int(get("num_heads", 1)),
                emb_mult=int(get("emb_mult", 4)), num_classes=int(num_classes),
                scalar_conditions=tuple(scalar_conditions))


def drop_conditions(cond: Optional[Mapping[str, Tensor]], p: float,
                    generator: Optional[torch.Generator] = None) -> Optional[dict]:
    """Classifier-free-guidance dropout: null ALL conditions of a sample with probability p.

    Ho & Salimans 2022, Algorithm 1 (p_uncond). Labels become -1, scalars NaN; the
    returned dict is new, the input is untouched.

    Parameters
    ----------
    cond : dict or None
        ``"label"`` (N,) long and/or scalar float tensors (N,).
    p : float
        Probability in [0, 1] (``ModelConfig.label_dropout``).
    generator : torch.Generator, optional
        Source of the draws (on the tensors' device).
    """
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability must be in [0, 1], got {p}")
    if not cond:
        return None if cond is None else dict(cond)
    first = next(iter(cond.values()))
    drop = torch.rand(first.shape[0], generator=generator, device=first.device) < p
    out = {}
    for name, v in cond.items():
        null = torch.tensor(-1 if name == "label" else math.nan, dtype=v.dtype, device=v.device)
        out[name] = torch.where(drop, null, v)
    return out
