"""Real Redis topologies on loopback, from the same server program as ``RedisServer``: a primary
with a replica watched by three Sentinels (the program in sentinel mode), and a Cluster of three
primaries. Their failovers and slot moves are the servers' own, driven with their commands.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis

from mitm_oauth2.testing import free_port
from tests.support import programs
from tests.support.procs import Child
from tests.support.redis_server import HOST
from tests.support.redis_server import RedisServer

SERVICE = "tokens"


def _command(client: redis.Redis, *args: object) -> Any:
    """A server command that redis-py has no method for (its execute_command is untyped)."""
    return client.execute_command(*args)  # type: ignore[no-untyped-call]


def _until(check: Callable[[], Any], timeout: float, what: str) -> Any:
    """`check()`'s first truthy value, polled; AssertionError naming `what` past `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            found = check()
        except redis.RedisError:
            found = None
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.05)


class SentinelSet:
    """A primary, its replica and three Sentinels that fail over after `down_after_ms` of
    silence (a quorum of two). `password`: the primary's and the replica's (AUTH); `sentinel_
    password`: the Sentinels' own."""

    name = "redis-sentinel"

    def __init__(
        self,
        workdir: Path,
        down_after_ms: int = 500,
        password: str | None = None,
        sentinel_password: str | None = None,
    ) -> None:
        self.workdir = workdir
        self.down_after_ms = down_after_ms
        self.password = password
        self.sentinel_password = sentinel_password
        auth = [] if password is None else ["--masterauth", password]
        self.servers = [RedisServer(workdir / "primary", password=password, args=auth)]
        primary = ["--replicaof", HOST, str(self.servers[0].port)]
        self.servers.append(
            RedisServer(workdir / "replica", password=password, args=[*primary, *auth])
        )
        self.sentinel_ports = [free_port() for _ in range(3)]
        self._sentinels: list[Child] = []

    @property
    def url(self) -> str:
        hosts = ",".join(f"{HOST}:{port}" for port in self.sentinel_ports)
        return f"redis+sentinel://{hosts}/{SERVICE}/0"

    def start(self) -> SentinelSet:
        for server in self.servers:
            server.start()
        replica = self.servers[1].client()
        _until(
            lambda: replica.info("replication").get("master_link_status") == "up",
            15,
            "the replica in sync with the primary",
        )
        program = programs.redis_server()
        for port in self.sentinel_ports:
            directory = self.workdir / f"sentinel-{port}"
            directory.mkdir(parents=True, exist_ok=True)
            conf = directory / "sentinel.conf"  # a Sentinel rewrites its file: one each
            conf.write_text(
                f"port {port}\nbind {HOST}\n"
                f"sentinel monitor {SERVICE} {HOST} {self.servers[0].port} 2\n"
                f"sentinel down-after-milliseconds {SERVICE} {self.down_after_ms}\n"
                f"sentinel failover-timeout {SERVICE} 5000\n"
                + (f"sentinel auth-pass {SERVICE} {self.password}\n" if self.password else "")
                + (
                    f"requirepass {self.sentinel_password}\n"
                    f"sentinel sentinel-pass {self.sentinel_password}\n"
                    if self.sentinel_password
                    else ""
                ),
                encoding="utf-8",
            )
            self._sentinels.append(
                Child(
                    f"sentinel-{port}",
                    [program.path, str(conf), "--sentinel"],
                    ready=r"\+monitor master",
                    timeout=15,
                    cwd=directory,
                )
            )
        # Every Sentinel knows the replica and the other Sentinels: a failover can happen.
        for port in self.sentinel_ports:
            with self.sentinel(port) as sentinel:

                def ready(sentinel: redis.Redis = sentinel) -> bool:
                    known: Any = sentinel.sentinel_master(SERVICE)
                    return int(known["num-other-sentinels"]) == 2 and int(known["num-slaves"]) == 1

                _until(ready, 15, f"sentinel {port} knowing its peers and the replica")
        return self

    def sentinel(self, port: int | None = None) -> redis.Redis:
        return redis.Redis(
            HOST, port or self.sentinel_ports[0], password=self.sentinel_password, socket_timeout=5
        )

    def primary_port(self) -> int:
        """The primary's port, as the Sentinels say."""
        address: Any = self.sentinel().sentinel_get_master_addr_by_name(SERVICE)
        return int(address[1])

    def kill_primary(self) -> int:
        """SIGKILLs the primary; its port."""
        port = self.primary_port()
        (server,) = [s for s in self.servers if s.port == port]
        server.kill()
        return port

    def wait_for_failover(self, old_port: int, timeout: float = 20) -> int:
        """The new primary's port, once the Sentinels name it and it takes writes."""
        port: int = _until(
            lambda: (p := self.primary_port()) != old_port and p,
            timeout,
            "the Sentinels promoting the replica",
        )
        (server,) = [s for s in self.servers if s.port == port]
        client = server.client()
        _until(lambda: client.info("replication")["role"] == "master", timeout, "a new primary")
        return port

    def stop(self) -> None:
        for sentinel in self._sentinels:
            sentinel.stop()
        for server in self.servers:
            server.stop()

    def output(self) -> str:
        parts = [f"--- {s.workdir.name} ---\n{s.output()}" for s in self.servers]
        parts += [f"--- {s.name} ---\n{s.output()}" for s in self._sentinels]
        return "\n".join(parts)


class ClusterSet:
    """Three primaries, the 16,384 slots split between them, no replicas."""

    name = "redis-cluster"
    SLOTS = 16384

    def __init__(self, workdir: Path, nodes: int = 3) -> None:
        self.servers: list[RedisServer] = []
        self.bus_ports: list[int] = []
        for index in range(nodes):
            args = ["--cluster-enabled", "yes", "--cluster-node-timeout", "2000"]
            args += ["--cluster-config-file", "nodes.conf"]  # each in a folder of its own
            # Not port + 10,000 (the default), which a free high port has no room for.
            self.bus_ports.append(free_port())
            args += ["--cluster-port", str(self.bus_ports[-1])]
            self.servers.append(RedisServer(workdir / f"node-{index}", args=args))

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"{HOST}:{s.port}" for s in self.servers[:2])

    def start(self) -> ClusterSet:
        for server in self.servers:
            server.start()
        share = self.SLOTS // len(self.servers)
        for index, server in enumerate(self.servers):
            last = self.SLOTS - 1 if index == len(self.servers) - 1 else (index + 1) * share - 1
            _command(server.client(), "CLUSTER", "ADDSLOTSRANGE", index * share, last)
        first = self.servers[0].client()
        for server, bus in zip(self.servers[1:], self.bus_ports[1:], strict=True):
            _command(first, "CLUSTER", "MEET", HOST, server.port, bus)
        for server in self.servers:
            with server.client() as client:

                def whole(client: redis.Redis = client) -> bool:
                    ok = b"cluster_state:ok" in _command(client, "CLUSTER", "INFO")
                    nodes = _command(client, "CLUSTER", "NODES").splitlines()
                    return ok and len(nodes) == len(self.servers)

                _until(whole, 20, f"node {server.port} seeing the whole cluster")
        return self

    def node_id(self, server: RedisServer) -> str:
        with server.client() as client:
            return str(_command(client, "CLUSTER", "MYID").decode())

    def owner(self, slot: int) -> RedisServer:
        """The node that serves `slot` now."""
        for start, end, primary, *_ in _command(self.servers[0].client(), "CLUSTER", "SLOTS"):
            if start <= slot <= end:
                (server,) = [s for s in self.servers if s.port == int(primary[1])]
                return server
        raise AssertionError(f"no node serves slot {slot}")

    def migrate(self, slot: int, target: RedisServer) -> int:
        """Moves `slot` and its keys to `target` the way redis-cli --cluster reshard does
        (IMPORTING/MIGRATING, MIGRATE of each key, then the new owner told to every node);
        the number of keys moved."""
        source = self.owner(slot)
        src, dst = source.client(), target.client()
        src_id, dst_id = self.node_id(source), self.node_id(target)
        _command(dst, "CLUSTER", "SETSLOT", slot, "IMPORTING", src_id)
        _command(src, "CLUSTER", "SETSLOT", slot, "MIGRATING", dst_id)
        moved = 0
        while keys := _command(src, "CLUSTER", "GETKEYSINSLOT", slot, 100):
            _command(src, "MIGRATE", HOST, target.port, "", 0, 5000, "KEYS", *keys)
            moved += len(keys)
        for server in (target, source, *self.servers):
            _command(server.client(), "CLUSTER", "SETSLOT", slot, "NODE", dst_id)
        return moved

    def stop(self) -> None:
        for server in self.servers:
            server.stop()

    def output(self) -> str:
        return "\n".join(f"--- {s.workdir.name} ---\n{s.output()}" for s in self.servers)
