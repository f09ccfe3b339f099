"""Triton's `pb_utils.ModelConfig` (what an `auto_complete_config` hook completes) and the
helpers that read a config's JSON form."""

from __future__ import annotations

from typing import Any


class ModelConfig:
    """The config an `auto_complete_config(auto_complete_model_config)` hook completes, with
    Triton's methods and checks (they raise `ValueError`, as Triton's do). `as_dict()` is the
    config's JSON form; the hook returns this object."""

    def __init__(self, model_config: dict[str, Any]) -> None:
        self._config = model_config

    def as_dict(self) -> dict[str, Any]:
        return self._config

    def set_max_batch_size(self, max_batch_size: int) -> None:
        if self._config["max_batch_size"] > max_batch_size:
            raise ValueError(
                f"configuration specified max_batch_size {self._config['max_batch_size']}, but "
                f"auto_complete_config of model '{self._config['name']}' specified "
                f"max_batch_size {max_batch_size}"
            )
        self._config["max_batch_size"] = max_batch_size

    def set_dynamic_batching(self) -> None:
        for other in ("sequence_batching", "ensemble_scheduling"):
            if other in self._config:
                raise ValueError(
                    f"configuration specified scheduling_choice as '{other}', but "
                    f"auto_complete_config of model '{self._config['name']}' tries to set "
                    "'dynamic_batching'"
                )
        self._config.setdefault("dynamic_batching", {})

    def add_input(self, input: dict[str, Any]) -> None:
        self._add("input", input, ("name", "data_type", "dims", "optional"))

    def add_output(self, output: dict[str, Any]) -> None:
        self._add("output", output, ("name", "data_type", "dims"))

    def set_model_transaction_policy(self, transaction_policy_dict: dict[str, Any]) -> None:
        unknown = set(transaction_policy_dict) - {"decoupled"}
        if unknown:
            raise ValueError(
                f"model transaction policy has properties other than 'decoupled': {sorted(unknown)}"
            )
        policy = self._config.setdefault("model_transaction_policy", {})
        if "decoupled" in transaction_policy_dict:
            decoupled = transaction_policy_dict["decoupled"]
            if policy.get("decoupled", decoupled) != decoupled:
                raise ValueError(f"decoupled is already set to {policy['decoupled']}")
            policy["decoupled"] = decoupled

    def _add(self, kind: str, tensor: dict[str, Any], allowed: tuple[str, ...]) -> None:
        """Add a tensor, or fill the type and dims of the entry of that name the config already
        has (Triton's rule: what the config says must not be contradicted)."""
        extra = set(tensor) - set(allowed)
        missing = [key for key in ("name", "data_type", "dims") if key not in tensor]
        if extra or missing:
            raise ValueError(
                f"{kind} {tensor.get('name', '')!r} of auto_complete_config needs 'name', "
                f"'data_type' and 'dims' and takes only {list(allowed)}"
            )
        existing = next((t for t in self._config[kind] if t["name"] == tensor["name"]), None)
        if existing is None:
            self._config[kind].append(dict(tensor))
            return
        for key, unset in (("data_type", "TYPE_INVALID"), ("dims", []), ("optional", None)):
            have = existing.get(key, unset)
            if key in tensor and have != unset and have != tensor[key]:
                raise ValueError(
                    f"{kind} '{tensor['name']}': the configuration gives {key} {have}, "
                    f"auto_complete_config gives {tensor[key]}"
                )
        existing.update(tensor)


def using_decoupled_model_transaction_policy(model_config: dict[str, Any]) -> bool:
    """Whether a config (its JSON form) sets model_transaction_policy { decoupled: true }."""
    return bool(model_config.get("model_transaction_policy", {}).get("decoupled", False))


def _tensor_config(config: dict[str, Any], kind: str, name: str) -> dict[str, Any] | None:
    return next((t for t in config.get(kind, []) if t.get("name") == name), None)


def get_input_config_by_name(config: dict[str, Any], name: str) -> dict[str, Any] | None:
    """The entry of `input` named `name` in a config's JSON form (`args["model_config"]`
    parsed)."""
    return _tensor_config(config, "input", name)


def get_output_config_by_name(config: dict[str, Any], name: str) -> dict[str, Any] | None:
    return _tensor_config(config, "output", name)
