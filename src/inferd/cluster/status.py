"""What `inferd cluster status` prints: the cluster's nodes, where each model's instances
were placed, and the instance groups still waiting for room.

It reads Ray's own tables (nodes, placement groups) as a separate client, so it works against
any cluster an inferd server uses, whichever process started it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from inferd.cluster.placer import GROUP_PREFIX


@dataclass(frozen=True, slots=True)
class NodeRow:
    node_id: str
    address: str
    alive: bool
    cpus: float
    gpus: float


@dataclass(frozen=True, slots=True)
class GroupRow:
    model: str
    version: str
    group: str
    state: str  # Ray's: CREATED, PENDING, RESCHEDULING, REMOVED
    strategy: str
    instances_per_node: dict[str, int]
    bundle: dict[str, float]
    bundles: int


@dataclass(frozen=True, slots=True)
class ClusterStatus:
    nodes: list[NodeRow]
    groups: list[GroupRow]

    def render(self) -> str:
        lines = ["nodes:"]
        for row in self.nodes:
            state = "ALIVE" if row.alive else "DEAD"
            lines.append(
                f"  {row.node_id}  {row.address:<15} {state:<5}  CPU {row.cpus:g}  GPU {row.gpus:g}"
            )
        placed = [g for g in self.groups if g.state == "CREATED"]
        waiting = [g for g in self.groups if g.state not in ("CREATED", "REMOVED")]
        lines.append("instances:")
        for group in placed:
            for node, count in sorted(group.instances_per_node.items()):
                lines.append(
                    f"  {group.model} v{group.version} {group.group}: {count} on node {node}"
                )
        lines.append("pending placements:")
        for group in waiting:
            lines.append(
                f"  {group.model} v{group.version} {group.group}: {group.state}, needs "
                f"{group.bundles} x {group.bundle} ({group.strategy})"
            )
        if not waiting:
            lines.append("  none")
        return "\n".join(lines)


def read_status() -> ClusterStatus:
    """The status of the cluster this process has joined."""
    import ray
    from ray.util.placement_group import placement_group_table

    nodes = [_node_row(node) for node in ray.nodes()]  # type: ignore[no-untyped-call]
    table: dict[str, dict[str, Any]] = placement_group_table()
    groups = [
        _group_row(entry)
        for entry in table.values()
        if str(entry.get("name", "")).startswith(GROUP_PREFIX + "/") and entry["state"] != "REMOVED"
    ]
    groups.sort(key=lambda g: (g.model, g.version, g.group))
    return ClusterStatus(nodes, groups)


def _node_row(node: dict[str, Any]) -> NodeRow:
    resources = node.get("Resources", {})
    return NodeRow(
        node["NodeID"],
        node.get("NodeManagerAddress", ""),
        bool(node.get("Alive")),
        resources.get("CPU", 0.0),
        resources.get("GPU", 0.0),
    )


def _group_row(entry: dict[str, Any]) -> GroupRow:
    reserved, _ = entry["name"].rsplit("/", 1)  # without its reservation's number
    _, model, version, group = reserved.split("/", 3)
    per_node = Counter(entry.get("bundles_to_node_id", {}).values())
    bundles = entry.get("bundles", {})
    first = bundles[min(bundles)] if bundles else {}
    return GroupRow(
        model, version, group, entry["state"], entry.get("strategy", ""), dict(per_node),
        first, len(bundles),
    )  # fmt: skip
