"""Causal building blocks with explicit caches, shared by the streaming models.

Every temporal layer here is a plain ``nn.Conv1d`` run without padding over
``cat(cache, x)``: the cache holds the last ``(kernel_size - 1) * dilation`` input frames
of the layer. A whole sequence is the same computation with a zero cache, so
``forward over T frames`` == ``step over any split of the T frames`` by construction.
Only Conv1d, Concat, Slice, Reshape and elementwise ops appear, which ONNX export with
dynamic batch and time and TensorRT both handle.

Shapes: activations are channel-major ``(B, C, T)`` float32; a cache is ``(B, C_in, context)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class CausalConv1d(nn.Module):
    """Conv1d whose output at frame t depends on input frames t - context .. t only.

    Args:
        in_channels, out_channels: channel counts.
        kernel_size: taps (>= 1).
        dilation: tap spacing in frames (>= 1).
    The cache is the last ``context = (kernel_size - 1) * dilation`` input frames.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int,
                 dilation: int = 1) -> None:
        super().__init__()
        if kernel_size < 1 or dilation < 1:
            raise ValueError(
                f"CausalConv1d needs kernel_size >= 1 and dilation >= 1, got "
                f"{kernel_size} and {dilation}"
            )
        self.in_channels = in_channels
        self.context = (kernel_size - 1) * dilation
        self.conv = nn.Conv1d(in_channels, out_channels, kernel_size, dilation=dilation)

    @property
    def cache_size(self) -> int:
        """Floats per stream in this layer's cache: in_channels * context."""
        return self.in_channels * self.context

    def forward(self, x: torch.Tensor, cache: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Run over a chunk.

        Args:
            x: (B, C_in, Tc) input frames.
            cache: (B, C_in, context) previous input frames (zeros at stream start).
        Returns:
            y: (B, C_out, Tc) and the new cache (B, C_in, context).
        """
        if self.context == 0:
            return self.conv(x), cache
        joined = torch.cat([cache, x], dim=2)  # (B, C_in, context + Tc)
        return self.conv(joined), joined[:, :, -self.context:]


class CausalConvStack(nn.Module):
    """An input projection and residual causal conv blocks: ``h = h + drop(act(conv(h)))``.

    Args:
        in_channels: input channels.
        hidden: channels of every block (the output width).
        kernel_size: taps of each block.
        dilations: one block per entry; the receptive field is
            ``1 + (kernel_size - 1) * sum(dilations)`` frames, all in the past.
        negative_slope: LeakyReLU slope.
        dropout: dropout on each block's residual branch while training.
    """

    def __init__(self, in_channels: int, hidden: int, kernel_size: int,
                 dilations: Sequence[int], negative_slope: float = 0.2,
                 dropout: float = 0.0) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)  # training only: identity in eval and export
        self.input_proj = nn.Conv1d(in_channels, hidden, 1)
        blocks = [CausalConv1d(hidden, hidden, kernel_size, d) for d in dilations]
        self._cache_shapes = [(b.in_channels, b.context) for b in blocks]
        self.blocks = nn.ModuleList(blocks)
        self.act = nn.LeakyReLU(negative_slope)
        self.out_channels = hidden
        self.receptive_field = 1 + (kernel_size - 1) * sum(int(d) for d in dilations)

    @property
    def cache_sizes(self) -> list[int]:
        """Floats per stream of each block's cache, in block order."""
        return [channels * context for channels, context in self._cache_shapes]

    @property
    def state_size(self) -> int:
        return sum(self.cache_sizes)

    def forward(self, x: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Args: x (B, C_in, Tc); state (B, state_size) flattened caches.

        Returns: (B, hidden, Tc) and the new state (B, state_size).
        """
        h = self.act(self.input_proj(x))
        caches = split_state(state, self._cache_shapes)
        new_caches = []
        for block, cache in zip(self.blocks, caches, strict=True):
            y, new_cache = block(h, cache)
            h = h + self.dropout(self.act(y))
            new_caches.append(new_cache)
        return h, join_state(new_caches, state)


def split_state(state: torch.Tensor, shapes: Sequence[tuple[int, int]]) -> list[torch.Tensor]:
    """Cut a flattened (B, S) state into caches of shape (B, C, K) for each (C, K) in order."""
    out = []
    offset = 0
    for channels, context in shapes:
        size = channels * context
        out.append(state[:, offset:offset + size].reshape(-1, channels, context))
        offset += size
    return out


def join_state(caches: Sequence[torch.Tensor], like: torch.Tensor) -> torch.Tensor:
    """Flatten caches (B, C, K) into one (B, S) state; ``like`` gives B when no cache exists."""
    flat = [c.reshape(c.shape[0], -1) for c in caches if c.shape[2] > 0]
    if not flat:
        return like[:, :0]
    return torch.cat(flat, dim=1)
