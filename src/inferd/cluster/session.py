"""This server's time on a cluster: joined (or started) at start-up, left at shutdown."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from inferd.cluster.connect import ClusterSettings, Connection, connect
from inferd.cluster.telemetry import ClusterTelemetry

if TYPE_CHECKING:  # the placer imports Ray, which `connect` first checks is installed
    from inferd.cluster.placer import RayPlacer


@dataclass(slots=True)
class ClusterSession:
    connection: Connection
    placer: RayPlacer
    telemetry: ClusterTelemetry  # a Prometheus collector of the remote instances

    @classmethod
    def open(cls, settings: ClusterSettings) -> ClusterSession:
        """Join the cluster; an `InferdError` that names the address when it cannot."""
        connection = connect(settings.address)
        try:
            from inferd.cluster.placer import RayPlacer

            telemetry = ClusterTelemetry()
            session = cls(connection, RayPlacer(settings, telemetry), telemetry)
        except BaseException:
            connection.close()
            raise
        telemetry.start()
        return session

    def close(self) -> None:
        self.telemetry.stop()
        self.connection.close()
