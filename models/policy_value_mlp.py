"""A small policy-value MLP: the network of the MiniGo workload's tiny preset (tic-tac-toe),
where a residual conv tower would be all padding on a 3x3 board."""

import jax
import jax.numpy as jnp
from flax import linen as nn


class PolicyValueMLP(nn.Module):
    actions: int
    width: int = 128
    depth: int = 2

    @nn.compact
    def __call__(self, boards: jax.Array) -> tuple[jax.Array, jax.Array]:
        """[B, ...] planes -> (policy logits [B, actions], value [B] in (-1, 1))."""
        x = boards.reshape(boards.shape[0], -1).astype(jnp.float32)
        for _ in range(self.depth):
            x = nn.relu(nn.Dense(self.width)(x))
        out = nn.Dense(self.actions + 1)(x)
        return out[:, :-1], jnp.tanh(out[:, -1])


def param_count(inputs: int, actions: int, width: int, depth: int) -> int:
    """Weights and biases by formula: inputs -> width (depth times) -> actions + 1."""
    hidden = inputs * width + width + (depth - 1) * (width * width + width)
    return hidden + width * (actions + 1) + actions + 1


def forward_flops(inputs: int, actions: int, width: int, depth: int) -> int:
    """Multiply-add FLOPs (2 per MAC) of one board's forward pass."""
    return 2 * (inputs * width + (depth - 1) * width * width + width * (actions + 1))
