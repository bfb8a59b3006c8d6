"""MoLE: a mixture of LoRA experts on the language model's MLPs with a trainable top-1 router.

Each MLP (gate/up/down projections) gets `experts` LoRA experts and a linear router over the
hidden state. Every token uses only the expert its router ranks first; the router still learns
through a straight-through estimate: the expert weights are `one_hot + p - p.detach()` (value:
the one-hot choice; gradient: that of the softmax probabilities p). (The public User-VLM code
routes with a hard arg-max, which passes no gradient to the router.)

The experts are saved next to the attention LoRA adapter as `mole.safetensors` + `mole.json`;
`load_mole(model, folder)` puts them back on a loaded model for inference.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F

from uservlm_ros.core.errors import ModelLoadError

WEIGHTS_FILE = "mole.safetensors"
CONFIG_FILE = "mole.json"


class MoLEMLP(torch.nn.Module):
    """A gated MLP (gate_proj, up_proj, down_proj, act_fn) plus routed LoRA experts."""

    def __init__(self, mlp, experts: int, rank: int, alpha: float, dropout: float) -> None:
        super().__init__()
        self.mlp = mlp
        hidden = mlp.gate_proj.in_features
        inner = mlp.gate_proj.out_features
        self.scale = alpha / rank
        self.dropout = torch.nn.Dropout(dropout)
        self.router = torch.nn.Linear(hidden, experts, bias=False)
        torch.nn.init.normal_(self.router.weight, std=0.02)

        def pair(inputs: int, outputs: int) -> torch.nn.ParameterList:
            down = torch.nn.Parameter(torch.randn(experts, rank, inputs) / rank**0.5 / inputs**0.5)
            up = torch.nn.Parameter(torch.zeros(experts, outputs, rank))  # starts as a no-op
            return torch.nn.ParameterList([down, up])

        self.gate = pair(hidden, inner)
        self.up = pair(hidden, inner)
        self.down = pair(inner, hidden)
        self.last_choice: torch.Tensor | None = None  # expert per token of the last call
        self.enabled = True  # False: the plain MLP (a responder serving other adapters too)

    def _delta(self, x: torch.Tensor, pair: torch.nn.ParameterList, weights: torch.Tensor):
        down, up = pair
        reduced = torch.einsum("bti,eri->bter", self.dropout(x), down.to(x.dtype))
        mixed = reduced * weights.unsqueeze(-1).to(x.dtype)  # only the chosen expert survives
        return torch.einsum("bter,eor->bto", mixed, up.to(x.dtype)) * self.scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.enabled:
            return self.mlp(x)
        probabilities = F.softmax(self.router(x).float(), dim=-1)
        choice = probabilities.argmax(dim=-1)
        self.last_choice = choice.detach()
        one_hot = F.one_hot(choice, probabilities.shape[-1]).to(probabilities.dtype)
        weights = one_hot + probabilities - probabilities.detach()
        gate = self.mlp.gate_proj(x) + self._delta(x, self.gate, weights)
        up = self.mlp.up_proj(x) + self._delta(x, self.up, weights)
        hidden = self.mlp.act_fn(gate) * up
        return self.mlp.down_proj(hidden) + self._delta(hidden, self.down, weights)


def _mlp_owners(model) -> list[tuple[torch.nn.Module, str]]:
    """(parent, attribute) of every gated MLP of the language model."""
    owners = []
    for name, module in model.named_modules():
        if "language_model" not in name:
            continue
        mlp = getattr(module, "mlp", None)
        if mlp is not None and hasattr(mlp, "gate_proj") and not isinstance(mlp, MoLEMLP):
            owners.append((module, "mlp"))
    return owners


def apply_mole(model, experts: int = 3, rank: int = 16, alpha: float = 32, dropout: float = 0.05):
    """Wrap every language-model MLP with MoLE experts (trainable); returns the wrappers."""
    wrappers = []
    for owner, attribute in _mlp_owners(model):
        base = getattr(owner, attribute)
        parameter = next(base.parameters())
        wrapper = MoLEMLP(base, experts, rank, alpha, dropout).to(parameter.device)
        setattr(owner, attribute, wrapper)
        wrappers.append(wrapper)
    for wrapper in wrappers:
        for name, parameter in wrapper.named_parameters():
            parameter.requires_grad = not name.startswith("mlp.")
    return wrappers


def mole_state(model) -> dict[str, torch.Tensor]:
    """The MoLE parameters (router + experts) by a name that survives peft wrapping."""
    state = {}
    for index, module in enumerate(m for m in model.modules() if isinstance(m, MoLEMLP)):
        for name, parameter in module.named_parameters():
            if not name.startswith("mlp."):
                state[f"{index}.{name}"] = parameter.detach().cpu().contiguous()
    return state


def save_mole(model, folder: Path, experts: int, rank: int, alpha: float) -> None:
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_file(mole_state(model), folder / WEIGHTS_FILE)
    config = {"experts": experts, "rank": rank, "alpha": alpha}
    (folder / CONFIG_FILE).write_text(json.dumps(config))


def is_mole_adapter(folder: Path) -> bool:
    return (Path(folder) / CONFIG_FILE).is_file()


def set_mole_enabled(model, enabled: bool) -> None:
    for module in model.modules():
        if isinstance(module, MoLEMLP):
            module.enabled = enabled


def load_mole(model, folder: Path) -> list[MoLEMLP]:
    """Put saved MoLE experts on a loaded model (no dropout, for inference)."""
    folder = Path(folder)
    if not (folder / CONFIG_FILE).is_file():
        raise ModelLoadError(f"{folder / CONFIG_FILE} not found: not a MoLE adapter folder")
    config = json.loads((folder / CONFIG_FILE).read_text())
    wrappers = apply_mole(model, config["experts"], config["rank"], config["alpha"], 0.0)
    restore_mole(model, folder)
    return wrappers


def restore_mole(model, folder: Path) -> None:
    """Load saved router and expert weights into the model's MoLE wrappers (e.g. on resume)."""
    from safetensors.torch import load_file

    state = load_file(Path(folder) / WEIGHTS_FILE)
    wrappers = [m for m in model.modules() if isinstance(m, MoLEMLP)]
    for index, wrapper in enumerate(wrappers):
        own = {k.split(".", 1)[1]: v for k, v in state.items() if k.split(".", 1)[0] == str(index)}
        missing = [n for n in wrapper.state_dict() if not n.startswith("mlp.") and n not in own]
        if missing:
            raise ModelLoadError(f"{folder / WEIGHTS_FILE} lacks {missing} of MoLE layer {index}")
        wrapper.load_state_dict(own, strict=False)
